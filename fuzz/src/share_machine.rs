//! The `share_machine` target: kcon-fetch's sans-IO [`ShareFetchMachine`] (a share group's
//! sessions, KIP-932) on kcon-core's virtual-clock [`Harness`], every answer made from the fuzz
//! bytes.
//!
//! The first byte picks `max.poll.records` (1 to 8). Then each step reads an op byte, then what
//! the op needs (a missing byte reads as 0); the run stops when the bytes run out. Ops (the op
//! byte modulo 12):
//!
//! | op | what |
//! |---|---|
//! | 0–2 | answer the oldest outstanding request, made from the next bytes: a ShareFetch's with acquired ranges (inverted, overlapping, negative and huge ones too), records, partition errors (a leader error naming a new leader or none), acknowledgement errors or a request-level error; a ShareAcknowledge's with errors; a metadata refresh's with leaders |
//! | 3 | fail the oldest outstanding request (retriable or not) |
//! | 4 | advance the virtual clock by a fuzzed amount and fire the timers due |
//! | 5 | assign a subset of three partitions |
//! | 6 | the application waits for records (having read every batch, or a stale count) |
//! | 7 | acknowledge a fuzzed range of a partition with a fuzzed type (accept, release, reject, renew) |
//! | 8 | accept every record handed out and not acknowledged yet |
//! | 9 | commit |
//! | 10 | close |
//! | 11 | a metadata update the machine did not ask for |
//!
//! After every op, the machine's requests and events are drained (each within
//! [`MAX_PER_OP`]), and:
//! - at most one request is in flight to a broker (the share session's epoch orders them);
//! - a ShareFetch opening a session (epoch 0) carries no acknowledgement, and every request's
//!   acknowledgement ranges of a partition are in order, none empty, none overlapping;
//! - a record is never handed out again at a delivery count no higher than the one it is
//!   held at (handed out and not acknowledged);
//! - commits are told done in the order asked, each once (one event may tell a run of them);
//! - once closed, nothing more is asked.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::{Input, Output, next_output};
use bytes::BytesMut;
use kcon_codec::kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartition, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::harness::Harness;
use kcon_core::{Machine, RequestFailure, RequestId, TopicId, TopicPartition};
use kcon_fetch::position::LeaderAndEpoch;
use kcon_fetch::share::{
    AcknowledgeType, ShareAnswer, ShareEvent, ShareFetchMachine, ShareOutgoing, ShareRequest,
};
use kcon_fetch::{FetchConfig, MetadataView, PartitionInfo};

/// Requests, events or timers one op may produce: more is a loop without progress.
pub const MAX_PER_OP: usize = 10_000;

const TOPIC: &str = "t";
const TOPIC_ID: TopicId = TopicId([7; 16]);
const PARTITIONS: i32 = 3;

/// Request-level error codes of an answer, none most often.
const TOP_ERRORS: &[i16] = &[
    0, 0, 0, 0, 0, 0, 0, 0,   //
    122, // SHARE_SESSION_NOT_FOUND
    123, // INVALID_SHARE_SESSION_EPOCH
    133, // SHARE_SESSION_LIMIT_REACHED
    69,  // GROUP_ID_NOT_FOUND
    25,  // UNKNOWN_MEMBER_ID
    42,  // INVALID_REQUEST
    -1,  // UNKNOWN_SERVER_ERROR
    7,   // REQUEST_TIMED_OUT
];

