//! The share consumer against scripted brokers, for the share-group faults no broker here can be
//! made to produce on cue (Apache Kafka 4.4 and librdkafka's mock cluster serve share groups,
//! `share_kafka.rs`, `share_mock.rs`, but neither moves a leader in the middle of a share
//! session or refuses one when told): a partition's leader moving, named in the
//! old leader's NOT_LEADER_OR_FOLLOWER before any metadata says so (KIP-951); share sessions
//! refused (SHARE_SESSION_LIMIT_REACHED) and forgotten (SHARE_SESSION_NOT_FOUND); an
//! acknowledgement refused (INVALID_RECORD_STATE); a full group (GROUP_MAX_SIZE_REACHED);
//! ShareFetch v2's record limit (KIP-1206; also on Apache Kafka 4.4), and a broker that speaks
//! v1 only. Each asserts the exact records handed out
//! and what the brokers received.
//!
//! Two brokers share one model of the share group and its partition: broker 1, the group's
//! coordinator, answers ShareGroupHeartbeat, assigning the one partition to the one member;
//! the partition's leader answers ShareFetch and ShareAcknowledge with share sessions (epochs
//! checked), records acquired at most five at a time with their delivery counts, and
//! acknowledgements applied to each record's state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kcon::Record;
use kcon::share::{AcknowledgeType, AcknowledgementOutcome, ShareConsumer};
use kcon_codec::kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, NodeEndpoint, PartitionData, ShareFetchableTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_group_heartbeat_response::{
    Assignment, TopicPartitions,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, ShareAcknowledgeResponse, ShareFetchResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_codec::share_v2::{
    ShareAcknowledgeRequestV2, ShareAcknowledgeResponseV2, ShareFetchRequestV2,
    ShareFetchResponseV2,
};
use kcon_scripted::{
    Answer, Received, Script, ScriptedBroker, coordinator_answer, kcon_versions_of, metadata,
};
use tokio::time::timeout;

const TOPIC: &str = "jobs";
const GROUP: &str = "workers";
/// Records in the partition.
const RECORDS: i64 = 10;
/// Records a ShareFetch acquires at most.
const PER_FETCH: i64 = 5;
/// How long records may take to come.
const PATIENCE: Duration = Duration::from_secs(10);

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
const SHARE_SESSION_LIMIT_REACHED: i16 = 133;
const GROUP_MAX_SIZE_REACHED: i16 = 81;

/// The APIs the brokers offer, at kcon's versions.
const ANSWERED: [ApiKey; 6] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::ShareGroupHeartbeat,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// The topic's id: every byte 0x42 (the uuid type is reachable only through parsing).
fn topic_id<U: std::str::FromStr>() -> U
where
    U::Err: std::fmt::Debug,
{
    "42".repeat(16).parse().unwrap()
}

/// A record's state in the share partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Available,
    Acquired,
    Acknowledged(AcknowledgeType),
}

/// One ShareFetch or ShareAcknowledge a broker received.
#[derive(Debug, Clone)]
struct Seen {
    broker: i32,
    api: ApiKey,
    epoch: i32,
    at: Instant,
    /// Its acknowledgement batches: (first, last, type).
    acks: Vec<(i64, i64, i8)>,
    /// The answer's error code (the request's, else the partition's).
    error: i16,
    /// The version it came at.
    version: i16,
    /// A ShareFetch's acquire mode and record limit.
    acquire: (i8, i32),
    /// A ShareAcknowledge's `IsRenewAck`.
    renew: bool,
}

/// The share group and its partition, as both brokers see them.
struct Model {
    addrs: BTreeMap<i32, SocketAddr>,
    /// The partition's leader and leader epoch.
    leader: (i32, i32),
    /// What Metadata answers name as the leader (behind `leader` while a move is not told).
    metadata_leader: (i32, i32),
    states: Vec<State>,
    delivery_counts: Vec<i16>,
    /// Each broker's open session: the epoch it expects next, and whether the partition is in
    /// it.
    sessions: BTreeMap<i32, (i32, bool)>,
    /// Session-opening ShareFetches to refuse with SHARE_SESSION_LIMIT_REACHED.
    refuse_sessions: usize,
    /// Acknowledgements to refuse with INVALID_RECORD_STATE (the next request carrying any).
    refuse_acks: bool,
    /// Whether a NOT_LEADER_OR_FOLLOWER names the new leader.
    name_leader: bool,
    /// The error code a joining heartbeat is answered with, if any.
    join_error: Option<i16>,
    seen: Vec<Seen>,
}

