//! A model of a share group (KIP-932) over the simulated cluster's logs: the share group
//! coordinator ([`ShareGroupCoordinator`], answering ShareGroupHeartbeat) and the brokers'
//! side ([`ShareBrokers`]: one share-partition state per partition, share sessions per member
//! per broker, answering ShareFetch and ShareAcknowledge), written from the KIP and the
//! protocol's message definitions.
//!
//! The coordinator:
//! - A member joins with the id it generated and epoch 0, carrying its subscribed topic names;
//!   it heartbeats with its current epoch and leaves with -1. Another epoch is
//!   FENCED_MEMBER_EPOCH, an unknown member UNKNOWN_MEMBER_ID. A member not heard from for
//!   the session timeout is removed (its records stay locked until their locks expire).
//! - Every change of membership or subscription assigns anew and moves the group epoch; each
//!   member takes the group epoch with its next heartbeat's answer, which carries its
//!   assignment when it changed. Partitions are dealt round robin; when a topic's subscribers
//!   outnumber its partitions every member gets one, so a partition is shared by several
//!   members (members of a share group never wait for each other to give one up).
//!
//! The brokers (partition `p` is led by broker `1 + p % brokers`):
//! - Each record of a partition is available, acquired by one member until a lock deadline on
//!   the virtual clock, acknowledged (accepted) or archived (rejected, or released or expired
//!   at the delivery limit). A record's delivery count goes up each time it is acquired; it
//!   never goes down. Records become available again when released or when their lock
//!   expires, unless they were delivered `delivery_limit` times: then they are archived.
//! - A ShareFetch acquires up to its `MaxRecords` available records across its session's
//!   partitions (starting from a partition that rotates, so none starves) and answers each
//!   partition with the acquired ranges (runs of consecutive offsets at one delivery count)
//!   and one record batch spanning them, records between acquired ranges included, as a
//!   broker sends whole batches. A fetch that acquires nothing and carries no
//!   acknowledgement is held for its `MaxWaitMs` (see [`Fetched::hold`]).
//! - Share sessions are keyed by broker and member: epoch 0 opens one (replacing the member's
//!   session there, whose records stay acquired; acknowledgements on it are INVALID_REQUEST),
//!   each later request must carry the session's next epoch (INVALID_SHARE_SESSION_EPOCH
//!   otherwise, SHARE_SESSION_NOT_FOUND without a session), and -1 closes it, releasing the
//!   records the member holds on its partitions. Partitions join a session when listed and
//!   leave it when forgotten.
//! - Acknowledgements (gap, accept, release, reject) are validated per partition: every offset
//!   must be acquired by the acknowledging member, or the partition's acknowledgements are
//!   refused as a whole with INVALID_RECORD_STATE and nothing changes. Overlapping batches
//!   refuse the whole request (INVALID_REQUEST).
//! - What the machines must never send (acknowledgements opening a session, overlapping
//!   batches, a gap on an offset that holds a record: these logs have none) is answered as a
//!   broker would and also written down in [`ShareBrokers::violations`].
//!
//! Left out: leader changes, the share-partition start offset's persistence (the share
//! coordinator's state topic), `share.auto.offset.reset` (groups start at the log start),
//! renewing locks (KIP-1222), session cache limits and idle eviction, and releasing a
//! session's records when a connection closes (a test does that with
//! [`ShareBrokers::drop_sessions`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartitionData, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::{TopicId, TopicPartition};
use kcon_fetch::position::LeaderAndEpoch;
use kcon_fetch::share::{
    AcknowledgeType, AcknowledgementRange, CLOSE_EPOCH, ShareAcknowledge, ShareFetch,
    SharePartitionRequest,
};
use kcon_fetch::{BrokerInfo, MetadataView, PartitionInfo};
use kcon_group::consumer_group::{
    ConsumerGroupHeartbeatAnswer, LEAVE_EPOCH, ShareGroupHeartbeat, TopicIdPartitions,
};

use crate::cluster::{Cluster, LEADER_EPOCH};
use crate::code;

/// INVALID_RECORD_STATE: an acknowledgement of an offset the member does not hold.
pub const INVALID_RECORD_STATE: i16 = ResponseError::InvalidRecordState.code();
/// SHARE_SESSION_NOT_FOUND: a request for a share session the broker does not have.
pub const SHARE_SESSION_NOT_FOUND: i16 = ResponseError::ShareSessionNotFound.code();
/// INVALID_SHARE_SESSION_EPOCH: a request with another epoch than the session's next.
pub const INVALID_SHARE_SESSION_EPOCH: i16 = ResponseError::InvalidShareSessionEpoch.code();