/// A partition's error codes (fetch or acknowledgement), none most often.
const PARTITION_ERRORS: &[i16] = &[
    0, 0, 0, 0, 0, 0, 0, 0,   //
    6,   // NOT_LEADER_OR_FOLLOWER
    74,  // FENCED_LEADER_EPOCH
    3,   // UNKNOWN_TOPIC_OR_PARTITION
    100, // UNKNOWN_TOPIC_ID
    121, // INVALID_RECORD_STATE
    2,   // CORRUPT_MESSAGE
    29,  // TOPIC_AUTHORIZATION_FAILED
    -1,  // UNKNOWN_SERVER_ERROR
];

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// Where each partition is led from: broker 1 or 2, or no leader.
fn view(input: &mut Input<'_>) -> MetadataView {
    let mut v = MetadataView::default();
    for p in 0..PARTITIONS {
        let leader = match input.u8() % 4 {
            0 => None,
            1 | 2 => Some(1),
            _ => Some(2),
        };
        v.partitions.insert(
            tp(p),
            PartitionInfo {
                leader: LeaderAndEpoch {
                    leader,
                    epoch: Some(0),
                },
                topic_id: (!input.u8().is_multiple_of(8)).then_some(TOPIC_ID),
            },
        );
    }
    v
}

fn uuid<U: std::str::FromStr + Default>(id: TopicId) -> U {
    let text: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    text.parse().unwrap_or_default()
}

/// Record batches with records at offsets from `base`, `count` of them (and a gap of `gap`
/// between two batches).
fn records(base: i64, count: u8, gap: i64) -> bytes::Bytes {
    let mut all = BytesMut::new();
    let first = i64::from(count / 2);
    for (start, n) in [
        (base, first),
        (base + first + gap, i64::from(count) - first),
    ] {
        if n <= 0 {
            continue;
        }
        let mut b = RecordBatchBuilder::new(start);
        for i in 0..n {
            b.record(1_000 + i, None, Some(b"v"));
        }
        if let Ok(batch) = b.build() {
            all.extend_from_slice(&batch);
        }
    }
    all.freeze()
}

fn fetch_answer(input: &mut Input<'_>, asked: &[TopicPartition]) -> ShareAnswer {
    let mut r = ShareFetchResponse::default();
    r.error_code = input.pick(TOP_ERRORS);
    r.acquisition_lock_timeout_ms = i32::from(input.u16());
    let mut t = ShareFetchableTopicResponse::default();
    t.topic_id = uuid(if input.u8().is_multiple_of(16) {
        TopicId([9; 16])
    } else {
        TOPIC_ID
    });
    let parts = usize::from(input.u8() % 4);
    for _ in 0..parts {
        let mut d = PartitionData::default();
        d.partition_index = match asked.get(usize::from(input.u8()) % asked.len().max(1)) {
            Some(p) if !input.u8().is_multiple_of(8) => p.partition,
            _ => i32::from(input.u8() % 5),
        };
        d.error_code = input.pick(PARTITION_ERRORS);
        if d.error_code == 6 {
            // The current leader a leader error may name: none, broker 1 or 2, at epoch 0 to 3.
            let b = input.u8();
            d.current_leader.leader_id = match b % 3 {
                0 => -1,
                n => i32::from(n),
            };
            d.current_leader.leader_epoch = i32::from(b / 3 % 4);
        }
        d.acknowledge_error_code = input.pick(PARTITION_ERRORS);
        let base = i64::from(input.u8() % 32);
        let count = input.u8() % 12;
        let gap = i64::from(input.u8() % 4);
        d.records = Some(records(base, count, gap));
        let ranges = usize::from(input.u8() % 4);
        for _ in 0..ranges {
            let mut a = AcquiredRecords::default();
            let (first, last) = match input.u8() % 8 {
                0 => (i64::from(input.u8()), i64::MAX),
                1 => (-i64::from(input.u8()), i64::from(input.u8())),
                2 => (i64::from(input.u8()), i64::from(input.u8()) - 16),
                _ => {
                    let first = base + input.delta();
                    (first, first + i64::from(input.u8() % 16))
                }
            };
            a.first_offset = first;
            a.last_offset = last;
            a.delivery_count = i16::from(input.u8() % 8) - 1;
            d.acquired_records.push(a);
        }
        t.partitions.push(d);
    }
    r.responses = vec![t];
    ShareAnswer::Fetch(Box::new(r))
}