impl Model {
    fn new() -> Model {
        Model {
            addrs: BTreeMap::new(),
            leader: (1, 0),
            metadata_leader: (1, 0),
            states: vec![State::Available; RECORDS as usize],
            delivery_counts: vec![0; RECORDS as usize],
            sessions: BTreeMap::new(),
            refuse_sessions: 0,
            refuse_acks: false,
            name_leader: true,
            join_error: None,
            seen: Vec::new(),
        }
    }

    /// The states of the records, by offset.
    fn states(&self) -> Vec<State> {
        self.states.clone()
    }

    /// Checks a request's session epoch on `broker`: `None` when it may go on, else the error.
    fn session(&mut self, broker: i32, epoch: i32, opens: bool) -> Option<i16> {
        match (epoch, self.sessions.get(&broker).copied()) {
            (0, _) if opens => {
                if self.refuse_sessions > 0 {
                    self.refuse_sessions -= 1;
                    return Some(SHARE_SESSION_LIMIT_REACHED);
                }
                self.sessions.insert(broker, (1, false));
                None
            }
            (-1, Some(_)) => {
                self.sessions.remove(&broker);
                None
            }
            (_, None) => Some(SHARE_SESSION_NOT_FOUND),
            (e, Some((expected, listed))) if e == expected => {
                self.sessions.insert(broker, (expected + 1, listed));
                None
            }
            _ => Some(INVALID_SHARE_SESSION_EPOCH),
        }
    }

    /// Applies acknowledgement batches from a member; the error code refusing them, or 0.
    fn acknowledge(&mut self, batches: &[(i64, i64, i8)]) -> i16 {
        if batches.is_empty() {
            return 0;
        }
        if self.refuse_acks {
            self.refuse_acks = false;
            return INVALID_RECORD_STATE;
        }
        for &(first, last, kind) in batches {
            for o in first..=last {
                let Some(state) = self.states.get_mut(o as usize) else {
                    return INVALID_RECORD_STATE;
                };
                if *state != State::Acquired {
                    return INVALID_RECORD_STATE;
                }
                *state = match kind {
                    1 => State::Acknowledged(AcknowledgeType::Accept),
                    2 => State::Available,
                    3 => State::Acknowledged(AcknowledgeType::Reject),
                    // Renewed: the lock starts over, the record stays acquired.
                    4 => State::Acquired,
                    _ => State::Acknowledged(AcknowledgeType::Gap),
                };
            }
        }
        0
    }

    /// Acquires the next available records: their batch and acquired ranges.
    fn acquire(&mut self, limit: usize) -> Option<(bytes::Bytes, Vec<AcquiredRecords>)> {
        let offsets: Vec<i64> = (0..RECORDS)
            .filter(|&o| self.states[o as usize] == State::Available)
            .take(limit)
            .collect();
        if offsets.is_empty() {
            return None;
        }
        let mut bytes = BytesMut::new();
        let mut ranges = Vec::new();
        for &o in &offsets {
            self.states[o as usize] = State::Acquired;
            self.delivery_counts[o as usize] += 1;
            let mut b = RecordBatchBuilder::new(o);
            b.record(1_000 + o, None, Some(format!("job-{o}").as_bytes()));
            bytes.extend_from_slice(&b.build().unwrap());
            let mut a = AcquiredRecords::default();
            a.first_offset = o;
            a.last_offset = o;
            a.delivery_count = self.delivery_counts[o as usize];
            ranges.push(a);
        }
        Some((bytes.freeze(), ranges))
    }
}

/// One broker of the two, answering from the shared model.
struct Node {
    id: i32,
    model: Arc<Mutex<Model>>,
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|e| e.into_inner())
}

fn batches_of(batches: impl Iterator<Item = (i64, i64, Vec<i8>)>) -> Vec<(i64, i64, i8)> {
    batches
        .map(|(first, last, types)| (first, last, types.first().copied().unwrap_or(0)))
        .collect()
}

