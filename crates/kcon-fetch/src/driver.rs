//! The fetch task: a [`FetchMachine`] run by kcon-pool's generic driver, which sends its
//! requests through a [`Pool`] and sleeps until its next timer; this module says how each
//! request is sent. Its handle, [`FetchHandle`], takes the owner's commands and gives back what
//! the task sends; the owner hands records out to the application through a [`Handout`] of its
//! own (the consumer keeps one in its machine).
//!
//! [`Handout`]: crate::handout::Handout

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::ResetPolicy;
use kcon_core::list_offsets::{list_offsets_request, list_offsets_response};
use kcon_core::{ConfigError, RequestFailure};
use kcon_pool::driver::{Drive, drive};
use kcon_pool::{BrokerTarget, Connection, Metadata, Pool, Purpose, TopicScope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::debug;

use crate::config::FetchConfig;
use crate::handout::{Arrival, Release};
use crate::latency::{FetchLatency, LatencyHistogram};
use crate::machine::FetchMachine;
use crate::messages::{
    BrokerInfo, FetchAnswer, FetchEvent, FetchRequest, MetadataView, Outgoing, PartitionInfo,
    StartPosition,
};
use crate::position::LeaderAndEpoch;
use crate::session::RequestKind;
use crate::session::wire::fetch_request;
use crate::validation::{can_validate, offset_for_leader_epoch_request};
use kcon_core::TopicPartition;

/// A fetch loop run by a tokio task, and its handle: commands in, [`Arrival`]s out, in order.
///
/// The handle has no hand-out side: its owner keeps a [`Handout`] (the consumer's machine
/// keeps one, and also holds records for pauses and hands them out one by one), sorts the
/// arrivals through it, and passes on the fences it gives with each seek and unassignment and
/// the [`Release`]s its hand-outs make. Records leave the prefetch budget only when a
/// `Release` says they were handed out, so the next Fetch for a partition goes out while the
/// application works on its records; the bytes the application holds are its own: the budget
/// bounds what is fetched and not yet taken. How records are handed out (decoded as they
/// leave, at most `max.poll.records` at a time, a corrupt record ending an answer's records)
/// is the [`handout`](crate::handout) module's.
///
/// A release that cannot let a Fetch go waits in the handle to be told with the next command
/// or before the handle waits for the task ([`release`](FetchHandle::release)): each command
/// wakes the task, on a thread of its own, and a compressed batch cut by `max.poll.records`
/// holds and gives back its decompressed bytes once each, twice a batch.
///
/// Dropping the handle stops the task without closing the fetch sessions (the brokers evict
/// them); [`close`](FetchHandle::close) closes them.
///
/// [`Handout`]: crate::handout::Handout
#[derive(Debug)]
pub struct FetchHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Arrival>,
    task: Option<JoinHandle<()>>,
    /// Fetch latencies, counted by the task's request tasks.
    latency: Arc<FetchLatency>,
    /// Releases not told to the task yet ([`release`](FetchHandle::release)).
    untold: Untold,
}

/// The most decompressed bytes a handle holds back from the task's budget
/// ([`FetchHandle::release`]): a batch of 1,000 records of 100 bytes is a tenth of it, and one
/// larger is told at once.
const UNTOLD_HELD_MAX: usize = 1024 * 1024;

/// The most releases a handle keeps untold: an answer of many small compressed batches told
/// every few hundred rather than once, at its last part.
const UNTOLD_MAX: usize = 256;

#[derive(Debug)]
enum Command {
    Assign(Vec<(TopicPartition, StartPosition)>),
    Unassign(Vec<TopicPartition>, u64),
    Pause(TopicPartition),
    Resume(TopicPartition),
    Seek(TopicPartition, i64, Option<i32>, u64),
    /// What records handed out release or hold.
    Release(Release),
    /// Releases told together, in order.
    Releases(Vec<Release>),
    Close,
}

impl FetchHandle {
    /// Starts the fetch loop's task on the current tokio runtime. It fetches nothing until
    /// [`assign`](FetchHandle::assign).
    pub fn start(pool: Pool, config: FetchConfig) -> Result<FetchHandle, ConfigError> {
        if config.max_bytes <= 0 {
            return Err(ConfigError::invalid(
                "fetch.max.bytes",
                &config.max_bytes.to_string(),
                "a whole number, 1 to 2147483647",
            ));
        }
        let machine = FetchMachine::new(config, Instant::now().into_std(), fastrand::u64(..));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let latency = Arc::new(FetchLatency::default());
        let task = FetchTask {
            events: event_tx,
            config: machine.config().clone(),
            closed: false,
            latency: latency.clone(),
        };
        let task = tokio::spawn(drive(pool, machine, task, command_rx));
        Ok(FetchHandle {
            commands,
            events,
            task: Some(task),
            latency,
            untold: Untold::default(),
        })
    }

