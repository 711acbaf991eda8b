//! The tokio driver: one task that owns a [`FetchMachine`], sends its requests through a
//! [`Pool`], sleeps until its next timer, and hands its events to the application.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_group::{InFlight, sleep_until};
use kcon_offsets::ResetPolicy;
use kcon_offsets::admin::{self, ListedOffset};
use kcon_pool::{BrokerTarget, ConfigError, Metadata, Pool, TopicScope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant, MissedTickBehavior};
use tracing::debug;

use crate::config::FetchConfig;
use crate::machine::FetchMachine;
use crate::messages::{
    BrokerInfo, FetchAnswer, FetchEvent, FetchRequest, MetadataView, Outgoing, PartitionInfo,
    RequestFailure, RequestId, StartPosition,
};
use crate::position::LeaderAndEpoch;
use crate::records::{CorruptRecords, FetchedRecords};
use crate::validation::{can_validate, offset_for_leader_epoch_request};
use crate::{TopicPartition, fetch_request};

/// How often the driver looks for a new metadata snapshot in the pool (leader changes that
/// another user of the pool noticed).
const METADATA_CHECK: Duration = Duration::from_secs(1);

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
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Item>,
    /// Partitions sought or unassigned: records fetched before the command are dropped here
    /// until the task confirms it applied it (records still in the channel are stale).
    fences: HashMap<TopicPartition, u64>,
    next_fence: u64,
    /// Partitions the application paused. The task learns of a pause through the command
    /// channel, so records it sent before are still in the event channel: they are held here,
    /// in order, until the resume (the task holds back what it fetches after).
    paused: HashSet<TopicPartition>,
    /// Records of paused partitions that reached the handle, oldest first.
    held: VecDeque<FetchedRecords>,
    /// Records of resumed partitions, and the rest of a batch split by `max.poll.records`
    /// (at the front), handed out before anything newer from the channel.
    released: VecDeque<FetchedRecords>,
    /// `max.poll.records`, at least 1.
    max_poll_records: usize,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Command {
    Assign(Vec<(TopicPartition, StartPosition)>),
    Unassign(Vec<TopicPartition>, u64),
    Pause(TopicPartition),
    Resume(TopicPartition),
    Seek(TopicPartition, i64, Option<i32>, u64),
    Consumed(TopicPartition, usize),
    /// Decompressed bytes now held for records still to come.
    Held(TopicPartition, usize),
    /// The part handed out ends at a corrupt record; its bytes leave the budget.
    Corrupt(TopicPartition, CorruptRecords, usize),
    Close,
}

#[derive(Debug)]
enum Item {
    Event(FetchEvent),
    /// The command with this fence was applied: later records of the partition are current.
    Fenced(Vec<TopicPartition>, u64),
}

