//! The frame loop of a scripted broker: one broker (id 1) on a loopback port that reads request
//! frames and answers each with what the test's script returns, for the behaviour no real
//! broker here shows. Each scripted broker (timestamp lookups, producer sequences, consumer
//! groups described by ConsumerGroupDescribe) is a script over this loop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::api_versions_response::ApiVersion;
use kcon_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, RequestHeader, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::message::decode_request_header;
use kcon_codec::versions::supported;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The scripted broker's id.
pub const BROKER_ID: i32 = 1;

/// The largest request frame read.
const MAX_FRAME: usize = 16 << 20;

/// What a script answers to one request: its header and body, and where the broker listens.
/// It writes the whole answer frame into `out` and returns true, or returns false to leave the
/// request unanswered (a client then waits on it, as on a slow broker).
pub trait Script: Send + 'static {
    /// Answers one request.
    fn answer(
        &mut self,
        addr: SocketAddr,
        header: &RequestHeader,
        body: Bytes,
        out: &mut BytesMut,
    ) -> bool;
}

/// A scripted broker serving until dropped; the script is shared by every connection.
#[derive(Debug)]
pub struct ScriptedBroker<S> {
    addr: SocketAddr,
    script: Arc<Mutex<S>>,
    task: JoinHandle<()>,
}

impl<S: Script> ScriptedBroker<S> {
    /// Starts the broker on a loopback port.
    pub async fn start(script: S) -> ScriptedBroker<S> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let script = Arc::new(Mutex::new(script));
        let task = tokio::spawn({
            let script = script.clone();
            async move {
                // Dropped with this task: aborting it ends every connection too.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(serve(stream, addr, script.clone()));
                }
            }
        });
        ScriptedBroker { addr, script, task }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The script, to read what it recorded.
    pub fn script(&self) -> MutexGuard<'_, S> {
        lock(&self.script)
    }
}

impl<S> Drop for ScriptedBroker<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests off one connection and answers them in order, until it closes. Panics on a
/// request header kcon's codec cannot decode: that is a bug in what kcon sent.
async fn serve<S: Script>(mut stream: TcpStream, addr: SocketAddr, script: Arc<Mutex<S>>) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let Ok(size) = usize::try_from(i32::from_be_bytes(size)) else {
            return;
        };
        if size > MAX_FRAME {
            return;
        }
        let mut frame = vec![0u8; size];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let (header, body) = decode_request_header(Bytes::from(frame)).expect("a request header");
        let mut out = BytesMut::new();
        if !lock(&script).answer(addr, &header, body, &mut out) {
            continue;
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// ApiVersions offering `answered` at kcon's versions, and `extra` (key, min, max) as given.
pub fn api_versions(answered: &[ApiKey], extra: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    let keys = answered
        .iter()
        .map(|&k| {
            // Invariant: a script answers only APIs kcon speaks.
            let (min, max) = supported(k).expect("kcon speaks it");
            (k, min, max)
        })
        .chain(extra.iter().copied())
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

/// Metadata of the one broker at `addr`, leading every partition of `topics` (name, count).
pub fn metadata(addr: SocketAddr, topics: &[(&str, usize)]) -> MetadataResponse {
    let topics = topics
        .iter()
        .map(|&(name, count)| {
            let partitions = (0..count)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_id(BrokerId(BROKER_ID))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(BROKER_ID)])
                        .with_isr_nodes(vec![BrokerId(BROKER_ID)])
                })
                .collect();
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
                .with_partitions(partitions)
        })
        .collect();
    MetadataResponse::default()
        .with_controller_id(BrokerId(BROKER_ID))
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(BROKER_ID))
                .with_host(StrBytes::from_string(addr.ip().to_string()))
                .with_port(i32::from(addr.port())),
        ])
        .with_topics(topics)
}

/// Locks, ignoring poisoning: each critical section here is a single update.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