    /// How long Fetch requests took so far, from sending to the answer (the broker's wait
    /// for data included).
    pub fn latency(&self) -> LatencyHistogram {
        self.latency.snapshot()
    }

    /// The counter the task's requests add their latencies to (a metrics handle reads it).
    pub fn latency_counter(&self) -> Arc<FetchLatency> {
        self.latency.clone()
    }

    /// Starts fetching `partitions`, each from its start.
    pub fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = (TopicPartition, StartPosition)>,
    ) {
        self.command(Command::Assign(partitions.into_iter().collect()));
    }

    /// Stops fetching `partitions`; the task confirms with [`Arrival::Fenced`] and `fence`
    /// (from [`Handout::unassign`](crate::handout::Handout::unassign)) once it has.
    pub fn unassign(&mut self, partitions: Vec<TopicPartition>, fence: u64) {
        self.command(Command::Unassign(partitions, fence));
    }

    /// Stops fetching `tp` (it leaves its fetch session); records sent before stay on their
    /// way (a [`Handout`](crate::handout::Handout) holds them).
    pub fn pause(&mut self, tp: TopicPartition) {
        self.command(Command::Pause(tp));
    }

    /// Fetches `tp` again.
    pub fn resume(&mut self, tp: TopicPartition) {
        self.command(Command::Resume(tp));
    }

    /// Moves `tp` to `offset` (validated first when `leader_epoch` is known, KIP-320); the
    /// task confirms with [`Arrival::Fenced`] and `fence` (from
    /// [`Handout::seek`](crate::handout::Handout::seek)).
    pub fn seek(&mut self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>, fence: u64) {
        self.command(Command::Seek(tp, offset, leader_epoch, fence));
    }

    /// What records handed out release from, or hold in, the prefetch budget.
    ///
    /// Decompressed bytes held ([`Release::Held`]) and given back before the answer's last
    /// part ([`Release::Returned`]) let no Fetch go that the answer's last part would not: they
    /// wait here and go with the next command, or before the handle waits for the task
    /// ([`next`](Self::next)), so the application's receiving calls wake the task about once
    /// an answer rather than twice a batch. The budget meanwhile may count up to 1 MiB of held
    /// bytes too few, and a batch's bytes given back later than they could be; bytes held past
    /// that, or 256 releases, are told at once.
    pub fn release(&mut self, release: Release) {
        match self.untold.keep(release) {
            Kept::Waits => {}
            Kept::Full => self.tell_untold(),
            Kept::Not(release) => self.command(Command::Release(release)),
        }
    }

    /// What the task sent next; `None` once it has stopped and everything was read. The
    /// releases not told yet go to the task first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an arrival is taken only when this resolves.
    pub async fn next(&mut self) -> Option<Arrival> {
        self.tell_untold();
        self.events.recv().await
    }

    /// Closes every fetch session (epoch -1) and waits for the brokers' answers, at most
    /// `timeout`. Returns the events not yet read.
    pub async fn close(mut self, timeout: Duration) -> Vec<FetchEvent> {
        self.command(Command::Close);
        let mut events = Vec::new();
        let _ = time::timeout(timeout, async {
            while let Some(arrival) = self.events.recv().await {
                match arrival {
                    Arrival::Event(FetchEvent::Closed) => break,
                    Arrival::Event(FetchEvent::Records(r)) => {
                        events.push(FetchEvent::Records(r.decoded()))
                    }
                    Arrival::Event(e) => events.push(e),
                    Arrival::Fenced(..) => {}
                }
            }
        })
        .await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
        events
    }

    /// Hands `command` to the fetch task. The send fails only once the task has ended (closed,
    /// or stopped by a panic the handle's `next` shows as `None`): nothing is left to act on
    /// it, so it is dropped. The releases not told yet go first, in order.
    fn command(&mut self, command: Command) {
        self.tell_untold();
        let _ = self.commands.send(command);
    }

    /// Tells the task the releases kept back, together.
    fn tell_untold(&mut self) {
        if let Some(releases) = self.untold.take() {
            let _ = self.commands.send(Command::Releases(releases));
        }
    }
}

