//! The tokio driver: one task that owns a [`CommitMachine`], sends its requests through a
//! [`Pool`], sleeps until its next timer, and answers the application's commits and fetches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator;
use kcon_core::{ConfigError, Membership};
use kcon_pool::driver::{InFlight, sleep_until};
use kcon_pool::{BrokerTarget, Pool, Purpose};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::{debug, warn};

use crate::config::OffsetsConfig;
use crate::error::{CommitError, FetchError};
use crate::machine::{CommitId, CommitKind, CommitMachine, FetchId, OffsetsEvent};
use crate::messages::{OffsetAndMetadata, OffsetsRequest, OffsetsResponse, Outgoing};
use crate::{Coordinator, RequestFailure, RequestId, Target, TopicPartition, wire};

type CommitResult = Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>;
type FetchResult = Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, FetchError>;

/// A consumer's offsets in one group, run by a tokio task: store offsets, commit them (sync,
/// async, or by the auto-commit timer), fetch committed offsets.
///
/// The commits carry the generation and member id given with
/// [`set_generation`](Offsets::set_generation), or followed from a group member with
/// [`follow`](Offsets::follow); without either they are those of an inactive group
/// (generation -1, empty member id), which is how a tool resets a group's offsets.
///
/// Dropping the handle stops the task; call [`close`](Offsets::close) for the final
/// auto-commit.
#[derive(Debug)]
pub struct Offsets {
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Command {
    Store(TopicPartition, OffsetAndMetadata),
    Commit {
        kind: CommitKind,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
        reply: oneshot::Sender<CommitResult>,
    },
    Fetch {
        partitions: Option<BTreeSet<TopicPartition>>,
        reply: oneshot::Sender<FetchResult>,
    },
    Generation(i32, String),
    Coordinator(Option<Coordinator>),
    Follow(watch::Receiver<Membership>),
    Forget(Vec<TopicPartition>),
    Close(oneshot::Sender<()>),
}

impl Offsets {
    /// Validates `config` and starts the task on the current tokio runtime.
    pub fn start(pool: Pool, config: OffsetsConfig) -> Result<Offsets, ConfigError> {
        config.validate()?;
        let machine = CommitMachine::new(config, Instant::now().into_std(), fastrand::u64(..));
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(pool, machine, rx));
        Ok(Offsets {
            commands,
            task: Some(task),
        })
    }

    /// Marks the record at `offset` of `tp` processed: commits send `offset + 1` with
    /// `leader_epoch`.
    pub fn store_offset(&self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>) {
        self.store(
            tp,
            OffsetAndMetadata {
                offset: offset.saturating_add(1),
                leader_epoch,
                metadata: String::new(),
            },
        );
    }

    /// Stores `offset` (already the next offset to consume, with its metadata) for `tp`.
    pub fn store(&self, tp: TopicPartition, offset: OffsetAndMetadata) {
        let _ = self.commands.send(Command::Store(tp, offset));
    }

