//! A group's configs through kcon-admin (DescribeConfigs and IncrementalAlterConfigs of the
//! GROUP resource) on Apache Kafka (the shared clusters of `scripts/kafka`): 4.4 at its
//! defaults, where a share group set to `share.auto.offset.reset=earliest` reads what was
//! written before it started, and 3.9.1, which has no group configs.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon::share::ShareConsumer;
use kcon_admin::{
    ConfigSource, Error, GroupConfigChange, GroupConfigEntry, ResponseError, alter_group_configs,
    describe_group_configs,
};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;
use kcon_tests::share::group_configs_read;

/// How long a share consumer may take to join and read what it is given.
const READ_WITHIN: Duration = Duration::from_secs(60);

/// Records written before the share group's first member joins.
const BACKLOG: usize = 20;

fn set(name: &str, value: &str) -> GroupConfigChange {
    GroupConfigChange::Set {
        name: name.into(),
        value: value.into(),
    }
}

fn delete(name: &str) -> GroupConfigChange {
    GroupConfigChange::Delete { name: name.into() }
}

/// The config `name` of `configs`.
fn entry<'a>(configs: &'a [GroupConfigEntry], name: &str) -> &'a GroupConfigEntry {
    configs
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} among {configs:?}"))
}

/// A share group whose `share.auto.offset.reset` kcon-admin set to `earliest` before its first
/// member joined reads the records written before (at the default, `latest`, it would start at
/// the log's end and read none of them). The group's configs show the value set on the group,
/// as Kafka's own tool does, and deleting it brings the default back.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_group_set_to_earliest_reads_what_was_written_before_it_joined() {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name("group-config");
    create_topics(&pool, &[(&topic, 1)]).await;
    produce(&pool, &topic, 0, BACKLOG, now_ms()).await;
    let group = unique_name("group-config");

    let before = describe_group_configs(&pool, &group)
        .await
        .expect("the group's configs");
    let reset = entry(&before, "share.auto.offset.reset");
    assert_eq!(
        (reset.value.as_deref(), reset.source, reset.is_set()),
        (Some("latest"), ConfigSource::Default, false),
        "{reset:?}"
    );
    assert!(
        before.iter().all(|c| !c.is_set()),
        "a new group has defaults only: {before:?}"
    );

    alter_group_configs(
        &pool,
        &group,
        &[
            set("share.auto.offset.reset", "earliest"),
            set("share.record.lock.duration.ms", "15000"),
        ],
    )
    .await
    .expect("the configs set");
    // Kafka's broker reads the change a moment after its controller answered: asked until it
    // does (not that it does at once, which Kafka does not promise).
    let after = group_configs_read(
        &pool,
        &group,
        &[
            ("share.auto.offset.reset", Some("earliest")),
            ("share.record.lock.duration.ms", Some("15000")),
        ],
    )
    .await;
    for (name, value) in [
        ("share.auto.offset.reset", "earliest"),
        ("share.record.lock.duration.ms", "15000"),
    ] {
        let c = entry(&after, name);
        assert_eq!(
            (c.value.as_deref(), c.source, c.is_set()),
            (Some(value), ConfigSource::Group, true),
            "{c:?}"
        );
    }
    // The broker setting the lock duration's default comes from is among its synonyms.
    let lock = entry(&after, "share.record.lock.duration.ms");
    assert!(
        lock.synonyms
            .iter()
            .any(|s| s.name == "group.share.record.lock.duration.ms"
                && s.source == ConfigSource::Default),
        "{lock:?}"
    );
    // Kafka's own tool reads the same.
    let java = kafka.tool(
        "org.apache.kafka.tools.ConfigCommand",
        &[
            "--describe",
            "--entity-type",
            "groups",
            "--entity-name",
            &group,
        ],
    );
    assert!(
        java.contains("share.auto.offset.reset=earliest")
            && java.contains("share.record.lock.duration.ms=15000"),
        "{java}"
    );

    // A member joining now reads the backlog, from the log's start.
    let mut consumer = ShareConsumer::builder()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", &group)
        .build()
        .expect("a share consumer");
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut offsets = BTreeSet::new();
    tokio::time::timeout(READ_WITHIN, async {
        while offsets.len() < BACKLOG {
            for r in consumer.recv_batch().await.expect("a batch") {
                offsets.insert(r.offset);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {BACKLOG} records: {offsets:?}", offsets.len()));
    assert_eq!(offsets, (0..BACKLOG as i64).collect::<BTreeSet<_>>());
    consumer.close().await.expect("the consumer leaves");

    alter_group_configs(&pool, &group, &[delete("share.auto.offset.reset")])
        .await
        .expect("the config deleted");
    let deleted = group_configs_read(&pool, &group, &[("share.auto.offset.reset", None)]).await;
    let reset = entry(&deleted, "share.auto.offset.reset");
    assert_eq!(
        (reset.value.as_deref(), reset.source),
        (Some("latest"), ConfigSource::Default),
        "{reset:?}"
    );
    assert!(
        entry(&deleted, "share.record.lock.duration.ms").is_set(),
        "only what was deleted goes back to its default"
    );
    // A config the group has no value of deletes as nothing, as Kafka has it.
    alter_group_configs(&pool, &group, &[delete("share.auto.offset.reset")])
        .await
        .expect("nothing to delete is no error");
}

/// A name the broker does not know is refused with INVALID_CONFIG and the broker's words,
/// naming the group config meant; a value out of range with the broker's reason. The changes
/// asked together are made all or none.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_group_config_is_refused_naming_the_one_meant() {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let group = unique_name("group-config-typo");

    let e = alter_group_configs(
        &pool,
        &group,
        &[
            set("share.delivery.count.limit", "3"),
            set("share.auto.offset.rest", "earliest"),
        ],
    )
    .await
    .expect_err("an unknown config");
    assert_eq!(e.code(), Some(ResponseError::InvalidConfig), "{e:?}");
    let text = e.to_string();
    for what in [
        "IncrementalAlterConfigs answered INVALID_CONFIG (40)",
        "Unknown group config name: share.auto.offset.rest",
        "share.auto.offset.rest is not a group config (did you mean share.auto.offset.reset?)",
    ] {
        assert!(text.contains(what), "{what}: {text}");
    }
    let configs = describe_group_configs(&pool, &group)
        .await
        .expect("the group's configs");
    assert!(
        !entry(&configs, "share.delivery.count.limit").is_set(),
        "nothing of a refused call is made: {configs:?}"
    );

    let e = alter_group_configs(&pool, &group, &[set("share.record.lock.duration.ms", "1")])
        .await
        .expect_err("a value out of range");
    assert_eq!(e.code(), Some(ResponseError::InvalidConfig), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("share.record.lock.duration.ms") && text.contains("at least 1000"),
        "{text}"
    );
    assert!(!text.contains("did you mean"), "a known name: {text}");
}

/// Apache Kafka 3.9.1 has no GROUP config resource: describing and changing a group's configs
/// fail as unsupported, naming the API, the broker's answer and the version that has them.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_3_9_has_no_group_configs_and_says_so() {
    let kafka = Kafka::kafka39();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let group = unique_name("group-config-39");

    let e = describe_group_configs(&pool, &group)
        .await
        .expect_err("no group configs");
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    let text = e.to_string();
    for what in [
        "DescribeConfigs",
        "INVALID_REQUEST",
        "Apache Kafka 4.0 or later",
    ] {
        assert!(text.contains(what), "{what}: {text}");
    }
    let e = alter_group_configs(&pool, &group, &[set("share.auto.offset.reset", "earliest")])
        .await
        .expect_err("no group configs");
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    let text = e.to_string();
    for what in [
        "IncrementalAlterConfigs",
        "INVALID_REQUEST",
        "Unknown resource type 32",
        "Apache Kafka 4.0 or later",
    ] {
        assert!(text.contains(what), "{what}: {text}");
    }
}
