//! The producer's task: [`SenderMachine`], which decides everything, run by
//! [`kcon_pool::driver::drive`] with the glue here. The handles queue their commands in
//! order ([`crate::inbox`]) and ring the task's channel when it must take them now; at the
//! start of every round the glue feeds the machine their records (those that came together in
//! one pass),
//! flushes, transaction calls and close, carries out the machine's requests (Produce,
//! InitProducerId, a metadata refresh, the transaction coordinator's) over the pool, and
//! answers whoever waits when the machine says a record, a flush or a call is done.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::machine::Machine;
use kcon_core::{Outgoing, RequestFailure};
use kcon_pool::driver::{Drive, drive};
use kcon_pool::precise_timer::PreciseTimer;
use kcon_pool::{AutoCreate, BrokerTarget, Pool};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::config::ProducerConfig;
use crate::deliveries::{OpenGroups, Reply};
use crate::error::{ErrorKind, ProduceError};
use crate::hooks::{self, Hooks};
use crate::inbox::{Inbox, Ring};
use crate::machine::{
    self, CallId, Event, FlushId, Request, Response, SenderMachine, TxnCall, TxnOp,
};
use crate::packed::PackedHeaders;
use crate::producer::Counters;
use crate::record::ProducerRecord;

/// What a handle asks of the task.
pub(crate) enum Command {
    /// Queue a record.
    Record(Incoming),
    /// Queue records, in their order.
    Records(Vec<Incoming>),
    /// Answer once every record queued before is done.
    Flush(oneshot::Sender<()>),
    /// Refuse new records, finish the queued ones, answer (with the failures of those queued
    /// before), stop.
    Close(oneshot::Sender<Result<(), ProduceError>>),
    /// A transaction call: answer with its outcome.
    Transaction(TxnCall, oneshot::Sender<Result<(), ProduceError>>),
    /// The outcome of a transaction call that reached its caller's channel after all, but
    /// that the caller gave up before reading: kept for the same call made again.
    Unread(TxnOp, Result<(), ProduceError>),
}

/// A record as a handle queued it.
pub(crate) struct Incoming {
    pub(crate) record: ProducerRecord,
    /// The record's headers, packed on the sending thread (its own `headers` then empty).
    pub(crate) packed: Option<PackedHeaders>,
    pub(crate) size: usize,
    pub(crate) reply: Reply,
    /// Its room in `buffer.memory`, taken from the semaphore by the handle and given back by
    /// the task when the record is done.
    pub(crate) room: u32,
    /// When it was queued, for a record left in the queue while the task waited for a linger
    /// (`None`: the task takes it at once, and stamps it then).
    pub(crate) queued: Option<std::time::Instant>,
}

impl Incoming {
    /// The record as the machine holds it, received when it was queued if it was left in the
    /// queue for a linger's end, else at `now`, when the task took it; without a timestamp of
    /// its own it takes the wall clock's `wall_ms` then, less the time it waited in the queue.
    /// The caller's side reads a clock only for a record left so.
    fn into_machine(mut self, now: std::time::Instant, wall_ms: i64) -> machine::Incoming<Waiter> {
        let received = match self.queued {
            Some(at) => {
                let waited = now.saturating_duration_since(at).as_millis();
                self.record.timestamp.get_or_insert(
                    wall_ms.saturating_sub(i64::try_from(waited).unwrap_or(i64::MAX)),
                );
                at
            }
            None => now,
        };
        machine::Incoming {
            record: self.record,
            packed: self.packed,
            size: self.size,
            waiter: Waiter {
                reply: self.reply,
                room: self.room,
            },
            received,
        }
    }
}

/// Who waits for a record, as the machine holds it until the record is done.
pub(crate) struct Waiter {
    reply: Reply,
    /// The record's room in `buffer.memory`, given back when the record is answered. (A
    /// record the task still holds when it ends keeps its room: the semaphore is closed
    /// then.)
    room: u32,
}

