//! The commit machine: OffsetCommit and OffsetFetch against the group coordinator, stored
//! offsets, sync/async/auto commits, coordinator discovery and retries.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator::{CoordinatorLookup, Lookup};
use kcon_core::error_codes::error_name;
use kcon_core::failure::Failed;
use kcon_core::{FailureTracker, IsolationLevel, Machine, PersistentFailure};
use tracing::{debug, info, warn};

use crate::config::OffsetsConfig;
use crate::error::{CommitError, CommittedError};
use crate::messages::{
    CommitRequest, CommittedRequest, OffsetAndMetadata, OffsetsRequest, OffsetsResponse, Outgoing,
};
use crate::{Coordinator, RequestFailure, RequestId, Target, TopicPartition};

pub(crate) use kcon_core::error_codes::code;

/// Identifies a commit; its outcome comes as [`OffsetsEvent::Committed`] with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub(crate) u64);

/// Identifies a lookup of committed offsets (OffsetFetch); its outcome comes as [`OffsetsEvent::CommittedOffsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommittedId(pub(crate) u64);

/// Who asked for a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// The application waits for it (`commitSync`): never merged with another commit.
    Sync,
    /// The application is told later (`commitAsync`): a later async or auto commit queued
    /// behind it before it was sent supersedes it.
    Async,
    /// The auto-commit timer (or the final commit on close).
    Auto,
}

impl CommitKind {
    fn mergeable(self) -> bool {
        self != CommitKind::Sync
    }
}

/// What the machine reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetsEvent {
    /// A commit completed.
    Committed {
        /// The commit.
        id: CommitId,
        /// Who asked.
        kind: CommitKind,
        /// When it was asked for (the `now` of the call that queued it): its latency is the
        /// time from then to this event.
        queued_at: Instant,
        /// The offsets the coordinator acknowledged, or why not.
        result: Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>,
    },
    /// A lookup of committed offsets (OffsetFetch) completed.
    CommittedOffsets {
        /// The fetch.
        id: CommittedId,
        /// Each partition's committed offset (`None`: the group has none), or why not.
        result: Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, CommittedError>,
    },
    /// Commits, committed-offset fetches or the coordinator lookup keep failing (logged at WARN
    /// already), or recovered after that was reported: the machine goes on trying.
    PersistentFailure(PersistentFailure),
}

kcon_core::timers! {
    /// The machine's timers, one table. The auto-commit timer is set and stopped where it runs;
    /// the others follow the next commit, the lookup and the trackers, armed from them after every
    /// input (`rearm`). Each committed-offset lookup's backoff and deadline are kept beside it, in
    /// its map, since lookups come and go; [`CommitMachine::poll_timeout`] is the earliest of the
    /// table and those.
    enum Timer {
        /// The next auto-commit.
        AutoCommit,
        /// Find the coordinator again after a failed lookup, while something waits for it.
        CoordinatorRetry,
        /// The next commit's own backoff after it failed.
        CommitRetry,
        /// The backoff every OffsetCommit shares after failures in a row (`commit_tries`).
        CommitsBackoff,
        /// The next commit's `default.api.timeout.ms`.
        CommitDeadline,
        /// The backoff every OffsetFetch shares (`fetch_tries`), while a lookup waits.
        FetchesBackoff,
    }
    type Timers;
}

/// A commit asked for and not completed yet, queued or in flight.
#[derive(Debug)]
struct PendingCommit {
    id: CommitId,
    kind: CommitKind,
    queued_at: Instant,
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    deadline: Instant,
    last_error: String,
}

/// A commit waiting to be sent: asked for, or failed and to be tried again.
#[derive(Debug)]
struct QueuedCommit {
    commit: PendingCommit,
    /// Not sent before this (the backoff after its last try).
    retry_at: Option<Instant>,
    /// The coordinator answered STALE_MEMBER_EPOCH: sent again as soon as the member's epoch
    /// changes (after the next heartbeat), or after the backoff.
    stale_epoch: bool,
}

impl QueuedCommit {
    fn new(commit: PendingCommit) -> QueuedCommit {
        QueuedCommit {
            commit,
            retry_at: None,
            stale_epoch: false,
        }
    }
}

/// The one commit in flight, taken off the front of the queue when it was sent: only the
/// answer to its request finds it, and it goes back to the front if it is to be tried again.
#[derive(Debug)]
struct SentCommit {
    request: RequestId,
    commit: PendingCommit,
    /// Partitions forgotten while it was in flight: not sent again if it is retried, and not
    /// recorded as committed if it succeeds (what was sent went; nothing after it may).
    forgotten: BTreeSet<TopicPartition>,
    /// It carried the member's generation, not an inactive group's (-1, no member id): a
    /// refusal for a generation that is over is then the group's rebalance, not a mistake.
    as_member: bool,
}

/// A lookup of committed offsets not completed yet.
#[derive(Debug)]
struct PendingFetch {
    partitions: Option<BTreeSet<TopicPartition>>,
    state: FetchState,
    deadline: Instant,
    last_error: String,
}

/// Where a lookup of committed offsets is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    /// To be sent, not before `retry_at` (after a failed try).
    Waiting { retry_at: Option<Instant> },
    /// Sent as this request.
    Sent(RequestId),
}

impl PendingFetch {
    fn is_waiting(&self) -> bool {
        matches!(self.state, FetchState::Waiting { .. })
    }

    /// When it may go, if it waits for a backoff.
    fn retry_at(&self) -> Option<Instant> {
        match self.state {
            FetchState::Waiting { retry_at } => retry_at,
            FetchState::Sent(_) => None,
        }
    }

