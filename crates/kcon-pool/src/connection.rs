//! One connection to a broker (TCP, or TLS over TCP): requests pipelined, answers matched by
//! correlation id, cancellation-safe, versions negotiated once with ApiVersions, SASL
//! authentication on setup and re-authentication before the session expires (KIP-368).
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
//!
//! The reader and writer are generic over the stream's halves: a TCP stream's own halves, or
//! the halves of a TLS stream (`tokio::io::split`). Monomorphised, so plaintext connections
//! run exactly the code they ran before TLS existed.
//!
//! Re-authentication (KIP-368) pauses the connection: from the SaslHandshake until the last
//! SaslAuthenticate is answered, no other request may be sent (the broker would refuse it in
//! the middle of an exchange). See [`Shared::pause`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kcon_codec::frame::{FrameDecoder, SIZE_PREFIX_LEN};
use kcon_codec::header::peek_correlation_id;
use kcon_codec::kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::message::decode_response;
use kcon_codec::parts::{Frame, encode_request_frame};
use kcon_codec::versions::BrokerVersions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::{self, Instant};
use tracing::{Instrument, Span, debug, debug_span, field};

use kcon_core::ConfigError;

use crate::config::PoolConfig;
use crate::error::{Corruption, Error, Misuse, Peer, Result, SetupStage, TlsError, TransportError};
use crate::rebootstrap::AnswerWatch;
use crate::sasl::Sasl;
use crate::step_down::{Refusal, StepDown};
use crate::throttle::throttle_time_ms;
use crate::tls::Tls;

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
///
/// Security (`security.protocol`): TLS is set up right after the TCP connect, SASL right after
/// the ApiVersions handshake. When the broker gives the SASL session a lifetime (or an
/// OAUTHBEARER token has one), the connection re-authenticates before it ends, holding new
/// requests back meanwhile; a failed re-authentication closes the connection with
/// [`Error::Authentication`].
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    versions: BrokerVersions,
    io: Io,
}

/// A pool's TLS and SASL settings, loaded once (certificates read, keys parsed) and shared by
/// every connection it makes.
#[derive(Clone, Default)]
pub(crate) struct Security {
    tls: Option<Tls>,
    sasl: Option<Sasl>,
}

impl Security {
    /// The settings of `config`, which has been validated.
    pub(crate) fn from_config(config: &PoolConfig) -> Result<Security, ConfigError> {
        Ok(Security {
            tls: Tls::from_config(config)?,
            sasl: Sasl::from_config(config)?,
        })
    }
}

impl Connection {
    /// Resolves `peer.address` (`host:port`) to all its addresses and connects to the first that
    /// answers, trying them in turn, as the Java client's `client.dns.lookup=use_all_dns_ips`.
    /// Each try is bounded by `socket.connection.setup.timeout.ms`.
    ///
    /// The config's security settings are validated and its certificate files read on every
    /// call; a [`Pool`](crate::Pool) does that once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future closes the socket being set up (at whatever step: the TCP
    /// connect, TLS, ApiVersions, SASL); nothing is left open.
    pub async fn connect(peer: Peer, config: &PoolConfig) -> Result<Connection> {
        let spare = Arc::default();
        Connection::connect_secured(peer, config, &security(config)?, None, None, &spare).await
    }

