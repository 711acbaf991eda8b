//! A scripted broker that keeps fetch sessions (KIP-227) and resets them on cue, which a real
//! broker does only when its session cache runs out or a node restarts (the sessions Apache
//! Kafka keeps are tested in `fetch_kafka.rs` and `consumer_fetch_session_kafka.rs`).
//!
//! One broker (id 1) leading every partition of one topic. It answers ApiVersions (Fetch up to
//! the version the test picks: v12 names topics, v13+ uses topic ids), Metadata, ListOffsets,
//! OffsetForLeaderEpoch and Fetch. Its fetch-session cache follows KIP-227 (the Java broker's
//! `FetchManager` / `FetchSession`):
//!
//! | request (id, epoch) | the peer |
//! |---|---|
//! | `0, -1` | full fetch, no session (answer id 0) |
//! | `S, -1` | drops `S`, full fetch without a session (a close carries no partitions) |
//! | `0, 0` / `S, 0` | drops `S`, opens a new session with the request's partitions |
//! | `S, e > 0` | `S` unknown: 70; `e` not the session's next epoch: 71 (session kept); else the request's partitions are added or updated, the forgotten ones removed, and the answer carries only partitions with records or changed metadata (HWM, LSO, log start, an error) |
//!
//! The fetch offset of a partition the request leaves out is the cached one: the broker never
//! moves it itself, so a client that forgets to send a new position gets the old records again.
//!
//! The test scripts the log (plain, transactional and corrupt batches, truncation with a leader
//! epoch bump), injects top-level Fetch errors and evicts sessions; every request the peer
//! received and what it answered to each Fetch are recorded.
//!
//! The session cache and the logs are this file's; accepting connections, reading requests,
//! answering ApiVersions and recording what came are kcon-scripted's `Broker`.

#![allow(unreachable_pub)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kcon_codec::compression::{Compression, compress};
use kcon_codec::kafka_protocol::messages::fetch_request::FetchRequest;
use kcon_codec::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kcon_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProducerId, TopicName,
};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::records::RecordBatchBuilder;
use kcon_scripted::{Answer, BROKER_ID, Broker, Received, kcon_versions, metadata, partition};
use tokio::sync::Notify;

pub const TOPIC: &str = "scripted";
/// The topic's id (KIP-516), as Metadata v10+ and Fetch v13+ carry it.
pub const TOPIC_ID: [u8; 16] = [
    0x5c, 0x71, 0x9e, 0x01, 0x22, 0x43, 0x4a, 0x8b, 0x9c, 0x0d, 0x1e, 0x2f, 0x30, 0x41, 0x52, 0x63,
];
/// The longest a Fetch with nothing to return is held (or `max_wait_ms`, if shorter).
const LONGEST_HOLD: Duration = Duration::from_millis(200);

use kcon_core::error_codes::code;

/// What the peer answered to one Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub error_code: i16,
    pub session_id: i32,
    /// Whether it answered an incremental request of a session.
    pub incremental: bool,
    /// The partitions in the answer, with the offsets of the records it carried (empty when
    /// none).
    pub partitions: Vec<(i32, Vec<i64>)>,
    /// The partitions answered with an error code.
    pub partition_errors: Vec<(i32, i16)>,
}

/// One stored batch.
#[derive(Debug, Clone)]
struct Stored {
    base: i64,
    last: i64,
    bytes: Bytes,
}

/// One partition's log.
#[derive(Debug, Clone)]
struct Log {
    batches: Vec<Stored>,
    log_start: i64,
    end: i64,
    /// The last stable offset when a transaction is open; `None`: the log end.
    lso: Option<i64>,
    leader_epoch: i32,
    /// `(epoch, start offset)`, ascending: what OffsetForLeaderEpoch answers from.
    epoch_starts: Vec<(i32, i64)>,
    /// `(producer id, first offset, abort marker offset)`.
    aborted: Vec<(i64, i64, i64)>,
}

impl Log {
    fn new(leader_epoch: i32) -> Log {
        Log {
            batches: Vec::new(),
            log_start: 0,
            end: 0,
            lso: None,
            leader_epoch,
            epoch_starts: vec![(leader_epoch, 0)],
            aborted: Vec::new(),
        }
    }

    fn lso(&self) -> i64 {
        self.lso.unwrap_or(self.end)
    }

