//! The share session machine on a virtual clock, every answer scripted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartition, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::harness::Harness;
use kcon_core::{RequestFailure, RequestId, Target, TopicId, TopicPartition};

use super::*;
use crate::config::FetchConfig;
use crate::messages::{MetadataView, PartitionInfo};
use crate::position::LeaderAndEpoch;

const A: TopicId = TopicId([0xa; 16]);

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("a", p)
}

/// Partition p of `a` led by broker `leader[p]`.
fn view(leaders: &[i32]) -> MetadataView {
    let mut v = MetadataView::default();
    for (p, leader) in leaders.iter().enumerate() {
        v.partitions.insert(
            tp(p as i32),
            PartitionInfo {
                leader: LeaderAndEpoch {
                    leader: Some(*leader),
                    epoch: Some(0),
                },
                topic_id: Some(A),
            },
        );
    }
    v
}

type H = Harness<ShareFetchMachine>;

/// A machine assigned `a`'s partitions (led as `leaders` says), wanting records.
fn machine(leaders: &[i32]) -> H {
    let now = Instant::now();
    let mut config = FetchConfig::default();
    config.max_poll_records = 100;
    let mut h = Harness::new(ShareFetchMachine::new(config, "g", "m", 3), now);
    h.machine.metadata_updated(now, &view(leaders));
    h.machine
        .assign(now, (0..leaders.len() as i32).map(tp).collect());
    want(&mut h);
    h
}

/// The application wants records, having seen every batch told.
fn want(h: &mut H) {
    let seen = h.machine.records_told();
    h.machine.want_records(h.now, seen);
}

fn fetch(h: &mut H) -> (RequestId, i32, ShareFetch) {
    match h.request() {
        Some(ShareOutgoing {
            id,
            target: Target::Broker(b),
            request: ShareRequest::Fetch { broker, fetch },
            ..
        }) => {
            assert_eq!(b, broker);
            (id, broker, fetch)
        }
        other => panic!("expected a ShareFetch, got {other:?}"),
    }
}

fn acknowledge(h: &mut H) -> (RequestId, ShareAcknowledge) {
    match h.request() {
        Some(ShareOutgoing {
            id,
            request: ShareRequest::Acknowledge { acknowledge, .. },
            ..
        }) => (id, acknowledge),
        other => panic!("expected a ShareAcknowledge, got {other:?}"),
    }
}

/// Record batches holding `offsets`, one batch per run of consecutive offsets.
fn records(offsets: &[i64]) -> Bytes {
    let mut all = BytesMut::new();
    let mut i = 0;
    while i < offsets.len() {
        let base = offsets[i];
        let mut b = RecordBatchBuilder::new(base);
        let mut next = base;
        while i < offsets.len() && offsets[i] == next {
            b.record(1_000, None, Some(format!("v{next}").as_bytes()));
            next += 1;
            i += 1;
        }
        all.extend_from_slice(&b.build().unwrap());
    }
    all.freeze()
}

struct Part {
    partition: i32,
    offsets: Vec<i64>,
    acquired: Vec<(i64, i64, i16)>,
    error: i16,
    ack_error: i16,
    /// The current leader a leader error names (KIP-951), or (-1, -1).
    leader: (i32, i32),
}

fn part(partition: i32, offsets: &[i64], acquired: &[(i64, i64, i16)]) -> Part {
    Part {
        partition,
        offsets: offsets.to_vec(),
        acquired: acquired.to_vec(),
        error: 0,
        ack_error: 0,
        leader: (-1, -1),
    }
}

fn fetch_answer(parts: Vec<Part>) -> ShareAnswer {
    let mut r = ShareFetchResponse::default();
    r.acquisition_lock_timeout_ms = 30_000;
    let mut t = ShareFetchableTopicResponse::default();
    crate::session::wire::set_uuid(&mut t.topic_id, Some(A));
    for p in parts {
        let mut d = PartitionData::default();
        d.partition_index = p.partition;
        d.error_code = p.error;
        d.acknowledge_error_code = p.ack_error;
        d.current_leader.leader_id = p.leader.0;
        d.current_leader.leader_epoch = p.leader.1;
        d.records = (!p.offsets.is_empty()).then(|| records(&p.offsets));
        d.acquired_records = p
            .acquired
            .iter()
            .map(|&(first, last, count)| {
                let mut a = AcquiredRecords::default();
                a.first_offset = first;
                a.last_offset = last;
                a.delivery_count = count;
                a
            })
            .collect();
        t.partitions.push(d);
    }
    r.responses = vec![t];
    ShareAnswer::Fetch(Box::new(r))
}

