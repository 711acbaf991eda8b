//! The one driver of kcon's sans-IO machines on tokio: [`drive`] runs any [`Machine`] as a task
//! of its own, sending its requests through the [`Pool`], sleeping until its next timer, and
//! handing its events and commands to the machine's [`Drive`] glue.
//!
//! ```text
//!            commands (mpsc)                   requests, each on a task of its own
//! handle ───────────────────► drive(machine) ──────────────────────────────► Pool ─► broker
//!        ◄───────────────────   │   ▲  ▲  ◄──────────── (id, answer or failure), exactly once
//!   events / replies (glue)     │   │  └── poll_timeout: sleep, then handle_timeout
//!                               │   └───── pool metadata changed (checked every second)
//!                               └── after every input: drain poll_request and poll_event
//! ```
//! The machine is touched by its task only: no locks.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use kcon_core::{Machine, Outgoing, RequestFailure, RequestId, Target};
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio::time::{self, Instant, MissedTickBehavior};

use crate::{Metadata, Pool};

/// How often the driver looks for a new metadata snapshot in the pool, for machines that
/// follow the cluster (a leader moved, a topic gained partitions).
const METADATA_CHECK: Duration = Duration::from_secs(1);

/// A machine's request type.
pub type RequestOf<D> = <<D as Drive>::Machine as Machine>::Request;
/// A machine's answer type.
pub type ResponseOf<D> = <<D as Drive>::Machine as Machine>::Response;
/// A machine's event type.
pub type EventOf<D> = <<D as Drive>::Machine as Machine>::Event;

/// What one machine's task does besides feeding the machine: how each request goes through the
/// pool, what a command from its handle does, where its events go, and when the task ends.
pub trait Drive: Send + 'static {
    /// The machine driven: one whose requests go to brokers.
    type Machine: Machine<Target = Target, Response: Send + 'static> + Send + 'static;
    /// What the machine's handle sends its task.
    type Command: Send + 'static;

    /// Sends `out` through `pool` and waits for the answer (on a task of its own, so several go
    /// at once). A failure says whether trying again can help.
    fn send(
        &self,
        pool: &Pool,
        out: Outgoing<RequestOf<Self>>,
    ) -> impl Future<Output = Result<ResponseOf<Self>, RequestFailure>> + Send + 'static;

    /// Applies a command from the handle; `None` once every handle is gone (no more come).
    fn command(
        &mut self,
        machine: &mut Self::Machine,
        pool: &Pool,
        now: std::time::Instant,
        command: Option<Self::Command>,
    );

    /// Hands an event on; the machine is there to be answered at once where the task must.
    fn event(&mut self, machine: &mut Self::Machine, now: std::time::Instant, event: EventOf<Self>);

    /// After each round of inputs and outputs: publishes what other tasks watch, and says
    /// whether the task is done.
    fn settled(&mut self, machine: &Self::Machine) -> bool;

    /// Whether the task reads commands now (a closing machine takes no more).
    fn takes_commands(&self) -> bool {
        true
    }

    /// Whether the task follows the pool's metadata: [`metadata_changed`](Self::metadata_changed)
    /// is then called for every new snapshot.
    fn follows_metadata(&self) -> bool {
        false
    }

    /// The pool has a new metadata snapshot.
    fn metadata_changed(
        &mut self,
        machine: &mut Self::Machine,
        pool: &Pool,
        now: std::time::Instant,
        metadata: &Metadata,
    ) {
        let _ = (machine, pool, now, metadata);
    }
}

/// Runs `machine` until `glue` says it is done: the one loop of every machine's task.
///
/// After every input (an answer, a command, a timer, new metadata) the machine's requests are
/// sent and its events handed to the glue until both run dry (handling an event may queue a
/// request, as a closing group member acknowledging a revocation does), then the task sleeps
/// until the next input or `poll_timeout`. Time is tokio's clock, so a paused test runtime
/// drives machines too.
///
/// # Cancel safety
///
/// Meant to run as a task of its own until the glue says it is done, not to be cancelled: dropping
/// the future drops the machine with whatever it held (records, offsets, a membership) and aborts
/// its requests in flight, whose answers are lost. End it through its commands (a close) instead.
pub async fn drive<D: Drive>(
    pool: Pool,
    mut machine: D::Machine,
    mut glue: D,
    mut commands: mpsc::UnboundedReceiver<D::Command>,
) {
    let mut in_flight: InFlight<RequestId, ResponseOf<D>> = InFlight::new();
    let mut commands_open = true;
    // Generation 0 is the empty cache: the first snapshot with anything in it is news.
    let mut metadata_seen = 0;
    let mut metadata_tick = time::interval(METADATA_CHECK);
    metadata_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = Instant::now().into_std();
        loop {
            let mut any = false;
            while let Some(out) = machine.poll_request(now) {
                in_flight.spawn(out.id, glue.send(&pool, out));
                any = true;
            }
            while let Some(event) = machine.poll_event() {
                glue.event(&mut machine, now, event);
                any = true;
            }
            if !any {
                break;
            }
        }
        if glue.settled(&machine) {
            return;
        }
        let deadline = machine.poll_timeout().map(Instant::from_std);
        let reads_commands = commands_open && glue.takes_commands();
        let follows_metadata = glue.follows_metadata();
        tokio::select! {
            (id, result) = in_flight.next() => {
                machine.handle_response(Instant::now().into_std(), id, result);
            }
            command = commands.recv(), if reads_commands => {
                commands_open = command.is_some();
                glue.command(&mut machine, &pool, Instant::now().into_std(), command);
            }
            _ = sleep_until(deadline) => {
                machine.handle_timeout(Instant::now().into_std());
            }
            _ = metadata_tick.tick(), if follows_metadata => {
                let metadata = pool.metadata();
                if metadata.generation != metadata_seen {
                    metadata_seen = metadata.generation;
                    glue.metadata_changed(&mut machine, &pool, Instant::now().into_std(), &metadata);
                }
            }
        }
    }
}

/// Requests sent on tasks of their own, each answered exactly once: with its answer, or with a
/// failure when the task ended without one; [`drive`] feeds each `(id, result)` back to the
/// machine.
#[derive(Debug)]
struct InFlight<Id, T> {
    tasks: JoinSet<Result<T, RequestFailure>>,
    ids: HashMap<task::Id, Id>,
}

impl<Id, T: Send + 'static> InFlight<Id, T> {
    /// No requests.
    fn new() -> Self {
        InFlight {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
        }
    }

    /// Runs `request` on a task of its own, on the current runtime; its result comes back from
    /// [`next`](InFlight::next) with `id`.
    fn spawn<F>(&mut self, id: Id, request: F)
    where
        F: Future<Output = Result<T, RequestFailure>> + Send + 'static,
    {
        let handle = self.tasks.spawn(request);
        self.ids.insert(handle.id(), id);
    }

    /// The next result; pending forever while no request is running (so it can sit in a
    /// `select!` beside other branches).
    async fn next(&mut self) -> (Id, Result<T, RequestFailure>) {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let (task_id, result) = match joined {
                Ok((task_id, result)) => (task_id, result),
                Err(e) => (
                    e.id(),
                    Err(RequestFailure::retriable(format!(
                        "the request task ended: {e}"
                    ))),
                ),
            };
            if let Some(id) = self.ids.remove(&task_id) {
                return (id, result);
            }
        }
    }
}

/// Sleeps until `deadline`, or for ever when there is none: a machine's `poll_timeout` as a
/// `select!` branch.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
