//! How the producer's task answers whoever waits for a record: a slot of its own for a record
//! sent alone ([`Delivery`](crate::Delivery)), or a slot in the shared results of the records
//! sent together ([`Deliveries`]), which the task fills as they are done and which wakes its
//! waiter once, when the last is.
//!
//! The slots of records sent alone are made [`GROUP`] at a time, for the records sent one
//! after another: one allocation, not one per record, and a slot the size of its outcome. An
//! application that reads its deliveries in the order it sent them holds every one done
//! behind the oldest still waiting (hundreds of thousands, when one partition's batch comes
//! back after the others'), so what a delivery holds once done is most of what a fast
//! producer takes beside its records.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::ProduceError;
use crate::record::Delivered;

/// What one record came to.
pub(crate) type Outcome = Result<Delivered, ProduceError>;

/// Where the outcome of one record goes.
pub(crate) enum Reply {
    /// A record sent alone: its [`Delivery`](crate::Delivery) waits on the other end.
    One(Single),
    /// A record sent with others: its slot among their [`Deliveries`].
    Member(Member),
}

impl Reply {
    /// Gives the record's outcome to whoever waits for it. One who stopped waiting (a future
    /// dropped) reads nothing: the outcome is counted in the producer's stats either way.
    pub(crate) fn answer(self, outcome: Outcome) {
        match self {
            Reply::One(single) => single.answer(outcome),
            Reply::Member(member) => member.answer(outcome),
        }
    }
}

/// How many records sent alone share one allocation of slots.
pub(crate) const GROUP: usize = 64;

/// The slots of records sent alone, handed out in turn: the group being handed out, and the
/// next of its slots.
#[derive(Debug, Default)]
pub(crate) struct Singles {
    current: Mutex<Option<(Arc<Group>, usize)>>,
}

impl Singles {
    /// The next slot: the task's end and the application's.
    pub(crate) fn next(&self) -> (Single, crate::producer::Delivery) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (group, index) = match current.take() {
            Some((group, index)) if index < GROUP => (group, index),
            _ => (Arc::new(Group::new()), 0),
        };
        *current = Some((group.clone(), index + 1));
        drop(current);
        let single = Single {
            group: group.clone(),
            index,
            answered: false,
        };
        (single, crate::producer::Delivery::new(group, index))
    }
}

/// The slots of up to [`GROUP`] records sent alone.
#[derive(Debug)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    /// Bit `i` is set while slot `i` holds an outcome not read yet: written with the lock
    /// held, read without it, so that asking after a delivery still waiting (`try_outcome`,
    /// once per send in a loop that reads its deliveries as they are done) takes no lock the
    /// task fills the slots under.
    filled: AtomicU64,
}

// One bit of `Group::filled` per slot.
const _: () = assert!(GROUP <= 64);

#[derive(Debug)]
struct GroupState {
    /// Each record's outcome, once known and until read.
    outcomes: Vec<Option<Outcome>>,
    /// The deliveries waiting: their slot, and who to wake.
    waiting: Vec<(usize, Waker)>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: Mutex::new(GroupState {
                outcomes: (0..GROUP).map(|_| None).collect(),
                waiting: Vec::new(),
            }),
            filled: AtomicU64::new(0),
        }
    }

    /// The state, even if a thread panicked holding it: every write leaves it whole.
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Slot `index`'s outcome, taken, if it has one.
    pub(crate) fn take(&self, index: usize) -> Option<Outcome> {
        if self.filled.load(Ordering::Acquire) & bit(index) == 0 {
            return None;
        }
        let mut state = self.lock();
        self.taken(&mut state, index)
    }

    /// Slot `index`'s outcome taken out, its bit in `filled` cleared; with the lock held.
    fn taken(&self, state: &mut GroupState, index: usize) -> Option<Outcome> {
        let outcome = state.outcomes.get_mut(index).and_then(Option::take)?;
        // Written only with the lock held: no other write comes between the load and the store.
        let filled = self.filled.load(Ordering::Relaxed);
        self.filled.store(filled & !bit(index), Ordering::Relaxed);
        Some(outcome)
    }

    /// Slot `index`'s outcome, taken, or `waker` kept to be woken when it comes.
    pub(crate) fn poll(&self, index: usize, waker: &Waker) -> Poll<Outcome> {
        let mut state = self.lock();
        if let Some(outcome) = self.taken(&mut state, index) {
            return Poll::Ready(outcome);
        }
        match state.waiting.iter_mut().find(|(i, _)| *i == index) {
            Some((_, w)) if w.will_wake(waker) => {}
            Some((_, w)) => w.clone_from(waker),
            None => state.waiting.push((index, waker.clone())),
        }
        Poll::Pending
    }
}

