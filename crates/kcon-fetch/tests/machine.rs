//! Simulation of the fetch loop: a `FetchMachine` on a virtual clock, with scripted answers
//! (layer 2 of the tests in DESIGN.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
use kcon_core::{Machine, RequestFailure, ResetPolicy, TopicPartition};
use kcon_fetch::position::{FetchStatus, LeaderAndEpoch, PartitionError};
use kcon_fetch::{
    BrokerInfo, FetchAnswer, FetchConfig, FetchEvent, FetchMachine, FetchRequest, MetadataView,
    Outgoing, PartitionInfo, RequestKind, StartPosition,
};

const TOPIC: &str = "t";

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// `n` records from `base`, values `v{offset}`, in one batch of leader epoch `epoch`.
fn batch(base: i64, n: usize, epoch: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new(base).partition_leader_epoch(epoch);
    for i in 0..n {
        let v = format!("v{}", base + i as i64);
        b.record(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()));
    }
    b.build().expect("a batch")
}

/// The fetch machine on the shared harness, with this file's setup and helpers.
struct Sim(Harness<FetchMachine>);

impl std::ops::Deref for Sim {
    type Target = Harness<FetchMachine>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// An event that brings no records, only where a partition's log ends and its position.
fn is_end(e: &FetchEvent) -> bool {
    matches!(e, FetchEvent::Records(r) if r.records.is_empty() && r.is_empty() && r.bytes == 0)
}

impl Sim {
    /// Partitions 0 and 1 of `t` led by broker 1 at epoch 5, assigned at `start`, the metadata
    /// and broker versions answered: ready to fetch.
    fn new(config: FetchConfig, start: StartPosition) -> Sim {
        let now = Instant::now();
        let mut sim = Sim(Harness::new(FetchMachine::new(config, now, 7), now));
        sim.machine.assign(now, [(tp(0), start), (tp(1), start)]);
        let out = sim.requests();
        let md = out
            .iter()
            .find(|o| matches!(o.request, FetchRequest::Metadata { .. }))
            .expect("a metadata request");
        let view = view(&[(0, 1, 5), (1, 1, 5)]);
        sim.0.answer(md.id, FetchAnswer::Metadata(view));
        sim
    }

    /// [`Sim::new`] at offset 0 with partition 1 led by broker 2: each broker leads one.
    fn on_two_brokers() -> Sim {
        let mut sim = Sim::new(config(&[]), committed(0));
        sim.0
            .machine
            .metadata_updated(sim.0.now, &view(&[(0, 1, 5), (1, 2, 5)]));
        sim
    }

    /// The events, records decoded; those telling only where a log ends are left out (see
    /// [`Sim::all_events`]).
    fn events(&mut self) -> Vec<FetchEvent> {
        self.all_events()
            .into_iter()
            .filter(|e| !is_end(e))
            .collect()
    }

    /// Every event, records decoded, those telling where a log ends too.
    fn all_events(&mut self) -> Vec<FetchEvent> {
        self.0
            .events()
            .into_iter()
            .map(|e| match e {
                FetchEvent::Records(r) => FetchEvent::Records(r.decoded()),
                e => e,
            })
            .collect()
    }

    /// The next event that is not only where a log ends.
    fn poll_records(&mut self) -> Option<FetchEvent> {
        loop {
            match self.machine.poll_event() {
                Some(e) if is_end(&e) => continue,
                e => return e,
            }
        }
    }

    /// The one Fetch among the next requests.
    fn fetch(&mut self) -> Outgoing {
        let mut fetches: Vec<Outgoing> = self
            .requests()
            .into_iter()
            .filter(|o| matches!(o.request, FetchRequest::Fetch { .. }))
            .collect();
        assert_eq!(fetches.len(), 1, "{fetches:?}");
        fetches.remove(0)
    }

    /// `request` answered with the Fetch response `r`.
    fn answer(&mut self, request: &Outgoing, r: FetchResponse) {
        self.0.answer(request.id, FetchAnswer::Fetch(Box::new(r)));
    }
}

fn view(partitions: &[(i32, i32, i32)]) -> MetadataView {
    let mut v = MetadataView::default();
    for &(p, leader, epoch) in partitions {
        v.partitions.insert(
            tp(p),
            PartitionInfo {
                leader: LeaderAndEpoch::new(leader, epoch),
                topic_id: None,
            },
        );
        v.brokers.insert(
            leader,
            BrokerInfo {
                id: leader,
                fetch_version: 12,
                can_validate: true,
            },
        );
    }
    v
}

fn session_of(o: &Outgoing) -> &kcon_fetch::SessionRequest {
    match &o.request {
        FetchRequest::Fetch { session, .. } => session,
        other => panic!("not a Fetch: {other:?}"),
    }
}

fn offsets_of(o: &Outgoing) -> BTreeMap<i32, i64> {
    session_of(o)
        .partitions
        .iter()
        .map(|(tp, p)| (tp.partition, p.fetch_offset))
        .collect()
}

/// An answer in session `session_id` with these partitions: (partition, error, records).
fn response(session_id: i32, parts: Vec<(i32, i16, Option<Bytes>)>) -> FetchResponse {
    let mut t = FetchableTopicResponse::default();
    t.topic = TopicName(StrBytes::from_static_str(TOPIC));
    for (p, error_code, records) in parts {
        let mut d = PartitionData::default();
        d.partition_index = p;
        d.error_code = error_code;
        d.high_watermark = 100;
        d.records = records;
        t.partitions.push(d);
    }
    let mut r = FetchResponse::default();
    r.session_id = session_id;
    r.responses.push(t);
    r
}

fn committed(offset: i64) -> StartPosition {
    StartPosition::Committed {
        offset,
        leader_epoch: None,
    }
}

/// Past the longest first retry wait at the default `retry.backoff.ms` (100 ms, plus KIP-580's
/// jitter of up to 20 %).
const BACKOFF_PASSED: Duration = Duration::from_millis(120);

fn config(extra: &[(&str, &str)]) -> FetchConfig {
    let mut c = FetchConfig::default();
    c.set("auto.offset.reset", "earliest").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

#[test]
fn the_first_fetch_is_full_then_incremental_and_records_are_slices_of_the_answer() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    let s = session_of(&first);
    assert_eq!((s.kind, s.session_id, s.epoch), (RequestKind::Full, 0, 0));
    assert_eq!(offsets_of(&first), BTreeMap::from([(0, 0), (1, 0)]));

    let data = batch(0, 3, 5);
    sim.answer(
        &first,
        response(7, vec![(0, 0, Some(data.clone())), (1, 0, None)]),
    );
    let events = sim.events();
    let [FetchEvent::Records(r)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(r.partition, tp(0));
    assert_eq!(r.next_offset, 3);
    let offsets: Vec<i64> = r.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
    assert_eq!(r.records[1].value.as_deref(), Some(&b"v1"[..]));
    assert_eq!(r.records[1].leader_epoch, Some(5));
    // Zero-copy: the value points into the answer's buffer.
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    let value = r.records[1].value.as_ref().unwrap();
    assert!(range.contains(&(value.as_ptr() as usize)));
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        3
    );

    // Partition 0 holds records the application has not taken: it leaves the session (the
    // Java client's rule: a partition with buffered data is not fetched).
    let second = sim.fetch();
    let s = session_of(&second);
    assert_eq!(
        (s.kind, s.session_id, s.epoch),
        (RequestKind::Incremental, 7, 1)
    );
    assert!(s.partitions.is_empty(), "{s:?}");
    assert_eq!(s.forgotten.len(), 1);
    assert_eq!(s.forgotten[0].partition, tp(0));
    sim.answer(&second, response(7, vec![]));
    sim.machine.records_consumed(&tp(0), r.size);

    // Taken: it rejoins at its new offset.
    let third = sim.fetch();
    let s = session_of(&third);
    assert_eq!((s.kind, s.epoch), (RequestKind::Incremental, 2));
    assert_eq!(offsets_of(&third), BTreeMap::from([(0, 3)]));
}

#[test]
fn a_paused_partition_is_forgotten_and_a_resumed_one_returns() {
    let mut sim = Sim::new(config(&[]), committed(4));
    let first = sim.fetch();
    sim.answer(&first, response(9, vec![]));
    sim.machine.pause(&tp(1));
    let second = sim.fetch();
    let s = session_of(&second);
    assert_eq!(s.kind, RequestKind::Incremental);
    assert_eq!(s.forgotten.len(), 1);
    assert_eq!(s.forgotten[0].partition, tp(1));
    sim.answer(&second, response(9, vec![]));
    sim.machine.resume(&tp(1));
    let third = sim.fetch();
    assert_eq!(offsets_of(&third), BTreeMap::from([(1, 4)]));
    assert!(session_of(&third).forgotten.is_empty());
}

#[test]
fn one_fetch_per_broker_and_brokers_in_parallel() {
    let mut sim = Sim::on_two_brokers();
    let out = sim.requests();
    let brokers: Vec<i32> = out
        .iter()
        .filter_map(|o| match o.request {
            FetchRequest::Fetch { broker, .. } => Some(broker),
            _ => None,
        })
        .collect();
    assert_eq!(brokers, [1, 2]);
    assert!(
        sim.requests().is_empty(),
        "a second Fetch while one is in flight"
    );
}

#[test]
fn session_errors_start_a_full_fetch() {
    for (code, close) in [(70i16, 0), (71, 7), (106, 7)] {
        let mut sim = Sim::new(config(&[]), committed(0));
        let first = sim.fetch();
        sim.answer(&first, response(7, vec![]));
        let second = sim.fetch();
        let mut r = response(0, vec![]);
        r.error_code = code;
        sim.answer(&second, r);
        if code == 106 {
            // FETCH_SESSION_TOPIC_ID_ERROR: metadata first, and the broker backs off.
            let out = sim.requests();
            assert!(
                out.iter()
                    .any(|o| matches!(o.request, FetchRequest::Metadata { .. })),
                "{out:?}"
            );
            sim.advance(BACKOFF_PASSED);
        }
        let third = sim.fetch();
        let s = session_of(&third);
        assert_eq!(
            (s.kind, s.session_id, s.epoch),
            (RequestKind::Full, close, 0),
            "error {code}"
        );
        assert_eq!(s.partitions.len(), 2);
    }
}

#[test]
fn a_transport_failure_resets_the_session_and_backs_the_broker_off() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(7, vec![]));
    let second = sim.fetch();
    sim.0.machine.handle_response(
        sim.0.now,
        second.id,
        Err(RequestFailure::retriable("connection lost")),
    );
    // Nothing to the broker during the backoff but learning its versions again.
    let out = sim.requests();
    assert!(
        !out.iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "{out:?}"
    );
    sim.advance(BACKOFF_PASSED);
    let out = sim.requests();
    let connect = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::Connect { broker: 1 }))
        .expect("a Connect");
    let info = BrokerInfo {
        id: 1,
        fetch_version: 12,
        can_validate: true,
    };
    sim.0
        .machine
        .handle_response(sim.0.now, connect.id, Ok(FetchAnswer::Broker(info)));
    let third = sim.fetch();
    let s = session_of(&third);
    assert_eq!((s.kind, s.session_id, s.epoch), (RequestKind::Full, 7, 0));
}

