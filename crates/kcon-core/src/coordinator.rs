//! The group coordinator: finding it ([`CoordinatorLookup`], the one lookup of the group member
//! and the commit machine; FindCoordinator in kafka-protocol's types, which kcon-pool's
//! `Connection::find_coordinator` sends for every part), and what a member shows it to commit.

use kcon_codec::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kcon_codec::kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kcon_codec::kafka_protocol::protocol::StrBytes;

use std::time::Instant;

use tracing::debug;

use kcon_codec::kafka_protocol::messages::ApiKey;

use crate::backoff::ExponentialBackoff;
use crate::error_codes::is_fatal_group_error;
use crate::failure::{FailureTracker, PersistentFailure};
use crate::machine::{Coordinator, RequestFailure, RequestId};

/// FindCoordinator's answer for one group, whatever the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCoordinator {
    /// The error code.
    pub error_code: i16,
    /// The broker's message, if any.
    pub error_message: Option<String>,
    /// The coordinator, when the error code is 0.
    pub coordinator: Option<Coordinator>,
}

/// What a member's commits carry to show the coordinator it is a current member of the group,
/// and where they go: the generation and member id of the group member, or generation -1 and
/// an empty member id from outside any generation (a tool resetting offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The generation id; -1 outside any generation.
    pub generation_id: i32,
    /// The member id; empty outside the group.
    pub member_id: String,
    /// The group coordinator, when known.
    pub coordinator: Option<Coordinator>,
    /// How many times the member has lost everything it owned at once (fenced, expired, or
    /// its generation reset), counting from 0. Offsets stored before such a loss belong to
    /// partitions the coordinator may have given to another member: once this grows they are
    /// not committed, whatever generation comes next.
    pub losses: u64,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            generation_id: -1,
            member_id: String::new(),
            coordinator: None,
            losses: 0,
        }
    }
}

/// A consumer's place in its group, as a transactional producer hands it to the group
/// coordinator with the offsets it commits inside a transaction (TxnOffsetCommit v3+, KIP-447):
/// the coordinator refuses them if the member is no longer of that generation, so a consumer
/// that lost its partitions cannot commit for them through a transaction.
///
/// Under the KIP-848 protocol the generation is the member epoch. Built outside a group (no
/// generation yet), it carries generation -1 and an empty member id, and only the group id is
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The generation (the member epoch under KIP-848); -1 outside a generation.
    pub generation_id: i32,
    /// The member id the coordinator gave; empty outside the group.
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// The metadata of `group_id` outside any generation: the group alone.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }

    /// The metadata of a member of generation `generation_id` as `member_id`.
    pub fn member(
        group_id: impl Into<String>,
        generation_id: i32,
        member_id: impl Into<String>,
        group_instance_id: Option<String>,
    ) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id,
        }
    }
}

/// Finding a group's coordinator, sans-IO: the part of a machine that talks to the coordinator
/// which knows whether it is known, looks it up when wanted, and backs off between failed
/// lookups (KIP-580).
///
/// The owning machine drives it: [`is_due`](Self::is_due) says when a FindCoordinator must go
/// out (the machine sends it under its own request type, to any broker, and reports it with
/// [`sent`](Self::sent)), [`handle_answer`](Self::handle_answer) takes its answer, [`retry_at`](Self::retry_at)
/// is the lookup's timer for the machine's timer table, and [`lost`](Self::lost) forgets the
/// coordinator when a request to it says it moved or its connection failed.
///
/// What ends a lookup for good is decided here once: an error no retry can fix
/// ([`is_fatal_group_error`]) or a request the broker can never answer (a failure that is not
/// retriable). Every other error, a lost connection or a timeout backs off and tries again;
/// lookups that keep failing are reported ([`take_report`](Self::take_report)).
///
/// Finding the coordinator says nothing about the requests sent to it: a coordinator found
/// again after it hung up on a JoinGroup does not make the next JoinGroup go sooner. Each of
/// those requests has a [`FailureTracker`] of its own in the machine.
#[derive(Debug)]
pub struct CoordinatorLookup {
    group_id: String,
    /// FindCoordinator's key type: [`GROUP`] or [`TRANSACTION`].
    key_type: i8,
    known: Option<Coordinator>,
    in_flight: Option<RequestId>,
    /// Failed lookups in a row, their backoff and their reports.
    tries: FailureTracker,
    /// Reports of lookups that keep failing, or recovered, for the machine to pass on.
    reports: Vec<PersistentFailure>,
}

/// What a FindCoordinator answer means to the machine that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The coordinator is known now.
    Found(Coordinator),
    /// The lookup failed in a way a retry may fix; it goes out again after the backoff.
    Retrying {
        /// What happened, for the log.
        reason: String,
    },
    /// The lookup failed for good.
    Failed {
        /// The broker's error code, when it answered one.
        error_code: Option<i16>,
        /// The broker's message, or why the request got no answer.
        message: Option<String>,
    },
}

