//! The pool against scripted brokers: bootstrap, metadata refreshes, moved brokers, fresh
//! connections after poisoning, dedicated connections, backoff, idle close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{
    ApiKey, HeartbeatRequest, HeartbeatResponse, MetadataResponse,
};
use kcon_core::ConfigError;
use kcon_pool::{BrokerTarget, Corruption, Error, Misuse, Pool, Purpose, TopicScope};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::support::*;

/// A broker answering Metadata with itself as broker 1 (plus `topics`), and Heartbeats.
async fn single_broker(
    special: impl Fn(&Received) -> Option<Answer> + Send + Sync + 'static,
) -> (Broker, Arc<Mutex<MetadataResponse>>) {
    let meta = shared(MetadataResponse::default());
    let broker = Broker::start(serving(meta.clone(), special)).await;
    *meta.lock().unwrap() = metadata(&[(1, broker.addr)], &[]);
    (broker, meta)
}

#[tokio::test]
async fn bootstrap_skips_a_dead_address_then_uses_the_advertised_brokers() {
    let (broker, _meta) = single_broker(|_| None).await;
    let dead = dead_address().await;
    let pool = Pool::new(config(&[dead.to_string(), broker.address()])).unwrap();
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.cluster_id.as_deref(), Some("scripted"));
    assert_eq!(m.controller_id, Some(1));
    // From now on the advertised broker serves `Any`, on a connection of its own; the bootstrap
    // connection is retired.
    let answer = pool.send(BrokerTarget::Any, &heartbeat(5)).await.unwrap();
    assert_eq!(answer.throttle_time_ms, 5);
    assert_eq!(broker.stats.accepted(), 2);
    wait_until("the bootstrap connection is closed", || {
        broker.stats.closed() == 1
    })
    .await;
    let versions = pool.broker_versions(1).unwrap();
    assert_eq!(versions.offered(ApiKey::Metadata), Some((0, 13)));
}

#[tokio::test]
async fn a_bootstrap_name_resolves_to_all_its_addresses() {
    // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
    let (broker, _meta) = single_broker(|_| None).await;
    let pool = Pool::new(config(&[format!("localhost:{}", broker.addr.port())])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
}

#[tokio::test]
async fn concurrent_refreshes_share_one_metadata_request() {
    let meta = shared(MetadataResponse::default());
    let m = meta.clone();
    let broker = Broker::start(serving(meta.clone(), move |r| {
        // Slow Metadata answers, so that every caller comes while the first is in flight.
        (r.api_key() == ApiKey::Metadata as i16).then(|| {
            let f = frame::<kcon_codec::kafka_protocol::messages::MetadataRequest>(
                r.correlation_id(),
                r.version(),
                &m.lock().unwrap(),
            );
            Answer::Delayed(Duration::from_millis(200), f)
        })
    }))
    .await;
    *meta.lock().unwrap() = metadata(&[(1, broker.addr)], &[("t", &[(0, 1, 0)])]);
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let pool = pool.clone();
        // Narrower scopes join a wider refresh in flight too.
        let scope = if i % 2 == 0 {
            TopicScope::topics(["t"])
        } else {
            TopicScope::none()
        };
        tasks.spawn(async move { pool.refresh_metadata(scope).await.unwrap() });
        if i == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut snapshots = Vec::new();
    while let Some(r) = tasks.join_next().await {
        snapshots.push(r.unwrap());
    }
    assert_eq!(broker.stats.count(ApiKey::Metadata), 1);
    assert!(snapshots.iter().all(|s| Arc::ptr_eq(s, &snapshots[0])));
    assert!(snapshots[0].topic("t").is_some());
    // One that asks for more than the refresh in flight gets its own request.
    pool.refresh_metadata(TopicScope::All).await.unwrap();
    assert_eq!(broker.stats.count(ApiKey::Metadata), 2);
}

#[tokio::test]
async fn a_partitions_leader_epoch_never_goes_backwards() {
    let (broker, meta) = single_broker(|_| None).await;
    let addr = broker.addr;
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    let set = |leader, epoch| {
        *meta.lock().unwrap() = metadata(&[(1, addr)], &[("t", &[(0, leader, epoch)])]);
    };
    let t = || TopicScope::topics(["t"]);
    set(1, 5);
    let m = pool.refresh_metadata(t()).await.unwrap();
    assert_eq!(m.partition("t", 0).unwrap().leader_epoch, Some(5));
    // A broker that has not caught up answers with an older epoch: ignored.
    set(2, 3);
    let m = pool.refresh_metadata(t()).await.unwrap();
    let p = m.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (Some(1), Some(5)));
    set(2, 6);
    let m = pool.refresh_metadata(t()).await.unwrap();
    let p = m.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (Some(2), Some(6)));
    assert_eq!(pool.metadata().generation, 3);
}