    /// Whether it may be sent at `now`.
    fn is_due(&self, now: Instant) -> bool {
        matches!(self.state, FetchState::Waiting { retry_at } if retry_at.is_none_or(|t| t <= now))
    }
}

/// What a request in flight is.
#[derive(Debug, Clone, Copy)]
enum InFlight {
    Find,
    /// The commit in flight ([`CommitMachine::sent`] holds it).
    Commit,
    Fetch(CommittedId),
}

/// What to do with a request that failed in a way a retry may fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The coordinator moved or is gone: look it up again first.
    Rediscover,
    /// Same coordinator, after the backoff.
    Backoff,
    /// The member epoch was stale (KIP-848): again with the member's next epoch, or after the
    /// backoff.
    NewEpoch,
}

/// The offset state of one consumer in one group: offsets stored for commit, commits in
/// order, committed-offset fetches, the auto-commit timer. It does no IO and reads no clock:
/// time comes in as `now`, randomness (backoff jitter) from a seed.
///
/// # Driving it
/// - Inputs: [`store_offset`](Self::store_offset), [`store`](Self::store),
///   [`commit_stored`](Self::commit_stored), [`commit`](Self::commit),
///   [`fetch_committed`](Self::fetch_committed), [`set_generation`](Self::set_generation),
///   [`set_coordinator`](Self::set_coordinator), [`forget`](Self::forget),
///   [`close`](Self::close) (application and group member);
///   [`handle_response`](Self::handle_response) (every request's answer or failure, exactly
///   once); [`handle_timeout`](Self::handle_timeout) (once `poll_timeout` has passed).
/// - Outputs: [`poll_request`](Self::poll_request), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
/// - After any input, drain `poll_request` and `poll_event` until `None`, then read
///   `poll_timeout` again.
///
/// # Ordering
/// Commits go one at a time, in the order they were asked for, so the offsets of a partition
/// are committed in order (the Java client pipelines async commits and relies on the
/// coordinator's in-order handling of one connection; one at a time gives the same order
/// without depending on it). While a commit is queued and not yet sent, a later async or auto
/// commit takes its offsets along (its own win where both name a partition) and the earlier
/// one completes as [`CommitError::Superseded`]. Fetches run beside commits.
///
/// See DESIGN.md for the state diagram.
#[derive(Debug)]
pub struct CommitMachine {
    config: OffsetsConfig,
    /// OffsetCommits that failed in a row, whichever commit they carried: the backoff before
    /// the next (a commit asked for meanwhile waits for it too), and the reports.
    commit_tries: FailureTracker,
    /// OffsetFetches that failed in a row, likewise.
    fetch_tries: FailureTracker,
    rng: fastrand::Rng,
    next_id: u64,
    generation_id: i32,
    member_id: String,
    /// The member's losses of everything it owned, as last told ([`set_losses`](Self::set_losses)).
    losses: u64,
    coordinator: CoordinatorLookup,
    stored: BTreeMap<TopicPartition, OffsetAndMetadata>,
    committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
    /// The commit in flight, if any: the oldest one not completed.
    sent: Option<SentCommit>,
    /// The commits waiting, in the order they were asked for; the front goes once nothing is
    /// in flight.
    queue: VecDeque<QueuedCommit>,
    fetches: BTreeMap<CommittedId, PendingFetch>,
    in_flight: HashMap<RequestId, InFlight>,
    timers: Timers,
    closing: bool,
    events: VecDeque<OffsetsEvent>,
}

