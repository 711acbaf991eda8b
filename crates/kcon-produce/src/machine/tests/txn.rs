//! The transactional producer against a model of a transaction coordinator, a group
//! coordinator and a partition leader on a made-up clock: what the model ends up holding
//! (records committed or aborted, offsets kept) is what a read_committed reader and the group
//! would see.

use kcon_codec::kafka_protocol::ResponseError as E;
use kcon_core::ConsumerGroupMetadata;
use kcon_core::coordinator::TRANSACTION;

use super::*;
use crate::error::Outcome as ErrorOutcome;
use crate::machine::sim::{Api, Cluster, FAULT_APIS, fault, record_to, txn_config};
use crate::machine::txn::TxnOffset;

/// What a run saw of the machine's events.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) delivered: Vec<u32>,
    pub(super) failed: Vec<(u32, ProduceError)>,
    pub(super) calls: Vec<(CallId, TxnOp, Result<(), ProduceError>)>,
}

/// Answers every request the machine sends (losing the answers the cluster's `lose` names)
/// and fires its timers, up to `limit` of virtual time, until it asks nothing more; collects
/// its events.
pub(super) fn run(
    m: &mut SenderMachine<u32>,
    cluster: &mut Cluster,
    now: &mut Instant,
    seen: &mut Seen,
    limit: Duration,
) {
    let end = *now + limit;
    loop {
        while let Some(out) = m.poll_request(*now) {
            let reply = cluster.reply(out.request);
            m.handle_response(*now, out.id, reply);
        }
        while let Some(event) = m.poll_event() {
            match event {
                Event::Answer {
                    waiter,
                    result: Ok(_),
                } => seen.delivered.push(waiter),
                Event::Answer {
                    waiter,
                    result: Err(e),
                } => seen.failed.push((waiter, e)),
                Event::Flushed(_) => {}
                Event::Transaction { calls, op, result } => {
                    assert!(!calls.is_empty(), "{op:?} told to nobody");
                    for call in calls {
                        seen.calls.push((call, op, result.clone()));
                    }
                }
            }
        }
        match m.poll_timeout() {
            Some(at) if at <= end => {
                *now = at.max(*now);
                m.handle_timeout(*now);
            }
            _ => break,
        }
    }
}

/// Makes `call` and runs until it is answered; its outcome.
fn call(
    m: &mut SenderMachine<u32>,
    cluster: &mut Cluster,
    now: &mut Instant,
    seen: &mut Seen,
    call: TxnCall,
) -> Result<(), ProduceError> {
    let id = m.transaction(*now, call);
    run(m, cluster, now, seen, Duration::from_secs(60));
    let i = seen
        .calls
        .iter()
        .position(|(c, _, _)| *c == id)
        .expect("the call was answered");
    seen.calls.remove(i).2
}

fn group(generation: i32) -> ConsumerGroupMetadata {
    ConsumerGroupMetadata::member("g", generation, "member-1", None)
}

fn offsets(offset: i64) -> Vec<TxnOffset> {
    vec![TxnOffset {
        partition: TopicPartition::new("t", 0),
        offset,
        leader_epoch: None,
        metadata: None,
    }]
}

fn started() -> (SenderMachine<u32>, Cluster, Instant, Seen) {
    started_on(Cluster::new())
}

/// A producer initialized on `cluster`.
fn started_on(mut cluster: Cluster) -> (SenderMachine<u32>, Cluster, Instant, Seen) {
    let now = Instant::now();
    let (mut m, _) = machine(txn_config(&[]), metadata_of(2), now);
    let mut now = now;
    let mut seen = Seen::default();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Init).expect("initialized");
    (m, cluster, now, seen)
}

#[test]
fn a_committed_transaction_writes_its_records_and_offsets_once() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    assert_eq!(cluster.seen, [Api::Find, Api::Init]);
    assert_eq!(cluster.epoch, 0);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    for i in 0..6 {
        m.record(now, record_to(i, (i % 2) as i32, now));
    }
    let sent = TxnCall::SendOffsets {
        offsets: offsets(17),
        group: group(3),
    };
    call(&mut m, &mut cluster, &mut now, &mut seen, sent).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(seen.delivered.len(), 6);
    assert!(seen.failed.is_empty());
    assert_eq!(
        cluster.committed_records(),
        BTreeMap::from([(0, 3), (1, 3)])
    );
    assert!(cluster.log.iter().all(|(w, _)| w.transactional));
    assert_eq!(cluster.offsets, BTreeMap::from([(0, 17)]));
    // Each partition was added before its first batch (the model refuses a batch otherwise):
    // t-0 with the first record, t-1 once that answer was in, so two requests.
    let adds = cluster
        .seen
        .iter()
        .filter(|a| **a == Api::AddPartitions)
        .count();
    assert_eq!(adds, 2);
    // The next transaction adds its partitions afresh.
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(10, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(
        cluster.committed_records(),
        BTreeMap::from([(0, 4), (1, 3)])
    );
    assert_eq!(cluster.ended, [Some(true), Some(true)]);
}

