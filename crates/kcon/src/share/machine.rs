//! The share consumer's own bookkeeping as a sans-IO machine: the subscription, the partitions
//! the group assigned, the records acquired and not handed out yet, the last batch's records
//! with what the application said of each, the acknowledgement outcomes not read yet, the
//! commits' numbers, the metrics' counts and the member's failure. It owns that state alone;
//! the [`ShareConsumer`](super::ShareConsumer) only drives it, through its sans-IO driver
//! ([`super::driver`]).
//!
//! # Driving it
//! It follows kcon-core's [`Machine`] contract (no socket, no clock: `now` is an argument), with
//! no requests and one timer: while a `recv_batch` waits, the member hears the application is
//! alive every half `max.poll.interval.ms` (at least 500 ms), as the consumer's does, so that a
//! wait on an idle queue is never taken for an application that stopped polling. Everything
//! else it waits for comes as a part's event.
//! - events are its [`Command`]s: what the group member, the share fetcher, the acknowledgement
//!   hooks, the metrics handle or the application's call must hear, in order;
//! - its own commands are the application's calls ([`subscribe`](ShareConsumerMachine::subscribe),
//!   [`start_batch`](ShareConsumerMachine::start_batch) and
//!   [`take_batch`](ShareConsumerMachine::take_batch) around a `recv_batch`,
//!   [`acknowledge`](ShareConsumerMachine::acknowledge),
//!   [`commit`](ShareConsumerMachine::commit), [`close`](ShareConsumerMachine::close)) and what
//!   the other parts tell it ([`group_event`](ShareConsumerMachine::group_event),
//!   [`fetch_event`](ShareConsumerMachine::fetch_event)).
//!
//! A batch is settled before the next is handed out: in implicit mode the records of the last
//! batch not acknowledged are accepted; in explicit mode one not acknowledged refuses the next
//! batch. A close accepts the last batch (implicit mode) and releases the rest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use kcon_core::{Machine, Outgoing, Record, RequestFailure, RequestId, TopicPartition};
use kcon_fetch::share::{AcknowledgeType, AcknowledgementOutcome, ShareEvent};
use kcon_group::{GroupEvent, RevocationId};
use tracing::debug;

use super::ShareMetrics;
use crate::config::AcknowledgementMode;
use crate::error::Error;

/// The most acknowledgement outcomes kept to be read (`take_outcomes`): an application that
/// never reads them (it commits never, nor takes them) keeps the newest this many; every one is
/// counted in the metrics and told to the hooks all the same.
pub const OUTCOMES_KEPT: usize = 4096;

/// The member hears the application is alive at most this often while a call waits.
const LIVENESS_MIN: Duration = Duration::from_millis(500);

kcon_core::timers! {
    /// The machine's timers, one table, derived from its state whenever read (`timers`).
    enum Timer {
        /// A call that waits tells the member the application is alive: every half
        /// `max.poll.interval.ms` (at least 500 ms) since it last did.
        Liveness,
    }
    type Timers;
}

/// What the machine tells the parts around it, in order: its events. A new one is a new method
/// of the driver's [`Parts`](super::driver::Parts), so every implementation must say what it
/// does with it before it compiles.
#[derive(Debug, Clone)]
pub enum Command {
    /// The group member subscribes to these topics, as the application named them (empty:
    /// it leaves).
    Subscribe(Vec<String>),
    /// The group member hears the application is alive (it asked for records).
    Alive,
    /// The group member hears the revocation is done: nothing waits for it, as the
    /// acknowledgements of the partitions revoked still go.
    RevocationDone(RevocationId),
    /// The fetcher's requests carry the member id the group member has now: it was assigned
    /// partitions, so it has one.
    MemberId,
    /// The fetcher fetches these partitions: every one assigned now.
    Assign(BTreeSet<TopicPartition>),
    /// The fetcher acknowledges `first..=last` of a partition as this kind, with the next
    /// request to its leader.
    Acknowledge(TopicPartition, i64, i64, AcknowledgeType),
    /// The fetcher sends every acknowledgement given so far; it tells
    /// [`ShareEvent::Committed`] with this number once they are answered.
    Commit(u64),
    /// The application waits for records, having read this many [`ShareEvent::Records`]: the
    /// fetcher fetches until records come.
    Want(u64),
    /// The wait ended with records, or a new want replaces it: the fetcher stopped wanting by
    /// itself, nothing to tell it.
    WantEnded,
    /// The wait was called off (the call returns an error): the fetcher stops fetching, so
    /// that nothing is acquired to sit under its lock.
    StopWanting,
    /// The fetcher sends the acknowledgements left and closes its share sessions.
    CloseFetcher,
    /// The group member leaves the group.
    CloseMember,
    /// The metrics handle gets a copy of the counts
    /// ([`metrics`](ShareConsumerMachine::metrics)).
    Publish,
    /// The acknowledgement hooks hear this outcome.
    Acknowledged(AcknowledgementOutcome),
    /// The application's call returns this error.
    Error(Error),
}

/// The share consumer's bookkeeping (see the module documentation for how to drive it).
#[derive(Debug)]
pub struct ShareConsumerMachine {
    mode: AcknowledgementMode,
    /// A batch holds at most this many records (`max.poll.records`).
    max_poll_records: usize,
    /// The topics subscribed to.
    subscription: BTreeSet<String>,
    /// The partitions the group assigned this member.
    assigned: BTreeSet<TopicPartition>,
    /// Records acquired and not handed out yet.
    buffer: Buffered,
    /// The last batch's records by partition and offset, with what the application said.
    delivered: BTreeMap<TopicPartition, Delivered>,
    /// Outcomes of acknowledgements not read yet.
    outcomes: VecDeque<AcknowledgementOutcome>,
    /// The number the next commit goes by.
    next_commit: u64,
    /// [`ShareEvent::Records`] read from the fetcher: what a want says it has seen.
    records_seen: u64,
    /// A want is out: the fetcher fetches for the call waiting.
    wanting: bool,
    /// When the member was last told the application is alive.
    last_liveness: Instant,
    /// A call that waits tells the member the application is alive this often: half
    /// `max.poll.interval.ms`, at least [`LIVENESS_MIN`].
    liveness_every: Duration,
    /// Closed: the application's calls find it so.
    closed: bool,
    metrics: ShareMetrics,
    /// The member's fatal error: every later `recv_batch` returns it.
    failed: Option<Error>,
    commands: VecDeque<Command>,
}

