//! A share consumer's parts in the simulation: kcon's `ShareConsumer` runs its machine on a
//! sans-IO driver (`kcon::fuzzing::share::Driver`) whose parts are the handles of two tokio
//! tasks, the group member's and the share fetcher's. [`ShareParts`] is those parts on a
//! virtual clock: kcon-group's [`ConsumerGroupMachine`] under `GroupProtocol::Share` and
//! kcon-fetch's [`ShareFetchMachine`], each with the channel its task tells the consumer
//! through, doing with every command what the task does with it.
//!
//! The simulation drives the two machines (the driving contract: drain requests and events
//! after every input, their requests going over its network to kcon-sim's share group model)
//! and hands what they tell to [`ShareParts::member_told`] and [`ShareParts::fetcher_told`],
//! as the tasks' `event` hooks do; the driver reads the channels when the `ShareConsumer`
//! would (a `recv_batch` starting or waiting, a commit waiting, a close). Nothing of the
//! driver's decisions is copied here.
//!
//! What the tasks do beside the machines, and this does too:
//! - the member's task acknowledges itself the revocations it told and the consumer has not
//!   acknowledged once it closes, and every revocation it tells while closing;
//! - the fetcher's task reads the pool's metadata for the topics assigned before it assigns
//!   them ([`ShareParts::metadata`] here), and numbers commits as the consumer does;
//! - the want for records the consumer holds while a `recv_batch` waits tells the fetcher to
//!   stop wanting when it is dropped armed: by the driver ([`Parts::stop_wanting`]) or with a
//!   `recv_batch` the application gave up ([`ShareParts::recv_batch_dropped`]);
//! - a close of either task hands back every event not read yet, the fetcher's up to
//!   [`ShareEvent::Closed`], the member's until it is done; a close that gives up on a task
//!   (`close.timeout.ms`) aborts it with what it told so far.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use kcon::fuzzing::share::{Parts, ShareMetrics};
use kcon_core::TopicPartition;
use kcon_fetch::MetadataView;
use kcon_fetch::share::{AcknowledgeType, AcknowledgementOutcome, ShareEvent, ShareFetchMachine};
use kcon_group::consumer_group::ConsumerGroupMachine;
use kcon_group::{GroupEvent, Member, RevocationId};

/// A share consumer's parts: the group member and the share fetcher as their tasks run them,
/// with the channels between them and the consumer, as the driver's [`Parts`].
#[derive(Debug)]
pub struct ShareParts {
    /// The group member (`GroupProtocol::Share`).
    pub group: ConsumerGroupMachine,
    /// The share fetch machine.
    pub fetch: ShareFetchMachine,
    /// The pool's metadata: what the fetcher's task reads for the topics assigned.
    pub metadata: MetadataView,
    /// The member's channel to the consumer: events told and not read yet.
    member_events: VecDeque<GroupEvent>,
    /// The fetcher's channel to the consumer: events told and not read yet.
    fetch_events: VecDeque<ShareEvent>,
    /// Revocations told to the consumer and not done yet: the member's task does them itself
    /// once it closes.
    told: Vec<RevocationId>,
    /// A want for records is out (the consumer holds its guard).
    wanting: bool,
    /// The member was told to leave: the consumer no longer commands it.
    member_closing: bool,
    /// The fetcher was told to close: the consumer no longer commands it.
    fetch_closing: bool,
    /// The close gave up on the member: its task was aborted.
    member_aborted: bool,
    /// The fetcher's task ended: it told [`ShareEvent::Closed`], or the close gave up on it.
    fetch_ended: bool,
    /// The fetcher told [`ShareEvent::Closed`].
    fetch_closed: bool,
    /// Outcomes the acknowledgement hooks heard, not taken yet.
    heard: Vec<AcknowledgementOutcome>,
    /// The metrics published last.
    published: ShareMetrics,
}

impl ShareParts {
    /// The parts of a consumer whose member is `group` and whose fetcher is `fetch`, the pool
    /// knowing `metadata`.
    pub fn new(
        group: ConsumerGroupMachine,
        fetch: ShareFetchMachine,
        metadata: MetadataView,
    ) -> ShareParts {
        ShareParts {
            group,
            fetch,
            metadata,
            member_events: VecDeque::new(),
            fetch_events: VecDeque::new(),
            told: Vec::new(),
            wanting: false,
            member_closing: false,
            fetch_closing: false,
            member_aborted: false,
            fetch_ended: false,
            fetch_closed: false,
            heard: Vec::new(),
            published: ShareMetrics::default(),
        }
    }

    // ----- the tasks -----

    /// Whether the member's task runs: its machine is to be driven. The task ends once the
    /// member is done (closed or failed), or when a close gives up on it.
    pub fn member_running(&self) -> bool {
        !self.member_aborted && !self.group.is_terminated()
    }

    /// Whether the fetcher's task runs: its machine is to be driven.
    pub fn fetcher_running(&self) -> bool {
        !self.fetch_ended
    }

    /// The member told `event` (its task's `event` hook): a revocation is the consumer's to
    /// acknowledge, or done at once once closing; the event goes down the channel.
    pub fn member_told(&mut self, now: Instant, event: GroupEvent) {
        if let GroupEvent::Revoked { id, .. } = &event {
            if self.member_closing {
                self.group.revocation_done(now, *id);
            } else if !self.told.contains(id) {
                self.told.push(*id);
            }
        }
        self.member_events.push_back(event);
    }