#[test]
fn an_aborted_transaction_leaves_no_records_and_no_offsets() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    for i in 0..4 {
        m.record(now, record_to(i, 0, now));
    }
    let sent = TxnCall::SendOffsets {
        offsets: offsets(9),
        group: group(3),
    };
    call(&mut m, &mut cluster, &mut now, &mut seen, sent).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::new());
    assert_eq!(cluster.aborted_records(), 4);
    assert!(cluster.offsets.is_empty());
    // Aborting with nothing sent ends nothing at the coordinator.
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    let ends = cluster.seen.iter().filter(|a| **a == Api::EndTxn).count();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert_eq!(
        cluster.seen.iter().filter(|a| **a == Api::EndTxn).count(),
        ends
    );
}

#[test]
fn records_not_sent_when_the_abort_comes_fail_and_are_never_written() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    // Lingering (5 ms) when the abort comes: never sent.
    m.record(now, record_to(1, 0, now));
    let id = m.transaction(now, TxnCall::Abort);
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    assert!(seen.calls.iter().any(|(c, _, r)| *c == id && r.is_ok()));
    assert_eq!(seen.failed.len(), 1);
    assert_eq!(seen.failed[0].1.outcome(), ErrorOutcome::Abort);
    assert!(cluster.log.is_empty());
}

#[test]
fn retriable_coordinator_errors_are_retried_and_a_moved_coordinator_looked_up_again() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    cluster.push_error(Api::AddPartitions, E::ConcurrentTransactions);
    cluster.push_error(Api::AddOffsets, E::CoordinatorLoadInProgress);
    cluster.push_error(Api::TxnOffsetCommit, E::NotCoordinator);
    cluster.push_error(Api::EndTxn, E::NotCoordinator);
    cluster.push_error(Api::EndTxn, E::ConcurrentTransactions);
    let before = cluster.seen.len();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 1, now));
    let sent = TxnCall::SendOffsets {
        offsets: offsets(5),
        group: group(3),
    };
    let t0 = now;
    call(&mut m, &mut cluster, &mut now, &mut seen, sent).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(1, 1)]));
    assert_eq!(cluster.offsets, BTreeMap::from([(0, 5)]));
    // Each retry waited for the backoff.
    assert!(now - t0 >= Duration::from_millis(80 * 4), "{:?}", now - t0);
    let seen_now = &cluster.seen[before..];
    let count = |api| seen_now.iter().filter(|a| **a == api).count();
    assert_eq!(count(Api::AddPartitions), 2);
    assert_eq!(count(Api::AddOffsets), 2);
    assert_eq!(count(Api::TxnOffsetCommit), 2);
    assert_eq!(count(Api::EndTxn), 3);
    // The group coordinator was found once, and again after NOT_COORDINATOR; the
    // transaction coordinator again after EndTxn's.
    assert_eq!(count(Api::Find), 3);
    assert!(seen.failed.is_empty());
}

#[test]
fn a_fenced_producer_fails_every_call_after_and_can_only_close() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    cluster.push_error(Api::Produce, E::ProducerFenced);
    m.record(now, record_to(1, 0, now));
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    assert_eq!(e.code(), Some(E::ProducerFenced));
    assert_eq!(seen.failed.len(), 1);
    for next in [TxnCall::Begin, TxnCall::Abort, TxnCall::Commit] {
        let e = call(&mut m, &mut cluster, &mut now, &mut seen, next).unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    }
    m.record(now, record_to(2, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    assert_eq!(seen.failed.last().map(|f| f.0), Some(2));
    m.close(now);
    assert!(m.is_finished());
    assert_eq!(cluster.committed_records(), BTreeMap::new());
}

#[test]
fn fencing_at_the_coordinator_is_fatal_too() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    cluster.push_error(Api::EndTxn, E::ProducerFenced);
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
}

/// The coordinator aborts a transaction open longer than `transaction.timeout.ms` and bumps the
/// epoch (KIP-588); the leader refuses the next batch with INVALID_PRODUCER_EPOCH. That fails
/// the transaction, not the producer: the record and the commit are abortable and name
/// `transaction.timeout.ms`; the abort sends no EndTxn (the coordinator would refuse the old
/// epoch's as fenced) but bumps the epoch naming the old one; the next transaction commits.
#[test]
fn a_batch_refused_after_the_coordinator_timed_the_transaction_out_fails_it_abortably() {
    timed_out_transaction_aborted_and_the_next_committed(Cluster::new(), Api::Init, 2);
}

/// The same at transaction version 2 (its epoch bumped, its markers written): the abort is an
/// EndTxn at the old epoch, which the coordinator answers with the new one, and no
/// InitProducerId goes out.
#[test]
fn at_transaction_version_2_a_timed_out_transaction_is_aborted_by_an_end_txn_at_the_old_epoch() {
    timed_out_transaction_aborted_and_the_next_committed(Cluster::v2(), Api::EndTxn, 1);
}

