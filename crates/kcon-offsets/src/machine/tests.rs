use std::time::Duration;

use kcon_core::coordinator::FoundCoordinator;

use super::*;
use crate::messages::PartitionOffset;

const T0: u64 = 1_000;

type Harness = kcon_core::harness::Harness<CommitMachine>;

fn coordinator(id: i32) -> Coordinator {
    Coordinator {
        id,
        host: "h".into(),
        port: 9092,
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn config(auto: bool) -> OffsetsConfig {
    let mut c = OffsetsConfig::new("g");
    c.enable_auto_commit = auto;
    c.auto_commit_interval = Duration::from_secs(1);
    c
}

fn harness(config: OffsetsConfig) -> Harness {
    let now = Instant::now() + Duration::from_secs(T0);
    Harness::new(CommitMachine::new(config, now, 7), now)
}

/// What the commit machine's tests script beyond the harness.
trait Script {
    fn expect_request(&mut self) -> Outgoing;
    fn find(&mut self, id: i32);
    fn expect_commit(&mut self) -> (RequestId, CommitRequest);
    fn answer_commit(&mut self, id: RequestId, c: &CommitRequest, code: i16);
    fn committed(&mut self) -> Vec<(CommitId, CommitResult)>;
}

impl Script for Harness {
    fn expect_request(&mut self) -> Outgoing {
        self.request().expect("a request")
    }

    /// Answers the FindCoordinator the machine sends next with coordinator `id`.
    fn find(&mut self, id: i32) {
        let out = self.expect_request();
        assert!(
            matches!(out.request, OffsetsRequest::FindCoordinator { .. }),
            "{out:?}"
        );
        assert_eq!(out.target, Target::Any);
        self.answer(
            out.id,
            OffsetsResponse::FindCoordinator(FoundCoordinator {
                error_code: 0,
                error_message: None,
                coordinator: Some(coordinator(id)),
            }),
        );
    }

    fn expect_commit(&mut self) -> (RequestId, CommitRequest) {
        let out = self.expect_request();
        match out.request {
            OffsetsRequest::OffsetCommit(c) => (out.id, c),
            other => panic!("expected OffsetCommit, got {other:?}"),
        }
    }

    fn answer_commit(&mut self, id: RequestId, c: &CommitRequest, code: i16) {
        let partitions = c.offsets.keys().map(|tp| (tp.clone(), code)).collect();
        self.answer(id, OffsetsResponse::OffsetCommit { partitions });
    }

    fn committed(&mut self) -> Vec<(CommitId, CommitResult)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                OffsetsEvent::Committed { id, result, .. } => Some((id, result)),
                _ => None,
            })
            .collect()
    }
}

type CommitResult = Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>;

/// A stored record offset is committed as offset + 1 with its leader epoch, with the
/// member's generation; the acknowledgement completes the sync commit.
#[test]
fn sync_commit_sends_the_next_offset_with_epoch_and_generation() {
    let mut h = harness(config(false));
    h.machine.set_generation(5, "member-1");
    h.machine.store_offset(tp(0), 41, Some(3));
    let id = h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(2);
    let (rid, c) = h.expect_commit();
    assert_eq!(c.generation_id, 5);
    assert_eq!(c.member_id, "member-1");
    assert_eq!(
        c.offsets[&tp(0)],
        OffsetAndMetadata {
            offset: 42,
            leader_epoch: Some(3),
            metadata: String::new()
        }
    );
    assert!(h.request().is_none(), "one commit at a time");
    h.answer_commit(rid, &c, 0);
    let done = h.committed();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, id);
    assert_eq!(done[0].1.as_ref().unwrap()[&tp(0)].offset, 42);
    assert_eq!(h.machine.committed()[&tp(0)].offset, 42);
    assert!(h.machine.commits_idle());
}

