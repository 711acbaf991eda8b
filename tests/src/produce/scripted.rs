//! A scripted broker for the idempotent producer's sequence handling, which a real broker
//! only shows after losing state: one broker (id 1) leading every partition of one topic, that
//! answers ApiVersions, Metadata, InitProducerId (ids 1, 2, ... at epoch 0) and Produce, the
//! first Produce answers with the error codes the test gives (then success), and records what
//! each Produce carried.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::api_versions_response::ApiVersion;
use kcon_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::message::{decode_request, decode_request_header, encode_response};
use kcon_codec::versions::supported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const BROKER_ID: i32 = 1;
const MAX_FRAME: usize = 16 << 20;
const ANSWERED: [ApiKey; 4] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::InitProducerId,
];

/// One batch a Produce request carried, and the code it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The partition.
    pub partition: i32,
    /// The batch header's producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// Its base sequence.
    pub base_sequence: i32,
    /// Its record count.
    pub records: i32,
    /// The error code it was answered with.
    pub answered: i16,
}

#[derive(Debug)]
struct State {
    addr: SocketAddr,
    topic: String,
    partitions: i32,
    /// Error codes for the next batches, in order; success once empty.
    script: Vec<i16>,
    sent: Vec<Sent>,
    /// The log end per partition: batches answered with success are written.
    ends: Vec<i64>,
    producer_ids: i64,
}

/// The scripted broker, serving until dropped.
#[derive(Debug)]
pub struct SequenceBroker {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl SequenceBroker {
    /// A broker for `topic` with `partitions` partitions whose first batches are answered with
    /// `script`'s codes, in order.
    pub async fn start(topic: &str, partitions: i32, script: Vec<i16>) -> SequenceBroker {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener's address");
        let state = Arc::new(Mutex::new(State {
            addr,
            topic: topic.to_owned(),
            partitions,
            script,
            sent: Vec::new(),
            ends: vec![0; partitions as usize],
            producer_ids: 0,
        }));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(serve(stream, state.clone()));
                }
            }
        });
        SequenceBroker { addr, state, task }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Every batch received, in order.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.state).sent.clone()
    }

    /// How many producer ids it gave out.
    pub fn producer_ids(&self) -> i64 {
        lock(&self.state).producer_ids
    }
}

impl Drop for SequenceBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let Some(size) = usize::try_from(i32::from_be_bytes(size))
            .ok()
            .filter(|&s| s <= MAX_FRAME)
        else {
            return;
        };
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

/// The answer to one request frame; panics on a request kcon's codec cannot decode (a bug in
/// what kcon sent).
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
        Ok(ApiKey::InitProducerId) => {
            let _ = decode_request::<InitProducerIdRequest>(body, version)
                .expect("an InitProducerId request");
            let mut s = lock(state);
            s.producer_ids += 1;
            let response = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(s.producer_ids))
                .with_producer_epoch(0);
            encode_response::<InitProducerIdRequest>(&mut out, id, version, &response)
        }
        Ok(ApiKey::Produce) => {
            let request =
                decode_request::<ProduceRequest>(body, version).expect("a Produce request");
            let response = produce(&mut lock(state), &request);
            encode_response::<ProduceRequest>(&mut out, id, version, &response)
        }
        _ => return None,
    }
    .expect("an answer kcon's codec encodes");
    Some(out.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ANSWERED
            .iter()
            .map(|&k| {
                // Invariant: kcon speaks every API in ANSWERED.
                let (min, max) = supported(k).expect("kcon speaks it");
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn metadata(s: &State) -> MetadataResponse {
    let partitions = (0..s.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
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

fn produce(s: &mut State, request: &ProduceRequest) -> ProduceResponse {
    let mut topics = Vec::new();
    for t in &request.topic_data {
        let mut partitions = Vec::new();
        for p in &t.partition_data {
            let batch = p.records.as_deref().unwrap_or_default();
            // A magic-2 batch header: producer id at 43, epoch at 51, base sequence at 53,
            // record count at 57.
            let field = |at: usize, n: usize| batch.get(at..at + n).unwrap_or(&[0; 8][..n]);
            let sent = Sent {
                partition: p.index,
                producer_id: i64::from_be_bytes(field(43, 8).try_into().unwrap()),
                producer_epoch: i16::from_be_bytes(field(51, 2).try_into().unwrap()),
                base_sequence: i32::from_be_bytes(field(53, 4).try_into().unwrap()),
                records: i32::from_be_bytes(field(57, 4).try_into().unwrap()),
                answered: if s.script.is_empty() {
                    0
                } else {
                    s.script.remove(0)
                },
            };
            s.sent.push(sent);
            let mut answer = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(sent.answered);
            if sent.answered == 0
                && let Some(end) = s.ends.get_mut(p.index as usize)
            {
                answer = answer.with_base_offset(*end);
                *end += i64::from(sent.records);
            }
            partitions.push(answer);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(topics)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