fn acknowledge_answer(input: &mut Input<'_>, asked: &[TopicPartition]) -> ShareAnswer {
    let mut r = ShareAcknowledgeResponse::default();
    r.error_code = input.pick(TOP_ERRORS);
    let mut t = ShareAcknowledgeTopicResponse::default();
    t.topic_id = uuid(TOPIC_ID);
    for p in asked {
        if input.u8().is_multiple_of(8) {
            continue;
        }
        let mut d = AckPartition::default();
        d.partition_index = p.partition;
        d.error_code = input.pick(PARTITION_ERRORS);
        t.partitions.push(d);
    }
    r.responses = vec![t];
    ShareAnswer::Acknowledge(Box::new(r))
}

/// The application's side, and what the target checks across ops.
#[derive(Default)]
struct App {
    /// Records handed out and not acknowledged: (partition, offset) to delivery count.
    held: BTreeMap<(i32, i64), u16>,
    /// Batches read.
    batches: u64,
    /// Commits asked for and not told done, in order.
    commits: VecDeque<u64>,
    /// Commits told done.
    committed: u64,
    closing: bool,
    closed: bool,
}

/// One request in flight: its id, broker (None for metadata) and the partitions it names.
struct Pending {
    id: RequestId,
    broker: Option<i32>,
    kind: u8,
    partitions: Vec<TopicPartition>,
}

fn check_request(out: &ShareOutgoing, in_flight: &HashMap<i32, usize>) -> Pending {
    match &out.request {
        ShareRequest::Fetch { broker, fetch } => {
            assert!(
                !in_flight.contains_key(broker),
                "a second request to broker {broker} while one is in flight"
            );
            if fetch.epoch == 0 {
                assert!(
                    fetch
                        .partitions
                        .iter()
                        .all(|p| p.acknowledgements.is_empty()),
                    "a session-opening ShareFetch carries acknowledgements: {fetch:?}"
                );
            }
            for p in &fetch.partitions {
                check_ranges(&p.acknowledgements);
                assert!(
                    p.acknowledgements
                        .iter()
                        .all(|r| r.kind != AcknowledgeType::Renew),
                    "a ShareFetch carries a renewal: {fetch:?}"
                );
            }
            Pending {
                id: out.id,
                broker: Some(*broker),
                kind: 0,
                partitions: fetch
                    .partitions
                    .iter()
                    .map(|p| p.partition.clone())
                    .collect(),
            }
        }
        ShareRequest::Acknowledge {
            broker,
            acknowledge,
        } => {
            assert!(
                !in_flight.contains_key(broker),
                "a second request to broker {broker} while one is in flight"
            );
            assert_ne!(
                acknowledge.epoch, 0,
                "a ShareAcknowledge cannot open a session"
            );
            for p in &acknowledge.partitions {
                check_ranges(&p.acknowledgements);
                assert!(
                    p.acknowledgements
                        .iter()
                        .all(|r| (r.kind == AcknowledgeType::Renew) == acknowledge.renew),
                    "renewals and other acknowledgements in one ShareAcknowledge, or a \
                     renewal not flagged: {acknowledge:?}"
                );
                assert!(
                    !acknowledge.renew || acknowledge.epoch > 0,
                    "renewals on a closing ShareAcknowledge"
                );
            }
            Pending {
                id: out.id,
                broker: Some(*broker),
                kind: 1,
                partitions: acknowledge
                    .partitions
                    .iter()
                    .map(|p| p.partition.clone())
                    .collect(),
            }
        }
        ShareRequest::Metadata { .. } => Pending {
            id: out.id,
            broker: None,
            kind: 2,
            partitions: Vec::new(),
        },
        other => panic!("a request of a kind the machine does not send: {other:?}"),
    }
}

fn check_ranges(ranges: &[kcon_fetch::share::AcknowledgementRange]) {
    let mut next = i64::MIN;
    for r in ranges {
        assert!(r.first <= r.last, "an empty range: {ranges:?}");
        assert!(r.first >= next, "ranges overlap or go back: {ranges:?}");
        next = r.last.saturating_add(1);
    }
}

