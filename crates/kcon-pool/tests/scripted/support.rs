//! What kcon-pool's scripted tests share: the scripted broker (kcon-scripted), and the pool's
//! own conventions over it: a pool configuration, a connection made while the peer answers its
//! handshake, and Heartbeats numbered by their generation id, echoed back as the answer's
//! throttle time so a test can tell which request an answer belongs to (the connection then
//! holds its next request back for that many milliseconds, as a quota's throttle asks).

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use kcon_codec::kafka_protocol::messages::{
    ApiKey, HeartbeatRequest, HeartbeatResponse, MetadataRequest, MetadataResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{Connection, Peer, PoolConfig};
pub use kcon_scripted::*;

/// The Heartbeats the tests number.
pub trait Numbered {
    /// The generation id of a Heartbeat: the tests' request number.
    fn heartbeat_number(&self) -> i32;
}

impl Numbered for Received {
    fn heartbeat_number(&self) -> i32 {
        assert_eq!(self.api_key(), ApiKey::Heartbeat as i16);
        self.decode::<HeartbeatRequest>().generation_id
    }
}

/// Answering numbered Heartbeats.
#[allow(async_fn_in_trait)]
pub trait Echo {
    /// Answers a Heartbeat with its number as throttle time.
    async fn echo(&mut self, to: &Received);
}

impl Echo for PeerConn {
    async fn echo(&mut self, to: &Received) {
        let n = to.heartbeat_number();
        self.reply::<HeartbeatRequest>(to, &HeartbeatResponse::default().with_throttle_time_ms(n))
            .await;
    }
}

/// Heartbeat number `n`.
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
    ranges: &[VersionRange],
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

/// Polls `cond` every 10 ms until it holds; fails after 5 s.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A Metadata answer the test changes while brokers serve it.
pub fn shared(m: MetadataResponse) -> Arc<Mutex<MetadataResponse>> {
    Arc::new(Mutex::new(m))
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
        match r.api() {
            Some(ApiKey::Metadata) => {
                let _ = r.decode::<MetadataRequest>();
                r.answer::<MetadataRequest>(&meta.lock().unwrap().clone())
            }
            Some(ApiKey::Heartbeat) => r.answer::<HeartbeatRequest>(
                &HeartbeatResponse::default().with_throttle_time_ms(r.heartbeat_number()),
            ),
            _ => Answer::Silent,
        }
    })
}