impl CommitMachine {
    /// A machine for `config.group_id`, outside any generation (generation -1, empty member
    /// id: commits are those of an inactive group, as a tool resetting offsets sends them)
    /// until [`set_generation`](Self::set_generation). The auto-commit timer, when enabled,
    /// first fires one interval after `now`.
    pub fn new(config: OffsetsConfig, now: Instant, seed: u64) -> Self {
        let mut timers = Timers::new();
        if config.enable_auto_commit {
            timers.set(Timer::AutoCommit, now + config.auto_commit_interval);
        }
        let subject = |what: &str| format!("{what} of group {}", config.group_id);
        CommitMachine {
            commit_tries: FailureTracker::new(
                ApiKey::OffsetCommit,
                subject("commits"),
                config.retry_backoff_policy(),
            ),
            fetch_tries: FailureTracker::new(
                ApiKey::OffsetFetch,
                subject("committed-offset lookups"),
                config.retry_backoff_policy(),
            ),
            coordinator: CoordinatorLookup::new(
                config.group_id.clone(),
                config.retry_backoff_policy(),
            ),
            config,
            rng: fastrand::Rng::with_seed(seed),
            next_id: 0,
            generation_id: -1,
            member_id: String::new(),
            losses: 0,
            stored: BTreeMap::new(),
            committed: BTreeMap::new(),
            sent: None,
            queue: VecDeque::new(),
            fetches: BTreeMap::new(),
            in_flight: HashMap::new(),
            timers,
            closing: false,
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OffsetsConfig {
        &self.config
    }

    /// The offsets stored for commit.
    pub fn stored(&self) -> &BTreeMap<TopicPartition, OffsetAndMetadata> {
        &self.stored
    }

    /// The offsets this machine's commits got acknowledged (or its fetches read).
    pub fn committed(&self) -> &BTreeMap<TopicPartition, OffsetAndMetadata> {
        &self.committed
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.known()
    }

    /// Whether no commit is queued or in flight (close waits for that).
    pub fn commits_idle(&self) -> bool {
        self.sent.is_none() && self.queue.is_empty()
    }

    /// Marks the record at `offset` of `tp` processed: the next commit sends `offset + 1` with
    /// the record's leader epoch (KIP-320), as the Java client commits "the next offset to
    /// consume".
    pub fn store_offset(&mut self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>) {
        self.store(
            tp,
            OffsetAndMetadata {
                offset: offset.saturating_add(1),
                leader_epoch,
                metadata: String::new(),
            },
        );
    }

    /// Stores `offset` (already the next offset to consume) for `tp`, replacing what was
    /// stored: a seek back stores a smaller offset, and that is what is committed next.
    pub fn store(&mut self, tp: TopicPartition, offset: OffsetAndMetadata) {
        self.stored.insert(tp, offset);
    }

    /// Forgets the stored and known committed offsets of `partitions` (they were lost or
    /// revoked: another member commits them now, and nothing here may), and takes them out of
    /// commits not sent yet: a commit queued, or waiting to be retried, must not carry them
    /// to the coordinator later, under a membership that no longer owns them (the commit in
    /// flight leaves them too if it is retried, and does not record them as committed if it
    /// succeeds). A commit left with nothing fails with [`CommitError::PartitionsGone`].
    pub fn forget<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) {
        let partitions: BTreeSet<&TopicPartition> = partitions.into_iter().collect();
        for tp in &partitions {
            self.stored.remove(*tp);
            self.committed.remove(*tp);
        }
        // The commit in flight went with what it carried, but must not carry them again if it
        // is retried; the queued ones are not sent yet.
        if let Some(sent) = &mut self.sent {
            sent.forgotten
                .extend(partitions.iter().map(|tp| (*tp).clone()));
        }
        let mut emptied = Vec::new();
        for mut q in std::mem::take(&mut self.queue) {
            let offsets = &mut q.commit.offsets;
            if !offsets.is_empty() && offsets.keys().all(|tp| partitions.contains(tp)) {
                let gone: Vec<TopicPartition> = std::mem::take(offsets).into_keys().collect();
                emptied.push((q.commit, gone));
            } else {
                offsets.retain(|tp, _| !partitions.contains(tp));
                self.queue.push_back(q);
            }
        }
        // Told from the back of the queue forward.
        for (c, gone) in emptied.into_iter().rev() {
            self.complete_commit(c, Err(CommitError::PartitionsGone { partitions: gone }));
        }
        self.rearm();
    }

    /// How many times the member has lost everything it owned (fenced, expired, or its
    /// generation reset: `kcon_core::Membership::losses`). When that grew, every offset
    /// stored, queued or to be retried is forgotten as [`forget`](Self::forget) forgets a
    /// lost partition's: the member may be in the group again under a new generation (and
    /// its application not told yet), but those partitions may be another member's now, and
    /// a commit under the new generation would be accepted.
    pub fn set_losses(&mut self, losses: u64) {
        if losses <= self.losses {
            return;
        }
        self.losses = losses;
        let mut all: BTreeSet<TopicPartition> = self.stored.keys().cloned().collect();
        for q in &self.queue {
            all.extend(q.commit.offsets.keys().cloned());
        }
        if let Some(sent) = &self.sent {
            all.extend(sent.commit.offsets.keys().cloned());
        }
        if !all.is_empty() {
            debug!(partitions = ?all, "the member lost its partitions: their offsets are not committed");
        }
        self.forget(&all);
    }

    /// The member's generation and id, sent with every commit from now on (including a
    /// commit being retried: the Java client also reads the generation when it builds the
    /// request). Generation -1 and an empty id commit as an inactive group.
    pub fn set_generation(&mut self, generation_id: i32, member_id: impl Into<String>) {
        let member_id = member_id.into();
        let changed = generation_id != self.generation_id || member_id != self.member_id;
        self.generation_id = generation_id;
        self.member_id = member_id;
        // A commit refused for a stale member epoch goes again with the new one at once, as
        // the Java client retries it after the heartbeat that brings the epoch.
        if changed
            && self.sent.is_none()
            && let Some(front) = self.queue.front_mut()
            && front.stale_epoch
        {
            front.retry_at = None;
            self.commit_tries.retry_now();
        }
        self.rearm();
    }

    /// The coordinator as the group member found it, saving a lookup; `None` forgets it.
    pub fn set_coordinator(&mut self, coordinator: Option<Coordinator>) {
        match coordinator {
            Some(c) => self.coordinator.set(c),
            None => self.coordinator_lost(),
        }
        self.rearm();
    }

    /// Commits every stored offset: all of them for a sync or async commit (like the Java
    /// client's `commitSync()`, which resends unchanged offsets), only those not yet
    /// acknowledged for an auto commit. Nothing to commit completes at once, successfully.
    pub fn commit_stored(&mut self, now: Instant, kind: CommitKind) -> CommitId {
        let offsets = match kind {
            CommitKind::Auto => self.uncommitted(),
            _ => self.stored.clone(),
        };
        self.commit(now, kind, offsets)
    }

    /// Commits `offsets` (each already the next offset to consume).
    pub fn commit(
        &mut self,
        now: Instant,
        kind: CommitKind,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> CommitId {
        let id = self.queue_commit(now, kind, offsets);
        self.rearm();
        id
    }

    fn queue_commit(
        &mut self,
        now: Instant,
        kind: CommitKind,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> CommitId {
        let id = CommitId(self.next());
        if offsets.is_empty() && !self.tail_mergeable(kind) {
            self.events.push_back(OffsetsEvent::Committed {
                id,
                kind,
                queued_at: now,
                result: Ok(BTreeMap::new()),
            });
            return id;
        }
        let mut commit = PendingCommit {
            id,
            kind,
            queued_at: now,
            offsets,
            deadline: now + self.config.default_api_timeout,
            last_error: String::new(),
        };
        if self.tail_mergeable(kind)
            && let Some(earlier) = self.queue.pop_back()
        {
            // The earlier commit's own backoff and stale epoch are not kept: the merged commit
            // waits for the backoff all commits share (`commit_tries`) alone.
            commit.merge_earlier(earlier.commit, &mut self.events);
        }
        self.queue.push_back(QueuedCommit::new(commit));
        id
    }

    /// Fetches the committed offsets of `partitions` (`None`: every partition the group has
    /// an offset for). Under read_committed the request asks for stable offsets (KIP-447) and
    /// UNSTABLE_OFFSET_COMMIT is retried.
    pub fn fetch_committed(
        &mut self,
        now: Instant,
        partitions: Option<BTreeSet<TopicPartition>>,
    ) -> CommittedId {
        let id = CommittedId(self.next());
        self.fetches.insert(
            id,
            PendingFetch {
                partitions,
                state: FetchState::Waiting { retry_at: None },
                deadline: now + self.config.default_api_timeout,
                last_error: String::new(),
            },
        );
        self.rearm();
        id
    }

    /// Stops the auto-commit timer and, with `enable.auto.commit`, queues a final commit of
    /// what is stored and not yet acknowledged (the Java client's `close` does the same before
    /// LeaveGroup). Returns that commit, if one was queued.
    pub fn close(&mut self, now: Instant) -> Option<CommitId> {
        self.closing = true;
        self.timers.stop(Timer::AutoCommit);
        if !self.config.enable_auto_commit || self.uncommitted().is_empty() {
            return None;
        }
        Some(self.commit_stored(now, CommitKind::Auto))
    }

    /// When `timer` fires, as the state says, for every timer but the auto-commit's, which is
    /// the table's own.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        // The next commit, when nothing is in flight.
        let next = self.queue.front().filter(|_| self.sent.is_none());
        match timer {
            Timer::AutoCommit => self.timers.get(Timer::AutoCommit),
            Timer::CoordinatorRetry => self.coordinator.retry_at(self.needs_coordinator()),
            Timer::CommitRetry => next.and_then(|q| q.retry_at),
            Timer::CommitsBackoff => next.and(self.commit_tries.retry_at()),
            Timer::CommitDeadline => next.map(|q| q.commit.deadline),
            Timer::FetchesBackoff => self
                .fetches
                .values()
                .any(PendingFetch::is_waiting)
                .then(|| self.fetch_tries.retry_at())
                .flatten(),
        }
    }

    /// The timer table as the state says it should be.
    fn armed_timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.deadline(timer))
    }