impl Node {
    /// `req`, of `api` at `epoch` carrying `acks`, as received now (its error still 0).
    fn seen(&self, req: &Received, api: ApiKey, epoch: i32, acks: &[(i64, i64, i8)]) -> Seen {
        Seen {
            broker: self.id,
            api,
            epoch,
            at: Instant::now(),
            acks: acks.to_vec(),
            error: 0,
            version: req.version(),
            acquire: (0, 0),
            renew: false,
        }
    }
}

impl Script for Node {
    fn answer(&mut self, req: &Received) -> Answer {
        let mut m = lock(&self.model);
        match req.api() {
            Some(ApiKey::Metadata) => {
                let _ = req.decode::<MetadataRequest>();
                let brokers: Vec<(i32, SocketAddr)> =
                    m.addrs.iter().map(|(id, a)| (*id, *a)).collect();
                let (leader, epoch) = m.metadata_leader;
                let mut answer = metadata(&brokers, &[(TOPIC, &[(0, leader, epoch)])]);
                answer.topics[0].topic_id = topic_id();
                req.answer::<MetadataRequest>(&answer)
            }
            Some(ApiKey::FindCoordinator) => coordinator_answer(req, 1, m.addrs[&1]),
            Some(ApiKey::ShareGroupHeartbeat) => {
                let r = req.decode::<ShareGroupHeartbeatRequest>();
                let answer = ShareGroupHeartbeatResponse::default()
                    .with_member_id(Some(r.member_id.clone()))
                    .with_heartbeat_interval_ms(200);
                let answer = match (r.member_epoch, m.join_error) {
                    (0, Some(code)) => answer
                        .with_error_code(code)
                        .with_error_message(Some(s("the group has reached its maximum size"))),
                    (-1, _) => answer.with_member_epoch(-1),
                    (0, _) => answer.with_member_epoch(1).with_assignment(Some(
                        Assignment::default().with_topic_partitions(vec![
                            TopicPartitions::default()
                                .with_topic_id(topic_id())
                                .with_partitions(vec![0]),
                        ]),
                    )),
                    (e, _) => answer.with_member_epoch(e),
                };
                req.answer::<ShareGroupHeartbeatRequest>(&answer)
            }
            Some(ApiKey::ShareFetch) => {
                let v2 = req.decode::<ShareFetchRequestV2>();
                let r = &v2.body;
                let acks = batches_of(r.topics.iter().flat_map(|t| &t.partitions).flat_map(|p| {
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                }));
                let mut seen = self.seen(req, ApiKey::ShareFetch, r.share_session_epoch, &acks);
                seen.acquire = (v2.share_acquire_mode, r.max_records);
                let limit = if v2.share_acquire_mode == 1 {
                    r.max_records.max(1) as usize
                } else {
                    PER_FETCH as usize
                };
                let mut answer = ShareFetchResponse::default();
                answer.acquisition_lock_timeout_ms = 30_000;
                if let Some(code) = m.session(self.id, r.share_session_epoch, true) {
                    answer.error_code = code;
                    seen.error = code;
                    m.seen.push(seen);
                    return req.answer::<ShareFetchRequestV2>(&ShareFetchResponseV2(answer));
                }
                // The session's partitions: those listed join, those forgotten leave.
                let listed = r.topics.iter().any(|t| !t.partitions.is_empty());
                let forgotten = r
                    .forgotten_topics_data
                    .iter()
                    .any(|t| !t.partitions.is_empty());
                let session = m
                    .sessions
                    .get_mut(&self.id)
                    .expect("a session, checked above");
                session.1 = (session.1 || listed) && !forgotten;
                let in_session = session.1;
                let mut p = PartitionData::default();
                if m.leader.0 != self.id {
                    if in_session || !acks.is_empty() {
                        // No longer the leader: name the new one and where it listens.
                        p.error_code = NOT_LEADER_OR_FOLLOWER;
                        if !acks.is_empty() {
                            p.acknowledge_error_code = NOT_LEADER_OR_FOLLOWER;
                        }
                        if m.name_leader {
                            p.current_leader.leader_id = m.leader.0;
                            p.current_leader.leader_epoch = m.leader.1;
                            let addr = m.addrs[&m.leader.0];
                            let mut node = NodeEndpoint::default();
                            node.node_id = BrokerId(m.leader.0);
                            node.host = s(&addr.ip().to_string());
                            node.port = i32::from(addr.port());
                            answer.node_endpoints = vec![node];
                        }
                        seen.error = NOT_LEADER_OR_FOLLOWER;
                    }
                } else {
                    p.acknowledge_error_code = m.acknowledge(&acks);
                    seen.error = p.acknowledge_error_code;
                    if in_session && let Some((records, acquired)) = m.acquire(limit) {
                        p.records = Some(records);
                        p.acquired_records = acquired;
                    }
                }
                let empty = p.acquired_records.is_empty() && p.error_code == 0;
                if in_session || !acks.is_empty() {
                    let mut t = ShareFetchableTopicResponse::default();
                    t.topic_id = topic_id();
                    t.partitions = vec![p];
                    answer.responses = vec![t];
                }
                m.seen.push(seen);
                let frame = req.frame::<ShareFetchRequestV2>(&ShareFetchResponseV2(answer));
                if empty {
                    // Nothing to acquire: held a while, as a broker holds a fetch.
                    Answer::Delayed(Duration::from_millis(50), frame)
                } else {
                    Answer::Frame(frame)
                }
            }
            Some(ApiKey::ShareAcknowledge) => {
                let v2 = req.decode::<ShareAcknowledgeRequestV2>();
                let r = v2.body;
                let acks = batches_of(r.topics.iter().flat_map(|t| &t.partitions).flat_map(|p| {
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                }));
                let mut seen =
                    self.seen(req, ApiKey::ShareAcknowledge, r.share_session_epoch, &acks);
                seen.renew = v2.is_renew_ack;
                let mut answer = ShareAcknowledgeResponse::default();
                if let Some(code) = m.session(self.id, r.share_session_epoch, false) {
                    answer.error_code = code;
                    seen.error = code;
                } else if !acks.is_empty() {
                    let mut p = AckPartition::default();
                    p.error_code = if m.leader.0 == self.id {
                        m.acknowledge(&acks)
                    } else {
                        NOT_LEADER_OR_FOLLOWER
                    };
                    seen.error = p.error_code;
                    let mut t = ShareAcknowledgeTopicResponse::default();
                    t.topic_id = topic_id();
                    t.partitions = vec![p];
                    answer.responses = vec![t];
                }
                m.seen.push(seen);
                let answer = ShareAcknowledgeResponseV2 {
                    body: answer,
                    acquisition_lock_timeout_ms: 30_000,
                };
                req.answer::<ShareAcknowledgeRequestV2>(&answer)
            }
            other => panic!("a request the script does not answer: {other:?}"),
        }
    }
}

