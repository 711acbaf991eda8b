//! The share fetch task: a [`ShareFetchMachine`] run by kcon-pool's generic driver, and its
//! handle, [`ShareFetcher`].

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartitionData, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_core::wire::{VersionError, str_bytes};
use kcon_core::{RequestFailure, TopicPartition};
use kcon_pool::driver::{Drive, drive};
use kcon_pool::{BrokerTarget, Metadata, Pool, TopicScope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time;
use tracing::warn;

use super::wire::{share_acknowledge_request, share_fetch_request};
use super::{
    AcknowledgeType, AcquireMode, ShareAcknowledge, ShareAnswer, ShareEvent, ShareFetchMachine,
    ShareOutgoing, ShareRequest,
};
use crate::config::FetchConfig;
use crate::driver::metadata_view;
use crate::session::wire::set_uuid;

/// A share fetch machine run by a tokio task: a handle to assign partitions, want records,
/// acknowledge and commit, and read what the task tells.
///
/// Dropping the handle stops the task without closing the share sessions (the brokers evict
/// them, and the records' locks expire); [`close`](ShareFetcher::close) closes them.
#[derive(Debug)]
pub struct ShareFetcher {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<ShareEvent>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Command {
    Member(String),
    Assign(BTreeSet<TopicPartition>),
    Want(u64),
    StopWanting,
    Acknowledge(TopicPartition, i64, i64, AcknowledgeType),
    Commit(u64),
    Close,
}

impl ShareFetcher {
    /// Starts the task on the current tokio runtime, for share group `group_id`'s member
    /// `member_id`, its fetches acquiring as `acquire_mode` says (from ShareFetch v2; a broker
    /// that speaks v1 acquires whole batches, which the task warns of once per broker). It
    /// fetches nothing until partitions are assigned and records wanted.
    pub fn start(
        pool: Pool,
        config: FetchConfig,
        group_id: impl Into<String>,
        member_id: impl Into<String>,
        acquire_mode: AcquireMode,
    ) -> ShareFetcher {
        let mut machine =
            ShareFetchMachine::new(config.clone(), group_id, member_id, fastrand::u64(..));
        machine.set_acquire_mode(acquire_mode);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let glue = ShareTask {
            events: event_tx,
            config,
            closed: false,
            warned_v1: Arc::default(),
        };
        let task = tokio::spawn(drive(pool, machine, glue, command_rx));
        ShareFetcher {
            commands,
            events,
            task: Some(task),
        }
    }

    /// The member id the requests carry (the share group member's).
    pub fn set_member_id(&self, member_id: impl Into<String>) {
        self.command(Command::Member(member_id.into()));
    }

    /// The partitions assigned now.
    pub fn assign(&self, partitions: BTreeSet<TopicPartition>) {
        self.command(Command::Assign(partitions));
    }

    /// The application waits for records, having read `seen` [`ShareEvent::Records`] (a want
    /// sent before it read records the task told since is ignored: see
    /// [`ShareFetchMachine::want_records`]).
    pub fn want_records(&self, seen: u64) {
        self.command(Command::Want(seen));
    }

    /// The application waits for records, having read `seen` [`ShareEvent::Records`], until
    /// the returned guard is dropped: a wait called off before records came (the guard dropped
    /// without [`Wanting::ended`]) tells the task the application no longer waits, so
    /// that nothing is acquired to sit under its lock meanwhile.
    pub fn wait_for_records(&self, seen: u64) -> Wanting {
        self.want_records(seen);
        Wanting {
            commands: self.commands.clone(),
            armed: true,
        }
    }

    /// Acknowledges `first..=last` of `partition` as `kind`.
    pub fn acknowledge(
        &self,
        partition: TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) {
        self.command(Command::Acknowledge(partition, first, last, kind));
    }

    /// Sends every acknowledgement given so far; the task tells [`ShareEvent::Committed`] with
    /// `id` once they are answered. `id`s are the handle's to choose, one per commit, in
    /// increasing order from 0.
    pub fn commit(&self, id: u64) {
        self.command(Command::Commit(id));
    }

    /// What the task told next; `None` once it has stopped and everything was read.
    pub async fn next(&mut self) -> Option<ShareEvent> {
        self.events.recv().await
    }

    /// What the task told, without waiting.
    pub fn try_next(&mut self) -> Option<ShareEvent> {
        self.events.try_recv().ok()
    }

    /// Sends the acknowledgements left and closes every share session (ShareAcknowledge at
    /// epoch -1), waiting at most `timeout`. Returns the events not read yet.
    pub async fn close(mut self, timeout: Duration) -> Vec<ShareEvent> {
        self.command(Command::Close);
        let mut events = Vec::new();
        let _ = time::timeout(timeout, async {
            while let Some(e) = self.events.recv().await {
                if e == ShareEvent::Closed {
                    break;
                }
                events.push(e);
            }
        })
        .await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
        events
    }

    /// The send fails only once the task has ended: nothing is left to act on it.
    fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

/// A wait for records under way (see [`ShareFetcher::wait_for_records`]).
#[derive(Debug)]
pub struct Wanting {
    commands: mpsc::UnboundedSender<Command>,
    armed: bool,
}

impl Wanting {
    /// The wait ended with records (the task stopped wanting by itself), or a new wait
    /// replaces it: nothing to tell the task.
    pub fn ended(mut self) {
        self.armed = false;
    }
}

impl Drop for Wanting {
    fn drop(&mut self) {
        if self.armed {
            // Fails only once the task has ended: nothing is fetched then anyway.
            let _ = self.commands.send(Command::StopWanting);
        }
    }
}

impl Drop for ShareFetcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct ShareTask {
    events: mpsc::UnboundedSender<ShareEvent>,
    config: FetchConfig,
    closed: bool,
    /// Brokers warned of that they acquire whole batches (ShareFetch v1) though
    /// `share.acquire.mode` is `record_limit`.
    warned_v1: Arc<Mutex<BTreeSet<i32>>>,
}

impl Drive for ShareTask {
    type Machine = ShareFetchMachine;
    type Command = Command;

    fn send(
        &self,
        pool: &Pool,
        out: ShareOutgoing,
    ) -> impl Future<Output = Result<ShareAnswer, RequestFailure>> + Send + 'static {
        send(
            pool.clone(),
            self.config.max_wait,
            out,
            self.warned_v1.clone(),
        )
    }

    fn command(
        &mut self,
        machine: &mut ShareFetchMachine,
        pool: &Pool,
        now: std::time::Instant,
        command: Option<Command>,
    ) {
        match command {
            Some(Command::Member(id)) => machine.set_member_id(id),
            Some(Command::Assign(partitions)) => {
                let topics: BTreeSet<String> =
                    partitions.iter().map(|tp| tp.topic.clone()).collect();
                pool.track_topics(TopicScope::topics(topics.iter().cloned()));
                let metadata = pool.metadata();
                machine.metadata_updated(now, &metadata_view(pool, &metadata, &topics));
                machine.assign(now, partitions);
            }
            Some(Command::Want(seen)) => machine.want_records(now, seen),
            Some(Command::StopWanting) => machine.stop_wanting(now),
            Some(Command::Acknowledge(tp, first, last, kind)) => {
                machine.acknowledge(now, &tp, first, last, kind)
            }
            Some(Command::Commit(id)) => {
                let numbered = machine.commit(now);
                debug_assert_eq!(
                    numbered, id,
                    "the handle numbers commits as the machine does"
                );
            }
            Some(Command::Close) | None => machine.close(now),
        }
    }

    fn event(
        &mut self,
        _machine: &mut ShareFetchMachine,
        _now: std::time::Instant,
        event: ShareEvent,
    ) {
        if event == ShareEvent::Closed {
            self.closed = true;
        }
        // The send fails only once the handle is dropped, which aborts this task.
        let _ = self.events.send(event);
    }

    fn settled(&mut self, _machine: &ShareFetchMachine) -> bool {
        self.closed
    }

    fn follows_metadata(&self) -> bool {
        true
    }

    fn metadata_changed(
        &mut self,
        machine: &mut ShareFetchMachine,
        pool: &Pool,
        now: std::time::Instant,
        metadata: &Metadata,
    ) {
        let view = metadata_view(pool, metadata, &machine.topics());
        machine.metadata_updated(now, &view);
    }
}

async fn send(
    pool: Pool,
    max_wait: Duration,
    out: ShareOutgoing,
    warned_v1: Arc<Mutex<BTreeSet<i32>>>,
) -> Result<ShareAnswer, RequestFailure> {
    match out.request {
        ShareRequest::Fetch { broker, fetch } => {
            // The broker holds a fetch up to fetch.max.wait.ms before it answers.
            let answer = call(&pool, broker, ApiKey::ShareFetch, max_wait, |v| {
                if v < 2 && fetch.acquire_mode == AcquireMode::RecordLimit {
                    let mut warned = warned_v1.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.insert(broker) {
                        warn!(
                            broker,
                            version = v,
                            "share.acquire.mode=record_limit needs ShareFetch v2 (Apache Kafka \
                             4.2), and broker {broker} speaks v{v}: it acquires whole batches, \
                             so a fetch may acquire more than max.poll.records records (those \
                             past a batch wait in the consumer under their locks)"
                        );
                    }
                }
                share_fetch_request(&fetch, v)
            })
            .await?;
            Ok(ShareAnswer::Fetch(Box::new(answer.0)))
        }
        ShareRequest::Acknowledge {
            broker,
            acknowledge,
        } => {
            let mut version = 0;
            let answer = call(
                &pool,
                broker,
                ApiKey::ShareAcknowledge,
                Duration::ZERO,
                |v| {
                    version = v;
                    if acknowledge.renew && v < 2 {
                        // Renewing needs v2: the request goes without them (the session's
                        // epoch moves on as the machine expects), and each renewal is told
                        // refused below.
                        let mut bare = acknowledge.clone();
                        bare.renew = false;
                        bare.partitions.clear();
                        return share_acknowledge_request(&bare, v);
                    }
                    share_acknowledge_request(&acknowledge, v)
                },
            )
            .await?;
            let mut answer = answer.body;
            if acknowledge.renew && version < 2 && answer.error_code == 0 {
                refuse_renewals(&mut answer, &acknowledge);
            }
            Ok(ShareAnswer::Acknowledge(Box::new(answer)))
        }
        ShareRequest::Metadata { topics } => {
            let metadata = pool
                .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
                .await
                .map_err(RequestFailure::from)?;
            let topics: BTreeSet<String> = topics.into_iter().collect();
            Ok(ShareAnswer::Metadata(metadata_view(
                &pool, &metadata, &topics,
            )))
        }
    }
}

/// Tells each partition of `sent` (renewals a broker speaking ShareAcknowledge v1 could not be
/// sent) refused with UNSUPPORTED_VERSION in `answer`.
fn refuse_renewals(answer: &mut ShareAcknowledgeResponse, sent: &ShareAcknowledge) {
    for p in &sent.partitions {
        let mut t = ShareAcknowledgeTopicResponse::default();
        set_uuid(&mut t.topic_id, Some(p.topic_id));
        let mut d = AckPartitionData::default();
        d.partition_index = p.partition.partition;
        d.error_code = ResponseError::UnsupportedVersion.code();
        d.error_message = Some(str_bytes(
            "renewing a record's lock needs ShareAcknowledge v2 (Apache Kafka 4.2)",
        ));
        t.partitions.push(d);
        answer.responses.push(t);
    }
}

/// Sends `api`'s request, built for `broker`'s connection's version, on that connection, and
/// waits for the answer `request.timeout.ms` plus `held` (how long the broker may hold it).
async fn call<R: Request + 'static>(
    pool: &Pool,
    broker: i32,
    api: ApiKey,
    held: Duration,
    build: impl FnOnce(i16) -> Result<R, VersionError>,
) -> Result<R::Response, RequestFailure>
where
    R::Response: 'static,
{
    let conn = pool
        .connection(BrokerTarget::Broker(broker))
        .await
        .map_err(RequestFailure::from)?;
    let v = conn.version(api).map_err(RequestFailure::from)?;
    let request = build(v)?;
    conn.send_with_timeout(&request, pool.config().request_timeout + held)
        .await
        .map_err(|e| RequestFailure::from(e).at_version(v))
}
