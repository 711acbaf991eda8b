//! A Schema Registry for tests: the REST API's calls that Confluent's serializers and kcon make,
//! served from memory on a loopback port, every request recorded; and the serializers
//! themselves (`tests/py/sr_serialize.py`, confluent-kafka's Avro, Protobuf and JSON Schema
//! serializers) writing records against it.
//!
//! No real Schema Registry can be installed on the machines kcon is built on, so this one
//! holds what the serializers register and answers as Confluent's registry does:
//! - `POST /subjects/{subject}/versions`: registers a schema (the same text, type and references
//!   get the same id and GUID across subjects), answers `{"id", "guid", "subject", "version", ...}`;
//! - `POST /subjects/{subject}`: looks a registered schema up, or 404 with error code 40403;
//! - `GET /schemas/ids/{id}`, `GET /schemas/guids/{guid}`: the schema, or 404 with error code
//!   40403; a Protobuf schema comes as it was registered (a base64 `FileDescriptorProto`) only
//!   with `format=serialized`, and otherwise as a stand-in for the Protobuf source the real
//!   registry would answer, which no decoder of kcon reads;
//! - `GET /subjects/{subject}/versions/{version|latest}`: a version, or 404 with error code
//!   40401 (subject) or 40402 (version).
//!
//! A [`Behaviour`] makes it misbehave: answer garbage, 500, hang, or refuse without credentials.
//! It runs on a thread and runtime of its own, so a test may block on a Python peer that calls it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::peers;

/// How the registry answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// As Confluent's registry.
    #[default]
    Normal,
    /// `200` with a body that is not JSON, to every GET.
    Garbage,
    /// `500` with the registry's error JSON, to every GET.
    ServerError,
    /// Reads every request and never answers.
    Hang,
}

/// One request the registry received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    id: u32,
    guid: String,
    schema: String,
    schema_type: Option<String>,
    references: Value,
}

#[derive(Debug, Default)]
struct State {
    schemas: Vec<Stored>,
    /// Subject → the ids of its versions, version 1 first.
    subjects: HashMap<String, Vec<u32>>,
    requests: Vec<Request>,
    behaviour: Behaviour,
    /// The `Authorization` header every request must carry, if set.
    require: Option<String>,
    /// A delay before every answer.
    delay: Duration,
}