    /// [`connect`](Connection::connect) with the security settings loaded already, what the
    /// pool knows of the broker's versions beyond what it advertises, where the pool watches
    /// its answers, and the maps its connections read large frames into ([`SpareMap`]).
    pub(crate) async fn connect_secured(
        peer: Peer,
        config: &PoolConfig,
        security: &Security,
        step_down: Option<&Arc<StepDown>>,
        watch: Option<&Arc<AnswerWatch>>,
        spare: &Arc<SpareMap>,
    ) -> Result<Connection> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(peer.address.as_str())
            .await
            .map_err(|e| Error::io(&peer, e))?
            .collect();
        let mut last = Error::transport(&peer, TransportError::NoAddress);
        for addr in addrs {
            match Connection::connect_addr_secured(
                peer.clone(),
                addr,
                config,
                security,
                step_down,
                watch,
                spare,
            )
            .await
            {
                Ok(conn) => return Ok(conn),
                // Another address of the same broker has the same certificate and the same
                // credentials: trying it would only fail again.
                Err(e @ (Error::Tls { .. } | Error::Authentication { .. }))
                    if !e.is_retriable() =>
                {
                    return Err(e);
                }
                Err(e) => {
                    debug!(%peer, %addr, error = %e, "connect failed; trying the next address");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects to `addr`, sets TCP_NODELAY, runs the TLS handshake (`SSL`, `SASL_SSL`), asks
    /// the broker for its API versions and authenticates (`SASL_*`), all within
    /// `socket.connection.setup.timeout.ms` (librdkafka counts the handshakes in it too).
    ///
    /// The config's `client.id`, `request.timeout.ms`, `max.in.flight.requests.per.connection`
    /// and `receive.message.max.bytes` apply to the connection. Its security settings are
    /// validated and its certificate files read on every call.
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](Connection::connect)'s.
    pub async fn connect_addr(
        peer: Peer,
        addr: SocketAddr,
        config: &PoolConfig,
    ) -> Result<Connection> {
        let spare = Arc::default();
        Connection::connect_addr_secured(peer, addr, config, &security(config)?, None, None, &spare)
            .await
    }

    /// [`connect_addr`](Connection::connect_addr) with the security settings loaded already.
    ///
    /// Each step runs against the one setup deadline, and a timeout or a closed connection
    /// names the step: "no answer to the TLS hello" and "closed after the ApiVersions request"
    /// are what a `security.protocol` that differs from the listener's looks like.
    pub(crate) async fn connect_addr_secured(
        peer: Peer,
        addr: SocketAddr,
        config: &PoolConfig,
        security: &Security,
        step_down: Option<&Arc<StepDown>>,
        watch: Option<&Arc<AnswerWatch>>,
        spare: &Arc<SpareMap>,
    ) -> Result<Connection> {
        let timeout = config.socket_connection_setup_timeout;
        let deadline = Instant::now() + timeout;
        let step = |stage| Step {
            peer: &peer,
            deadline,
            timeout,
            stage,
            tls: security.tls.is_some(),
        };
        let stream = step(SetupStage::Connect)
            .run(async {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::io(&peer, e))?;
                // Requests are small and latency-bound: Nagle's algorithm would hold a
                // heartbeat back behind an unacknowledged fetch. The Java client and
                // librdkafka set it too.
                stream.set_nodelay(true).map_err(|e| Error::io(&peer, e))?;
                Ok(stream)
            })
            .await?;
        // From here on, an error drops `io`, which closes the socket.
        let mut io = match &security.tls {
            None => {
                let (rd, wr) = stream.into_split();
                Io::start(rd, wr, peer.clone(), config, false, spare)
            }
            Some(tls) => {
                let stream = step(SetupStage::TlsHandshake)
                    .run(tls.handshake(&peer, stream))
                    .await?;
                let (rd, wr) = tokio::io::split(stream);
                Io::start(rd, wr, peer.clone(), config, true, spare)
            }
        };
        let offered = step(SetupStage::ApiVersions).run(handshake(&io)).await?;
        // What the broker advertised, less the versions it was found to mishandle and the
        // caps the application set (api.version.max).
        let mut versions = match step_down {
            Some(s) => s.connected(offered),
            None => offered,
        };
        for &(api, max) in &config.api_version_max {
            versions = versions.capped(api, max);
        }
        io.step_down = step_down.cloned();
        io.watch = watch.cloned();
        let reauthenticate_at = match &security.sasl {
            None => None,
            Some(sasl) => {
                step(SetupStage::SaslAuthentication)
                    .run(async {
                        let start =
                            sasl.start(&peer)
                                .await
                                .map_err(|kind| Error::Authentication {
                                    peer: peer.clone(),
                                    mechanism: sasl.mechanism(),
                                    kind,
                                })?;
                        sasl.run(&io, &versions, start, Lane::Normal).await
                    })
                    .await?
                    .reauthenticate_at
            }
        };
        if security.sasl.is_none() {
            // A SASL listener answers ApiVersions to anyone, then closes the connection on the
            // first request of a client that did not authenticate: watched for, to say so.
            io.shared.watch_first_request();
        }
        debug!(%peer, %addr, "connected");
        let conn = Connection {
            inner: Arc::new(Inner { addr, versions, io }),
        };
        if let (Some(sasl), Some(at)) = (&security.sasl, reauthenticate_at) {
            let task = tokio::spawn(reauthenticate(
                Arc::downgrade(&conn.inner),
                sasl.clone(),
                at,
            ));
            conn.inner.io.shared.adopt_tasks([task.abort_handle()]);
        }
        Ok(conn)
    }

    /// The broker at the other end.
    pub fn peer(&self) -> &Peer {
        &self.inner.io.shared.peer
    }

    /// The address connected to.
    pub fn socket_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `request.timeout.ms`: how long [`send`](Connection::send) waits.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.io.request_timeout
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

    /// The version `api` is sent at within `lo..=hi` ([`send_within`](Connection::send_within)):
    /// the highest of them both sides speak.
    pub fn version_within(&self, api: ApiKey, lo: i16, hi: i16) -> Result<i16> {
        self.inner
            .versions
            .version_within(api, lo, hi)
            .map_err(|e| Error::from_request_codec(self.peer(), e))
    }

    /// Sends `request` at the negotiated version and waits for its answer, at most
    /// `request.timeout.ms` (slot wait included).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future leaves the connection usable. Dropped before the request
    /// was handed to the connection, nothing was sent; dropped after, the request is written whole
    /// and the broker may still carry it out, its answer read and thrown away (the request keeps
    /// its in-flight slot until then). Sending it again is then a second request: safe for reads,
    /// and for writes only where the broker treats a repeat as the same (an idempotent producer's
    /// batch, a commit of the same offsets).
    pub async fn send<R: Request + 'static>(&self, request: &R) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        self.send_with_timeout(request, self.inner.io.request_timeout)
            .await
    }

    /// [`send`](Connection::send) with a timeout of its own, for requests the broker may hold
    /// longer than `request.timeout.ms` (JoinGroup waits for the rebalance).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Connection::send)'s.
    pub async fn send_with_timeout<R: Request + 'static>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        let version = self.version(api_of::<R>()?)?;
        self.send_at(request, version, timeout).await
    }

    /// [`send`](Connection::send) at the highest version of `lo..=hi` both sides speak, for a
    /// request whose meaning depends on its version (a transactional producer's Produce, EndTxn
    /// and TxnOffsetCommit say which transaction protocol it speaks, KIP-890); fails, sending
    /// nothing, when the broker offers none of them.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Connection::send)'s.
    pub async fn send_within<R: Request + 'static>(
        &self,
        request: &R,
        lo: i16,
        hi: i16,
    ) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        let version = self.version_within(api_of::<R>()?, lo, hi)?;
        self.send_at(request, version, self.inner.io.request_timeout)
            .await
    }

    /// Sends `request` at `version`, which the caller negotiated, and decodes its answer.
    async fn send_at<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        let frame = self
            .inner
            .io
            .exchange(request, version, timeout, Lane::Normal)
            .await?;
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

    /// Closes the connection: every request waiting on it fails with
    /// [`TransportError::ClosedByClient`], as when its last handle is dropped.
    pub(crate) fn close(&self) {
        let shared = &self.inner.io.shared;
        shared.fail(Error::transport(
            &shared.peer,
            TransportError::ClosedByClient,
        ));
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

/// Loads `config`'s security settings for a single connect. Only they are validated: a
/// connection has no use for `bootstrap.servers`.
fn security(config: &PoolConfig) -> Result<Security> {
    config.validate_security()?;
    Ok(Security::from_config(config)?)
}

/// One step of a connection's setup, bounded by the setup deadline.
struct Step<'a> {
    peer: &'a Peer,
    deadline: Instant,
    timeout: Duration,
    stage: SetupStage,
    tls: bool,
}

