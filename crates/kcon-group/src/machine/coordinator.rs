//! Losing the group coordinator (finding it is `crate::lookup`'s, which both members share).

use super::*;

impl GroupMachine {
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
