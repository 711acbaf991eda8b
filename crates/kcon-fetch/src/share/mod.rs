//! Fetching for a share group (KIP-932): [`ShareFetchMachine`] keeps one share session per
//! broker (ShareFetch v1: epoch 0 opens it, each answered request moves it on, -1 closes it),
//! fetches the member's assigned partitions from their leaders when the application wants
//! records, hands out the records the broker acquired for the member with their delivery
//! counts, and carries the application's acknowledgements (accept, release, reject) on the next
//! ShareFetch to the partition's leader, or on a ShareAcknowledge when they are committed
//! without a fetch. Offsets acquired without a record (control records, compacted ones) are
//! acknowledged as gaps by the machine itself, or they would stay locked until the lock
//! expires. Renewals (KIP-1222) go at once on a ShareAcknowledge of their own. A partition
//! answered with an error is held back from fetches for a growing backoff; one whose leader
//! an error names moves there at once. Sans-IO, on kcon-core's machine contract.
//!
//! ```text
//!   per broker:  no session (epoch 0) ──ShareFetch, partitions listed──► open (epoch n ≥ 1)
//!        ▲                                                                │ each answered
//!        │ a failed request, INVALID_SHARE_SESSION_EPOCH,                 │ ShareFetch or
//!        │ SHARE_SESSION_NOT_FOUND, any request-level error               │ ShareAcknowledge:
//!        └───────────── (acknowledgements it carried fail) ◄──────────────┤ n + 1
//!                                                                         │ close
//!                                        closed ◄── ShareAcknowledge epoch -1 (the last ones)
//! ```

#[cfg(feature = "driver")]
mod driver;
mod messages;
pub mod wire;

#[cfg(feature = "driver")]
pub use driver::{ShareFetcher, Wanting};

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::messages::share_fetch_response::ShareFetchResponse;
use kcon_core::error_codes::error_name;
use kcon_core::{
    ExponentialBackoff, FailureTracker, Machine, Record, RequestFailure, RequestId, RequestIds,
    Target, Topic, TopicId, TopicPartition,
};
use tracing::{debug, warn};

pub use messages::{
    AcknowledgeType, AcknowledgementOutcome, AcknowledgementRange, AcquireMode, ShareAcknowledge,
    ShareAnswer, ShareEvent, ShareFetch, ShareOutgoing, SharePartitionRequest, ShareRequest,
};

use crate::config::FetchConfig;
use crate::messages::{MetadataView, PartitionInfo};
use crate::position::LeaderAndEpoch;

/// The epoch that closes a share session.
pub const CLOSE_EPOCH: i32 = -1;

/// One acknowledgement range waiting to go, numbered in the order the application gave them
/// (a commit waits for those given before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    seq: u64,
    range: AcknowledgementRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fetch,
    Acknowledge,
    /// A ShareAcknowledge of renewals only.
    Renew,
    Close,
}

#[derive(Debug)]
struct InFlight {
    id: RequestId,
    kind: Kind,
    /// The partitions the session holds once this is answered.
    session: BTreeSet<TopicPartition>,
    /// The acknowledgements it carries, by partition.
    acks: BTreeMap<TopicPartition, Vec<Pending>>,
}

/// One broker's share session.
#[derive(Debug)]
struct Broker {
    /// The epoch of the next request: 0 while no session is open.
    epoch: i32,
    /// The partitions the open session holds.
    session: BTreeSet<TopicPartition>,
    in_flight: Option<InFlight>,
    tries: FailureTracker,
    /// Failed requests wait for this before the next goes.
    retry_at: Option<Instant>,
    /// Closed for good (the machine is closing).
    closed: bool,
    /// The broker may still hold a session this machine started over from (a request to an
    /// open session failed, or was refused other than with SHARE_SESSION_NOT_FOUND, and no
    /// new session replaced it): closing ends it too, so the records it holds are released
    /// then rather than when their locks expire.
    lingering: bool,
}

kcon_core::timers! {
    /// The machine's own timers, one table. Backoffs kept per key are not in it: each broker's
    /// lives in its [`Broker`] and each partition's held back in its entry, beside the rest of their
    /// state, since brokers and partitions come and go with metadata and assignments;
    /// [`ShareFetchMachine::poll_timeout`] is the earliest of the table and those.
    enum Timer {
        /// Metadata may be asked for again after a refresh that failed or left an assigned
        /// partition without a leader.
        MetadataRetry,
    }
    type Timers;
}

/// The share session machine of one share group member. Sans-IO: time, answers and the
/// application's calls are fed in; requests and events are drained out.
#[derive(Debug)]
pub struct ShareFetchMachine {
    config: FetchConfig,
    group_id: String,
    member_id: String,
    ids: RequestIds,
    rng: fastrand::Rng,
    backoff: ExponentialBackoff,
    /// The partitions the member is assigned.
    assigned: BTreeSet<TopicPartition>,
    /// Leaders and topic ids, from metadata.
    metadata: BTreeMap<TopicPartition, PartitionInfo>,
    brokers: BTreeMap<i32, Broker>,
    /// Acknowledgements not sent yet, by partition.
    acks: BTreeMap<TopicPartition, Vec<Pending>>,
    next_seq: u64,
    /// Commits asked for and not done: (commit number, the last acknowledgement it covers).
    commits: VecDeque<(u64, u64)>,
    next_commit: u64,
    /// The application waits for records.
    wanted: bool,
    /// `Records` events told so far: a want sent before the application saw the last of them
    /// is stale (see [`want_records`](Self::want_records)).
    told_records: u64,
    /// Offsets handed out and not acknowledged yet, by partition: first offset to (last
    /// offset, delivery count). A record the broker sends again while it is here (the mock
    /// cluster re-sends acquired records after a session starts over) is not handed out twice;
    /// one with a higher delivery count (its lock expired and it was acquired again) is.
    outstanding: BTreeMap<TopicPartition, BTreeMap<i64, (i64, u16)>>,
    refresh: Refresh,
    timers: Timers,
    /// Partitions whose last fetch was answered with an error: left out of fetches (and out
    /// of the leader's session) until their backoff ends, so a broker that keeps refusing one
    /// is not asked again at once. Cleared by an answer without an error or a new leader.
    held_back: BTreeMap<TopicPartition, HeldBack>,
    /// How brokers acquire records for its fetches.
    acquire_mode: AcquireMode,
    closing: bool,
    closed: bool,
    events: VecDeque<ShareEvent>,
}