/// The share group's and the brokers' settings.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `group.share.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.share.record.lock.duration.ms`.
    pub lock_duration: Duration,
    /// `group.share.delivery.count.limit`.
    pub delivery_limit: u16,
    /// How many brokers lead the partitions (partition `p` by broker `1 + p % brokers`).
    pub brokers: i32,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            heartbeat_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            lock_duration: Duration::from_secs(5),
            delivery_limit: 5,
            brokers: 2,
        }
    }
}

impl ShareConfig {
    /// The broker leading `tp`.
    pub fn leader(&self, tp: &TopicPartition) -> i32 {
        1 + tp.partition.rem_euclid(self.brokers.max(1))
    }
}

/// The share fetch machine's view of `topics`: leaders as [`ShareConfig::leader`] says, with
/// topic ids.
pub fn metadata_view(config: &ShareConfig, cluster: &Cluster, topics: &[String]) -> MetadataView {
    let mut view = MetadataView::default();
    for tp in cluster.partitions() {
        if !topics.contains(&tp.topic) {
            continue;
        }
        let info = PartitionInfo {
            leader: LeaderAndEpoch::new(config.leader(&tp), LEADER_EPOCH),
            topic_id: Some(Cluster::topic_id(&tp.topic)),
        };
        view.partitions.insert(tp, info);
    }
    for id in 1..=config.brokers {
        view.brokers.insert(
            id,
            BrokerInfo {
                id,
                fetch_version: 12,
                can_validate: false,
            },
        );
    }
    view
}

/// Every topic's name by id.
pub fn topic_names(cluster: &Cluster) -> BTreeMap<TopicId, String> {
    cluster
        .topic_names()
        .into_iter()
        .map(|t| (Cluster::topic_id(&t), t))
        .collect()
}

// ----- the coordinator -----

#[derive(Debug, Clone)]
struct GroupMember {
    epoch: i32,
    topics: BTreeSet<String>,
    assigned: BTreeSet<TopicPartition>,
    /// Whether the member's answers carried `assigned` since it last changed.
    told: bool,
    session_deadline: Instant,
}

/// What the coordinator did, for tests.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorStats {
    /// Heartbeats answered.
    pub heartbeats: u64,
    /// Joins (epoch 0).
    pub joins: u64,
    /// Leaves (epoch -1).
    pub leaves: u64,
    /// Members removed because their session ran out.
    pub expired: u64,
    /// Heartbeats fenced (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID).
    pub fenced: u64,
}

/// The share group coordinator of one group.
#[derive(Debug)]
pub struct ShareGroupCoordinator {
    config: ShareConfig,
    group_id: String,
    /// Every topic: its id and partition count.
    topics: BTreeMap<String, (TopicId, i32)>,
    members: BTreeMap<String, GroupMember>,
    group_epoch: i32,
    /// Errors to answer the next heartbeats with, in order, instead of handling them.
    injected: Vec<i16>,
    /// What it did.
    pub stats: CoordinatorStats,
}

impl ShareGroupCoordinator {
    /// The coordinator of `group_id` over the cluster's topics.
    pub fn new(config: ShareConfig, group_id: &str, cluster: &Cluster) -> Self {
        ShareGroupCoordinator {
            config,
            group_id: group_id.to_owned(),
            topics: cluster
                .topic_ids()
                .into_iter()
                .map(|(t, id, n)| (t, (id, n)))
                .collect(),
            members: BTreeMap::new(),
            group_epoch: 0,
            injected: Vec::new(),
            stats: CoordinatorStats::default(),
        }
    }

    /// The member ids in the group.
    pub fn members(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }

    /// The partitions assigned to `member` now.
    pub fn assignment(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.members
            .get(member)
            .map(|m| m.assigned.clone())
            .unwrap_or_default()
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The next heartbeat is answered with `error_code` instead of being handled.
    pub fn inject(&mut self, error_code: i16) {
        self.injected.push(error_code);
    }

    /// When the next session runs out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members.values().map(|m| m.session_deadline).min()
    }