fn ack_answer(errors: &[(i32, i16)]) -> ShareAnswer {
    let mut r = ShareAcknowledgeResponse::default();
    let mut t = ShareAcknowledgeTopicResponse::default();
    crate::session::wire::set_uuid(&mut t.topic_id, Some(A));
    for &(p, code) in errors {
        let mut d = AckPartition::default();
        d.partition_index = p;
        d.error_code = code;
        t.partitions.push(d);
    }
    r.responses = vec![t];
    ShareAnswer::Acknowledge(Box::new(r))
}

fn top_error(code: i16) -> ShareAnswer {
    let mut r = ShareFetchResponse::default();
    r.error_code = code;
    ShareAnswer::Fetch(Box::new(r))
}

fn handed_out(events: &[ShareEvent]) -> Vec<(i32, i64, Option<u16>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ShareEvent::Records { records, .. } => Some(records),
            _ => None,
        })
        .flatten()
        .map(|r| (r.partition, r.offset, r.delivery_count))
        .collect()
}

fn ranges(p: &SharePartitionRequest) -> Vec<(i64, i64, AcknowledgeType)> {
    p.acknowledgements
        .iter()
        .map(|r| (r.first, r.last, r.kind))
        .collect()
}

/// The first fetch to each leader opens a session (epoch 0) listing its partitions; acquired
/// records come out with their delivery counts, and wanting stops until asked again.
#[test]
fn opens_a_session_per_leader_and_hands_out_acquired_records() {
    let mut h = machine(&[1, 1, 2]);
    let (id1, b1, f1) = fetch(&mut h);
    let (id2, b2, f2) = fetch(&mut h);
    assert!(h.request().is_none(), "one request per broker");
    assert_eq!((b1, b2), (1, 2));
    assert_eq!((f1.epoch, f2.epoch), (0, 0));
    assert_eq!(f1.partitions.len(), 2);
    assert!(f1.partitions.iter().all(|p| p.acknowledgements.is_empty()));
    assert_eq!(f1.max_records, 100);
    assert_eq!(f1.member_id, "m");
    h.answer(
        id1,
        fetch_answer(vec![part(0, &[0, 1, 2], &[(0, 1, 1), (2, 2, 3)])]),
    );
    let events = h.events();
    assert_eq!(
        handed_out(&events),
        [(0, 0, Some(1)), (0, 1, Some(1)), (0, 2, Some(3))]
    );
    assert!(h.request().is_none(), "no more fetching until asked");
    // Broker 2's answer still comes and is handed out.
    h.answer(id2, fetch_answer(vec![part(2, &[7], &[(7, 7, 1)])]));
    assert_eq!(handed_out(&h.events()), [(2, 7, Some(1))]);
}

/// Acknowledgements ride on the next fetch to the partition's leader, at the next epoch, the
/// session's partitions not listed again; the answer's outcome is told per partition.
#[test]
fn acknowledgements_ride_on_the_next_fetch() {
    let mut h = machine(&[1, 1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0, 1, 2, 3], &[(0, 3, 1)])]));
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Accept);
    h.machine
        .acknowledge(now, &tp(0), 1, 1, AcknowledgeType::Accept);
    h.machine
        .acknowledge(now, &tp(0), 2, 2, AcknowledgeType::Release);
    h.machine
        .acknowledge(now, &tp(0), 3, 3, AcknowledgeType::Reject);
    assert!(h.request().is_none(), "acknowledgements wait for a request");
    want(&mut h);
    let (id, _, f) = fetch(&mut h);
    assert_eq!(f.epoch, 1);
    assert_eq!(f.partitions.len(), 1, "{:?}", f.partitions);
    assert_eq!(
        ranges(&f.partitions[0]),
        [
            (0, 1, AcknowledgeType::Accept),
            (2, 2, AcknowledgeType::Release),
            (3, 3, AcknowledgeType::Reject)
        ]
    );
    h.answer(id, fetch_answer(vec![part(0, &[2], &[(2, 2, 2)])]));
    let events = h.events();
    let outcome = events
        .iter()
        .find_map(|e| match e {
            ShareEvent::Acknowledged(o) => Some(o),
            _ => None,
        })
        .expect("an outcome");
    assert!(outcome.is_ok());
    assert_eq!(outcome.offsets(), 4);
    assert_eq!(handed_out(&events), [(0, 2, Some(2))]);
    let (_, _, f) = {
        want(&mut h);
        fetch(&mut h)
    };
    assert_eq!(f.epoch, 2);
}

