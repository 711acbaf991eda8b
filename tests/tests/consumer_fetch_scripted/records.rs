//! What the records of an answer can hold that no real broker here produces: aborted
//! transactions, a corrupt batch, a log truncated under the position by a new leader.

use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest};

use super::peer::{SessionBroker, summarize, summary};
use super::{Reader, Told, config, corrupt, expected, tp};

#[tokio::test]
async fn read_committed_drops_aborted_transactions_and_never_hands_out_control_records() {
    let b = SessionBroker::start(1, 5, 12).await;
    b.append_transactional(0, 7, 2); // 0, 1: aborted below
    b.append_transactional(0, 8, 2); // 2, 3: committed below
    b.end_transaction(0, 7, 0, false); // 4: abort marker
    b.end_transaction(0, 8, 2, true); // 5: commit marker
    b.append(0, 2); // 6, 7
    let mut c = Reader::start(&b, config(&[("isolation.level", "read_committed")]));
    c.assign([(tp(0), 0)]);
    c.until_count(0, 4).await;

    b.append_transactional(0, 7, 2); // 8, 9: aborted below
    b.end_transaction(0, 7, 8, false); // 10
    b.append(0, 1); // 11
    c.until_count(0, 5).await;
    // The position moves past the last marker: the next Fetch asks for 12.
    b.wait_until("a Fetch from 12", |b| {
        b.fetches().iter().any(|f| summary(f).2.contains(&(0, 12)))
    })
    .await;
    c.read_for(Duration::from_millis(100)).await;
    assert_eq!(c.records[&0], expected(0, [2, 3, 6, 7, 11]));
    assert!(c.errors().is_empty(), "{:?}", c.errors());

    let fetches = b.fetches();
    assert!(fetches.iter().all(|f| f.isolation_level == 1));
    // The peer did send the aborted data and the markers.
    let sent: Vec<i64> = b
        .answered()
        .iter()
        .flat_map(|a| a.partitions.iter().flat_map(|(_, o)| o.clone()))
        .collect();
    for o in [0, 1, 4, 5, 8, 9, 10] {
        assert!(sent.contains(&o), "offset {o} was never sent: {sent:?}");
    }
}

#[tokio::test]
async fn a_corrupt_batch_is_an_error_at_its_offset_and_nothing_past_it_is_handed_out() {
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 3); // 0..=2
    b.append_corrupt(0, 3); // 3..=5
    b.append(0, 2); // 6, 7
    b.append(1, 2);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until("the corrupt batch's error", |c| !c.errors().is_empty())
        .await;
    c.until_count(1, 2).await;
    assert_eq!(c.errors()[0], corrupt(0, 3));
    assert_eq!(c.records[&0], expected(0, 0..3));

    // Fetched again at the same offset after the backoff, never past it; the other partition
    // goes on.
    b.wait_until("a Fetch again from 3", |b| {
        b.fetches()
            .iter()
            .filter(|f| summary(f).2.contains(&(0, 3)))
            .count()
            >= 2
            || b.fetches()
                .iter()
                .any(|f| f.session_epoch > 1 && summary(f).2.contains(&(0, 3)))
    })
    .await;
    b.append(1, 2);
    c.until_count(1, 4).await;
    c.read_for(Duration::from_millis(100)).await;
    assert_eq!(c.records[&0], expected(0, 0..3));
    assert_eq!(c.records[&1], expected(1, 0..4));
    assert!(
        c.errors().iter().all(|e| *e == corrupt(0, 3)),
        "{:?}",
        c.errors()
    );
    let fetches = b.fetches();
    assert!(
        fetches
            .iter()
            .flat_map(|f| summary(f).2)
            .all(|(p, o)| p != 0 || o <= 3),
        "{:#?}",
        summarize(&fetches)
    );
}

