//! Transactions (KIP-98), the part of [`SenderMachine`] a `transactional.id` turns on: the
//! transaction's state, its coordinator, the partitions and offsets added to it, and the calls
//! the application makes (`init_transactions`, `begin_transaction`,
//! `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`).
//!
//! ```text
//!                init                     begin                  commit
//! Uninitialized ──────▶ Initializing ──▶ Ready ─────▶ InTransaction ──────▶ Committing ─┐
//!                                          ▲  ▲            │  │                          │
//!                                          │  └────────────┼──┼──────── EndTxn answered ─┘
//!                                          │      abort    │  │ a record or the offsets fail
//!                                          │   ┌───────────┘  ▼
//!                                          │   │        AbortableError
//!                                          │   ▼              │ abort
//!                                          └─ Aborting ◀──────┘
//!
//! fenced, refused for good (any state) ──▶ Fatal: every call and send fails; close only
//! ```
//!
//! The rules, as the Java client's `TransactionManager` keeps them:
//! - Records are taken only inside a transaction. Before the first batch of a partition goes
//!   out in a transaction, AddPartitionsToTxn adds it at the transaction coordinator; the
//!   partitions waiting for that go in one request.
//! - `send_offsets_to_transaction` is AddOffsetsToTxn at the transaction coordinator, then
//!   TxnOffsetCommit at the group's coordinator with the consumer's generation and member id
//!   (KIP-447), so a consumer that lost its partitions cannot commit for them.
//! - Commit sends every record first; a record that failed makes the commit fail with an
//!   abortable error instead. Abort fails the batches not sent yet, waits for those in flight,
//!   then EndTxn. A transaction to which nothing was added ends without EndTxn.
//! - Retriable errors (CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, a lost connection)
//!   are retried after the backoff; NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE look the
//!   coordinator up again first. PRODUCER_FENCED, INVALID_PRODUCER_EPOCH and
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED from a coordinator are fatal. A sequence the broker
//!   lost (UNKNOWN_PRODUCER_ID, OUT_OF_ORDER_SEQUENCE_NUMBER) fails the transaction, and its
//!   abort bumps the producer epoch with InitProducerId (v3+, KIP-360) so that the next one
//!   starts its sequences afresh.
//! - A partition leader's INVALID_PRODUCER_EPOCH (KIP-588) says the coordinator has aborted
//!   the transaction under a newer epoch: after `transaction.timeout.ms`, or because another
//!   producer took the `transactional.id` over. It fails the transaction (abortable); the abort
//!   sends no EndTxn (the coordinator refuses the old epoch's as PRODUCER_FENCED) and bumps the
//!   epoch naming the old one, which the coordinator grants after its timeout and refuses as
//!   PRODUCER_FENCED after a takeover (fatal then).
//! - A call carried out while another is unfinished is refused, but the same call again joins
//!   the one running (an application that gave up waiting calls it again; once the call has
//!   ended, the producer's task answers the same call with the outcome its caller did not
//!   read).
//! - Closing inside a transaction aborts it, once a call under way has ended.
//!
//! Transaction version 2 (KIP-890), which a cluster has once its `transaction.version` feature
//! is finalized at 2 (Apache Kafka 4.0 and later, by default), changes three of those rules:
//! - A partition joins the transaction with its first Produce request (v12+), and the group's
//!   offsets with TxnOffsetCommit (v5+): no AddPartitionsToTxn, no AddOffsetsToTxn.
//! - Every EndTxn (v5+) bumps the epoch, and its answer carries the producer id and epoch the
//!   next transaction uses: each transaction starts its sequences afresh.
//! - So an abort needs no InitProducerId to bump the epoch: after a lost sequence, or after a
//!   leader's INVALID_PRODUCER_EPOCH (the coordinator aborted the transaction), the abort is an
//!   EndTxn at the old epoch, which the coordinator answers with the new one.
//!
//! The coordinator answers EndTxn before it writes the transaction's markers, and refuses to
//! add to the next transaction until they are written: at version 1 it answers the first
//! AddPartitionsToTxn CONCURRENT_TRANSACTIONS (sent again after `retry.backoff.ms`), at
//! version 2 the partition's leader holds the first Produce for 20 ms or more (see
//! [`Settling`]). So after an end, what the next transaction adds first (AddPartitionsToTxn or
//! AddOffsetsToTxn at version 1; Produce or TxnOffsetCommit at version 2) waits until
//! DescribeTransactions no longer says the end is being prepared.
//!
//! The producer picks its protocol when `init_transactions` succeeds, from the finalized
//! `transaction.version` the coordinator's broker reports in ApiVersions, and keeps it: a
//! cluster upgraded later is spoken to at version 1 until the next producer initializes (the
//! Java client switches at the next transaction, after bumping the epoch). The versions of
//! each protocol are [`TxnProtocol::versions`]; a Produce, EndTxn or TxnOffsetCommit is sent
//! only at one of them.

use kcon_codec::kafka_protocol::messages::ApiKey;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kcon_codec::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kcon_codec::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::coordinator::{self, ConsumerGroupMetadata, CoordinatorLookup, Lookup};
use kcon_core::{
    ExponentialBackoff, FailureTracker, Outgoing, RequestFailure, RequestId, RequestIds, Target,
    TopicPartition,
};
use tracing::{debug, warn};

use super::{Event, Request, SenderMachine};
use crate::error::{ErrorKind, ProduceError};
use crate::producer::Counters;

/// The transaction protocol a transactional producer speaks (KIP-890; see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnProtocol {
    /// Partitions and offsets added explicitly; the epoch bumped by InitProducerId only.
    V1,
    /// Partitions and offsets added implicitly; the epoch bumped by every EndTxn.
    V2,
}

impl TxnProtocol {
    /// The protocol a cluster whose `transaction.version` is finalized at `level` speaks.
    pub(crate) fn of_feature(level: i16) -> Self {
        if level >= 2 {
            TxnProtocol::V2
        } else {
            TxnProtocol::V1
        }
    }

    /// The versions `(lo, hi)` of `api` that speak this protocol: the broker reads Produce
    /// v12, EndTxn v5 and TxnOffsetCommit v5 as transaction version 2, and the versions below
    /// as version 1. Other APIs mean the same at every version.
    pub(crate) fn versions(self, api: ApiKey) -> (i16, i16) {
        match (self, api) {
            (TxnProtocol::V1, ApiKey::Produce) => (3, 11),
            (TxnProtocol::V2, ApiKey::Produce) => (12, 12),
            (TxnProtocol::V1, ApiKey::EndTxn | ApiKey::TxnOffsetCommit) => (0, 4),
            (TxnProtocol::V2, ApiKey::EndTxn | ApiKey::TxnOffsetCommit) => (5, 5),
            _ => (0, i16::MAX),
        }
    }
}

/// Names one transaction call, for its [`Event::Transaction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(u64);

/// The kind of a transaction call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// `init_transactions`.
    Init,
    /// `begin_transaction`.
    Begin,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

impl TxnOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnOp::Init => "init_transactions",
            TxnOp::Begin => "begin_transaction",
            TxnOp::SendOffsets => "send_offsets_to_transaction",
            TxnOp::Commit => "commit_transaction",
            TxnOp::Abort => "abort_transaction",
        }
    }
}