impl Step<'_> {
    /// Runs `step`; a timeout or a connection closed under it becomes an error naming the step.
    async fn run<T>(self, step: impl Future<Output = Result<T>>) -> Result<T> {
        let stage = self.stage;
        match time::timeout_at(self.deadline, step).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) if is_closed(&e) => Err(Error::transport(
                self.peer,
                TransportError::ClosedDuringSetup {
                    stage,
                    tls: self.tls,
                },
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::transport(
                self.peer,
                TransportError::SetupTimeout {
                    timeout: self.timeout,
                    stage,
                },
            )),
        }
    }
}

/// Whether `e` says the broker closed the connection between two answers, or reset it: what a
/// broker does to a request it cannot read. (A close in the middle of an answer is a broker
/// that went away while answering.)
fn is_hang_up(e: &Error) -> bool {
    !matches!(
        e,
        Error::Transport {
            kind: TransportError::ClosedMidFrame { .. },
            ..
        }
    ) && is_closed(e)
}

/// Whether `e` says the broker closed or reset the connection.
fn is_closed(e: &Error) -> bool {
    match e {
        Error::Transport { kind, .. } => match kind {
            TransportError::Closed
            | TransportError::ClosedMidFrame { .. }
            | TransportError::ClosedAtFirstRequest { .. } => true,
            TransportError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        },
        _ => false,
    }
}

/// Re-authenticates the connection at `at`, and again whenever the new session says, until the
/// connection is gone (KIP-368).
///
/// Holds only a `Weak`: an idle connection that every caller has dropped closes as before, and
/// its close aborts this task.
async fn reauthenticate(conn: Weak<Inner>, sasl: Sasl, mut at: Instant) {
    loop {
        time::sleep_until(at).await;
        let Some(inner) = conn.upgrade() else {
            return;
        };
        match inner.reauthenticate(&sasl).await {
            Some(next) => at = next,
            None => return,
        }
    }
}

impl Inner {
    /// One re-authentication. Returns when the next one is due, or `None` when no other is
    /// (or the connection died: then it was failed with the error, before new requests could
    /// go out on it).
    ///
    /// The steps, and why in this order:
    /// 1. Prepare the exchange (OAUTHBEARER: ask for a token) while requests still flow: an
    ///    identity provider may take its time.
    /// 2. Pause: requests not yet registered wait, from now on, until step 4; those on the wire
    ///    go on and their answers are delivered as usual (the broker answers a connection's
    ///    requests in order, so they come before the SaslHandshake answer).
    /// 3. SaslHandshake and SaslAuthenticate, through the same pending table as any request.
    /// 4. Resume. On failure, fail the connection first: the paused requests then find it
    ///    dead, rather than going out on a connection the broker is about to close.
    async fn reauthenticate(&self, sasl: &Sasl) -> Option<Instant> {
        let shared = &self.io.shared;
        let prepared =
            time::timeout(self.io.request_timeout, sasl.start(&self.io.shared.peer)).await;
        let start = match prepared {
            Ok(Ok(start)) => start,
            Ok(Err(kind)) => {
                shared.fail(Error::Authentication {
                    peer: shared.peer.clone(),
                    mechanism: sasl.mechanism(),
                    kind,
                });
                return None;
            }
            Err(_) => {
                shared.fail(Error::Authentication {
                    peer: shared.peer.clone(),
                    mechanism: sasl.mechanism(),
                    kind: crate::error::AuthError::TokenProvider(format!(
                        "no token within {} ms (request.timeout.ms)",
                        self.io.request_timeout.as_millis()
                    )),
                });
                return None;
            }
        };
        let paused = shared.pause().ok()?;
        debug!(peer = %shared.peer, mechanism = sasl.mechanism().name(), "re-authenticating");
        let result = sasl.run(&self.io, &self.versions, start, Lane::Auth).await;
        let next = match result {
            Ok(done) => done.reauthenticate_at,
            Err(e) => {
                shared.fail(e);
                None
            }
        };
        drop(paused);
        next
    }
}

/// Who is sending: ordinary requests wait while the connection re-authenticates; the
/// re-authentication's own requests do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Any request: held back while the connection is paused.
    Normal,
    /// SaslHandshake and SaslAuthenticate of a re-authentication.
    Auth,
}

/// The broker does not speak the version asked for.
const UNSUPPORTED_VERSION: i16 = kcon_core::error_codes::code::UNSUPPORTED_VERSION;
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
        .exchange(
            &request,
            API_VERSIONS_FIRST,
            io.request_timeout,
            Lane::Normal,
        )
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
        .exchange(
            &ApiVersionsRequest::default(),
            fallback,
            io.request_timeout,
            Lane::Normal,
        )
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
pub(crate) struct Io {
    shared: Arc<Shared>,
    /// Where refusals of a version are counted (see [`StepDown`]); `None` for a connection made
    /// outside a pool, and during the setup.
    step_down: Option<Arc<StepDown>>,
    /// Where a pool watches the answers (a broker asking for a rebootstrap); `None` for a
    /// connection made outside a pool, and during the setup.
    watch: Option<Arc<AnswerWatch>>,
    /// Whole frames for the writer task. Unbounded because the in-flight slots bound it: a frame
    /// is only queued by a caller holding a slot.
    frames: mpsc::UnboundedSender<Frame>,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation_id: AtomicI32,
    /// Whether the stream is TLS.
    tls: bool,
}

