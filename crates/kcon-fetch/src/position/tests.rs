use super::*;

const LEADER: i32 = 1;
const FOLLOWER: i32 = 2;

fn t0() -> Instant {
    Instant::now()
}

fn ctx(now: Instant, policy: ResetPolicy) -> AnswerContext {
    AnswerContext {
        now,
        reset_policy: policy,
        retry_backoff: Backoff::constant(Duration::from_millis(100)),
        replica_lease: Duration::from_secs(300),
    }
}

/// A partition fetching from offset 10 (last record read in epoch 3) from broker 1 at epoch 5.
fn fetching() -> PartitionState {
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    s.seek_validated(7, Some(3));
    s.advance(10, Some(3));
    s
}

fn answer(code: i16) -> PartitionAnswer {
    PartitionAnswer::error(LEADER, 10, code)
}

#[test]
fn new_partition_has_no_position_and_is_not_fetchable() {
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    assert_eq!(s.status(), FetchStatus::Initializing);
    assert_eq!(s.fetch_target(t0()), None);
}

#[test]
fn seek_with_both_epochs_awaits_validation_without_fetches_at_once() {
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    s.seek_unvalidated(10, Some(3));
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    assert!(s.needs_validation(t0()));
    assert_eq!(s.fetch_target(t0()), None);

    let mut no_epoch = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    no_epoch.seek_unvalidated(10, None);
    assert_eq!(no_epoch.status(), FetchStatus::Fetching);
    let mut no_leader_epoch = PartitionState::new(LeaderAndEpoch {
        leader: Some(LEADER),
        epoch: None,
    });
    no_leader_epoch.seek_unvalidated(10, Some(3));
    assert_eq!(no_leader_epoch.status(), FetchStatus::Fetching);
}

#[test]
fn reset_then_lookup_validates_like_a_seek() {
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    s.request_reset(ResetReason::NoPosition);
    assert_eq!(s.needs_reset(t0()), Some(ResetReason::NoPosition));
    assert!(s.complete_reset(42, Some(5)));
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    assert_eq!(s.position().map(|p| p.offset), Some(42));
    // A second answer (the reset was already done, or a seek came first) is ignored.
    assert!(!s.complete_reset(7, None));
    assert_eq!(s.position().map(|p| p.offset), Some(42));
}

#[test]
fn failed_reset_backs_off() {
    let now = t0();
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    s.request_reset(ResetReason::NoPosition);
    s.reset_failed(now, &Backoff::constant(Duration::from_millis(100)));
    assert_eq!(s.needs_reset(now), None);
    assert!(s.needs_reset(now + Duration::from_millis(100)).is_some());
}

#[test]
fn advance_moves_forward_only_while_fetching() {
    let mut s = fetching();
    s.advance(15, Some(4));
    assert_eq!(
        s.position().map(|p| (p.offset, p.offset_epoch)),
        Some((15, Some(4)))
    );
    s.advance(12, Some(9));
    assert_eq!(s.position().map(|p| p.offset), Some(15));
    // Magic < 2 records carry no epoch: the known one stays.
    s.advance(16, None);
    assert_eq!(s.position().map(|p| p.offset_epoch), Some(Some(4)));
    s.request_reset(ResetReason::NoPosition);
    s.advance(20, None);
    assert_eq!(s.position().map(|p| p.offset), Some(16));
}

#[test]
fn validation_can_go_back_to_where_dropped_records_began() {
    // Records up to 15 (epoch 4) were accepted, then the leader moved to epoch 6.
    let mut s = fetching();
    s.advance(15, Some(4));
    assert!(s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true));
    assert!(s.validate_from(10, Some(3)));
    let p = s.position().unwrap();
    assert_eq!((p.offset, p.offset_epoch), (10, Some(3)));
    assert_eq!(p.current_leader, LeaderAndEpoch::new(FOLLOWER, 6));
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    // Without an epoch there is nothing to validate: fetched from there at once.
    assert!(s.validate_from(10, None));
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    // Only a partition awaiting validation moves.
    assert!(!s.validate_from(7, Some(3)));
    s.request_reset(ResetReason::NoPosition);
    assert!(!s.validate_from(7, Some(3)));
    assert_eq!(s.position().map(|p| p.offset), Some(10));
}

