//! The group member's configuration: its typed fields, the Java client's defaults and the
//! checks across them. Names and parsing are the member's property table's ([`crate::property`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kcon_core::property::{self, Configurable, Part, registry};
use kcon_core::{BuiltinAssignor, ConfigError, ExponentialBackoff, GroupProtocol};

use crate::assignor::{self, Assignor, RebalanceProtocol};
use crate::property::{GROUP, GroupSetting, PROPERTIES};

/// The configuration of one group member ([`GroupMachine`](crate::GroupMachine)).
///
/// Fields can be set directly or by Kafka property name with [`GroupConfig::set`]. Defaults are
/// the Java consumer's, as the property table lists them.
#[derive(Clone)]
#[non_exhaustive]
pub struct GroupConfig {
    /// `group.id`: the group to join. No default: [`validate`](GroupConfig::validate) refuses
    /// an empty id.
    pub group_id: String,
    /// `group.instance.id`: makes the member static (KIP-345): it keeps its assignment across
    /// restarts within `session.timeout.ms` and does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`: how long the coordinator waits for a heartbeat before it takes the
    /// member out of the group. Default 45 s.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`: the time between heartbeats. Default 3 s; must be below
    /// `session.timeout.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: the longest the application may go without polling before the
    /// member leaves the group; also the rebalance timeout sent in JoinGroup, and the longest a
    /// revocation may wait for the application. Default 5 min.
    pub max_poll_interval: Duration,
    /// `retry.backoff.ms`: the first wait before retrying after a retriable error (KIP-580).
    /// Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest such wait. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `partition.assignment.strategy`: the assignors, in order of preference. The rebalance
    /// protocol is cooperative only when every one of them supports it (as in the Java client,
    /// which makes `range,cooperative-sticky` the upgrade path from eager). Default
    /// `range,cooperative-sticky`.
    pub partition_assignment_strategy: Vec<Arc<dyn Assignor>>,
    /// `client.rack`: the member's rack, sent in its subscription for rack-aware assignment
    /// (KIP-881), or in its heartbeat under the consumer protocol. Default none.
    pub client_rack: Option<String>,
    /// `group.protocol`: classic (default) or consumer (KIP-848).
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: under the consumer protocol, the coordinator's assignor to
    /// use; `None` for the coordinator's default.
    pub group_remote_assignor: Option<String>,
    /// The properties set by name (through [`set`](GroupConfig::set) or a builder) that
    /// the consumer protocol refuses: the coordinator decides them there.
    explicitly_set: Vec<&'static str>,
}

