//! A proxy in front of one broker that hangs up on every request of a chosen API while told
//! to: it reads the request, closes the client's connection instead of passing it on, and
//! notes when. Kafka closes a connection on a request it cannot parse; so do proxies and
//! Kafka-compatible services in front of versions they advertise but misread. Every other
//! request, and every answer, passes unchanged.
//!
//! The broker must advertise the proxy's address ([`tansu_hanging_up`]), so that a client
//! bootstrapping at the proxy sends everything through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::brokers::{Tansu, proxy_listener};
use crate::frames::read_frame;

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
}

/// The proxy, listening on a loopback port; stopped on drop.
#[derive(Debug)]
pub struct HangUpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HangUpProxy {
    /// Starts the proxy on `listener`, forwarding to `upstream` and hanging up on every request
    /// of `api` until told otherwise.
    pub fn start(listener: TcpListener, upstream: SocketAddr, api: ApiKey) -> HangUpProxy {
        let addr = listener.local_addr().expect("a bound listener's address");
        let shared = Arc::new(Shared {
            api: api as i16,
            hanging_up: AtomicBool::new(true),
            seen: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut connections = JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(broker) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    connections.spawn(relay(client, broker, shared.clone()));
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
}

impl Drop for HangUpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Tansu broker that advertises a proxy's address, and the proxy in front of it hanging up
/// on every request of `api`.
pub async fn tansu_hanging_up(api: ApiKey) -> (Tansu, HangUpProxy) {
    let (listener, port) = proxy_listener().await;
    let tansu = Tansu::start_advertising(port);
    let proxy = HangUpProxy::start(listener, tansu.addr(), api);
    (tansu, proxy)
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

/// Passes frames between one client and the broker until either side closes, or until a
/// request of the API comes while the proxy hangs up: then both connections are closed.
async fn relay(client: TcpStream, broker: TcpStream, shared: Arc<Shared>) {
    let (client_read, client_write) = client.into_split();
    let (mut broker_read, broker_write) = broker.into_split();
    let upstream = requests(client_read, broker_write, shared);
    let mut client_write = client_write;
    let downstream = async move {
        let _ = tokio::io::copy(&mut broker_read, &mut client_write).await;
    };
    // Whichever side ends first ends both: dropping the halves closes the sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    while let Some(frame) = read_frame(&mut from).await {
        // Request header: api key (i16), api version (i16), correlation id (i32).
        if frame.len() >= 8 && i16::from_be_bytes([frame[4], frame[5]]) == shared.api {
            let version = i16::from_be_bytes([frame[6], frame[7]]);
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
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}
