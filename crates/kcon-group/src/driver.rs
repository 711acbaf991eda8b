//! The member's task: a [`MemberMachine`] (the classic member or the consumer protocol's, by
//! `group.protocol`) run by kcon-pool's generic driver, which sends its requests through a
//! [`Pool`] and sleeps until its next timer; this module says how each request is sent and what
//! the handle's commands and the machine's events become.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_core::coordinator;
use kcon_core::wire::VersionError;
use kcon_core::{ConfigError, Coordinator, Membership, RequestFailure, TopicId, TopicPartition};
use kcon_pool::driver::{Drive, drive};
use kcon_pool::{BrokerTarget, Connection, Metadata, Pool, TopicScope};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::debug;

use crate::assignor::{PartitionInfo, TopicPartitions};
use crate::config::GroupConfig;
use crate::consumer_group::wire as consumer_wire;
use crate::machine::{Generation, GroupEvent, MemberState, RevocationId};
use crate::member::MemberMachine;
use crate::messages::{GroupRequest, GroupResponse, Outgoing};
use crate::wire;

/// A group member run by a tokio task: a handle to subscribe, acknowledge revocations, read
/// events and close.
///
/// The member must be told the application is alive with [`poll`](GroupMember::poll) at least
/// every `max.poll.interval.ms`, or it leaves the group (as the Java client's does) and rejoins
/// on the next `poll`.
///
/// Dropping the handle closes the member in the background (revocations acknowledged at once,
/// LeaveGroup for a dynamic member).
#[derive(Debug)]
pub struct GroupMember {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<GroupEvent>,
    snapshot: watch::Receiver<MemberSnapshot>,
    membership: watch::Receiver<Membership>,
    task: Option<JoinHandle<()>>,
}

/// What the member looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    /// The coarse state.
    pub state: MemberState,
    /// The generation (id -1 when none).
    pub generation: Generation,
    /// The partitions owned.
    pub assignment: BTreeSet<TopicPartition>,
    /// The coordinator, when known.
    pub coordinator: Option<Coordinator>,
    /// How many times the member lost its partitions.
    pub losses: u64,
}

impl MemberSnapshot {
    fn of(m: &MemberMachine) -> MemberSnapshot {
        MemberSnapshot {
            state: m.state(),
            generation: m.generation(),
            assignment: m.assignment().clone(),
            coordinator: m.coordinator().cloned(),
            losses: m.losses(),
        }
    }

    fn membership(&self) -> Membership {
        Membership {
            generation_id: self.generation.id,
            member_id: self.generation.member_id.clone(),
            coordinator: self.coordinator.clone(),
            losses: self.losses,
        }
    }
}

#[derive(Debug)]
enum Command {
    /// Names, and a regex the coordinator matches (consumer protocol).
    Subscribe(Vec<String>, Option<String>),
    Unsubscribe,
    /// The application gave up everything it owned: acknowledge revocations at once until
    /// subscribed again.
    GaveUp,
    Poll,
    RevocationDone(RevocationId),
    /// Close, acknowledging revocations at once.
    Close,
}

impl GroupMember {
    /// Validates `config` and starts the member's task on the current tokio runtime. It joins
    /// nothing until [`subscribe`](GroupMember::subscribe).
    pub fn start(pool: Pool, config: GroupConfig) -> Result<GroupMember, ConfigError> {
        config.validate()?;
        let now = Instant::now().into_std();
        let machine = MemberMachine::new(config, now, fastrand::u64(..));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let first = MemberSnapshot::of(&machine);
        let (membership_tx, membership) = watch::channel(first.membership());
        let (snapshot_tx, snapshot) = watch::channel(first);
        let watchers = Watchers {
            snapshot: snapshot_tx,
            membership: membership_tx,
        };
        let task = MemberTask {
            events: event_tx,
            watchers,
            closing: false,
            gave_up: false,
            told: HashSet::new(),
            group_id: machine.config().group_id.clone(),
        };
        let task = tokio::spawn(drive(pool, machine, task, command_rx));
        Ok(GroupMember {
            commands,
            events,
            snapshot,
            membership,
            task: Some(task),
        })
    }

    /// Subscribes to `topics`, replacing the subscription (empty: unsubscribe).
    pub fn subscribe<I, S>(&self, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.command(Command::Subscribe(topics, None));
    }

