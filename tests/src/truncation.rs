//! A scripted one-broker cluster whose log is truncated under its consumers: what an unclean
//! leader election does (a replica that missed records becomes leader at a new epoch, and the
//! records only the old leader had are gone), at once and exactly where a test says, beside
//! the real one on the three-node Apache Kafka cluster (`tests/consumer_truncation_cluster.rs`,
//! a minute of nodes killed and started). It also answers what Apache Kafka never answers
//! kcon: a Fetch's diverging epoch from a leader kcon could not validate against.
//!
//! Broker 1 leads the one partition of one topic and coordinates every group. It answers as
//! Apache Kafka does:
//! - Metadata (the topic with its id and the partition's leader epoch), FindCoordinator;
//! - a classic group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): every JoinGroup starts a
//!   new generation with the joining member as its only member and leader, and SyncGroup hands
//!   it the assignment it sent;
//! - OffsetCommit and OffsetFetch, keeping each group's offset with its leader epoch;
//! - ListOffsets (earliest, latest), and OffsetForLeaderEpoch from the log's epochs (KIP-279:
//!   the largest epoch at or below the one asked about, and where the next one starts), unless
//!   started without it ([`TruncatingBroker::start_without_offset_for_leader_epoch`]);
//! - Fetch without sessions: a current leader epoch behind the partition's is
//!   FENCED_LEADER_EPOCH, a last fetched epoch whose records the log no longer holds is
//!   answered with the diverging epoch and no records (Kafka's `Partition.readRecords`), an
//!   offset outside the log is OFFSET_OUT_OF_RANGE; a Fetch with nothing to return is held
//!   until records come (at most 200 ms or its `max_wait_ms`).
//!
//! Records' values say where they were written: [`value`] (`"{offset}@{epoch}"`), so a record
//! of the lost log and one the new leader wrote at the same offset tell apart. Requests of any
//! other API are recorded ([`TruncatingBroker::unexpected`]) and the connection closed.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::fetch_request::FetchPartition;
use kcon_codec::kafka_protocol::messages::fetch_response::{
    EpochEndOffset as DivergingEpoch, FetchableTopicResponse, PartitionData,
};
use kcon_codec::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kcon_codec::kafka_protocol::messages::leave_group_response::MemberResponse;
use kcon_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kcon_codec::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kcon_codec::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kcon_codec::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::error_codes::code;
use kcon_scripted::{
    Answer, BROKER_ID, Broker, Received, VersionRange, coordinator_answer, kcon_versions, metadata,
    partition,
};
use tokio::sync::Notify;

/// The longest a Fetch with nothing to return is held (or `max_wait_ms`, if shorter).
const LONGEST_HOLD: Duration = Duration::from_millis(200);

/// A record's value as the broker writes it: its offset and the leader epoch it was written in.
pub fn value(offset: i64, epoch: i32) -> String {
    format!("{offset}@{epoch}")
}

/// One batch of the log.
#[derive(Debug, Clone)]
struct Batch {
    last: i64,
    bytes: Bytes,
}

/// One group's state: its generation, its one member, the assignment the member sent, and
/// the committed offset with its leader epoch (-1: none).
#[derive(Debug, Default)]
struct Group {
    generation: i32,
    member: String,
    assignment: Bytes,
    committed: Option<(i64, i32)>,
}

#[derive(Debug)]
struct State {
    topic: String,
    topic_id: [u8; 16],
    batches: Vec<Batch>,
    end: i64,
    leader_epoch: i32,
    /// `(epoch, start offset)`, ascending: what OffsetForLeaderEpoch answers from.
    epoch_starts: Vec<(i32, i64)>,
    groups: BTreeMap<String, Group>,
    next_member: u32,
    unexpected: Vec<String>,
}

