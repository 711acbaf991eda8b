//! The assignors kcon ships, by the names `partition.assignment.strategy` takes, and the group
//! protocols `group.protocol` names. kcon-group implements them; their names are here so that
//! the properties can be read without knowing the group member.

/// The group protocol a member speaks (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GroupProtocol {
    /// `classic`: JoinGroup, SyncGroup, Heartbeat and LeaveGroup; the client's leader assigns.
    #[default]
    Classic,
    /// `consumer`: KIP-848's ConsumerGroupHeartbeat; the coordinator assigns, and each member
    /// reconciles towards its target assignment on its own.
    Consumer,
    /// A share group's (KIP-932): ShareGroupHeartbeat; the coordinator assigns, and members
    /// may share partitions. Not a value of `group.protocol`: a share consumer speaks it, a
    /// consumer never does.
    Share,
}

impl GroupProtocol {
    /// The name `group.protocol` takes: `classic` or `consumer` (and `share` for a share
    /// group's, which the property does not take).
    pub const fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Share => "share",
        }
    }

    /// Whether the coordinator assigns and members heartbeat alone (KIP-848's and KIP-932's
    /// protocols).
    pub const fn coordinator_assigns(self) -> bool {
        matches!(self, GroupProtocol::Consumer | GroupProtocol::Share)
    }

    /// The protocol `group.protocol` names `name`, in any case: `classic` or `consumer`.
    pub fn from_name(name: &str) -> Option<Self> {
        [GroupProtocol::Classic, GroupProtocol::Consumer]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// One of the built-in assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinAssignor {
    /// `range`: each topic's partitions in ranges, topic by topic (eager).
    Range,
    /// `roundrobin`: all partitions dealt out in turn (eager).
    RoundRobin,
    /// `sticky`: balanced, moving as few partitions as it can (eager).
    Sticky,
    /// `cooperative-sticky`: the sticky assignment, under the cooperative protocol (KIP-429).
    CooperativeSticky,
}

/// The package of the Java client's assignor classes, whose names are also accepted.
const JAVA_PACKAGE: &str = "org.apache.kafka.clients.consumer.";

impl BuiltinAssignor {
    /// Every built-in assignor.
    pub const ALL: [BuiltinAssignor; 4] = [
        BuiltinAssignor::Range,
        BuiltinAssignor::RoundRobin,
        BuiltinAssignor::Sticky,
        BuiltinAssignor::CooperativeSticky,
    ];

    /// The name the group protocol carries: `range`, `roundrobin`, `sticky` or
    /// `cooperative-sticky`.
    pub const fn name(self) -> &'static str {
        match self {
            BuiltinAssignor::Range => "range",
            BuiltinAssignor::RoundRobin => "roundrobin",
            BuiltinAssignor::Sticky => "sticky",
            BuiltinAssignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The simple name of the Java client's class (`RangeAssignor`, ...).
    fn java_class(self) -> &'static str {
        match self {
            BuiltinAssignor::Range => "RangeAssignor",
            BuiltinAssignor::RoundRobin => "RoundRobinAssignor",
            BuiltinAssignor::Sticky => "StickyAssignor",
            BuiltinAssignor::CooperativeSticky => "CooperativeStickyAssignor",
        }
    }

    /// The assignor named `name`: its protocol name, or the Java client's full class name
    /// (`org.apache.kafka.clients.consumer.RangeAssignor`), as Java configurations list them.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.strip_prefix(JAVA_PACKAGE) {
            Some(class) => Self::ALL.into_iter().find(|a| a.java_class() == class),
            None => Self::ALL.into_iter().find(|a| a.name() == name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_java_names() {
        for a in BuiltinAssignor::ALL {
            assert_eq!(BuiltinAssignor::from_name(a.name()), Some(a));
            let class = format!("{JAVA_PACKAGE}{}", a.java_class());
            assert_eq!(BuiltinAssignor::from_name(&class), Some(a));
        }
        assert_eq!(BuiltinAssignor::from_name("RangeAssignor"), None);
        assert_eq!(BuiltinAssignor::from_name("Range"), None);
        assert_eq!(
            BuiltinAssignor::from_name("org.apache.kafka.clients.consumer.Nope"),
            None
        );
    }
}
