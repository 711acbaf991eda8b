//! A scripted Kafka peer: a TCP listener on 127.0.0.1 that reads request frames and answers
//! with whatever the test says, well-formed or not.
//!
//! Two ways to drive it: [`Listener::accept`] gives a [`PeerConn`] that the test scripts step
//! by step (`recv`, `reply`, `send_raw`), and [`Broker::start`] serves every connection on its
//! own with a handler, counting what it saw.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kcon_codec::frame::FrameDecoder;
use kcon_codec::kafka_protocol::messages::api_versions_response::ApiVersion;
use kcon_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, HeartbeatRequest, HeartbeatResponse,
    MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::message::{decode_request, decode_request_header, encode_response};
use kcon_codec::versions::SUPPORTED;
use kcon_pool::{Connection, Peer, PoolConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A listening socket on a free loopback port.
pub struct Listener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    pub async fn bind() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Listener { listener, addr }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub async fn accept(&self) -> PeerConn {
        let (stream, _) = self.listener.accept().await.unwrap();
        PeerConn {
            stream,
            buf: BytesMut::new(),
        }
    }
}

/// An address where nothing listens: bound, then released.
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A request as the peer read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub header: RequestHeader,
    pub body: Bytes,
}

impl Received {
    pub fn api_key(&self) -> i16 {
        self.header.request_api_key
    }

    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    pub fn decode<R: Request>(&self) -> R {
        decode_request::<R>(self.body.clone(), self.version()).unwrap()
    }

    /// The generation id of a Heartbeat: the tests' request number.
    pub fn heartbeat_number(&self) -> i32 {
        assert_eq!(self.api_key(), ApiKey::Heartbeat as i16);
        self.decode::<HeartbeatRequest>().generation_id
    }
}