impl ShareConsumerMachine {
    /// A share consumer subscribed to nothing yet, settling in `mode`, handing out at most
    /// `max_poll_records` records a batch, whose member gives up on an application silent for
    /// `max_poll_interval`; made at `now`.
    pub fn new(
        mode: AcknowledgementMode,
        max_poll_records: usize,
        max_poll_interval: Duration,
        now: Instant,
    ) -> Self {
        ShareConsumerMachine {
            mode,
            max_poll_records: max_poll_records.max(1),
            subscription: BTreeSet::new(),
            assigned: BTreeSet::new(),
            buffer: Buffered::default(),
            delivered: BTreeMap::new(),
            outcomes: VecDeque::new(),
            next_commit: 0,
            records_seen: 0,
            wanting: false,
            last_liveness: now,
            liveness_every: (max_poll_interval / 2).max(LIVENESS_MIN),
            closed: false,
            metrics: ShareMetrics::default(),
            failed: None,
            commands: VecDeque::new(),
        }
    }

    // ----- queries -----

    /// The acknowledgement mode.
    pub fn mode(&self) -> AcknowledgementMode {
        self.mode
    }

    /// The topics subscribed to.
    pub fn subscription(&self) -> &BTreeSet<String> {
        &self.subscription
    }

    /// The partitions the group assigned this member now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.assigned
    }

    /// The counts so far.
    pub fn metrics(&self) -> &ShareMetrics {
        &self.metrics
    }

    /// Whether records acquired wait to be handed out.
    pub fn has_records(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// How many records acquired wait to be handed out.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    // ----- the application's calls -----

    /// Subscribes to `topics` (replacing the subscription; empty leaves).
    pub fn subscribe(&mut self, _now: Instant, topics: Vec<String>) -> Result<(), Error> {
        if self.closed {
            return Err(Error::closed());
        }
        self.subscription = topics.iter().cloned().collect();
        self.commands.push_back(Command::Subscribe(topics));
        Ok(())
    }

    /// A `recv_batch` starts: it fails at once after the member failed, once closed, or
    /// before a subscription; else the last batch is settled (which fails in explicit mode
    /// while a record of it is not acknowledged) and the member hears the application is
    /// alive. A want left out by a call dropped while it waited was called off with it.
    pub fn start_batch(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.closed {
            return Err(Error::closed());
        }
        if self.subscription.is_empty() {
            return Err(Error::misuse("recv_batch before subscribe"));
        }
        self.wanting = false;
        self.settle_batch()?;
        self.alive(now);
        Ok(())
    }

    /// The member hears the application is alive.
    fn alive(&mut self, now: Instant) {
        self.last_liveness = now;
        self.commands.push_back(Command::Alive);
    }

    /// When `timer` is due, as the state says.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Liveness => self
                .wanting
                .then(|| self.last_liveness + self.liveness_every),
        }
    }

    /// The timer table, as the state says it is.
    fn timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.deadline(timer))
    }

    /// The call waits for records: the want before is ended and a new one goes, saying how
    /// many record events were read (one sent before a batch was read is stale).
    pub fn want(&mut self, _now: Instant) {
        self.want_ended();
        self.wanting = true;
        self.commands.push_back(Command::Want(self.records_seen));
    }

    /// The call's wait is over: ended with records (`with_records`), or called off by an
    /// error.
    pub fn wait_over(&mut self, _now: Instant, with_records: bool) {
        if with_records {
            self.want_ended();
        } else if std::mem::take(&mut self.wanting) {
            self.commands.push_back(Command::StopWanting);
        }
    }

    /// The next batch: at most `max.poll.records` of the records acquired, which become the
    /// last batch, to be acknowledged.
    pub fn take_batch(&mut self) -> Vec<Record> {
        let batch = self.buffer.take(self.max_poll_records);
        // A partition's records come in runs: its name is made and looked up once per run.
        let mut records = batch.iter().peekable();
        while let Some(first) = records.next() {
            let offsets = self
                .delivered
                .entry(TopicPartition::new(&*first.topic, first.partition))
                .or_default();
            offsets.insert(first.offset);
            while let Some(r) =
                records.next_if(|r| r.partition == first.partition && r.topic == first.topic)
            {
                offsets.insert(r.offset);
            }
        }
        batch
    }

    /// Settles `record` (one of the last batch's) as `kind`. `Renew` settles nothing: the
    /// record stays to be acknowledged. A gap, a record not of the last batch, or one
    /// acknowledged already is refused (`Misuse`).
    pub fn acknowledge(
        &mut self,
        _now: Instant,
        record: &Record,
        kind: AcknowledgeType,
    ) -> Result<(), Error> {
        if kind == AcknowledgeType::Gap {
            return Err(Error::misuse(
                "a record is acknowledged as accept, release, reject or renew; gaps are the \
                 client's",
            ));
        }
        let tp = TopicPartition::new(&*record.topic, record.partition);
        let slot = self
            .delivered
            .get_mut(&tp)
            .and_then(|offsets| offsets.get_mut(record.offset))
            .ok_or_else(|| {
                Error::misuse(format!(
                    "{tp} offset {} is not a record of the last batch",
                    record.offset
                ))
            })?;
        if let Some(before) = slot {
            return Err(Error::misuse(format!(
                "{tp} offset {} was acknowledged already ({})",
                record.offset,
                before.name()
            )));
        }
        if kind != AcknowledgeType::Renew {
            *slot = Some(kind);
        }
        if self.closed {
            return Err(Error::closed());
        }
        self.commands
            .push_back(Command::Acknowledge(tp, record.offset, record.offset, kind));
        Ok(())
    }

    /// A commit: in implicit mode the last batch is accepted first, then every
    /// acknowledgement given so far goes at once. Returns the commit's number, which a
    /// [`ShareEvent::Committed`] answers ([`commit_done`](Self::commit_done)).
    pub fn commit(&mut self, _now: Instant) -> Result<u64, Error> {
        if self.mode == AcknowledgementMode::Implicit {
            self.accept_unacknowledged();
        }
        let id = self.next_commit;
        self.next_commit += 1;
        if self.closed {
            return Err(Error::closed());
        }
        self.commands.push_back(Command::Commit(id));
        Ok(id)
    }

    /// The commit waited for is answered.
    pub fn commit_done(&mut self, _now: Instant) {
        self.metrics.commits += 1;
        self.commands.push_back(Command::Publish);
    }

    /// The outcomes of acknowledgements read since the last call: the newest
    /// [`OUTCOMES_KEPT`].
    pub fn take_outcomes(&mut self) -> Vec<AcknowledgementOutcome> {
        std::mem::take(&mut self.outcomes).into()
    }

    /// Closes: in implicit mode the last batch is accepted, records left unacknowledged and
    /// those never handed out are released, and the fetcher closes its sessions; the member
    /// leaves after ([`leave`](Self::leave)).
    pub fn close(&mut self, _now: Instant) {
        if self.closed {
            return;
        }
        if self.mode == AcknowledgementMode::Implicit {
            self.accept_unacknowledged();
        }
        self.release_rest();
        self.closed = true;
        self.commands.push_back(Command::CloseFetcher);
    }

    /// The fetcher closed (or was given up on): the member leaves.
    pub fn leave(&mut self, _now: Instant) {
        self.commands.push_back(Command::CloseMember);
    }

    // ----- what the parts tell it -----

    /// The group member's event (`None`: its task stopped, which the call returns as
    /// `Closed`).
    pub fn group_event(&mut self, _now: Instant, event: Option<GroupEvent>) {
        let Some(event) = event else {
            self.commands.push_back(Command::Error(Error::closed()));
            return;
        };
        if self.closed {
            self.commands.push_back(Command::Error(Error::closed()));
            return;
        }
        match event {
            GroupEvent::Assigned { partitions, .. } => {
                self.commands.push_back(Command::MemberId);
                self.assigned.extend(partitions);
                self.commands
                    .push_back(Command::Assign(self.assigned.clone()));
            }
            GroupEvent::Revoked { partitions, id } => {
                for tp in &partitions {
                    self.assigned.remove(tp);
                }
                self.commands
                    .push_back(Command::Assign(self.assigned.clone()));
                // Nothing to finish first: acknowledgements of these partitions still go.
                self.commands.push_back(Command::RevocationDone(id));
            }
            GroupEvent::Lost { partitions } => {
                for tp in &partitions {
                    self.assigned.remove(tp);
                }
                self.commands
                    .push_back(Command::Assign(self.assigned.clone()));
            }
            GroupEvent::Fatal(e) => {
                let e = Error::from(e);
                // Returned to the application, not logged again.
                debug!(error = %e, "the share group member cannot go on");
                self.failed = Some(e.clone());
                self.commands.push_back(Command::Error(e));
            }
            other => debug!(event = ?other, "share group member"),
        }
    }

    /// The events the member told while it left: it revokes before it leaves, and nothing
    /// waits on those revocations; a fatal error is only logged.
    pub fn member_closed(&mut self, _now: Instant, mut events: Vec<GroupEvent>) {
        events.retain(|e| matches!(e, GroupEvent::Fatal(_)));
        if let Some(GroupEvent::Fatal(e)) = events.pop() {
            debug!(error = %e, "the share group member failed while closing");
        }
    }

    /// The fetcher's event (`None`: its task stopped, which the call returns as `Closed`):
    /// records acquired wait to be handed out, an acknowledgement's outcome is counted, told
    /// to the hooks and kept to be read.
    pub fn fetch_event(&mut self, _now: Instant, event: Option<ShareEvent>) {
        match event {
            None => self.commands.push_back(Command::Error(Error::closed())),
            Some(ShareEvent::Records {
                records,
                lock_expired,
                ..
            }) => {
                self.records_seen += 1;
                let m = &mut self.metrics;
                m.records_acquired += records.len() as u64;
                m.lock_expirations += lock_expired as u64;
                for r in &records {
                    let count = usize::from(r.delivery_count.unwrap_or(1).clamp(1, 5));
                    m.delivery_counts[count - 1] += 1;
                }
                self.buffer.push(records);
                self.commands.push_back(Command::Publish);
            }
            Some(ShareEvent::Acknowledged(o)) => {
                let m = &mut self.metrics;
                for r in &o.ranges {
                    let n = r.last.saturating_sub(r.first).saturating_add(1).max(0) as u64;
                    match (o.is_ok(), r.kind) {
                        (false, _) => m.acknowledgements_failed += n,
                        (true, AcknowledgeType::Accept) => m.records_accepted += n,
                        (true, AcknowledgeType::Release) => m.records_released += n,
                        (true, AcknowledgeType::Reject) => m.records_rejected += n,
                        (true, AcknowledgeType::Renew) => m.records_renewed += n,
                        (true, AcknowledgeType::Gap) => {}
                    }
                }
                self.commands.push_back(Command::Publish);
                self.commands.push_back(Command::Acknowledged(o.clone()));
                if self.outcomes.len() == OUTCOMES_KEPT {
                    self.outcomes.pop_front();
                }
                self.outcomes.push_back(o);
            }
            Some(other) => debug!(event = ?other, "share fetcher"),
        }
    }

    // ----- internals -----

    /// The want out, if any, ended with records or replaced: nothing to tell the fetcher but
    /// that.
    fn want_ended(&mut self) {
        if std::mem::take(&mut self.wanting) {
            self.commands.push_back(Command::WantEnded);
        }
    }

    /// The last batch settled before the next: implicit accepts what was not acknowledged,
    /// explicit refuses to go on while something was not.
    fn settle_batch(&mut self) -> Result<(), Error> {
        match self.mode {
            AcknowledgementMode::Implicit => self.accept_unacknowledged(),
            AcknowledgementMode::Explicit => {
                let open: Vec<String> = self
                    .delivered
                    .iter()
                    .flat_map(|(tp, offsets)| {
                        offsets.unacknowledged().map(move |o| format!("{tp}@{o}"))
                    })
                    .take(5)
                    .collect();
                if !open.is_empty() {
                    return Err(Error::misuse(format!(
                        "share.acknowledgement.mode=explicit: records of the last batch are not \
                         acknowledged ({}); acknowledge each before asking for more",
                        open.join(", ")
                    )));
                }
                self.delivered.clear();
            }
        }
        Ok(())
    }

    /// Every record of the last batch not acknowledged yet, accepted (in ranges).
    fn accept_unacknowledged(&mut self) {
        let delivered = std::mem::take(&mut self.delivered);
        if self.closed {
            return;
        }
        for (tp, offsets) in delivered {
            for (first, last) in runs(offsets.unacknowledged()) {
                self.commands.push_back(Command::Acknowledge(
                    tp.clone(),
                    first,
                    last,
                    AcknowledgeType::Accept,
                ));
            }
        }
    }

    /// Records left unacknowledged and those never handed out: released.
    fn release_rest(&mut self) {
        let delivered = std::mem::take(&mut self.delivered);
        let buffered = std::mem::take(&mut self.buffer);
        let mut rest: BTreeMap<TopicPartition, BTreeSet<i64>> = BTreeMap::new();
        for (tp, offsets) in delivered {
            rest.entry(tp).or_default().extend(offsets.unacknowledged());
        }
        for r in buffered.into_records() {
            rest.entry(TopicPartition::new(&*r.topic, r.partition))
                .or_default()
                .insert(r.offset);
        }
        for (tp, offsets) in rest {
            for (first, last) in runs(offsets.into_iter()) {
                self.commands.push_back(Command::Acknowledge(
                    tp.clone(),
                    first,
                    last,
                    AcknowledgeType::Release,
                ));
            }
        }
    }
}

