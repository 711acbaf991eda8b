//! The producer's task: the async shell around [`SenderMachine`], which decides everything.
//! The handles talk to the task over a channel; it feeds the machine their records, flushes
//! and close, carries out the machine's requests (Produce, InitProducerId, a metadata refresh)
//! as tasks of their own over the pool and feeds their results back, answers whoever waits
//! when the machine says a record or a flush is done, and sleeps until the next command,
//! result, or the machine's next deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::{Machine, Outgoing, RequestFailure, RequestId};
use kcon_pool::{AutoCreate, BrokerTarget, Pool};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::{self, JoinSet};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use crate::config::ProducerConfig;
use crate::deliveries::Reply;
use crate::error::ProduceError;
use crate::hooks::{self, Hooks};
use crate::machine::{
    self, CallId, Event, FlushId, Request, Response, SenderMachine, TxnCall, TxnOp,
};
use crate::producer::Counters;
use crate::record::ProducerRecord;

/// What a handle asks of the task.
pub(crate) enum Command {
    /// Queue a record.
    Record(Incoming),
    /// Queue records, in their order.
    Records(Vec<Incoming>),
    /// Answer once every record queued before is done.
    Flush(oneshot::Sender<()>),
    /// Refuse new records, finish the queued ones, answer, stop.
    Close(oneshot::Sender<()>),
    /// A transaction call: answer with its outcome.
    Transaction(TxnCall, oneshot::Sender<Result<(), ProduceError>>),
    /// The outcome of a transaction call that reached its caller's channel after all, but
    /// that the caller gave up before reading: kept for the same call made again.
    Unread(TxnOp, Result<(), ProduceError>),
}