/// Releases a handle keeps back from its task, in order ([`FetchHandle::release`]).
#[derive(Debug, Default)]
struct Untold {
    releases: Vec<Release>,
    /// The decompressed bytes `releases` holds, less those they give back: what the task's
    /// budget does not count yet.
    held: usize,
}

/// What [`Untold::keep`] did with a release.
#[derive(Debug)]
enum Kept {
    /// Kept: it waits for the next command.
    Waits,
    /// Kept, and what is kept is to be told now: it holds more than [`UNTOLD_HELD_MAX`]
    /// bytes, or [`UNTOLD_MAX`] releases.
    Full,
    /// Not kept: a release that may let a Fetch go, to be told now (after what is kept).
    Not(Release),
}

impl Untold {
    fn keep(&mut self, release: Release) -> Kept {
        match &release {
            Release::Held(_, bytes) => self.held += bytes,
            Release::Returned(_, bytes) => self.held = self.held.saturating_sub(*bytes),
            Release::Consumed(..) | Release::Corrupt(..) => return Kept::Not(release),
        }
        self.releases.push(release);
        if self.held > UNTOLD_HELD_MAX || self.releases.len() >= UNTOLD_MAX {
            Kept::Full
        } else {
            Kept::Waits
        }
    }

    /// What is kept, to be told; `None` when nothing is.
    fn take(&mut self) -> Option<Vec<Release>> {
        self.held = 0;
        (!self.releases.is_empty()).then(|| std::mem::take(&mut self.releases))
    }
}

impl Drop for FetchHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The fetch task: the fetch machine driven by kcon-pool's driver, its events sent to the
/// handle.
struct FetchTask {
    events: mpsc::UnboundedSender<Arrival>,
    config: FetchConfig,
    /// The machine told `Closed`: the task is done.
    closed: bool,
    latency: Arc<FetchLatency>,
}

impl FetchTask {
    /// Sends `arrival` to the handle. The send fails only once the handle is dropped, which
    /// aborts this task: nobody is left to read it.
    fn tell(&self, arrival: Arrival) {
        let _ = self.events.send(arrival);
    }
}

impl Drive for FetchTask {
    type Machine = FetchMachine;
    type Command = Command;

    fn send(
        &self,
        pool: &Pool,
        out: Outgoing,
    ) -> impl Future<Output = Result<FetchAnswer, RequestFailure>> + Send + 'static {
        send(pool.clone(), self.config.clone(), self.latency.clone(), out)
    }

    fn command(
        &mut self,
        machine: &mut FetchMachine,
        pool: &Pool,
        now: std::time::Instant,
        command: Option<Command>,
    ) {
        match command {
            Some(Command::Assign(partitions)) => {
                let topics: BTreeSet<String> =
                    partitions.iter().map(|(tp, _)| tp.topic.clone()).collect();
                pool.track_topics(TopicScope::topics(
                    machine.topics().into_iter().chain(topics),
                ));
                machine.assign(now, partitions);
            }
            Some(Command::Unassign(partitions, fence)) => {
                machine.unassign(&partitions);
                self.tell(Arrival::Fenced(partitions, fence));
            }
            Some(Command::Pause(tp)) => machine.pause(&tp),
            Some(Command::Resume(tp)) => machine.resume(&tp),
            Some(Command::Seek(tp, offset, epoch, fence)) => {
                machine.seek(&tp, offset, epoch);
                self.tell(Arrival::Fenced(vec![tp], fence));
            }
            Some(Command::Release(release)) => release.apply(machine, now),
            Some(Command::Releases(releases)) => {
                for release in releases {
                    release.apply(machine, now);
                }
            }
            Some(Command::Close) | None => machine.close(now),
        }
    }

    fn event(&mut self, _machine: &mut FetchMachine, _now: std::time::Instant, event: FetchEvent) {
        if event == FetchEvent::Closed {
            self.closed = true;
        }
        self.tell(Arrival::Event(event));
    }

    fn settled(&mut self, _machine: &FetchMachine) -> bool {
        if self.closed {
            debug!("fetcher task ends");
        }
        self.closed
    }

    fn follows_metadata(&self) -> bool {
        true
    }

    fn metadata_changed(
        &mut self,
        machine: &mut FetchMachine,
        pool: &Pool,
        now: std::time::Instant,
        metadata: &Metadata,
    ) {
        let view = metadata_view(pool, metadata, &machine.topics());
        machine.metadata_updated(now, &view);
    }
}