impl Machine for ShareConsumerMachine {
    /// It asks for nothing to be carried out: what it waits for (records, a commit's answer)
    /// comes as the fetcher's events.
    type Request = Infallible;
    type Target = ();
    type Response = Infallible;
    type Event = Command;

    /// Never called for a request of its own: it hands none out.
    fn handle_response(
        &mut self,
        _now: Instant,
        _id: RequestId,
        _result: Result<Infallible, RequestFailure>,
    ) {
    }

    /// It has no timers.
    /// Time passed: a call that waits tells the member the application is alive when it is
    /// due.
    fn handle_timeout(&mut self, now: Instant) {
        let timers = self.timers();
        for timer in timers.expired(now) {
            match timer {
                Timer::Liveness => self.alive(now),
            }
        }
    }

    fn poll_request(&mut self, _now: Instant) -> Option<Outgoing<Infallible, ()>> {
        None
    }

    fn poll_event(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The table's earliest timer: while a call waits, when the member next hears the
    /// application is alive.
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers().next()
    }
}

/// Consecutive offsets in `offsets` (ascending) as inclusive ranges.
/// Records acquired and not handed out yet, in the runs the fetcher handed them over in: a
/// batch that takes the rest of a run takes its vector (its records moved at most once, to its
/// front, when some were taken before); one that takes part of a run moves those records alone.
/// No run is kept empty.
#[derive(Debug, Default)]
struct Buffered {
    chunks: VecDeque<std::vec::IntoIter<Record>>,
}