/// The properties the consumer protocol (KIP-848) refuses when set explicitly, as the Java
/// client does: the coordinator runs the session, the heartbeat interval and the assignor.
const CLASSIC_ONLY: [&str; 3] = [
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

impl GroupConfig {
    /// A configuration for `group_id`, everything else at its default.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            ..GroupConfig::default()
        }
    }

    /// Sets a property by its Kafka name from its string form, as the member's property table
    /// ([`crate::property`]) reads it.
    ///
    /// Durations are whole milliseconds; `partition.assignment.strategy` is a comma-separated
    /// list of assignor names (`range`, `roundrobin`, `sticky`, `cooperative-sticky`, or the
    /// Java class names); `group.protocol` is `classic` or `consumer`. A property the member
    /// does not take is unknown here. A bad value is refused with an error naming the property and
    /// what it accepts, and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        property::set(PROPERTIES, self, name, value)
    }

    /// Checks what `set` cannot check one property at a time, and the fields set directly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group_id.is_empty() {
            return Err(ConfigError::invalid("group.id", "", "a non-empty group id"));
        }
        if self.group_protocol == GroupProtocol::Share {
            // A share group has no static membership and one coordinator-side assignor.
            if let Some(id) = &self.group_instance_id {
                return Err(ConfigError::invalid(
                    "group.instance.id",
                    id,
                    "unset for a share consumer: share groups have no static membership",
                ));
            }
            if let Some(a) = &self.group_remote_assignor {
                return Err(ConfigError::invalid(
                    "group.remote.assignor",
                    a,
                    "unset for a share consumer: the coordinator assigns share groups itself",
                ));
            }
        }
        match self.group_protocol {
            GroupProtocol::Consumer | GroupProtocol::Share => {
                // The Java client refuses these under the consumer protocol too
                // (`ConsumerConfig`): the coordinator decides them.
                if let Some(name) = CLASSIC_ONLY
                    .iter()
                    .find(|n| self.explicitly_set.contains(n))
                {
                    let value = match *name {
                        "session.timeout.ms" => self.session_timeout.as_millis().to_string(),
                        "heartbeat.interval.ms" => self.heartbeat_interval.as_millis().to_string(),
                        _ => self
                            .partition_assignment_strategy
                            .iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    // Where the coordinator's own setting is: the brokers' configuration for the
                    // session and the heartbeats, group.remote.assignor for the assignor.
                    let allowed = match (self.group_protocol, *name) {
                        (GroupProtocol::Share, _) => {
                            "unset for a share consumer: the coordinator decides it"
                        }
                        (_, "session.timeout.ms") => {
                            "unset with group.protocol=consumer: the coordinator decides it \
                             (group.consumer.session.timeout.ms on the brokers)"
                        }
                        (_, "heartbeat.interval.ms") => {
                            "unset with group.protocol=consumer: the coordinator decides it \
                             (group.consumer.heartbeat.interval.ms on the brokers)"
                        }
                        _ => {
                            "unset with group.protocol=consumer: the coordinator decides it \
                             (group.remote.assignor chooses the coordinator's assignor)"
                        }
                    };
                    return Err(ConfigError::invalid(name, &value, allowed));
                }
            }
            GroupProtocol::Classic => {
                if let Some(a) = &self.group_remote_assignor {
                    return Err(ConfigError::invalid(
                        "group.remote.assignor",
                        a,
                        "unset with group.protocol=classic (it names the coordinator's \
                         assignor under group.protocol=consumer)",
                    ));
                }
            }
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(ConfigError::invalid(
                "heartbeat.interval.ms",
                &self.heartbeat_interval.as_millis().to_string(),
                "a value below session.timeout.ms",
            ));
        }
        if self.partition_assignment_strategy.is_empty() {
            return Err(registry::refused(
                PROPERTIES,
                "partition.assignment.strategy",
                "",
            ));
        }
        if self.max_poll_interval.as_millis() > i32::MAX as u128 {
            return Err(ConfigError::invalid(
                "max.poll.interval.ms",
                &self.max_poll_interval.as_millis().to_string(),
                "at most 2147483647",
            ));
        }
        if self.session_timeout.as_millis() > i32::MAX as u128 {
            return Err(ConfigError::invalid(
                "session.timeout.ms",
                &self.session_timeout.as_millis().to_string(),
                "at most 2147483647",
            ));
        }
        Ok(())
    }

    /// The rebalance protocol the member follows: cooperative when every configured assignor
    /// supports it, else eager (the Java client's `ConsumerCoordinator` does the same).
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        let all_cooperative = self.partition_assignment_strategy.iter().all(|a| {
            a.supported_protocols()
                .contains(&RebalanceProtocol::Cooperative)
        });
        if all_cooperative {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }

    /// The retry backoff (KIP-580) from `retry.backoff.ms` and `retry.backoff.max.ms`.
    pub fn retry_backoff_policy(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.retry_backoff, self.retry_backoff_max)
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        let strategy = [BuiltinAssignor::Range, BuiltinAssignor::CooperativeSticky]
            .into_iter()
            .map(assignor::builtin)
            .collect();
        GroupConfig {
            group_id: String::new(),
            group_instance_id: None,
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(3_000),
            max_poll_interval: Duration::from_millis(300_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            partition_assignment_strategy: strategy,
            client_rack: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            explicitly_set: Vec::new(),
        }
    }
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let strategy: Vec<&str> = self
            .partition_assignment_strategy
            .iter()
            .map(|a| a.name())
            .collect();
        f.debug_struct("GroupConfig")
            .field("group_id", &self.group_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .field("partition_assignment_strategy", &strategy)
            .field("client_rack", &self.client_rack)
            .field("group_protocol", &self.group_protocol)
            .field("group_remote_assignor", &self.group_remote_assignor)
            .finish()
    }
}

impl GroupConfig {
    fn set_explicitly(&mut self, name: &'static str) {
        if !self.explicitly_set.contains(&name) {
            self.explicitly_set.push(name);
        }
    }
}

impl Configurable<GroupSetting> for GroupConfig {
    const PART: Part = GROUP;

