//! Client metrics pushed to the cluster (KIP-714), sans-IO: when to ask a broker for the
//! client's telemetry subscription (GetTelemetrySubscriptions), when to push the metrics it
//! names (PushTelemetry), and what each of the broker's answers means.
//!
//! ```text
//! Waiting ──ready──► SubscriptionNeeded ──► SubscriptionInFlight ──► PushNeeded ──timer──► Collecting
//!                      ▲  ▲                      │ none requested          ▲                 │ payload
//!                      │  └── after an interval ─┘                         │ pushed          ▼
//!                      └──── at once (unknown subscription, compression), ─ PushInFlight ◄── PushReady
//!                            after an interval (too large, throttled), or a backoff (no answer)
//! close ──► TerminatingCollect ──► TerminatingReady ──► TerminatingInFlight ──► Terminated
//!           (waiting, or no subscription yet: Terminated at once; a push in flight: after its
//!           answer; a push collecting or ready: that push, marked terminating)
//! a refusal no retry fixes (INVALID_REQUEST, INVALID_RECORD, UNSUPPORTED_VERSION, an API the
//! broker does not offer) ──► Disabled
//! ```
//!
//! The machine waits until its owner says the client reached the cluster ([`ready`]): it asks
//! nothing of a cluster the client itself cannot log in to.
//!
//! [`ready`]: TelemetryMachine::ready
//!
//! The machine never builds a payload: when a push is due it asks its owner for one
//! ([`TelemetryEvent::Collect`]) and is handed it back ([`TelemetryMachine::payload`]): the
//! owner knows the client's metrics, the wall clock and the codecs. The first push after a new
//! subscription waits a random 0.5-1.5 push intervals, so that clients started together do not
//! push together; the next ones one interval apart, as the broker throttles a push that comes
//! sooner. A request that got no answer (a lost connection, a timeout) asks for the
//! subscription again after KIP-580's backoff, capped at the push interval.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::get_telemetry_subscriptions_request::GetTelemetrySubscriptionsRequest;
use kcon_codec::kafka_protocol::messages::get_telemetry_subscriptions_response::GetTelemetrySubscriptionsResponse;
use kcon_codec::kafka_protocol::messages::push_telemetry_request::PushTelemetryRequest;
use kcon_codec::kafka_protocol::messages::push_telemetry_response::PushTelemetryResponse;

use crate::backoff::ExponentialBackoff;
use crate::cause::Cause;
use crate::error_codes::code::{
    NONE, TELEMETRY_TOO_LARGE, THROTTLING_QUOTA_EXCEEDED, UNKNOWN_SUBSCRIPTION_ID,
    UNSUPPORTED_COMPRESSION_TYPE,
};
use crate::error_codes::error_name;
use crate::machine::{Machine, Outgoing, RequestFailure, RequestId, RequestIds, Target};
use crate::partition::TopicId;

/// The push interval when the broker names none (the Java client's default, 5 minutes).
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(300);

/// The id a broker gives a client instance for its telemetry (KIP-714): 16 bytes, shown as
/// Kafka shows ids, URL-safe base64 without padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientInstanceId(pub [u8; 16]);

impl ClientInstanceId {
    /// The id in the common UUID form (`8-4-4-4-12` lower-case hex), as OpenTelemetry and most
    /// tools other than Kafka's print it.
    pub fn hyphenated(&self) -> String {
        uuid_from(*self).hyphenated().to_string()
    }
}

impl fmt::Display for ClientInstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        TopicId(self.0).fmt(f)
    }
}

impl fmt::Debug for ClientInstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientInstanceId({self})")
    }
}

/// What the broker asked this client to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its id, sent back with every push.
    pub id: i32,
    /// The compression codecs the broker takes, in its order of preference (Kafka's ids).
    pub accepted_compression: Vec<i8>,
    /// How often to push.
    pub push_interval: Duration,
    /// The largest payload the broker takes.
    pub max_bytes: usize,
    /// Whether sums are pushed as what changed since the last push rather than since the start.
    pub delta_temporality: bool,
    /// Prefixes of the metric names wanted; `*` or an empty string alone means all.
    pub requested: Vec<String>,
}

impl Subscription {
    /// Whether the metric named `name` is wanted.
    pub fn wants(&self, name: &str) -> bool {
        self.requested
            .iter()
            .any(|p| p.is_empty() || p == "*" || name.starts_with(p.as_str()))
    }
}

/// A request of the telemetry machine.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryRequest {
    /// GetTelemetrySubscriptions.
    Subscriptions(GetTelemetrySubscriptionsRequest),
    /// PushTelemetry.
    Push(PushTelemetryRequest),
}

