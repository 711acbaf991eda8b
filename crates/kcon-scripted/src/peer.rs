//! The broker's side of a connection, scripted step by step.

use std::net::SocketAddr;

use bytes::BytesMut;
use kcon_codec::frame::FrameDecoder;
use kcon_codec::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_codec::message::decode_request_header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Received, VersionRange, api_versions, kcon_versions};

/// A listening socket on a free loopback port.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Listener {
    /// Binds a free loopback port.
    pub async fn bind() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        Listener { listener, addr }
    }

    /// `host:port`, as a bootstrap list.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The next connection.
    pub async fn accept(&self) -> PeerConn {
        let (stream, _) = self.listener.accept().await.expect("accept a connection");
        PeerConn {
            stream,
            buf: BytesMut::new(),
            broker: self.addr,
        }
    }
}

/// An address where nothing listens: bound, then released.
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = l.local_addr().expect("a bound listener has an address");
    drop(l);
    addr
}

/// The broker's side of one connection.
#[derive(Debug)]
pub struct PeerConn {
    stream: TcpStream,
    buf: BytesMut,
    broker: SocketAddr,
}

impl PeerConn {
    /// The next request, or `None` once the client has closed the connection. Cancel-safe:
    /// bytes read stay in the buffer. Panics on a frame or request header kcon's codec cannot
    /// decode: that is a bug in what kcon sent.
    pub async fn recv(&mut self) -> Option<Received> {
        let frames = FrameDecoder::default();
        loop {
            if let Some(frame) = frames.decode(&mut self.buf).expect("a request frame") {
                let (header, body) = decode_request_header(frame).expect("a request header");
                return Some(Received {
                    header,
                    body,
                    broker: self.broker,
                });
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

    /// Answers `to` with `response`.
    pub async fn reply<R: Request>(&mut self, to: &Received, response: &R::Response) {
        self.send_raw(&to.frame::<R>(response)).await;
    }

    /// Writes `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the client");
    }

    /// Writes `bytes` as they are; false when the client has gone.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Answers the ApiVersions handshake (v3) with every version kcon speaks.
    pub async fn handshake(&mut self) -> Received {
        self.handshake_with(&kcon_versions()).await
    }

    /// Answers the ApiVersions handshake (v3) with `ranges`.
    pub async fn handshake_with(&mut self, ranges: &[VersionRange]) -> Received {
        let r = self.recv().await.expect("ApiVersions");
        assert_eq!(r.api_key(), ApiKey::ApiVersions as i16);
        assert_eq!(r.version(), 3);
        self.reply::<ApiVersionsRequest>(&r, &api_versions(ranges))
            .await;
        r
    }
}