/// A transaction on `cluster` that its coordinator times out: its next record and its commit
/// fail abortably, naming `transaction.timeout.ms`; the abort sends `abort_sends` alone and
/// leaves the producer at `epoch`; the next transaction commits.
fn timed_out_transaction_aborted_and_the_next_committed(
    cluster: Cluster,
    abort_sends: Api,
    epoch: i16,
) {
    let (mut m, mut cluster, mut now, mut seen) = started_on(cluster);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    assert_eq!(seen.delivered, [1]);
    // transaction.timeout.ms (60 s by default) passes; the coordinator aborts.
    now += Duration::from_secs(61);
    cluster.abort_under_a_new_epoch(true);
    m.record(now, record_to(2, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    let (waiter, e) = seen.failed.last().expect("the record failed");
    assert_eq!(*waiter, 2);
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    assert_eq!(e.code(), Some(E::InvalidProducerEpoch), "{e}");
    assert!(
        e.to_string()
            .contains("stayed open longer than transaction.timeout.ms (60000 ms"),
        "{e}"
    );
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    assert_eq!(e.code(), Some(E::InvalidProducerEpoch), "{e}");
    let before = cluster.seen.len();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert_eq!(cluster.seen[before..], [abort_sends]);
    assert_eq!(cluster.epoch, epoch);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(3, 1, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(seen.delivered, [1, 3]);
    assert_eq!(cluster.committed_records(), BTreeMap::from([(1, 1)]));
    assert_eq!(cluster.aborted_records(), 1);
}

/// An abort called while a batch is in flight that the leader then refuses with
/// INVALID_PRODUCER_EPOCH (the coordinator timed the transaction out meanwhile): the abort,
/// which waited for the batch, sends no EndTxn and bumps the epoch.
#[test]
fn an_abort_waiting_for_a_batch_the_leader_refuses_after_a_timeout_bumps_the_epoch() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    // Past linger.ms: AddPartitionsToTxn is answered, the Produce request held.
    now += Duration::from_millis(10);
    m.handle_timeout(now);
    let produce = loop {
        let out = m.poll_request(now).expect("a request");
        if matches!(out.request, Request::Produce(..)) {
            break out;
        }
        let response = cluster.answer(out.request);
        m.handle_response(now, out.id, Ok(response));
    };
    now += Duration::from_secs(61);
    cluster.abort_under_a_new_epoch(true);
    let abort = m.transaction(now, TxnCall::Abort);
    let before = cluster.seen.len();
    let response = cluster.answer(produce.request);
    m.handle_response(now, produce.id, Ok(response));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    assert!(
        seen.calls.iter().any(|(c, _, r)| *c == abort && r.is_ok()),
        "{:?}",
        seen.calls
    );
    assert_eq!(cluster.seen[before..], [Api::Produce, Api::Init]);
    let (_, e) = seen.failed.last().expect("the record failed");
    assert_eq!(e.code(), Some(E::InvalidProducerEpoch), "{e}");
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 1)]));
}

/// The same refusal when another producer with the transactional id took over: the record and
/// the commit are abortable (the leader cannot tell the two apart), and the error says a
/// takeover is likely, the transaction being younger than `transaction.timeout.ms`; the
/// abort's epoch bump is refused as fenced, and the producer can only be closed.
#[test]
fn a_batch_refused_after_a_takeover_fails_the_transaction_and_its_abort_is_fenced() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    cluster.abort_under_a_new_epoch(false);
    m.record(now, record_to(2, 0, now));
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    let (_, failed) = seen.failed.last().expect("the record failed");
    assert_eq!(failed.outcome(), ErrorOutcome::Abort, "{failed}");
    assert!(failed.to_string().contains("took over"), "{failed}");
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    assert_eq!(e.code(), Some(E::ProducerFenced), "{e}");
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    assert_eq!(cluster.committed_records(), BTreeMap::new());
}

/// From a coordinator, INVALID_PRODUCER_EPOCH stays fatal, as the Java client treats it (an
/// older coordinator's way of saying PRODUCER_FENCED; a newer one answers a timed-out
/// transaction's EndTxn with PRODUCER_FENCED, as the model does).
#[test]
fn invalid_producer_epoch_from_a_coordinator_is_fatal() {
    for api in [
        Api::AddPartitions,
        Api::AddOffsets,
        Api::TxnOffsetCommit,
        Api::EndTxn,
    ] {
        let (mut m, mut cluster, mut now, mut seen) = started();
        call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
        m.record(now, record_to(1, 0, now));
        cluster.push_error(api, E::InvalidProducerEpoch);
        let offsets = TxnCall::SendOffsets {
            offsets: offsets(8),
            group: group(3),
        };
        let e = call(&mut m, &mut cluster, &mut now, &mut seen, offsets)
            .and_then(|()| call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit))
            .unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{api:?}: {e}");
        assert_eq!(e.code(), Some(E::InvalidProducerEpoch), "{api:?}");
        let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{api:?}: {e}");
    }
}

