//! The fetch session with one broker (KIP-227), as a sans-IO state machine.
//!
//! KIP-227's rules, which everything here follows (the request's `session_id`, `epoch`):
//!
//! | request | meaning to the broker |
//! |---|---|
//! | `0, -1` | full fetch, no session wanted (sessionless) |
//! | `0, 0` | full fetch, open a new session |
//! | `S, 0` | close session `S`, full fetch, open a new session |
//! | `S, -1` | close session `S`, full fetch without a session |
//! | `S, n > 0` | incremental fetch in session `S`: only added and changed partitions, plus the forgotten list |
//!
//! The answer to a full request carries the new session's id, or 0 when the broker keeps no
//! session (its cache is full, or it does not implement sessions: Tansu and librdkafka's mock
//! cluster never do, see DESIGN.md, "The brokers"). The answer to an incremental request
//! carries only the partitions with something new; the others are unchanged, not empty.
//!
//! The client's side matches the Java client's `FetchSessionHandler` (behaviour, not code).

pub(crate) mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kcon_codec::kafka_protocol::messages::fetch_response::FetchResponse;
use kcon_core::TopicId;
use kcon_core::TopicPartition;
use tracing::{debug, info};

use crate::error::SessionError;

/// The epoch of a request that opens a session (KIP-227 `INITIAL_EPOCH`).
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a request that wants no session, or closes one (KIP-227 `FINAL_EPOCH`).
pub const FINAL_EPOCH: i32 = -1;

use kcon_core::error_codes::code;

/// What the consumer asks of one partition: the fields of a Fetch request's partition entry
/// that a fetch session caches on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetch {
    /// The topic's id (KIP-516), needed from Fetch v13.
    pub topic_id: Option<TopicId>,
    /// The offset to fetch from.
    pub fetch_offset: i64,
    /// The log start offset (-1 for a consumer; followers send theirs).
    pub log_start_offset: i64,
    /// The leader epoch the consumer knows (KIP-320, Fetch v9+); `None` when unknown.
    pub current_leader_epoch: Option<i32>,
    /// The epoch of the last fetched record (KIP-320 truncation detection, Fetch v12+).
    pub last_fetched_epoch: Option<i32>,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
}

impl PartitionFetch {
    /// A consumer's entry: fetch from `fetch_offset`, at most `partition_max_bytes`, no epochs.
    pub fn new(topic_id: Option<TopicId>, fetch_offset: i64, partition_max_bytes: i32) -> Self {
        PartitionFetch {
            topic_id,
            fetch_offset,
            log_start_offset: -1,
            current_leader_epoch: None,
            last_fetched_epoch: None,
            partition_max_bytes,
        }
    }

    /// Whether the broker's cached entry must be updated: a field on the wire changed. The
    /// topic id only counts when requests carry ids; a new id is a replaced partition then
    /// (see [`FetchSession::build`]).
    fn differs(&self, other: &PartitionFetch) -> bool {
        self.fetch_offset != other.fetch_offset
            || self.log_start_offset != other.log_start_offset
            || self.current_leader_epoch != other.current_leader_epoch
            || self.last_fetched_epoch != other.last_fetched_epoch
            || self.partition_max_bytes != other.partition_max_bytes
    }
}

/// A partition in a request's forgotten list (Fetch v7+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The partition.
    pub partition: TopicPartition,
    /// The topic id it was in the session under (what v13+ requests name it by).
    pub topic_id: Option<TopicId>,
}

/// What kind of Fetch a [`SessionRequest`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Every wanted partition; opens a session (epoch 0), or none (epoch -1) when the broker
    /// speaks no sessions (Fetch v4–v6).
    Full,
    /// Only added and changed partitions, and the forgotten ones.
    Incremental,
    /// Closes the session (epoch -1) and fetches nothing: sent when the consumer stops.
    Close,
}