/// What a run came to, for the seeds' checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ran {
    /// Batches of records handed out.
    pub batches: u64,
    /// Commits told done.
    pub committed: u64,
    /// Whether the machine told `Closed`.
    pub closed: bool,
}

/// Runs the machine over `data` (the target's body).
pub fn run(data: &[u8]) -> Ran {
    let mut input = Input { data, pos: 0 };
    let now = Instant::now();
    let mut config = FetchConfig::default();
    config.max_poll_records = i32::from(input.u8() % 8) + 1;
    let mut h = Harness::new(ShareFetchMachine::new(config, "g", "m", 1), now);
    let mut app = App::default();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut in_flight: HashMap<i32, usize> = HashMap::new();
    let mut next_commit = 0u64;
    while let Some(op) = input.next() {
        match op % 12 {
            0..=2 => {
                if let Some(p) = pending.pop_front() {
                    if let Some(b) = p.broker {
                        in_flight.remove(&b);
                    }
                    let answer = match p.kind {
                        0 => fetch_answer(&mut input, &p.partitions),
                        1 => acknowledge_answer(&mut input, &p.partitions),
                        _ => ShareAnswer::Metadata(view(&mut input)),
                    };
                    h.answer(p.id, answer);
                }
            }
            3 => {
                if let Some(p) = pending.pop_front() {
                    if let Some(b) = p.broker {
                        in_flight.remove(&b);
                    }
                    let failure = if input.bool() {
                        RequestFailure::retriable("connection reset")
                    } else {
                        RequestFailure::fatal("broker 1 does not offer ShareFetch")
                    };
                    h.fail(p.id, failure);
                }
            }
            4 => {
                let step = Duration::from_millis(u64::from(input.u16()) * 4);
                h.now += step;
                let now = h.now;
                h.machine.handle_timeout(now);
            }
            5 => {
                let bits = input.u8();
                let set: BTreeSet<TopicPartition> = (0..PARTITIONS)
                    .filter(|p| bits & (1 << p) != 0)
                    .map(tp)
                    .collect();
                h.machine.assign(h.now, set);
            }
            6 => {
                let seen = if input.u8().is_multiple_of(4) {
                    app.batches.saturating_sub(1)
                } else {
                    app.batches
                };
                h.machine.want_records(h.now, seen);
            }
            7 => {
                let p = i32::from(input.u8()) % PARTITIONS;
                let first = i64::from(input.u8() % 40);
                let last = first + i64::from(input.u8() % 8) - 1;
                let kind = input.pick(&[
                    AcknowledgeType::Accept,
                    AcknowledgeType::Release,
                    AcknowledgeType::Reject,
                    AcknowledgeType::Renew,
                ]);
                // A renewed record stays held.
                if kind != AcknowledgeType::Renew {
                    for o in first..=last {
                        app.held.remove(&(p, o));
                    }
                }
                h.machine.acknowledge(h.now, &tp(p), first, last, kind);
            }
            8 => {
                for ((p, o), _) in std::mem::take(&mut app.held) {
                    h.machine
                        .acknowledge(h.now, &tp(p), o, o, AcknowledgeType::Accept);
                }
            }
            9 => {
                let id = h.machine.commit(h.now);
                assert_eq!(id, next_commit, "commits numbered in order");
                next_commit += 1;
                app.commits.push_back(id);
            }
            10 => {
                app.closing = true;
                h.machine.close(h.now);
            }
            _ => {
                let v = view(&mut input);
                h.machine.metadata_updated(h.now, &v);
            }
        }
        drain(&mut h, &mut app, &mut pending, &mut in_flight);
    }
    Ran {
        batches: app.batches,
        committed: app.committed,
        closed: app.closed,
    }
}

