//! The fetch task: a [`FetchMachine`] run by kcon-pool's generic driver, which sends its
//! requests through a [`Pool`] and sleeps until its next timer; this module says how each
//! request is sent, and hands records out to the application through the [`Fetcher`] handle.

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
use crate::fetch_request;
use crate::handout::{Arrival, HandedOut, Handout, Release};
use crate::latency::{FetchLatency, LatencyHistogram};
use crate::machine::FetchMachine;
use crate::messages::{
    BrokerInfo, FetchAnswer, FetchEvent, FetchRequest, MetadataView, Outgoing, PartitionInfo,
    StartPosition,
};
use crate::position::LeaderAndEpoch;
use crate::session::RequestKind;
use crate::validation::{can_validate, offset_for_leader_epoch_request};
use kcon_core::TopicPartition;

/// A fetch loop run by a tokio task: a handle to assign, pause, seek and read records.
///
/// Records come in batches per partition ([`FetchEvent::Records`]); handing one out from
/// [`next`](Fetcher::next) releases its bytes from the prefetch budget, so the next Fetch for
/// that partition goes out while the application works on them. The bytes the application
/// holds are its own: the budget bounds what is fetched and not yet taken.
///
/// Records are decoded as they are handed out, and compressed batches decompressed then (the
/// task only checks them). A partition's records of one answer, when more than
/// `max.poll.records`, are handed out in parts of at most that many, in order, before anything
/// else of the channel (the Java consumer's `poll` drains its current `CompletedFetch` in slices
/// the same way). Its bytes leave the budget when the last part is handed out, not
/// proportionally: until then the partition still holds fetched records and is not fetched
/// again (the budget's rule), so the parts are never overtaken by newer records. A batch
/// decompressed for one part whose later records wait for the next is held decompressed
/// meanwhile: the budget counts those bytes too, from that part to the one that hands out the
/// batch's last records. The last part carries the rest of the answer's size.
///
/// A corrupt record found as a compressed batch is read here ends the answer's records: the
/// records before it are handed out, the task moves the partition back to it (the answer had
/// moved it to its end) and the application gets [`PartitionError::Corrupt`] at its offset
/// once, after those records.
///
/// [`PartitionError::Corrupt`]: crate::position::PartitionError::Corrupt
///
/// Dropping the handle stops the task without closing the fetch sessions (the brokers evict
/// them); [`close`](Fetcher::close) closes them.
#[derive(Debug)]
pub struct Fetcher {
    /// The fetch task.
    task: FetchHandle,
    /// What happens to the task's events before they are handed out: fences, pauses,
    /// `max.poll.records`.
    handout: Handout,
}

impl Fetcher {
    /// Starts the fetch loop's task on the current tokio runtime. It fetches nothing until
    /// [`assign`](Fetcher::assign).
    pub fn start(pool: Pool, config: FetchConfig) -> Result<Fetcher, ConfigError> {
        let handout = Handout::for_config(&config)?;
        Ok(Fetcher {
            task: FetchHandle::start(pool, config)?,
            handout,
        })
    }

    /// How long Fetch requests took so far, from sending to the answer (the broker's wait
    /// for data included).
    pub fn latency(&self) -> LatencyHistogram {
        self.task.latency()
    }

    /// The counter the task's requests add their latencies to (a metrics handle reads it).
    pub fn latency_counter(&self) -> Arc<FetchLatency> {
        self.task.latency_counter()
    }

    /// Starts fetching `partitions`, each from its start.
    pub fn assign(&self, partitions: impl IntoIterator<Item = (TopicPartition, StartPosition)>) {
        self.task.assign(partitions);
    }