/// An answer to a [`TelemetryRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryResponse {
    /// GetTelemetrySubscriptions' answer.
    Subscriptions(GetTelemetrySubscriptionsResponse),
    /// PushTelemetry's answer.
    Push(PushTelemetryResponse),
}

/// What the telemetry machine tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryEvent {
    /// The broker named the client's instance id (once).
    InstanceId(ClientInstanceId),
    /// A push is due: collect the metrics `subscription` wants and hand them to
    /// [`TelemetryMachine::payload`]; `terminating` for the last push, on close.
    Collect {
        /// What to collect, and how.
        subscription: Subscription,
        /// Whether this is the last push.
        terminating: bool,
    },
    /// No metrics will be pushed any more: the reason, for the log. `quiet` when that is no
    /// news to a user (the brokers do not offer KIP-714).
    Disabled {
        /// Why.
        reason: String,
        /// Whether it is worth a debug line only.
        quiet: bool,
    },
    /// The broker answered a push, or the push got no answer: whether the counts it carried
    /// reached the broker ([`PushOutcome`]).
    Pushed(PushOutcome),
    /// The machine is done: closed (after its terminating push, if it had something to push)
    /// or disabled.
    Ended,
}

/// What became of a push, for an owner that pushes sums as deltas: the counts of a push the
/// broker refused go into the next push, those of one it took (or may have taken) do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The broker took it.
    Taken,
    /// The broker answered with an error: its metrics did not reach the broker's plugin.
    Refused,
    /// No answer came (a lost connection, a timeout): the broker may have taken it.
    Unanswered,
}

crate::timers! {
    /// The machine's one timer: the next request is due.
    pub enum Timer {
        /// Ask for the subscription, or collect for a push.
        Next,
    }
    type Timers;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Until the client reached the cluster.
    Waiting,
    SubscriptionNeeded,
    SubscriptionInFlight,
    PushNeeded,
    /// Waiting for the owner's payload.
    Collecting,
    PushReady,
    PushInFlight,
    TerminatingCollect,
    TerminatingReady,
    TerminatingInFlight,
    Terminated,
    Disabled,
}

/// KIP-714's client side (the module's picture).
#[derive(Debug)]
pub struct TelemetryMachine {
    state: State,
    instance_id: Option<ClientInstanceId>,
    subscription: Option<Subscription>,
    /// The payload handed in: (compression id, bytes).
    payload: Option<(i8, Bytes)>,
    in_flight: Option<RequestId>,
    ids: RequestIds,
    timers: Timers,
    events: VecDeque<TelemetryEvent>,
    /// Requests in a row that got no answer.
    failures: u32,
    backoff: ExponentialBackoff,
    random: fastrand::Rng,
    /// Whether a close was asked for.
    closing: bool,
}

impl TelemetryMachine {
    /// A machine that asks for its subscription once [`ready`](Self::ready); `backoff` spaces
    /// the tries after requests that got no answer (`retry.backoff.ms`, `retry.backoff.max.ms`),
    /// `seed` its jitter.
    pub fn new(now: Instant, backoff: ExponentialBackoff, seed: u64) -> TelemetryMachine {
        let _ = now;
        TelemetryMachine {
            state: State::Waiting,
            instance_id: None,
            subscription: None,
            payload: None,
            in_flight: None,
            ids: RequestIds::default(),
            timers: Timers::new(),
            events: VecDeque::new(),
            failures: 0,
            backoff,
            random: fastrand::Rng::with_seed(seed),
            closing: false,
        }
    }

    /// The client reached the cluster (a broker answered it): the subscription is asked for at
    /// once. Before, the machine asks nothing: a client that cannot log in is not asked to log
    /// in once more for its metrics.
    pub fn ready(&mut self, now: Instant) {
        if self.state == State::Waiting {
            self.state = State::SubscriptionNeeded;
            self.timers.set(Timer::Next, now);
        }
    }

    /// Whether the machine waits for [`ready`](Self::ready).
    pub fn is_waiting(&self) -> bool {
        self.state == State::Waiting
    }

    /// The client's instance id, once the broker named it.
    pub fn instance_id(&self) -> Option<ClientInstanceId> {
        self.instance_id
    }