    /// Subscribes to `topics` and to whatever topics `regex` matches, replacing the
    /// subscription: under `group.protocol=consumer` the coordinator matches the regex (KIP-848's
    /// `SubscribedTopicRegex`; see [`MemberMachine::subscribe_with_regex`]). No names and no
    /// regex unsubscribe.
    pub fn subscribe_with_regex<I, S>(&self, topics: I, regex: Option<String>)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.command(Command::Subscribe(topics, regex));
    }

    /// Leaves the group, revoking the partitions first.
    pub fn unsubscribe(&self) {
        self.command(Command::Unsubscribe);
    }

    /// The application gave up every partition it owned (after [`unsubscribe`]: its listener
    /// ran and its offsets were committed): the member acknowledges every revocation it told
    /// of, and those it tells until subscribed again, itself. The application need not read
    /// the events for the member to leave.
    ///
    /// [`unsubscribe`]: GroupMember::unsubscribe
    pub fn gave_up(&self) {
        self.command(Command::GaveUp);
    }

    /// Tells the member the application is alive (it polled).
    pub fn poll(&self) {
        self.command(Command::Poll);
    }

    /// Acknowledges [`GroupEvent::Revoked`] `id`: the application has stopped consuming the
    /// partitions and committed what it wanted.
    pub fn revocation_done(&self, id: RevocationId) {
        self.command(Command::RevocationDone(id));
    }

    /// The next event; `None` once the member has stopped and every event was read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is taken only in the poll that returns it; dropped while it waits, the
    /// next call returns the same one.
    pub async fn next_event(&mut self) -> Option<GroupEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<GroupEvent> {
        self.events.try_recv().ok()
    }

    /// The member's state now.
    pub fn snapshot(&self) -> MemberSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every change of the snapshot.
    pub fn watch(&self) -> watch::Receiver<MemberSnapshot> {
        self.snapshot.clone()
    }

    /// A receiver that sees every change of what commits must carry (generation, member id,
    /// coordinator): what an offsets task follows.
    pub fn membership(&self) -> watch::Receiver<Membership> {
        self.membership.clone()
    }

    /// Hands `command` to the member's task. The send fails only once the task has ended: the
    /// member closed or failed, which its last events said (`Closed`, `Fatal`), and there is
    /// nothing left to act on the command, so it is dropped.
    fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Closes the member (revocations are acknowledged at once: read the events before if the
    /// application must commit on revocation) and waits, at most `timeout`, for LeaveGroup to
    /// be answered. Returns the events that came meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in effect: once polled the member is closing, and dropping the future (the
    /// member with it) leaves it closing in the background, as a dropped member does (LeaveGroup
    /// still goes); only the events are not returned.
    pub async fn close(mut self, timeout: Duration) -> Vec<GroupEvent> {
        self.command(Command::Close);
        let mut events = Vec::new();
        let _ = time::timeout(timeout, async {
            while let Some(e) = self.events.recv().await {
                events.push(e);
            }
        })
        .await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
        events
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        // The task sees the command channel close and closes the member on its own; it ends
        // when LeaveGroup is answered or fails. Nothing to do here.
        if let Some(task) = self.task.take() {
            drop(task);
        }
    }
}

/// The member's two views for other tasks, sent when they change.
struct Watchers {
    snapshot: watch::Sender<MemberSnapshot>,
    membership: watch::Sender<Membership>,
}

impl Watchers {
    fn update(&self, machine: &MemberMachine) {
        let new = MemberSnapshot::of(machine);
        let membership = new.membership();
        self.snapshot.send_if_modified(|s| {
            let changed = *s != new;
            *s = new;
            changed
        });
        self.membership.send_if_modified(|m| {
            let changed = *m != membership;
            *m = membership;
            changed
        });
    }
}

/// The member's task: the group machine driven by kcon-pool's driver.
struct MemberTask {
    events: mpsc::UnboundedSender<GroupEvent>,
    watchers: Watchers,
    closing: bool,
    /// The application gave everything up ([`GroupMember::gave_up`]) and has not subscribed
    /// since: the member acknowledges revocations itself.
    gave_up: bool,
    /// The revocations sent to the application and not acknowledged yet: those the member
    /// acknowledges itself once the application gave everything up or closes (the events may
    /// sit unread in the channel: the application need not ask for one again).
    told: HashSet<RevocationId>,
    group_id: String,
}

impl MemberTask {
    /// Acknowledges every revocation the application was told of and has not acknowledged.
    fn acknowledge_told(&mut self, machine: &mut MemberMachine, now: std::time::Instant) {
        for id in std::mem::take(&mut self.told) {
            machine.revocation_done(now, id);
        }
    }
}

impl Drive for MemberTask {
    type Machine = MemberMachine;
    type Command = Command;