/// Offsets acquired without a record are acknowledged as gaps with the next request; records
/// outside the acquired ranges (another member's) are not handed out.
#[test]
fn gaps_are_acknowledged_and_unacquired_records_dropped() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(
        id,
        fetch_answer(vec![part(0, &[0, 1, 2, 5, 6, 9], &[(1, 7, 1)])]),
    );
    assert_eq!(
        handed_out(&h.events()),
        [
            (0, 1, Some(1)),
            (0, 2, Some(1)),
            (0, 5, Some(1)),
            (0, 6, Some(1))
        ]
    );
    want(&mut h);
    let (_, _, f) = fetch(&mut h);
    assert_eq!(
        ranges(&f.partitions[0]),
        [(3, 4, AcknowledgeType::Gap), (7, 7, AcknowledgeType::Gap)]
    );
}

/// A hostile answer's ranges (inverted, negative, overlapping, reaching i64::MAX) cost no
/// more than the records in it: one gap range, no loop over offsets.
#[test]
fn hostile_acquired_ranges_are_bounded() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(
        id,
        fetch_answer(vec![part(
            0,
            &[0, 1],
            &[(5, 2, 1), (-4, -1, 1), (0, i64::MAX, 2), (1, 3, 9)],
        )]),
    );
    assert_eq!(handed_out(&h.events()), [(0, 0, Some(2)), (0, 1, Some(2))]);
    want(&mut h);
    let (_, _, f) = fetch(&mut h);
    assert_eq!(
        ranges(&f.partitions[0]),
        [(2, i64::MAX, AcknowledgeType::Gap)]
    );
}

/// A commit sends the acknowledgements with a ShareAcknowledge at the session's epoch and ends
/// with `Committed` once answered; a partition's error is its outcome's.
#[test]
fn commit_sends_a_share_acknowledge() {
    let mut h = machine(&[1, 1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(
        id,
        fetch_answer(vec![
            part(0, &[0], &[(0, 0, 1)]),
            part(1, &[4], &[(4, 4, 1)]),
        ]),
    );
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Accept);
    h.machine
        .acknowledge(now, &tp(1), 4, 4, AcknowledgeType::Accept);
    let commit = h.machine.commit(now);
    let (id, a) = acknowledge(&mut h);
    assert_eq!(a.epoch, 1);
    assert_eq!(a.partitions.len(), 2);
    assert!(h.events().is_empty(), "not committed before the answer");
    h.answer(id, ack_answer(&[(0, 0), (1, 121)]));
    let events = h.events();
    let outcomes: Vec<(i32, i16)> = events
        .iter()
        .filter_map(|e| match e {
            ShareEvent::Acknowledged(o) => Some((o.partition.partition, o.error_code)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [(0, 0), (1, 121)]);
    assert_eq!(events.last(), Some(&ShareEvent::Committed(commit)));
    // A commit with nothing to send is done at once.
    let again = h.machine.commit(now);
    assert_eq!(h.events(), [ShareEvent::Committed(again)]);
}

/// Commits asked while one waits for its answer complete with it, told by one `Committed`
/// naming the last: the events waiting do not grow with the commits an application asks for
/// without reading them (a fuzz input asking for a thousand grew them past the allocation
/// bound, `fuzz/corpus/share_machine/regression-alloc-139264-commits`).
#[test]
fn commits_done_together_are_told_once() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0], &[(0, 0, 1)])]));
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Accept);
    let first = h.machine.commit(now);
    let (id, _) = acknowledge(&mut h);
    let last = (0..1_000).map(|_| h.machine.commit(now)).last().unwrap();
    assert!(last > first);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, ShareEvent::Committed(_))),
        "nothing committed before the answer"
    );
    h.answer(id, ack_answer(&[(0, 0)]));
    let events = h.events();
    let committed: Vec<&ShareEvent> = events
        .iter()
        .filter(|e| matches!(e, ShareEvent::Committed(_)))
        .collect();
    assert_eq!(committed, [&ShareEvent::Committed(last)]);
}