#[test]
fn offsets_of_a_stale_generation_fail_the_transaction_which_aborts_and_the_next_commits() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    let stale = TxnCall::SendOffsets {
        offsets: offsets(8),
        group: group(2),
    };
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, stale).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    assert_eq!(e.code(), Some(E::IllegalGeneration));
    // The commit is refused with the same error; the abort goes through.
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert!(cluster.offsets.is_empty());
    assert_eq!(cluster.committed_records(), BTreeMap::new());
    // The next transaction, with the current generation, commits.
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    let current = TxnCall::SendOffsets {
        offsets: offsets(8),
        group: group(3),
    };
    call(&mut m, &mut cluster, &mut now, &mut seen, current).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.offsets, BTreeMap::from([(0, 8)]));
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 1)]));
}

#[test]
fn a_lost_sequence_fails_the_transaction_and_its_abort_bumps_the_epoch() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    cluster.push_error(Api::Produce, E::UnknownProducerId);
    m.record(now, record_to(1, 0, now));
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    assert_eq!(seen.failed.len(), 1);
    let inits = cluster.seen.iter().filter(|a| **a == Api::Init).count();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert_eq!(
        cluster.seen.iter().filter(|a| **a == Api::Init).count(),
        inits + 1
    );
    assert_eq!(cluster.epoch, 1);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 1)]));
    assert!(cluster.log.iter().all(|(w, _)| w.producer_epoch == 1));
}

#[test]
fn calls_the_state_does_not_allow_are_refused_and_change_nothing() {
    let now = Instant::now();
    let (mut m, _) = machine(txn_config(&[]), metadata_of(2), now);
    let mut cluster = Cluster::new();
    let mut now = now;
    let mut seen = Seen::default();
    for early in [TxnCall::Begin, TxnCall::Commit, TxnCall::Abort] {
        let e = call(&mut m, &mut cluster, &mut now, &mut seen, early).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TransactionState, "{e}");
        assert!(e.to_string().contains("init_transactions first"), "{e}");
    }
    // A record outside a transaction fails alone.
    m.record(now, record_to(1, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    assert_eq!(seen.failed[0].1.kind(), ErrorKind::TransactionState);
    assert!(cluster.seen.is_empty(), "{:?}", cluster.seen);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Init).unwrap();
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Init).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TransactionState, "{e}");
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert!(e.to_string().contains("no transaction in progress"), "{e}");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap_err();
    assert!(e.to_string().contains("in progress already"), "{e}");
    // A second commit while the first runs joins it.
    m.record(now, record_to(2, 0, now));
    let first = m.transaction(now, TxnCall::Commit);
    let second = m.transaction(now, TxnCall::Commit);
    let abort = m.transaction(now, TxnCall::Abort);
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    let outcome = |id| {
        seen.calls
            .iter()
            .find(|(c, _, _)| *c == id)
            .map(|(_, _, r)| r.clone())
            .expect("answered")
    };
    assert!(outcome(first).is_ok() && outcome(second).is_ok());
    let e = outcome(abort).unwrap_err();
    assert!(
        e.to_string()
            .contains("while commit_transaction is unfinished"),
        "{e}"
    );
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 1)]));
}

/// An outcome none of a call's callers read (each gave up: the driver hands it back with
/// `unread`) answers the same call made again at once, sending nothing; any other call drops
/// it. The callers of a call joined while it ran are named in its one event.
#[test]
fn an_unread_outcome_answers_the_same_call_made_again_and_no_other() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    let first = m.transaction(now, TxnCall::Commit);
    let joined = m.transaction(now, TxnCall::Commit);
    let mut told = Vec::new();
    let end = now + Duration::from_secs(60);
    while told.is_empty() {
        while let Some(out) = m.poll_request(now) {
            let response = cluster.answer(out.request);
            m.handle_response(now, out.id, Ok(response));
        }
        while let Some(event) = m.poll_event() {
            if let Event::Transaction { calls, op, result } = event {
                told.push((calls, op, result));
            }
        }
        match m.poll_timeout() {
            Some(at) if at <= end && told.is_empty() => {
                now = at.max(now);
                m.handle_timeout(now);
            }
            _ => break,
        }
    }
    let [(calls, op, result)] = &told[..] else {
        panic!("one outcome for the commit and the call that joined it: {told:?}");
    };
    assert_eq!(
        (calls.as_slice(), *op),
        ([first, joined].as_slice(), TxnOp::Commit)
    );
    assert!(result.is_ok(), "{result:?}");
    // Nobody read it: the commit made again gets it at once, and nothing is sent.
    m.unread(TxnOp::Commit, result.clone());
    let sent = cluster.seen.len();
    let again = m.transaction(now, TxnCall::Commit);
    match m.poll_event() {
        Some(Event::Transaction { calls, op, result }) => {
            assert_eq!((calls, op), (vec![again], TxnOp::Commit));
            assert!(result.is_ok(), "{result:?}");
        }
        other => panic!("the kept outcome at once, not {other:?}"),
    }
    assert!(m.poll_request(now).is_none());
    assert_eq!(cluster.seen.len(), sent);
    // Kept once only: the next commit is a call of its own, refused outside a transaction.
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert!(e.to_string().contains("no transaction in progress"), "{e}");
    // Another call drops a kept outcome: after a begin, the commit made again runs.
    m.unread(TxnOp::Commit, Err(ProduceError::closed()));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 2)]));
}

