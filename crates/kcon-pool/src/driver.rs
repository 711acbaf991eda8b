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
//! A machine whose glue says so ([`Drive::sends_on_own_task`]) has its requests carried on its
//! own task instead: an answer then reaches the machine straight from the connection's reader,
//! and a request the machine asks for in answer is written in the same turn (a group follower's
//! SyncGroup after its JoinGroup answer).
//!
//! The machine is touched by its task only: no locks.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kcon_core::{Machine, Outgoing, RequestFailure, RequestId, Target};
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio::time::{self, Instant, MissedTickBehavior};

use crate::metadata::Metadata;
use crate::pool::Pool;
use crate::precise_timer::PreciseTimer;

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

    /// At the start of every round, before the machine's requests and events are looked at,
    /// and before an answer, a timer or new metadata the task woke for is handed to the
    /// machine: hands the machine what reached the task outside its channel (the producer's
    /// queue, which the channel only rings for), so that the machine decides on that input
    /// with it (the producer's records join the batch a timer makes ready). A glue whose
    /// commands must follow the events the last input caused (as a command from the channel
    /// would) hands those on first. Nothing by default.
    fn take_queued(&mut self, machine: &mut Self::Machine, pool: &Pool, now: std::time::Instant) {
        let _ = (machine, pool, now);
    }

    /// Just before the task waits for its next input: whether it may. `false` while input
    /// outside the channel waits that nothing would wake the task for; another round then
    /// runs. Always by default.
    fn may_wait(&mut self, machine: &Self::Machine) -> bool {
        let _ = machine;
        true
    }

    /// Whether the machine's requests are carried on its own task rather than each on a task
    /// of its own. On its own task an answer reaches the machine with one task hop fewer (from
    /// the connection's reader straight to the machine), and a request the machine asks for in
    /// answer is handed to the connection's writer before the task waits again, with one hop
    /// fewer still. For a machine whose requests are small and whose next request often
    /// answers the last: a group member (a follower's SyncGroup must reach the coordinator
    /// before the leader's). Not for one whose answers take long to decode, which would hold
    /// up everything else the task does (the fetch machine's).
    fn sends_on_own_task(&self) -> bool {
        false
    }

    /// A timer of microsecond precision for the task's waits, taken once as the task starts
    /// (see [`PreciseTimer`]); `None`, the default, keeps tokio's, which wakes a task up to
    /// 2 ms after its deadline.
    fn precise_timer(&mut self) -> Option<PreciseTimer> {
        None
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
/// After every input (an answer, a command, a timer, new metadata) the glue hands in what is
/// queued outside the channel ([`Drive::take_queued`]), then the machine's requests are
/// sent and its events handed to the glue until both run dry (handling an event may queue a
/// request, as a closing group member acknowledging a revocation does), then the task sleeps
/// until the next input or `poll_timeout`, unless the glue says it may not yet
/// ([`Drive::may_wait`]). Requests carried on the machine's own task
/// ([`Drive::sends_on_own_task`]) are first polled once the events are handed on, just before
/// the task waits: they reach their connection's writer in the turn that asked for them, and
/// the writer is the last task that turn wakes. Time is tokio's clock, so a paused test runtime
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
    let on_own_task = glue.sends_on_own_task();
    let mut precise = glue.precise_timer();
    let mut commands_open = true;
    // Generation 0 is the empty cache: the first snapshot with anything in it is news.
    let mut metadata_seen = 0;
    let mut metadata_tick = time::interval(METADATA_CHECK);
    metadata_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = Instant::now().into_std();
        glue.take_queued(&mut machine, &pool, now);
        loop {
            let mut any = false;
            while let Some(out) = machine.poll_request(now) {
                let id = out.id;
                let request = glue.send(&pool, out);
                if on_own_task {
                    in_flight.carry(id, request);
                } else {
                    in_flight.spawn(id, request);
                }
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
        // Requests carried on this task go to their connections now, before it waits: the
        // writer of a request asked for in answer to another is the last task this turn
        // wakes, so it runs next (tokio runs the task woken last first). A request whose
        // first poll ended it (it failed before it was sent) is an input like any other.
        if let Some((id, result)) = in_flight.start_new().await {
            machine.handle_response(Instant::now().into_std(), id, result);
            continue;
        }
        if !glue.may_wait(&machine) {
            continue;
        }
        let deadline = machine.poll_timeout().map(Instant::from_std);
        let reads_commands = commands_open && glue.takes_commands();
        let follows_metadata = glue.follows_metadata();
        tokio::select! {
            (id, result) = in_flight.next() => {
                let now = Instant::now().into_std();
                glue.take_queued(&mut machine, &pool, now);
                machine.handle_response(now, id, result);
            }
            command = commands.recv(), if reads_commands => match command {
                Some(command) => {
                    glue.command(&mut machine, &pool, Instant::now().into_std(), Some(command));
                }
                None => {
                    commands_open = false;
                    glue.command(&mut machine, &pool, Instant::now().into_std(), None);
                }
            },
            _ = sleep_until(deadline, precise.as_mut()) => {
                let now = Instant::now().into_std();
                glue.take_queued(&mut machine, &pool, now);
                machine.handle_timeout(now);
            }
            _ = metadata_tick.tick(), if follows_metadata => {
                let metadata = pool.metadata();
                if metadata.generation != metadata_seen {
                    metadata_seen = metadata.generation;
                    let now = Instant::now().into_std();
                    glue.take_queued(&mut machine, &pool, now);
                    glue.metadata_changed(&mut machine, &pool, now, &metadata);
                }
            }
        }
    }
}

/// A request carried on the machine's own task.
type Carried<T> = Pin<Box<dyn Future<Output = Result<T, RequestFailure>> + Send>>;

/// Requests sent on tasks of their own or carried on the machine's, each answered exactly once:
/// with its answer, or with a failure when its task ended (or its future panicked) without
/// one; [`drive`] feeds each `(id, result)` back to the machine.
struct InFlight<Id, T> {
    tasks: JoinSet<Result<T, RequestFailure>>,
    ids: HashMap<task::Id, Id>,
    /// Requests carried on the machine's task, in the order they were asked for.
    carried: Vec<(Id, Carried<T>)>,
    /// How many of the last `carried` were never polled.
    unstarted: usize,
}

impl<Id, T: Send + 'static> InFlight<Id, T> {
    /// No requests.
    fn new() -> Self {
        InFlight {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            carried: Vec::new(),
            unstarted: 0,
        }
    }

    /// Carries `request` on the current task: [`start_new`](InFlight::start_new) first polls
    /// it, [`next`](InFlight::next) then until it is answered.
    fn carry<F>(&mut self, id: Id, request: F)
    where
        F: Future<Output = Result<T, RequestFailure>> + Send + 'static,
    {
        self.carried.push((id, Box::pin(request)));
        self.unstarted += 1;
    }

    /// Polls the carried requests never polled yet, so that those a connection takes at once
    /// are handed to its writer now; the first of them that ended already (one that failed
    /// before it was sent), if any.
    async fn start_new(&mut self) -> Option<(Id, Result<T, RequestFailure>)> {
        let first = self.carried.len() - self.unstarted;
        self.unstarted = 0;
        poll_fn(|cx| Poll::Ready(self.poll_carried(cx, first))).await
    }

    /// Polls the carried requests from index `from` on; removes and returns the first answered.
    fn poll_carried(
        &mut self,
        cx: &mut Context<'_>,
        from: usize,
    ) -> Option<(Id, Result<T, RequestFailure>)> {
        let mut i = from;
        while i < self.carried.len() {
            let request = &mut self.carried[i].1;
            // A panic in a request's future fails that request, as a task of its own that
            // panicked does; the machine's task goes on.
            let polled = panic::catch_unwind(AssertUnwindSafe(|| request.as_mut().poll(cx)));
            let result = match polled {
                Ok(Poll::Pending) => {
                    i += 1;
                    continue;
                }
                Ok(Poll::Ready(result)) => result,
                Err(_) => Err(RequestFailure::retriable("the request's future panicked")),
            };
            let (id, _) = self.carried.remove(i);
            return Some((id, result));
        }
        None
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
        poll_fn(|cx| {
            if let Some(answered) = self.poll_carried(cx, 0) {
                return Poll::Ready(answered);
            }
            loop {
                let joined = match self.tasks.poll_join_next_with_id(cx) {
                    Poll::Ready(Some(joined)) => joined,
                    Poll::Ready(None) | Poll::Pending => return Poll::Pending,
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
                    return Poll::Ready((id, result));
                }
            }
        })
        .await
    }
}