    fn send(
        &self,
        pool: &Pool,
        out: Outgoing,
    ) -> impl Future<Output = Result<GroupResponse, RequestFailure>> + Send + 'static {
        send(pool.clone(), out)
    }

    fn command(
        &mut self,
        machine: &mut MemberMachine,
        pool: &Pool,
        now: std::time::Instant,
        command: Option<Command>,
    ) {
        match command {
            Some(Command::Subscribe(topics, regex)) => {
                self.gave_up = false;
                pool.track_topics(TopicScope::topics(topics.iter().cloned()));
                machine.subscribe_with_regex(now, topics, regex);
            }
            Some(Command::Unsubscribe) => machine.unsubscribe(now),
            Some(Command::GaveUp) => {
                self.gave_up = true;
                self.acknowledge_told(machine, now);
            }
            Some(Command::Poll) => machine.application_polled(now),
            Some(Command::RevocationDone(id)) => {
                self.told.remove(&id);
                machine.revocation_done(now, id);
            }
            Some(Command::Close) | None => {
                debug!(group = %self.group_id, "closing the group member");
                self.closing = true;
                self.acknowledge_told(machine, now);
                machine.close(now);
            }
        }
    }

    fn event(&mut self, machine: &mut MemberMachine, now: std::time::Instant, event: GroupEvent) {
        // Nobody is left to acknowledge a revocation once closing, nor once the application
        // gave everything up: the member does it itself.
        if let GroupEvent::Revoked { id, .. } = &event {
            if self.closing || self.gave_up {
                machine.revocation_done(now, *id);
            } else {
                self.told.insert(*id);
            }
        }
        // The send fails once the handle is dropped: nobody reads events any more, and the
        // task goes on to leave the group on its own.
        let _ = self.events.send(event);
    }

    fn settled(&mut self, machine: &MemberMachine) -> bool {
        self.watchers.update(machine);
        let done = machine.is_terminated();
        if done {
            debug!(group = %self.group_id, "group member task ends");
        }
        done
    }

    fn takes_commands(&self) -> bool {
        !self.closing
    }

    /// A member's requests are small, and a follower's SyncGroup answers its JoinGroup answer:
    /// carried on the member's task, the SyncGroup is written in the turn that reads the
    /// answer, with two task hops fewer. A coordinator may end a generation's sync with the
    /// leader's SyncGroup (librdkafka's mock cluster refuses a follower's that comes after it),
    /// and a leader that assigns at once syncs within a millisecond of its own answer.
    fn sends_on_own_task(&self) -> bool {
        true
    }

    fn follows_metadata(&self) -> bool {
        true
    }

    fn metadata_changed(
        &mut self,
        machine: &mut MemberMachine,
        _pool: &Pool,
        now: std::time::Instant,
        metadata: &Metadata,
    ) {
        let topics = topic_partitions(metadata, &machine.watched_topics());
        machine.metadata_updated(now, &topics, &topic_ids(metadata));
    }
}

/// The partitions of `topics` in `metadata`, with the racks of each partition's replicas.
/// Topics the metadata lacks, or has only an error for, are left out.
pub(crate) fn topic_partitions(metadata: &Metadata, topics: &BTreeSet<String>) -> TopicPartitions {
    topics
        .iter()
        .filter_map(|name| {
            let t = metadata.topic(name)?;
            if t.partitions.is_empty() {
                return None;
            }
            let partitions = t
                .partitions
                .values()
                .map(|p| {
                    let mut racks: Vec<String> = p
                        .replicas
                        .iter()
                        .filter_map(|id| metadata.broker(*id)?.rack.clone())
                        .collect();
                    racks.sort();
                    racks.dedup();
                    PartitionInfo {
                        partition: p.partition,
                        replica_racks: racks,
                    }
                })
                .collect();
            Some((name.clone(), partitions))
        })
        .collect()
}

/// Every topic id `metadata` knows, with its topic's name.
pub(crate) fn topic_ids(metadata: &Metadata) -> BTreeMap<TopicId, String> {
    metadata
        .topics
        .values()
        .filter_map(|t| Some((t.id?, t.name.clone())))
        .collect()
}

