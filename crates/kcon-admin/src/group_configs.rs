//! A group's configs, as `kafka-configs.sh --entity-type groups` reads and changes them:
//! DescribeConfigs and IncrementalAlterConfigs of the GROUP config resource (type 32, KIP-848;
//! Apache Kafka 4.0 and later), sent to any broker (it answers DescribeConfigs itself and
//! forwards IncrementalAlterConfigs to the controller), as the Java admin client sends them.
//!
//! What a group decides there, over the brokers' `group.*` defaults: where a new share group
//! starts (`share.auto.offset.reset`, `latest` by default: a share group joined after its
//! records were written gets none of them), `share.record.lock.duration.ms`,
//! `share.delivery.count.limit`, `share.isolation.level`, `consumer.session.timeout.ms`,
//! `consumer.heartbeat.interval.ms`, `streams.*`... kcon keeps no list of them: the broker
//! describes every config it has, and refuses a name it does not know or a value out of range
//! with INVALID_CONFIG and its reason, which the error carries; an unknown name is told with
//! the broker's config it is closest to, when one is close.
//!
//! A broker before Apache Kafka 4.0 has no GROUP config resource: it answers INVALID_REQUEST
//! (`Unknown resource type 32`), which is [`Error::Unsupported`] naming the API and the version
//! that has it. A broker not ready, or one that cannot be reached, is asked again until
//! `default.api.timeout.ms`, as every admin call is (see [`crate`]'s retries).

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::property::suggest;
use kcon_pool::{BrokerTarget, Peer, Pool};

use crate::error::Error;
use crate::retry::Retry;
use crate::wire::{self, GROUP_RESOURCE};

/// Where a config's value comes from, as DescribeConfigs says it (Kafka's
/// `ConfigEntry.ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the group itself (DYNAMIC_GROUP_CONFIG).
    Group,
    /// The default, from nothing set anywhere (DEFAULT_CONFIG).
    Default,
    /// The broker's `server.properties` (STATIC_BROKER_CONFIG).
    StaticBroker,
    /// Set on this broker while it runs (DYNAMIC_BROKER_CONFIG).
    DynamicBroker,
    /// Set as every broker's default while they run (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefaultBroker,
    /// Any other source, by its code.
    Other(i8),
}

impl ConfigSource {
    /// The source a DescribeConfigs answer gives by `code`.
    pub fn from_code(code: i8) -> ConfigSource {
        match code {
            8 => ConfigSource::Group,
            5 => ConfigSource::Default,
            4 => ConfigSource::StaticBroker,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            other => ConfigSource::Other(other),
        }
    }

    /// Its code on the wire.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::Group => 8,
            ConfigSource::Default => 5,
            ConfigSource::StaticBroker => 4,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::Other(code) => code,
        }
    }

    /// Kafka's name for it (`DYNAMIC_GROUP_CONFIG`, `DEFAULT_CONFIG`, ...), as
    /// `kafka-configs.sh --describe` prints it; `UNKNOWN` for another code.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Group => "DYNAMIC_GROUP_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

/// One of the places a config's value may come from, most decisive first: the group's own
/// value, then the broker setting its default comes from (`group.share.record.lock.duration.ms`
/// for `share.record.lock.duration.ms`), ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The config's name there (a broker setting's own name).
    pub name: String,
    /// Its value there; `None` when sensitive.
    pub value: Option<String>,
    /// Where.
    pub source: ConfigSource,
}

/// One config of a group, as DescribeConfigs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfigEntry {
    /// Its name (`share.auto.offset.reset`).
    pub name: String,
    /// Its value; `None` when sensitive or unset.
    pub value: Option<String>,
    /// Where the value comes from: [`ConfigSource::Group`] when set on the group.
    pub source: ConfigSource,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether its value is withheld.
    pub sensitive: bool,
    /// Where the value may come from, most decisive first.
    pub synonyms: Vec<ConfigSynonym>,
}

impl GroupConfigEntry {
    /// Whether the value is set on the group (rather than a default or the brokers' setting).
    pub fn is_set(&self) -> bool {
        self.source == ConfigSource::Group
    }
}

/// One change of [`alter_group_configs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupConfigChange {
    /// Sets `name` to `value` on the group.
    Set {
        /// The config.
        name: String,
        /// Its new value.
        value: String,
    },
    /// Deletes the group's own value of `name`: the default applies again.
    Delete {
        /// The config.
        name: String,
    },
}

