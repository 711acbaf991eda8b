//! The `commit_machine` target: kcon-offsets' sans-IO [`CommitMachine`] on kcon-core's
//! virtual-clock [`Harness`], driven by an interpreter over the fuzz bytes.
//!
//! The first byte picks `enable.auto.commit`, `isolation.level`, `group.instance.id`,
//! `default.api.timeout.ms` and `retry.backoff.ms`. Then each step reads an op byte, then what
//! the op needs (a missing byte reads as 0); the run stops when the bytes run out, and then
//! the broker answers everything without error until every commit and lookup completed. Ops
//! (the op byte modulo 16):
//!
//! | op | what |
//! |---|---|
//! | 0–3, 15 | answer the oldest outstanding request, well-formed, made from the next bytes |
//! | 4 | fail the oldest outstanding request (retriable or not) |
//! | 5 | advance the virtual clock by a fuzzed amount and fire the timers due |
//! | 6 | move the clock to the machine's next timer and fire it |
//! | 7 | store an offset of one of three partitions (mostly up, sometimes down; with or without a leader epoch and metadata) |
//! | 8 | commit what is stored: sync, async or auto |
//! | 9 | commit explicit offsets of some partitions: sync, async or auto |
//! | 10 | look up committed offsets (some partitions, or every one) |
//! | 11 | set the generation and member id, after a loss of everything owned (a fence) when the byte's top bit is set |
//! | 12 | set or clear the coordinator |
//! | 13 | forget partitions (a revocation) |
//! | 14 | close |
//!
//! After every op, the machine's requests and events are drained, and timers due are fired
//! (each within [`MAX_PER_OP`]: no loop without progress, no timer left in the past), and:
//! - an OffsetCommit carries only offsets the application stored or asked to commit with that
//!   value, none of a partition forgotten since (`forget`: "a commit queued, or waiting to be
//!   retried, must not carry them to the coordinator later"; a loss told by `set_losses`
//!   forgets every partition), with the generation, member id and `group.instance.id` set
//!   last;
//! - every commit id the application got back completes with exactly one `Committed` event
//!   (checked at the end, once the broker answered everything), no id completes twice, a
//!   `Sync` commit is never superseded nor supersedes another;
//! - a successful commit reports, per partition, its own offset where it named the partition
//!   (a later commit's own offsets win) and otherwise the newest superseded commit's, and only
//!   what the coordinator acknowledged with no error;
//! - `committed()` holds only offsets a commit request got acknowledged with no error for that
//!   partition, or that an OffsetFetch answer read; `stored()` is exactly what was stored and
//!   not forgotten;
//! - after an OffsetCommit failed in a way that is retried, the next OffsetCommit goes later
//!   on the virtual clock (but at once with a new member epoch after STALE_MEMBER_EPOCH);
//! - the requests outstanding stay few.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::Input;
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, Machine, RequestFailure, Target, TopicPartition};
use kcon_offsets::{
    CommitError, CommitId, CommitKind, CommitMachine, CommittedId, OffsetAndMetadata,
    OffsetsConfig, OffsetsEvent, OffsetsRequest, OffsetsResponse, Outgoing, PartitionOffset,
};

/// Requests, events or timer firings one op may produce: more is a loop without progress.
pub const MAX_PER_OP: usize = 10_000;
/// Requests outstanding beyond which the target fails: one lookup, one commit and the lookups
/// of committed offsets the application asked for.
const MAX_OUTSTANDING: usize = 2_048;
/// Sync commits the application has waiting at most (see `Sim::awaits_a_sync_commit`): each
/// one is queued in the machine on its own, so thousands of them, two input bytes each,
/// outgrew the target's allocation bound, which is there for what the broker answers.
const MAX_SYNC_WAITING: usize = 64;
/// Rounds of answering everything at the end, beyond one per commit and lookup still waiting,
/// before every commit must have completed.
const SETTLE_ROUNDS: usize = 1_000;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 3;