async fn send(pool: Pool, out: Outgoing) -> Result<GroupResponse, RequestFailure> {
    let target = BrokerTarget::from(&out.target);
    let timeout = out.timeout.unwrap_or(pool.config().request_timeout);
    if let GroupRequest::Metadata { topics } = &out.request {
        let metadata = pool
            .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
            .await
            .map_err(RequestFailure::from)?;
        return Ok(GroupResponse::Metadata(topic_partitions(&metadata, topics)));
    }
    if let GroupRequest::TopicIds { topics, all } = &out.request {
        let scope = if *all {
            TopicScope::All
        } else {
            TopicScope::topics(topics.iter().cloned())
        };
        let metadata = pool
            .refresh_metadata(scope)
            .await
            .map_err(RequestFailure::from)?;
        return Ok(GroupResponse::TopicIds(topic_ids(&metadata)));
    }
    let conn = pool
        .connection(target)
        .await
        .map_err(RequestFailure::from)?;
    let version = |api: ApiKey| conn.version(api).map_err(RequestFailure::from);
    let answer = match &out.request {
        GroupRequest::FindCoordinator { group_id } => {
            let v = version(ApiKey::FindCoordinator)?;
            let found = conn
                .find_coordinator(group_id, coordinator::GROUP, Some(timeout))
                .await
                .map_err(|e| RequestFailure::from(e).at_version(v))?;
            GroupResponse::FindCoordinator(found)
        }
        GroupRequest::JoinGroup(j) => {
            let v = version(ApiKey::JoinGroup)?;
            let request = wire::join_group_request(j, v);
            wire::join_group_response(call(&conn, v, request, timeout).await?)
        }
        GroupRequest::SyncGroup(j) => {
            let v = version(ApiKey::SyncGroup)?;
            let request = wire::sync_group_request(j, v);
            wire::sync_group_response(call(&conn, v, request, timeout).await?)
        }
        GroupRequest::Heartbeat(h) => {
            let v = version(ApiKey::Heartbeat)?;
            let request = wire::heartbeat_request(h, v);
            wire::heartbeat_response(call(&conn, v, request, timeout).await?)
        }
        GroupRequest::LeaveGroup(l) => leave(&pool, target, conn, l, timeout).await?,
        GroupRequest::ConsumerGroupHeartbeat(h) => {
            let v = version(ApiKey::ConsumerGroupHeartbeat)?;
            let request = consumer_wire::heartbeat_request(h, v);
            GroupResponse::ConsumerGroupHeartbeat(consumer_wire::heartbeat_response(
                call(&conn, v, request, timeout).await?,
            ))
        }
        GroupRequest::ShareGroupHeartbeat(h) => {
            let v = version(ApiKey::ShareGroupHeartbeat)?;
            let request = consumer_wire::share_heartbeat_request(h, v);
            GroupResponse::ShareGroupHeartbeat(consumer_wire::share_heartbeat_response(
                call(&conn, v, request, timeout).await?,
            ))
        }
        // Invariant: Metadata and TopicIds were answered above, before any connection was
        // asked for.
        GroupRequest::Metadata { .. } | GroupRequest::TopicIds { .. } => {
            unreachable!("Metadata is answered by the pool")
        }
    };
    Ok(answer)
}

/// Sends `request` (built for the connection's `version`, or why it could not be) and waits
/// for the answer.
async fn call<R: Request + 'static>(
    conn: &Connection,
    version: i16,
    request: Result<R, VersionError>,
    timeout: Duration,
) -> Result<R::Response, RequestFailure>
where
    R::Response: 'static,
{
    let request = request.map_err(RequestFailure::from)?;
    conn.send_with_timeout(&request, timeout)
        .await
        .map_err(|e| RequestFailure::from(e).at_version(version))
}

/// LeaveGroup, which the member sends once and does not retry: when the broker refused its
/// version and the pool stepped it down (the broker's next connection speaks a lower one), it
/// goes again at the lower version, so that a broker mishandling the newest one still sees the
/// member leave.
async fn leave(
    pool: &Pool,
    target: BrokerTarget,
    mut conn: Connection,
    l: &crate::messages::LeaveGroup,
    timeout: Duration,
) -> Result<GroupResponse, RequestFailure> {
    loop {
        let v = conn
            .version(ApiKey::LeaveGroup)
            .map_err(RequestFailure::from)?;
        let request = Ok(wire::leave_group_request(l, v));
        let failure = match call(&conn, v, request, timeout).await {
            Ok(answer) => return Ok(wire::leave_group_response(answer)),
            Err(f) => f,
        };
        match pool.connection(target).await {
            Ok(next) if next.version(ApiKey::LeaveGroup).is_ok_and(|w| w < v) => {
                debug!(
                    version = v,
                    "LeaveGroup failed at a version the broker refuses; again one lower"
                );
                conn = next;
            }
            _ => return Err(failure),
        }
    }
}