/// The producer task's glue on [`kcon_pool::driver::drive`]: how the machine's requests go
/// through the pool, what the handles' commands do, and who hears the machine's events.
pub(crate) struct Sender {
    /// Whether its Metadata requests ask for a missing topic to be created.
    auto_create: AutoCreate,
    /// The handles' commands, in order.
    inbox: Arc<Inbox>,
    /// The commands taken off the queue this round (kept for its allocation).
    taken: VecDeque<Command>,
    /// The records taken off the queue this round, handed to the machine together, at most
    /// [`HANDED_AT`] at a time.
    records: Vec<machine::Incoming<Waiter>>,
    /// The groups of slots of records sent alone, and the `send_all` calls, that records are
    /// answered through; dropped with the task, they answer what is left as closed.
    open: OpenGroups,
    flushes: HashMap<FlushId, oneshot::Sender<()>>,
    /// Transaction calls under way.
    calls: HashMap<CallId, oneshot::Sender<Result<(), ProduceError>>>,
    close_waiters: Vec<oneshot::Sender<Result<(), ProduceError>>>,
    /// Once closing: how many records failed since, and the first of their failures (a record
    /// refused because the producer is closing is its sender's to hear, not the close's).
    close_failures: Option<(usize, Option<ProduceError>)>,
    /// Every handle is gone (the doorbell's channel closed): once their queue is empty the
    /// producer closes.
    handles_gone: bool,
    /// That close was made.
    closed_when_gone: bool,
    /// The room in `buffer.memory` of the records answered since the last round ended, given
    /// back at once when it ends: one release of the semaphore (and one take of its lock)
    /// rather than one per record.
    freed: usize,
    /// `buffer.memory`'s room, taken by the handles. Closed when the task ends: a `send`
    /// waiting for room then fails as the producer being closed.
    memory: Arc<Semaphore>,
    /// Told each record's outcome.
    hooks: Hooks,
    /// The timer the task's waits end by, given to the driver as the task starts: a batch's
    /// linger ends on time.
    timer: Option<PreciseTimer>,
}

/// Sends one of the machine's requests over the pool, shaped for the version the broker
/// speaks where that matters.
async fn carry(
    pool: &Pool,
    auto_create: AutoCreate,
    target: BrokerTarget,
    request: Request,
) -> Response {
    match request {
        Request::Produce(r, None) => Response::Produce(pool.send(target, &r).await),
        Request::Produce(r, Some(protocol)) => {
            let (lo, hi) = protocol.versions(ApiKey::Produce);
            Response::Produce(send_within(pool, target, &r, lo, hi).await)
        }
        Request::InitProducerId(r) => {
            Response::InitProducerId(init_producer_id(pool, target, r).await)
        }
        // Asking, by the producer's rule, that a missing topic produced to be created where
        // the brokers create topics on demand.
        Request::Metadata(scope) => {
            Response::Metadata(pool.refresh_metadata_with(scope, auto_create).await)
        }
        Request::FindCoordinator { key, key_type } => {
            Response::FindCoordinator(find_coordinator(pool, target, &key, key_type).await)
        }
        Request::AddPartitionsToTxn(r) => Response::AddPartitionsToTxn(pool.send(target, &r).await),
        Request::AddOffsetsToTxn(r) => Response::AddOffsetsToTxn(pool.send(target, &r).await),
        Request::TxnOffsetCommit(r, protocol) => {
            let (lo, hi) = protocol.versions(ApiKey::TxnOffsetCommit);
            let answer = async {
                let conn = pool.connection(target).await?;
                let v = conn.version_within(ApiKey::TxnOffsetCommit, lo, hi)?;
                conn.send_within(&machine::txn_offset_commit_at(r, v), lo, hi)
                    .await
            };
            Response::TxnOffsetCommit(answer.await)
        }
        Request::EndTxn(r, protocol) => {
            let (lo, hi) = protocol.versions(ApiKey::EndTxn);
            Response::EndTxn(send_within(pool, target, &r, lo, hi).await)
        }
        Request::DescribeTransactions(r) => {
            Response::DescribeTransactions(pool.send(target, &r).await)
        }
    }
}