    /// Stops fetching `partitions`; records of them not yet read are dropped.
    pub fn unassign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
        let fence = self.handout.unassign(&partitions);
        self.task.unassign(partitions, fence);
    }

    /// Stops fetching `tp` (it leaves its fetch session) and hands out none of its records
    /// until [`resume`](Fetcher::resume), not even those already fetched (the Java consumer's
    /// `pause`): they are kept, and their bytes stay in the prefetch budget.
    pub fn pause(&mut self, tp: TopicPartition) {
        self.handout.pause(tp.clone());
        self.task.pause(tp);
    }

    /// Fetches `tp` again; its records kept during the pause come first, in order.
    pub fn resume(&mut self, tp: TopicPartition) {
        self.handout.resume(&tp);
        self.task.resume(tp);
    }

    /// Moves `tp` to `offset` (validated first when `leader_epoch` is known, KIP-320); records
    /// fetched for the old position are dropped.
    pub fn seek(&mut self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>) {
        let fence = self.handout.seek(&tp);
        self.task.seek(tp, offset, leader_epoch, fence);
    }

    /// The next event; `None` once the task has stopped and every event was read. Records come
    /// at most `max.poll.records` at a time.
    pub async fn next(&mut self) -> Option<FetchEvent> {
        loop {
            if let Some(h) = self.handout.next_released() {
                return Some(self.hand_out(h));
            }
            let arrival = self.task.next().await?;
            if let Some(h) = self.handout.arrive(arrival) {
                return Some(self.hand_out(h));
            }
        }
    }

    /// Closes every fetch session (epoch -1) and waits for the brokers' answers, at most
    /// `timeout`. Returns the events not yet read.
    pub async fn close(self, timeout: Duration) -> Vec<FetchEvent> {
        self.task.close(timeout).await
    }

    /// A fetcher over the given channels and no task (a test plays the task).
    #[cfg(test)]
    fn handle(
        commands: mpsc::UnboundedSender<Command>,
        events: mpsc::UnboundedReceiver<Arrival>,
        max_poll_records: usize,
    ) -> Fetcher {
        Fetcher {
            task: FetchHandle {
                commands,
                events,
                task: None,
                latency: Arc::default(),
            },
            handout: Handout::new(max_poll_records),
        }
    }

    /// An event leaves the handle; what it releases or holds goes to the task's budget.
    fn hand_out(&mut self, h: HandedOut) -> FetchEvent {
        for release in h.releases {
            self.task.release(release);
        }
        h.event
    }
}

/// The fetch task's handle without a hand-out side: commands in, [`Arrival`]s out, in order.
/// A [`Fetcher`] is one with a [`Handout`]; an owner that keeps its own `Handout` (the
/// consumer's machine, which also holds records for pauses and hands them out one by one)
/// uses this directly, passing the fences its `Handout` gives and the [`Release`]s it makes.
#[derive(Debug)]
pub struct FetchHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Arrival>,
    task: Option<JoinHandle<()>>,
    /// Fetch latencies, counted by the task's request tasks.
    latency: Arc<FetchLatency>,
}

#[derive(Debug)]
enum Command {
    Assign(Vec<(TopicPartition, StartPosition)>),
    Unassign(Vec<TopicPartition>, u64),
    Pause(TopicPartition),
    Resume(TopicPartition),
    Seek(TopicPartition, i64, Option<i32>, u64),
    /// What records handed out release or hold.
    Release(Release),
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
    pub fn assign(&self, partitions: impl IntoIterator<Item = (TopicPartition, StartPosition)>) {
        self.command(Command::Assign(partitions.into_iter().collect()));
    }

    /// Stops fetching `partitions`; the task confirms with [`Arrival::Fenced`] and `fence`
    /// (from [`Handout::unassign`]) once it has.
    pub fn unassign(&self, partitions: Vec<TopicPartition>, fence: u64) {
        self.command(Command::Unassign(partitions, fence));
    }

    /// Stops fetching `tp` (it leaves its fetch session); records sent before stay on their
    /// way (a [`Handout`] holds them).
    pub fn pause(&self, tp: TopicPartition) {
        self.command(Command::Pause(tp));
    }

