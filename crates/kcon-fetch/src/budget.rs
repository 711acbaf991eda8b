//! The prefetch byte budget shared by all partitions: however slow the application, the
//! consumer never buffers more than `max_buffered` bytes of fetched, unconsumed records (plus
//! what the brokers send beyond a request's limit to make progress, KIP-74).
//!
//! Driving it, per broker:
//! 1. [`PrefetchBudget::grant`] with the partitions that broker would serve now; it answers
//!    which of them to fetch, in what order, and the request's `max_bytes`, and reserves that
//!    many bytes until the answer;
//! 2. [`PrefetchBudget::complete`] with the bytes each partition got (or
//!    [`PrefetchBudget::failed`]) turns the reservation into buffered bytes;
//! 3. [`PrefetchBudget::consumed`] as the application takes records, [`PrefetchBudget::discard`]
//!    when buffered records are dropped (seek, reset, revocation).
//!
//! Buffered bytes are an answer's bytes as they came, plus the decompressed bytes held for
//! records not handed out yet ([`PrefetchBudget::hold`]): a compressed batch is decompressed
//! as its records are handed out, and when `max.poll.records` cuts it, the rest of it waits
//! decompressed. The consumer's handle tells held bytes, and those given back before an
//! answer's last part, together with its next command ([`FetchHandle::release`]): up to 1 MiB
//! of held bytes may go uncounted meanwhile.
//!
//! [`FetchHandle::release`]: crate::FetchHandle::release
//!
//! The budget also sizes the process-wide free list of decompression buffers: it holds a
//! [`FreeListShare`] of what it has not buffered (`max_buffered` less the buffered bytes), so
//! idle buffers kept for the next decompression and the records the consumer holds stay within
//! the budget together, and a consumer that holds little keeps room for reuse. Reservations of
//! requests in flight are not memory yet and do not shrink it.
//!
//! Two rules from the Java client (`AbstractFetch.fetchablePartitions`, `FetchBuffer`):
//! a partition with buffered data is not fetched again until it is drained, so one partition
//! never holds more than one answer's worth; and partitions that just got data move to the
//! back of the order (`SubscriptionState.movePartitionToEnd`), because a broker fills a Fetch
//! answer in request order until `fetch.max.bytes`: without the rotation the partitions at the
//! back could starve.

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::compression::FreeListShare;
use kcon_core::TopicPartition;

/// The shared prefetch budget. Bookkeeping, and the size of its share of the free list of
/// decompression buffers: no IO, no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchBudget {
    max_buffered: usize,
    max_request: usize,
    buffered: BTreeMap<TopicPartition, usize>,
    buffered_total: usize,
    in_flight: BTreeMap<i32, usize>,
    in_flight_total: usize,
    /// Rotation: when each partition last got data (a counter, not a time); the least recently
    /// served go first. Partitions never served count as 0.
    served: BTreeMap<TopicPartition, u64>,
    next_serial: u64,
    /// `max_buffered` less `buffered_total`: what idle decompression buffers may take.
    free_list: FreeListShare,
}

/// What one Fetch request to a broker may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchGrant {
    /// The request's `max_bytes`: at most `fetch.max.bytes`, and at most what the budget has
    /// left. Reserved until [`PrefetchBudget::complete`] or [`PrefetchBudget::failed`].
    pub max_bytes: usize,
    /// The partitions to fetch, least recently served first.
    pub partitions: Vec<TopicPartition>,
}

impl PrefetchBudget {
    /// A budget of `max_buffered` bytes in all (buffered plus reserved for requests in
    /// flight), with requests of at most `max_request` bytes (`fetch.max.bytes`).
    pub fn new(max_buffered: usize, max_request: usize) -> Self {
        PrefetchBudget {
            max_buffered,
            max_request,
            buffered: BTreeMap::new(),
            buffered_total: 0,
            in_flight: BTreeMap::new(),
            in_flight_total: 0,
            served: BTreeMap::new(),
            next_serial: 1,
            free_list: FreeListShare::new(max_buffered),
        }
    }

    /// The share of the process-wide free list of decompression buffers this budget holds:
    /// what it has not buffered.
    pub fn free_list_share(&self) -> usize {
        self.free_list.bytes()
    }

    /// Keeps the free list's share at what is not buffered.
    fn buffered_changed(&mut self) {
        let unbuffered = self.max_buffered.saturating_sub(self.buffered_total);
        self.free_list.set(unbuffered);
    }

