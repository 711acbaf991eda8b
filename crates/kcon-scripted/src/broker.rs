//! The broker as a server: every connection served on a task of its own, every request answered
//! by the test's handler or script, and what it received recorded.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kcon_codec::kafka_protocol::protocol::Request;
use tokio::task::{JoinHandle, JoinSet};

use crate::peer::{Listener, PeerConn};
use crate::{Received, VersionRange, api_versions, kcon_versions};

/// What the broker does with a request.
pub enum Answer {
    /// Writes this frame.
    Frame(Bytes),
    /// Waits, then writes this frame (holding up the connection's later requests meanwhile).
    Delayed(Duration, Bytes),
    /// Runs this future, then does what it says (holding up the connection's later requests
    /// meanwhile): an answer that depends on what happens while it waits, like a Fetch held
    /// until records come.
    Later(Pin<Box<dyn Future<Output = Answer> + Send>>),
    /// Writes these bytes, then closes the connection (none: hangs up).
    RawThenClose(Vec<u8>),
    /// Does not answer (a client then waits on it, as on a slow broker).
    Silent,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Frame(b) => write!(f, "Frame({} bytes)", b.len()),
            Answer::Delayed(d, b) => write!(f, "Delayed({d:?}, {} bytes)", b.len()),
            Answer::Later(_) => f.write_str("Later"),
            Answer::RawThenClose(b) => write!(f, "RawThenClose({} bytes)", b.len()),
            Answer::Silent => f.write_str("Silent"),
        }
    }
}

/// What a [`Broker`] answers every request but ApiVersions with.
pub type Handler = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// What a [`Broker`] saw.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

impl Stats {
    /// Connections accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections that ended (the client closed them, or the broker hung up).
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Requests of `api` received (the handshakes' ApiVersions included).
    pub fn count(&self, api: ApiKey) -> usize {
        lock(&self.received)
            .iter()
            .filter(|r| r.api_key() == api as i16)
            .count()
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Every request of `api` received, decoded, in order.
    pub fn requests<R: Request>(&self, api: ApiKey) -> Vec<R> {
        lock(&self.received)
            .iter()
            .filter(|r| r.api_key() == api as i16)
            .map(Received::decode::<R>)
            .collect()
    }
}

/// A broker serving every connection on a task of its own, requests in order: ApiVersions with
/// the versions it was given (kcon's own by default), everything else with the handler. Stops
/// when dropped, its connections with it.
pub struct Broker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

impl Broker {
    /// Starts a broker offering every version kcon speaks, answering with `handler`.
    pub async fn start(handler: Handler) -> Broker {
        Broker::start_with_versions(kcon_versions(), handler).await
    }

    /// Starts a broker offering `versions` in its ApiVersions answers, answering every other
    /// request with `handler`.
    pub async fn start_with_versions(versions: Vec<VersionRange>, handler: Handler) -> Broker {
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

    /// `host:port`, as a bootstrap list.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one connection's requests in order until it closes or the broker hangs up.
async fn serve(
    mut peer: PeerConn,
    stats: Arc<Stats>,
    versions: Arc<Vec<VersionRange>>,
    handler: Handler,
) {
    while let Some(r) = peer.recv().await {
        lock(&stats.received).push(r.clone());
        let mut answer = if r.api_key() == ApiKey::ApiVersions as i16 {
            r.answer::<ApiVersionsRequest>(&api_versions(&versions))
        } else {
            handler(&r)
        };
        let written = loop {
            match answer {
                Answer::Frame(f) => break peer.try_send_raw(&f).await,
                Answer::Delayed(d, f) => {
                    tokio::time::sleep(d).await;
                    break peer.try_send_raw(&f).await;
                }
                Answer::Later(later) => answer = later.await,
                Answer::RawThenClose(bytes) => {
                    peer.try_send_raw(&bytes).await;
                    break false;
                }
                Answer::Silent => break true,
            }
        };
        if !written {
            break;
        }
    }
    stats.closed.fetch_add(1, Ordering::SeqCst);
}

/// A broker's script: state kept across requests and connections, and what it answers each
/// request but ApiVersions with.
pub trait Script: Send + 'static {
    /// Answers `request`.
    fn answer(&mut self, request: &Received) -> Answer;
}

/// A [`Broker`] answering with a [`Script`], which every connection shares. Stops when dropped.
pub struct ScriptedBroker<S> {
    broker: Broker,
    script: Arc<Mutex<S>>,
}

impl<S> fmt::Debug for ScriptedBroker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedBroker")
            .field("addr", &self.broker.addr)
            .finish()
    }
}

impl<S: Script> ScriptedBroker<S> {
    /// Starts a broker offering `versions` and answering with `script`.
    pub async fn start(versions: Vec<VersionRange>, script: S) -> ScriptedBroker<S> {
        let script = Arc::new(Mutex::new(script));
        let shared = script.clone();
        let broker =
            Broker::start_with_versions(versions, Arc::new(move |r| lock(&shared).answer(r))).await;
        ScriptedBroker { broker, script }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.broker.address()
    }

    /// The broker, for its address and what it saw.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The script, to read what it recorded or change what it answers next.
    pub fn script(&self) -> MutexGuard<'_, S> {
        lock(&self.script)
    }
}

/// Locks, ignoring poisoning: each critical section here is a single update, and a test that
/// panicked while holding a lock has failed already.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