impl CoordinatorLookup {
    /// Nothing known yet for `group_id`; failed lookups back off by `backoff`.
    pub fn new(group_id: impl Into<String>, backoff: ExponentialBackoff) -> Self {
        Self::of_kind(group_id.into(), GROUP, backoff)
    }

    /// Nothing known yet of the transaction coordinator of `transactional_id` (key type 1);
    /// failed lookups back off by `backoff`. [`group_id`](Self::group_id) is then the
    /// transactional id.
    pub fn transaction(transactional_id: impl Into<String>, backoff: ExponentialBackoff) -> Self {
        Self::of_kind(transactional_id.into(), TRANSACTION, backoff)
    }

    fn of_kind(group_id: String, key_type: i8, backoff: ExponentialBackoff) -> Self {
        let what = if key_type == TRANSACTION {
            format!("the coordinator of transactional id {group_id}")
        } else {
            format!("the coordinator of group {group_id}")
        };
        CoordinatorLookup {
            tries: FailureTracker::new(ApiKey::FindCoordinator, what, backoff),
            group_id,
            key_type,
            known: None,
            in_flight: None,
            reports: Vec::new(),
        }
    }

    /// The next report of lookups that keep failing (or recovered), if any.
    pub fn take_report(&mut self) -> Option<PersistentFailure> {
        (!self.reports.is_empty()).then(|| self.reports.remove(0))
    }

    /// The group (the transactional id, for a transaction coordinator).
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// FindCoordinator's key type of this lookup: [`GROUP`] or [`TRANSACTION`].
    pub fn key_type(&self) -> i8 {
        self.key_type
    }

    /// The coordinator, when known.
    pub fn known(&self) -> Option<&Coordinator> {
        self.known.as_ref()
    }

    /// Whether request `id` is this lookup's FindCoordinator.
    pub fn is_lookup(&self, id: RequestId) -> bool {
        self.in_flight == Some(id)
    }

    /// Whether a FindCoordinator is in flight.
    pub fn is_looking(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a FindCoordinator should go out now, when the machine `wants` the coordinator:
    /// it is not known, no lookup is in flight and no backoff runs. The machine then sends one
    /// and says so with [`sent`](Self::sent).
    pub fn is_due(&self, now: Instant, wants: bool) -> bool {
        wants && self.known.is_none() && self.in_flight.is_none() && self.tries.is_due(now)
    }

    /// The id of a FindCoordinator to send now, taken from `next_id`, when one is due (see
    /// [`is_due`](Self::is_due)); the lookup counts as sent.
    pub fn poll_lookup(
        &mut self,
        now: Instant,
        wants: bool,
        next_id: impl FnOnce() -> RequestId,
    ) -> Option<RequestId> {
        if !self.is_due(now, wants) {
            return None;
        }
        let id = next_id();
        self.sent(id);
        Some(id)
    }

    /// The machine sent FindCoordinator as request `id`.
    pub fn sent(&mut self, id: RequestId) {
        self.in_flight = Some(id);
        self.tries.sent();
    }

    /// When the next lookup may go out after a failure, while the machine `wants` the
    /// coordinator and none is known or being looked up: the lookup's timer.
    pub fn retry_at(&self, wants: bool) -> Option<Instant> {
        (wants && self.known.is_none() && self.in_flight.is_none())
            .then(|| self.tries.retry_at())
            .flatten()
    }

    /// The answer to the lookup in flight (check [`is_lookup`](Self::is_lookup) first), or
    /// why it got none; `random` in `[0, 1)` spreads the backoff.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        result: Result<FoundCoordinator, RequestFailure>,
        random: f64,
    ) -> Lookup {
        self.in_flight = None;
        let failed = match result {
            Ok(FoundCoordinator {
                error_code: 0,
                coordinator: Some(c),
                ..
            }) => {
                debug!(group = %self.group_id, coordinator = c.id, host = %c.host, port = c.port, "found the group coordinator");
                self.known = Some(c.clone());
                // FindCoordinator goes to any broker: which one answered is not known here.
                self.reports.extend(self.tries.succeeded_by(now, None));
                return Lookup::Found(c);
            }
            Ok(FoundCoordinator {
                error_code,
                error_message,
                ..
            }) if is_fatal_group_error(error_code) => {
                return Lookup::Failed {
                    error_code: Some(error_code),
                    message: error_message,
                };
            }
            Ok(FoundCoordinator { error_code, .. }) => {
                let reason = format!(
                    "FindCoordinator answered {}",
                    crate::error_codes::error_name(error_code)
                );
                let cause = reason.clone();
                (reason, self.tries.refused(now, cause, None, random))
            }
            Err(f) if f.retriable => {
                let failed = self.tries.failed(now, &f, random);
                (f.reason, failed)
            }
            Err(f) => {
                return Lookup::Failed {
                    error_code: None,
                    message: Some(f.reason),
                };
            }
        };
        let (reason, failed) = failed;
        debug!(group = %self.group_id, %reason, delay = ?failed.delay, "finding the coordinator again after a backoff");
        self.reports.extend(failed.report);
        Lookup::Retrying { reason }
    }