impl Io {
    /// Spawns the reader and writer tasks of a stream's two halves. `tls` says whether the
    /// stream is TLS: a plaintext one watches for a TLS answer instead of a frame.
    fn start<R, W>(
        rd: R,
        wr: W,
        peer: Peer,
        config: &PoolConfig,
        tls: bool,
        spare: &Arc<SpareMap>,
    ) -> Io
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared::new(
            peer,
            config.max_in_flight_requests_per_connection,
        ));
        let (frames, queued) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            rd,
            shared.clone(),
            FrameDecoder::new(config.receive_message_max_bytes),
            !tls,
            spare.clone(),
        ));
        let writer = tokio::spawn(write_loop(wr, queued, shared.clone()));
        shared.adopt_tasks([reader.abort_handle(), writer.abort_handle()]);
        Io {
            shared,
            step_down: None,
            watch: None,
            frames,
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            next_correlation_id: AtomicI32::new(0),
            tls,
        }
    }

    /// Whether the stream is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// The broker at the other end.
    pub(crate) fn peer(&self) -> &Peer {
        &self.shared.peer
    }

    /// `request.timeout.ms`.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends `request` at `version` and returns the answer's frame, in a debug span naming the
    /// API, version, broker, correlation id and latency (never the payload).
    pub(crate) async fn exchange<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
        lane: Lane,
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
            .round_trip(request, version, timeout, lane, &span)
            .instrument(span.clone())
            .await;
        span.record("latency_us", started.elapsed().as_micros() as u64);
        match &result {
            Ok(_) => debug!(parent: &span, "answered"),
            Err(e) => debug!(parent: &span, error = %e, "failed"),
        }
        result
    }

    async fn round_trip<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
        lane: Lane,
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
        let (correlation_id, reply) = loop {
            // Waiting for a re-authentication to end, then for a slot: nothing is registered
            // or written yet, so giving up here (on timeout, or because the caller dropped us)
            // leaves the connection as it was. No slot is held while paused, so the
            // re-authentication's own requests find one.
            if lane == Lane::Normal
                && time::timeout_at(deadline, self.shared.resumed())
                    .await
                    .is_err()
            {
                return Err(timed_out());
            }
            // A broker that throttled this connection for a quota reads nothing more from it
            // until the time is up (KIP-219): the request waits here rather than there, where
            // its request timeout would run. A re-authentication's own requests do not wait.
            if lane == Lane::Normal
                && time::timeout_at(deadline, self.shared.unthrottled())
                    .await
                    .is_err()
            {
                return Err(timed_out());
            }
            let slot =
                match time::timeout_at(deadline, self.shared.slots.clone().acquire_owned()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(_closed)) => return Err(self.shared.death()),
                    Ok(Ok(slot)) => slot,
                };
            // `None`: a re-authentication began while we waited for the slot (released).
            if let Some(sent) = self.enqueue(request, version, slot, lane)? {
                break sent;
            }
        };
        span.record("correlation_id", correlation_id);
        let result = match time::timeout_at(deadline, reply).await {
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
        };
        if let (Err(e), Some(step_down)) = (&result, &self.step_down)
            && is_hang_up(e)
            && self.shared.lock().oldest_at_death == Some(correlation_id)
        {
            step_down.refused(R::KEY, version, Refusal::HungUp);
        }
        result
    }

    /// Encodes `request`, registers it and hands it to the writer, in one synchronous step.
    /// `None`, with the slot released, if the connection is paused and `lane` must wait.
    fn enqueue<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        slot: OwnedSemaphorePermit,
        lane: Lane,
    ) -> Result<Option<(i32, oneshot::Receiver<Result<Bytes>>)>> {
        // Non-negative and wrapping, as the Java client's correlation ids. An id comes back into
        // use after 2^31 requests, long after its first request was answered or failed.
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        // A Produce request's large batches are not copied into the frame: they go to the
        // socket from the buffers the producer built them in.
        let frame = encode_request_frame(correlation_id, Some(&self.client_id), version, request)
            .map_err(|e| Error::from_request_codec(&self.shared.peer, e))?;
        let (reply, answer) = oneshot::channel();
        let mut st = self.shared.lock();
        if let Some(e) = &st.dead {
            return Err(e.clone());
        }
        // Read under the lock that `pause` takes to set it: either the pause comes after this
        // request in the writer's queue, or this request sees it.
        if lane == Lane::Normal && self.shared.paused.load(Ordering::Acquire) {
            return Ok(None);
        }
        // Registered and queued under one lock: a connection that dies meanwhile either finds
        // the request registered (and fails it) or refused it just above; a request is never
        // sent unregistered, nor registered unsent.
        if self.frames.send(frame).is_err() {
            // The writer stops only after a failure, which sets `dead` under this lock first.
            return Err(Error::transport(
                &self.shared.peer,
                TransportError::ClosedByClient,
            ));
        }
        st.pending.insert(
            correlation_id,
            Pending {
                reply,
                slot,
                api_key: R::KEY,
            },
        );
        drop(st);
        self.shared.touch();
        Ok(Some((correlation_id, answer)))
    }

    /// Decodes an answer; one that does not decode closes the connection.
    pub(crate) fn decode<R: Request>(&self, frame: Bytes, version: i16) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        match decode_response::<R>(frame, version) {
            Ok((_, response)) => {
                if let Some(s) = &self.step_down {
                    s.answered(R::KEY, version);
                }
                if let Some(ms) = throttle_time_ms(&response, version)
                    && ms > 0
                {
                    self.shared
                        .throttle(Instant::now() + Duration::from_millis(ms as u64));
                    debug!(
                        peer = %self.shared.peer,
                        api = %ApiName(R::KEY),
                        throttle_time_ms = ms,
                        "throttled by a broker quota: the connection sends again after the throttle time"
                    );
                    if let Some(w) = &self.watch {
                        w.throttled(ms);
                    }
                }
                if let Some(w) = &self.watch {
                    w.answered(&response);
                }
                Ok(response)
            }
            Err(e) => {
                let e = Error::corrupt(&self.shared.peer, Corruption::Codec(e));
                self.shared.fail(e.clone());
                if let Some(s) = &self.step_down {
                    s.refused(R::KEY, version, Refusal::Undecodable);
                }
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
    /// Set while the connection re-authenticates: requests wait. Changed only under the state
    /// lock, so `enqueue` reads it in order with the re-authentication's own requests; read
    /// without the lock only as a fast check.
    paused: AtomicBool,
    /// Wakes the requests waiting for a pause to end, or for the connection's death.
    resume: Notify,
    /// Time base of `last_active_nanos`.
    born: Instant,
    last_active_nanos: AtomicU64,
    /// Answers delivered.
    answers: AtomicU64,
    /// On a connection set up without SASL, the answers delivered when its setup ended: a
    /// hang-up before any later answer is what a SASL listener does to a client that did not
    /// authenticate. `u64::MAX` when not watched.
    setup_answers: AtomicU64,
}

struct State {
    pending: HashMap<i32, Pending>,
    /// Set once, by the first failure; every later request gets it.
    dead: Option<Error>,
    /// The oldest request waiting when the connection died: the one a broker that closes a
    /// connection on a request it cannot read was reading (it answers in order).
    oldest_at_death: Option<i32>,
    closed_at: Option<Instant>,
    /// Until when a broker's quota throttles the connection (KIP-219): no request is written
    /// before then.
    throttled_until: Option<Instant>,
    /// The reader and writer tasks, aborted by the failure.
    tasks: Vec<AbortHandle>,
}

/// A request on the wire: where its answer goes, and its in-flight slot, released when the
/// entry is dropped (answer delivered or discarded, or connection dead).
struct Pending {
    reply: oneshot::Sender<Result<Bytes>>,
    slot: OwnedSemaphorePermit,
    api_key: i16,
}

impl Pending {
    /// Gives the slot back, then the answer to the caller (if it is still waiting).
    ///
    /// In that order: a caller woken by its answer may send again at once, and must find the
    /// slot its last request held already free. Sending first left a window, on a busy
    /// machine, where `in_flight()` read 0 but a slot was still taken.
    fn answer(self, result: Result<Bytes>) {
        let Pending { reply, slot, .. } = self;
        drop(slot);
        // Fails when the caller stopped waiting (its future dropped): the answer is read and
        // nobody wants it.
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
                oldest_at_death: None,
                closed_at: None,
                throttled_until: None,
                tasks: Vec::new(),
            }),
            paused: AtomicBool::new(false),
            resume: Notify::new(),
            born: Instant::now(),
            last_active_nanos: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            setup_answers: AtomicU64::new(u64::MAX),
        }
    }

    /// The setup has ended, without SASL: from now on, a hang-up before the next answer is
    /// told as [`TransportError::ClosedAtFirstRequest`].
    fn watch_first_request(&self) {
        self.setup_answers
            .store(self.answers.load(Ordering::Acquire), Ordering::Release);
    }

    /// `error`, the hang-up that ends the connection, as what it most likely is: on a watched
    /// connection where nothing was answered since the setup and the first request waiting is
    /// a Metadata request, the refusal of a SASL listener. (The first request of a client is
    /// Metadata; a broker that hangs up on another API, at a version it cannot read, is not
    /// taken for one.)
    fn hang_up(&self, error: Error, tls: bool) -> Error {
        let unanswered =
            self.answers.load(Ordering::Acquire) == self.setup_answers.load(Ordering::Acquire);
        if !unanswered || !is_hang_up(&error) {
            return error;
        }
        let first = {
            let st = self.lock();
            st.pending
                .iter()
                .min_by_key(|(id, _)| **id)
                .map(|(_, p)| p.api_key)
        };
        if first == Some(ApiKey::Metadata as i16) {
            return Error::transport(&self.peer, TransportError::ClosedAtFirstRequest { tls });
        }
        error
    }

    /// The state lock. Held only for short, synchronous steps; a panic while holding it leaves
    /// the state consistent (every step is a single map or field update), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn adopt_tasks<const N: usize>(&self, tasks: [AbortHandle; N]) {
        let mut st = self.lock();
        if st.dead.is_some() {
            // The connection failed before the handles got here: stop the tasks now.
            drop(st);
            tasks.iter().for_each(AbortHandle::abort);
            return;
        }
        st.tasks.extend(tasks);
    }

    /// Holds new requests back until the returned guard is dropped (a re-authentication);
    /// fails if the connection is dead.
    fn pause(&self) -> Result<Paused<'_>> {
        let st = self.lock();
        if let Some(e) = &st.dead {
            return Err(e.clone());
        }
        self.paused.store(true, Ordering::Release);
        Ok(Paused(self))
    }

    /// Returns once the connection is not paused, or is dead (the request then fails when it
    /// tries to register).
    async fn resumed(&self) {
        loop {
            // Registered before the check, so a resume between the check and the await is not
            // missed (`notify_waiters` wakes only futures that exist).
            let notified = self.resume.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.paused.load(Ordering::Acquire) || self.lock().dead.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// A broker throttled the connection until `until`; a later end of an earlier throttle is
    /// kept.
    fn throttle(&self, until: Instant) {
        let mut st = self.lock();
        st.throttled_until = Some(st.throttled_until.map_or(until, |t| t.max(until)));
    }

    /// Returns once no throttle holds the connection back.
    async fn unthrottled(&self) {
        loop {
            let until = self.lock().throttled_until;
            match until {
                Some(t) if t > Instant::now() => time::sleep_until(t).await,
                _ => return,
            }
        }
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
            st.oldest_at_death = st.pending.keys().min().copied();
            st.closed_at = Some(Instant::now());
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.tasks),
            )
        };
        self.slots.close();
        self.resume.notify_waiters();
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
        self.answers.fetch_add(1, Ordering::AcqRel);
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

