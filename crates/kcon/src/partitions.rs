//! Per-partition streams: one stream of records per owned partition, for processing
//! partitions concurrently, with backpressure per partition.
//!
//! A task owns the [`Consumer`] and routes each batch to its partition's bounded channel.
//! When a partition's channel is full, the task pauses that partition (it leaves the fetch
//! session, and no more of it is fetched) and keeps the batch; when the partition's stream
//! takes a batch, the task hands over the kept one and resumes the partition. Other
//! partitions are not held back.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use kcon_offsets::{OffsetAndMetadata, Offsets};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::TopicPartition;
use crate::consumer::Consumer;
use crate::error::{Error, Outcome};
use crate::record::Record;

/// The channel to each partition's stream, and the flag that ends the stream. Shared by the
/// router and the consumer's leaving hook: a partition leaving (revoked, lost, unassigned)
/// has its flag set and its sender dropped at once, before the revocation's commit, so its
/// stream hands out nothing more and wakes up to end.
type Outlets = Arc<Mutex<HashMap<TopicPartition, Outlet>>>;

struct Outlet {
    sender: mpsc::Sender<Item>,
    gone: Arc<AtomicBool>,
}

/// What a partition's channel carries.
type Item = Result<Vec<Record>, Error>;

enum Wake {
    /// A stream took a batch from its channel: there may be room.
    Took(TopicPartition),
    /// Close the consumer and report how it went.
    Close(oneshot::Sender<Result<(), Error>>),
}

/// The streams of a consumer split by partition ([`Consumer::into_partition_streams`]): a
/// [`PartitionStream`] for each partition the consumer owns, when its first records come.
///
/// ```no_run
/// # async fn f(consumer: kcon::Consumer) -> Result<(), kcon::Error> {
/// let mut streams = consumer.into_partition_streams(4);
/// while let Some(mut partition) = streams.next().await {
///     tokio::spawn(async move {
///         while let Some(record) = partition.recv().await {
///             match record {
///                 Ok(record) => println!("{}@{}", partition.partition(), record.offset),
///                 Err(e) => eprintln!("{e}"),
///             }
///         }
///     });
/// #   break;
/// }
/// streams.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PartitionStreams {
    streams: mpsc::UnboundedReceiver<PartitionStream>,
    wake: mpsc::UnboundedSender<Wake>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

/// The records of one partition, in order, while the consumer owns it. It ends (`None`)
/// when the partition is revoked or lost, or the consumer closes; records fetched but not
/// yet taken are then dropped (their offsets were not stored, so the next owner reads them:
/// at-least-once).
///
/// With `enable.auto.offset.store`, a record's offset is stored when the stream is asked for
/// the next record; otherwise call [`store_offset`](PartitionStream::store_offset).
pub struct PartitionStream {
    partition: TopicPartition,
    batches: mpsc::Receiver<Item>,
    current: VecDeque<Record>,
    wake: mpsc::UnboundedSender<Wake>,
    /// Set when the partition left the consumer: buffered records are not handed out.
    gone: Arc<AtomicBool>,
    offsets: Option<Arc<Offsets>>,
    auto_store: bool,
    /// The last record handed out, not stored yet: its offset and leader epoch.
    handed: Option<(i64, Option<i32>)>,
}

impl Consumer {
    /// Splits the consumer into one stream per owned partition, each buffering at most
    /// `buffer` batches (at least 1) before its partition is paused. The consumer (its
    /// subscription or assignment, its rebalance listener, auto-commit) goes on in a task.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kcon::Error> {
    /// let mut consumer = kcon::Consumer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .group_id("billing")
    ///     .build()?;
    /// consumer.subscribe(["invoices"])?;
    /// let streams = consumer.into_partition_streams(2);
    /// # drop(streams);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_partition_streams(mut self, buffer: usize) -> PartitionStreams {
        let (stream_tx, streams) = mpsc::unbounded_channel();
        let (wake, wake_rx) = mpsc::unbounded_channel();
        let outlets: Outlets = Arc::default();
        let leaving = outlets.clone();
        self.set_leaving_hook(Box::new(move |partitions| {
            let mut outlets = leaving.lock().unwrap_or_else(|p| p.into_inner());
            for tp in partitions {
                if let Some(outlet) = outlets.remove(tp) {
                    outlet.gone.store(true, Ordering::Release);
                }
            }
        }));
        let router = Router {
            buffer: buffer.max(1),
            outlets,
            kept: HashMap::new(),
            streams: stream_tx,
            wake: wake.clone(),
            offsets: self.shared_offsets(),
            auto_store: self.stores_processed(),
        };
        let task = tokio::spawn(route(self, router, wake_rx));
        PartitionStreams {
            streams,
            wake,
            task: Some(task),
        }
    }
}