impl Fetcher {
    /// Starts the fetch loop's task on the current tokio runtime. It fetches nothing until
    /// [`assign`](Fetcher::assign).
    pub fn start(pool: Pool, config: FetchConfig) -> Result<Fetcher, ConfigError> {
        if config.max_bytes <= 0 {
            return Err(ConfigError::invalid(
                "fetch.max.bytes",
                &config.max_bytes.to_string(),
                "a whole number, 1 to 2147483647",
            ));
        }
        // The field can be set directly, past `FetchConfig::set`'s check.
        let max_poll_records = usize::try_from(config.max_poll_records)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "max.poll.records",
                    &config.max_poll_records.to_string(),
                    "a whole number, 1 to 2147483647",
                )
            })?;
        let machine = FetchMachine::new(config, Instant::now().into_std());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(pool, machine, command_rx, event_tx));
        Ok(Fetcher::handle(
            commands,
            events,
            max_poll_records,
            Some(task),
        ))
    }

    /// The handle's side of the channels to the task.
    fn handle(
        commands: mpsc::UnboundedSender<Command>,
        events: mpsc::UnboundedReceiver<Item>,
        max_poll_records: usize,
        task: Option<JoinHandle<()>>,
    ) -> Fetcher {
        Fetcher {
            commands,
            events,
            fences: HashMap::new(),
            next_fence: 0,
            paused: HashSet::new(),
            held: VecDeque::new(),
            released: VecDeque::new(),
            max_poll_records,
            task,
        }
    }

    /// Starts fetching `partitions`, each from its start.
    pub fn assign(&self, partitions: impl IntoIterator<Item = (TopicPartition, StartPosition)>) {
        let _ = self
            .commands
            .send(Command::Assign(partitions.into_iter().collect()));
    }

    /// Stops fetching `partitions`; records of them not yet read are dropped.
    pub fn unassign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
        for tp in &partitions {
            self.paused.remove(tp);
        }
        let fence = self.fence(&partitions);
        let _ = self.commands.send(Command::Unassign(partitions, fence));
    }

    /// Stops fetching `tp` (it leaves its fetch session) and hands out none of its records
    /// until [`resume`](Fetcher::resume), not even those already fetched (the Java consumer's
    /// `pause`): they are kept, and their bytes stay in the prefetch budget.
    pub fn pause(&mut self, tp: TopicPartition) {
        self.paused.insert(tp.clone());
        let _ = self.commands.send(Command::Pause(tp));
    }

    /// Fetches `tp` again; its records kept during the pause come first, in order.
    pub fn resume(&mut self, tp: TopicPartition) {
        if !self.paused.remove(&tp) {
            let _ = self.commands.send(Command::Resume(tp));
            return;
        }
        // The held records are older than anything of `tp` still in the channel: the task
        // sent nothing of it after it applied the pause, and nothing before the resume.
        let (resumed, still): (VecDeque<_>, VecDeque<_>) =
            self.held.drain(..).partition(|r| r.partition == tp);
        self.held = still;
        self.released.extend(resumed);
        let _ = self.commands.send(Command::Resume(tp));
    }

    /// Moves `tp` to `offset` (validated first when `leader_epoch` is known, KIP-320); records
    /// fetched for the old position are dropped.
    pub fn seek(&mut self, tp: TopicPartition, offset: i64, leader_epoch: Option<i32>) {
        let fence = self.fence(std::slice::from_ref(&tp));
        let _ = self
            .commands
            .send(Command::Seek(tp, offset, leader_epoch, fence));
    }

    /// The next event; `None` once the task has stopped and every event was read. Records come
    /// at most `max.poll.records` at a time.
    pub async fn next(&mut self) -> Option<FetchEvent> {
        loop {
            if let Some(r) = self.released.pop_front() {
                // The rest of a split batch whose partition was paused since: held like the
                // records the channel brings for it.
                if self.paused.contains(&r.partition) {
                    self.held.push_back(r);
                    continue;
                }
                return Some(self.hand_out(r));
            }
            match self.events.recv().await? {
                Item::Fenced(partitions, fence) => {
                    for tp in partitions {
                        if self.fences.get(&tp) == Some(&fence) {
                            self.fences.remove(&tp);
                        }
                    }
                }
                // Fetched before a seek or unassignment: the task already dropped its bytes
                // from the budget.
                Item::Event(FetchEvent::Records(r)) if self.fences.contains_key(&r.partition) => {}
                Item::Event(FetchEvent::Records(r)) if self.paused.contains(&r.partition) => {
                    self.held.push_back(r);
                }
                Item::Event(FetchEvent::Records(r)) => return Some(self.hand_out(r)),
                Item::Event(e) => return Some(e),
            }
        }
    }

    /// Closes every fetch session (epoch -1) and waits for the brokers' answers, at most
    /// `timeout`. Returns the events not yet read.
    pub async fn close(mut self, timeout: Duration) -> Vec<FetchEvent> {
        let _ = self.commands.send(Command::Close);
        let mut events = Vec::new();
        let _ = time::timeout(timeout, async {
            while let Some(item) = self.events.recv().await {
                match item {
                    Item::Event(FetchEvent::Closed) => break,
                    Item::Event(FetchEvent::Records(r)) => {
                        events.push(FetchEvent::Records(r.decoded()))
                    }
                    Item::Event(e) => events.push(e),
                    Item::Fenced(..) => {}
                }
            }
        })
        .await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
        events
    }

    /// Records leave the handle: at most `max.poll.records` of them, decoded now; the rest
    /// first in line for the next call. The bytes leave the prefetch budget with the last part
    /// (and decompressed bytes held between parts with the part that ends their batch).
    fn hand_out(&mut self, mut r: FetchedRecords) -> FetchEvent {
        let part = r.take(self.max_poll_records);
        if !r.is_empty() {
            self.released.push_front(r);
        }
        let tp = &part.partition;
        if part.held_more() > 0 {
            let _ = self
                .commands
                .send(Command::Held(tp.clone(), part.held_more()));
        }
        if let Some(corrupt) = part.corrupt() {
            // One command: between a release and a rewind the task could fetch the partition
            // from the answer's end.
            let _ = self
                .commands
                .send(Command::Corrupt(tp.clone(), *corrupt, part.size));
        } else if part.size > 0 {
            // Parts that release nothing send nothing (the budget has no entry for nothing
            // buffered, so a 0 would be a no-op).
            let _ = self.commands.send(Command::Consumed(tp.clone(), part.size));
        }
        FetchEvent::Records(part)
    }

    /// Records of `partitions` fetched for their old position are stale from now: those in the
    /// channel are dropped until the task confirms, those held or released at once (the task
    /// drops their bytes from the budget when it applies the command).
    fn fence(&mut self, partitions: &[TopicPartition]) -> u64 {
        self.next_fence += 1;
        for tp in partitions {
            self.fences.insert(tp.clone(), self.next_fence);
        }
        self.held.retain(|r| !partitions.contains(&r.partition));
        self.released.retain(|r| !partitions.contains(&r.partition));
        self.next_fence
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    pool: Pool,
    mut machine: FetchMachine,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Item>,
) {
    let mut in_flight: InFlight<RequestId, FetchAnswer> = InFlight::new();
    let mut metadata_seen = 0u64;
    let mut metadata_tick = time::interval(METADATA_CHECK);
    metadata_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let config = machine.config().clone();
    loop {
        let now = Instant::now().into_std();
        while let Some(out) = machine.poll_request(now) {
            in_flight.spawn(out.id, send(pool.clone(), config.clone(), out));
        }
        while let Some(event) = machine.poll_event() {
            let closed = event == FetchEvent::Closed;
            let _ = events.send(Item::Event(event));
            if closed {
                debug!("fetcher task ends");
                return;
            }
        }
        let deadline = machine.poll_timeout().map(Instant::from_std);
        tokio::select! {
            (id, result) = in_flight.next() => {
                machine.handle_response(Instant::now().into_std(), id, result);
            }
            command = commands.recv() => {
                let now = Instant::now().into_std();
                match command {
                    Some(Command::Assign(partitions)) => {
                        let topics: BTreeSet<String> = partitions.iter().map(|(tp, _)| tp.topic.clone()).collect();
                        pool.track_topics(TopicScope::topics(machine.topics().into_iter().chain(topics)));
                        machine.assign(now, partitions);
                    }
                    Some(Command::Unassign(partitions, fence)) => {
                        machine.unassign(&partitions);
                        let _ = events.send(Item::Fenced(partitions, fence));
                    }
                    Some(Command::Pause(tp)) => machine.pause(&tp),
                    Some(Command::Resume(tp)) => machine.resume(&tp),
                    Some(Command::Seek(tp, offset, epoch, fence)) => {
                        machine.seek(&tp, offset, epoch);
                        let _ = events.send(Item::Fenced(vec![tp], fence));
                    }
                    Some(Command::Consumed(tp, bytes)) => machine.records_consumed(&tp, bytes),
                    Some(Command::Held(tp, bytes)) => machine.records_held(&tp, bytes),
                    Some(Command::Corrupt(tp, corrupt, bytes)) => {
                        machine.records_corrupt(now, &tp, &corrupt, bytes);
                    }
                    Some(Command::Close) | None => machine.close(now),
                }
            }
            _ = sleep_until(deadline) => {
                machine.handle_timeout(Instant::now().into_std());
            }
            _ = metadata_tick.tick() => {
                let metadata = pool.metadata();
                if metadata.generation != metadata_seen {
                    metadata_seen = metadata.generation;
                    let view = metadata_view(&pool, &metadata, &machine.topics());
                    machine.metadata_updated(Instant::now().into_std(), &view);
                }
            }
        }
    }
}