    /// Commits `offsets` (`None`: everything stored) and waits for the coordinator's
    /// acknowledgement (retrying coordinator errors until `default.api.timeout.ms`).
    pub async fn commit_sync(
        &self,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> CommitResult {
        self.commit(CommitKind::Sync, offsets).await
    }

    /// Commits `offsets` (`None`: everything stored) without waiting; the receiver gets the
    /// outcome. A later async commit asked for before this one was sent supersedes it
    /// ([`CommitError::Superseded`]) and carries its offsets.
    pub fn commit_async(
        &self,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> oneshot::Receiver<CommitResult> {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Commit {
            kind: CommitKind::Async,
            offsets,
            reply,
        });
        rx
    }

    async fn commit(
        &self,
        kind: CommitKind,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> CommitResult {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Commit {
            kind,
            offsets,
            reply,
        });
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The committed offsets of `partitions` (`None`: every partition the group has one for),
    /// read stable under read_committed (KIP-447).
    pub async fn committed(&self, partitions: Option<BTreeSet<TopicPartition>>) -> FetchResult {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Fetch { partitions, reply });
        rx.await
            .unwrap_or_else(|_| Err(FetchError::Request("the offsets task has stopped".into())))
    }

    /// The generation and member id to commit with (-1 and empty: an inactive group).
    pub fn set_generation(&self, generation_id: i32, member_id: impl Into<String>) {
        let _ = self
            .commands
            .send(Command::Generation(generation_id, member_id.into()));
    }

    /// The group coordinator, when known from elsewhere (saves a lookup).
    pub fn set_coordinator(&self, coordinator: Option<Coordinator>) {
        let _ = self.commands.send(Command::Coordinator(coordinator));
    }

    /// Follows a group member's [`Membership`] (`kcon_group::GroupMember::membership`): its
    /// generation, member id and coordinator are used from now on, as they change.
    pub fn follow(&self, member: watch::Receiver<Membership>) {
        let _ = self.commands.send(Command::Follow(member));
    }

    /// Forgets the stored offsets of `partitions` (lost or revoked).
    pub fn forget(&self, partitions: Vec<TopicPartition>) {
        let _ = self.commands.send(Command::Forget(partitions));
    }

    /// With `enable.auto.commit`, commits what is stored and not yet acknowledged, then stops;
    /// waits at most `timeout`.
    pub async fn close(mut self, timeout: Duration) {
        let (done, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Close(done));
        let _ = time::timeout(timeout, rx).await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Offsets {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn stopped() -> CommitError {
    CommitError::Request("the offsets task has stopped".into())
}

async fn run(
    pool: Pool,
    mut machine: CommitMachine,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut in_flight: InFlight<RequestId, OffsetsResponse> = InFlight::new();
    let mut commit_replies: HashMap<CommitId, oneshot::Sender<CommitResult>> = HashMap::new();
    let mut fetch_replies: HashMap<FetchId, oneshot::Sender<FetchResult>> = HashMap::new();
    let mut member: Option<watch::Receiver<Membership>> = None;
    let mut closed: Option<oneshot::Sender<()>> = None;
    let group_id = machine.config().group_id.clone();
    loop {
        let now = Instant::now().into_std();
        while let Some(out) = machine.poll_request(now) {
            in_flight.spawn(out.id, send(pool.clone(), group_id.clone(), out));
        }
        while let Some(event) = machine.poll_event() {
            match event {
                OffsetsEvent::Committed { id, kind, result } => {
                    if let Some(reply) = commit_replies.remove(&id) {
                        let _ = reply.send(result);
                    } else if let Err(e) = result
                        && kind == CommitKind::Auto
                    {
                        warn!(group = %group_id, error = %e, "auto-commit failed");
                    }
                }
                OffsetsEvent::Fetched { id, result } => {
                    if let Some(reply) = fetch_replies.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
            }
        }
        if closed.is_some() && machine.commits_idle() {
            if let Some(done) = closed.take() {
                let _ = done.send(());
            }
            break;
        }
        let deadline = machine.poll_timeout().map(Instant::from_std);
        tokio::select! {
            (id, result) = in_flight.next() => {
                machine.handle_response(Instant::now().into_std(), id, result);
            }
            changed = async { member.as_mut()?.changed().await.ok() }, if member.is_some() => {
                match changed {
                    Some(()) => {
                        if let Some(m) = &member {
                            follow(&mut machine, m.borrow().clone());
                        }
                    }
                    // The member is gone: keep its last generation (commits will be refused
                    // if it is over, which is the truth).
                    None => member = None,
                }
            }
            command = commands.recv(), if closed.is_none() => {
                let now = Instant::now().into_std();
                match command {
                    Some(Command::Store(tp, o)) => machine.store(tp, o),
                    Some(Command::Commit { kind, offsets, reply }) => {
                        let id = match offsets {
                            Some(o) => machine.commit(kind, o, now),
                            None => machine.commit_stored(kind, now),
                        };
                        commit_replies.insert(id, reply);
                    }
                    Some(Command::Fetch { partitions, reply }) => {
                        let id = machine.fetch_committed(partitions, now);
                        fetch_replies.insert(id, reply);
                    }
                    Some(Command::Generation(g, m)) => machine.set_generation(g, m),
                    Some(Command::Coordinator(c)) => machine.set_coordinator(c),
                    Some(Command::Follow(m)) => {
                        follow(&mut machine, m.borrow().clone());
                        member = Some(m);
                    }
                    Some(Command::Forget(ps)) => machine.forget(&ps),
                    Some(Command::Close(done)) => {
                        machine.close(now);
                        closed = Some(done);
                    }
                    None => break,
                }
            }
            _ = sleep_until(deadline) => {
                machine.handle_timeout(Instant::now().into_std());
            }
        }
    }
    debug!(group = %group_id, "offsets task ends");
}

/// Commits from now on carry `m`'s generation and member id, and go to its coordinator when it
/// names one (a member between coordinators keeps the commit machine's own lookup going).
fn follow(machine: &mut CommitMachine, m: Membership) {
    machine.set_generation(m.generation_id, m.member_id);
    if m.coordinator.is_some() {
        machine.set_coordinator(m.coordinator);
    }
}

async fn send(
    pool: Pool,
    group_id: String,
    out: Outgoing,
) -> Result<OffsetsResponse, RequestFailure> {
    let target = match &out.target {
        Target::Coordinator(c) => BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
        _ => BrokerTarget::Any,
    };
    let timeout = out.timeout.unwrap_or(pool.config().request_timeout);
    let conn = pool
        .connection(target)
        .await
        .map_err(RequestFailure::from)?;
    let version = |api: ApiKey| conn.version(api).map_err(RequestFailure::from);
    let answer = match &out.request {
        OffsetsRequest::FindCoordinator { group_id } => {
            let v = version(ApiKey::FindCoordinator)?;
            let r = conn
                .send_with_timeout(&coordinator::find_coordinator_request(group_id, v), timeout)
                .await
                .map_err(RequestFailure::from)?;
            OffsetsResponse::FindCoordinator(coordinator::find_coordinator_response(group_id, r, v))
        }
        OffsetsRequest::OffsetCommit(c) => {
            let v = version(ApiKey::OffsetCommit)?;
            let req = wire::offset_commit_request(c, v).map_err(RequestFailure::from)?;
            wire::offset_commit_response(
                conn.send_with_timeout(&req, timeout)
                    .await
                    .map_err(RequestFailure::from)?,
            )
        }
        OffsetsRequest::OffsetFetch(f) => {
            let v = version(ApiKey::OffsetFetch)?;
            let (req, dropped_stable) =
                wire::offset_fetch_request(f, v).map_err(RequestFailure::from)?;
            if dropped_stable {
                // The Java client's default too: without require_stable (OffsetFetch < v7)
                // a pending transactional commit may be read before it is stable.
                debug!(group = %group_id, version = v, "the coordinator cannot require stable offsets (OffsetFetch < v7)");
            }
            wire::offset_fetch_response(
                &f.group_id,
                conn.send_with_timeout(&req, timeout)
                    .await
                    .map_err(RequestFailure::from)?,
                v,
            )
        }
    };
    Ok(answer)
}