    fn apply(&mut self, setting: &GroupSetting) -> bool {
        match setting {
            GroupSetting::GroupId(id) => self.group_id = id.clone(),
            GroupSetting::GroupInstanceId(id) => self.group_instance_id = id.clone(),
            GroupSetting::GroupProtocol(p) => self.group_protocol = *p,
            GroupSetting::GroupRemoteAssignor(a) => self.group_remote_assignor = a.clone(),
            GroupSetting::SessionTimeout(d) => {
                self.session_timeout = *d;
                self.set_explicitly("session.timeout.ms");
            }
            GroupSetting::HeartbeatInterval(d) => {
                self.heartbeat_interval = *d;
                self.set_explicitly("heartbeat.interval.ms");
            }
            GroupSetting::MaxPollInterval(d) => self.max_poll_interval = *d,
            GroupSetting::RetryBackoff(d) => self.retry_backoff = *d,
            GroupSetting::RetryBackoffMax(d) => self.retry_backoff_max = *d,
            GroupSetting::PartitionAssignmentStrategy(list) => {
                self.partition_assignment_strategy =
                    list.iter().copied().map(assignor::builtin).collect();
                self.set_explicitly("partition.assignment.strategy");
            }
            GroupSetting::ClientRack(rack) => self.client_rack = rack.clone(),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_java_clients() {
        let c = GroupConfig::new("g");
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(c.max_poll_interval, Duration::from_secs(300));
        let names: Vec<_> = c
            .partition_assignment_strategy
            .iter()
            .map(|a| a.name())
            .collect();
        assert_eq!(names, ["range", "cooperative-sticky"]);
        // range is eager only, so the default group is eager until range is dropped.
        assert_eq!(c.rebalance_protocol(), RebalanceProtocol::Eager);
        c.validate().unwrap();
        assert_eq!(
            registry::defaults_disagreeing::<_, GroupConfig>(PROPERTIES),
            [] as [&str; 0],
            "the table's defaults are the member's"
        );
    }

    #[test]
    fn strategy_list_decides_the_protocol() {
        let mut c = GroupConfig::new("g");
        c.set("partition.assignment.strategy", "cooperative-sticky")
            .unwrap();
        assert_eq!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        c.set(
            "partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.RoundRobinAssignor, range",
        )
        .unwrap();
        assert_eq!(c.partition_assignment_strategy[0].name(), "roundrobin");
        assert_eq!(c.rebalance_protocol(), RebalanceProtocol::Eager);
    }

    #[test]
    fn bad_values_name_the_property() {
        let mut c = GroupConfig::new("g");
        for (name, value) in [
            ("partition.assignment.strategy", "fair"),
            ("partition.assignment.strategy", ""),
            ("partition.assignment.strategy", "range,range"),
            ("session.timeout.ms", "0"),
            ("session.timeout.ms", "-5"),
            ("session.timeout.ms", "2147483648"),
            ("heartbeat.interval.ms", "x"),
            ("group.protocol", "kip848"),
        ] {
            let e = c.set(name, value).unwrap_err();
            assert_eq!(e.property(), name, "{e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(matches!(
            c.set("group.idd", "x"),
            Err(ConfigError::UnknownProperty { .. })
        ));
        c.set("group.protocol", "CLASSIC").unwrap();
        c.set("group.protocol", " Consumer ").unwrap();
        assert_eq!(c.group_protocol, GroupProtocol::Consumer);
    }

    /// The consumer protocol refuses what the coordinator decides, naming the property, as the
    /// Java client does; a default left alone is no conflict. The classic protocol refuses a
    /// remote assignor.
    #[test]
    fn the_consumer_protocol_refuses_classic_settings() {
        let mut c = GroupConfig::new("g");
        c.set("group.protocol", "consumer").unwrap();
        c.set("group.remote.assignor", "uniform").unwrap();
        c.validate().unwrap();
        for name in CLASSIC_ONLY {
            let mut c = c.clone();
            let value = if name == "partition.assignment.strategy" {
                "range"
            } else {
                "1000"
            };
            c.set(name, value).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.property(), name, "{e}");
            assert!(e.to_string().contains("group.protocol=consumer"), "{e}");
            // The assignor's hint only where an assignor was set; the session and the
            // heartbeats name the brokers' settings that decide them.
            assert_eq!(
                e.to_string().contains("assignor"),
                name == "partition.assignment.strategy",
                "{e}"
            );
            if name != "partition.assignment.strategy" {
                let broker_setting = format!("group.consumer.{}", name);
                assert!(e.to_string().contains(&broker_setting), "{e}");
            }
        }
        let mut classic = GroupConfig::new("g");
        classic.set("group.remote.assignor", "range").unwrap();
        let e = classic.validate().unwrap_err();
        assert_eq!(e.property(), "group.remote.assignor");
        classic.set("group.remote.assignor", " ").unwrap();
        classic.validate().unwrap();
    }

    #[test]
    fn validate_checks_across_properties() {
        let mut c = GroupConfig::new("");
        assert_eq!(c.validate().unwrap_err().property(), "group.id");
        c.group_id = "g".into();
        c.set("session.timeout.ms", "3000").unwrap();
        c.set("heartbeat.interval.ms", "3000").unwrap();
        assert_eq!(
            c.validate().unwrap_err().property(),
            "heartbeat.interval.ms"
        );
        c.set("heartbeat.interval.ms", "1000").unwrap();
        c.validate().unwrap();
    }
}