/// A record as a handle queued it.
pub(crate) struct Incoming {
    pub(crate) record: ProducerRecord,
    pub(crate) size: usize,
    pub(crate) reply: Reply,
    /// Its room in `buffer.memory`, given back when it is done (`None` when another record
    /// sent with it holds it).
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

impl Incoming {
    /// The record as the machine holds it, received at `now`, when the task took it: the
    /// caller's side reads no clock per record.
    fn into_machine(self, now: std::time::Instant) -> machine::Incoming<Waiter> {
        machine::Incoming {
            record: self.record,
            size: self.size,
            waiter: Waiter {
                reply: self.reply,
                permit: self.permit,
            },
            received: now,
        }
    }
}

/// The most records the task takes off its channel before deciding what to do with them: a
/// pass each would partition, batch and look for batches to send once per record.
const RECORDS_PER_PASS: usize = 1024;

/// Who waits for a record, as the machine holds it until the record is done.
pub(crate) struct Waiter {
    reply: Reply,
    /// The record's room in `buffer.memory`: given back when the record is done (or the
    /// waiter dropped).
    permit: Option<OwnedSemaphorePermit>,
}

/// What woke the task.
enum Input {
    Command(Option<Command>),
    Done(Result<(task::Id, (RequestId, Response)), task::JoinError>),
    Tick,
}

pub(crate) struct Sender {
    pool: Pool,
    /// Whether its Metadata requests ask for a missing topic to be created.
    auto_create: AutoCreate,
    machine: SenderMachine<Waiter>,
    /// The machine's requests being carried out.
    tasks: JoinSet<(RequestId, Response)>,
    /// The request each task carries out, and whether it is a Produce request, for a task
    /// that ends without a result.
    carried: HashMap<task::Id, (RequestId, bool)>,
    flushes: HashMap<FlushId, oneshot::Sender<()>>,
    /// Transaction calls under way.
    calls: HashMap<CallId, oneshot::Sender<Result<(), ProduceError>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    commands_open: bool,
    /// Told each record's outcome.
    hooks: Hooks,
}

/// Sends one of the machine's requests over the pool, shaped for the version the broker
/// speaks where that matters.
async fn carry(
    pool: &Pool,
    auto_create: AutoCreate,
    target: BrokerTarget,
    request: Request,
) -> Response {
    match request {
        Request::Produce(r, None) => Response::Produce(pool.send(target, &r).await),
        Request::Produce(r, Some(protocol)) => {
            let (lo, hi) = protocol.versions(ApiKey::Produce);
            Response::Produce(send_within(pool, target, &r, lo, hi).await)
        }
        Request::InitProducerId(r) => {
            Response::InitProducerId(init_producer_id(pool, target, r).await)
        }
        // Asking, by the producer's rule, that a missing topic produced to be created where
        // the brokers create topics on demand.
        Request::Metadata(scope) => {
            Response::Metadata(pool.refresh_metadata_with(scope, auto_create).await)
        }
        Request::FindCoordinator { key, key_type } => {
            Response::FindCoordinator(find_coordinator(pool, target, &key, key_type).await)
        }
        Request::AddPartitionsToTxn(r) => Response::AddPartitionsToTxn(pool.send(target, &r).await),
        Request::AddOffsetsToTxn(r) => Response::AddOffsetsToTxn(pool.send(target, &r).await),
        Request::TxnOffsetCommit(r, protocol) => {
            let (lo, hi) = protocol.versions(ApiKey::TxnOffsetCommit);
            let answer = async {
                let conn = pool.connection(target).await?;
                let v = conn.version_within(ApiKey::TxnOffsetCommit, lo, hi)?;
                conn.send_within(&machine::txn_offset_commit_at(r, v), lo, hi)
                    .await
            };
            Response::TxnOffsetCommit(answer.await)
        }
        Request::EndTxn(r, protocol) => {
            let (lo, hi) = protocol.versions(ApiKey::EndTxn);
            Response::EndTxn(send_within(pool, target, &r, lo, hi).await)
        }
    }
}

/// `request` at the highest version of `lo..=hi` the broker of `target` speaks.
async fn send_within<R: kcon_codec::kafka_protocol::protocol::Request>(
    pool: &Pool,
    target: BrokerTarget,
    request: &R,
    lo: i16,
    hi: i16,
) -> Result<R::Response, kcon_pool::Error>
where
    R::Response: 'static,
{
    pool.connection(target)
        .await?
        .send_within(request, lo, hi)
        .await
}

/// InitProducerId; one that bumps the epoch of a producer id it names needs v3 (KIP-360). The
/// answer comes with the cluster's finalized `transaction.version` as the answering broker
/// reported it in ApiVersions (0 when it reported none), which a transactional producer's
/// protocol follows.
async fn init_producer_id(
    pool: &Pool,
    target: BrokerTarget,
    r: InitProducerIdRequest,
) -> Result<(InitProducerIdResponse, i16), kcon_pool::Error> {
    let conn = pool.connection(target).await?;
    let v = conn.version(ApiKey::InitProducerId)?;
    if r.producer_id.0 >= 0 && v < 3 {
        return Err(kcon_pool::Error::Unsupported {
            peer: conn.peer().clone(),
            api_key: ApiKey::InitProducerId as i16,
            ours: (3, v),
            theirs: conn.versions().offered(ApiKey::InitProducerId),
        });
    }
    let transaction_version = conn
        .versions()
        .finalized("transaction.version")
        .unwrap_or(0);
    Ok((conn.send(&r).await?, transaction_version))
}

/// FindCoordinator of `key`; a transaction coordinator needs v1 (the key type).
async fn find_coordinator(
    pool: &Pool,
    target: BrokerTarget,
    key: &str,
    key_type: i8,
) -> Result<FoundCoordinator, kcon_pool::Error> {
    let conn = pool.connection(target).await?;
    conn.find_coordinator(key, key_type, None).await
}

/// Now, on tokio's clock (which tests may pause), as the machine takes it.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Sender {
    pub(crate) fn new(
        pool: Pool,
        auto_create: AutoCreate,
        config: Arc<ProducerConfig>,
        stats: Arc<Counters>,
        hooks: Hooks,
    ) -> Self {
        let machine = SenderMachine::new(
            config,
            pool.metadata(),
            stats,
            fastrand::u64(..),
            now(),
            pool.clock().now_ms(),
        );
        Sender {
            pool,
            auto_create,
            machine,
            tasks: JoinSet::new(),
            carried: HashMap::new(),
            flushes: HashMap::new(),
            calls: HashMap::new(),
            close_waiters: Vec::new(),
            commands_open: true,
            hooks,
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // One timer, moved when the machine's next deadline moves, rather than one made per
        // pass. Without a deadline ahead, the task still looks again within the hour.
        let idle = || Instant::now() + Duration::from_secs(3600);
        let timer = sleep_until(idle());
        tokio::pin!(timer);
        // Records that came together, given to the machine in one pass.
        let mut records = Vec::new();
        // The command taken off the channel behind them, handled next, in its turn.
        let mut held = None;
        loop {
            let input = match held.take() {
                Some(command) => Input::Command(Some(command)),
                None => {
                    self.carry_out();
                    if self.machine.is_finished() {
                        break;
                    }
                    let wake = self
                        .machine
                        .poll_timeout()
                        .map_or_else(idle, Instant::from_std);
                    if timer.deadline() != wake {
                        timer.as_mut().reset(wake);
                    }
                    tokio::select! {
                        c = commands.recv(), if self.commands_open => Input::Command(c),
                        Some(r) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                            Input::Done(r)
                        }
                        () = &mut timer => Input::Tick,
                    }
                }
            };
            let now = now();
            self.machine.wall_clock(self.pool.clock().now_ms());
            match input {
                // The records queued behind it, up to the first other command, go to the
                // machine with it.
                Input::Command(Some(Command::Record(i))) => {
                    records.push(i.into_machine(now));
                    held = self.take_records(&mut commands, &mut records, now);
                }
                Input::Command(Some(Command::Records(all))) => {
                    records.extend(all.into_iter().map(|i| i.into_machine(now)));
                    held = self.take_records(&mut commands, &mut records, now);
                }
                Input::Command(Some(Command::Flush(done))) => {
                    let id = self.machine.flush(now);
                    self.flushes.insert(id, done);
                }
                Input::Command(Some(Command::Transaction(call, reply))) => {
                    let id = self.machine.transaction(now, call);
                    self.calls.insert(id, reply);
                }
                Input::Command(Some(Command::Unread(op, result))) => {
                    self.machine.unread(op, result);
                }
                Input::Command(Some(Command::Close(done))) => {
                    self.close_waiters.push(done);
                    self.machine.close(now);
                }
                Input::Command(None) => {
                    // Every handle is gone: finish what was queued, as close does.
                    self.commands_open = false;
                    self.machine.close(now);
                }
                Input::Done(Ok((task, (id, response)))) => {
                    self.carried.remove(&task);
                    self.machine.handle_response(now, id, Ok(response));
                }
                Input::Done(Err(e)) => {
                    // Only a panic ends a task without a result: the machine hears of it,
                    // rather than wait for an answer forever.
                    if let Some((id, produce)) = self.carried.remove(&e.id()) {
                        if produce {
                            warn!(error = %e, "a Produce request task failed");
                        }
                        let failure = RequestFailure::retriable(e.to_string());
                        self.machine.handle_response(now, id, Err(failure));
                    }
                }
                Input::Tick => self.machine.handle_timeout(now),
            }
        }
        for (_, done) in self.flushes.drain() {
            // A flush that stopped waiting (its future dropped or timed out) reads nothing.
            let _ = done.send(());
        }
        for w in self.close_waiters.drain(..) {
            // A close that stopped waiting (its future dropped or timed out) reads nothing.
            let _ = w.send(());
        }
        // A metadata refresh or an InitProducerId still out finishes on its own.
        self.tasks.detach_all();
        debug!("producer task done");
    }

