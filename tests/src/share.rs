//! A share consumer (KIP-932) in a test: built, subscribed and read for exact records. The
//! share-group suites on librdkafka's mock cluster and on Apache Kafka both use these.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon::Record;
use kcon::share::{AcknowledgeType, ShareConsumer};
use kcon_admin::{GroupConfigChange, GroupConfigEntry, Pool};
use tokio::time::{Instant, timeout};

/// How long a member may take to be assigned its partitions (Kafka's share heartbeat comes
/// every 5 s at its defaults).
pub const JOIN_WITHIN: Duration = Duration::from_secs(20);

/// How long records may take to come.
pub const RECORDS_WITHIN: Duration = Duration::from_secs(20);

/// How long a test waits to see that nothing more comes.
pub const QUIET: Duration = Duration::from_millis(1500);

/// Sets `share.auto.offset.reset=earliest` and `configs` on `group` (settings Apache Kafka
/// decides per group), before its first member joins.
pub async fn configure(pool: &Pool, group: &str, configs: &[(&str, &str)]) {
    let mut changes = vec![GroupConfigChange::Set {
        name: "share.auto.offset.reset".into(),
        value: "earliest".into(),
    }];
    changes.extend(configs.iter().map(|(name, value)| GroupConfigChange::Set {
        name: (*name).into(),
        value: (*value).into(),
    }));
    kcon_admin::alter_group_configs(pool, group, &changes)
        .await
        .expect("the group's configs set");
    let mut set = vec![("share.auto.offset.reset", Some("earliest"))];
    set.extend(configs.iter().map(|(name, value)| (*name, Some(*value))));
    group_configs_read(pool, group, &set).await;
}

/// How long a group's configs, once changed, may take to read back from the broker.
pub const CONFIGS_WITHIN: Duration = Duration::from_secs(10);

/// The configs of `group` once DescribeConfigs reads each of `want` as given: a name with the
/// value set on the group, or with `None` at no value of the group's own. Kafka answers
/// IncrementalAlterConfigs once its controller has made the change; the broker's copy of the
/// metadata, which DescribeConfigs reads and share partitions start from, takes it a moment
/// later, so a describe or a member right after the change can still meet the values before it.
/// Panics, with the last configs read, after [`CONFIGS_WITHIN`].
pub async fn group_configs_read(
    pool: &Pool,
    group: &str,
    want: &[(&str, Option<&str>)],
) -> Vec<GroupConfigEntry> {
    let deadline = Instant::now() + CONFIGS_WITHIN;
    loop {
        let configs = kcon_admin::describe_group_configs(pool, group)
            .await
            .expect("the group's configs");
        let read = want.iter().all(|(name, value)| {
            configs.iter().any(|c| {
                c.name == *name
                    && match value {
                        Some(v) => c.is_set() && c.value.as_deref() == Some(*v),
                        None => !c.is_set(),
                    }
            })
        });
        if read {
            return configs;
        }
        assert!(
            Instant::now() < deadline,
            "{group}'s configs not read as {want:?} within {CONFIGS_WITHIN:?}: {configs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A share consumer of `group` bootstrapped from `bootstrap`, with `extra` properties.
pub fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> ShareConsumer {
    let mut b = ShareConsumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group);
    for (k, v) in extra {
        b = b.set(k, *v);
    }
    b.build().expect("a share consumer")
}

/// Subscribed to `topic` and waited for until it holds `partitions` partitions (nothing is
/// produced meanwhile, so no batch comes that would need acknowledging).
pub async fn joined(c: &mut ShareConsumer, topic: &str, partitions: usize) {
    c.subscribe([topic]).unwrap();
    let deadline = Instant::now() + JOIN_WITHIN;
    while c.assignment().len() < partitions {
        assert!(
            Instant::now() < deadline,
            "not assigned {partitions} partitions within {JOIN_WITHIN:?}: {:?}",
            c.assignment()
        );
        let got = timeout(Duration::from_millis(100), c.recv_batch()).await;
        if let Ok(r) = got {
            panic!("a batch before anything was produced: {r:?}");
        }
    }
}

/// Batches until `n` records came, or `within`; `each` acknowledges (or not) every record.
pub async fn receive(
    c: &mut ShareConsumer,
    n: usize,
    within: Duration,
    mut each: impl FnMut(&mut ShareConsumer, &Record),
) -> Vec<Record> {
    let mut out = Vec::new();
    let _ = timeout(within, async {
        while out.len() < n {
            let batch = c.recv_batch().await.expect("a batch");
            for r in &batch {
                each(c, r);
            }
            out.extend(batch);
        }
    })
    .await;
    out
}

/// Records that come within [`QUIET`] (implicitly accepted ones included).
pub async fn quiet(
    c: &mut ShareConsumer,
    each: impl FnMut(&mut ShareConsumer, &Record),
) -> Vec<Record> {
    receive(c, usize::MAX, QUIET, each).await
}

/// Accepts the record.
pub fn accept(c: &mut ShareConsumer, r: &Record) {
    c.acknowledge(r, AcknowledgeType::Accept).unwrap();
}

/// Leaves the record as it is (implicit mode accepts it with the next batch).
pub fn keep(_: &mut ShareConsumer, _: &Record) {}

/// (partition, offset) of each record, with its delivery count; panics on a record handed out
/// twice.
pub fn seen(records: &[Record]) -> BTreeMap<(i32, i64), u16> {
    let mut out = BTreeMap::new();
    for r in records {
        let count = r
            .delivery_count
            .expect("a share group's record has a delivery count");
        assert!(
            out.insert((r.partition, r.offset), count).is_none(),
            "{}/{} handed out twice: {records:?}",
            r.partition,
            r.offset
        );
    }
    out
}

/// Asserts that a kcon member (`mine`, as it received them) and a peer client (`theirs`, as
/// [`SharePeer::records`](crate::peers::SharePeer::records) gives them) together processed
/// every record of `topic`-0 at offsets `0..count` exactly once, each at delivery count 1, none
/// by both; tells the split. `peer` names the peer in the messages.
pub fn assert_shared_once(
    topic: &str,
    mine: &[Record],
    theirs: &[(String, i32, i64, i64)],
    peer: &str,
    count: i64,
) {
    let mine = seen(mine);
    let mut all = mine.clone();
    for (t, p, o, delivery) in theirs {
        assert_eq!(t, topic);
        assert_eq!(*delivery, 1, "redelivered to {peer}: {p}/{o}");
        assert!(
            all.insert((*p, *o), 1).is_none(),
            "{p}/{o} processed by both members"
        );
    }
    assert!(
        mine.values().all(|c| *c == 1),
        "redelivered to kcon: {mine:?}"
    );
    assert_eq!(all, (0..count).map(|o| ((0, o), 1)).collect());
    // Which member asked first for each chunk is the broker's to decide: the split is told,
    // not asserted.
    eprintln!("kcon processed {}, {peer} {}", mine.len(), theirs.len());
}