/// Two brokers over one model.
struct Cluster {
    model: Arc<Mutex<Model>>,
    brokers: Vec<ScriptedBroker<Node>>,
}

impl Cluster {
    /// Brokers offering ShareFetch and ShareAcknowledge v1 and v2, as kcon does.
    async fn start() -> Cluster {
        Cluster::start_offering(2).await
    }

    /// Brokers offering ShareFetch and ShareAcknowledge up to `share_max`.
    async fn start_offering(share_max: i16) -> Cluster {
        let mut versions = kcon_versions_of(&ANSWERED);
        for v in &mut versions {
            if v.0 == ApiKey::ShareFetch as i16 || v.0 == ApiKey::ShareAcknowledge as i16 {
                v.2 = share_max;
            }
        }
        let model = Arc::new(Mutex::new(Model::new()));
        let mut brokers = Vec::new();
        for id in [1, 2] {
            let node = Node {
                id,
                model: model.clone(),
            };
            let b = ScriptedBroker::start(versions.clone(), node).await;
            lock(&model).addrs.insert(id, b.broker().addr);
            brokers.push(b);
        }
        Cluster { model, brokers }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    fn consumer(&self, extra: &[(&str, &str)]) -> ShareConsumer {
        self.consumer_with(extra, |b| b)
    }

    fn consumer_with(
        &self,
        extra: &[(&str, &str)],
        more: impl FnOnce(kcon::share::ShareConsumerBuilder) -> kcon::share::ShareConsumerBuilder,
    ) -> ShareConsumer {
        let mut b = ShareConsumer::builder()
            .set("bootstrap.servers", self.brokers[0].bootstrap())
            .set("group.id", GROUP)
            .set("fetch.max.wait.ms", "100")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "1000");
        for (k, v) in extra {
            b = b.set(k, *v);
        }
        let mut c = more(b).build().expect("a share consumer");
        c.subscribe([TOPIC]).unwrap();
        c
    }