/// Outside a generation a commit is an inactive group's: generation -1, empty member id.
#[test]
fn commits_outside_a_generation_are_an_inactive_groups() {
    let mut h = harness(config(false));
    h.machine.store(tp(1), OffsetAndMetadata::new(7));
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (_, c) = h.expect_commit();
    assert_eq!((c.generation_id, c.member_id.as_str()), (-1, ""));
}

/// REBALANCE_IN_PROGRESS fails the commit and keeps the offsets stored, so the next commit
/// (in the next generation) sends them again.
#[test]
fn rebalance_in_progress_fails_and_keeps_offsets_stored() {
    let mut h = harness(config(false));
    h.machine.set_generation(1, "m");
    h.machine.store_offset(tp(0), 9, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (rid, c) = h.expect_commit();
    h.answer_commit(rid, &c, code::REBALANCE_IN_PROGRESS);
    let done = h.committed();
    assert_eq!(done[0].1, Err(CommitError::RebalanceInProgress));
    assert_eq!(h.machine.stored()[&tp(0)].offset, 10);
    assert!(h.machine.committed().is_empty());
    h.machine.set_generation(2, "m");
    h.machine.commit_stored(h.now, CommitKind::Auto);
    let (rid, c) = h.expect_commit();
    assert_eq!((c.generation_id, c.offsets[&tp(0)].offset), (2, 10));
    h.answer_commit(rid, &c, 0);
    assert!(h.committed()[0].1.is_ok());
}

/// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID fail the commit as a lost
/// generation; OFFSET_METADATA_TOO_LARGE and the authorization errors fail it too; none is
/// retried.
#[test]
fn refusals_fail_without_retry() {
    for (code, lost) in [
        (22, true),
        (25, true),
        (82, true),
        (110, true),
        (12, false),
        (29, false),
        (30, false),
    ] {
        let mut h = harness(config(false));
        h.machine.store_offset(tp(0), 1, None);
        h.machine.commit_stored(h.now, CommitKind::Sync);
        h.find(1);
        let (rid, c) = h.expect_commit();
        h.answer_commit(rid, &c, code);
        let done = h.committed();
        let Err(e) = &done[0].1 else {
            panic!("error {code} did not fail the commit");
        };
        assert!(
            matches!(e, CommitError::Broker { error_code, .. } if *error_code == code),
            "{e:?}"
        );
        assert_eq!(e.is_generation_lost(), lost, "{code}");
        assert!(h.request().is_none(), "error {code} was retried");
        assert!(h.machine.poll_timeout().is_none());
    }
}

/// STALE_MEMBER_EPOCH (KIP-848): the commit waits for the member's next epoch and goes
/// again at once with it, the same offsets; with no new epoch it is retried after the
/// backoff, until its deadline.
#[test]
fn a_stale_member_epoch_retries_with_the_next_epoch() {
    let mut h = harness(config(false));
    h.machine.set_generation(4, "m");
    h.machine.store_offset(tp(0), 7, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (rid, c) = h.expect_commit();
    assert_eq!(c.generation_id, 4);
    h.answer_commit(rid, &c, code::STALE_MEMBER_EPOCH);
    assert!(h.committed().is_empty(), "not failed");
    assert!(h.request().is_none(), "not at once with the same epoch");
    h.machine.set_generation(5, "m");
    let (rid, c) = h.expect_commit();
    assert_eq!((c.generation_id, c.offsets[&tp(0)].offset), (5, 8));
    h.answer_commit(rid, &c, code::STALE_MEMBER_EPOCH);
    // No new epoch: after the backoff.
    let waited = h.run_to_timeout();
    assert!(waited > Duration::ZERO);
    let (rid, c) = h.expect_commit();
    assert_eq!(c.generation_id, 5);
    h.answer_commit(rid, &c, 0);
    assert!(matches!(&h.committed()[..], [(_, Ok(o))] if o[&tp(0)].offset == 8));
}

/// A commit waiting to be retried loses the partitions forgotten meanwhile (revoked or
/// lost): it goes with the rest, or fails at once with nothing left.
#[test]
fn forgotten_partitions_leave_queued_commits() {
    let mut h = harness(config(false));
    h.machine.set_generation(4, "m");
    h.machine.store_offset(tp(0), 7, None);
    h.machine.store_offset(tp(1), 3, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (rid, c) = h.expect_commit();
    h.answer_commit(rid, &c, code::STALE_MEMBER_EPOCH);
    h.machine.forget(&[tp(0)]);
    h.machine.set_generation(5, "m");
    let (rid, c) = h.expect_commit();
    assert_eq!(c.offsets.keys().collect::<Vec<_>>(), [&tp(1)]);
    h.answer_commit(rid, &c, code::STALE_MEMBER_EPOCH);
    h.machine.forget(&[tp(1)]);
    assert!(matches!(
        &h.committed()[..],
        [(_, Err(CommitError::PartitionsGone { partitions }))] if *partitions == [tp(1)]
    ));
    assert!(h.request().is_none());
}

/// A partition forgotten while the commit carrying it is in flight does not go again when
/// that commit is retried (found by the `commit_machine` fuzz target: the retry carried it to
/// the coordinator under the membership that gave it up), and a retry left with nothing fails
/// as `PartitionsGone`; one that succeeds does not record it as committed.
#[test]
fn partitions_forgotten_in_flight_leave_the_retry() {
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 7, None);
    h.machine.store_offset(tp(1), 3, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (rid, c) = h.expect_commit();
    h.machine.forget(&[tp(0)]);
    h.answer_commit(rid, &c, code::COORDINATOR_LOAD_IN_PROGRESS);
    h.run_to_timeout();
    let (rid, c) = h.expect_commit();
    assert_eq!(c.offsets.keys().collect::<Vec<_>>(), [&tp(1)]);
    h.machine.forget(&[tp(1)]);
    h.answer_commit(rid, &c, code::REQUEST_TIMED_OUT);
    assert!(matches!(
        &h.committed()[..],
        [(_, Err(CommitError::PartitionsGone { partitions }))] if *partitions == [tp(1)]
    ));
    assert!(h.request().is_none());

    h.machine.store_offset(tp(0), 8, None);
    h.machine.store_offset(tp(1), 4, None);
    h.machine.commit_stored(h.now, CommitKind::Async);
    // After the backoff the failures in a row left.
    h.run_to_timeout();
    let (rid, c) = h.expect_commit();
    h.machine.forget(&[tp(0)]);
    h.answer_commit(rid, &c, 0);
    assert!(matches!(&h.committed()[..], [(_, Ok(o))] if o.len() == 2));
    assert_eq!(h.machine.committed().keys().collect::<Vec<_>>(), [&tp(1)]);
}

/// A member fenced while a commit waits: the coordinator gave its partitions away, so the
/// commit refused for a stale epoch does not go again under the member's next epoch, and
/// nothing stored before the loss does either; what is stored after it is committed.
#[test]
fn a_loss_of_everything_owned_drops_what_was_stored() {
    let mut h = harness(config(false));
    h.machine.set_generation(4, "m");
    h.machine.store_offset(tp(0), 7, None);
    h.machine.store_offset(tp(1), 3, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let (rid, c) = h.expect_commit();
    h.answer_commit(rid, &c, code::STALE_MEMBER_EPOCH);
    h.machine.store_offset(tp(2), 5, None);
    h.machine.commit_stored(h.now, CommitKind::Async);
    h.machine.set_losses(1);
    h.machine.set_generation(9, "m");
    assert!(h.request().is_none());
    let results = h.committed();
    assert_eq!(results.len(), 2, "{results:?}");
    for (_, r) in &results {
        assert!(
            matches!(r, Err(CommitError::PartitionsGone { .. })),
            "{r:?}"
        );
    }
    // Told again, the same count changes nothing.
    h.machine.store_offset(tp(1), 4, None);
    h.machine.set_losses(1);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.run_to_timeout();
    let (_, c) = h.expect_commit();
    assert_eq!(c.generation_id, 9);
    assert_eq!(c.offsets.keys().collect::<Vec<_>>(), [&tp(1)]);
    assert_eq!(c.offsets[&tp(1)].offset, 5);
}

/// NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE: look the coordinator up again and retry
/// there; a lost connection does the same.
#[test]
fn coordinator_errors_rediscover_and_retry() {
    for fail in [
        Some(code::NOT_COORDINATOR),
        Some(code::COORDINATOR_NOT_AVAILABLE),
        None,
    ] {
        let mut h = harness(config(false));
        h.machine.store_offset(tp(0), 1, None);
        h.machine.commit_stored(h.now, CommitKind::Sync);
        h.find(1);
        let (rid, c) = h.expect_commit();
        match fail {
            Some(code) => h.answer_commit(rid, &c, code),
            None => h.machine.handle_response(
                h.now,
                rid,
                Err(RequestFailure::retriable("connection closed")),
            ),
        }
        assert!(h.committed().is_empty());
        assert!(h.machine.coordinator().is_none());
        // The lookup happens at once; the commit waits for its backoff.
        h.find(2);
        assert!(h.request().is_none());
        let waited = h.run_to_timeout();
        assert!(
            waited >= Duration::from_millis(80) && waited <= Duration::from_millis(120),
            "{waited:?}"
        );
        let out = h.expect_request();
        assert_eq!(out.target, Target::Coordinator(coordinator(2)));
        let OffsetsRequest::OffsetCommit(c) = out.request else {
            panic!("not a commit");
        };
        h.answer_commit(out.id, &c, 0);
        assert!(h.committed()[0].1.is_ok());
    }
}

/// COORDINATOR_LOAD_IN_PROGRESS retries on the same coordinator with a growing backoff,
/// until `default.api.timeout.ms`, then the commit times out naming the last error.
#[test]
fn load_in_progress_retries_until_the_deadline() {
    let mut cfg = config(false);
    cfg.default_api_timeout = Duration::from_secs(3);
    let mut h = harness(cfg);
    h.machine.store_offset(tp(0), 1, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    h.find(1);
    let start = h.now;
    let mut sends = 0;
    loop {
        if let Some(out) = h.request() {
            let OffsetsRequest::OffsetCommit(c) = out.request else {
                panic!("the coordinator was looked up again: {out:?}");
            };
            sends += 1;
            h.answer_commit(out.id, &c, code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        let done = h.committed();
        if let Some((_, r)) = done.into_iter().next() {
            let Err(CommitError::TimedOut { last }) = r else {
                panic!("{r:?}");
            };
            assert!(last.contains("14"), "{last}");
            break;
        }
        h.run_to_timeout();
    }
    assert!(
        h.now - start <= Duration::from_secs(4),
        "{:?}",
        h.now - start
    );
    assert!(
        (4..=10).contains(&sends),
        "{sends} sends (backoff 100 ms doubling to 1 s)"
    );
}

/// Async commits: a later one asked for before an earlier one was sent supersedes it and
/// carries its partitions; commits go one at a time, in order.
#[test]
fn later_async_commit_supersedes_a_queued_one() {
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 1, None);
    let first = h.machine.commit_stored(h.now, CommitKind::Async);
    h.find(1);
    let (rid1, c1) = h.expect_commit();
    // While `first` is in flight, two more async commits: the later (`third`) supersedes
    // the queued `second`.
    h.machine.store_offset(tp(0), 5, None);
    h.machine.store_offset(tp(1), 2, None);
    let mut only_p1 = BTreeMap::new();
    only_p1.insert(tp(1), OffsetAndMetadata::new(3));
    let second = h.machine.commit_stored(h.now, CommitKind::Async);
    let third = h.machine.commit(h.now, CommitKind::Async, only_p1);
    assert!(
        h.request().is_none(),
        "the second commit waits for the first"
    );
    let done = h.committed();
    assert_eq!(
        done,
        vec![(second, Err(CommitError::Superseded { by: third }))]
    );
    h.answer_commit(rid1, &c1, 0);
    assert_eq!(h.committed()[0].0, first);
    let (rid3, c3) = h.expect_commit();
    // `third`'s own offset wins for p1; p0 comes from the superseded `second`.
    assert_eq!(c3.offsets[&tp(0)].offset, 6);
    assert_eq!(c3.offsets[&tp(1)].offset, 3);
    h.answer_commit(rid3, &c3, 0);
    let done = h.committed();
    assert_eq!(done[0].0, third);
    assert_eq!(h.machine.committed()[&tp(0)].offset, 6);
}

/// A sync commit is never merged: it completes with its own acknowledgement.
#[test]
fn sync_commits_are_not_superseded() {
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 1, None);
    let a = h.machine.commit_stored(h.now, CommitKind::Sync);
    let b = h.machine.commit_stored(h.now, CommitKind::Async);
    h.find(1);
    let (r, c) = h.expect_commit();
    h.answer_commit(r, &c, 0);
    let (r, c) = h.expect_commit();
    h.answer_commit(r, &c, 0);
    let ids: Vec<_> = h
        .committed()
        .into_iter()
        .map(|(id, r)| (id, r.is_ok()))
        .collect();
    assert_eq!(ids, vec![(a, true), (b, true)]);
}

/// A failed async commit waiting for its retry goes along with a later async commit
/// instead of being sent twice.
#[test]
fn retried_async_commit_merges_into_the_next() {
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 1, None);
    let a = h.machine.commit_stored(h.now, CommitKind::Async);
    h.find(1);
    let (r, c) = h.expect_commit();
    let mut p1 = BTreeMap::new();
    p1.insert(tp(1), OffsetAndMetadata::new(9));
    let b = h.machine.commit(h.now, CommitKind::Async, p1);
    h.answer_commit(r, &c, code::COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(
        h.committed(),
        vec![(a, Err(CommitError::Superseded { by: b }))]
    );
    h.run_to_timeout();
    let (r, c) = h.expect_commit();
    assert_eq!(c.offsets.len(), 2);
    h.answer_commit(r, &c, 0);
    assert_eq!(h.committed()[0].0, b);
}

/// Auto-commit fires every `auto.commit.interval.ms`, sends only offsets not yet
/// acknowledged, and sends nothing when there is nothing new.
#[test]
fn auto_commit_runs_on_its_interval() {
    let mut h = harness(config(true));
    let start = h.now;
    assert_eq!(
        h.machine.poll_timeout(),
        Some(start + Duration::from_secs(1))
    );
    // Nothing stored: the timer fires and sends nothing.
    h.run_to_timeout();
    assert!(h.request().is_none());
    assert_eq!(
        h.machine.poll_timeout(),
        Some(start + Duration::from_secs(2))
    );
    h.machine.store_offset(tp(0), 10, Some(1));
    h.advance(Duration::from_millis(500));
    assert!(h.request().is_none(), "auto-commit before its interval");
    assert_eq!(h.run_to_timeout(), Duration::from_millis(500));
    h.find(1);
    let (r, c) = h.expect_commit();
    assert_eq!(c.offsets[&tp(0)].offset, 11);
    h.answer_commit(r, &c, 0);
    assert!(h.committed()[0].1.is_ok());
    // Acknowledged and unchanged: the next round sends nothing.
    h.run_to_timeout();
    assert!(h.request().is_none());
    // A new offset goes in the next round, and only that partition's.
    h.machine.store_offset(tp(1), 3, None);
    h.run_to_timeout();
    let (_, c) = h.expect_commit();
    assert_eq!(c.offsets.keys().cloned().collect::<Vec<_>>(), vec![tp(1)]);
}

/// Close commits what auto-commit has not yet; without auto-commit it commits nothing.
#[test]
fn close_makes_the_final_auto_commit() {
    let mut h = harness(config(true));
    h.machine.store_offset(tp(0), 1, None);
    assert!(h.machine.close(h.now).is_some());
    assert!(
        h.machine.poll_timeout().is_some_and(|t| t > h.now),
        "only the commit's deadline"
    );
    h.find(1);
    let (r, c) = h.expect_commit();
    h.answer_commit(r, &c, 0);
    assert!(h.machine.commits_idle());
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 1, None);
    assert!(h.machine.close(h.now).is_none());
}

fn fetch_answer(error_code: i16, parts: &[(i32, i16, i64)]) -> OffsetsResponse {
    OffsetsResponse::OffsetFetch {
        error_code,
        partitions: parts
            .iter()
            .map(|&(p, e, o)| {
                (
                    tp(p),
                    PartitionOffset {
                        error_code: e,
                        committed: (o >= 0).then(|| OffsetAndMetadata::new(o)),
                    },
                )
            })
            .collect(),
    }
}

fn expect_fetch(h: &mut Harness) -> (RequestId, CommittedRequest) {
    let out = h.expect_request();
    match out.request {
        OffsetsRequest::OffsetFetch(f) => (out.id, f),
        other => panic!("expected OffsetFetch, got {other:?}"),
    }
}

/// Under read_committed the fetch requires stable offsets; UNSTABLE_OFFSET_COMMIT is
/// retried after the backoff; partitions without an offset come back as `None`.
#[test]
fn fetch_requires_stable_and_retries_unstable() {
    let mut cfg = config(false);
    cfg.isolation_level = IsolationLevel::ReadCommitted;
    let mut h = harness(cfg);
    let asked: BTreeSet<_> = [tp(0), tp(1)].into();
    let id = h.machine.fetch_committed(h.now, Some(asked));
    h.find(1);
    let (r, f) = expect_fetch(&mut h);
    assert!(f.require_stable);
    h.answer(
        r,
        fetch_answer(0, &[(0, code::UNSTABLE_OFFSET_COMMIT, -1), (1, 0, -1)]),
    );
    assert!(h.events().is_empty());
    assert!(h.request().is_none());
    h.run_to_timeout();
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(0, &[(0, 0, 12)]));
    let ev = h.events();
    let OffsetsEvent::CommittedOffsets {
        id: got,
        result: Ok(map),
    } = &ev[0]
    else {
        panic!("{ev:?}");
    };
    assert_eq!(*got, id);
    assert_eq!(map[&tp(0)].as_ref().map(|o| o.offset), Some(12));
    assert_eq!(map[&tp(1)], None);
    assert_eq!(h.machine.committed()[&tp(0)].offset, 12);
}

/// UNSTABLE_OFFSET_COMMIT at the group level (where librdkafka's mock cluster puts it) is
/// retried like the partition-level one.
#[test]
fn group_level_unstable_offset_commit_is_retried() {
    let mut h = harness(config(false));
    h.machine.fetch_committed(h.now, None);
    h.find(1);
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(code::UNSTABLE_OFFSET_COMMIT, &[]));
    assert!(h.events().is_empty());
    h.run_to_timeout();
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(0, &[(0, 0, 1)]));
    assert!(matches!(
        &h.events()[0],
        OffsetsEvent::CommittedOffsets { result: Ok(_), .. }
    ));
}

/// Fetch errors: NOT_COORDINATOR rediscovers, COORDINATOR_LOAD_IN_PROGRESS retries,
/// GROUP_AUTHORIZATION_FAILED and partition errors fail.
#[test]
fn fetch_errors() {
    let mut h = harness(config(false));
    h.machine.fetch_committed(h.now, None);
    h.find(1);
    let (r, f) = expect_fetch(&mut h);
    assert!(!f.require_stable && f.partitions.is_none());
    h.answer(r, fetch_answer(code::NOT_COORDINATOR, &[]));
    h.find(2);
    h.run_to_timeout();
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(code::COORDINATOR_LOAD_IN_PROGRESS, &[]));
    h.run_to_timeout();
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(30, &[]));
    let ev = h.events();
    assert!(
        matches!(
            &ev[0],
            OffsetsEvent::CommittedOffsets {
                result: Err(CommittedError::Broker { error_code: 30, .. }),
                ..
            }
        ),
        "{ev:?}"
    );
    h.machine.fetch_committed(h.now, None);
    let (r, _) = expect_fetch(&mut h);
    h.answer(r, fetch_answer(0, &[(0, 29, -1)]));
    let ev = h.events();
    assert!(
        matches!(
            &ev[0],
            OffsetsEvent::CommittedOffsets {
                result: Err(CommittedError::Broker { error_code: 29, .. }),
                ..
            }
        ),
        "{ev:?}"
    );
}

