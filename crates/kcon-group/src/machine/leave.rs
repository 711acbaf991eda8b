//! Leaving the group: on close, on unsubscribe, and when the application stops polling.

use super::*;

impl GroupMachine {
    pub(super) fn leave(&mut self, then: AfterLeave, reason: &str, now: Instant) {
        if self.is_terminated() {
            return;
        }
        match self.phase {
            Phase::Leaving { .. } => {
                if let Phase::Leaving { then: t, .. } = &mut self.phase
                    && then == AfterLeave::Closed
                {
                    *t = AfterLeave::Closed;
                }
                return;
            }
            Phase::Revoking(AfterRevoke::Leave(_)) => {
                if then == AfterLeave::Closed {
                    self.phase = Phase::Revoking(AfterRevoke::Leave(AfterLeave::Closed));
                }
                return;
            }
            Phase::Idle | Phase::PollExpired => {
                self.lose_all();
                self.finish_leave(then, now);
                return;
            }
            _ => {}
        }
        self.leave_reason = reason.to_owned();
        if self.generation.is_valid() && !self.assignment.is_empty() {
            // A pending revocation is widened to everything the member owns. The application
            // already holds the pending `Revoked` (and may have committed for it): revoking
            // the same partitions again under a new id would leave its acknowledgement of the
            // first one unheard. So only the rest is revoked, and the leave waits for both.
            let rest = Revocation::not_pending(&self.revocation, &self.assignment);
            if rest.is_empty() {
                self.phase = Phase::Revoking(AfterRevoke::Leave(then));
            } else {
                self.revoke(rest, AfterRevoke::Leave(then), now);
            }
        } else {
            self.lose_all();
            self.send_leave(then, now);
        }
    }

    /// Moves to Leaving with a LeaveGroup to send, or straight on when there is nothing to
    /// leave (static member, no member id, no coordinator).
    pub(super) fn send_leave(&mut self, then: AfterLeave, now: Instant) {
        if self.leave_request(&self.leave_reason).is_none() {
            self.finish_leave(then, now);
            return;
        }
        self.phase = Phase::Leaving {
            in_flight: None,
            then,
        };
    }

    pub(super) fn left(&mut self, now: Instant) {
        if let Phase::Leaving { then, .. } = self.phase {
            self.finish_leave(then, now);
        }
    }

    pub(super) fn finish_leave(&mut self, then: AfterLeave, _now: Instant) {
        self.lose_all();
        // Out of the group, nothing is retried: a failure still running is forgotten.
        self.tries.clear();
        self.generation.id = -1;
        self.generation.protocol_name = None;
        if self.config.group_instance_id.is_none() {
            self.generation.member_id.clear();
        }
        self.heartbeat.in_flight = None;
        self.assigned_metadata = None;
        self.reassign_needed = false;
        match then {
            AfterLeave::Idle => {
                self.phase = Phase::Idle;
                if !self.topics.is_empty() {
                    // Subscribed again while leaving.
                    self.start_join(None);
                }
            }
            AfterLeave::Closed => {
                self.phase = Phase::Closed;
                self.events.push_back(GroupEvent::Closed);
            }
        }
    }

    /// LeaveGroup for this member, or `None` when it has nothing to leave: a static member
    /// (KIP-345), a member without id, or no coordinator to tell.
    pub(super) fn leave_request(&self, reason: &str) -> Option<LeaveGroup> {
        if self.config.group_instance_id.is_some()
            || self.generation.member_id.is_empty()
            || self.coordinator.known().is_none()
        {
            return None;
        }
        Some(LeaveGroup {
            group_id: self.config.group_id.clone(),
            member_id: self.generation.member_id.clone(),
            group_instance_id: None,
            reason: Some(reason.to_owned()),
        })
    }
}