/// The fetcher's view of `metadata`: the partitions of `topics`, and the brokers the pool
/// has connected to (their versions).
fn metadata_view(pool: &Pool, metadata: &Metadata, topics: &BTreeSet<String>) -> MetadataView {
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
    RequestFailure {
        retriable: false,
        reason,
    }
}

async fn send(
    pool: Pool,
    config: FetchConfig,
    out: Outgoing,
) -> Result<FetchAnswer, RequestFailure> {
    match out.request {
        FetchRequest::Fetch {
            broker,
            version,
            session,
            params,
        } => {
            let conn = pool
                .connection(BrokerTarget::Broker(broker))
                .await
                .map_err(RequestFailure::from_pool)?;
            let v = conn
                .version(ApiKey::Fetch)
                .map_err(RequestFailure::from_pool)?;
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
            let answer = conn
                .send_with_timeout(&request, timeout)
                .await
                .map_err(RequestFailure::from_pool)?;
            Ok(FetchAnswer::Fetch(Box::new(answer)))
        }
        FetchRequest::Connect { broker } => {
            let conn = pool
                .connection(BrokerTarget::Broker(broker))
                .await
                .map_err(RequestFailure::from_pool)?;
            broker_info(broker, conn.versions())
                .map(FetchAnswer::Broker)
                .ok_or_else(|| {
                    refused(format!(
                        "broker {broker} offers no Fetch version kcon speaks"
                    ))
                })
        }
        FetchRequest::ListOffsets { partitions, policy } => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let Some(spec) = policy.offset_spec(now_ms) else {
                return Err(refused(format!(
                    "no reset under auto.offset.reset={}",
                    ResetPolicy::None
                )));
            };
            let isolation = config.isolation_level;
            let specs = partitions.into_iter().map(|tp| (tp, spec)).collect();
            let answer: std::collections::BTreeMap<TopicPartition, ListedOffset> =
                admin::list_offsets(&pool, &specs, isolation)
                    .await
                    .map_err(|e| RequestFailure {
                        retriable: true,
                        reason: e.to_string(),
                    })?;
            Ok(FetchAnswer::ListOffsets(answer))
        }
        FetchRequest::Validate(request) => {
            let conn = pool
                .connection(BrokerTarget::Broker(request.broker))
                .await
                .map_err(RequestFailure::from_pool)?;
            let v = conn
                .version(ApiKey::OffsetForLeaderEpoch)
                .map_err(RequestFailure::from_pool)?;
            let r = offset_for_leader_epoch_request(&request, v).map_err(|e| refused(e.0))?;
            let answer = conn.send(&r).await.map_err(RequestFailure::from_pool)?;
            Ok(FetchAnswer::Validation(Box::new(answer)))
        }
        FetchRequest::Metadata { topics } => {
            let metadata = pool
                .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
                .await
                .map_err(RequestFailure::from_pool)?;
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
    use kcon_codec::records::{RecordBatchBuilder, TimestampType};

    use super::*;
    use crate::records::ConsumerRecord;

    fn records(partition: i32, offsets: std::ops::Range<i64>, next_offset: i64) -> FetchedRecords {
        let records = offsets
            .map(|offset| ConsumerRecord {
                topic: Arc::from("t"),
                partition,
                offset,
                leader_epoch: Some(1),
                timestamp: 0,
                timestamp_type: TimestampType::CreateTime,
                key: None,
                value: None,
                headers: Vec::new(),
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
            if let Command::Consumed(tp, bytes) = c {
                out.push((tp.partition, bytes));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_batch_larger_than_max_poll_records_is_handed_out_in_parts_in_order() {
        let (command_tx, mut commands) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::unbounded_channel();
        let mut f = Fetcher::handle(command_tx, event_rx, 3, None);
        // Offsets 10..17, then a control batch: the position after is 18.
        let send = |r| events.send(Item::Event(FetchEvent::Records(r))).unwrap();
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
        let mut f = Fetcher::handle(command_tx, event_rx, 2, None);
        let send = |r| events.send(Item::Event(FetchEvent::Records(r))).unwrap();
        send(records(0, 0..5, 5));
        send(records(1, 0..1, 1));
        assert_eq!(offsets(f.next().await), (0, vec![0, 1], 2, 0));
        f.pause(TopicPartition::new("t", 0));
        // Partition 0's rest is held; partition 1 comes.
        assert_eq!(offsets(f.next().await), (1, vec![0], 1, 700));
        f.resume(TopicPartition::new("t", 0));
        assert_eq!(offsets(f.next().await), (0, vec![2, 3], 4, 0));
        f.seek(TopicPartition::new("t", 0), 0, None);
        assert!(f.released.is_empty() && f.held.is_empty());
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
        let mut f = Fetcher::handle(command_tx, event_rx, 3, None);
        let mut answer = compressed(0, 5, Compression::Lz4, false);
        answer.extend(compressed(5, 3, Compression::Zstd, true));
        answer.extend(compressed(8, 2, Compression::Lz4, false));
        let wire = answer.len();
        let r = checked(answer, 10);
        events.send(Item::Event(FetchEvent::Records(r))).unwrap();

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
            [Command::Held(tp, bytes)] if tp.partition == 0 && *bytes > 0 => *bytes,
            other => panic!("{other:?}"),
        };
        // 3 and 4, then the second batch does not decompress: the last part, with one
        // command that releases everything and says where the records stop.
        let (_, offsets_out, next, size) = offsets(f.next().await);
        assert_eq!((offsets_out, next, size), (vec![3, 4], 5, wire + held));
        match take(&mut commands).as_slice() {
            [Command::Corrupt(tp, c, bytes)] => {
                assert_eq!(tp.partition, 0);
                assert_eq!((c.offset, c.leader_epoch, c.answer_end), (5, Some(2), 10));
                assert_eq!(*bytes, wire + held);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            f.released.is_empty(),
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