    /// The requests broker `id` received of `api`.
    fn seen(&self, id: i32, api: ApiKey) -> Vec<Seen> {
        self.model()
            .seen
            .iter()
            .filter(|s| s.broker == id && s.api == api)
            .cloned()
            .collect()
    }
}

/// The next batch, within [`PATIENCE`].
async fn batch(c: &mut ShareConsumer) -> Vec<Record> {
    timeout(PATIENCE, c.recv_batch())
        .await
        .expect("a batch within the patience")
        .expect("a batch")
}

/// Acknowledgement batches as (offset, type), one per offset.
fn each_offset(acks: &[(i64, i64, i8)]) -> Vec<(i64, i8)> {
    acks.iter()
        .flat_map(|&(first, last, kind)| (first..=last).map(move |o| (o, kind)))
        .collect()
}

fn offsets(records: &[Record]) -> Vec<(i64, Option<u16>)> {
    records
        .iter()
        .map(|r| (r.offset, r.delivery_count))
        .collect()
}

fn first_time(n: std::ops::Range<i64>) -> Vec<(i64, Option<u16>)> {
    n.map(|o| (o, Some(1))).collect()
}

/// The partition's leader moves to broker 2 while the metadata still names broker 1: broker
/// 1's NOT_LEADER_OR_FOLLOWER names the new leader, and the consumer's next ShareFetch goes
/// to broker 2 (a new session, epoch 0) without the metadata ever saying so. Every record is
/// handed out once and accepted: the first five at broker 1, the rest at broker 2.
#[tokio::test]
async fn a_leader_named_in_an_error_is_followed_before_the_metadata() {
    let cluster = Cluster::start().await;
    let mut c = cluster.consumer(&[]);
    let first = batch(&mut c).await;
    assert_eq!(offsets(&first), first_time(0..5));
    let outcomes = c.commit().await.expect("a commit");
    assert!(
        outcomes.iter().all(AcknowledgementOutcome::is_ok),
        "{outcomes:?}"
    );

    cluster.model().leader = (2, 1);
    let logs = kcon_tests::logs::capture();
    let second = match timeout(PATIENCE, c.recv_batch()).await {
        Ok(b) => b.unwrap(),
        Err(_) => {
            for l in logs.lines() {
                eprintln!("{l}");
            }
            for s in &cluster.model().seen {
                eprintln!("{s:?}");
            }
            panic!("timeout")
        }
    };
    assert_eq!(offsets(&second), first_time(5..10));
    c.close().await.expect("a clean close");

    let m = cluster.model();
    assert_eq!(
        m.metadata_leader,
        (1, 0),
        "the metadata never named broker 2"
    );
    assert_eq!(
        m.states(),
        vec![State::Acknowledged(AcknowledgeType::Accept); RECORDS as usize],
        "every record accepted once"
    );
    drop(m);
    let at_1 = cluster.seen(1, ApiKey::ShareFetch);
    assert!(
        at_1.iter().any(|s| s.error == NOT_LEADER_OR_FOLLOWER),
        "broker 1 refused a fetch once the leader moved: {at_1:?}"
    );
    let at_2 = cluster.seen(2, ApiKey::ShareFetch);
    assert_eq!(at_2.first().map(|s| s.epoch), Some(0), "{at_2:?}");
    let closed_at_2 = cluster.seen(2, ApiKey::ShareAcknowledge);
    assert_eq!(
        closed_at_2
            .last()
            .map(|s| (s.epoch, each_offset(&s.acks), s.error)),
        Some((-1, (5..10).map(|o| (o, 1)).collect(), 0)),
        "the last batch accepted on closing broker 2's session: {closed_at_2:?}"
    );
}