/// Every per-partition error: what follows it.
#[test]
fn every_partition_error_has_its_consequence() {
    // (code, metadata refresh, reset lookup, reported)
    let table: &[(i16, bool, bool, bool)] = &[
        (6, true, false, false),   // NOT_LEADER_OR_FOLLOWER
        (74, true, false, false),  // FENCED_LEADER_EPOCH
        (75, true, false, false),  // UNKNOWN_LEADER_EPOCH
        (9, true, false, false),   // REPLICA_NOT_AVAILABLE
        (56, true, false, false),  // KAFKA_STORAGE_ERROR
        (78, true, false, false),  // OFFSET_NOT_AVAILABLE
        (3, true, false, false),   // UNKNOWN_TOPIC_OR_PARTITION
        (100, true, false, false), // UNKNOWN_TOPIC_ID
        (103, true, false, false), // INCONSISTENT_TOPIC_ID
        (1, false, true, false),   // OFFSET_OUT_OF_RANGE, earliest
        (2, false, false, true),   // CORRUPT_MESSAGE
        (29, false, false, true),  // TOPIC_AUTHORIZATION_FAILED
        (-1, false, false, false), // UNKNOWN_SERVER_ERROR
        (87, false, false, true),  // another code
    ];
    for &(code, refresh, reset, reported) in table {
        let mut sim = Sim::new(config(&[]), committed(5));
        let first = sim.fetch();
        sim.answer(&first, response(0, vec![(0, code, None), (1, 0, None)]));
        let out = sim.requests();
        let has = |f: &dyn Fn(&FetchRequest) -> bool| out.iter().any(|o| f(&o.request));
        assert_eq!(
            has(&|r| matches!(r, FetchRequest::Metadata { .. })),
            refresh,
            "code {code}: {out:?}"
        );
        assert_eq!(
            has(
                &|r| matches!(r, FetchRequest::ListOffsets { partitions, .. }
                    if partitions.iter().map(|(tp, _)| tp).eq([&tp(0)]))
            ),
            reset,
            "code {code}: {out:?}"
        );
        // The erring partition is not fetched again at once (backoff or reset), the other is.
        for o in &out {
            if let FetchRequest::Fetch { .. } = o.request {
                assert!(!offsets_of(o).contains_key(&0), "code {code}: {o:?}");
            }
        }
        let events = sim.events();
        assert_eq!(
            events.iter().any(
                |e| matches!(e, FetchEvent::PartitionError { partition, .. } if *partition == tp(0))
            ),
            reported,
            "code {code}: {events:?}"
        );
    }
}

#[test]
fn offset_out_of_range_under_none_is_an_error_and_a_reset_moves_the_position() {
    let mut sim = Sim::new(config(&[("auto.offset.reset", "none")]), committed(5));
    let first = sim.fetch();
    sim.answer(&first, response(0, vec![(0, 1, None)]));
    let events = sim.events();
    assert!(
        matches!(
            events.as_slice(),
            [FetchEvent::PartitionError {
                error: PartitionError::OffsetOutOfRange { offset: 5 },
                ..
            }]
        ),
        "{events:?}"
    );

    let mut sim = Sim::new(config(&[]), committed(5));
    let first = sim.fetch();
    sim.answer(&first, response(0, vec![(0, 1, None)]));
    let out = sim.requests();
    let lo = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::ListOffsets { .. }))
        .expect("ListOffsets");
    let answer = BTreeMap::from([(
        tp(0),
        ListedOffset {
            error_code: 0,
            offset: 2,
            timestamp: -1,
            leader_epoch: Some(5),
        },
    )]);
    sim.0
        .machine
        .handle_response(sim.0.now, lo.id, Ok(FetchAnswer::ListOffsets(answer)));
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [FetchEvent::Reset { offset: 2, .. }]),
        "{events:?}"
    );
    // The reset position has an epoch: it is validated against the leader first (KIP-320).
    let out = sim.requests();
    assert!(
        out.iter()
            .any(|o| matches!(o.request, FetchRequest::Validate(_))),
        "{out:?}"
    );
}

#[test]
fn a_corrupt_batch_delivers_what_came_before_and_reports_its_offset() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    let good = batch(0, 3, 5);
    let mut bad = batch(3, 2, 5).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // breaks the CRC
    let mut both = good.to_vec();
    both.extend_from_slice(&bad);
    sim.answer(&first, response(0, vec![(0, 0, Some(Bytes::from(both)))]));
    let events = sim.events();
    assert!(
        matches!(
            events.as_slice(),
            [
                FetchEvent::Records(r),
                FetchEvent::PartitionError {
                    error: PartitionError::Corrupt { offset: 3 },
                    ..
                }
            ] if r.records.len() == 3 && r.next_offset == 3
        ),
        "{events:?}"
    );
    let state = sim.machine.partition(&tp(0)).unwrap();
    assert_eq!(state.position().unwrap().offset, 3, "no advance past it");
    // Fetched again from the bad batch once the backoff passed and the records were taken.
    let FetchEvent::Records(r) = &events[0] else {
        unreachable!()
    };
    sim.machine.records_consumed(&tp(0), r.size);
    sim.advance(BACKOFF_PASSED);
    let next = sim.fetch();
    assert_eq!(offsets_of(&next).get(&0), Some(&3));
    // The same bad batch again: the application was told already, and is not told after every
    // backoff; the partition stays at its offset.
    sim.answer(
        &next,
        response(0, vec![(0, 0, Some(Bytes::from(bad.clone())))]),
    );
    assert_eq!(sim.events(), []);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        3
    );
    // A seek back to it is a new finding.
    sim.machine.seek(&tp(0), 3, None);
    sim.advance(BACKOFF_PASSED);
    let again = sim.fetch();
    sim.answer(&again, response(0, vec![(0, 0, Some(Bytes::from(bad)))]));
    assert!(
        matches!(
            sim.events().as_slice(),
            [FetchEvent::PartitionError {
                error: PartitionError::Corrupt { offset: 3 },
                ..
            }]
        ),
        "told again after a seek"
    );
}

/// `n` records from `base` in one lz4 batch of epoch `epoch` whose payload is cut short, the
/// CRC computed over what is left: it holds, the payload does not decompress.
fn compressed_cut(base: i64, n: usize, epoch: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new(base)
        .partition_leader_epoch(epoch)
        .compression(Compression::Lz4);
    for i in 0..n {
        let v = format!("v{}", base + i as i64);
        b.record(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()));
    }
    let mut b = b.build().expect("a batch").to_vec();
    b.truncate(b.len() - 5);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