    /// Arms the timers from the state, at the end of every input and poll: the next commit
    /// and the trackers change in many places, and each timer's rule is written once, in
    /// `deadline`.
    fn rearm(&mut self) {
        self.timers = self.armed_timers();
    }

    fn on_find(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<OffsetsResponse, RequestFailure>,
    ) {
        if !self.coordinator.is_lookup(id) {
            return;
        }
        let result = match result {
            Ok(OffsetsResponse::FindCoordinator(found)) => Ok(found),
            Ok(other) => Err(RequestFailure::retriable(format!(
                "FindCoordinator got an unexpected answer: {other:?}"
            ))),
            Err(f) => Err(f),
        };
        let lookup = self.coordinator.handle_answer(now, result, self.rng.f64());
        while let Some(report) = self.coordinator.take_report() {
            self.tell(Some(report));
        }
        match lookup {
            Lookup::Found(_) => {}
            Lookup::Retrying { reason } => self.note_error(&reason),
            Lookup::Failed {
                error_code: Some(error_code),
                ..
            } => self.fail_all(format!(
                "FindCoordinator answered {} for group {}",
                error_name(error_code),
                self.config.group_id
            )),
            Lookup::Failed {
                error_code: None,
                message,
            } => self.fail_all(format!("FindCoordinator: {}", message.unwrap_or_default())),
        }
    }