    /// The coordinator as someone else found it (saving a lookup). Ignored while a lookup is in
    /// flight: its answer is newer.
    pub fn set(&mut self, coordinator: Coordinator) {
        if self.in_flight.is_none() {
            self.known = Some(coordinator);
            self.tries.sent();
        }
    }

    /// The coordinator moved or its connection failed: it is looked up again as soon as it is
    /// next wanted (a lookup in flight goes on; a late answer from a coordinator already
    /// forgotten leaves a running backoff alone). Returns whether one was known.
    pub fn lost(&mut self) -> bool {
        let was_known = self.known.take().is_some();
        if was_known {
            self.tries.sent();
        }
        was_known
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn text(v: &StrBytes) -> String {
    v.to_string()
}

/// FindCoordinator's key type of a consumer group.
pub const GROUP: i8 = 0;
/// FindCoordinator's key type of a transactional id (v1+).
pub const TRANSACTION: i8 = 1;

/// FindCoordinator for `key` of `key_type` ([`GROUP`] or [`TRANSACTION`]); v4+ batches keys,
/// kcon sends one. Version 0 knows groups only: ask [`key_type_supported`] first.
pub fn find_coordinator_request(key: &str, key_type: i8, version: i16) -> FindCoordinatorRequest {
    let mut r = FindCoordinatorRequest::default();
    if version >= 1 {
        r.key_type = key_type;
    }
    if version >= 4 {
        r.coordinator_keys = vec![s(key)];
    } else {
        r.key = s(key);
    }
    r
}

/// Whether FindCoordinator at `version` can ask for a coordinator of `key_type`: v0 has no
/// key type and finds group coordinators only.
pub fn key_type_supported(key_type: i8, version: i16) -> bool {
    key_type == GROUP || version >= 1
}

/// The coordinator from a FindCoordinator answer (v4+: the entry for `group_id`).
pub fn find_coordinator_response(
    group_id: &str,
    r: FindCoordinatorResponse,
    version: i16,
) -> FoundCoordinator {
    let (error_code, error_message, id, host, port) = if version >= 4 {
        let Some(c) = r
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == group_id)
        else {
            // COORDINATOR_NOT_AVAILABLE: retriable, which is right for an answer that left the
            // group out.
            return FoundCoordinator {
                error_code: 15,
                error_message: Some("the answer names no coordinator for the group".into()),
                coordinator: None,
            };
        };
        (c.error_code, c.error_message, c.node_id.0, c.host, c.port)
    } else {
        (r.error_code, r.error_message, r.node_id.0, r.host, r.port)
    };
    let coordinator = (error_code == 0).then(|| Coordinator {
        id,
        host: text(&host),
        port,
    });
    FoundCoordinator {
        error_code,
        error_message: error_message.as_ref().map(text).filter(|m| !m.is_empty()),
        coordinator,
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::assert_encodes as encodes;

    use super::*;
    use std::time::Duration;

    #[test]
    fn every_version_encodes() {
        for v in 0..=6 {
            encodes(&find_coordinator_request("g", GROUP, v), v);
        }
        for v in 1..=6 {
            let r = find_coordinator_request("tx", TRANSACTION, v);
            assert_eq!(r.key_type, TRANSACTION);
            encodes(&r, v);
        }
        assert!(!key_type_supported(TRANSACTION, 0));
        assert!(key_type_supported(GROUP, 0) && key_type_supported(TRANSACTION, 1));
        let backoff = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let lookup = CoordinatorLookup::transaction("tx", backoff);
        assert_eq!((lookup.group_id(), lookup.key_type()), ("tx", TRANSACTION));
    }

    #[test]
    fn batched_find_coordinator_picks_the_groups_entry() {
        use kcon_codec::kafka_protocol::messages::BrokerId;
        use kcon_codec::kafka_protocol::messages::find_coordinator_response::Coordinator as C;
        let mut r = FindCoordinatorResponse::default();
        let mut other = C::default();
        other.key = s("other");
        other.node_id = BrokerId(9);
        let mut mine = C::default();
        mine.key = s("g");
        mine.node_id = BrokerId(2);
        mine.host = s("h");
        mine.port = 9092;
        r.coordinators = vec![other, mine];
        assert_eq!(
            find_coordinator_response("g", r.clone(), 4),
            FoundCoordinator {
                error_code: 0,
                error_message: None,
                coordinator: Some(Coordinator {
                    id: 2,
                    host: "h".into(),
                    port: 9092
                }),
            }
        );
        r.coordinators.remove(1);
        assert!(matches!(
            find_coordinator_response("g", r, 4),
            FoundCoordinator {
                error_code: 15,
                coordinator: None,
                ..
            }
        ));
    }
}