#[test]
fn a_corrupt_record_found_when_handed_out_moves_the_position_back_to_it_and_is_told_once() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    let mut answer = batch(0, 3, 5).to_vec();
    answer.extend_from_slice(&compressed_cut(3, 2, 5));
    answer.extend_from_slice(&batch(5, 2, 5));
    let answer = Bytes::from(answer);
    sim.answer(&first, response(0, vec![(0, 0, Some(answer.clone()))]));
    // Nothing looks wrong when the answer comes: the CRCs hold, the payload is not read.
    let Some(FetchEvent::Records(mut r)) = sim.poll_records() else {
        panic!("records")
    };
    assert_eq!((r.next_offset, r.size), (7, answer.len()));
    assert_eq!(sim.poll_records(), None);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        7
    );

    // Handed out: the records before the bad batch, then the end.
    let part = r.take(500);
    assert!(r.is_empty());
    let offsets: Vec<i64> = part.records.iter().map(|r| r.offset).collect();
    assert_eq!((offsets, part.next_offset), (vec![0, 1, 2], 3));
    let corrupt = *part.corrupt().expect("found when handed out");
    sim.0
        .machine
        .records_corrupt(sim.0.now, &tp(0), &corrupt, part.size);
    let state = sim.machine.partition(&tp(0)).unwrap();
    let position = state.position().unwrap();
    assert_eq!(
        (position.offset, position.offset_epoch),
        (3, Some(5)),
        "back to it"
    );
    assert_eq!(
        sim.events(),
        [FetchEvent::PartitionError {
            partition: tp(0),
            error: PartitionError::Corrupt { offset: 3 },
        }]
    );
    assert_eq!(
        sim.machine.budget().buffered(),
        0,
        "the answer's bytes left the budget"
    );

    // Fetched again from it once the backoff passed; the same finding is not told again.
    // Partition 1 alone goes out meanwhile.
    let other = sim.fetch();
    assert_eq!(offsets_of(&other), BTreeMap::from([(1, 0)]));
    sim.answer(&other, response(0, vec![(1, 0, None)]));
    sim.advance(BACKOFF_PASSED);
    let again = sim.fetch();
    assert_eq!(offsets_of(&again).get(&0), Some(&3));
    let bad = compressed_cut(3, 2, 5);
    sim.answer(&again, response(0, vec![(0, 0, Some(bad.clone()))]));
    let Some(FetchEvent::Records(mut r)) = sim.poll_records() else {
        panic!("records")
    };
    let part = r.take(500);
    assert!(part.records.is_empty());
    let corrupt = *part.corrupt().expect("found again");
    assert_eq!(corrupt.offset, 3);
    sim.0
        .machine
        .records_corrupt(sim.0.now, &tp(0), &corrupt, part.size);
    assert_eq!(sim.events(), []);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        3
    );

    // A finding for records a seek made stale moves nothing.
    sim.machine.seek(&tp(0), 1, None);
    sim.0
        .machine
        .records_corrupt(sim.0.now, &tp(0), &corrupt, 0);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        1
    );
    assert_eq!(sim.events(), []);
}

#[test]
fn records_of_a_paused_partition_are_held_back_until_it_resumes() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(
        &first,
        response(
            0,
            vec![(0, 0, Some(batch(0, 2, 5))), (1, 0, Some(batch(0, 3, 5)))],
        ),
    );
    sim.machine.pause(&tp(0));
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [FetchEvent::Records(r)] if r.partition == tp(1)),
        "{events:?}"
    );
    // The application stands where the held records begin; the next Fetch would start past
    // them, as they were accepted.
    assert_eq!(sim.machine.delivered_position(&tp(0)).unwrap().offset, 0);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        2
    );
    sim.machine.resume(&tp(0));
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [FetchEvent::Records(r)] if r.partition == tp(0) && r.next_offset == 2),
        "{events:?}"
    );
    assert_eq!(sim.machine.delivered_position(&tp(0)).unwrap().offset, 2);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        2
    );
}

/// A partition's backoff is the next timer as soon as the partition backs off, stays it
/// through inputs that change no partition (records handed out, time passing), and is gone
/// once it has passed and the partition is fetched again.
#[test]
fn a_partitions_backoff_is_the_next_timer_until_it_passes() {
    let mut sim = Sim::new(config(&[]), committed(0));
    assert_eq!(sim.machine.poll_timeout(), None, "nothing backs off yet");
    let first = sim.fetch();
    // UNKNOWN_SERVER_ERROR for partition 0: it backs off; partition 1 has records.
    sim.answer(
        &first,
        response(0, vec![(0, -1, None), (1, 0, Some(batch(0, 10, 5)))]),
    );
    let at = sim.machine.poll_timeout().expect("partition 0's backoff");
    assert!(at > sim.0.now, "{at:?} ahead of {:?}", sim.0.now);
    let size = sim
        .events()
        .into_iter()
        .find_map(|e| match e {
            FetchEvent::Records(r) if r.partition == tp(1) => Some(r.size),
            _ => None,
        })
        .expect("partition 1's records");
    sim.machine.records_consumed(&tp(1), size);
    sim.0.now += (at - sim.0.now) / 2;
    let fetches = sim.requests();
    assert!(
        fetches.iter().all(|o| !offsets_of(o).contains_key(&0)),
        "partition 0 fetched in its backoff: {fetches:?}"
    );
    assert_eq!(sim.machine.poll_timeout(), Some(at), "still the next timer");
    sim.0.advance(at - sim.0.now);
    assert_eq!(sim.machine.poll_timeout(), None, "passed");
    // Partition 1's fetch answered with nothing new: the next one takes partition 0 along.
    for fetch in &fetches {
        sim.answer(fetch, response(0, vec![]));
    }
    let fetches = sim.requests();
    assert!(
        fetches.iter().any(|o| offsets_of(o).contains_key(&0)),
        "partition 0 fetched once its backoff passed: {fetches:?}"
    );
}

#[test]
fn the_budget_holds_fetches_back_until_the_application_takes_records() {
    let mut sim = Sim::new(
        config(&[
            ("fetch.max.bytes", "1000"),
            ("fetch.buffer.max.bytes", "1000"),
        ]),
        committed(0),
    );
    let first = sim.fetch();
    let FetchRequest::Fetch { params, .. } = &first.request else {
        unreachable!()
    };
    assert_eq!(params.max_bytes, 1000);
    // A first batch beyond the limit (KIP-74) fills the budget.
    let big = batch(0, 100, 5);
    assert!(big.len() > 1000);
    sim.answer(&first, response(0, vec![(0, 0, Some(big)), (1, 0, None)]));
    let events = sim.events();
    let FetchEvent::Records(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(
        !sim.requests()
            .iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "fetched beyond the budget"
    );
    sim.machine.records_consumed(&tp(0), r.size);
    let next = sim.fetch();
    assert_eq!(offsets_of(&next), BTreeMap::from([(0, 100), (1, 0)]));
}

#[test]
fn records_taken_from_a_spent_budget_let_a_drained_partition_be_fetched() {
    let mut sim = Sim::new(
        config(&[
            ("fetch.max.bytes", "1000"),
            ("fetch.buffer.max.bytes", "1000"),
        ]),
        committed(0),
    );
    let first = sim.fetch();
    let big = batch(0, 400, 5);
    assert!(big.len() > 1500);
    sim.answer(&first, response(0, vec![(0, 0, Some(big)), (1, 0, None)]));
    let events = sim.events();
    let FetchEvent::Records(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(r.size > 1500, "{}", r.size);
    assert!(
        !sim.requests()
            .iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "fetched beyond the budget"
    );
    // Part of partition 0's bytes are taken, not all: it still holds records, but the budget
    // has room again, and partition 1 has nothing buffered.
    sim.machine.records_consumed(&tp(0), r.size - 500);
    assert_eq!(sim.machine.budget().available(), 500);
    let next = sim.fetch();
    assert_eq!(offsets_of(&next), BTreeMap::from([(1, 0)]));
}

#[test]
fn a_leader_change_validates_the_position_and_a_truncation_moves_it() {
    let start = StartPosition::Committed {
        offset: 10,
        leader_epoch: Some(5),
    };
    let mut sim = Sim::new(config(&[]), start);
    // Committed with an epoch: validated against the leader before any Fetch.
    let out = sim.requests();
    assert!(
        !out.iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "{out:?}"
    );
    let v = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::Validate(_)))
        .expect("OffsetForLeaderEpoch");
    let answer = |end: i64| {
        let mut r = OffsetForLeaderEpochResponse::default();
        let mut t = OffsetForLeaderTopicResult::default();
        t.topic = TopicName(StrBytes::from_static_str(TOPIC));
        for p in 0..2 {
            let mut e = EpochEndOffset::default();
            e.partition = p;
            e.leader_epoch = 5;
            e.end_offset = end;
            t.partitions.push(e);
        }
        r.topics.push(t);
        r
    };
    sim.0.machine.handle_response(
        sim.0.now,
        v.id,
        Ok(FetchAnswer::Validation(Box::new(answer(20)))),
    );
    assert_eq!(
        sim.machine.partition(&tp(0)).unwrap().status(),
        FetchStatus::Fetching
    );
    let first = sim.fetch();
    sim.answer(&first, response(0, vec![]));

    // The leader moves to broker 2 at epoch 6, which truncated the log at 8.
    sim.0
        .machine
        .metadata_updated(sim.0.now, &view(&[(0, 2, 6), (1, 2, 6)]));
    let out = sim.requests();
    let v = out
        .iter()
        .find(|o| matches!(&o.request, FetchRequest::Validate(r) if r.broker == 2))
        .expect("OffsetForLeaderEpoch to the new leader");
    sim.0.machine.handle_response(
        sim.0.now,
        v.id,
        Ok(FetchAnswer::Validation(Box::new(answer(8)))),
    );
    let events = sim.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| matches!(
        e,
        FetchEvent::PartitionError {
            error: PartitionError::LogTruncation {
                offset: 10,
                divergent: Some((8, 5)),
                repositioned: true
            },
            ..
        }
    )));
    let next = sim.fetch();
    assert!(matches!(
        next.request,
        FetchRequest::Fetch { broker: 2, .. }
    ));
    assert_eq!(offsets_of(&next), BTreeMap::from([(0, 8), (1, 8)]));
}