/// Sleeps until `deadline`, or for ever when there is none: a machine's `poll_timeout` as a
/// `select!` branch.
async fn sleep_until(deadline: Option<Instant>, precise: Option<&mut PreciseTimer>) {
    match (deadline, precise) {
        (Some(d), Some(timer)) => timer.sleep_until(d).await,
        (Some(d), None) => time::sleep_until(d).await,
        (None, _) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use kcon_core::RequestIds;
    use tokio::sync::oneshot;

    use super::*;
    use crate::config::PoolConfig;

    /// What the test reads once the driver is done.
    #[derive(Debug, Default)]
    struct Seen {
        /// The task `second`'s future was first polled on.
        second_on: Option<task::Id>,
        /// The answer the machine got to `second`.
        second: Option<Result<(), RequestFailure>>,
    }

    /// Asks for `first`; once that is answered, for `second`; done once `second` is answered.
    struct Chain {
        ids: RequestIds,
        first: RequestId,
        queued: VecDeque<Outgoing<&'static str>>,
        seen: Arc<Mutex<Seen>>,
    }

    impl Chain {
        fn new(seen: Arc<Mutex<Seen>>) -> Chain {
            let mut chain = Chain {
                ids: RequestIds::default(),
                first: RequestIds::default().peek(),
                queued: VecDeque::new(),
                seen,
            };
            chain.first = chain.ask("first");
            chain
        }

        fn ask(&mut self, request: &'static str) -> RequestId {
            let id = self.ids.next_id();
            self.queued.push_back(Outgoing {
                id,
                target: Target::Any,
                request,
                timeout: None,
            });
            id
        }
    }

    impl Machine for Chain {
        type Request = &'static str;
        type Target = Target;
        type Response = ();
        type Event = ();

        fn handle_response(
            &mut self,
            _now: std::time::Instant,
            id: RequestId,
            result: Result<(), RequestFailure>,
        ) {
            if id == self.first {
                self.ask("second");
            } else {
                self.seen.lock().unwrap().second = Some(result);
            }
        }

        fn handle_timeout(&mut self, _now: std::time::Instant) {}

        fn poll_request(&mut self, _now: std::time::Instant) -> Option<Outgoing<&'static str>> {
            self.queued.pop_front()
        }

        fn poll_event(&mut self) -> Option<()> {
            None
        }

        fn poll_timeout(&self) -> Option<std::time::Instant> {
            None
        }
    }

    /// `first` is answered when the test says; `second` at once, or by panicking.
    struct Glue {
        on_own_task: bool,
        first: Mutex<Option<oneshot::Receiver<()>>>,
        second_panics: bool,
        seen: Arc<Mutex<Seen>>,
    }

    impl Drive for Glue {
        type Machine = Chain;
        type Command = ();

        fn send(
            &self,
            _pool: &Pool,
            out: Outgoing<&'static str>,
        ) -> impl Future<Output = Result<(), RequestFailure>> + Send + 'static {
            let first = match out.request {
                "first" => self.first.lock().unwrap().take(),
                _ => None,
            };
            let seen = self.seen.clone();
            let panics = self.second_panics;
            async move {
                if let Some(answer) = first {
                    let _ = answer.await;
                    return Ok(());
                }
                seen.lock().unwrap().second_on = task::try_id();
                if panics {
                    panic!("second's future panics");
                }
                Ok(())
            }
        }

        fn command(
            &mut self,
            _machine: &mut Chain,
            _pool: &Pool,
            _now: std::time::Instant,
            _command: Option<()>,
        ) {
        }

        fn event(&mut self, _machine: &mut Chain, _now: std::time::Instant, _event: ()) {}

        fn settled(&mut self, _machine: &Chain) -> bool {
            self.seen.lock().unwrap().second.is_some()
        }

        fn sends_on_own_task(&self) -> bool {
            self.on_own_task
        }
    }

    /// Runs a [`Chain`] on a task of its own, answers `first` from the test's task, and returns
    /// the driver's task and what the test reads once it is done.
    async fn run_chain(on_own_task: bool, second_panics: bool) -> (task::Id, Seen) {
        let config = PoolConfig {
            bootstrap_servers: vec!["127.0.0.1:9".to_owned()],
            ..PoolConfig::default()
        };
        let pool = Pool::new(config).unwrap();
        let (answer, first) = oneshot::channel();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let glue = Glue {
            on_own_task,
            first: Mutex::new(Some(first)),
            second_panics,
            seen: seen.clone(),
        };
        let machine = Chain::new(seen.clone());
        let (_commands, command_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(pool, machine, glue, command_rx));
        let id = driver.id();
        // The driver has sent `first` and waits for it.
        task::yield_now().await;
        answer.send(()).unwrap();
        driver.await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        (id, seen)
    }

    /// Writes down what it is told, and takes one of `outside` (input that reaches the task
    /// outside its channel) every round, waiting only once none is left.
    struct Told {
        notes: Arc<Mutex<Vec<String>>>,
        outside: Arc<Mutex<VecDeque<char>>>,
    }

    impl Told {
        fn note(&self, what: impl Into<String>) {
            self.notes.lock().unwrap().push(what.into());
        }
    }

    impl Drive for Told {
        type Machine = Chain;
        type Command = char;

        fn send(
            &self,
            _pool: &Pool,
            _out: Outgoing<&'static str>,
        ) -> impl Future<Output = Result<(), RequestFailure>> + Send + 'static {
            std::future::ready(Ok(()))
        }

        fn command(
            &mut self,
            _machine: &mut Chain,
            _pool: &Pool,
            _now: std::time::Instant,
            command: Option<char>,
        ) {
            self.note(command.map_or("closed".to_owned(), String::from));
        }

        fn take_queued(&mut self, _machine: &mut Chain, _pool: &Pool, _now: std::time::Instant) {
            let taken = self.outside.lock().unwrap().pop_front();
            if let Some(c) = taken {
                self.note(format!("took {c}"));
            }
        }

        fn may_wait(&mut self, _machine: &Chain) -> bool {
            self.outside.lock().unwrap().is_empty()
        }

        fn event(&mut self, _machine: &mut Chain, _now: std::time::Instant, _event: ()) {}

        fn settled(&mut self, _machine: &Chain) -> bool {
            self.note("settled");
            self.notes.lock().unwrap().iter().any(|t| t == "closed")
        }
    }

    #[tokio::test]
    async fn input_outside_the_channel_is_taken_every_round_and_the_task_waits_once_none_is_left() {
        let pool = Pool::new(PoolConfig {
            bootstrap_servers: vec!["127.0.0.1:9".to_owned()],
            ..PoolConfig::default()
        })
        .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send('a').unwrap();
        drop(tx);
        let notes = Arc::new(Mutex::new(Vec::new()));
        let outside = Arc::new(Mutex::new(VecDeque::from(['x', 'y', 'z'])));
        // A chain that asks for nothing.
        let idle = Chain {
            ids: RequestIds::default(),
            first: RequestIds::default().peek(),
            queued: VecDeque::new(),
            seen: Arc::default(),
        };
        let glue = Told {
            notes: notes.clone(),
            outside,
        };
        drive(pool, idle, glue, rx).await;
        // Each round takes one, before its requests and events; the channel's command is read
        // only once the task may wait, and its close in a round of its own.
        assert_eq!(
            notes.lock().unwrap().join(" "),
            "took x settled took y settled took z settled a settled closed settled"
        );
    }

    #[tokio::test]
    async fn a_request_asked_for_in_answer_goes_out_from_the_machines_own_task() {
        let (driver, seen) = run_chain(true, false).await;
        assert_eq!(seen.second_on, Some(driver), "{seen:?}");
        assert_eq!(seen.second, Some(Ok(())));
    }

    #[tokio::test]
    async fn requests_go_out_on_tasks_of_their_own_unless_the_glue_says() {
        let (driver, seen) = run_chain(false, false).await;
        assert!(seen.second_on.is_some_and(|t| t != driver), "{seen:?}");
        assert_eq!(seen.second, Some(Ok(())));
    }

    #[tokio::test]
    async fn a_request_whose_future_panics_fails_and_the_machine_goes_on() {
        for on_own_task in [true, false] {
            let (_, seen) = run_chain(on_own_task, true).await;
            let failure = seen.second.expect("an answer to second").unwrap_err();
            assert!(failure.retriable, "{failure:?}");
        }
    }
}