    fn on_commit(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<OffsetsResponse, RequestFailure>,
    ) {
        let Some(SentCommit {
            commit: mut c,
            forgotten,
            as_member,
            ..
        }) = self.sent.take_if(|s| s.request == id)
        else {
            return;
        };
        let (retry, reason, failed) = match result {
            Err(f) if f.retriable => {
                let failed = self.commit_tries.failed(now, &f, self.rng.f64());
                (Retry::Rediscover, f.reason, failed)
            }
            Err(f) => {
                self.complete_commit(c, Err(CommitError::Request(f.reason)));
                return;
            }
            Ok(OffsetsResponse::OffsetCommit { partitions }) => {
                let outcome = classify_commit(&partitions);
                if !matches!(outcome, CommitOutcome::Retry(..)) {
                    // Answered: commits get through, whatever this one's answer was.
                    let report = self.commit_tries.succeeded_by(now, self.coordinator_name());
                    self.tell(report);
                }
                match outcome {
                    CommitOutcome::Done => {
                        // Only what the coordinator named counts as committed: an answer that
                        // left a partition out did not commit it.
                        let acked: BTreeMap<_, _> = c
                            .offsets
                            .iter()
                            .filter(|(tp, _)| partitions.contains_key(*tp))
                            .map(|(tp, o)| (tp.clone(), o.clone()))
                            .collect();
                        for (tp, o) in &acked {
                            if !forgotten.contains(tp) {
                                self.committed.insert(tp.clone(), o.clone());
                            }
                        }
                        self.complete_commit(c, Ok(acked));
                        return;
                    }
                    CommitOutcome::Fail(e) => {
                        // The offsets stay stored: REBALANCE_IN_PROGRESS means the next
                        // generation commits them (Java's ConsumerCoordinator keeps them in
                        // its subscription state for the same reason).
                        let rebalance = is_rebalance_outcome(&e, as_member);
                        self.finish_commit(c, Err(e), rebalance);
                        return;
                    }
                    CommitOutcome::Retry(retry, code) => {
                        let failed = self.commit_tries.refused(
                            now,
                            error_name(code),
                            self.coordinator_name(),
                            self.rng.f64(),
                        );
                        (
                            retry,
                            format!("OffsetCommit answered {}", error_name(code)),
                            failed,
                        )
                    }
                }
            }
            Ok(other) => {
                self.complete_commit(
                    c,
                    Err(CommitError::UnexpectedAnswer {
                        answer: format!("{other:?}"),
                    }),
                );
                return;
            }
        };
        debug!(reason = %reason, "commit failed; retrying");
        let retry_at = self.after_failure(failed);
        // The partitions forgotten while it was in flight do not go again, as they left the
        // queued commits (`forget`).
        if !forgotten.is_empty() {
            if c.offsets.keys().all(|tp| forgotten.contains(tp)) {
                let gone = std::mem::take(&mut c.offsets).into_keys().collect();
                if retry == Retry::Rediscover {
                    self.coordinator_lost();
                }
                self.complete_commit(c, Err(CommitError::PartitionsGone { partitions: gone }));
                return;
            }
            c.offsets.retain(|tp, _| !forgotten.contains(tp));
        }
        if retry == Retry::Rediscover {
            self.coordinator_lost();
        }
        let mut q = QueuedCommit {
            commit: c,
            retry_at: Some(retry_at),
            stale_epoch: retry == Retry::NewEpoch,
        };
        q.commit.last_error = reason;
        if q.commit.deadline <= now {
            let last = q.commit.last_error.clone();
            self.complete_commit(q.commit, Err(CommitError::TimedOut { last }));
            return;
        }
        // A later async commit waiting behind a failed async one takes its offsets along
        // instead of sending them twice (a later commit supersedes an earlier one).
        if q.commit.kind.mergeable()
            && let Some(next) = self.queue.front_mut()
            && next.commit.kind.mergeable()
        {
            // The backoff still applies: the coordinator that failed it is the one `next`
            // goes to.
            next.retry_at = next.retry_at.max(q.retry_at);
            next.stale_epoch |= q.stale_epoch;
            next.commit.merge_earlier(q.commit, &mut self.events);
            return;
        }
        self.queue.push_front(q);
    }

    fn on_fetch(
        &mut self,
        now: Instant,
        id: RequestId,
        fid: CommittedId,
        result: Result<OffsetsResponse, RequestFailure>,
    ) {
        // Taken out while its answer is read; put back if it is to be tried again.
        let Some(mut fetch) = self
            .fetches
            .remove(&fid)
            .filter(|f| f.state == FetchState::Sent(id))
        else {
            return;
        };
        let mut failure = None;
        let outcome = match result {
            Err(f) if f.retriable => {
                let reason = f.reason.clone();
                failure = Some(f);
                FetchOutcome::Retry(Retry::Rediscover, reason)
            }
            Err(f) => FetchOutcome::Fail(CommittedError::Request(f.reason)),
            Ok(OffsetsResponse::OffsetFetch {
                error_code,
                partitions,
            }) => classify_fetch(error_code, partitions, fetch.partitions.as_ref()),
            Ok(other) => FetchOutcome::Fail(CommittedError::UnexpectedAnswer {
                answer: format!("{other:?}"),
            }),
        };
        let failed = match (&outcome, failure) {
            (FetchOutcome::Retry(..), Some(f)) => {
                Some(self.fetch_tries.failed(now, &f, self.rng.f64()))
            }
            (FetchOutcome::Retry(_, reason), None) => {
                let cause = reason.clone();
                let broker = self.coordinator_name();
                Some(self.fetch_tries.refused(now, cause, broker, self.rng.f64()))
            }
            (_, _) => {
                let report = self.fetch_tries.succeeded_by(now, self.coordinator_name());
                self.tell(report);
                None
            }
        };
        let (retry, reason) = match outcome {
            FetchOutcome::Done(offsets) => {
                for (tp, o) in &offsets {
                    if let Some(o) = o {
                        self.committed.insert(tp.clone(), o.clone());
                    }
                }
                self.events.push_back(OffsetsEvent::CommittedOffsets {
                    id: fid,
                    result: Ok(offsets),
                });
                return;
            }
            FetchOutcome::Fail(e) => {
                self.events.push_back(OffsetsEvent::CommittedOffsets {
                    id: fid,
                    result: Err(e),
                });
                return;
            }
            FetchOutcome::Retry(retry, reason) => (retry, reason),
        };
        debug!(reason = %reason, "offset fetch failed; retrying");
        // A retried outcome recorded a failure above.
        let retry_at = failed.map_or(now, |f| self.after_failure(f));
        if retry == Retry::Rediscover {
            self.coordinator_lost();
        }
        if fetch.deadline <= now {
            self.events.push_back(OffsetsEvent::CommittedOffsets {
                id: fid,
                result: Err(CommittedError::TimedOut { last: reason }),
            });
            return;
        }
        fetch.state = FetchState::Waiting {
            retry_at: Some(retry_at),
        };
        fetch.last_error = reason;
        self.fetches.insert(fid, fetch);
    }

