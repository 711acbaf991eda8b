//! The machine's timers, its backoffs, and what happens when the application stops polling.

use super::*;

/// The timers of the machine, one table: `poll_timeout` is the earliest armed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Find the coordinator again after a failure.
    CoordinatorRetry,
    /// Retry JoinGroup or the leader's Metadata request after a failure; send the hand-over
    /// JoinGroup once `HANDOVER_DELAY` has passed.
    RebalanceRetry,
    /// Send the next heartbeat.
    Heartbeat,
    /// No heartbeat succeeded within `session.timeout.ms`: the coordinator is presumed lost.
    Session,
    /// The application has not polled within `max.poll.interval.ms`.
    Poll,
    /// The application has not acknowledged a revocation within `max.poll.interval.ms`.
    Revocation,
}

impl GroupMachine {
    pub(super) fn timer(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::CoordinatorRetry => self.coordinator.retry_at(self.needs_coordinator()),
            Timer::RebalanceRetry => match &self.phase {
                Phase::Joining {
                    in_flight: None,
                    retry_at,
                }
                | Phase::Assigning {
                    in_flight: None,
                    retry_at,
                    ..
                } => *retry_at,
                _ => None,
            },
            Timer::Heartbeat => (self.heartbeating()
                && self.coordinator.known().is_some()
                && self.heartbeat.in_flight.is_none())
            .then_some(self.heartbeat.next_at),
            Timer::Session => (self.heartbeating() && self.coordinator.known().is_some())
                .then_some(self.heartbeat.session_deadline),
            Timer::Poll => self
                .poll_timer_armed()
                .then(|| self.last_poll + self.config.max_poll_interval),
            Timer::Revocation => self.revocation.as_ref().map(|r| r.deadline),
        }
    }

    // ----- answers -----

    pub(super) fn poll_expired(&mut self, now: Instant) {
        warn!(group = %self.config.group_id, max_poll_interval_ms = self.config.max_poll_interval.as_millis() as u64,
            "the application did not poll within max.poll.interval.ms; leaving the group");
        // The application is stuck: it can't act on a revocation, so the partitions are lost
        // (the group gives them to others as soon as the member is gone).
        self.lose_all();
        let leave = self.leave_request("consumer poll timeout has expired");
        self.generation.id = -1;
        self.generation.protocol_name = None;
        self.heartbeat.in_flight = None;
        self.phase = Phase::PollExpired;
        // Sent without waiting for the answer: it changes nothing.
        self.pending_leave = leave;
        let _ = now;
    }

    pub(super) fn next_backoff(&mut self, attempts: u32) -> Duration {
        self.backoff.delay(attempts, self.rng.f64())
    }

    pub(super) fn rebalance_backoff(&mut self) -> Duration {
        let d = self.next_backoff(self.rebalance_attempts);
        self.rebalance_attempts += 1;
        d
    }

    pub(super) fn poll_timer_armed(&self) -> bool {
        !self.topics.is_empty()
            && matches!(
                self.phase,
                Phase::Joining { .. }
                    | Phase::Assigning { .. }
                    | Phase::Syncing { .. }
                    | Phase::Stable
                    | Phase::Revoking(AfterRevoke::Join | AfterRevoke::HandOver(_))
            )
    }
}
