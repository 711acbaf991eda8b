//! What only Tansu shows of kcon-admin's log ends (the rest of its lag and reset tests run on
//! Apache Kafka, `admin_kafka.rs`): Tansu answers ListOffsets latest with the last batch's base
//! offset + 1, behind the log end, where Apache Kafka's answer is the log end itself. The end
//! kcon-admin reports is the larger of that answer and a Fetch's high watermark, so it is the
//! true end on Tansu too.

use std::collections::{BTreeMap, BTreeSet};

use kcon_admin::{list_offsets, log_ranges};
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::create_topics;
use kcon_tests::offsets::{fetch_high_watermark, now_ms, produce};
use kcon_tests::pool::config;

/// Two batches (8 records, then 4): Tansu's ListOffsets latest says 9, the Fetch high
/// watermark 12; the log's range ends at 12. The start is the log start, and an empty
/// partition is (0, 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_end_is_the_larger_of_list_offsets_and_the_fetch_high_watermark() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let topic = unique_name("admin-topic");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 2)]).await;
    let t0 = now_ms();
    assert_eq!(produce(&pool, &topic, 0, 8, t0).await, 0);
    assert_eq!(produce(&pool, &topic, 0, 4, t0).await, 8);
    let hwm = fetch_high_watermark(&pool, &topic, 0).await;
    assert_eq!(hwm, 12);
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let latest: BTreeMap<_, _> = [(p0.clone(), OffsetSpec::Latest)].into();
    let listed = list_offsets(&pool, &latest, IsolationLevel::ReadUncommitted)
        .await
        .unwrap();
    assert_eq!(
        (listed[&p0].error_code, listed[&p0].offset),
        (0, 9),
        "Tansu's answer: the last batch's base offset + 1"
    );

    let ranges = log_ranges(
        &pool,
        &BTreeSet::from([p0.clone(), p1.clone()]),
        IsolationLevel::ReadUncommitted,
    )
    .await
    .unwrap();
    let r0 = ranges[&p0].as_ref().unwrap();
    assert_eq!((r0.start, r0.end), (0, hwm));
    let r1 = ranges[&p1].as_ref().unwrap();
    assert_eq!((r1.start, r1.end), (0, 0), "an empty partition");
}