/// One offset to commit inside the transaction: the next offset to consume, the leader epoch
/// of the record before it when known, and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOffset {
    /// The consumed partition.
    pub partition: TopicPartition,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the record before it, when known.
    pub leader_epoch: Option<i32>,
    /// The commit's metadata.
    pub metadata: Option<String>,
}

/// A transaction call as the application made it.
#[derive(Debug, Clone)]
pub enum TxnCall {
    /// `init_transactions`: a producer id and epoch from the transaction coordinator.
    Init,
    /// `begin_transaction`.
    Begin,
    /// `send_offsets_to_transaction`: a consumer's offsets committed in the transaction.
    SendOffsets {
        /// The offsets.
        offsets: Vec<TxnOffset>,
        /// The consumer's group metadata.
        group: ConsumerGroupMetadata,
    },
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

impl TxnCall {
    /// Which call it is, without its arguments: what a call's outcome is kept and matched by.
    pub fn op(&self) -> TxnOp {
        match self {
            TxnCall::Init => TxnOp::Init,
            TxnCall::Begin => TxnOp::Begin,
            TxnCall::SendOffsets { .. } => TxnOp::SendOffsets,
            TxnCall::Commit => TxnOp::Commit,
            TxnCall::Abort => TxnOp::Abort,
        }
    }
}

/// The transaction's state (the module's picture).
#[derive(Debug, Clone)]
pub(crate) enum TxnState {
    Uninitialized,
    Initializing,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    /// The transaction cannot commit; the error says why.
    AbortableError(ProduceError),
    /// The producer cannot go on.
    Fatal(ProduceError),
}

/// How long after an EndTxn is answered the next transaction asks whether the last one's
/// markers are written before it adds anything. The coordinator answers EndTxn once the
/// outcome is decided and writes the markers after; what comes before them waits: at
/// transaction version 2 a partition leader holds the Produce for
/// `add.partitions.to.txn.retry.backoff.ms` (20 ms, growing to 100 ms, at Apache Kafka's
/// defaults) before it asks the coordinator again, at version 1 the AddPartitionsToTxn is
/// refused and sent again after `retry.backoff.ms` (100 ms by default). Past this, asking gains
/// nothing over those waits.
pub(crate) const SETTLE_FOR: Duration = Duration::from_millis(100);

/// The wait between two DescribeTransactions while the markers are being written: 1 ms,
/// doubling up to 8, with jitter.
fn settle_backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(1), Duration::from_millis(8))
}

/// The last transaction ended, and its markers may still be being written: the next
/// transaction asks the coordinator (DescribeTransactions) before it adds a partition or
/// offsets (at version 2: before its first Produce or TxnOffsetCommit goes), and again after a
/// short wait while the coordinator says it is preparing the end. What came before the markers
/// would wait far longer than they take (see [`SETTLE_FOR`]).
#[derive(Debug)]
struct Settling {
    /// Past this the next transaction goes without asking ([`SETTLE_FOR`] after the end).
    until: Instant,
    /// When the next DescribeTransactions may go.
    next: Instant,
    /// DescribeTransactions answered that the end was still being prepared, so far.
    asks: u32,
}

/// Offsets on their way into the transaction.
#[derive(Debug)]
struct OffsetsStep {
    group: ConsumerGroupMetadata,
    /// Those not committed yet (a retry sends the ones that failed retriably).
    offsets: Vec<TxnOffset>,
    /// AddOffsetsToTxn answered: TxnOffsetCommit is next.
    added: bool,
}

/// What a transaction request out is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Init {
        bump: bool,
    },
    AddPartitions(Vec<TopicPartition>),
    AddOffsets,
    CommitOffsets,
    End {
        commit: bool,
    },
    /// DescribeTransactions: are the last transaction's markers written?
    Settle,
}

impl Out {
    /// The API of the request.
    fn api(&self) -> ApiKey {
        match self {
            Out::Init { .. } => ApiKey::InitProducerId,
            Out::AddPartitions(_) => ApiKey::AddPartitionsToTxn,
            Out::AddOffsets => ApiKey::AddOffsetsToTxn,
            Out::CommitOffsets => ApiKey::TxnOffsetCommit,
            Out::End { .. } => ApiKey::EndTxn,
            Out::Settle => ApiKey::DescribeTransactions,
        }
    }
}

/// What an error code means to a transaction request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    /// The coordinator moved: look it up, then send again.
    Relookup,
    /// Send again after the backoff.
    Retry,
    /// The transaction cannot commit.
    Abortable,
    /// The producer cannot go on.
    Fatal,
}