    /// Bytes fetched and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buffered_total
    }

    /// Bytes reserved by requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight_total
    }

    /// Bytes a new request may still reserve.
    pub fn available(&self) -> usize {
        self.max_buffered
            .saturating_sub(self.buffered_total)
            .saturating_sub(self.in_flight_total)
    }

    /// Bytes buffered for `tp`.
    pub fn buffered_for(&self, tp: &TopicPartition) -> usize {
        self.buffered.get(tp).copied().unwrap_or(0)
    }

    /// The partitions holding buffered bytes.
    pub fn buffered_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.buffered.keys()
    }

    /// Whether a request to `broker` is in flight.
    pub fn is_in_flight(&self, broker: i32) -> bool {
        self.in_flight.contains_key(&broker)
    }

    /// The request `broker` may get now, from `candidates` (the fetchable partitions it serves),
    /// or `None`: a request to it is already in flight (one per broker), no candidate is
    /// drained, or the budget is spent. Reserves the grant's `max_bytes`.
    pub fn grant(
        &mut self,
        broker: i32,
        candidates: impl IntoIterator<Item = TopicPartition>,
    ) -> Option<FetchGrant> {
        if self.is_in_flight(broker) {
            return None;
        }
        let available = self.available();
        if available == 0 {
            return None;
        }
        let mut partitions: Vec<TopicPartition> = candidates
            .into_iter()
            .filter(|tp| !self.buffered.contains_key(tp))
            .collect();
        // A fetcher gathers them in its map's order, each once: only others are looked over
        // for repeats.
        if !partitions.is_sorted_by(|a, b| a < b) {
            let mut seen = BTreeSet::new();
            partitions.retain(|tp| seen.insert(tp.clone()));
        }
        if partitions.is_empty() {
            return None;
        }
        // Stable: among partitions never served, the caller's order stands. Each partition's
        // turn is looked up once, not at every comparison.
        partitions.sort_by_cached_key(|tp| self.served.get(tp).copied().unwrap_or(0));
        let max_bytes = available.min(self.max_request);
        self.in_flight.insert(broker, max_bytes);
        self.in_flight_total += max_bytes;
        Some(FetchGrant {
            max_bytes,
            partitions,
        })
    }

    /// The answer of `broker`'s request came: its reservation is released and `received`
    /// (bytes of records per partition) is buffered. Partitions that got data go to the back
    /// of the rotation. The total may exceed the budget when the broker sent a first batch
    /// larger than the request's limit (KIP-74, so a consumer always progresses); then no
    /// request is granted until the application drains below the budget.
    pub fn complete(
        &mut self,
        broker: i32,
        received: impl IntoIterator<Item = (TopicPartition, usize)>,
    ) {
        self.release(broker);
        for (tp, bytes) in received {
            if bytes == 0 {
                continue;
            }
            *self.buffered.entry(tp.clone()).or_insert(0) += bytes;
            self.buffered_total += bytes;
            self.served.insert(tp, self.next_serial);
            self.next_serial += 1;
        }
        self.buffered_changed();
    }

    /// `bytes` more are held for `tp`'s buffered records: decompressed as some were handed out,
    /// for the rest. Counted until [`consumed`](Self::consumed) gives them back. Nothing for a
    /// partition with nothing buffered: its records were dropped, and so were their bytes.
    pub fn hold(&mut self, tp: &TopicPartition, bytes: usize) {
        let Some(held) = self.buffered.get_mut(tp) else {
            return;
        };
        *held += bytes;
        self.buffered_total += bytes;
        self.buffered_changed();
    }

    /// `broker`'s request failed or was cancelled: its reservation is released.
    pub fn failed(&mut self, broker: i32) {
        self.release(broker);
    }

    /// The application took `bytes` of `tp`'s buffered records. When the partition is
    /// drained it may be fetched again.
    pub fn consumed(&mut self, tp: &TopicPartition, bytes: usize) {
        let Some(left) = self.buffered.get_mut(tp) else {
            return;
        };
        let taken = bytes.min(*left);
        *left -= taken;
        self.buffered_total -= taken;
        if *left == 0 {
            self.buffered.remove(tp);
        }
        self.buffered_changed();
    }

    /// `tp`'s buffered records were dropped (a seek, a reset, a stale answer): all its bytes
    /// come back.
    pub fn discard(&mut self, tp: &TopicPartition) {
        if let Some(bytes) = self.buffered.remove(tp) {
            self.buffered_total -= bytes;
            self.buffered_changed();
        }
    }

    /// `tp` is no longer assigned: its bytes come back and it leaves the rotation.
    pub fn remove(&mut self, tp: &TopicPartition) {
        self.discard(tp);
        self.served.remove(tp);
    }

    fn release(&mut self, broker: i32) {
        if let Some(bytes) = self.in_flight.remove(&broker) {
            self.in_flight_total -= bytes;
        }
    }
}

#[cfg(test)]
mod tests;