impl GroupConfigChange {
    /// The config it changes.
    pub fn name(&self) -> &str {
        match self {
            GroupConfigChange::Set { name, .. } | GroupConfigChange::Delete { name } => name,
        }
    }
}

/// Every config of `group_id` (DescribeConfigs of the GROUP resource, sent to any broker),
/// sorted by name, each with where its value comes from: the group's own values and the
/// defaults of the rest. A group that does not exist has the defaults. A broker not ready or
/// unreachable is asked again until `default.api.timeout.ms`; a broker without group configs
/// (before Apache Kafka 4.0) fails the call with [`Error::Unsupported`] saying so.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe_group_configs(
    pool: &Pool,
    group_id: &str,
) -> Result<Vec<GroupConfigEntry>, Error> {
    describe_in(&Retry::new(pool), pool, group_id).await
}

/// [`describe_group_configs`] within the call `retry`.
async fn describe_in(
    retry: &Retry,
    pool: &Pool,
    group_id: &str,
) -> Result<Vec<GroupConfigEntry>, Error> {
    retry
        .run_while("DescribeConfigs", is_retriable, || {
            describe_once(pool, group_id)
        })
        .await
}

async fn describe_once(pool: &Pool, group_id: &str) -> Result<Vec<GroupConfigEntry>, Error> {
    let api = ApiKey::DescribeConfigs;
    let conn = pool.connection(BrokerTarget::Any).await?;
    let peer = conn.peer().clone();
    let answer = match conn
        .send(&wire::describe_group_configs_request(group_id))
        .await
    {
        Ok(r) => r,
        Err(e @ kcon_pool::Error::Unsupported { .. }) => return Err(not_offered(api, &e)),
        Err(e) => return Err(e.into()),
    };
    let Some(d) = wire::describe_configs_response(answer)
        .into_iter()
        .find(|d| d.resource_type == GROUP_RESOURCE && d.resource_name == group_id)
    else {
        return Err(left_out(api, &peer));
    };
    match ResponseError::try_from_code(d.error_code) {
        None if d.error_code == 0 => Ok(d.configs),
        error => Err(refused(api, error, d.error_code, d.error_message, &peer)),
    }
}

/// Sets and deletes configs of `group_id` (IncrementalAlterConfigs of the GROUP resource, sent
/// to any broker, which forwards it to the controller), all or none: `share.auto.offset.reset`
/// set to `earliest` makes a share group that has not started yet read its partitions from
/// their start. A name the broker does not know, or a value it does not take, fails the call
/// with INVALID_CONFIG and the broker's reason; for an unknown name, the error names the
/// broker's group config it is closest to, when one is close (one DescribeConfigs more, to
/// know them). Deleting a config the group has no value of is no error (as Kafka has it). A
/// broker not ready or unreachable is asked again until `default.api.timeout.ms` (the changes
/// are the same asked twice); a broker without group configs (before Apache Kafka 4.0) fails
/// the call with [`Error::Unsupported`] saying so.
///
/// The call returns once Kafka's controller has made the changes. The brokers take them from
/// the metadata log a moment later, so a [`describe_group_configs`] or a share member starting
/// right after may still meet the values before them (as with Kafka's own admin client); ask
/// until the describe shows them where that matters.
///
/// # Cancel safety
///
/// Not cancel-safe in effect: dropped once the request went out, the changes may be made all
/// the same. Asking for the same changes again is harmless (a set or a delete made twice is
/// made once); [`describe_group_configs`] shows what the group has.
pub async fn alter_group_configs(
    pool: &Pool,
    group_id: &str,
    changes: &[GroupConfigChange],
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let retry = Retry::new(pool);
    let outcome = retry
        .run_while("IncrementalAlterConfigs", is_retriable, || {
            alter_once(pool, group_id, changes)
        })
        .await;
    match outcome {
        Err(Error::Broker {
            api,
            error: ResponseError::InvalidConfig,
            partition,
            message,
        }) => {
            let unknown = unknown_names(&retry, pool, group_id, changes).await;
            let message = match (message, unknown) {
                (Some(m), Some(u)) => Some(format!("{m}; {u}")),
                (m, u) => m.or(u),
            };
            Err(Error::Broker {
                api,
                error: ResponseError::InvalidConfig,
                partition,
                message,
            })
        }
        other => other,
    }
}