/// The broker. Stops when dropped.
pub struct TruncatingBroker {
    broker: Broker,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl TruncatingBroker {
    /// A broker leading `topic` (one partition) at leader epoch 0, with an empty log.
    pub async fn start(topic: &str) -> TruncatingBroker {
        TruncatingBroker::start_offering(topic, kcon_versions()).await
    }

    /// The same broker, but one that does not offer OffsetForLeaderEpoch: a consumer cannot
    /// validate its position after a leader change (kcon skips validation then, as the Java
    /// client does for a broker without the API), and learns of a truncation only from a
    /// Fetch answer's diverging epoch, which this broker sends as Apache Kafka does.
    pub async fn start_without_offset_for_leader_epoch(topic: &str) -> TruncatingBroker {
        let versions = kcon_versions()
            .into_iter()
            .filter(|&(key, _, _)| key != ApiKey::OffsetForLeaderEpoch as i16)
            .collect();
        TruncatingBroker::start_offering(topic, versions).await
    }

    async fn start_offering(topic: &str, versions: Vec<VersionRange>) -> TruncatingBroker {
        let mut topic_id = [0u8; 16];
        for (i, b) in topic.bytes().enumerate() {
            topic_id[i % 16] ^= b;
        }
        topic_id[0] |= 1;
        let state = Arc::new(Mutex::new(State {
            topic: topic.to_owned(),
            topic_id,
            batches: Vec::new(),
            end: 0,
            leader_epoch: 0,
            epoch_starts: vec![(0, 0)],
            groups: BTreeMap::new(),
            next_member: 1,
            unexpected: Vec::new(),
        }));
        let wake = Arc::new(Notify::new());
        let (s, w) = (state.clone(), wake.clone());
        let broker =
            Broker::start_with_versions(versions, Arc::new(move |r: &Received| answer(r, &s, &w)))
                .await;
        TruncatingBroker {
            broker,
            state,
            wake,
        }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.broker.address()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Appends `n` records in the current leader epoch, one batch, values by [`value`].
    pub fn append(&self, n: usize) {
        let mut s = self.state();
        let (base, epoch) = (s.end, s.leader_epoch);
        let mut b = RecordBatchBuilder::new(base).partition_leader_epoch(epoch);
        for i in 0..n as i64 {
            let v = value(base + i, epoch);
            b.record(1_000, Some(b"k"), Some(v.as_bytes()));
        }
        let bytes = b.build().expect("a batch the codec builds");
        s.end = base + n as i64;
        let last = s.end - 1;
        s.batches.push(Batch { last, bytes });
        drop(s);
        self.wake.notify_waiters();
    }

    /// An unclean leader election: the new leader, at the next epoch, never had the records
    /// from `to` on (`to` is a batch boundary); its epoch starts there.
    pub fn truncate_and_bump_epoch(&self, to: i64) {
        let mut s = self.state();
        s.batches.retain(|b| b.last < to);
        assert!(
            s.batches.last().map_or(0, |b| b.last + 1) == to,
            "truncate at a batch boundary"
        );
        s.end = to;
        s.leader_epoch += 1;
        let epoch = s.leader_epoch;
        s.epoch_starts.push((epoch, to));
        drop(s);
        self.wake.notify_waiters();
    }

    /// The log end offset.
    pub fn end(&self) -> i64 {
        self.state().end
    }

    /// `group`'s committed offset and its leader epoch (-1: committed without one).
    pub fn committed(&self, group: &str) -> Option<(i64, i32)> {
        self.state().groups.get(group).and_then(|g| g.committed)
    }

    /// Sets `group`'s committed offset, as a client that committed it would have.
    pub fn commit(&self, group: &str, offset: i64, leader_epoch: i32) {
        self.state()
            .groups
            .entry(group.to_owned())
            .or_default()
            .committed = Some((offset, leader_epoch));
    }

    /// Every OffsetForLeaderEpoch question received: `(leader epoch asked about, current
    /// leader epoch)`.
    pub fn epoch_questions(&self) -> Vec<(i32, i32)> {
        self.broker
            .stats
            .requests::<OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch)
            .iter()
            .flat_map(|r| r.topics.iter().flat_map(|t| t.partitions.iter()))
            .map(|p| (p.leader_epoch, p.current_leader_epoch))
            .collect()
    }

    /// Every Fetch's `(fetch offset, last fetched epoch)` for the partition, in order.
    pub fn fetched_from(&self) -> Vec<(i64, i32)> {
        self.fetched_from_where(|_| true)
    }

    /// [`fetched_from`](Self::fetched_from), of the Fetches sent under `client_id` alone.
    ///
    /// A closed client's last Fetch may still be read by the broker after the client is gone
    /// (the bytes wait in the socket for the connection's task), so a count of Fetches taken
    /// then does not part one client's from the next one's; their client ids do.
    pub fn fetched_from_by(&self, client_id: &str) -> Vec<(i64, i32)> {
        self.fetched_from_where(|r| r.header.client_id.as_deref() == Some(client_id))
    }

    fn fetched_from_where(&self, from: impl Fn(&Received) -> bool) -> Vec<(i64, i32)> {
        self.broker
            .stats
            .received()
            .iter()
            .filter(|r| r.api() == Some(ApiKey::Fetch) && from(r))
            .map(Received::decode::<FetchRequest>)
            .flat_map(|r| r.topics.into_iter().flat_map(|t| t.partitions))
            .map(|p| (p.fetch_offset, p.last_fetched_epoch))
            .collect()
    }

    /// Requests of APIs the broker does not answer (their connections were closed).
    pub fn unexpected(&self) -> Vec<String> {
        self.state().unexpected.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// kafka-protocol's `Uuid` from bytes, without naming the `uuid` crate: every `uuid` version
/// parses the 32-hex-digit form.
fn uuid<U: FromStr>(bytes: [u8; 16]) -> U {
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    text.parse().ok().expect("32 hex digits")
}

/// What the broker answers `r` with (ApiVersions aside, which the `Broker` answers).
fn answer(r: &Received, state: &Arc<Mutex<State>>, wake: &Arc<Notify>) -> Answer {
    let mut st = lock(state);
    match r.api() {
        Some(ApiKey::Metadata) => {
            let req = r.decode::<MetadataRequest>();
            r.answer::<MetadataRequest>(&st.metadata(r, &req))
        }
        Some(ApiKey::FindCoordinator) => coordinator_answer(r, BROKER_ID, r.broker),
        Some(ApiKey::JoinGroup) => {
            let req = r.decode::<JoinGroupRequest>();
            r.answer::<JoinGroupRequest>(&st.join(&req))
        }
        Some(ApiKey::SyncGroup) => {
            let req = r.decode::<SyncGroupRequest>();
            r.answer::<SyncGroupRequest>(&st.sync(&req))
        }
        Some(ApiKey::Heartbeat) => {
            let req = r.decode::<HeartbeatRequest>();
            let current = st
                .groups
                .get(req.group_id.0.as_str())
                .is_some_and(|g| g.generation == req.generation_id);
            let error = if current { 0 } else { code::ILLEGAL_GENERATION };
            r.answer::<HeartbeatRequest>(&HeartbeatResponse::default().with_error_code(error))
        }
        Some(ApiKey::LeaveGroup) => {
            let req = r.decode::<LeaveGroupRequest>();
            let members = req
                .members
                .iter()
                .map(|m| MemberResponse::default().with_member_id(m.member_id.clone()))
                .collect();
            r.answer::<LeaveGroupRequest>(&LeaveGroupResponse::default().with_members(members))
        }
        Some(ApiKey::OffsetCommit) => {
            let req = r.decode::<OffsetCommitRequest>();
            r.answer::<OffsetCommitRequest>(&st.offset_commit(&req))
        }
        Some(ApiKey::OffsetFetch) => {
            let req = r.decode::<OffsetFetchRequest>();
            r.answer::<OffsetFetchRequest>(&st.offset_fetch(&req, r.version()))
        }
        Some(ApiKey::ListOffsets) => {
            let req = r.decode::<ListOffsetsRequest>();
            r.answer::<ListOffsetsRequest>(&st.list_offsets(&req))
        }
        Some(ApiKey::OffsetForLeaderEpoch) => {
            let req = r.decode::<OffsetForLeaderEpochRequest>();
            r.answer::<OffsetForLeaderEpochRequest>(&st.epochs(&req))
        }
        Some(ApiKey::Fetch) => {
            let req = r.decode::<FetchRequest>();
            drop(st);
            let (r, state, wake) = (r.clone(), state.clone(), wake.clone());
            Answer::Later(Box::pin(async move {
                // Kafka holds a Fetch with nothing to return until records come or
                // max_wait_ms passes; so does this broker (bounded), so an idle consumer
                // does not spin.
                let woken = wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let ready = lock(&state).has_answer(&req, r.version());
                if !ready {
                    let hold =
                        Duration::from_millis(req.max_wait_ms.max(0) as u64).min(LONGEST_HOLD);
                    let _ = tokio::time::timeout(hold, woken).await;
                }
                let response = lock(&state).fetch_answer(&req, r.version());
                r.answer::<FetchRequest>(&response)
            }))
        }
        other => {
            st.unexpected
                .push(format!("{other:?} v{} ({})", r.version(), r.api_key()));
            Answer::RawThenClose(Vec::new())
        }
    }
}

impl State {
    fn metadata(&self, r: &Received, req: &MetadataRequest) -> MetadataResponse {
        let mut m = metadata(&[(BROKER_ID, r.broker)], &[]);
        let wanted: Vec<String> = match &req.topics {
            None => vec![self.topic.clone()],
            Some(topics) => topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        };
        m.topics = wanted
            .into_iter()
            .map(|name| {
                let t = MetadataResponseTopic::default().with_name(Some(TopicName(s(&name))));
                if name != self.topic {
                    return t.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                }
                t.with_topic_id(uuid(self.topic_id))
                    .with_partitions(vec![partition(0, BROKER_ID, self.leader_epoch)])
            })
            .collect();
        m
    }

    /// Every JoinGroup starts a new generation with the joining member alone, its leader.
    fn join(&mut self, req: &JoinGroupRequest) -> JoinGroupResponse {
        let member = if req.member_id.is_empty() {
            let id = format!("member-{}", self.next_member);
            self.next_member += 1;
            id
        } else {
            req.member_id.to_string()
        };
        let group = self.groups.entry(req.group_id.0.to_string()).or_default();
        group.generation += 1;
        group.member = member.clone();
        let Some(protocol) = req.protocols.first() else {
            return JoinGroupResponse::default().with_error_code(code::INCONSISTENT_GROUP_PROTOCOL);
        };
        JoinGroupResponse::default()
            .with_generation_id(group.generation)
            .with_protocol_type(Some(req.protocol_type.clone()))
            .with_protocol_name(Some(protocol.name.clone()))
            .with_leader(s(&member))
            .with_member_id(s(&member))
            .with_members(vec![
                JoinGroupResponseMember::default()
                    .with_member_id(s(&member))
                    .with_group_instance_id(req.group_instance_id.clone())
                    .with_metadata(protocol.metadata.clone()),
            ])
    }

    /// The leader's SyncGroup: its own assignment back.
    fn sync(&mut self, req: &SyncGroupRequest) -> SyncGroupResponse {
        let Some(group) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return SyncGroupResponse::default().with_error_code(code::UNKNOWN_MEMBER_ID);
        };
        if group.generation != req.generation_id {
            return SyncGroupResponse::default().with_error_code(code::ILLEGAL_GENERATION);
        }
        if let Some(a) = req
            .assignments
            .iter()
            .find(|a| a.member_id.as_str() == group.member)
        {
            group.assignment = a.assignment.clone();
        }
        SyncGroupResponse::default()
            .with_protocol_type(req.protocol_type.clone())
            .with_protocol_name(req.protocol_name.clone())
            .with_assignment(group.assignment.clone())
    }

    fn offset_commit(&mut self, req: &OffsetCommitRequest) -> OffsetCommitResponse {
        let group = self.groups.entry(req.group_id.0.to_string()).or_default();
        let stale = req.generation_id_or_member_epoch >= 0
            && req.generation_id_or_member_epoch != group.generation;
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let error = if stale {
                            code::ILLEGAL_GENERATION
                        } else {
                            group.committed = Some((p.committed_offset, p.committed_leader_epoch));
                            0
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    fn offset_fetch(&self, req: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let of = |group: &str| {
            self.groups
                .get(group)
                .and_then(|g| g.committed)
                .unwrap_or((-1, -1))
        };
        if version >= 8 {
            let groups = req
                .groups
                .iter()
                .map(|g| {
                    let (offset, epoch) = of(g.group_id.0.as_str());
                    let topics = g
                        .topics
                        .iter()
                        .flatten()
                        .map(|t| {
                            let partitions = t
                                .partition_indexes
                                .iter()
                                .map(|&p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(s("")))
                                })
                                .collect();
                            OffsetFetchResponseTopics::default()
                                .with_name(t.name.clone())
                                .with_partitions(partitions)
                        })
                        .collect();
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_topics(topics)
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let (offset, epoch) = of(req.group_id.0.as_str());
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(s("")))
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    fn list_offsets(&self, req: &ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        if let Some(code) = self.epoch_error(p.current_leader_epoch) {
                            return r.with_error_code(code);
                        }
                        let offset = if p.timestamp == -2 { 0 } else { self.end };
                        r.with_timestamp(-1)
                            .with_offset(offset)
                            .with_leader_epoch(self.leader_epoch)
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    /// The end offset of `epoch` (KIP-279): the largest epoch not above it and where the next
    /// one starts, or the log end for the latest; `(-1, -1)` when there is none.
    fn epoch_end(&self, epoch: i32) -> (i32, i64) {
        let Some(i) = self.epoch_starts.iter().rposition(|&(e, _)| e <= epoch) else {
            return (-1, -1);
        };
        let end = self.epoch_starts.get(i + 1).map_or(self.end, |&(_, s)| s);
        (self.epoch_starts[i].0, end)
    }

    /// KIP-320's check of the client's current leader epoch (-1: not checked).
    fn epoch_error(&self, current: i32) -> Option<i16> {
        if current < 0 || current == self.leader_epoch {
            None
        } else if current < self.leader_epoch {
            Some(code::FENCED_LEADER_EPOCH)
        } else {
            Some(code::UNKNOWN_LEADER_EPOCH)
        }
    }

    fn epochs(&self, req: &OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let r = EpochEndOffset::default().with_partition(p.partition);
                        if let Some(code) = self.epoch_error(p.current_leader_epoch) {
                            return r.with_error_code(code);
                        }
                        let (epoch, end) = self.epoch_end(p.leader_epoch);
                        r.with_leader_epoch(epoch).with_end_offset(end)
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetForLeaderEpochResponse::default().with_topics(topics)
    }

    /// Whether a Fetch topic entry names the topic (by id from v13).
    fn ours(&self, name: &TopicName, id: [u8; 16], version: i16) -> bool {
        if version >= 13 {
            id == self.topic_id
        } else {
            name.0.as_str() == self.topic
        }
    }

    /// Whether a Fetch has something to return now (records, an error, a divergence): Kafka
    /// holds one that has not.
    fn has_answer(&self, req: &FetchRequest, version: i16) -> bool {
        self.fetch_answer(req, version).responses.iter().any(|t| {
            t.partitions.iter().any(|p| {
                p.error_code != 0
                    || p.diverging_epoch.epoch >= 0
                    || p.records.as_ref().is_some_and(|r| !r.is_empty())
            })
        })
    }

    fn fetch_answer(&self, req: &FetchRequest, version: i16) -> FetchResponse {
        let responses = req
            .topics
            .iter()
            .map(|t| {
                let ours = self.ours(&t.topic, *t.topic_id.as_bytes(), version);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let d = PartitionData::default().with_partition_index(p.partition);
                        if !ours || p.partition != 0 {
                            let code = if version >= 13 {
                                code::UNKNOWN_TOPIC_ID
                            } else {
                                code::UNKNOWN_TOPIC_OR_PARTITION
                            };
                            return d.with_error_code(code);
                        }
                        self.partition_data(d, p)
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(responses)
    }

    fn partition_data(&self, d: PartitionData, p: &FetchPartition) -> PartitionData {
        let d = d
            .with_high_watermark(self.end)
            .with_last_stable_offset(self.end)
            .with_log_start_offset(0);
        if let Some(code) = self.epoch_error(p.current_leader_epoch) {
            return d.with_error_code(code);
        }
        // Kafka's `Partition.readRecords`: a last fetched epoch the log no longer holds up to
        // the fetch offset is answered with where it ends, and no records.
        if p.last_fetched_epoch >= 0 {
            let (epoch, end) = self.epoch_end(p.last_fetched_epoch);
            if epoch < 0 || end < 0 {
                return d.with_error_code(code::OFFSET_OUT_OF_RANGE);
            }
            if epoch < p.last_fetched_epoch || end < p.fetch_offset {
                return d.with_diverging_epoch(
                    DivergingEpoch::default()
                        .with_epoch(epoch)
                        .with_end_offset(end),
                );
            }
        }
        if p.fetch_offset < 0 || p.fetch_offset > self.end {
            return d.with_error_code(code::OFFSET_OUT_OF_RANGE);
        }
        let mut records = BytesMut::new();
        for b in self.batches.iter().filter(|b| b.last >= p.fetch_offset) {
            records.extend_from_slice(&b.bytes);
        }
        d.with_records(Some(records.freeze()))
    }
}

/// A consumer hook that keeps the truncations it was told of, for the tests to read.
#[derive(Debug, Clone, Default)]
pub struct Told(Arc<Mutex<Vec<kcon::Truncation>>>);

impl Told {
    /// The truncations told so far, in order.
    pub fn truncations(&self) -> Vec<kcon::Truncation> {
        self.0.lock().unwrap().clone()
    }
}

impl kcon::ConsumerHooks for Told {
    fn on_truncation(&self, truncation: &kcon::Truncation) {
        self.0.lock().unwrap().push(truncation.clone());
    }
}

/// Waits (at most `within`) for `consumer`'s receiving call to fail as it must under
/// `auto.offset.reset=none` once `tp`'s log was truncated under `position`: LogTruncation (the
/// Java client's LogTruncationException), naming the partition, the position, where the logs
/// part (`diverges_at`) and the setting; nothing told as a truncation read on from (`told`, the
/// metrics), since nothing moved.
pub async fn expect_truncation_error(
    consumer: &mut kcon::Consumer,
    told: &Told,
    tp: &kcon::TopicPartition,
    position: i64,
    diverges_at: i64,
    within: Duration,
) {
    let e = tokio::time::timeout(within, consumer.recv())
        .await
        .expect("an answer within the patience")
        .expect_err("the truncation, as an error");
    assert_eq!(e.kind(), kcon::ErrorKind::LogTruncation, "{e}");
    assert_eq!(e.partitions(), std::slice::from_ref(tp));
    let m = e.to_string();
    for part in [
        format!("the log of {tp} was truncated under offset {position}"),
        format!("diverges from it at offset {diverges_at}"),
        "auto.offset.reset is none".to_owned(),
    ] {
        assert!(m.contains(&part), "{part:?} not in {m:?}");
    }
    assert_eq!(told.truncations(), Vec::<kcon::Truncation>::new());
    assert_eq!(consumer.metrics().truncations, 0);
}
