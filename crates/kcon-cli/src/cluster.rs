//! The connection every command makes: `-b` and `-X`, a pool, and the first Metadata request
//! that tells an unreachable cluster, a failed login and unknown topics apart before anything
//! else starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use kcon::ConsumerBuilder;
use kcon::property::{pool, registry, suggest};
use kcon_admin::{AutoCreate, Metadata, Pool, PoolConfig, TopicScope};

use crate::failure::{Failure, UNREACHABLE, error_name};

/// How long the first contact with the cluster may take in all, on top of the pool's own
/// per-connection timeouts: bounds the wait on a black-holed address list.
const FIRST_CONTACT_LIMIT: Duration = Duration::from_secs(60);

/// How long `kcon produce` waits for a topic the brokers create on its asking to have
/// partitions (the Java producer's `max.block.ms` default: how long its `send` waits for a
/// topic's metadata).
const CREATED_WITHIN: Duration = Duration::from_secs(60);

/// How long `kcon produce` asks again for a topic the brokers answer UNKNOWN_TOPIC_OR_PARTITION
/// for before it takes them for brokers that create no topic on demand. Apache Kafka (KRaft)
/// answers so to the very request that makes it create the topic, and to every one until the
/// topic is there (well under a second on an idle cluster), so the answer alone does not tell
/// a broker creating it from one that never will.
const UNKNOWN_FOR: Duration = Duration::from_secs(10);

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// LEADER_NOT_AVAILABLE: what a broker answers for a topic whose partitions have no leader
/// yet.
const LEADER_NOT_AVAILABLE: i16 = 5;
/// TOPIC_AUTHORIZATION_FAILED.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// The options that say where the cluster is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    /// Bootstrap brokers, comma-separated.
    #[arg(
        short = 'b',
        long = "bootstrap-servers",
        value_name = "HOST:PORT[,...]"
    )]
    pub(crate) brokers: String,

    /// A client property by its Kafka name, e.g. -X security.protocol=SASL_SSL
    /// -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=U -X sasl.password=P
    /// -X ssl.ca.location=ca.pem. Repeatable; a later value replaces an earlier one.
    #[arg(short = 'X', value_name = "PROP=VALUE", value_parser = parse_property)]
    pub(crate) properties: Vec<(String, String)>,
}

impl ClusterArgs {
    /// The last value given for `name` with `-X`.
    pub(crate) fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The pool's configuration: `-b` and the connection properties among `-X` (those the
    /// pool's property table has). Any other property is refused, naming it, unless
    /// `also_allowed` has it (the caller uses it); `None` lets every other property through
    /// (the caller has checked them).
    pub(crate) fn pool_config(&self, also_allowed: Option<&[&str]>) -> Result<PoolConfig, Failure> {
        let mut config = PoolConfig::default();
        config.client_id = "kcon".to_owned();
        // Asking about a topic must not create it (a broker with
        // auto.create.topics.enable=true creates the topics a Metadata request names when it
        // allows it); `-X allow.auto.create.topics=true` restores the Java client's default.
        // `produce` asks as a producer does, whatever this says (`partitions_to_produce`).
        config.allow_auto_create_topics = false;
        set_pool_property(&mut config, "bootstrap.servers", &self.brokers)?;
        for (name, value) in &self.properties {
            if registry::lookup(pool::PROPERTIES, name).is_some() {
                set_pool_property(&mut config, name, value)?;
            } else if let Some(allowed) = also_allowed
                && !allowed.contains(&name.as_str())
            {
                return Err(not_for_this_command(name, allowed));
            }
        }
        config
            .validate()
            .map_err(|e| Failure::usage(format!("bad configuration: {e}")))?;
        Ok(config)
    }

    /// A pool that has answered one Metadata request: the cluster is reachable and the
    /// credentials work.
    pub(crate) async fn connect(&self, also_allowed: Option<&[&str]>) -> Result<Cluster, Failure> {
        let config = self.pool_config(also_allowed)?;
        let pool = Pool::new(config).map_err(Failure::from_pool)?;
        let cluster = Cluster {
            pool,
            brokers: self.brokers.clone(),
        };
        cluster.metadata(TopicScope::none()).await?;
        Ok(cluster)
    }
}

