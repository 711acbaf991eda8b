//! Finding the group coordinator, and losing it.

use super::*;

impl GroupMachine {
    pub(super) fn on_find_coordinator(
        &mut self,
        result: Result<GroupResponse, RequestFailure>,
        now: Instant,
    ) {
        let result = crate::messages::found_coordinator(result);
        let lookup = self.coordinator.handle_answer(now, result, self.rng.f64());
        while let Some(report) = self.coordinator.take_report() {
            self.tell(Some(report));
        }
        match lookup {
            Lookup::Found(c) => {
                info!(group = %self.config.group_id, coordinator = c.id, host = %c.host, port = c.port, "found the group coordinator");
                // Heartbeats go out at once to the new coordinator, unless they are backing
                // off after failures: finding the coordinator again is not a heartbeat
                // getting through.
                self.heartbeat.next_at = self.tries.heartbeat.retry_at().unwrap_or(now).max(now);
                self.heartbeat.session_deadline = now + self.config.session_timeout;
            }
            Lookup::Retrying { .. } => {}
            Lookup::Failed {
                error_code: Some(error_code),
                message,
            } => self.fail(
                GroupError::Broker {
                    api_key: ApiKey::FindCoordinator as i16,
                    error_code,
                    message,
                },
                now,
            ),
            Lookup::Failed {
                error_code: None,
                message,
            } => self.fail(GroupError::Request(message.unwrap_or_default()), now),
        }
    }

    pub(super) fn coordinator_lost(&mut self, reason: &str, now: Instant) {
        if self.coordinator.lost() {
            info!(group = %self.config.group_id, reason, "lost the group coordinator; finding it again");
        }
        self.heartbeat.in_flight = None;
        match &mut self.phase {
            // A JoinGroup in flight is sent again once the coordinator is found (after its own
            // backoff, when it was the one that failed: the caller sets that).
            Phase::Joining { in_flight, .. } => {
                *in_flight = None;
            }
            // The Java client rejoins when SyncGroup cannot complete: the generation being
            // completed is probably gone with the coordinator.
            Phase::Syncing { .. } | Phase::Assigning { .. } => self.start_join(None),
            Phase::Leaving { then, .. } => {
                let then = *then;
                self.finish_leave(then, now);
            }
            _ => {}
        }
    }

    /// Whether the current phase talks to the coordinator.
    pub(super) fn needs_coordinator(&self) -> bool {
        match self.phase {
            Phase::Joining { .. } | Phase::Syncing { .. } | Phase::Stable => true,
            Phase::Revoking(_) | Phase::Assigning { .. } => self.generation.is_valid(),
            Phase::Idle
            | Phase::PollExpired
            | Phase::Leaving { .. }
            | Phase::Closed
            | Phase::Failed => false,
        }
    }
}