impl Buffered {
    fn push(&mut self, records: Vec<Record>) {
        if !records.is_empty() {
            self.chunks.push_back(records.into_iter());
        }
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(ExactSizeIterator::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The first `most` records (all of them, if fewer), in order.
    fn take(&mut self, most: usize) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        while out.len() < most {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let want = most - out.len();
            let part: Vec<Record> = if front.len() <= want {
                self.chunks
                    .pop_front()
                    .map(Vec::from_iter)
                    .unwrap_or_default()
            } else {
                front.by_ref().take(want).collect()
            };
            if out.is_empty() {
                out = part;
            } else {
                out.extend(part);
            }
        }
        out
    }

    /// Every record, in order.
    fn into_records(self) -> impl Iterator<Item = Record> {
        self.chunks.into_iter().flatten()
    }
}

/// A partition's records of the last batch, in offset order, each with what the application
/// said of it. A batch's records of a partition come in ascending offsets, so a record is
/// mostly pushed at the end; one that is not (a record released and delivered again within the
/// batch) is put in its place. A batch holds at most `max.poll.records`.
#[derive(Debug, Default)]
struct Delivered(Vec<(i64, Option<AcknowledgeType>)>);

impl Delivered {
    /// `offset`, delivered and not acknowledged (again, if it was there).
    fn insert(&mut self, offset: i64) {
        match self.0.last() {
            Some(&(last, _)) if last >= offset => {
                match self.0.binary_search_by_key(&offset, |&(o, _)| o) {
                    Ok(at) => self.0[at].1 = None,
                    Err(at) => self.0.insert(at, (offset, None)),
                }
            }
            _ => self.0.push((offset, None)),
        }
    }