/// GROUP_AUTHORIZATION_FAILED on FindCoordinator fails everything waiting; retriable
/// lookup errors back off.
#[test]
fn coordinator_lookup_errors() {
    let mut h = harness(config(false));
    h.machine.store_offset(tp(0), 1, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    let out = h.expect_request();
    h.answer(
        out.id,
        OffsetsResponse::FindCoordinator(FoundCoordinator {
            error_code: 15,
            error_message: None,
            coordinator: None,
        }),
    );
    assert!(h.request().is_none());
    assert!(h.run_to_timeout() >= Duration::from_millis(80));
    let out = h.expect_request();
    h.answer(
        out.id,
        OffsetsResponse::FindCoordinator(FoundCoordinator {
            error_code: 30,
            error_message: None,
            coordinator: None,
        }),
    );
    assert!(matches!(&h.committed()[0].1, Err(CommitError::Request(r)) if r.contains("30")));
    assert!(h.request().is_none());
}

/// Answers to requests the machine no longer waits for, and unknown ids, are ignored.
#[test]
fn stray_answers_are_ignored() {
    let mut h = harness(config(false));
    h.answer(RequestId::new(999), fetch_answer(0, &[]));
    h.machine.store_offset(tp(0), 1, None);
    h.machine.set_coordinator(Some(coordinator(3)));
    h.machine.commit_stored(h.now, CommitKind::Sync);
    let (r, c) = h.expect_commit();
    h.answer_commit(r, &c, 0);
    h.answer_commit(r, &c, code::ILLEGAL_GENERATION);
    let done = h.committed();
    assert_eq!(done.len(), 1);
    assert!(done[0].1.is_ok());
}

/// A commit or a lookup answered with another API's answer fails with what came, and the
/// commit queued behind it goes next.
#[test]
fn answers_of_the_wrong_kind_fail_the_request() {
    let mut h = harness(config(false));
    h.machine.set_coordinator(Some(coordinator(3)));
    h.machine.store_offset(tp(0), 1, None);
    let first = h.machine.commit_stored(h.now, CommitKind::Sync);
    let second = h.machine.commit_stored(h.now, CommitKind::Sync);
    let (r, _) = h.expect_commit();
    h.answer(r, fetch_answer(0, &[]));
    let done = h.committed();
    assert!(
        matches!(&done[..], [(id, Err(CommitError::UnexpectedAnswer { answer }))]
            if *id == first && answer.starts_with("OffsetFetch")),
        "{done:?}"
    );
    let (r, c) = h.expect_commit();
    h.answer_commit(r, &c, 0);
    assert!(matches!(&h.committed()[..], [(id, Ok(_))] if *id == second));

    let id = h.machine.fetch_committed(h.now, None);
    let (r, _) = expect_fetch(&mut h);
    h.answer(
        r,
        OffsetsResponse::OffsetCommit {
            partitions: BTreeMap::new(),
        },
    );
    let events = h.events();
    assert!(
        matches!(&events[..], [OffsetsEvent::CommittedOffsets { id: i, result: Err(e) }]
            if *i == id && e.to_string().starts_with("OffsetFetch got an unexpected answer: OffsetCommit")),
        "{events:?}"
    );
    assert!(h.machine.commits_idle());
}

/// The pool's failure when the coordinator closes the connection on a request.
fn hang_up() -> RequestFailure {
    RequestFailure {
        retriable: true,
        reason: "broker 2 (h:9092): the broker closed the connection".into(),
        broker: Some("broker 2 (h:9092)".into()),
        version: Some(9),
        cause: None,
    }
}

/// Asserts waits between tries grow as KIP-580's backoff at the defaults: 100, 200, 400,
/// 800 ms, then 1 s, each ±20 % and never above 1 s.
fn assert_backs_off(waits: &[Duration]) {
    for (i, w) in waits.iter().enumerate() {
        let nominal = (100u64 << i.min(10)).min(1000);
        let (low, high) = (nominal * 8 / 10, (nominal * 12 / 10).min(1000));
        assert!(
            *w >= Duration::from_millis(low) && *w <= Duration::from_millis(high),
            "wait {i} is {w:?}, not {low}..={high} ms: {waits:?}"
        );
    }
}

/// A coordinator that hangs up on every OffsetCommit, while FindCoordinator finds it at once:
/// the commits back off exponentially across lookups (and across commits: one asked for
/// meanwhile waits too), the failure is reported once it has lasted, and a commit that gets
/// through starts the backoff over and reports the recovery.
#[test]
fn commits_the_coordinator_hangs_up_on_back_off_across_lookups_and_commits() {
    let mut c = config(false);
    c.default_api_timeout = Duration::from_secs(60);
    let mut h = harness(c);
    h.machine.set_generation(1, "m");
    h.machine.store_offset(tp(0), 1, None);
    h.machine.commit_stored(h.now, CommitKind::Sync);
    let t0 = h.now;
    let mut sent = Vec::new();
    let mut reports = Vec::new();
    while h.now < t0 + Duration::from_secs(12) {
        let out = loop {
            match h.request() {
                Some(out) if matches!(out.request, OffsetsRequest::FindCoordinator { .. }) => {
                    h.answer(
                        out.id,
                        OffsetsResponse::FindCoordinator(FoundCoordinator {
                            error_code: 0,
                            error_message: None,
                            coordinator: Some(coordinator(2)),
                        }),
                    );
                }
                Some(out) => break out,
                None => {
                    h.run_to_timeout();
                }
            }
        };
        assert!(
            matches!(out.request, OffsetsRequest::OffsetCommit(_)),
            "{out:?}"
        );
        assert!(sent.len() < 100, "100 commits in {:?}", h.now - t0);
        sent.push(h.now);
        h.fail(out.id, hang_up());
        if sent.len() == 3 {
            // An async commit asked for now waits for the backoff too.
            h.machine.store_offset(tp(1), 5, None);
            h.machine.commit_stored(h.now, CommitKind::Async);
        }
        reports.extend(h.events().into_iter().filter_map(|e| match e {
            OffsetsEvent::PersistentFailure(r) => Some(r),
            _ => None,
        }));
    }
    let waits: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_backs_off(&waits);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        (r.api, r.version, r.broker.as_deref()),
        (ApiKey::OffsetCommit, Some(9), Some("broker 2 (h:9092)"))
    );
    assert_eq!(r.subject, "commits of group g");
    // Through at last: the recovery is told, and the next failure backs off from the start.
    let (id, c) = loop {
        match h.request() {
            Some(out) if matches!(out.request, OffsetsRequest::OffsetCommit(_)) => {
                let OffsetsRequest::OffsetCommit(c) = out.request else {
                    unreachable!()
                };
                break (out.id, c);
            }
            Some(out) => h.answer(
                out.id,
                OffsetsResponse::FindCoordinator(FoundCoordinator {
                    error_code: 0,
                    error_message: None,
                    coordinator: Some(coordinator(2)),
                }),
            ),
            None => {
                h.run_to_timeout();
            }
        }
    };
    h.answer_commit(id, &c, 0);
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, OffsetsEvent::PersistentFailure(r) if r.recovered)),
        "{events:?}"
    );
}