    /// Whether the machine is done (closed or disabled).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Terminated | State::Disabled)
    }

    /// The payload for the push [`TelemetryEvent::Collect`] asked for: the metrics encoded
    /// (OTLP `MetricsData`), compressed with `compression` (Kafka's codec id, one the
    /// subscription accepts, or 0).
    pub fn payload(&mut self, now: Instant, compression: i8, metrics: Bytes) {
        let _ = now;
        match self.state {
            State::Collecting => self.state = State::PushReady,
            State::TerminatingCollect => self.state = State::TerminatingReady,
            _ => return,
        }
        self.payload = Some((compression, metrics));
    }

    /// The client closes: the last push, marked terminating, goes out once collected; with no
    /// subscription that wants metrics, the machine ends at once.
    ///
    /// A push being collected or ready becomes the last one. A push in flight is waited for:
    /// the last push goes out after its answer. Sent beside it, the last push could reach the
    /// broker first, and the broker refuses every push after a terminating one, so the counts
    /// of the push in flight would be lost.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
        if self.closing {
            return;
        }
        self.closing = true;
        match self.state {
            State::PushNeeded => self.collect(true),
            State::Collecting => {
                self.state = State::TerminatingCollect;
                // Told as the last, if the owner has not read it yet.
                for e in &mut self.events {
                    if let TelemetryEvent::Collect { terminating, .. } = e {
                        *terminating = true;
                    }
                }
            }
            State::PushReady => self.state = State::TerminatingReady,
            State::PushInFlight => {}
            State::Waiting | State::SubscriptionNeeded | State::SubscriptionInFlight => {
                self.in_flight = None;
                self.end(State::Terminated);
            }
            State::TerminatingCollect
            | State::TerminatingReady
            | State::TerminatingInFlight
            | State::Terminated
            | State::Disabled => {}
        }
    }

    fn collect(&mut self, terminating: bool) {
        let Some(subscription) = self.subscription.clone() else {
            self.end(State::Terminated);
            return;
        };
        self.state = if terminating {
            State::TerminatingCollect
        } else {
            State::Collecting
        };
        self.events.push_back(TelemetryEvent::Collect {
            subscription,
            terminating,
        });
    }

    fn end(&mut self, state: State) {
        if self.is_done() {
            return;
        }
        self.state = state;
        self.events.push_back(TelemetryEvent::Ended);
    }

    fn disable(&mut self, reason: String, quiet: bool) {
        if self.is_done() {
            return;
        }
        self.events
            .push_back(TelemetryEvent::Disabled { reason, quiet });
        self.end(State::Disabled);
    }

    fn interval(&self) -> Duration {
        self.subscription
            .as_ref()
            .map_or(DEFAULT_PUSH_INTERVAL, |s| s.push_interval)
    }

    /// Ask for the subscription again after `delay`.
    fn resubscribe(&mut self, now: Instant, delay: Duration) {
        self.state = State::SubscriptionNeeded;
        self.timers.set(Timer::Next, now + delay);
    }

    fn on_subscription(&mut self, now: Instant, answer: GetTelemetrySubscriptionsResponse) {
        if answer.error_code != NONE {
            self.on_error(now, "GetTelemetrySubscriptions", answer.error_code);
            return;
        }
        if self.instance_id.is_none() {
            let id = *answer.client_instance_id.as_bytes();
            if id == [0; 16] {
                self.disable(
                    "the broker's GetTelemetrySubscriptions answer gave no client instance id"
                        .into(),
                    false,
                );
                return;
            }
            self.instance_id = Some(ClientInstanceId(id));
            self.events
                .push_back(TelemetryEvent::InstanceId(ClientInstanceId(id)));
        }
        let push_interval = u64::try_from(answer.push_interval_ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map_or(DEFAULT_PUSH_INTERVAL, Duration::from_millis);
        let subscription = Subscription {
            id: answer.subscription_id,
            accepted_compression: answer.accepted_compression_types,
            push_interval,
            max_bytes: usize::try_from(answer.telemetry_max_bytes).unwrap_or(0),
            delta_temporality: answer.delta_temporality,
            requested: answer
                .requested_metrics
                .iter()
                .map(|m| m.to_string())
                .collect(),
        };
        let wants_any = !subscription.requested.is_empty();
        let first = self.subscription.as_ref().map(|s| s.id) != Some(subscription.id);
        self.subscription = Some(subscription);
        if !wants_any {
            // Nothing asked for: look again an interval later, when an operator may have
            // added a subscription.
            self.resubscribe(now, push_interval);
            return;
        }
        self.state = State::PushNeeded;
        let wait = if first {
            push_interval.mul_f64(0.5 + self.random.f64())
        } else {
            push_interval
        };
        self.timers.set(Timer::Next, now + wait);
    }

    fn on_push(&mut self, now: Instant, terminating: bool, answer: PushTelemetryResponse) {
        if terminating {
            // Whatever the broker said, there is nothing after the last push.
            self.end(State::Terminated);
            return;
        }
        if answer.error_code != NONE {
            self.on_error(now, "PushTelemetry", answer.error_code);
            return;
        }
        self.state = State::PushNeeded;
        self.timers.set(Timer::Next, now + self.interval());
    }

    /// An error code in an answer, as KIP-714 tells a client to take it.
    fn on_error(&mut self, now: Instant, api: &str, error_code: i16) {
        match error_code {
            UNKNOWN_SUBSCRIPTION_ID | UNSUPPORTED_COMPRESSION_TYPE => {
                self.resubscribe(now, Duration::ZERO)
            }
            TELEMETRY_TOO_LARGE | THROTTLING_QUOTA_EXCEEDED => {
                let interval = self.interval();
                self.resubscribe(now, interval)
            }
            // INVALID_REQUEST, INVALID_RECORD, UNSUPPORTED_VERSION and whatever KIP-714 does not
            // name: no retry fixes them.
            _ => self.disable(
                format!(
                    "the broker answered {api} with {}: it does not take this client's metrics, \
                     so none are pushed any more",
                    error_name(error_code)
                ),
                false,
            ),
        }
    }

    fn on_failure(&mut self, now: Instant, failure: RequestFailure, terminating: bool) {
        if terminating {
            self.end(State::Terminated);
            return;
        }
        if !failure.retriable {
            let quiet = failure.cause == Some(Cause::Unsupported);
            self.disable(
                format!(
                    "client metrics (KIP-714) are not pushed: {}",
                    failure.reason
                ),
                quiet,
            );
            return;
        }
        let delay = self
            .backoff
            .delay(self.failures, self.random.f64())
            .min(self.interval());
        self.failures = self.failures.saturating_add(1);
        self.resubscribe(now, delay);
    }

    fn next_request(&mut self, now: Instant) -> Option<Outgoing<TelemetryRequest>> {
        if self.in_flight.is_some() {
            return None;
        }
        let request = match self.state {
            State::SubscriptionNeeded if self.timers.is_expired(Timer::Next, now) => {
                self.state = State::SubscriptionInFlight;
                let mut r = GetTelemetrySubscriptionsRequest::default();
                if let Some(id) = self.instance_id {
                    r.client_instance_id = uuid_from(id);
                }
                TelemetryRequest::Subscriptions(r)
            }
            State::PushReady | State::TerminatingReady => {
                let terminating = self.state == State::TerminatingReady;
                let (compression, metrics) = self.payload.take().unwrap_or_default();
                let (Some(id), Some(subscription)) = (self.instance_id, &self.subscription) else {
                    self.end(State::Terminated);
                    return None;
                };
                let mut r = PushTelemetryRequest::default();
                r.client_instance_id = uuid_from(id);
                r.subscription_id = subscription.id;
                r.terminating = terminating;
                r.compression_type = compression;
                r.metrics = metrics;
                self.state = if terminating {
                    State::TerminatingInFlight
                } else {
                    State::PushInFlight
                };
                TelemetryRequest::Push(r)
            }
            _ => return None,
        };
        let id = self.ids.next_id();
        self.in_flight = Some(id);
        Some(Outgoing {
            id,
            target: Target::Any,
            request,
            timeout: None,
        })
    }
}

