//! A machine on a virtual clock, for tests: the same driving contract as the tokio driver, with
//! time moved by hand and every answer scripted by the test.

use std::fmt;
use std::time::{Duration, Instant};

use crate::machine::{Machine, Outgoing, RequestFailure, RequestId};

/// One machine driven by a test: [`requests`](Self::requests) and [`events`](Self::events)
/// drain its outputs, [`answer`](Self::answer) and [`fail`](Self::fail) feed answers,
/// [`advance`](Self::advance) and [`run_to_timeout`](Self::run_to_timeout) move the clock.
pub struct Harness<M> {
    /// The machine, for its own commands and queries.
    pub machine: M,
    /// The virtual time now.
    pub now: Instant,
}

impl<M: Machine> Harness<M> {
    /// `machine` at `now` (the instant it was made at).
    pub fn new(machine: M, now: Instant) -> Self {
        Harness { machine, now }
    }

    /// Every request the machine wants sent now, in order.
    pub fn requests(&mut self) -> Vec<Outgoing<M::Request>> {
        std::iter::from_fn(|| self.machine.poll_request(self.now)).collect()
    }

    /// The next request, if any.
    pub fn request(&mut self) -> Option<Outgoing<M::Request>> {
        self.machine.poll_request(self.now)
    }

    /// Every event the machine has for its owner, in order.
    pub fn events(&mut self) -> Vec<M::Event> {
        std::iter::from_fn(|| self.machine.poll_event()).collect()
    }

    /// Request `id` answered with `answer`, now.
    pub fn answer(&mut self, id: RequestId, answer: M::Response) {
        self.machine.handle_response(self.now, id, Ok(answer));
    }

    /// Request `id` failed, now: retriable (a lost connection, a timeout) or not.
    pub fn fail(&mut self, id: RequestId, failure: RequestFailure) {
        self.machine.handle_response(self.now, id, Err(failure));
    }

    /// Moves the clock by `d` and fires the timers due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.timeout();
    }

    /// Moves the clock to the machine's next timer (never backwards) and fires it; returns how
    /// far the clock moved. Panics when no timer is armed.
    pub fn run_to_timeout(&mut self) -> Duration {
        let at = self.machine.poll_timeout().expect("a timer");
        let d = at.saturating_duration_since(self.now);
        self.now = at.max(self.now);
        self.timeout();
        d
    }

    fn timeout(&mut self) {
        self.machine.handle_timeout(self.now);
    }
}

impl<M: fmt::Debug> fmt::Debug for Harness<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}
