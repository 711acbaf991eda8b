use std::time::Duration;

use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kcon_codec::kafka_protocol::protocol::{Decodable, Encodable};
use proptest::prelude::*;

use super::*;
use crate::position::{Backoff, LeaderAndEpoch};

const OLD: i32 = 1;
const NEW: i32 = 2;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn ctx(now: Instant, policy: ResetPolicy) -> AnswerContext {
    AnswerContext {
        now,
        reset_policy: policy,
        retry_backoff: Backoff::constant(Duration::from_millis(100)),
        replica_lease: Duration::from_secs(300),
    }
}

/// Consumed up to 10 (last record in epoch 3) from broker 1, which then lost leadership to
/// broker 2 at epoch 6: awaiting validation.
fn moved() -> PartitionState {
    let mut s = PartitionState::new(LeaderAndEpoch::new(OLD, 5));
    s.seek_validated(7, Some(3));
    s.advance(10, Some(3));
    assert!(s.update_leader(LeaderAndEpoch::new(NEW, 6), true));
    s
}

fn sent(s: &PartitionState) -> FetchPosition {
    // Invariant: `moved()` has a position.
    s.position().expect("a position")
}

fn ok(leader_epoch: i32, end_offset: i64) -> EpochAnswer {
    EpochAnswer {
        error_code: 0,
        leader_epoch,
        end_offset,
    }
}

fn err(code: i16) -> EpochAnswer {
    EpochAnswer {
        error_code: code,
        leader_epoch: -1,
        end_offset: -1,
    }
}

#[test]
fn plan_groups_by_new_leader_and_skips_brokers_without_the_api() {
    let now = Instant::now();
    let mut states: BTreeMap<TopicPartition, PartitionState> = BTreeMap::new();
    for p in 0..4 {
        let mut s = PartitionState::new(LeaderAndEpoch::new(OLD, 5));
        s.seek_validated(10, Some(3));
        // Partitions 0 and 2 move to broker 2, 1 to broker 3 (no OffsetForLeaderEpoch), 3 stays.
        let leader = [NEW, 3, NEW, OLD][p as usize];
        let epoch = if leader == OLD { 5 } else { 6 };
        s.update_leader(LeaderAndEpoch::new(leader, epoch), true);
        states.insert(tp(p), s);
    }
    let plan = plan_validation(states.iter_mut(), now, |b| b != 3);
    assert_eq!(plan.skipped, vec![tp(1)]);
    assert_eq!(states[&tp(1)].status(), FetchStatus::Fetching);
    assert_eq!(plan.requests.len(), 1);
    assert_eq!(plan.requests[0].broker, NEW);
    let names: Vec<_> = plan.requests[0]
        .queries
        .iter()
        .map(|q| q.partition.clone())
        .collect();
    assert_eq!(names, vec![tp(0), tp(2)]);
    assert_eq!(plan.requests[0].queries[0].position.offset_epoch, Some(3));
}

#[test]
fn plan_waits_for_the_backoff() {
    let now = Instant::now();
    let mut s = moved();
    s.validation_failed(now, &Backoff::constant(Duration::from_millis(100)));
    let key = tp(0);
    let plan = plan_validation([(&key, &mut s)], now, |_| true);
    assert!(plan.requests.is_empty());
    let plan = plan_validation([(&key, &mut s)], now + Duration::from_millis(100), |_| true);
    assert_eq!(plan.requests.len(), 1);
}

#[test]
fn can_validate_needs_a_version_kcon_speaks() {
    assert!(can_validate(&BrokerVersions::from_ranges([(23, 0, 2)])));
    assert!(can_validate(&BrokerVersions::from_ranges([(23, 0, 4)])));
    assert!(!can_validate(&BrokerVersions::from_ranges([(23, 0, 1)])));
    // Tansu does not offer OffsetForLeaderEpoch at all.
    assert!(!can_validate(&BrokerVersions::from_ranges([(1, 0, 17)])));
}

#[test]
fn request_encodes_at_v2_to_v4_and_refuses_others() {
    let s = moved();
    let req = ValidationRequest {
        broker: NEW,
        queries: vec![
            EpochQuery {
                partition: tp(1),
                position: sent(&s),
            },
            EpochQuery {
                partition: TopicPartition::new("a", 0),
                position: sent(&s),
            },
        ],
    };
    for v in 2..=4 {
        let r = offset_for_leader_epoch_request(&req, v).expect("v2-v4");
        assert_eq!(r.replica_id, BrokerId(-1));
        assert_eq!(r.topics.len(), 2);
        assert_eq!(r.topics[0].topic.0.as_str(), "a");
        let p = &r.topics[1].partitions[0];
        assert_eq!(
            (p.partition, p.current_leader_epoch, p.leader_epoch),
            (1, 6, 3)
        );
        let mut buf = bytes::BytesMut::new();
        r.encode(&mut buf, v).expect("encodes");
        let back = OffsetForLeaderEpochRequest::decode(&mut buf.freeze(), v).expect("decodes");
        assert_eq!(back.topics, r.topics, "v{v}");
    }
    assert!(offset_for_leader_epoch_request(&req, 1).is_err());
    assert!(offset_for_leader_epoch_request(&req, 5).is_err());
}

