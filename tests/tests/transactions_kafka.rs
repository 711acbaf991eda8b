//! kcon's transactional producer on Apache Kafka 4.4 (`Kafka::single`) with the clients at their
//! defaults, with a kcon consumer in a group handing it its group metadata and librdkafka
//! (confluent-kafka) on the other side: a consume-transform-produce step commits its outputs and
//! its input offsets in one transaction; an aborted one moves no offset; a second producer with
//! the same `transactional.id` fences the first, whose records are aborted; a transaction the
//! coordinator timed out (`transaction.timeout.ms`) is aborted and the producer goes on;
//! librdkafka reads
//! what kcon commits and kcon what librdkafka commits; both skip an aborted transaction under
//! read_committed; and a read_committed kcon reader holds at the last stable offset while a
//! transaction is open, then reads what it commits. The producer speaks transaction version 2
//! (KIP-890), which Kafka 4.4 finalizes: every transaction under a new epoch; against Kafka
//! 3.9.1 (`Kafka::kafka39`), which does not, version 1: one epoch for all.

use std::time::{Duration, Instant};

use kcon::{Consumer, TopicPartition};
use kcon_codec::kafka_protocol::ResponseError;
use kcon_pool::Pool;
use kcon_produce::{ErrorKind, Outcome, Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    builder_at_defaults, expect_no_record, group_builder_at_defaults, recv_n,
};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::peers::{self, librdkafka_reads};
use kcon_tests::pool::config;
use kcon_tests::transactions::{CALL, commit_abort_commit, log_batches, send_all, values};
use serde_json::{Value, json};

fn transactional(bootstrap: &str, id: &str) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", id)
        .build()
        .unwrap()
}

async fn create(bootstrap: &str, topics: &[(&str, i32)]) -> Pool {
    let pool = Pool::new(config(bootstrap)).unwrap();
    create_topics(&pool, topics).await;
    pool
}

fn value_of(record: &kcon::Record) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// Values of `topic`'s partition 0 read from the start by a kcon consumer at its defaults with
/// `isolation`: `count` of them, and nothing more for a second.
async fn kcon_reads(bootstrap: &str, topic: &str, isolation: &str, count: usize) -> Vec<String> {
    let mut consumer: Consumer = builder_at_defaults(bootstrap)
        .set("isolation.level", isolation)
        .build()
        .unwrap();
    consumer.assign([TopicPartition::new(topic, 0)]).unwrap();
    let records = recv_n(&mut consumer, count, Duration::from_secs(30)).await;
    expect_no_record(&mut consumer, Duration::from_secs(1)).await;
    consumer.close().await.unwrap();
    records.iter().map(value_of).collect()
}