    /// Fetches `tp` again.
    pub fn resume(&self, tp: TopicPartition) {
        self.command(Command::Resume(tp));
    }

    /// Moves `tp` to `offset` (validated first when `leader_epoch` is known, KIP-320); the
    /// task confirms with [`Arrival::Fenced`] and `fence` (from [`Handout::seek`]).
    pub fn seek(&self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>, fence: u64) {
        self.command(Command::Seek(tp, offset, leader_epoch, fence));
    }

    /// What records handed out release from, or hold in, the prefetch budget.
    pub fn release(&self, release: Release) {
        self.command(Command::Release(release));
    }

    /// What the task sent next; `None` once it has stopped and everything was read.
    pub async fn next(&mut self) -> Option<Arrival> {
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
    /// it, so it is dropped.
    fn command(&self, command: Command) {
        let _ = self.commands.send(command);
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
    //! The handle's side of `max.poll.records`, with the task replaced by the test: events go
    //! into the channel by hand and the commands the handle sends are read back.

    use std::sync::Arc;

    use kcon_codec::compression::Compression;
    use kcon_codec::records::RecordBatchBuilder;

    use super::*;
    use crate::Record;
    use crate::records::FetchedRecords;

    fn records(partition: i32, offsets: std::ops::Range<i64>, next_offset: i64) -> FetchedRecords {
        let records = offsets
            .map(|offset| {
                Record::new("t", partition, offset, None, None).with_leader_epoch(Some(1))
            })
            .collect();
        let tp = TopicPartition::new("t", partition);
        FetchedRecords::new(tp, records, next_offset, next_offset, 700)
    }

    fn offsets(e: Option<FetchEvent>) -> (i32, Vec<i64>, i64, usize) {
        match e {
            Some(FetchEvent::Records(r)) => (
                r.partition.partition,
                r.records.iter().map(|r| r.offset).collect(),
                r.next_offset,
                r.size,
            ),
            other => panic!("not records: {other:?}"),
        }
    }

    fn consumed(commands: &mut mpsc::UnboundedReceiver<Command>) -> Vec<(i32, usize)> {
        let mut out = Vec::new();
        while let Ok(c) = commands.try_recv() {
            if let Command::Release(Release::Consumed(tp, bytes)) = c {
                out.push((tp.partition, bytes));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_batch_larger_than_max_poll_records_is_handed_out_in_parts_in_order() {
        let (command_tx, mut commands) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::unbounded_channel();
        let mut f = Fetcher::handle(command_tx, event_rx, 3);
        // Offsets 10..17, then a control batch: the position after is 18.
        let send = |r| events.send(Arrival::Event(FetchEvent::Records(r))).unwrap();
        send(records(0, 10..17, 18));
        send(records(1, 0..2, 2));

        assert_eq!(offsets(f.next().await), (0, vec![10, 11, 12], 13, 0));
        assert_eq!(consumed(&mut commands), []);
        assert_eq!(offsets(f.next().await), (0, vec![13, 14, 15], 16, 0));
        assert_eq!(consumed(&mut commands), []);
        // The last part carries the rest of the position and the whole batch's bytes.
        assert_eq!(offsets(f.next().await), (0, vec![16], 18, 700));
        assert_eq!(consumed(&mut commands), [(0, 700)]);
        assert_eq!(offsets(f.next().await), (1, vec![0, 1], 2, 700));
        assert_eq!(consumed(&mut commands), [(1, 700)]);
    }

    #[tokio::test]
    async fn the_rest_of_a_split_batch_waits_out_a_pause_and_a_seek_drops_it() {
        let (command_tx, mut commands) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::unbounded_channel();
        let mut f = Fetcher::handle(command_tx, event_rx, 2);
        let send = |r| events.send(Arrival::Event(FetchEvent::Records(r))).unwrap();
        send(records(0, 0..5, 5));
        send(records(1, 0..1, 1));
        assert_eq!(offsets(f.next().await), (0, vec![0, 1], 2, 0));
        f.pause(TopicPartition::new("t", 0));
        // Partition 0's rest is held; partition 1 comes.
        assert_eq!(offsets(f.next().await), (1, vec![0], 1, 700));
        f.resume(TopicPartition::new("t", 0));
        assert_eq!(offsets(f.next().await), (0, vec![2, 3], 4, 0));
        f.seek(TopicPartition::new("t", 0), 0, None);
        assert!(f.handout.is_idle());
        // Only partition 1's bytes were released: partition 0's go with the seek, in the task.
        assert_eq!(consumed(&mut commands), [(1, 700)]);
    }

    /// `n` records from `base` in one batch compressed with `codec`; `cut` cuts its payload
    /// short under a CRC that holds.
    fn compressed(base: i64, n: usize, codec: Compression, cut: bool) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base)
            .partition_leader_epoch(2)
            .compression(codec);
        for i in 0..n {
            b.record(0, None, Some(format!("v{}", base + i as i64).as_bytes()));
        }
        let mut b = b.build().unwrap().to_vec();
        if cut {
            b.truncate(b.len() - 5);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        b
    }

    fn checked(bytes: Vec<u8>, next_offset_expected: i64) -> FetchedRecords {
        let tp = TopicPartition::new("t", 0);
        let len = bytes.len();
        let d = crate::records::check_partition(
            &tp,
            &Arc::from("t"),
            bytes.into(),
            0,
            Some(1),
            None,
            -1,
        );
        assert_eq!(d.position, next_offset_expected);
        let mut r = FetchedRecords::new(tp, Vec::new(), d.position, d.position, len);
        r.undecoded = d.batches;
        r
    }

    #[tokio::test]
    async fn decompressed_bytes_between_parts_are_held_and_a_corrupt_record_ends_the_answer() {
        let (command_tx, mut commands) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::unbounded_channel();
        let mut f = Fetcher::handle(command_tx, event_rx, 3);
        let mut answer = compressed(0, 5, Compression::Lz4, false);
        answer.extend(compressed(5, 3, Compression::Zstd, true));
        answer.extend(compressed(8, 2, Compression::Lz4, false));
        let wire = answer.len();
        let r = checked(answer, 10);
        events.send(Arrival::Event(FetchEvent::Records(r))).unwrap();

        let mut sent = Vec::new();
        let mut take = |c: &mut mpsc::UnboundedReceiver<Command>| {
            while let Ok(c) = c.try_recv() {
                sent.push(c);
            }
            std::mem::take(&mut sent)
        };
        // The first batch is decompressed for offsets 0..3; 3 and 4 wait in it: held.
        assert_eq!(offsets(f.next().await).1, [0, 1, 2]);
        let held = match take(&mut commands).as_slice() {
            [Command::Release(Release::Held(tp, bytes))] if tp.partition == 0 && *bytes > 0 => {
                *bytes
            }
            other => panic!("{other:?}"),
        };
        // 3 and 4, then the second batch does not decompress: the last part, with one
        // command that releases everything and says where the records stop.
        let (_, offsets_out, next, size) = offsets(f.next().await);
        assert_eq!((offsets_out, next, size), (vec![3, 4], 5, wire + held));
        match take(&mut commands).as_slice() {
            [Command::Release(Release::Corrupt(tp, c, bytes))] => {
                assert_eq!(tp.partition, 0);
                assert_eq!((c.offset, c.leader_epoch, c.answer_end), (5, Some(2), 10));
                assert_eq!(*bytes, wire + held);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            f.handout.is_idle(),
            "nothing after the corrupt record waits"
        );
    }

    #[test]
    fn a_batch_within_max_poll_records_is_not_split() {
        let mut r = records(0, 0..3, 3);
        let whole = r.clone();
        assert_eq!(r.take(3), whole);
        assert!(r.is_empty());
    }
}
