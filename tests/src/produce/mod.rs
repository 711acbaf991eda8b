//! Support for kcon-produce's tests (`tests/produce_kafka.rs`, `tests/produce_tansu.rs`,
//! `tests/produce_scripted.rs`): a proxy in front of a broker that loses the answer to a chosen
//! request, so that the producer must retry a batch the broker has already written, and a
//! scripted broker for the sequence errors of idempotence ([`scripted`]).

pub mod scripted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, MetadataRequest};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::message::{decode_response, encode_response};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

use crate::brokers::{Tansu, proxy_listener};
use crate::frames::read_frame;

/// A TCP proxy to one broker that passes every frame both ways, except that it answers the
/// first `drops` requests of one API by closing the client's connection instead of passing the
/// broker's answer: the broker did the work, the client never hears of it (the Java client's
/// `NetworkClient` sees a disconnect, as on a real network failure).
///
/// The client must send everything through it: either the broker advertises the proxy's
/// address ([`tansu_losing_answers`]), or the proxy stands in front of a one-node cluster and
/// puts its own address in every broker and coordinator its Metadata and FindCoordinator
/// answers name ([`AnswerDropper::in_front_of`]).
#[derive(Debug)]
pub struct AnswerDropper {
    addr: SocketAddr,
    dropped: Arc<AtomicUsize>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerDropper {
    /// Starts the proxy on `listener`, forwarding to `upstream`, losing the answers to the
    /// first `drops` requests of `api`.
    pub fn start(listener: TcpListener, upstream: SocketAddr, api: ApiKey, drops: usize) -> Self {
        Self::listen(listener, upstream, api, drops, false)
    }

    /// Starts the proxy on a free loopback port in front of `upstream`, the one node of a
    /// cluster that advertises its own address: the proxy names itself as every broker and
    /// coordinator in the answers it passes on, so that a client bootstrapping at it connects
    /// to nothing else. It loses the answers to the first `drops` requests of `api`.
    pub async fn in_front_of(upstream: SocketAddr, api: ApiKey, drops: usize) -> Self {
        let (listener, _) = proxy_listener().await;
        Self::listen(listener, upstream, api, drops, true)
    }

    /// As [`in_front_of`](Self::in_front_of), on `listener`: a proxy dropped (the broker gone,
    /// every connection through it closed) can be started again on the same port (the broker
    /// back).
    pub fn in_front_of_on(
        listener: TcpListener,
        upstream: SocketAddr,
        api: ApiKey,
        drops: usize,
    ) -> Self {
        Self::listen(listener, upstream, api, drops, true)
    }

    fn listen(
        listener: TcpListener,
        upstream: SocketAddr,
        api: ApiKey,
        drops: usize,
        advertise_self: bool,
    ) -> Self {
        let addr = listener.local_addr().expect("a bound listener's address");
        let advertised = advertise_self.then_some(addr);
        let dropped = Arc::new(AtomicUsize::new(0));
        let budget = Arc::new(AtomicUsize::new(drops));
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn({
            let dropped = dropped.clone();
            let stop = stop.clone();
            async move {
                let mut connections = JoinSet::new();
                loop {
                    let client = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((client, _)) => client,
                            Err(_) => break,
                        },
                        () = stop.notified() => break,
                    };
                    let Ok(broker) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let lose = Lose {
                        api,
                        budget: budget.clone(),
                        dropped: dropped.clone(),
                    };
                    connections.spawn(relay(client, broker, lose, advertised));
                }
                drop(listener);
                connections.shutdown().await;
            }
        });
        AnswerDropper {
            addr,
            dropped,
            stop,
            task,
        }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// How many answers it has lost so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Stops the proxy, as a broker that goes away: when this returns, its port refuses
    /// connections and every connection through it is closed (dropping it closes them a moment
    /// later).
    pub async fn stop(mut self) {
        self.stop.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for AnswerDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Tansu broker that advertises a proxy's address, and the proxy in front of it losing the
/// answers to the first `drops` requests of `api`: every connection of a client that
/// bootstraps at the proxy goes through it.
pub async fn tansu_losing_answers(api: ApiKey, drops: usize) -> (Tansu, AnswerDropper) {
    let (listener, port) = proxy_listener().await;
    let tansu = Tansu::start_advertising(port);
    let proxy = AnswerDropper::start(listener, tansu.addr(), api, drops);
    (tansu, proxy)
}

/// Which answers a relay loses: those to the first requests of `api`, while `budget` lasts
/// (shared by every connection), counted in `dropped`.
struct Lose {
    api: ApiKey,
    budget: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

/// The API key and version of each request passed on, by correlation id.
type Asked = Arc<Mutex<HashMap<i32, (i16, i16)>>>;

/// Passes frames between one client and the broker until either side closes, or until an
/// answer is to be lost: then both connections are closed. With `advertised`, every broker
/// and coordinator of a Metadata or FindCoordinator answer is given that address.
async fn relay(client: TcpStream, broker: TcpStream, lose: Lose, advertised: Option<SocketAddr>) {
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    let asked: Asked = Arc::default();
    let upstream = requests(client_read, broker_write, asked.clone());
    let downstream = answers(broker_read, client_write, asked, lose, advertised);
    // Whichever side ends first ends both: dropping the halves closes the sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, asked: Asked) {
    while let Some(frame) = read_frame(&mut from).await {
        // Request header: api key (i16), api version (i16), correlation id (i32).
        if frame.len() >= 12 {
            let key = i16::from_be_bytes([frame[4], frame[5]]);
            let version = i16::from_be_bytes([frame[6], frame[7]]);
            let correlation = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            asked.lock().await.insert(correlation, (key, version));
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
    lose: Lose,
    advertised: Option<SocketAddr>,
) {
    while let Some(mut frame) = read_frame(&mut from).await {
        if frame.len() >= 8 {
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let request = asked.lock().await.remove(&correlation);
            let lost = request.is_some_and(|(key, _)| key == lose.api as i16)
                && lose
                    .budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lost {
                lose.dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if let (Some(addr), Some((key, version))) = (advertised, request) {
                frame = advertise(frame, correlation, key, version, addr);
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// `frame` (size prefix included), the answer to a request of `key` at `version`, with every
/// broker or coordinator it names moved to `addr`; any other answer unchanged.
pub(crate) fn advertise(
    frame: Vec<u8>,
    correlation: i32,
    key: i16,
    version: i16,
    addr: SocketAddr,
) -> Vec<u8> {
    let body = Bytes::copy_from_slice(&frame[4..]);
    let host = StrBytes::from_string(addr.ip().to_string());
    let port = i32::from(addr.port());
    let mut out = BytesMut::new();
    if key == ApiKey::Metadata as i16 {
        let (_, mut answer) = decode_response::<MetadataRequest>(body, version)
            .unwrap_or_else(|e| panic!("a Metadata v{version} answer the proxy cannot read: {e}"));
        for b in &mut answer.brokers {
            b.host = host.clone();
            b.port = port;
        }
        encode_response::<MetadataRequest>(&mut out, correlation, version, &answer)
            .expect("the Metadata answer encodes again");
    } else if key == ApiKey::FindCoordinator as i16 {
        let (_, mut answer) = decode_response::<FindCoordinatorRequest>(body, version)
            .unwrap_or_else(|e| {
                panic!("a FindCoordinator v{version} answer the proxy cannot read: {e}")
            });
        // Versions 0-3 name one coordinator; 4 and later a list (the single one's fields
        // must then stay unset).
        if version < 4 {
            answer.host = host.clone();
            answer.port = port;
        }
        for c in &mut answer.coordinators {
            c.host = host.clone();
            c.port = port;
        }
        encode_response::<FindCoordinatorRequest>(&mut out, correlation, version, &answer)
            .expect("the FindCoordinator answer encodes again");
    } else {
        return frame;
    }
    out.to_vec()
}