/// A paused connection; dropping it resumes the waiting requests.
struct Paused<'a>(&'a Shared);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let st = self.0.lock();
        self.0.paused.store(false, Ordering::Release);
        drop(st);
        self.0.resume.notify_waiters();
    }
}

/// The smallest read buffer reserved at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The most reserved at once for a frame whose size is known: a large answer is read in steps
/// (the buffer still grows geometrically), so a size prefix alone never makes us allocate the
/// whole announced size before its bytes arrive.
const MAX_READ_RESERVE: usize = 1024 * 1024;
/// Frames at least this large are read into an anonymous memory map of their own
/// ([`read_mapped`]), not into the shared read buffer.
///
/// With glibc, a large buffer freed raises the size from which later allocations are mapped
/// (up to 32 MiB): after the first large answer, the next ones came from the heap, and the
/// heap kept what they had taken once their records were dropped. A consumer of 100-byte
/// records on six partitions then peaked at about 36 MB where 24 MB held the same answers. A
/// map is returned to the system when the answer's last record is dropped, but for those
/// kept for the next answers ([`SpareMap`]).
const MAPPED_FRAME: usize = 1024 * 1024;
/// The writer's buffer: many small frames, one write.
const WRITE_BUFFER: usize = 64 * 1024;

/// Reads frames and routes them until the stream ends or breaks, then fails the connection.
///
/// `plaintext`: the first bytes are checked for a TLS record, the sign of a TLS listener.
async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    shared: Arc<Shared>,
    frames: FrameDecoder,
    plaintext: bool,
    spare: Arc<SpareMap>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut first = plaintext;
    let mut reading = None;
    let mut idle_check = Instant::now() + SPARE_MAP_CHECK;
    let error = loop {
        let frame = match frames.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => match frames.peek_size(&buf).ok().flatten() {
                Some(size) if size >= MAPPED_FRAME => {
                    reading.get_or_insert_with(|| Reading::new(&spare));
                    match read_mapped(&mut rd, &mut buf, size, &shared.peer, &spare).await {
                        Ok(frame) => frame,
                        Err(e) => break e,
                    }
                }
                size => {
                    let missing = size.map_or(0, |size| size + SIZE_PREFIX_LEN - buf.len());
                    buf.reserve(missing.clamp(READ_CHUNK, MAX_READ_RESERVE));
                    match eof_as_close(rd.read_buf(&mut buf).await) {
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
                        Ok(_) => continue,
                        Err(e) => break Error::io(&shared.peer, e),
                    }
                }
            },
            // A TLS alert or handshake record (type 21 or 22, version 3.x) read as a size is
            // hundreds of megabytes: refused as a frame, but it says what the listener is.
            Err(_) if first && matches!(buf.get(..2), Some([0x15 | 0x16, 0x03])) => {
                break Error::Tls {
                    peer: shared.peer.clone(),
                    kind: TlsError::UnexpectedTls,
                };
            }
            Err(e) => break Error::corrupt(&shared.peer, Corruption::Codec(e)),
        };
        match shared.deliver(frame) {
            Ok(()) => first = false,
            Err(e) => break e,
        }
        let now = Instant::now();
        if now >= idle_check {
            spare.let_go_idle(now);
            idle_check = now + SPARE_MAP_CHECK;
        }
    };
    let error = shared.hang_up(error, !plaintext);
    shared.fail(error);
}

