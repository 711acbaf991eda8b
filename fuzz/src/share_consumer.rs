//! The `share_consumer` target: kcon's share consumer machine on its sans-IO driver
//! (`kcon::fuzzing::share`: the `ShareConsumerMachine` and the `Driver` the `ShareConsumer`
//! runs it on), driven as the `ShareConsumer` drives it, its [`Parts`] a model world: the group
//! member's and the share fetcher's events are queues the ops fill, and everything the parts
//! are told is recorded and checked.
//!
//! The first byte picks the acknowledgement mode (bit 0: implicit or explicit),
//! `max.poll.records` (bits 1-3: 1 to 8) and `max.poll.interval.ms` (bits 4-5: 300 ms, 4 s,
//! 10 s, 300 s); the consumer subscribes to `t` (three partitions) at once. Then each step reads
//! an op byte, then what the op needs (a missing byte reads as 0); the run stops when the bytes
//! run out. Ops (the op byte modulo 15):
//!
//! | op | what |
//! |---|---|
//! | 0 | the group assigns the partitions of a bit set (the next byte) it has not assigned yet (`Assigned`) |
//! | 1 | the group revokes those of a bit set it assigned (`Revoked`, with a revocation id of a real kcon-group member's) |
//! | 2 | the group loses those of a bit set it assigned (`Lost`) |
//! | 3 | the group member fails (`Fatal`) |
//! | 4 | the fetcher acquires new records of a partition assigned to it (a byte picks it, the next says 1 to 4), at delivery count 1 |
//! | 5 | the fetcher acquires again up to four records of a partition (a byte picks it) the consumer released, their delivery count raised |
//! | 6 | the fetcher acquires again a record (a byte picks it) whose lock expired while the consumer held it (not settled, or its acknowledgement refused), its delivery count raised |
//! | 7 | the fetcher tells the outcome of the oldest 1 to 4 acknowledgements of a partition it was sent (a byte picks the partition, the next says how many and whether taken, refused with INVALID_RECORD_STATE, or failed) |
//! | 8, 9 | the application's `recv_batch`: `call`, then `turn`s; at each `Wait` a byte `w` (the bytes run out: the call is given up) lets time pass to the liveness timer (`w % 4` 0), gives the call up as a dropped future does (1), or has the group or the fetcher do op `w / 4 % 8` (0-7 above, with what it reads) and hands in the next member event (2) or fetch event (3), else the other's |
//! | 10, 11 | the application acknowledges a record of the last batch (a byte picks it) as accept, release, reject, renew or gap (the next byte) |
//! | 12 | commit: the fetcher answers every acknowledgement sent, a partition's refused when its bit of the next byte is set, then tells `Committed`, after the events already waiting; driven through `commit_input` until answered |
//! | 13 | time passes: to the liveness timer (the next byte even) or by the byte × 20 ms; the timer fired when due |
//! | 14 | close: `close`, what the fetcher tells while closing (the events not read yet, then, unless bit 0 of the next byte gives up on it, the outcomes of the acknowledgements sent, a partition's refused when its bit of the byte shifted right once is set), `leave`, `member_closed`; every later call is refused |
//!
//! After every op and every wait of a call (each within [`MAX_PER_OP`] turns, events handed in
//! and things the parts are told):
//! - a record handed out (`take_batch`) was handed in by the fetcher and not handed out
//!   before at that delivery count; a batch is not empty and holds at most
//!   `max.poll.records`;
//! - every `Acknowledge` covers only records of the last batch or, on close, records handed in
//!   and never handed out; never a gap, never the same (offset, delivery count) twice with a
//!   settling kind (accept, release, reject); a renewal only of a record handed out and not
//!   settled, and it settles nothing;
//! - an acknowledgement the application gives is taken exactly when its record is of the last
//!   batch and not settled yet (a gap, a second one, a record of an older batch, anything after
//!   the close are refused), and is told to the fetcher as given;
//! - implicit mode: a call that starts accepts exactly the last batch's records not settled,
//!   and so does a commit; explicit mode: a call while a record of the last batch is not
//!   settled fails before the member hears anything, and hands nothing out, and no
//!   explicit-mode call acknowledges anything itself;
//! - a close accepts the last batch (implicit) and releases the rest of it (explicit) and
//!   every record waiting; afterwards every record handed in before it, at its latest delivery
//!   count, was settled exactly once (by the application or by the consumer), and every call
//!   is refused (as closed, or with the member's failure);
//! - the fetcher's assignment is what the group's events say, the member id told before
//!   partitions are added; each revocation handed in is done, once; a want counts the record
//!   events handed in, and a want ends or is called off only while one is out; commits are told in increasing numbers, each answered once; a commit
//!   returns the outcomes read since the last ones taken;
//! - each outcome handed in reaches `Parts::acknowledged` once, in order; the metrics published
//!   last are the machine's, and count every record handed in; the records waiting are those
//!   handed in and not handed out; the machine's assignment is the events';
//! - a call that waits has its liveness timer armed, and after the timers fired the machine's
//!   `poll_timeout` is never at or before now.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon::ErrorKind;
use kcon::fuzzing::share::{Driver, Parts, ShareConsumerMachine, ShareMetrics, Turn};
use kcon::share::AcknowledgementMode;
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, Machine, Record, RequestFailure, TopicId, TopicPartition};
use kcon_fetch::share::{
    AcknowledgeType, AcknowledgementOutcome, AcknowledgementRange, ShareEvent,
};
use kcon_group::assignor::{PartitionInfo, TopicPartitions};
use kcon_group::consumer_group::{ConsumerGroupHeartbeatAnswer, TopicIdPartitions};
use kcon_group::{
    GroupConfig, GroupError, GroupEvent, GroupRequest, GroupResponse, MemberMachine, RevocationId,
};

use crate::Input;

/// Turns, events handed in and things the parts are told in one op: more is a loop without
/// progress.
pub const MAX_PER_OP: usize = 10_000;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 3;
/// The fetcher acquires at most this many records (each delivery counted) in a run: the
/// consumer's buffer stays within the allocation bound.
const MAX_ACQUIRED: usize = 256;
/// The member's events waiting at most: the group's ops queue no more (the model's own
/// allocations stay within the bound).
const MAX_MEMBER_EVENTS: usize = 64;
/// Distinct revocation ids the group's `Revoked` events take in turn.
const REVOCATIONS: usize = 4;
/// How many ops there are (the op byte is taken modulo this).
const OPS: u8 = 15;
/// The member's failure.
const FATAL: &str = "the coordinator refused the member";
/// INVALID_RECORD_STATE: a refused acknowledgement.
const INVALID_RECORD_STATE: i16 = 121;

