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
    pub fn requests(&mut self) -> Vec<Outgoing<M::Request, M::Target>> {
        std::iter::from_fn(|| self.machine.poll_request(self.now)).collect()
    }

    /// The next request, if any.
    pub fn request(&mut self) -> Option<Outgoing<M::Request, M::Target>> {
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

/// What is in flight in a simulation of several machines: messages delivered in time order,
/// those sent for the same instant in the order sent. Both kcon simulations (the group
/// member's and the whole client's) schedule through it.
#[derive(Debug)]
pub struct Schedule<T> {
    queue: std::collections::BTreeMap<(Instant, u64), T>,
    sent: u64,
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule {
            queue: std::collections::BTreeMap::new(),
            sent: 0,
        }
    }
}

impl<T> Schedule<T> {
    /// Delivers `message` at `at`, after whatever was sent for `at` before it.
    pub fn send(&mut self, at: Instant, message: T) {
        self.sent += 1;
        self.queue.insert((at, self.sent), message);
    }

    /// When the next message is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// The next message due at `now` or before, taken out.
    pub fn take_due(&mut self, now: Instant) -> Option<T> {
        let entry = self.queue.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    /// The messages in flight, in delivery order, with when each is due.
    pub fn iter(&self) -> impl Iterator<Item = (Instant, &T)> {
        self.queue.iter().map(|((t, _), m)| (*t, m))
    }

    /// How many messages are in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_delivers_in_time_order_and_ties_in_the_order_sent() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.send(t0 + Duration::from_millis(5), "late");
        s.send(t0, "first");
        s.send(t0, "second");
        assert_eq!(s.len(), 3);
        assert_eq!(s.next_at(), Some(t0));
        assert_eq!(s.take_due(t0), Some("first"));
        assert_eq!(s.take_due(t0), Some("second"));
        assert_eq!(s.take_due(t0), None, "the last is not due yet");
        assert_eq!(s.take_due(t0 + Duration::from_millis(5)), Some("late"));
        assert!(s.is_empty());
    }
}