    /// The end offset of `epoch` (KIP-279): the largest epoch not above it and where the next
    /// one starts, or the log end for the latest.
    fn epoch_end(&self, epoch: i32) -> (i32, i64) {
        let Some(i) = self.epoch_starts.iter().rposition(|&(e, _)| e <= epoch) else {
            return (-1, -1);
        };
        let end = self.epoch_starts.get(i + 1).map_or(self.end, |&(_, s)| s);
        (self.epoch_starts[i].0, end)
    }
}

/// A partition in a session, as the broker caches it (Java `CachedPartition`).
#[derive(Debug, Clone, Copy)]
struct Cached {
    fetch_offset: i64,
    current_leader_epoch: i32,
    max_bytes: i32,
    /// What the last answer told the client; -1 until one did, so a new partition is always
    /// in the next answer.
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<i32, Cached>,
}

struct State {
    fetch_max_version: i16,
    logs: Vec<Log>,
    sessions: BTreeMap<i32, Session>,
    next_session_id: i32,
    keep_sessions: bool,
    injected: VecDeque<i16>,
    answered: Vec<Answered>,
}

/// The scripted broker. Stops when dropped.
pub struct SessionBroker {
    broker: Broker,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl SessionBroker {
    /// `partitions` partitions led by this broker at `leader_epoch`, empty logs; Fetch offered
    /// up to `fetch_max_version`.
    pub async fn start(
        partitions: i32,
        leader_epoch: i32,
        fetch_max_version: i16,
    ) -> SessionBroker {
        let state = Arc::new(Mutex::new(State {
            fetch_max_version,
            logs: (0..partitions).map(|_| Log::new(leader_epoch)).collect(),
            sessions: BTreeMap::new(),
            next_session_id: 1000,
            keep_sessions: true,
            injected: VecDeque::new(),
            answered: Vec::new(),
        }));
        let wake = Arc::new(Notify::new());
        let versions = kcon_versions()
            .into_iter()
            .map(|(k, min, max)| {
                let max = if k == ApiKey::Fetch as i16 {
                    fetch_max_version
                } else {
                    max
                };
                (k, min, max)
            })
            .collect();
        let (s, w) = (state.clone(), wake.clone());
        let broker =
            Broker::start_with_versions(versions, Arc::new(move |r: &Received| answer(r, &s, &w)))
                .await;
        SessionBroker {
            broker,
            state,
            wake,
        }
    }

    pub fn address(&self) -> String {
        self.broker.address()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Appends `n` plain records to partition `p` in the current leader epoch, values
    /// `"{p}-{offset}"`, as one batch.
    pub fn append(&self, p: i32, n: usize) {
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        let bytes = batch(log, p, n, |b| b);
        push(log, bytes, n);
        drop(s);
        self.wake.notify_waiters();
    }

    /// Appends `n` records as a batch whose CRC was damaged after it was built.
    pub fn append_corrupt(&self, p: i32, n: usize) {
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        let mut bytes = batch(log, p, n, |b| b).to_vec();
        // baseOffset (8) + batchLength (4) + partitionLeaderEpoch (4) + magic (1): the CRC.
        bytes[17] ^= 0xff;
        push(log, Bytes::from(bytes), n);
        drop(s);
        self.wake.notify_waiters();
    }

    /// Appends `n` records as one lz4 batch whose record at index `bad` does not parse (its
    /// length runs past the records), though the payload decompresses and the CRC holds: what a
    /// producer with a bug could write.
    pub fn append_bad_compressed(&self, p: i32, n: usize, bad: usize) {
        const HEADER: usize = 61;
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        let plain = batch(log, p, n, |b| b);
        let mut section = plain[HEADER..].to_vec();
        // Each record here is shorter than 64 bytes: its length is one zigzag varint byte.
        let mut at = 0;
        for _ in 0..bad {
            at += 1 + usize::from(section[at] >> 1);
        }
        section[at] = 0x7e;
        let packed = compress(Compression::Lz4, &section).unwrap();
        let mut bytes = plain[..HEADER].to_vec();
        // attributes (i16 at 21): the codec in the low bits.
        bytes[22] |= Compression::Lz4.id();
        bytes.extend_from_slice(&packed);
        let len = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        push(log, Bytes::from(bytes), n);
        drop(s);
        self.wake.notify_waiters();
    }

    /// Appends `n` records of producer `producer`'s open transaction (one transactional batch).
    pub fn append_transactional(&self, p: i32, producer: i64, n: usize) {
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        let bytes = batch(log, p, n, |b| {
            b.producer(producer, 0, 0).transactional(true)
        });
        push(log, bytes, n);
        drop(s);
        self.wake.notify_waiters();
    }

    /// Ends producer `producer`'s transaction with a marker; an abort lists the transaction
    /// (from `first_offset`) in the answers' aborted transactions.
    pub fn end_transaction(&self, p: i32, producer: i64, first_offset: i64, commit: bool) {
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        let marker = log.end;
        let bytes =
            RecordBatchBuilder::end_transaction_marker(marker, producer, 0, commit, 0, 1_000)
                .partition_leader_epoch(log.leader_epoch)
                .build()
                .unwrap();
        push(log, bytes, 1);
        if !commit {
            log.aborted.push((producer, first_offset, marker));
        }
        drop(s);
        self.wake.notify_waiters();
    }

    /// A new leader (still this broker) at the next epoch whose log ends at `to`: the records
    /// from `to` on are gone, and the new epoch starts there (KIP-320's divergence).
    pub fn truncate_and_bump_epoch(&self, p: i32, to: i64) {
        let mut s = self.state();
        let log = &mut s.logs[p as usize];
        log.batches.retain(|b| b.last < to);
        assert!(
            log.batches.last().is_none_or(|b| b.last == to - 1),
            "truncate at a batch boundary"
        );
        log.end = to;
        log.leader_epoch += 1;
        let epoch = log.leader_epoch;
        log.epoch_starts.push((epoch, to));
        drop(s);
        self.wake.notify_waiters();
    }

    /// The next Fetch (whatever its session) is answered with this top-level error; 70 also
    /// drops the session it names, as an eviction would.
    pub fn inject_fetch_error(&self, code: i16) {
        self.state().injected.push_back(code);
        self.wake.notify_waiters();
    }

    /// From now on the peer keeps no fetch sessions, as Tansu and librdkafka's mock cluster:
    /// a request that opens one is answered session id 0, so every Fetch is a full one.
    pub fn keep_no_sessions(&self) {
        self.state().keep_sessions = false;
    }

    /// Drops every session from the cache (an eviction): their next incremental request gets
    /// FETCH_SESSION_ID_NOT_FOUND by the rules.
    pub fn evict_sessions(&self) {
        self.state().sessions.clear();
        self.wake.notify_waiters();
    }

    /// The ids of the sessions in the cache.
    pub fn sessions(&self) -> Vec<i32> {
        self.state().sessions.keys().copied().collect()
    }

    /// The partitions of session `id` with their cached fetch offsets.
    pub fn session_partitions(&self, id: i32) -> Option<BTreeMap<i32, i64>> {
        self.state().sessions.get(&id).map(|s| {
            s.partitions
                .iter()
                .map(|(p, c)| (*p, c.fetch_offset))
                .collect()
        })
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.broker.stats.received()
    }

    /// Every Fetch received, decoded, in order.
    pub fn fetches(&self) -> Vec<FetchRequest> {
        self.requests::<FetchRequest>(ApiKey::Fetch)
    }

    pub fn requests<R: Request>(&self, api: ApiKey) -> Vec<R> {
        self.broker.stats.requests(api)
    }

    /// What the peer answered to each Fetch, in order (same indexes as [`fetches`]).
    pub fn answered(&self) -> Vec<Answered> {
        self.state().answered.clone()
    }

    /// Waits until `done` holds of the peer (polling), at most 5 s.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&SessionBroker) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; Fetches: {:#?}",
                summarize(&self.fetches())
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A record value as [`SessionBroker::append`] writes it.
pub fn value(p: i32, offset: i64) -> String {
    format!("{p}-{offset}")
}

/// A Fetch as `(session id, epoch, [(partition, fetch offset)], [forgotten])`, for messages.
pub type FetchSummary = (i32, i32, Vec<(i32, i64)>, Vec<i32>);

pub fn summarize(fetches: &[FetchRequest]) -> Vec<FetchSummary> {
    fetches.iter().map(summary).collect()
}

pub fn summary(f: &FetchRequest) -> FetchSummary {
    let partitions = f
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition, p.fetch_offset)))
        .collect();
    let forgotten = f
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    (f.session_id, f.session_epoch, partitions, forgotten)
}