#[test]
fn closing_inside_a_transaction_aborts_it() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    // Sent (the linger passes) but not committed.
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_millis(10),
    );
    assert_eq!(seen.delivered, [1]);
    m.close(now);
    assert!(!m.is_finished());
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    assert!(m.is_finished());
    assert_eq!(cluster.ended, [Some(false)]);
    assert_eq!(cluster.aborted_records(), 1);
}

#[test]
fn closing_while_offsets_are_sent_aborts_the_transaction_once_they_are_answered() {
    // The call sending the offsets was given up by its caller (dropped, cancelled), and the
    // producer closed at once: the offsets still go, then the transaction is aborted rather
    // than left open for the coordinator's transaction.timeout.ms.
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_millis(10),
    );
    assert_eq!(seen.delivered, [1]);
    let sent = TxnCall::SendOffsets {
        offsets: offsets(5),
        group: group(3),
    };
    m.transaction(now, sent);
    m.close(now);
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    assert!(m.is_finished());
    assert_eq!(cluster.ended, [Some(false)]);
    assert_eq!(cluster.aborted_records(), 1);
    assert!(cluster.offsets.is_empty(), "{:?}", cluster.offsets);
    let (_, op, result) = &seen.calls[0];
    assert_eq!(*op, TxnOp::SendOffsets);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn a_transaction_coordinator_lookup_asks_for_the_transactional_id() {
    let now = Instant::now();
    let (mut m, _) = machine(txn_config(&[]), metadata_of(2), now);
    m.transaction(now, TxnCall::Init);
    let out = m.poll_request(now).expect("a lookup");
    assert_eq!(out.target, Target::Any);
    match out.request {
        Request::FindCoordinator { key, key_type } => {
            assert_eq!((key.as_str(), key_type), ("tx-1", TRANSACTION));
        }
        other => panic!("not a lookup: {other:?}"),
    }
}

#[test]
fn a_close_gives_up_a_transaction_the_coordinator_never_ends() {
    let t0 = Instant::now();
    let config = txn_config(&[
        ("delivery.timeout.ms", "10000"),
        ("request.timeout.ms", "5000"),
    ]);
    let (mut m, _) = machine(config, metadata_of(2), t0);
    let mut cluster = Cluster::new();
    let mut now = t0;
    let mut seen = Seen::default();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Init).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    for _ in 0..1000 {
        cluster.push_error(Api::EndTxn, E::CoordinatorLoadInProgress);
    }
    let commit = m.transaction(now, TxnCall::Commit);
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(5),
    );
    assert!(seen.calls.iter().all(|(c, _, _)| *c != commit));
    let closed_at = now;
    m.close(now);
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(60),
    );
    assert!(m.is_finished());
    // Given up delivery.timeout.ms after the close, not before.
    assert!(
        now >= closed_at + Duration::from_secs(10),
        "{:?}",
        now - closed_at
    );
    assert!(
        now <= closed_at + Duration::from_secs(12),
        "{:?}",
        now - closed_at
    );
    let (_, _, result) = seen
        .calls
        .iter()
        .find(|(c, _, _)| *c == commit)
        .expect("the commit was answered");
    let e = result.clone().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.to_string().contains("transaction.timeout.ms"), "{e}");
    assert_eq!(cluster.ended, [None]);
}

/// Transactions under faults drawn from a seed: errors pushed for every API (retriable,
/// a moved coordinator, a refused topic, a lost sequence, a stale generation, now and then
/// fencing), commits and aborts chosen at random. Whatever happens, every call is answered, a commit that succeeded made exactly its
/// records and offsets visible, and nothing of an aborted or failed transaction is.
#[test]
fn random_faults_never_commit_what_was_not_committed() {
    random_faults_on(Cluster::new);
}

#[test]
fn random_faults_never_commit_what_was_not_committed_at_transaction_version_2() {
    random_faults_on(Cluster::v2);
}