/// A fresh map's length is the frame's size rounded up to a multiple of this: answers of a
/// consumer vary in size a little from one to the next (a partition's batch more or less), and
/// a map kept for a later frame then fits those of about its size.
const MAP_GRAIN: usize = 2 * 1024 * 1024;

/// What a pool keeps of the maps of frames done with, for the next ones ([`SpareMap`]),
/// when they are small: up to this many bytes together for each connection that reads frames
/// into maps, or twice the largest map kept, if that is more.
const SPARE_MAP_MAX: usize = 16 * 1024 * 1024;

/// How long a kept map waits for a frame to take it before it is let go ([`SpareMap`]).
const SPARE_MAP_IDLE: Duration = Duration::from_secs(10);

/// How often, at most, the reader looks for kept maps idle for [`SPARE_MAP_IDLE`].
const SPARE_MAP_CHECK: Duration = Duration::from_secs(1);

/// The maps of the frames a pool's connections read whole ([`read_mapped`]), kept once a
/// frame's last slice is dropped, for the next frames of any of them: their pages are memory
/// already, where a fresh map's are faulted in and zeroed by the kernel, a cost per byte read
/// (a consumer of 1 KiB records spent about a third of its CPU on it; one of 2,000 partitions,
/// whose answers are `fetch.max.bytes` each, a third more than with the maps kept). A consumer
/// holds a few answers at a time (one read while it drains others, which it may drop in any
/// order), so several maps are kept, the smallest let go first once they hold more than
/// [`SPARE_MAP_MAX`] bytes together for each connection reading into maps, or twice the
/// largest of them if that is more (two such answers in turn, one read while the other is
/// drained): memory kept is bounded, by about what those answers held. One for the pool, not
/// one per connection: a consumer reads answers from several brokers, and maps of
/// `fetch.max.bytes` kept per connection would add up to twice that for each broker, where the
/// consumer holds a few answers at a time in all. A map no frame took for [`SPARE_MAP_IDLE`]
/// is let go when the next frame comes, so a consumer that caught up, whose answers are small,
/// returns the memory of its large ones. A connection made outside a pool has its own.
#[derive(Debug, Default)]
pub(crate) struct SpareMap {
    kept: std::sync::Mutex<Vec<KeptMap>>,
    /// The connections that read a frame into a map and are still reading ([`Reading`]).
    readers: AtomicUsize,
}

/// A connection's count among the [`SpareMap`]'s readers, from its first frame read into a
/// map until its reader ends.
struct Reading(Arc<SpareMap>);