/// A renewal (KIP-1222) goes at once, on a ShareAcknowledge of renewals only; the record stays
/// held (settled later, on the next fetch as any acknowledgement). A renewal still waiting when
/// its record is settled is dropped; one waiting at close fails, told so.
#[test]
fn renewals_go_at_once_on_their_own_share_acknowledge() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0, 1, 2], &[(0, 2, 1)])]));
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 1, 1, AcknowledgeType::Accept);
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Renew);
    let (id, a) = acknowledge(&mut h);
    assert!(a.renew);
    assert_eq!(a.epoch, 1);
    assert_eq!(ranges(&a.partitions[0]), [(0, 0, AcknowledgeType::Renew)]);
    assert!(h.request().is_none(), "the acceptance waits for a fetch");
    h.answer(id, ack_answer(&[(0, 0)]));
    let told: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ShareEvent::Acknowledged(o) => Some((o.ranges, o.error_code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [(
            vec![AcknowledgementRange {
                first: 0,
                last: 0,
                kind: AcknowledgeType::Renew
            }],
            0
        )]
    );
    // A fetch in flight holds the next renewal back; the record is accepted meanwhile, so the
    // renewal never goes.
    want(&mut h);
    let (id, _, f) = fetch(&mut h);
    assert_eq!(ranges(&f.partitions[0]), [(1, 1, AcknowledgeType::Accept)]);
    h.machine
        .acknowledge(now, &tp(0), 2, 2, AcknowledgeType::Renew);
    h.machine
        .acknowledge(now, &tp(0), 2, 2, AcknowledgeType::Accept);
    h.answer(id, fetch_answer(vec![]));
    let (_, _, f) = fetch(&mut h);
    assert_eq!(ranges(&f.partitions[0]), [(2, 2, AcknowledgeType::Accept)]);
    // Still held: the renewed record 0 is not a gap, and comes back from no fetch as new.
    assert!(h.machine.outstanding[&tp(0)].contains_key(&0));
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Renew);
    h.machine.close(now);
    let failed: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ShareEvent::Acknowledged(o) if o.ranges[0].kind == AcknowledgeType::Renew => {
                Some((o.ranges[0].kind, o.failure))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(
            AcknowledgeType::Renew,
            Some("the consumer closed before the renewal was sent".to_owned())
        )]
    );
}

/// SHARE_SESSION_NOT_FOUND and INVALID_SHARE_SESSION_EPOCH: the acknowledgements carried fail
/// with the code, and the session opens again (epoch 0) after a backoff.
#[test]
fn a_lost_session_opens_again() {
    for code in [122, 123] {
        let mut h = machine(&[1]);
        let (id, _, _) = fetch(&mut h);
        h.answer(id, fetch_answer(vec![part(0, &[0], &[(0, 0, 1)])]));
        h.events();
        h.machine
            .acknowledge(h.now, &tp(0), 0, 0, AcknowledgeType::Accept);
        want(&mut h);
        let (id, _, f) = fetch(&mut h);
        assert_eq!(f.epoch, 1);
        h.answer(id, top_error(code));
        let events = h.events();
        assert!(
            matches!(&events[..], [ShareEvent::Acknowledged(o)] if o.error_code == code),
            "{code}: {events:?}"
        );
        assert!(h.request().is_none(), "backing off");
        let waited = h.run_to_timeout();
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        let (_, _, f) = fetch(&mut h);
        assert_eq!(f.epoch, 0);
        assert_eq!(f.partitions.len(), 1);
    }
}

