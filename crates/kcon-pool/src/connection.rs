//! One TCP connection to a broker: requests pipelined, answers matched by correlation id,
//! cancellation-safe, versions negotiated once with ApiVersions.
//!
//! Three parties share a connection, each owning one thing:
//! - callers ([`Connection::send`]) encode a whole frame, register it in the pending table with
//!   a oneshot and an in-flight slot, and hand it to the writer, all in one synchronous step;
//!   then they wait on the oneshot;
//! - the writer task owns the socket's write half and writes whole frames from its channel;
//! - the reader task owns the read half, cuts frames, and hands each to the pending entry with
//!   its correlation id.
//!
//! A caller dropped at any await point can leave nothing half done: before registering it
//! holds at most a semaphore permit (dropped with it); after, the writer owns the frame and the
//! pending entry owns the permit, so the frame is written whole, the answer is read and thrown
//! away (the oneshot's receiver is gone), and only then is the slot released, because only
//! then has the broker stopped working on the request.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kcon_codec::frame::{FrameDecoder, SIZE_PREFIX_LEN};
use kcon_codec::header::peek_correlation_id;
use kcon_codec::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::message::{decode_response, encode_request};
use kcon_codec::versions::BrokerVersions;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::{self, Instant};
use tracing::{Instrument, Span, debug, debug_span, field};

use crate::config::PoolConfig;
use crate::error::{Corruption, Error, Misuse, Peer, Result, TransportError};

/// A connection to one broker, set up and ready: cheap to clone, closed when the last clone is
/// dropped (or when it fails).
///
/// Requests are pipelined: up to `max.in.flight.requests.per.connection` are on the wire at
/// once, more wait for a slot. Each is sent at the highest version both kcon and the broker
/// speak, learned by the ApiVersions handshake on connect.
///
/// Cancellation: dropping a [`send`](Connection::send) future at any point is safe; the
/// connection stays usable, and the request's slot is released when its (discarded) answer
/// arrives. A framing or decoding error, or a request timeout, closes the connection: every
/// request waiting on it fails once with that error, and so does every later one (a
/// [`Pool`](crate::Pool) then opens a fresh connection).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    versions: BrokerVersions,
    io: Io,
}

