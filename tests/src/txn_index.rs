//! What Tansu lacks for read_committed readers, added by a proxy in front of it: the aborted
//! transactions of each partition in read_committed Fetch answers.
//!
//! Tansu writes transaction markers but lists no aborted transactions in its Fetch answers
//! (DESIGN.md, "The brokers"), so a read_committed reader there, kcon or librdkafka, sees the
//! records of aborted transactions. [`AbortedIndex`] passes every frame between a client and
//! Tansu as it is, except the answers to read_committed Fetch requests: for each partition in
//! such an answer it reads the partition's whole log from Tansu (read_uncommitted, on a
//! connection of its own), finds the transactions an ABORT marker ended, and lists those that
//! overlap the records answered (producer id and first offset), as Apache Kafka's
//! aborted-transaction index does. The answer is encoded again at the version the client asked
//! for. Clients then filter aborted records by themselves, which is what the tests check.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::fetch_response::AbortedTransaction;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kcon_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kcon_codec::records::{ControlRecordType, DecodeOptions, RecordBatches};
use kcon_pool::{Connection, Peer, PoolConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::brokers::{Tansu, proxy_listener};
use crate::frames::read_frame;

/// A read_committed Fetch request: where each partition was asked from.
#[derive(Debug, Clone)]
struct AskedFetch {
    version: i16,
    /// (topic name or id as text, partition) to the fetch offset.
    from: HashMap<(String, i32), i64>,
}

/// The proxy; dropping it stops it.
#[derive(Debug)]
pub struct AbortedIndex {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AbortedIndex {
    /// Starts the proxy on `listener`, in front of the broker at `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("a bound listener's address");
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(upstream).await else {
                    continue;
                };
                connections.spawn(relay(client, broker, upstream));
            }
        });
        AbortedIndex { addr, task }
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for AbortedIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Tansu broker advertising the proxy's address, and the proxy in front of it: every
/// connection of a client that bootstraps at the proxy goes through it.
pub async fn tansu_with_aborted_index() -> (Tansu, AbortedIndex) {
    let (listener, port) = proxy_listener().await;
    let tansu = Tansu::start_advertising(port);
    let proxy = AbortedIndex::start(listener, tansu.addr());
    (tansu, proxy)
}

async fn relay(client: TcpStream, broker: TcpStream, upstream: SocketAddr) {
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    let asked: Arc<Mutex<HashMap<i32, AskedFetch>>> = Arc::default();
    tokio::select! {
        () = requests(client_read, broker_write, asked.clone()) => {}
        () = answers(broker_read, client_write, asked, upstream) => {}
    }
}