#[test]
fn paused_partition_is_not_fetched_until_resumed() {
    let mut s = fetching();
    s.pause();
    assert!(s.is_paused());
    assert_eq!(s.fetch_target(t0()), None);
    s.resume();
    assert_eq!(s.fetch_target(t0()), Some(LEADER));
}

#[test]
fn leader_change_with_epochs_known_awaits_validation() {
    let mut s = fetching();
    assert!(s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true));
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    assert_eq!(
        s.position().map(|p| p.current_leader),
        Some(LeaderAndEpoch::new(FOLLOWER, 6))
    );
    // The same metadata again changes nothing and keeps the wait.
    assert!(s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true));
}

#[test]
fn epoch_bump_on_the_same_leader_also_validates() {
    let mut s = fetching();
    assert!(s.update_leader(LeaderAndEpoch::new(LEADER, 6), true));
}

#[test]
fn leader_change_without_offset_api_skips_validation() {
    let mut s = fetching();
    assert!(!s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), false));
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(s.fetch_target(t0()), Some(FOLLOWER));
}

#[test]
fn older_metadata_never_moves_the_leader_back() {
    let mut s = fetching();
    assert!(!s.update_leader(LeaderAndEpoch::new(FOLLOWER, 4), true));
    assert_eq!(s.leader(), LeaderAndEpoch::new(LEADER, 5));
}

#[test]
fn no_leader_stops_fetching_until_one_is_named() {
    let mut s = fetching();
    assert!(!s.update_leader(LeaderAndEpoch::default(), true));
    assert_eq!(s.fetch_target(t0()), None);
    assert!(s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true));
}

#[test]
fn leader_change_while_awaiting_reset_keeps_the_reset() {
    let mut s = fetching();
    s.request_reset(ResetReason::NoPosition);
    assert!(!s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true));
    assert!(matches!(s.status(), FetchStatus::AwaitingReset(_)));
}