impl Connection {
    /// Resolves `peer.address` (`host:port`) to all its addresses and connects to the first that
    /// answers, trying them in turn, as the Java client's `client.dns.lookup=use_all_dns_ips`.
    /// Each try is bounded by `socket.connection.setup.timeout.ms`.
    pub async fn connect(peer: Peer, config: &PoolConfig) -> Result<Connection> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(peer.address.as_str())
            .await
            .map_err(|e| Error::io(&peer, e))?
            .collect();
        let mut last = Error::transport(&peer, TransportError::NoAddress);
        for addr in addrs {
            match Connection::connect_addr(peer.clone(), addr, config).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    debug!(%peer, %addr, error = %e, "connect failed; trying the next address");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects to `addr`, sets TCP_NODELAY and asks the broker for its API versions, all within
    /// `socket.connection.setup.timeout.ms` (librdkafka counts the handshake in it too).
    ///
    /// The config's `client.id`, `request.timeout.ms`, `max.in.flight.requests.per.connection`
    /// and `receive.message.max.bytes` apply to the connection.
    pub async fn connect_addr(
        peer: Peer,
        addr: SocketAddr,
        config: &PoolConfig,
    ) -> Result<Connection> {
        let timeout = config.socket_connection_setup_timeout;
        let setup = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| Error::io(&peer, e))?;
            // Requests are small and latency-bound: Nagle's algorithm would hold a heartbeat
            // back behind an unacknowledged fetch. The Java client and librdkafka set it too.
            stream.set_nodelay(true).map_err(|e| Error::io(&peer, e))?;
            let io = Io::start(stream, peer.clone(), config);
            let versions = handshake(&io).await?;
            debug!(%peer, %addr, "connected");
            Ok(Connection {
                inner: Arc::new(Inner { addr, versions, io }),
            })
        };
        // Dropping `setup` on timeout drops its `Io`, which closes the socket.
        match time::timeout(timeout, setup).await {
            Ok(result) => result,
            Err(_) => Err(Error::transport(
                &peer,
                TransportError::SetupTimeout { timeout },
            )),
        }
    }

    /// The broker at the other end.
    pub fn peer(&self) -> &Peer {
        &self.inner.io.shared.peer
    }

    /// The address connected to.
    pub fn socket_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The API versions the broker offered in its ApiVersions answer.
    pub fn versions(&self) -> &BrokerVersions {
        &self.inner.versions
    }

    /// The version `api` is sent at on this connection: the highest both sides speak. Build a
    /// request whose shape depends on the version with it, then [`send`](Connection::send) it.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.inner
            .versions
            .version(api)
            .map_err(|e| Error::from_request_codec(self.peer(), e))
    }

    /// Sends `request` at the negotiated version and waits for its answer, at most
    /// `request.timeout.ms` (slot wait included).
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response> {
        self.send_with_timeout(request, self.inner.io.request_timeout)
            .await
    }

    /// [`send`](Connection::send) with a timeout of its own, for requests the broker may hold
    /// longer than `request.timeout.ms` (JoinGroup waits for the rebalance).
    pub async fn send_with_timeout<R: Request>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|()| Error::Misuse(Misuse::UnsupportedApi { api_key: R::KEY }))?;
        let version = self.version(api)?;
        let frame = self.inner.io.exchange(request, version, timeout).await?;
        self.inner.io.decode::<R>(frame, version)
    }

    /// Requests sent and not answered yet, cancelled ones included: each holds an in-flight slot.
    pub fn in_flight(&self) -> usize {
        self.inner.io.shared.lock().pending.len()
    }

    /// Whether the connection has failed or been closed; it cannot be used again.
    pub fn is_closed(&self) -> bool {
        self.inner.io.shared.lock().dead.is_some()
    }

    /// The error that closed the connection, if it is closed.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner.io.shared.lock().dead.clone()
    }

    /// When the connection last sent or received, if nothing is in flight now.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let shared = &self.inner.io.shared;
        let st = shared.lock();
        if st.dead.is_some() || !st.pending.is_empty() {
            return None;
        }
        Some(shared.last_active())
    }

    /// When the connection closed, if it has.
    pub(crate) fn closed_at(&self) -> Option<Instant> {
        self.inner.io.shared.lock().closed_at
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", self.peer())
            .field("addr", &self.inner.addr)
            .field("in_flight", &self.in_flight())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Error code 35: the broker does not speak the version asked for.
const UNSUPPORTED_VERSION: i16 = 35;
/// Bytes of the correlation id, all of response header v0.
const CORRELATION_ID_LEN: usize = 4;
/// The ApiVersions version kcon asks with first: v3 carries the client software name and
/// version (KIP-511).
const API_VERSIONS_FIRST: i16 = 3;

/// Asks the broker for its API versions: v3 first, then, as the Java client does, the version
/// the broker says it speaks, or v0.
async fn handshake(io: &Io) -> Result<BrokerVersions> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kcon"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let frame = io
        .exchange(&request, API_VERSIONS_FIRST, io.request_timeout)
        .await?;
    // ApiVersions answers with response header v0 in every version, and every version's body
    // starts with the error code: so the code can be read before the layout of the rest is
    // known. That matters because a broker refusing v3 lays the rest out in whatever format it
    // likes: Kafka in v0's, librdkafka's mock cluster in v3's flexible one, which a strict v0
    // decode cannot read.
    let code = frame
        .get(CORRELATION_ID_LEN..CORRELATION_ID_LEN + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]));
    let fallback = match code {
        Some(0) => match decode_response::<ApiVersionsRequest>(frame, API_VERSIONS_FIRST) {
            Ok((_, answer)) => return Ok(BrokerVersions::from_response(&answer)),
            Err(e) => {
                // The stream is still aligned (the frame had a valid size), so a second try
                // at v0 is safe; the Java client retries the same way.
                debug!(peer = %io.shared.peer, error = %e, "ApiVersions v3 answer does not decode; retrying with v0");
                0
            }
        },
        Some(UNSUPPORTED_VERSION) => {
            // KIP-511: the broker lists its own ApiVersions range in a v0 body; retry at its
            // max (below the v3 just refused), or v0 if the body cannot be read as v0.
            decode_response::<ApiVersionsRequest>(frame, 0)
                .ok()
                .and_then(|(_, answer)| {
                    answer
                        .api_keys
                        .iter()
                        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                        .map(|k| k.max_version.clamp(0, API_VERSIONS_FIRST - 1))
                })
                .unwrap_or(0)
        }
        Some(error_code) => {
            return Err(Error::Broker {
                peer: io.shared.peer.clone(),
                api_key: ApiKey::ApiVersions as i16,
                error_code,
            });
        }
        None => 0,
    };
    let frame = io
        .exchange(&ApiVersionsRequest::default(), fallback, io.request_timeout)
        .await?;
    let answer = io.decode::<ApiVersionsRequest>(frame, fallback)?;
    if answer.error_code != 0 {
        return Err(Error::Broker {
            peer: io.shared.peer.clone(),
            api_key: ApiKey::ApiVersions as i16,
            error_code: answer.error_code,
        });
    }
    Ok(BrokerVersions::from_response(&answer))
}

