//! A proxy in front of one broker that hangs up on every request of a chosen API while told
//! to: it reads the request, closes the client's connection instead of passing it on, and
//! notes when. Kafka closes a connection on a request it cannot parse; so do proxies and
//! Kafka-compatible services in front of versions they advertise but misread. Every other
//! request, and every answer, passes unchanged.
//!
//! A client bootstrapping at the proxy sends everything through it: the proxy stands in front
//! of a one-node cluster (Apache Kafka's single node, [`kafka_hanging_up`]) and puts its own
//! address in every broker and coordinator its Metadata and FindCoordinator answers name.
//!
//! The proxy also keeps every request it read and every answer it passed on, of every API, in
//! the order it read them ([`HangUpProxy::frames`]): a test reads what a client sent and was
//! told, and in which order on one connection, without a recording proxy of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::brokers::proxy_listener;
use crate::frames::read_frame;
use crate::kafka::Kafka;
use crate::produce::advertise;
use crate::proxy::{Direction, Frame};

/// One request of the chosen API the proxy saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its version.
    pub version: i16,
    /// Whether the proxy hung up on it (else it passed it on).
    pub hung_up: bool,
}

#[derive(Debug)]
struct Shared {
    api: i16,
    hanging_up: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// Every request read and answer passed on, of any API.
    frames: Mutex<Vec<Frame>>,
    /// The next frame's place in `frames`, over all connections.
    next_seq: AtomicU64,
}

/// The proxy, listening on a loopback port; stopped on drop.
#[derive(Debug)]
pub struct HangUpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HangUpProxy {
    /// Starts the proxy on `listener`, forwarding to `upstream`, the one node of a cluster, and
    /// hanging up on every request of `api` until told otherwise. It names itself as every
    /// broker and coordinator in the answers it passes on.
    pub fn start(listener: TcpListener, upstream: SocketAddr, api: ApiKey) -> HangUpProxy {
        let addr = listener.local_addr().expect("a bound listener's address");
        let shared = Arc::new(Shared {
            api: api as i16,
            hanging_up: AtomicBool::new(true),
            seen: Mutex::new(Vec::new()),
            frames: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut connections = JoinSet::new();
                let mut conn = 0;
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(broker) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    connections.spawn(relay(client, broker, shared.clone(), addr, conn));
                    conn += 1;
                }
            }
        });
        HangUpProxy { addr, shared, task }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the proxy hangs up on the API's requests from now on.
    pub fn hang_up(&self, on: bool) {
        self.shared.hanging_up.store(on, Ordering::SeqCst);
    }

    /// Every request of the API seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Every request of any API read so far (hung up on or passed on), and every answer passed
    /// on, in the order the proxy read them; one connection's requests are in the order the
    /// client wrote them, its answers in the order the broker wrote them.
    pub fn frames(&self) -> Vec<Frame> {
        self.shared.frames.lock().unwrap().clone()
    }

    /// The requests of [`frames`](Self::frames).
    pub fn requests(&self) -> Vec<Frame> {
        let frames = self.frames();
        frames
            .into_iter()
            .filter(|f| f.direction == Direction::Request)
            .collect()
    }
}

impl Drop for HangUpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Apache Kafka's single node (`Kafka::single`), and a proxy in front of it hanging up on every
/// request of `api`.
pub async fn kafka_hanging_up(api: ApiKey) -> (&'static Kafka, HangUpProxy) {
    let kafka = Kafka::single();
    (kafka, hanging_up_before(kafka, api).await)
}

/// A proxy in front of `kafka`, a cluster of one node, hanging up on every request of `api`.
pub async fn hanging_up_before(kafka: &Kafka, api: ApiKey) -> HangUpProxy {
    let upstream: SocketAddr = kafka
        .bootstrap()
        .parse()
        .expect("the single node's address");
    let (listener, _) = proxy_listener().await;
    HangUpProxy::start(listener, upstream, api)
}

/// The most requests in any one second, counting from the `skip`th request on, and when that
/// second starts.
pub fn most_in_a_second(seen: &[Seen], skip: usize) -> (usize, Option<Instant>) {
    let times: Vec<Instant> = seen.iter().skip(skip).map(|s| s.at).collect();
    let mut most = (0, None);
    for (i, start) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        if n > most.0 {
            most = (n, Some(*start));
        }
    }
    most
}

/// The API key and version of each request passed on, by correlation id.
type Asked = Arc<Mutex<HashMap<i32, (i16, i16)>>>;

/// Passes frames between one client and the broker until either side closes, or until a
/// request of the API comes while the proxy hangs up: then both connections are closed. Every
/// broker and coordinator of a Metadata or FindCoordinator answer is given the proxy's address,
/// `addr`.
async fn relay(
    client: TcpStream,
    broker: TcpStream,
    shared: Arc<Shared>,
    addr: SocketAddr,
    conn: u64,
) {
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    let asked: Asked = Arc::default();
    let upstream = requests(
        client_read,
        broker_write,
        shared.clone(),
        asked.clone(),
        conn,
    );
    let downstream = answers(broker_read, client_write, asked, addr, shared, conn);
    // Whichever side ends first ends both: dropping the halves closes the sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    asked: Asked,
    conn: u64,
) {
    while let Some(frame) = read_frame(&mut from).await {
        // Request header: api key (i16), api version (i16), correlation id (i32).
        if frame.len() >= 12 {
            let key = i16::from_be_bytes([frame[4], frame[5]]);
            let version = i16::from_be_bytes([frame[6], frame[7]]);
            let correlation = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            shared.frames.lock().unwrap().push(Frame {
                seq: shared.next_seq.fetch_add(1, Ordering::SeqCst),
                conn,
                direction: Direction::Request,
                data: Bytes::copy_from_slice(&frame[4..]),
                api_key: Some(key),
                api_version: Some(version),
                answered_by: None,
                answers: None,
            });
            if key == shared.api {
                let hung_up = shared.hanging_up.load(Ordering::SeqCst);
                shared.seen.lock().unwrap().push(Seen {
                    at: Instant::now(),
                    version,
                    hung_up,
                });
                if hung_up {
                    return;
                }
            }
            asked.lock().unwrap().insert(correlation, (key, version));
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn answers(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    asked: Asked,
    addr: SocketAddr,
    shared: Arc<Shared>,
    conn: u64,
) {
    while let Some(mut frame) = read_frame(&mut from).await {
        if frame.len() >= 8 {
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let request = asked.lock().unwrap().remove(&correlation);
            if let Some((key, version)) = request {
                // As the broker wrote it, before the proxy names itself in it.
                shared.frames.lock().unwrap().push(Frame {
                    seq: shared.next_seq.fetch_add(1, Ordering::SeqCst),
                    conn,
                    direction: Direction::Response,
                    data: Bytes::copy_from_slice(&frame[4..]),
                    api_key: Some(key),
                    api_version: Some(version),
                    answered_by: None,
                    answers: None,
                });
                frame = advertise(frame, correlation, key, version, addr);
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}
