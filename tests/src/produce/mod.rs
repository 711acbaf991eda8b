//! Support for kcon-produce's tests (`tests/produce_tansu.rs`, `tests/produce_scripted.rs`): a
//! proxy in front of a broker that loses the answer to a chosen request, so that the producer
//! must retry a batch the broker has already written, and a scripted broker for the sequence
//! errors of idempotence ([`scripted`]).

pub mod scripted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kcon_codec::kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::brokers::{Tansu, proxy_listener};
use crate::frames::read_frame;

/// A TCP proxy to one broker that passes every frame both ways, except that it answers the
/// first `drops` requests of one API by closing the client's connection instead of passing the
/// broker's answer: the broker did the work, the client never hears of it (the Java client's
/// `NetworkClient` sees a disconnect, as on a real network failure).
#[derive(Debug)]
pub struct AnswerDropper {
    addr: SocketAddr,
    dropped: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerDropper {
    /// Starts the proxy on `listener`, forwarding to `upstream`, losing the answers to the
    /// first `drops` requests of `api`.
    pub fn start(listener: TcpListener, upstream: SocketAddr, api: ApiKey, drops: usize) -> Self {
        let addr = listener.local_addr().expect("a bound listener's address");
        let dropped = Arc::new(AtomicUsize::new(0));
        let budget = Arc::new(AtomicUsize::new(drops));
        let task = tokio::spawn({
            let dropped = dropped.clone();
            async move {
                let mut connections = JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(broker) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    connections.spawn(relay(client, broker, api, budget.clone(), dropped.clone()));
                }
            }
        });
        AnswerDropper {
            addr,
            dropped,
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

/// Passes frames between one client and the broker until either side closes, or until an
/// answer is to be lost: then both connections are closed.
async fn relay(
    client: TcpStream,
    broker: TcpStream,
    api: ApiKey,
    budget: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    // Correlation id to API key of every request passed on.
    let asked: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let upstream = requests(client_read, broker_write, asked.clone());
    let downstream = answers(broker_read, client_write, asked, api, budget, dropped);
    // Whichever side ends first ends both: dropping the halves closes the sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    asked: Arc<Mutex<HashMap<i32, i16>>>,
) {
    while let Some(frame) = read_frame(&mut from).await {
        // Request header: api key (i16), api version (i16), correlation id (i32).
        if frame.len() >= 12 {
            let key = i16::from_be_bytes([frame[4], frame[5]]);
            let correlation = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            asked.lock().await.insert(correlation, key);
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn answers(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    asked: Arc<Mutex<HashMap<i32, i16>>>,
    api: ApiKey,
    budget: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    while let Some(frame) = read_frame(&mut from).await {
        if frame.len() >= 8 {
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let key = asked.lock().await.remove(&correlation);
            let lose = key == Some(api as i16)
                && budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lose {
                dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}
