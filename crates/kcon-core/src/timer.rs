//! A machine's timers, one table: [`TimerTable`] holds one deadline per timer of a machine,
//! indexed by the machine's own enum of them ([`TimerKind`]). `poll_timeout` is the table's
//! earliest deadline ([`next`](TimerTable::next)) and `handle_timeout` acts on those that passed
//! ([`expired`](TimerTable::expired)), so no machine keeps a timer anywhere the contract does not
//! see it.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use kcon_core::timer::{TimerKind, TimerTable};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq)]
//! enum Timer {
//!     Heartbeat,
//!     Session,
//! }
//!
//! impl TimerKind for Timer {
//!     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Session];
//!     fn index(self) -> usize {
//!         self as usize
//!     }
//! }
//!
//! let now = Instant::now();
//! let mut timers = TimerTable::<Timer, 2>::new();
//! timers.set(Timer::Session, now + Duration::from_secs(10));
//! timers.set(Timer::Heartbeat, now + Duration::from_secs(3));
//! assert_eq!(timers.next(), Some(now + Duration::from_secs(3)));
//! let later = now + Duration::from_secs(5);
//! assert_eq!(timers.expired(later).collect::<Vec<_>>(), [Timer::Heartbeat]);
//! timers.stop(Timer::Heartbeat);
//! assert_eq!(timers.next(), Some(now + Duration::from_secs(10)));
//! // The same table, derived from what each timer's deadline is.
//! let derived = TimerTable::<Timer, 2>::from_deadlines(|t| match t {
//!     Timer::Heartbeat => None,
//!     Timer::Session => Some(now + Duration::from_secs(10)),
//! });
//! assert_eq!(derived, timers);
//! ```
//!
//! A machine declares its timers with [`timers!`](crate::timers): the enum, its `TimerKind`
//! and the table type in one place, the list of timers written once.
//!
//! Deadlines kept per key (a partition's backoff, each broker's, each pending committed-offset
//! lookup's, each queued batch's) belong in maps beside their keys, not in a fixed table: a
//! machine with those reads their minimum beside the table's, or keeps one timer of its table
//! armed at their minimum (re-armed whenever they change), and says so where it does.

use std::fmt;
use std::marker::PhantomData;
use std::time::Instant;

/// The timers of one machine: an enum whose every variant is a timer, listed in [`ALL`] in the
/// order the machine's `handle_timeout` acts on them.
///
/// [`ALL`]: Self::ALL
pub trait TimerKind: Copy + Eq + fmt::Debug + 'static {
    /// Every timer, each once, in the order `handle_timeout` acts on them; [`index`] is the
    /// place of each in this list.
    ///
    /// [`index`]: Self::index
    const ALL: &'static [Self];

    /// The timer's place in [`ALL`](Self::ALL): `self as usize` for an enum listed in its own
    /// order.
    fn index(self) -> usize;
}

/// One deadline per timer of a machine, `None` while the timer is stopped. `N` is the number of
/// timers (`T::ALL.len()`, checked when the table is made).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimerTable<T: TimerKind, const N: usize> {
    at: [Option<Instant>; N],
    kind: PhantomData<T>,
}

impl<T: TimerKind, const N: usize> TimerTable<T, N> {
    /// Every timer stopped.
    pub fn new() -> Self {
        const {
            assert!(
                T::ALL.len() == N,
                "a table holds each timer of its kind once"
            )
        };
        debug_assert!(
            T::ALL.iter().enumerate().all(|(i, t)| t.index() == i),
            "TimerKind::index is each timer's place in ALL"
        );
        TimerTable {
            at: [None; N],
            kind: PhantomData,
        }
    }

    /// The table whose every timer is armed at what `deadline` says for it, or stopped where
    /// it says `None`: a machine that derives its timers from its state rebuilds them with it.
    pub fn from_deadlines(mut deadline: impl FnMut(T) -> Option<Instant>) -> Self {
        let mut table = TimerTable::new();
        for &timer in T::ALL {
            table.set_or_stop(timer, deadline(timer));
        }
        table
    }

    /// Arms `timer` to fire at `at` (moving it if it was armed).
    pub fn set(&mut self, timer: T, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    /// Arms `timer` at `at`, or stops it when `at` is `None`.
    pub fn set_or_stop(&mut self, timer: T, at: Option<Instant>) {
        self.at[timer.index()] = at;
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: T) {
        self.at[timer.index()] = None;
    }

    /// When `timer` fires, if it is armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline of an armed timer: what the machine's `poll_timeout` returns.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The armed timers due at `now`, in the order of [`TimerKind::ALL`]. The table is read as
    /// it is when this is called: a machine whose handling of one timer may arm or stop
    /// another iterates a copy of the table, or checks [`is_expired`](Self::is_expired) timer
    /// by timer when each handling must see what the previous one changed.
    pub fn expired(&self, now: Instant) -> impl Iterator<Item = T> + '_ {
        T::ALL
            .iter()
            .copied()
            .filter(move |t| self.is_expired(*t, now))
    }
}

impl<T: TimerKind, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        TimerTable::new()
    }
}

impl<T: TimerKind, const N: usize> fmt::Debug for TimerTable<T, N> {
    /// The armed timers and their deadlines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(T::ALL.iter().filter_map(|t| self.get(*t).map(|at| (t, at))))
            .finish()
    }
}