/// A reachable cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub(crate) pool: Pool,
    brokers: String,
}

impl Cluster {
    /// Metadata for `scope`, with unreachable brokers named in the error.
    pub(crate) async fn metadata(&self, scope: TopicScope) -> Result<Arc<Metadata>, Failure> {
        self.metadata_with(scope, AutoCreate::Configured).await
    }

    /// [`metadata`](Cluster::metadata), asked as `auto_create` says.
    async fn metadata_with(
        &self,
        scope: TopicScope,
        auto_create: AutoCreate,
    ) -> Result<Arc<Metadata>, Failure> {
        let refresh = self.pool.refresh_metadata_with(scope, auto_create);
        match tokio::time::timeout(FIRST_CONTACT_LIMIT, refresh).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(Failure::from_pool(e)),
            Err(_) => Err(Failure::runtime(format!(
                "{UNREACHABLE}: no answer from {} within {} s",
                self.brokers,
                FIRST_CONTACT_LIMIT.as_secs()
            ))),
        }
    }

    /// The partitions of `topic`, to produce to. Asked as a producer asks (as the Java
    /// producer does, whatever `allow.auto.create.topics` says): a missing topic is created by
    /// brokers with `auto.create.topics.enable=true` (Apache Kafka's default), and waited for
    /// (at most [`CREATED_WITHIN`]); one still unknown after [`UNKNOWN_FOR`] is reported with
    /// the broker setting that would create it and the command that does.
    pub(crate) async fn partitions_to_produce(&self, topic: &str) -> Result<Vec<i32>, Failure> {
        let started = Instant::now();
        let backoff = self.pool.config().retry_backoff_policy();
        let mut attempts = 0u32;
        loop {
            let metadata = self
                .metadata_with(TopicScope::topics([topic]), AutoCreate::Always)
                .await?;
            let (code, partitions) = match metadata.topic(topic) {
                Some(t) => (
                    t.error_code,
                    t.partitions.keys().copied().collect::<Vec<_>>(),
                ),
                None => (UNKNOWN_TOPIC_OR_PARTITION, Vec::new()),
            };
            match code {
                0 if !partitions.is_empty() => return Ok(partitions),
                // Created, its partitions or their leaders not there yet.
                0 | LEADER_NOT_AVAILABLE => {}
                // Being created on this asking, or never to be.
                UNKNOWN_TOPIC_OR_PARTITION if started.elapsed() < UNKNOWN_FOR => {}
                UNKNOWN_TOPIC_OR_PARTITION => {
                    return Err(Failure::runtime(format!(
                        "unknown topic {topic:?}: the brokers did not create it within {} s of \
                         being asked (they create a topic a producer asks for only with \
                         auto.create.topics.enable=true); create it with `kcon topic create`",
                        UNKNOWN_FOR.as_secs()
                    )));
                }
                TOPIC_AUTHORIZATION_FAILED => {
                    return Err(Failure::runtime(format!(
                        "not authorized to access topic {topic:?} [{}]",
                        error_name(code)
                    )));
                }
                code => {
                    return Err(Failure::runtime(format!(
                        "topic {topic:?}: the broker answered {}",
                        error_name(code)
                    )));
                }
            }
            if started.elapsed() >= CREATED_WITHIN {
                return Err(Failure::runtime(format!(
                    "topic {topic:?} has no partitions ready after {} s: the brokers answered {}",
                    CREATED_WITHIN.as_secs(),
                    error_name(code)
                )));
            }
            tokio::time::sleep(backoff.delay_random(attempts)).await;
            attempts = attempts.saturating_add(1);
        }
    }

    /// The partitions of each of `topics`, which must all exist and be readable.
    pub(crate) async fn partitions(
        &self,
        topics: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<i32>>, Failure> {
        let metadata = self
            .metadata(TopicScope::topics(topics.iter().cloned()))
            .await?;
        let mut out = BTreeMap::new();
        for name in topics {
            let Some(t) = metadata.topic(name) else {
                return Err(Failure::runtime(format!("unknown topic {name:?}")));
            };
            match t.error_code {
                0 => {}
                3 => return Err(Failure::runtime(format!("unknown topic {name:?}"))),
                29 => {
                    return Err(Failure::runtime(format!(
                        "not authorized to access topic {name:?} [{}]",
                        error_name(29)
                    )));
                }
                code => {
                    return Err(Failure::runtime(format!(
                        "topic {name:?}: the broker answered {}",
                        error_name(code)
                    )));
                }
            }
            if t.partitions.is_empty() {
                return Err(Failure::runtime(format!(
                    "topic {name:?} has no partitions yet"
                )));
            }
            out.insert(name.clone(), t.partitions.keys().copied().collect());
        }
        Ok(out)
    }
}