impl PartitionStreams {
    /// The stream of the next partition with records; `None` once the consumer
    /// has stopped (closed, or a fatal error: see [`close`](PartitionStreams::close)).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a stream is taken only in the poll that returns it; dropped while it waits, the
    /// next call hands out the same one.
    pub async fn next(&mut self) -> Option<PartitionStream> {
        self.streams.recv().await
    }

    /// Closes the consumer ([`Consumer::close`]): every stream ends, the stored offsets are
    /// committed (with auto-commit) and the member leaves the group. Returns the consumer's
    /// fatal error if it stopped on one.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future drops the streams, which stops their task and with it
    /// the consumer part-way through its close, as dropping a consumer does (the member leaves the
    /// group in the background; a final commit under way may be cut off).
    pub async fn close(mut self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        let _ = self.wake.send(Wake::Close(reply));
        if let Ok(result) = rx.await {
            return result;
        }
        // The task had stopped already: its result says why.
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|_| Err(Error::closed())),
            None => Err(Error::closed()),
        }
    }
}

impl Stream for PartitionStreams {
    type Item = PartitionStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PartitionStream>> {
        self.streams.poll_recv(cx)
    }
}

impl Drop for PartitionStreams {
    fn drop(&mut self) {
        // Stopping the task drops the consumer, which releases everything in the background
        // (as dropping a consumer does).
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl PartitionStream {
    /// The partition.
    pub fn partition(&self) -> &TopicPartition {
        &self.partition
    }

    /// The next record; `None` once the partition has left the consumer. An error is the
    /// partition's fetch error (corrupt data, offset out of range under `none`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a record is taken only in the poll that returns it; dropped while it waits, the
    /// next call hands out the same one.
    pub async fn recv(&mut self) -> Option<Result<Record, Error>> {
        std::future::poll_fn(|cx| self.poll_record(cx)).await
    }

    /// Marks `record` processed: a commit sends its offset + 1.
    pub fn store_offset(&self, record: &Record) {
        if let Some(o) = &self.offsets {
            o.store_offset(self.partition.clone(), record.offset, record.leader_epoch);
        }
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record, Error>>> {
        // The application asks for more: what it was handed is processed.
        if let Some((offset, epoch)) = self.handed.take()
            && self.auto_store
            && let Some(o) = &self.offsets
        {
            o.store(
                self.partition.clone(),
                OffsetAndMetadata {
                    offset: offset + 1,
                    leader_epoch: epoch,
                    metadata: String::new(),
                },
            );
        }
        loop {
            if self.gone.load(Ordering::Acquire) {
                self.current.clear();
                return Poll::Ready(None);
            }
            if let Some(record) = self.current.pop_front() {
                self.handed = Some((record.offset, record.leader_epoch));
                return Poll::Ready(Some(Ok(record)));
            }
            match self.batches.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(item)) => {
                    let _ = self.wake.send(Wake::Took(self.partition.clone()));
                    match item {
                        Ok(records) => self.current.extend(records),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
        }
    }
}

impl Stream for PartitionStream {
    type Item = Result<Record, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_record(cx)
    }
}

impl std::fmt::Debug for PartitionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStream")
            .field("partition", &self.partition)
            .field("buffered", &self.current.len())
            .finish_non_exhaustive()
    }
}

/// The task's side: a channel per partition, and the batch kept for a full one.
struct Router {
    buffer: usize,
    outlets: Outlets,
    /// Batches that found their stream full, oldest first (one, as the partition is paused
    /// at once; more only if records fetched before the pause come after).
    kept: HashMap<TopicPartition, VecDeque<Item>>,
    streams: mpsc::UnboundedSender<PartitionStream>,
    wake: mpsc::UnboundedSender<Wake>,
    offsets: Option<Arc<Offsets>>,
    auto_store: bool,
}

impl Router {
    /// Hands `item` to `tp`'s stream (made now if `tp` is new); pauses `tp` when its channel
    /// is full.
    fn route(&mut self, consumer: &mut Consumer, tp: TopicPartition, item: Item) {
        let sender = {
            let mut outlets = self.outlets.lock().unwrap_or_else(|p| p.into_inner());
            // Batches kept for partitions that left since are dropped with them.
            self.kept.retain(|tp, _| outlets.contains_key(tp));
            match outlets.get(&tp) {
                Some(o) => o.sender.clone(),
                None => {
                    let (sender, rx) = mpsc::channel(self.buffer);
                    let gone = Arc::new(AtomicBool::new(false));
                    let stream = PartitionStream {
                        partition: tp.clone(),
                        batches: rx,
                        current: VecDeque::new(),
                        wake: self.wake.clone(),
                        gone: gone.clone(),
                        offsets: self.offsets.clone(),
                        auto_store: self.auto_store,
                        handed: None,
                    };
                    let _ = self.streams.send(stream);
                    outlets.insert(
                        tp.clone(),
                        Outlet {
                            sender: sender.clone(),
                            gone,
                        },
                    );
                    sender
                }
            }
        };
        if let Some(queue) = self.kept.get_mut(&tp) {
            // Behind what is kept already: in order, after it.
            queue.push_back(item);
            return;
        }
        match sender.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                debug!(partition = %tp, "its stream is full: pausing it");
                self.kept.insert(tp.clone(), VecDeque::from([item]));
                let _ = consumer.pause([tp]);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The application dropped the stream: it wants no more of the partition.
                let _ = consumer.pause([tp]);
            }
        }
    }

    /// `tp`'s stream took a batch: hand over what is kept, and resume once all is.
    fn took(&mut self, consumer: &mut Consumer, tp: TopicPartition) {
        let Some(mut queue) = self.kept.remove(&tp) else {
            return;
        };
        let sender = {
            let outlets = self.outlets.lock().unwrap_or_else(|p| p.into_inner());
            match outlets.get(&tp) {
                Some(o) => o.sender.clone(),
                None => return,
            }
        };
        while let Some(item) = queue.pop_front() {
            match sender.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    queue.push_front(item);
                    self.kept.insert(tp, queue);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        let _ = consumer.resume([tp]);
    }

    /// Ends every stream: the consumer is closing.
    fn end_all(&self) {
        let mut outlets = self.outlets.lock().unwrap_or_else(|p| p.into_inner());
        for (_, outlet) in outlets.drain() {
            outlet.gone.store(true, Ordering::Release);
        }
    }
}

async fn route(
    mut consumer: Consumer,
    mut router: Router,
    mut wake: mpsc::UnboundedReceiver<Wake>,
) -> Result<(), Error> {
    loop {
        match consumer.recv_batch_or(&mut wake).await {
            Ok(Ok((tp, records))) => router.route(&mut consumer, tp, Ok(records)),
            Ok(Err(Wake::Took(tp))) => router.took(&mut consumer, tp),
            Ok(Err(Wake::Close(reply))) => {
                router.end_all();
                let _ = reply.send(consumer.close().await);
                return Ok(());
            }
            Err(e) if matches!(e.outcome(), Outcome::Close | Outcome::Closed) => {
                router.end_all();
                return Err(e);
            }
            Err(e) => match e.partitions().first() {
                // A partition's own error goes to its stream.
                Some(tp) if e.partitions().len() == 1 => {
                    let tp = tp.clone();
                    router.route(&mut consumer, tp, Err(e));
                }
                _ => {
                    for tp in e.partitions() {
                        router.route(&mut consumer, tp.clone(), Err(e.clone()));
                    }
                    if e.partitions().is_empty() {
                        tracing::warn!(error = %e, "the consumer behind the partition streams failed");
                    }
                }
            },
        }
    }
}