/// The pipelined request/answer machinery of one socket, from before the handshake on.
struct Io {
    shared: Arc<Shared>,
    /// Whole frames for the writer task. Unbounded because the in-flight slots bound it: a frame
    /// is only queued by a caller holding a slot.
    frames: mpsc::UnboundedSender<Bytes>,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation_id: AtomicI32,
}

impl Io {
    /// Splits `stream` and spawns its reader and writer tasks.
    fn start(stream: TcpStream, peer: Peer, config: &PoolConfig) -> Io {
        let (rd, wr) = stream.into_split();
        let shared = Arc::new(Shared::new(
            peer,
            config.max_in_flight_requests_per_connection,
        ));
        let (frames, queued) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            rd,
            shared.clone(),
            FrameDecoder::new(config.receive_message_max_bytes),
        ));
        let writer = tokio::spawn(write_loop(wr, queued, shared.clone()));
        shared.adopt_tasks([reader.abort_handle(), writer.abort_handle()]);
        Io {
            shared,
            frames,
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            next_correlation_id: AtomicI32::new(0),
        }
    }

    /// Sends `request` at `version` and returns the answer's frame, in a debug span naming the
    /// API, version, broker, correlation id and latency (never the payload).
    async fn exchange<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes> {
        let span = debug_span!(
            "kafka_request",
            api = %ApiName(R::KEY),
            version,
            broker = self.shared.peer.id,
            correlation_id = field::Empty,
            latency_us = field::Empty,
        );
        let started = Instant::now();
        let result = self
            .round_trip(request, version, timeout, &span)
            .instrument(span.clone())
            .await;
        span.record("latency_us", started.elapsed().as_micros() as u64);
        match &result {
            Ok(_) => debug!(parent: &span, "answered"),
            Err(e) => debug!(parent: &span, error = %e, "failed"),
        }
        result
    }

    async fn round_trip<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
        span: &Span,
    ) -> Result<Bytes> {
        let deadline = Instant::now() + timeout;
        let timed_out = || {
            Error::transport(
                &self.shared.peer,
                TransportError::RequestTimeout {
                    api_key: R::KEY,
                    timeout,
                },
            )
        };
        // Waiting for a slot: nothing is registered or written yet, so giving up here (on
        // timeout, or because the caller dropped us) leaves the connection as it was.
        let slot = match time::timeout_at(deadline, self.shared.slots.clone().acquire_owned()).await
        {
            Err(_) => return Err(timed_out()),
            Ok(Err(_closed)) => return Err(self.shared.death()),
            Ok(Ok(slot)) => slot,
        };
        let (correlation_id, reply) = self.enqueue(request, version, slot)?;
        span.record("correlation_id", correlation_id);
        match time::timeout_at(deadline, reply).await {
            Ok(Ok(answer)) => answer,
            // The pending entry went without an answer: only when the shared state was torn
            // down, which `death` reports.
            Ok(Err(_)) => Err(self.shared.death()),
            Err(_) => {
                // The request is on the wire and the broker has not answered: close the
                // connection, as the Java client does on a request timeout. Keeping it would
                // keep the request's slot taken for an answer that may never come.
                let e = timed_out();
                self.shared.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Encodes `request`, registers it and hands it to the writer, in one synchronous step.
    fn enqueue<R: Request>(
        &self,
        request: &R,
        version: i16,
        slot: OwnedSemaphorePermit,
    ) -> Result<(i32, oneshot::Receiver<Result<Bytes>>)> {
        // Non-negative and wrapping, as the Java client's correlation ids. An id comes back into
        // use after 2^31 requests, long after its first request was answered or failed.
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let mut frame = BytesMut::new();
        encode_request(
            &mut frame,
            correlation_id,
            Some(&self.client_id),
            version,
            request,
        )
        .map_err(|e| Error::from_request_codec(&self.shared.peer, e))?;
        let (reply, answer) = oneshot::channel();
        let mut st = self.shared.lock();
        if let Some(e) = &st.dead {
            return Err(e.clone());
        }
        // Registered and queued under one lock: a connection that dies meanwhile either finds
        // the request registered (and fails it) or refused it just above; a request is never
        // sent unregistered, nor registered unsent.
        if self.frames.send(frame.freeze()).is_err() {
            // The writer stops only after a failure, which sets `dead` under this lock first.
            return Err(Error::transport(
                &self.shared.peer,
                TransportError::ClosedByClient,
            ));
        }
        st.pending.insert(correlation_id, Pending { reply, slot });
        drop(st);
        self.shared.touch();
        Ok((correlation_id, answer))
    }

    /// Decodes an answer; one that does not decode closes the connection.
    fn decode<R: Request>(&self, frame: Bytes, version: i16) -> Result<R::Response> {
        match decode_response::<R>(frame, version) {
            Ok((_, response)) => Ok(response),
            Err(e) => {
                let e = Error::corrupt(&self.shared.peer, Corruption::Codec(e));
                self.shared.fail(e.clone());
                Err(e)
            }
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // The last handle is gone: stop the tasks (they hold only `Shared`), which closes the
        // socket. Requests still registered have no receiver left.
        self.shared.fail(Error::transport(
            &self.shared.peer,
            TransportError::ClosedByClient,
        ));
    }
}

/// What the callers, the reader and the writer of one connection share.
struct Shared {
    peer: Peer,
    /// The in-flight slots: `max.in.flight.requests.per.connection` permits, FIFO, closed when
    /// the connection dies so that waiters fail at once.
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    /// Time base of `last_active_nanos`.
    born: Instant,
    last_active_nanos: AtomicU64,
}

struct State {
    pending: HashMap<i32, Pending>,
    /// Set once, by the first failure; every later request gets it.
    dead: Option<Error>,
    closed_at: Option<Instant>,
    /// The reader and writer tasks, aborted by the failure.
    tasks: Vec<AbortHandle>,
}

/// A request on the wire: where its answer goes, and its in-flight slot, released when the
/// entry is dropped (answer delivered or discarded, or connection dead).
struct Pending {
    reply: oneshot::Sender<Result<Bytes>>,
    slot: OwnedSemaphorePermit,
}

impl Pending {
    /// Gives the slot back, then the answer to the caller (if it is still waiting).
    ///
    /// In that order: a caller woken by its answer may send again at once, and must find the
    /// slot its last request held already free. Sending first left a window, on a busy
    /// machine, where `in_flight()` read 0 but a slot was still taken.
    fn answer(self, result: Result<Bytes>) {
        let Pending { reply, slot } = self;
        drop(slot);
        let _ = reply.send(result);
    }
}

impl Shared {
    fn new(peer: Peer, max_in_flight: usize) -> Shared {
        Shared {
            peer,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            state: Mutex::new(State {
                pending: HashMap::new(),
                dead: None,
                closed_at: None,
                tasks: Vec::new(),
            }),
            born: Instant::now(),
            last_active_nanos: AtomicU64::new(0),
        }
    }

    /// The state lock. Held only for short, synchronous steps; a panic while holding it leaves
    /// the state consistent (every step is a single map or field update), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn adopt_tasks(&self, tasks: [AbortHandle; 2]) {
        let mut st = self.lock();
        if st.dead.is_some() {
            // A task failed before its handle got here: stop the other one now.
            drop(st);
            tasks.iter().for_each(AbortHandle::abort);
            return;
        }
        st.tasks.extend(tasks);
    }

    /// Kills the connection with `error`, once: every pending request gets it, waiters for a
    /// slot are woken, the tasks stop. Later calls do nothing.
    fn fail(&self, error: Error) {
        let (pending, tasks) = {
            let mut st = self.lock();
            if st.dead.is_some() {
                return;
            }
            st.dead = Some(error.clone());
            st.closed_at = Some(Instant::now());
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.tasks),
            )
        };
        self.slots.close();
        debug!(peer = %self.peer, %error, pending = pending.len(), "connection closed");
        for (_, p) in pending {
            p.answer(Err(error.clone()));
        }
        for t in tasks {
            t.abort();
        }
    }

    /// The error the connection died of.
    fn death(&self) -> Error {
        self.lock()
            .dead
            .clone()
            .unwrap_or_else(|| Error::transport(&self.peer, TransportError::ClosedByClient))
    }

    /// Routes an answer to its request. An unknown correlation id is a broken stream: every
    /// request ever sent stays registered until answered, cancelled ones included.
    fn deliver(&self, frame: Bytes) -> Result<()> {
        let correlation_id = peek_correlation_id(&frame)
            .map_err(|e| Error::corrupt(&self.peer, Corruption::Codec(e)))?;
        let Some(pending) = self.lock().pending.remove(&correlation_id) else {
            return Err(Error::corrupt(
                &self.peer,
                Corruption::UnknownCorrelationId(correlation_id),
            ));
        };
        self.touch();
        // The caller may be gone (its future was dropped): then the answer is discarded here,
        // after its slot was released.
        pending.answer(Ok(frame));
        Ok(())
    }

    fn touch(&self) {
        let nanos = self.born.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last_active_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_active_nanos.load(Ordering::Relaxed))
    }
}

