//! The machine's timers, its backoffs, and what happens when the application stops polling.

use super::*;

kcon_core::timers! {
    /// The timers of the machine, one table (`Timers`): `poll_timeout` is the earliest armed one.
    /// Listed in the order `handle_timeout` acts on them.
    pub(super) enum Timer {
        /// The application has not acknowledged a revocation within `max.poll.interval.ms`.
        Revocation,
        /// The application has not polled within `max.poll.interval.ms`.
        Poll,
        /// No heartbeat succeeded within `session.timeout.ms`: the coordinator is presumed lost.
        Session,
        /// Retry JoinGroup or the leader's Metadata request after a failure; send the hand-over
        /// JoinGroup once `HANDOVER_DELAY` has passed.
        RebalanceRetry,
        /// Find the coordinator again after a failure.
        CoordinatorRetry,
        /// A leader's assignment withheld partitions for the cooperative follow-up rebalance, and
        /// `max.poll.interval.ms` (the rebalance timeout) later the generation is still the same:
        /// the member that was to revoke them and rejoin is gone, so the leader rejoins.
        FollowUp,
        /// Send the next heartbeat.
        Heartbeat,
    }
    /// The member's timer table.
    pub(super) type Timers;
}

impl GroupMachine {
    /// When `timer` fires, as the state says: the one rule of each timer. A timer runs only
    /// while what it waits for can happen (a heartbeat once the coordinator is known and none
    /// is in flight), so the table never holds a deadline the member is not waiting on.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
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
            Timer::FollowUp => self
                .follow_up
                .filter(|(generation, _)| {
                    *generation == self.generation.id && matches!(self.phase, Phase::Stable)
                })
                .map(|(_, at)| at),
        }
    }

    /// The timer table as the state says it should be.
    pub(super) fn armed_timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.deadline(timer))
    }

    /// Arms every timer from the state. Called once at the end of every input and poll, so
    /// that no transition can leave a timer behind in the table or miss arming one: the
    /// state changes in many places, and each timer's rule is written once, in `deadline`.
    pub(super) fn rearm(&mut self) {
        self.timers = self.armed_timers();
    }

    /// `timer` fired at `now`.
    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Revocation => {
                warn!(group = %self.config.group_id,
                    "the application did not acknowledge a revocation within max.poll.interval.ms; going on");
                // The machine goes on without the acknowledgement, and the group may give the
                // partitions to another member at once: the application, which may still be
                // working on them, is told they are lost (no more commits), not left believing
                // it owns them.
                if let Some(r) = &self.revocation {
                    self.events.push_back(GroupEvent::Lost {
                        partitions: r.partitions().cloned().collect(),
                    });
                }
                self.finish_revocation(now);
            }
            Timer::Poll => self.poll_expired(now),
            Timer::Session => {
                // Java's heartbeat thread does the same: without an answer for a whole session
                // the coordinator is presumed gone. The session timer restarts so that, once
                // found again, a heartbeat is tried before giving up on it again; if the
                // coordinator did evict the member, that heartbeat says so.
                warn!(group = %self.config.group_id,
                    "no heartbeat answered within session.timeout.ms; finding the coordinator again");
                self.heartbeat.session_deadline = now + self.config.session_timeout;
                self.coordinator_lost("session timeout without a heartbeat answer", now);
            }
            Timer::RebalanceRetry => {
                // The wait is over: the request goes as soon as it can (a JoinGroup once the
                // coordinator is known again), and the timer is not left behind in the past.
                if let Phase::Joining { retry_at, .. } | Phase::Assigning { retry_at, .. } =
                    &mut self.phase
                {
                    *retry_at = None;
                }
            }
            Timer::FollowUp => {
                self.follow_up = None;
                info!(group = %self.config.group_id, generation = self.generation.id,
                    "partitions withheld for the cooperative follow-up rebalance were not handed over within max.poll.interval.ms; rejoining");
                self.prepare_rejoin(FOLLOW_UP_MISSING, now);
            }
            // These only gate what poll_request sends.
            Timer::CoordinatorRetry | Timer::Heartbeat => {}
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