/// A failed request (no answer) starts the session over too, after a backoff, and a
/// partition's leader error asks for metadata.
#[test]
fn failures_back_off_and_leader_errors_refresh() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.fail(id, RequestFailure::retriable("connection reset"));
    let refresh = h.request().expect("a metadata refresh");
    assert!(matches!(refresh.request, ShareRequest::Metadata { .. }));
    h.answer(refresh.id, ShareAnswer::Metadata(view(&[2])));
    h.run_to_timeout();
    let (id, broker, f) = fetch(&mut h);
    assert_eq!((broker, f.epoch), (2, 0));
    let mut p = part(0, &[], &[]);
    p.error = 6;
    h.answer(id, fetch_answer(vec![p]));
    let refresh = h.request().expect("a metadata refresh");
    assert!(matches!(refresh.request, ShareRequest::Metadata { .. }));
}

/// A leader error naming a newer leader moves the partition there at once: the next fetch goes
/// to the new leader before the metadata says so, and a metadata snapshot older than the
/// named epoch does not move it back. A leader named at an epoch not newer is not taken.
#[test]
fn a_named_leader_is_fetched_from_before_the_refresh() {
    let mut h = machine(&[1, 1]);
    let (id, broker, f) = fetch(&mut h);
    assert_eq!((broker, f.partitions.len()), (1, 2));
    let mut moved = part(0, &[], &[]);
    moved.error = 6;
    moved.leader = (2, 3);
    let mut stale = part(1, &[], &[]);
    stale.error = 6;
    stale.leader = (2, 0);
    h.answer(id, fetch_answer(vec![moved, stale]));
    let requests = h.requests();
    let refresh = requests
        .iter()
        .find(|r| matches!(r.request, ShareRequest::Metadata { .. }))
        .expect("a metadata refresh");
    let to_new = requests
        .iter()
        .find_map(|r| match &r.request {
            ShareRequest::Fetch { broker: 2, fetch } => Some(fetch),
            _ => None,
        })
        .expect("a fetch to the named leader before the refresh");
    assert_eq!(to_new.epoch, 0);
    let listed: Vec<_> = to_new
        .partitions
        .iter()
        .map(|p| p.partition.clone())
        .collect();
    assert_eq!(
        listed,
        [tp(0)],
        "only the partition named at a newer epoch moved"
    );
    // The refresh answers with what the metadata knew before the move: partition 0 stays.
    h.answer(refresh.id, ShareAnswer::Metadata(view(&[1, 1])));
    assert_eq!(h.machine.leader_of(&tp(0)), Some((2, A)));
    assert_eq!(h.machine.leader_of(&tp(1)), Some((1, A)));
}

/// A partition answered with an error is left out of fetches for a backoff that grows with
/// each error in a row (forgotten from the session meanwhile, listed again after), rather than
/// asked again at once; an answer without an error ends it.
#[test]
fn a_partition_error_holds_the_partition_back() {
    let mut config = FetchConfig::default();
    config.retry_backoff = Duration::from_millis(100);
    config.retry_backoff_max = Duration::from_secs(10);
    let now = Instant::now();
    let mut h = Harness::new(ShareFetchMachine::new(config, "g", "m", 3), now);
    h.machine.metadata_updated(now, &view(&[1]));
    h.machine.assign(now, BTreeSet::from([tp(0)]));
    want(&mut h);
    let (mut id, _, f) = fetch(&mut h);
    assert_eq!(f.epoch, 0);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let mut p = part(0, &[], &[]);
        p.error = -1; // UNKNOWN_SERVER_ERROR
        let last = h.requests();
        assert!(last.is_empty(), "nothing else in flight: {last:?}");
        h.answer(id, fetch_answer(vec![p]));
        // The next fetch forgets the partition; nothing is asked for it until the backoff ends.
        let (forget, _, f) = fetch(&mut h);
        assert_eq!((f.partitions.len(), f.forgotten.len()), (0, 1));
        h.answer(forget, fetch_answer(vec![]));
        assert!(
            h.requests().is_empty(),
            "asked again before the backoff ended"
        );
        waits.push(h.run_to_timeout());
        let (again, _, f) = fetch(&mut h);
        assert_eq!(f.partitions.len(), 1, "listed again once the backoff ended");
        id = again;
    }
    // 100 ms doubling, each within 20% jitter.
    for (i, w) in waits.iter().enumerate() {
        let base = 100u64 << i;
        let (lo, hi) = (base * 8 / 10, base * 12 / 10 + 1);
        assert!(
            (lo..=hi).contains(&(w.as_millis() as u64)),
            "wait {i}: {w:?} outside {lo}..={hi} ms: {waits:?}"
        );
    }
    // Records at last: the backoff starts over at the next error.
    h.answer(id, fetch_answer(vec![part(0, &[0], &[(0, 0, 1)])]));
    assert_eq!(handed_out(&h.events()), [(0, 0, Some(1))]);
    assert_eq!(h.machine.held_back.get(&tp(0)).map(|b| b.errors), None);
}