/// A group's commit at 15, made in leader epoch 4, lies past the end of a log an unclean
/// election truncated at 10 (the leader is at epoch 5 now). Started from it, the partitions
/// are validated before any Fetch (Java's `seekUnvalidated` of a committed position): the
/// truncation is told once each, and fetching begins where the logs part, the records the new
/// leader wrote there coming as any others.
#[test]
fn a_commit_past_a_truncated_logs_end_is_validated_at_start_and_fetched_on_from_where_the_logs_part()
 {
    let start = StartPosition::Committed {
        offset: 15,
        leader_epoch: Some(4),
    };
    let mut sim = Sim::new(config(&[]), start);
    let out = sim.requests();
    assert!(
        !out.iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "nothing fetched from an unvalidated commit: {out:?}"
    );
    let v = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::Validate(_)))
        .expect("OffsetForLeaderEpoch");
    let FetchRequest::Validate(r) = &v.request else {
        unreachable!()
    };
    assert!(
        r.queries
            .iter()
            .all(|q| (q.position.offset, q.position.offset_epoch) == (15, Some(4))),
        "{r:?}"
    );
    let mut answer = OffsetForLeaderEpochResponse::default();
    let mut t = OffsetForLeaderTopicResult::default();
    t.topic = TopicName(StrBytes::from_static_str(TOPIC));
    for p in 0..2 {
        let mut e = EpochEndOffset::default();
        e.partition = p;
        e.leader_epoch = 4;
        e.end_offset = 10;
        t.partitions.push(e);
    }
    answer.topics.push(t);
    sim.0.machine.handle_response(
        sim.0.now,
        v.id,
        Ok(FetchAnswer::Validation(Box::new(answer))),
    );
    let events = sim.events();
    assert_eq!(events.len(), 2, "one truncation each: {events:?}");
    assert!(events.iter().all(|e| matches!(
        e,
        FetchEvent::PartitionError {
            error: PartitionError::LogTruncation {
                offset: 15,
                divergent: Some((10, 4)),
                repositioned: true
            },
            ..
        }
    )));

    let first = sim.fetch();
    assert_eq!(offsets_of(&first), BTreeMap::from([(0, 10), (1, 10)]));
    assert!(
        session_of(&first)
            .partitions
            .iter()
            .all(|(_, p)| p.last_fetched_epoch == Some(4)),
        "{first:?}"
    );
    sim.answer(&first, response(0, vec![(0, 0, Some(batch(10, 3, 5)))]));
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![10, 11, 12])]),
        "the new leader's records, and no truncation told again: {events:?}"
    );
    assert_eq!(events.len(), 1, "{events:?}");
}

/// Partition 0 read 0..10 (leader epoch 5) and is fetched from 10 with last fetched epoch 5;
/// the leader answers that its epoch 5 ends at 7 (a Fetch's `DivergingEpoch`, KIP-320, with no
/// records), as Apache Kafka does when the log it holds parts from the one the request read.
/// Returns the simulation at that point, with the answer handled.
fn answered_with_a_diverging_epoch(policy: &str) -> Sim {
    let mut sim = Sim::new(config(&[("auto.offset.reset", policy)]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(0, vec![(0, 0, Some(batch(0, 10, 5)))]));
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events)[&0],
        (0..10).collect::<Vec<_>>()
    );
    let FetchEvent::Records(r) = &events[0] else {
        unreachable!()
    };
    sim.machine.records_consumed(&tp(0), r.size);
    let next = sim.fetch();
    let p0 = session_of(&next)
        .partitions
        .iter()
        .find(|(tp, _)| tp.partition == 0)
        .map(|(_, p)| *p)
        .expect("partition 0 fetched");
    assert_eq!((p0.fetch_offset, p0.last_fetched_epoch), (10, Some(5)));
    let mut answer = response(0, vec![(0, 0, Some(Bytes::new())), (1, 0, None)]);
    let d = &mut answer.responses[0].partitions[0].diverging_epoch;
    d.epoch = 5;
    d.end_offset = 7;
    sim.answer(&next, answer);
    sim
}

/// Under a reset policy the position moves to where the logs part and the truncation is told
/// once, as validation does it; the next Fetch starts there at once and the new leader's
/// records come. Without this the partition was fetched from 10 again, answered the same,
/// forever.
#[test]
fn a_diverging_epoch_in_a_fetch_answer_moves_the_position_where_the_logs_part() {
    let mut sim = answered_with_a_diverging_epoch("earliest");
    let events = sim.events();
    assert!(
        matches!(
            events.as_slice(),
            [FetchEvent::PartitionError {
                partition,
                error: PartitionError::LogTruncation {
                    offset: 10,
                    divergent: Some((7, 5)),
                    repositioned: true
                },
            }] if partition == &tp(0)
        ),
        "{events:?}"
    );
    let next = sim.fetch();
    assert_eq!(offsets_of(&next).get(&0), Some(&7));
    sim.answer(&next, response(0, vec![(0, 0, Some(batch(7, 3, 6)))]));
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![7, 8, 9])]),
        "the new leader's records, and no truncation told again: {events:?}"
    );
    assert_eq!(events.len(), 1, "{events:?}");
}

/// Under `auto.offset.reset=none` the application gets the error and the position stays; the
/// partition is fetched again only after the backoff (and told again, until it seeks), never
/// in a tight loop.
#[test]
fn a_diverging_epoch_under_none_is_the_applications_error_and_no_tight_loop() {
    let mut sim = answered_with_a_diverging_epoch("none");
    let events = sim.events();
    assert!(
        matches!(
            events.as_slice(),
            [FetchEvent::PartitionError {
                error: PartitionError::LogTruncation {
                    offset: 10,
                    divergent: Some((7, 5)),
                    repositioned: false
                },
                ..
            }]
        ),
        "{events:?}"
    );
    let next = sim.fetch();
    assert_eq!(offsets_of(&next).get(&0), None, "backing off: {next:?}");
    sim.answer(&next, response(0, vec![]));
    sim.advance(BACKOFF_PASSED);
    let again = sim.fetch();
    assert_eq!(offsets_of(&again).get(&0), Some(&10));
}

/// The leader names a follower to read from (KIP-392): the follower is asked without the last
/// fetched epoch, which the leader is asked with. A follower lacks an epoch the leader began
/// until a record is written in it, and asked with it answers a diverging epoch at once, every
/// time: a consumer idle at the log end after a leader change spun between leader and
/// follower (1,454 Fetches in 3 s on Apache Kafka, `consumer_leader_moves_cluster`).
#[test]
fn a_read_replica_is_asked_without_the_last_fetched_epoch() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    let p0 = |o: &Outgoing| {
        session_of(o)
            .partitions
            .iter()
            .find(|(tp, _)| tp.partition == 0)
            .map(|(_, p)| (p.fetch_offset, p.last_fetched_epoch))
    };
    let mut answer = response(0, vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, None)]);
    answer.responses[0].partitions[0].preferred_read_replica = BrokerId(2);
    sim.answer(&first, answer);
    let events = sim.events();
    let FetchEvent::Records(r) = &events[0] else {
        unreachable!("{events:?}")
    };
    sim.machine.records_consumed(&tp(0), r.size);
    let mut to_follower = None;
    for _ in 0..3 {
        for o in sim.requests() {
            match &o.request {
                FetchRequest::Connect { broker: 2 } => {
                    let info = BrokerInfo {
                        id: 2,
                        fetch_version: 12,
                        can_validate: true,
                    };
                    sim.0.answer(o.id, FetchAnswer::Broker(info));
                }
                FetchRequest::Fetch { broker: 2, .. } => to_follower = Some(o),
                _ => {}
            }
        }
    }
    let to_follower = to_follower.expect("a Fetch to the follower");
    assert_eq!(p0(&to_follower), Some((3, None)), "{to_follower:?}");
}

#[test]
fn a_seek_drops_records_not_yet_handed_out() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(0, vec![(0, 0, Some(batch(0, 3, 5)))]));
    sim.machine.seek(&tp(0), 50, None);
    assert!(sim.events().is_empty());
    assert_eq!(sim.machine.budget().buffered(), 0);
    let next = sim.fetch();
    assert_eq!(offsets_of(&next).get(&0), Some(&50));
}