/// Transactions of random records and offsets, committed or aborted, with random errors pushed
/// on every API, on clusters `cluster()` makes: a read_committed reader and the group see
/// exactly what was committed, and every call is answered once.
fn random_faults_on(cluster: fn() -> Cluster) {
    // How often each ending was met, over every seed: none may be missing.
    let (mut committed, mut aborted_after_error, mut fatal) = (0, 0, 0);
    for seed in 0..2000u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut m, mut cluster, mut now, mut seen) = started_on(cluster());
        // Records per partition a read_committed reader must see, and the group's offset.
        let mut expected: BTreeMap<i32, usize> = BTreeMap::new();
        let mut expected_offset: Option<i64> = None;
        let mut waiter = 0u32;
        'transactions: for txn in 0..6i64 {
            call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
            for _ in 0..rng.usize(0..4) {
                let api = FAULT_APIS[rng.usize(..FAULT_APIS.len())];
                let error = fault(api, rng.u8(..20), |from| from[rng.usize(..from.len())]);
                cluster.push_error(api, error);
            }
            let mut written: BTreeMap<i32, usize> = BTreeMap::new();
            for _ in 0..rng.usize(0..5) {
                let partition = rng.i32(0..2);
                m.record(now, record_to(waiter, partition, now));
                waiter += 1;
                *written.entry(partition).or_insert(0) += 1;
            }
            let offsets_sent = rng.bool();
            let mut failed = false;
            if offsets_sent {
                let generation = if rng.u8(..5) == 0 { 2 } else { 3 };
                let sent = TxnCall::SendOffsets {
                    offsets: offsets(100 + txn),
                    group: group(generation),
                };
                if let Err(e) = call(&mut m, &mut cluster, &mut now, &mut seen, sent) {
                    match e.outcome() {
                        ErrorOutcome::Close => break 'transactions,
                        outcome => assert_eq!(outcome, ErrorOutcome::Abort, "seed {seed}: {e}"),
                    }
                    failed = true;
                }
            }
            let commit = !failed && rng.u8(..4) != 0;
            let op = if commit {
                TxnCall::Commit
            } else {
                TxnCall::Abort
            };
            match call(&mut m, &mut cluster, &mut now, &mut seen, op) {
                Ok(()) if commit => {
                    committed += 1;
                    for (p, n) in written {
                        *expected.entry(p).or_insert(0) += n;
                    }
                    if offsets_sent {
                        expected_offset = Some(100 + txn);
                    }
                }
                Ok(()) => {}
                Err(e) if e.outcome() == ErrorOutcome::Close => {
                    fatal += 1;
                    break 'transactions;
                }
                Err(e) => {
                    assert_eq!(e.outcome(), ErrorOutcome::Abort, "seed {seed}: {e}");
                    match call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort) {
                        Ok(()) => aborted_after_error += 1,
                        Err(e) if e.outcome() == ErrorOutcome::Close => break 'transactions,
                        Err(e) => panic!("seed {seed}: the abort failed: {e}"),
                    }
                }
            }
            cluster.errors.clear();
        }
        expected.retain(|_, n| *n > 0);
        assert_eq!(cluster.committed_records(), expected, "seed {seed}");
        assert_eq!(
            cluster.offsets.get(&0).copied(),
            expected_offset,
            "seed {seed}"
        );
        assert!(
            seen.calls.is_empty(),
            "seed {seed}: calls answered twice: {:?}",
            seen.calls
        );
    }
    assert!(
        committed > 0 && aborted_after_error > 0 && fatal > 0,
        "committed {committed}, aborted after an error {aborted_after_error}, fatal {fatal}"
    );
}

/// A request that failed because the coordinator moved, and a lookup of the new one that
/// failed too: the request's backoff ends first, and then the machine still wakes for the
/// lookup's (the earliest of the transaction's times was once taken before dropping those
/// already past, and the transaction waited for nothing).
#[test]
fn a_failed_lookup_after_a_moved_coordinator_is_retried_when_its_backoff_ends() {
    let (mut m, mut cluster, mut now, mut seen) = started();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    cluster.push_error(Api::AddPartitions, E::NotCoordinator);
    cluster.push_error(Api::Find, E::CoordinatorNotAvailable);
    cluster.push_error(Api::Find, E::CoordinatorNotAvailable);
    m.record(now, record_to(1, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 1)]));
    let finds = cluster.seen.iter().filter(|a| **a == Api::Find).count();
    assert_eq!(finds, 4, "{:?}", cluster.seen);
}

/// At transaction version 2 (KIP-890), a cluster's finalized `transaction.version` 2 as the
/// coordinator's broker reports it: partitions join the transaction with their first Produce
/// request and offsets with TxnOffsetCommit, so neither AddPartitionsToTxn nor
/// AddOffsetsToTxn goes out; every EndTxn bumps the epoch, and the next transaction's batches
/// carry the epoch its answer gave, their sequences from 0.
#[test]
fn at_transaction_version_2_partitions_and_offsets_join_implicitly_and_every_end_bumps_the_epoch() {
    let (mut m, mut cluster, mut now, mut seen) = started_on(Cluster::v2());
    assert_eq!(cluster.epoch, 0);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    for i in 0..4 {
        m.record(now, record_to(i, (i % 2) as i32, now));
    }
    let sent = TxnCall::SendOffsets {
        offsets: offsets(17),
        group: group(3),
    };
    call(&mut m, &mut cluster, &mut now, &mut seen, sent).unwrap();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(
        cluster.committed_records(),
        BTreeMap::from([(0, 2), (1, 2)])
    );
    assert_eq!(cluster.offsets, BTreeMap::from([(0, 17)]));
    assert_eq!(cluster.epoch, 1, "the commit bumped the epoch");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(10, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    assert_eq!(cluster.epoch, 2, "the abort bumped the epoch");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(11, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(
        cluster.committed_records(),
        BTreeMap::from([(0, 3), (1, 2)])
    );
    assert_eq!(cluster.aborted_records(), 1);
    seen.delivered.sort_unstable();
    assert_eq!(seen.delivered, [0, 1, 2, 3, 10, 11]);
    for api in [Api::AddPartitions, Api::AddOffsets] {
        assert!(!cluster.seen.contains(&api), "{:?}", cluster.seen);
    }
    assert_eq!(
        cluster.seen.iter().filter(|a| **a == Api::Init).count(),
        1,
        "no InitProducerId after init_transactions"
    );
    // Each transaction under its own epoch, each partition's sequences from 0 in it.
    let batches: Vec<(i32, i16, i32)> = cluster
        .log
        .iter()
        .map(|(w, _)| (w.partition, w.producer_epoch, w.base_sequence))
        .collect();
    assert_eq!(batches, [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 2, 0)]);
}

/// A commit that is the first call after the coordinator timed the transaction out, at
/// transaction version 2: the coordinator finds the transaction aborted and refuses it with
/// INVALID_TXN_STATE, which no retry or abort can mend (as for the Java client): fatal.
#[test]
fn at_transaction_version_2_a_commit_after_the_coordinator_timed_the_transaction_out_is_fatal() {
    let (mut m, mut cluster, mut now, mut seen) = started_on(Cluster::v2());
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_secs(1),
    );
    now += Duration::from_secs(61);
    cluster.abort_under_a_new_epoch(true);
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    assert_eq!(e.code(), Some(E::InvalidTxnState), "{e}");
    assert_eq!(cluster.committed_records(), BTreeMap::new());
}

