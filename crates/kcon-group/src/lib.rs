//! Consumer group membership for kcon: classic consumer groups (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), eager and cooperative (KIP-429), with static membership (KIP-345).
//!
//! - [`GroupMachine`]: the member's state machine. It does no IO and reads no clock; time and
//!   answers are fed in, requests and events are drained out (see its driving contract).
//! - The embedded consumer protocol they exchange (subscriptions and assignments v0-v3) is
//!   kcon-codec's `consumer_protocol`.
//! - [`assignor`]: range, roundrobin, sticky and cooperative-sticky, as pure functions.
//! - [`wire`]: the machine's requests in kafka-protocol's types, per version.
//! - [`consumer_group`]: the member of the consumer protocol (KIP-848, `group.protocol=consumer`),
//!   [`ConsumerGroupMachine`], on the same contract and with the same events.
//! - [`Member`]: the commands and queries of either member, beside the machine contract;
//!   [`MemberMachine`] is either member, by `group.protocol`.
//! - [`GroupMember`]: a tokio task that drives a machine through a [`kcon_pool::Pool`].

pub mod assignor;
mod config;
pub mod consumer_group;
#[cfg(feature = "driver")]
mod driver;
mod error;
mod lookup;
mod machine;
mod member;
mod messages;
pub mod property;
mod revocation;
pub mod wire;

pub use config::GroupConfig;
pub use consumer_group::ConsumerGroupMachine;
#[cfg(feature = "driver")]
pub use driver::{GroupMember, MemberSnapshot};
pub use error::GroupError;
pub use machine::{Generation, GroupEvent, GroupMachine, MemberState, PROTOCOL_TYPE, RevocationId};
pub use member::{Member, MemberMachine};
pub use messages::{
    GroupRequest, GroupResponse, Heartbeat, JoinGroup, JoinGroupAnswer, JoinedMember, LeaveGroup,
    Outgoing, SyncGroup,
};