impl Reading {
    fn new(spare: &Arc<SpareMap>) -> Reading {
        spare.readers.fetch_add(1, Ordering::Relaxed);
        Reading(spare.clone())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A map, how far its pages were ever written (memory already up to there) and, while it is
/// kept, since when.
#[derive(Debug)]
struct KeptMap {
    map: memmap2::MmapMut,
    touched: usize,
    kept_at: Option<Instant>,
}

impl SpareMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<KeptMap>> {
        // Held only to push or remove a map, which cannot panic halfway.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The smallest map kept that holds `size` bytes.
    fn take(&self, size: usize) -> Option<KeptMap> {
        let mut kept = self.lock();
        let at = (0..kept.len())
            .filter(|&i| kept[i].map.len() >= size)
            .min_by_key(|&i| kept[i].map.len())?;
        let mut map = kept.swap_remove(at);
        map.kept_at = None;
        Some(map)
    }

    /// Keeps `map` for a later frame, from `now`; the smallest maps kept are let go while all
    /// of them hold more than [`SPARE_MAP_MAX`] for each reader and more than twice the
    /// largest.
    fn keep(&self, mut map: KeptMap, now: Instant) {
        map.kept_at = Some(now);
        let mut let_go = Vec::new();
        {
            let mut kept = self.lock();
            kept.push(map);
            let largest = kept.iter().map(|k| k.map.len()).max().unwrap_or(0);
            let readers = self.readers.load(Ordering::Relaxed).max(1);
            let bound = SPARE_MAP_MAX.saturating_mul(readers).max(2 * largest);
            while kept.iter().map(|k| k.map.len()).sum::<usize>() > bound {
                let smallest = (0..kept.len()).min_by_key(|&i| kept[i].map.len());
                if let Some(i) = smallest {
                    let_go.push(kept.swap_remove(i));
                }
            }
        }
        // Unmapped once the lock is released: the reader may be waiting for it.
        drop(let_go);
    }

    /// Lets go of the maps kept since [`SPARE_MAP_IDLE`] before `now` or earlier.
    fn let_go_idle(&self, now: Instant) {
        let mut let_go = Vec::new();
        {
            let mut kept = self.lock();
            let mut i = 0;
            while i < kept.len() {
                match kept[i].kept_at {
                    Some(at) if now.saturating_duration_since(at) >= SPARE_MAP_IDLE => {
                        let_go.push(kept.swap_remove(i));
                    }
                    _ => i += 1,
                }
            }
        }
        drop(let_go);
    }
}

/// A frame read into a map: its first `len` bytes. The map goes back to the [`SpareMap`] when
/// the frame's last slice is dropped.
struct MappedFrame {
    map: Option<KeptMap>,
    len: usize,
    spare: Arc<SpareMap>,
}

impl AsRef<[u8]> for MappedFrame {
    fn as_ref(&self) -> &[u8] {
        self.map
            .as_ref()
            .and_then(|k| k.map.get(..self.len))
            .unwrap_or_default()
    }
}

impl Drop for MappedFrame {
    fn drop(&mut self) {
        if let Some(map) = self.map.take() {
            self.spare.keep(map, Instant::now());
        }
    }
}

/// Reads the rest of the frame of `size` bytes whose start `buf` holds (its size prefix and
/// fewer than `size` bytes after it) into an anonymous memory map, and returns the frame
/// without its prefix; `buf` is left empty. The map is the smallest of the spare ones that is
/// large enough ([`SpareMap`]), else a fresh one, of which only the pages
/// the bytes reach become memory, so a size prefix alone takes none. The map goes back to
/// `spare` when the frame's last slice is dropped ([`MAPPED_FRAME`] says why a large frame has
/// a map).
async fn read_mapped<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    size: usize,
    peer: &Peer,
    spare: &Arc<SpareMap>,
) -> Result<Bytes> {
    let KeptMap {
        mut map, touched, ..
    } = match spare.take(size) {
        Some(kept) => kept,
        None => KeptMap {
            map: fresh_map(size).map_err(|e| Error::io(peer, e))?,
            touched: 0,
            kept_at: None,
        },
    };
    buf.advance(SIZE_PREFIX_LEN);
    let mut filled = buf.len();
    map[..filled].copy_from_slice(buf);
    buf.clear();
    // Linux makes the pages not yet memory a step ahead of the bytes, one call a step:
    // faulting them in one by one as the bytes arrive cost more than the records' own reading.
    #[cfg(target_os = "linux")]
    let mut populated = touched.max(filled);
    while filled < size {
        #[cfg(target_os = "linux")]
        if filled >= populated {
            let step = MAX_READ_RESERVE.min(size - filled);
            // An older kernel refuses the advice: the pages then fault in as they are written.
            let _ = map.advise_range(memmap2::Advice::PopulateWrite, filled, step);
            populated = filled + step;
        }
        match eof_as_close(rd.read(&mut map[filled..size]).await) {
            Ok(0) => {
                return Err(Error::transport(
                    peer,
                    TransportError::ClosedMidFrame {
                        buffered: SIZE_PREFIX_LEN + filled,
                    },
                ));
            }
            Ok(n) => filled += n,
            Err(e) => return Err(Error::io(peer, e)),
        }
    }
    Ok(Bytes::from_owner(MappedFrame {
        map: Some(KeptMap {
            map,
            touched: touched.max(size),
            kept_at: None,
        }),
        len: size,
        spare: spare.clone(),
    }))
}

/// A fresh map for a frame of `size` bytes, of a length rounded up to [`MAP_GRAIN`].
fn fresh_map(size: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapMut::map_anon(size.next_multiple_of(MAP_GRAIN))
}

/// A read's outcome with an unexpected end of stream read as a close (0 bytes): rustls reports
/// a TCP close without TLS's close_notify so, and for kcon it is a close like any other (Kafka
/// brokers do not send close_notify either).
fn eof_as_close(read: std::io::Result<usize>) -> std::io::Result<usize> {
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        read => read,
    }
}

/// Writes whole frames from the channel until every sender is gone or a write fails.
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: W,
    mut queued: mpsc::UnboundedReceiver<Frame>,
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

async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    first: Frame,
    queued: &mut mpsc::UnboundedReceiver<Frame>,
) -> std::io::Result<()> {
    write_frame(wr, &first).await?;
    // Frames queued while this one was written go out with it: one flush for many small
    // requests is what pipelining buys.
    while let Ok(next) = queued.try_recv() {
        write_frame(wr, &next).await?;
    }
    wr.flush().await
}