/// The APIs the cluster saw from index `from` on.
fn seen_since(cluster: &Cluster, from: usize) -> Vec<Api> {
    cluster.seen[from..].to_vec()
}

/// A producer initialized on `cluster` that committed a transaction (record 1, to t-0) whose
/// markers the coordinator holds, and began the next one.
fn begun_while_the_markers_are_held(
    cluster: Cluster,
) -> (SenderMachine<u32>, Cluster, Instant, Seen) {
    let (mut m, mut cluster, mut now, mut seen) = started_on(cluster);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    cluster.hold_markers = true;
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert!(cluster.completing.is_some(), "the markers are held");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    (m, cluster, now, seen)
}

/// A transaction begun while the last one's markers are still being written, at either
/// version: what it adds first (its AddPartitionsToTxn at version 1, its first Produce at
/// version 2) waits while the coordinator says the end is being prepared (DescribeTransactions,
/// asked again after a wait of a few milliseconds), and goes once the markers are written;
/// nothing meets the unwritten markers, and the transaction commits.
#[test]
fn the_next_transaction_waits_for_the_last_ones_markers() {
    for cluster in [Cluster::new(), Cluster::v2()] {
        let v2 = cluster.v2;
        let (mut m, mut cluster, mut now, mut seen) = begun_while_the_markers_are_held(cluster);
        let from = cluster.seen.len();
        let ended_at = now;
        m.record(now, record_to(2, 1, now));
        run(
            &mut m,
            &mut cluster,
            &mut now,
            &mut seen,
            Duration::from_millis(20),
        );
        let asked = seen_since(&cluster, from);
        assert!(
            asked.len() >= 3 && asked.iter().all(|a| *a == Api::Describe),
            "v2 {v2}: {asked:?}"
        );
        assert!(now > ended_at, "the asks waited between them");
        assert_eq!(seen.delivered, [1]);
        assert!(cluster.write_markers());
        call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
        let after: Vec<Api> = seen_since(&cluster, from)
            .into_iter()
            .skip_while(|a| *a == Api::Describe)
            .collect();
        let expected: &[Api] = if v2 {
            &[Api::Produce, Api::EndTxn]
        } else {
            &[Api::AddPartitions, Api::Produce, Api::EndTxn]
        };
        assert_eq!(after, expected, "met no markers");
        assert_eq!(
            cluster.committed_records(),
            BTreeMap::from([(0, 1), (1, 1)])
        );
        assert_eq!(seen.delivered, [1, 2]);
    }
}

/// Offsets sent at the start of a transaction that begins while the last one's markers are
/// being written wait for them the same, at either version: the coordinators would refuse
/// them (CONCURRENT_TRANSACTIONS) and they would go again only after `retry.backoff.ms`.
#[test]
fn offsets_wait_for_the_last_transactions_markers() {
    for cluster in [Cluster::new(), Cluster::v2()] {
        let (mut m, mut cluster, mut now, mut seen) = begun_while_the_markers_are_held(cluster);
        let from = cluster.seen.len();
        let sent = m.transaction(
            now,
            TxnCall::SendOffsets {
                offsets: offsets(8),
                group: group(3),
            },
        );
        run(
            &mut m,
            &mut cluster,
            &mut now,
            &mut seen,
            Duration::from_millis(10),
        );
        let asked = seen_since(&cluster, from);
        assert!(asked.contains(&Api::Describe), "{asked:?}");
        for api in [Api::AddOffsets, Api::TxnOffsetCommit] {
            assert!(!asked.contains(&api), "{asked:?}");
        }
        assert!(cluster.write_markers());
        run(
            &mut m,
            &mut cluster,
            &mut now,
            &mut seen,
            Duration::from_secs(1),
        );
        assert!(seen.calls.iter().any(|(c, _, r)| *c == sent && r.is_ok()));
        let offset_commits = seen_since(&cluster, from)
            .into_iter()
            .filter(|a| *a == Api::TxnOffsetCommit)
            .count();
        assert_eq!(offset_commits, 1, "{:?}", cluster.seen);
        call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
        assert_eq!(cluster.offsets, BTreeMap::from([(0, 8)]));
    }
}