/// `request` at the highest version of `lo..=hi` the broker of `target` speaks.
async fn send_within<R: kcon_codec::kafka_protocol::protocol::Request + 'static>(
    pool: &Pool,
    target: BrokerTarget,
    request: &R,
    lo: i16,
    hi: i16,
) -> Result<R::Response, kcon_pool::Error>
where
    R::Response: 'static,
{
    pool.connection(target)
        .await?
        .send_within(request, lo, hi)
        .await
}

/// InitProducerId; one that bumps the epoch of a producer id it names needs v3 (KIP-360). The
/// answer comes with the cluster's finalized `transaction.version` as the answering broker
/// reported it in ApiVersions (0 when it reported none), which a transactional producer's
/// protocol follows.
async fn init_producer_id(
    pool: &Pool,
    target: BrokerTarget,
    r: InitProducerIdRequest,
) -> Result<(InitProducerIdResponse, i16), kcon_pool::Error> {
    let conn = pool.connection(target).await?;
    let v = conn.version(ApiKey::InitProducerId)?;
    if r.producer_id.0 >= 0 && v < 3 {
        return Err(kcon_pool::Error::Unsupported {
            peer: conn.peer().clone(),
            api_key: ApiKey::InitProducerId as i16,
            ours: (3, v),
            theirs: conn.versions().offered(ApiKey::InitProducerId),
        });
    }
    let transaction_version = conn
        .versions()
        .finalized("transaction.version")
        .unwrap_or(0);
    Ok((conn.send(&r).await?, transaction_version))
}

/// FindCoordinator of `key`; a transaction coordinator needs v1 (the key type).
async fn find_coordinator(
    pool: &Pool,
    target: BrokerTarget,
    key: &str,
    key_type: i8,
) -> Result<FoundCoordinator, kcon_pool::Error> {
    let conn = pool.connection(target).await?;
    conn.find_coordinator(key, key_type, None).await
}

/// Now, on tokio's clock (which tests may pause), as the machine takes it.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// What the producer's task shares with the handles: their queue, its doorbell, and
/// `buffer.memory`'s room.
pub(crate) struct Handles {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) doorbell: mpsc::UnboundedReceiver<Ring>,
    pub(crate) memory: Arc<Semaphore>,
}

/// How much sooner a batch counts as lingered where the task's waits end by tokio's timer
/// (off Linux, or with no `timerfd`; see [`PreciseTimer`]). tokio's timers count whole
/// milliseconds, rounding the instant asked for up, and the worker waits for the next one in
/// whole milliseconds too. A producer task woken by it for a batch's linger end sent it 1.2 ms
/// past it on average (`linger.ms=5`, 10,000 records a second over 6 partitions), and its
/// records were handed to a consumer 5.0 ms after their send at the median. With the precise
/// timer there is no slack: a batch goes at its linger's end.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Starts the producer's task on the current runtime: the machine for `config`, driven by
/// [`drive`] until it is closed (by a handle, or by the last handle going) and done.
pub(crate) fn spawn(
    pool: Pool,
    auto_create: AutoCreate,
    config: Arc<ProducerConfig>,
    stats: Arc<Counters>,
    hooks: Hooks,
    handles: Handles,
) {
    let Handles {
        inbox,
        doorbell,
        memory,
    } = handles;
    let timer = PreciseTimer::new();
    let slack = if timer.is_some() {
        Duration::ZERO
    } else {
        TIMER_SLACK
    };
    let machine = SenderMachine::new(
        config,
        pool.metadata(),
        stats,
        fastrand::u64(..),
        now(),
        pool.clock().now_ms(),
    )
    .with_timer_slack(slack);
    let glue = Sender {
        auto_create,
        inbox,
        taken: VecDeque::new(),
        records: Vec::new(),
        open: OpenGroups::default(),
        flushes: HashMap::new(),
        calls: HashMap::new(),
        close_waiters: Vec::new(),
        close_failures: None,
        handles_gone: false,
        closed_when_gone: false,
        freed: 0,
        memory,
        hooks,
        timer,
    };
    tokio::spawn(drive(pool, machine, glue, doorbell));
}