/// The verdict on `code` shared by every transaction API; each caller refines what it says
/// of the codes it treats otherwise.
fn verdict(code: i16) -> Verdict {
    use ResponseError as E;
    let Some(e) = ResponseError::try_from_code(code) else {
        return Verdict::Ok;
    };
    match e {
        E::NotCoordinator | E::CoordinatorNotAvailable => Verdict::Relookup,
        E::CoordinatorLoadInProgress | E::ConcurrentTransactions | E::RequestTimedOut => {
            Verdict::Retry
        }
        E::ProducerFenced
        | E::InvalidProducerEpoch
        | E::TransactionalIdAuthorizationFailed
        | E::InvalidTxnState
        | E::InvalidProducerIdMapping
        | E::UnsupportedForMessageFormat
        | E::UnsupportedVersion
        | E::ClusterAuthorizationFailed => Verdict::Fatal,
        E::TransactionAbortable | E::GroupAuthorizationFailed | E::TopicAuthorizationFailed => {
            Verdict::Abortable
        }
        e if e.is_retriable() => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// The transactional part of the producer's machine.
pub(super) struct Transactions {
    id: String,
    timeout_ms: i32,
    pub(super) state: TxnState,
    /// The transaction protocol, chosen when `init_transactions` succeeded.
    pub(super) protocol: TxnProtocol,
    coordinator: CoordinatorLookup,
    /// The coordinator of the group whose offsets are being sent.
    group: Option<CoordinatorLookup>,
    /// Partitions added to the transaction.
    added: BTreeSet<TopicPartition>,
    /// Partitions or offsets were added: the transaction ends with EndTxn.
    started: bool,
    offsets: Option<OffsetsStep>,
    /// The transaction request out.
    out: Option<(RequestId, Out)>,
    /// EndTxn answered for the commit or abort under way.
    ended: bool,
    /// The broker lost the producer's sequence: the next abort bumps the epoch.
    bump_wanted: bool,
    /// A leader refused a batch with INVALID_PRODUCER_EPOCH: the coordinator has aborted the
    /// transaction already (its markers carry the newer epoch the leader saw), so the abort
    /// sends no EndTxn, which the coordinator would refuse as fenced, and goes straight to the
    /// epoch bump.
    aborted_by_coordinator: bool,
    /// When the transaction under way began: the coordinator times it out
    /// `transaction.timeout.ms` after its first partition was added, at the earliest.
    begun_at: Option<Instant>,
    /// The last transaction ended lately and its markers may still be being written: what
    /// the next transaction adds first waits until the coordinator says they are (see
    /// [`Settling`]).
    settling: Option<Settling>,
    /// The coordinator cannot say (DescribeTransactions unsupported or refused): the next
    /// transactions go without asking.
    settle_unanswerable: bool,
    /// The tries of the request under way: its backoff, and a WARN line once it keeps
    /// failing. Started over for each kind of request.
    tries: FailureTracker,
    /// The call under way and everyone waiting for it.
    call: Option<(TxnOp, Vec<CallId>)>,
    /// The outcome of a call none of whose callers read it (each gave up first): the same
    /// call made again gets it at once, as the Java client keeps a pending result; any other
    /// call drops it.
    kept: Option<(TxnOp, Result<(), ProduceError>)>,
    next_call: u64,
    /// Records failed so far (the producer's counter), to see new failures.
    failures_seen: u64,
    backoff: ExponentialBackoff,
}

impl Transactions {
    pub(super) fn new(id: String, timeout_ms: i32, backoff: ExponentialBackoff) -> Self {
        Transactions {
            coordinator: CoordinatorLookup::transaction(id.clone(), backoff),
            id,
            timeout_ms,
            state: TxnState::Uninitialized,
            protocol: TxnProtocol::V1,
            group: None,
            added: BTreeSet::new(),
            started: false,
            offsets: None,
            out: None,
            ended: false,
            bump_wanted: false,
            aborted_by_coordinator: false,
            begun_at: None,
            settling: None,
            settle_unanswerable: false,
            tries: FailureTracker::new(ApiKey::InitProducerId, String::new(), backoff),
            call: None,
            kept: None,
            next_call: 0,
            failures_seen: 0,
            backoff,
        }
    }

    /// Whether records are taken now, or the error they fail with.
    pub(super) fn accepts_records(&self) -> Result<(), ProduceError> {
        match &self.state {
            TxnState::InTransaction => Ok(()),
            TxnState::AbortableError(e) | TxnState::Fatal(e) => Err(e.clone()),
            TxnState::Committing | TxnState::Aborting => Err(ProduceError::transaction_state(
                "the transaction is ending: begin the next one before sending",
            )),
            _ => Err(ProduceError::transaction_state(
                "no transaction in progress: call begin_transaction before sending",
            )),
        }
    }

    /// Whether batches of `tp` may go out now.
    pub(super) fn may_send(&self, tp: &TopicPartition) -> bool {
        matches!(
            self.state,
            TxnState::InTransaction | TxnState::Committing | TxnState::Aborting
        ) && self.added.contains(tp)
    }

    /// Whether batches are sent without `linger.ms`: the transaction is ending.
    pub(super) fn flushing(&self) -> bool {
        matches!(self.state, TxnState::Committing | TxnState::Aborting)
    }

    /// Whether nothing of a transaction is under way: the producer may stop once closed.
    pub(super) fn is_idle(&self) -> bool {
        self.out.is_none()
            && !self.coordinator.is_looking()
            && !self.group.as_ref().is_some_and(|g| g.is_looking())
            && !matches!(self.state, TxnState::Aborting | TxnState::Committing)
    }

    /// Whether `id` is this part's request.
    pub(super) fn owns(&self, id: RequestId) -> bool {
        self.out.as_ref().is_some_and(|(o, _)| *o == id)
            || self.coordinator.is_lookup(id)
            || self.group.as_ref().is_some_and(|g| g.is_lookup(id))
    }

    /// When a retry or a lookup may go out next after `now`, while one waits: the earliest of
    /// the transaction request's backoff and the two lookups', each taken only if after `now`
    /// (one that is over waits for something else, and must not hide a later one).
    pub(super) fn retry_at(&self, now: Instant) -> Option<Instant> {
        let wants = self.wants_coordinator();
        let lookups = [
            self.coordinator.retry_at(wants),
            self.group
                .as_ref()
                .and_then(|g| g.retry_at(self.wants_group_coordinator())),
        ];
        let retry = self.tries.retry_at().filter(|_| self.out.is_none());
        // The next ask once none is out; the end of the wait even while one is (the
        // transaction goes then, whenever that answer comes).
        let settle = self.settling.as_ref().map(|s| {
            if self.out.is_none() {
                s.next.min(s.until)
            } else {
                s.until
            }
        });
        lookups
            .into_iter()
            .flatten()
            .chain(retry)
            .chain(settle)
            .filter(|&at| at > now)
            .min()
    }

    /// The next abort bumps the producer epoch.
    pub(super) fn want_bump(&mut self) {
        self.bump_wanted = true;
    }

    fn wants_coordinator(&self) -> bool {
        !matches!(
            self.state,
            TxnState::Ready | TxnState::Uninitialized | TxnState::Fatal(_)
        )
    }

    fn wants_group_coordinator(&self) -> bool {
        self.offsets.as_ref().is_some_and(|o| o.added)
    }

    fn next_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        id
    }

    /// Sends `request`, the transaction's request `out`, to `target` (with `timeout`, when not
    /// `request.timeout.ms`): the one transaction request out.
    fn send(
        &mut self,
        ids: &mut RequestIds,
        requests: &mut VecDeque<Outgoing<Request, Target>>,
        out: Out,
        request: Request,
        target: Target,
        timeout: Option<Duration>,
    ) {
        let id = ids.next_id();
        self.out = Some((id, out));
        requests.push_back(Outgoing {
            id,
            target,
            request,
            timeout,
        });
    }

    /// The request under way failed for `cause`: it goes again after the backoff.
    fn failed(&mut self, now: Instant, cause: impl Into<String>, random: f64) {
        self.tries.refused(now, cause, None, random);
    }

    fn succeeded(&mut self, now: Instant) {
        self.tries.succeeded(now);
    }

    /// A request of `api` goes out: its tries are counted from those of the same API before.
    fn track(&mut self, api: ApiKey) {
        if self.tries.api() != api {
            let subject = format!("the transaction of transactional id {}", self.id);
            self.tries = FailureTracker::new(api, subject, self.backoff);
        }
        self.tries.sent();
    }

    fn fatal_error(&self) -> Option<&ProduceError> {
        match &self.state {
            TxnState::Fatal(e) => Some(e),
            _ => None,
        }
    }
}

impl<T> SenderMachine<T> {
    fn txn_mut(&mut self) -> Option<&mut Transactions> {
        self.txn.as_mut()
    }

    /// Starts a transaction call; [`Event::Transaction`] with the id returned gives its
    /// outcome (at once for a call the state refuses, and for `begin_transaction`).
    pub fn transaction(&mut self, now: Instant, call: TxnCall) -> CallId {
        let op = call.op();
        let Some(t) = self.txn.as_mut() else {
            let id = CallId(u64::MAX);
            self.events.push_back(Event::Transaction {
                calls: vec![id],
                op,
                result: Err(ProduceError::transaction_state(format!(
                    "{}: the producer has no transactional.id",
                    op.name()
                ))),
            });
            return id;
        };
        let id = t.next_call_id();
        if let Some((kept, result)) = t.kept.take()
            && kept == op
        {
            // The outcome of the same call made earlier, which its callers did not wait for.
            self.events.push_back(Event::Transaction {
                calls: vec![id],
                op,
                result,
            });
            return id;
        }
        let refused = |why: String| Err(ProduceError::transaction_state(why));
        let result: Option<Result<(), ProduceError>> = match (&t.state, &t.call) {
            (_, Some((running, waiting))) if *running == op => {
                // The same call again: it joins the one under way.
                let mut waiting = waiting.clone();
                waiting.push(id);
                t.call = Some((op, waiting));
                None
            }
            (TxnState::Fatal(e), _) => Some(Err(e.clone())),
            (_, Some((running, _))) => Some(refused(format!(
                "{} while {} is unfinished",
                op.name(),
                running.name()
            ))),
            (state, None) => match (op, state) {
                (TxnOp::Init, TxnState::Uninitialized) => {
                    t.state = TxnState::Initializing;
                    t.call = Some((op, vec![id]));
                    None
                }
                (TxnOp::Init, _) => Some(refused(
                    "init_transactions: the producer is initialized already".to_owned(),
                )),
                (_, TxnState::Uninitialized | TxnState::Initializing) => Some(refused(format!(
                    "{}: call init_transactions first",
                    op.name()
                ))),
                (TxnOp::Begin, TxnState::Ready) => {
                    t.state = TxnState::InTransaction;
                    t.begun_at = Some(now);
                    t.aborted_by_coordinator = false;
                    t.added.clear();
                    t.started = false;
                    t.ended = false;
                    t.failures_seen = self
                        .stats
                        .records_failed
                        .load(std::sync::atomic::Ordering::Relaxed);
                    Some(Ok(()))
                }
                (TxnOp::Begin, _) => Some(refused(
                    "begin_transaction: a transaction is in progress already".to_owned(),
                )),
                (TxnOp::SendOffsets, TxnState::InTransaction) => {
                    let TxnCall::SendOffsets { offsets, group } = call else {
                        unreachable!("the op is the call's")
                    };
                    if offsets.is_empty() {
                        Some(Ok(()))
                    } else {
                        if t.group.as_ref().map(|g| g.group_id()) != Some(&group.group_id) {
                            t.group =
                                Some(CoordinatorLookup::new(group.group_id.clone(), t.backoff));
                        }
                        // Under transaction version 2 TxnOffsetCommit adds the offsets itself,
                        // and the transaction has begun at the coordinator with it.
                        let implicit = t.protocol == TxnProtocol::V2;
                        t.started |= implicit;
                        t.offsets = Some(OffsetsStep {
                            group,
                            offsets,
                            added: implicit,
                        });
                        t.call = Some((op, vec![id]));
                        None
                    }
                }
                (TxnOp::Commit, TxnState::InTransaction) => {
                    t.state = TxnState::Committing;
                    t.call = Some((op, vec![id]));
                    None
                }
                (TxnOp::Abort, TxnState::InTransaction | TxnState::AbortableError(_)) => {
                    t.state = TxnState::Aborting;
                    t.call = Some((op, vec![id]));
                    None
                }
                (TxnOp::SendOffsets | TxnOp::Commit, TxnState::AbortableError(e)) => {
                    Some(Err(e.clone()))
                }
                (_, _) => Some(refused(format!(
                    "{}: no transaction in progress",
                    op.name()
                ))),
            },
        };
        if let Some(result) = result {
            self.events.push_back(Event::Transaction {
                calls: vec![id],
                op,
                result,
            });
        }
        self.step(now);
        id
    }

    /// The outcome of call `op`, told in an [`Event::Transaction`], reached none of its callers
    /// (each gave up before reading it): kept for the same call made again, which gets it at
    /// once ([`transaction`](Self::transaction)); any other call drops it.
    pub fn unread(&mut self, op: TxnOp, result: Result<(), ProduceError>) {
        if let Some(t) = self.txn.as_mut() {
            t.kept = Some((op, result));
        }
    }

    /// Closing: a transaction left open is aborted, with nobody waiting for the abort. Called
    /// on every pass while the producer closes, so that a transaction still busy with a call
    /// when the close came (offsets being sent, a commit that then fails) is aborted once that
    /// call ends, rather than left open for the coordinator to time out.
    pub(super) fn txn_close(&mut self) {
        if let Some(t) = self.txn_mut()
            && matches!(
                t.state,
                TxnState::InTransaction | TxnState::AbortableError(_)
            )
            && t.call.is_none()
        {
            debug!(transactional_id = %t.id, "closing inside a transaction: aborting it");
            t.state = TxnState::Aborting;
            t.call = Some((TxnOp::Abort, Vec::new()));
        }
    }

    /// When a close gives up a transaction that is still ending: `delivery.timeout.ms` after
    /// the close, as a close waits for records no longer.
    pub(super) fn txn_give_up_at(&self) -> Option<Instant> {
        let t = self.txn.as_ref()?;
        if t.is_idle() {
            return None;
        }
        Some(self.closing_at? + self.config.delivery_timeout)
    }

    /// Whether records are taken now, or the error they fail with (always taken without a
    /// `transactional.id`).
    pub(super) fn txn_accepts_records(&self) -> Result<(), ProduceError> {
        self.txn.as_ref().map_or(Ok(()), |t| t.accepts_records())
    }

    /// The broker lost the producer's sequence: in a transaction, the transaction fails and
    /// its abort bumps the epoch. Returns false without a `transactional.id`.
    pub(super) fn txn_sequence_lost(&mut self, error: &ProduceError) -> bool {
        let Some(t) = self.txn.as_mut() else {
            return false;
        };
        t.bump_wanted = true;
        if matches!(t.state, TxnState::InTransaction | TxnState::Committing) {
            t.state = TxnState::AbortableError(error.clone().abortable());
        }
        true
    }

    /// A leader refused a batch of the transaction with INVALID_PRODUCER_EPOCH (`error`): the
    /// coordinator has aborted the transaction, so it cannot commit, and its abort asks for the
    /// next epoch without an EndTxn.
    pub(super) fn txn_aborted_by_coordinator(&mut self, error: &ProduceError) {
        // A transaction that an abort is ending already (its EndTxn waits for the batches in
        // flight) is over at the coordinator the same.
        // Under transaction version 2 the abort's EndTxn at the old epoch is answered with the
        // new one, so the abort goes as any other.
        if self.txn_sequence_lost(error)
            && let Some(t) = self.txn.as_mut()
            && t.protocol == TxnProtocol::V1
            && matches!(t.state, TxnState::AbortableError(_) | TxnState::Aborting)
        {
            t.aborted_by_coordinator = true;
        }
    }

    /// What an INVALID_PRODUCER_EPOCH about the transaction most likely means at `now`, and
    /// what to do: a transaction open for `transaction.timeout.ms` was most likely timed out;
    /// one younger than that was most likely ended by another producer taking the
    /// `transactional.id` over.
    pub(super) fn txn_epoch_advice(&self, now: Instant) -> String {
        let Some(t) = self.txn.as_ref() else {
            return String::new();
        };
        let timeout = t.timeout_ms;
        let open_ms = t
            .begun_at
            .map_or(0, |at| now.saturating_duration_since(at).as_millis());
        if open_ms >= timeout.max(0) as u128 {
            format!(
                "the transaction coordinator aborted the transaction, most likely because it \
                 stayed open longer than transaction.timeout.ms ({timeout} ms; it was open \
                 {open_ms} ms): abort the transaction (abort_transaction) and begin the next \
                 one, and keep transactions shorter or raise transaction.timeout.ms (at most the \
                 brokers' transaction.max.timeout.ms)"
            )
        } else {
            format!(
                "the transaction coordinator aborted the transaction before its \
                 transaction.timeout.ms ({timeout} ms) passed, most likely because another \
                 producer with the same transactional.id took over: abort the transaction \
                 (abort_transaction); if the abort fails as fenced, close this producer"
            )
        }
    }

    /// The producer is fenced or refused for good: every call and record fails with `error`.
    pub(super) fn txn_fatal(&mut self, error: ProduceError) {
        let error = error.fatal();
        warn!(error = %error, "the transactional producer cannot go on; close it");
        if let Some(t) = self.txn.as_mut() {
            t.state = TxnState::Fatal(error.clone());
        }
        self.fatal = Some(error);
    }

    /// The producer id and epoch the coordinator gave (InitProducerId, or EndTxn under
    /// transaction version 2): what the next batches carry, their sequences started afresh.
    fn new_epoch(&mut self, producer_id: i64, epoch: i16) {
        debug!(producer_id, epoch, transactional_id = %self.txn.as_ref().map_or("", |t| t.id.as_str()), "transactional producer id");
        if let Some(i) = self.idempotence.as_mut() {
            i.producer = Some((producer_id, epoch));
            i.sequences.clear();
        }
        self.acc.forget_sequences();
    }

    /// Ends the call under way with `result`.
    fn txn_answer(&mut self, result: Result<(), ProduceError>) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        // A call nobody made (the abort a close starts) has no caller to tell.
        if let Some((op, waiting)) = t.call.take()
            && !waiting.is_empty()
        {
            self.events.push_back(Event::Transaction {
                calls: waiting,
                op,
                result,
            });
        }
    }

    /// The transaction's part of a pass: before sending, decide what the transaction needs
    /// next and ask for it.
    pub(super) fn txn_step(&mut self, now: Instant) {
        let give_up = self.txn_give_up_at().is_some_and(|at| at <= now);
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        // A fatal error of the producer (a fenced batch) is the transaction's too.
        if let Some(fatal) = self.fatal.clone()
            && t.fatal_error().is_none()
        {
            t.state = TxnState::Fatal(fatal);
        }
        if let Some(e) = t.fatal_error().cloned() {
            t.offsets = None;
            self.txn_answer(Err(e));
            return;
        }
        if self.closing {
            self.txn_close();
        }
        let t = self.txn.as_mut().expect("checked above");
        if give_up {
            let error = ProduceError::new(
                ErrorKind::Closed,
                false,
                format!(
                    "the producer closed while the transaction of {} was still ending, and \
                     gave it up after delivery.timeout.ms: the coordinator aborts it once \
                     transaction.timeout.ms passes, or when the next producer with this \
                     transactional.id initializes",
                    t.id
                ),
            );
            warn!("{error}");
            t.out = None;
            t.state = TxnState::Fatal(error.clone());
            self.txn_answer(Err(error));
            return;
        }
        // A record of the transaction failed: it cannot commit.
        let failed = self
            .stats
            .records_failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if failed > t.failures_seen {
            t.failures_seen = failed;
            if matches!(t.state, TxnState::InTransaction | TxnState::Committing) {
                let cause = self.events.iter().rev().find_map(|e| match e {
                    Event::Answer { result: Err(e), .. } => Some(e.clone()),
                    _ => None,
                });
                let error = match cause {
                    Some(e) => e.abortable(),
                    None => ProduceError::new(
                        ErrorKind::Broker,
                        false,
                        "a record of the transaction failed",
                    )
                    .abortable(),
                };
                debug!(error = %error, "a record failed: the transaction must be aborted");
                t.state = TxnState::AbortableError(error);
            }
        }
        let t = self.txn.as_mut().expect("checked above");
        match &t.state {
            TxnState::AbortableError(e) => {
                let e = e.clone();
                if t.call.as_ref().is_some_and(|(op, _)| *op == TxnOp::Commit) {
                    self.txn_answer(Err(e.clone()));
                }
                let t = self.txn.as_mut().expect("checked above");
                if t.call
                    .as_ref()
                    .is_some_and(|(op, _)| *op == TxnOp::SendOffsets)
                    && !matches!(t.out, Some((_, Out::AddOffsets | Out::CommitOffsets)))
                {
                    t.offsets = None;
                    self.txn_answer(Err(e.clone()));
                }
                // Nothing more of this transaction goes out.
                self.fail_unsent(&e);
            }
            TxnState::Aborting => {
                let error = ProduceError::transaction_state(
                    "the transaction was aborted before this record was sent",
                )
                .abortable();
                self.fail_unsent(&error);
            }
            _ => {}
        }
        self.txn_lookups(now);
        self.txn_send(now);
    }

    /// Fails every record and batch of the transaction not sent yet.
    fn fail_unsent(&mut self, error: &ProduceError) {
        let failed = self
            .stats
            .records_failed
            .load(std::sync::atomic::Ordering::Relaxed);
        self.fail_everything_waiting(error);
        // These failures are the abort's, not news for the transaction.
        let now_failed = self
            .stats
            .records_failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.txn.as_mut()
            && t.failures_seen == failed
        {
            t.failures_seen = now_failed;
        }
    }

    fn txn_lookups(&mut self, now: Instant) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        let wants = t.wants_coordinator();
        if t.coordinator.is_due(now, wants) {
            let id = self.ids.next_id();
            t.coordinator.sent(id);
            self.requests.push_back(Outgoing {
                id,
                target: Target::Any,
                request: Request::FindCoordinator {
                    key: t.id.clone(),
                    key_type: coordinator::TRANSACTION,
                },
                timeout: None,
            });
        }
        let wants_group = t.wants_group_coordinator();
        if let Some(g) = t.group.as_mut()
            && g.is_due(now, wants_group)
        {
            let id = self.ids.next_id();
            g.sent(id);
            self.requests.push_back(Outgoing {
                id,
                target: Target::Any,
                request: Request::FindCoordinator {
                    key: g.group_id().to_owned(),
                    key_type: coordinator::GROUP,
                },
                timeout: None,
            });
        }
    }

    /// Sends the transaction's next request when one is due and none is out.
    fn txn_send(&mut self, now: Instant) {
        let in_flight = !self.in_flight_requests.is_empty();
        let idle = self.is_idle_records();
        let producer = self.idempotence.as_ref().and_then(|i| i.producer);
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if t.settling.as_ref().is_some_and(|s| now >= s.until) {
            t.settling = None;
        }
        // Only what waits to join the transaction waits for the markers (a commit of nothing
        // goes on below); looked for only while they may be unwritten.
        if let Some(settling) = &t.settling
            && matches!(t.state, TxnState::InTransaction | TxnState::Committing)
            && (t.offsets.is_some() || self.acc.partitions().any(|tp| !t.added.contains(tp)))
        {
            if t.out.is_some() || now < settling.next {
                return;
            }
            let Some(coordinator) = t.coordinator.known().cloned() else {
                return;
            };
            let request = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(t.id.clone()))]);
            // Not tracked as the transaction's tries: a failed ask lets the transaction go.
            t.send(
                &mut self.ids,
                &mut self.requests,
                Out::Settle,
                Request::DescribeTransactions(request),
                Target::Coordinator(coordinator),
                // Its answer is of no use past the wait.
                Some(SETTLE_FOR),
            );
            return;
        }
        if t.protocol == TxnProtocol::V2
            && matches!(t.state, TxnState::InTransaction | TxnState::Committing)
        {
            // Under transaction version 2 the first Produce request of a partition adds it:
            // its batches may go at once, whatever else the transaction waits for, and the
            // transaction has begun.
            for tp in self.acc.partitions() {
                if !t.added.contains(tp) {
                    t.added.insert(tp.clone());
                    t.started = true;
                }
            }
        }
        if t.out.is_some() || !t.tries.is_due(now) {
            return;
        }
        let Some(coordinator) = t.coordinator.known().cloned() else {
            return;
        };
        let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
        let target = Target::Coordinator(coordinator);
        let txn_id = || TransactionalId(StrBytes::from_string(t.id.clone()));
        let (out, request, target) = match &t.state {
            TxnState::Initializing => {
                let request = InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id()))
                    .with_transaction_timeout_ms(t.timeout_ms)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
                (
                    Out::Init { bump: false },
                    Request::InitProducerId(request),
                    target,
                )
            }
            TxnState::InTransaction | TxnState::Committing => {
                let wanted: Vec<TopicPartition> = self
                    .acc
                    .partitions()
                    .filter(|tp| !t.added.contains(*tp))
                    .cloned()
                    .collect();
                if !wanted.is_empty() {
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for tp in &wanted {
                        topics.entry(&tp.topic).or_default().push(tp.partition);
                    }
                    let request = AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(txn_id())
                        .with_v3_and_below_producer_id(ProducerId(producer_id))
                        .with_v3_and_below_producer_epoch(producer_epoch)
                        .with_v3_and_below_topics(
                            topics
                                .into_iter()
                                .map(|(name, partitions)| {
                                    AddPartitionsToTxnTopic::default()
                                        .with_name(TopicName(StrBytes::from_string(
                                            name.to_owned(),
                                        )))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        );
                    (
                        Out::AddPartitions(wanted),
                        Request::AddPartitionsToTxn(request),
                        target,
                    )
                } else if let Some(step) = &t.offsets {
                    if !step.added {
                        let request = AddOffsetsToTxnRequest::default()
                            .with_transactional_id(txn_id())
                            .with_producer_id(ProducerId(producer_id))
                            .with_producer_epoch(producer_epoch)
                            .with_group_id(GroupId(StrBytes::from_string(
                                step.group.group_id.clone(),
                            )));
                        (Out::AddOffsets, Request::AddOffsetsToTxn(request), target)
                    } else {
                        let Some(group_coordinator) =
                            t.group.as_ref().and_then(|g| g.known().cloned())
                        else {
                            return;
                        };
                        let request = txn_offset_commit(
                            &t.id,
                            (producer_id, producer_epoch),
                            &step.group,
                            &step.offsets,
                        );
                        (
                            Out::CommitOffsets,
                            Request::TxnOffsetCommit(request, t.protocol),
                            Target::Coordinator(group_coordinator),
                        )
                    }
                } else if matches!(t.state, TxnState::Committing) && idle && !t.ended {
                    if !t.started {
                        // Nothing was added: there is nothing to end at the coordinator.
                        t.state = TxnState::Ready;
                        self.txn_answer(Ok(()));
                        return;
                    }
                    let request = EndTxnRequest::default()
                        .with_transactional_id(txn_id())
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(producer_epoch)
                        .with_committed(true);
                    let request = Request::EndTxn(request, t.protocol);
                    (Out::End { commit: true }, request, target)
                } else {
                    return;
                }
            }
            TxnState::Aborting => {
                // Batches in flight are answered first: their fate is part of the transaction.
                if in_flight {
                    return;
                }
                if t.started && !t.ended && !t.aborted_by_coordinator {
                    let request = EndTxnRequest::default()
                        .with_transactional_id(txn_id())
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(producer_epoch)
                        .with_committed(false);
                    let request = Request::EndTxn(request, t.protocol);
                    (Out::End { commit: false }, request, target)
                } else if t.bump_wanted {
                    let request = InitProducerIdRequest::default()
                        .with_transactional_id(Some(txn_id()))
                        .with_transaction_timeout_ms(t.timeout_ms)
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(producer_epoch);
                    (
                        Out::Init { bump: true },
                        Request::InitProducerId(request),
                        target,
                    )
                } else {
                    t.state = TxnState::Ready;
                    t.offsets = None;
                    self.txn_answer(Ok(()));
                    return;
                }
            }
            _ => return,
        };
        t.track(out.api());
        t.send(
            &mut self.ids,
            &mut self.requests,
            out,
            request,
            target,
            None,
        );
    }

    /// Records of the transaction all done: none waiting for metadata, batched or in flight.
    fn is_idle_records(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// The answer to one of the transaction's requests (check [`Transactions::owns`] first).
    pub(super) fn txn_answered(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<super::Response, RequestFailure>,
    ) {
        use super::Response as R;
        let random = self.rng.f64();
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if t.coordinator.is_lookup(id) || t.group.as_ref().is_some_and(|g| g.is_lookup(id)) {
            let found = match result {
                Ok(R::FindCoordinator(Ok(found))) => Ok(found),
                Ok(R::FindCoordinator(Err(e))) => Err(RequestFailure::from(e)),
                Ok(_) => Err(RequestFailure::fatal("not a FindCoordinator answer")),
                Err(f) => Err(f),
            };
            let lookup = if t.coordinator.is_lookup(id) {
                &mut t.coordinator
            } else {
                t.group.as_mut().expect("checked above")
            };
            let what = format!("finding {}", lookup_name(lookup));
            if let Lookup::Failed {
                error_code,
                message,
            } = lookup.handle_answer(now, found, random)
            {
                let error = match error_code {
                    Some(code) => {
                        ProduceError::broker(ApiKey::FindCoordinator, code, None, &what, false)
                    }
                    None => ProduceError::new(
                        ErrorKind::Unsupported,
                        false,
                        format!("{what}: {}", message.unwrap_or_default()),
                    ),
                };
                self.txn_fatal(error);
            }
            return;
        }
        let Some((_, out)) = t.out.take() else {
            return;
        };
        match out {
            Out::Init { bump } => {
                let what = if bump {
                    "bumping the producer epoch after an abort"
                } else {
                    "init_transactions"
                };
                let answer = answer_of(result, what, |r| match r {
                    R::InitProducerId(a) => Some(a),
                    _ => None,
                });
                let answer = answer.map(|(r, level)| (r.error_code, (r, level)));
                match self.txn_verdict(now, random, answer, ApiKey::InitProducerId, what) {
                    Some((r, level)) if r.producer_id.0 >= 0 => {
                        self.new_epoch(r.producer_id.0, r.producer_epoch);
                        let t = self.txn.as_mut().expect("checked above");
                        if !bump {
                            t.protocol = TxnProtocol::of_feature(level);
                            debug!(transactional_id = %t.id, protocol = ?t.protocol, transaction_version = level, "transaction protocol");
                        }
                        t.bump_wanted = false;
                        t.aborted_by_coordinator = false;
                        t.state = TxnState::Ready;
                        t.offsets = None;
                        self.txn_answer(Ok(()));
                    }
                    Some(_) => self.txn_fatal(ProduceError::new(
                        ErrorKind::Corrupt,
                        false,
                        format!("{what}: the coordinator answered no producer id"),
                    )),
                    None => {}
                }
            }
            Out::AddPartitions(partitions) => {
                let answer = answer_of(
                    result,
                    "adding partitions to the transaction",
                    |r| match r {
                        R::AddPartitionsToTxn(a) => Some(a),
                        _ => None,
                    },
                );
                self.partitions_added(now, random, partitions, answer);
            }
            Out::AddOffsets => {
                let what = "adding the group's offsets to the transaction";
                let answer = answer_of(result, what, |r| match r {
                    R::AddOffsetsToTxn(a) => Some(a),
                    _ => None,
                });
                if self
                    .txn_verdict(
                        now,
                        random,
                        answer.map(|r| (r.error_code, r)),
                        ApiKey::AddOffsetsToTxn,
                        what,
                    )
                    .is_some()
                {
                    let t = self.txn.as_mut().expect("checked above");
                    t.started = true;
                    if let Some(step) = t.offsets.as_mut() {
                        step.added = true;
                    }
                }
            }
            Out::CommitOffsets => {
                let answer = answer_of(
                    result,
                    "committing offsets in the transaction",
                    |r| match r {
                        R::TxnOffsetCommit(a) => Some(a),
                        _ => None,
                    },
                );
                self.offsets_committed(now, random, answer);
            }
            Out::Settle => {
                let preparing = settle_answer(&t.id, result);
                if preparing.is_ok() {
                    Counters::add(&self.stats.marker_checks, 1);
                }
                match preparing {
                    Ok(true) => {
                        if let Some(s) = t.settling.as_mut() {
                            if s.asks == 0 {
                                Counters::add(&self.stats.marker_waits, 1);
                            }
                            s.next = now + settle_backoff().delay(s.asks, random);
                            s.asks += 1;
                        }
                    }
                    Ok(false) => t.settling = None,
                    Err(Settle::Unanswerable(why)) => {
                        debug!(transactional_id = %t.id, "{why}: transactions go without asking whether the last one's markers are written");
                        t.settle_unanswerable = true;
                        t.settling = None;
                    }
                    Err(Settle::Failed(why)) => {
                        debug!(transactional_id = %t.id, "{why}: the transaction goes without waiting for the last one's markers");
                        t.settling = None;
                    }
                }
            }
            Out::End { commit } => {
                let what = if commit {
                    "committing the transaction"
                } else {
                    "aborting the transaction"
                };
                let answer = answer_of(result, what, |r| match r {
                    R::EndTxn(a) => Some(a),
                    _ => None,
                });
                if let Some(r) = self.txn_verdict(
                    now,
                    random,
                    answer.map(|r| (r.error_code, r)),
                    ApiKey::EndTxn,
                    what,
                ) {
                    // Under transaction version 2 the coordinator bumped the epoch (or, once
                    // the epoch ran out, gave a new producer id): the next transaction goes
                    // under it, its sequences from 0.
                    let t = self.txn.as_mut().expect("checked above");
                    if t.protocol == TxnProtocol::V2 && r.producer_id.0 >= 0 {
                        t.bump_wanted = false;
                        self.new_epoch(r.producer_id.0, r.producer_epoch);
                    }
                    let t = self.txn.as_mut().expect("checked above");
                    t.ended = true;
                    if !t.settle_unanswerable {
                        t.settling = Some(Settling {
                            until: now + SETTLE_FOR,
                            next: now,
                            asks: 0,
                        });
                    }
                    if commit {
                        t.state = TxnState::Ready;
                        t.offsets = None;
                        self.txn_answer(Ok(()));
                    }
                    // An abort goes on in the next pass: an epoch bump if one is wanted, then
                    // Ready.
                    else {
                        t.started = false;
                    }
                }
            }
        }
    }

    /// What an answer with one error code means: `Some(answer)` when it succeeded; otherwise
    /// the retry, lookup, abortable or fatal error is set up and `None` returned.
    fn txn_verdict<R>(
        &mut self,
        now: Instant,
        random: f64,
        answer: Result<(i16, R), ProduceError>,
        api: ApiKey,
        what: &str,
    ) -> Option<R> {
        let t = self.txn.as_mut()?;
        let (code, r) = match answer {
            Ok(a) => a,
            Err(e) if e.is_retriable() => {
                t.coordinator.lost();
                t.failed(now, format!("{what}: {e}"), random);
                return None;
            }
            Err(e) => {
                self.txn_fatal(e);
                return None;
            }
        };
        let error = || ProduceError::broker(api, code, None, what, false);
        match verdict(code) {
            Verdict::Ok => {
                t.succeeded(now);
                Some(r)
            }
            Verdict::Relookup => {
                t.coordinator.lost();
                t.failed(now, error().to_string(), random);
                None
            }
            Verdict::Retry => {
                t.failed(now, error().to_string(), random);
                None
            }
            Verdict::Abortable => {
                let e = error().abortable();
                self.txn_abortable(e);
                None
            }
            Verdict::Fatal => {
                self.txn_fatal(error());
                None
            }
        }
    }

    /// The transaction cannot commit: `error` is what its commit, and its records, fail with.
    fn txn_abortable(&mut self, error: ProduceError) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        match t.state {
            TxnState::InTransaction | TxnState::Committing => {
                debug!(error = %error, "the transaction must be aborted");
                t.state = TxnState::AbortableError(error.clone());
                if t.call
                    .as_ref()
                    .is_some_and(|(op, _)| *op == TxnOp::SendOffsets)
                {
                    t.offsets = None;
                    self.txn_answer(Err(error));
                }
            }
            // Aborting already (a refused EndTxn abort is fatal, not this).
            _ => {}
        }
    }

    fn partitions_added(
        &mut self,
        now: Instant,
        random: f64,
        partitions: Vec<TopicPartition>,
        answer: Result<AddPartitionsToTxnResponse, ProduceError>,
    ) {
        let what = "adding partitions to the transaction";
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        let r = match answer {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                t.coordinator.lost();
                t.failed(now, format!("{what}: {e}"), random);
                return;
            }
            Err(e) => {
                self.txn_fatal(e);
                return;
            }
        };
        let mut codes: BTreeMap<(&str, i32), i16> = BTreeMap::new();
        for topic in &r.results_by_topic_v3_and_below {
            for p in &topic.results_by_partition {
                codes.insert(
                    (topic.name.0.as_str(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
        let mut worst = Verdict::Ok;
        let mut worst_code = 0;
        let mut added = Vec::new();
        for tp in &partitions {
            // A partition the answer left out is treated as one the broker did not try.
            let code = codes
                .get(&(tp.topic.as_str(), tp.partition))
                .copied()
                .unwrap_or(ResponseError::OperationNotAttempted.code());
            // OPERATION_NOT_ATTEMPTED: refused only because another partition was;
            // UNKNOWN_TOPIC_OR_PARTITION: not known to the coordinator yet. Both are retried.
            let v = if code == ResponseError::OperationNotAttempted.code()
                || code == ResponseError::UnknownTopicOrPartition.code()
            {
                Verdict::Retry
            } else {
                verdict(code)
            };
            if v == Verdict::Ok {
                added.push(tp.clone());
            }
            let rank = |v: Verdict| match v {
                Verdict::Ok => 0,
                Verdict::Retry => 1,
                Verdict::Relookup => 2,
                Verdict::Abortable => 3,
                Verdict::Fatal => 4,
            };
            if rank(v) > rank(worst) || (rank(v) == rank(worst) && worst_code == 0) {
                if rank(v) > rank(worst) {
                    worst_code = code;
                }
                worst = v;
            }
        }
        if !added.is_empty() {
            t.started = true;
            t.added.extend(added);
        }
        let error =
            |code: i16| ProduceError::broker(ApiKey::AddPartitionsToTxn, code, None, what, false);
        match worst {
            Verdict::Ok => t.succeeded(now),
            Verdict::Retry => t.failed(now, error(worst_code).to_string(), random),
            Verdict::Relookup => {
                t.coordinator.lost();
                t.failed(now, error(worst_code).to_string(), random);
            }
            Verdict::Abortable => self.txn_abortable(error(worst_code).abortable()),
            Verdict::Fatal => self.txn_fatal(error(worst_code)),
        }
    }

    fn offsets_committed(
        &mut self,
        now: Instant,
        random: f64,
        answer: Result<TxnOffsetCommitResponse, ProduceError>,
    ) {
        let what = "committing offsets in the transaction";
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        let r = match answer {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                if let Some(g) = t.group.as_mut() {
                    g.lost();
                }
                t.failed(now, format!("{what}: {e}"), random);
                return;
            }
            Err(e) => {
                self.txn_abortable(e.abortable());
                return;
            }
        };
        let mut codes: BTreeMap<(&str, i32), i16> = BTreeMap::new();
        for topic in &r.topics {
            for p in &topic.partitions {
                codes.insert((topic.name.0.as_str(), p.partition_index), p.error_code);
            }
        }
        let Some(step) = t.offsets.as_mut() else {
            return;
        };
        let mut retry = Vec::new();
        let mut relookup = false;
        let mut abortable = None;
        let mut fatal = None;
        for o in step.offsets.drain(..) {
            let code = codes
                .get(&(o.partition.topic.as_str(), o.partition.partition))
                .copied()
                // Left out of the answer: not known to be committed.
                .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
            use ResponseError as E;
            let v = match ResponseError::try_from_code(code) {
                None => Verdict::Ok,
                // The consumer is no longer the member it was: what it consumed may be another
                // member's now (KIP-447).
                Some(
                    E::UnknownMemberId
                    | E::IllegalGeneration
                    | E::FencedInstanceId
                    | E::RebalanceInProgress
                    | E::StaleMemberEpoch,
                ) => Verdict::Abortable,
                Some(E::UnknownTopicOrPartition) => Verdict::Retry,
                Some(_) => verdict(code),
            };
            match v {
                Verdict::Ok => {}
                Verdict::Retry => retry.push(o),
                Verdict::Relookup => {
                    relookup = true;
                    retry.push(o);
                }
                Verdict::Abortable => {
                    abortable.get_or_insert((code, o.partition.clone()));
                }
                Verdict::Fatal => {
                    fatal.get_or_insert((code, o.partition.clone()));
                }
            }
        }
        if let Some((code, tp)) = fatal {
            self.txn_fatal(ProduceError::broker(
                ApiKey::TxnOffsetCommit,
                code,
                Some(tp),
                what,
                false,
            ));
            return;
        }
        if let Some((code, tp)) = abortable {
            self.txn_abortable(
                ProduceError::broker(ApiKey::TxnOffsetCommit, code, Some(tp), what, false)
                    .abortable(),
            );
            return;
        }
        if retry.is_empty() {
            t.offsets = None;
            t.succeeded(now);
            self.txn_answer(Ok(()));
            return;
        }
        let cause = format!("{what}: {} partitions not committed yet", retry.len());
        step.offsets = retry;
        if relookup && let Some(g) = t.group.as_mut() {
            g.lost();
        }
        t.failed(now, cause, random);
    }
}

/// The pool's answer to a transaction request, taken out of `result` by `pick` (`None`: an
/// answer of another kind), or the producer's error for it.
fn answer_of<A>(
    result: Result<super::Response, RequestFailure>,
    what: &str,
    pick: impl FnOnce(super::Response) -> Option<Result<A, kcon_pool::Error>>,
) -> Result<A, ProduceError> {
    match result {
        Ok(r) => match pick(r) {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => Err(ProduceError::pool(e, what)),
            None => Err(ProduceError::new(
                ErrorKind::Corrupt,
                false,
                format!("{what}: the answer is not to this request"),
            )),
        },
        Err(f) => Err(ProduceError::new(
            ErrorKind::Transport,
            f.retriable,
            format!("{what}: {}", f.reason),
        )),
    }
}

fn lookup_name(lookup: &CoordinatorLookup) -> String {
    if lookup.key_type() == coordinator::TRANSACTION {
        format!("the coordinator of transactional id {}", lookup.group_id())
    } else {
        format!("the coordinator of group {}", lookup.group_id())
    }
}

/// TxnOffsetCommit with the consumer's group metadata; the driver leaves out what the version
/// it goes at lacks.
fn txn_offset_commit(
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    group: &ConsumerGroupMetadata,
    offsets: &[TxnOffset],
) -> TxnOffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
    for o in offsets {
        topics.entry(&o.partition.topic).or_default().push(
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(o.partition.partition)
                .with_committed_offset(o.offset)
                .with_committed_leader_epoch(o.leader_epoch.unwrap_or(-1))
                .with_committed_metadata(o.metadata.clone().map(StrBytes::from_string)),
        );
    }
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_owned(),
        )))
        .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_generation_id(group.generation_id)
        .with_member_id(StrBytes::from_string(group.member_id.clone()))
        .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// TxnOffsetCommit as version `version` can carry it: below v3 there is no group metadata
