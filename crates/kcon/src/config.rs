//! The consumer's configuration: Kafka's property names, looked up in the property tables of
//! the consumer's parts (each crate's `property` module, and kcon's own in
//! `config/properties.rs`) and handed to every part whose table has them.

use std::time::Duration;

use kcon_core::property::{AnyProperty, Configurable, Property, erased, registry};
use kcon_core::{ConfigError, IsolationLevel, ResetPolicy};
use kcon_fetch::FetchConfig;
use kcon_group::GroupConfig;
use kcon_offsets::OffsetsConfig;
use kcon_pool::{PoolConfig, TokenProvider};

use crate::error::Error;
use crate::listener::RebalanceListener;

// The `errors.*` properties are in kcon's property table with the consumer's own: a
// Processor's builder reads them (`PolicyConfig`), and a consumer's builder refuses them.
mod policy;
mod properties;

pub use policy::{ErrorTolerance, PolicyConfig, ProcessingOrder};
pub use properties::{
    AcknowledgementMode, CONSUMER, ConsumerSetting, POLICY, PROPERTIES, REFUSALS, SHARE,
    SHARE_POLICY,
};

/// Builds a [`Consumer`](crate::Consumer): typed setters for the common properties, and
/// [`set`](ConsumerBuilder::set) for any property kcon supports, under its Java/librdkafka
/// name. Nothing is checked until [`build`](ConsumerBuilder::build), which names the first
/// property that is unknown, has a bad value, or conflicts with another.
///
/// ```
/// use kcon::{Consumer, ResetPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kcon::Error> {
/// let consumer = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     .auto_offset_reset(ResetPolicy::Earliest)
///     .set("partition.assignment.strategy", "cooperative-sticky")
///     .set("session.timeout.ms", "10000")
///     .build()?;
/// # drop(consumer);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct ConsumerBuilder {
    properties: Vec<(String, String)>,
    token_provider: Option<TokenProvider>,
    // Taken by `build` (`consumer/build.rs`).
    pub(crate) listener: Option<Box<dyn RebalanceListener>>,
    pub(crate) hooks: Vec<std::sync::Arc<dyn crate::hooks::ConsumerHooks>>,
}

/// Every part's configuration, checked together.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) pool: PoolConfig,
    /// `None` without `group.id`.
    pub(crate) group: Option<GroupConfig>,
    /// `None` without `group.id`.
    pub(crate) offsets: Option<OffsetsConfig>,
    pub(crate) fetch: FetchConfig,
    /// `close.timeout.ms` (kcon's own): how long [`Consumer::close`](crate::Consumer::close)
    /// may take. Default 30 s, the Java client's default close timeout.
    pub(crate) close_timeout: Duration,
}

impl ConsumerBuilder {
    /// An empty configuration: at least `bootstrap.servers` must be set.
    pub fn new() -> Self {
        ConsumerBuilder::default()
    }

