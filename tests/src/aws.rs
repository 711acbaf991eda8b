//! Stand-ins for the AWS endpoints that AWS's credential chain asks (EC2 instance metadata, the
//! ECS container endpoint, STS), and a scripted broker that keeps the MSK IAM token a client
//! sends, for the tests of `sasl.oauthbearer.method=aws_msk_iam`. No AWS account is needed.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_scripted::{Answer, Broker, Received};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request a stand-in was sent.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, `POST`.
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Request {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a stand-in answers a request with.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` with no body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// With header `name: value` too.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// What a stand-in answers each request with.
pub type Route = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

/// An HTTP/1.1 endpoint on 127.0.0.1 answering each request with `route` (one request per
/// connection), keeping every request it was sent.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl StandIn {
    /// Starts the stand-in.
    pub async fn start(route: Route) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let Some(request) = read_request(&mut tcp).await else {
                    continue;
                };
                let reply = route(&request);
                seen.lock().unwrap().push(request);
                let headers: String = reply
                    .headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}\r\n"))
                    .collect();
                let answer = format!(
                    "HTTP/1.1 {} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        });
        StandIn { url, requests }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(tcp: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&read).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let mut lines = text[..end].lines();
        let mut first = lines.next()?.split(' ');
        let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        if read.len() >= end + 4 + length {
            let body = String::from_utf8_lossy(&read[end + 4..end + 4 + length]).into_owned();
            return Some(Request {
                method,
                path,
                headers,
                body,
            });
        }
    }
}

/// Credentials as the ECS endpoint and instance metadata give them (JSON), expiring in an hour.
pub fn credentials_json(key: &str, secret: &str, session: &str) -> String {
    credentials_json_expiring(key, secret, session, 3600)
}

/// [`credentials_json`], expiring in `seconds`.
pub fn credentials_json_expiring(key: &str, secret: &str, session: &str, seconds: u64) -> String {
    serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "Token": session,
        "Expiration": time_in(seconds),
        "LastUpdated": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// A stand-in of STS answering `action` (`AssumeRole`, `AssumeRoleWithWebIdentity`) with
/// these credentials, expiring in an hour, and any other request with 400.
pub async fn sts(
    action: &'static str,
    key: &'static str,
    secret: &'static str,
    session: &'static str,
) -> StandIn {
    StandIn::start(Box::new(move |r| {
        if r.method == "POST" && r.body.contains(&format!("Action={action}&")) {
            Reply::ok(sts_answer(action, key, secret, session))
        } else {
            Reply::status(400)
        }
    }))
    .await
}

/// STS's answer to `action` (XML).
fn sts_answer(action: &str, key: &str, secret: &str, session: &str) -> String {
    format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <{action}Result>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{session}</SessionToken><Expiration>{}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/msk/kcon</Arn>\
         <AssumedRoleId>AROAEXAMPLE:kcon</AssumedRoleId></AssumedRoleUser>\
         </{action}Result>\
         <ResponseMetadata><RequestId>kcon-test</RequestId></ResponseMetadata>\
         </{action}Response>",
        in_an_hour()
    )
}

/// An hour from now, as AWS writes times.
fn in_an_hour() -> String {
    time_in(3600)
}

/// `seconds` from now, as AWS writes times (RFC 3339, UTC, whole seconds).
fn time_in(seconds: u64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A broker that enables OAUTHBEARER, refuses every token (SASL_AUTHENTICATION_FAILED) and
/// keeps the initial responses it was sent.
pub async fn token_keeper() -> Broker {
    Broker::start(Arc::new(|r: &Received| {
        match ApiKey::try_from(r.api_key()) {
            Ok(ApiKey::SaslHandshake) => r.answer::<SaslHandshakeRequest>(
                &SaslHandshakeResponse::default()
                    .with_mechanisms(vec![StrBytes::from_static_str("OAUTHBEARER")]),
            ),
            Ok(ApiKey::SaslAuthenticate) => r.answer::<SaslAuthenticateRequest>(
                &SaslAuthenticateResponse::default()
                    .with_error_code(58)
                    .with_error_message(Some(StrBytes::from_static_str("kept, not checked"))),
            ),
            _ => Answer::Silent,
        }
    }))
    .await
}

/// The signed URLs of the MSK IAM tokens `broker` was sent, decoded.
pub fn tokens_sent(broker: &Broker) -> Vec<String> {
    broker
        .stats
        .requests::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate)
        .into_iter()
        .map(|r| {
            let message = String::from_utf8(r.auth_bytes.to_vec()).expect("text");
            let token = message
                .split('\x01')
                .find_map(|f| f.strip_prefix("auth=Bearer "))
                .unwrap_or_else(|| panic!("no bearer token in {message:?}"));
            String::from_utf8(URL_SAFE_NO_PAD.decode(token).expect("base64url")).expect("a URL")
        })
        .collect()
}

/// Query parameter `name` of `url`, as written.
pub fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    url.split_once('?')?
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