/// The fetcher's view of `metadata`: the partitions of `topics`, and the brokers the pool
/// has connected to (their versions).
pub(crate) fn metadata_view(
    pool: &Pool,
    metadata: &Metadata,
    topics: &BTreeSet<String>,
) -> MetadataView {
    let mut view = MetadataView::default();
    for name in topics {
        let Some(t) = metadata.topic(name) else {
            continue;
        };
        for p in t.partitions.values() {
            view.partitions.insert(
                TopicPartition::new(name.as_str(), p.partition),
                PartitionInfo {
                    leader: LeaderAndEpoch {
                        leader: p.leader,
                        epoch: p.leader_epoch,
                    },
                    topic_id: t.id,
                },
            );
        }
    }
    for id in metadata.brokers.keys() {
        if let Some(info) = pool.broker_versions(*id).and_then(|v| broker_info(*id, &v)) {
            view.brokers.insert(*id, info);
        }
    }
    view
}

fn broker_info(id: i32, versions: &kcon_codec::versions::BrokerVersions) -> Option<BrokerInfo> {
    Some(BrokerInfo {
        id,
        fetch_version: versions.version(ApiKey::Fetch).ok()?,
        can_validate: can_validate(versions),
    })
}

fn refused(reason: String) -> RequestFailure {
    RequestFailure::fatal(reason)
}

