//! What both group members do around their own requests and answers, written once: a member
//! that is done (closed or failed) sends nothing and takes no answer, and the coordinator's
//! lookup (FindCoordinator) comes before everything it sends to the coordinator. A member
//! implements [`LookupFirst`] with its own part; `kcon_core::machine_on_timers!` calls the
//! provided [`next_request`](LookupFirst::next_request) and
//! [`on_response`](LookupFirst::on_response).

use std::collections::VecDeque;
use std::time::Instant;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator::{CoordinatorLookup, Lookup};
use kcon_core::{PersistentFailure, RequestFailure, RequestId, RequestIds};
use tracing::info;

use crate::error::GroupError;
use crate::machine::GroupEvent;
use crate::member::Member;
use crate::messages::{GroupResponse, Outgoing, find_coordinator, found_coordinator};

/// An answer to a member's request, or why none came.
pub(crate) type Answer = Result<GroupResponse, RequestFailure>;

/// What a lookup's answer came to, for the member's own part of it.
#[derive(Debug)]
pub(crate) enum LookupOutcome {
    /// The coordinator is known (logged here): heartbeats may go to it.
    Found,
    /// The lookup goes again after its backoff (any report already told).
    Retrying,
    /// The lookup failed for good: the member fails with this error.
    Failed(GroupError),
}

/// What a member's lookup works with: the lookup itself, the member's request ids, its seeded
/// generator (for the lookup's jittered backoff) and its events (for the lookup's reports).
pub(crate) type LookupParts<'a> = (
    &'a mut CoordinatorLookup,
    &'a mut RequestIds,
    &'a mut fastrand::Rng,
    &'a mut VecDeque<GroupEvent>,
);

/// A group member whose requests and answers go through the coordinator's lookup first.
pub(crate) trait LookupFirst: Member {
    /// What the lookup works with, borrowed together.
    fn lookup_parts(&mut self) -> LookupParts<'_>;

    /// Whether its state talks to the coordinator now, so that it must be known.
    fn needs_coordinator(&self) -> bool;

    /// Its own part of a lookup's answer.
    fn lookup_answered(&mut self, now: Instant, outcome: LookupOutcome);

    /// Its next request other than a lookup, if any.
    fn own_request(&mut self, now: Instant) -> Option<Outgoing>;

    /// An answer to a request of its own (not a lookup), or why none came.
    fn own_response(&mut self, now: Instant, id: RequestId, result: Answer);

    /// Passes a report on to the application, if there is one.
    fn tell(&mut self, report: Option<PersistentFailure>) {
        if let Some(r) = report {
            self.lookup_parts()
                .3
                .push_back(GroupEvent::PersistentFailure(r));
        }
    }

    /// The next request: none once done, the lookup when one is due, else the member's own.
    fn next_request(&mut self, now: Instant) -> Option<Outgoing> {
        if self.is_terminated() {
            return None;
        }
        let wants = self.needs_coordinator();
        let (lookup, ids, _, _) = self.lookup_parts();
        if let Some(id) = lookup.poll_lookup(now, wants, || ids.next_id()) {
            return Some(find_coordinator(id, &self.config().group_id));
        }
        self.own_request(now)
    }

    /// Takes an answer: none once done (an answer still on its way changes nothing, and a
    /// refused lookup would report a failure after `Closed`), the lookup's here, else the
    /// member's own.
    fn on_response(&mut self, now: Instant, id: RequestId, result: Answer) {
        if self.is_terminated() {
            return;
        }
        if !self.lookup_parts().0.is_lookup(id) {
            self.own_response(now, id, result);
            return;
        }
        let result = found_coordinator(result);
        let (lookup, _, rng, _) = self.lookup_parts();
        let lookup = lookup.handle_answer(now, result, rng.f64());
        while let Some(report) = self.lookup_parts().0.take_report() {
            self.tell(Some(report));
        }
        let outcome = match lookup {
            Lookup::Found(c) => {
                info!(group = %self.config().group_id, coordinator = c.id, host = %c.host, port = c.port, "found the group coordinator");
                LookupOutcome::Found
            }
            Lookup::Retrying { .. } => LookupOutcome::Retrying,
            Lookup::Failed {
                error_code: Some(error_code),
                message,
            } => LookupOutcome::Failed(GroupError::Broker {
                api_key: ApiKey::FindCoordinator as i16,
                error_code,
                message,
            }),
            Lookup::Failed {
                error_code: None,
                message,
            } => LookupOutcome::Failed(GroupError::Request(message.unwrap_or_default())),
        };
        self.lookup_answered(now, outcome);
    }
}
