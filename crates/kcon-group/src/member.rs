//! The group member of either protocol: [`Member`] is what a member takes and shows beside the
//! machine contract, implemented by the classic [`GroupMachine`] and the consumer protocol's
//! [`ConsumerGroupMachine`] (each in its own module); [`MemberMachine`] is either one, chosen
//! by `group.protocol`. Both speak the same requests, answers and events, so the one driver
//! ([`GroupMember`](crate::GroupMember)) and the simulation run either.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use kcon_core::{
    Coordinator, GroupProtocol, Machine, RequestFailure, RequestId, TopicId, TopicPartition,
};

use crate::assignor::TopicPartitions;
use crate::config::GroupConfig;
use crate::consumer_group::ConsumerGroupMachine;
use crate::machine::{Generation, GroupEvent, GroupMachine, MemberState, RevocationId};
use crate::messages::{GroupRequest, GroupResponse, Outgoing};

/// A group member, whichever protocol: the commands it takes from the application and the
/// environment, and what it shows of itself. Its answers, timers and outputs are the machine
/// contract ([`Machine`]), which both members share with the same request, answer and event
/// types.
pub trait Member:
    Machine<
        Request = GroupRequest,
        Target = kcon_core::Target,
        Response = GroupResponse,
        Event = GroupEvent,
    >
{
    /// The configuration.
    fn config(&self) -> &GroupConfig;

    /// The generation (classic) or member epoch (consumer) and member id, as commits carry
    /// them.
    fn generation(&self) -> Generation;

    /// The partitions owned, including any whose revocation is pending.
    fn assignment(&self) -> &BTreeSet<TopicPartition>;

    /// How many times the member lost everything it owned at once ([`GroupEvent::Lost`] when
    /// fenced, expired or its generation reset; not a revocation the application left
    /// unacknowledged, which loses only those partitions): what its commits carry along with
    /// the generation ([`kcon_core::Membership::losses`]).
    fn losses(&self) -> u64;

    /// The coordinator, when known.
    fn coordinator(&self) -> Option<&Coordinator>;

    /// The coarse state.
    fn state(&self) -> MemberState;

    /// Whether it is done (closed or failed).
    fn is_terminated(&self) -> bool;

    /// The topics whose metadata it needs watched.
    fn watched_topics(&self) -> BTreeSet<String>;

    /// Subscribes to `topics` and to the topics `regex` matches, replacing the subscription;
    /// no names and no regex unsubscribe. Under the consumer protocol the coordinator matches
    /// the regex (KIP-848's `SubscribedTopicRegex`), those topics created later included. The
    /// classic protocol has no such field: a classic member subscribes to `topics` alone, and
    /// whoever subscribes it matches a pattern itself and passes the names it matched (what
    /// kcon's `Consumer` does).
    fn subscribe_to(&mut self, now: Instant, topics: BTreeSet<String>, regex: Option<String>);

    /// Leaves the group until subscribed again.
    fn unsubscribe(&mut self, now: Instant);

    /// Closes the member: its partitions are revoked, then it leaves; ends with
    /// [`GroupEvent::Closed`].
    fn close(&mut self, now: Instant);

    /// The application polled.
    fn application_polled(&mut self, now: Instant);

    /// The application finished with revocation `id`.
    fn revocation_done(&mut self, now: Instant, id: RevocationId);

    /// New cluster metadata: the watched topics' partitions (the classic leader rejoins when
    /// a count changed) and the topic ids known (the consumer member names its assignment's
    /// topics with them).
    fn metadata_updated(
        &mut self,
        now: Instant,
        topics: &TopicPartitions,
        ids: &BTreeMap<TopicId, String>,
    );
}

/// A group member under the protocol its configuration names. It is a [`Member`] by
/// dereference (`member.state()`, `member.close(now)`), and the machine contract goes to the
/// member it holds.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum MemberMachine {
    /// `group.protocol=classic`.
    Classic(GroupMachine),
    /// `group.protocol=consumer` (KIP-848), or a share group's member (KIP-932).
    Consumer(ConsumerGroupMachine),
}

impl MemberMachine {
    /// A member for `config` (validated) under `config.group_protocol`; `seed` seeds its
    /// randomness.
    pub fn new(config: GroupConfig, now: Instant, seed: u64) -> MemberMachine {
        match config.group_protocol {
            GroupProtocol::Classic => MemberMachine::Classic(GroupMachine::new(config, now, seed)),
            GroupProtocol::Consumer | GroupProtocol::Share => {
                MemberMachine::Consumer(ConsumerGroupMachine::new(config, now, seed))
            }
        }
    }

    /// The protocol it speaks.
    pub fn protocol(&self) -> GroupProtocol {
        match self {
            MemberMachine::Classic(_) => GroupProtocol::Classic,
            MemberMachine::Consumer(m) => m.config().group_protocol,
        }
    }

    /// Subscribes to `topics` (see [`Member::subscribe_to`]).
    pub fn subscribe<I, S>(&mut self, now: Instant, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscribe_with_regex(now, topics, None);
    }

    /// Subscribes to `topics` and to the topics `regex` matches (see
    /// [`Member::subscribe_to`]).
    pub fn subscribe_with_regex<I, S>(&mut self, now: Instant, topics: I, regex: Option<String>)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.subscribe_to(now, topics, regex);
    }
}

impl Deref for MemberMachine {
    type Target = dyn Member;

    fn deref(&self) -> &(dyn Member + 'static) {
        match self {
            MemberMachine::Classic(m) => m,
            MemberMachine::Consumer(m) => m,
        }
    }
}

impl DerefMut for MemberMachine {
    fn deref_mut(&mut self) -> &mut (dyn Member + 'static) {
        match self {
            MemberMachine::Classic(m) => m,
            MemberMachine::Consumer(m) => m,
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
        (**self).handle_response(now, id, result)
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }

    fn poll_request(&mut self, now: Instant) -> Option<Outgoing> {
        (**self).poll_request(now)
    }

    fn poll_event(&mut self) -> Option<GroupEvent> {
        (**self).poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}