#[test]
fn answers_are_read_per_partition() {
    let response = OffsetForLeaderEpochResponse::default().with_topics(vec![
        OffsetForLeaderTopicResult::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![
                EpochEndOffset::default()
                    .with_partition(0)
                    .with_leader_epoch(3)
                    .with_end_offset(12),
                EpochEndOffset::default()
                    .with_partition(1)
                    .with_error_code(6),
            ]),
    ]);
    let answers = epoch_answers(&response);
    assert_eq!(answers[&tp(0)], ok(3, 12));
    assert_eq!(answers[&tp(1)].error_code, 6);
}

#[test]
fn end_at_or_past_the_position_is_valid() {
    let now = Instant::now();
    for end in [10, 11, 500] {
        let s = moved();
        let (s, actions) =
            s.on_validation_answer(&sent(&s), &ok(3, end), &ctx(now, ResetPolicy::None));
        assert!(actions.is_empty());
        assert_eq!(s.status(), FetchStatus::Fetching);
        assert_eq!(s.position().map(|p| p.offset), Some(10));
    }
}

#[test]
fn end_before_the_position_truncates_there_and_reports() {
    let now = Instant::now();
    let s = moved();
    let (mut s, actions) =
        s.on_validation_answer(&sent(&s), &ok(3, 7), &ctx(now, ResetPolicy::Earliest));
    assert_eq!(
        actions,
        vec![FetchAction::Report(PartitionError::LogTruncation {
            offset: 10,
            divergent: Some((7, 3)),
            repositioned: true,
        })]
    );
    assert_eq!(
        s.position(),
        Some(FetchPosition {
            offset: 7,
            offset_epoch: Some(3),
            epoch_read: false,
            current_leader: LeaderAndEpoch::new(NEW, 6),
        })
    );
    assert_eq!(s.fetch_target(now), Some(NEW));
}

#[test]
fn divergence_under_none_is_an_error_and_the_position_stays() {
    let now = Instant::now();
    let s = moved();
    let (s, actions) = s.on_validation_answer(&sent(&s), &ok(3, 7), &ctx(now, ResetPolicy::None));
    assert_eq!(
        actions,
        vec![FetchAction::Report(PartitionError::LogTruncation {
            offset: 10,
            divergent: Some((7, 3)),
            repositioned: false,
        })]
    );
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    assert!(!s.needs_validation(now));
    assert!(s.needs_validation(now + Duration::from_millis(100)));
}

#[test]
fn undefined_epoch_or_offset_resets_per_policy() {
    let now = Instant::now();
    for answer in [ok(-1, -1), ok(2, -1), ok(-1, 4)] {
        let s = moved();
        let (s, actions) =
            s.on_validation_answer(&sent(&s), &answer, &ctx(now, ResetPolicy::Latest));
        assert_eq!(
            actions,
            vec![
                FetchAction::Reset(ResetPolicy::Latest),
                FetchAction::Report(PartitionError::LogTruncation {
                    offset: 10,
                    divergent: None,
                    repositioned: true,
                })
            ]
        );
        assert_eq!(
            s.status(),
            FetchStatus::AwaitingReset(ResetReason::UnknownTruncation { offset: 10 })
        );
    }
    let s = moved();
    let (s, actions) = s.on_validation_answer(&sent(&s), &ok(-1, -1), &ctx(now, ResetPolicy::None));
    assert_eq!(actions.len(), 1);
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
}

#[test]
fn an_older_epoch_ending_past_the_position_is_a_truncation_of_unknown_point() {
    let s = moved();
    assert_eq!(classify(&sent(&s), &ok(2, 50)), Validation::Unknown);
    assert_eq!(
        classify(&sent(&s), &ok(2, 8)),
        Validation::Diverged {
            offset: 8,
            epoch: 2
        }
    );
}

