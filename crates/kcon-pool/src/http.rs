//! HTTP/1.1 for kcon's clients of HTTP services (the Schema Registry, an OAuth token
//! endpoint): URLs taken apart, and hyper's client connection over a TCP stream or a
//! tokio-rustls one. No connection pool and no resolver of its own: the caller keeps
//! connections if it wants them.

use std::error::Error as StdError;

use bytes::Bytes;
use hyper::body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// An `http://` or `https://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpEndpoint {
    /// `https`.
    pub tls: bool,
    /// `host:port` as dialled (brackets kept around an IPv6 address; the scheme's port when
    /// the URL names none).
    pub authority: String,
    /// The host alone: the TLS server name.
    pub host: String,
    /// The path, without a trailing `/` (empty for none).
    pub path: String,
    /// `user:password` from the URL, percent-decoded.
    pub user_info: Option<String>,
}

impl HttpEndpoint {
    /// Takes `url` apart; `None` unless it is `http://` or `https://` (any case) with a host,
    /// a port from 1 to 65535 if any, and no query or fragment.
    pub fn parse(url: &str) -> Option<HttpEndpoint> {
        let (tls, rest) = if let Some(r) = strip_prefix_ignore_case(url, "https://") {
            (true, r)
        } else {
            (false, strip_prefix_ignore_case(url, "http://")?)
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return None;
        }
        let (user_info, host_port) = match authority.rfind('@') {
            Some(i) => (Some(percent_decode(&authority[..i])?), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = if let Some(r) = host_port.strip_prefix('[') {
            let end = r.find(']')?;
            let host = &r[..end];
            let port = match &r[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{host}]"), port)
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (host_port.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" || host.contains(['[', ']']) && !host.starts_with('[') {
            return None;
        }
        let port: u16 = match port {
            Some(p) => p.parse().ok().filter(|p| *p > 0)?,
            None if tls => 443,
            None => 80,
        };
        Some(HttpEndpoint {
            tls,
            authority: format!("{host}:{port}"),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            path: path.trim_end_matches('/').to_owned(),
            user_info,
        })
    }

    /// The URL without its user info, for messages.
    pub fn shown(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority,
            self.path
        )
    }

    /// A connection to the endpoint, ready for requests with bodies of type `B`: TCP, then
    /// TLS by `tls` for `https` (an error if `tls` is `None` then), then hyper's handshake.
    /// Unbounded in time: the caller bounds it. The connection's own task ends when the sender
    /// is dropped or the server closes it. The error says what failed, without the URL.
    pub async fn connect<B>(&self, tls: Option<&TlsConnector>) -> Result<SendRequest<B>, String>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !self.tls {
            return handshake(tcp).await;
        }
        let Some(tls) = tls else {
            return Err("no TLS settings".to_owned());
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| format!("{} is not a valid TLS server name", self.host))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        handshake(stream).await
    }
}

async fn handshake<S, B>(io: S) -> Result<SendRequest<B>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    // The connection's task ends when its sender is dropped or the server closes it.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The body of a request that sends `bytes` (a form, a JSON document).
pub type FullBody = http_body_util::Full<Bytes>;

/// The whole body of an answer, read up to `limit` bytes: an answer that goes on past it, or
/// is cut, fails in words (`an answer larger than N bytes`, `the answer was cut: ...`).
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, String>
where
    B: Body,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(format!("an answer larger than {limit} bytes"))
        }
        Err(e) => Err(format!("the answer was cut: {e}")),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `s` percent-encoded as `application/x-www-form-urlencoded` writes a value: letters,
/// digits and `*-._` kept, space as `+`, every other byte as `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_is_read_whole_up_to_its_limit_and_refused_past_it() {
        let body = || FullBody::new(Bytes::from_static(b"0123456789"));
        assert_eq!(read_body(body(), 10).await.unwrap(), &b"0123456789"[..]);
        assert_eq!(
            read_body(body(), 9).await.unwrap_err(),
            "an answer larger than 9 bytes"
        );
        // A body that breaks off.
        let frames: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(hyper::body::Frame::data(Bytes::from_static(b"01"))),
            Err(std::io::Error::other("reset")),
        ];
        let cut = http_body_util::StreamBody::new(stream_of(frames));
        let e = read_body(cut, 10).await.unwrap_err();
        assert!(e.starts_with("the answer was cut: "), "{e}");
    }

    /// The frames as a stream, without a stream crate: each polled in turn.
    fn stream_of<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
        struct Items<T>(std::collections::VecDeque<T>);
        impl<T: Unpin> futures_core::Stream for Items<T> {
            type Item = T;
            fn poll_next(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<T>> {
                std::task::Poll::Ready(self.0.pop_front())
            }
        }
        Items(items.into())
    }

    #[test]
    fn urls_are_taken_apart() {
        let e = HttpEndpoint::parse("https://u%40x:p%3Aw@registry.example:8443/sr/").unwrap();
        assert!(e.tls);
        assert_eq!(e.authority, "registry.example:8443");
        assert_eq!(e.host, "registry.example");
        assert_eq!(e.path, "/sr");
        assert_eq!(e.user_info.as_deref(), Some("u@x:p:w"));
        assert_eq!(e.shown(), "https://registry.example:8443/sr");
        let e = HttpEndpoint::parse("http://[::1]:8081").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.host.as_str()),
            ("[::1]:8081", "::1")
        );
        assert_eq!(HttpEndpoint::parse("HTTP://h").unwrap().authority, "h:80");
        assert_eq!(
            HttpEndpoint::parse("https://h/oauth2/token")
                .unwrap()
                .authority,
            "h:443"
        );
        for bad in [
            "ftp://h",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h/?q",
            "h:8081",
        ] {
            assert_eq!(HttpEndpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn form_values_are_encoded_as_browsers_encode_them() {
        assert_eq!(form_encode("a b+c/d=é*~"), "a+b%2Bc%2Fd%3D%C3%A9*%7E");
        assert_eq!(form_encode("kafka:read"), "kafka%3Aread");
    }
}