async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    asked: Arc<Mutex<HashMap<i32, AskedFetch>>>,
) {
    while let Some(frame) = read_frame(&mut from).await {
        if let Some((correlation, fetch)) = read_committed_fetch(&frame[4..]) {
            asked.lock().await.insert(correlation, fetch);
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// The correlation id and partitions of a read_committed Fetch request, or `None` for any
/// other request.
fn read_committed_fetch(body: &[u8]) -> Option<(i32, AskedFetch)> {
    if body.len() < 8 || i16::from_be_bytes([body[0], body[1]]) != ApiKey::Fetch as i16 {
        return None;
    }
    let version = i16::from_be_bytes([body[2], body[3]]);
    let mut buf = Bytes::copy_from_slice(body);
    let header_version = ApiKey::Fetch.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version).ok()?;
    let request = FetchRequest::decode(&mut buf, version).ok()?;
    if request.isolation_level != 1 {
        return None;
    }
    let mut from = HashMap::new();
    for t in &request.topics {
        for p in &t.partitions {
            from.insert(
                (topic_key(&t.topic.0, t.topic_id), p.partition),
                p.fetch_offset,
            );
        }
    }
    Some((header.correlation_id, AskedFetch { version, from }))
}

/// A topic as a Fetch of its version names it: by name below v13, by id from v13.
fn topic_key(name: &StrBytes, id: impl std::fmt::Display) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

async fn answers(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    asked: Arc<Mutex<HashMap<i32, AskedFetch>>>,
    upstream: SocketAddr,
) {
    // A connection of the proxy's own to the broker, for reading whole logs.
    let mut reader: Option<Connection> = None;
    while let Some(frame) = read_frame(&mut from).await {
        let mut out = frame;
        if out.len() >= 8 {
            let correlation = i32::from_be_bytes([out[4], out[5], out[6], out[7]]);
            if let Some(fetch) = asked.lock().await.remove(&correlation) {
                if reader.is_none() {
                    let config = PoolConfig::default();
                    let peer = Peer::bootstrap(upstream.to_string());
                    reader = Connection::connect_addr(peer, upstream, &config).await.ok();
                }
                if let Some(conn) = &reader
                    && let Some(rewritten) = with_aborted(&out[4..], &fetch, conn).await
                {
                    out = rewritten;
                }
            }
        }
        if to.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The answer `body` (header included) to `fetch`, with every partition's aborted
/// transactions listed; `None` when it does not decode.
async fn with_aborted(body: &[u8], fetch: &AskedFetch, conn: &Connection) -> Option<Vec<u8>> {
    let version = fetch.version;
    let header_version = ApiKey::Fetch.response_header_version(version);
    let mut buf = Bytes::copy_from_slice(body);
    let header = ResponseHeader::decode(&mut buf, header_version).ok()?;
    let mut answer = FetchResponse::decode(&mut buf, version).ok()?;
    for t in &mut answer.responses {
        let key = topic_key(&t.topic.0, t.topic_id);
        let (name, topic_id) = (t.topic.0.clone(), t.topic_id);
        let named = FetchTopic::default()
            .with_topic(TopicName(name))
            .with_topic_id(topic_id);
        for p in &mut t.partitions {
            if p.error_code != 0 {
                continue;
            }
            let start = fetch
                .from
                .get(&(key.clone(), p.partition_index))
                .copied()
                .unwrap_or(0);
            let end = last_offset(p.records.as_ref()).unwrap_or(start);
            let aborted = aborted_in_log(conn, &named, p.partition_index).await?;
            p.aborted_transactions = Some(
                aborted
                    .into_iter()
                    .filter(|a| a.marker >= start && a.first <= end)
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first)
                    })
                    .collect(),
            );
        }
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    answer.encode(&mut out, version).ok()?;
    let mut frame = (out.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&out);
    Some(frame)
}

/// The offset of the last record in `records`.
fn last_offset(records: Option<&Bytes>) -> Option<i64> {
    let mut last = None;
    for batch in RecordBatches::new(records?.clone(), DecodeOptions::default()) {
        last = Some(batch.ok()?.last_offset());
    }
    last
}

/// One aborted transaction of a log: its producer, its first offset and its marker's.
#[derive(Debug, Clone, Copy)]
struct Aborted {
    producer_id: i64,
    first: i64,
    marker: i64,
}

/// Every transaction an ABORT marker ended in the partition's log, read whole.
async fn aborted_in_log(
    conn: &Connection,
    topic: &FetchTopic,
    partition: i32,
) -> Option<Vec<Aborted>> {
    let mut open: BTreeMap<i64, i64> = BTreeMap::new();
    let mut aborted = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            // Tansu answers a Fetch with max_wait_ms=0 with no partitions.
            .with_max_wait_ms(10)
            .with_max_bytes(16 << 20)
            .with_isolation_level(0)
            .with_topics(vec![topic.clone().with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(16 << 20),
                    ])]);
        let answer = conn.send(&request).await.ok()?;
        let p = answer.responses.first()?.partitions.first()?;
        let mut progressed = false;
        if let Some(bytes) = &p.records {
            for batch in RecordBatches::new(bytes.clone(), DecodeOptions::default()) {
                let batch = batch.ok()?;
                progressed = true;
                offset = batch.next_offset();
                let pid = batch.producer_id();
                if batch.is_control() {
                    let marker = batch.records().next()?.ok()?;
                    let first = open.remove(&pid);
                    if let (Some(first), Ok(Some(c))) = (first, marker.control())
                        && c.kind == ControlRecordType::Abort
                    {
                        aborted.push(Aborted {
                            producer_id: pid,
                            first,
                            marker: batch.base_offset(),
                        });
                    }
                } else if batch.is_transactional() {
                    open.entry(pid).or_insert(batch.base_offset());
                }
            }
        }
        if !progressed || offset >= p.high_watermark {
            return Some(aborted);
        }
    }
}