/// The error for `-X name=...` on a command that takes only the connection properties (the
/// pool's table), naming the consumer's parts `name` configures if it is one of its properties.
fn not_for_this_command(name: &str, also_allowed: &[&str]) -> Failure {
    let connection: Vec<&str> = pool::PROPERTIES.iter().map(|p| p.name).collect();
    let parts = registry::parts_of(ConsumerBuilder::properties(), name);
    let what = if parts.is_empty() {
        // The property meant, among those the command takes.
        let mut taken: Vec<&str> = registry::names(registry::erased(pool::PROPERTIES)).collect();
        taken.extend_from_slice(also_allowed);
        let hint = suggest::closest(name, taken)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        format!("unknown property {name:?} for this command{hint}")
    } else {
        let parts: Vec<&str> = parts.iter().map(|part| part.name()).collect();
        format!(
            "property {name:?} configures the consumer's {}, not this command",
            parts.join(", ")
        )
    };
    Failure::usage(format!(
        "bad configuration: {what} (it takes the connection properties: {})",
        connection.join(", ")
    ))
}

fn set_pool_property(config: &mut PoolConfig, name: &str, value: &str) -> Result<(), Failure> {
    config
        .set(name, value)
        .map_err(|e| Failure::usage(format!("bad configuration: {e}")))
}

/// `-X name=value`.
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected PROP=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(properties: &[(&str, &str)]) -> ClusterArgs {
        ClusterArgs {
            brokers: "kafka:9092".to_owned(),
            properties: properties
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn connection_properties_reach_the_pool_under_any_of_their_names() {
        let config = args(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("group.id", "g"),
        ])
        .pool_config(None)
        .unwrap();
        assert_eq!(
            config.sasl_mechanism,
            Some(kcon_admin::SaslMechanism::Plain)
        );
        assert_eq!(config.bootstrap_servers, ["kafka:9092"]);
        assert!(!config.allow_auto_create_topics, "the tool's own default");
    }

    #[test]
    fn a_command_without_a_consumer_names_what_it_does_not_take() {
        let e = args(&[("group.id", "g")])
            .pool_config(Some(&[]))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("\"group.id\" configures the consumer's group, offsets"),
            "{e}"
        );
        assert!(e.contains("sasl.mechanism"), "{e}");
        let e = args(&[("group.idd", "g")])
            .pool_config(Some(&[]))
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown property \"group.idd\""),
            "{e}"
        );
        assert!(!e.to_string().contains("did you mean"), "{e}");
        // A connection property mistyped: the one meant is named.
        let e = args(&[("sasl.mechansim", "PLAIN")])
            .pool_config(Some(&[]))
            .unwrap_err();
        assert!(
            e.to_string().contains(
                "unknown property \"sasl.mechansim\" for this command (did you mean \
                 sasl.mechanism?)"
            ),
            "{e}"
        );
        let e = args(&[("request.timeout.ms", "0")])
            .pool_config(Some(&[]))
            .unwrap_err();
        assert!(e.to_string().contains("request.timeout.ms"), "{e}");
    }
}