/// The most records the task gathers before it hands them to the machine in one pass. A round
/// takes up to [`COMMANDS_PER_ROUND`](crate::inbox::COMMANDS_PER_ROUND) commands, and a
/// `send_all` call is one command of any number of records: gathered whole, a round of them
/// (up to `queue.buffering.max.messages`, 100,000 by default) grew the list the task keeps to
/// 9 MiB, for good. The records go to the machine in the order they were queued either way;
/// a batch filled by one pass may go out before the next pass places the rest.
const HANDED_AT: usize = 4096;

impl Sender {
    /// Hands the records taken so far to the machine, in one pass, stamped with `wall_ms`
    /// where they carry no timestamp.
    fn hand_records(
        &mut self,
        machine: &mut SenderMachine<Waiter>,
        now: std::time::Instant,
        wall_ms: i64,
    ) {
        if self.records.is_empty() {
            return;
        }
        machine.wall_clock(wall_ms);
        machine.records(now, self.records.drain(..));
    }

    /// Opens `i`'s reply and adds it to the records taken, handing them to the machine once
    /// they are [`HANDED_AT`].
    fn gather(
        &mut self,
        machine: &mut SenderMachine<Waiter>,
        mut i: Incoming,
        now: std::time::Instant,
        stamp: i64,
    ) {
        i.reply.open(&mut self.open);
        self.records.push(i.into_machine(now, stamp));
        if self.records.len() >= HANDED_AT {
            self.hand_records(machine, now, stamp);
        }
    }

    /// Takes commands off the queue, oldest first, and applies them: records go to the
    /// machine together, in one pass, ahead of the next command of another kind.
    fn take(&mut self, machine: &mut SenderMachine<Waiter>, pool: &Pool, now: std::time::Instant) {
        // The events the last input caused are handed on first, as they were before a command
        // came: an answer to a transaction call its caller gave up on goes back to the
        // machine before the same call made again is taken.
        while let Some(event) = machine.poll_event() {
            self.event(machine, now, event);
        }
        let mut taken = std::mem::take(&mut self.taken);
        let t = self.inbox.take(&mut taken);
        if taken.is_empty() {
            self.taken = taken;
            self.close_if_gone(machine, now, t.emptied);
            return;
        }
        let stamp = pool.clock().now_ms();
        for command in taken.drain(..) {
            match command {
                Command::Record(i) => self.gather(machine, i, now, stamp),
                Command::Records(all) => {
                    for i in all {
                        self.gather(machine, i, now, stamp);
                    }
                }
                Command::Flush(done) => {
                    self.hand_records(machine, now, stamp);
                    let id = machine.flush(now);
                    self.flushes.insert(id, done);
                }
                Command::Transaction(call, reply) => {
                    self.hand_records(machine, now, stamp);
                    let id = machine.transaction(now, call);
                    self.calls.insert(id, reply);
                }
                Command::Unread(op, result) => {
                    self.hand_records(machine, now, stamp);
                    machine.unread(op, result);
                }
                Command::Close(done) => {
                    self.hand_records(machine, now, stamp);
                    self.close_waiters.push(done);
                    self.close_failures.get_or_insert((0, None));
                    machine.close(now);
                }
            }
        }
        self.hand_records(machine, now, stamp);
        self.taken = taken;
        self.close_if_gone(machine, now, t.emptied);
    }

    /// Once every handle is gone and the queue is `emptied`, nothing more can come: the
    /// producer finishes as a close does.
    fn close_if_gone(
        &mut self,
        machine: &mut SenderMachine<Waiter>,
        now: std::time::Instant,
        emptied: bool,
    ) {
        if self.handles_gone && emptied && !self.closed_when_gone {
            self.closed_when_gone = true;
            self.close_failures.get_or_insert((0, None));
            machine.close(now);
        }
    }