#[test]
fn close_sends_each_session_close_then_says_closed() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(7, vec![]));
    sim.0.machine.close(sim.0.now);
    let out = sim.requests();
    assert_eq!(out.len(), 1, "{out:?}");
    let s = session_of(&out[0]);
    assert_eq!((s.kind, s.session_id, s.epoch), (RequestKind::Close, 7, -1));
    assert!(!sim.machine.is_closed());
    sim.answer(&out[0], response(0, vec![]));
    assert!(sim.machine.is_closed());
    assert_eq!(sim.events(), [FetchEvent::Closed]);
}

/// A session close while a Fetch of the same broker is in flight (one the broker may hold for
/// `fetch.max.wait.ms`, answering a connection's requests in order) is marked to go on a
/// connection apart: the driver's count of the connection's requests would miss a Fetch whose
/// task has not written it yet, and the consumer's close then waited out the long poll.
#[test]
fn a_session_close_while_a_fetch_is_in_flight_goes_apart_from_it() {
    let apart_of = |o: &Outgoing| match &o.request {
        FetchRequest::Fetch { apart, .. } => *apart,
        other => panic!("not a Fetch: {other:?}"),
    };
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(7, vec![(0, 0, None), (1, 0, None)]));
    // Both partitions behind their high watermark: the next Fetch goes at once, unanswered.
    let in_flight = sim.fetch();
    assert_eq!(session_of(&in_flight).kind, RequestKind::Incremental);
    sim.0.machine.close(sim.0.now);
    let out = sim.requests();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(session_of(&out[0]).kind, RequestKind::Close);
    assert!(apart_of(&out[0]));

    // With nothing in flight it goes on the fetch connection.
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(&first, response(7, vec![]));
    sim.0.machine.close(sim.0.now);
    let out = sim.requests();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(!apart_of(&out[0]));
}

/// The ListOffsets among `out`: (its partitions, its policy).
fn list_offsets(out: &[Outgoing]) -> Vec<(&Outgoing, Vec<i32>, ResetPolicy)> {
    out.iter()
        .filter_map(|o| match &o.request {
            FetchRequest::ListOffsets {
                partitions, policy, ..
            } => Some((
                o,
                partitions.iter().map(|(tp, _)| tp.partition).collect(),
                *policy,
            )),
            _ => None,
        })
        .collect()
}

fn listed(offset: i64) -> ListedOffset {
    ListedOffset {
        error_code: 0,
        offset,
        timestamp: -1,
        leader_epoch: None,
    }
}

#[test]
fn by_duration_with_no_record_that_recent_resets_to_the_end() {
    // KIP-1106: a lookup by timestamp finds no record that recent (offset -1, no error); the
    // partition goes to the end of the log, it does not look the same time up forever.
    let mut sim = Sim::new(
        config(&[("auto.offset.reset", "by_duration:PT3600S")]),
        committed(0),
    );
    // (`Sim::new` drops the requests sent with the metadata: reset here instead.)
    sim.machine.reset(&tp(0));
    sim.machine.reset(&tp(1));
    let out = sim.requests();
    let lo = list_offsets(&out);
    assert_eq!(lo.len(), 1, "{out:?}");
    let (req, partitions, policy) = &lo[0];
    assert_eq!(partitions, &[0, 1]);
    assert!(matches!(policy, ResetPolicy::ByDuration(_)), "{policy:?}");
    let answer = BTreeMap::from([(tp(0), listed(-1)), (tp(1), listed(7))]);
    sim.0
        .machine
        .handle_response(sim.0.now, req.id, Ok(FetchAnswer::ListOffsets(answer)));
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [FetchEvent::Reset { partition, offset: 7, .. }] if partition == &tp(1)),
        "{events:?}"
    );

    // At once, without a backoff: `latest` for partition 0 alone (and partition 1 fetched).
    let out = sim.requests();
    let lo = list_offsets(&out);
    assert_eq!(lo.len(), 1, "{out:?}");
    let fetch = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::Fetch { .. }))
        .expect("a Fetch");
    assert_eq!(offsets_of(fetch), BTreeMap::from([(1, 7)]));
    let (req, partitions, policy) = &lo[0];
    assert_eq!(
        (partitions.as_slice(), *policy),
        (&[0][..], ResetPolicy::Latest)
    );
    let answer = BTreeMap::from([(tp(0), listed(42))]);
    sim.0
        .machine
        .handle_response(sim.0.now, req.id, Ok(FetchAnswer::ListOffsets(answer)));
    let events = sim.events();
    assert!(
        matches!(events.as_slice(), [FetchEvent::Reset { partition, offset: 42, .. }] if partition == &tp(0)),
        "{events:?}"
    );
    assert_eq!(
        sim.machine.partition(&tp(0)).unwrap().status(),
        FetchStatus::Fetching
    );
    let position = sim.machine.partition(&tp(0)).unwrap().position().unwrap();
    assert_eq!(position.offset, 42);
    // A later reset of partition 0 is by duration again.
    sim.machine.reset(&tp(0));
    let out = sim.requests();
    assert!(
        matches!(list_offsets(&out).as_slice(), [(_, p, ResetPolicy::ByDuration(_))] if p == &[0]),
        "{out:?}"
    );
}

#[test]
fn max_poll_records_is_a_positive_32_bit_count() {
    let mut c = FetchConfig::default();
    assert_eq!(c.max_poll_records, 500, "the Java default");
    c.set("max.poll.records", "1").unwrap();
    assert_eq!(c.max_poll_records, 1);
    c.set("max.poll.records", "2147483647").unwrap();
    assert_eq!(c.max_poll_records, i32::MAX);
    for bad in ["0", "-1", "2147483648", "many"] {
        let e = c.set("max.poll.records", bad).unwrap_err().to_string();
        assert!(
            e.contains("max.poll.records") && e.contains("1 to 2147483647"),
            "{bad}: {e}"
        );
    }
    assert_eq!(
        c.max_poll_records,
        i32::MAX,
        "a rejected value changes nothing"
    );
}

/// A Fetch that would carry only partitions at their high watermark waits while another
/// partition of the broker is being drained (the broker would hold it for
/// `fetch.max.wait.ms`, and the drained partition would wait behind it); the drain sends one
/// Fetch for both.
#[test]
fn a_fetch_of_caught_up_partitions_waits_while_another_is_drained() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    let mut r = response(0, vec![(0, 0, Some(batch(0, 10, 5))), (1, 0, None)]);
    r.responses[0].partitions[0].high_watermark = 10;
    r.responses[0].partitions[1].high_watermark = 0;
    sim.answer(&first, r);
    let events = sim.events();
    let FetchEvent::Records(records) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(
        !sim.requests()
            .iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "a Fetch of the caught-up partition alone"
    );
    sim.machine.records_consumed(&tp(0), records.size);
    let next = sim.fetch();
    assert_eq!(offsets_of(&next), BTreeMap::from([(0, 10), (1, 0)]));
}

/// Only a partition of the same broker holds a Fetch of caught-up partitions back: one
/// being drained from another broker does not, and the caught-up partition's own broker gets
/// its Fetch (a long poll there) at once.
#[test]
fn a_partition_drained_from_another_broker_holds_no_fetch_back() {
    let mut sim = Sim::on_two_brokers();
    let out = sim.requests();
    let fetch_of = |broker: i32| {
        out.iter()
            .find(|o| matches!(o.request, FetchRequest::Fetch { broker: b, .. } if b == broker))
            .unwrap_or_else(|| panic!("a Fetch to broker {broker}: {out:?}"))
            .clone()
    };
    let (to_1, to_2) = (fetch_of(1), fetch_of(2));
    let mut with_records = response(0, vec![(0, 0, Some(batch(0, 10, 5)))]);
    with_records.responses[0].partitions[0].high_watermark = 10;
    sim.answer(&to_1, with_records);
    let mut caught_up = response(0, vec![(1, 0, None)]);
    caught_up.responses[0].partitions[0].high_watermark = 0;
    sim.answer(&to_2, caught_up);
    let events = sim.events();
    assert!(
        matches!(&events[..], [FetchEvent::Records(r)] if r.partition == tp(0)),
        "{events:?}"
    );
    let again = sim.fetch();
    assert!(
        matches!(again.request, FetchRequest::Fetch { broker: 2, .. }),
        "{again:?}"
    );
    assert_eq!(offsets_of(&again), BTreeMap::from([(1, 0)]));
}

/// Fails the next `n` Fetches in transport, reconnecting after each: how long the machine
/// waited each time before it asked the broker again.
fn fail_fetches(sim: &mut Sim, n: usize) -> Vec<Duration> {
    let mut waits = Vec::new();
    for _ in 0..n {
        let f = sim.fetch();
        sim.fail(f.id, RequestFailure::retriable("connection lost"));
        let out = sim.requests();
        assert!(
            !out.iter()
                .any(|o| matches!(o.request, FetchRequest::Connect { .. })),
            "{out:?}"
        );
        waits.push(sim.run_to_timeout());
        let out = sim.requests();
        let connect = out
            .iter()
            .find(|o| matches!(o.request, FetchRequest::Connect { broker: 1 }))
            .expect("a Connect after the backoff");
        let info = BrokerInfo {
            id: 1,
            fetch_version: 12,
            can_validate: true,
        };
        sim.0.answer(connect.id, FetchAnswer::Broker(info));
    }
    waits
}