/// Writes `frame` after what `wr` holds. A frame in pieces larger than the buffer goes to the
/// socket in vectored writes, its batches from their own buffers; a smaller one is buffered.
async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    frame: &Frame,
) -> std::io::Result<()> {
    let parts = frame.parts();
    if parts.len() == 1 || frame.len() < WRITE_BUFFER {
        // BufWriter writes a piece as large as its buffer straight to the socket.
        for part in parts {
            wr.write_all(part).await?;
        }
        return Ok(());
    }
    // What is buffered goes first, then the pieces in place.
    wr.flush().await?;
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        // A TCP stream writes at most `IOV_MAX` (1,024) pieces at a time (std caps them); a
        // TLS stream, the first.
        let written = wr.get_mut().write_vectored(left).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, written);
    }
    Ok(())
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

/// The API of request type `R`, refused when kcon's codec does not know its key.
fn api_of<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|()| Error::Misuse(Misuse::UnsupportedApi { api_key: R::KEY }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn kept(size: usize) -> KeptMap {
        KeptMap {
            map: fresh_map(size).unwrap(),
            touched: size,
            kept_at: None,
        }
    }

    fn lengths(spare: &SpareMap) -> Vec<usize> {
        let mut lengths: Vec<usize> = spare.lock().iter().map(|k| k.map.len()).collect();
        lengths.sort_unstable();
        lengths
    }

    #[test]
    fn a_fresh_map_is_the_frame_rounded_up_to_whole_grains() {
        assert_eq!(fresh_map(MIB).unwrap().len(), MAP_GRAIN);
        assert_eq!(fresh_map(MAP_GRAIN).unwrap().len(), MAP_GRAIN);
        assert_eq!(fresh_map(MAP_GRAIN + 1).unwrap().len(), 2 * MAP_GRAIN);
    }

    #[test]
    fn the_smallest_map_that_holds_the_frame_is_taken() {
        let spare = SpareMap::default();
        let now = Instant::now();
        for size in [6 * MIB, 2 * MIB, 4 * MIB] {
            spare.keep(kept(size), now);
        }
        let taken = spare.take(3 * MIB).unwrap();
        assert_eq!(taken.map.len(), 4 * MIB);
        assert_eq!(taken.touched, 4 * MIB);
        assert_eq!(taken.kept_at, None, "no longer kept");
        assert_eq!(lengths(&spare), [2 * MIB, 6 * MIB]);
        assert!(spare.take(7 * MIB).is_none(), "none holds it");
        assert_eq!(lengths(&spare), [2 * MIB, 6 * MIB], "too small, still kept");
    }

    #[test]
    fn the_smallest_maps_are_let_go_past_the_bound() {
        const M: usize = SPARE_MAP_MAX;
        let spare = SpareMap::default();
        let now = Instant::now();
        for size in [M / 2, M / 4, 3 * M / 8] {
            spare.keep(kept(size), now);
        }
        assert_eq!(lengths(&spare), [3 * M / 8, M / 2]);
        spare.keep(kept(M / 8), now);
        assert_eq!(lengths(&spare), [M / 8, 3 * M / 8, M / 2]);
        // Twice the largest: room for all four, then for the two largest of five.
        spare.keep(kept(M), now);
        assert_eq!(lengths(&spare), [M / 8, 3 * M / 8, M / 2, M]);
        spare.keep(kept(3 * M / 4), now);
        assert_eq!(lengths(&spare), [3 * M / 4, M]);
    }

    #[test]
    fn two_maps_larger_than_the_bound_are_kept_and_a_third_is_not() {
        // A consumer of many partitions: answers of `fetch.max.bytes`, one read while another
        // is drained.
        let (large, small) = (SPARE_MAP_MAX + 16 * MIB, 6 * MIB);
        let spare = SpareMap::default();
        let now = Instant::now();
        spare.keep(kept(small), now);
        spare.keep(kept(large), now);
        assert_eq!(lengths(&spare), [small, large]);
        spare.keep(kept(large), now);
        assert_eq!(lengths(&spare), [large, large], "the small one let go");
        spare.keep(kept(large), now);
        assert_eq!(lengths(&spare), [large, large]);
        assert_eq!(spare.take(large - MIB).unwrap().map.len(), large);
        assert_eq!(lengths(&spare), [large]);
    }

    #[test]
    fn each_connection_reading_into_maps_adds_to_the_bound() {
        let spare = Arc::new(SpareMap::default());
        let now = Instant::now();
        let (first, second) = (Reading::new(&spare), Reading::new(&spare));
        for _ in 0..3 {
            spare.keep(kept(10 * MIB), now);
        }
        assert_eq!(
            lengths(&spare),
            [10 * MIB; 3],
            "within two connections' bound"
        );
        drop(second);
        spare.keep(kept(10 * MIB), now);
        assert_eq!(
            lengths(&spare),
            [10 * MIB; 2],
            "one connection's, or two of the largest"
        );
        drop(first);
        assert_eq!(spare.readers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn maps_no_frame_took_for_a_while_are_let_go() {
        let spare = SpareMap::default();
        let start = Instant::now();
        spare.keep(kept(50 * MIB), start);
        spare.keep(kept(4 * MIB), start + SPARE_MAP_IDLE / 2);
        spare.let_go_idle(start + SPARE_MAP_IDLE - Duration::from_millis(1));
        assert_eq!(
            lengths(&spare),
            [4 * MIB, 50 * MIB],
            "neither idle long enough"
        );
        spare.let_go_idle(start + SPARE_MAP_IDLE);
        assert_eq!(lengths(&spare), [4 * MIB], "the one kept first is let go");
        let taken = spare.take(MIB).unwrap();
        spare.keep(taken, start + SPARE_MAP_IDLE * 2);
        spare.let_go_idle(start + SPARE_MAP_IDLE * 2);
        assert_eq!(lengths(&spare), [4 * MIB], "kept again: idle from then");
        spare.let_go_idle(start + SPARE_MAP_IDLE * 3);
        assert_eq!(lengths(&spare), [] as [usize; 0]);
    }
}