/// A leader error naming no leader, while the metadata still names the old one, is not asked
/// again at once: the partition is held back with a growing backoff (retry.backoff.ms 100 up
/// to retry.backoff.max.ms 1000), a few refused fetches a second rather than a busy loop,
/// until the metadata names the new leader; then the rest comes from there.
#[tokio::test]
async fn a_leader_error_without_a_leader_backs_off_until_the_metadata_moves() {
    let cluster = Cluster::start().await;
    let mut c = cluster.consumer(&[]);
    let first = batch(&mut c).await;
    assert_eq!(offsets(&first), first_time(0..5));
    c.commit().await.expect("a commit");
    {
        let mut m = cluster.model();
        m.leader = (2, 1);
        m.name_leader = false;
    }
    let waited = Duration::from_millis(1500);
    let got = timeout(waited, c.recv_batch()).await;
    assert!(
        got.is_err(),
        "records while no broker could give them: {got:?}"
    );
    let refused = cluster
        .seen(1, ApiKey::ShareFetch)
        .iter()
        .filter(|s| s.error == NOT_LEADER_OR_FOLLOWER)
        .count();
    // Backoffs of 100, 200, 400, 800 ms (less 20% jitter) fit at most five tries in 1.5 s.
    assert!(refused <= 6, "{refused} refused fetches in {waited:?}");

    cluster.model().metadata_leader = (2, 1);
    let second = batch(&mut c).await;
    assert_eq!(offsets(&second), first_time(5..10));
    c.close().await.expect("a clean close");
    assert_eq!(
        cluster.model().states(),
        vec![State::Acknowledged(AcknowledgeType::Accept); RECORDS as usize]
    );
    // Only a refusal makes the consumer ask the metadata again and find broker 2.
    assert!(
        cluster
            .seen(1, ApiKey::ShareFetch)
            .iter()
            .any(|s| s.error == NOT_LEADER_OR_FOLLOWER)
    );
}

/// A share session refused with SHARE_SESSION_LIMIT_REACHED is asked for again after a
/// growing backoff (retry.backoff.ms 100, doubling); a session the broker forgot
/// (SHARE_SESSION_NOT_FOUND) is opened again at epoch 0. No record is lost or handed out twice.
#[tokio::test]
async fn refused_and_forgotten_sessions_are_opened_again() {
    let cluster = Cluster::start().await;
    cluster.model().refuse_sessions = 3;
    let mut c = cluster.consumer(&[]);
    let first = batch(&mut c).await;
    assert_eq!(offsets(&first), first_time(0..5));
    let opening: Vec<Seen> = cluster
        .seen(1, ApiKey::ShareFetch)
        .into_iter()
        .filter(|s| s.epoch == 0)
        .collect();
    let errors: Vec<i16> = opening.iter().map(|s| s.error).collect();
    assert_eq!(
        errors,
        [
            SHARE_SESSION_LIMIT_REACHED,
            SHARE_SESSION_LIMIT_REACHED,
            SHARE_SESSION_LIMIT_REACHED,
            0
        ]
    );
    let gaps: Vec<Duration> = opening.windows(2).map(|w| w[1].at - w[0].at).collect();
    // KIP-580: 100 ms, 200 ms, 400 ms, each within 20% jitter.
    for (i, gap) in gaps.iter().enumerate() {
        let least = Duration::from_millis(80 << i);
        assert!(
            *gap >= least,
            "retry {i} after {gap:?}, before {least:?}: {gaps:?}"
        );
    }

    // The broker forgets the session (as after a restart): the next fetch is refused, the
    // acknowledgements it carried fail, and a new session hands out the rest.
    cluster.model().sessions.clear();
    let second = batch(&mut c).await;
    let outcomes = c.take_acknowledgement_outcomes();
    let refused: Vec<i16> = outcomes.iter().map(|o| o.error_code).collect();
    assert_eq!(refused, [SHARE_SESSION_NOT_FOUND], "{outcomes:?}");
    assert_eq!(offsets(&second), first_time(5..10));
    c.close().await.expect("a clean close");
    let m = cluster.model();
    let mut expected = vec![State::Acquired; 5];
    expected.extend(vec![State::Acknowledged(AcknowledgeType::Accept); 5]);
    assert_eq!(
        m.states(),
        expected,
        "the first five stay acquired (their acceptance was lost with the session) until their \
         locks expire; the rest accepted"
    );
}