#[tokio::test]
async fn a_broker_that_moves_is_followed_and_its_old_connection_retired() {
    let meta = shared(MetadataResponse::default());
    let a = Broker::start(serving(meta.clone(), |_| None)).await;
    let b = Broker::start(serving(meta.clone(), |_| None)).await;
    *meta.lock().unwrap() = metadata(&[(1, a.addr)], &[]);
    let pool = Pool::new(config(&[a.address()])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    pool.send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    pool.send(
        BrokerTarget::Dedicated(1, Purpose::Coordinator),
        &heartbeat(2),
    )
    .await
    .unwrap();
    assert_eq!(a.stats.count(ApiKey::Heartbeat), 2);
    // Broker 1 comes back at another address.
    *meta.lock().unwrap() = metadata(&[(1, b.addr)], &[]);
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(m.broker(1).unwrap().port, i32::from(b.addr.port()));
    pool.send(BrokerTarget::Broker(1), &heartbeat(3))
        .await
        .unwrap();
    pool.send(
        BrokerTarget::Dedicated(1, Purpose::Coordinator),
        &heartbeat(4),
    )
    .await
    .unwrap();
    assert_eq!(b.stats.count(ApiKey::Heartbeat), 2);
    assert_eq!(a.stats.count(ApiKey::Heartbeat), 2);
    wait_until("every connection to the old address is closed", || {
        a.stats.closed() == a.stats.accepted()
    })
    .await;
}

#[tokio::test]
async fn a_poisoned_connection_fails_its_requests_once_and_the_next_goes_through_a_fresh_one() {
    let (broker, _meta) = single_broker(|r| {
        if r.api_key() != ApiKey::Heartbeat as i16 {
            return None;
        }
        match r.heartbeat_number() {
            10 | 11 => Some(Answer::Silent),
            666 => Some(Answer::RawThenClose((-1i32).to_be_bytes().to_vec())),
            _ => None,
        }
    })
    .await;
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    pool.send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    assert_eq!(broker.stats.accepted(), 2);
    let mut held = Vec::new();
    for n in [10, 11] {
        let pool = pool.clone();
        held.push(tokio::spawn(async move {
            pool.send(BrokerTarget::Broker(1), &heartbeat(n)).await
        }));
    }
    wait_until("the held requests are at the broker", || {
        broker.stats.count(ApiKey::Heartbeat) == 3
    })
    .await;
    let poisoned = pool
        .send(BrokerTarget::Broker(1), &heartbeat(666))
        .await
        .unwrap_err();
    let is_frame_size = |e: &Error| {
        matches!(
            e,
            Error::Corrupt {
                kind: Corruption::Codec(kcon_codec::Error::FrameSize { size: -1, .. }),
                ..
            }
        )
    };
    assert!(is_frame_size(&poisoned), "{poisoned:?}");
    for h in held {
        let e = h.await.unwrap().unwrap_err();
        assert!(is_frame_size(&e), "{e:?}");
    }
    let answer = pool
        .send(BrokerTarget::Broker(1), &heartbeat(2))
        .await
        .unwrap();
    assert_eq!(answer.throttle_time_ms, 2);
    assert_eq!(broker.stats.accepted(), 3, "a fresh connection");
}

#[tokio::test]
async fn the_coordinator_connection_does_not_queue_behind_a_slow_request() {
    let (broker, _meta) = single_broker(|r| {
        // A request the broker holds, as it holds a fetch for fetch.max.wait.ms; like Kafka,
        // it answers nothing else on that connection meanwhile.
        (r.api_key() == ApiKey::Heartbeat as i16 && r.heartbeat_number() == 99).then(|| {
            Answer::Delayed(
                Duration::from_secs(3600),
                frame::<HeartbeatRequest>(r.correlation_id(), r.version(), &Default::default()),
            )
        })
    })
    .await;
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let slow = tokio::spawn({
        let pool = pool.clone();
        async move { pool.send(BrokerTarget::Broker(1), &heartbeat(99)).await }
    });
    wait_until("the slow request is at the broker", || {
        broker.stats.count(ApiKey::Heartbeat) == 1
    })
    .await;
    let answer = timeout(
        Duration::from_secs(5),
        pool.send(
            BrokerTarget::Dedicated(1, Purpose::Coordinator),
            &heartbeat(7),
        ),
    )
    .await
    .expect("the coordinator's heartbeat waited behind the slow request")
    .unwrap();
    assert_eq!(answer.throttle_time_ms, 7);
    assert_eq!(broker.stats.accepted(), 3);
    slow.abort();
}

#[tokio::test]
async fn an_unknown_broker_id_is_an_error_after_one_refresh() {
    let (broker, _meta) = single_broker(|_| None).await;
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    let err = pool
        .send(BrokerTarget::Broker(42), &heartbeat(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownBroker { id: 42 }), "{err:?}");
    assert!(err.is_retriable());
    assert_eq!(broker.stats.count(ApiKey::Metadata), 1);
    // Broker 1 is known now, without another refresh.
    pool.send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    assert_eq!(broker.stats.count(ApiKey::Metadata), 1);
}

#[tokio::test]
async fn reconnects_back_off_exponentially_with_jitter() {
    let (broker, meta) = single_broker(|_| None).await;
    let dead = dead_address().await;
    *meta.lock().unwrap() = metadata(&[(1, broker.addr), (2, dead)], &[]);
    let pool = Pool::new(config(&[broker.address()])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let mut at = Vec::new();
    for _ in 0..4 {
        let err = pool
            .send(BrokerTarget::Broker(2), &heartbeat(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Transport { .. }) && err.is_retriable(),
            "{err:?}"
        );
        at.push(Instant::now());
    }
    // reconnect.backoff.ms 50 doubling, ±20 %: 40-60 ms, then 80-120, then 160-240. On the real
    // clock (a refused connect is socket IO), so a loaded machine may add to the upper bounds;
    // a timer never fires early, so the lower bounds are exact.
    let ms = |i: usize| (at[i + 1] - at[i]).as_millis();
    let slack = 100;
    assert!((40..=60 + slack).contains(&ms(0)), "{}", ms(0));
    assert!((80..=120 + slack).contains(&ms(1)), "{}", ms(1));
    assert!((160..=240 + slack).contains(&ms(2)), "{}", ms(2));
    // Broker 1 is not held back by broker 2's failures.
    pool.send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_and_reopened_on_demand() {
    let (broker, _meta) = single_broker(|_| None).await;
    let mut c = config(&[broker.address()]);
    c.connections_max_idle = Duration::from_secs(60);
    let pool = Pool::new(c).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    pool.send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    wait_until("the bootstrap connection is closed", || {
        broker.stats.closed() == 1
    })
    .await;
    // Virtual time from here: no request is in flight, so the only timers are the test's
    // sleeps and the pool's own.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(broker.stats.closed(), 1, "only the bootstrap connection");
    tokio::time::sleep(Duration::from_secs(31)).await;
    tokio::time::resume();
    wait_until("the idle connection is closed", || {
        broker.stats.closed() == 2
    })
    .await;
    pool.send(BrokerTarget::Broker(1), &heartbeat(2))
        .await
        .unwrap();
    assert_eq!(broker.stats.accepted(), 3);
}

#[tokio::test]
async fn metadata_is_refreshed_every_max_age_and_on_request() {
    let (broker, _meta) = single_broker(|_| None).await;
    let mut c = config(&[broker.address()]);
    c.metadata_max_age = Duration::from_millis(300);
    let periodic = Pool::new(c).unwrap();
    let start = Instant::now();
    periodic
        .refresh_metadata(TopicScope::topics(["t"]))
        .await
        .unwrap();
    assert_eq!(broker.stats.count(ApiKey::Metadata), 1);
    wait_until("two periodic refreshes", || {
        broker.stats.count(ApiKey::Metadata) >= 3
    })
    .await;
    assert!(start.elapsed() >= Duration::from_millis(600));
    // Its refreshes every 300 ms would be counted with the next pool's below.
    drop(periodic);
    // An error that means stale metadata brings a refresh without waiting for the max age.
    let mut c = config(&[broker.address()]);
    c.metadata_max_age = Duration::from_secs(3600);
    let pool = Pool::new(c).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let before = broker.stats.count(ApiKey::Metadata);
    assert!(!pool.invalidate(0));
    assert!(pool.invalidate(6));
    // The broker counts the request when it reads it, before the pool has the answer: wait for
    // the pool's snapshot, then count.
    wait_until("a requested refresh", || pool.metadata().generation == 2).await;
    assert_eq!(broker.stats.count(ApiKey::Metadata), before + 1);
}

#[tokio::test]
async fn pool_new_refuses_a_bad_config() {
    let err = Pool::new(config(&[])).unwrap_err();
    match err {
        Error::Config(ConfigError::InvalidValue { property, .. }) => {
            assert_eq!(property, "bootstrap.servers");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pool_new_outside_a_runtime_is_misuse() {
    let err = Pool::new(config(&["localhost:9092".into()])).unwrap_err();
    assert!(matches!(err, Error::Misuse(Misuse::NoRuntime)), "{err:?}");
}

/// The maps large answers are read into are the pool's, not a connection's: an answer from one
/// broker is read into the map of an answer another broker sent, once that one was dropped (a
/// consumer reading from many brokers keeps a few maps in all, not a few per broker).
#[tokio::test]
async fn a_large_answer_from_one_broker_is_read_into_the_map_of_anothers() {
    let body: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let large = HeartbeatResponse::default()
        .with_unknown_tagged_fields([(100, bytes::Bytes::from(body))].into());
    let answering = move |r: &Received| {
        (r.api() == Some(ApiKey::Heartbeat)).then(|| r.answer::<HeartbeatRequest>(&large))
    };
    let meta = shared(MetadataResponse::default());
    let a = Broker::start(serving(meta.clone(), answering.clone())).await;
    let b = Broker::start(serving(meta.clone(), answering)).await;
    *meta.lock().unwrap() = metadata(&[(1, a.addr), (2, b.addr)], &[]);
    let pool = Pool::new(config(&[a.address()])).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let at = |answer: &HeartbeatResponse| {
        let field = &answer.unknown_tagged_fields[&100];
        assert_eq!(field.len(), 3 << 20);
        field.as_ptr() as usize
    };
    let first = pool
        .send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    let first_at = at(&first);
    drop(first);
    let second = pool
        .send(BrokerTarget::Broker(2), &heartbeat(2))
        .await
        .unwrap();
    assert_eq!(
        at(&second),
        first_at,
        "read into the map broker 1's answer left"
    );
    assert_eq!(a.stats.count(ApiKey::Heartbeat), 1);
    assert_eq!(b.stats.count(ApiKey::Heartbeat), 1);
}