fn drain(
    h: &mut Harness<ShareFetchMachine>,
    app: &mut App,
    pending: &mut VecDeque<Pending>,
    in_flight: &mut HashMap<i32, usize>,
) {
    let mut n = 0;
    while let Some(out) = next_output(h, &mut n, MAX_PER_OP) {
        match out {
            Output::Request(r) => {
                assert!(!app.closed, "a request after Closed: {r:?}");
                let p = check_request(&r, in_flight);
                if let Some(b) = p.broker {
                    in_flight.insert(b, 1);
                }
                pending.push_back(p);
            }
            Output::Event(ShareEvent::Records { records, .. }) => {
                app.batches += 1;
                for r in records {
                    let count = r.delivery_count.expect("a delivery count");
                    if let Some(before) = app.held.insert((r.partition, r.offset), count) {
                        assert!(
                            count > before,
                            "{}@{} handed out again at delivery count {count} while held at {before}",
                            r.partition,
                            r.offset
                        );
                    }
                }
            }
            Output::Event(ShareEvent::Committed(id)) => {
                // One event tells every commit up to its own done, in the order asked.
                assert!(
                    app.commits.contains(&id),
                    "commit {id} told done twice or unasked"
                );
                while let Some(c) = app.commits.pop_front() {
                    app.committed += 1;
                    if c == id {
                        break;
                    }
                }
            }
            Output::Event(ShareEvent::Closed) => {
                assert!(app.closing, "Closed without a close");
                assert!(!app.closed, "Closed twice");
                app.closed = true;
            }
            Output::Event(_) => {}
        }
    }
}

/// Hand-made seeds for `corpus/share_machine/`, each checked here to hand out records;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // A metadata update (both partitions led by broker 1, ids known), assign {0, 1}, want,
    // answer the opening fetch with 4 records at 0..3 acquired at count 1, accept them all,
    // want, answer, commit, answer, close, answer.
    let meta = [11, 1, 1, 1, 1, 1, 1];
    let mut opened = vec![5, 0b011, 6, 1];
    // The fetch's answer: no top error, lock 0 0, topic id kept (1), one partition, asked[0]
    // kept (0, 1), errors 0 0, base 0, count 4, gap 0, one range (3: first = base + delta(8) =
    // 0, last = 0 + 3), count 2 → delivery count 1.
    opened.extend([0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 4, 0, 1, 3, 8, 3, 2]);
    let mut basic: Vec<u8> = vec![3];
    basic.extend(meta);
    basic.extend(&opened);
    // Accept them, commit and close at once; then answers made of zeros (no error, nothing
    // acquired) until the commit is done and the session closed.
    basic.extend([8, 9, 10]);
    basic.extend([0; 48]);
    let mut faults = vec![2];
    faults.extend(meta);
    faults.extend(&opened);
    // A request-level SHARE_SESSION_NOT_FOUND, time, a failure, time, a leader error.
    faults.extend([
        6, 1, 0, 8, 4, 100, 0, 3, 1, 4, 100, 0, 6, 1, 0, 0, 0, 0, 1, 1, 0, 1, 8,
    ]);
    vec![("accept-commit-close", basic), ("session-faults", faults)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_hands_out_records() {
        for (name, data) in seeds() {
            let ran = run(&data);
            assert!(ran.batches >= 1, "{name}: {ran:?}");
            if name == "accept-commit-close" {
                assert!(ran.committed == 1 && ran.closed, "{name}: {ran:?}");
            }
        }
    }

    /// Inputs that once failed: a broker acquiring again an offset the application held, with
    /// no record for it, had the machine settle it as a gap and hand it out again.
    #[test]
    fn regressions_pass() {
        let found = crate::corpus::regressions("share_machine");
        assert!(!found.is_empty());
        for (name, data) in found {
            let ran = std::panic::catch_unwind(|| run(&data));
            assert!(ran.is_ok(), "{name}");
        }
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("share_machine", seeds());
    }
}