/// The peer's side of one connection.
pub struct PeerConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl PeerConn {
    /// The next request, or `None` once the client has closed the connection. Cancel-safe:
    /// bytes read stay in the buffer.
    pub async fn recv(&mut self) -> Option<Received> {
        let frames = FrameDecoder::default();
        loop {
            if let Some(frame) = frames.decode(&mut self.buf).unwrap() {
                let (header, body) = decode_request_header(frame).unwrap();
                return Some(Received { header, body });
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits until the client closes the connection, failing on any request meanwhile.
    pub async fn expect_closed(&mut self) {
        if let Some(r) = self.recv().await {
            panic!("expected the connection to close, got {:?}", r.header);
        }
    }

    pub async fn reply<R: Request>(&mut self, to: &Received, response: &R::Response) {
        self.send_raw(&frame::<R>(to.correlation_id(), to.version(), response))
            .await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Answers the ApiVersions handshake (v3) with every version kcon speaks.
    pub async fn handshake(&mut self) -> Received {
        self.handshake_with(&kcon_versions()).await
    }

    pub async fn handshake_with(&mut self, ranges: &[(i16, i16, i16)]) -> Received {
        let r = self.recv().await.expect("ApiVersions");
        assert_eq!(r.api_key(), ApiKey::ApiVersions as i16);
        assert_eq!(r.version(), 3);
        self.reply::<ApiVersionsRequest>(&r, &api_versions(ranges))
            .await;
        r
    }

    /// Answers a Heartbeat with its number as throttle time, so the client can check which
    /// request an answer belongs to.
    pub async fn echo(&mut self, to: &Received) {
        let n = to.heartbeat_number();
        self.reply::<HeartbeatRequest>(to, &HeartbeatResponse::default().with_throttle_time_ms(n))
            .await;
    }
}

/// A response frame, size prefix included.
pub fn frame<R: Request>(correlation_id: i32, version: i16, response: &R::Response) -> Bytes {
    let mut buf = BytesMut::new();
    encode_response::<R>(&mut buf, correlation_id, version, response).unwrap();
    buf.freeze()
}

/// `(api key, min, max)` for every API kcon speaks, at kcon's own ranges.
pub fn kcon_versions() -> Vec<(i16, i16, i16)> {
    SUPPORTED
        .iter()
        .map(|&(k, min, max)| (k as i16, min, max))
        .collect()
}

pub fn api_versions(ranges: &[(i16, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

pub fn heartbeat(n: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(StrBytes::from_static_str("g").into())
        .with_generation_id(n)
        .with_member_id(StrBytes::from_static_str("m"))
}

/// A config for tests: `bootstrap` as the servers, the rest default.
pub fn config(bootstrap: &[String]) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.bootstrap_servers = bootstrap.to_vec();
    c
}

/// Connects a [`Connection`] to `listener` while the peer answers the handshake with every
/// version kcon speaks.
pub async fn connect(listener: &Listener, config: &PoolConfig) -> (Connection, PeerConn) {
    connect_with(listener, config, &kcon_versions()).await
}

/// Connects a [`Connection`] to `listener` while the peer answers the handshake with `ranges`.
pub async fn connect_with(
    listener: &Listener,
    config: &PoolConfig,
    ranges: &[(i16, i16, i16)],
) -> (Connection, PeerConn) {
    let peer_side = async {
        let mut p = listener.accept().await;
        p.handshake_with(ranges).await;
        p
    };
    let (conn, peer) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(listener.address()), listener.addr, config),
        peer_side
    );
    (conn.expect("connect"), peer)
}

/// `(partition, leader, leader epoch)`.
pub type PartitionSpec = (i32, i32, i32);

/// A metadata answer: brokers by id and address; topics with their partitions.
pub fn metadata(
    brokers: &[(i32, SocketAddr)],
    topics: &[(&str, &[PartitionSpec])],
) -> MetadataResponse {
    MetadataResponse::default()
        .with_cluster_id(Some(StrBytes::from_static_str("scripted")))
        .with_controller_id(BrokerId(brokers.first().map_or(-1, |b| b.0)))
        .with_brokers(
            brokers
                .iter()
                .map(|&(id, addr)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                })
                .collect(),
        )
        .with_topics(
            topics
                .iter()
                .map(|&(name, partitions)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&(index, leader, epoch)| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_leader_id(BrokerId(leader))
                                        .with_leader_epoch(epoch)
                                        .with_replica_nodes(vec![BrokerId(leader)])
                                        .with_isr_nodes(vec![BrokerId(leader)])
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// What a [`Broker`] does with a request.
pub enum Answer {
    /// Write this frame.
    Frame(Bytes),
    /// Wait, then write this frame (holding up the connection's later requests meanwhile).
    Delayed(Duration, Bytes),
    /// Write these bytes, then close the connection.
    RawThenClose(Vec<u8>),
    /// Do not answer.
    Silent,
}

pub fn answer<R: Request>(to: &Received, response: &R::Response) -> Answer {
    Answer::Frame(frame::<R>(to.correlation_id(), to.version(), response))
}

pub type Handler = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// What a [`Broker`] saw.
#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    pub closed: AtomicUsize,
    requests: Mutex<Vec<(i16, i16)>>,
}

impl Stats {
    /// Requests of `api` received (the handshake's ApiVersions included).
    pub fn count(&self, api: ApiKey) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == api as i16)
            .count()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A broker that serves every connection on its own: ApiVersions with kcon's versions (or the
/// ones given), everything else with the handler. Stops when dropped.
pub struct Broker {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    pub async fn start(handler: Handler) -> Broker {
        Broker::start_with_versions(kcon_versions(), handler).await
    }

    pub async fn start_with_versions(versions: Vec<(i16, i16, i16)>, handler: Handler) -> Broker {
        let listener = Listener::bind().await;
        let addr = listener.addr;
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let versions = Arc::new(versions);
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection's task.
            let mut conns = JoinSet::new();
            loop {
                let peer = listener.accept().await;
                s.accepted.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(peer, s.clone(), versions.clone(), handler.clone()));
            }
        });
        Broker { addr, stats, task }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut peer: PeerConn,
    stats: Arc<Stats>,
    versions: Arc<Vec<(i16, i16, i16)>>,
    handler: Handler,
) {
    while let Some(r) = peer.recv().await {
        stats
            .requests
            .lock()
            .unwrap()
            .push((r.api_key(), r.version()));
        let a = if r.api_key() == ApiKey::ApiVersions as i16 {
            answer::<ApiVersionsRequest>(&r, &api_versions(&versions))
        } else {
            handler(&r)
        };
        match a {
            Answer::Frame(f) => peer.send_raw(&f).await,
            Answer::Delayed(d, f) => {
                tokio::time::sleep(d).await;
                peer.send_raw(&f).await;
            }
            Answer::RawThenClose(bytes) => {
                peer.send_raw(&bytes).await;
                break;
            }
            Answer::Silent => {}
        }
    }
    stats.closed.fetch_add(1, Ordering::SeqCst);
}

/// A handler that answers Metadata with `meta` (as it is at the time) and Heartbeat with its
/// number; `special` goes first and may take over any request.
pub fn serving(
    meta: Arc<Mutex<MetadataResponse>>,
    special: impl Fn(&Received) -> Option<Answer> + Send + Sync + 'static,
) -> Handler {
    Arc::new(move |r: &Received| {
        if let Some(a) = special(r) {
            return a;
        }
        match ApiKey::try_from(r.api_key()) {
            Ok(ApiKey::Metadata) => {
                let _ = r.decode::<MetadataRequest>();
                answer::<MetadataRequest>(r, &meta.lock().unwrap().clone())
            }
            Ok(ApiKey::Heartbeat) => answer::<HeartbeatRequest>(
                r,
                &HeartbeatResponse::default().with_throttle_time_ms(r.heartbeat_number()),
            ),
            _ => Answer::Silent,
        }
    })
}
