//! What the [`FetchMachine`](crate::FetchMachine) asks for and is answered with, independent
//! of protocol versions except where the session's shape depends on one (the Fetch version
//! decides topic ids and whether sessions exist, so the machine builds Fetches for a version
//! the driver told it).

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::fetch_response::FetchResponse;
use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::OffsetForLeaderEpochResponse;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::{PersistentFailure, ResetPolicy, Target, TopicId, TopicPartition};

use crate::position::{LeaderAndEpoch, PartitionError, ResetReason};
use crate::records::FetchedRecords;
use crate::session::SessionRequest;
use crate::session::wire::FetchParams;
use crate::validation::ValidationRequest;

/// A request the fetch machine wants sent. Its target is [`FetchRequest::target`]; the driver
/// gives a Fetch `request.timeout.ms` plus `fetch.max.wait.ms` to be answered, since the broker
/// holds it up to that long.
pub type Outgoing = kcon_core::Outgoing<FetchRequest>;

/// The requests of the fetch loop.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FetchRequest {
    /// A Fetch to `broker`, on its fetch connection (apart from its shared one), at `version`
    /// (build it with [`fetch_request`](crate::fetch_request)); answered with
    /// [`FetchAnswer::Fetch`]. A session close (epoch -1) is one of these too.
    Fetch {
        /// The broker.
        broker: i32,
        /// The Fetch version the session was built for.
        version: i16,
        /// What the session decided.
        session: SessionRequest,
        /// The other fields.
        params: FetchParams,
        /// A Fetch of this broker is in flight, which the broker may hold for
        /// `fetch.max.wait.ms`: this one (a session close) goes on a connection of its own,
        /// since a broker answers a connection's requests in order.
        apart: bool,
    },
    /// Connect to `broker` and tell its API versions ([`FetchAnswer::Broker`]): the machine
    /// needs its Fetch version before building a session's request.
    Connect {
        /// The broker.
        broker: i32,
    },
    /// ListOffsets to `broker`, the leader of `partitions`, which reset under
    /// `auto.offset.reset`; answered with [`FetchAnswer::ListOffsets`]. The driver turns the
    /// policy into a query with [`ResetPolicy::offset_spec`] and its wall clock (the machine
    /// reads none), and builds the request with
    /// [`list_offsets_request`](kcon_core::list_offsets::list_offsets_request).
    ListOffsets {
        /// The leader.
        broker: i32,
        /// The partitions, each with the leader epoch the metadata gave (ListOffsets v4+
        /// sends it, so a stale leader is fenced, KIP-320).
        partitions: Vec<(TopicPartition, Option<i32>)>,
        /// The policy (never `none`).
        policy: ResetPolicy,
    },
    /// OffsetForLeaderEpoch to one leader (KIP-320); answered with
    /// [`FetchAnswer::Validation`]. Build it with
    /// [`offset_for_leader_epoch_request`](crate::validation::offset_for_leader_epoch_request).
    Validate(ValidationRequest),
    /// Refresh the metadata of these topics; answered with [`FetchAnswer::Metadata`].
    Metadata {
        /// The topics.
        topics: Vec<String>,
    },
}

impl FetchRequest {
    /// Where it goes: the broker it names (a Fetch, and the versions it is built for, on the
    /// broker's fetch connection; ListOffsets and OffsetForLeaderEpoch on its shared one), any
    /// broker for Metadata.
    pub fn target(&self) -> Target {
        match self {
            FetchRequest::Fetch { broker, .. }
            | FetchRequest::Connect { broker }
            | FetchRequest::ListOffsets { broker, .. } => Target::Broker(*broker),
            FetchRequest::Validate(v) => Target::Broker(v.broker),
            FetchRequest::Metadata { .. } => Target::Any,
        }
    }
}

/// An answer to a [`FetchRequest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FetchAnswer {
    /// The Fetch answer.
    Fetch(Box<FetchResponse>),
    /// A broker's versions after a [`FetchRequest::Connect`].
    Broker(BrokerInfo),
    /// Each partition's ListOffsets answer.
    ListOffsets(BTreeMap<TopicPartition, ListedOffset>),
    /// The OffsetForLeaderEpoch answer.
    Validation(Box<OffsetForLeaderEpochResponse>),
    /// A metadata snapshot.
    Metadata(MetadataView),
}

/// What the fetcher needs to know of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub id: i32,
    /// The Fetch version kcon and the broker both speak.
    pub fetch_version: i16,
    /// Whether it offers OffsetForLeaderEpoch at a version kcon speaks (KIP-320 validation).
    pub can_validate: bool,
}

/// What the fetcher needs to know of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Its leader and epoch.
    pub leader: LeaderAndEpoch,
    /// Its topic's id (KIP-516), when the metadata carries one.
    pub topic_id: Option<TopicId>,
}

/// The cluster as the fetcher sees it: the pool's metadata with each broker's versions where
/// known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataView {
    /// The partitions the metadata names.
    pub partitions: BTreeMap<TopicPartition, PartitionInfo>,
    /// Brokers whose versions are known (a connection was made); others are asked for with
    /// [`FetchRequest::Connect`].
    pub brokers: BTreeMap<i32, BrokerInfo>,
}

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The committed offset with the leader epoch it was committed with, if known: fetched
    /// from there, after validation when both epochs are known (KIP-320).
    Committed {
        /// The offset.
        offset: i64,
        /// Its leader epoch.
        leader_epoch: Option<i32>,
    },
    /// No committed offset: look one up under `auto.offset.reset`.
    Reset,
}

/// What the fetch loop tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// Records of one partition, in order. No records and no bytes: an answer that brought
    /// none, telling where the partition's log ends (its high watermark and last stable
    /// offset) and its position, when either changed since the owner was last told (an empty
    /// partition, one read to its end, control batches skipped).
    Records(FetchedRecords),
    /// An error for one partition. For a corrupt batch, the records before it were delivered
    /// and the position stays at its offset; a log truncation under a reset policy has moved
    /// the position already (see [`PartitionError`]).
    PartitionError {
        /// The partition.
        partition: TopicPartition,
        /// What happened.
        error: PartitionError,
    },
    /// A partition's position was set by `auto.offset.reset`.
    Reset {
        /// The partition.
        partition: TopicPartition,
        /// Why it was reset.
        reason: ResetReason,
        /// The new position.
        offset: i64,
    },
    /// These partitions have no position and `auto.offset.reset` is `none` (the Java client's
    /// `NoOffsetForPartitionException`): the application must seek. Told once per need.
    NoPosition {
        /// The partitions.
        partitions: Vec<TopicPartition>,
    },
    /// ListOffsets failed for a partition being reset (a broker error code); retried after a
    /// backoff (KIP-580). A failure that lasts is also reported as a
    /// [`PersistentFailure`](FetchEvent::PersistentFailure), logged at WARN.
    ResetFailed {
        /// The partition.
        partition: TopicPartition,
        /// The error code.
        error_code: i16,
    },
    /// Every fetch session was closed (or could not be): the machine is done.
    Closed,
    /// Fetches from a broker, or the metadata refreshes that find the partitions' leaders, keep
    /// failing (logged at WARN already), or recovered after that was reported: the machine
    /// goes on trying.
    PersistentFailure(PersistentFailure),
}