/// Declares a machine's timers: the enum (each variant a timer, in the order the machine's
/// `handle_timeout` acts on them, derived `Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`), its
/// [`TimerKind`] (`ALL` in that order, `index` each one's place) and the [`TimerTable`] type
/// holding one deadline each, so that the list of timers is written once.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// kcon_core::timers! {
///     /// The timers.
///     enum Timer {
///         /// The next heartbeat is due.
///         Heartbeat,
///         /// The session ends.
///         Session,
///     }
///     /// Their table.
///     type Timers;
/// }
///
/// let now = Instant::now();
/// let mut timers = Timers::new();
/// timers.set(Timer::Session, now + Duration::from_secs(10));
/// assert_eq!(timers.next(), Some(now + Duration::from_secs(10)));
/// assert_eq!(<Timer as kcon_core::timer::TimerKind>::ALL, [Timer::Heartbeat, Timer::Session]);
/// ```
#[macro_export]
macro_rules! timers {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
        $(#[$tmeta:meta])*
        $tvis:vis type $table:ident;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::timer::TimerKind for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
        }

        $(#[$tmeta])*
        $tvis type $table =
            $crate::timer::TimerTable<$name, { [$(stringify!($variant)),+].len() }>;
    };
}

/// The [`Machine`](crate::Machine) implementation of a machine on a timer table whose every
/// input ends by rearming it: the group members' (classic and KIP-848) are written this way,
/// and no other shape of theirs differs. The machine's type provides, as inherent items:
///
/// - `next_request(&mut self, now) -> Option<Outgoing<Request>>`: the next request, if any;
/// - `events`: a `VecDeque` of its events;
/// - `timers` (the table) and `armed_timers(&self)`, the table its state calls for;
/// - `on_timer(&mut self, timer, now)`: one timer that passed;
/// - `on_response(&mut self, now, id, result)`: an answer, or why none came;
/// - `rearm(&mut self)`: sets `timers` to `armed_timers()`.
///
/// `poll_timeout` is the table's earliest (asserting in debug builds that it was rearmed);
/// `handle_timeout` acts on every timer that passed, in the table's order, rearming after
/// each so that each sees what the one before it changed.
#[macro_export]
macro_rules! machine_on_timers {
    (
        impl Machine for $machine:ty {
            timer = $timer:ty,
            request = $request:ty,
            response = $response:ty,
            event = $event:ty $(,)?
        }
    ) => {
        impl $crate::machine::Machine for $machine {
            type Request = $request;
            type Target = $crate::machine::Target;
            type Response = $response;
            type Event = $event;

            fn poll_request(
                &mut self,
                now: ::std::time::Instant,
            ) -> ::std::option::Option<$crate::machine::Outgoing<$request>> {
                let out = self.next_request(now);
                self.rearm();
                out
            }

            fn poll_event(&mut self) -> ::std::option::Option<$event> {
                self.events.pop_front()
            }

            fn poll_timeout(&self) -> ::std::option::Option<::std::time::Instant> {
                debug_assert_eq!(
                    self.timers,
                    self.armed_timers(),
                    "every input rearms the timers"
                );
                self.timers.next()
            }

            fn handle_timeout(&mut self, now: ::std::time::Instant) {
                self.rearm();
                for &timer in <$timer as $crate::timer::TimerKind>::ALL {
                    if self.timers.is_expired(timer, now) {
                        self.on_timer(timer, now);
                        self.rearm();
                    }
                }
            }

            fn handle_response(
                &mut self,
                now: ::std::time::Instant,
                id: $crate::machine::RequestId,
                result: ::std::result::Result<$response, $crate::machine::RequestFailure>,
            ) {
                self.on_response(now, id, result);
                self.rearm();
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Timer {
        Revocation,
        Poll,
        Heartbeat,
    }

    impl TimerKind for Timer {
        const ALL: &'static [Timer] = &[Timer::Revocation, Timer::Poll, Timer::Heartbeat];
        fn index(self) -> usize {
            self as usize
        }
    }

    type Table = TimerTable<Timer, 3>;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_armed_has_no_deadline() {
        let t = Table::new();
        assert_eq!(t.next(), None);
        assert_eq!(t.expired(Instant::now()).count(), 0);
        assert_eq!(format!("{t:?}"), "{}");
    }

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let now = Instant::now();
        let mut t = Table::new();
        t.set(Timer::Heartbeat, now + ms(30));
        t.set(Timer::Poll, now + ms(10));
        t.set(Timer::Revocation, now + ms(20));
        assert_eq!(t.next(), Some(now + ms(10)));
        t.stop(Timer::Poll);
        assert_eq!(t.next(), Some(now + ms(20)));
        t.set(Timer::Revocation, now + ms(40));
        assert_eq!(t.next(), Some(now + ms(30)));
        t.set_or_stop(Timer::Heartbeat, None);
        assert_eq!(t.get(Timer::Heartbeat), None);
        assert_eq!(t.next(), Some(now + ms(40)));
    }

    #[test]
    fn expired_lists_due_timers_in_the_kinds_order() {
        let now = Instant::now();
        let mut t = Table::new();
        t.set(Timer::Heartbeat, now);
        t.set(Timer::Poll, now + ms(5));
        t.set(Timer::Revocation, now + ms(1));
        assert_eq!(t.expired(now).collect::<Vec<_>>(), [Timer::Heartbeat]);
        assert_eq!(
            t.expired(now + ms(5)).collect::<Vec<_>>(),
            [Timer::Revocation, Timer::Poll, Timer::Heartbeat]
        );
        assert!(t.is_expired(Timer::Revocation, now + ms(1)));
        assert!(!t.is_expired(Timer::Poll, now + ms(4)));
    }
}