#[tokio::test]
async fn a_bad_record_of_a_compressed_batch_is_found_when_handed_out_and_the_position_stays_there()
{
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 3); // 0..=2
    b.append_bad_compressed(0, 4, 2); // 3..=6: 3 and 4 parse, 5 does not
    b.append(0, 2); // 7, 8
    b.append(1, 2);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until("the bad record's error", |c| !c.errors().is_empty())
        .await;
    c.until_count(1, 2).await;
    // The records before it were handed out, the error came after them, at its offset.
    assert_eq!(c.errors()[0], corrupt(0, 5));
    assert_eq!(c.records[&0], expected(0, 0..5));

    // Fetched again from it after the backoff, never past it, told once; the other partition
    // goes on.
    b.wait_until("a Fetch again from 5", |b| {
        b.fetches()
            .iter()
            .filter(|f| summary(f).2.contains(&(0, 5)))
            .count()
            >= 2
            || b.fetches()
                .iter()
                .any(|f| f.session_epoch > 1 && summary(f).2.contains(&(0, 5)))
    })
    .await;
    b.append(1, 2);
    c.until_count(1, 4).await;
    c.read_for(Duration::from_millis(300)).await;
    assert_eq!(c.records[&0], expected(0, 0..5));
    assert_eq!(c.records[&1], expected(1, 0..4));
    assert_eq!(c.errors(), [corrupt(0, 5)]);
    let fetches = b.fetches();
    assert!(
        fetches
            .iter()
            .flat_map(|f| summary(f).2)
            .all(|(p, o)| p != 0 || o <= 5),
        "{:#?}",
        summarize(&fetches)
    );
}

#[tokio::test]
async fn a_log_truncated_by_a_new_leader_is_reported_and_the_position_moves_to_the_divergence() {
    let b = SessionBroker::start(1, 5, 12).await;
    b.append(0, 6); // 0..=5
    b.append(0, 4); // 6..=9, lost below
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0)]);
    c.until_count(0, 10).await;

    // The new leader (epoch 6) has epoch 5 ending at 6, and three records of its own there.
    b.truncate_and_bump_epoch(0, 6);
    b.append(0, 3); // 6..=8 in epoch 6
    c.until("the truncation", |c| !c.errors().is_empty()).await;
    c.until_count(0, 13).await;
    // Told once, to the hook: the reset policy is set, so the consumer read on by itself and
    // no receiving call failed.
    assert_eq!(
        c.errors(),
        [Told::Truncated {
            partition: 0,
            position: 10,
            resumed_at: 6,
            diverged_in_epoch: Some(5),
        }]
    );
    let mut want = expected(0, 0..10);
    want.extend(expected(0, 6..9));
    assert_eq!(c.records[&0], want);

    // On the wire: the Fetch at epoch 5 was fenced, the position was checked against epoch 5
    // with the new leader's epoch, and fetching went on from 6 at epoch 6.
    assert!(
        b.answered()
            .iter()
            .any(|a| a.partition_errors.contains(&(0, 74))),
        "FENCED_LEADER_EPOCH answered"
    );
    let validations = b.requests::<OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch);
    let asked: Vec<(i32, i32, i32)> = validations
        .iter()
        .flat_map(|r| &r.topics)
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition, p.leader_epoch, p.current_leader_epoch))
        .collect();
    assert_eq!(asked, [(0, 5, 6)]);
    let fetches = b.fetches();
    let resumed = fetches
        .iter()
        .flat_map(|f| &f.topics)
        .flat_map(|t| &t.partitions)
        .find(|p| p.fetch_offset == 6 && p.current_leader_epoch == 6);
    assert!(resumed.is_some(), "{:#?}", summarize(&fetches));
    assert!(
        fetches
            .iter()
            .flat_map(|f| &f.topics)
            .flat_map(|t| &t.partitions)
            .all(|p| !(p.current_leader_epoch == 6 && p.fetch_offset > 9)),
        "nothing fetched past the new log end at epoch 6 before the check"
    );
}