/// (the coordinator then checks the group alone), and below v2 no leader epoch.
pub(crate) fn txn_offset_commit_at(
    mut request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitRequest {
    if version < 3 {
        request.generation_id = -1;
        request.member_id = StrBytes::default();
        request.group_instance_id = None;
    }
    for topic in &mut request.topics {
        for p in &mut topic.partitions {
            if version < 2 {
                p.committed_leader_epoch = -1;
            }
        }
    }
    request
}

/// Why a DescribeTransactions told nothing of the markers.
enum Settle {
    /// The coordinator cannot say, now or later (the API unsupported, the request refused).
    Unanswerable(String),
    /// This time only (a lost connection, a coordinator moving).
    Failed(String),
}

/// Whether the coordinator's answer to DescribeTransactions says the last transaction of
/// `id` is still being ended (`PrepareCommit`, `PrepareAbort`, `PrepareEpochFence`: its
/// markers are not all written).
fn settle_answer(
    id: &str,
    result: Result<super::Response, RequestFailure>,
) -> Result<bool, Settle> {
    let answer: DescribeTransactionsResponse = match result {
        Ok(super::Response::DescribeTransactions(Ok(a))) => a,
        Ok(super::Response::DescribeTransactions(Err(e))) if e.is_retriable() => {
            return Err(Settle::Failed(format!("DescribeTransactions: {e}")));
        }
        Ok(super::Response::DescribeTransactions(Err(e))) => {
            return Err(Settle::Unanswerable(format!("DescribeTransactions: {e}")));
        }
        Ok(_) => {
            return Err(Settle::Failed(
                "not a DescribeTransactions answer".to_owned(),
            ));
        }
        Err(f) => return Err(Settle::Failed(format!("DescribeTransactions: {f}"))),
    };
    let Some(state) = answer
        .transaction_states
        .iter()
        .find(|s| s.transactional_id.0.as_str() == id)
    else {
        return Err(Settle::Failed(
            "DescribeTransactions answered without the transactional id".to_owned(),
        ));
    };
    match ResponseError::try_from_code(state.error_code) {
        None => Ok(state.transaction_state.as_str().starts_with("Prepare")),
        Some(e) if e.is_retriable() => Err(Settle::Failed(format!("DescribeTransactions: {e}"))),
        Some(e) => Err(Settle::Unanswerable(format!("DescribeTransactions: {e}"))),
    }
}