    /// Takes the records queued behind those in `records` off the channel (up to
    /// [`RECORDS_PER_PASS`], and up to the first other command), gives them all to the machine
    /// in one pass, and returns that other command, to be handled after them, in its turn.
    fn take_records(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        records: &mut Vec<machine::Incoming<Waiter>>,
        now: std::time::Instant,
    ) -> Option<Command> {
        let mut next = None;
        while records.len() < RECORDS_PER_PASS {
            match commands.try_recv() {
                Ok(Command::Record(i)) => records.push(i.into_machine(now)),
                Ok(Command::Records(all)) => {
                    records.extend(all.into_iter().map(|i| i.into_machine(now)));
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.machine.records(now, records.drain(..));
        next
    }

    /// Starts a task for each request of the machine, and answers whoever waits for what it
    /// says is done.
    fn carry_out(&mut self) {
        let now = now();
        while let Some(Outgoing {
            id,
            target,
            request,
            ..
        }) = self.machine.poll_request(now)
        {
            let pool = self.pool.clone();
            let auto_create = self.auto_create;
            let target = BrokerTarget::from(&target);
            let produce = matches!(request, Request::Produce(..));
            let handle = self
                .tasks
                .spawn(async move { (id, carry(&pool, auto_create, target, request).await) });
            self.carried.insert(handle.id(), (id, produce));
        }
        // The room in `buffer.memory` of every record answered in this pass, given back at
        // once at its end: one release of the semaphore (and one take of its lock) rather
        // than one per record.
        let mut freed: Option<OwnedSemaphorePermit> = None;
        while let Some(event) = self.machine.poll_event() {
            match event {
                Event::Answer { waiter, result } => {
                    if !self.hooks.is_empty() {
                        hooks::acknowledged(&self.hooks, result.as_ref());
                    }
                    waiter.reply.answer(result);
                    match (&mut freed, waiter.permit) {
                        (Some(all), Some(permit)) => all.merge(permit),
                        (None, permit) => freed = permit,
                        (Some(_), None) => {}
                    }
                }
                Event::Flushed(id) => {
                    if let Some(done) = self.flushes.remove(&id) {
                        // A flush that stopped waiting reads nothing.
                        let _ = done.send(());
                    }
                }
                Event::Transaction { calls, op, result } => {
                    // Every caller is answered; an outcome none of them read (each gave up
                    // first) goes back to the machine, which keeps it for the same call made
                    // again.
                    let (mut asked, mut read) = (false, false);
                    for call in calls {
                        if let Some(reply) = self.calls.remove(&call) {
                            asked = true;
                            read |= reply.send(result.clone()).is_ok();
                        }
                    }
                    if asked && !read {
                        self.machine.unread(op, result);
                    }
                }
            }
        }
        drop(freed);
    }
}