/// `topic`-0's high watermark and last stable offset.
async fn ends_of(pool: &Pool, topic: &str) -> (i64, Option<i64>) {
    let tp = TopicPartition::new(topic, 0);
    let found = kcon_admin::watermarks(pool, &std::collections::BTreeSet::from([tp.clone()]))
        .await
        .expect("watermarks");
    let w = &found[&tp];
    (w.high_watermark, w.last_stable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_transform_produce_step_commits_outputs_and_offsets_together() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let input = unique_name("txn-in");
    let output = unique_name("txn-out");
    let group = unique_name("txn-group");
    create(b, &[(&input, 1), (&output, 1)]).await;
    let plain = Producer::builder().bootstrap_servers(b).build().unwrap();
    send_all(&plain, &input, &values("in", 0..20)).await;
    plain.close().await.expect("the producer closes");

    // read_committed, as a consume-transform-produce step's consumer is: its committed() then
    // waits for offsets of a transaction whose commit markers are still being written
    // (UNSTABLE_OFFSET_COMMIT, KIP-447) rather than reading the offsets before it.
    let mut consumer: Consumer = group_builder_at_defaults(b, &group, "range")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .build()
        .unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let producer = transactional(b, &unique_name("tx"));
    producer.init_transactions(CALL).await.unwrap();
    let in0 = TopicPartition::new(&input, 0);

    // One transaction per ten input records: the first commits, the second aborts.
    for (round, commit) in [(0, true), (1, false)] {
        let records = recv_n(&mut consumer, 10, Duration::from_secs(60)).await;
        let metadata = consumer.group_metadata().unwrap();
        assert_eq!(metadata.group_id, group);
        assert!(metadata.generation_id >= 0, "{metadata:?}");
        assert!(!metadata.member_id.is_empty(), "{metadata:?}");
        producer.begin_transaction(CALL).await.unwrap();
        let outputs: Vec<String> = records
            .iter()
            .map(|r| format!("out-{}", value_of(r)))
            .collect();
        send_all(&producer, &output, &outputs).await;
        let next = records.last().unwrap().offset + 1;
        assert_eq!(next, 10 * (round + 1));
        producer
            .send_offsets_to_transaction([(in0.clone(), next)], &metadata, CALL)
            .await
            .unwrap();
        if commit {
            producer.commit_transaction(CALL).await.unwrap();
        } else {
            producer.abort_transaction(CALL).await.unwrap();
        }
        // The group's offset is what the last committed transaction said.
        let committed = consumer.committed([in0.clone()]).await.unwrap();
        assert_eq!(committed[&in0], Some(10), "after round {round}");
    }
    producer.close().await.expect("the producer closes");
    consumer.close().await.unwrap();

    // The committed transaction's outputs, in order, and nothing of the aborted one, for a
    // read_committed reader of either client.
    let wanted: Vec<String> = values("in", 0..10)
        .into_iter()
        .map(|v| format!("out-{v}"))
        .collect();
    assert_eq!(kcon_reads(b, &output, "read_committed", 10).await, wanted);
    assert_eq!(librdkafka_reads(b, &output, "read_committed", 10), wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-fence");
    create(b, &[(&topic, 1)]).await;

    // A zombie that writes again after the takeover: the leader refuses the batch of the old
    // epoch with INVALID_PRODUCER_EPOCH (KIP-588), which only says the transaction is over (a
    // coordinator's timeout says the same): the record and the commit fail as abortable. The
    // abort then asks the coordinator for the next epoch, which refuses it as fenced, and the
    // producer can only be closed; the takeover aborted its transaction.
    let id = unique_name("tx");
    let zombie = transactional(b, &id);
    zombie.init_transactions(CALL).await.unwrap();
    zombie.begin_transaction(CALL).await.unwrap();
    send_all(&zombie, &topic, &values("zombie", 0..3)).await;
    let current = transactional(b, &id);
    current.init_transactions(CALL).await.unwrap();
    let late = ProducerRecord::new(topic.as_str(), "zombie-late").with_partition(0);
    let e = zombie.send(late).await.unwrap().await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    assert_eq!(e.code(), Some(ResponseError::InvalidProducerEpoch), "{e}");
    assert!(e.to_string().contains("took over"), "{e}");
    let e = zombie.commit_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    let e = zombie.abort_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    assert_eq!(e.code(), Some(ResponseError::ProducerFenced), "{e}");
    let e = zombie.begin_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    // Fenced or refused: what its close reports is not what this test is about.
    let _ = zombie.close().await;

    current.begin_transaction(CALL).await.unwrap();
    send_all(&current, &topic, &values("current", 0..3)).await;
    current.commit_transaction(CALL).await.unwrap();
    current.close().await.expect("the producer closes");
    assert_eq!(
        librdkafka_reads(b, &topic, "read_committed", 3),
        values("current", 0..3),
        "the current producer's records alone are committed"
    );

    // A zombie that only commits: the coordinator answers its EndTxn PRODUCER_FENCED at once,
    // and the producer can only be closed, which it is at once; the takeover aborted its
    // records.
    let id = unique_name("tx");
    let zombie = transactional(b, &id);
    zombie.init_transactions(CALL).await.unwrap();
    zombie.begin_transaction(CALL).await.unwrap();
    send_all(&zombie, &topic, &values("zombie2", 0..2)).await;
    let current = transactional(b, &id);
    current.init_transactions(CALL).await.unwrap();
    let committing = Instant::now();
    let e = zombie.commit_transaction(CALL).await.unwrap_err();
    assert!(
        committing.elapsed() < Duration::from_secs(5),
        "the fenced commit took {:?}",
        committing.elapsed()
    );
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    assert_eq!(e.code(), Some(ResponseError::ProducerFenced), "{e}");
    assert_ne!(e.kind(), ErrorKind::TimedOut, "{e}");
    let closing = Instant::now();
    // Fenced or refused: what its close reports is not what this test is about.
    let _ = zombie.close().await;
    assert!(
        closing.elapsed() < Duration::from_secs(5),
        "{:?}",
        closing.elapsed()
    );
    current.begin_transaction(CALL).await.unwrap();
    send_all(&current, &topic, &values("current2", 0..2)).await;
    current.commit_transaction(CALL).await.unwrap();
    current.close().await.expect("the producer closes");
    let wanted: Vec<String> = values("current", 0..3)
        .into_iter()
        .chain(values("current2", 0..2))
        .collect();
    assert_eq!(kcon_reads(b, &topic, "read_committed", 5).await, wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_what_kcon_commits_and_kcon_what_librdkafka_commits() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let by_kcon = unique_name("txn-by-kcon");
    let by_librdkafka = unique_name("txn-by-librdkafka");
    create(b, &[(&by_kcon, 1), (&by_librdkafka, 1)]).await;

    let producer = transactional(b, &unique_name("tx"));
    producer.init_transactions(CALL).await.unwrap();
    for round in 0..3 {
        producer.begin_transaction(CALL).await.unwrap();
        send_all(&producer, &by_kcon, &values(&format!("k{round}"), 0..4)).await;
        producer.commit_transaction(CALL).await.unwrap();
    }
    producer.close().await.expect("the producer closes");
    let read = librdkafka_reads(b, &by_kcon, "read_committed", 12);
    let wanted: Vec<String> = (0..3)
        .flat_map(|round| values(&format!("k{round}"), 0..4))
        .collect();
    assert_eq!(read, wanted);

    let answer: Value = peers::run(
        "txn.py",
        &json!({"op": "produce", "bootstrap": b, "topic": by_librdkafka,
                "transactional_id": unique_name("tx-peer"),
                "transactions": [
                    {"values": values("r0", 0..5), "commit": true},
                    {"values": values("r1", 0..5), "commit": true}]}),
    );
    assert_eq!(answer["done"], 2);
    let read = kcon_reads(b, &by_librdkafka, "read_committed", 10).await;
    let wanted: Vec<String> = values("r0", 0..5)
        .into_iter()
        .chain(values("r1", 0..5))
        .collect();
    assert_eq!(read, wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_skipped_by_read_committed_readers_of_both_clients() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-aborted");
    create(b, &[(&topic, 1)]).await;
    // Committed `c-*`, aborted `a-*`, committed `d-*`.
    let (all, committed) = commit_abort_commit(transactional(b, &unique_name("tx")), &topic).await;
    assert_eq!(kcon_reads(b, &topic, "read_committed", 8).await, committed);
    assert_eq!(kcon_reads(b, &topic, "read_uncommitted", 12).await, all);
    assert_eq!(librdkafka_reads(b, &topic, "read_committed", 8), committed);
    assert_eq!(librdkafka_reads(b, &topic, "read_uncommitted", 12), all);
}

/// A read_committed kcon reader (at its defaults) reads a committed transaction and stops at the
/// last stable offset while the next transaction is open, its records acknowledged and read by
/// a read_uncommitted reader meanwhile; once that transaction commits, the reader goes on and
/// reads its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_committed_reader_holds_at_the_last_stable_offset_until_the_transaction_commits() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-lso");
    let pool = create(b, &[(&topic, 1)]).await;
    let tp = TopicPartition::new(&topic, 0);
    let producer = transactional(b, &unique_name("tx"));
    producer.init_transactions(CALL).await.unwrap();
    producer.begin_transaction(CALL).await.unwrap();
    send_all(&producer, &topic, &values("c", 0..2)).await;
    producer.commit_transaction(CALL).await.unwrap();
    // `c-0`, `c-1` and the commit marker at 0..3; the open transaction's records from 3.
    producer.begin_transaction(CALL).await.unwrap();
    send_all(&producer, &topic, &values("o", 0..3)).await;
    let (high, stable) = ends_of(&pool, &topic).await;
    assert_eq!(
        (high, stable),
        (6, Some(3)),
        "(high watermark, last stable offset)"
    );

    let mut reader: Consumer = builder_at_defaults(b)
        .set("isolation.level", "read_committed")
        .build()
        .unwrap();
    reader.assign([tp.clone()]).unwrap();
    let first = recv_n(&mut reader, 2, Duration::from_secs(30)).await;
    assert_eq!(
        first.iter().map(value_of).collect::<Vec<_>>(),
        values("c", 0..2)
    );
    expect_no_record(&mut reader, Duration::from_secs(3)).await;
    assert_eq!(
        reader.position(&tp),
        Some(3),
        "held at the last stable offset"
    );
    // The open transaction's records are there, for a read_uncommitted reader.
    let uncommitted = kcon_reads(b, &topic, "read_uncommitted", 5).await;
    assert_eq!(uncommitted[2..], values("o", 0..3)[..]);

    producer.commit_transaction(CALL).await.unwrap();
    let rest = recv_n(&mut reader, 3, Duration::from_secs(30)).await;
    assert_eq!(
        rest.iter()
            .map(|r| (r.offset, value_of(r)))
            .collect::<Vec<_>>(),
        vec![
            (3, "o-0".to_owned()),
            (4, "o-1".to_owned()),
            (5, "o-2".to_owned())
        ]
    );
    expect_no_record(&mut reader, Duration::from_secs(1)).await;
    assert_eq!(reader.position(&tp), Some(7), "past the commit marker");
    reader.close().await.unwrap();
    producer.close().await.expect("the producer closes");
}

/// A transactional producer with `transaction.timeout.ms` short enough to pass while its
/// transaction is open.
fn transactional_with_timeout(bootstrap: &str, id: &str, timeout_ms: u32) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .build()
        .unwrap()
}

/// Waits until the coordinator has aborted the open transaction on `topic`-0 (after
/// `transaction.timeout.ms`, at its next check, every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s by default): its abort
/// marker makes the last stable offset the high watermark, `high`.
async fn wait_for_the_coordinators_abort(pool: &Pool, topic: &str, high: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ends = ends_of(pool, topic).await;
        if ends == (high, Some(high)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator did not abort the timed-out transaction: (high watermark, last \
             stable offset) {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A transaction open longer than its `transaction.timeout.ms` is aborted by the coordinator,
/// which bumps the producer's epoch (KIP-588); the leader then refuses the producer's next
/// batch with INVALID_PRODUCER_EPOCH. That ends the transaction, not the producer: the record
/// and the commit fail with `Outcome::Abort`, naming transaction.timeout.ms; the abort goes
/// through, and the next transaction commits. A read_committed reader sees only its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_coordinator_timed_out_is_aborted_and_the_producer_goes_on() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-timeout");
    let pool = create(b, &[(&topic, 1)]).await;
    let producer = transactional_with_timeout(b, &unique_name("tx"), 2000);
    producer.init_transactions(CALL).await.unwrap();
    producer.begin_transaction(CALL).await.unwrap();
    send_all(&producer, &topic, &values("late", 0..3)).await;
    // The three records and the coordinator's abort marker.
    wait_for_the_coordinators_abort(&pool, &topic, 4).await;

    let record = ProducerRecord::new(topic.as_str(), "late-3").with_partition(0);
    let e = producer.send(record).await.unwrap().await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    assert_eq!(e.code(), Some(ResponseError::InvalidProducerEpoch), "{e}");
    assert!(
        e.to_string()
            .contains("stayed open longer than transaction.timeout.ms (2000 ms"),
        "{e}"
    );
    let e = producer.commit_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    assert_eq!(e.code(), Some(ResponseError::InvalidProducerEpoch), "{e}");
    producer.abort_transaction(CALL).await.unwrap();

    producer.begin_transaction(CALL).await.unwrap();
    send_all(&producer, &topic, &values("next", 0..3)).await;
    producer.commit_transaction(CALL).await.unwrap();
    producer.close().await.expect("the producer closes");
    assert_eq!(
        kcon_reads(b, &topic, "read_committed", 3).await,
        values("next", 0..3)
    );
}

/// The producer epoch of each transaction of `topic`-0 that `commit_abort_commit` wrote, read
/// from the log: the epoch of its data batches (all of one transaction's must agree), one
/// transaction per marker.
///
/// The log is read once it ends with a marker, waiting up to 30 s: the coordinator answers
/// EndTxn before it has the partition's leader write the marker, so a read right after the
/// last commit can find its records without their marker yet.
async fn epochs_of_transactions(pool: &Pool, topic: &str) -> Vec<i16> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let batches = loop {
        let batches = log_batches(pool, topic).await;
        if batches.last().is_some_and(|b| b.is_control()) || Instant::now() >= deadline {
            break batches;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut epochs = Vec::new();
    let mut open: Option<i16> = None;
    for batch in batches {
        if batch.is_control() {
            epochs.push(
                open.take()
                    .expect("a marker ends a transaction with records"),
            );
            continue;
        }
        assert!(batch.is_transactional(), "{batch:?}");
        let epoch = batch.producer_epoch();
        assert!(
            open.is_none_or(|e| e == epoch),
            "one transaction's batches under epochs {open:?} and {epoch}"
        );
        open = Some(epoch);
    }
    assert_eq!(open, None, "a transaction without its marker");
    epochs
}

/// Apache Kafka 4.4 finalizes transaction version 2 (KIP-890) and kcon's producer speaks it:
/// no AddPartitionsToTxn (the first Produce of a partition adds it), and every EndTxn bumps
/// the epoch, so a commit, an abort and a commit in a row go under three epochs, one above
/// another. Readers see what they saw at version 1: the committed records alone under
/// read_committed, for kcon and librdkafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_4_4_every_transaction_goes_under_the_epoch_the_last_end_gave() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-v2");
    let pool = create(b, &[(&topic, 1)]).await;
    let producer = transactional(b, &unique_name("tx"));
    let (_, committed) = commit_abort_commit(producer, &topic).await;
    let epochs = epochs_of_transactions(&pool, &topic).await;
    let first = epochs[0];
    assert_eq!(epochs, [first, first + 1, first + 2]);
    assert_eq!(kcon_reads(b, &topic, "read_committed", 8).await, committed);
    assert_eq!(librdkafka_reads(b, &topic, "read_committed", 8), committed);
}

/// Apache Kafka 3.9.1 does not finalize transaction version 2: kcon's producer speaks version
/// 1 there (AddPartitionsToTxn, EndTxn v4 at most), its epoch the same across a commit, an
/// abort and a commit, and readers see the committed records alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_3_9_the_producer_speaks_transaction_version_1() {
    let kafka = Kafka::kafka39();
    let b = kafka.bootstrap();
    let topic = unique_name("txn-v1");
    let pool = create(b, &[(&topic, 1)]).await;
    let producer = transactional(b, &unique_name("tx"));
    let (_, committed) = commit_abort_commit(producer, &topic).await;
    let epochs = epochs_of_transactions(&pool, &topic).await;
    assert_eq!(epochs, [epochs[0]; 3]);
    assert_eq!(kcon_reads(b, &topic, "read_committed", 8).await, committed);
}

/// Transactions back to back at defaults, each begun as soon as the last one's commit
/// returned: the coordinator answers the commit before it writes the markers, and refuses to
/// add to the next transaction until they are written (at transaction version 1 it answers
/// AddPartitionsToTxn CONCURRENT_TRANSACTIONS, sent again after `retry.backoff.ms`; at version
/// 2 the partition's leader holds the first Produce for 20 ms or more), so kcon asks the
/// coordinator (DescribeTransactions) whether they are written before the next transaction
/// adds anything. On Kafka 4.4 and 3.9.1 the coordinator answers those asks, and every record
/// is read once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_transactions_ask_whether_the_last_ones_markers_are_written() {
    for kafka in [Kafka::single(), Kafka::kafka39()] {
        let b = kafka.bootstrap();
        let topic = unique_name("txn-back-to-back");
        let _pool = create(b, &[(&topic, 1)]).await;
        let producer = transactional(b, &unique_name("tx"));
        producer.init_transactions(CALL).await.unwrap();
        let mut written = Vec::new();
        for t in 0..10 {
            producer.begin_transaction(CALL).await.unwrap();
            let batch = values(&format!("t{t}"), 0..3);
            send_all(&producer, &topic, &batch).await;
            producer.commit_transaction(CALL).await.unwrap();
            written.extend(batch);
        }
        let m = producer.metrics();
        producer.close().await.expect("the producer closes");
        // Nine transactions began right after the last one's commit; the machine being slow
        // enough to pass 100 ms between every one of them would skip every ask.
        assert!(m.marker_checks >= 1, "{b}: {m:?}");
        assert!(m.marker_waits <= m.marker_checks, "{b}: {m:?}");
        assert_eq!(m.records_delivered, 30, "{b}: {m:?}");
        assert_eq!(
            kcon_reads(b, &topic, "read_committed", 30).await,
            written,
            "{b}"
        );
    }
}

/// A `commit_transaction` that is the first call after the coordinator timed the transaction
/// out (nothing sent since): on Kafka 4.4, at transaction version 2, the coordinator finds the
/// transaction aborted and answers INVALID_TXN_STATE; on Kafka 3.9.1, at version 1, the old
/// epoch's EndTxn is PRODUCER_FENCED. Either is fatal, as for the Java client: the producer can
/// only be closed, and a read_committed reader sees none of the transaction's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_first_after_the_coordinator_timed_the_transaction_out_is_fatal() {
    for (kafka, refused) in [
        (Kafka::single(), ResponseError::InvalidTxnState),
        (Kafka::kafka39(), ResponseError::ProducerFenced),
    ] {
        let b = kafka.bootstrap();
        let topic = unique_name("txn-late-commit");
        let pool = create(b, &[(&topic, 1)]).await;
        let producer = transactional_with_timeout(b, &unique_name("tx"), 2000);
        producer.init_transactions(CALL).await.unwrap();
        producer.begin_transaction(CALL).await.unwrap();
        send_all(&producer, &topic, &values("late", 0..3)).await;
        wait_for_the_coordinators_abort(&pool, &topic, 4).await;
        let e = producer.commit_transaction(CALL).await.unwrap_err();
        assert_eq!(e.outcome(), Outcome::Close, "{b}: {e}");
        assert_eq!(e.code(), Some(refused), "{b}: {e}");
        let e = producer.begin_transaction(CALL).await.unwrap_err();
        assert_eq!(e.outcome(), Outcome::Close, "{b}: {e}");
        producer.close().await.expect("the producer closes");
        assert_eq!(
            kcon_reads(b, &topic, "read_committed", 0).await,
            Vec::<String>::new()
        );
    }
}
