//! Heartbeats: what their answers mean for the member, and when the next one goes.

use super::*;

impl GroupMachine {
    pub(super) fn on_heartbeat(
        &mut self,
        sent_for: i32,
        result: Result<GroupResponse, RequestFailure>,
        now: Instant,
    ) {
        let error_code = match result {
            Ok(GroupResponse::Heartbeat { error_code }) => error_code,
            Ok(other) => {
                warn!(group = %self.config.group_id, ?other, "an answer of the wrong kind; ignored");
                return;
            }
            Err(f) if f.retriable => {
                // The coordinator is looked up again at once; the next heartbeat waits for
                // the heartbeats' own backoff (see `lookup_answered`).
                self.heartbeat.next_at = self.try_failed(Try::Heartbeat, &f, now);
                self.coordinator_lost(&f.reason, now);
                return;
            }
            Err(f) => {
                self.fail(GroupError::request_failed(f.reason, f.cause), now);
                return;
            }
        };
        let current = sent_for == self.generation.id && self.heartbeating();
        let answered = match error_code {
            code::NOT_COORDINATOR
            | code::COORDINATOR_NOT_AVAILABLE
            | code::COORDINATOR_LOAD_IN_PROGRESS => false,
            code::NONE
            | code::REBALANCE_IN_PROGRESS
            | code::UNKNOWN_MEMBER_ID
            | code::ILLEGAL_GENERATION => true,
            _ => !current,
        };
        if answered {
            // Heartbeats get through, whatever this one's answer asks of the member.
            self.try_answered(Try::Heartbeat, now);
        }
        match error_code {
            code::NONE => {
                self.heartbeat.session_deadline = now + self.config.session_timeout;
            }
            _ if !current => {
                // An answer for a generation the member has already left behind (it rejoined
                // meanwhile): the Java client ignores these too.
                debug!(group = %self.config.group_id, error = %error_name(error_code), "heartbeat error for an old generation; ignored");
            }
            code::REBALANCE_IN_PROGRESS => {
                self.heartbeat.session_deadline = now + self.config.session_timeout;
                match self.phase {
                    Phase::Stable if self.revocation.is_none() => {
                        info!(group = %self.config.group_id, "the group is rebalancing; rejoining");
                        self.prepare_rejoin("the coordinator started a rebalance", now);
                    }
                    // Another member has started the next generation already: the hand-over
                    // need not wait for this one to reach everybody.
                    Phase::Revoking(AfterRevoke::HandOver(_)) => {
                        self.phase = Phase::Revoking(AfterRevoke::Join);
                    }
                    // Syncing: the SyncGroup answer will say so. Revoking: a rejoin follows.
                    _ => {}
                }
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                self.heartbeat.next_at = self.try_refused(Try::Heartbeat, error_code, now);
                self.coordinator_lost(&coordinator_error("Heartbeat", error_code), now);
            }
            code::COORDINATOR_LOAD_IN_PROGRESS => {
                self.heartbeat.next_at = self.try_refused(Try::Heartbeat, error_code, now);
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::Heartbeat, error_code, now)
            }
            _ => {
                // Retriable, or unexpected: try again after the backoff.
                self.heartbeat.next_at = self.try_refused(Try::Heartbeat, error_code, now);
            }
        }
    }

    pub(super) fn heartbeat_request(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.heartbeating()
            || self.heartbeat.in_flight.is_some()
            || now < self.heartbeat.next_at
        {
            return None;
        }
        let coordinator = self.coordinator.known().cloned()?;
        let out = self.outgoing(
            Target::Coordinator(coordinator),
            GroupRequest::Heartbeat(Heartbeat {
                group_id: self.config.group_id.clone(),
                generation_id: self.generation.id,
                member_id: self.generation.member_id.clone(),
                group_instance_id: self.config.group_instance_id.clone(),
            }),
            None,
        );
        self.heartbeat.in_flight = Some((out.id, self.generation.id));
        self.tries.heartbeat.sent();
        // Java times the next heartbeat from when this one was sent.
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        Some(out)
    }

    /// Whether the member heartbeats now: it has a generation and is not (re)joining. Java
    /// heartbeats in COMPLETING_REBALANCE and STABLE.
    pub(super) fn heartbeating(&self) -> bool {
        self.generation.is_valid()
            && matches!(
                self.phase,
                Phase::Stable
                    | Phase::Revoking(_)
                    | Phase::Assigning { .. }
                    | Phase::Syncing { .. }
            )
    }
}