/// KIP-580's bounds for the wait after `failures` errors in a row at 100 ms..1 s.
fn within_kip580(failures: usize, wait: Duration) -> bool {
    let base = (100u64 << failures).min(1_000) as f64;
    let low = (base * 0.8).min(1_000.0);
    let high = (base * 1.2).min(1_000.0);
    let ms = wait.as_secs_f64() * 1_000.0;
    (low - 0.001..=high + 0.001).contains(&ms)
}

#[test]
fn a_broker_that_keeps_failing_waits_longer_each_time_up_to_retry_backoff_max() {
    let settings = [
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "1000"),
    ];
    let mut sim = Sim::new(config(&settings), committed(0));
    let waits = fail_fetches(&mut sim, 7);
    for (n, w) in waits.iter().enumerate() {
        assert!(within_kip580(n, *w), "failure {n}: {w:?} in {waits:?}");
    }
    assert!(waits[3] > waits[0] * 4, "{waits:?}");
    assert!(
        waits.iter().all(|w| *w <= Duration::from_secs(1)),
        "{waits:?}"
    );
    // A good answer: the next failure waits the least again.
    let f = sim.fetch();
    sim.answer(&f, response(0, vec![(0, 0, None), (1, 0, None)]));
    let again = fail_fetches(&mut sim, 1);
    assert!(within_kip580(0, again[0]), "{again:?}");

    // The jitter comes from the machine's seed: the same seed waits the same.
    let mut twin = Sim::new(config(&settings), committed(0));
    assert_eq!(fail_fetches(&mut twin, 7), waits);
}

#[test]
fn a_partition_answered_with_an_error_again_and_again_backs_off_exponentially() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let mut waits = Vec::new();
    for _ in 0..5 {
        let f = sim.fetch();
        // UNKNOWN_SERVER_ERROR: retried after the backoff, nothing else.
        sim.answer(&f, response(0, vec![(0, -1, None), (1, -1, None)]));
        waits.push(sim.run_to_timeout());
    }
    for (n, w) in waits.iter().enumerate() {
        assert!(within_kip580(n, *w), "failure {n}: {w:?} in {waits:?}");
    }
    // A clean answer, then an error: the first wait again.
    let f = sim.fetch();
    sim.answer(&f, response(0, vec![(0, 0, None), (1, 0, None)]));
    let f = sim.fetch();
    sim.answer(&f, response(0, vec![(0, -1, None), (1, -1, None)]));
    let wait = sim.run_to_timeout();
    assert!(within_kip580(0, wait), "{wait:?}");
}

/// A broker that hangs up on every Fetch, though it connects and tells its versions each time:
/// its Fetches back off exponentially to retry.backoff.max.ms (learning its versions again
/// does not reset that), the failure is reported once it has lasted, and the Fetch that gets
/// through starts the backoff over and reports the recovery.
#[test]
fn fetches_a_broker_hangs_up_on_back_off_across_reconnects_and_are_reported() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let hang_up = RequestFailure {
        retriable: true,
        reason: "broker 1 (h:9092): the broker closed the connection".into(),
        broker: Some("broker 1 (h:9092)".into()),
        version: Some(12),
        cause: None,
    };
    let info = BrokerInfo {
        id: 1,
        fetch_version: 12,
        can_validate: true,
    };
    let t0 = sim.0.now;
    let mut fetched_at = Vec::new();
    let mut reports = Vec::new();
    let mut recovered = false;
    while !recovered {
        let out = sim.requests();
        if out.is_empty() {
            sim.0.run_to_timeout();
            continue;
        }
        for o in out {
            match o.request {
                FetchRequest::Metadata { .. } => {
                    let v = view(&[(0, 1, 5), (1, 1, 5)]);
                    sim.0.answer(o.id, FetchAnswer::Metadata(v));
                }
                FetchRequest::Connect { .. } => {
                    sim.0.answer(o.id, FetchAnswer::Broker(info));
                }
                FetchRequest::Fetch { .. } if sim.0.now < t0 + Duration::from_secs(10) => {
                    assert!(
                        fetched_at.len() < 100,
                        "100 Fetches in {:?}",
                        sim.0.now - t0
                    );
                    fetched_at.push(sim.0.now);
                    sim.0.fail(o.id, hang_up.clone());
                }
                FetchRequest::Fetch { .. } => {
                    sim.answer(&o, response(7, vec![(0, 0, None), (1, 0, None)]));
                    recovered = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        reports.extend(sim.events().into_iter().filter_map(|e| match e {
            FetchEvent::PersistentFailure(r) => Some(r),
            _ => None,
        }));
    }
    let waits: Vec<Duration> = fetched_at.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, w) in waits.iter().enumerate() {
        let nominal = (100u64 << i.min(10)).min(1000);
        let (low, high) = (nominal * 8 / 10, (nominal * 12 / 10).min(1000));
        assert!(
            *w >= Duration::from_millis(low) && *w <= Duration::from_millis(high),
            "wait {i} is {w:?}: {waits:?}"
        );
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    let (failing, recovery) = (&reports[0], &reports[1]);
    assert!(!failing.recovered && recovery.recovered);
    assert_eq!(
        (failing.version, failing.broker.as_deref()),
        (Some(12), Some("broker 1 (h:9092)"))
    );
    assert_eq!(failing.cause, "the broker closed the connection");
    assert_eq!(failing.subject, "the partitions fetched from broker 1");
}

/// The offsets of the records among `events`, per partition, decoded.
fn offsets_by_partition(events: &[FetchEvent]) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for e in events {
        if let FetchEvent::Records(r) = e {
            let decoded = r.clone().decoded();
            let offsets = decoded.records.iter().map(|r| r.offset);
            out.entry(r.partition.partition)
                .or_default()
                .extend(offsets);
        }
    }
    out
}

#[test]
fn positions_move_when_an_answer_is_accepted_and_polling_changes_nothing() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(
        &first,
        response(
            0,
            vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, Some(batch(0, 2, 6)))],
        ),
    );
    // Nothing polled yet: both partitions are past their records already, and the
    // application stands there too (records queued for the owner are its own).
    for (p, offset, epoch) in [(0, 3, 5), (1, 2, 6)] {
        let position = sim.machine.partition(&tp(p)).unwrap().position().unwrap();
        assert_eq!(
            (position.offset, position.offset_epoch),
            (offset, Some(epoch))
        );
        assert_eq!(sim.machine.delivered_position(&tp(p)), Some(position));
    }
    let states: Vec<_> = sim
        .machine
        .partitions()
        .map(|(tp, s)| (tp.clone(), *s))
        .collect();
    let budget = sim.machine.budget().clone();
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![0, 1])])
    );
    let after: Vec<_> = sim
        .machine
        .partitions()
        .map(|(tp, s)| (tp.clone(), *s))
        .collect();
    assert_eq!(states, after, "polling moved a partition");
    assert_eq!(&budget, sim.machine.budget(), "polling changed the budget");

    // Taken: fetched from where the answer was accepted up to.
    sim.machine.records_consumed(
        &tp(0),
        events
            .iter()
            .map(|e| match e {
                FetchEvent::Records(r) if r.partition == tp(0) => r.size,
                _ => 0,
            })
            .sum(),
    );
    let next = sim.fetch();
    assert_eq!(offsets_of(&next), BTreeMap::from([(0, 3)]));
}

/// An answer that brings a partition no records tells the owner where its log ends, and
/// where the partition stands (past control batches), when either changed since it last
/// told: what lets an owner know a partition is read to its end with no record to say so.
#[test]
fn an_answer_without_records_tells_where_the_log_ends_when_that_changed() {
    let end = |e: &FetchEvent| match e {
        FetchEvent::Records(r) if is_end(e) => {
            (r.partition.partition, r.next_offset, r.high_watermark)
        }
        other => panic!("not an end: {other:?}"),
    };
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(
        &first,
        response(7, vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, None)]),
    );
    let events = sim.all_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], FetchEvent::Records(r) if r.records.len() == 3));
    assert_eq!(end(&events[1]), (1, 0, 100));

    // Partition 1 alone goes out meanwhile; the same answer again tells nothing new.
    let other = sim.fetch();
    sim.answer(&other, response(7, vec![(1, 0, None)]));
    assert_eq!(sim.all_events(), []);

    // The log grew: told.
    sim.advance(BACKOFF_PASSED);
    let grown = sim.fetch();
    let mut answer = response(7, vec![(1, 0, None)]);
    answer.responses[0].partitions[0].high_watermark = 120;
    sim.answer(&grown, answer);
    let events = sim.all_events();
    assert_eq!(events.iter().map(end).collect::<Vec<_>>(), [(1, 0, 120)]);

    // A commit marker alone: the position moves past it, and the owner hears so.
    sim.advance(BACKOFF_PASSED);
    let marker = sim.fetch();
    let commit = RecordBatchBuilder::end_transaction_marker(0, 9, 0, true, 0, 1_000)
        .build()
        .unwrap();
    let mut answer = response(7, vec![(1, 0, Some(commit))]);
    answer.responses[0].partitions[0].high_watermark = 120;
    sim.answer(&marker, answer);
    let events = sim.all_events();
    assert_eq!(events.iter().map(end).collect::<Vec<_>>(), [(1, 1, 120)]);
}