/// The smallest read buffer reserved at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The most reserved at once for a frame whose size is known: a large answer is read in steps
/// (the buffer still grows geometrically), so a size prefix alone never makes us allocate the
/// whole announced size before its bytes arrive.
const MAX_READ_RESERVE: usize = 1024 * 1024;
/// The writer's buffer: many small frames, one write.
const WRITE_BUFFER: usize = 64 * 1024;

/// Reads frames and routes them until the stream ends or breaks, then fails the connection.
async fn read_loop(mut rd: OwnedReadHalf, shared: Arc<Shared>, frames: FrameDecoder) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let error = loop {
        match frames.decode(&mut buf) {
            Ok(Some(frame)) => match shared.deliver(frame) {
                Ok(()) => continue,
                Err(e) => break e,
            },
            Ok(None) => {}
            Err(e) => break Error::corrupt(&shared.peer, Corruption::Codec(e)),
        }
        let missing = match frames.peek_size(&buf) {
            Ok(Some(size)) => size + SIZE_PREFIX_LEN - buf.len(),
            _ => 0,
        };
        buf.reserve(missing.clamp(READ_CHUNK, MAX_READ_RESERVE));
        match rd.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => {
                break Error::transport(&shared.peer, TransportError::Closed);
            }
            Ok(0) => {
                break Error::transport(
                    &shared.peer,
                    TransportError::ClosedMidFrame {
                        buffered: buf.len(),
                    },
                );
            }
            Ok(_) => {}
            Err(e) => break Error::io(&shared.peer, e),
        }
    };
    shared.fail(error);
}

/// Writes whole frames from the channel until every sender is gone or a write fails.
async fn write_loop(
    wr: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
    while let Some(frame) = queued.recv().await {
        if let Err(e) = write_batch(&mut wr, frame, &mut queued).await {
            shared.fail(Error::io(&shared.peer, e));
            return;
        }
    }
}

async fn write_batch(
    wr: &mut BufWriter<OwnedWriteHalf>,
    first: Bytes,
    queued: &mut mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    wr.write_all(&first).await?;
    // Frames queued while this one was written go out with it: one flush for many small
    // requests is what pipelining buys.
    while let Ok(next) = queued.try_recv() {
        wr.write_all(&next).await?;
    }
    wr.flush().await
}

/// An API key's protocol name, formatted only if the span is recorded.
struct ApiName(i16);

impl fmt::Display for ApiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ApiKey::try_from(self.0) {
            Ok(k) => write!(f, "{k:?}"),
            Err(()) => write!(f, "ApiKey({})", self.0),
        }
    }
}