/// A partition no longer assigned leaves the session with the next fetch; its
/// acknowledgements still go.
#[test]
fn revoked_partitions_are_forgotten() {
    let mut h = machine(&[1, 1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(1, &[3], &[(3, 3, 1)])]));
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(1), 3, 3, AcknowledgeType::Accept);
    h.machine.assign(now, BTreeSet::from([tp(0)]));
    want(&mut h);
    let (_, _, f) = fetch(&mut h);
    assert_eq!(f.epoch, 1);
    assert_eq!(f.forgotten, [(tp(1), A)]);
    assert_eq!(f.partitions.len(), 1);
    assert_eq!(f.partitions[0].partition, tp(1));
    assert_eq!(ranges(&f.partitions[0]), [(3, 3, AcknowledgeType::Accept)]);
}

/// Close sends the acknowledgements left with a ShareAcknowledge at epoch -1 to each open
/// session, and ends with `Closed`. A broker whose last request failed may hold a session
/// whose answer was lost: it is closed too, once its backoff ends. A broker that refused to
/// open a session has none and gets nothing.
#[test]
fn close_acknowledges_and_closes_each_session() {
    let mut h = machine(&[1, 2, 3]);
    let (id1, _, _) = fetch(&mut h);
    let (id2, _, _) = fetch(&mut h);
    let (id3, _, _) = fetch(&mut h);
    h.answer(id1, fetch_answer(vec![part(0, &[0], &[(0, 0, 1)])]));
    h.fail(id2, RequestFailure::retriable("connection reset"));
    h.answer(id3, top_error(133)); // SHARE_SESSION_LIMIT_REACHED
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 0, 0, AcknowledgeType::Release);
    h.machine.close(now);
    let (id, a) = acknowledge(&mut h);
    assert_eq!(a.epoch, CLOSE_EPOCH);
    assert_eq!(ranges(&a.partitions[0]), [(0, 0, AcknowledgeType::Release)]);
    assert!(
        h.request().is_none(),
        "broker 2 waits out its backoff; broker 3 has no session"
    );
    h.answer(id, ack_answer(&[(0, 0)]));
    assert!(!h.machine.is_closed(), "broker 2's session may linger");
    h.run_to_timeout();
    let lingering = h.request().expect("a close to broker 2");
    assert_eq!(lingering.target, Target::Broker(2));
    let ShareRequest::Acknowledge { acknowledge: a, .. } = &lingering.request else {
        panic!("expected a ShareAcknowledge: {lingering:?}");
    };
    assert_eq!((a.epoch, a.partitions.len()), (CLOSE_EPOCH, 0));
    let mut gone = ShareAcknowledgeResponse::default();
    gone.error_code = 122; // SHARE_SESSION_NOT_FOUND: the session had gone with the connection
    h.answer(lingering.id, ShareAnswer::Acknowledge(Box::new(gone)));
    let events = h.events();
    assert!(
        matches!(events.last(), Some(ShareEvent::Closed)),
        "{events:?}"
    );
    assert!(h.machine.is_closed());
    assert!(h.requests().is_empty());
}