    /// Sets a property by its Kafka name (`"group.id"`, `"auto.offset.reset"`,
    /// `"partition.assignment.strategy"`, `"security.protocol"`, ...): any property of
    /// [`ConsumerBuilder::properties`] (the README's configuration table). A later
    /// value of the same property, under any of its names, replaces an earlier one. Unknown
    /// names and bad values are reported by [`build`](ConsumerBuilder::build).
    ///
    /// ```
    /// let builder = kcon::Consumer::builder()
    ///     .set("bootstrap.servers", "localhost:9092")
    ///     .set("isolation.level", "read_committed");
    /// # drop(builder);
    /// ```
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.trim().to_owned(), value.into()));
        self
    }

    /// `bootstrap.servers`: `host:port` pairs, comma-separated.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().bootstrap_servers("k1:9092,k2:9092");
    /// # drop(b);
    /// ```
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// `group.id`: the consumer group; needed for
    /// [`Consumer::subscribe`](crate::Consumer::subscribe) and commits.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().group_id("billing");
    /// # drop(b);
    /// ```
    pub fn group_id(self, group: &str) -> Self {
        self.set("group.id", group)
    }

    /// `group.instance.id`: makes the member static (KIP-345).
    ///
    /// ```
    /// let b = kcon::Consumer::builder().group_instance_id("billing-0");
    /// # drop(b);
    /// ```
    pub fn group_instance_id(self, id: &str) -> Self {
        self.set("group.instance.id", id)
    }

    /// `client.id`.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().client_id("billing-service");
    /// # drop(b);
    /// ```
    pub fn client_id(self, id: &str) -> Self {
        self.set("client.id", id)
    }

    /// `auto.offset.reset`: where a partition without a committed offset starts.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().auto_offset_reset(kcon::ResetPolicy::Earliest);
    /// # drop(b);
    /// ```
    pub fn auto_offset_reset(self, policy: ResetPolicy) -> Self {
        // The policy's own spelling, which its parser reads back (fractions of seconds too).
        self.set("auto.offset.reset", policy.to_string())
    }

    /// `enable.auto.commit`: commit stored offsets every `auto.commit.interval.ms`, on
    /// revocation and on close. Default true with a `group.id`.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().enable_auto_commit(false);
    /// # drop(b);
    /// ```
    pub fn enable_auto_commit(self, on: bool) -> Self {
        self.set("enable.auto.commit", on.to_string())
    }

    /// `enable.auto.offset.store`: store a record's offset when the application asks for more
    /// records after it. Default true; false stores only what
    /// [`Consumer::store_offset`](crate::Consumer::store_offset) stores.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().enable_auto_offset_store(false);
    /// # drop(b);
    /// ```
    pub fn enable_auto_offset_store(self, on: bool) -> Self {
        self.set("enable.auto.offset.store", on.to_string())
    }

    /// `isolation.level`.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().isolation_level(kcon::IsolationLevel::ReadCommitted);
    /// # drop(b);
    /// ```
    pub fn isolation_level(self, level: IsolationLevel) -> Self {
        let value = match level {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        };
        self.set("isolation.level", value)
    }

    /// `partition.assignment.strategy`: assignor names in order of preference (`range`,
    /// `roundrobin`, `sticky`, `cooperative-sticky`).
    ///
    /// ```
    /// let b = kcon::Consumer::builder().partition_assignment_strategy("cooperative-sticky");
    /// # drop(b);
    /// ```
    pub fn partition_assignment_strategy(self, strategies: &str) -> Self {
        self.set("partition.assignment.strategy", strategies)
    }

    /// `session.timeout.ms`.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().session_timeout(std::time::Duration::from_secs(10));
    /// # drop(b);
    /// ```
    pub fn session_timeout(self, timeout: Duration) -> Self {
        self.set("session.timeout.ms", timeout.as_millis().to_string())
    }

    /// `max.poll.interval.ms`: the longest the application may go without asking for
    /// records before the member leaves the group.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().max_poll_interval(std::time::Duration::from_secs(60));
    /// # drop(b);
    /// ```
    pub fn max_poll_interval(self, interval: Duration) -> Self {
        self.set("max.poll.interval.ms", interval.as_millis().to_string())
    }

    /// `max.poll.records`: the most records
    /// [`Consumer::recv_batch`](crate::Consumer::recv_batch) returns.
    ///
    /// ```
    /// let b = kcon::Consumer::builder().max_poll_records(100);
    /// # drop(b);
    /// ```
    pub fn max_poll_records(self, n: u32) -> Self {
        self.set("max.poll.records", n.to_string())
    }

    /// The OAUTHBEARER token provider (`sasl.mechanism=OAUTHBEARER`).
    ///
    /// ```
    /// use kcon::{OAuthBearerToken, OAuthBearerTokenProvider, TokenFuture, TokenProvider};
    /// use std::time::Duration;
    ///
    /// struct Fixed;
    /// impl OAuthBearerTokenProvider for Fixed {
    ///     fn token(&self) -> TokenFuture<'_> {
    ///         Box::pin(async { Ok(OAuthBearerToken::new("eyJ...", Some(Duration::from_secs(3600)))) })
    ///     }
    /// }
    /// let b = kcon::Consumer::builder().oauthbearer_token_provider(TokenProvider::new(Fixed));
    /// # drop(b);
    /// ```
    pub fn oauthbearer_token_provider(mut self, provider: TokenProvider) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// The listener told of partitions assigned, revoked and lost.
    ///
    /// ```
    /// struct Quiet;
    /// impl kcon::RebalanceListener for Quiet {}
    /// let b = kcon::Consumer::builder().rebalance_listener(Quiet);
    /// # drop(b);
    /// ```
    pub fn rebalance_listener(mut self, listener: impl RebalanceListener) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Adds `hooks`, told of what the consumer does (batches fetched, records handed out,
    /// rebalances, commits, partition errors); several are called in the order added.
    ///
    /// ```
    /// struct Quiet;
    /// impl kcon::ConsumerHooks for Quiet {}
    /// let b = kcon::Consumer::builder().hooks(Quiet);
    /// # drop(b);
    /// ```
    pub fn hooks(mut self, hooks: impl crate::hooks::ConsumerHooks) -> Self {
        self.hooks.push(std::sync::Arc::new(hooks));
        self
    }

    /// Every property the builder takes: the tables of the pool, the member, the offsets, the
    /// fetcher and kcon's own (the `Consumer`'s and the record policies'), concatenated. A
    /// property several parts take (`retry.backoff.ms`) is in each of their tables, and goes to
    /// each.
    pub fn properties() -> impl Iterator<Item = &'static dyn AnyProperty> + Clone {
        erased(kcon_pool::property::PROPERTIES)
            .chain(erased(kcon_group::property::PROPERTIES))
            .chain(erased(kcon_offsets::property::PROPERTIES))
            .chain(erased(kcon_fetch::property::PROPERTIES))
            .chain(erased(PROPERTIES).filter(|p| !p.parts().contains(&POLICY)))
    }

    /// Every property read by each table that has it and applied, in order, to the part that
    /// table configures; then the parts checked together.
    pub(crate) fn settings(&self) -> Result<Settings, Error> {
        let mut pool = PoolConfig::default();
        let mut group = GroupConfig::default();
        let mut offsets = OffsetsConfig::default();
        let mut fetch = FetchConfig::default();
        let mut close_timeout = Duration::from_secs(30);
        let mut group_id: Option<String> = None;
        let mut explicit_auto_commit = false;
        refuse_policy(&self.properties)?;
        for (property, name, value) in effective(&self.properties, ConsumerBuilder::properties())? {
            let unknown = || ConfigError::unknown(name, []);
            set_if_listed(kcon_pool::property::PROPERTIES, &mut pool, name, value)?;
            set_if_listed(kcon_group::property::PROPERTIES, &mut group, name, value)?;
            set_if_listed(
                kcon_offsets::property::PROPERTIES,
                &mut offsets,
                name,
                value,
            )?;
            set_if_listed(kcon_fetch::property::PROPERTIES, &mut fetch, name, value)?;
            if let Some(own) = registry::lookup(PROPERTIES, name) {
                let setting = own.parse(value)?;
                for &part in own.parts {
                    let taken = match (part, &setting) {
                        (CONSUMER, ConsumerSetting::CloseTimeout(d)) => {
                            close_timeout = *d;
                            true
                        }
                        // The share consumer's: close.timeout.ms is the consumer's too.
                        (SHARE, ConsumerSetting::CloseTimeout(_)) => true,
                        _ => false,
                    };
                    // A part that does not take what its table routes to it: as `set` does.
                    if !taken {
                        return Err(unknown().into());
                    }
                }
            }
            match property.name() {
                "group.id" => group_id = Some(group.group_id.clone()).filter(|g| !g.is_empty()),
                "enable.auto.commit" => explicit_auto_commit = offsets.enable_auto_commit,
                _ => {}
            }
        }
        if let Some(p) = self.token_provider.clone() {
            pool.sasl_oauthbearer_token_provider = Some(p);
        }
        check_pool(&pool)?;
        if group_id.is_none() {
            // The Java client refuses the same conflicts (`InvalidConfigurationException`).
            if explicit_auto_commit {
                return Err(Error::config(
                    "enable.auto.commit",
                    "true",
                    "false without a group.id (commits need a group)",
                ));
            }
            if group.group_instance_id.is_some() {
                return Err(Error::config(
                    "group.instance.id",
                    group.group_instance_id.as_deref().unwrap_or_default(),
                    "unset without a group.id",
                ));
            }
            return Ok(Settings {
                pool,
                group: None,
                offsets: None,
                fetch,
                close_timeout,
            });
        }
        group.validate()?;
        offsets.validate()?;
        Ok(Settings {
            pool,
            group: Some(group),
            offsets: Some(offsets),
            fetch,
            close_timeout,
        })
    }
}