/// `n` records of partition `p` from the log's end, in its leader epoch, with the values
/// [`value`] makes, as one batch; `configure` sets the rest of the batch (its producer,
/// transactional).
fn batch(
    log: &Log,
    p: i32,
    n: usize,
    configure: impl FnOnce(RecordBatchBuilder) -> RecordBatchBuilder,
) -> Bytes {
    let mut b =
        configure(RecordBatchBuilder::new(log.end).partition_leader_epoch(log.leader_epoch));
    for i in 0..n {
        let v = value(p, log.end + i as i64);
        b.record(1_000, Some(b"k"), Some(v.as_bytes()));
    }
    b.build().unwrap()
}

fn push(log: &mut Log, bytes: Bytes, n: usize) {
    let base = log.end;
    let last = base + n as i64 - 1;
    log.batches.push(Stored { base, last, bytes });
    log.end = last + 1;
}

/// What the broker answers `r` with (ApiVersions aside, which the `Broker` answers).
fn answer(r: &Received, state: &Arc<Mutex<State>>, wake: &Arc<Notify>) -> Answer {
    match r.api() {
        Some(ApiKey::Metadata) => {
            let _ = r.decode::<MetadataRequest>();
            let s = state.lock().unwrap();
            r.answer::<MetadataRequest>(&metadata_of(&s, r))
        }
        Some(ApiKey::ListOffsets) => {
            let req = r.decode::<ListOffsetsRequest>();
            let s = state.lock().unwrap();
            r.answer::<ListOffsetsRequest>(&list_offsets(&s, &req))
        }
        Some(ApiKey::OffsetForLeaderEpoch) => {
            let req = r.decode::<OffsetForLeaderEpochRequest>();
            let s = state.lock().unwrap();
            r.answer::<OffsetForLeaderEpochRequest>(&offsets_for_epochs(&s, &req))
        }
        Some(ApiKey::Fetch) => {
            let req = r.decode::<FetchRequest>();
            let (r, state, wake) = (r.clone(), state.clone(), wake.clone());
            Answer::Later(Box::pin(async move {
                // A broker holds a Fetch with nothing to return until data comes or
                // max_wait_ms passes; the peer does too (bounded), so an idle fetcher does not
                // spin.
                let woken = wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let ready = state.lock().unwrap().fetch_ready(&req, r.version());
                if !ready {
                    let hold =
                        Duration::from_millis(req.max_wait_ms.max(0) as u64).min(LONGEST_HOLD);
                    let _ = tokio::time::timeout(hold, woken).await;
                }
                let response = state.lock().unwrap().fetch(&req, r.version());
                r.answer::<FetchRequest>(&response)
            }))
        }
        other => panic!("the scripted broker does not answer {other:?}"),
    }
}

