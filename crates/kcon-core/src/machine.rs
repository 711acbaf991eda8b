//! The contract every sans-IO machine of kcon follows ([`Machine`]), and what it sends and is
//! answered with: request ids, where a request goes, how long to wait for it, and why it got
//! no answer.
//!
//! A machine never sends anything itself. It hands out [`Outgoing`] requests; whoever drives it
//! (a tokio task in production, a virtual clock in tests) sends each one and feeds back exactly
//! one result under the same [`RequestId`]: the answer, or a [`RequestFailure`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::cause::Cause;

/// A sans-IO state machine: the group member, the commit machine, the fetch loop, the
/// consumer's own bookkeeping and the record processor's each are one. It never touches a socket
/// or a clock, spawns nothing and owns no random source: time comes in as `now`, randomness as a
/// seed or an argument.
///
/// # Driving it
/// - Inputs: [`handle_response`](Self::handle_response) (the answer to every request it handed
///   out, or why there was none: exactly once per request),
///   [`handle_timeout`](Self::handle_timeout) (once [`poll_timeout`](Self::poll_timeout) has
///   passed), and the machine's own commands (each takes `now` first, like these).
/// - Outputs: [`poll_request`](Self::poll_request) (the next request to send, and where),
///   [`poll_event`](Self::poll_event) (the next thing to tell its owner),
///   [`poll_timeout`](Self::poll_timeout) (when to call `handle_timeout` next; its timers live
///   in one [`TimerTable`](crate::timer::TimerTable)).
/// - After any input, drain `poll_request` and `poll_event` until both give `None`, then
///   sleep until `poll_timeout` or the next input. The polls change nothing but the queues they
///   drain: handing a request out records it as in flight, handing an event out forgets it.
///
/// One generic driver runs any machine whose requests go to brokers on tokio (kcon-pool's
/// `driver`), and one harness runs any machine, or several wired together, on a virtual clock.
///
/// # Where requests go
/// [`Target`](Self::Target) says what an [`Outgoing`] names besides the request. A machine that
/// talks to brokers says [`Target`] (any broker, the coordinator, a broker by
/// id), and only such a machine can run on the pool's driver. A machine whose requests are
/// carried out by the parts around it (the consumer's steps: the listener's hook, a commit
/// before partitions go; the record processor's: call the handler, write a dead letter) says
/// `()`: the request itself names what carries it out, and no broker target could mean anything
/// for it, so none can be given by mistake.
pub trait Machine {
    /// What it asks to send.
    type Request;
    /// Where a request goes: [`Target`] for brokers, `()` for requests its own
    /// driver carries out.
    type Target;
    /// What a request is answered with.
    type Response;
    /// What it tells its owner.
    type Event;

    /// The answer to request `id`, or why there was none.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Self::Response, RequestFailure>,
    );

    /// Time passed: every timer due at `now` fires.
    fn handle_timeout(&mut self, now: Instant);

    /// The next request to send, if any.
    fn poll_request(&mut self, now: Instant) -> Option<Outgoing<Self::Request, Self::Target>>;

    /// The next event for the owner, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// The earliest timer still armed: the earliest deadline of the machine's
    /// [`TimerTable`](crate::timer::TimerTable), and of any deadlines it keeps per key beside
    /// it (a partition's backoff), which it says where it keeps them.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Identifies one request of a machine; its answer is fed back with the same id. Ids are unique
/// within one machine, handed out in order by [`RequestIds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The id numbered `n` (tests feed answers to made-up ids with it).
    pub fn new(n: u64) -> RequestId {
        RequestId(n)
    }

    /// Its number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Hands out a machine's request ids, in order from 0.
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    next: u64,
}

impl RequestIds {
    /// The id [`next_id`](Self::next_id) will hand out, without taking it (a machine that records
    /// the id in its state before it builds the request).
    pub fn peek(&self) -> RequestId {
        RequestId(self.next)
    }

    /// The next id.
    pub fn next_id(&mut self) -> RequestId {
        let id = RequestId(self.next);
        self.next += 1;
        id
    }
}

/// A group coordinator, as FindCoordinator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Its broker id.
    pub id: i32,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: i32,
}

impl Coordinator {
    /// The broker as the pool names brokers in failures and reports: `broker 1 (host:port)`.
    pub fn name(&self) -> String {
        format!("broker {} ({}:{})", self.id, self.host, self.port)
    }
}

/// Where a request goes. Not `#[non_exhaustive]`: every driver must send to every target, so a
/// new one should fail to compile where it is not handled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any broker (FindCoordinator, Metadata).
    Any,
    /// The group coordinator, on a connection of its own so that heartbeats and commits never
    /// wait behind fetches (the Java client's separate coordinator node).
    Coordinator(Coordinator),
    /// This broker, on its shared connection (a partition's leader or read replica).
    Broker(i32),
}

/// A request a machine wants sent; `T` is where it goes ([`Machine::Target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<R, T = Target> {
    /// The id to feed the answer back with.
    pub id: RequestId,
    /// Where to send it.
    pub target: T,
    /// What to send.
    pub request: R,
    /// How long to wait for the answer, when not `request.timeout.ms`: the broker holds a
    /// JoinGroup for up to the rebalance timeout, so the Java client waits that long plus 5 s.
    /// `None` for a request the machine's own parts carry out (they answer when done).
    pub timeout: Option<Duration>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailure {
    /// Whether trying again can help: a lost connection or a timeout is retriable (and, for a
    /// coordinator request, means the coordinator must be found again); a broker that lacks
    /// the API or version is not.
    pub retriable: bool,
    /// What happened, for the log and for a fatal error.
    pub reason: String,
    /// The broker the request went to, or was going to, as the pool names it
    /// (`broker 1 (host:port)`), when known.
    pub broker: Option<String>,
    /// The version the request was sent at, when it got that far.
    pub version: Option<i16>,
    /// Who caused it, when the sender knows ([`Cause`]): a machine that gives up on a failure
    /// that is not retriable passes it on, so that a refused login
    /// ([`Cause::Authentication`]) reads as one wherever it ends.
    pub cause: Option<Cause>,
}

impl RequestFailure {
    /// A failure trying again can help with.
    pub fn retriable(reason: impl Into<String>) -> RequestFailure {
        RequestFailure {
            retriable: true,
            reason: reason.into(),
            broker: None,
            version: None,
            cause: None,
        }
    }

    /// A failure trying again cannot help with (the broker lacks the API or version, the
    /// request cannot be expressed at it).
    pub fn fatal(reason: impl Into<String>) -> RequestFailure {
        RequestFailure {
            retriable: false,
            reason: reason.into(),
            broker: None,
            version: None,
            cause: None,
        }
    }

    /// The same failure, of a request sent at `version`.
    pub fn at_version(mut self, version: i16) -> RequestFailure {
        self.version = Some(version);
        self
    }

    /// What happened, without the broker's name the pool's messages start with.
    pub fn cause(&self) -> &str {
        self.broker
            .as_deref()
            .and_then(|b| self.reason.strip_prefix(b))
            .map(|rest| rest.trim_start_matches([':', ' ']))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&self.reason)
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