async fn alter_once(
    pool: &Pool,
    group_id: &str,
    changes: &[GroupConfigChange],
) -> Result<(), Error> {
    let api = ApiKey::IncrementalAlterConfigs;
    let conn = pool.connection(BrokerTarget::Any).await?;
    let peer = conn.peer().clone();
    let answer = match conn
        .send(&wire::alter_group_configs_request(group_id, changes))
        .await
    {
        Ok(r) => r,
        Err(e @ kcon_pool::Error::Unsupported { .. }) => return Err(not_offered(api, &e)),
        Err(e) => return Err(e.into()),
    };
    let Some((_, _, code, message)) = wire::alter_configs_response(answer)
        .into_iter()
        .find(|(kind, name, _, _)| *kind == GROUP_RESOURCE && name == group_id)
    else {
        return Err(left_out(api, &peer));
    };
    match ResponseError::try_from_code(code) {
        None if code == 0 => Ok(()),
        error => Err(refused(api, error, code, message, &peer)),
    }
}

/// The names set by `changes` that are none of the group's configs, each with the one it is
/// closest to, in words; `None` when all are known or the configs cannot be described.
async fn unknown_names(
    retry: &Retry,
    pool: &Pool,
    group_id: &str,
    changes: &[GroupConfigChange],
) -> Option<String> {
    let known = describe_in(retry, pool, group_id).await.ok()?;
    let told: Vec<String> = changes
        .iter()
        .filter(|c| matches!(c, GroupConfigChange::Set { .. }))
        .map(GroupConfigChange::name)
        .filter(|name| !known.iter().any(|k| k.name == *name))
        .map(|name| {
            let closest = suggest::closest(name, known.iter().map(|k| k.name.as_str()));
            match closest {
                Some(meant) => format!("{name} is not a group config (did you mean {meant}?)"),
                None => format!("{name} is not a group config"),
            }
        })
        .collect();
    (!told.is_empty()).then(|| told.join("; "))
}

/// Whether an attempt that failed with `e` is tried again: a broker error Kafka calls
/// retriable (REQUEST_TIMED_OUT, NOT_CONTROLLER while the controller moves, ...) or a
/// connection that may come back.
fn is_retriable(e: &Error) -> bool {
    match e {
        Error::Broker { error, .. } => error.is_retriable(),
        Error::Connection(p) => p.is_retriable(),
        _ => false,
    }
}

/// What a broker's refusal of the GROUP resource is. INVALID_REQUEST is how a broker before
/// Apache Kafka 4.0 refuses a resource type it does not know (`Unknown resource type 32`):
/// [`Error::Unsupported`], saying which version has group configs. Anything else is the
/// broker's error, with its message and the broker that answered.
fn refused(
    api: ApiKey,
    error: Option<ResponseError>,
    code: i16,
    message: Option<String>,
    peer: &Peer,
) -> Error {
    let said = match message.as_deref() {
        Some(m) if !m.is_empty() => format!("{peer} says: {m}"),
        _ => format!("from {peer}"),
    };
    match error {
        Some(ResponseError::InvalidRequest) if message.as_deref().is_none_or(unknown_resource) => {
            Error::Unsupported {
                api: Some(api),
                reason: format!(
                    "the broker has no group configs: {api:?} of a GROUP resource answered \
                     {} ({said}); group configs (KIP-848's GROUP config resource) need Apache \
                     Kafka 4.0 or later",
                    crate::error::error_name(code)
                ),
            }
        }
        Some(error) => Error::Broker {
            api,
            error,
            partition: None,
            message: Some(said),
        },
        None => Error::Broker {
            api,
            error: ResponseError::UnknownServerError,
            partition: None,
            message: Some(format!("error code {code} ({said})")),
        },
    }
}

/// Whether an INVALID_REQUEST's message is how a broker that has no GROUP config resource
/// says so: nothing, `Unknown resource type 32` (Kafka 3.9's IncrementalAlterConfigs), or
/// Kafka's words for INVALID_REQUEST itself (its DescribeConfigs: a request "sent to an
/// incompatible broker"), rather than a reason of its own.
fn unknown_resource(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.is_empty() || m.contains("resource type") || m.contains("incompatible broker")
}