/// A record as the fetcher told it: partition, offset and delivery count.
type Delivery = (i32, i64, u16);
/// A record: partition and offset.
type Offset = (i32, i64);

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// Revocation ids as a group member makes them (kcon-group makes them only for its members'
/// `Revoked` events): a KIP-848 member on a harness, answered by a sound coordinator that
/// assigns it `t-0` and takes it back, over and over. Made once, outside the allocation
/// bound.
fn revocation_ids() -> &'static [RevocationId] {
    static IDS: OnceLock<Vec<RevocationId>> = OnceLock::new();
    IDS.get_or_init(|| crate::untracked(member_revocations))
}

fn member_revocations() -> Vec<RevocationId> {
    let now = Instant::now();
    let mut config = GroupConfig::new("g");
    config.set("group.protocol", "consumer").unwrap();
    let mut h = Harness::new(MemberMachine::new(config, now, 1), now);
    let topic_id = TopicId([1; 16]);
    let topics: TopicPartitions =
        BTreeMap::from([(TOPIC.to_owned(), vec![PartitionInfo::new(0, Vec::new())])]);
    let names = BTreeMap::from([(topic_id, TOPIC.to_owned())]);
    h.machine.subscribe(now, [TOPIC]);
    h.machine.metadata_updated(now, &topics, &names);
    let mut ids: Vec<RevocationId> = Vec::new();
    let mut holds = false;
    let mut epoch = 0;
    for _ in 0..1_000 {
        if ids.len() == REVOCATIONS {
            break;
        }
        let now = h.now;
        while let Some(out) = h.request() {
            let answer = match &out.request {
                GroupRequest::FindCoordinator { .. } => {
                    GroupResponse::FindCoordinator(FoundCoordinator {
                        error_code: 0,
                        error_message: None,
                        coordinator: Some(Coordinator {
                            id: 1,
                            host: "broker-1".to_owned(),
                            port: 9092,
                        }),
                    })
                }
                GroupRequest::Metadata { .. } => GroupResponse::Metadata(topics.clone()),
                GroupRequest::TopicIds { .. } => GroupResponse::TopicIds(names.clone()),
                GroupRequest::ConsumerGroupHeartbeat(c) => {
                    epoch += 1;
                    let mut assignment = TopicIdPartitions::new();
                    if !holds {
                        assignment.insert(topic_id, BTreeSet::from([0]));
                    }
                    GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
                        error_code: 0,
                        error_message: None,
                        member_id: Some(c.member_id.clone()),
                        member_epoch: epoch,
                        heartbeat_interval_ms: 100,
                        assignment: Some(assignment),
                    })
                }
                _ => {
                    h.fail(out.id, RequestFailure::retriable("not answered here"));
                    continue;
                }
            };
            h.answer(out.id, answer);
        }
        for event in h.events() {
            match event {
                GroupEvent::Assigned { .. } => holds = true,
                GroupEvent::Revoked { id, .. } => {
                    holds = false;
                    ids.push(id);
                    h.machine.revocation_done(now, id);
                }
                _ => {}
            }
        }
        h.machine.application_polled(now);
        if h.machine.poll_timeout().is_some() {
            h.run_to_timeout();
        }
    }
    assert_eq!(ids.len(), REVOCATIONS, "the member revoked {ids:?}");
    ids
}

/// Where a record told by the fetcher is, at one delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a fetcher's event not handed in yet.
    Queued,
    /// Handed in, not handed out: in the consumer's buffer.
    Buffered,
    /// Handed out in a batch, not settled.
    Out,
    /// Acknowledged to the fetcher with this settling kind.
    Settled(AcknowledgeType),
}

#[derive(Debug)]
struct Held {
    state: State,
    /// Handed in before the close started.
    before_close: bool,
    /// Its acknowledgement's outcome was a refusal: the broker still holds it for the
    /// consumer, until its lock expires.
    refused: bool,
}

/// An acknowledgement told to the fetcher, with the deliveries it settles.
#[derive(Debug)]
struct Sent {
    first: i64,
    last: i64,
    kind: AcknowledgeType,
    deliveries: Vec<Delivery>,
}

/// What a run did, for the seeds' checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ran {
    /// Batches handed out.
    pub batches: u64,
    /// Records handed out, over every batch.
    pub handed: u64,
    /// Acknowledgements the application gave that the consumer took (renewals apart).
    pub acknowledged: u64,
    /// Renewals the consumer took.
    pub renewed: u64,
    /// Acknowledgements the consumer refused.
    pub refused_acknowledgements: u64,
    /// `recv_batch` calls refused at once (explicit mode's unsettled batch, a failure, the
    /// close).
    pub refused_calls: u64,
    /// `recv_batch` calls that returned an error after they started.
    pub failed_calls: u64,
    /// `recv_batch` calls given up while they waited.
    pub dropped: u64,
    /// Records a call or a commit accepted in implicit mode.
    pub accepted_implicitly: u64,
    /// Records the close accepted or released.
    pub settled_on_close: u64,
    /// Commits answered.
    pub commits: u64,
    /// Acknowledgement outcomes told, refused ones among them.
    pub outcomes: u64,
    /// Refused or failed outcomes told.
    pub refusals: u64,
    /// Revocations handed in (each done).
    pub revocations: u64,
    /// Records acquired again (released, or their lock expired).
    pub redelivered: u64,
    /// Times the liveness timer told the member the application is alive.
    pub liveness: u64,
    /// Whether the consumer closed.
    pub closed: bool,
}

