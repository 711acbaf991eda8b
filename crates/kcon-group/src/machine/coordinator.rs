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

    /// The coordinator is looked up again, for `reason` (logged once, at INFO, when it was
    /// known until now).
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

/// Why `api`'s answer `error_code` (NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE) sends the
/// member to look its coordinator up again, in the broker's words: NOT_COORDINATOR says the
/// group moved to another broker, COORDINATOR_NOT_AVAILABLE that this one cannot serve it now
/// (loading, shutting down, its log not ready).
pub(crate) fn coordinator_error(api: &str, error_code: i16) -> String {
    let what = match error_code {
        code::NOT_COORDINATOR => "the group's coordinator moved to another broker",
        code::COORDINATOR_NOT_AVAILABLE => "the group's coordinator is not available",
        _ => "the group's coordinator cannot answer",
    };
    format!("{api} answered {}: {what}", error_name(error_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason says what the broker said: COORDINATOR_NOT_AVAILABLE is no move.
    #[test]
    fn the_reason_names_what_the_broker_answered() {
        assert_eq!(
            coordinator_error("JoinGroup", code::COORDINATOR_NOT_AVAILABLE),
            "JoinGroup answered COORDINATOR_NOT_AVAILABLE (15): the group's coordinator is \
             not available"
        );
        assert_eq!(
            coordinator_error("Heartbeat", code::NOT_COORDINATOR),
            "Heartbeat answered NOT_COORDINATOR (16): the group's coordinator moved to another \
             broker"
        );
    }
}