/// A broker that does not offer `api` at a version kcon speaks.
fn not_offered(api: ApiKey, e: &kcon_pool::Error) -> Error {
    Error::Unsupported {
        api: Some(api),
        reason: format!(
            "cannot read or change group configs: {e} (group configs, KIP-848's GROUP config \
             resource, need Apache Kafka 4.0 or later)"
        ),
    }
}

/// An answer without the group's resource.
fn left_out(api: ApiKey, peer: &Peer) -> Error {
    Error::Broker {
        api,
        error: ResponseError::UnknownServerError,
        partition: None,
        message: Some(format!("{peer}'s answer leaves the group out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_by_their_codes_and_named_as_kafka_names_them() {
        for (code, source, name) in [
            (8, ConfigSource::Group, "DYNAMIC_GROUP_CONFIG"),
            (5, ConfigSource::Default, "DEFAULT_CONFIG"),
            (4, ConfigSource::StaticBroker, "STATIC_BROKER_CONFIG"),
            (2, ConfigSource::DynamicBroker, "DYNAMIC_BROKER_CONFIG"),
            (
                3,
                ConfigSource::DynamicDefaultBroker,
                "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ),
            (1, ConfigSource::Other(1), "UNKNOWN"),
        ] {
            assert_eq!(ConfigSource::from_code(code), source);
            assert_eq!(source.code(), code);
            assert_eq!(source.name(), name);
        }
    }

    fn peer() -> Peer {
        Peer::broker(1, "127.0.0.1:9092")
    }

    /// A broker before Kafka 4.0 refuses the resource type: unsupported, naming the version
    /// that has group configs; INVALID_REQUEST for another reason, and every other error, is
    /// the broker's, by name, with its message.
    #[test]
    fn a_refusal_is_told_by_what_it_means() {
        let e = refused(
            ApiKey::IncrementalAlterConfigs,
            Some(ResponseError::InvalidRequest),
            42,
            Some("Unknown resource type 32".into()),
            &peer(),
        );
        assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
        let text = e.to_string();
        for what in [
            "IncrementalAlterConfigs",
            "INVALID_REQUEST (42)",
            "Unknown resource type 32",
            "Apache Kafka 4.0 or later",
        ] {
            assert!(text.contains(what), "{what}: {text}");
        }
        // Kafka 3.9.1's DescribeConfigs: INVALID_REQUEST with Kafka's own words for it.
        for said in [
            None,
            Some(
                "This most likely occurs because of a request being malformed by the client \
                 library or the message was sent to an incompatible broker. See the broker \
                 logs for more details.",
            ),
        ] {
            let e = refused(
                ApiKey::DescribeConfigs,
                Some(ResponseError::InvalidRequest),
                42,
                said.map(str::to_owned),
                &peer(),
            );
            assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
        }
        let e = refused(
            ApiKey::IncrementalAlterConfigs,
            Some(ResponseError::InvalidRequest),
            42,
            Some("Duplicate config keys".into()),
            &peer(),
        );
        assert_eq!(e.code(), Some(ResponseError::InvalidRequest), "{e:?}");
        let e = refused(
            ApiKey::IncrementalAlterConfigs,
            Some(ResponseError::InvalidConfig),
            40,
            Some("Unknown group config name: x".into()),
            &peer(),
        );
        assert_eq!(e.code(), Some(ResponseError::InvalidConfig));
        assert_eq!(
            e.to_string(),
            "IncrementalAlterConfigs answered INVALID_CONFIG (40): broker 1 (127.0.0.1:9092) \
             says: Unknown group config name: x"
        );
    }

    #[test]
    fn retried_are_kafkas_retriable_errors_and_connections_that_may_come_back() {
        let broker = |code| Error::broker(ApiKey::IncrementalAlterConfigs, code).unwrap();
        assert!(is_retriable(&broker(7)), "REQUEST_TIMED_OUT");
        assert!(is_retriable(&broker(41)), "NOT_CONTROLLER");
        assert!(!is_retriable(&broker(40)), "INVALID_CONFIG");
        assert!(!is_retriable(&broker(42)), "INVALID_REQUEST");
        assert!(!is_retriable(&broker(30)), "GROUP_AUTHORIZATION_FAILED");
    }
}
