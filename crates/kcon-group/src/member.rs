//! The group member of either protocol, as one machine: [`MemberMachine`] is the classic
//! [`GroupMachine`] or the consumer protocol's [`ConsumerGroupMachine`], chosen by
//! `group.protocol`. Both speak the same requests, answers and events, so the one driver
//! ([`GroupMember`](crate::GroupMember)) and the simulation run either.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use kcon_core::TopicPartition;
use kcon_core::{Coordinator, GroupProtocol, Machine, RequestFailure, RequestId, TopicId};

use crate::assignor::TopicPartitions;
use crate::config::GroupConfig;
use crate::consumer_group::ConsumerGroupMachine;
use crate::machine::{Generation, GroupEvent, GroupMachine, MemberState, RevocationId};
use crate::messages::{GroupRequest, GroupResponse, Outgoing};

/// A group member under the protocol its configuration names.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum MemberMachine {
    /// `group.protocol=classic`.
    Classic(GroupMachine),
    /// `group.protocol=consumer` (KIP-848).
    Consumer(ConsumerGroupMachine),
}

impl MemberMachine {
    /// A member for `config` (validated) under `config.group_protocol`; `seed` seeds its
    /// randomness.
    pub fn new(config: GroupConfig, now: Instant, seed: u64) -> MemberMachine {
        match config.group_protocol {
            GroupProtocol::Classic => MemberMachine::Classic(GroupMachine::new(config, now, seed)),
            GroupProtocol::Consumer => {
                MemberMachine::Consumer(ConsumerGroupMachine::new(config, now, seed))
            }
        }
    }

    /// The protocol it speaks.
    pub fn protocol(&self) -> GroupProtocol {
        match self {
            MemberMachine::Classic(_) => GroupProtocol::Classic,
            MemberMachine::Consumer(_) => GroupProtocol::Consumer,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        match self {
            MemberMachine::Classic(m) => m.config(),
            MemberMachine::Consumer(m) => m.config(),
        }
    }

    /// The generation (classic) or member epoch (consumer) and member id, as commits carry
    /// them.
    pub fn generation(&self) -> Generation {
        match self {
            MemberMachine::Classic(m) => m.generation().clone(),
            MemberMachine::Consumer(m) => m.generation(),
        }
    }

    /// The partitions owned.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        match self {
            MemberMachine::Classic(m) => m.assignment(),
            MemberMachine::Consumer(m) => m.assignment(),
        }
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        match self {
            MemberMachine::Classic(m) => m.coordinator(),
            MemberMachine::Consumer(m) => m.coordinator(),
        }
    }

    /// The coarse state.
    pub fn state(&self) -> MemberState {
        match self {
            MemberMachine::Classic(m) => m.state(),
            MemberMachine::Consumer(m) => m.state(),
        }
    }

    /// Whether it is done (closed or failed).
    pub fn is_terminated(&self) -> bool {
        match self {
            MemberMachine::Classic(m) => m.is_terminated(),
            MemberMachine::Consumer(m) => m.is_terminated(),
        }
    }

    /// The topics whose metadata it needs watched.
    pub fn watched_topics(&self) -> BTreeSet<String> {
        match self {
            MemberMachine::Classic(m) => m.watched_topics(),
            MemberMachine::Consumer(m) => m.subscription().clone(),
        }
    }

    /// Subscribes to `topics`.
    pub fn subscribe<I, S>(&mut self, now: Instant, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self {
            MemberMachine::Classic(m) => m.subscribe(now, topics),
            MemberMachine::Consumer(m) => m.subscribe(now, topics),
        }
    }

    /// Subscribes to `topics` and to the topics `regex` matches. Under the consumer protocol
    /// the coordinator matches the regex (KIP-848's `SubscribedTopicRegex`), those topics
    /// created later included. The classic protocol has no such field: a classic member
    /// subscribes to `topics` alone, and whoever subscribes it matches a pattern itself and
    /// passes the names it matched (what kcon's `Consumer` does).
    pub fn subscribe_with_regex<I, S>(&mut self, now: Instant, topics: I, regex: Option<String>)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self {
            MemberMachine::Classic(m) => m.subscribe(now, topics),
            MemberMachine::Consumer(m) => m.subscribe_with_regex(now, topics, regex),
        }
    }

    /// Leaves the group until subscribed again.
    pub fn unsubscribe(&mut self, now: Instant) {
        match self {
            MemberMachine::Classic(m) => m.unsubscribe(now),
            MemberMachine::Consumer(m) => m.unsubscribe(now),
        }
    }

    /// Closes the member.
    pub fn close(&mut self, now: Instant) {
        match self {
            MemberMachine::Classic(m) => m.close(now),
            MemberMachine::Consumer(m) => m.close(now),
        }
    }

    /// The application polled.
    pub fn application_polled(&mut self, now: Instant) {
        match self {
            MemberMachine::Classic(m) => m.application_polled(now),
            MemberMachine::Consumer(m) => m.application_polled(now),
        }
    }

    /// The application finished with revocation `id`.
    pub fn revocation_done(&mut self, now: Instant, id: RevocationId) {
        match self {
            MemberMachine::Classic(m) => m.revocation_done(now, id),
            MemberMachine::Consumer(m) => m.revocation_done(now, id),
        }
    }

    /// New cluster metadata: the watched topics' partitions (the classic leader rejoins when
    /// a count changed) and the topic ids known (the consumer member names its assignment's
    /// topics with them).
    pub fn metadata_updated(
        &mut self,
        now: Instant,
        topics: &TopicPartitions,
        ids: &BTreeMap<TopicId, String>,
    ) {
        match self {
            MemberMachine::Classic(m) => m.metadata_updated(now, topics),
            MemberMachine::Consumer(m) => m.topic_ids_updated(now, ids),
        }
    }
}

impl Machine for MemberMachine {
    type Request = GroupRequest;
    type Target = kcon_core::Target;
    type Response = GroupResponse;
    type Event = GroupEvent;

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<GroupResponse, RequestFailure>,
    ) {
        match self {
            MemberMachine::Classic(m) => m.handle_response(now, id, result),
            MemberMachine::Consumer(m) => m.handle_response(now, id, result),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            MemberMachine::Classic(m) => m.handle_timeout(now),
            MemberMachine::Consumer(m) => m.handle_timeout(now),
        }
    }

    fn poll_request(&mut self, now: Instant) -> Option<Outgoing> {
        match self {
            MemberMachine::Classic(m) => m.poll_request(now),
            MemberMachine::Consumer(m) => m.poll_request(now),
        }
    }

    fn poll_event(&mut self) -> Option<GroupEvent> {
        match self {
            MemberMachine::Classic(m) => m.poll_event(),
            MemberMachine::Consumer(m) => m.poll_event(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            MemberMachine::Classic(m) => m.poll_timeout(),
            MemberMachine::Consumer(m) => m.poll_timeout(),
        }
    }
}
