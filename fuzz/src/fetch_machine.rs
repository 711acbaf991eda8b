//! The `fetch_machine` target: kcon-fetch's sans-IO [`FetchMachine`] on kcon-core's
//! virtual-clock [`Harness`], with the application's side the real one (a [`Handout`], fed and
//! fenced the way the consumer feeds and fences its own over the fetch task's handle,
//! `kcon_fetch::FetchHandle`), driven by an interpreter over the fuzz bytes.
//!
//! The first byte picks `auto.offset.reset`, `max.poll.records` and `isolation.level`. Then each
//! step reads an op byte, then what the op needs (a missing byte reads as 0); the run stops
//! when the bytes run out. Ops (the op byte modulo 16):
//!
//! | op | what |
//! |---|---|
//! | 0–3 | answer the oldest outstanding request, well-formed, made from the next bytes |
//! | 4 | fail the oldest outstanding request (retriable or not) |
//! | 5 | advance the virtual clock by a fuzzed amount and fire the timers due |
//! | 6 | assign one of three partitions (from a committed offset, with or without an epoch, or by `auto.offset.reset`) |
//! | 7 | unassign one |
//! | 8 | pause one |
//! | 9 | resume one |
//! | 10 | seek one, with or without a leader epoch |
//! | 11–13 | the application takes the next event; parts cut from then on are decoded (11, 12) or left where they lie in the answer (13) |
//! | 14 | the application takes every event there is |
//! | 15 | a metadata update the machine did not ask for |
//!
//! After every op, the machine's requests and events are drained (each within
//! [`MAX_PER_OP`]), and:
//! - a part left where it lies reads, in place, as the records it decodes to;
//! - the records handed out for a partition never go backwards or repeat, except after a seek,
//!   an unassignment, an assignment, a `FetchEvent::Reset` or a log truncation kcon
//!   repositioned itself;
//! - the prefetch budget's buffered and reserved bytes stay within `fetch.buffer.max.bytes`
//!   plus, per partition, a few times the largest records a partition got in one answer (a
//!   broker may send past the limit, KIP-74) and one decompression buffer (a batch cut by
//!   `max.poll.records` waits decompressed), and the events and requests waiting stay few.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::Input;
use bytes::Bytes;
use kcon_codec::compression::Compression;
use kcon_codec::kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kcon_codec::kafka_protocol::messages::{BrokerId, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::harness::Harness;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::{Machine, Record, RequestFailure, TopicPartition};
use kcon_fetch::handout::{Arrival, Handout, Release};
use kcon_fetch::position::{LeaderAndEpoch, PartitionError};
use kcon_fetch::{
    BrokerInfo, FetchAnswer, FetchConfig, FetchEvent, FetchMachine, FetchRequest, MetadataView,
    Outgoing, PartitionInfo, StartPosition,
};

/// Requests, events or hand-outs one op may produce: more is a loop without progress.
pub const MAX_PER_OP: usize = 10_000;
/// Events waiting for the application (in the task's channel and held or released by the
/// hand-out side) beyond which the target fails: records are bounded by the budget, other
/// events come a few per input.
pub const MAX_QUEUED_EVENTS: usize = 4_096;

/// What one partition's decompression buffer, held for the rest of a batch, may count in the
/// budget here: the batches the target builds decompress to under 1 KiB, into buffers of at
/// most 64 KiB.
const HELD_BUFFER_ALLOWANCE: usize = 128 * 1024;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 3;
/// `fetch.max.bytes` and `max.partition.fetch.bytes` of the machine fuzzed: small, so that the
/// budget is spent often.
const FETCH_MAX_BYTES: usize = 4_096;

/// Error codes of a partition in a Fetch answer, `NONE` most often.
const FETCH_ERRORS: &[i16] = &[
    0, 0, 0, 0, 0, 0, 0, 0,   //
    1,   // OFFSET_OUT_OF_RANGE
    2,   // CORRUPT_MESSAGE
    3,   // UNKNOWN_TOPIC_OR_PARTITION
    6,   // NOT_LEADER_OR_FOLLOWER
    9,   // REPLICA_NOT_AVAILABLE
    29,  // TOPIC_AUTHORIZATION_FAILED
    56,  // KAFKA_STORAGE_ERROR
    74,  // FENCED_LEADER_EPOCH
    75,  // UNKNOWN_LEADER_EPOCH
    78,  // OFFSET_NOT_AVAILABLE
    100, // UNKNOWN_TOPIC_ID
    -1,  // UNKNOWN_SERVER_ERROR
];
/// Top-level error codes of a Fetch answer.
const TOP_ERRORS: &[i16] = &[
    70,  // FETCH_SESSION_ID_NOT_FOUND
    71,  // INVALID_FETCH_SESSION_EPOCH
    106, // FETCH_SESSION_TOPIC_ID_ERROR
    7,   // REQUEST_TIMED_OUT
    -1,  // UNKNOWN_SERVER_ERROR
];
/// Error codes of ListOffsets and OffsetForLeaderEpoch answers.
const OTHER_ERRORS: &[i16] = &[0, 0, 0, 0, 1, 3, 6, 74, 75, 78, -1];
/// Fetch versions a broker may offer. At v13+ a Fetch names topics by id; the metadata here
/// gives no topic id and the answers name topics by name, so v13 only checks that the machine
/// copes with that mismatch.
const FETCH_VERSIONS: &[i16] = &[12, 12, 12, 11, 7, 4, 13];

/// Runs the interpreter over `data`. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut sim = Sim::new(data);
    while let Some(op) = sim.bytes.next() {
        sim.step(op);
        sim.check();
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

struct Sim<'a> {
    bytes: Input<'a>,
    h: Harness<FetchMachine>,
    handout: Handout,
    /// Requests sent and not answered, oldest first.
    outstanding: VecDeque<Outgoing>,
    /// The fetch task's channel to the application.
    channel: VecDeque<Arrival>,
    /// Partitions the application assigned.
    assigned: HashSet<TopicPartition>,
    /// The offset the next record handed out of each partition must be at or past.
    expected: HashMap<TopicPartition, i64>,
    /// The most bytes of records one partition got in a Fetch answer made so far.
    largest_records: usize,
}

impl<'a> Sim<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut config = FetchConfig::default();
        let mut bytes = Input { data, pos: 0 };
        // The first byte picks the settings that change the machine's paths.
        let setup = bytes.u8();
        let reset = ["earliest", "latest", "none", "by_duration:PT1H"][usize::from(setup % 4)];
        let max_poll = ["1", "2", "3", "500"][usize::from((setup >> 2) % 4)];
        let isolation = ["read_uncommitted", "read_committed"][usize::from((setup >> 4) % 2)];
        for (k, v) in [
            ("auto.offset.reset", reset),
            ("max.poll.records", max_poll),
            ("isolation.level", isolation),
            ("fetch.max.bytes", &FETCH_MAX_BYTES.to_string()),
            ("max.partition.fetch.bytes", "1024"),
        ] {
            config.set(k, v).expect("a valid setting");
        }
        let handout = Handout::for_config(&config).expect("max.poll.records");
        let now = Instant::now();
        Sim {
            bytes,
            h: Harness::new(FetchMachine::new(config, now, 7), now),
            handout,
            outstanding: VecDeque::new(),
            channel: VecDeque::new(),
            assigned: HashSet::new(),
            expected: HashMap::new(),
            largest_records: 0,
        }
    }

    fn step(&mut self, op: u8) {
        match op % 16 {
            0..=3 => self.answer(),
            4 => {
                if let Some(o) = self.outstanding.pop_front() {
                    let failure = if self.bytes.bool() {
                        RequestFailure::retriable("connection lost")
                    } else {
                        RequestFailure::fatal("not retriable")
                    };
                    self.h.fail(o.id, failure);
                }
            }
            5 => {
                let ms = u64::from(self.bytes.u16()) % 40_000;
                self.h.advance(Duration::from_millis(ms));
            }
            6 => {
                let p = self.partition();
                let start = match self.bytes.u8() % 3 {
                    0 => StartPosition::Reset,
                    1 => StartPosition::Committed {
                        offset: i64::from(self.bytes.u8()),
                        leader_epoch: None,
                    },
                    _ => StartPosition::Committed {
                        offset: i64::from(self.bytes.u8()),
                        leader_epoch: Some(i32::from(self.bytes.u8() % 8)),
                    },
                };
                if self.assigned.insert(p.clone()) {
                    self.expected.remove(&p);
                }
                let now = self.h.now;
                self.h.machine.assign(now, [(p, start)]);
            }
            7 => {
                // As the consumer unassigns: the hand-out fences, the task applies and confirms.
                let p = self.partition();
                self.drain_events();
                let fence = self.handout.unassign(std::slice::from_ref(&p));
                self.h.machine.unassign([&p]);
                self.channel
                    .push_back(Arrival::Fenced(vec![p.clone()], fence));
                self.assigned.remove(&p);
                self.expected.remove(&p);
            }
            8 => {
                let p = self.partition();
                self.handout.pause(p.clone());
                self.drain_events();
                self.h.machine.pause(&p);
            }
            9 => {
                let p = self.partition();
                self.handout.resume(&p);
                self.drain_events();
                self.h.machine.resume(&p);
            }
            10 => {
                let p = self.partition();
                let offset = i64::from(self.bytes.u8());
                let epoch = self.bytes.bool().then(|| i32::from(self.bytes.u8() % 8));
                self.drain_events();
                let fence = self.handout.seek(&p);
                self.h.machine.seek(&p, offset, epoch);
                self.channel
                    .push_back(Arrival::Fenced(vec![p.clone()], fence));
                self.expected.remove(&p);
            }
            11..=13 => {
                // Parts cut from here on are decoded, or left in place to be read there.
                self.handout.set_in_place(op % 16 == 13);
                self.take();
            }
            14 => {
                let mut n = 0;
                while self.take() {
                    n += 1;
                    assert!(n <= MAX_PER_OP, "taking events does not end");
                }
            }
            _ => {
                let view = self.view();
                let now = self.h.now;
                self.h.machine.metadata_updated(now, &view);
            }
        }
        self.drain();
    }

    fn partition(&mut self) -> TopicPartition {
        tp(i32::from(self.bytes.u8()) % PARTITIONS)
    }

    /// The machine's requests and events, drained.
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(o) = self.h.request() {
            self.outstanding.push_back(o);
            n += 1;
            assert!(n <= MAX_PER_OP, "the machine asks for requests without end");
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        let mut n = 0;
        while let Some(e) = self.h.machine.poll_event() {
            self.channel.push_back(Arrival::Event(e));
            n += 1;
            assert!(n <= MAX_PER_OP, "the machine tells events without end");
        }
    }

    /// The application takes the next event, as the consumer takes it from its hand-out (what
    /// was released first, then the task's next arrival); false when none came.
    fn take(&mut self) -> bool {
        let mut n = 0;
        loop {
            n += 1;
            assert!(n <= MAX_PER_OP, "the hand-out side loops");
            let handed = match self.handout.next_released() {
                Some(h) => h,
                None => {
                    let Some(arrival) = self.channel.pop_front() else {
                        return false;
                    };
                    match self.handout.arrive(arrival) {
                        Some(h) => h,
                        None => continue,
                    }
                }
            };
            self.handed_out(&handed.event);
            for release in handed.releases {
                #[cfg(test)]
                if std::env::var_os("TRACE").is_some() {
                    eprintln!("release {release:?}");
                }
                if let Release::Corrupt(tp, corrupt, _) = &release {
                    // The records handed out end before the corrupt record: going back there
                    // repeats nothing.
                    if let Some(&e) = self.expected.get(tp) {
                        assert!(
                            corrupt.offset >= e,
                            "{tp}: a corrupt record at {} before the records handed out (next {e})",
                            corrupt.offset
                        );
                    }
                }
                let now = self.h.now;
                release.apply(&mut self.h.machine, now);
            }
            // The task hears the releases (and may fetch again) before the next command.
            self.drain();
            return true;
        }
    }

    fn handed_out(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Records(r) => {
                // A part read in place holds the records it decodes to.
                let read: Vec<Record> = r.borrowed().map(|b| b.to_record()).collect();
                let r = r.clone().decoded();
                assert_eq!(
                    read, r.records,
                    "{}: a part read in place is not the records it decodes to",
                    r.partition
                );
                for record in &r.records {
                    if let Some(&e) = self.expected.get(&r.partition) {
                        assert!(
                            record.offset >= e,
                            "{}: record {} handed out after the records up to {} (a repeat or a step back)",
                            r.partition,
                            record.offset,
                            e - 1
                        );
                    }
                    self.expected
                        .insert(r.partition.clone(), record.offset.saturating_add(1));
                }
            }
            FetchEvent::Reset { partition, .. }
            | FetchEvent::PartitionError {
                partition,
                error:
                    PartitionError::LogTruncation {
                        repositioned: true, ..
                    },
            } => {
                self.expected.remove(partition);
            }
            _ => {}
        }
    }

    fn check(&self) {
        let budget = self.h.machine.budget();
        // `fetch.buffer.max.bytes` (3 × `fetch.max.bytes`), plus what each partition may hold
        // past it: one answer's records (a broker sends past the limit to make progress,
        // KIP-74), and the buffer a compressed batch cut by `max.poll.records` waits in. The
        // budget counts that buffer's capacity, the memory it keeps, not the records' length:
        // the decompressor's first allocation (64 KiB was seen for a batch of a few hundred
        // bytes), or a larger buffer reused from the free list.
        let config = self.h.machine.config();
        let per_partition = 4 * self.largest_records + HELD_BUFFER_ALLOWANCE;
        let bound = config.buffer_max_bytes + PARTITIONS as usize * per_partition;
        assert!(
            budget.buffered() + budget.in_flight() <= bound,
            "the prefetch budget holds {} bytes buffered and {} reserved (bound {bound})",
            budget.buffered(),
            budget.in_flight()
        );
        assert!(
            self.channel.len() <= MAX_QUEUED_EVENTS,
            "{} events wait for the application",
            self.channel.len()
        );
        assert!(
            self.outstanding.len() <= MAX_QUEUED_EVENTS,
            "{} requests outstanding",
            self.outstanding.len()
        );
    }

    /// Answers the oldest outstanding request.
    fn answer(&mut self) {
        let Some(o) = self.outstanding.pop_front() else {
            return;
        };
        let answer = match &o.request {
            FetchRequest::Fetch { session, .. } => {
                let asked: Vec<(TopicPartition, i64)> = session
                    .partitions
                    .iter()
                    .map(|(tp, p)| (tp.clone(), p.fetch_offset))
                    .collect();
                let session_id = if session.epoch == 0 {
                    i32::from(self.bytes.u8() % 3)
                } else {
                    session.session_id
                };
                FetchAnswer::Fetch(Box::new(self.fetch_response(session_id, &asked)))
            }
            FetchRequest::Connect { broker } => FetchAnswer::Broker(BrokerInfo {
                id: *broker,
                fetch_version: self.bytes.pick(FETCH_VERSIONS),
                can_validate: !self.bytes.u8().is_multiple_of(4),
            }),
            FetchRequest::Metadata { .. } => FetchAnswer::Metadata(self.view()),
            FetchRequest::ListOffsets { partitions, .. } => {
                let mut listed = BTreeMap::new();
                for (tp, _) in partitions {
                    if self.bytes.u8().is_multiple_of(8) {
                        continue; // left out of the answer
                    }
                    listed.insert(
                        tp.clone(),
                        ListedOffset {
                            error_code: self.bytes.pick(OTHER_ERRORS),
                            offset: i64::from(self.bytes.u8()) - 1,
                            timestamp: -1,
                            leader_epoch: self.bytes.bool().then(|| i32::from(self.bytes.u8() % 8)),
                        },
                    );
                }
                FetchAnswer::ListOffsets(listed)
            }
            FetchRequest::Validate(v) => {
                let mut r = OffsetForLeaderEpochResponse::default();
                let mut t = OffsetForLeaderTopicResult::default();
                t.topic = TopicName(StrBytes::from_static_str(TOPIC));
                for q in &v.queries {
                    if self.bytes.u8().is_multiple_of(8) {
                        continue;
                    }
                    let mut e = EpochEndOffset::default();
                    e.partition = q.partition.partition;
                    e.error_code = self.bytes.pick(OTHER_ERRORS);
                    e.leader_epoch = i32::from(self.bytes.u8() % 9) - 1;
                    e.end_offset = q.position.offset + self.bytes.delta();
                    t.partitions.push(e);
                }
                r.topics.push(t);
                FetchAnswer::Validation(Box::new(r))
            }
            other => panic!("a request the target does not know: {other:?}"),
        };
        self.h.answer(o.id, answer);
    }

    /// A metadata view: each partition's leader (brokers 1–3, or none) and epoch (which may go
    /// backwards), and the versions of some brokers.
    fn view(&mut self) -> MetadataView {
        let mut v = MetadataView::default();
        for p in 0..PARTITIONS {
            let b = self.bytes.u8();
            if b % 16 == 15 {
                continue; // not named
            }
            let leader = if b % 16 == 14 {
                LeaderAndEpoch::default()
            } else {
                LeaderAndEpoch::new(i32::from(b % 3) + 1, i32::from((b >> 2) % 8))
            };
            v.partitions.insert(
                tp(p),
                PartitionInfo {
                    leader,
                    topic_id: None,
                },
            );
        }
        let known = self.bytes.u8();
        for id in 1..=3 {
            if known & (1 << id) != 0 {
                v.brokers.insert(
                    id,
                    BrokerInfo {
                        id,
                        fetch_version: self.bytes.pick(FETCH_VERSIONS),
                        can_validate: known & 1 == 0,
                    },
                );
            }
        }
        v
    }

    fn fetch_response(
        &mut self,
        session_id: i32,
        asked: &[(TopicPartition, i64)],
    ) -> FetchResponse {
        let mut r = FetchResponse::default();
        r.session_id = session_id;
        let shape = self.bytes.u8();
        if shape.is_multiple_of(16) {
            r.error_code = self.bytes.pick(TOP_ERRORS);
        }
        let mut t = FetchableTopicResponse::default();
        t.topic = TopicName(StrBytes::from_static_str(TOPIC));
        for (tp, offset) in asked {
            // Some partitions asked about are left out (unchanged in an incremental session).
            if self.bytes.u8().is_multiple_of(8) {
                continue;
            }
            let d = self.partition_data(tp.partition, *offset);
            t.partitions.push(d);
        }
        // A hostile broker answers for partitions never asked about too.
        if shape & 0x10 != 0 {
            let p = i32::from(self.bytes.u8() % 4);
            let offset = i64::from(self.bytes.u8());
            let d = self.partition_data(p, offset);
            t.partitions.push(d);
        }
        r.responses.push(t);
        if shape & 0x20 != 0 {
            // And for a topic never assigned.
            let mut other = FetchableTopicResponse::default();
            other.topic = TopicName(StrBytes::from_static_str("other"));
            let d = self.partition_data(0, 0);
            other.partitions.push(d);
            r.responses.push(other);
        }
        r
    }

    fn partition_data(&mut self, partition: i32, offset: i64) -> PartitionData {
        let mut d = PartitionData::default();
        d.partition_index = partition;
        d.error_code = self.bytes.pick(FETCH_ERRORS);
        let flags = self.bytes.u8();
        let epoch = i32::from(self.bytes.u8() % 8);
        let records = match flags % 8 {
            0 | 1 => None,
            2..=5 => Some(self.batches(offset, epoch, flags)),
            6 => {
                let n = usize::from(self.bytes.u8());
                Some(Bytes::copy_from_slice(self.bytes.slice(n)))
            }
            _ => Some(self.corrupt_compressed(offset, epoch)),
        };
        let end = records.as_ref().map_or(offset, |_| offset + 8);
        d.high_watermark = end + self.bytes.delta();
        d.last_stable_offset = if flags & 0x08 != 0 {
            d.high_watermark
        } else {
            -1
        };
        d.log_start_offset = if flags & 0x10 != 0 { offset - 4 } else { 0 };
        if flags & 0x20 != 0 {
            d.current_leader.leader_id = BrokerId(i32::from(self.bytes.u8() % 4));
            d.current_leader.leader_epoch = i32::from(self.bytes.u8() % 8);
        }
        if flags & 0x40 != 0 {
            d.diverging_epoch.epoch = i32::from(self.bytes.u8() % 8);
            d.diverging_epoch.end_offset = offset + self.bytes.delta();
        }
        if flags & 0x80 != 0 {
            d.preferred_read_replica = BrokerId(i32::from(self.bytes.u8() % 4));
        }
        if let Some(b) = &records {
            self.largest_records = self.largest_records.max(b.len());
        }
        d.records = records;
        d
    }

    /// One to three valid batches, the first starting near `offset` (before, at or after it).
    fn batches(&mut self, offset: i64, epoch: i32, flags: u8) -> Bytes {
        let mut out = Vec::new();
        let mut base = offset + self.bytes.delta() / 2;
        let batches = 1 + usize::from(flags >> 6);
        for _ in 0..batches {
            let n = 1 + usize::from(self.bytes.u8() % 6);
            let kind = self.bytes.u8();
            let compression = [
                Compression::None,
                Compression::None,
                Compression::Gzip,
                Compression::Lz4,
                Compression::Snappy,
                Compression::Zstd,
            ][usize::from(kind % 6)];
            let mut b = RecordBatchBuilder::new(base)
                .partition_leader_epoch(epoch)
                .compression(compression);
            if kind & 0x80 != 0 {
                // Transactional, or a control batch (an end-transaction marker).
                b = if kind & 0x40 != 0 {
                    RecordBatchBuilder::end_transaction_marker(base, 9, 0, kind & 0x20 != 0, 0, 1)
                } else {
                    b.producer(9, 0, 0).transactional(true)
                };
            }
            if b.is_empty() {
                for i in 0..n {
                    let v = format!("v{}", base + i as i64);
                    b.record(1_000, Some(b"k"), Some(v.as_bytes()));
                }
            }
            let count = b.len() as i64;
            if let Ok(bytes) = crate::untracked(|| b.build()) {
                out.extend_from_slice(&bytes);
            }
            base += count + i64::from(kind & 0x10 != 0);
        }
        Bytes::from(out)
    }

    /// A compressed batch whose payload does not decompress though its CRC holds: found corrupt
    /// only as its records are handed out.
    fn corrupt_compressed(&mut self, offset: i64, epoch: i32) -> Bytes {
        let base = offset + self.bytes.delta() / 2;
        let mut b = RecordBatchBuilder::new(base)
            .partition_leader_epoch(epoch)
            .compression(Compression::Gzip);
        for i in 0..4 {
            let v = format!("value {i} of a batch found corrupt as it is handed out");
            b.record(1_000, Some(b"k"), Some(v.as_bytes()));
        }
        let mut bytes = crate::untracked(|| b.build()).expect("a batch").to_vec();
        // Past the 61-byte header: flip a byte of the payload, then fix the CRC (over the
        // attributes to the end; it sits at 17..21).
        let at = 61 + usize::from(self.bytes.u8()) % (bytes.len() - 61);
        bytes[at] ^= 0xff;
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(bytes)
    }
}

