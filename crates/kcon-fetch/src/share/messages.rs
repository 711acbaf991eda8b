//! What the [`ShareFetchMachine`](super::ShareFetchMachine) asks for and is answered with, and
//! what it tells: version-free, turned into kafka-protocol's types by [`wire`](super::wire).

use kcon_codec::kafka_protocol::messages::share_acknowledge_response::ShareAcknowledgeResponse;
use kcon_codec::kafka_protocol::messages::share_fetch_response::ShareFetchResponse;
use kcon_core::{PersistentFailure, Record, Target, TopicId, TopicPartition};

use crate::messages::MetadataView;

/// A request the share fetch machine wants sent.
pub type ShareOutgoing = kcon_core::Outgoing<ShareRequest>;

/// How a record handed out by a share group is settled (KIP-932).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AcknowledgeType {
    /// Processed: the record is done for the group.
    Accept,
    /// Not processed now: handed out again (to this member or another) with its delivery count
    /// raised, until the group's delivery limit archives it.
    Release,
    /// Never to be processed: archived, never handed out again.
    Reject,
    /// An offset acquired without a record (a control record, or one compaction removed): the
    /// client tells the broker so, or the offset stays locked until the lock expires.
    Gap,
    /// Still being processed: the record's lock starts over and it stays the member's, to be
    /// settled later (KIP-1222, ShareAcknowledge v2).
    Renew,
}

impl AcknowledgeType {
    /// The code acknowledgement batches carry: 0 gap, 1 accept, 2 release, 3 reject, 4 renew.
    pub const fn code(self) -> i8 {
        match self {
            AcknowledgeType::Gap => 0,
            AcknowledgeType::Accept => 1,
            AcknowledgeType::Release => 2,
            AcknowledgeType::Reject => 3,
            AcknowledgeType::Renew => 4,
        }
    }

    /// The name Kafka's share consumers use: `accept`, `release`, `reject`, `renew` (and `gap`).
    pub const fn name(self) -> &'static str {
        match self {
            AcknowledgeType::Gap => "gap",
            AcknowledgeType::Accept => "accept",
            AcknowledgeType::Release => "release",
            AcknowledgeType::Reject => "reject",
            AcknowledgeType::Renew => "renew",
        }
    }

    /// The type named `name`, in any case (`gap` is the client's own and not taken).
    pub fn from_name(name: &str) -> Option<AcknowledgeType> {
        [
            AcknowledgeType::Accept,
            AcknowledgeType::Release,
            AcknowledgeType::Reject,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// How the broker acquires records for a ShareFetch (`share.acquire.mode`, KIP-1206).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcquireMode {
    /// Whole batches: a fetch may acquire more than `max.poll.records` records (the only mode
    /// of ShareFetch v1).
    #[default]
    BatchOptimized,
    /// At most `max.poll.records` records a fetch (ShareFetch v2).
    RecordLimit,
}

impl AcquireMode {
    /// What `share.acquire.mode` takes.
    pub const EXPECTED: &'static str = "batch_optimized or record_limit";

    /// ShareFetch v2's `ShareAcquireMode`.
    pub const fn code(self) -> i8 {
        match self {
            AcquireMode::BatchOptimized => 0,
            AcquireMode::RecordLimit => 1,
        }
    }

    /// The mode named `name` (`batch_optimized`, `record_limit`), in any case.
    pub fn parse(name: &str) -> Option<AcquireMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "batch_optimized" => Some(AcquireMode::BatchOptimized),
            "record_limit" => Some(AcquireMode::RecordLimit),
            _ => None,
        }
    }
}

/// Offsets `first..=last` of one partition, acknowledged with one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcknowledgementRange {
    /// The first offset.
    pub first: i64,
    /// The last offset, included.
    pub last: i64,
    /// How.
    pub kind: AcknowledgeType,
}

/// One partition of a share request: its topic id and index, and the acknowledgements it
/// carries (ranges in ascending order, none overlapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionRequest {
    /// The partition, by name.
    pub partition: TopicPartition,
    /// Its topic's id (share requests name topics by id only).
    pub topic_id: TopicId,
    /// The acknowledgements carried.
    pub acknowledgements: Vec<AcknowledgementRange>,
}