/// Markers that take longer than the leader's own wait: the next transaction stops asking
/// [`SETTLE_FOR`](crate::machine::txn::SETTLE_FOR) after the end, and its Produce goes (the
/// model's leader refuses it while the markers are unwritten, where Apache Kafka's holds it).
#[test]
fn at_transaction_version_2_the_wait_for_the_markers_ends_after_a_while() {
    let (mut m, mut cluster, mut now, mut seen) = begun_while_the_markers_are_held(Cluster::v2());
    // Beginning takes no time on the model's clock, nor asks the cluster anything.
    let ended_at = now;
    let from = cluster.seen.len();
    m.record(now, record_to(2, 0, now));
    let settle = crate::machine::txn::SETTLE_FOR;
    let before = settle - Duration::from_millis(1);
    run(&mut m, &mut cluster, &mut now, &mut seen, before);
    assert!(!cluster.seen[from..].contains(&Api::Produce));
    let asks = cluster.seen[from..].len();
    assert!((5..=30).contains(&asks), "asked {asks} times in {settle:?}");
    run(
        &mut m,
        &mut cluster,
        &mut now,
        &mut seen,
        Duration::from_millis(10),
    );
    assert!(now >= ended_at + settle);
    assert!(
        cluster.seen[from + asks..].contains(&Api::Produce),
        "{:?}",
        cluster.seen
    );
    assert!(!cluster.seen[from + asks..].contains(&Api::Describe));
    // The model's leader refuses the batch while the markers are unwritten: the transaction
    // aborts, and the next one, which asks once and finds the abort complete, commits.
    assert!(cluster.write_markers());
    let e = call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap_err();
    assert_eq!(e.outcome(), ErrorOutcome::Abort, "{e}");
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Abort).unwrap();
    let from = cluster.seen.len();
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(3, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(
        seen_since(&cluster, from),
        [Api::Describe, Api::Produce, Api::EndTxn]
    );
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 2)]));
}

/// A coordinator that refuses DescribeTransactions: the transaction goes at once, and the
/// next ones do not ask again; a transaction begun long after the last one ended does not ask.
#[test]
fn the_wait_for_the_markers_is_skipped_when_it_cannot_help() {
    let (mut m, mut cluster, mut now, mut seen) = started_on(Cluster::v2());
    cluster.push_error(Api::Describe, E::TransactionalIdAuthorizationFailed);
    for i in 0..3 {
        call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
        m.record(now, record_to(i, 0, now));
        call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    }
    let describes = cluster.seen.iter().filter(|a| **a == Api::Describe).count();
    assert_eq!(
        describes, 1,
        "refused once, then not asked: {:?}",
        cluster.seen
    );
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 3)]));

    let (mut m, mut cluster, mut now, mut seen) = started_on(Cluster::v2());
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    now += crate::machine::txn::SETTLE_FOR;
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert!(!cluster.seen.contains(&Api::Describe), "{:?}", cluster.seen);
}

/// A DescribeTransactions whose answer does not come: the transaction's Produce goes once
/// [`SETTLE_FOR`](crate::machine::txn::SETTLE_FOR) has passed since the last end, the ask
/// still out; its late answer changes nothing.
#[test]
fn a_describe_never_answered_holds_the_transaction_no_longer_than_the_wait() {
    let (mut m, mut cluster, mut now, mut seen) = started_on(Cluster::v2());
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(1, 0, now));
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    let ended_at = now;
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Begin).unwrap();
    m.record(now, record_to(2, 0, now));
    let ask = m.poll_request(now).expect("a DescribeTransactions");
    assert!(
        matches!(ask.request, Request::DescribeTransactions(_)),
        "{:?}",
        ask.request
    );
    assert_eq!(ask.timeout, Some(crate::machine::txn::SETTLE_FOR));
    assert!(
        m.poll_request(now).is_none(),
        "nothing else while it is out"
    );
    // The machine's timers (the linger, then the end of the wait) until a request goes.
    let produce = loop {
        let at = m.poll_timeout().expect("a wake until the end of the wait");
        assert!(at <= ended_at + crate::machine::txn::SETTLE_FOR);
        now = at;
        m.handle_timeout(now);
        if let Some(out) = m.poll_request(now) {
            break out;
        }
    };
    assert!(matches!(produce.request, Request::Produce(..)));
    assert_eq!(now, ended_at + crate::machine::txn::SETTLE_FOR);
    let answer = cluster.reply(produce.request);
    m.handle_response(now, produce.id, answer);
    let late = cluster.reply(ask.request);
    m.handle_response(now, ask.id, late);
    call(&mut m, &mut cluster, &mut now, &mut seen, TxnCall::Commit).unwrap();
    assert_eq!(cluster.committed_records(), BTreeMap::from([(0, 2)]));
    assert_eq!(seen.delivered, [1, 2]);
}