/// Hand-made seeds for `corpus/fetch_machine/`, each checked here to reach what it is for;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Setup: auto.offset.reset=earliest, max.poll.records=500, read_uncommitted.
    let setup = 0b0000_1100;
    let assign = [6, 0, 1, 0]; // partition 0 from committed offset 0, no epoch
    // The Metadata answer: partitions 0-2 led by broker 1 at epoch 0; broker 1 speaks Fetch
    // v12 and OffsetForLeaderEpoch.
    let metadata = [0, 0, 0, 0, 2, 0];
    // The first Fetch answered: session 1, partition 0 with no error and one batch of 3
    // records at the asked offset, high watermark 8.
    let fetch = [0, 1, 1, 1, 0, 2, 0, 8, 2, 0, 8];
    let take = [11];
    let basic = [&[setup][..], &assign, &metadata, &fetch, &take, &[14]].concat();
    let pause = [
        &[setup][..],
        &assign,
        &metadata,
        &fetch,
        &[8, 0],
        &take,
        &[9, 0],
        &take,
    ]
    .concat();
    let seek = [
        &[setup][..],
        &assign,
        &metadata,
        &fetch,
        &take,
        // Seek partition 0 to offset 1, no epoch; the Fetch in flight fails (retriable), the
        // clock passes the backoff, the metadata and the broker's versions are asked for again
        // and answered, and the Fetch from offset 1 (a full one: the failure ended the session)
        // is answered with records 1 to 3.
        &[10, 0, 1, 0],
        &[4, 1],
        &[5, 0xf4, 0x01],
        &metadata,
        &[0, 0, 1],
        &[0, 1, 1, 1, 0, 2, 0, 8, 2, 0, 8],
        &take,
    ]
    .concat();
    vec![
        ("seed-assign-fetch-take", basic),
        ("seed-pause-resume", pause),
        ("seed-seek", seek),
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
                let b = sim.h.machine.budget();
                eprintln!(
                    "op {} at {}: buffered {} in flight {} expected {:?} outstanding {o:?}",
                    op % 16,
                    sim.bytes.pos,
                    b.buffered(),
                    b.in_flight(),
                    sim.expected
                );
            }
        }
        sim
    }

    #[test]
    fn the_seeds_hand_records_out() {
        for (name, data) in seeds() {
            let sim = replay(&data);
            let expected = sim.expected.get(&tp(0)).copied();
            let want = if name == "seed-seek" {
                Some(4)
            } else {
                Some(3)
            };
            assert_eq!(
                expected, want,
                "{name}: outstanding {:?}, channel {:?}",
                sim.outstanding, sim.channel
            );
        }
    }

    /// The inputs that once failed, kept in the corpus as `regression-*`, hold the invariants
    /// (the allocation bound is the target's, checked as the corpus is replayed through it).
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("fetch_machine");
        for (_, data) in &regressions {
            replay(data);
        }
        assert!(
            regressions.len() >= 3,
            "{} regression inputs",
            regressions.len()
        );
    }

    /// A log truncation the machine repositioned (from 107 back to 99), found while the
    /// partition was paused with records held by the hand-out side: those past 99 are of the
    /// log the new leader truncated and must not come out after the truncation (they did, then
    /// the first of the new leader's again). The input once carried a diverging epoch in its
    /// first Fetch answer, which the machine ignored then; read as a truncation now, it took
    /// the run elsewhere, so that answer's flags no longer ask for one (its records one batch).
    #[test]
    fn a_truncation_while_paused_hands_out_nothing_of_the_truncated_log() {
        let data = include_bytes!("../corpus/fetch_machine/regression-truncation-while-paused");
        let sim = replay(data);
        // Records 99 to 101 of the new leader's log came out, and nothing is held.
        assert_eq!(sim.expected.get(&tp(0)), Some(&102));
        assert!(sim.handout.is_idle());
    }

    /// Replays the input in `$REPLAY`, with `$TRACE` set to see each op.
    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        replay(&data);
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("fetch_machine", seeds());
    }
}