impl Outcomes for Group {
    /// Fills slot `index` and wakes its delivery, if it waits.
    fn fill(&self, index: usize, outcome: Outcome) {
        let waker = {
            let mut state = self.lock();
            match state.outcomes.get_mut(index) {
                Some(slot) => *slot = Some(outcome),
                None => return,
            }
            // Released after the outcome is in its slot: a reader that sees the bit then
            // takes the lock, and the outcome with it.
            let filled = self.filled.load(Ordering::Relaxed);
            self.filled.store(filled | bit(index), Ordering::Release);
            let at = state.waiting.iter().position(|(i, _)| *i == index);
            at.map(|at| state.waiting.swap_remove(at).1)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Slot `index`'s bit in [`Group::filled`].
fn bit(index: usize) -> u64 {
    1 << (index % GROUP)
}

/// Where the outcomes of a group of records go: slots by index, filled by the task.
pub(crate) trait Outcomes {
    /// Fills slot `index` with `outcome`, waking whoever waits for it.
    fn fill(&self, index: usize, outcome: Outcome);
}

/// One record's slot in a group, as the task holds it: answered once, or as closed when
/// dropped unanswered (the task gone), so that whoever waits for it is never left waiting.
pub(crate) struct Slot<G: Outcomes> {
    group: Arc<G>,
    index: usize,
    answered: bool,
}

impl<G: Outcomes> Slot<G> {
    fn answer(mut self, outcome: Outcome) {
        self.set(outcome);
    }

    fn set(&mut self, outcome: Outcome) {
        self.answered = true;
        self.group.fill(self.index, outcome);
    }
}

impl<G: Outcomes> Drop for Slot<G> {
    fn drop(&mut self) {
        if !self.answered {
            self.set(Err(ProduceError::closed()));
        }
    }
}

/// The slot of a record sent alone.
pub(crate) type Single = Slot<Group>;

/// One record's place among records sent together.
pub(crate) type Member = Slot<Shared>;

/// The results of records sent together, as the task fills them and their waiter reads them.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Each record's outcome, in the order they were given, once known.
    outcomes: Vec<Option<Outcome>>,
    /// Records whose outcome is not known yet.
    remaining: usize,
    /// Who to wake when the last is known.
    waker: Option<Waker>,
}

impl Shared {
    /// The state, even if a thread panicked holding it: every write leaves it whole.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outcomes for Shared {
    /// Fills slot `index` unless it was filled already, and wakes the waiter once the last is.
    fn fill(&self, index: usize, outcome: Outcome) {
        let waker = {
            let mut state = self.lock();
            match state.outcomes.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(outcome);
                    state.remaining -= 1;
                }
                // Answered already, or not a slot of the group: nothing changes.
                _ => return,
            }
            if state.remaining == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The results of one [`Producer::send_all`](crate::Producer::send_all): resolves, once every
/// record of the call is done, to each record's [`Delivered`] or error, in the order the
/// records were given.
///
/// One wait for all of them, where a [`Delivery`](crate::Delivery) per record would be
/// answered and woken once each.
///
/// # Cancel safety
///
/// Cancel-safe: dropping it does not withdraw the records, which are sent all the same (and
/// counted in [`Producer::metrics`](crate::Producer::metrics)); only their outcomes go unread.
#[must_use = "deliveries say whether the records were written"]
pub struct Deliveries {
    shared: Arc<Shared>,
    len: usize,
}

impl Deliveries {
    /// Results for `len` records, and the slot of each.
    pub(crate) fn new(len: usize) -> (Deliveries, Vec<Member>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                outcomes: (0..len).map(|_| None).collect(),
                remaining: len,
                waker: None,
            }),
        });
        let members = (0..len)
            .map(|index| Member {
                group: shared.clone(),
                index,
                answered: false,
            })
            .collect();
        (Deliveries { shared, len }, members)
    }

    /// How many records were sent together.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the call sent no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The outcomes if every record is done, without waiting; the deliveries themselves, to
    /// await or ask again, while one is not.
    pub fn try_outcomes(self) -> Result<Vec<Result<Delivered, ProduceError>>, Deliveries> {
        let outcomes = {
            let mut state = self.shared.lock();
            if state.remaining > 0 {
                None
            } else {
                Some(take(&mut state))
            }
        };
        outcomes.ok_or(self)
    }
}

/// Every outcome, the state left empty.
fn take(state: &mut State) -> Vec<Outcome> {
    state
        .outcomes
        .drain(..)
        .map(|o| o.unwrap_or_else(|| Err(ProduceError::closed())))
        .collect()
}

impl Future for Deliveries {
    type Output = Vec<Result<Delivered, ProduceError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if state.remaining == 0 {
            return Poll::Ready(take(&mut state));
        }
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remaining = self.shared.lock().remaining;
        f.debug_struct("Deliveries")
            .field("len", &self.len)
            .field("remaining", &remaining)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn delivered(offset: i64) -> Delivered {
        Delivered {
            topic: "t".into(),
            partition: 0,
            offset: Some(offset),
            timestamp: 1,
        }
    }