    /// Removes the members whose session ran out.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.session_deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in expired {
            self.stats.expired += 1;
            self.members.remove(&id);
        }
        self.assign();
    }

    /// Answers a ShareGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        h: &ShareGroupHeartbeat,
    ) -> ConsumerGroupHeartbeatAnswer {
        self.stats.heartbeats += 1;
        if !self.injected.is_empty() {
            let error_code = self.injected.remove(0);
            return self.error(error_code);
        }
        if h.group_id != self.group_id || h.member_id.is_empty() {
            return self.error(code::INVALID_REQUEST);
        }
        match h.member_epoch {
            LEAVE_EPOCH => {
                self.stats.leaves += 1;
                if self.members.remove(&h.member_id).is_some() {
                    self.assign();
                }
                return self.answer(&h.member_id, LEAVE_EPOCH, None);
            }
            0 => {
                let Some(names) = h.subscribed_topic_names.as_ref().filter(|n| !n.is_empty())
                else {
                    return self.error(code::INVALID_REQUEST);
                };
                self.stats.joins += 1;
                // A member joining again (after a fence) starts over under the same id.
                self.members.insert(
                    h.member_id.clone(),
                    GroupMember {
                        epoch: 0,
                        topics: names.iter().cloned().collect(),
                        assigned: BTreeSet::new(),
                        told: false,
                        session_deadline: now + self.config.session_timeout,
                    },
                );
                self.assign();
            }
            epoch => {
                let Some(m) = self.members.get(&h.member_id) else {
                    self.stats.fenced += 1;
                    return self.error(code::UNKNOWN_MEMBER_ID);
                };
                if m.epoch != epoch {
                    self.stats.fenced += 1;
                    return self.error(code::FENCED_MEMBER_EPOCH);
                }
                if let Some(names) = &h.subscribed_topic_names {
                    let topics: BTreeSet<String> = names.iter().cloned().collect();
                    if topics != m.topics {
                        self.members.get_mut(&h.member_id).expect("a member").topics = topics;
                        self.assign();
                    }
                }
            }
        }
        let group_epoch = self.group_epoch;
        let m = self.members.get_mut(&h.member_id).expect("a member");
        m.session_deadline = now + self.config.session_timeout;
        m.epoch = group_epoch;
        let assignment = (!m.told).then(|| m.assigned.clone());
        m.told = true;
        let assignment = assignment.map(|a| self.ids(&a));
        self.answer(&h.member_id, group_epoch, assignment)
    }

    /// Deals every topic's partitions to its subscribers, round robin; when they outnumber
    /// the partitions, every subscriber gets one and partitions are shared.
    fn assign(&mut self) {
        self.group_epoch += 1;
        let mut target: BTreeMap<String, BTreeSet<TopicPartition>> = self
            .members
            .keys()
            .map(|id| (id.clone(), BTreeSet::new()))
            .collect();
        for (topic, (_, n)) in &self.topics {
            let subscribers: Vec<&String> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .map(|(id, _)| id)
                .collect();
            let (m, n) = (subscribers.len() as i32, *n);
            if m == 0 || n == 0 {
                continue;
            }
            for slot in 0..m.max(n) {
                let member = subscribers[(slot % m) as usize];
                let tp = TopicPartition::new(topic.clone(), slot % n);
                target.get_mut(member).expect("a member").insert(tp);
            }
        }
        for (id, assigned) in target {
            let m = self.members.get_mut(&id).expect("a member");
            if m.assigned != assigned {
                m.assigned = assigned;
                m.told = false;
            }
        }
    }

    fn ids(&self, partitions: &BTreeSet<TopicPartition>) -> TopicIdPartitions {
        let mut out = TopicIdPartitions::new();
        for tp in partitions {
            if let Some((id, _)) = self.topics.get(&tp.topic) {
                out.entry(*id).or_default().insert(tp.partition);
            }
        }
        out
    }

    fn answer(
        &self,
        member: &str,
        epoch: i32,
        assignment: Option<TopicIdPartitions>,
    ) -> ConsumerGroupHeartbeatAnswer {
        ConsumerGroupHeartbeatAnswer {
            error_code: code::NONE,
            error_message: None,
            member_id: Some(member.to_owned()),
            member_epoch: epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as i32,
            assignment,
        }
    }

    fn error(&self, error_code: i16) -> ConsumerGroupHeartbeatAnswer {
        ConsumerGroupHeartbeatAnswer {
            error_code,
            error_message: Some(format!("error {error_code} from the share group model")),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

// ----- the brokers -----

/// Where a record of a share partition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// To be handed out (again).
    Available,
    /// Handed out to `member`, locked for it until `until`.
    Acquired {
        /// The member holding it.
        member: String,
        /// When its lock expires.
        until: Instant,
    },
    /// Accepted: done for the group.
    Acknowledged,
    /// Rejected, or released (or expired) at the delivery limit: never handed out again.
    Archived,
}

#[derive(Debug, Clone)]
struct Rec {
    state: RecordState,
    delivery_count: u16,
    /// Accepts applied (at most one, or the model is wrong).
    accepts: u32,
}

/// One partition's share state: a record per offset of its log.
#[derive(Debug, Default)]
struct SharePartition {
    records: Vec<Rec>,
    /// The first offset not acknowledged or archived (the share-partition start offset):
    /// every record before it is done with.
    start: usize,
}

impl SharePartition {
    /// The records from the start offset on, with their offsets.
    fn open(&self) -> impl Iterator<Item = (usize, &Rec)> {
        self.records.iter().enumerate().skip(self.start)
    }

    /// Moves the start offset past the records done with.
    fn advance(&mut self) {
        while self
            .records
            .get(self.start)
            .is_some_and(|r| matches!(r.state, RecordState::Acknowledged | RecordState::Archived))
        {
            self.start += 1;
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: BTreeSet<TopicPartition>,
}

/// What the brokers did, for tests.
#[derive(Debug, Clone, Default)]
pub struct BrokerStats {
    /// ShareFetch requests answered.
    pub fetches: u64,
    /// ShareAcknowledge requests answered.
    pub acknowledges: u64,
    /// Record acquisitions.
    pub acquired: u64,
    /// Accepts applied.
    pub accepted: u64,
    /// Releases applied.
    pub released: u64,
    /// Rejects (and gaps) applied.
    pub rejected: u64,
    /// Records archived at the delivery limit (released or expired there).
    pub archived_at_limit: u64,
    /// Locks that expired.
    pub lock_expiries: u64,
    /// Sessions opened (epoch 0).
    pub sessions_opened: u64,
    /// Sessions closed (epoch -1).
    pub sessions_closed: u64,
    /// Partitions whose acknowledgements were refused with INVALID_RECORD_STATE.
    pub invalid_record_state: u64,
    /// Requests answered SHARE_SESSION_NOT_FOUND.
    pub session_not_found: u64,
    /// Requests answered INVALID_SHARE_SESSION_EPOCH.
    pub invalid_epoch: u64,
}

/// A ShareFetch's answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The answer.
    pub response: ShareFetchResponse,
    /// Nothing was acquired or acknowledged: a broker holds such an answer for the request's
    /// `MaxWaitMs`.
    pub hold: bool,
}

/// The brokers' share-group side: share partitions and share sessions, for one group.
#[derive(Debug)]
pub struct ShareBrokers {
    config: ShareConfig,
    group_id: String,
    partitions: BTreeMap<TopicPartition, SharePartition>,
    sessions: BTreeMap<(i32, String), Session>,
    /// Who acquired each record at each delivery count: (partition, offset, count).
    acquisitions: BTreeMap<(TopicPartition, i64, u16), String>,
    /// Sessions whose epoch a test moved (see [`ShareBrokers::skew_epoch`]).
    skewed: BTreeSet<(i32, String)>,
    /// Where the next fetch starts among its session's partitions.
    rotation: usize,
    /// What a client must never send, as it came.
    pub violations: Vec<String>,
    /// INVALID_SHARE_SESSION_EPOCH answers to sessions no test skewed.
    pub unexplained_epoch_errors: Vec<String>,
    /// What they did.
    pub stats: BrokerStats,
}

impl ShareBrokers {
    /// The brokers of `config`, for `group_id`.
    pub fn new(config: ShareConfig, group_id: &str) -> Self {
        ShareBrokers {
            config,
            group_id: group_id.to_owned(),
            partitions: BTreeMap::new(),
            sessions: BTreeMap::new(),
            acquisitions: BTreeMap::new(),
            skewed: BTreeSet::new(),
            rotation: 0,
            violations: Vec::new(),
            unexplained_epoch_errors: Vec::new(),
            stats: BrokerStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ShareConfig {
        &self.config
    }

    // ----- queries -----

    /// Where record `offset` of `tp` stands (available when never seen).
    pub fn state(&self, tp: &TopicPartition, offset: i64) -> RecordState {
        self.rec(tp, offset)
            .map_or(RecordState::Available, |r| r.state.clone())
    }

    /// Record `offset` of `tp`'s delivery count.
    pub fn delivery_count(&self, tp: &TopicPartition, offset: i64) -> u16 {
        self.rec(tp, offset).map_or(0, |r| r.delivery_count)
    }

    /// How many accepts were applied to record `offset` of `tp`.
    pub fn accepts(&self, tp: &TopicPartition, offset: i64) -> u32 {
        self.rec(tp, offset).map_or(0, |r| r.accepts)
    }

    /// The member that acquired record `offset` of `tp` at delivery count `count`.
    pub fn acquired_by(&self, tp: &TopicPartition, offset: i64, count: u16) -> Option<&str> {
        self.acquisitions
            .get(&(tp.clone(), offset, count))
            .map(String::as_str)
    }

    /// The share sessions open: (broker, member) to the epoch its next request must carry.
    pub fn sessions(&self) -> BTreeMap<(i32, String), i32> {
        self.sessions
            .iter()
            .map(|(k, s)| (k.clone(), s.next_epoch))
            .collect()
    }

    /// The records of `tp` acquired by `member` now.
    pub fn held_by(&self, tp: &TopicPartition, member: &str) -> Vec<i64> {
        self.partitions.get(tp).map_or_else(Vec::new, |p| {
            p.records
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member)
                })
                .map(|(o, _)| o as i64)
                .collect()
        })
    }

    /// Every record of `cluster` that is neither acknowledged nor archived.
    pub fn unsettled(&self, cluster: &Cluster) -> Vec<(TopicPartition, i64, RecordState)> {
        let mut out = Vec::new();
        for tp in cluster.partitions() {
            let from = self.partitions.get(&tp).map_or(0, |p| p.start as i64);
            for o in from..cluster.end(&tp) {
                let s = self.state(&tp, o);
                if !matches!(s, RecordState::Acknowledged | RecordState::Archived) {
                    out.push((tp.clone(), o, s));
                }
            }
        }
        out
    }

    /// The earliest lock deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(|p| p.open().map(|(_, r)| r))
            .filter_map(|r| match r.state {
                RecordState::Acquired { until, .. } => Some(until),
                _ => None,
            })
            .min()
    }

    /// The model's own promises, checked: an acquired record's lock is ahead of `now` (once
    /// [`tick`](Self::tick) ran), delivery counts within the limit, an available record below
    /// it, and accepts only on acknowledged records, once.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        for (tp, p) in &self.partitions {
            for (o, r) in p.open() {
                let fail = |what: &str| Err(format!("{tp}@{o}: {what}: {r:?}"));
                if r.delivery_count > self.config.delivery_limit {
                    return fail("delivered past the limit");
                }
                match &r.state {
                    RecordState::Acquired { until, .. } if *until <= now => {
                        return fail("a lock past its deadline");
                    }
                    RecordState::Acquired { .. } if r.delivery_count == 0 => {
                        return fail("acquired without a delivery");
                    }
                    RecordState::Available if r.delivery_count >= self.config.delivery_limit => {
                        return fail("available at the delivery limit");
                    }
                    RecordState::Acknowledged if r.accepts != 1 => {
                        return fail("acknowledged without exactly one accept");
                    }
                    s if !matches!(s, RecordState::Acknowledged) && r.accepts != 0 => {
                        return fail("accepted but not acknowledged");
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    // ----- time and faults -----

    /// Locks whose deadline passed expire: their records are available again, or archived at
    /// the delivery limit.
    pub fn tick(&mut self, now: Instant) {
        let limit = self.config.delivery_limit;
        for p in self.partitions.values_mut() {
            let start = p.start;
            for r in &mut p.records[start..] {
                if matches!(r.state, RecordState::Acquired { until, .. } if until <= now) {
                    self.stats.lock_expiries += 1;
                    release(r, limit, &mut self.stats);
                }
            }
            p.advance();
        }
    }

    /// Drops every share session of `member` (on every broker), releasing the records it
    /// holds on their partitions: what a broker does when the member's connection closes.
    pub fn drop_sessions(&mut self, member: &str) {
        let keys: Vec<(i32, String)> = self
            .sessions
            .keys()
            .filter(|(_, m)| m == member)
            .cloned()
            .collect();
        for key in keys {
            self.end_session(&key);
        }
    }

    /// Moves `member`'s session on `broker` one epoch on, as if a request had come that its
    /// client never sent: its next request is INVALID_SHARE_SESSION_EPOCH. False without a
    /// session.
    pub fn skew_epoch(&mut self, broker: i32, member: &str) -> bool {
        let key = (broker, member.to_owned());
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        s.next_epoch = next_epoch(s.next_epoch);
        self.skewed.insert(key);
        true
    }

    // ----- requests -----

    /// Answers a ShareFetch sent to `broker`, over `cluster`'s logs.
    pub fn fetch(
        &mut self,
        now: Instant,
        broker: i32,
        f: &ShareFetch,
        cluster: &Cluster,
    ) -> Fetched {
        self.tick(now);
        self.stats.fetches += 1;
        let key = (broker, f.member_id.clone());
        let acks: Vec<&SharePartitionRequest> = f
            .partitions
            .iter()
            .filter(|p| !p.acknowledgements.is_empty())
            .collect();
        if let Some(e) = self.check_request(&f.group_id, &f.member_id, &f.partitions) {
            return fetch_error(e);
        }
        match f.epoch {
            0 => {
                if !acks.is_empty() {
                    self.violations
                        .push(format!("acknowledgements opening a session: {f:?}"));
                    return fetch_error(code::INVALID_REQUEST);
                }
                self.stats.sessions_opened += 1;
                self.skewed.remove(&key);
                self.sessions.insert(
                    key.clone(),
                    Session {
                        next_epoch: 1,
                        partitions: BTreeSet::new(),
                    },
                );
            }
            CLOSE_EPOCH => {}
            epoch => {
                if let Err(e) = self.check_epoch(&key, epoch) {
                    return fetch_error(e);
                }
            }
        }
        let mut answers: BTreeMap<TopicPartition, PartitionData> = BTreeMap::new();
        // Acknowledgements first: records released here may be acquired again below.
        for p in &acks {
            let Some(tp) = self.resolve(p, cluster) else {
                continue;
            };
            let error = self.acknowledge_partition(now, broker, &f.member_id, &tp, p, cluster);
            answers
                .entry(tp.clone())
                .or_insert_with(|| part(&tp))
                .acknowledge_error_code = error;
        }
        if f.epoch == CLOSE_EPOCH {
            let closed = self.sessions.contains_key(&key);
            self.end_session(&key);
            let mut r = response(&answers);
            if !closed {
                self.stats.session_not_found += 1;
                r.error_code = SHARE_SESSION_NOT_FOUND;
            }
            return Fetched {
                response: r,
                hold: false,
            };
        }
        // The session's partitions: listed ones join, forgotten ones leave.
        let mut session = self.sessions[&key].partitions.clone();
        for (tp, id) in &f.forgotten {
            if *id == Cluster::topic_id(&tp.topic) {
                session.remove(tp);
            }
        }
        for p in &f.partitions {
            let tp = match self.resolve(p, cluster) {
                Some(tp) => tp,
                None => {
                    let mut d = part(&p.partition);
                    d.error_code = code::UNKNOWN_TOPIC_ID;
                    answers.insert(p.partition.clone(), d);
                    continue;
                }
            };
            if self.config.leader(&tp) != broker {
                answers
                    .entry(tp.clone())
                    .or_insert_with(|| part(&tp))
                    .error_code = code::NOT_LEADER_OR_FOLLOWER;
                continue;
            }
            session.insert(tp.clone());
            if f.epoch == 0 {
                answers.entry(tp.clone()).or_insert_with(|| part(&tp));
            }
        }
        self.sessions.get_mut(&key).expect("the session").partitions = session.clone();
        // Acquire up to MaxRecords across the session, starting where the last fetch left.
        let mut budget = i64::from(f.max_records.max(1));
        let order: Vec<TopicPartition> = session.iter().cloned().collect();
        let mut acquired_any = false;
        if !order.is_empty() {
            self.rotation = self.rotation.wrapping_add(1);
            let start = self.rotation % order.len();
            for i in 0..order.len() {
                if budget <= 0 {
                    break;
                }
                let tp = &order[(start + i) % order.len()];
                let ranges = self.acquire(now, &f.member_id, tp, cluster, &mut budget);
                if ranges.is_empty() {
                    continue;
                }
                acquired_any = true;
                let d = answers.entry(tp.clone()).or_insert_with(|| part(tp));
                let (from, to) = (ranges[0].0, ranges[ranges.len() - 1].1);
                d.records = Some(batch(tp, from, to));
                d.acquired_records = ranges
                    .into_iter()
                    .map(|(first, last, count)| {
                        let mut a = AcquiredRecords::default();
                        a.first_offset = first;
                        a.last_offset = last;
                        a.delivery_count = count as i16;
                        a
                    })
                    .collect();
            }
        }
        let mut r = response(&answers);
        r.acquisition_lock_timeout_ms = self.config.lock_duration.as_millis() as i32;
        Fetched {
            response: r,
            hold: !acquired_any && acks.is_empty() && f.epoch != 0,
        }
    }

    /// Answers a ShareAcknowledge sent to `broker`.
    pub fn acknowledge(
        &mut self,
        now: Instant,
        broker: i32,
        a: &ShareAcknowledge,
        cluster: &Cluster,
    ) -> ShareAcknowledgeResponse {
        self.tick(now);
        self.stats.acknowledges += 1;
        let key = (broker, a.member_id.clone());
        if let Some(e) = self.check_request(&a.group_id, &a.member_id, &a.partitions) {
            return ack_error(e);
        }
        match a.epoch {
            0 => {
                self.violations
                    .push(format!("a ShareAcknowledge at epoch 0: {a:?}"));
                return ack_error(INVALID_SHARE_SESSION_EPOCH);
            }
            CLOSE_EPOCH => {
                if !self.sessions.contains_key(&key) {
                    self.stats.session_not_found += 1;
                    return ack_error(SHARE_SESSION_NOT_FOUND);
                }
            }
            epoch => {
                if let Err(e) = self.check_epoch(&key, epoch) {
                    return ack_error(e);
                }
            }
        }
        let mut by_topic: BTreeMap<TopicId, Vec<AckPartitionData>> = BTreeMap::new();
        for p in &a.partitions {
            let error = match self.resolve(p, cluster) {
                None => code::UNKNOWN_TOPIC_ID,
                Some(tp) => self.acknowledge_partition(now, broker, &a.member_id, &tp, p, cluster),
            };
            let mut d = AckPartitionData::default();
            d.partition_index = p.partition.partition;
            d.error_code = error;
            by_topic.entry(p.topic_id).or_default().push(d);
        }
        if a.epoch == CLOSE_EPOCH {
            self.end_session(&key);
        }
        let mut r = ShareAcknowledgeResponse::default();
        r.responses = by_topic
            .into_iter()
            .map(|(id, partitions)| {
                let mut t = ShareAcknowledgeTopicResponse::default();
                t.topic_id = uuid(id);
                t.partitions = partitions;
                t
            })
            .collect();
        r
    }

    // ----- the rules -----

    /// Request-level checks common to both requests; `Some(error)` refuses it.
    fn check_request(
        &mut self,
        group_id: &str,
        member_id: &str,
        partitions: &[SharePartitionRequest],
    ) -> Option<i16> {
        if group_id != self.group_id || member_id.is_empty() {
            self.violations
                .push(format!("group {group_id:?} member {member_id:?}"));
            return Some(code::INVALID_REQUEST);
        }
        for p in partitions {
            let mut next = i64::MIN;
            let mut sorted: Vec<&AcknowledgementRange> = p.acknowledgements.iter().collect();
            sorted.sort_by_key(|r| r.first);
            for r in sorted {
                if r.first > r.last || r.first < next || r.first < 0 {
                    self.violations.push(format!(
                        "acknowledgement batches inverted or overlapping: {p:?}"
                    ));
                    return Some(code::INVALID_REQUEST);
                }
                next = r.last.saturating_add(1);
            }
        }
        None
    }

    /// Checks a later request's epoch against its session and moves the session on.
    fn check_epoch(&mut self, key: &(i32, String), epoch: i32) -> Result<(), i16> {
        let Some(s) = self.sessions.get_mut(key) else {
            self.stats.session_not_found += 1;
            return Err(SHARE_SESSION_NOT_FOUND);
        };
        if s.next_epoch != epoch {
            self.stats.invalid_epoch += 1;
            if !self.skewed.contains(key) {
                self.unexplained_epoch_errors.push(format!(
                    "broker {} member {}: epoch {epoch}, expected {}",
                    key.0, key.1, s.next_epoch
                ));
            }
            return Err(INVALID_SHARE_SESSION_EPOCH);
        }
        s.next_epoch = next_epoch(s.next_epoch);
        Ok(())
    }

    /// The partition `p` names, by its topic id; a name that disagrees is a violation.
    fn resolve(&mut self, p: &SharePartitionRequest, cluster: &Cluster) -> Option<TopicPartition> {
        let name = cluster
            .topic_names()
            .into_iter()
            .find(|t| Cluster::topic_id(t) == p.topic_id)?;
        if name != p.partition.topic {
            self.violations
                .push(format!("topic id of {name} sent for {}", p.partition));
        }
        let tp = TopicPartition::new(name, p.partition.partition);
        cluster.partitions().contains(&tp).then_some(tp)
    }

    /// Applies one partition's acknowledgements from `member`: all or none. Returns the
    /// partition's acknowledgement error code.
    fn acknowledge_partition(
        &mut self,
        now: Instant,
        broker: i32,
        member: &str,
        tp: &TopicPartition,
        p: &SharePartitionRequest,
        cluster: &Cluster,
    ) -> i16 {
        if self.config.leader(tp) != broker {
            return code::NOT_LEADER_OR_FOLLOWER;
        }
        self.grow(tp, cluster);
        let held = |r: &Rec| matches!(&r.state, RecordState::Acquired { member: m, until } if m == member && *until > now);
        let records = &self.partitions[tp].records;
        for range in &p.acknowledgements {
            for o in range.first..=range.last {
                if !records.get(o as usize).is_some_and(held) {
                    self.stats.invalid_record_state += 1;
                    return INVALID_RECORD_STATE;
                }
            }
            if range.kind == AcknowledgeType::Gap {
                self.violations
                    .push(format!("a gap acknowledged over records: {tp} {range:?}"));
            }
        }
        let limit = self.config.delivery_limit;
        let partition = self.partitions.get_mut(tp).expect("grown");
        let records = &mut partition.records;
        for range in &p.acknowledgements {
            for o in range.first..=range.last {
                let r = &mut records[o as usize];
                match range.kind {
                    AcknowledgeType::Accept => {
                        self.stats.accepted += 1;
                        r.accepts += 1;
                        r.state = RecordState::Acknowledged;
                    }
                    AcknowledgeType::Release => {
                        self.stats.released += 1;
                        release(r, limit, &mut self.stats);
                    }
                    AcknowledgeType::Reject | AcknowledgeType::Gap => {
                        self.stats.rejected += 1;
                        r.state = RecordState::Archived;
                    }
                    AcknowledgeType::Renew => {
                        // KIP-1222: the lock starts over; the record stays the member's.
                        r.state = RecordState::Acquired {
                            member: member.to_owned(),
                            until: now + self.config.lock_duration,
                        };
                    }
                }
            }
        }
        partition.advance();
        code::NONE
    }

    /// Acquires available records of `tp` for `member`, at most `budget`, as ranges of
    /// consecutive offsets at one delivery count.
    fn acquire(
        &mut self,
        now: Instant,
        member: &str,
        tp: &TopicPartition,
        cluster: &Cluster,
        budget: &mut i64,
    ) -> Vec<(i64, i64, u16)> {
        self.grow(tp, cluster);
        let until = now + self.config.lock_duration;
        let partition = self.partitions.get_mut(tp).expect("grown");
        let start = partition.start;
        let mut ranges: Vec<(i64, i64, u16)> = Vec::new();
        for (o, r) in partition.records.iter_mut().enumerate().skip(start) {
            if *budget <= 0 {
                break;
            }
            if r.state != RecordState::Available {
                continue;
            }
            let o = o as i64;
            *budget -= 1;
            r.delivery_count += 1;
            r.state = RecordState::Acquired {
                member: member.to_owned(),
                until,
            };
            self.stats.acquired += 1;
            self.acquisitions
                .insert((tp.clone(), o, r.delivery_count), member.to_owned());
            match ranges.last_mut() {
                Some((_, last, count)) if *last + 1 == o && *count == r.delivery_count => {
                    *last = o;
                }
                _ => ranges.push((o, o, r.delivery_count)),
            }
        }
        ranges
    }

    /// Ends a session, releasing what its member holds on the session's partitions.
    fn end_session(&mut self, key: &(i32, String)) {
        let Some(s) = self.sessions.remove(key) else {
            return;
        };
        self.stats.sessions_closed += 1;
        self.skewed.remove(key);
        let limit = self.config.delivery_limit;
        for tp in &s.partitions {
            let Some(p) = self.partitions.get_mut(tp) else {
                continue;
            };
            let start = p.start;
            for r in &mut p.records[start..] {
                if matches!(&r.state, RecordState::Acquired { member, .. } if *member == key.1) {
                    release(r, limit, &mut self.stats);
                }
            }
            p.advance();
        }
    }

    /// Extends `tp`'s states to its log's end.
    fn grow(&mut self, tp: &TopicPartition, cluster: &Cluster) {
        let end = cluster.end(tp).max(0) as usize;
        let p = self.partitions.entry(tp.clone()).or_default();
        while p.records.len() < end {
            p.records.push(Rec {
                state: RecordState::Available,
                delivery_count: 0,
                accepts: 0,
            });
        }
    }

    fn rec(&self, tp: &TopicPartition, offset: i64) -> Option<&Rec> {
        self.partitions
            .get(tp)?
            .records
            .get(usize::try_from(offset).ok()?)
    }
}

/// A released (or expired) record: available again, or archived at the delivery limit.
fn release(r: &mut Rec, limit: u16, stats: &mut BrokerStats) {
    if r.delivery_count >= limit {
        stats.archived_at_limit += 1;
        r.state = RecordState::Archived;
    } else {
        r.state = RecordState::Available;
    }
}

/// The epoch after `epoch`, wrapping to 1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

fn part(tp: &TopicPartition) -> PartitionData {
    let mut d = PartitionData::default();
    d.partition_index = tp.partition;
    d.current_leader.leader_id = -1;
    d.current_leader.leader_epoch = -1;
    d
}

fn response(answers: &BTreeMap<TopicPartition, PartitionData>) -> ShareFetchResponse {
    let mut by_topic: BTreeMap<&str, Vec<PartitionData>> = BTreeMap::new();
    for (tp, d) in answers {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(d.clone());
    }
    let mut r = ShareFetchResponse::default();
    r.responses = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = ShareFetchableTopicResponse::default();
            t.topic_id = uuid(Cluster::topic_id(topic));
            t.partitions = partitions;
            t
        })
        .collect();
    r
}

fn fetch_error(error_code: i16) -> Fetched {
    let mut r = ShareFetchResponse::default();
    r.error_code = error_code;
    Fetched {
        response: r,
        hold: false,
    }
}

fn ack_error(error_code: i16) -> ShareAcknowledgeResponse {
    let mut r = ShareAcknowledgeResponse::default();
    r.error_code = error_code;
    r
}

/// A topic id as the protocol's uuid fields hold it.
fn uuid<U: std::str::FromStr + Default>(id: TopicId) -> U {
    let text: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    text.parse().unwrap_or_default()
}

/// One batch holding offsets `from..=to` of `tp`; each record's value names it
/// (`topic-partition@offset`), as the cluster's own fetch answers do.
fn batch(tp: &TopicPartition, from: i64, to: i64) -> Bytes {
    let mut b = RecordBatchBuilder::new(from).partition_leader_epoch(LEADER_EPOCH);
    for o in from..=to {
        let value = format!("{tp}@{o}");
        b.record(0, None, Some(value.as_bytes()));
    }
    b.build().expect("a batch the builder can encode")
}