#[test]
fn a_partition_with_records_not_taken_is_not_fetched_again_until_they_are() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let first = sim.fetch();
    sim.answer(
        &first,
        response(0, vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, None)]),
    );
    // Queued, not polled: the Fetch planned after the answer leaves partition 0 out.
    let second = sim.fetch();
    assert_eq!(offsets_of(&second), BTreeMap::from([(1, 0)]));
    sim.answer(&second, response(0, vec![(1, 0, Some(batch(0, 1, 5)))]));
    // Polled, with the application: still left out.
    let events = sim.events();
    let size = |p: i32| -> usize {
        events
            .iter()
            .map(|e| match e {
                FetchEvent::Records(r) if r.partition == tp(p) => r.size,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![0])])
    );
    assert!(
        !sim.requests()
            .iter()
            .any(|o| matches!(o.request, FetchRequest::Fetch { .. })),
        "fetched a partition whose records were not taken"
    );
    sim.machine.records_consumed(&tp(1), size(1));
    let third = sim.fetch();
    assert_eq!(offsets_of(&third), BTreeMap::from([(1, 1)]));
    sim.answer(&third, response(0, vec![]));
    // Taken: fetched again, from past them.
    sim.machine.records_consumed(&tp(0), size(0));
    let fourth = sim.fetch();
    assert_eq!(offsets_of(&fourth).get(&0), Some(&3));

    // Held for a pause (the answer came after it), then queued by the resume: left out until
    // taken as well.
    sim.answer(&fourth, response(0, vec![]));
    let fifth = sim.fetch();
    sim.machine.pause(&tp(0));
    sim.answer(&fifth, response(0, vec![(0, 0, Some(batch(3, 2, 5)))]));
    assert_eq!(sim.events(), []);
    sim.machine.resume(&tp(0));
    let sixth = sim.fetch();
    assert_eq!(offsets_of(&sixth).get(&0), None);
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![3, 4])])
    );
    sim.answer(&sixth, response(0, vec![]));
    let seventh = sim.fetch();
    assert_eq!(offsets_of(&seventh).get(&0), None);
    sim.answer(&seventh, response(0, vec![]));
    let FetchEvent::Records(r) = &events[0] else {
        unreachable!()
    };
    sim.machine.records_consumed(&tp(0), r.size);
    let eighth = sim.fetch();
    assert_eq!(offsets_of(&eighth).get(&0), Some(&5));
}

#[test]
fn an_answer_is_accepted_once_though_the_partition_was_fetched_twice() {
    let mut sim = Sim::new(config(&[]), committed(0));
    let from_1 = sim.fetch();
    // The leader moves while broker 1's Fetch is in flight: broker 2 is asked too, from the
    // same offset (no epoch to validate, so it is fetched at once).
    sim.0
        .machine
        .metadata_updated(sim.0.now, &view(&[(0, 2, 6), (1, 1, 5)]));
    let from_2 = sim.fetch();
    assert!(matches!(
        from_2.request,
        FetchRequest::Fetch { broker: 2, .. }
    ));
    assert_eq!(offsets_of(&from_2), BTreeMap::from([(0, 0)]));
    sim.answer(&from_2, response(0, vec![(0, 0, Some(batch(0, 3, 6)))]));
    let buffered = sim.machine.budget().buffered_for(&tp(0));
    // The old leader's answer for offset 0 comes before anything was polled: stale, since the
    // first answer moved the position when it was accepted.
    sim.answer(
        &from_1,
        response(0, vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, None)]),
    );
    let events = sim.events();
    assert_eq!(
        offsets_by_partition(&events),
        BTreeMap::from([(0, vec![0, 1, 2])])
    );
    assert_eq!(sim.machine.budget().buffered_for(&tp(0)), buffered);
    assert_eq!(
        sim.machine
            .partition(&tp(0))
            .unwrap()
            .position()
            .unwrap()
            .offset,
        3
    );
}

/// The fetch task and the application's side together, as the consumer wires them: the
/// machine's events travel to the `Handout` through a queue (the channel), and the
/// application's pauses reach the `Handout` at once and the machine when the test says.
struct Pipeline {
    sim: Sim,
    handout: kcon_fetch::handout::Handout,
    channel: std::collections::VecDeque<kcon_fetch::handout::Arrival>,
    /// The offsets the application got, per partition, in order.
    got: BTreeMap<i32, Vec<i64>>,
}

impl Pipeline {
    fn new() -> Pipeline {
        Pipeline {
            sim: Sim::new(config(&[]), committed(0)),
            handout: kcon_fetch::handout::Handout::new(500),
            channel: Default::default(),
            got: BTreeMap::new(),
        }
    }

    /// The machine's events go into the channel.
    fn send(&mut self) {
        while let Some(e) = self.sim.machine.poll_event() {
            self.channel
                .push_back(kcon_fetch::handout::Arrival::Event(e));
        }
    }

    /// The application takes everything it can, releasing what it took.
    fn take(&mut self) {
        loop {
            let handed = match self.handout.next_released() {
                Some(h) => h,
                None => match self.channel.pop_front() {
                    Some(a) => match self.handout.arrive(a) {
                        Some(h) => h,
                        None => continue,
                    },
                    None => break,
                },
            };
            if let FetchEvent::Records(r) = &handed.event {
                let offsets = r.records.iter().map(|r| r.offset);
                self.got
                    .entry(r.partition.partition)
                    .or_default()
                    .extend(offsets);
            }
            for release in handed.releases {
                release.apply(&mut self.sim.0.machine, self.sim.0.now);
            }
        }
    }

    /// The next Fetch, answered with `records` (partition, first offset, count); the events go
    /// into the channel.
    fn fetch(&mut self, records: &[(i32, i64, usize)]) -> BTreeMap<i32, i64> {
        let f = self.sim.fetch();
        let offsets = offsets_of(&f);
        let parts = records
            .iter()
            .map(|&(p, base, n)| {
                assert_eq!(offsets.get(&p), Some(&base), "partition {p} fetched from");
                (p, 0, Some(batch(base, n, 5)))
            })
            .collect();
        self.sim.answer(&f, response(0, parts));
        self.send();
        offsets
    }
}

#[test]
fn a_paused_partitions_records_keep_their_order_held_on_either_side_of_the_channel() {
    let mut p = Pipeline::new();
    let held_by = |p: &Pipeline, partition: i32| {
        (
            p.sim
                .machine
                .delivered_position(&tp(partition))
                .unwrap()
                .offset,
            p.sim
                .machine
                .partition(&tp(partition))
                .unwrap()
                .position()
                .unwrap()
                .offset,
        )
    };
    // Partition 0's records are on their way when the application pauses it: the handout
    // holds them. The machine hears of the pause after.
    p.fetch(&[(0, 0, 3), (1, 0, 2)]);
    p.handout.pause(tp(0));
    p.sim.machine.pause(&tp(0));
    p.take();
    assert_eq!(p.got, BTreeMap::from([(1, vec![0, 1])]));
    assert!(
        !p.handout.is_idle(),
        "the handout holds partition 0's records"
    );

    // Partition 1 is paused with a Fetch of it in flight: the machine holds what comes, on
    // the other side of the channel, while the handout still holds partition 0's.
    let f = p.sim.fetch();
    assert_eq!(offsets_of(&f), BTreeMap::from([(1, 2)]));
    p.handout.pause(tp(1));
    p.sim.machine.pause(&tp(1));
    p.sim
        .answer(&f, response(0, vec![(1, 0, Some(batch(2, 2, 5)))]));
    p.send();
    p.take();
    assert_eq!(p.got, BTreeMap::from([(1, vec![0, 1])]));
    assert_eq!(
        held_by(&p, 1),
        (2, 4),
        "the application stands before the held records"
    );
    assert_eq!(
        held_by(&p, 0),
        (3, 3),
        "the machine handed partition 0's over"
    );

    // Resumed in the other order than paused, each side releases what it holds, in order.
    p.handout.resume(&tp(1));
    p.sim.machine.resume(&tp(1));
    p.send();
    p.take();
    assert_eq!(p.got, BTreeMap::from([(1, vec![0, 1, 2, 3])]));
    assert_eq!(held_by(&p, 1), (4, 4));
    p.handout.resume(&tp(0));
    p.sim.machine.resume(&tp(0));
    p.take();
    assert_eq!(
        p.got,
        BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![0, 1, 2, 3])])
    );
    assert!(p.handout.is_idle());
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );

    // Paused again between an answer and its hand-over (the events not yet polled): the
    // machine holds them, and a second resume and pause in a row lose nothing.
    let f = p.sim.fetch();
    assert_eq!(offsets_of(&f), BTreeMap::from([(0, 3), (1, 4)]));
    p.sim.answer(
        &f,
        response(
            0,
            vec![(0, 0, Some(batch(3, 2, 5))), (1, 0, Some(batch(4, 1, 5)))],
        ),
    );
    p.handout.pause(tp(0));
    p.sim.machine.pause(&tp(0));
    assert_eq!(held_by(&p, 0), (3, 5));
    p.send();
    p.take();
    p.handout.resume(&tp(0));
    p.sim.machine.resume(&tp(0));
    p.handout.pause(tp(0));
    p.sim.machine.pause(&tp(0));
    p.send();
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2]);
    p.handout.resume(&tp(0));
    p.sim.machine.resume(&tp(0));
    p.send();
    p.take();
    p.fetch(&[(0, 5, 1), (1, 5, 1)]);
    p.take();
    assert_eq!(
        p.got,
        BTreeMap::from([(0, vec![0, 1, 2, 3, 4, 5]), (1, vec![0, 1, 2, 3, 4, 5])]),
        "in order, nothing lost, nothing twice"
    );
    assert!(p.handout.is_idle());
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );
}