    /// What the application said of `offset`, if it was delivered.
    fn get_mut(&mut self, offset: i64) -> Option<&mut Option<AcknowledgeType>> {
        let at = self.0.binary_search_by_key(&offset, |&(o, _)| o).ok()?;
        Some(&mut self.0[at].1)
    }

    /// The offsets not acknowledged, ascending.
    fn unacknowledged(&self) -> impl Iterator<Item = i64> + '_ {
        self.0.iter().filter(|(_, a)| a.is_none()).map(|&(o, _)| o)
    }
}

fn runs(offsets: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for o in offsets {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == o => *last = o,
            _ => out.push((o, o)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kcon_group::GroupError;

    use super::*;
    use crate::error::ErrorKind;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn record(p: i32, offset: i64) -> Record {
        Record::new("t", p, offset, None, None)
    }

    /// `max.poll.interval.ms` at its default.
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    /// A machine subscribed to `t` whose commands so far were read.
    fn machine(mode: AcknowledgementMode, max_poll_records: usize) -> ShareConsumerMachine {
        let mut m = ShareConsumerMachine::new(mode, max_poll_records, FIVE_MINUTES, Instant::now());
        m.subscribe(Instant::now(), vec!["t".to_owned()]).unwrap();
        assert!(matches!(
            commands(&mut m)[..],
            [Command::Subscribe(ref topics)] if topics == &["t".to_owned()]
        ));
        m
    }

    fn commands(m: &mut ShareConsumerMachine) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// The acknowledgements among `commands`.
    fn acks(commands: &[Command]) -> Vec<(TopicPartition, i64, i64, AcknowledgeType)> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Acknowledge(tp, first, last, kind) => {
                    Some((tp.clone(), *first, *last, *kind))
                }
                _ => None,
            })
            .collect()
    }

    fn records_event(p: i32, records: Vec<Record>, lock_expired: usize) -> Option<ShareEvent> {
        Some(ShareEvent::Records {
            partition: tp(p),
            records,
            lock_timeout_ms: 30_000,
            lock_expired,
        })
    }

    /// Records of partition `p` at `offsets` acquired, then handed out as the last batch.
    fn hand_out(m: &mut ShareConsumerMachine, p: i32, offsets: &[i64]) -> Vec<Record> {
        let now = Instant::now();
        let records = offsets.iter().map(|o| record(p, *o)).collect();
        m.fetch_event(now, records_event(p, records, 0));
        let batch = m.take_batch();
        commands(m);
        batch
    }

    fn outcome(p: i32, ranges: &[(i64, i64, AcknowledgeType)], error_code: i16) -> ShareEvent {
        ShareEvent::Acknowledged(AcknowledgementOutcome {
            partition: tp(p),
            ranges: ranges
                .iter()
                .map(
                    |(first, last, kind)| kcon_fetch::share::AcknowledgementRange {
                        first: *first,
                        last: *last,
                        kind: *kind,
                    },
                )
                .collect(),
            error_code,
            failure: None,
        })
    }

    #[test]
    fn a_batch_is_refused_before_subscribing_and_after_closing() {
        let now = Instant::now();
        let mut m = ShareConsumerMachine::new(AcknowledgementMode::Implicit, 10, FIVE_MINUTES, now);
        let e = m.start_batch(now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(e.to_string().contains("recv_batch before subscribe"), "{e}");
        assert!(commands(&mut m).is_empty(), "the member hears nothing");
        m.subscribe(now, vec!["t".to_owned()]).unwrap();
        m.close(now);
        assert_eq!(m.start_batch(now).unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(
            m.subscribe(now, vec!["u".to_owned()]).unwrap_err().kind(),
            ErrorKind::Closed
        );
    }

    /// Explicit mode: a record of the last batch not acknowledged refuses the next batch,
    /// naming it, and the member does not hear the application is alive; once every record is
    /// acknowledged the next batch goes on.
    #[test]
    fn explicit_mode_refuses_the_next_batch_while_a_record_is_unacknowledged() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Explicit, 10);
        let batch = hand_out(&mut m, 0, &[3, 4]);
        m.acknowledge(now, &batch[0], AcknowledgeType::Accept)
            .unwrap();
        let e = m.start_batch(now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(
            e.to_string().contains(
                "share.acknowledgement.mode=explicit: records of the last batch are not \
                 acknowledged (t-0@4); acknowledge each before asking for more"
            ),
            "{e}"
        );
        assert_eq!(
            acks(&commands(&mut m)),
            [(tp(0), 3, 3, AcknowledgeType::Accept)],
            "only the record acknowledged goes; nothing is accepted for the application"
        );
        m.acknowledge(now, &batch[1], AcknowledgeType::Reject)
            .unwrap();
        m.start_batch(now).unwrap();
        let c = commands(&mut m);
        assert_eq!(acks(&c), [(tp(0), 4, 4, AcknowledgeType::Reject)]);
        assert!(matches!(c.last(), Some(Command::Alive)), "{c:?}");
        // The last batch is settled: its records are no longer to acknowledge.
        let e = m
            .acknowledge(now, &batch[1], AcknowledgeType::Accept)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("t-0 offset 4 is not a record of the last batch"),
            "{e}"
        );
    }

    /// A gap, a record not of the last batch and one acknowledged twice are refused with
    /// their messages, and nothing goes to the fetcher for them.
    #[test]
    fn acknowledgements_the_application_cannot_give_are_refused() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Explicit, 10);
        let batch = hand_out(&mut m, 0, &[7]);
        let e = m
            .acknowledge(now, &batch[0], AcknowledgeType::Gap)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(e.to_string().contains("gaps are the client's"), "{e}");
        let e = m
            .acknowledge(now, &record(1, 7), AcknowledgeType::Accept)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("t-1 offset 7 is not a record of the last batch"),
            "{e}"
        );
        m.acknowledge(now, &batch[0], AcknowledgeType::Release)
            .unwrap();
        let e = m
            .acknowledge(now, &batch[0], AcknowledgeType::Accept)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("t-0 offset 7 was acknowledged already (release)"),
            "{e}"
        );
        assert_eq!(
            acks(&commands(&mut m)),
            [(tp(0), 7, 7, AcknowledgeType::Release)]
        );
    }

    /// `Renew` goes to the fetcher but settles nothing: the record is still to acknowledge,
    /// and explicit mode still refuses the next batch for it.
    #[test]
    fn renew_does_not_settle_a_record() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Explicit, 10);
        let batch = hand_out(&mut m, 0, &[2]);
        m.acknowledge(now, &batch[0], AcknowledgeType::Renew)
            .unwrap();
        m.acknowledge(now, &batch[0], AcknowledgeType::Renew)
            .unwrap();
        assert_eq!(m.start_batch(now).unwrap_err().kind(), ErrorKind::Misuse);
        m.acknowledge(now, &batch[0], AcknowledgeType::Accept)
            .unwrap();
        assert_eq!(
            acks(&commands(&mut m)),
            [
                (tp(0), 2, 2, AcknowledgeType::Renew),
                (tp(0), 2, 2, AcknowledgeType::Renew),
                (tp(0), 2, 2, AcknowledgeType::Accept),
            ]
        );
        m.start_batch(now).unwrap();
    }

    /// Implicit mode: the next batch accepts what the application did not acknowledge, in
    /// ranges of consecutive offsets per partition, before the member hears it is alive.
    #[test]
    fn implicit_mode_accepts_the_rest_of_the_last_batch_in_ranges() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        let records: Vec<Record> = [0, 1, 2, 3, 4, 5, 9]
            .iter()
            .map(|o| record(0, *o))
            .collect();
        m.fetch_event(now, records_event(0, records, 0));
        m.fetch_event(now, records_event(1, vec![record(1, 0)], 0));
        let batch = m.take_batch();
        assert_eq!(batch.len(), 8);
        commands(&mut m);
        m.acknowledge(now, &batch[2], AcknowledgeType::Reject)
            .unwrap();
        m.start_batch(now).unwrap();
        let c = commands(&mut m);
        assert_eq!(
            acks(&c),
            [
                (tp(0), 2, 2, AcknowledgeType::Reject),
                (tp(0), 0, 1, AcknowledgeType::Accept),
                (tp(0), 3, 5, AcknowledgeType::Accept),
                (tp(0), 9, 9, AcknowledgeType::Accept),
                (tp(1), 0, 0, AcknowledgeType::Accept),
            ]
        );
        assert!(matches!(c.last(), Some(Command::Alive)), "{c:?}");
        // Accepted once: the next batch accepts nothing more.
        m.start_batch(now).unwrap();
        assert!(acks(&commands(&mut m)).is_empty());
    }

    /// A batch is at most `max.poll.records`; the rest waits for the next.
    #[test]
    fn a_batch_takes_at_most_max_poll_records() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 2);
        let records = (0..5).map(|o| record(0, o)).collect();
        m.fetch_event(now, records_event(0, records, 0));
        let offsets = |b: Vec<Record>| b.iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!(offsets(m.take_batch()), [0, 1]);
        assert_eq!(m.buffered(), 3);
        assert_eq!(offsets(m.take_batch()), [2, 3]);
        assert_eq!(offsets(m.take_batch()), [4]);
        assert!(!m.has_records());
    }

    /// A batch takes records across the fetcher's runs, in the order acquired, and a run it
    /// takes part of keeps the rest for the next.
    #[test]
    fn a_batch_takes_records_across_runs_in_order() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 4);
        let run = |p: i32, offsets: std::ops::Range<i64>| offsets.map(|o| record(p, o)).collect();
        m.fetch_event(now, records_event(0, run(0, 0..3), 0));
        m.fetch_event(now, records_event(1, Vec::new(), 0));
        m.fetch_event(now, records_event(1, run(1, 10..13), 0));
        m.fetch_event(now, records_event(0, run(0, 3..5), 0));
        let taken = |b: Vec<Record>| {
            b.iter()
                .map(|r| (r.partition, r.offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(m.buffered(), 8);
        assert_eq!(taken(m.take_batch()), [(0, 0), (0, 1), (0, 2), (1, 10)]);
        assert_eq!(m.buffered(), 4);
        assert_eq!(taken(m.take_batch()), [(1, 11), (1, 12), (0, 3), (0, 4)]);
        assert!(!m.has_records());
        assert!(m.take_batch().is_empty());
    }

    /// Records of a batch below one delivered before it (released, then acquired again) are
    /// kept in offset order: each is found by its offset, an offset that came twice is one
    /// record, and what is left open is named in offset order.
    #[test]
    fn records_delivered_out_of_order_are_found_by_offset() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Explicit, 10);
        let batch = hand_out(&mut m, 0, &[5, 6, 2, 3, 6, 1]);
        assert_eq!(batch.len(), 6);
        m.acknowledge(now, &batch[0], AcknowledgeType::Accept)
            .unwrap();
        m.acknowledge(now, &batch[2], AcknowledgeType::Accept)
            .unwrap();
        let e = m.start_batch(now).unwrap_err();
        assert!(e.to_string().contains("(t-0@1, t-0@3, t-0@6)"), "{e}");
        m.acknowledge(now, &batch[4], AcknowledgeType::Reject)
            .unwrap();
        let e = m
            .acknowledge(now, &batch[1], AcknowledgeType::Reject)
            .unwrap_err();
        assert!(e.to_string().contains("acknowledged already"), "{e}");
        let e = m
            .acknowledge(now, &record(0, 4), AcknowledgeType::Accept)
            .unwrap_err();
        assert!(
            e.to_string().contains("not a record of the last batch"),
            "{e}"
        );
        m.acknowledge(now, &batch[3], AcknowledgeType::Release)
            .unwrap();
        m.acknowledge(now, &batch[5], AcknowledgeType::Accept)
            .unwrap();
        m.start_batch(now).unwrap();
    }

    /// A close accepts the last batch (implicit mode) and releases what was never handed out;
    /// in explicit mode what was left unacknowledged is released with it, in one range where
    /// the offsets meet. The fetcher closes after, then the member leaves.
    #[test]
    fn a_close_settles_the_last_batch_and_releases_the_rest() {
        let now = Instant::now();
        for (mode, want) in [
            (
                AcknowledgementMode::Implicit,
                vec![
                    (tp(0), 1, 1, AcknowledgeType::Accept),
                    (tp(0), 2, 3, AcknowledgeType::Release),
                ],
            ),
            (
                AcknowledgementMode::Explicit,
                vec![(tp(0), 1, 3, AcknowledgeType::Release)],
            ),
        ] {
            let mut m = machine(mode, 2);
            let records = (0..4).map(|o| record(0, o)).collect();
            m.fetch_event(now, records_event(0, records, 0));
            let batch = m.take_batch();
            m.acknowledge(now, &batch[0], AcknowledgeType::Accept)
                .unwrap();
            commands(&mut m);
            m.close(now);
            let c = commands(&mut m);
            assert_eq!(acks(&c), want, "{mode:?}");
            assert!(matches!(c.last(), Some(Command::CloseFetcher)), "{c:?}");
            assert!(!m.has_records());
            m.leave(now);
            assert!(matches!(commands(&mut m)[..], [Command::CloseMember]));
            // Closed: the batch is settled, and nothing more goes to the fetcher.
            assert_eq!(
                m.acknowledge(now, &batch[1], AcknowledgeType::Accept)
                    .unwrap_err()
                    .kind(),
                ErrorKind::Misuse
            );
            assert_eq!(m.commit(now).unwrap_err().kind(), ErrorKind::Closed);
            assert!(commands(&mut m).is_empty());
        }
    }

    /// Records acquired count by delivery count (none read as 1, above 5 as 5) with the locks
    /// that expired; every outcome counts by kind when taken, as failed when refused, goes to
    /// the hooks after the counts are published, and is kept to be read.
    #[test]
    fn the_metrics_count_acquisitions_and_outcomes() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        let counts = [None, Some(1), Some(2), Some(5), Some(9)];
        let records = counts
            .iter()
            .enumerate()
            .map(|(o, c)| {
                let mut r = record(0, o as i64);
                r.delivery_count = *c;
                r
            })
            .collect();
        m.fetch_event(now, records_event(0, records, 3));
        assert!(matches!(commands(&mut m)[..], [Command::Publish]));
        let ok = outcome(
            0,
            &[
                (0, 2, AcknowledgeType::Accept),
                (3, 3, AcknowledgeType::Release),
                (4, 4, AcknowledgeType::Reject),
                (5, 6, AcknowledgeType::Renew),
            ],
            0,
        );
        m.fetch_event(now, Some(ok.clone()));
        let refused = outcome(1, &[(0, 9, AcknowledgeType::Accept)], 42);
        m.fetch_event(now, Some(refused.clone()));
        let c = commands(&mut m);
        let told: Vec<&AcknowledgementOutcome> = c
            .iter()
            .filter_map(|c| match c {
                Command::Acknowledged(o) => Some(o),
                _ => None,
            })
            .collect();
        assert!(matches!(c[0], Command::Publish), "{c:?}");
        assert!(matches!(c[2], Command::Publish), "{c:?}");
        let (ShareEvent::Acknowledged(ok), ShareEvent::Acknowledged(refused)) = (ok, refused)
        else {
            unreachable!("outcomes")
        };
        assert_eq!(told, [&ok, &refused]);
        let want = ShareMetrics {
            records_acquired: 5,
            records_accepted: 3,
            records_released: 1,
            records_rejected: 1,
            records_renewed: 2,
            acknowledgements_failed: 10,
            lock_expirations: 3,
            delivery_counts: [2, 1, 0, 0, 2],
            commits: 0,
        };
        assert_eq!(m.metrics(), &want);
        assert_eq!(m.take_outcomes(), [ok, refused]);
        assert!(m.take_outcomes().is_empty());
    }

    /// Outcomes nobody reads are kept up to [`OUTCOMES_KEPT`], the newest, while the metrics
    /// count every one.
    #[test]
    fn outcomes_nobody_reads_are_bounded_to_the_newest() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        let told = OUTCOMES_KEPT + 10;
        for i in 0..told {
            let o = i64::try_from(i).unwrap();
            m.fetch_event(now, Some(outcome(0, &[(o, o, AcknowledgeType::Accept)], 0)));
        }
        assert_eq!(m.metrics().records_accepted, told as u64);
        let kept = m.take_outcomes();
        assert_eq!(kept.len(), OUTCOMES_KEPT);
        assert_eq!(kept[0].ranges[0].first, 10, "the oldest go first");
        assert_eq!(
            kept[OUTCOMES_KEPT - 1].ranges[0].first,
            i64::try_from(told - 1).unwrap()
        );
    }

    /// A commit accepts the last batch first (implicit mode), goes by the next number, and
    /// counts once answered.
    #[test]
    fn commits_go_by_increasing_numbers_after_the_implicit_accepts() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        hand_out(&mut m, 0, &[0, 1]);
        assert_eq!(m.commit(now).unwrap(), 0);
        let c = commands(&mut m);
        assert_eq!(acks(&c), [(tp(0), 0, 1, AcknowledgeType::Accept)]);
        assert!(matches!(c.last(), Some(Command::Commit(0))), "{c:?}");
        m.commit_done(now);
        assert_eq!(m.metrics().commits, 1);
        assert!(matches!(commands(&mut m)[..], [Command::Publish]));
        assert_eq!(m.commit(now).unwrap(), 1);
        assert!(matches!(commands(&mut m)[..], [Command::Commit(1)]));
    }

    /// Assigned partitions add to the assignment, the fetcher taking the member id first;
    /// lost ones leave it; the fetcher hears every partition assigned each time.
    #[test]
    fn group_events_keep_the_fetcher_on_the_assignment() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        m.group_event(
            now,
            Some(GroupEvent::Assigned {
                partitions: vec![tp(0), tp(1)],
                generation_id: 1,
            }),
        );
        m.group_event(
            now,
            Some(GroupEvent::Assigned {
                partitions: vec![tp(2)],
                generation_id: 2,
            }),
        );
        let c = commands(&mut m);
        let [
            Command::MemberId,
            Command::Assign(first),
            Command::MemberId,
            Command::Assign(then),
        ] = &c[..]
        else {
            panic!("{c:?}")
        };
        assert_eq!(first, &BTreeSet::from([tp(0), tp(1)]));
        assert_eq!(then, &BTreeSet::from([tp(0), tp(1), tp(2)]));
        m.group_event(
            now,
            Some(GroupEvent::Lost {
                partitions: vec![tp(1)],
            }),
        );
        let c = commands(&mut m);
        assert!(
            matches!(&c[..], [Command::Assign(a)] if a == &BTreeSet::from([tp(0), tp(2)])),
            "{c:?}"
        );
        assert_eq!(m.assignment(), &BTreeSet::from([tp(0), tp(2)]));
    }

    /// The member's fatal error goes to the call and to every later `recv_batch`; a member
    /// or fetcher task that stopped is `Closed` for the call, and is not kept.
    #[test]
    fn a_fatal_member_error_stays_and_a_stopped_task_is_closed() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        m.group_event(now, None);
        m.fetch_event(now, None);
        let c = commands(&mut m);
        assert!(
            matches!(&c[..], [Command::Error(a), Command::Error(b)]
                if a.kind() == ErrorKind::Closed && b.kind() == ErrorKind::Closed),
            "{c:?}"
        );
        m.start_batch(now).unwrap();
        commands(&mut m);
        m.group_event(
            now,
            Some(GroupEvent::Fatal(GroupError::Request("refused".to_owned()))),
        );
        let c = commands(&mut m);
        let [Command::Error(told)] = &c[..] else {
            panic!("{c:?}")
        };
        let again = m.start_batch(now).unwrap_err();
        assert_eq!(again.to_string(), told.to_string());
        assert!(again.to_string().contains("refused"), "{again}");
        assert!(commands(&mut m).is_empty(), "the member hears nothing");
    }

    /// A want says how many record events were read; a new one ends the one before; records
    /// end it without telling the fetcher more; an error calls it off.
    #[test]
    fn wants_end_with_records_and_are_called_off_by_errors() {
        let now = Instant::now();
        let mut m = machine(AcknowledgementMode::Implicit, 10);
        m.want(now);
        m.fetch_event(now, records_event(0, Vec::new(), 0));
        m.want(now);
        let c = commands(&mut m);
        assert!(
            matches!(
                c[..],
                [
                    Command::Want(0),
                    Command::Publish,
                    Command::WantEnded,
                    Command::Want(1)
                ]
            ),
            "{c:?}"
        );
        m.wait_over(now, true);
        assert!(matches!(commands(&mut m)[..], [Command::WantEnded]));
        m.wait_over(now, false);
        assert!(commands(&mut m).is_empty(), "no want is out");
        m.want(now);
        m.wait_over(now, false);
        assert!(matches!(
            commands(&mut m)[..],
            [Command::Want(1), Command::StopWanting]
        ));
        // A call dropped while it waited called its want off with it: the next call's first
        // want has nothing to end.
        m.want(now);
        commands(&mut m);
        m.start_batch(now).unwrap();
        m.want(now);
        assert!(matches!(
            commands(&mut m)[..],
            [Command::Alive, Command::Want(1)]
        ));
    }

    /// While a call waits, the member hears the application is alive every half
    /// `max.poll.interval.ms`, and not otherwise: a wait on an idle queue is polling.
    #[test]
    fn a_waiting_call_tells_the_member_the_application_is_alive_every_half_interval() {
        let start = Instant::now();
        let mut m = ShareConsumerMachine::new(
            AcknowledgementMode::Implicit,
            10,
            Duration::from_secs(4),
            start,
        );
        m.subscribe(start, vec!["t".to_owned()]).unwrap();
        commands(&mut m);
        assert_eq!(m.poll_timeout(), None, "no call waits");
        m.start_batch(start).unwrap();
        assert!(matches!(commands(&mut m)[..], [Command::Alive]));
        m.want(start);
        commands(&mut m);
        let due = start + Duration::from_secs(2);
        assert_eq!(m.poll_timeout(), Some(due));
        m.handle_timeout(due - Duration::from_millis(1));
        assert!(commands(&mut m).is_empty(), "not due yet");
        m.handle_timeout(due);
        assert!(matches!(commands(&mut m)[..], [Command::Alive]));
        assert_eq!(m.poll_timeout(), Some(due + Duration::from_secs(2)));
        // The wait ends with records: no more timer until the next call waits.
        m.fetch_event(due, records_event(0, vec![record(0, 0)], 0));
        m.wait_over(due, true);
        assert_eq!(m.poll_timeout(), None);
        // A short interval is told at most every 500 ms.
        let mut m = ShareConsumerMachine::new(
            AcknowledgementMode::Implicit,
            10,
            Duration::from_millis(100),
            start,
        );
        m.subscribe(start, vec!["t".to_owned()]).unwrap();
        m.start_batch(start).unwrap();
        m.want(start);
        assert_eq!(m.poll_timeout(), Some(start + Duration::from_millis(500)));
    }
}
