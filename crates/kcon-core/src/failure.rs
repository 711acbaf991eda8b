//! Requests that keep failing: [`FailureTracker`] times the tries of one request (KIP-580's
//! backoff, which only the request's own success resets) and says when the failure has lasted
//! long enough to tell the application ([`PersistentFailure`]).
//!
//! Every machine keeps one tracker per request it retries (the group member's JoinGroup,
//! SyncGroup and heartbeats, the coordinator lookup, commits, committed-offset fetches, each
//! broker's Fetch, metadata refreshes), sans-IO like the machine: `now` and the jitter's random
//! number are arguments.
//!
//! ```text
//!   ok ──failed()──► failing (failures = 1, retry at now + backoff(0))
//!                      │ failed(): failures + 1, retry at now + backoff(failures - 1)
//!                      │   at REPORT_AFTER failures over REPORT_AFTER_TIME: WARN, a report;
//!                      │   then one every REPORT_EVERY
//!                      └─succeeded()──► ok (INFO and a recovery report, if it was reported)
//! ```
//! A successful FindCoordinator, or a connection set up again, is not the request succeeding:
//! a coordinator that hangs up on every JoinGroup is found again each time, and without this
//! rule every hang-up would start the backoff over.

use std::fmt;
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::ApiKey;
use tracing::{debug, info, warn};

use crate::backoff::ExponentialBackoff;
use crate::machine::RequestFailure;

/// Failures in a row before the first report, which also waits for [`REPORT_AFTER_TIME`]: a
/// failure is reported once it has outlasted a few backoff rounds and a few seconds, longer
/// than a coordinator moving (NOT_COORDINATOR, then COORDINATOR_LOAD_IN_PROGRESS while the new
/// one loads the group) or a broker restarting usually takes.
pub const REPORT_AFTER: u32 = 3;

/// How long failures must have gone on, from the first, before the first report.
pub const REPORT_AFTER_TIME: Duration = Duration::from_secs(5);

/// The least time between two reports of one failure that goes on.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A request that keeps failing, or that recovered after it was reported: what the log line,
/// the application's hook and the metric are told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistentFailure {
    /// The request's API.
    pub api: ApiKey,
    /// The version of its last try, when it got that far.
    pub version: Option<i16>,
    /// The broker of its last try, when known, as the pool names it (`broker 1 (host:port)`).
    pub broker: Option<String>,
    /// Why the last try failed.
    pub cause: String,
    /// What waits for the request: `group g`, `commits of group g`, `broker 2's partitions`.
    pub subject: String,
    /// Tries that failed in a row (for a recovery: before the one that succeeded).
    pub failures: u32,
    /// When the first of them failed.
    pub since: Instant,
    /// From the first failure to this report.
    pub failing_for: Duration,
    /// The wait before the next try; zero for a recovery.
    pub retry_in: Duration,
    /// Whether this reports the recovery: the request succeeded after it had been reported.
    pub recovered: bool,
}

impl fmt::Display for PersistentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.api)?;
        if let Some(v) = self.version {
            write!(f, " v{v}")?;
        }
        if let Some(b) = &self.broker {
            write!(f, " to {b}")?;
        }
        let over = millis(self.failing_for);
        if self.recovered {
            write!(
                f,
                " succeeded again ({}) after {} failures in a row over {over}; the last: {}",
                self.subject, self.failures, self.cause
            )
        } else {
            write!(
                f,
                " failed {} times in a row over {over} ({}): {}; retrying in {}",
                self.failures,
                self.subject,
                self.cause,
                millis(self.retry_in)
            )
        }
    }
}

/// A duration for a log line: whole milliseconds below 10 s, tenths of seconds above.
fn millis(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What [`FailureTracker::failed`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The wait before the next try.
    pub delay: Duration,
    /// When the next try may go.
    pub retry_at: Instant,
    /// A report for the application, when one is due (logged at WARN already).
    pub report: Option<PersistentFailure>,
}

/// The last failed try, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LastTry {
    version: Option<i16>,
    broker: Option<String>,
    cause: String,
}

/// The tries of one request: consecutive failures back off exponentially (KIP-580,
/// `retry.backoff.ms` doubling to `retry.backoff.max.ms` with jitter) until the request itself
/// succeeds; after [`REPORT_AFTER`] failures in a row over at least [`REPORT_AFTER_TIME`] the
/// failure is logged at WARN and reported, then again at most every [`REPORT_EVERY`] while it
/// lasts, and its recovery is logged at INFO and reported once.
///
/// The machine owning it calls [`failed`](Self::failed) for every failed try (no answer, or an
/// error answer it retries), [`succeeded`](Self::succeeded) for an answer that shows the
/// request works, [`sent`](Self::sent) when the next try goes out, and reads
/// [`retry_at`](Self::retry_at) as one of its timers.
#[derive(Debug, Clone)]
pub struct FailureTracker {
    api: ApiKey,
    subject: String,
    backoff: ExponentialBackoff,
    failures: u32,
    since: Option<Instant>,
    retry_at: Option<Instant>,
    reported_at: Option<Instant>,
    last: Option<LastTry>,
}