    /// The fetcher told `event`: it goes down the channel; [`ShareEvent::Closed`] ends the
    /// task.
    pub fn fetcher_told(&mut self, event: ShareEvent) {
        if event == ShareEvent::Closed {
            self.fetch_closed = true;
            self.fetch_ended = true;
        }
        self.fetch_events.push_back(event);
    }

    // ----- the channels -----

    /// Whether the member's channel holds an event the consumer may read now.
    pub fn member_waiting(&self) -> bool {
        !self.member_closing && !self.member_events.is_empty()
    }

    /// Whether the fetcher's channel holds an event the consumer may read now.
    pub fn fetcher_waiting(&self) -> bool {
        !self.fetch_closing && !self.fetch_events.is_empty()
    }

    /// A `recv_batch` was given up while it waited: the want it held is dropped armed, which
    /// tells the fetcher the application no longer waits.
    pub fn recv_batch_dropped(&mut self, now: Instant) {
        self.stop_wanting(now);
    }

    /// Whether the fetcher's close is over: it told [`ShareEvent::Closed`].
    pub fn fetcher_closed(&self) -> bool {
        self.fetch_closed
    }

    /// What the fetcher's close returns: the events not read yet, up to
    /// [`ShareEvent::Closed`]. A close that gave up before the fetcher closed (`give_up`)
    /// aborts its task.
    pub fn fetcher_close_events(&mut self, give_up: bool) -> Vec<ShareEvent> {
        if give_up {
            self.fetch_ended = true;
        }
        std::mem::take(&mut self.fetch_events)
            .into_iter()
            .take_while(|e| *e != ShareEvent::Closed)
            .collect()
    }

    /// Whether the member's close is over: its task ended.
    pub fn member_closed(&self) -> bool {
        !self.member_running()
    }

    /// What the member's close returns: every event not read yet. A close that gave up
    /// before the member was done (`give_up`) aborts its task.
    pub fn member_close_events(&mut self, give_up: bool) -> Vec<GroupEvent> {
        if give_up {
            self.member_aborted = true;
        }
        std::mem::take(&mut self.member_events).into()
    }

    // ----- what watches the consumer -----

    /// The outcomes the acknowledgement hooks heard since the last call.
    pub fn take_heard(&mut self) -> Vec<AcknowledgementOutcome> {
        std::mem::take(&mut self.heard)
    }

    /// The metrics the consumer published last.
    pub fn published(&self) -> &ShareMetrics {
        &self.published
    }
}

impl Parts for ShareParts {
    fn subscribe(&mut self, now: Instant, topics: Vec<String>) {
        if !self.member_closing {
            self.group
                .subscribe_to(now, topics.into_iter().collect(), None);
        }
    }

    fn alive(&mut self, now: Instant) {
        if !self.member_closing {
            self.group.application_polled(now);
        }
    }

    fn revocation_done(&mut self, now: Instant, id: RevocationId) {
        if !self.member_closing {
            self.told.retain(|t| *t != id);
            self.group.revocation_done(now, id);
        }
    }

    fn member_event(&mut self) -> Option<GroupEvent> {
        if self.member_closing {
            return None;
        }
        self.member_events.pop_front()
    }

    fn close_member(&mut self, now: Instant) {
        if std::mem::replace(&mut self.member_closing, true) {
            return;
        }
        for id in std::mem::take(&mut self.told) {
            self.group.revocation_done(now, id);
        }
        self.group.close(now);
    }

    fn member_id(&mut self, _now: Instant) {
        if !self.member_closing && !self.fetch_closing {
            self.fetch.set_member_id(self.group.member_id());
        }
    }

    fn assign(&mut self, now: Instant, partitions: BTreeSet<TopicPartition>) {
        if self.fetch_closing {
            return;
        }
        let topics: BTreeSet<&str> = partitions.iter().map(|tp| tp.topic.as_str()).collect();
        let view = MetadataView {
            partitions: self
                .metadata
                .partitions
                .iter()
                .filter(|(tp, _)| topics.contains(tp.topic.as_str()))
                .map(|(tp, info)| (tp.clone(), *info))
                .collect(),
            brokers: self.metadata.brokers.clone(),
        };
        self.fetch.metadata_updated(now, &view);
        self.fetch.assign(now, partitions);
    }

    fn acknowledge(
        &mut self,
        now: Instant,
        tp: TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        if !self.fetch_closing {
            self.fetch.acknowledge(now, &tp, first, last, kind);
        }
    }

    fn commit(&mut self, now: Instant, id: u64) {
        if !self.fetch_closing {
            let numbered = self.fetch.commit(now);
            assert_eq!(numbered, id, "the consumer numbers commits as the machine");
        }
    }

    fn want_records(&mut self, now: Instant, seen: u64) {
        if !self.fetch_closing {
            self.wanting = true;
            self.fetch.want_records(now, seen);
        }
    }

    fn want_ended(&mut self, _now: Instant) {
        self.wanting = false;
    }

    fn stop_wanting(&mut self, now: Instant) {
        if std::mem::take(&mut self.wanting) && !self.fetch_closing {
            self.fetch.stop_wanting(now);
        }
    }

    fn fetch_event(&mut self) -> Option<ShareEvent> {
        if self.fetch_closing {
            return None;
        }
        self.fetch_events.pop_front()
    }

    fn close_fetcher(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.fetch_closing, true) {
            self.fetch.close(now);
        }
    }

    fn acknowledged(&mut self, _now: Instant, outcome: &AcknowledgementOutcome) {
        self.heard.push(outcome.clone());
    }

    fn publish(&mut self, _now: Instant, metrics: &ShareMetrics) {
        self.published.clone_from(metrics);
    }
}