/// Error codes of a partition in an OffsetCommit answer: every one the machine tells apart,
/// and some it does not know.
const COMMIT_ERRORS: &[i16] = &[
    0, 0, 0, 0, 0, 0, 0, 0,    //
    14,   // COORDINATOR_LOAD_IN_PROGRESS
    7,    // REQUEST_TIMED_OUT
    3,    // UNKNOWN_TOPIC_OR_PARTITION
    15,   // COORDINATOR_NOT_AVAILABLE
    16,   // NOT_COORDINATOR
    113,  // STALE_MEMBER_EPOCH
    27,   // REBALANCE_IN_PROGRESS
    22,   // ILLEGAL_GENERATION
    25,   // UNKNOWN_MEMBER_ID
    82,   // FENCED_INSTANCE_ID
    110,  // FENCED_MEMBER_EPOCH
    12,   // OFFSET_METADATA_TOO_LARGE
    28,   // INVALID_COMMIT_OFFSET_SIZE
    29,   // TOPIC_AUTHORIZATION_FAILED
    30,   // GROUP_AUTHORIZATION_FAILED
    -1,   // UNKNOWN_SERVER_ERROR
    9999, // unknown
];
/// The OffsetCommit codes the machine retries.
const COMMIT_RETRIED: &[i16] = &[14, 7, 3, 15, 16, 113];
/// Group-level error codes of an OffsetFetch answer.
const FETCH_GROUP_ERRORS: &[i16] = &[0, 0, 0, 0, 0, 0, 14, 88, 15, 16, 30, 69, -1, 9999];
/// Partition error codes of an OffsetFetch answer (88: UNSTABLE_OFFSET_COMMIT).
const FETCH_PARTITION_ERRORS: &[i16] = &[0, 0, 0, 0, 0, 0, 0, 0, 88, 88, 3, 29, -1];

/// Runs the interpreter over `data`. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut sim = Sim::new(data);
    while let Some(op) = sim.bytes.next() {
        sim.step(op);
        sim.check();
    }
    sim.settle();
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

fn coordinator(id: i32) -> Coordinator {
    Coordinator {
        id,
        host: format!("broker-{id}"),
        port: 9092,
    }
}

fn kind_of(b: u8) -> CommitKind {
    [CommitKind::Sync, CommitKind::Async, CommitKind::Auto][usize::from(b % 3)]
}

/// What the application knows of one commit it asked for.
struct Asked {
    kind: CommitKind,
    /// Its offsets when it was queued, less those forgotten since.
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    /// The commits it superseded (theirs as well), by id.
    superseded: BTreeSet<CommitId>,
}

struct Sim<'a> {
    bytes: Input<'a>,
    h: Harness<CommitMachine>,
    /// Requests sent and not answered, oldest first.
    outstanding: VecDeque<Outgoing>,
    /// Where the application is in each partition: the offset of the last record handed out.
    position: [i64; PARTITIONS as usize],
    /// What the machine must have stored.
    stored: BTreeMap<TopicPartition, OffsetAndMetadata>,
    /// Per partition, every value the application stored or asked to commit since the
    /// partition was last forgotten: what a commit may carry.
    allowed: HashMap<TopicPartition, HashSet<(i64, Option<i32>, String)>>,
    /// Per partition, every value a commit got acknowledged with no error, or an OffsetFetch
    /// answer read: what `committed()` may hold.
    acknowledged: HashMap<TopicPartition, HashSet<(i64, Option<i32>, String)>>,
    /// The commits the application asked for and not completed.
    pending: BTreeMap<CommitId, Asked>,
    /// Every commit id completed (and superseded ids, their kind), by the application or the
    /// auto-commit timer.
    completed: HashSet<CommitId>,
    /// Commits of the auto-commit timer seen superseded or completed: ids the application never
    /// got, whose offsets the target does not know.
    timer_commits: HashSet<CommitId>,
    /// The offsets of superseded commits the application asked for (less those forgotten
    /// since), by id.
    superseded: HashMap<CommitId, BTreeMap<TopicPartition, OffsetAndMetadata>>,
    /// Lookups of committed offsets not completed.
    lookups: HashSet<CommittedId>,
    generation: (i32, String),
    /// The last retried OffsetCommit failure, when no OffsetCommit was answered for good since;
    /// whether a STALE_MEMBER_EPOCH was among the failures since then; whether the member
    /// epoch changed since the last failure.
    commit_failed_at: Option<Instant>,
    stale_since: bool,
    epoch_changed: bool,
    /// The losses of everything owned told to the machine.
    losses: u64,
    instance_id: Option<String>,
    read_committed: bool,
    /// Commits and lookups that completed successfully, for the seeds' test.
    commits_done: usize,
    lookups_done: usize,
}