/// A ShareFetch: fetches from the share session's partitions, carrying acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFetch {
    /// The group id.
    pub group_id: String,
    /// The member id (the share group member's).
    pub member_id: String,
    /// The share session epoch: 0 opens a session (listing every partition, carrying no
    /// acknowledgement), then 1, 2, ...
    pub epoch: i32,
    /// `fetch.max.wait.ms`.
    pub max_wait_ms: i32,
    /// `fetch.min.bytes`.
    pub min_bytes: i32,
    /// `fetch.max.bytes`.
    pub max_bytes: i32,
    /// `max.poll.records`: the most records the broker acquires for this fetch.
    pub max_records: i32,
    /// The batch size the broker aims at when acquiring (the same as `max_records`).
    pub batch_size: i32,
    /// How the broker acquires (sent from ShareFetch v2; v1 acquires whole batches).
    pub acquire_mode: AcquireMode,
    /// The partitions added to the session, and those carrying acknowledgements.
    pub partitions: Vec<SharePartitionRequest>,
    /// The partitions leaving the session.
    pub forgotten: Vec<(TopicPartition, TopicId)>,
}

/// A ShareAcknowledge: acknowledgements without a fetch (a commit), or closing the session
/// with epoch -1 (and the last acknowledgements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAcknowledge {
    /// The group id.
    pub group_id: String,
    /// The member id.
    pub member_id: String,
    /// The share session epoch (never 0; -1 closes the session).
    pub epoch: i32,
    /// Renewals only (KIP-1222: sent with `IsRenewAck`, ShareAcknowledge v2); otherwise none.
    pub renew: bool,
    /// The partitions with acknowledgements.
    pub partitions: Vec<SharePartitionRequest>,
}

/// The requests of the share fetch machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareRequest {
    /// ShareFetch v1 to `broker`, on its shared connection; answered with
    /// [`ShareAnswer::Fetch`].
    Fetch {
        /// The broker.
        broker: i32,
        /// The request.
        fetch: ShareFetch,
    },
    /// ShareAcknowledge v1 to `broker`; answered with [`ShareAnswer::Acknowledge`].
    Acknowledge {
        /// The broker.
        broker: i32,
        /// The request.
        acknowledge: ShareAcknowledge,
    },
    /// A metadata refresh of these topics; answered with [`ShareAnswer::Metadata`].
    Metadata {
        /// The topics.
        topics: Vec<String>,
    },
}

impl ShareRequest {
    /// Where it goes: the broker it names, any broker for Metadata.
    pub fn target(&self) -> Target {
        match self {
            ShareRequest::Fetch { broker, .. } | ShareRequest::Acknowledge { broker, .. } => {
                Target::Broker(*broker)
            }
            ShareRequest::Metadata { .. } => Target::Any,
        }
    }
}

/// An answer to a [`ShareRequest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ShareAnswer {
    /// ShareFetch's answer.
    Fetch(Box<ShareFetchResponse>),
    /// ShareAcknowledge's answer.
    Acknowledge(Box<ShareAcknowledgeResponse>),
    /// A metadata snapshot.
    Metadata(MetadataView),
}

/// What the acknowledgements of one partition, sent in one request, came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgementOutcome {
    /// The partition.
    pub partition: TopicPartition,
    /// The ranges acknowledged (gaps left out: they are the client's, not the application's).
    pub ranges: Vec<AcknowledgementRange>,
    /// 0, or the error code that refused them (the partition's, the request's, or none
    /// given because the request failed: then [`failure`](Self::failure) says why).
    pub error_code: i16,
    /// Why the request carrying them failed, when it did.
    pub failure: Option<String>,
}

impl AcknowledgementOutcome {
    /// Whether the broker took them.
    pub fn is_ok(&self) -> bool {
        self.error_code == 0 && self.failure.is_none()
    }

    /// How many offsets they cover.
    pub fn offsets(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.last.saturating_sub(r.first).saturating_add(1).max(0) as u64)
            .sum()
    }
}

/// What the share fetch machine tells.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareEvent {
    /// Records of one partition acquired for this member, in offset order, each with its
    /// delivery count; locked for it until `lock_timeout_ms` after the answer.
    Records {
        /// The partition.
        partition: TopicPartition,
        /// The records.
        records: Vec<Record>,
        /// The acquisition lock's duration the broker answered with.
        lock_timeout_ms: i32,
        /// How many of them this member held unacknowledged before, at a lower delivery
        /// count: their locks expired while it held them.
        lock_expired: usize,
    },
    /// The acknowledgements of one partition sent in one request were answered (or failed).
    Acknowledged(AcknowledgementOutcome),
    /// Every acknowledgement asked for by [`commit`](super::ShareFetchMachine::commit) number
    /// `.0`, and by every commit numbered lower, is answered. Commits complete in the order
    /// they were asked, and those completing together are told by one event, the last's: so
    /// the events waiting stay few however many commits an application asks for without
    /// reading them.
    Committed(u64),
    /// Requests to a broker keep failing (logged at WARN already), or recovered after that was
    /// reported.
    PersistentFailure(PersistentFailure),
    /// Every share session is closed (or could not be): the machine is done.
    Closed,
}