fn uuid_from(id: ClientInstanceId) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id.0)
}

impl Machine for TelemetryMachine {
    type Request = TelemetryRequest;
    type Target = Target;
    type Response = TelemetryResponse;
    type Event = TelemetryEvent;

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<TelemetryResponse, RequestFailure>,
    ) {
        if self.in_flight != Some(id) {
            // The answer to a request a close made moot.
            return;
        }
        self.in_flight = None;
        let terminating = self.state == State::TerminatingInFlight;
        let pushing = matches!(self.state, State::PushInFlight | State::TerminatingInFlight);
        match result {
            Ok(TelemetryResponse::Subscriptions(answer))
                if self.state == State::SubscriptionInFlight =>
            {
                self.failures = 0;
                self.on_subscription(now, answer)
            }
            Ok(TelemetryResponse::Push(answer)) if pushing => {
                self.failures = 0;
                self.events
                    .push_back(TelemetryEvent::Pushed(if answer.error_code == NONE {
                        PushOutcome::Taken
                    } else {
                        PushOutcome::Refused
                    }));
                self.on_push(now, terminating, answer)
            }
            Ok(_) => {}
            Err(failure) => {
                if pushing {
                    self.events
                        .push_back(TelemetryEvent::Pushed(PushOutcome::Unanswered));
                }
                self.on_failure(now, failure, terminating)
            }
        }
        // A close that came while a push was in flight: the last push, now that its answer is
        // in (unless the answer ended the machine).
        if self.closing && pushing && !terminating && !self.is_done() {
            self.timers.stop(Timer::Next);
            self.collect(true);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::PushNeeded && self.timers.is_expired(Timer::Next, now) {
            self.timers.stop(Timer::Next);
            self.collect(false);
        }
    }

    fn poll_request(&mut self, now: Instant) -> Option<Outgoing<TelemetryRequest>> {
        self.next_request(now)
    }

    fn poll_event(&mut self) -> Option<TelemetryEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::SubscriptionNeeded | State::PushNeeded => self.timers.next(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