impl<'a> Sim<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut bytes = Input { data, pos: 0 };
        let setup = bytes.u8();
        let mut config = OffsetsConfig::new("g");
        let auto = setup & 1 == 1;
        let read_committed = setup & 2 != 0;
        let instance_id = (setup & 4 != 0).then(|| "instance-1".to_owned());
        let timeout = ["60000", "2000", "500", "30000"][usize::from((setup >> 3) % 4)];
        let backoff = ["100", "1", "250", "100"][usize::from((setup >> 5) % 4)];
        for (k, v) in [
            ("enable.auto.commit", if auto { "true" } else { "false" }),
            ("auto.commit.interval.ms", "1000"),
            (
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            ),
            ("default.api.timeout.ms", timeout),
            ("retry.backoff.ms", backoff),
            ("retry.backoff.max.ms", "1000"),
        ] {
            config.set(k, v).expect("a valid setting");
        }
        config.group_instance_id = instance_id.clone();
        config.validate().expect("a valid configuration");
        let now = Instant::now();
        Sim {
            bytes,
            h: Harness::new(CommitMachine::new(config, now, 7), now),
            outstanding: VecDeque::new(),
            position: [0; PARTITIONS as usize],
            stored: BTreeMap::new(),
            allowed: HashMap::new(),
            acknowledged: HashMap::new(),
            pending: BTreeMap::new(),
            completed: HashSet::new(),
            timer_commits: HashSet::new(),
            superseded: HashMap::new(),
            lookups: HashSet::new(),
            generation: (-1, String::new()),
            commit_failed_at: None,
            stale_since: false,
            epoch_changed: false,
            losses: 0,
            instance_id,
            read_committed,
            commits_done: 0,
            lookups_done: 0,
        }
    }

    fn partition(&mut self) -> i32 {
        i32::from(self.bytes.u8()) % PARTITIONS
    }

    /// Some of the three partitions (a bit each), never none.
    fn partitions(&mut self) -> Vec<i32> {
        let mask = self.bytes.u8() % 7 + 1;
        (0..PARTITIONS).filter(|p| mask & (1 << p) != 0).collect()
    }

    /// An offset to commit for partition `p`, near the application's position, and its
    /// leader epoch and metadata.
    fn value(&mut self, p: i32) -> OffsetAndMetadata {
        let b = self.bytes.u8();
        let offset = self.position[p as usize] + 1 - i64::from(b % 4);
        let epoch = (b & 0x10 != 0).then_some(i32::from((b >> 5) % 4));
        let metadata = if b & 0x80 != 0 {
            format!("m{}", self.bytes.u8() % 4)
        } else {
            String::new()
        };
        OffsetAndMetadata {
            offset,
            leader_epoch: epoch,
            metadata,
        }
    }

    fn allow(&mut self, tp: &TopicPartition, o: &OffsetAndMetadata) {
        self.allowed.entry(tp.clone()).or_default().insert((
            o.offset,
            o.leader_epoch,
            o.metadata.clone(),
        ));
    }

    fn step(&mut self, op: u8) {
        let now = self.h.now;
        match op % 16 {
            0..=3 | 15 => self.answer(),
            4 => {
                if let Some(o) = self.outstanding.pop_front() {
                    let failure = match self.bytes.u8() % 4 {
                        0 => RequestFailure::retriable("connection lost"),
                        1 => RequestFailure::retriable("request timed out"),
                        2 => RequestFailure::fatal("unsupported version"),
                        _ => RequestFailure::retriable("broker disconnected"),
                    };
                    if matches!(o.request, OffsetsRequest::OffsetCommit(_)) && failure.retriable {
                        self.commit_failed(false);
                    }
                    self.h.fail(o.id, failure);
                }
            }
            5 => {
                let ms = u64::from(self.bytes.u16()) % 70_000;
                self.h.advance(Duration::from_millis(ms));
            }
            6 => {
                if self.h.machine.poll_timeout().is_some() {
                    self.h.run_to_timeout();
                }
            }
            7 => {
                let p = self.partition();
                let b = self.bytes.u8();
                // Mostly on (1 to 6 records), sometimes back (a seek: 1 to 2 records).
                let delta = match b % 8 {
                    0 => -1 - i64::from((b >> 3) % 2),
                    n => i64::from(n) - 1,
                };
                let pos = (self.position[p as usize] + delta).max(0);
                self.position[p as usize] = pos;
                let epoch = (b & 0x40 != 0).then_some(i32::from((b >> 3) % 4));
                let tp = tp(p);
                let o = if b & 0x80 != 0 {
                    let o = OffsetAndMetadata {
                        offset: pos + 1,
                        leader_epoch: epoch,
                        metadata: format!("m{}", self.bytes.u8() % 4),
                    };
                    self.h.machine.store(tp.clone(), o.clone());
                    o
                } else {
                    self.h.machine.store_offset(tp.clone(), pos, epoch);
                    OffsetAndMetadata {
                        offset: pos + 1,
                        leader_epoch: epoch,
                        metadata: String::new(),
                    }
                };
                self.allow(&tp, &o);
                self.stored.insert(tp, o);
            }
            8 => {
                let kind = kind_of(self.bytes.u8());
                if self.awaits_a_sync_commit(kind) {
                    return;
                }
                let offsets = match kind {
                    CommitKind::Auto => self.uncommitted(),
                    _ => self.stored.clone(),
                };
                let id = self.h.machine.commit_stored(now, kind);
                self.asked(id, kind, offsets);
            }
            9 => {
                let kind = kind_of(self.bytes.u8());
                if self.awaits_a_sync_commit(kind) {
                    return;
                }
                let mut offsets = BTreeMap::new();
                for p in self.partitions() {
                    let o = self.value(p);
                    self.allow(&tp(p), &o);
                    offsets.insert(tp(p), o);
                }
                let id = self.h.machine.commit(now, kind, offsets.clone());
                self.asked(id, kind, offsets);
            }
            10 => {
                let partitions = if self.bytes.u8().is_multiple_of(4) {
                    None
                } else {
                    Some(self.partitions().into_iter().map(tp).collect())
                };
                let id = self.h.machine.fetch_committed(now, partitions);
                assert!(self.lookups.insert(id), "lookup id {id:?} handed out twice");
            }
            11 => {
                let b = self.bytes.u8();
                let generation = if b.is_multiple_of(5) {
                    (-1, String::new())
                } else {
                    (i32::from(b % 5), format!("member-{}", (b >> 3) % 2))
                };
                if generation != self.generation {
                    self.epoch_changed = true;
                }
                if b >= 0x80 {
                    // Fenced, then in the group again: nothing from before goes under the new
                    // generation.
                    self.losses += 1;
                    self.h.machine.set_losses(self.losses);
                    self.forgotten(&(0..PARTITIONS).map(tp).collect::<Vec<_>>());
                }
                self.h
                    .machine
                    .set_generation(generation.0, generation.1.clone());
                self.generation = generation;
            }
            12 => {
                let b = self.bytes.u8();
                let c = (!b.is_multiple_of(4)).then(|| coordinator(i32::from(b % 4)));
                self.h.machine.set_coordinator(c);
            }
            13 => {
                let gone: Vec<TopicPartition> = self.partitions().into_iter().map(tp).collect();
                self.h.machine.forget(&gone);
                self.forgotten(&gone);
            }
            _ => {
                let offsets = self.uncommitted();
                if let Some(id) = self.h.machine.close(now) {
                    self.asked(id, CommitKind::Auto, offsets);
                }
            }
        }
        self.drain();
    }

    /// The model forgets `gone` as the machine did.
    fn forgotten(&mut self, gone: &[TopicPartition]) {
        for tp in gone {
            self.stored.remove(tp);
            self.allowed.remove(tp);
            for a in self.pending.values_mut() {
                a.offsets.remove(tp);
            }
            for o in self.superseded.values_mut() {
                o.remove(tp);
            }
        }
    }

    /// What an auto commit of the stored offsets takes: those not acknowledged.
    fn uncommitted(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let committed = self.h.machine.committed();
        self.stored
            .iter()
            .filter(|(tp, o)| committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), o.clone()))
            .collect()
    }

    /// An application awaits its sync commits; several tasks sharing a commit handle may have
    /// a few waiting at once, not thousands. With [`MAX_SYNC_WAITING`] waiting, asking for
    /// another does nothing.
    fn awaits_a_sync_commit(&self, kind: CommitKind) -> bool {
        kind == CommitKind::Sync && self.sync_waiting() >= MAX_SYNC_WAITING
    }

    /// Sync commits asked for and not completed.
    fn sync_waiting(&self) -> usize {
        self.pending
            .values()
            .filter(|a| a.kind == CommitKind::Sync)
            .count()
    }

    fn asked(
        &mut self,
        id: CommitId,
        kind: CommitKind,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) {
        assert!(
            !self.pending.contains_key(&id) && !self.completed.contains(&id),
            "commit id {id:?} handed out twice"
        );
        self.pending.insert(
            id,
            Asked {
                kind,
                offsets,
                superseded: BTreeSet::new(),
            },
        );
    }

    /// An OffsetCommit failed in a way that is retried.
    fn commit_failed(&mut self, stale: bool) {
        self.commit_failed_at = Some(self.h.now);
        self.stale_since |= stale;
        self.epoch_changed = false;
    }

    /// The machine's requests and events, drained, and its timers due fired, until it has
    /// nothing more to do now.
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(out) = crate::next_output(&mut self.h, &mut n, MAX_PER_OP) {
            match out {
                crate::Output::Request(o) => {
                    self.sent(&o);
                    self.outstanding.push_back(o);
                }
                crate::Output::Event(e) => self.event(e),
            }
        }
    }

    /// Checks a request as it goes.
    fn sent(&mut self, o: &Outgoing) {
        match &o.request {
            OffsetsRequest::FindCoordinator { group_id } => {
                assert_eq!(group_id, "g");
                assert_eq!(o.target, Target::Any);
            }
            OffsetsRequest::OffsetCommit(c) => {
                let known = self.h.machine.coordinator().cloned();
                assert_eq!(Some(&o.target), known.map(Target::Coordinator).as_ref());
                assert_eq!(
                    (c.generation_id, &c.member_id),
                    (self.generation.0, &self.generation.1),
                    "a commit goes with the generation and member id set last"
                );
                assert_eq!(c.group_instance_id, self.instance_id);
                assert!(!c.offsets.is_empty(), "an OffsetCommit with no offsets");
                for (tp, v) in &c.offsets {
                    let key = (v.offset, v.leader_epoch, v.metadata.clone());
                    assert!(
                        self.allowed.get(tp).is_some_and(|a| a.contains(&key)),
                        "the commit carries {v:?} for {tp:?}, which the application did not \
                         store or ask to commit since the partition was last forgotten"
                    );
                }
                if let Some(at) = self.commit_failed_at {
                    assert!(
                        self.h.now > at || (self.stale_since && self.epoch_changed),
                        "an OffsetCommit goes again at once after a retried failure"
                    );
                }
            }
            OffsetsRequest::OffsetFetch(f) => {
                let known = self.h.machine.coordinator().cloned();
                assert_eq!(Some(&o.target), known.map(Target::Coordinator).as_ref());
                assert_eq!(f.require_stable, self.read_committed);
                assert_eq!(f.group_id, "g");
            }
            _ => panic!("an unknown request {o:?}"),
        }
    }

    fn event(&mut self, e: OffsetsEvent) {
        match e {
            OffsetsEvent::Committed {
                id, kind, result, ..
            } => {
                assert!(self.completed.insert(id), "commit {id:?} completed twice");
                let asked = self.pending.remove(&id);
                match &asked {
                    Some(a) => assert_eq!(a.kind, kind, "commit {id:?} completed as another kind"),
                    None => {
                        assert_eq!(kind, CommitKind::Auto, "a commit {id:?} nobody asked for");
                        self.timer_commits.insert(id);
                    }
                }
                match result {
                    Err(CommitError::Superseded { by }) => {
                        assert_ne!(kind, CommitKind::Sync, "a sync commit was superseded");
                        assert!(by > id, "{id:?} superseded by an earlier {by:?}");
                        assert!(
                            !self.completed.contains(&by),
                            "superseded by a completed commit"
                        );
                        match self.pending.get_mut(&by) {
                            Some(later) => {
                                assert_ne!(
                                    later.kind,
                                    CommitKind::Sync,
                                    "a sync commit took another along"
                                );
                                later.superseded.insert(id);
                                if let Some(a) = asked {
                                    later.superseded.extend(a.superseded);
                                    self.superseded.insert(id, a.offsets);
                                }
                            }
                            None => {
                                // A commit of the auto-commit timer the application never
                                // got the id of.
                                self.timer_commits.insert(by);
                            }
                        }
                    }
                    Ok(acked) => {
                        self.commits_done += 1;
                        if let Some(a) = asked {
                            self.check_acked(id, &a, &acked);
                        }
                    }
                    Err(_) => {}
                }
            }
            OffsetsEvent::CommittedOffsets { id, result } => {
                assert!(
                    self.lookups.remove(&id),
                    "lookup {id:?} completed twice or unknown"
                );
                if result.is_ok() {
                    self.lookups_done += 1;
                }
            }
            OffsetsEvent::PersistentFailure(_) => {}
            _ => {}
        }
    }

    /// A successful commit's offsets: per partition, its own where it named it, else the
    /// newest superseded commit's that did, when the target knows them all.
    fn check_acked(
        &self,
        id: CommitId,
        asked: &Asked,
        acked: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) {
        for (tp, v) in acked {
            let key = (v.offset, v.leader_epoch, v.metadata.clone());
            assert!(
                self.acknowledged.get(tp).is_some_and(|a| a.contains(&key)),
                "commit {id:?} reports {v:?} of {tp:?} committed, which no answer acknowledged"
            );
            if let Some(own) = asked.offsets.get(tp) {
                assert_eq!(
                    own, v,
                    "commit {id:?} acknowledged another offset than its own for {tp:?}"
                );
                continue;
            }
            // The newest superseded commit naming the partition, unless a timer's commit
            // (offsets unknown here) is newer.
            for s in asked.superseded.iter().rev() {
                if self.timer_commits.contains(s) {
                    break;
                }
                if let Some(o) = self.superseded.get(s).and_then(|o| o.get(tp)) {
                    assert_eq!(
                        o, v,
                        "commit {id:?} carried an older superseded offset for {tp:?}"
                    );
                    break;
                }
            }
        }
    }

    /// Answers the oldest outstanding request.
    fn answer(&mut self) {
        let Some(o) = self.outstanding.pop_front() else {
            return;
        };
        let answer = match &o.request {
            OffsetsRequest::FindCoordinator { .. } => {
                let b = self.bytes.u8();
                OffsetsResponse::FindCoordinator(match b % 8 {
                    0..=4 => FoundCoordinator {
                        error_code: 0,
                        error_message: None,
                        coordinator: Some(coordinator(i32::from(b >> 4) % 3 + 1)),
                    },
                    5 => FoundCoordinator {
                        error_code: 15,
                        error_message: Some("coordinator not available".into()),
                        coordinator: None,
                    },
                    6 => FoundCoordinator {
                        error_code: 14,
                        error_message: None,
                        coordinator: None,
                    },
                    _ => FoundCoordinator {
                        error_code: 30,
                        error_message: Some("group authorization failed".into()),
                        coordinator: None,
                    },
                })
            }
            OffsetsRequest::OffsetCommit(c) => {
                let mode = self.bytes.u8();
                let mut partitions = BTreeMap::new();
                let uniform = mode
                    .is_multiple_of(4)
                    .then(|| self.bytes.pick(COMMIT_ERRORS));
                for tp in c.offsets.keys() {
                    if mode & 0x10 != 0 && self.bytes.u8().is_multiple_of(4) {
                        continue; // left out of the answer
                    }
                    let code = match uniform {
                        Some(code) => code,
                        None => self.bytes.pick(COMMIT_ERRORS),
                    };
                    partitions.insert(tp.clone(), code);
                }
                if mode & 0x20 != 0 {
                    // A partition never asked about.
                    let code = self.bytes.pick(COMMIT_ERRORS);
                    let p = if mode & 0x40 != 0 {
                        TopicPartition::new("u", 0)
                    } else {
                        tp(PARTITIONS)
                    };
                    partitions.insert(p, code);
                }
                self.answered_commit(&c.offsets, &partitions);
                OffsetsResponse::OffsetCommit { partitions }
            }
            OffsetsRequest::OffsetFetch(f) => {
                let error_code = self.bytes.pick(FETCH_GROUP_ERRORS);
                let asked: Vec<TopicPartition> = match &f.partitions {
                    Some(ps) => ps.iter().cloned().collect(),
                    None => (0..PARTITIONS).map(tp).collect(),
                };
                let mut partitions = BTreeMap::new();
                let extra = self.bytes.u8();
                for tp in asked
                    .into_iter()
                    .chain((extra & 1 != 0).then(|| TopicPartition::new("u", 1)))
                {
                    let b = self.bytes.u8();
                    if b.is_multiple_of(8) {
                        continue; // left out of the answer
                    }
                    let code = self.bytes.pick(FETCH_PARTITION_ERRORS);
                    let offset = match b % 8 {
                        1 => -1,
                        2 => -i64::from(self.bytes.u8() % 8) - 2,
                        _ => i64::from(self.bytes.u8()),
                    };
                    let committed = (offset >= 0).then(|| OffsetAndMetadata {
                        offset,
                        leader_epoch: (b & 0x10 != 0).then_some(i32::from(b >> 5)),
                        metadata: if b & 0x08 != 0 {
                            "x".into()
                        } else {
                            String::new()
                        },
                    });
                    partitions.insert(
                        tp,
                        PartitionOffset {
                            error_code: code,
                            committed,
                        },
                    );
                }
                for (tp, p) in &partitions {
                    if let Some(c) = &p.committed {
                        self.acknowledged.entry(tp.clone()).or_default().insert((
                            c.offset,
                            c.leader_epoch,
                            c.metadata.clone(),
                        ));
                    }
                }
                OffsetsResponse::OffsetFetch {
                    error_code,
                    partitions,
                }
            }
            _ => return,
        };
        self.h.answer(o.id, answer);
    }

    /// Notes what an OffsetCommit answer acknowledged, and how the machine is to take it.
    fn answered_commit(
        &mut self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        partitions: &BTreeMap<TopicPartition, i16>,
    ) {
        for (tp, v) in offsets {
            if partitions.get(tp) == Some(&0) {
                self.acknowledged.entry(tp.clone()).or_default().insert((
                    v.offset,
                    v.leader_epoch,
                    v.metadata.clone(),
                ));
            }
        }
        let errors: Vec<i16> = partitions.values().copied().filter(|c| *c != 0).collect();
        if !errors.is_empty() && errors.iter().all(|c| COMMIT_RETRIED.contains(c)) {
            self.commit_failed(errors.contains(&113));
        } else {
            self.commit_failed_at = None;
            self.stale_since = false;
        }
    }

    fn check(&self) {
        assert_eq!(
            self.h.machine.stored(),
            &self.stored,
            "stored() is what was stored and not forgotten"
        );
        for (tp, v) in self.h.machine.committed() {
            let key = (v.offset, v.leader_epoch, v.metadata.clone());
            assert!(
                self.acknowledged.get(tp).is_some_and(|a| a.contains(&key)),
                "committed() holds {v:?} for {tp:?}, which no answer acknowledged or read"
            );
        }
        assert!(
            self.outstanding.len() <= MAX_OUTSTANDING,
            "{} requests outstanding",
            self.outstanding.len()
        );
    }

    /// The bytes are done: the broker answers everything without error until every commit
    /// and lookup the application asked for completed.
    fn settle(&mut self) {
        // A sync commit is never merged: each one waiting needs a round of its own.
        let rounds = SETTLE_ROUNDS + self.pending.len() + self.lookups.len();
        for _ in 0..rounds {
            if self.pending.is_empty() && self.lookups.is_empty() {
                return;
            }
            if let Some(o) = self.outstanding.pop_front() {
                let answer = match &o.request {
                    OffsetsRequest::FindCoordinator { .. } => {
                        OffsetsResponse::FindCoordinator(FoundCoordinator {
                            error_code: 0,
                            error_message: None,
                            coordinator: Some(coordinator(1)),
                        })
                    }
                    OffsetsRequest::OffsetCommit(c) => {
                        let partitions = c.offsets.keys().map(|tp| (tp.clone(), 0)).collect();
                        self.answered_commit(&c.offsets, &partitions);
                        OffsetsResponse::OffsetCommit { partitions }
                    }
                    OffsetsRequest::OffsetFetch(_) => OffsetsResponse::OffsetFetch {
                        error_code: 0,
                        partitions: BTreeMap::new(),
                    },
                    _ => continue,
                };
                self.h.answer(o.id, answer);
            } else if self.h.machine.poll_timeout().is_some() {
                self.h.run_to_timeout();
            } else {
                break;
            }
            self.drain();
            self.check();
        }
        assert!(
            self.pending.is_empty(),
            "commits never completed: {:?}",
            self.pending.keys().collect::<Vec<_>>()
        );
        assert!(
            self.lookups.is_empty(),
            "lookups never completed: {:?}",
            self.lookups
        );
    }
}