/// The model world: the group member and the share fetcher as queues of events the ops fill,
/// the broker's view of every record told, and what the parts were told.
#[derive(Debug)]
struct World {
    now: Instant,
    /// Things done in this op, against [`MAX_PER_OP`].
    work: usize,
    /// The member's events not read yet.
    member: VecDeque<GroupEvent>,
    /// The fetcher's events not read yet.
    fetch: VecDeque<ShareEvent>,
    /// The member was told to leave; its events no longer go to the consumer.
    member_closing: bool,
    /// The fetcher was told to close; its events go to the close alone.
    fetch_closing: bool,
    /// Partitions the group has assigned (events queued or handed in) and not taken back.
    group_held: BTreeSet<i32>,
    /// `Revoked` events made.
    revocations_made: usize,
    /// The assignment the events handed in make.
    assignment: BTreeSet<TopicPartition>,
    /// Partitions the fetcher was told to fetch.
    fetch_assigned: BTreeSet<i32>,
    /// An `Assigned` was handed in: the member id must reach the fetcher before the partitions.
    member_id_due: bool,
    member_id_told: bool,
    /// Revocations handed in and not done.
    revoking: Vec<RevocationId>,
    /// The member's failure was handed in.
    failed: bool,
    /// `Records` events handed in.
    records_events: u64,
    /// Records handed in.
    records_in: u64,
    /// The next new offset of each partition.
    next_offset: [i64; PARTITIONS as usize],
    /// Deliveries the fetcher made.
    acquired: usize,
    /// Every delivery told.
    held: BTreeMap<Delivery, Held>,
    /// The latest delivery count told of each record.
    latest: BTreeMap<Offset, u16>,
    /// Deliveries handed in and not handed out, in order: the consumer's buffer.
    buffer: VecDeque<Delivery>,
    /// The last batch as the consumer keeps it: each record's highest delivery count in it, and
    /// how the application settled it.
    delivered: BTreeMap<Offset, (u16, Option<AcknowledgeType>)>,
    /// The close started; `closed`: it ended.
    closing: bool,
    closed: bool,
    /// Acknowledgements told to the fetcher in this op: partition, first, last, kind.
    acks: Vec<(i32, i64, i64, AcknowledgeType)>,
    /// Acknowledgements told to the fetcher and not answered, by partition.
    sent: BTreeMap<i32, Vec<Sent>>,
    /// The last commit number told.
    last_commit: Option<u64>,
    /// The want out, with the count of record events it says were read.
    wanting: Option<u64>,
    /// Times the member heard the application is alive.
    alive: u64,
    /// Outcomes handed in this op, and what the hooks heard.
    outcomes_in: Vec<AcknowledgementOutcome>,
    heard: Vec<AcknowledgementOutcome>,
    /// Outcomes handed in since the last ones taken.
    unread_outcomes: usize,
    published: Option<ShareMetrics>,
    fetcher_closed: bool,
    ran: Ran,
}

impl World {
    fn new(now: Instant) -> World {
        World {
            now,
            work: 0,
            member: VecDeque::new(),
            fetch: VecDeque::new(),
            member_closing: false,
            fetch_closing: false,
            group_held: BTreeSet::new(),
            revocations_made: 0,
            assignment: BTreeSet::new(),
            fetch_assigned: BTreeSet::new(),
            member_id_due: false,
            member_id_told: false,
            revoking: Vec::new(),
            failed: false,
            records_events: 0,
            records_in: 0,
            next_offset: [0; PARTITIONS as usize],
            acquired: 0,
            held: BTreeMap::new(),
            latest: BTreeMap::new(),
            buffer: VecDeque::new(),
            delivered: BTreeMap::new(),
            closing: false,
            closed: false,
            acks: Vec::new(),
            sent: BTreeMap::new(),
            last_commit: None,
            wanting: None,
            alive: 0,
            outcomes_in: Vec::new(),
            heard: Vec::new(),
            unread_outcomes: 0,
            published: None,
            fetcher_closed: false,
            ran: Ran::default(),
        }
    }

    fn tick(&mut self) {
        self.work += 1;
        assert!(
            self.work <= MAX_PER_OP,
            "more than {MAX_PER_OP} turns, events and commands in one op"
        );
    }

    /// The last batch's records the application has not settled (renewed ones included).
    fn unsettled(&self) -> BTreeSet<Offset> {
        self.delivered
            .iter()
            .filter(|(_, (_, a))| a.is_none())
            .map(|(k, _)| *k)
            .collect()
    }

    /// The records this op's acknowledgements of `kind` cover; any other kind fails.
    fn acked(&self, kinds: &[AcknowledgeType]) -> BTreeMap<AcknowledgeType, BTreeSet<Offset>> {
        let mut by_kind: BTreeMap<AcknowledgeType, BTreeSet<Offset>> = BTreeMap::new();
        for (p, first, last, kind) in &self.acks {
            assert!(
                kinds.contains(kind),
                "{} of t-{p} {first}..={last} told by the consumer itself here (only {kinds:?})",
                kind.name()
            );
            by_kind
                .entry(*kind)
                .or_default()
                .extend((*first..=*last).map(|o| (*p, o)));
        }
        by_kind
    }