    /// The results come in the order the records were given, whatever order they are done
    /// in, and only once all are; a slot dropped unanswered reads as closed, and a slot
    /// answered twice keeps its first outcome.
    #[tokio::test]
    async fn records_sent_together_resolve_once_all_are_done_in_their_order() {
        let (deliveries, members) = Deliveries::new(3);
        assert_eq!(deliveries.len(), 3);
        let mut members = members.into_iter();
        let (first, second, third) = (
            members.next().unwrap(),
            members.next().unwrap(),
            members.next().unwrap(),
        );
        third.answer(Ok(delivered(12)));
        first.answer(Ok(delivered(10)));
        let deliveries = deliveries.try_outcomes().expect_err("one is not done");
        let waiting = tokio::spawn(deliveries);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(second);
        let outcomes = waiting.await.unwrap();
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].as_ref().unwrap().offset, Some(10));
        assert_eq!(
            outcomes[1].as_ref().unwrap_err().kind(),
            ErrorKind::Closed,
            "dropped unanswered"
        );
        assert_eq!(outcomes[2].as_ref().unwrap().offset, Some(12));

        let (deliveries, members) = Deliveries::new(1);
        let mut members = members;
        let mut only = members.pop().unwrap();
        only.set(Ok(delivered(1)));
        only.set(Ok(delivered(2)));
        drop(only);
        let outcomes = deliveries.try_outcomes().expect("done");
        assert_eq!(outcomes[0].as_ref().unwrap().offset, Some(1));

        let (none, members) = Deliveries::new(0);
        assert!(members.is_empty() && none.is_empty());
        assert!(none.await.is_empty());
    }

    /// Records sent alone one after another share a group of slots, a new one after
    /// [`GROUP`]; each delivery reads its own slot, woken when its outcome comes, whatever
    /// order they come in; one whose slot is dropped unanswered reads as closed.
    #[tokio::test]
    async fn records_sent_alone_share_groups_of_slots_and_each_reads_its_own() {
        let singles = Singles::default();
        let mut slots: Vec<_> = (0..GROUP + 2).map(|_| singles.next()).collect();
        assert!(Arc::ptr_eq(&slots[0].0.group, &slots[GROUP - 1].0.group));
        assert!(!Arc::ptr_eq(&slots[0].0.group, &slots[GROUP].0.group));
        assert_eq!(slots[GROUP + 1].0.index, 1);

        let (last, last_delivery) = slots.pop().unwrap();
        let (closed, closed_delivery) = slots.pop().unwrap();
        let (second, second_delivery) = slots.remove(1);
        let (first, first_delivery) = slots.remove(0);
        let waiting = tokio::spawn(first_delivery);
        tokio::task::yield_now().await;
        second.answer(Ok(delivered(2)));
        assert!(!waiting.is_finished(), "woken by another slot's outcome");
        first.answer(Ok(delivered(1)));
        assert_eq!(waiting.await.unwrap().unwrap().offset, Some(1));
        match second_delivery.try_outcome() {
            Ok(Ok(d)) => assert_eq!(d.offset, Some(2)),
            other => panic!("not the second's: {other:?}"),
        }
        drop(closed);
        match closed_delivery.try_outcome() {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("not closed: {other:?}"),
        }
        let last_delivery = last_delivery.try_outcome().expect_err("not answered yet");
        last.answer(Ok(delivered(9)));
        assert_eq!(last_delivery.await.unwrap().offset, Some(9));
    }

    /// A slot's bit says whether it holds an outcome not read yet, however it is read: set
    /// when it is filled, cleared when `take` or `poll` reads it, never set for a slot outside
    /// the group.
    #[test]
    fn a_slots_bit_follows_its_outcome() {
        let group = Group::new();
        let filled = || group.filled.load(Ordering::Relaxed);
        assert!(group.take(5).is_none(), "nothing yet");
        group.fill(5, Ok(delivered(5)));
        group.fill(GROUP - 1, Ok(delivered(63)));
        group.fill(GROUP + 3, Ok(delivered(0)));
        assert_eq!(filled(), bit(5) | bit(GROUP - 1));
        assert_eq!(group.take(5).unwrap().unwrap().offset, Some(5));
        assert!(group.take(5).is_none(), "read once");
        assert_eq!(filled(), bit(GROUP - 1));
        let waker = Waker::noop();
        match group.poll(GROUP - 1, waker) {
            Poll::Ready(Ok(d)) => assert_eq!(d.offset, Some(63)),
            other => panic!("not the last slot's: {other:?}"),
        }
        assert_eq!(filled(), 0);
        assert!(group.poll(GROUP - 1, waker).is_pending());
    }
}
