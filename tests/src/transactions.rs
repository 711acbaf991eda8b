//! What the transactional producer's suites share (`tests/transactions_kafka.rs`,
//! `tests/transactions_tansu.rs`): numbered values, sending them to partition 0 with every
//! delivery awaited, and a committed, an aborted and a committed transaction in a row.

use std::ops::Range;
use std::time::Duration;

use kcon_produce::{Producer, ProducerRecord};

/// How long a transaction call may take.
pub const CALL: Duration = Duration::from_secs(30);

/// `prefix-i` for each `i` of `range`.
pub fn values(prefix: &str, range: Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends `values` to `topic`-0 and waits for every delivery.
pub async fn send_all(producer: &Producer, topic: &str, values: &[String]) {
    let mut deliveries = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_partition(0);
        deliveries.push(producer.send(record).await.expect("a record taken"));
    }
    for d in deliveries {
        d.await.expect("a record delivered");
    }
}

/// Writes `c-0..4` committed, `a-0..4` aborted and `d-0..4` committed to `topic`-0 through
/// `producer` (initialized here) and closes it. Returns every value in the order written and
/// the committed ones.
pub async fn commit_abort_commit(producer: Producer, topic: &str) -> (Vec<String>, Vec<String>) {
    producer.init_transactions(CALL).await.expect("an id");
    for (prefix, commit) in [("c", true), ("a", false), ("d", true)] {
        producer.begin_transaction().await.expect("a transaction");
        send_all(&producer, topic, &values(prefix, 0..4)).await;
        if commit {
            producer.commit_transaction(CALL).await.expect("a commit");
        } else {
            producer.abort_transaction(CALL).await.expect("an abort");
        }
    }
    producer.close().await;
    let all = ["c", "a", "d"]
        .iter()
        .flat_map(|p| values(p, 0..4))
        .collect();
    let committed = ["c", "d"].iter().flat_map(|p| values(p, 0..4)).collect();
    (all, committed)
}