    /// A member event read by the consumer.
    fn member_handed(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::Assigned { partitions, .. } => {
                self.assignment.extend(partitions.iter().cloned());
                self.member_id_due = true;
            }
            GroupEvent::Revoked { partitions, id } => {
                for tp in partitions {
                    self.assignment.remove(tp);
                }
                self.revoking.push(*id);
                self.ran.revocations += 1;
            }
            GroupEvent::Lost { partitions } => {
                for tp in partitions {
                    self.assignment.remove(tp);
                }
            }
            GroupEvent::Fatal(_) => self.failed = true,
            _ => {}
        }
    }

    /// A fetcher event read by the consumer.
    fn fetch_handed(&mut self, event: &ShareEvent) {
        match event {
            ShareEvent::Records { records, .. } => {
                self.records_events += 1;
                for r in records {
                    let d = (r.partition, r.offset, r.delivery_count.unwrap_or(1));
                    let held = self.held.get_mut(&d).expect("a delivery the model made");
                    held.state = State::Buffered;
                    held.before_close = !self.closing;
                    self.buffer.push_back(d);
                    self.records_in += 1;
                }
            }
            ShareEvent::Acknowledged(o) => {
                self.outcomes_in.push(o.clone());
                self.unread_outcomes += 1;
            }
            _ => {}
        }
    }

    /// The consumer told the fetcher to acknowledge `first..=last` of `tp` as `kind`.
    fn told_acknowledge(
        &mut self,
        tp: &TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        assert!(
            !self.closed,
            "{} of {tp} {first}..={last} after the close",
            kind.name()
        );
        assert_ne!(
            kind,
            AcknowledgeType::Gap,
            "the consumer told a gap of {tp}"
        );
        assert!(
            tp.topic == TOPIC && first <= last && last - first < 1024,
            "{} of {tp} {first}..={last}: a range the consumer never held",
            kind.name()
        );
        let p = tp.partition;
        let mut deliveries = Vec::new();
        for o in first..=last {
            // A release on close may be of a record never handed out (its newest delivery);
            // anything else is of the last batch.
            let waiting = (self.closing && kind == AcknowledgeType::Release)
                .then(|| {
                    self.buffer
                        .iter()
                        .filter(|d| (d.0, d.1) == (p, o))
                        .map(|d| d.2)
                        .max()
                })
                .flatten();
            let count = match waiting.or_else(|| self.delivered.get(&(p, o)).map(|d| d.0)) {
                Some(c) => c,
                None => panic!(
                    "{} of {tp} offset {o}: neither a record of the last batch nor, on close, \
                     one handed in and never handed out",
                    kind.name()
                ),
            };
            let d = (p, o, count);
            let held = self.held.get_mut(&d).expect("a delivery handed in");
            match (held.state, kind) {
                (State::Settled(before), _) => panic!(
                    "{tp} offset {o} at delivery count {count} acknowledged as {} after it was \
                     settled as {}",
                    kind.name(),
                    before.name()
                ),
                (state, AcknowledgeType::Renew) => assert_eq!(
                    state,
                    State::Out,
                    "a renewal of {tp} offset {o}, which is not handed out"
                ),
                (_, kind) => held.state = State::Settled(kind),
            }
            deliveries.push(d);
        }
        self.acks.push((p, first, last, kind));
        self.sent.entry(p).or_default().push(Sent {
            first,
            last,
            kind,
            deliveries,
        });
    }

    /// The outcome of the oldest `n` acknowledgements sent for partition `p`: taken (`how` 0),
    /// refused (1) or failed (2).
    fn outcome(&mut self, p: i32, n: usize, how: u8) -> Option<ShareEvent> {
        let sent = self.sent.get_mut(&p)?;
        let n = n.clamp(1, sent.len().max(1)).min(sent.len());
        let answered: Vec<Sent> = sent.drain(..n).collect();
        if sent.is_empty() {
            self.sent.remove(&p);
        }
        if answered.is_empty() {
            return None;
        }
        let how = how % 3;
        if how != 0 {
            self.ran.refusals += 1;
            for s in &answered {
                for d in &s.deliveries {
                    if let Some(h) = self.held.get_mut(d) {
                        h.refused = true;
                    }
                }
            }
        }
        self.ran.outcomes += 1;
        Some(ShareEvent::Acknowledged(AcknowledgementOutcome {
            partition: tp(p),
            ranges: answered
                .iter()
                .map(|s| AcknowledgementRange {
                    first: s.first,
                    last: s.last,
                    kind: s.kind,
                })
                .collect(),
            error_code: if how == 1 { INVALID_RECORD_STATE } else { 0 },
            failure: (how == 2).then(|| "connection lost".to_owned()),
        }))
    }

    /// Outcomes of every acknowledgement sent, one event a partition: refused where `how`'s
    /// bit for the partition is set.
    fn all_outcomes(&mut self, how: u8) -> Vec<ShareEvent> {
        let parts: Vec<i32> = self.sent.keys().copied().collect();
        parts
            .into_iter()
            .filter_map(|p| {
                let n = self.sent.get(&p).map_or(0, Vec::len);
                self.outcome(p, n, how >> p & 1)
            })
            .collect()
    }

    /// The fetcher acquires `offsets` of `p` at the delivery counts given, as one event.
    fn acquire(&mut self, p: i32, deliveries: Vec<(i64, u16)>, lock_expired: usize) {
        if deliveries.is_empty() {
            return;
        }
        let records = deliveries
            .iter()
            .map(|&(o, count)| {
                self.acquired += 1;
                self.held.insert(
                    (p, o, count),
                    Held {
                        state: State::Queued,
                        before_close: false,
                        refused: false,
                    },
                );
                self.latest.insert((p, o), count);
                let mut r = Record::new(TOPIC, p, o, None, Some(Bytes::from_static(b"v")));
                r.delivery_count = Some(count);
                r
            })
            .collect();
        self.fetch.push_back(ShareEvent::Records {
            partition: tp(p),
            records,
            lock_timeout_ms: 30_000,
            lock_expired,
        });
    }

    /// The records of `p` whose newest delivery was handed in and is in `wanted`.
    fn latest_where(&self, p: Option<i32>, wanted: impl Fn(&Held) -> bool) -> Vec<Delivery> {
        self.latest
            .iter()
            .filter(|((q, _), _)| p.is_none_or(|p| p == *q) && self.fetch_assigned.contains(q))
            .filter(|((q, o), c)| {
                self.held
                    .get(&(*q, *o, **c))
                    .is_some_and(|h| h.state != State::Queued && wanted(h))
            })
            .map(|((q, o), c)| (*q, *o, *c))
            .collect()
    }

    /// The call waiting was given up, as a dropped `recv_batch`: the want it held is dropped
    /// armed, which tells the fetcher to stop wanting.
    fn drop_call(&mut self) {
        self.ran.dropped += 1;
        self.wanting = None;
    }
}

impl Parts for World {
    fn subscribe(&mut self, _now: Instant, topics: Vec<String>) {
        self.tick();
        assert!(!self.member_closing, "a subscription after the member left");
        assert_eq!(
            topics,
            [TOPIC],
            "a subscription the application did not ask for"
        );
    }

    fn alive(&mut self, _now: Instant) {
        self.tick();
        self.alive += 1;
    }

    fn revocation_done(&mut self, _now: Instant, id: RevocationId) {
        self.tick();
        let Some(i) = self.revoking.iter().position(|r| *r == id) else {
            panic!("revocation {id:?} done, not handed in or done twice");
        };
        self.revoking.remove(i);
    }

    fn member_event(&mut self) -> Option<GroupEvent> {
        self.tick();
        if self.member_closing {
            return None;
        }
        let event = self.member.pop_front()?;
        self.member_handed(&event);
        Some(event)
    }

    fn close_member(&mut self, _now: Instant) {
        self.tick();
        assert!(
            self.fetcher_closed,
            "the member left before the fetcher closed"
        );
        assert!(!self.member_closing, "the member told to leave twice");
        self.member_closing = true;
    }

    fn member_id(&mut self, _now: Instant) {
        self.tick();
        self.member_id_told = true;
    }

    fn assign(&mut self, _now: Instant, partitions: BTreeSet<TopicPartition>) {
        self.tick();
        assert_eq!(
            partitions, self.assignment,
            "the fetcher told other partitions than the group's events assign"
        );
        assert!(
            !self.member_id_due || self.member_id_told,
            "partitions added to the fetcher before the member id"
        );
        self.member_id_due = false;
        self.member_id_told = false;
        self.fetch_assigned = partitions.iter().map(|tp| tp.partition).collect();
    }

    fn acknowledge(
        &mut self,
        _now: Instant,
        tp: TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        self.tick();
        self.told_acknowledge(&tp, first, last, kind);
    }

    fn commit(&mut self, _now: Instant, id: u64) {
        self.tick();
        assert!(!self.fetch_closing, "commit {id} after the fetcher closed");
        if let Some(before) = self.last_commit {
            assert!(id > before, "commit {id} told after commit {before}");
        }
        self.last_commit = Some(id);
    }

    fn want_records(&mut self, _now: Instant, seen: u64) {
        self.tick();
        assert!(!self.fetch_closing, "a want after the fetcher closed");
        assert_eq!(
            seen, self.records_events,
            "a want counting other record events than those handed in"
        );
        self.wanting = Some(seen);
    }

    fn want_ended(&mut self, _now: Instant) {
        self.tick();
        assert!(
            self.wanting.take().is_some(),
            "a want ended while none was out"
        );
    }