/// The properties `given`, in order, each with its entry among `table`'s, less those a later
/// value of the same property (under any of its names) replaces, even a bad one; an unknown
/// name is an error.
pub(crate) fn effective(
    given: &[(String, String)],
    table: impl Iterator<Item = &'static dyn AnyProperty> + Clone,
) -> Result<Vec<(&'static dyn AnyProperty, &str, &str)>, ConfigError> {
    let mut out = Vec::with_capacity(given.len());
    for (i, (name, value)) in given.iter().enumerate() {
        let property = table
            .clone()
            .find(|p| p.is_named(name))
            .ok_or_else(|| ConfigError::unknown(name, registry::names(table.clone())))?;
        if !given[i + 1..]
            .iter()
            .any(|(later, _)| property.is_named(later))
        {
            out.push((property, name.as_str(), value.as_str()));
        }
    }
    Ok(out)
}

/// A record-policy property (`errors.*`) given to a consumer's builder, refused: it is the
/// [`Processor`](crate::Processor)'s to take.
pub(crate) fn refuse_policy(given: &[(String, String)]) -> Result<(), Error> {
    for (name, value) in given {
        if let Some(p) = registry::lookup(PROPERTIES, name)
            && p.parts.contains(&POLICY)
        {
            return Err(Error::config(
                p.name,
                value,
                "unset on a consumer: the errors.* properties are a Processor's \
                 (Processor::builder(consumer).set(name, value))",
            ));
        }
    }
    Ok(())
}