    /// Passes a report on, if there is one.
    fn tell(&mut self, report: Option<PersistentFailure>) {
        if let Some(r) = report {
            self.events.push_back(OffsetsEvent::PersistentFailure(r));
        }
    }

    /// Passes a failure's report on and returns when its request may go again.
    fn after_failure(&mut self, failed: Failed) -> Instant {
        self.tell(failed.report);
        failed.retry_at
    }

    /// The coordinator, named as the pool names brokers, when known.
    fn coordinator_name(&self) -> Option<String> {
        self.coordinator.known().map(Coordinator::name)
    }

    fn complete_commit(
        &mut self,
        c: PendingCommit,
        result: Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>,
    ) {
        self.finish_commit(c, result, false);
    }

    /// Completes `c`, logging a failure once, here (its drivers do not log it again): at INFO
    /// when it is what a rebalance does to a commit (`rebalance`: REBALANCE_IN_PROGRESS, or a
    /// member's generation or epoch that is over) or left nothing to send (its partitions
    /// went to another member), at WARN otherwise. The Java client's `ConsumerCoordinator`
    /// logs the rebalance's refusals at INFO too.
    fn finish_commit(
        &mut self,
        c: PendingCommit,
        result: Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>,
        rebalance: bool,
    ) {
        if let Err(e) = &result {
            let what = match c.kind {
                CommitKind::Auto => "auto-commit",
                CommitKind::Sync | CommitKind::Async => "commit",
            };
            let group = &self.config.group_id;
            if rebalance || matches!(e, CommitError::PartitionsGone { .. }) {
                info!(%group, commit = c.id.0, error = %e, "{what} failed: the group rebalanced");
            } else {
                warn!(%group, commit = c.id.0, error = %e, "{what} failed");
            }
        }
        self.events.push_back(OffsetsEvent::Committed {
            id: c.id,
            kind: c.kind,
            queued_at: c.queued_at,
            result,
        });
    }

    /// Fails every queued commit and pending fetch: the coordinator cannot be found for good.
    fn fail_all(&mut self, reason: String) {
        if let Some(sent) = self.sent.take() {
            self.in_flight.remove(&sent.request);
            self.complete_commit(sent.commit, Err(CommitError::Request(reason.clone())));
        }
        while let Some(q) = self.queue.pop_front() {
            self.complete_commit(q.commit, Err(CommitError::Request(reason.clone())));
        }
        for (id, f) in std::mem::take(&mut self.fetches) {
            if let FetchState::Sent(r) = f.state {
                self.in_flight.remove(&r);
            }
            self.events.push_back(OffsetsEvent::CommittedOffsets {
                id,
                result: Err(CommittedError::Request(reason.clone())),
            });
        }
    }

    fn note_error(&mut self, reason: &str) {
        let sent = self.sent.iter_mut().map(|s| &mut s.commit);
        for c in sent.chain(self.queue.iter_mut().map(|q| &mut q.commit)) {
            c.last_error = reason.to_owned();
        }
        for f in self.fetches.values_mut() {
            f.last_error = reason.to_owned();
        }
    }

    /// The coordinator moved or its connection failed: look it up again (a lookup already
    /// under way is kept).
    fn coordinator_lost(&mut self) {
        self.coordinator.lost();
    }

    fn needs_coordinator(&self) -> bool {
        !self.commits_idle() || !self.fetches.is_empty()
    }

    /// Whether a commit of `kind` takes the last queued commit along (nothing in the queue is
    /// in flight).
    fn tail_mergeable(&self, kind: CommitKind) -> bool {
        kind.mergeable() && self.queue.back().is_some_and(|q| q.commit.kind.mergeable())
    }

    /// Stored offsets the coordinator has not acknowledged.
    fn uncommitted(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.stored
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), o.clone()))
            .collect()
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn request_id(&mut self) -> RequestId {
        RequestId::new(self.next())
    }
}

impl Machine for CommitMachine {
    type Request = OffsetsRequest;
    type Target = kcon_core::Target;
    type Response = OffsetsResponse;
    type Event = OffsetsEvent;

    /// The next request to send.
    fn poll_request(&mut self, now: Instant) -> Option<Outgoing> {
        let out = self.next_request(now);
        self.rearm();
        out
    }

    /// The next event.
    fn poll_event(&mut self) -> Option<OffsetsEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the earliest timer of the table
    /// (the auto-commit, the lookup's and the commits' backoffs, the next commit's deadline),
    /// or of a committed-offset lookup waiting (its backoff, its deadline).
    fn poll_timeout(&self) -> Option<Instant> {
        debug_assert_eq!(
            self.timers,
            self.armed_timers(),
            "every input rearms the timers"
        );
        let lookups = self
            .fetches
            .values()
            .filter(|f| f.is_waiting())
            .flat_map(|f| [f.retry_at(), Some(f.deadline)])
            .flatten();
        self.timers.next().into_iter().chain(lookups).min()
    }

    /// Fires the timers due at `now`: the auto-commit, and deadlines of commits and fetches
    /// waiting to be retried.
    fn handle_timeout(&mut self, now: Instant) {
        self.on_timeout(now);
        self.rearm();
    }

    /// Feeds the answer, or failure, of request `id`.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<OffsetsResponse, RequestFailure>,
    ) {
        if let Some(what) = self.in_flight.remove(&id) {
            match what {
                InFlight::Find => self.on_find(now, id, result),
                InFlight::Commit => self.on_commit(now, id, result),
                InFlight::Fetch(fid) => self.on_fetch(now, id, fid, result),
            }
        }
        self.rearm();
    }
}