    fn stop_wanting(&mut self, _now: Instant) {
        self.tick();
        assert!(
            self.wanting.take().is_some(),
            "the fetcher told to stop wanting while no want was out"
        );
    }

    fn fetch_event(&mut self) -> Option<ShareEvent> {
        self.tick();
        if self.fetch_closing {
            return None;
        }
        let event = self.fetch.pop_front()?;
        self.fetch_handed(&event);
        Some(event)
    }

    fn close_fetcher(&mut self, _now: Instant) {
        self.tick();
        assert!(self.closing, "the fetcher closed without a close");
        assert!(!self.fetch_closing, "the fetcher told to close twice");
        self.fetch_closing = true;
        self.fetcher_closed = true;
    }

    fn acknowledged(&mut self, _now: Instant, outcome: &AcknowledgementOutcome) {
        self.tick();
        self.heard.push(outcome.clone());
    }

    fn publish(&mut self, _now: Instant, metrics: &ShareMetrics) {
        self.tick();
        self.published = Some(metrics.clone());
    }
}

/// A run: the driver, the model world, the bytes, and the application's last batch.
struct Run<'a> {
    input: Input<'a>,
    /// The revocation ids the group's `Revoked` events take in turn.
    ids: &'static [RevocationId],
    driver: Driver,
    world: World,
    implicit: bool,
    max_poll_records: usize,
    /// The last batch handed out, as the application holds it.
    batch: Vec<Record>,
}

/// Runs the share consumer's driver over `data` (the target's body).
pub fn run(data: &[u8]) -> Ran {
    let ids = revocation_ids();
    let mut input = Input { data, pos: 0 };
    let setup = input.u8();
    let implicit = setup & 1 == 0;
    let max_poll_records = usize::from(setup >> 1 & 7) + 1;
    let interval = [300, 4_000, 10_000, 300_000][usize::from(setup >> 4 & 3)];
    let now = Instant::now();
    let mode = if implicit {
        AcknowledgementMode::Implicit
    } else {
        AcknowledgementMode::Explicit
    };
    let machine =
        ShareConsumerMachine::new(mode, max_poll_records, Duration::from_millis(interval), now);
    let mut run = Run {
        input,
        ids,
        driver: Driver::new(machine),
        world: World::new(now),
        implicit,
        max_poll_records,
        batch: Vec::new(),
    };
    run.driver
        .subscribe(now, vec![TOPIC.to_owned()], &mut run.world)
        .expect("a subscription");
    while let Some(op) = run.input.next() {
        run.world.work = 0;
        run.world.acks.clear();
        run.step(op);
        run.check();
    }
    run.world.ran
}

