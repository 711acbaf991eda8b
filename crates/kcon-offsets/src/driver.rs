//! The offsets task: a [`CommitMachine`] run by kcon-pool's generic driver, which sends its
//! requests through a [`Pool`] and sleeps until its next timer; this module answers the
//! application's commits and fetches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator;
use kcon_core::{ConfigError, Membership, PersistentFailure};
use kcon_pool::driver::{Drive, drive};
use kcon_pool::{BrokerTarget, Pool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::debug;

use crate::config::OffsetsConfig;
use crate::error::{CommitError, CommittedError};
use crate::machine::{CommitId, CommitKind, CommitMachine, CommittedId, OffsetsEvent};
use crate::messages::{OffsetAndMetadata, OffsetsRequest, OffsetsResponse, Outgoing};
use crate::{Coordinator, RequestFailure, TopicPartition, wire};

type CommitResult = Result<BTreeMap<TopicPartition, OffsetAndMetadata>, CommitError>;

/// Told of every auto-commit and async commit as it finishes, on the offsets task (see
/// [`Offsets::observe`]): it must not block.
pub type CommitObserver = Arc<dyn Fn(&FinishedCommit<'_>) + Send + Sync>;

/// A commit the offsets task finished without a caller awaiting it in place: an auto-commit
/// or an async one ([`Offsets::observe`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct FinishedCommit<'a> {
    /// Who asked: [`CommitKind::Auto`] or [`CommitKind::Async`].
    pub kind: CommitKind,
    /// From the time it was asked for to its answer.
    pub latency: Duration,
    /// The offsets the coordinator acknowledged, or why not.
    pub result: &'a CommitResult,
}
type CommittedResult = Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, CommittedError>;

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
    /// Reports of requests that keep failing, until [`take_reports`](Offsets::take_reports).
    reports: Option<mpsc::UnboundedReceiver<PersistentFailure>>,
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
        reply: oneshot::Sender<CommittedResult>,
    },
    Generation(i32, String),
    Coordinator(Option<Coordinator>),
    /// The followed member's generation, member id and coordinator (now, or as changed).
    Membership(Membership),
    Forget(Vec<TopicPartition>),
    Observe(Observer),
    Close(oneshot::Sender<()>),
}

