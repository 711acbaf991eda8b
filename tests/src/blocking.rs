//! A minimal blocking Kafka connection built only on kcon-codec, for tests that check the codec
//! against real brokers before (and independently of) kcon's own connection pool.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kcon_codec::frame::FrameDecoder;
use kcon_codec::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::message::{decode_response, encode_request};
use kcon_codec::versions::BrokerVersions;

/// One TCP connection that sends a request and waits for its answer.
#[derive(Debug)]
pub struct BlockingConnection {
    stream: TcpStream,
    next_correlation_id: i32,
    frames: FrameDecoder,
    buf: BytesMut,
    versions: BrokerVersions,
}

impl BlockingConnection {
    /// Connects and asks for the broker's API versions (v3, falling back to v0 as the Java
    /// client does when the broker answers UNSUPPORTED_VERSION).
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut conn = BlockingConnection {
            stream,
            next_correlation_id: 1,
            frames: FrameDecoder::default(),
            buf: BytesMut::new(),
            versions: BrokerVersions::default(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kcon-tests"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        let resp = match conn.send_at(&req, 3) {
            Ok(r) if r.error_code == 0 => Ok(r),
            _ => conn.send_at(&ApiVersionsRequest::default(), 0),
        };
        let resp = resp.map_err(std::io::Error::other)?;
        conn.versions = BrokerVersions::from_response(&resp);
        Ok(conn)
    }

    /// The broker's versions.
    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// Sends `req` at the negotiated version and returns the version used with the answer.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<(i16, R::Response), String> {
        let api = ApiKey::try_from(R::KEY).map_err(|()| format!("unknown api {}", R::KEY))?;
        let version = self.versions.version(api).map_err(|e| e.to_string())?;
        self.send_at(req, version).map(|r| (version, r))
    }

    /// Sends `req` at `version` and waits for its answer.
    pub fn send_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, String> {
        let (correlation_id, frame) = self.exchange(req, version)?;
        let (header, resp) = decode_response::<R>(frame, version).map_err(|e| e.to_string())?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "answer to correlation id {}, expected {correlation_id}",
                header.correlation_id
            ));
        }
        Ok(resp)
    }

    /// Sends `req` at `version` and returns its answer's frame as it came (header and body,
    /// without the size prefix), undecoded, for tests that look at the bytes themselves.
    pub fn send_raw_at<R: Request>(&mut self, req: &R, version: i16) -> Result<Bytes, String> {
        self.exchange(req, version).map(|(_, frame)| frame)
    }

    /// Sends `req` at `version`; returns its correlation id and the next frame that comes back.
    fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<(i32, Bytes), String> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut out = BytesMut::new();
        let client = StrBytes::from_static_str("kcon-tests");
        encode_request(&mut out, correlation_id, Some(&client), version, req)
            .map_err(|e| e.to_string())?;
        self.stream.write_all(&out).map_err(|e| e.to_string())?;
        loop {
            if let Some(f) = self
                .frames
                .decode(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                return Ok((correlation_id, f));
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
