//! Clients that log in with SASL properties (OAuth tokens, Kerberos tickets) on a real
//! broker's listener: made at the defaults with the properties added, as an application would.

use kcon::{Consumer, Record};
use kcon_pool::{Pool, PoolConfig};
use kcon_produce::Producer;

use crate::brokers::unique_name;
use crate::consumer::builder_at_defaults;
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
