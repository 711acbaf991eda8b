//! kcon-pool on the three-node Apache Kafka cluster (`Kafka::cluster()`), for what needs a
//! broker to die: a node SIGKILLed while requests are held on it and in its queue, refused with
//! backoff while down, and reconnected at once when it is back.

use std::time::{Duration, Instant};

use kcon_pool::{BrokerTarget, Pool, TopicScope};
use kcon_tests::blocking::BlockingConnection;
use kcon_tests::cluster_faults::{Restore, wait_for_three_brokers};
use kcon_tests::kafka::Kafka;
use kcon_tests::pool::{
    assert_back_within_backoff, assert_pending_fail, assert_refused_with_backoff, config,
    empty_topic, long_poll, metadata_request, spawn_sends, wait_until,
};
use tokio::task::block_in_place;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_fails_pending_requests_and_is_reconnected_with_backoff_once_back() {
    let kafka = Kafka::cluster();
    let _restore = Restore(kafka);
    let mut c = config(kafka.bootstrap());
    c.reconnect_backoff = Duration::from_millis(50);
    c.reconnect_backoff_max = Duration::from_millis(500);
    // Two in flight: of the three requests below, two are held by the broker and the third
    // waits for a slot.
    c.max_in_flight_requests_per_connection = 2;
    let pool = Pool::new(c).unwrap();
    let (topic, topic_id) = empty_topic(&pool).await;
    let meta = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    // The node leading the partition holds the Fetches (a long poll on an empty partition).
    let id = meta.leader(&topic, 0).expect("a leader").id;
    let held = long_poll(&topic, topic_id, Duration::from_secs(20));
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let pending = spawn_sends(&pool, id, vec![held; 3]);
    wait_until(
        "two fetches are held by the broker",
        Duration::from_secs(5),
        || conn.in_flight() == 2,
    )
    .await;

    let died = Instant::now();
    block_in_place(|| kafka.kill_node(id));
    // Every pending request fails, now: not after its 20 s hold, nor after
    // request.timeout.ms (30 s). The two on the wire get the lost connection.
    assert_pending_fail(pending, Duration::from_secs(5)).await;
    assert!(conn.is_closed());

    assert_refused_with_backoff(&pool, id, died).await;

    // Back on the same port, where the pool's metadata still points, and reached within the
    // backoff's maximum. `start_node` returns once the node's port accepts a connection, which
    // the kernel does as soon as the port is bound; the broker reads requests only once it has
    // started (caught up and registered), which on a busy machine can be a second later. A
    // full run once timed the pool's first Metadata at 1.19 s, against a bound of 1 s: the
    // broker's start, not the pool's waiting (its backoff had run out while the node started).
    // So a connection of the test's own waits for the node to answer ApiVersions and Metadata
    // first, and what is timed below is the pool's own waiting.
    block_in_place(|| {
        kafka.start_node(id);
        let port = kafka
            .nodes()
            .into_iter()
            .find(|n| n.id == id)
            .expect("the restarted node is listed")
            .port;
        let mut first = BlockingConnection::connect(([127, 0, 0, 1], port).into())
            .expect("the restarted node answers ApiVersions");
        first
            .send(&metadata_request(&[]))
            .expect("the restarted node answers Metadata");
    });
    assert_back_within_backoff(&pool, id).await;
    wait_for_three_brokers(&pool).await;
}