/// A position whose epoch no record we read was in (ListOffsets `latest` answers the leader's
/// epoch as soon as it is elected, before anything is written in it) on a leader that never
/// had that epoch, whose older epoch ends at or past the position: nothing we read is missing,
/// so it is valid (as in the Java client and franz-go), and the position takes the leader's
/// epoch, which the next Fetch asks with. Taken for a truncation, a clean leader change reset
/// it by the policy, past what was written meanwhile.
#[test]
fn an_epoch_no_record_was_read_in_that_the_leader_lacks_is_valid_and_becomes_the_leaders() {
    let now = Instant::now();
    for end in [10, 50] {
        let mut s = PartitionState::new(LeaderAndEpoch::new(OLD, 3));
        s.request_reset(ResetReason::NoPosition);
        assert!(s.complete_reset(10, Some(3)));
        assert!(s.update_leader(LeaderAndEpoch::new(NEW, 4), true));
        let sent = sent(&s);
        assert!(!sent.epoch_read);
        assert_eq!(classify(&sent, &ok(2, end)), Validation::Valid);
        let (mut s, actions) =
            s.on_validation_answer(&sent, &ok(2, end), &ctx(now, ResetPolicy::Latest));
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(s.status(), FetchStatus::Fetching);
        assert_eq!(
            s.position().map(|p| (p.offset, p.offset_epoch)),
            Some((10, Some(2)))
        );
        assert_eq!(s.fetch_target(now), Some(NEW));
    }
    // Ending before it, the logs part there whatever the epoch's source.
    let mut s = PartitionState::new(LeaderAndEpoch::new(OLD, 3));
    s.request_reset(ResetReason::NoPosition);
    assert!(s.complete_reset(10, Some(3)));
    assert!(s.update_leader(LeaderAndEpoch::new(NEW, 4), true));
    assert_eq!(
        classify(&sent(&s), &ok(2, 8)),
        Validation::Diverged {
            offset: 8,
            epoch: 2
        }
    );
}

#[test]
fn retriable_errors_back_off_and_refresh_metadata() {
    let now = Instant::now();
    for code in [
        codes::NOT_LEADER_OR_FOLLOWER,
        codes::FENCED_LEADER_EPOCH,
        codes::UNKNOWN_LEADER_EPOCH,
        codes::LEADER_NOT_AVAILABLE,
        codes::REPLICA_NOT_AVAILABLE,
        codes::KAFKA_STORAGE_ERROR,
        codes::OFFSET_NOT_AVAILABLE,
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        codes::UNKNOWN_TOPIC_ID,
    ] {
        let s = moved();
        let (s, actions) =
            s.on_validation_answer(&sent(&s), &err(code), &ctx(now, ResetPolicy::Latest));
        assert_eq!(actions, vec![FetchAction::RefreshMetadata], "{code}");
        assert_eq!(s.status(), FetchStatus::AwaitingValidation);
        assert_eq!(s.retry_at(), Some(now + Duration::from_millis(100)));
    }
    let s = moved();
    let (_, actions) = s.on_validation_answer(
        &sent(&s),
        &err(codes::UNKNOWN_SERVER_ERROR),
        &ctx(now, ResetPolicy::Latest),
    );
    assert!(actions.is_empty());
}

#[test]
fn cluster_authorization_at_v2_skips_validation() {
    let now = Instant::now();
    let s = moved();
    let (s, actions) = s.on_validation_answer(
        &sent(&s),
        &err(codes::CLUSTER_AUTHORIZATION_FAILED),
        &ctx(now, ResetPolicy::Latest),
    );
    assert!(actions.is_empty());
    assert_eq!(s.status(), FetchStatus::Fetching);
}