/// A partition's backoff after fetch errors.
#[derive(Debug, Clone, Copy, Default)]
struct HeldBack {
    /// Errors in a row.
    errors: u32,
    /// Left out of fetches until then; `None` once it passed (the count stays, so the next
    /// error waits longer).
    until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Refresh {
    wanted: bool,
    in_flight: Option<RequestId>,
    attempts: u32,
}

impl ShareFetchMachine {
    /// A machine for the share group `group_id`'s member `member_id`; `seed` seeds the backoff
    /// jitter.
    pub fn new(
        config: FetchConfig,
        group_id: impl Into<String>,
        member_id: impl Into<String>,
        seed: u64,
    ) -> ShareFetchMachine {
        ShareFetchMachine {
            backoff: config.retry_backoff_policy(),
            config,
            group_id: group_id.into(),
            member_id: member_id.into(),
            ids: RequestIds::default(),
            rng: fastrand::Rng::with_seed(seed),
            assigned: BTreeSet::new(),
            metadata: BTreeMap::new(),
            brokers: BTreeMap::new(),
            acks: BTreeMap::new(),
            next_seq: 0,
            commits: VecDeque::new(),
            next_commit: 0,
            wanted: false,
            told_records: 0,
            outstanding: BTreeMap::new(),
            refresh: Refresh::default(),
            timers: Timers::new(),
            held_back: BTreeMap::new(),
            acquire_mode: AcquireMode::default(),
            closing: false,
            closed: false,
            events: VecDeque::new(),
        }
    }

    // ----- queries -----

    /// The partitions assigned.
    pub fn assigned(&self) -> &BTreeSet<TopicPartition> {
        &self.assigned
    }

    /// The topics whose metadata the machine needs.
    pub fn topics(&self) -> BTreeSet<String> {
        self.assigned.iter().map(|tp| tp.topic.clone()).collect()
    }

    /// Whether it is done (closed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ----- inputs -----

    /// How brokers acquire records for its fetches from now on (`share.acquire.mode`).
    pub fn set_acquire_mode(&mut self, mode: AcquireMode) {
        self.acquire_mode = mode;
    }

    /// The member id (the share group member's; it may be named after the machine starts).
    pub fn set_member_id(&mut self, member_id: impl Into<String>) {
        self.member_id = member_id.into();
    }

    /// The partitions the member is assigned now, replacing the set: new ones join their
    /// leaders' sessions with the next fetch, gone ones leave them. Acknowledgements of a
    /// partition no longer assigned still go.
    pub fn assign(&mut self, _now: Instant, partitions: BTreeSet<TopicPartition>) {
        self.assigned = partitions;
        let assigned = &self.assigned;
        self.held_back.retain(|tp, _| assigned.contains(tp));
        if self.assigned.iter().any(|tp| self.leader_of(tp).is_none()) {
            self.refresh.wanted = true;
        }
    }

    /// New metadata: leaders and topic ids. A leader at an older epoch than the one known (a
    /// snapshot taken before a broker named the new leader) is not taken.
    pub fn metadata_updated(&mut self, _now: Instant, view: &MetadataView) {
        let mut progress = false;
        for (tp, info) in &view.partitions {
            let mut info = *info;
            if let Some(known) = self.metadata.get(tp)
                && matches!((known.leader.epoch, info.leader.epoch), (Some(old), Some(new)) if new < old)
            {
                info.leader = known.leader;
            }
            if self.metadata.get(tp) != Some(&info) {
                progress = true;
                if self
                    .metadata
                    .get(tp)
                    .is_some_and(|k| k.leader != info.leader)
                {
                    self.held_back.remove(tp);
                }
                self.metadata.insert(tp.clone(), info);
            }
        }
        if progress {
            self.refresh.attempts = 0;
        }
        if self.assigned.iter().all(|tp| self.leader_of(tp).is_some()) {
            self.refresh.wanted = false;
            self.timers.stop(Timer::MetadataRetry);
        }
    }

    /// The application waits for records, having seen `seen` [`ShareEvent::Records`]: while
    /// it does, every leader of an assigned partition is fetched from (the broker holds a
    /// fetch up to `fetch.max.wait.ms`). Wanting stops once records are handed out; a want
    /// sent before the application saw records told since is stale and ignored (it would
    /// acquire more records while those wait).
    pub fn want_records(&mut self, _now: Instant, seen: u64) {
        if seen >= self.told_records && !self.closing {
            self.wanted = true;
        }
        self.after_input();
    }

    /// The application no longer waits (it gave up waiting): nothing more is fetched until it
    /// wants records again. A fetch in flight still brings what it acquired.
    pub fn stop_wanting(&mut self, _now: Instant) {
        self.wanted = false;
        self.after_input();
    }

    /// How many [`ShareEvent::Records`] were told so far.
    pub fn records_told(&self) -> u64 {
        self.told_records
    }

    /// Acknowledges `first..=last` of `partition` as `kind`; it goes with the next request to
    /// the partition's leader.
    pub fn acknowledge(
        &mut self,
        _now: Instant,
        partition: &TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        self.push_ack(partition, first, last, kind);
        self.after_input();
    }