async fn send(
    pool: Pool,
    config: FetchConfig,
    latency: Arc<FetchLatency>,
    out: Outgoing,
) -> Result<FetchAnswer, RequestFailure> {
    match out.request {
        FetchRequest::Fetch {
            broker,
            version,
            session,
            params,
            apart,
        } => {
            // On a connection of its own: the broker answers a connection's requests in order,
            // and nothing else of the pool (metadata, ListOffsets, a producer sharing it) may
            // wait behind a Fetch it holds.
            let mut conn = pool
                .connection(BrokerTarget::Dedicated(broker, Purpose::Fetch))
                .await
                .map_err(RequestFailure::from)?;
            // The machine says whether a Fetch of the broker is in flight: the connection's
            // count alone would miss one whose task has not written it yet, which then goes
            // first on the wire when both tasks run at once.
            if session.kind == RequestKind::Close && (apart || conn.in_flight() > 0) {
                // A broker answers a connection's requests in order, and holds a Fetch up to
                // fetch.max.wait.ms: a session close behind one would keep the consumer's close
                // waiting that long. It goes on a connection of its own, made for it and
                // dropped after (if that cannot be made, behind the Fetch after all).
                match Connection::connect(conn.peer().clone(), pool.config()).await {
                    Ok(apart) => conn = apart,
                    Err(e) => {
                        debug!(broker, error = %e, "no connection apart for the session close")
                    }
                }
            }
            let v = conn.version(ApiKey::Fetch).map_err(RequestFailure::from)?;
            if v != version {
                // A new connection to an upgraded or downgraded broker: the machine learns the
                // versions again and rebuilds a full request.
                return Err(refused(format!(
                    "the session's Fetch was built for v{version}, the connection speaks v{v}"
                )));
            }
            let request = fetch_request(&session, &params, version).map_err(|e| refused(e.0))?;
            // The broker holds a Fetch up to fetch.max.wait.ms before it answers.
            let timeout = pool.config().request_timeout + config.max_wait;
            let sent = Instant::now();
            let answer = conn
                .send_with_timeout(&request, timeout)
                .await
                .map_err(|e| RequestFailure::from(e).at_version(version))?;
            latency.record(sent.elapsed());
            Ok(FetchAnswer::Fetch(Box::new(answer)))
        }
        FetchRequest::Connect { broker } => {
            let conn = pool
                .connection(BrokerTarget::Dedicated(broker, Purpose::Fetch))
                .await
                .map_err(RequestFailure::from)?;
            broker_info(broker, conn.versions())
                .map(FetchAnswer::Broker)
                .ok_or_else(|| {
                    refused(format!(
                        "broker {broker} offers no Fetch version kcon speaks"
                    ))
                })
        }
        FetchRequest::ListOffsets {
            broker,
            partitions,
            policy,
        } => {
            let now_ms = pool.clock().now_ms();
            let Some(spec) = policy.offset_spec(now_ms) else {
                return Err(refused(format!(
                    "no reset under auto.offset.reset={}",
                    ResetPolicy::None
                )));
            };
            let queries = partitions
                .into_iter()
                .map(|(tp, epoch)| (tp, (spec, epoch)))
                .collect();
            let conn = pool
                .connection(BrokerTarget::Broker(broker))
                .await
                .map_err(RequestFailure::from)?;
            let v = conn
                .version(ApiKey::ListOffsets)
                .map_err(RequestFailure::from)?;
            let request = list_offsets_request(&queries, config.isolation_level, v)?;
            let answer = conn.send(&request).await.map_err(RequestFailure::from)?;
            Ok(FetchAnswer::ListOffsets(list_offsets_response(answer)))
        }
        FetchRequest::Validate(request) => {
            let conn = pool
                .connection(BrokerTarget::Broker(request.broker))
                .await
                .map_err(RequestFailure::from)?;
            let v = conn
                .version(ApiKey::OffsetForLeaderEpoch)
                .map_err(RequestFailure::from)?;
            let r = offset_for_leader_epoch_request(&request, v).map_err(|e| refused(e.0))?;
            let answer = conn.send(&r).await.map_err(RequestFailure::from)?;
            Ok(FetchAnswer::Validation(Box::new(answer)))
        }
        FetchRequest::Metadata { topics } => {
            let metadata = pool
                .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
                .await
                .map_err(RequestFailure::from)?;
            let topics: BTreeSet<String> = topics.into_iter().collect();
            Ok(FetchAnswer::Metadata(metadata_view(
                &pool, &metadata, &topics,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::CorruptRecords;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    #[test]
    fn held_and_returned_bytes_wait_and_what_may_let_a_fetch_go_does_not() {
        let mut untold = Untold::default();
        assert!(untold.take().is_none(), "nothing kept, nothing told");
        assert!(matches!(
            untold.keep(Release::Held(tp(0), 100)),
            Kept::Waits
        ));
        assert!(matches!(
            untold.keep(Release::Returned(tp(0), 100)),
            Kept::Waits
        ));
        assert!(matches!(untold.keep(Release::Held(tp(0), 50)), Kept::Waits));
        // A partition's last part may let its next Fetch go: told now, after what waits.
        let last = Release::Consumed(tp(0), 700);
        assert!(matches!(untold.keep(last.clone()), Kept::Not(r) if r == last));
        let corrupt = Release::Corrupt(
            tp(1),
            CorruptRecords {
                offset: 3,
                leader_epoch: None,
                answer_end: 9,
            },
            70,
        );
        assert!(matches!(untold.keep(corrupt.clone()), Kept::Not(r) if r == corrupt));
        assert_eq!(
            untold.take(),
            Some(vec![
                Release::Held(tp(0), 100),
                Release::Returned(tp(0), 100),
                Release::Held(tp(0), 50),
            ]),
            "in the order they were made"
        );
        assert!(untold.take().is_none());
    }

    #[test]
    fn held_bytes_past_the_bound_or_too_many_releases_are_told_at_once() {
        let mut untold = Untold::default();
        assert!(matches!(
            untold.keep(Release::Held(tp(0), UNTOLD_HELD_MAX)),
            Kept::Waits
        ));
        // What is given back does not count: the budget counts too much meanwhile, not too
        // little.
        assert!(matches!(
            untold.keep(Release::Returned(tp(0), UNTOLD_HELD_MAX)),
            Kept::Waits
        ));
        assert!(matches!(
            untold.keep(Release::Held(tp(0), UNTOLD_HELD_MAX)),
            Kept::Waits
        ));
        assert!(matches!(untold.keep(Release::Held(tp(1), 1)), Kept::Full));
        assert_eq!(untold.take().map(|r| r.len()), Some(4));

        // Told, the count starts again.
        assert!(matches!(untold.keep(Release::Held(tp(0), 1)), Kept::Waits));
        let mut kept = 1;
        while let Kept::Waits = untold.keep(Release::Returned(tp(0), 1)) {
            kept += 1;
        }
        assert_eq!(kept + 1, UNTOLD_MAX);
        assert_eq!(untold.take().map(|r| r.len()), Some(UNTOLD_MAX));
    }
}