/// kafka-protocol's `Uuid` from bytes, without naming the `uuid` crate: every `uuid` version
/// parses the 32-hex-digit form.
fn uuid<U: std::str::FromStr>(bytes: [u8; 16]) -> U {
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    text.parse().ok().expect("32 hex digits")
}

/// The broker (at the address `r` came to) leading every partition of the topic, with the
/// topic's id and each log's leader epoch.
fn metadata_of(s: &State, r: &Received) -> MetadataResponse {
    let mut m = metadata(&[(BROKER_ID, r.broker)], &[(TOPIC, &[])]);
    m.topics[0].topic_id = uuid(TOPIC_ID);
    m.topics[0].partitions = s
        .logs
        .iter()
        .enumerate()
        .map(|(i, log)| partition(i as i32, BROKER_ID, log.leader_epoch))
        .collect();
    m
}

fn list_offsets(s: &State, req: &ListOffsetsRequest) -> ListOffsetsResponse {
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
                    let Some(log) = s.logs.get(p.partition_index as usize) else {
                        return r.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    let offset = match p.timestamp {
                        -2 => log.log_start,
                        _ if req.isolation_level == 1 => log.lso(),
                        _ => log.end,
                    };
                    r.with_timestamp(-1)
                        .with_offset(offset)
                        .with_leader_epoch(log.leader_epoch)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn offsets_for_epochs(
    s: &State,
    req: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    let Some(log) = s.logs.get(p.partition as usize) else {
                        return r.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if let Some(code) = epoch_error(log, p.current_leader_epoch) {
                        return r.with_error_code(code);
                    }
                    let (epoch, end) = log.epoch_end(p.leader_epoch);
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

/// KIP-320's check of the client's current leader epoch (-1: not checked).
fn epoch_error(log: &Log, current: i32) -> Option<i16> {
    if current < 0 || current == log.leader_epoch {
        None
    } else if current < log.leader_epoch {
        Some(code::FENCED_LEADER_EPOCH)
    } else {
        Some(code::UNKNOWN_LEADER_EPOCH)
    }
}

impl State {
    /// The partition a request's topic entry and index name, if it is this broker's topic.
    fn partition_of(&self, name: &str, id: [u8; 16], version: i16, p: i32) -> Option<i32> {
        let ours = if version >= 13 {
            id == TOPIC_ID
        } else {
            name == TOPIC
        };
        (ours && (p as usize) < self.logs.len()).then_some(p)
    }

    fn cached_from_request(&self, req: &FetchRequest, version: i16) -> Vec<(i32, Cached)> {
        let mut out = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let key = self
                    .partition_of(&t.topic, *t.topic_id.as_bytes(), version, p.partition)
                    .unwrap_or(p.partition);
                out.push((
                    key,
                    Cached {
                        fetch_offset: p.fetch_offset,
                        current_leader_epoch: p.current_leader_epoch,
                        max_bytes: p.partition_max_bytes,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                    },
                ));
            }
        }
        out
    }

    /// Whether a Fetch has something to answer at once (a session error, an injected error,
    /// records, or a partition error).
    fn fetch_ready(&self, req: &FetchRequest, version: i16) -> bool {
        if !self.injected.is_empty() {
            return true;
        }
        let mut wanted: BTreeMap<i32, Cached> = BTreeMap::new();
        if req.session_epoch > 0 {
            match self.sessions.get(&req.session_id) {
                Some(s) if s.next_epoch == req.session_epoch => wanted = s.partitions.clone(),
                _ => return true,
            }
        }
        wanted.extend(self.cached_from_request(req, version));
        for t in &req.forgotten_topics_data {
            for p in &t.partitions {
                wanted.remove(p);
            }
        }
        wanted.iter().any(|(p, c)| {
            let Some(log) = self.logs.get(*p as usize) else {
                return true;
            };
            let limit = if req.isolation_level == 1 {
                log.lso()
            } else {
                log.end
            };
            epoch_error(log, c.current_leader_epoch).is_some()
                || c.fetch_offset < log.log_start
                || c.fetch_offset > log.end
                || c.fetch_offset < limit
        })
    }

    fn fetch(&mut self, req: &FetchRequest, version: i16) -> FetchResponse {
        let response = self.fetch_inner(req, version);
        self.answered.push(Answered {
            error_code: response.error_code,
            session_id: response.session_id,
            incremental: req.session_epoch > 0 && response.error_code == 0,
            partitions: response
                .responses
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let offsets = p
                            .records
                            .as_ref()
                            .map(|b| offsets_in(b.clone()))
                            .unwrap_or_default();
                        (p.partition_index, offsets)
                    })
                })
                .collect(),
            partition_errors: response
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| p.error_code != 0)
                .map(|p| (p.partition_index, p.error_code))
                .collect(),
        });
        response
    }

    fn fetch_inner(&mut self, req: &FetchRequest, version: i16) -> FetchResponse {
        if let Some(code) = self.injected.pop_front() {
            if code == code::FETCH_SESSION_ID_NOT_FOUND {
                self.sessions.remove(&req.session_id);
            }
            return FetchResponse::default().with_error_code(code);
        }
        let requested = self.cached_from_request(req, version);
        let (id, epoch) = (req.session_id, req.session_epoch);
        // (session id of the answer, partitions to answer, incremental)
        let (answer_id, mut partitions, incremental) = match epoch {
            -1 | 0 => {
                if id != 0 {
                    self.sessions.remove(&id);
                }
                let partitions: BTreeMap<i32, Cached> = requested.into_iter().collect();
                if epoch == 0 && self.keep_sessions && version >= 7 {
                    let new_id = self.next_session_id;
                    self.next_session_id += 1;
                    self.sessions.insert(
                        new_id,
                        Session {
                            next_epoch: 1,
                            partitions: partitions.clone(),
                        },
                    );
                    (new_id, partitions, false)
                } else {
                    (0, partitions, false)
                }
            }
            e => {
                let Some(session) = self.sessions.get_mut(&id) else {
                    return FetchResponse::default()
                        .with_error_code(code::FETCH_SESSION_ID_NOT_FOUND);
                };
                if session.next_epoch != e {
                    return FetchResponse::default()
                        .with_error_code(code::INVALID_FETCH_SESSION_EPOCH);
                }
                for (p, c) in requested {
                    match session.partitions.get_mut(&p) {
                        // Java `CachedPartition.updateRequestParams`: the request's fields,
                        // the response fields it last saw kept.
                        Some(old) => {
                            old.fetch_offset = c.fetch_offset;
                            old.current_leader_epoch = c.current_leader_epoch;
                            old.max_bytes = c.max_bytes;
                        }
                        None => {
                            session.partitions.insert(p, c);
                        }
                    }
                }
                for t in &req.forgotten_topics_data {
                    for p in &t.partitions {
                        session.partitions.remove(p);
                    }
                }
                session.next_epoch = if e == i32::MAX { 1 } else { e + 1 };
                (id, session.partitions.clone(), true)
            }
        };
        let mut data = Vec::new();
        let mut budget = i64::from(req.max_bytes.max(0));
        for (p, cached) in partitions.iter_mut() {
            let d = self.partition_data(*p, cached, req.isolation_level, &mut budget);
            let changed = d.error_code != 0
                || d.records.as_ref().is_some_and(|b| !b.is_empty())
                || d.high_watermark != cached.high_watermark
                || d.last_stable_offset != cached.last_stable_offset
                || d.log_start_offset != cached.log_start_offset;
            cached.high_watermark = d.high_watermark;
            cached.last_stable_offset = d.last_stable_offset;
            cached.log_start_offset = d.log_start_offset;
            if changed || !incremental {
                data.push(d);
            }
        }
        if let Some(s) = self.sessions.get_mut(&answer_id) {
            // What the answer told the client: the next incremental answer compares with it.
            for (p, c) in &partitions {
                if let Some(cached) = s.partitions.get_mut(p) {
                    *cached = *c;
                }
            }
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(data);
        if version >= 13 {
            topic.topic_id = uuid(TOPIC_ID);
        } else {
            topic.topic = TopicName(StrBytes::from_static_str(TOPIC));
        }
        let responses = if topic.partitions.is_empty() {
            Vec::new()
        } else {
            vec![topic]
        };
        FetchResponse::default()
            .with_session_id(answer_id)
            .with_responses(responses)
    }

    fn partition_data(
        &self,
        p: i32,
        c: &Cached,
        isolation_level: i8,
        budget: &mut i64,
    ) -> PartitionData {
        let d = PartitionData::default().with_partition_index(p);
        let Some(log) = self.logs.get(p as usize) else {
            let code = if self.fetch_max_version >= 13 {
                code::UNKNOWN_TOPIC_ID
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            return d.with_error_code(code);
        };
        let d = d
            .with_high_watermark(log.end)
            .with_last_stable_offset(log.lso())
            .with_log_start_offset(log.log_start);
        if let Some(code) = epoch_error(log, c.current_leader_epoch) {
            return d.with_error_code(code);
        }
        if c.fetch_offset < log.log_start || c.fetch_offset > log.end {
            return d.with_error_code(code::OFFSET_OUT_OF_RANGE);
        }
        // read_committed reads up to the last stable offset only.
        let limit = if isolation_level == 1 {
            log.lso()
        } else {
            log.end
        };
        let mut records = BytesMut::new();
        let mut first_last = None;
        for b in &log.batches {
            if b.last < c.fetch_offset || b.base >= limit {
                continue;
            }
            let len = b.bytes.len() as i64;
            // KIP-74: the first batch goes out whatever its size.
            if !records.is_empty()
                && (records.len() as i64 + len > i64::from(c.max_bytes) || len > *budget)
            {
                break;
            }
            *budget -= len;
            records.extend_from_slice(&b.bytes);
            first_last = Some(b.last);
        }
        let mut d = d.with_records(Some(records.freeze()));
        if isolation_level == 1 {
            let last = first_last.unwrap_or(c.fetch_offset);
            let aborted: Vec<AbortedTransaction> = log
                .aborted
                .iter()
                .filter(|&&(_, first, marker)| first <= last && marker >= c.fetch_offset)
                .map(|&(producer, first, _)| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(producer))
                        .with_first_offset(first)
                })
                .collect();
            d.aborted_transactions = Some(aborted);
        }
        d
    }
}

/// The offsets of the records in `bytes` (control records included), by the batch headers.
fn offsets_in(bytes: Bytes) -> Vec<i64> {
    use kcon_codec::records::{DecodeOptions, RecordBatches};
    let mut out = Vec::new();
    let options = DecodeOptions::default().with_verify_crc(false);
    for b in RecordBatches::new(bytes, options).flatten() {
        out.extend(b.base_offset()..=b.last_offset());
    }
    out
}
