//! Rebootstrap against scripted brokers: every known broker unreachable, REBOOTSTRAP_REQUIRED in
//! a Metadata answer and in another answer, no metadata for the trigger time, an answer naming
//! no brokers, another cluster answering, and `metadata.recovery.strategy=none`.
//!
//! Each test has a bootstrap server (`boot`) whose Metadata answers name other brokers, so that
//! a Metadata request reaching `boot` again is the rebootstrap seen from the broker's side.

use std::sync::{Arc, Mutex};

use kcon_codec::kafka_protocol::messages::{
    ApiKey, HeartbeatRequest, HeartbeatResponse, MetadataRequest, MetadataResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::Cause;
use kcon_pool::{
    BrokerTarget, Error, MetadataRecoveryStrategy, Pool, PoolConfig, RebootstrapCause, TopicScope,
};

use crate::support::*;

const REBOOTSTRAP_REQUIRED: i16 = 129;

/// `boot`, answering Metadata with `boot_meta`, and `other`, a broker with its own answers and
/// `special` going first; `boot` names `other` as broker 1.
async fn boot_and_other(
    special: impl Fn(&Received) -> Option<Answer> + Send + Sync + 'static,
) -> (Broker, Broker, Arc<Mutex<MetadataResponse>>) {
    let boot_meta = shared(MetadataResponse::default());
    let boot = Broker::start(serving(boot_meta.clone(), |_| None)).await;
    let other_meta = shared(MetadataResponse::default());
    let other = Broker::start(serving(other_meta.clone(), special)).await;
    *other_meta.lock().unwrap() = metadata(&[(1, other.addr)], &[]);
    *boot_meta.lock().unwrap() = metadata(&[(1, other.addr)], &[]);
    (boot, other, boot_meta)
}

fn pool_config(boot: &Broker) -> PoolConfig {
    config(&[boot.address()])
}

#[tokio::test]
async fn every_known_broker_unreachable_goes_back_to_the_bootstrap_servers() {
    let boot_meta = shared(MetadataResponse::default());
    let boot = Broker::start(serving(boot_meta.clone(), |_| None)).await;
    let dead = dead_address().await;
    // The cluster first names a broker that is gone by the next refresh.
    *boot_meta.lock().unwrap() = metadata(&[(1, dead)], &[]);
    let pool = Pool::new(pool_config(&boot)).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert!(pool.metadata().broker(1).is_some());
    // Now the bootstrap address leads to the cluster as it is: broker 2.
    *boot_meta.lock().unwrap() = metadata(&[(2, boot.addr)], &[]);
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert!(m.broker(1).is_none(), "{m:?}");
    assert!(m.broker(2).is_some(), "{m:?}");
    assert_eq!(boot.stats.count(ApiKey::Metadata), 2);
    let r = pool.rebootstraps();
    assert_eq!((r.unreachable, r.no_metadata, r.required), (1, 0, 0));
    // Broker 2 serves requests from now on.
    let answer = pool
        .send(BrokerTarget::Broker(2), &heartbeat(7))
        .await
        .unwrap();
    assert_eq!(answer.throttle_time_ms, 7);
    assert_eq!(pool.rebootstraps().total(), 1);
}

#[tokio::test]
async fn strategy_none_keeps_trying_the_known_brokers() {
    let boot_meta = shared(MetadataResponse::default());
    let boot = Broker::start(serving(boot_meta.clone(), |_| None)).await;
    let dead = dead_address().await;
    *boot_meta.lock().unwrap() = metadata(&[(1, dead)], &[]);
    let mut c = pool_config(&boot);
    c.set("metadata.recovery.strategy", "none").unwrap();
    assert_eq!(c.metadata_recovery_strategy, MetadataRecoveryStrategy::None);
    let pool = Pool::new(c).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    *boot_meta.lock().unwrap() = metadata(&[(2, boot.addr)], &[]);
    for _ in 0..3 {
        let e = pool.refresh_metadata(TopicScope::none()).await.unwrap_err();
        assert!(matches!(e, Error::Transport { .. }), "{e}");
    }
    assert_eq!(boot.stats.count(ApiKey::Metadata), 1);
    assert_eq!(pool.rebootstraps().total(), 0);
    assert!(pool.metadata().broker(1).is_some());
}

#[tokio::test]
async fn rebootstrap_required_in_a_metadata_answer() {
    let (boot, other, _) = boot_and_other(|r| {
        (r.api() == Some(ApiKey::Metadata)).then(|| {
            assert_eq!(r.version(), 13);
            r.answer::<MetadataRequest>(
                &MetadataResponse::default().with_error_code(REBOOTSTRAP_REQUIRED),
            )
        })
    })
    .await;
    let pool = Pool::new(pool_config(&boot)).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let e = pool.refresh_metadata(TopicScope::none()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Broker {
                error_code: REBOOTSTRAP_REQUIRED,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(pool.rebootstraps().of(RebootstrapCause::Required), 1);
    // The background task asks the bootstrap server at once, and every connection to the old
    // broker is closed.
    wait_until("the bootstrap server is asked again", || {
        boot.stats.count(ApiKey::Metadata) == 2
    })
    .await;
    wait_until("the old broker's connections are closed", || {
        other.stats.closed() == other.stats.accepted()
    })
    .await;
}

#[tokio::test]
async fn rebootstrap_required_in_any_other_answer() {
    let (boot, _other, _) = boot_and_other(|r| {
        (r.api() == Some(ApiKey::Heartbeat)).then(|| {
            r.answer::<HeartbeatRequest>(
                &HeartbeatResponse::default().with_error_code(REBOOTSTRAP_REQUIRED),
            )
        })
    })
    .await;
    let pool = Pool::new(pool_config(&boot)).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    // The answer is the caller's, as it came; the pool acts on it besides.
    let answer = pool
        .send(BrokerTarget::Broker(1), &heartbeat(1))
        .await
        .unwrap();
    assert_eq!(answer.error_code, REBOOTSTRAP_REQUIRED);
    wait_until("the pool rebootstraps", || {
        pool.rebootstraps().required == 1
    })
    .await;
    wait_until("the bootstrap server is asked again", || {
        boot.stats.count(ApiKey::Metadata) == 2
    })
    .await;
    assert_eq!(pool.rebootstraps().total(), 1);
}

#[tokio::test]
async fn no_metadata_for_the_trigger_time_rebootstraps() {
    // The known broker accepts connections but never answers Metadata: reachable, useless.
    let (boot, other, _) =
        boot_and_other(|r| (r.api() == Some(ApiKey::Metadata)).then_some(Answer::Silent)).await;
    let mut c = pool_config(&boot);
    c.set("metadata.recovery.rebootstrap.trigger.ms", "400")
        .unwrap();
    c.set("request.timeout.ms", "150").unwrap();
    let pool = Pool::new(c).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let e = pool.refresh_metadata(TopicScope::none()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    // The background task retries after its backoff; once the refreshes have failed for the
    // trigger time, the pool goes back to the bootstrap server.
    wait_until("the pool rebootstraps", || {
        pool.rebootstraps().no_metadata == 1
    })
    .await;
    wait_until("the bootstrap server is asked again", || {
        boot.stats.count(ApiKey::Metadata) == 2
    })
    .await;
    assert!(other.stats.count(ApiKey::Metadata) >= 2);
    let r = pool.rebootstraps();
    assert_eq!((r.unreachable, r.required), (0, 0));
}

#[tokio::test]
async fn an_answer_naming_no_brokers_is_ignored() {
    // The known broker's Metadata answers, in turn; the last one stays.
    let answers: Arc<Mutex<Vec<MetadataResponse>>> = Arc::new(Mutex::new(Vec::new()));
    let a = answers.clone();
    let (boot, other, _) = boot_and_other(move |r| {
        (r.api() == Some(ApiKey::Metadata)).then(|| {
            let mut a = a.lock().unwrap();
            let next = if a.len() > 1 {
                a.remove(0)
            } else {
                a[0].clone()
            };
            r.answer::<MetadataRequest>(&next)
        })
    })
    .await;
    let good = metadata(&[(1, other.addr)], &[("t", &[(0, 1, 3)])]);
    let empty = MetadataResponse::default()
        .with_cluster_id(Some(StrBytes::from_static_str("scripted")))
        .with_topics(good.topics.clone());
    *answers.lock().unwrap() = vec![empty, good];
    let pool = Pool::new(pool_config(&boot)).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let t = || TopicScope::topics(["t"]);
    let e = pool.refresh_metadata(t()).await.unwrap_err();
    assert!(matches!(e, Error::NoBrokers { .. }), "{e}");
    assert!(e.is_retriable());
    // Ignored whole: the brokers stay, and the topics it listed are not taken either.
    let m = pool.metadata();
    assert!(m.broker(1).is_some());
    assert!(m.topic("t").is_none());
    let m = pool.refresh_metadata(t()).await.unwrap();
    assert_eq!(m.partition("t", 0).unwrap().leader_epoch, Some(3));
    assert_eq!(pool.rebootstraps().total(), 0);
    assert_eq!(boot.stats.count(ApiKey::Metadata), 1);
}

#[tokio::test]
async fn another_cluster_answering_stops_the_pool() {
    let (boot, other, _) = boot_and_other(|r| {
        (r.api() == Some(ApiKey::Metadata)).then(|| {
            let mut m = MetadataResponse::default();
            m.cluster_id = Some(StrBytes::from_static_str("another"));
            m.brokers = metadata(&[(1, "127.0.0.1:1".parse().unwrap())], &[]).brokers;
            r.answer::<MetadataRequest>(&m)
        })
    })
    .await;
    let pool = Pool::new(pool_config(&boot)).unwrap();
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(m.cluster_id.as_deref(), Some("scripted"));
    let e = pool.refresh_metadata(TopicScope::none()).await.unwrap_err();
    let Error::ClusterChanged { known, found, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!((known.as_str(), found.as_str()), ("scripted", "another"));
    assert_eq!(e.cause(), Cause::Config);
    assert!(!e.is_retriable());
    assert!(e.to_string().contains("bootstrap.servers"), "{e}");
    // Nothing more is sent, to either cluster.
    assert!(matches!(pool.failure(), Some(Error::ClusterChanged { .. })));
    for target in [BrokerTarget::Any, BrokerTarget::Broker(1)] {
        let e = pool.send(target, &heartbeat(1)).await.unwrap_err();
        assert!(matches!(e, Error::ClusterChanged { .. }), "{e}");
    }
    assert_eq!(other.stats.count(ApiKey::Heartbeat), 0);
    assert_eq!(boot.stats.count(ApiKey::Heartbeat), 0);
    assert_eq!(pool.rebootstraps().total(), 0);
}
