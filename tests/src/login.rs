//! Clients that log in with SASL properties (OAuth tokens, Kerberos tickets) on a real
//! broker's listener: made at the defaults with the properties added, as an application would.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon::{Consumer, Record};
use kcon_pool::{Pool, PoolConfig};
use kcon_produce::{Producer, ProducerRecord};

use crate::brokers::unique_name;
use crate::consumer::{builder_at_defaults, recv_n};
use crate::kafka::{NewTopic, create};

/// Properties by name, as the clients take them.
pub type Properties = Vec<(&'static str, String)>;

/// A pool configuration for `bootstrap` with `props`.
pub fn pool_config(bootstrap: &str, props: &[(&str, String)]) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.set("bootstrap.servers", bootstrap).unwrap();
    for (name, value) in props {
        c.set(name, value).unwrap();
    }
    c
}

/// A consumer in `group` at the defaults (reading from the earliest offset), with `props`.
pub fn consumer(bootstrap: &str, props: &[(&str, String)], group: &str) -> Consumer {
    let mut b = builder_at_defaults(bootstrap).group_id(group);
    for (name, value) in props {
        b = b.set(name, value.as_str());
    }
    b.build().unwrap()
}

/// A consumer outside any group (to be assigned partitions) at the defaults, with `props`.
pub fn assigned_consumer(bootstrap: &str, props: &[(&str, String)]) -> Consumer {
    let mut b = builder_at_defaults(bootstrap);
    for (name, value) in props {
        b = b.set(name, value.as_str());
    }
    b.build().unwrap()
}

/// Every client logs in with `props` and works: a pool creates a topic of three partitions
/// (the admin calls' path), a producer sends 300 keyed records, and a consumer in a group of
/// `group_prefix` reads all of them and commits.
pub async fn every_client_works(bootstrap: &str, props: &[(&str, String)], group_prefix: &str) {
    let topic = topic(bootstrap, props, 3).await;
    let producer = producer(bootstrap, props);
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let record = ProducerRecord::new(topic.clone(), format!("v{i}")).with_key(format!("k{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }

    let mut consumer = consumer(bootstrap, props, &unique_name(group_prefix));
    consumer.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut consumer, 300, Duration::from_secs(60)).await;
    let got: BTreeSet<String> = values(&records).into_iter().collect();
    let sent: BTreeSet<String> = (0..300).map(|i| format!("v{i}")).collect();
    assert_eq!(got, sent);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
}

/// A producer at the defaults, with `props`.
pub fn producer(bootstrap: &str, props: &[(&str, String)]) -> Producer {
    let mut b = Producer::builder().bootstrap_servers(bootstrap);
    for (name, value) in props {
        b = b.set(name, value.as_str());
    }
    b.build().unwrap()
}

/// A topic of `partitions`, created by a pool logged in with `props` (the admin calls' path).
pub async fn topic(bootstrap: &str, props: &[(&str, String)], partitions: i32) -> String {
    let name = unique_name("login");
    let pool = Pool::new(pool_config(bootstrap, props)).unwrap();
    create(&pool, &[NewTopic::new(&name, partitions)]).await;
    name
}

/// The records' values, as text.
pub fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().expect("a value").to_vec()).unwrap())
        .collect()
}