impl Run<'_> {
    fn step(&mut self, op: u8) {
        match op % OPS {
            op @ 0..=7 => self.world_op(op),
            8 | 9 => self.recv_batch(),
            10 | 11 => self.acknowledge(),
            12 => self.commit(),
            13 => {
                let b = self.input.u8();
                match self.driver.machine.poll_timeout() {
                    Some(at) if b & 1 == 0 => self.world.now = self.world.now.max(at),
                    _ => self.world.now += Duration::from_millis(u64::from(b) * 20),
                }
                self.fire_timers();
            }
            _ => self.close(),
        }
    }

    /// What the group (ops 0-3) or the fetcher (4-7) does.
    fn world_op(&mut self, op: u8) {
        match op {
            0..=2 => {
                let bits = self.input.u8();
                let named: BTreeSet<i32> = (0..PARTITIONS).filter(|p| bits >> p & 1 == 1).collect();
                self.group(op, named);
            }
            3 => {
                if !self.world.closing && self.world.member.len() < MAX_MEMBER_EVENTS {
                    self.world
                        .member
                        .push_back(GroupEvent::Fatal(GroupError::Request(FATAL.to_owned())));
                }
            }
            4 => self.acquire_new(),
            5 => self.acquire_released(),
            6 => self.acquire_expired(),
            _ => {
                let pick = self.input.u8();
                let how = self.input.u8();
                let parts: Vec<i32> = self.world.sent.keys().copied().collect();
                if !self.world.fetch_closing && !parts.is_empty() {
                    let p = parts[usize::from(pick) % parts.len()];
                    let n = usize::from(how >> 2) % 4 + 1;
                    if let Some(e) = self.world.outcome(p, n, how) {
                        self.world.fetch.push_back(e);
                    }
                }
            }
        }
    }

    /// The group assigns (`what` 0), revokes (1) or loses (2) the partitions `named`.
    fn group(&mut self, what: u8, named: BTreeSet<i32>) {
        let ids = self.ids;
        let w = &mut self.world;
        if w.closing || w.member.len() >= MAX_MEMBER_EVENTS {
            return;
        }
        let event = if what == 0 {
            let added: Vec<i32> = named.difference(&w.group_held).copied().collect();
            if added.is_empty() {
                return;
            }
            w.group_held.extend(&added);
            GroupEvent::Assigned {
                partitions: added.into_iter().map(tp).collect(),
                generation_id: 1,
            }
        } else {
            let taken: Vec<i32> = named.intersection(&w.group_held).copied().collect();
            if taken.is_empty() {
                return;
            }
            for p in &taken {
                w.group_held.remove(p);
            }
            let partitions = taken.into_iter().map(tp).collect();
            if what == 1 {
                let id = ids[w.revocations_made % ids.len()];
                w.revocations_made += 1;
                GroupEvent::Revoked { partitions, id }
            } else {
                GroupEvent::Lost { partitions }
            }
        };
        w.member.push_back(event);
    }

    /// A partition the fetcher fetches, picked by the next byte.
    fn fetched_partition(&mut self) -> Option<i32> {
        let b = self.input.u8();
        let w = &self.world;
        if w.fetch_closing || w.acquired >= MAX_ACQUIRED {
            return None;
        }
        let parts: Vec<i32> = w.fetch_assigned.iter().copied().collect();
        (!parts.is_empty()).then(|| parts[usize::from(b) % parts.len()])
    }

    fn acquire_new(&mut self) {
        let p = self.fetched_partition();
        let n = i64::from(self.input.u8() % 4) + 1;
        let Some(p) = p else { return };
        let w = &mut self.world;
        let n = n.min((MAX_ACQUIRED - w.acquired) as i64);
        let first = w.next_offset[p as usize];
        w.next_offset[p as usize] += n;
        w.acquire(p, (first..first + n).map(|o| (o, 1)).collect(), 0);
    }

    fn acquire_released(&mut self) {
        let Some(p) = self.fetched_partition() else {
            return;
        };
        let w = &mut self.world;
        let again: Vec<(i64, u16)> = w
            .latest_where(Some(p), |h| {
                h.state == State::Settled(AcknowledgeType::Release) && !h.refused
            })
            .into_iter()
            .take((MAX_ACQUIRED - w.acquired).min(4))
            .map(|(_, o, c)| (o, c + 1))
            .collect();
        w.ran.redelivered += again.len() as u64;
        w.acquire(p, again, 0);
    }

    fn acquire_expired(&mut self) {
        let pick = self.input.u8();
        let w = &mut self.world;
        if w.fetch_closing || w.acquired >= MAX_ACQUIRED {
            return;
        }
        let held = w.latest_where(None, |h| match h.state {
            State::Buffered | State::Out => true,
            State::Settled(_) => h.refused,
            State::Queued => false,
        });
        if held.is_empty() {
            return;
        }
        let (p, o, c) = held[usize::from(pick) % held.len()];
        w.ran.redelivered += 1;
        w.acquire(p, vec![(o, c + 1)], 1);
    }

    /// The application's `recv_batch`, as the `ShareConsumer` runs it.
    fn recv_batch(&mut self) {
        let unsettled = self.world.unsettled();
        let alive = self.world.alive;
        let (failed, closing) = (self.world.failed, self.world.closing);
        let result = self.driver.call(self.world.now, &mut self.world);
        let w = &mut self.world;
        // The member heard the application is alive: the call started, the last batch settled.
        let started = w.alive > alive;
        if self.implicit {
            let acked = w.acked(&[AcknowledgeType::Accept]);
            let accepted = acked
                .get(&AcknowledgeType::Accept)
                .cloned()
                .unwrap_or_default();
            let expected = if started { unsettled } else { BTreeSet::new() };
            assert_eq!(
                accepted, expected,
                "implicit mode's call accepts exactly the last batch's records not settled"
            );
            w.ran.accepted_implicitly += accepted.len() as u64;
        } else {
            w.acked(&[]);
            if let Some((p, o)) = unsettled.first() {
                assert!(
                    result.is_err() && !started,
                    "explicit mode went on to a batch while t-{p} offset {o} of the last is not \
                     acknowledged"
                );
            }
        }
        if failed || closing {
            assert!(
                result.is_err() && !started,
                "a recv_batch went on after the member failed or the close"
            );
        }
        if let (Err(e), true) = (&result, failed) {
            assert!(
                e.to_string().contains(FATAL),
                "a recv_batch after the member failed returns another error: {e}"
            );
        }
        if let (Err(e), true, false) = (&result, closing, failed) {
            assert_eq!(
                e.kind(),
                ErrorKind::Closed,
                "a recv_batch after the close: {e}"
            );
        }
        if started {
            w.delivered.clear();
        }
        if result.is_err() {
            if started {
                w.ran.failed_calls += 1;
            } else {
                w.ran.refused_calls += 1;
            }
            return;
        }
        loop {
            self.world.tick();
            let now = self.world.now;
            match self.driver.turn(now, &mut self.world) {
                Turn::Error(_) => {
                    self.world.ran.failed_calls += 1;
                    return;
                }
                Turn::Ready => {
                    let batch = self.driver.machine.take_batch();
                    self.handed_out(batch);
                    return;
                }
                Turn::Wait => {}
            }
            assert!(
                self.driver.machine.poll_timeout().is_some(),
                "a call waits without its liveness timer"
            );
            if self.input.pos >= self.input.data.len() {
                // Nothing more comes: the application gives up.
                self.world.drop_call();
                return;
            }
            // Each wait reads a byte and is a step of its own: its work is bounded, and the
            // invariants checked after it.
            self.check();
            self.world.work = 0;
            let b = self.input.u8();
            match b % 4 {
                0 => {
                    if let Some(at) = self.driver.machine.poll_timeout() {
                        self.world.now = self.world.now.max(at);
                    }
                    self.fire_timers();
                }
                1 => {
                    self.world.drop_call();
                    return;
                }
                k => {
                    self.world_op(b / 4 % 8);
                    let member_first = k == 2;
                    if !self.hand_in_one(member_first) {
                        self.hand_in_one(!member_first);
                    }
                }
            }
        }
    }

    /// Hands the next event of the member (`member`) or the fetcher in, as the shell's wait
    /// does; false when none waits.
    fn hand_in_one(&mut self, member: bool) -> bool {
        let now = self.world.now;
        if member {
            match self.world.member_event() {
                Some(e) => self.driver.group_event(now, Some(e), &mut self.world),
                None => return false,
            }
        } else {
            match self.world.fetch_event() {
                Some(e) => self.driver.fetch_event(now, Some(e), &mut self.world),
                None => return false,
            }
        }
        true
    }

    fn handed_out(&mut self, batch: Vec<Record>) {
        assert!(!batch.is_empty(), "a batch of no record");
        assert!(
            batch.len() <= self.max_poll_records,
            "a batch of {} records, max.poll.records {}",
            batch.len(),
            self.max_poll_records
        );
        let w = &mut self.world;
        for r in &batch {
            let count = r.delivery_count.expect("a delivery count");
            let d = (r.partition, r.offset, count);
            let Some(held) = w.held.get_mut(&d) else {
                panic!(
                    "t-{} offset {} at delivery count {count} handed out, never told by the \
                     fetcher",
                    r.partition, r.offset
                );
            };
            assert_eq!(
                held.state,
                State::Buffered,
                "t-{} offset {} at delivery count {count} handed out, not waiting in the \
                 consumer",
                r.partition,
                r.offset
            );
            held.state = State::Out;
            if let Some(i) = w.buffer.iter().position(|b| *b == d) {
                w.buffer.remove(i);
            }
            let slot = w.delivered.entry((d.0, d.1)).or_insert((count, None));
            slot.0 = slot.0.max(count);
            slot.1 = None;
        }
        w.ran.batches += 1;
        w.ran.handed += batch.len() as u64;
        self.batch = batch;
    }

    /// The application acknowledges a record of the last batch.
    fn acknowledge(&mut self) {
        let index = usize::from(self.input.u8());
        let kind = self.input.pick(&[
            AcknowledgeType::Accept,
            AcknowledgeType::Release,
            AcknowledgeType::Reject,
            AcknowledgeType::Renew,
            AcknowledgeType::Gap,
        ]);
        if self.batch.is_empty() {
            return;
        }
        let record = self.batch[index % self.batch.len()].clone();
        let key = (record.partition, record.offset);
        let w = &self.world;
        let now = w.now;
        let taken = kind != AcknowledgeType::Gap
            && !w.closing
            && matches!(w.delivered.get(&key), Some((_, None)));
        let result = self.driver.acknowledge(now, &record, kind, &mut self.world);
        let w = &mut self.world;
        match result {
            Ok(()) => {
                assert!(
                    taken,
                    "{} of t-{} offset {} taken: a gap, not of the last batch, settled already \
                     or after the close",
                    kind.name(),
                    key.0,
                    key.1
                );
                assert_eq!(
                    w.acks,
                    [(key.0, key.1, key.1, kind)],
                    "the fetcher was told other than the acknowledgement given"
                );
                if kind == AcknowledgeType::Renew {
                    w.ran.renewed += 1;
                } else {
                    w.delivered.get_mut(&key).expect("of the last batch").1 = Some(kind);
                    w.ran.acknowledged += 1;
                }
            }
            Err(e) => {
                assert!(
                    !taken,
                    "{} of t-{} offset {} refused: {e}",
                    kind.name(),
                    key.0,
                    key.1
                );
                assert!(
                    w.acks.is_empty(),
                    "a refused acknowledgement told: {:?}",
                    w.acks
                );
                if kind == AcknowledgeType::Gap {
                    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
                }
                w.ran.refused_acknowledgements += 1;
            }
        }
    }

    /// The application's `commit`, as the `ShareConsumer` runs it: the fetcher answers every
    /// acknowledgement sent, then the commit.
    fn commit(&mut self) {
        let how = self.input.u8();
        let unsettled = self.world.unsettled();
        let now = self.world.now;
        let result = self.driver.commit(now, &mut self.world);
        let w = &mut self.world;
        let id = match result {
            Err(e) => {
                assert!(w.closing, "a commit refused before the close: {e}");
                assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
                w.acked(&[]);
                return;
            }
            Ok(id) => id,
        };
        assert!(!w.closing, "commit {id} taken after the close");
        assert_eq!(
            w.last_commit,
            Some(id),
            "commit {id} not told to the fetcher"
        );
        if self.implicit {
            let acked = w.acked(&[AcknowledgeType::Accept]);
            let accepted = acked
                .get(&AcknowledgeType::Accept)
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                accepted, unsettled,
                "implicit mode's commit accepts exactly the last batch's records not settled"
            );
            w.ran.accepted_implicitly += accepted.len() as u64;
            w.delivered.clear();
        } else {
            w.acked(&[]);
        }
        for e in w.all_outcomes(how) {
            w.fetch.push_back(e);
        }
        w.fetch.push_back(ShareEvent::Committed(id));
        loop {
            let event = self.world.fetch_event();
            assert!(event.is_some(), "commit {id} not answered by its event");
            match self.driver.commit_input(now, id, event, &mut self.world) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => panic!("commit {id} failed: {e}"),
            }
        }
        let outcomes = self.driver.machine.take_outcomes();
        let w = &mut self.world;
        assert_eq!(
            outcomes.len(),
            w.unread_outcomes,
            "a commit returns the outcomes read since the last ones taken"
        );
        w.unread_outcomes = 0;
        w.ran.commits += 1;
    }

    /// The application's `close`, as the `ShareConsumer` runs it.
    fn close(&mut self) {
        let how = self.input.u8();
        if self.world.closing {
            return;
        }
        let w = &mut self.world;
        w.closing = true;
        let unsettled = w.unsettled();
        let waiting: BTreeSet<Offset> = w.buffer.iter().map(|d| (d.0, d.1)).collect();
        let (accept, mut release) = if self.implicit {
            (unsettled, BTreeSet::new())
        } else {
            (BTreeSet::new(), unsettled)
        };
        release.extend(waiting);
        let now = w.now;
        self.driver.close(now, &mut self.world);
        let w = &mut self.world;
        assert!(w.fetcher_closed, "a close that does not close the fetcher");
        let acked = w.acked(&[AcknowledgeType::Accept, AcknowledgeType::Release]);
        let empty = BTreeSet::new();
        assert_eq!(
            acked.get(&AcknowledgeType::Accept).unwrap_or(&empty),
            &accept,
            "the close accepts exactly the last batch's records not settled (implicit mode)"
        );
        assert_eq!(
            acked.get(&AcknowledgeType::Release).unwrap_or(&empty),
            &release,
            "the close releases exactly the records waiting (and, explicit mode, the last \
             batch's not settled)"
        );
        w.ran.settled_on_close += (accept.len() + release.len()) as u64;
        w.delivered.clear();
        w.buffer.clear();
        // The fetcher's close: the events not read yet, then the outcomes of the
        // acknowledgements sent (unless the close gives up on it), up to `Closed`.
        let mut events: Vec<ShareEvent> = w.fetch.drain(..).collect();
        if how & 1 == 0 {
            events.extend(w.all_outcomes(how >> 1));
        }
        for e in events {
            self.world.tick();
            self.world.fetch_handed(&e);
            self.driver.fetch_event(now, Some(e), &mut self.world);
        }
        self.driver.leave(now, &mut self.world);
        let w = &mut self.world;
        assert!(w.member_closing, "the member did not leave");
        let events: Vec<GroupEvent> = w.member.drain(..).collect();
        self.driver.member_closed(now, events);
        let w = &mut self.world;
        w.closed = true;
        w.ran.closed = true;
        // Every record handed in before the close, at its newest delivery then, was settled.
        let mut newest: BTreeMap<Offset, u16> = BTreeMap::new();
        for (d, h) in &w.held {
            if h.before_close {
                let c = newest.entry((d.0, d.1)).or_insert(d.2);
                *c = (*c).max(d.2);
            }
        }
        for ((p, o), c) in newest {
            let state = w.held[&(p, o, c)].state;
            assert!(
                matches!(state, State::Settled(_)),
                "after the close t-{p} offset {o} at delivery count {c} is not settled: {state:?}"
            );
        }
    }

    /// Fires the machine's timers when due, as the shell's wait does.
    fn fire_timers(&mut self) {
        let now = self.world.now;
        if self
            .driver
            .machine
            .poll_timeout()
            .is_some_and(|at| at <= now)
        {
            let alive = self.world.alive;
            self.driver.timeout(now, &mut self.world);
            self.world.ran.liveness += self.world.alive - alive;
        }
    }

    /// The invariants that hold after every op.
    fn check(&mut self) {
        let m = &self.driver.machine;
        let w = &mut self.world;
        assert!(
            w.revoking.is_empty(),
            "revocations handed in and not done: {:?}",
            w.revoking
        );
        assert_eq!(
            w.heard, w.outcomes_in,
            "the outcomes read reach the hooks once each, in order"
        );
        w.heard.clear();
        w.outcomes_in.clear();
        if let Some(published) = &w.published {
            assert_eq!(
                published,
                m.metrics(),
                "the metrics published last are not the consumer's"
            );
        }
        assert_eq!(
            m.metrics().records_acquired,
            w.records_in,
            "the metrics count other records than those handed in"
        );
        assert_eq!(m.metrics().commits, w.ran.commits, "commits counted");
        assert_eq!(
            m.buffered(),
            w.buffer.len(),
            "the records waiting are not those handed in and not handed out"
        );
        assert_eq!(
            m.assignment(),
            &w.assignment,
            "the consumer's assignment is not the one the group's events make"
        );
        if let Some(at) = m.poll_timeout() {
            assert!(
                at > w.now,
                "the liveness timer at or before now after the timers fired"
            );
        }
    }
}

