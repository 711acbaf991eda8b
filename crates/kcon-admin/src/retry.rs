//! Retrying an admin call's requests to a group's coordinator within `default.api.timeout.ms`,
//! as the Java admin client retries a call until its deadline.
//!
//! A coordinator that is not ready answers COORDINATOR_NOT_AVAILABLE (a broker just started,
//! or `__consumer_offsets` not created yet), COORDINATOR_LOAD_IN_PROGRESS (loading its groups)
//! or NOT_COORDINATOR (the group moved, or FindCoordinator named a broker that is not it yet);
//! or it cannot be reached. Each is asked again after a backoff of `retry.backoff.ms` doubling
//! to `retry.backoff.max.ms` with ±20 % jitter (KIP-580, [`ExponentialBackoff`]), the
//! coordinator found again (FindCoordinator) at every attempt, until the pool's
//! `default.api.timeout.ms` has passed since the call began: then the call fails with the last
//! error. One [`Retry`] is one call's deadline, shared by every request the call makes.

use std::future::Future;
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_core::ExponentialBackoff;
use kcon_pool::Pool;
use tokio::time::Instant;
use tracing::debug;

use crate::error::Error;

/// Whether an attempt that failed with `e` is tried again: a coordinator not ready, moved or
/// loading (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), or a
/// connection that may come back.
pub(crate) fn is_retriable_coordinator_error(e: &Error) -> bool {
    match e {
        Error::Broker { error, .. } => is_coordinator_error(*error),
        Error::Connection(p) => p.is_retriable(),
        _ => false,
    }
}

/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS.
pub(crate) fn is_coordinator_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
    )
}

/// One admin call's deadline and backoff.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    deadline: Instant,
    backoff: ExponentialBackoff,
}

impl Retry {
    /// A call beginning now, with the pool's `default.api.timeout.ms` and retry backoff.
    pub(crate) fn new(pool: &Pool) -> Retry {
        let config = pool.config();
        Retry {
            deadline: Instant::now() + config.default_api_timeout,
            backoff: config.retry_backoff_policy(),
        }
    }

    /// The time left before the deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits the backoff before try number `attempts + 1`, at most until the deadline; false
    /// (at once) when the deadline has passed.
    pub(crate) async fn pause(&self, attempts: u32) -> bool {
        let left = self.left();
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.backoff.delay_random(attempts).min(left)).await;
        true
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not a retriable
    /// coordinator error ([`is_retriable_coordinator_error`]), or fails after the deadline:
    /// then with its last error. `what` names the request, for the log.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.run_while(what, is_retriable_coordinator_error, attempt)
            .await
    }

    /// [`run`](Retry::run) for a call that is not to a group's coordinator: `retriable` says
    /// which errors are tried again.
    pub(crate) async fn run_while<T, F, Fut>(
        &self,
        what: &str,
        retriable: fn(&Error) -> bool,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempts = 0;
        loop {
            match attempt().await {
                Err(e) if retriable(&e) => {
                    if !self.pause(attempts).await {
                        debug!(what, attempts = attempts + 1, error = %e, "giving up: default.api.timeout.ms has passed");
                        return Err(e);
                    }
                    attempts += 1;
                    debug!(what, attempts, error = %e, "asking again");
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use kcon_codec::kafka_protocol::messages::ApiKey;
    use kcon_pool::PoolConfig;

    use super::*;

    fn pool(timeout_ms: u64) -> Pool {
        let mut c = PoolConfig::default();
        c.set("bootstrap.servers", "127.0.0.1:9").unwrap();
        c.default_api_timeout = Duration::from_millis(timeout_ms);
        Pool::new(c).unwrap()
    }

    fn broker(code: i16) -> Error {
        Error::broker(ApiKey::DescribeGroups, code).expect("an error")
    }

    /// Coordinator errors are tried again until an answer, each after a backoff that grows;
    /// any other error ends the call at once.
    #[tokio::test(start_paused = true)]
    async fn coordinator_errors_are_retried_with_growing_backoff_until_an_answer() {
        let pool = pool(60_000);
        let retry = Retry::new(&pool);
        let started = Instant::now();
        let tries = AtomicU32::new(0);
        let answer = retry
            .run("test", || async {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(broker(15)),
                    1..=3 => Err(broker(16)),
                    4 => Err(broker(14)),
                    _ => Ok("answer"),
                }
            })
            .await;
        assert_eq!(answer.unwrap(), "answer");
        assert_eq!(tries.load(Ordering::SeqCst), 6);
        // 100, 200, 400, 800, 1000 ms, each ±20 %.
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(2_000)..=Duration::from_millis(3_000)).contains(&waited),
            "{waited:?}"
        );

        let tries = AtomicU32::new(0);
        let refused: Result<(), Error> = retry
            .run("test", || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(broker(30))
            })
            .await;
        assert_eq!(
            refused.unwrap_err().code(),
            Some(ResponseError::GroupAuthorizationFailed)
        );
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    /// A coordinator that never gets ready fails the call with the last error once
    /// default.api.timeout.ms has passed, not before.
    #[tokio::test(start_paused = true)]
    async fn the_last_error_fails_the_call_after_the_timeout() {
        let pool = pool(5_000);
        let retry = Retry::new(&pool);
        let started = Instant::now();
        let tries = AtomicU32::new(0);
        let e = retry
            .run("test", || async {
                let n = tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(broker(if n.is_multiple_of(2) { 15 } else { 16 }))
            })
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert_eq!(waited, Duration::from_millis(5_000), "{waited:?}");
        let n = tries.load(Ordering::SeqCst);
        assert!((8..=11).contains(&n), "{n} tries in 5 s");
        let last = if (n - 1).is_multiple_of(2) { 15 } else { 16 };
        assert_eq!(e.code().map(|c| c.code()), Some(last));
        assert!(retry.left().is_zero());
    }
}