/// The checks of the connection's settings across properties, for every client the properties
/// build (a consumer, a share consumer).
pub(crate) fn check_pool(pool: &PoolConfig) -> Result<(), Error> {
    if pool.bootstrap_servers.is_empty() {
        return Err(Error::config(
            "bootstrap.servers",
            "",
            "at least one host:port",
        ));
    }
    pool.validate()?;
    Ok(())
}

/// Sets `name` on `config` when `table` has it: through the table's `set`, so that a value
/// refused, or a part not taking what its table routes to it, is an error naming the property.
pub(crate) fn set_if_listed<S, C: Configurable<S>>(
    table: &'static [Property<S>],
    config: &mut C,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    match registry::lookup(table, name) {
        Some(_) => registry::set(table, config, name, value),
        None => Ok(()),
    }
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords are not shown.
        let names: Vec<&str> = self.properties.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ConsumerBuilder")
            .field("properties", &names)
            .field("listener", &self.listener.is_some())
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn settings(props: &[(&str, &str)]) -> Result<Settings, Error> {
        let mut b = ConsumerBuilder::new().bootstrap_servers("localhost:9092");
        for (n, v) in props {
            b = b.set(n, *v);
        }
        b.settings()
    }

    #[test]
    fn properties_reach_every_part_that_takes_them() {
        let s = settings(&[
            ("group.id", "g"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("retry.backoff.ms", "250"),
            ("retry.backoff.max.ms", "700"),
            ("client.rack", "r1"),
            ("max.poll.records", "7"),
            ("close.timeout.ms", "1500"),
        ])
        .unwrap();
        let offsets = s.offsets.unwrap();
        let group = s.group.unwrap();
        assert_eq!(offsets.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(s.fetch.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(s.fetch.reset_policy, ResetPolicy::Earliest);
        assert_eq!(s.pool.retry_backoff, Duration::from_millis(250));
        assert_eq!(group.retry_backoff, Duration::from_millis(250));
        assert_eq!(s.fetch.retry_backoff, Duration::from_millis(250));
        assert_eq!(s.fetch.retry_backoff_max, Duration::from_millis(700));
        assert_eq!(group.retry_backoff_max, Duration::from_millis(700));
        assert_eq!(group.client_rack.as_deref(), Some("r1"));
        assert_eq!(s.fetch.client_rack.as_deref(), Some("r1"));
        assert_eq!(s.fetch.max_poll_records, 7);
        assert_eq!(s.close_timeout, Duration::from_millis(1500));
        assert_eq!(group.group_id, "g");
        assert_eq!(offsets.group_id, "g");
    }

    #[test]
    fn the_registry_routes_each_value_to_every_part_it_names() {
        let s = settings(&[
            ("group.id", "g"),
            ("retry.backoff.max.ms", "700"),
            ("metadata.max.age.ms", "9000"),
            ("group.instance.id", "i"),
        ])
        .unwrap();
        let (group, offsets) = (s.group.unwrap(), s.offsets.unwrap());
        let max = Duration::from_millis(700);
        assert_eq!(s.pool.retry_backoff_max, max);
        assert_eq!(group.retry_backoff_max, max);
        assert_eq!(offsets.retry_backoff_max, max);
        assert_eq!(s.fetch.retry_backoff_max, max);
        assert_eq!(s.pool.metadata_max_age, Duration::from_secs(9));
        assert_eq!(s.fetch.metadata_max_age, Duration::from_secs(9));
        assert_eq!(group.group_instance_id.as_deref(), Some("i"));
        assert_eq!(offsets.group_instance_id.as_deref(), Some("i"));
        assert_eq!(
            registry::lookup(PROPERTIES, "close.timeout.ms")
                .unwrap()
                .default,
            registry::DefaultValue::Value("30000"),
        );
        assert_eq!(
            settings(&[]).unwrap().close_timeout,
            Duration::from_secs(30),
            "the table's default is the consumer's"
        );
    }

    #[test]
    fn an_alias_is_its_property() {
        let s = settings(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .unwrap();
        assert_eq!(s.pool.sasl_mechanism, Some(kcon_pool::SaslMechanism::Plain));
    }

    #[test]
    fn an_unknown_property_is_named() {
        let e = settings(&[("fetch.wait.max.ms", "10")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.property(), Some("fetch.wait.max.ms"));
        assert!(e.to_string().contains("fetch.wait.max.ms"), "{e}");
    }

    /// A mistyped name is told with the property meant, from any of the tables the consumer
    /// takes (kcon's own, the group's, the pool's); a name close to none gets no suggestion.
    #[test]
    fn an_unknown_property_suggests_the_one_meant() {
        let e = settings(&[("auto.offset.rest", "earliest")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.property(), Some("auto.offset.rest"));
        assert!(
            e.to_string().contains(
                "unknown configuration property auto.offset.rest (did you mean \
                 auto.offset.reset?)"
            ),
            "{e}"
        );
        for (typed, meant) in [
            ("sesion.timeout.ms", "session.timeout.ms"),
            ("SASL_MECHANISM", "sasl.mechanism"),
            ("close.timout.ms", "close.timeout.ms"),
            ("enable.auot.commit", "enable.auto.commit"),
        ] {
            let e = settings(&[(typed, "x")]).unwrap_err();
            assert!(
                e.to_string().ends_with(&format!("(did you mean {meant}?)")),
                "{typed}: {e}"
            );
        }
        let e = settings(&[("fetch.wait.max.ms", "10")]).unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

    #[test]
    fn a_bad_value_names_the_property_and_what_is_allowed() {
        let e = settings(&[("auto.offset.reset", "smallest-ish")]).unwrap_err();
        assert_eq!(e.property(), Some("auto.offset.reset"));
        assert!(e.to_string().contains("earliest"), "{e}");
        let e = settings(&[("partition.assignment.strategy", "fastest")]).unwrap_err();
        assert_eq!(e.property(), Some("partition.assignment.strategy"));
    }

    #[test]
    fn conflicts_are_refused_at_build_time() {
        let e = settings(&[("enable.auto.commit", "true")]).unwrap_err();
        assert_eq!(e.property(), Some("enable.auto.commit"));
        let e = settings(&[("group.instance.id", "a")]).unwrap_err();
        assert_eq!(e.property(), Some("group.instance.id"));
        let e = settings(&[
            ("group.id", "g"),
            ("session.timeout.ms", "1000"),
            ("heartbeat.interval.ms", "2000"),
        ])
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = ConsumerBuilder::new().settings().unwrap_err();
        assert_eq!(e.property(), Some("bootstrap.servers"));
    }

    /// Under `group.protocol=consumer` the coordinator runs sessions, heartbeats and
    /// assignment: setting one of those is refused at build time, naming it.
    #[test]
    fn the_consumer_protocol_refuses_what_the_coordinator_decides() {
        let s = settings(&[
            ("group.id", "g"),
            ("group.protocol", "consumer"),
            ("group.remote.assignor", "uniform"),
        ])
        .unwrap();
        let group = s.group.unwrap();
        assert_eq!(group.group_protocol, kcon_core::GroupProtocol::Consumer);
        assert_eq!(group.group_remote_assignor.as_deref(), Some("uniform"));
        for (name, value) in [
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ] {
            let e = settings(&[
                (name, value),
                ("group.id", "g"),
                ("group.protocol", "consumer"),
            ])
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert_eq!(e.property(), Some(name), "{e}");
            assert!(e.to_string().contains("group.protocol=consumer"), "{e}");
        }
    }

    #[test]
    fn without_a_group_nothing_commits() {
        let s = settings(&[]).unwrap();
        assert!(s.group.is_none() && s.offsets.is_none());
        // Not an error: auto-commit is simply off without a group (the Java client's rule
        // when it is not set explicitly).
        let s = settings(&[("enable.auto.commit", "false")]).unwrap();
        assert!(s.offsets.is_none());
    }
}