/// An acknowledgement the broker refuses with INVALID_RECORD_STATE comes back from `commit`
/// with the code, reaches the hook and counts as failed; the broker's records stay acquired
/// (they come again once their locks expire).
#[tokio::test]
async fn a_refused_acknowledgement_is_told() {
    let cluster = Cluster::start().await;
    let told: Arc<Mutex<Vec<AcknowledgementOutcome>>> = Arc::default();
    let hook = told.clone();
    let mut c = cluster.consumer_with(&[("share.acknowledgement.mode", "explicit")], |b| {
        b.hooks(Outcomes(hook))
    });
    let first = batch(&mut c).await;
    assert_eq!(offsets(&first), first_time(0..5));
    for r in &first {
        let kind = if r.offset < 2 {
            AcknowledgeType::Release
        } else {
            AcknowledgeType::Accept
        };
        c.acknowledge(r, kind).unwrap();
    }
    cluster.model().refuse_acks = true;
    let outcomes = c.commit().await.expect("a commit");
    let codes: Vec<i16> = outcomes.iter().map(|o| o.error_code).collect();
    assert_eq!(codes, [INVALID_RECORD_STATE], "{outcomes:?}");
    assert_eq!(
        told.lock().unwrap().clone(),
        outcomes,
        "the hook saw the same"
    );
    let metrics = c.metrics();
    assert_eq!(
        (metrics.acknowledgements_failed, metrics.records_accepted),
        (5, 0)
    );
    // The broker's states are untouched: still acquired by this member.
    assert_eq!(cluster.model().states()[..5], [State::Acquired; 5]);
    drop(c);
}

/// A share group at its size limit refuses the member (GROUP_MAX_SIZE_REACHED): the member
/// cannot go on, and `recv_batch` says so, naming the error and the broker's message, rather
/// than waiting for records that cannot come.
#[tokio::test]
async fn a_full_group_fails_the_member_naming_why() {
    let cluster = Cluster::start().await;
    cluster.model().join_error = Some(GROUP_MAX_SIZE_REACHED);
    let mut c = cluster.consumer(&[]);
    let e = timeout(PATIENCE, c.recv_batch())
        .await
        .expect("an answer within the patience")
        .expect_err("a member the group refused");
    assert_eq!(e.kind(), kcon::ErrorKind::Fatal, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("GROUP_MAX_SIZE_REACHED") && text.contains("maximum size"),
        "{text}"
    );
    assert!(
        cluster.seen(1, ApiKey::ShareFetch).is_empty(),
        "nothing fetched for a member that never joined"
    );
}

/// Receives batches until all of the partition's records came: each batch's offsets.
async fn every_record(c: &mut ShareConsumer) -> Vec<Vec<i64>> {
    let mut batches = Vec::new();
    let mut n = 0;
    while n < RECORDS as usize {
        let b = batch(c).await;
        n += b.len();
        batches.push(b.iter().map(|r| r.offset).collect());
    }
    batches
}