#[test]
fn clean_answer_delivers() {
    let now = t0();
    let (s, actions) = fetching().on_fetch_answer(
        &PartitionAnswer::ok(LEADER, 10),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(actions, vec![FetchAction::Deliver]);
    assert_eq!(s, fetching());
}

#[test]
fn answer_for_an_old_position_is_discarded() {
    let now = t0();
    let (_, actions) = fetching().on_fetch_answer(
        &PartitionAnswer::ok(LEADER, 7),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(actions, vec![FetchAction::Discard]);
    let mut validating = fetching();
    validating.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true);
    let (_, actions) = validating.on_fetch_answer(
        &PartitionAnswer::ok(LEADER, 10),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(actions, vec![FetchAction::Discard]);
}

#[test]
fn leader_errors_refresh_metadata_and_back_off() {
    let now = t0();
    for code in [
        codes::NOT_LEADER_OR_FOLLOWER,
        codes::FENCED_LEADER_EPOCH,
        codes::UNKNOWN_LEADER_EPOCH,
        codes::REPLICA_NOT_AVAILABLE,
        codes::LEADER_NOT_AVAILABLE,
        codes::OFFSET_NOT_AVAILABLE,
    ] {
        let (mut s, actions) =
            fetching().on_fetch_answer(&answer(code), &ctx(now, ResetPolicy::Latest));
        assert_eq!(
            actions,
            vec![FetchAction::Discard, FetchAction::RefreshMetadata],
            "{code}"
        );
        assert_eq!(s.fetch_target(now), None, "{code}");
        assert_eq!(
            s.fetch_target(now + Duration::from_millis(100)),
            Some(LEADER),
            "{code}"
        );
        // Then the refreshed metadata moves the partition to the new leader.
        assert!(
            s.update_leader(LeaderAndEpoch::new(FOLLOWER, 6), true),
            "{code}"
        );
    }
}

#[test]
fn storage_error_is_retried_after_the_backoff() {
    let now = t0();
    let (mut s, actions) = fetching().on_fetch_answer(
        &answer(codes::KAFKA_STORAGE_ERROR),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(
        actions,
        vec![FetchAction::Discard, FetchAction::RefreshMetadata]
    );
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(s.fetch_target(now + Duration::from_millis(99)), None);
    assert_eq!(
        s.fetch_target(now + Duration::from_millis(100)),
        Some(LEADER)
    );
}

#[test]
fn leader_hint_moves_the_partition_before_the_refresh() {
    let now = t0();
    let a = PartitionAnswer {
        leader_hint: Some(LeaderAndEpoch::new(FOLLOWER, 6)),
        ..answer(codes::NOT_LEADER_OR_FOLLOWER)
    };
    let (s, actions) = fetching().on_fetch_answer(&a, &ctx(now, ResetPolicy::Latest));
    assert_eq!(
        actions,
        vec![FetchAction::Discard, FetchAction::RefreshMetadata]
    );
    assert_eq!(s.leader(), LeaderAndEpoch::new(FOLLOWER, 6));
    assert_eq!(s.status(), FetchStatus::AwaitingValidation);
    // A hint no newer than what we know is ignored.
    let old = PartitionAnswer {
        leader_hint: Some(LeaderAndEpoch::new(FOLLOWER, 5)),
        ..answer(codes::FENCED_LEADER_EPOCH)
    };
    let (s, _) = fetching().on_fetch_answer(&old, &ctx(now, ResetPolicy::Latest));
    assert_eq!(s.leader(), LeaderAndEpoch::new(LEADER, 5));
}

#[test]
fn out_of_range_resets_per_policy() {
    let now = t0();
    for policy in [
        ResetPolicy::Earliest,
        ResetPolicy::Latest,
        ResetPolicy::ByDuration(Duration::from_secs(60)),
    ] {
        let (s, actions) =
            fetching().on_fetch_answer(&answer(codes::OFFSET_OUT_OF_RANGE), &ctx(now, policy));
        assert_eq!(
            actions,
            vec![FetchAction::Discard, FetchAction::Reset(policy)]
        );
        assert_eq!(
            s.status(),
            FetchStatus::AwaitingReset(ResetReason::OffsetOutOfRange { offset: 10 })
        );
        assert_eq!(
            s.needs_reset(now),
            Some(ResetReason::OffsetOutOfRange { offset: 10 })
        );
    }
}

#[test]
fn out_of_range_under_none_is_an_error_and_the_position_stays() {
    let now = t0();
    let (s, actions) = fetching().on_fetch_answer(
        &answer(codes::OFFSET_OUT_OF_RANGE),
        &ctx(now, ResetPolicy::None),
    );
    assert_eq!(
        actions,
        vec![
            FetchAction::Discard,
            FetchAction::Report(PartitionError::OffsetOutOfRange { offset: 10 })
        ]
    );
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    assert!(!PartitionError::OffsetOutOfRange { offset: 10 }.is_retriable());
}

#[test]
fn out_of_range_for_an_old_offset_is_ignored() {
    let now = t0();
    let (s, actions) = fetching().on_fetch_answer(
        &PartitionAnswer::error(LEADER, 3, codes::OFFSET_OUT_OF_RANGE),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(s.status(), FetchStatus::Fetching);
}

#[test]
fn unknown_topic_errors_refresh_metadata() {
    let now = t0();
    for code in [
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        codes::UNKNOWN_TOPIC_ID,
        codes::INCONSISTENT_TOPIC_ID,
    ] {
        let (s, actions) =
            fetching().on_fetch_answer(&answer(code), &ctx(now, ResetPolicy::Latest));
        assert_eq!(
            actions,
            vec![FetchAction::Discard, FetchAction::RefreshMetadata],
            "{code}"
        );
        assert_eq!(s.retry_at(), Some(now + Duration::from_millis(100)));
    }
}

#[test]
fn corrupt_batch_delivers_what_precedes_it_and_reports_without_advancing() {
    let now = t0();
    let a = PartitionAnswer {
        corrupt_at: Some(14),
        ..PartitionAnswer::ok(LEADER, 10)
    };
    let (mut s, actions) = fetching().on_fetch_answer(&a, &ctx(now, ResetPolicy::Latest));
    assert_eq!(
        actions,
        vec![
            FetchAction::Deliver,
            FetchAction::Report(PartitionError::Corrupt { offset: 14 })
        ]
    );
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    // The application consumes up to the bad batch; the position stops there.
    s.advance(14, Some(3));
    assert_eq!(s.position().map(|p| p.offset), Some(14));
    assert_eq!(s.fetch_target(now), None);
}

#[test]
fn broker_corrupt_message_is_an_error_at_the_fetch_offset() {
    let now = t0();
    let (s, actions) = fetching().on_fetch_answer(
        &answer(codes::CORRUPT_MESSAGE),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(
        actions,
        vec![
            FetchAction::Discard,
            FetchAction::Report(PartitionError::Corrupt { offset: 10 })
        ]
    );
    assert_eq!(s.position().map(|p| p.offset), Some(10));
}

#[test]
fn authorization_and_other_errors_are_reported() {
    let now = t0();
    let (_, actions) = fetching().on_fetch_answer(
        &answer(codes::TOPIC_AUTHORIZATION_FAILED),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(
        actions,
        vec![
            FetchAction::Discard,
            FetchAction::Report(PartitionError::TopicAuthorization)
        ]
    );
    let (_, actions) = fetching().on_fetch_answer(&answer(87), &ctx(now, ResetPolicy::Latest));
    assert_eq!(
        actions,
        vec![
            FetchAction::Discard,
            FetchAction::Report(PartitionError::Broker { code: 87 })
        ]
    );
    assert!(PartitionError::Broker { code: 87 }.is_retriable());
    let (s, actions) = fetching().on_fetch_answer(
        &answer(codes::UNKNOWN_SERVER_ERROR),
        &ctx(now, ResetPolicy::Latest),
    );
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert!(s.retry_at().is_some());
}

fn redirected(now: Instant) -> PartitionState {
    let a = PartitionAnswer {
        preferred_read_replica: Some(FOLLOWER),
        ..PartitionAnswer::ok(LEADER, 10)
    };
    let (s, actions) = fetching().on_fetch_answer(&a, &ctx(now, ResetPolicy::Latest));
    assert_eq!(actions, vec![FetchAction::Deliver]);
    s
}

#[test]
fn preferred_read_replica_is_used_until_its_lease_ends() {
    let now = t0();
    let mut s = redirected(now);
    assert_eq!(s.fetch_target(now), Some(FOLLOWER));
    assert_eq!(
        s.fetch_target(now + Duration::from_secs(299)),
        Some(FOLLOWER)
    );
    assert_eq!(s.fetch_target(now + Duration::from_secs(300)), Some(LEADER));
    assert_eq!(s.read_replica(), None);
}

#[test]
fn naming_the_same_replica_again_does_not_extend_the_lease() {
    let now = t0();
    let s = redirected(now);
    let later = now + Duration::from_secs(100);
    let a = PartitionAnswer {
        preferred_read_replica: Some(FOLLOWER),
        ..PartitionAnswer::ok(LEADER, 10)
    };
    let (s, _) = s.on_fetch_answer(&a, &ctx(later, ResetPolicy::Latest));
    assert_eq!(
        s.read_replica().map(|r| r.expires_at),
        Some(now + Duration::from_secs(300))
    );
    // A follower's own answer names no replica and keeps the lease.
    let (s, _) = s.on_fetch_answer(
        &PartitionAnswer::ok(FOLLOWER, 10),
        &ctx(later, ResetPolicy::Latest),
    );
    assert!(s.read_replica().is_some());
}

#[test]
fn replica_errors_send_the_partition_back_to_the_leader() {
    let now = t0();
    for code in [
        codes::NOT_LEADER_OR_FOLLOWER,
        codes::KAFKA_STORAGE_ERROR,
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        codes::UNKNOWN_SERVER_ERROR,
        87,
    ] {
        let (mut s, _) = redirected(now).on_fetch_answer(
            &PartitionAnswer::error(FOLLOWER, 10, code),
            &ctx(now, ResetPolicy::Latest),
        );
        assert_eq!(
            s.fetch_target(now + Duration::from_secs(1)),
            Some(LEADER),
            "{code}"
        );
    }
}

#[test]
fn out_of_range_from_a_replica_goes_back_to_the_leader_without_reset() {
    let now = t0();
    let (mut s, actions) = redirected(now).on_fetch_answer(
        &PartitionAnswer::error(FOLLOWER, 10, codes::OFFSET_OUT_OF_RANGE),
        &ctx(now, ResetPolicy::None),
    );
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(s.fetch_target(now), Some(LEADER));
}

#[test]
fn leader_change_or_broker_failure_drops_the_replica() {
    let now = t0();
    let mut s = redirected(now);
    s.broker_failed(7);
    assert!(s.read_replica().is_some());
    s.broker_failed(FOLLOWER);
    assert_eq!(s.read_replica(), None);
    let mut s = redirected(now);
    s.update_leader(LeaderAndEpoch::new(3, 6), false);
    assert_eq!(s.fetch_target(now), Some(3));
    // The leader naming itself means "read from me".
    let a = PartitionAnswer {
        preferred_read_replica: Some(LEADER),
        ..PartitionAnswer::ok(LEADER, 10)
    };
    let (s, _) = redirected(now).on_fetch_answer(&a, &ctx(now, ResetPolicy::Latest));
    assert_eq!(s.read_replica(), None);
}

/// A Fetch answer from `broker` for offset 10 with a diverging epoch instead of records.
fn diverging(broker: i32, epoch: i32, end_offset: i64) -> PartitionAnswer {
    PartitionAnswer {
        diverging: Some(DivergingEpoch { epoch, end_offset }),
        ..PartitionAnswer::ok(broker, 10)
    }
}

/// The truncation a diverging epoch reports for the position at 10.
fn truncation(divergent: Option<(i64, i32)>, repositioned: bool) -> FetchAction {
    FetchAction::Report(PartitionError::LogTruncation {
        offset: 10,
        divergent,
        repositioned,
    })
}

#[test]
fn a_diverging_epoch_from_the_leader_moves_the_position_where_the_logs_part() {
    let now = t0();
    for policy in [
        ResetPolicy::Earliest,
        ResetPolicy::Latest,
        ResetPolicy::ByDuration(Duration::from_secs(60)),
    ] {
        // Our epoch 3 ends at 7 on the leader's log: what we read from 7 on is not on it.
        let (mut s, actions) =
            fetching().on_fetch_answer(&diverging(LEADER, 3, 7), &ctx(now, policy));
        assert_eq!(
            actions,
            vec![FetchAction::Discard, truncation(Some((7, 3)), true)],
            "{policy:?}"
        );
        assert_eq!(s.status(), FetchStatus::Fetching);
        assert_eq!(
            s.position(),
            Some(FetchPosition {
                offset: 7,
                offset_epoch: Some(3),
                epoch_read: false,
                current_leader: LeaderAndEpoch::new(LEADER, 5),
            })
        );
        assert_eq!(
            s.fetch_target(now),
            Some(LEADER),
            "fetched from there at once"
        );
    }
}

#[test]
fn a_diverging_epoch_under_none_is_an_error_and_fetched_again_only_after_the_backoff() {
    let now = t0();
    let (mut s, actions) =
        fetching().on_fetch_answer(&diverging(LEADER, 3, 7), &ctx(now, ResetPolicy::None));
    assert_eq!(
        actions,
        vec![FetchAction::Discard, truncation(Some((7, 3)), false)]
    );
    assert_eq!(s.status(), FetchStatus::Fetching);
    assert_eq!(
        s.position().map(|p| (p.offset, p.offset_epoch)),
        Some((10, Some(3)))
    );
    assert_eq!(s.fetch_target(now), None, "no tight loop");
    assert_eq!(
        s.fetch_target(now + Duration::from_millis(100)),
        Some(LEADER)
    );
}

#[test]
fn a_diverging_epoch_that_cannot_place_the_divergence_resets_per_policy() {
    let now = t0();
    // The leader never had our epoch 3, and its epoch 2 ends past our position.
    let (s, actions) =
        fetching().on_fetch_answer(&diverging(LEADER, 2, 12), &ctx(now, ResetPolicy::Earliest));
    assert_eq!(
        actions,
        vec![
            FetchAction::Discard,
            FetchAction::Reset(ResetPolicy::Earliest),
            truncation(None, true)
        ]
    );
    assert_eq!(
        s.status(),
        FetchStatus::AwaitingReset(ResetReason::UnknownTruncation { offset: 10 })
    );
}

#[test]
fn a_diverging_epoch_the_leader_lacks_but_no_record_read_was_in_takes_the_leaders_epoch() {
    let now = t0();
    // At 10 from a reset (ListOffsets `latest` gave epoch 3, which nothing was written in);
    // the leader never had epoch 3, and its epoch 2 ends past the position: nothing read is
    // missing. Fetched again at once, with the leader's epoch.
    let mut s = PartitionState::new(LeaderAndEpoch::new(LEADER, 5));
    s.seek_validated(10, Some(3));
    let (mut s, actions) =
        s.on_fetch_answer(&diverging(LEADER, 2, 12), &ctx(now, ResetPolicy::Latest));
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(
        s.position().map(|p| (p.offset, p.offset_epoch)),
        Some((10, Some(2)))
    );
    assert_eq!(s.fetch_target(now), Some(LEADER));
}

#[test]
fn a_diverging_epoch_that_diverges_from_nothing_is_fetched_again_after_the_backoff() {
    let now = t0();
    // Our epoch 3 ends at 12, past our position: by its own numbers nothing diverges.
    let (mut s, actions) =
        fetching().on_fetch_answer(&diverging(LEADER, 3, 12), &ctx(now, ResetPolicy::Latest));
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    assert_eq!(s.fetch_target(now), None, "no tight loop");
    assert_eq!(
        s.fetch_target(now + Duration::from_millis(100)),
        Some(LEADER)
    );
}

#[test]
fn a_diverging_epoch_from_a_read_replica_goes_back_to_the_leader() {
    let now = t0();
    // A follower that lacks an epoch the leader began is behind, not truncated.
    let (mut s, actions) = redirected(now)
        .on_fetch_answer(&diverging(FOLLOWER, 2, 10), &ctx(now, ResetPolicy::Latest));
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(
        s.position().map(|p| (p.offset, p.offset_epoch)),
        Some((10, Some(3)))
    );
    assert_eq!(s.fetch_target(now), Some(LEADER));
}

#[test]
fn a_diverging_epoch_for_an_old_offset_is_discarded() {
    let now = t0();
    let stale = PartitionAnswer {
        fetch_offset: 4,
        ..diverging(LEADER, 3, 2)
    };
    let (mut s, actions) = fetching().on_fetch_answer(&stale, &ctx(now, ResetPolicy::Latest));
    assert_eq!(actions, vec![FetchAction::Discard]);
    assert_eq!(s.position().map(|p| p.offset), Some(10));
    assert_eq!(s.fetch_target(now), Some(LEADER));
}

#[test]
fn errors_display_what_happened() {
    let e = PartitionError::LogTruncation {
        offset: 10,
        divergent: Some((7, 3)),
        repositioned: false,
    };
    assert_eq!(
        e.to_string(),
        "log truncation detected at position 10, first divergent offset 7 (epoch 3); \
         auto.offset.reset=none, the application must seek"
    );
    assert_eq!(
        PartitionError::Corrupt { offset: 4 }.to_string(),
        "corrupt record batch at offset 4"
    );
}