impl FailureTracker {
    /// A tracker of `api` requests, for `subject` (what waits for them, in a log line), backing
    /// off by `backoff`.
    pub fn new(api: ApiKey, subject: impl Into<String>, backoff: ExponentialBackoff) -> Self {
        FailureTracker {
            api,
            subject: subject.into(),
            backoff,
            failures: 0,
            since: None,
            retry_at: None,
            reported_at: None,
            last: None,
        }
    }

    /// The request's API.
    pub fn api(&self) -> ApiKey {
        self.api
    }

    /// Tries that failed in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the last try failed.
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }

    /// Whether the failure has been reported (and its recovery will be).
    pub fn is_reported(&self) -> bool {
        self.reported_at.is_some()
    }

    /// When the next try may go, after a failed one, until it is [`sent`](Self::sent): the
    /// tracker's timer.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether a try may go at `now`: no backoff is running.
    pub fn is_due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// A try went out: the backoff's timer is done with (the failures still count).
    pub fn sent(&mut self) {
        self.retry_at = None;
    }

    /// What made the last try fail is gone (a commit refused for a stale member epoch, and the
    /// member has a new one): the next try may go at once. The failures still count.
    pub fn retry_now(&mut self) {
        self.retry_at = None;
    }

    /// Time passed: a backoff over at `now` no longer shows as a timer (a machine waiting for
    /// something else before it tries again must not see a timer in the past), and a try may
    /// go.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
        }
    }

    /// A try failed at `now` without an answer; `random` in `[0, 1)` spreads the backoff.
    pub fn failed(&mut self, now: Instant, failure: &RequestFailure, random: f64) -> Failed {
        self.record(
            now,
            LastTry {
                version: failure.version,
                broker: failure.broker.clone(),
                cause: failure.cause().to_owned(),
            },
            random,
        )
    }

    /// A try was answered with an error the machine retries (`cause` says which), by `broker`
    /// when known.
    pub fn refused(
        &mut self,
        now: Instant,
        cause: impl Into<String>,
        broker: Option<String>,
        random: f64,
    ) -> Failed {
        self.record(
            now,
            LastTry {
                version: None,
                broker,
                cause: cause.into(),
            },
            random,
        )
    }

    fn record(&mut self, now: Instant, last: LastTry, random: f64) -> Failed {
        let delay = self.backoff.delay(self.failures, random);
        self.failures = self.failures.saturating_add(1);
        let since = *self.since.get_or_insert(now);
        let retry_at = now + delay;
        self.retry_at = Some(retry_at);
        self.last = Some(last);
        let due = match self.reported_at {
            None => {
                self.failures >= REPORT_AFTER
                    && now.saturating_duration_since(since) >= REPORT_AFTER_TIME
            }
            Some(t) => now.saturating_duration_since(t) >= REPORT_EVERY,
        };
        let report = due.then(|| {
            self.reported_at = Some(now);
            let report = self.report(now, since, delay, false);
            warn!("{report}");
            report
        });
        if report.is_none() {
            debug!(api = ?self.api, subject = %self.subject, failures = self.failures, ?delay,
                cause = self.last.as_ref().map_or("", |l| l.cause.as_str()), "a try failed; retrying after a backoff");
        }
        Failed {
            delay,
            retry_at,
            report,
        }
    }

    /// The request was answered in a way that shows it works: the failures and the backoff
    /// start over. Returns the recovery's report (logged at INFO) when the failure had been
    /// reported, naming the broker of the last failed try: for a tracker whose tries all go to
    /// one broker (a broker's fetches), or that names none. Where tries go to whichever broker
    /// is the coordinator, or to any, the one that answered may be another: see
    /// [`succeeded_by`](Self::succeeded_by).
    pub fn succeeded(&mut self, now: Instant) -> Option<PersistentFailure> {
        let broker = self.last.as_ref().and_then(|l| l.broker.clone());
        self.succeeded_by(now, broker)
    }

    /// As [`succeeded`](Self::succeeded), answered by `broker` (as the pool names it; `None`
    /// when not known): the recovery names it, not the broker of the last failed try (a
    /// coordinator that moved away from a broker that is down answers from another).
    pub fn succeeded_by(
        &mut self,
        now: Instant,
        broker: Option<String>,
    ) -> Option<PersistentFailure> {
        if let Some(last) = &mut self.last {
            last.broker = broker;
        }
        let since = self.since.take();
        let failures = std::mem::take(&mut self.failures);
        self.retry_at = None;
        let reported = self.reported_at.take().is_some();
        let report = match since {
            Some(since) if reported => {
                let r = PersistentFailure {
                    failures,
                    ..self.report(now, since, Duration::ZERO, true)
                };
                info!("{r}");
                Some(r)
            }
            _ => None,
        };
        self.last = None;
        report
    }

    /// Forgets a run of failures without a report (the request is no longer wanted: the member
    /// left the group, the broker has no partitions to fetch any more).
    pub fn clear(&mut self) {
        self.failures = 0;
        self.since = None;
        self.retry_at = None;
        self.reported_at = None;
        self.last = None;
    }

    fn report(
        &self,
        now: Instant,
        since: Instant,
        retry_in: Duration,
        recovered: bool,
    ) -> PersistentFailure {
        let last = self.last.clone().unwrap_or(LastTry {
            version: None,
            broker: None,
            cause: String::new(),
        });
        PersistentFailure {
            api: self.api,
            version: last.version,
            broker: last.broker,
            cause: last.cause,
            subject: self.subject.clone(),
            failures: self.failures,
            since,
            failing_for: now.saturating_duration_since(since),
            retry_in,
            recovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tracker() -> FailureTracker {
        FailureTracker::new(
            ApiKey::JoinGroup,
            "group g",
            ExponentialBackoff::new(ms(100), ms(1000)),
        )
    }

    fn hang_up() -> RequestFailure {
        let mut f = RequestFailure::retriable(
            "broker 1 (127.0.0.1:9092): the broker closed the connection",
        );
        f.broker = Some("broker 1 (127.0.0.1:9092)".into());
        f.at_version(6)
    }

    #[test]
    fn tries_back_off_exponentially_up_to_the_max_until_one_succeeds() {
        let t0 = Instant::now();
        let mut t = tracker();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            assert!(t.is_due(now));
            t.sent();
            let f = t.failed(now, &hang_up(), 0.5);
            assert_eq!(f.retry_at, now + f.delay);
            assert_eq!(t.retry_at(), Some(f.retry_at));
            assert!(!t.is_due(now));
            delays.push(f.delay);
            now = f.retry_at;
        }
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        assert_eq!(t.failures(), 7);
        t.handle_timeout(now - ms(1));
        assert!(t.retry_at().is_some(), "not over yet");
        t.handle_timeout(now);
        assert_eq!(
            (t.retry_at(), t.failures()),
            (None, 7),
            "over, still failing"
        );
        t.succeeded(now);
        assert_eq!(t.failures(), 0);
        assert!(t.is_due(now));
        assert_eq!(t.failed(now, &hang_up(), 0.5).delay, ms(100), "starts over");
    }

    #[test]
    fn only_the_request_itself_resets_the_backoff() {
        // What a machine does between two tries (finding the coordinator, connecting) never
        // touches the tracker: the delays keep growing.
        let now = Instant::now();
        let mut t = tracker();
        let first = t.failed(now, &hang_up(), 0.0).delay;
        t.sent();
        let second = t.failed(now, &hang_up(), 0.0).delay;
        t.sent();
        let third = t.failed(now, &hang_up(), 0.0).delay;
        assert!(
            first < second && second < third,
            "{first:?} {second:?} {third:?}"
        );
        assert_eq!((first, second, third), (ms(80), ms(160), ms(320)));
    }

    #[test]
    fn reported_once_after_three_failures_and_five_seconds_then_once_a_minute_and_on_recovery() {
        let t0 = Instant::now();
        let mut t = tracker();
        let mut now = t0;
        let mut reports = Vec::new();
        // Two minutes and a half of failures, a try a second at most.
        while now < t0 + Duration::from_secs(150) {
            t.sent();
            let f = t.failed(now, &hang_up(), 0.5);
            if let Some(r) = f.report {
                reports.push((now - t0, r));
            }
            now = f.retry_at;
        }
        let at: Vec<Duration> = reports.iter().map(|(d, _)| *d).collect();
        // The first failure 5 s in (100 + 200 + 400 + 800 + 1000 × 3 + 1000 after the first),
        // then the first failure at least 60 s after each report.
        assert_eq!(at[0], ms(5500));
        assert_eq!(at.len(), 3, "{at:?}");
        assert!(at[1] - at[0] >= REPORT_EVERY && at[1] - at[0] < REPORT_EVERY + ms(1000));
        assert!(at[2] - at[1] >= REPORT_EVERY && at[2] - at[1] < REPORT_EVERY + ms(1000));
        let first = &reports[0].1;
        assert_eq!(first.api, ApiKey::JoinGroup);
        assert_eq!(first.version, Some(6));
        assert_eq!(first.broker.as_deref(), Some("broker 1 (127.0.0.1:9092)"));
        assert_eq!(first.cause, "the broker closed the connection");
        assert_eq!((first.failures, first.since), (9, t0));
        assert_eq!(first.retry_in, ms(1000));
        assert!(!first.recovered);
        assert_eq!(
            first.to_string(),
            "JoinGroup v6 to broker 1 (127.0.0.1:9092) failed 9 times in a row over 5500 ms \
             (group g): the broker closed the connection; retrying in 1000 ms"
        );
        let failures = t.failures();
        let recovery = t.succeeded(now).expect("a recovery is reported");
        assert!(recovery.recovered);
        assert_eq!(recovery.failures, failures);
        assert_eq!(recovery.retry_in, Duration::ZERO);
        assert!(
            recovery.to_string().contains("succeeded again"),
            "{recovery}"
        );
        assert!(t.succeeded(now).is_none(), "told once");
    }

    /// The coordinator was on broker 1, which went down; the coordinator moved to broker 2,
    /// which answered: the recovery names broker 2. A request to any broker that does not
    /// know which answered names none.
    #[test]
    fn the_recovery_names_the_broker_that_answered() {
        let t0 = Instant::now();
        let later = t0 + REPORT_AFTER_TIME;
        let mut t = tracker();
        t.failed(t0, &hang_up(), 0.5);
        t.failed(t0, &hang_up(), 0.5);
        let report = t.failed(later, &hang_up(), 0.5).report.expect("reported");
        assert_eq!(report.broker.as_deref(), Some("broker 1 (127.0.0.1:9092)"));
        let recovery = t
            .succeeded_by(later, Some("broker 2 (127.0.0.1:9093)".into()))
            .expect("a recovery");
        assert_eq!(
            recovery.broker.as_deref(),
            Some("broker 2 (127.0.0.1:9093)")
        );
        assert!(
            recovery
                .to_string()
                .starts_with("JoinGroup v6 to broker 2 (127.0.0.1:9093) succeeded again"),
            "{recovery}"
        );

        t.failed(t0, &hang_up(), 0.5);
        t.failed(t0, &hang_up(), 0.5);
        t.failed(later, &hang_up(), 0.5).report.expect("reported");
        let recovery = t.succeeded_by(later, None).expect("a recovery");
        assert_eq!(recovery.broker, None);
        assert!(
            recovery
                .to_string()
                .starts_with("JoinGroup v6 succeeded again"),
            "{recovery}"
        );
    }

    #[test]
    fn a_short_run_of_failures_is_not_reported_and_neither_is_its_end() {
        let t0 = Instant::now();
        let later = t0 + REPORT_AFTER_TIME;
        let mut t = tracker();
        // Many failures, but within 5 s: a coordinator moving, a broker restarting.
        for _ in 0..10 {
            assert!(t.failed(t0, &hang_up(), 0.5).report.is_none());
        }
        assert!(!t.is_reported());
        assert!(t.succeeded(t0).is_none());
        // Failures lasting 5 s, but only two: the count started over.
        assert!(t.failed(t0, &hang_up(), 0.5).report.is_none());
        assert!(t.failed(later, &hang_up(), 0.5).report.is_none());
        assert!(t.failed(later, &hang_up(), 0.5).report.is_some());
    }

    #[test]
    fn an_error_answer_counts_and_cleared_runs_are_forgotten() {
        let t0 = Instant::now();
        let now = t0 + REPORT_AFTER_TIME;
        let mut t = tracker();
        t.refused(t0, "COORDINATOR_LOAD_IN_PROGRESS (14)", None, 0.5);
        t.refused(t0, "COORDINATOR_LOAD_IN_PROGRESS (14)", None, 0.5);
        let f = t.refused(now, "COORDINATOR_LOAD_IN_PROGRESS (14)", None, 0.5);
        let r = f.report.expect("reported");
        assert_eq!((r.version, r.broker.as_deref()), (None, None));
        assert_eq!(
            r.to_string(),
            "JoinGroup failed 3 times in a row over 5000 ms (group g): \
             COORDINATOR_LOAD_IN_PROGRESS (14); retrying in 400 ms"
        );
        t.clear();
        assert!(!t.is_failing() && t.is_due(now));
        assert!(
            t.succeeded(now).is_none(),
            "a cleared run has no recovery to tell"
        );
    }

    #[test]
    fn the_cause_drops_the_broker_the_pool_names_first() {
        let f = hang_up();
        assert_eq!(f.cause(), "the broker closed the connection");
        let plain = RequestFailure::retriable("no answer");
        assert_eq!(plain.cause(), "no answer");
        let mut other = RequestFailure::retriable("broker 2 (h:1) sent a corrupt answer");
        other.broker = Some("broker 2 (h:1)".into());
        assert_eq!(other.cause(), "sent a corrupt answer");
    }
}