/// A Fetch request as the session decides it, independent of the Fetch version; turn it into
/// kafka-protocol's type with [`fetch_request`](crate::fetch_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// Full, incremental or close.
    pub kind: RequestKind,
    /// The session id (0: none).
    pub session_id: i32,
    /// The session epoch (0: open a session, -1: no session or close, > 0: incremental).
    pub epoch: i32,
    /// The partitions to send, in order: all of them in a full request, the added and
    /// changed ones in an incremental one.
    pub partitions: Vec<(TopicPartition, PartitionFetch)>,
    /// Partitions to drop from the session (incremental requests only).
    pub forgotten: Vec<Forgotten>,
    /// Whether topics are named by id (Fetch v13+) rather than by name.
    pub topic_ids: bool,
}

/// What the session made of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The answer is good: use its partitions. After an incremental request, partitions it
    /// leaves out are unchanged (no new data, same watermarks), not empty.
    Accepted {
        /// Whether the request was incremental.
        incremental: bool,
    },
    /// The session was reset and the next request is full. The answer's partitions, if any,
    /// must not be used.
    Reset(SessionReset),
}

/// Why a session was reset (the next request is full).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionReset {
    /// FETCH_SESSION_ID_NOT_FOUND (70): the broker no longer has the session (evicted, or the
    /// broker restarted).
    SessionNotFound,
    /// INVALID_FETCH_SESSION_EPOCH (71): the broker expected another epoch.
    InvalidEpoch,
    /// FETCH_SESSION_TOPIC_ID_ERROR (106): the session's topic ids disagree with the broker's
    /// (a topic recreated, or ids used inconsistently); refresh metadata before fetching again.
    TopicIdError,
    /// Another top-level error code.
    Error(i16),
    /// The answer names a partition or topic id the request did not have: the client's and
    /// the broker's view of the session differ (Java `verifyFullFetchResponsePartitions` /
    /// `verifyIncrementalFetchResponsePartitions`).
    UnexpectedPartition(String),
    /// An incremental request was answered for another session.
    WrongSession {
        /// The session asked for.
        expected: i32,
        /// The session answered for.
        got: i32,
    },
    /// The request failed in transport: whether the broker applied it is unknown.
    Transport,
}

impl SessionReset {
    /// Whether metadata must be refreshed before the next fetch (topic ids are stale).
    pub fn needs_metadata_refresh(&self) -> bool {
        matches!(self, SessionReset::TopicIdError)
    }
}

/// What the next request will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A full request. `close` is a session to close in passing (sent as the session id with
    /// epoch 0), or 0.
    Full { close: i32 },
    /// An incremental request in session `id` at `epoch` (> 0).
    Incremental { id: i32, epoch: i32 },
    /// Closed: nothing more.
    Closed,
}

/// The request the session waits an answer for.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: RequestKind,
    session_id: i32,
    epoch: i32,
}

/// The fetch session of a consumer with one broker (KIP-227). It does no IO and reads no
/// clock.
///
/// # Driving it
/// 1. [`build`](Self::build) the next request from the partitions wanted from this broker
///    now (the fetcher's positions), for the Fetch version the broker speaks; send it (built
///    with [`fetch_request`](crate::fetch_request)).
/// 2. Feed exactly one of: [`handle_response`](Self::handle_response) with the answer, or
///    [`handle_failure`](Self::handle_failure) when the request failed in transport or was
///    cancelled. Only then can the next request be built: a session's requests are sequential.
/// 3. When the consumer stops, send [`close`](Self::close)'s request (if any) so the broker
///    frees the session's cache slot at once rather than on eviction.
///
/// The session's partitions ([`partitions`](Self::partitions)) are updated when a request is
/// built, as the Java client's `FetchSessionHandler.Builder` does: if that request then fails,
/// the next one is full, which replaces the broker's view whatever it holds.
#[derive(Debug, Clone)]
pub struct FetchSession {
    next: Next,
    /// The partitions of the last request built: what the broker holds for the session once
    /// that request is answered.
    partitions: BTreeMap<TopicPartition, PartitionFetch>,
    /// Whether the session names topics by id (opened at Fetch v13+). A session cannot switch:
    /// the broker answers FETCH_SESSION_TOPIC_ID_ERROR (KIP-516), so a version change opens a
    /// new session.
    topic_ids: bool,
    /// Names of the session's topic ids, to read v13+ answers.
    topic_names: HashMap<TopicId, String>,
    in_flight: Option<InFlight>,
    /// Whether the broker answered the last full request without opening a session.
    sessionless: bool,
}

