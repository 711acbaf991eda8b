//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): the coordinator computes
//! every member's target assignment, and each member reconciles towards its own with
//! ConsumerGroupHeartbeat, revoking partitions before it takes new ones. A member joining or
//! leaving stops no one else.
//!
//! A share group's member (KIP-932) is the same machine speaking ShareGroupHeartbeat
//! (`GroupProtocol::Share`): the same join, epochs, fencing and leave, without owned
//! partitions told, a regex or static membership.
//!
//! - [`ConsumerGroupMachine`]: the member, sans-IO, on the same contract and with the same
//!   requests, answers and events as the classic [`GroupMachine`](crate::GroupMachine).
//! - [`wire`]: ConsumerGroupHeartbeat in kafka-protocol's types.
//! - `reconcile`: target against owned, as pure functions.

mod machine;
mod messages;
mod reconcile;
pub mod wire;

#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod tests;

pub use machine::ConsumerGroupMachine;
pub use messages::{
    ConsumerGroupHeartbeat, ConsumerGroupHeartbeatAnswer, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
    ShareGroupHeartbeat, TopicIdPartitions,
};