/// Acknowledgements that no session can carry fail on commit instead of holding it forever.
#[test]
fn stranded_acknowledgements_fail_on_commit() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0, 1], &[(0, 1, 1)])]));
    h.events();
    h.machine
        .acknowledge(h.now, &tp(0), 0, 0, AcknowledgeType::Accept);
    h.machine.commit(h.now);
    let (id, _) = acknowledge(&mut h);
    h.fail(id, RequestFailure::retriable("connection reset"));
    let events = h.events();
    assert!(
        matches!(&events[..], [ShareEvent::Acknowledged(o), ShareEvent::Committed(_)] if o.failure.is_some()),
        "{events:?}"
    );
    // The session is gone and nothing wants records: the next commit cannot wait for one.
    h.machine
        .acknowledge(h.now, &tp(0), 1, 1, AcknowledgeType::Accept);
    let commit = h.machine.commit(h.now);
    let events = h.events();
    assert!(
        matches!(&events[..], [ShareEvent::Acknowledged(o), ShareEvent::Committed(c)]
            if o.failure.is_some() && *c == commit),
        "{events:?}"
    );
}

/// Records the broker sends again while they are held unacknowledged are not handed out
/// twice; once acknowledged, or at a higher delivery count (the lock expired and they were
/// acquired again), they are.
#[test]
fn records_held_are_not_handed_out_twice() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0, 1, 2], &[(0, 2, 1)])]));
    assert_eq!(handed_out(&h.events()).len(), 3);
    h.machine
        .acknowledge(h.now, &tp(0), 0, 0, AcknowledgeType::Release);
    want(&mut h);
    let (id, _, _) = fetch(&mut h);
    h.answer(
        id,
        fetch_answer(vec![part(
            0,
            &[0, 1, 2],
            &[(0, 0, 2), (1, 1, 1), (2, 2, 2)],
        )]),
    );
    let events = h.events();
    assert_eq!(handed_out(&events), [(0, 0, Some(2)), (0, 2, Some(2))]);
    // Offset 2 was held at count 1: its lock expired; offset 0 had been released.
    assert!(
        matches!(
            &events[0],
            ShareEvent::Records {
                lock_expired: 1,
                ..
            }
        ),
        "{events:?}"
    );
}

/// A want sent before the application read the records told since is stale: no fetch.
#[test]
fn a_stale_want_fetches_nothing() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0], &[(0, 0, 1)])]));
    h.machine.want_records(h.now, 0);
    assert!(h.request().is_none());
    want(&mut h);
    fetch(&mut h);
}

/// An offset acknowledged twice goes once: batches in one request never overlap.
#[test]
fn overlapping_acknowledgements_are_trimmed() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.answer(id, fetch_answer(vec![part(0, &[0, 1, 2, 3], &[(0, 3, 1)])]));
    h.events();
    let now = h.now;
    h.machine
        .acknowledge(now, &tp(0), 0, 2, AcknowledgeType::Accept);
    h.machine
        .acknowledge(now, &tp(0), 1, 3, AcknowledgeType::Reject);
    want(&mut h);
    let (_, _, f) = fetch(&mut h);
    assert_eq!(
        ranges(&f.partitions[0]),
        [
            (0, 2, AcknowledgeType::Accept),
            (3, 3, AcknowledgeType::Reject)
        ]
    );
}

/// A wait called off (the application stopped waiting) fetches nothing more; a fetch in flight
/// still hands out what it acquired.
#[test]
fn a_wait_called_off_fetches_nothing_more() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    h.machine.stop_wanting(h.now);
    h.answer(id, fetch_answer(vec![part(0, &[], &[])]));
    assert!(h.request().is_none(), "fetching while nobody waits");
    want(&mut h);
    let (id, _, _) = fetch(&mut h);
    h.machine.stop_wanting(h.now);
    h.answer(id, fetch_answer(vec![part(0, &[4], &[(4, 4, 1)])]));
    assert_eq!(handed_out(&h.events()), [(0, 4, Some(1))]);
    assert!(h.request().is_none());
}