impl CommitMachine {
    fn next_request(&mut self, now: Instant) -> Option<Outgoing> {
        if self.coordinator.is_due(now, self.needs_coordinator()) {
            let id = self.request_id();
            self.coordinator.sent(id);
            self.in_flight.insert(id, InFlight::Find);
            return Some(Outgoing {
                id,
                target: Target::Any,
                request: OffsetsRequest::FindCoordinator {
                    group_id: self.config.group_id.clone(),
                },
                timeout: None,
            });
        }
        let coordinator = self.coordinator.known()?.clone();
        if self.sent.is_none()
            && self
                .queue
                .front()
                .is_some_and(|q| q.retry_at.is_none_or(|t| t <= now))
            && self.commit_tries.is_due(now)
            && let Some(QueuedCommit { commit, .. }) = self.queue.pop_front()
        {
            let request = CommitRequest {
                group_id: self.config.group_id.clone(),
                generation_id: self.generation_id,
                member_id: self.member_id.clone(),
                group_instance_id: self.config.group_instance_id.clone(),
                offsets: commit.offsets.clone(),
            };
            let id = self.request_id();
            self.commit_tries.sent();
            self.sent = Some(SentCommit {
                request: id,
                commit,
                forgotten: BTreeSet::new(),
                as_member: self.generation_id >= 0 || !self.member_id.is_empty(),
            });
            self.in_flight.insert(id, InFlight::Commit);
            return Some(Outgoing {
                id,
                target: Target::Coordinator(coordinator),
                request: OffsetsRequest::OffsetCommit(request),
                timeout: None,
            });
        }
        if !self.fetch_tries.is_due(now) {
            return None;
        }
        let (&fid, fetch) = self.fetches.iter_mut().find(|(_, f)| f.is_due(now))?;
        // The next request id (`request_id`, with the map borrowed).
        self.next_id += 1;
        let id = RequestId::new(self.next_id);
        fetch.state = FetchState::Sent(id);
        self.fetch_tries.sent();
        let request = CommittedRequest {
            group_id: self.config.group_id.clone(),
            partitions: fetch.partitions.clone(),
            require_stable: self.config.isolation_level == IsolationLevel::ReadCommitted,
        };
        self.in_flight.insert(id, InFlight::Fetch(fid));
        Some(Outgoing {
            id,
            target: Target::Coordinator(coordinator),
            request: OffsetsRequest::OffsetFetch(request),
            timeout: None,
        })
    }

    fn on_timeout(&mut self, now: Instant) {
        // Backoffs that are over leave the timer table: what waits for the coordinator next
        // must not keep a timer in the past.
        self.commit_tries.handle_timeout(now);
        self.fetch_tries.handle_timeout(now);
        if self.sent.is_none()
            && let Some(q) = self.queue.front_mut()
            && q.retry_at.is_some_and(|t| t <= now)
        {
            q.retry_at = None;
        }
        for f in self.fetches.values_mut() {
            if let FetchState::Waiting { retry_at } = &mut f.state
                && retry_at.is_some_and(|t| t <= now)
            {
                *retry_at = None;
            }
        }
        if self.timers.is_expired(Timer::AutoCommit, now) {
            self.timers
                .set(Timer::AutoCommit, now + self.config.auto_commit_interval);
            // Auto-commit skips a round while an earlier auto-commit is still queued or in
            // flight with nothing new stored, as the Java client's
            // `maybeAutoCommitOffsetsAsync` sends only when it has something to send.
            let uncommitted = self.uncommitted();
            if !uncommitted.is_empty() {
                debug!(partitions = uncommitted.len(), "auto-commit");
                self.commit(now, CommitKind::Auto, uncommitted);
            }
        }
        if self.sent.is_none()
            && self.queue.front().is_some_and(|q| q.commit.deadline <= now)
            && let Some(QueuedCommit { commit: c, .. }) = self.queue.pop_front()
        {
            let last = c.last_error.clone();
            self.complete_commit(c, Err(CommitError::TimedOut { last }));
        }
        let (expired, waiting): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.fetches)
                .into_iter()
                .partition(|(_, f)| f.is_waiting() && f.deadline <= now);
        self.fetches = waiting;
        for (id, f) in expired {
            self.events.push_back(OffsetsEvent::CommittedOffsets {
                id,
                result: Err(CommittedError::TimedOut { last: f.last_error }),
            });
        }
    }
}

impl PendingCommit {
    /// Takes `earlier`'s offsets along (this commit's own win per partition) and reports
    /// `earlier` superseded.
    fn merge_earlier(&mut self, earlier: PendingCommit, events: &mut VecDeque<OffsetsEvent>) {
        for (tp, o) in earlier.offsets {
            self.offsets.entry(tp).or_insert(o);
        }
        self.deadline = self.deadline.max(earlier.deadline);
        // No failure: its offsets go on with this commit (once a second while a coordinator
        // is down and auto-commits queue up behind the one retried).
        debug!(
            commit = earlier.id.0,
            by = self.id.0,
            "superseded by a later commit, which carries its offsets"
        );
        events.push_back(OffsetsEvent::Committed {
            id: earlier.id,
            kind: earlier.kind,
            queued_at: earlier.queued_at,
            result: Err(CommitError::Superseded { by: self.id }),
        });
    }
}

