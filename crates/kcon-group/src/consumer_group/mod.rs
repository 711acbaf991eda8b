//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): the coordinator computes
//! every member's target assignment, and each member reconciles towards its own with
//! ConsumerGroupHeartbeat, revoking partitions before it takes new ones. A member joining or
//! leaving stops no one else.
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
mod tests;

pub use machine::ConsumerGroupMachine;
pub use messages::{
    ConsumerGroupHeartbeat, ConsumerGroupHeartbeatAnswer, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
    TopicIdPartitions,
};