    /// Refuses a command the task will never take (it ended): a record fails as the producer
    /// being closed (told to the hooks, as a record not queued is), a close is answered (the
    /// task ended: another close finished), a flush is done, a transaction call fails.
    fn refuse(&mut self, command: Command) {
        let mut refuse_record = |i: Incoming| {
            let e = ProduceError::closed();
            if !self.hooks.is_empty() {
                hooks::acknowledged(&self.hooks, Err(&e));
            }
            i.reply.answer(Err(e), &mut self.open);
        };
        match command {
            Command::Record(i) => refuse_record(i),
            Command::Records(all) => all.into_iter().for_each(refuse_record),
            Command::Flush(done) => {
                let _ = done.send(());
            }
            Command::Close(done) => {
                let _ = done.send(Ok(()));
            }
            Command::Transaction(_, reply) => {
                let _ = reply.send(Err(ProduceError::closed()));
            }
            Command::Unread(..) => {}
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // The room of records the task held is not given back: nothing is queued any more.
        self.memory.close();
        for command in self.inbox.close() {
            self.refuse(command);
        }
    }
}

impl Drive for Sender {
    type Machine = SenderMachine<Waiter>;
    type Command = Ring;

    fn send(
        &self,
        pool: &Pool,
        out: Outgoing<Request>,
    ) -> impl Future<Output = Result<Response, RequestFailure>> + Send + 'static {
        let pool = pool.clone();
        let auto_create = self.auto_create;
        let target = BrokerTarget::from(&out.target);
        async move { Ok(carry(&pool, auto_create, target, out.request).await) }
    }

    fn command(
        &mut self,
        machine: &mut Self::Machine,
        pool: &Pool,
        now: std::time::Instant,
        command: Option<Ring>,
    ) {
        match command {
            // Taken at the start of the round that follows.
            Some(Ring) => self.inbox.answered(),
            // Every handle is gone: what they queued is taken, round by round, then the rest
            // finishes as a close does.
            None => {
                self.handles_gone = true;
                self.take(machine, pool, now);
            }
        }
    }

    fn take_queued(&mut self, machine: &mut Self::Machine, pool: &Pool, now: std::time::Instant) {
        self.take(machine, pool, now);
    }

    fn may_wait(&mut self, machine: &Self::Machine) -> bool {
        self.inbox.may_wait(machine.lingering())
    }

    fn precise_timer(&mut self) -> Option<PreciseTimer> {
        self.timer.take()
    }

    fn event(
        &mut self,
        machine: &mut Self::Machine,
        _now: std::time::Instant,
        event: Event<Waiter>,
    ) {
        match event {
            Event::Answer { waiter, result } => {
                if !self.hooks.is_empty() {
                    hooks::acknowledged(&self.hooks, result.as_ref());
                }
                if let (Some((count, first)), Err(e)) = (&mut self.close_failures, &result)
                    && e.kind() != ErrorKind::Closed
                {
                    *count += 1;
                    first.get_or_insert_with(|| e.clone());
                }
                waiter.reply.answer(result, &mut self.open);
                self.freed += waiter.room as usize;
            }
            Event::Flushed(id) => {
                if let Some(done) = self.flushes.remove(&id) {
                    // A flush that stopped waiting reads nothing.
                    let _ = done.send(());
                }
            }
            Event::Transaction { calls, op, result } => {
                // Every caller is answered; an outcome none of them read (each gave up first)
                // goes back to the machine, which keeps it for the same call made again.
                let (mut asked, mut read) = (false, false);
                for call in calls {
                    if let Some(reply) = self.calls.remove(&call) {
                        asked = true;
                        read |= reply.send(result.clone()).is_ok();
                    }
                }
                if asked && !read {
                    machine.unread(op, result);
                }
            }
        }
    }

    fn settled(&mut self, machine: &Self::Machine) -> bool {
        if self.freed > 0 {
            self.memory.add_permits(std::mem::take(&mut self.freed));
        }
        if !machine.is_finished() {
            return false;
        }
        for (_, done) in self.flushes.drain() {
            // A flush that stopped waiting (its future dropped or timed out) reads nothing.
            let _ = done.send(());
        }
        let result = match self.close_failures.take() {
            Some((count, Some(first))) => Err(ProduceError::failed_in_close(count, first)),
            _ => Ok(()),
        };
        for w in self.close_waiters.drain(..) {
            // A close that stopped waiting (its future dropped or timed out) reads nothing.
            let _ = w.send(result.clone());
        }
        debug!("producer task done");
        true
    }
}