/// A [`CommitObserver`] on its way to the task.
struct Observer(CommitObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

impl Offsets {
    /// Validates `config` and starts the task on the current tokio runtime.
    pub fn start(pool: Pool, config: OffsetsConfig) -> Result<Offsets, ConfigError> {
        config.validate()?;
        let machine = CommitMachine::new(config, Instant::now().into_std(), fastrand::u64(..));
        let (commands, rx) = mpsc::unbounded_channel();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let task = OffsetsTask {
            observer: None,
            reports: reports_tx,
            commit_replies: HashMap::new(),
            fetch_replies: HashMap::new(),
            closed: None,
            abandoned: false,
            group_id: machine.config().group_id.clone(),
        };
        let task = tokio::spawn(drive(pool, machine, task, rx));
        Ok(Offsets {
            commands,
            task: Some(task),
            reports: Some(reports),
        })
    }

    /// Where the task tells of commits, committed-offset lookups or coordinator lookups that
    /// keep failing, and of their recovery (each logged at WARN or INFO as well): taken once,
    /// by whoever tells the application. Reports are rare (at most one a minute per request
    /// while it fails), so an untaken receiver holds few.
    pub fn take_reports(&mut self) -> Option<mpsc::UnboundedReceiver<PersistentFailure>> {
        self.reports.take()
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
        self.command(Command::Store(tp, offset));
    }

    /// Tells `observer` of every auto-commit and async commit from now on as it finishes,
    /// acknowledged or failed (an auto-commit with nothing to commit sends nothing and is not
    /// told): what a consumer counts and reports besides the commits it awaits itself.
    pub fn observe(&self, observer: CommitObserver) {
        self.command(Command::Observe(Observer(observer)));
    }

    /// Commits `offsets` (`None`: everything stored) and waits for the coordinator's
    /// acknowledgement (retrying coordinator errors until `default.api.timeout.ms`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is asked for and goes on
    /// if the future is dropped; only its outcome goes unread. Dropped before its first poll, it
    /// does nothing.
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
        // A task that has stopped drops the command and the reply in it: the receiver then
        // says so (closed), as callers read it.
        self.command(Command::Commit {
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
        // A task that has stopped drops the reply with the command: answered below.
        self.command(Command::Commit {
            kind,
            offsets,
            reply,
        });
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The committed offsets of `partitions` (`None`: every partition the group has one for),
    /// read stable under read_committed (KIP-447).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only asks; dropping the future changes nothing.
    pub async fn committed(&self, partitions: Option<BTreeSet<TopicPartition>>) -> CommittedResult {
        let (reply, rx) = oneshot::channel();
        // A task that has stopped drops the reply with the command: answered below.
        self.command(Command::Fetch { partitions, reply });
        rx.await.unwrap_or_else(|_| {
            Err(CommittedError::Request(
                "the offsets task has stopped".into(),
            ))
        })
    }

    /// Hands `command` to the offsets task. The send fails only once the task has ended
    /// (closed, or its handle's commands gone): nothing is left to act on it, and a command
    /// that waits for an answer learns it from its dropped reply, so it is dropped.
    fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The generation and member id to commit with (-1 and empty: an inactive group).
    pub fn set_generation(&self, generation_id: i32, member_id: impl Into<String>) {
        self.command(Command::Generation(generation_id, member_id.into()));
    }

    /// The group coordinator, when known from elsewhere (saves a lookup).
    pub fn set_coordinator(&self, coordinator: Option<Coordinator>) {
        self.command(Command::Coordinator(coordinator));
    }

    /// Follows a group member's [`Membership`] (`kcon_group::GroupMember::membership`): its
    /// generation, member id and coordinator are used from now on, as they change.
    pub fn follow(&self, mut member: watch::Receiver<Membership>) {
        // The membership now goes in order with the commands sent after this call; later
        // changes are forwarded by a task that ends with the member or with this task.
        let now = member.borrow_and_update().clone();
        if self.commands.send(Command::Membership(now)).is_err() {
            return;
        }
        let commands = self.commands.clone();
        tokio::spawn(async move {
            // When the member is gone, its last generation stays: commits under it are refused
            // if it is over, which is the truth.
            while member.changed().await.is_ok() {
                let m = member.borrow_and_update().clone();
                if commands.send(Command::Membership(m)).is_err() {
                    break;
                }
            }
        });
    }

    /// Forgets the stored offsets of `partitions` (lost or revoked).
    pub fn forget(&self, partitions: Vec<TopicPartition>) {
        self.command(Command::Forget(partitions));
    }

    /// With `enable.auto.commit`, commits what is stored and not yet acknowledged, then stops;
    /// waits at most `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future drops the handle, which stops the task at once, so a
    /// final commit under way may be cut off. Give it the time it may take as `timeout` instead.
    pub async fn close(mut self, timeout: Duration) {
        let (done, rx) = oneshot::channel();
        // A task that has stopped drops `done` with the command, and the wait ends at once.
        self.command(Command::Close(done));
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

/// The offsets task: the commit machine driven by kcon-pool's driver, answering the handle's
/// commits and fetches.
struct OffsetsTask {
    observer: Option<CommitObserver>,
    reports: mpsc::UnboundedSender<PersistentFailure>,
    commit_replies: HashMap<CommitId, oneshot::Sender<CommitResult>>,
    fetch_replies: HashMap<CommittedId, oneshot::Sender<CommittedResult>>,
    /// Set by `close`: the task ends once no commit is queued or in flight.
    closed: Option<oneshot::Sender<()>>,
    /// Every handle is gone.
    abandoned: bool,
    group_id: String,
}

impl Drive for OffsetsTask {
    type Machine = CommitMachine;
    type Command = Command;

    fn send(
        &self,
        pool: &Pool,
        out: Outgoing,
    ) -> impl Future<Output = Result<OffsetsResponse, RequestFailure>> + Send + 'static {
        send(pool.clone(), self.group_id.clone(), out)
    }

    fn command(
        &mut self,
        machine: &mut CommitMachine,
        _pool: &Pool,
        now: std::time::Instant,
        command: Option<Command>,
    ) {
        let Some(command) = command else {
            self.abandoned = true;
            return;
        };
        // After close only the member's changes count: the final commit carries the
        // generation the member has when it goes out. Anything else is dropped, and its
        // caller told the task has stopped.
        if self.closed.is_some() && !matches!(command, Command::Membership(_)) {
            return;
        }
        match command {
            Command::Store(tp, o) => machine.store(tp, o),
            Command::Commit {
                kind,
                offsets,
                reply,
            } => {
                let id = match offsets {
                    Some(o) => machine.commit(now, kind, o),
                    None => machine.commit_stored(now, kind),
                };
                self.commit_replies.insert(id, reply);
            }
            Command::Fetch { partitions, reply } => {
                let id = machine.fetch_committed(now, partitions);
                self.fetch_replies.insert(id, reply);
            }
            Command::Generation(g, m) => machine.set_generation(g, m),
            Command::Coordinator(c) => machine.set_coordinator(c),
            Command::Membership(m) => follow(machine, m),
            Command::Forget(ps) => machine.forget(&ps),
            Command::Observe(Observer(o)) => self.observer = Some(o),
            Command::Close(done) => {
                machine.close(now);
                self.closed = Some(done);
            }
        }
    }

    fn event(
        &mut self,
        _machine: &mut CommitMachine,
        now: std::time::Instant,
        event: OffsetsEvent,
    ) {
        match event {
            OffsetsEvent::Committed {
                id,
                kind,
                queued_at,
                result,
            } => {
                let sent = !matches!(&result, Ok(acked) if acked.is_empty());
                if let Some(observe) = &self.observer
                    && (kind == CommitKind::Async || (kind == CommitKind::Auto && sent))
                {
                    observe(&FinishedCommit {
                        kind,
                        latency: now.saturating_duration_since(queued_at),
                        result: &result,
                    });
                }
                // A failure was logged by the machine, once, at the level it deserves.
                if let Some(reply) = self.commit_replies.remove(&id) {
                    // The caller may have stopped waiting (a dropped commit future): the
                    // observer above has counted the commit either way.
                    let _ = reply.send(result);
                }
            }
            OffsetsEvent::CommittedOffsets { id, result } => {
                if let Some(reply) = self.fetch_replies.remove(&id) {
                    // The caller may have stopped waiting (a dropped future): nothing to do.
                    let _ = reply.send(result);
                }
            }
            OffsetsEvent::PersistentFailure(report) => {
                // Fails only once the receiver is gone (dropped by whoever took it, or with
                // the handle that held it): the tracker has logged the report already.
                let _ = self.reports.send(report);
            }
        }
    }

    fn settled(&mut self, machine: &CommitMachine) -> bool {
        let closed = self.closed.is_some() && machine.commits_idle();
        if closed && let Some(done) = self.closed.take() {
            // `close` may have stopped waiting (its timeout passed): nothing to tell.
            let _ = done.send(());
        }
        let done = closed || self.abandoned;
        if done {
            debug!(group = %self.group_id, "offsets task ends");
        }
        done
    }
}

/// Commits from now on carry `m`'s generation and member id, and go to its coordinator when it
/// names one (a member between coordinators keeps the commit machine's own lookup going).
fn follow(machine: &mut CommitMachine, m: Membership) {
    // The losses first: a commit refused for a stale epoch goes again at once with the new
    // generation, and must not carry what was lost.
    machine.set_losses(m.losses);
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
    let target = BrokerTarget::from(&out.target);
    let timeout = out.timeout.unwrap_or(pool.config().request_timeout);
    let conn = pool
        .connection(target)
        .await
        .map_err(RequestFailure::from)?;
    let version = |api: ApiKey| conn.version(api).map_err(RequestFailure::from);
    let answer = match &out.request {
        OffsetsRequest::FindCoordinator { group_id } => {
            let v = version(ApiKey::FindCoordinator)?;
            let found = conn
                .find_coordinator(group_id, coordinator::GROUP, Some(timeout))
                .await
                .map_err(|e| RequestFailure::from(e).at_version(v))?;
            OffsetsResponse::FindCoordinator(found)
        }
        OffsetsRequest::OffsetCommit(c) => {
            let v = version(ApiKey::OffsetCommit)?;
            let req = wire::offset_commit_request(c, v).map_err(RequestFailure::from)?;
            wire::offset_commit_response(
                conn.send_with_timeout(&req, timeout)
                    .await
                    .map_err(|e| RequestFailure::from(e).at_version(v))?,
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
                    .map_err(|e| RequestFailure::from(e).at_version(v))?,
                v,
            )
        }
    };
    Ok(answer)
}