/// A running test registry; stops when dropped.
pub struct TestRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// True while answers are held back (see [`TestRegistry::hold`]).
    held: tokio::sync::watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestRegistry {
    /// Starts a registry on a free loopback port.
    pub fn start() -> TestRegistry {
        let state = Arc::new(Mutex::new(State::default()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let (held, held_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the test registry");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(connection(stream, shared.clone(), held_rx.clone()));
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stop_rx => {}
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the test registry starts");
        TestRegistry {
            addr,
            state,
            held,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Its loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how it answers from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    /// Requires this `Authorization` header on every request (401 without it).
    pub fn require_authorization(&self, header: &str) {
        self.lock().require = Some(header.to_owned());
    }

    /// Waits `delay` before every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Holds every answer back from now on: requests are read and recorded, and answered only
    /// after [`release`](TestRegistry::release).
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Answers the requests held back by [`hold`](TestRegistry::hold), and answers at once again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The GET requests so far (kcon's: the serializers register with POST).
    pub fn gets(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .collect()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Registers `schema` of `schema_type` (`None` for Avro) under `subject`, as a serializer
    /// would; returns its id.
    pub fn register(&self, subject: &str, schema: &str, schema_type: Option<&str>) -> u32 {
        let body = json!({"schema": schema, "schemaType": schema_type});
        let answer = register(&mut self.lock(), subject, &body);
        answer["id"].as_u64().expect("an id") as u32
    }

    /// The GUID of schema `id`.
    pub fn guid(&self, id: u32) -> String {
        guid(id)
    }

    /// The ids of registered schemas.
    pub fn ids(&self) -> Vec<u32> {
        self.lock().schemas.iter().map(|s| s.id).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may have stopped already: nothing to stop.
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn guid(id: u32) -> String {
    format!("{id:08x}-1c0e-4d5a-9b6f-{:012x}", u64::from(id) * 7919)
}

async fn connection(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.to_owned());
                }
            }
        }
        let mut body = vec![0; length.min(16 << 20)];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let (raw_path, query) = split_target(&target);
        let path = decode(&raw_path);
        let request = Request {
            method,
            path,
            query,
            authorization,
        };
        let (behaviour, delay) = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.requests.push(request.clone());
            (s.behaviour.clone(), s.delay)
        };
        if behaviour == Behaviour::Hang {
            // Keep the connection open without a word, until the client gives up.
            let mut sink = Vec::new();
            let _ = read.read_to_end(&mut sink).await;
            return;
        }
        // The registry stopping drops the sender: nothing is held any more.
        let _ = held.wait_for(|held| !*held).await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, body) = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            answer(&mut s, &request, &raw_path, &body, &behaviour)
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Other",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

fn split_target(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    (path.to_owned(), query)
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: u16, code: u32, message: &str) -> (u16, String) {
    (
        status,
        json!({"error_code": code, "message": message}).to_string(),
    )
}

/// The answer to `r`, whose path as sent (percent-encoded) is `raw_path`.
fn answer(
    s: &mut State,
    r: &Request,
    raw_path: &str,
    body: &[u8],
    behaviour: &Behaviour,
) -> (u16, String) {
    if let Some(required) = &s.require
        && r.authorization.as_deref() != Some(required.as_str())
    {
        return error(401, 401, "Unauthorized");
    }
    if r.method == "GET" {
        match behaviour {
            Behaviour::Garbage => return (200, "<html>this is not the registry</html>".into()),
            Behaviour::ServerError => return error(500, 50001, "Error in the backend data store"),
            _ => {}
        }
    }
    let segments: Vec<String> = raw_path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let serialized = r.query.get("format").map(String::as_str) == Some("serialized");
    match (r.method.as_str(), segments.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            (200, register(s, subject, &body).to_string())
        }
        ("POST", ["subjects", subject]) => {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(found) = find(s, &body) else {
                return error(404, 40403, "Schema not found");
            };
            let versions = s.subjects.get(*subject).cloned().unwrap_or_default();
            match versions.iter().position(|id| *id == found.id) {
                Some(v) => (
                    200,
                    describe(&found, Some((subject, v + 1)), true).to_string(),
                ),
                None => error(404, 40403, "Schema not found"),
            }
        }
        ("GET", ["schemas", "ids", id]) => {
            match id
                .parse::<u32>()
                .ok()
                .and_then(|id| s.schemas.iter().find(|x| x.id == id))
            {
                Some(found) => (200, describe(found, None, serialized).to_string()),
                None => error(404, 40403, "Schema not found"),
            }
        }
        ("GET", ["schemas", "guids", g]) => match s.schemas.iter().find(|x| x.guid == *g) {
            Some(found) => (200, describe(found, None, serialized).to_string()),
            None => error(404, 40403, "Schema not found"),
        },
        ("GET", ["subjects", subject, "versions", version]) => {
            let Some(versions) = s.subjects.get(*subject) else {
                return error(404, 40401, "Subject not found");
            };
            let index = match *version {
                "latest" => versions.len().checked_sub(1),
                v => v
                    .parse::<usize>()
                    .ok()
                    .and_then(|v| v.checked_sub(1))
                    .filter(|i| *i < versions.len()),
            };
            let Some(index) = index else {
                return error(404, 40402, "Version not found");
            };
            let id = versions[index];
            let found = s.schemas.iter().find(|x| x.id == id).expect("stored");
            (
                200,
                describe(found, Some((subject, index + 1)), serialized).to_string(),
            )
        }
        _ => error(404, 404, "HTTP 404 Not Found"),
    }
}

fn find(s: &State, body: &Value) -> Option<Stored> {
    let schema = body["schema"].as_str()?;
    let schema_type = body["schemaType"]
        .as_str()
        .filter(|t| *t != "AVRO")
        .map(str::to_owned);
    let references = body.get("references").cloned().unwrap_or(json!([]));
    s.schemas
        .iter()
        .find(|x| {
            x.schema == schema
                && x.schema_type == schema_type
                && same_refs(&x.references, &references)
        })
        .cloned()
}

fn same_refs(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::Null => json!([]),
        v => v.clone(),
    };
    norm(a) == norm(b)
}

fn register(s: &mut State, subject: &str, body: &Value) -> Value {
    let stored = match find(s, body) {
        Some(found) => found,
        None => {
            let id = s.schemas.len() as u32 + 1;
            let stored = Stored {
                id,
                guid: guid(id),
                schema: body["schema"].as_str().unwrap_or_default().to_owned(),
                schema_type: body["schemaType"]
                    .as_str()
                    .filter(|t| *t != "AVRO")
                    .map(str::to_owned),
                references: body.get("references").cloned().unwrap_or(json!([])),
            };
            s.schemas.push(stored.clone());
            stored
        }
    };
    let versions = s.subjects.entry(subject.to_owned()).or_default();
    let version = match versions.iter().position(|id| *id == stored.id) {
        Some(v) => v + 1,
        None => {
            versions.push(stored.id);
            versions.len()
        }
    };
    describe(&stored, Some((subject, version)), true)
}

fn describe(x: &Stored, version: Option<(&str, usize)>, serialized: bool) -> Value {
    let protobuf = x.schema_type.as_deref() == Some("PROTOBUF");
    let schema = if protobuf && !serialized {
        "syntax = \"proto3\"; // Protobuf source, as the registry answers without format=serialized"
            .to_owned()
    } else {
        x.schema.clone()
    };
    let mut v = json!({
        "id": x.id,
        "guid": x.guid,
        "schema": schema,
        "references": x.references,
    });
    if let Some(t) = &x.schema_type {
        v["schemaType"] = json!(t);
    }
    if let Some((subject, version)) = version {
        v["subject"] = json!(subject);
        v["version"] = json!(version);
    }
    v
}

/// A record as confluent-kafka's serializers wrote it.
#[derive(Debug, Clone)]
pub struct Serialized {
    /// The key's or value's bytes.
    pub bytes: Vec<u8>,
    /// The headers the serializer added (the schema id header, with `headers: true`).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The value as the serializer's side reads it back, as JSON.
    pub expected: Value,
}

/// Runs `tests/py/sr_serialize.py` against the registry at `url` with `records` (see the
/// script), `config` added to the Python client's. Blocks: call it from `spawn_blocking` in an
/// async test.
pub fn serialize(url: &str, config: Value, topic: &str, records: Value) -> Vec<Serialized> {
    let answer = peers::run(
        "sr_serialize.py",
        &json!({"registry": url, "config": config, "topic": topic, "records": records}),
    );
    answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| Serialized {
            bytes: peers::unhex(r["bytes"].as_str().expect("bytes")),
            headers: r["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_owned(), peers::opt_bytes(&h[1])))
                .collect(),
            expected: r["expected"].clone(),
        })
        .collect()
}

/// [`serialize`] from an async test, on a blocking thread.
pub async fn serialize_async(
    url: String,
    config: Value,
    topic: &str,
    records: Value,
) -> Vec<Serialized> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || serialize(&url, config, &topic, records))
        .await
        .expect("the serializer's thread")
}