/// Hand-made seeds for `corpus/commit_machine/`, each checked here to reach what it is for;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // No auto-commit, read_uncommitted, default.api.timeout.ms 60 s, retry.backoff.ms 100.
    let setup = 0;
    let store = [7, 0, 0x02]; // partition 0 on by one record, no epoch, no metadata
    let find = [0, 0]; // FindCoordinator answered: broker 1
    let commit_ok = [0, 1, 0]; // the OffsetCommit answered, no error for its partition
    // Partition 0's committed offset looked up, and answered: 5, no error.
    let lookup = [10, 1, 0, 0, 0, 0, 3, 0, 5];
    let sync = [&[setup][..], &store, &[8, 0], &find, &commit_ok, &lookup].concat();
    // Two async commits queued before the coordinator is known: the second takes the first
    // along.
    let merged = [
        &[setup][..],
        &store,
        &[8, 1],
        &store,
        &[8, 1],
        &find,
        &commit_ok,
    ]
    .concat();
    // COORDINATOR_LOAD_IN_PROGRESS for every partition, retried after the backoff.
    let retried = [
        &[setup][..],
        &store,
        &[8, 0],
        &find,
        &[0, 0, 8],
        &[5, 0xf4, 0x01],
        &commit_ok,
    ]
    .concat();
    // Auto-commit every second: the timer commits what is stored.
    let auto = [&[1][..], &store, &[5, 0xe8, 0x03], &find, &commit_ok].concat();
    vec![
        ("seed-sync-commit-lookup", sync),
        ("seed-async-merged", merged),
        ("seed-retried", retried),
        ("seed-auto-commit", auto),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(data: &[u8]) -> Sim<'_> {
        let mut sim = Sim::new(data);
        while let Some(op) = sim.bytes.next() {
            sim.step(op);
            sim.check();
            if std::env::var_os("TRACE").is_some() {
                let o: Vec<_> = sim.outstanding.iter().map(|o| &o.request).collect();
                eprintln!(
                    "op {} at {}: stored {:?} committed {:?} outstanding {o:?}",
                    op % 16,
                    sim.bytes.pos,
                    sim.h.machine.stored(),
                    sim.h.machine.committed(),
                );
            }
        }
        sim
    }

    #[test]
    fn the_seeds_commit_and_look_up() {
        for (name, data) in seeds() {
            let mut sim = replay(&data);
            assert!(sim.commits_done >= 1, "{name}: no commit succeeded");
            assert_eq!(
                sim.h.machine.committed().get(&tp(0)).map(|o| o.offset),
                Some(match name {
                    "seed-sync-commit-lookup" => 5,
                    "seed-async-merged" => 3,
                    _ => 2,
                }),
                "{name}"
            );
            if name == "seed-sync-commit-lookup" {
                assert_eq!(sim.lookups_done, 1, "{name}: the lookup was not answered");
            }
            if name == "seed-async-merged" {
                assert_eq!(sim.completed.len(), 2, "{name}");
                assert_eq!(sim.superseded.len(), 1, "{name}: nothing was merged");
            }
            sim.settle();
        }
    }

    /// The inputs that once failed, kept in the corpus as `regression-*`, hold the invariants.
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("commit_machine");
        for (_, data) in &regressions {
            replay(data).settle();
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    /// A commit in flight whose partition was forgotten (revoked) meanwhile, then failed with
    /// a retriable error: its retry carried the forgotten partition to the coordinator.
    #[test]
    fn a_partition_forgotten_in_flight_does_not_go_again() {
        let data =
            include_bytes!("../corpus/commit_machine/regression-forgotten-in-flight-retried");
        let mut sim = replay(data);
        sim.settle();
        assert!(sim.h.machine.commits_idle());
        assert!(sim.h.machine.stored().is_empty());
    }

    /// An input that asks for over a thousand sync commits before the end. The end once gave
    /// up after 1,000 rounds with commits still waiting, each round completing one (none is
    /// merged), and the machine's queue of them outgrew the allocation bound; the
    /// application now has at most `MAX_SYNC_WAITING` waiting, as one that awaits them does.
    #[test]
    fn every_sync_commit_waiting_at_the_end_completes() {
        let data =
            include_bytes!("../corpus/commit_machine/regression-a-thousand-sync-commits-waiting");
        let mut sim = replay(data);
        let waiting = sim.sync_waiting();
        assert!(
            (MAX_SYNC_WAITING / 2..=MAX_SYNC_WAITING).contains(&waiting),
            "{waiting} sync commits waiting"
        );
        sim.settle();
        assert!(sim.pending.is_empty());
        assert!(sim.h.machine.commits_idle());
    }

    /// Replays the input in `$REPLAY`, with `$TRACE` set to see each op.
    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        replay(&data).settle();
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("commit_machine", seeds());
    }
}
