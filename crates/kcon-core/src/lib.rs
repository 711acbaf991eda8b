//! The shared vocabulary of kcon's parts, with no IO and no clock.
//!
//! The group, offsets and fetch machines are siblings over this crate: what more than one of
//! them speaks of is defined here once, so none of them depends on another (or on tokio) for
//! a type.
//!
//! - [`partition`]: [`TopicPartition`], [`TopicId`] and [`Topic`], a record's interned topic name.
//! - [`record`]: the [`Record`] handed to the application (kcon-fetch makes them from Fetch
//!   answers).
//! - [`deserialize`]: what reads a record's key or value: the [`Deserializer`] trait, its
//!   [`Context`](deserialize::Context) and [`DeserializeError`], for kcon's deserializers and
//!   the Schema Registry's alike.
//! - [`offsets`]: `isolation.level`, `auto.offset.reset` (with KIP-1106's `by_duration`), the
//!   ListOffsets query a reset turns into, watermarks and lag.
//! - [`backoff`]: KIP-580's exponential backoff with jitter, a pure function of the attempt and a
//!   random number.
//! - [`cause`]: whose doing an error was ([`Cause`]), one value for every part.
//! - [`failure`]: a request that keeps failing: the backoff between its tries, which only its
//!   own success resets, and when it is reported ([`PersistentFailure`]).
//! - [`property`]: the mechanism of the tables of properties each crate contributes
//!   ([`property::registry`]): names, aliases, defaults, what each allows, the parts it
//!   configures; [`ConfigError`]; the [`Configurable`] trait each part's configuration
//!   implements. kcon-core names no property: each crate's table names its own.
//! - [`security`]: the values of the TLS and SASL properties.
//! - [`telemetry`]: KIP-714's client metrics pushed to the cluster: when to ask for the
//!   subscription and when to push, as a machine.
//! - [`assignor`]: the built-in assignors and the group protocols by name.
//! - [`coordinator`]: FindCoordinator for a group, as every part that talks to a coordinator
//!   asks it.
//! - [`error_codes`]: what Kafka's error codes mean for a client, by name.
//! - [`harness`]: any machine on a virtual clock, answered by a test.
//! - [`list_offsets`]: ListOffsets, the query resets, watermarks and timestamp lookups send.
//! - [`group_offsets`]: OffsetCommit and OffsetFetch, a group's committed offsets, which the
//!   commit machine and the admin calls send.
//! - [`timer`]: a machine's timers, one table ([`TimerTable`]) indexed by the machine's enum of
//!   them: `poll_timeout` is its earliest deadline.
//! - [`wire`]: what every part's kafka-protocol conversions share ([`wire::VersionError`]).
//! - [`machine`]: what a sans-IO machine sends ([`Outgoing`], [`Target`], [`RequestId`]) and
//!   why a request got no answer ([`RequestFailure`]).

pub mod assignor;
pub mod backoff;
pub mod cause;
pub mod coordinator;
pub mod deserialize;
pub mod error_codes;
pub mod failure;
pub mod group_offsets;
pub mod harness;
pub mod list_offsets;
pub mod machine;
pub mod offsets;
pub mod partition;
pub mod property;
pub mod record;
pub mod security;
pub mod telemetry;
pub mod timer;
pub mod wire;

pub use assignor::{BuiltinAssignor, GroupProtocol};
pub use backoff::ExponentialBackoff;
pub use cause::{Cause, KconError, Outcome};
pub use coordinator::{ConsumerGroupMetadata, Membership};
pub use deserialize::{DeserializeError, Deserializer};
pub use failure::{FailureTracker, PersistentFailure};
pub use machine::{Coordinator, Machine, Outgoing, RequestFailure, RequestId, RequestIds, Target};
pub use offsets::{IsolationLevel, OffsetSpec, ResetPolicy, Watermarks};
pub use partition::{Topic, TopicId, TopicPartition};
pub use property::{ConfigError, Configurable, Part};
pub use record::Record;
pub use security::{EndpointIdentification, Password, SaslMechanism, SecurityProtocol};
pub use timer::{TimerKind, TimerTable};