/// `share.acquire.mode=record_limit` goes with ShareFetch v2 (KIP-1206): every fetch carries
/// the mode and `max.poll.records`, and the broker acquires no more (3, 3, 3, 1). Every record
/// is handed out once and accepted.
#[tokio::test]
async fn record_limit_goes_with_share_fetch_v2() {
    let cluster = Cluster::start().await;
    let mut c = cluster.consumer(&[
        ("share.acquire.mode", "record_limit"),
        ("max.poll.records", "3"),
    ]);
    let batches = every_record(&mut c).await;
    assert_eq!(
        batches,
        [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
    );
    c.close().await.expect("a clean close");
    let fetches = cluster.seen(1, ApiKey::ShareFetch);
    assert!(!fetches.is_empty());
    for f in &fetches {
        assert_eq!((f.version, f.acquire), (2, (1, 3)), "{f:?}");
    }
    assert!(
        cluster
            .seen(1, ApiKey::ShareAcknowledge)
            .iter()
            .all(|a| a.version == 2)
    );
    assert_eq!(
        cluster.model().states(),
        vec![State::Acknowledged(AcknowledgeType::Accept); RECORDS as usize]
    );
}

/// A broker that speaks ShareFetch v1 only acquires whole batches (5 here) whatever the
/// mode: the consumer still hands out `max.poll.records` at a time, every record once, and a
/// WARN line says once that record_limit needs v2.
#[tokio::test]
async fn a_v1_broker_acquires_whole_batches_and_says_so_once() {
    let logs = kcon_tests::logs::capture();
    let cluster = Cluster::start_offering(1).await;
    let mut c = cluster.consumer(&[
        ("share.acquire.mode", "record_limit"),
        ("max.poll.records", "3"),
    ]);
    let batches = every_record(&mut c).await;
    assert_eq!(
        batches,
        [vec![0, 1, 2], vec![3, 4], vec![5, 6, 7], vec![8, 9]]
    );
    c.close().await.expect("a clean close");
    for f in &cluster.seen(1, ApiKey::ShareFetch) {
        assert_eq!((f.version, f.acquire.0), (1, 0), "{f:?}");
    }
    let warned: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("record_limit needs ShareFetch v2"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("speaks v1"),
        "{warned:?}"
    );
    assert_eq!(
        cluster.model().states(),
        vec![State::Acknowledged(AcknowledgeType::Accept); RECORDS as usize]
    );
}

/// Renewing a record's lock (KIP-1222) in explicit mode: the renewal goes at once on a
/// ShareAcknowledge v2 flagged `IsRenewAck`, the broker keeps the record acquired, the record
/// stays open (the next batch is refused until it is settled), and its acceptance later goes
/// as any other.
#[tokio::test]
async fn a_renewed_record_stays_held_until_settled() {
    let cluster = Cluster::start().await;
    let mut c = cluster.consumer(&[("share.acknowledgement.mode", "explicit")]);
    let first = batch(&mut c).await;
    assert_eq!(offsets(&first), first_time(0..5));
    c.acknowledge(&first[0], AcknowledgeType::Renew).unwrap();
    for r in &first[1..] {
        c.acknowledge(r, AcknowledgeType::Accept).unwrap();
    }
    let outcomes = c.commit().await.expect("a commit");
    assert!(
        outcomes.iter().all(AcknowledgementOutcome::is_ok),
        "{outcomes:?}"
    );
    let renewed: Vec<_> = cluster
        .seen(1, ApiKey::ShareAcknowledge)
        .into_iter()
        .filter(|a| a.renew)
        .map(|a| (a.version, a.acks))
        .collect();
    assert_eq!(renewed, [(2, vec![(0, 0, 4)])]);
    assert_eq!(cluster.model().states()[0], State::Acquired);
    assert_eq!(c.metrics().records_renewed, 1);
    // Renewed is not settled: explicit mode refuses the next batch.
    let e = c.recv_batch().await.expect_err("record 0 is open");
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    c.acknowledge(&first[0], AcknowledgeType::Accept).unwrap();
    c.commit().await.expect("a commit");
    assert_eq!(
        cluster.model().states()[..5],
        [State::Acknowledged(AcknowledgeType::Accept); 5]
    );
    c.close().await.expect("a clean close");
}

/// A broker that speaks ShareAcknowledge v1 cannot renew: the renewal's outcome is
/// UNSUPPORTED_VERSION, nothing of it reaches the broker, and the session goes on.
#[tokio::test]
async fn a_v1_broker_refuses_renewals() {
    let cluster = Cluster::start_offering(1).await;
    let mut c = cluster.consumer(&[("share.acknowledgement.mode", "explicit")]);
    let first = batch(&mut c).await;
    c.acknowledge(&first[0], AcknowledgeType::Renew).unwrap();
    let outcomes = c.commit().await.expect("a commit");
    let codes: Vec<i16> = outcomes.iter().map(|o| o.error_code).collect();
    assert_eq!(codes, [35], "UNSUPPORTED_VERSION: {outcomes:?}");
    assert!(
        cluster
            .seen(1, ApiKey::ShareAcknowledge)
            .iter()
            .all(|a| a.acks.is_empty() && a.version == 1 && a.error == 0)
    );
    for r in &first {
        c.acknowledge(r, AcknowledgeType::Accept).unwrap();
    }
    let outcomes = c.commit().await.expect("a commit");
    assert!(
        outcomes.iter().all(AcknowledgementOutcome::is_ok),
        "{outcomes:?}"
    );
    assert_eq!(
        cluster.model().states()[..5],
        [State::Acknowledged(AcknowledgeType::Accept); 5]
    );
    c.close().await.expect("a clean close");
}

/// Keeps every acknowledgement outcome a share consumer tells.
struct Outcomes(Arc<Mutex<Vec<AcknowledgementOutcome>>>);

impl kcon::share::ShareConsumerHooks for Outcomes {
    fn on_acknowledged(&self, outcome: &AcknowledgementOutcome) {
        self.0.lock().unwrap().push(outcome.clone());
    }
}