    fn push_ack(
        &mut self,
        partition: &TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        if last < first || self.closed {
            return;
        }
        if kind == AcknowledgeType::Renew {
            // A renewed record stays the member's: still held, to be settled later.
            if self.closing {
                return;
            }
        } else {
            if let Some(held) = self.outstanding.get_mut(partition) {
                remove_range(held, first, last);
                if held.is_empty() {
                    self.outstanding.remove(partition);
                }
            }
            // A renewal not sent yet is moot once the record is settled.
            if let Some(pending) = self.acks.get_mut(partition) {
                drop_renewals(pending, first, last);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let pending = self.acks.entry(partition.clone()).or_default();
        // Consecutive offsets with one type are one range.
        if let Some(p) = pending.last_mut()
            && p.range.kind == kind
            && p.range.last.checked_add(1) == Some(first)
        {
            p.range.last = last;
            p.seq = seq;
            return;
        }
        pending.push(Pending {
            seq,
            range: AcknowledgementRange { first, last, kind },
        });
    }

    /// Sends every acknowledgement given so far without waiting for a fetch (ShareAcknowledge
    /// to each leader with an open session). Returns the commit's number: a
    /// [`ShareEvent::Committed`] with it follows once they are all answered, each partition's
    /// outcome in a [`ShareEvent::Acknowledged`] before it.
    pub fn commit(&mut self, _now: Instant) -> u64 {
        let id = self.next_commit;
        self.next_commit += 1;
        self.commits.push_back((id, self.next_seq));
        self.after_input();
        id
    }

    /// Closes: the acknowledgements given so far go with a ShareAcknowledge at epoch -1 that
    /// closes each open session; ends with [`ShareEvent::Closed`]. Nothing is fetched after.
    pub fn close(&mut self, _now: Instant) {
        self.closing = true;
        self.wanted = false;
        // Renewals not sent go no further: the close settles or releases every record.
        let mut renewals = BTreeMap::new();
        for (tp, pending) in &mut self.acks {
            let (renew, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(pending)
                .into_iter()
                .partition(|p| p.range.kind == AcknowledgeType::Renew);
            *pending = rest;
            if !renew.is_empty() {
                renewals.insert(tp.clone(), renew);
            }
        }
        self.acks.retain(|_, p| !p.is_empty());
        self.tell_outcomes(
            renewals,
            &BTreeMap::new(),
            Some("the consumer closed before the renewal was sent"),
        );
        self.after_input();
    }

    // ----- internals -----

    fn leader_of(&self, tp: &TopicPartition) -> Option<(i32, TopicId)> {
        let info = self.metadata.get(tp)?;
        Some((info.leader.leader?, info.topic_id?))
    }

    /// A leader error answered with the partition's current leader (KIP-951): when it is newer
    /// than the one known, the partition moves to it at once, its next fetch going there before
    /// the metadata refresh confirms it. Returns whether it moved.
    fn leader_hint(&mut self, tp: &TopicPartition, leader_id: i32, leader_epoch: i32) -> bool {
        if leader_id < 0 || leader_epoch < 0 {
            return false;
        }
        let Some(info) = self.metadata.get_mut(tp) else {
            return false;
        };
        if info.leader.epoch.is_some_and(|known| known >= leader_epoch) {
            return false;
        }
        debug!(group = %self.group_id, partition = %tp, leader = leader_id, epoch = leader_epoch, "the partition's leader moved");
        info.leader = LeaderAndEpoch::new(leader_id, leader_epoch);
        self.held_back.remove(tp);
        true
    }

    /// Leaves `tp` out of fetches for a backoff growing with its errors in a row.
    fn hold_back(&mut self, tp: &TopicPartition, now: Instant) {
        let h = self.held_back.entry(tp.clone()).or_default();
        let delay = self.backoff.delay(h.errors, self.rng.f64());
        h.errors = h.errors.saturating_add(1);
        h.until = Some(now + delay);
    }

    fn is_held_back(&self, tp: &TopicPartition) -> bool {
        self.held_back.get(tp).is_some_and(|h| h.until.is_some())
    }

    fn broker(&mut self, id: i32) -> &mut Broker {
        let backoff = self.backoff;
        let group = self.group_id.clone();
        self.brokers.entry(id).or_insert_with(|| Broker {
            epoch: 0,
            session: BTreeSet::new(),
            in_flight: None,
            tries: FailureTracker::new(
                ApiKey::ShareFetch,
                format!("share group {group}, broker {id}"),
                backoff,
            ),
            retry_at: None,
            closed: false,
            lingering: false,
        })
    }

    /// Those of `partitions` `broker` leads, with their topic ids.
    fn led_by<'a, C>(&self, broker: i32, partitions: impl Iterator<Item = &'a TopicPartition>) -> C
    where
        C: FromIterator<(TopicPartition, TopicId)>,
    {
        partitions
            .filter_map(|tp| match self.leader_of(tp) {
                Some((b, id)) if b == broker => Some((tp.clone(), id)),
                _ => None,
            })
            .collect()
    }

    /// The partitions with acknowledgements waiting that `broker` leads.
    fn acks_for(&self, broker: i32) -> Vec<(TopicPartition, TopicId)> {
        self.led_by(broker, self.acks.keys())
    }

    /// The last acknowledgement number a commit waits for.
    fn commit_wants(&self) -> Option<u64> {
        self.commits.back().map(|(_, upto)| *upto)
    }

    fn is_due(b: &Broker, now: Instant) -> bool {
        b.in_flight.is_none() && !b.closed && b.retry_at.is_none_or(|t| now >= t)
    }

    fn next_request(&mut self, now: Instant) -> Option<ShareOutgoing> {
        if self.closed {
            return None;
        }
        if self.refresh.wanted
            && !self.closing
            && self.refresh.in_flight.is_none()
            && self
                .timers
                .get(Timer::MetadataRetry)
                .is_none_or(|t| now >= t)
        {
            let id = self.ids.next_id();
            self.refresh.in_flight = Some(id);
            self.timers.stop(Timer::MetadataRetry);
            return Some(ShareOutgoing {
                id,
                target: Target::Any,
                request: ShareRequest::Metadata {
                    topics: self.topics().into_iter().collect(),
                },
                timeout: None,
            });
        }
        let mut candidates: BTreeSet<i32> = self.brokers.keys().copied().collect();
        candidates.extend(
            self.assigned
                .iter()
                .chain(self.acks.keys())
                .filter_map(|tp| self.leader_of(tp).map(|(b, _)| b)),
        );
        for broker in candidates {
            if let Some(out) = self.request_for(broker, now) {
                return Some(out);
            }
        }
        None
    }

    fn request_for(&mut self, broker: i32, now: Instant) -> Option<ShareOutgoing> {
        let b = self.broker(broker);
        if !Self::is_due(b, now) {
            return None;
        }
        let open = b.epoch > 0;
        if self.closing {
            if !open && !self.brokers[&broker].lingering {
                self.broker(broker).closed = true;
                return None;
            }
            return Some(self.acknowledge_request(broker, Kind::Close));
        }
        let acks = self.acks_for(broker);
        // Renewals go at once, on a ShareAcknowledge of their own: a lock renewed late is no
        // use, and a fetch cannot carry them without giving up its limits.
        let renewals = acks.iter().any(|(tp, _)| {
            self.acks[tp]
                .iter()
                .any(|p| p.range.kind == AcknowledgeType::Renew)
        });
        if open && renewals {
            return Some(self.acknowledge_request(broker, Kind::Renew));
        }
        let commit_waits = self.commit_wants().is_some_and(|upto| {
            acks.iter()
                .any(|(tp, _)| self.acks[tp].iter().any(|p| p.seq < upto))
        });
        if open && commit_waits {
            return Some(self.acknowledge_request(broker, Kind::Acknowledge));
        }
        let led: BTreeMap<TopicPartition, TopicId> = self.led_by(
            broker,
            self.assigned.iter().filter(|tp| !self.is_held_back(tp)),
        );
        // A partition held back leaves the session (it is forgotten) and its acknowledgements
        // wait for its return, or go with a commit's ShareAcknowledge.
        let acks: Vec<(TopicPartition, TopicId)> = acks
            .into_iter()
            .filter(|(tp, _)| !self.is_held_back(tp))
            .collect();
        let session = self.brokers[&broker].session.clone();
        let forget = open && session.iter().any(|tp| !led.contains_key(tp));
        if (self.wanted && !led.is_empty()) || forget {
            return Some(self.fetch_request(broker, led, acks));
        }
        None
    }

    /// Takes the acknowledgements waiting for `partitions` out to send: the renewals (`renew`)
    /// or the others, which never share a request.
    fn take_acks(
        &mut self,
        partitions: &[(TopicPartition, TopicId)],
        renew: bool,
    ) -> (
        Vec<SharePartitionRequest>,
        BTreeMap<TopicPartition, Vec<Pending>>,
    ) {
        let mut requests = Vec::new();
        let mut carried = BTreeMap::new();
        for (tp, id) in partitions {
            let Some(all) = self.acks.remove(tp) else {
                continue;
            };
            let (mut pending, others): (Vec<Pending>, Vec<Pending>) = all
                .into_iter()
                .partition(|p| (p.range.kind == AcknowledgeType::Renew) == renew);
            if !others.is_empty() {
                self.acks.insert(tp.clone(), others);
            }
            if pending.is_empty() {
                continue;
            }
            pending.sort_by_key(|p| (p.range.first, p.seq));
            // Batches in one request must not overlap (the broker refuses the whole request):
            // an offset acknowledged twice keeps the first range that covers it.
            let mut next = i64::MIN;
            pending.retain_mut(|p| {
                p.range.first = p.range.first.max(next);
                if p.range.first > p.range.last {
                    return false;
                }
                next = p.range.last.saturating_add(1);
                true
            });
            requests.push(SharePartitionRequest {
                partition: tp.clone(),
                topic_id: *id,
                acknowledgements: pending.iter().map(|p| p.range).collect(),
            });
            carried.insert(tp.clone(), pending);
        }
        (requests, carried)
    }

    fn fetch_request(
        &mut self,
        broker: i32,
        led: BTreeMap<TopicPartition, TopicId>,
        acks: Vec<(TopicPartition, TopicId)>,
    ) -> ShareOutgoing {
        let epoch = self.brokers[&broker].epoch;
        let session = self.brokers[&broker].session.clone();
        let (mut partitions, carried) = if epoch > 0 {
            self.take_acks(&acks, false)
        } else {
            // A request opening a session carries no acknowledgement: they go with the next.
            (Vec::new(), BTreeMap::new())
        };
        for (tp, id) in &led {
            let listed = partitions.iter().any(|p| &p.partition == tp);
            if !listed && (epoch == 0 || !session.contains(tp)) {
                partitions.push(SharePartitionRequest {
                    partition: tp.clone(),
                    topic_id: *id,
                    acknowledgements: Vec::new(),
                });
            }
        }
        let forgotten: Vec<(TopicPartition, TopicId)> = if epoch > 0 {
            session
                .iter()
                .filter(|tp| !led.contains_key(*tp))
                .filter_map(|tp| {
                    let id = self.metadata.get(tp).and_then(|i| i.topic_id)?;
                    Some((tp.clone(), id))
                })
                .collect()
        } else {
            Vec::new()
        };
        let max_records = self.config.max_poll_records.max(1);
        let fetch = ShareFetch {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            epoch,
            max_wait_ms: self.config.max_wait.as_millis().min(i32::MAX as u128) as i32,
            min_bytes: self.config.min_bytes,
            max_bytes: self.config.max_bytes,
            max_records,
            batch_size: max_records,
            acquire_mode: self.acquire_mode,
            partitions,
            forgotten,
        };
        let id = self.ids.next_id();
        let b = self.broker(broker);
        b.tries.sent();
        b.in_flight = Some(InFlight {
            id,
            kind: Kind::Fetch,
            session: led.keys().cloned().collect(),
            acks: carried,
        });
        ShareOutgoing {
            id,
            target: Target::Broker(broker),
            request: ShareRequest::Fetch { broker, fetch },
            // The broker holds a fetch up to fetch.max.wait.ms.
            timeout: None,
        }
    }

    fn acknowledge_request(&mut self, broker: i32, kind: Kind) -> ShareOutgoing {
        let acks = self.acks_for(broker);
        let (partitions, carried) = self.take_acks(&acks, kind == Kind::Renew);
        let id = self.ids.next_id();
        let b = self.broker(broker);
        let epoch = if kind == Kind::Close {
            CLOSE_EPOCH
        } else {
            b.epoch
        };
        b.tries.sent();
        b.in_flight = Some(InFlight {
            id,
            kind,
            session: b.session.clone(),
            acks: carried,
        });
        ShareOutgoing {
            id,
            target: Target::Broker(broker),
            request: ShareRequest::Acknowledge {
                broker,
                acknowledge: ShareAcknowledge {
                    group_id: self.group_id.clone(),
                    member_id: self.member_id.clone(),
                    epoch,
                    renew: kind == Kind::Renew,
                    partitions,
                },
            },
            timeout: None,
        }
    }

    /// Tells each partition's acknowledgements in `carried` came to `error_code` or `failure`.
    fn tell_outcomes(
        &mut self,
        carried: BTreeMap<TopicPartition, Vec<Pending>>,
        errors: &BTreeMap<TopicPartition, i16>,
        failure: Option<&str>,
    ) {
        for (partition, pending) in carried {
            let ranges: Vec<AcknowledgementRange> = pending
                .iter()
                .map(|p| p.range)
                .filter(|r| r.kind != AcknowledgeType::Gap)
                .collect();
            let error_code = errors.get(&partition).copied().unwrap_or(0);
            if error_code != 0 || failure.is_some() {
                warn!(group = %self.group_id, %partition, error = %failure.map_or_else(|| error_name(error_code), str::to_owned),
                    "acknowledgements refused; their records are handed out again when their locks expire");
            }
            if ranges.is_empty() {
                continue;
            }
            self.events
                .push_back(ShareEvent::Acknowledged(AcknowledgementOutcome {
                    partition,
                    ranges,
                    error_code,
                    failure: failure.map(str::to_owned),
                }));
        }
    }

    /// Emits `Committed` for every commit whose acknowledgements are all answered.
    fn check_commits(&mut self) {
        let waiting = self
            .acks
            .values()
            .flatten()
            .chain(
                self.brokers
                    .values()
                    .filter_map(|b| b.in_flight.as_ref())
                    .flat_map(|f| f.acks.values().flatten()),
            )
            .map(|p| p.seq)
            .min();
        let mut done = None;
        while let Some(&(id, upto)) = self.commits.front() {
            if waiting.is_some_and(|w| w < upto) {
                break;
            }
            self.commits.pop_front();
            done = Some(id);
        }
        let Some(id) = done else {
            return;
        };
        // One event for every commit done since the events were last read: an event a commit
        // is 136 bytes, and an application may ask for a commit per record without reading
        // the answers, so that a queue of them would grow with the commits asked.
        match self.events.back_mut() {
            Some(ShareEvent::Committed(last)) => *last = id,
            _ => self.events.push_back(ShareEvent::Committed(id)),
        }
    }

    /// Acknowledgements no request can carry (their partition's leader has no open session
    /// and nothing will open one) fail now rather than hold a commit or a close forever.
    fn fail_stranded(&mut self) {
        let stranded: Vec<TopicPartition> = self
            .acks
            .keys()
            .filter(|tp| {
                let Some((broker, _)) = self.leader_of(tp) else {
                    return self.closing;
                };
                match self.brokers.get(&broker) {
                    None => !self.wanted || self.closing,
                    // Closing, a lingering session's close carries them.
                    Some(b) => {
                        b.epoch == 0
                            && b.in_flight.is_none()
                            && (!self.wanted || self.closing)
                            && !(self.closing && b.lingering)
                            || b.closed
                    }
                }
            })
            .cloned()
            .collect();
        if stranded.is_empty() || (!self.closing && self.commits.is_empty()) {
            return;
        }
        let carried: BTreeMap<TopicPartition, Vec<Pending>> = stranded
            .into_iter()
            .filter_map(|tp| self.acks.remove_entry(&tp))
            .collect();
        self.tell_outcomes(
            carried,
            &BTreeMap::new(),
            Some("no share session is open with the partition's leader to carry them"),
        );
    }

    fn maybe_closed(&mut self) {
        if !self.closing || self.closed {
            return;
        }
        for b in self.brokers.values_mut() {
            if b.epoch == 0 && !b.lingering && b.in_flight.is_none() {
                b.closed = true;
            }
        }
        self.fail_stranded();
        if self.brokers.values().all(|b| b.closed) && self.refresh.in_flight.is_none() {
            self.closed = true;
            self.check_commits();
            self.events.push_back(ShareEvent::Closed);
        }
    }

    fn reset_session(&mut self, broker: i32) {
        let b = self.broker(broker);
        b.epoch = 0;
        b.session.clear();
    }

    /// A request to `broker` failed or was refused as a whole: back off, start the session
    /// over, fail what it carried.
    fn request_failed(
        &mut self,
        broker: i32,
        sent: InFlight,
        error_code: i16,
        failure: Option<&RequestFailure>,
        now: Instant,
    ) {
        let random = self.rng.f64();
        let b = self.broker(broker);
        let failed = match failure {
            Some(f) => b.tries.failed(now, f, random),
            None => b.tries.refused(
                now,
                error_name(error_code),
                Some(format!("broker {broker}")),
                random,
            ),
        };
        b.retry_at = Some(failed.retry_at);
        // A lost answer may have opened or moved a session; a refusal of an open one leaves it.
        b.lingering = match failure {
            Some(_) => true,
            None if error_code == ResponseError::ShareSessionNotFound.code() => false,
            None => b.epoch > 0 || b.lingering,
        };
        if let Some(r) = failed.report {
            self.events.push_back(ShareEvent::PersistentFailure(r));
        }
        self.reset_session(broker);
        if sent.kind == Kind::Close {
            self.broker(broker).closed = true;
        }
        let errors: BTreeMap<TopicPartition, i16> = sent
            .acks
            .keys()
            .map(|tp| (tp.clone(), error_code))
            .collect();
        let reason = failure.map(|f| f.reason.clone());
        self.tell_outcomes(sent.acks, &errors, reason.as_deref());
        if error_code == ResponseError::NotLeaderOrFollower.code()
            || failure.is_some_and(|f| f.retriable)
        {
            self.refresh.wanted = true;
        }
    }

    fn answered(&mut self, broker: i32, sent: &InFlight, now: Instant) {
        let b = self.broker(broker);
        if let Some(r) = b.tries.succeeded(now) {
            self.events.push_back(ShareEvent::PersistentFailure(r));
        }
        let b = self.broker(broker);
        b.retry_at = None;
        b.lingering = false;
        if sent.kind == Kind::Close {
            b.epoch = 0;
            b.session.clear();
            b.closed = true;
        } else {
            b.epoch = if b.epoch == i32::MAX { 1 } else { b.epoch + 1 };
            b.session = sent.session.clone();
        }
    }

    fn on_fetch(&mut self, broker: i32, sent: InFlight, r: ShareFetchResponse, now: Instant) {
        if r.error_code != 0 {
            debug!(group = %self.group_id, broker, error = %error_name(r.error_code), "ShareFetch refused");
            self.request_failed(broker, sent, r.error_code, None, now);
            return;
        }
        self.answered(broker, &sent, now);
        let by_id: BTreeMap<(TopicId, i32), TopicPartition> = sent
            .session
            .iter()
            .chain(sent.acks.keys())
            .filter_map(|tp| {
                let id = self.metadata.get(tp)?.topic_id?;
                Some(((id, tp.partition), tp.clone()))
            })
            .collect();
        let mut ack_errors = BTreeMap::new();
        let mut handed_out = false;
        let lock_timeout_ms = r.acquisition_lock_timeout_ms;
        for topic in r.responses {
            let id = TopicId(*topic.topic_id.as_bytes());
            for p in topic.partitions {
                let Some(tp) = by_id.get(&(id, p.partition_index)).cloned() else {
                    debug!(group = %self.group_id, broker, partition = p.partition_index, "an answer for a partition not asked for; ignored");
                    continue;
                };
                if p.acknowledge_error_code != 0 {
                    ack_errors.insert(tp.clone(), p.acknowledge_error_code);
                }
                if p.error_code != 0 {
                    debug!(group = %self.group_id, partition = %tp, error = %error_name(p.error_code), "share fetch partition error");
                    let moved = is_leader_error(p.error_code) && {
                        self.refresh.wanted = true;
                        let hint = &p.current_leader;
                        self.leader_hint(&tp, hint.leader_id, hint.leader_epoch)
                    };
                    if !moved {
                        self.hold_back(&tp, now);
                    }
                    continue;
                }
                self.held_back.remove(&tp);
                let acquired: Vec<(i64, i64, i16)> = p
                    .acquired_records
                    .iter()
                    .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
                    .collect();
                if acquired.is_empty() {
                    continue;
                }
                let (records, lock_expired) =
                    self.acquired(&tp, p.records.unwrap_or_default(), &acquired);
                if !records.is_empty() {
                    handed_out = true;
                    self.told_records += 1;
                    self.events.push_back(ShareEvent::Records {
                        partition: tp,
                        records,
                        lock_timeout_ms,
                        lock_expired,
                    });
                }
            }
        }
        self.tell_outcomes(sent.acks, &ack_errors, None);
        if handed_out {
            self.wanted = false;
        }
    }

    /// The records of `tp` within the acquired ranges, each with its delivery count; offsets
    /// acquired without a record are acknowledged as gaps, and those past a corrupt record
    /// released.
    fn acquired(
        &mut self,
        tp: &TopicPartition,
        bytes: Bytes,
        acquired: &[(i64, i64, i16)],
    ) -> (Vec<Record>, usize) {
        // Ranges in order, none overlapping the one before (a hostile answer's are cut).
        let mut ranges: Vec<(i64, i64, i16)> = acquired
            .iter()
            .copied()
            .filter(|(first, last, _)| first <= last && *first >= 0)
            .collect();
        ranges.sort_by_key(|r| r.0);
        let mut kept: Vec<(i64, i64, i16)> = Vec::with_capacity(ranges.len());
        for (first, last, count) in ranges {
            let first = kept
                .last()
                .map_or(first, |k| first.max(k.1.saturating_add(1)));
            if first <= last {
                kept.push((first, last, count));
            }
        }
        let Some(&(from, _, _)) = kept.first() else {
            return (Vec::new(), 0);
        };
        let topic = Topic::new(&tp.topic);
        let (decoded, corrupt_at) = crate::records::share_records(tp, topic, bytes, from);
        if let Some(at) = corrupt_at {
            warn!(group = %self.group_id, partition = %tp, offset = at,
                "a corrupt record batch in a share fetch answer; releasing the offsets from there");
        }
        let readable = |last: i64| match corrupt_at {
            Some(at) if at <= last => at - 1,
            _ => last,
        };
        // The range being filled (its index in `kept`) and the next offset it expects: a
        // record past its readable end closes it, one before its start is not acquired.
        let mut at = 0;
        let mut next = from;
        let mut records = decoded;
        // The records stay where they were decoded; those not acquired are taken out.
        records.retain_mut(|r| {
            while let Some(&range) = kept.get(at)
                && r.offset > readable(range.1)
            {
                self.close_range(tp, range, next, readable(range.1));
                at += 1;
                next = kept.get(at).map_or(0, |k| k.0);
            }
            let Some(&(first, _, count)) = kept.get(at) else {
                return false;
            };
            if r.offset < first {
                return false;
            }
            if r.offset > next {
                self.settle_unheld(tp, next, r.offset - 1, AcknowledgeType::Gap);
            }
            next = r.offset + 1;
            r.delivery_count = Some(u16::try_from(count.max(1)).unwrap_or(1));
            true
        });
        while let Some(&range) = kept.get(at) {
            self.close_range(tp, range, next, readable(range.1));
            at += 1;
            next = kept.get(at).map_or(0, |k| k.0);
        }
        self.not_twice(tp, records)
    }

    /// The acquired range `(first, last, _)` of `tp` is filled up to `next`, and its records
    /// readable up to `readable_last`: the offsets from `next` on with no record are gaps, and
    /// those past a corrupt record are released.
    fn close_range(
        &mut self,
        tp: &TopicPartition,
        (first, last, _): (i64, i64, i16),
        next: i64,
        readable_last: i64,
    ) {
        if next <= readable_last {
            self.settle_unheld(tp, next, readable_last, AcknowledgeType::Gap);
        }
        if readable_last < last {
            let from = (readable_last + 1).max(first);
            self.settle_unheld(tp, from, last, AcknowledgeType::Release);
        }
    }

    /// Acknowledges `first..=last` of `tp` as `kind` (a gap, or a release past a corrupt
    /// batch), less the offsets the application holds: a broker that says again it acquired an
    /// offset the application is working on does not get that record settled behind its back.
    fn settle_unheld(&mut self, tp: &TopicPartition, first: i64, last: i64, kind: AcknowledgeType) {
        // The held ranges that reach into first..=last, cut to it, in offset order.
        let mut held: Vec<(i64, i64)> = self
            .outstanding
            .get(tp)
            .map(|h| {
                overlapping(h, first, last)
                    .map(|(start, end)| (start.max(first), end.min(last)))
                    .collect()
            })
            .unwrap_or_default();
        held.reverse();
        let mut from = first;
        for (start, end) in held {
            if start > from {
                self.push_ack(tp, from, start - 1, kind);
            }
            from = end.saturating_add(1);
        }
        if from <= last {
            self.push_ack(tp, from, last, kind);
        }
    }

    /// `records` less those handed out already and not acknowledged at the same delivery
    /// count; the rest become outstanding. With how many of them this member held before at a
    /// lower count (their locks expired while it held them).
    fn not_twice(&mut self, tp: &TopicPartition, mut records: Vec<Record>) -> (Vec<Record>, usize) {
        let held = self.outstanding.entry(tp.clone()).or_default();
        let before = records.len();
        let mut expired = 0;
        records.retain(|r| {
            let count = r.delivery_count.unwrap_or(1);
            match held.range(..=r.offset).next_back() {
                Some((_, &(last, held_count))) if r.offset <= last => {
                    // Held at a lower count: its lock expired and it was acquired anew.
                    expired += usize::from(count > held_count);
                    count > held_count
                }
                _ => true,
            }
        });
        if records.len() < before {
            debug!(group = %self.group_id, partition = %tp, again = before - records.len(),
                "records handed out already and not acknowledged came again; not handed out twice");
        }
        // One range per run of consecutive offsets at one delivery count, not an entry per
        // record: an answer's records are mostly one run, and acknowledging them then takes
        // one range out rather than each offset.
        let mut run = records.iter().peekable();
        while let Some(r) = run.next() {
            let count = r.delivery_count.unwrap_or(1);
            let mut last = r.offset;
            while let Some(next) = run.next_if(|n| {
                Some(n.offset) == last.checked_add(1) && n.delivery_count.unwrap_or(1) == count
            }) {
                last = next.offset;
            }
            remove_range(held, r.offset, last);
            held.insert(r.offset, (last, count));
        }
        if held.is_empty() {
            self.outstanding.remove(tp);
        }
        (records, expired)
    }

    fn on_acknowledge(
        &mut self,
        broker: i32,
        sent: InFlight,
        r: kcon_codec::kafka_protocol::messages::share_acknowledge_response::ShareAcknowledgeResponse,
        now: Instant,
    ) {
        if r.error_code != 0 {
            debug!(group = %self.group_id, broker, error = %error_name(r.error_code), "ShareAcknowledge refused");
            self.request_failed(broker, sent, r.error_code, None, now);
            return;
        }
        self.answered(broker, &sent, now);
        let by_id: BTreeMap<(TopicId, i32), TopicPartition> = sent
            .acks
            .keys()
            .filter_map(|tp| {
                let id = self.metadata.get(tp)?.topic_id?;
                Some(((id, tp.partition), tp.clone()))
            })
            .collect();
        let mut errors = BTreeMap::new();
        for topic in r.responses {
            let id = TopicId(*topic.topic_id.as_bytes());
            for p in topic.partitions {
                if p.error_code != 0
                    && let Some(tp) = by_id.get(&(id, p.partition_index))
                {
                    errors.insert(tp.clone(), p.error_code);
                    if is_leader_error(p.error_code) {
                        self.refresh.wanted = true;
                        let (tp, hint) = (tp.clone(), &p.current_leader);
                        self.leader_hint(&tp, hint.leader_id, hint.leader_epoch);
                    }
                }
            }
        }
        self.tell_outcomes(sent.acks, &errors, None);
    }

    fn on_metadata(&mut self, result: Result<ShareAnswer, RequestFailure>, now: Instant) {
        self.refresh.in_flight = None;
        if let Ok(ShareAnswer::Metadata(view)) = &result {
            self.metadata_updated(now, view);
        }
        if self.refresh.wanted {
            let delay = self.backoff.delay(self.refresh.attempts, self.rng.f64());
            self.refresh.attempts = self.refresh.attempts.saturating_add(1);
            self.timers.set(Timer::MetadataRetry, now + delay);
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<ShareAnswer, RequestFailure>,
    ) {
        if self.refresh.in_flight == Some(id) {
            self.on_metadata(result, now);
            return;
        }
        let Some(broker) = self
            .brokers
            .iter()
            .find(|(_, b)| b.in_flight.as_ref().is_some_and(|f| f.id == id))
            .map(|(id, _)| *id)
        else {
            debug!(group = %self.group_id, ?id, "an answer to a request no longer wanted");
            return;
        };
        // Invariant: found just above by its in-flight request.
        let Some(sent) = self.broker(broker).in_flight.take() else {
            return;
        };
        match (sent.kind, result) {
            (_, Err(f)) => self.request_failed(broker, sent, 0, Some(&f), now),
            (Kind::Fetch, Ok(ShareAnswer::Fetch(r))) => self.on_fetch(broker, sent, *r, now),
            (Kind::Acknowledge | Kind::Renew | Kind::Close, Ok(ShareAnswer::Acknowledge(r))) => {
                self.on_acknowledge(broker, sent, *r, now)
            }
            (_, Ok(other)) => {
                let f =
                    RequestFailure::retriable(format!("an answer of the wrong kind: {other:?}"));
                self.request_failed(broker, sent, 0, Some(&f), now);
            }
        }
    }

    fn after_input(&mut self) {
        self.check_commits();
        if !self.closing {
            self.fail_stranded();
            self.check_commits();
        }
        self.maybe_closed();
    }
}

/// Takes `first..=last` out of the renewals waiting in `pending` (the records were settled
/// since), splitting a renewal that reaches over either end.
fn drop_renewals(pending: &mut Vec<Pending>, first: i64, last: i64) {
    let mut kept = Vec::with_capacity(pending.len());
    for p in pending.drain(..) {
        let r = p.range;
        if r.kind != AcknowledgeType::Renew || r.last < first || r.first > last {
            kept.push(p);
            continue;
        }
        if r.first < first {
            kept.push(Pending {
                range: AcknowledgementRange {
                    last: first - 1,
                    ..r
                },
                ..p
            });
        }
        if r.last > last {
            kept.push(Pending {
                range: AcknowledgementRange {
                    first: last + 1,
                    ..r
                },
                ..p
            });
        }
    }
    *pending = kept;
}

/// The ranges of `ranges` (first offset to (last offset, payload), none overlapping another)
/// that reach into `first..=last`, as (first, last), the highest first.
fn overlapping<T>(
    ranges: &BTreeMap<i64, (i64, T)>,
    first: i64,
    last: i64,
) -> impl Iterator<Item = (i64, i64)> + '_ {
    ranges
        .range(..=last)
        .rev()
        .take_while(move |(_, (end, _))| *end >= first)
        .map(|(start, (end, _))| (*start, *end))
}

/// Takes `first..=last` out of `ranges` (first offset to (last offset, payload)), splitting a
/// range that reaches over either end.
fn remove_range<T: Copy>(ranges: &mut BTreeMap<i64, (i64, T)>, first: i64, last: i64) {
    let starts: Vec<i64> = overlapping(ranges, first, last)
        .map(|(start, _)| start)
        .collect();
    for start in starts {
        let Some((end, payload)) = ranges.remove(&start) else {
            continue;
        };
        if start < first {
            ranges.insert(start, (first - 1, payload));
        }
        if end > last {
            ranges.insert(last + 1, (end, payload));
        }
    }
}

/// Errors that mean the partition's leader is elsewhere (or unknown): refresh the metadata.
fn is_leader_error(code: i16) -> bool {
    use ResponseError as E;
    matches!(
        ResponseError::try_from_code(code),
        Some(
            E::NotLeaderOrFollower
                | E::FencedLeaderEpoch
                | E::UnknownLeaderEpoch
                | E::LeaderNotAvailable
                | E::UnknownTopicOrPartition
                | E::UnknownTopicId
        )
    )
}

impl Machine for ShareFetchMachine {
    type Request = ShareRequest;
    type Target = Target;
    type Response = ShareAnswer;
    type Event = ShareEvent;

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<ShareAnswer, RequestFailure>,
    ) {
        self.on_response(now, id, result);
        self.after_input();
    }

    fn handle_timeout(&mut self, now: Instant) {
        for b in self.brokers.values_mut() {
            if b.retry_at.is_some_and(|t| now >= t) {
                b.retry_at = None;
            }
            b.tries.handle_timeout(now);
        }
        let timers = self.timers;
        for timer in timers.expired(now) {
            match timer {
                // The refresh goes with the next request, if it is still wanted.
                Timer::MetadataRetry => self.timers.stop(timer),
            }
        }
        for h in self.held_back.values_mut() {
            if h.until.is_some_and(|t| now >= t) {
                h.until = None;
            }
        }
        self.after_input();
    }

    fn poll_request(&mut self, now: Instant) -> Option<ShareOutgoing> {
        let out = self.next_request(now);
        self.maybe_closed();
        out
    }

    fn poll_event(&mut self) -> Option<ShareEvent> {
        self.events.pop_front()
    }

    /// The earliest timer still armed: the table's (the metadata retry, while a refresh waits
    /// for it), or a broker's or a held-back partition's backoff, kept per key beside their
    /// state.
    fn poll_timeout(&self) -> Option<Instant> {
        let brokers = self
            .brokers
            .values()
            .filter(|b| b.in_flight.is_none() && !b.closed)
            .filter_map(|b| b.retry_at);
        let refresh = (self.refresh.wanted && !self.closing && self.refresh.in_flight.is_none())
            .then(|| self.timers.next())
            .flatten();
        let partitions = self.held_back.values().filter_map(|h| h.until);
        brokers.chain(refresh).chain(partitions).min()
    }
}