#[test]
fn fatal_errors_are_reported() {
    let now = Instant::now();
    let s = moved();
    let (_, actions) = s.on_validation_answer(
        &sent(&s),
        &err(codes::TOPIC_AUTHORIZATION_FAILED),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(
        actions,
        vec![FetchAction::Report(PartitionError::TopicAuthorization)]
    );
    let s = moved();
    let (_, actions) = s.on_validation_answer(&sent(&s), &err(35), &ctx(now, ResetPolicy::Latest));
    assert_eq!(
        actions,
        vec![FetchAction::Report(PartitionError::Broker { code: 35 })]
    );
}

#[test]
fn answers_for_a_moved_position_are_ignored() {
    let now = Instant::now();
    let s = moved();
    let position = sent(&s);
    let mut seeked = s;
    seeked.seek_validated(20, Some(6));
    let (after, actions) =
        seeked.on_validation_answer(&position, &ok(3, 7), &ctx(now, ResetPolicy::Latest));
    assert!(actions.is_empty());
    assert_eq!(after, seeked);
    // Moved again by another leader change before the answer came.
    let mut again = s;
    again.update_leader(LeaderAndEpoch::new(3, 7), true);
    let (after, actions) =
        again.on_validation_answer(&position, &ok(3, 7), &ctx(now, ResetPolicy::Latest));
    assert!(actions.is_empty());
    assert_eq!(after, again);
}

/// The leader's `endOffsetFor(epoch)` as Apache Kafka's `LeaderEpochFileCache` computes it,
/// over a log given as the epoch of each offset.
fn end_offset_for(log: &[i32], epoch: i32) -> EpochAnswer {
    let Some(&latest) = log.last() else {
        return ok(-1, -1);
    };
    if epoch == latest {
        return ok(epoch, log.len() as i64);
    }
    let higher = log.iter().position(|&e| e > epoch);
    let floor = log.iter().rev().find(|&&e| e <= epoch);
    match (higher, floor) {
        (None, _) => ok(-1, -1),
        (Some(start), None) => ok(epoch, start as i64),
        (Some(start), Some(&f)) => ok(f, start as i64),
    }
}

/// Logs that keep Kafka's invariant (an offset and epoch found in two logs means the same
/// record and the same prefix): ours, and the leader's, which shares `k` records with ours and
/// then goes on in epochs above the shared prefix that ours does not use at those offsets.
fn logs() -> impl Strategy<Value = (Vec<i32>, Vec<i32>, usize)> {
    (
        prop::collection::vec(0..3i32, 1..12),
        0usize..12,
        prop::collection::vec(0..3i32, 0..8),
    )
        .prop_map(|(steps, k, tail_steps)| {
            let mut ours = Vec::new();
            let mut e = 0;
            for s in steps {
                e += s;
                ours.push(e);
            }
            let k = k.min(ours.len());
            let base = if k == 0 { 0 } else { ours[k - 1] };
            let mut leader = ours[..k].to_vec();
            let mut e = base;
            for s in tail_steps {
                e += s;
                // Skip epochs our log uses past the shared prefix: the leader never had them at
                // these offsets (or the invariant would make them the same records). The shared
                // prefix's last epoch may go on: the same records, one log holding more of them.
                while e != base && ours[k..].contains(&e) {
                    e += 1;
                }
                leader.push(e);
            }
            (ours, leader, k)
        })
}

proptest! {
    /// Validation against a model log: valid exactly when the leader's log holds everything
    /// consumed; a divergence never moves past our position, is exact when the leader has our
    /// epoch, and is never past the true divergence point's epoch end.
    #[test]
    fn validation_matches_a_model_log((ours, leader, k) in logs()) {
        let p = ours.len();
        let our_epoch = ours[p - 1];
        // The first offset where the logs differ (or the leader lacks the record), or p.
        let d = (0..p).find(|&i| leader.get(i) != Some(&ours[i])).unwrap_or(p);
        prop_assert!(d >= k.min(p));
        let position = FetchPosition {
            offset: p as i64,
            offset_epoch: Some(our_epoch),
            epoch_read: true,
            current_leader: LeaderAndEpoch::new(NEW, 100),
        };
        let answer = end_offset_for(&leader, our_epoch);
        let leader_has_our_epoch = leader.contains(&our_epoch);
        match classify(&position, &answer) {
            Validation::Valid => prop_assert_eq!(d, p),
            Validation::Diverged { offset, .. } => {
                prop_assert!(d < p);
                prop_assert!(offset < p as i64);
                prop_assert!(offset >= d as i64);
                if leader_has_our_epoch {
                    prop_assert_eq!(offset, d as i64);
                }
            }
            Validation::Unknown => {
                prop_assert!(d < p);
                prop_assert!(!leader_has_our_epoch);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn model_examples_cover_each_outcome() {
    let at = |ours: &[i32]| FetchPosition {
        offset: ours.len() as i64,
        offset_epoch: ours.last().copied(),
        epoch_read: true,
        current_leader: LeaderAndEpoch::new(NEW, 100),
    };
    let check = |ours: &[i32], leader: &[i32]| {
        let epoch = ours.last().copied().unwrap_or(-1);
        classify(&at(ours), &end_offset_for(leader, epoch))
    };
    // The leader holds all we read, and more.
    assert_eq!(check(&[0, 0, 1, 1], &[0, 0, 1, 1, 1, 2]), Validation::Valid);
    // The leader has our epoch but fewer of its records: exact divergence point.
    assert_eq!(
        check(&[0, 0, 1, 1], &[0, 0, 1, 2, 2]),
        Validation::Diverged {
            offset: 3,
            epoch: 1
        }
    );
    // The leader never had our epoch; its floor epoch ends before our position.
    assert_eq!(
        check(&[0, 0, 2, 2], &[0, 0, 1, 3]),
        Validation::Diverged {
            offset: 3,
            epoch: 1
        }
    );
    // ...or past it: where the logs part is unknown.
    assert_eq!(check(&[0, 2], &[0, 1, 1, 3]), Validation::Unknown);
    // Nothing at or below our epoch is left on the leader's log, or its log is empty.
    assert_eq!(
        check(&[0, 0], &[3, 3]),
        Validation::Diverged {
            offset: 0,
            epoch: 0
        }
    );
    assert_eq!(check(&[2, 2], &[0, 1]), Validation::Unknown);
    assert_eq!(check(&[2, 2], &[]), Validation::Unknown);
}
