//! The share consumer's parts on tokio: the handles of the group member's and the share
//! fetcher's tasks, the want for records under way, the acknowledgement hooks and the metrics
//! handle, as the driver's [`Parts`].

use std::collections::BTreeSet;
use std::time::Instant;

use kcon_core::TopicPartition;
use kcon_fetch::share::{
    AcknowledgeType, AcknowledgementOutcome, ShareEvent, ShareFetcher, Wanting,
};
use kcon_group::{GroupEvent, GroupMember, RevocationId};

use super::driver::Parts;
use super::{ShareConsumerHooks, ShareMetrics, ShareMetricsHandle};

/// The share consumer's parts on tokio.
pub(super) struct Wiring {
    /// The group member; `None` once its close began ([`closing_member`](Self::closing_member)).
    pub(super) member: Option<GroupMember>,
    /// The share fetcher; `None` once its close began
    /// ([`closing_fetcher`](Self::closing_fetcher)).
    pub(super) fetcher: Option<ShareFetcher>,
    /// The want for records under way: dropped without [`Wanting::ended`], it tells the
    /// fetcher the application no longer waits. A `recv_batch` holds it on its own stack
    /// while it waits, so that the call dropped there drops it too.
    pub(super) wanting: Option<Wanting>,
    /// The member told to leave: the close awaits it.
    pub(super) closing_member: Option<GroupMember>,
    /// The fetcher told to close: the close awaits it.
    pub(super) closing_fetcher: Option<ShareFetcher>,
    pub(super) hooks: Vec<std::sync::Arc<dyn ShareConsumerHooks>>,
    /// Where the consumer publishes its metrics for [`ShareMetricsHandle`]s.
    pub(super) metrics: ShareMetricsHandle,
}

impl Parts for Wiring {
    fn subscribe(&mut self, _now: Instant, topics: Vec<String>) {
        if let Some(m) = &self.member {
            m.subscribe(topics);
        }
    }

    fn alive(&mut self, _now: Instant) {
        if let Some(m) = &self.member {
            m.poll();
        }
    }

    fn revocation_done(&mut self, _now: Instant, id: RevocationId) {
        if let Some(m) = &self.member {
            m.revocation_done(id);
        }
    }

    fn member_event(&mut self) -> Option<GroupEvent> {
        self.member.as_mut()?.try_next_event()
    }

    fn close_member(&mut self, _now: Instant) {
        self.closing_member = self.member.take();
    }

    fn member_id(&mut self, _now: Instant) {
        if let (Some(m), Some(f)) = (&self.member, &self.fetcher) {
            f.set_member_id(m.snapshot().generation.member_id);
        }
    }

    fn assign(&mut self, _now: Instant, partitions: BTreeSet<TopicPartition>) {
        if let Some(f) = &self.fetcher {
            f.assign(partitions);
        }
    }

    fn acknowledge(
        &mut self,
        _now: Instant,
        tp: TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        if let Some(f) = &self.fetcher {
            f.acknowledge(tp, first, last, kind);
        }
    }

    fn commit(&mut self, _now: Instant, id: u64) {
        if let Some(f) = &self.fetcher {
            f.commit(id);
        }
    }

    fn want_records(&mut self, _now: Instant, seen: u64) {
        if let Some(f) = &self.fetcher {
            self.wanting = Some(f.wait_for_records(seen));
        }
    }

    fn want_ended(&mut self, _now: Instant) {
        if let Some(w) = self.wanting.take() {
            w.ended();
        }
    }

    fn stop_wanting(&mut self, _now: Instant) {
        // Dropped armed: it tells the fetcher.
        self.wanting = None;
    }

    fn fetch_event(&mut self) -> Option<ShareEvent> {
        self.fetcher.as_mut()?.try_next()
    }

    fn close_fetcher(&mut self, _now: Instant) {
        self.closing_fetcher = self.fetcher.take();
    }

    fn acknowledged(&mut self, _now: Instant, outcome: &AcknowledgementOutcome) {
        for hooks in &self.hooks {
            hooks.on_acknowledged(outcome);
        }
    }

    fn publish(&mut self, _now: Instant, metrics: &ShareMetrics) {
        self.metrics.lock().clone_from(metrics);
    }
}
