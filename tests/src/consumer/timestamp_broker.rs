//! A scripted broker for timestamp lookups, which neither real broker here answers truthfully
//! (Tansu answers offset 0 to every ListOffsets by timestamp, the mock cluster doesn't look
//! timestamps up: see DESIGN.md, "The brokers").
//!
//! One broker (id 1) leads every partition of one topic whose records have the timestamps the
//! test gives. It answers ApiVersions, Metadata and ListOffsets (by timestamp: the first record
//! at or after it, Java's `LogSegment.findOffsetByTimestamp`; earliest; latest) and records
//! every ListOffsets query. Requests of any other API are read and never answered, so a
//! consumer's fetcher waits on them without failing the test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::api_versions_response::ApiVersion;
use kcon_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kcon_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::message::{decode_request, decode_request_header, encode_response};
use kcon_codec::versions::supported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const BROKER_ID: i32 = 1;

/// The largest request frame the broker reads; kcon's requests here are tiny.
const MAX_FRAME: usize = 1 << 20;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// The APIs the broker answers (at kcon's versions), and Fetch, which it advertises (v12, the
/// last to name topics) so that a consumer's fetcher starts, but never answers.
const ANSWERED: [ApiKey; 3] = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::ListOffsets];

/// One ListOffsets query the broker received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The partition asked about.
    pub partition: i32,
    /// The timestamp asked for (-1 latest, -2 earliest).
    pub timestamp: i64,
}

#[derive(Debug)]
struct State {
    addr: SocketAddr,
    topic: String,
    /// Per partition, the timestamp of each record in offset order.
    timestamps: Vec<Vec<i64>>,
    queries: Vec<Query>,
}

/// The scripted broker, serving until dropped.
#[derive(Debug)]
pub struct TimestampBroker {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl TimestampBroker {
    /// Starts a broker whose `topic` has one partition per entry of `timestamps`, holding one
    /// record per timestamp, in order (timestamps need not increase, as with CreateTime).
    pub async fn start(topic: &str, timestamps: Vec<Vec<i64>>) -> TimestampBroker {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(Mutex::new(State {
            addr,
            topic: topic.to_owned(),
            timestamps,
            queries: Vec::new(),
        }));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                // Dropped with this task: aborting it ends every connection too.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(serve(stream, state.clone()));
                }
            }
        });
        TimestampBroker { addr, state, task }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Every ListOffsets query so far, in the order received.
    pub fn queries(&self) -> Vec<Query> {
        lock(&self.state).queries.clone()
    }
}

impl Drop for TimestampBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests off one connection and answers them in order, until it closes.
async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let size = i32::from_be_bytes(size);
        let Ok(size) = usize::try_from(size) else {
            return;
        };
        if size > MAX_FRAME {
            return;
        }
        let mut frame = vec![0u8; size];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let Some(answer) = answer(Bytes::from(frame), &state) else {
            continue;
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The answer frame to one request frame, or `None` for an API the broker leaves unanswered.
/// Panics on a request kcon's codec cannot decode: that is a bug in what kcon sent.
fn answer(frame: Bytes, state: &Mutex<State>) -> Option<Bytes> {
    let (header, body) = decode_request_header(frame).expect("a request header");
    let version = header.request_api_version;
    let id = header.correlation_id;
    let mut out = BytesMut::new();
    match ApiKey::try_from(header.request_api_key) {
        Ok(ApiKey::ApiVersions) => {
            encode_response::<ApiVersionsRequest>(&mut out, id, version, &api_versions())
        }
        Ok(ApiKey::Metadata) => {
            let _ = decode_request::<MetadataRequest>(body, version).expect("a Metadata request");
            encode_response::<MetadataRequest>(&mut out, id, version, &metadata(&lock(state)))
        }
        Ok(ApiKey::ListOffsets) => {
            let request =
                decode_request::<ListOffsetsRequest>(body, version).expect("a ListOffsets request");
            let response = list_offsets(&mut lock(state), &request);
            encode_response::<ListOffsetsRequest>(&mut out, id, version, &response)
        }
        _ => return None,
    }
    .expect("an answer kcon's codec encodes");
    Some(out.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = ANSWERED
        .iter()
        .map(|&k| {
            // Invariant: kcon speaks every API in ANSWERED.
            let (min, max) = supported(k).expect("kcon speaks it");
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    keys.push(
        ApiVersion::default()
            .with_api_key(ApiKey::Fetch as i16)
            .with_min_version(4)
            .with_max_version(12),
    );
    ApiVersionsResponse::default().with_api_keys(keys)
}

fn metadata(s: &State) -> MetadataResponse {
    let partitions = (0..s.timestamps.len())
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(BROKER_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(BROKER_ID)])
                .with_isr_nodes(vec![BrokerId(BROKER_ID)])
        })
        .collect();
    MetadataResponse::default()
        .with_controller_id(BrokerId(BROKER_ID))
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(BROKER_ID))
                .with_host(StrBytes::from_string(s.addr.ip().to_string()))
                .with_port(i32::from(s.addr.port())),
        ])
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(s.topic.clone()))))
                .with_partitions(partitions),
        ])
}

fn list_offsets(s: &mut State, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in &request.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            s.queries.push(Query {
                partition: p.partition_index,
                timestamp: p.timestamp,
            });
            let answer =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let log = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| s.timestamps.get(i))
                .filter(|_| t.name.0.as_str() == s.topic);
            let Some(log) = log else {
                // UNKNOWN_TOPIC_OR_PARTITION.
                partitions.push(answer.with_error_code(3));
                continue;
            };
            let (offset, timestamp) = match p.timestamp {
                EARLIEST => (0, -1),
                LATEST => (log.len() as i64, -1),
                ts => log
                    .iter()
                    .position(|&t| t >= ts)
                    .map_or((-1, -1), |i| (i as i64, log[i])),
            };
            partitions.push(
                answer
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(0),
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Locks, ignoring poisoning: each critical section here is a single update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