impl Default for FetchSession {
    fn default() -> Self {
        FetchSession::new()
    }
}

impl FetchSession {
    /// A session not yet opened: the first request is full.
    pub fn new() -> Self {
        FetchSession {
            next: Next::Full { close: 0 },
            partitions: BTreeMap::new(),
            topic_ids: false,
            topic_names: HashMap::new(),
            in_flight: None,
            sessionless: false,
        }
    }

    /// The id of the open session, if the next request is incremental in it.
    pub fn session_id(&self) -> Option<i32> {
        match self.next {
            Next::Incremental { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The epoch the next request carries (0 for a full request opening a session).
    pub fn next_epoch(&self) -> Option<i32> {
        match self.next {
            Next::Incremental { epoch, .. } => Some(epoch),
            Next::Full { .. } => Some(INITIAL_EPOCH),
            Next::Closed => None,
        }
    }

    /// The partitions of the last request built. While [`session_id`](Self::session_id) is
    /// `Some`, exactly what the broker holds for the session.
    pub fn partitions(&self) -> &BTreeMap<TopicPartition, PartitionFetch> {
        &self.partitions
    }

    /// Whether the broker answered the last full request without opening a session; the
    /// session then goes on with full requests (each asking for a session again, as KIP-227
    /// lets a broker decline only while its cache is full).
    pub fn is_sessionless(&self) -> bool {
        self.sessionless
    }

    /// Whether a request is awaiting its answer.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.next == Next::Closed
    }

    /// The name of a topic id in the session, to read a Fetch v13+ answer.
    pub fn topic_name(&self, id: TopicId) -> Option<&str> {
        self.topic_names.get(&id).map(String::as_str)
    }

    /// Builds the next request for the partitions wanted from this broker now, at Fetch
    /// `version` (sessions from v7, topic ids from v13).
    ///
    /// An incremental request carries the partitions that are new or whose entry changed (the
    /// broker's cached entry must be updated), and forgets those no longer wanted (revoked,
    /// paused, moved to another leader). At v13+, a partition whose topic id changed (the topic
    /// was recreated) is both forgotten under its old id and sent under its new one, as the
    /// Java client does.
    pub fn build(
        &mut self,
        wanted: &BTreeMap<TopicPartition, PartitionFetch>,
        version: i16,
    ) -> Result<SessionRequest, SessionError> {
        if self.next == Next::Closed {
            return Err(SessionError::Closed);
        }
        if self.in_flight.is_some() {
            return Err(SessionError::RequestInFlight);
        }
        let topic_ids = version >= 13;
        if topic_ids && let Some((tp, _)) = wanted.iter().find(|(_, p)| p.topic_id.is_none()) {
            return Err(SessionError::MissingTopicId(tp.clone()));
        }
        let request = match self.next {
            Next::Incremental { id, epoch } if version >= 7 && topic_ids == self.topic_ids => {
                self.incremental(id, epoch, wanted)
            }
            // A session opened with names cannot go on with ids or the reverse (KIP-516), and
            // below v7 there is no session: close the old one in passing.
            Next::Incremental { id, .. } => self.full(id, wanted, version),
            Next::Full { close } => self.full(close, wanted, version),
            Next::Closed => return Err(SessionError::Closed),
        };
        self.partitions = wanted.clone();
        self.topic_ids = topic_ids;
        // A topic's partitions are together in `wanted`: its name is copied once.
        let mut last = None;
        self.topic_names = wanted
            .iter()
            .filter_map(|(tp, p)| {
                let named = (p.topic_id?, tp.topic.as_str());
                if last == Some(named) {
                    return None;
                }
                last = Some(named);
                Some((named.0, tp.topic.clone()))
            })
            .collect();
        self.in_flight = Some(InFlight {
            kind: request.kind,
            session_id: request.session_id,
            epoch: request.epoch,
        });
        Ok(request)
    }

    fn full(
        &self,
        close: i32,
        wanted: &BTreeMap<TopicPartition, PartitionFetch>,
        version: i16,
    ) -> SessionRequest {
        // Below v7 the request has no session fields; (0, -1) is what they mean there.
        let (session_id, epoch) = if version >= 7 {
            (close, INITIAL_EPOCH)
        } else {
            (0, FINAL_EPOCH)
        };
        SessionRequest {
            kind: RequestKind::Full,
            session_id,
            epoch,
            partitions: wanted.iter().map(|(tp, p)| (tp.clone(), *p)).collect(),
            forgotten: Vec::new(),
            topic_ids: version >= 13,
        }
    }

    fn incremental(
        &self,
        id: i32,
        epoch: i32,
        wanted: &BTreeMap<TopicPartition, PartitionFetch>,
    ) -> SessionRequest {
        let mut partitions = Vec::new();
        let mut forgotten = Vec::new();
        for (tp, old) in &self.partitions {
            match wanted.get(tp) {
                None => forgotten.push(Forgotten {
                    partition: tp.clone(),
                    topic_id: old.topic_id,
                }),
                // Java `FetchSessionHandler.Builder`: at v13+ the broker keys the session by
                // topic id, so a new id is another partition; the old one must go.
                Some(new) if self.topic_ids && new.topic_id != old.topic_id => {
                    forgotten.push(Forgotten {
                        partition: tp.clone(),
                        topic_id: old.topic_id,
                    });
                    partitions.push((tp.clone(), *new));
                }
                Some(new) if new.differs(old) => partitions.push((tp.clone(), *new)),
                Some(_) => {}
            }
        }
        partitions.extend(
            wanted
                .iter()
                .filter(|(tp, _)| !self.partitions.contains_key(*tp))
                .map(|(tp, p)| (tp.clone(), *p)),
        );
        // Sorted like the session, so that each topic's partitions are consecutive on the wire.
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        SessionRequest {
            kind: RequestKind::Incremental,
            session_id: id,
            epoch,
            partitions,
            forgotten,
            topic_ids: self.topic_ids,
        }
    }

    /// Takes the answer to the request in flight.
    ///
    /// Top-level errors reset the session (Java `FetchSessionHandler.handleResponse`):
    /// FETCH_SESSION_ID_NOT_FOUND opens a new one from scratch (there is nothing to close);
    /// INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR and any other error close
    /// the old one in passing (session id with epoch 0), so the broker frees it at once.
    pub fn handle_response(
        &mut self,
        response: &FetchResponse,
    ) -> Result<SessionOutcome, SessionError> {
        if self.next == Next::Closed {
            return Err(SessionError::Closed);
        }
        let Some(sent) = self.in_flight.take() else {
            return Err(SessionError::NoRequestInFlight);
        };
        let reset = match response.error_code {
            code::NONE => None,
            code::FETCH_SESSION_ID_NOT_FOUND => {
                self.next = Next::Full { close: 0 };
                return Ok(self.reset(SessionReset::SessionNotFound));
            }
            code::INVALID_FETCH_SESSION_EPOCH => Some(SessionReset::InvalidEpoch),
            code::FETCH_SESSION_TOPIC_ID_ERROR => Some(SessionReset::TopicIdError),
            other => Some(SessionReset::Error(other)),
        };
        if let Some(reason) = reset {
            self.next = Next::Full {
                close: sent.session_id,
            };
            return Ok(self.reset(reason));
        }
        if let Some(unexpected) = self.unexpected_partition(response) {
            // The views differ: start over, closing whatever session the answer is about.
            let close = if response.session_id != 0 {
                response.session_id
            } else {
                sent.session_id
            };
            self.next = Next::Full { close };
            return Ok(self.reset(SessionReset::UnexpectedPartition(unexpected)));
        }
        match sent.kind {
            RequestKind::Full | RequestKind::Close => {
                if response.session_id == 0 {
                    // KIP-227: no session (cache full, sessions unsupported, or a KIP-219
                    // throttled answer). Ask again with the next full request.
                    if !self.sessionless {
                        debug!("the broker keeps no fetch session; fetching without one");
                    }
                    self.sessionless = true;
                    self.next = Next::Full { close: 0 };
                } else {
                    self.sessionless = false;
                    self.next = Next::Incremental {
                        id: response.session_id,
                        epoch: 1,
                    };
                }
                Ok(SessionOutcome::Accepted { incremental: false })
            }
            RequestKind::Incremental => {
                let (id, epoch) = (sent.session_id, sent.epoch);
                if response.session_id == 0 {
                    // KIP-227: the broker closed the session; the answer itself is good.
                    info!(session_id = id, "the broker closed the fetch session");
                    self.next = Next::Full { close: 0 };
                } else if response.session_id != id {
                    self.next = Next::Full { close: id };
                    return Ok(self.reset(SessionReset::WrongSession {
                        expected: id,
                        got: response.session_id,
                    }));
                } else {
                    self.next = Next::Incremental {
                        id,
                        epoch: next_epoch(epoch),
                    };
                }
                Ok(SessionOutcome::Accepted { incremental: true })
            }
        }
    }

    /// The request in flight failed in transport (or was given up): the broker may or may not
    /// have applied it, so the next request is full, closing the session in passing (Java
    /// `FetchSessionHandler.handleError`).
    pub fn handle_failure(&mut self) -> Result<SessionOutcome, SessionError> {
        if self.next == Next::Closed {
            return Err(SessionError::Closed);
        }
        let Some(sent) = self.in_flight.take() else {
            return Err(SessionError::NoRequestInFlight);
        };
        self.next = Next::Full {
            close: sent.session_id,
        };
        Ok(self.reset(SessionReset::Transport))
    }

    /// Closes the session: the request to send (epoch -1, no partitions) if the broker may
    /// hold one for this consumer, `None` otherwise. Nothing can be built after.
    ///
    /// The session to close is the open one, or one a reset left to close in passing, or the
    /// one of a request still in flight (its answer is not awaited: KIP-227's epoch -1 closes
    /// a session whatever its epoch).
    pub fn close(&mut self) -> Option<SessionRequest> {
        let id = match (self.next, self.in_flight.take()) {
            (Next::Closed, _) => return None,
            (Next::Incremental { id, .. }, _) | (Next::Full { close: id }, None) => id,
            (Next::Full { close }, Some(sent)) => {
                if sent.session_id != 0 {
                    sent.session_id
                } else {
                    close
                }
            }
        };
        self.next = Next::Closed;
        self.partitions.clear();
        (id != 0).then(|| SessionRequest {
            kind: RequestKind::Close,
            session_id: id,
            epoch: FINAL_EPOCH,
            partitions: Vec::new(),
            forgotten: Vec::new(),
            topic_ids: self.topic_ids,
        })
    }

    fn reset(&mut self, reason: SessionReset) -> SessionOutcome {
        info!(?reason, "fetch session reset; the next fetch is full");
        SessionOutcome::Reset(reason)
    }

    /// A partition of the answer that the session does not hold, if any.
    fn unexpected_partition(&self, response: &FetchResponse) -> Option<String> {
        let known: BTreeSet<(&str, i32)> = self
            .partitions
            .keys()
            .map(|tp| (tp.topic.as_str(), tp.partition))
            .collect();
        for topic in &response.responses {
            let name = if self.topic_ids {
                let id = TopicId(*topic.topic_id.as_bytes());
                match self.topic_name(id) {
                    Some(name) => name,
                    None => return Some(format!("topic id {id}")),
                }
            } else {
                topic.topic.as_str()
            };
            for p in &topic.partitions {
                if !known.contains(&(name, p.partition_index)) {
                    return Some(format!("{name}-{}", p.partition_index));
                }
            }
        }
        None
    }

    /// A session resumed at `epoch`, as if its earlier requests had been answered: for tests
    /// that start near the epoch's wrap.
    #[cfg(test)]
    pub(crate) fn resumed(
        id: i32,
        epoch: i32,
        partitions: BTreeMap<TopicPartition, PartitionFetch>,
        topic_ids: bool,
    ) -> Self {
        let mut s = FetchSession::new();
        s.topic_names = partitions
            .iter()
            .filter_map(|(tp, p)| Some((p.topic_id?, tp.topic.clone())))
            .collect();
        s.partitions = partitions;
        s.topic_ids = topic_ids;
        s.next = Next::Incremental { id, epoch };
        s
    }
}

/// The epoch after `epoch` (KIP-227, Java `FetchMetadata.nextEpoch`): it wraps from
/// `i32::MAX` to 1, never to 0, which would mean "open a new session".
pub(crate) fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}