#[test]
fn a_leader_change_gives_up_records_held_for_a_pause_and_validates_where_the_application_stands() {
    let start = StartPosition::Committed {
        offset: 0,
        leader_epoch: Some(5),
    };
    let mut sim = Sim::new(config(&[]), start);
    let epoch_answer = |end: i64| {
        let mut r = OffsetForLeaderEpochResponse::default();
        let mut t = OffsetForLeaderTopicResult::default();
        t.topic = TopicName(StrBytes::from_static_str(TOPIC));
        for p in 0..2 {
            let mut e = EpochEndOffset::default();
            e.partition = p;
            e.leader_epoch = 5;
            e.end_offset = end;
            t.partitions.push(e);
        }
        r.topics.push(t);
        FetchAnswer::Validation(Box::new(r))
    };
    let out = sim.requests();
    let v = out
        .iter()
        .find(|o| matches!(o.request, FetchRequest::Validate(_)))
        .expect("OffsetForLeaderEpoch");
    sim.0.answer(v.id, epoch_answer(20));
    let first = sim.fetch();
    sim.machine.pause(&tp(0));
    sim.answer(
        &first,
        response(0, vec![(0, 0, Some(batch(0, 3, 5))), (1, 0, None)]),
    );
    assert_eq!(sim.events(), []);
    assert!(sim.machine.budget().buffered_for(&tp(0)) > 0);

    // The leader moves: validation asks about where the application stands, not about the
    // end of records it never got, and those records leave with their bytes.
    sim.0
        .machine
        .metadata_updated(sim.0.now, &view(&[(0, 2, 6), (1, 2, 6)]));
    assert_eq!(sim.machine.budget().buffered_for(&tp(0)), 0);
    let position = sim.machine.partition(&tp(0)).unwrap().position().unwrap();
    assert_eq!((position.offset, position.offset_epoch), (0, Some(5)));
    assert_eq!(sim.machine.delivered_position(&tp(0)), Some(position));
    let out = sim.requests();
    let v = out
        .iter()
        .find(|o| matches!(&o.request, FetchRequest::Validate(r) if r.broker == 2))
        .expect("OffsetForLeaderEpoch to the new leader");
    let FetchRequest::Validate(r) = &v.request else {
        unreachable!()
    };
    let asked: BTreeMap<i32, i64> = r
        .queries
        .iter()
        .map(|q| (q.partition.partition, q.position.offset))
        .collect();
    assert_eq!(asked, BTreeMap::from([(0, 0), (1, 0)]));
    sim.0.answer(v.id, epoch_answer(20));
    sim.machine.resume(&tp(0));
    assert_eq!(sim.events(), [], "the held records were given up");
    let next = sim.fetch();
    assert!(matches!(
        next.request,
        FetchRequest::Fetch { broker: 2, .. }
    ));
    assert_eq!(offsets_of(&next), BTreeMap::from([(0, 0), (1, 0)]));
}

/// An OffsetForLeaderEpoch answer for partition 0: its epoch `leader_epoch` ends at `end`.
fn epoch_end(leader_epoch: i32, end: i64) -> FetchAnswer {
    let mut e = EpochEndOffset::default();
    e.partition = 0;
    e.leader_epoch = leader_epoch;
    e.end_offset = end;
    let mut t = OffsetForLeaderTopicResult::default();
    t.topic = TopicName(StrBytes::from_static_str(TOPIC));
    t.partitions.push(e);
    let mut r = OffsetForLeaderEpochResponse::default();
    r.topics.push(t);
    FetchAnswer::Validation(Box::new(r))
}

/// The application takes partition 0's records 0 to 2, then pauses it with records 3 to 5 on
/// their way: the handout holds them. Its leader moves to broker 2, and the position past them
/// (6, epoch 5) is validated there with `answer`; the application takes what comes, then
/// resumes the partition.
fn validated_with_records_held_by_the_handout(answer: FetchAnswer) -> Pipeline {
    let mut p = Pipeline::new();
    p.fetch(&[(0, 0, 3)]);
    p.take();
    p.fetch(&[(0, 3, 3)]);
    p.handout.pause(tp(0));
    p.sim.machine.pause(&tp(0));
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2]);
    assert!(!p.handout.is_idle(), "the handout holds records 3 to 5");
    assert!(p.sim.machine.budget().buffered_for(&tp(0)) > 0);

    p.sim
        .0
        .machine
        .metadata_updated(p.sim.0.now, &view(&[(0, 2, 6), (1, 1, 5)]));
    let out = p.sim.requests();
    let v = out
        .iter()
        .find(|o| matches!(&o.request, FetchRequest::Validate(r) if r.broker == 2))
        .expect("OffsetForLeaderEpoch to the new leader");
    let FetchRequest::Validate(r) = &v.request else {
        unreachable!()
    };
    assert_eq!(r.queries[0].position.offset, 6);
    p.sim.0.answer(v.id, answer);
    p.send();
    p.take();
    p.handout.resume(&tp(0));
    p.sim.machine.resume(&tp(0));
    p.send();
    p
}

#[test]
fn a_truncation_drops_what_the_handout_holds_for_a_pause_from_the_divergence_on() {
    // Broker 2's log diverges from epoch 5 at 4: the position moves there. Record 3 is still
    // on the leader's log; records 4 and 5 held by the handout are of the log it truncated.
    let mut p = validated_with_records_held_by_the_handout(epoch_end(5, 4));
    assert_eq!(
        p.sim.machine.budget().buffered_for(&tp(0)),
        0,
        "the held records' bytes left with the move"
    );
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2, 3]);
    assert!(p.handout.is_idle());
    let from = p.fetch(&[(0, 4, 3)]);
    assert_eq!(from, BTreeMap::from([(0, 4)]));
    p.take();
    assert_eq!(
        p.got[&0],
        [0, 1, 2, 3, 4, 5, 6],
        "nothing of the truncated log, nothing twice, nothing lost"
    );
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );
}

#[test]
fn a_truncation_before_what_the_handout_holds_for_a_pause_drops_it_all() {
    // The log diverges at 1, before the held records: the application, which had 0 to 2
    // before it heard of the truncation, gets the leader's records from 1.
    let mut p = validated_with_records_held_by_the_handout(epoch_end(5, 1));
    assert!(p.handout.is_idle());
    let from = p.fetch(&[(0, 1, 3)]);
    assert_eq!(from, BTreeMap::from([(0, 1)]));
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2, 1, 2, 3]);
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );
}

#[test]
fn a_truncation_sent_to_a_reset_drops_what_the_handout_holds_for_a_pause() {
    // Broker 2 does not know the epoch (-1): the position is reset, by `earliest` to 0.
    let mut p = validated_with_records_held_by_the_handout(epoch_end(-1, -1));
    assert!(p.handout.is_idle());
    assert_eq!(
        p.sim.machine.budget().buffered_for(&tp(0)),
        0,
        "the bytes of the records dropped left the budget"
    );
    let out = p.sim.requests();
    let (lo, partitions, _) = list_offsets(&out).remove(0);
    assert_eq!(partitions, [0]);
    let answer = BTreeMap::from([(tp(0), listed(0))]);
    p.sim.0.answer(lo.id, FetchAnswer::ListOffsets(answer));
    p.send();
    p.take();
    let from = p.fetch(&[(0, 0, 2)]);
    assert_eq!(from, BTreeMap::from([(0, 0)]));
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2, 0, 1], "from the reset on, once");
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );
}

#[test]
fn a_valid_position_keeps_what_the_handout_holds_for_a_pause_and_its_bytes() {
    let mut p = validated_with_records_held_by_the_handout(epoch_end(5, 20));
    assert!(p.sim.machine.budget().buffered_for(&tp(0)) > 0);
    p.take();
    assert_eq!(p.sim.machine.budget().buffered_for(&tp(0)), 0);
    let from = p.fetch(&[(0, 6, 1)]);
    assert_eq!(from, BTreeMap::from([(0, 6)]));
    p.take();
    assert_eq!(p.got[&0], [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        p.sim.machine.budget().buffered(),
        0,
        "every byte was released"
    );
}