/// Fetches partition 0 once, answered with `records` acquired as `acquired`; what was handed
/// out. Records are wanted again after.
fn hand_out(
    h: &mut H,
    records: &[i64],
    acquired: &[(i64, i64, i16)],
) -> Vec<(i32, i64, Option<u16>)> {
    let (id, _, _) = fetch(h);
    h.answer(id, fetch_answer(vec![part(0, records, acquired)]));
    let out = handed_out(&h.events());
    want(h);
    out
}

/// A broker that says again it acquired offsets the application holds gets no gap or release
/// for them: only the offsets around them are settled by the machine.
#[test]
fn offsets_held_are_never_settled_as_gaps() {
    let mut h = machine(&[1]);
    assert_eq!(hand_out(&mut h, &[0, 1, 2], &[(0, 2, 1)]).len(), 3);
    assert_eq!(hand_out(&mut h, &[5], &[(0, 5, 1)]), [(0, 5, Some(1))]);
    let (_, _, f) = fetch(&mut h);
    assert_eq!(ranges(&f.partitions[0]), [(3, 4, AcknowledgeType::Gap)]);
}

/// Offsets held are kept as ranges: one that begins before the offsets a broker says it
/// acquired again, and one that reaches past their end, are both cut to them, and only the
/// offsets between are settled.
#[test]
fn held_ranges_reaching_over_either_end_are_never_settled() {
    let mut h = machine(&[1]);
    assert_eq!(hand_out(&mut h, &[0, 1, 2], &[(0, 2, 1)]).len(), 3);
    assert_eq!(hand_out(&mut h, &[7, 8, 9], &[(7, 9, 1)]).len(), 3);
    // Acquired again: 1..=8, with no record the application does not hold.
    assert!(hand_out(&mut h, &[], &[(1, 8, 1)]).is_empty());
    let (_, _, f) = fetch(&mut h);
    assert_eq!(ranges(&f.partitions[0]), [(3, 6, AcknowledgeType::Gap)]);
}

/// Each acquired range takes its records at its delivery count: records between ranges or
/// past the last are not handed out, an acquired offset without a record is a gap, and the
/// acquired offsets past the last record read before a corrupt batch are released.
#[test]
fn each_acquired_range_takes_its_records_and_a_corrupt_batch_releases_the_rest() {
    let mut h = machine(&[1]);
    let (id, _, _) = fetch(&mut h);
    let acquired = [(1, 2, 1), (6, 8, 3), (11, 12, 2)];
    let offsets = [0, 1, 2, 3, 6, 7, 10, 11, 20];
    h.answer(id, fetch_answer(vec![part(0, &offsets, &acquired)]));
    assert_eq!(
        handed_out(&h.events()),
        [
            (0, 1, Some(1)),
            (0, 2, Some(1)),
            (0, 6, Some(3)),
            (0, 7, Some(3)),
            (0, 11, Some(2))
        ]
    );
    want(&mut h);
    let (id, _, f) = fetch(&mut h);
    assert_eq!(
        ranges(&f.partitions[0]),
        [(8, 8, AcknowledgeType::Gap), (12, 12, AcknowledgeType::Gap)]
    );

    // Offsets 30-31, 34-35 and 40: the batch at 34 fails its CRC.
    let mut answer = fetch_answer(vec![part(
        0,
        &[30, 31, 34, 35, 40],
        &[(30, 32, 1), (33, 41, 4)],
    )]);
    let ShareAnswer::Fetch(r) = &mut answer else {
        unreachable!("fetch_answer makes a Fetch answer");
    };
    let bytes = r.responses[0].partitions[0].records.take().unwrap();
    let mut bad = bytes.to_vec();
    bad[records(&[30, 31]).len() + 70] ^= 0xff;
    r.responses[0].partitions[0].records = Some(Bytes::from(bad));
    h.answer(id, answer);
    assert_eq!(
        handed_out(&h.events()),
        [(0, 30, Some(1)), (0, 31, Some(1))]
    );
    want(&mut h);
    let (_, _, f) = fetch(&mut h);
    // Nothing past the last good record is read: 32 on, gap or not, is released.
    assert_eq!(
        ranges(&f.partitions[0]),
        [(32, 41, AcknowledgeType::Release)]
    );
}