/// Hand-made seeds for `corpus/share_consumer/`, each checked here to do what it was written
/// for; `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes
/// them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops: 0 assign (bits), 1 revoke (bits), 2 lose (bits), 3 fatal, 4 new records (partition,
    // count - 1), 5 released again (partition), 6 lock expired (pick), 7 outcome (partition,
    // how), 8 recv_batch, 10 acknowledge (index, kind: 0 accept, 1 release, 2 reject, 3 renew,
    // 4 gap), 12 commit (how), 13 time (how), 14 close (how). A call's waits: 0 time, 1 drop,
    // `op << 2 | 2` and `op << 2 | 3` the group or fetcher does `op`, then the member's or the
    // fetcher's next event is handed in (2 assigns, 19 acquires new records).
    vec![
        // Implicit, max.poll.records 4: a call waits while t-0 and t-1 are assigned and four
        // records of t-0 come, and hands them out; two of t-1 come; the first of the batch is
        // released; the next call accepts the other three and hands out t-1's two; the
        // release's outcome; the close accepts t-1's two.
        (
            "implicit-round-trip",
            vec![
                0x06, 8, 2, 0b011, 19, 0, 3, 4, 1, 1, 10, 0, 1, 8, 7, 0, 0, 14, 0,
            ],
        ),
        // Explicit, max.poll.records 4: three records of t-0 in a batch; accept, release; the
        // next call is refused (one not acknowledged); reject it, then again (refused), and a
        // gap (refused); the released record comes again at delivery count 2, is handed out
        // and accepted; a call is dropped; the close.
        (
            "explicit-release-reject",
            vec![
                0x07, 8, 2, 0b001, 19, 0, 2, 10, 0, 0, 10, 1, 1, 8, 10, 2, 2, 10, 2, 2, 10, 0, 4,
                5, 0, 8, 10, 0, 0, 8, 1, 14, 0,
            ],
        ),
        // Implicit, max.poll.records 2: three records of t-2; a batch of two, one renewed; a
        // commit accepts both, its outcomes refused; time passes; the next call hands out the
        // third; the lock of a refused one expires, it comes again and is handed out; a commit
        // with its outcomes taken.
        (
            "commit",
            vec![
                0x02, 8, 2, 0b100, 19, 0, 2, 10, 1, 3, 12, 0xff, 13, 50, 8, 6, 0, 8, 12, 0,
            ],
        ),
        // Implicit, max.poll.records 8: t-0 and t-1 assigned, two records each in a batch;
        // t-0 is revoked while the batch is out; the next call accepts the batch, hands the
        // revocation in, and waits for two more records of t-1; the close.
        (
            "revocation-mid-batch",
            vec![
                0x0e, 8, 2, 0b011, 1, 4, 0, 1, 4, 1, 1, 8, 1, 0b001, 8, 19, 1, 1, 14, 0,
            ],
        ),
        // Explicit, max.poll.records 1: four records of t-1, one handed out and renewed; the
        // close releases it and the three never handed out; their outcome refused.
        (
            "close-with-buffered",
            vec![0x01, 8, 2, 0b010, 19, 0, 3, 10, 0, 3, 14, 0b110],
        ),
        // Implicit, max.poll.records 4, max.poll.interval.ms 4 s: a call waits, the liveness
        // timer fires twice, the call is dropped; a record comes and the next call hands it
        // out (its want counting the record event); a call waits for one more.
        (
            "dropped-recv-batch",
            vec![0x16, 8, 2, 0b001, 0, 0, 1, 4, 0, 0, 8, 8, 19, 0, 0, 14, 0],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_ids_are_distinct() {
        let ids = revocation_ids();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), REVOCATIONS, "{ids:?}");
    }

    #[test]
    fn every_seed_does_what_it_was_written_for() {
        for (name, data) in seeds() {
            let ran = run(&data);
            let ok = match name {
                "implicit-round-trip" => {
                    ran.batches == 2
                        && ran.handed == 6
                        && ran.acknowledged == 1
                        && ran.accepted_implicitly == 3
                        && ran.outcomes >= 1
                        && ran.settled_on_close == 2
                        && ran.closed
                }
                "explicit-release-reject" => {
                    ran.batches == 2
                        && ran.refused_calls == 1
                        && ran.refused_acknowledgements == 2
                        && ran.acknowledged == 4
                        && ran.redelivered == 1
                        && ran.dropped == 1
                        && ran.closed
                }
                "commit" => {
                    ran.commits == 2
                        && ran.renewed == 1
                        && ran.refusals >= 1
                        && ran.redelivered == 1
                        && ran.batches == 3
                }
                "revocation-mid-batch" => {
                    ran.revocations == 1
                        && ran.batches == 2
                        && ran.accepted_implicitly == 4
                        && ran.closed
                }
                "close-with-buffered" => {
                    ran.batches == 1
                        && ran.renewed == 1
                        && ran.settled_on_close == 4
                        && ran.refusals >= 1
                        && ran.closed
                }
                "dropped-recv-batch" => {
                    ran.dropped == 1 && ran.liveness == 2 && ran.batches == 2 && ran.closed
                }
                _ => unreachable!("a seed of no check: {name}"),
            };
            assert!(ok, "{name}: {ran:?}");
        }
    }

    /// A few hundred inputs from a seeded generator: the invariants hold over each, and
    /// between them batches, commits, revocations, redeliveries and closes all happen.
    #[test]
    fn pseudo_random_inputs_keep_the_invariants() {
        let mut total = Ran::default();
        let mut closed = 0;
        for seed in 0..400u64 {
            let mut next = crate::seeded(seed);
            let len = next() % 300 + 1;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let ran = run(&data);
            total.batches += ran.batches;
            total.commits += ran.commits;
            total.revocations += ran.revocations;
            total.redelivered += ran.redelivered;
            total.refused_calls += ran.refused_calls;
            closed += usize::from(ran.closed);
        }
        assert!(
            total.batches > 0
                && total.commits > 0
                && total.revocations > 0
                && total.redelivered > 0
                && total.refused_calls > 0
                && closed > 0,
            "{total:?}, closed {closed}"
        );
    }

    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        eprintln!("{:?}", run(&data));
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("share_consumer", seeds());
    }
}
