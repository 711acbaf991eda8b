//! The loop of the two simulations built around the classic group coordinator ([`crate::group`]'s
//! members on their own, `consumer`'s whole consumers): virtual time jumps to whatever is due
//! next, and every step runs what is due in one order: the coordinator's timers (and their
//! answers), any other coordinator's, the messages due, then the members' own timers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kcon_core::harness::Schedule;

use crate::coordinator::{GroupCoordinator, Ticket};

/// How many steps a run may take before it is taken to spin: a machine whose timer does not
/// move on once it fired, or two parts answering each other at the same instant for ever.
const MAX_STEPS: u64 = 2_000_000;

/// What a simulation keeps for its loop: the messages in flight (`M`), the requests the
/// coordinator holds by ticket with where each answer goes back to (`R`), and how many steps it
/// has taken.
#[derive(Debug)]
pub(crate) struct Turns<M, R> {
    queue: Schedule<M>,
    tickets: BTreeMap<Ticket, R>,
    next_ticket: Ticket,
    steps: u64,
}

impl<M, R> Default for Turns<M, R> {
    fn default() -> Self {
        Turns {
            queue: Schedule::default(),
            tickets: BTreeMap::new(),
            next_ticket: 0,
            steps: 0,
        }
    }
}

impl<M, R> Turns<M, R> {
    /// How many steps the simulation has taken (the consumers' simulation reports it).
    #[cfg(feature = "consumer")]
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// A ticket for a request handed to the coordinator, whose answer goes back to `to`.
    pub(crate) fn ticket(&mut self, to: R) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tickets.insert(ticket, to);
        ticket
    }

    /// Where the answer to `ticket` goes back to.
    pub(crate) fn answered(&mut self, ticket: Ticket) -> R {
        // Invariant: the coordinator answers only the tickets `ticket` handed out, each once.
        self.tickets.remove(&ticket).expect("a ticket")
    }
}

/// The last `n` entries of the members' logs merged in time order (ties in member order), each
/// with its member's index, for a failure's message.
pub(crate) fn last_entries<E>(
    logs: impl IntoIterator<Item = impl IntoIterator<Item = (Instant, E)>>,
    n: usize,
) -> Vec<(Instant, usize, E)> {
    let mut all: Vec<(Instant, usize, E)> = logs
        .into_iter()
        .enumerate()
        .flat_map(|(i, log)| log.into_iter().map(move |(at, e)| (at, i, e)))
        .collect();
    all.sort_by_key(|(at, i, _)| (*at, *i));
    all.split_off(all.len().saturating_sub(n))
}

/// How a failure's message opens: the virtual time and the classic coordinator's group.
pub(crate) fn coordinator_line(secs: f64, coordinator: &GroupCoordinator) -> String {
    format!(
        "at {secs:.3}s, coordinator {:?} generation {} members {:?}",
        coordinator.state(),
        coordinator.generation(),
        coordinator.member_ids()
    )
}

/// What [`Simulation::loop_parts`] lends: the virtual now, the loop's state and the classic
/// coordinator.
pub(crate) type LoopParts<'a, S> = (
    &'a mut Instant,
    &'a mut Turns<<S as Simulation>::Msg, <S as Simulation>::ReplyTo>,
    &'a mut GroupCoordinator,
);

/// A simulation run step by step on [`Turns`]: what it implements is its own (the messages it
/// delivers, the members it runs, the invariants it checks), and the loop is the one here.
pub(crate) trait Simulation: Sized {
    /// What goes over its network.
    type Msg;
    /// Where a coordinator's answer goes back to.
    type ReplyTo;

    /// The virtual now, the loop's state and the classic coordinator, borrowed together.
    fn loop_parts(
        &mut self,
    ) -> (
        &mut Instant,
        &mut Turns<Self::Msg, Self::ReplyTo>,
        &mut GroupCoordinator,
    );

    /// When whatever else it runs is next due: another coordinator, the members' own timers.
    fn others_due(&self) -> Option<Instant>;

    /// Sends what the classic coordinator answered back over the network.
    fn flush_coordinator(&mut self);

    /// Fires another coordinator's timers due at `now`, after the classic coordinator's and
    /// before the messages due. Nothing by default.
    fn other_coordinators(&mut self, _now: Instant) {}

    /// Delivers one message that is due.
    fn deliver(&mut self, msg: Self::Msg);

    /// Fires the members' own timers due at `now`, the last thing a step does.
    fn members(&mut self, now: Instant);

    /// Panics if the state breaks an invariant the simulation checks after every input.
    fn check_invariants(&self);

    /// The state and the last `n` entries of the logs, for a failure's message.
    fn dump(&self, n: usize) -> String;

    /// Sends `msg`, to be delivered at `at`.
    fn push(&mut self, at: Instant, msg: Self::Msg) {
        self.loop_parts().1.queue.send(at, msg);
    }

    /// When the next thing is due: a message, the coordinator's timers or whatever else runs.
    fn next_due(&mut self) -> Option<Instant> {
        let others = self.others_due();
        let (_, turns, coordinator) = self.loop_parts();
        [turns.queue.next_at(), coordinator.next_deadline(), others]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the virtual now to `t` (never back) and runs everything due then.
    fn step(&mut self, t: Instant) {
        let (_, turns, _) = self.loop_parts();
        turns.steps += 1;
        assert!(
            turns.steps < MAX_STEPS,
            "the simulation spins\n{}",
            self.dump(40)
        );
        let (now, _, coordinator) = self.loop_parts();
        *now = (*now).max(t);
        let now = *now;
        if coordinator.next_deadline().is_some_and(|d| d <= now) {
            coordinator.tick(now);
            self.flush_coordinator();
        }
        self.other_coordinators(now);
        while let Some(msg) = self.loop_parts().1.queue.take_due(now) {
            self.deliver(msg);
            self.check_invariants();
        }
        self.members(now);
    }

    /// Runs until `done` holds (checked after every step) or `limit` passes; whether it held.
    fn run_until_done(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let end = *self.loop_parts().0 + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_due() {
                Some(next) if next <= end => self.step(next),
                _ => {
                    *self.loop_parts().0 = end;
                    return done(self);
                }
            }
        }
    }
}