/// Whether a commit's refusal is what a rebalance does to it: REBALANCE_IN_PROGRESS, or, for a
/// commit that carried the member's generation (`as_member`), ILLEGAL_GENERATION,
/// UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH or STALE_MEMBER_EPOCH (the generation or epoch it
/// carried is over). The same codes for a commit outside any generation say the group has
/// members the committer is not one of: a mistake to warn about.
fn is_rebalance_outcome(e: &CommitError, as_member: bool) -> bool {
    match e {
        CommitError::RebalanceInProgress => true,
        CommitError::Broker { error_code, .. } => {
            as_member
                && matches!(
                    *error_code,
                    code::ILLEGAL_GENERATION
                        | code::UNKNOWN_MEMBER_ID
                        | code::FENCED_MEMBER_EPOCH
                        | code::STALE_MEMBER_EPOCH
                )
        }
        _ => false,
    }
}

enum FetchOutcome {
    Done(BTreeMap<TopicPartition, Option<OffsetAndMetadata>>),
    Fail(CommittedError),
    Retry(Retry, String),
}

enum CommitOutcome {
    Done,
    Fail(CommitError),
    Retry(Retry, i16),
}

/// What an OffsetCommit answer means for the commit, following the Java client's
/// `ConsumerCoordinator.OffsetCommitResponseHandler`: a refusing partition fails the commit
/// (REBALANCE_IN_PROGRESS as its own kind), else a coordinator error rediscovers and retries,
/// else STALE_MEMBER_EPOCH (KIP-848) retries with the member's next epoch, else a retriable
/// error retries after the backoff.
fn classify_commit(partitions: &BTreeMap<TopicPartition, i16>) -> CommitOutcome {
    let errors: BTreeMap<TopicPartition, i16> = partitions
        .iter()
        .filter(|(_, c)| **c != 0)
        .map(|(tp, c)| (tp.clone(), *c))
        .collect();
    let Some(&first) = errors.values().next() else {
        return CommitOutcome::Done;
    };
    let is_retriable = |c: i16| {
        matches!(
            c,
            code::COORDINATOR_LOAD_IN_PROGRESS
                | code::REQUEST_TIMED_OUT
                | code::UNKNOWN_TOPIC_OR_PARTITION
                | code::COORDINATOR_NOT_AVAILABLE
                | code::NOT_COORDINATOR
                | code::STALE_MEMBER_EPOCH
        )
    };
    if let Some(&fatal) = errors.values().find(|c| !is_retriable(**c)) {
        if fatal == code::REBALANCE_IN_PROGRESS {
            return CommitOutcome::Fail(CommitError::RebalanceInProgress);
        }
        return CommitOutcome::Fail(CommitError::Broker {
            error_code: fatal,
            partitions: errors,
        });
    }
    if let Some(&c) = errors
        .values()
        .find(|c| matches!(**c, code::COORDINATOR_NOT_AVAILABLE | code::NOT_COORDINATOR))
    {
        return CommitOutcome::Retry(Retry::Rediscover, c);
    }
    if errors.values().any(|c| *c == code::STALE_MEMBER_EPOCH) {
        return CommitOutcome::Retry(Retry::NewEpoch, code::STALE_MEMBER_EPOCH);
    }
    CommitOutcome::Retry(Retry::Backoff, first)
}

/// What an OffsetFetch answer means: the group's coordinator errors retry (rediscovering for
/// NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE), UNSTABLE_OFFSET_COMMIT on a partition
/// retries after the backoff (KIP-447: a transaction's offsets are pending), anything else
/// fails. The offsets are those asked for, `None` where the group has none.
fn classify_fetch(
    error_code: i16,
    partitions: BTreeMap<TopicPartition, crate::messages::PartitionOffset>,
    asked: Option<&BTreeSet<TopicPartition>>,
) -> FetchOutcome {
    match error_code {
        0 => {}
        // UNSTABLE_OFFSET_COMMIT belongs to partitions (KIP-447), but librdkafka's mock
        // cluster puts it at the group level, and librdkafka's own client retries it there
        // too (`rd_kafka_handle_OffsetFetch`); retrying is harmless when a broker does that.
        code::COORDINATOR_LOAD_IN_PROGRESS | code::UNSTABLE_OFFSET_COMMIT => {
            return FetchOutcome::Retry(
                Retry::Backoff,
                format!("OffsetFetch answered {}", error_name(error_code)),
            );
        }
        code::COORDINATOR_NOT_AVAILABLE | code::NOT_COORDINATOR => {
            return FetchOutcome::Retry(
                Retry::Rediscover,
                format!("OffsetFetch answered {}", error_name(error_code)),
            );
        }
        _ => {
            return FetchOutcome::Fail(CommittedError::Broker {
                error_code,
                partitions: BTreeMap::new(),
            });
        }
    }
    let errors: BTreeMap<TopicPartition, i16> = partitions
        .iter()
        .filter(|(_, p)| p.error_code != 0)
        .map(|(tp, p)| (tp.clone(), p.error_code))
        .collect();
    if let Some(&first) = errors
        .values()
        .find(|c| **c != code::UNSTABLE_OFFSET_COMMIT)
    {
        return FetchOutcome::Fail(CommittedError::Broker {
            error_code: first,
            partitions: errors,
        });
    }
    if !errors.is_empty() {
        return FetchOutcome::Retry(
            Retry::Backoff,
            format!(
                "OffsetFetch answered UNSTABLE_OFFSET_COMMIT for {} partition(s)",
                errors.len()
            ),
        );
    }
    let mut out: BTreeMap<TopicPartition, Option<OffsetAndMetadata>> = match asked {
        Some(asked) => asked.iter().map(|tp| (tp.clone(), None)).collect(),
        None => BTreeMap::new(),
    };
    for (tp, p) in partitions {
        if asked.is_none_or(|a| a.contains(&tp)) {
            out.insert(tp, p.committed);
        }
    }
    FetchOutcome::Done(out)
}

#[cfg(test)]
mod tests;
