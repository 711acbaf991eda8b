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
//!
//! A record sent alone carries its group's number to the task, not a reference to the group
//! (but for a group's first record, which carries the group's [`Writer`]): the task finds the
//! group among those it holds open ([`OpenGroups`]), so that no reference count is changed by
//! both the sending thread and the task for every record.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
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
    /// The record is answered through the task's `open` groups, which took its group's
    /// [`Writer`] first ([`Reply::open`]).
    pub(crate) fn answer(self, outcome: Outcome, open: &mut OpenGroups) {
        match self {
            Reply::One(single) => answer(&mut open.groups, single, outcome),
            Reply::Member(member) => answer(&mut open.calls, member, outcome),
        }
    }

    /// Hands the group a record sent alone opens, or the call a record sent with others
    /// opens, if it opens one, to the task's `open` groups: called for every record in the
    /// order the records were queued, before any is answered.
    pub(crate) fn open(&mut self, open: &mut OpenGroups) {
        match self {
            Reply::One(single) => {
                if let Some(writer) = single.opens.take() {
                    open.groups.insert(single.number, writer);
                }
            }
            Reply::Member(member) => {
                if let Some(writer) = member.opens.take() {
                    open.calls.insert(member.number, writer);
                }
            }
        }
    }
}

/// How many records sent alone share one allocation of slots.
pub(crate) const GROUP: usize = 64;

/// The slots of records sent alone, handed out in turn by the handles, under the lock that
/// queues the records (so that the task takes the slots in the order they were handed out):
/// the group being handed out, its number, and the next of its slots.
#[derive(Debug, Default)]
pub(crate) struct Handout {
    current: Option<Arc<Group>>,
    /// The current group's number; groups are numbered from 0 as they are made.
    number: u64,
    next: usize,
}

impl Handout {
    /// The next slot: the task's end and the application's. The first slot of a group carries
    /// the group's [`Writer`] to the task; the others only the group's number, so that the
    /// sending thread and the task change no reference count per record between them (the
    /// application's [`Delivery`](crate::Delivery) holds one, which only its thread changes).
    pub(crate) fn next(&mut self) -> (Single, crate::producer::Delivery) {
        let (group, opens) = match &self.current {
            Some(group) if self.next < GROUP => (group.clone(), None),
            current => {
                if current.is_some() {
                    self.number += 1;
                }
                let group = Arc::new(Group::new());
                self.current = Some(group.clone());
                self.next = 0;
                (group.clone(), Some(Writer(group)))
            }
        };
        let index = self.next;
        self.next += 1;
        let single = Single {
            number: self.number,
            index,
            opens,
        };
        (single, crate::producer::Delivery::new(group, index))
    }
}

/// One record's place, as the task holds it: the number of its group of slots (a [`Group`]
/// of records sent alone, or the [`Shared`] results of one `send_all` call) and its slot
/// there. The first record of a group (the first queued, for a call) also carries the
/// group's [`Writer`]; the others only the number, by which the task finds the group.
pub(crate) struct Place<S: Slots> {
    number: u64,
    index: usize,
    opens: Option<Writer<S>>,
}

/// A record sent alone.
pub(crate) type Single = Place<Group>;

/// A record sent with others.
pub(crate) type Member = Place<Shared>;

/// Slots the task answers records through.
pub(crate) trait Slots {
    /// How many slots there are.
    fn len(&self) -> usize;

    /// Fills slot `index` with the outcome `outcome` makes, unless it was answered before,
    /// waking whoever waits for it; whether every slot is answered now, with this one.
    fn fill(&self, index: usize, outcome: impl FnOnce() -> Outcome) -> bool;

    /// Whether every slot is answered.
    fn all_answered(&self) -> bool;

    /// Answers every slot not answered yet as closed (the task gone), waking who waits. A
    /// group let go because all its slots are answered costs one look.
    fn close_unanswered(&self) {
        if self.all_answered() {
            return;
        }
        for index in 0..self.len() {
            if self.fill(index, || Err(ProduceError::closed())) {
                return;
            }
        }
    }
}

/// The task's hold on a group of slots: when it is dropped, every slot not answered is
/// answered as closed, so that no delivery is left waiting once the task is gone (or a
/// command that opened the group was dropped before the task took it).
#[derive(Debug)]
pub(crate) struct Writer<S: Slots>(Arc<S>);

impl<S: Slots> Drop for Writer<S> {
    fn drop(&mut self) {
        self.0.close_unanswered();
    }
}

/// The groups of slots the task answers records through, by number (the groups of records
/// sent alone, and the `send_all` calls): each from its first record taken (in queue order)
/// until all its slots are answered. Dropped with the task, it answers every slot left as
/// closed.
///
/// Kept in a map rather than in order: a group with one record still waiting (a partition
/// whose leader is away) must not hold the many groups after it, all answered.
#[derive(Debug, Default)]
pub(crate) struct OpenGroups {
    /// The groups of records sent alone with slots not answered yet, by number.
    groups: HashMap<u64, Writer<Group>, BuildHasherDefault<NumberHasher>>,
    /// The `send_all` calls with records not answered yet, by number.
    calls: HashMap<u64, Writer<Shared>, BuildHasherDefault<NumberHasher>>,
}

impl OpenGroups {
    /// How many groups of records sent alone are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.len()
    }
}

/// Answers `place` with `outcome` through its group among those `open`; a group all of whose
/// slots are answered is let go. A record whose group is not open (not possible: its group
/// opened with an earlier record, or this one, and closes only once this one is answered)
/// reads nothing.
fn answer<S: Slots>(
    open: &mut HashMap<u64, Writer<S>, BuildHasherDefault<NumberHasher>>,
    place: Place<S>,
    outcome: Outcome,
) {
    let Place {
        number,
        index,
        opens,
    } = place;
    // Opened when it was taken; one answered without being taken opens it here.
    if let Some(writer) = opens {
        open.insert(number, writer);
    }
    if let Some(writer) = open.get(&number)
        && writer.0.fill(index, || outcome)
    {
        open.remove(&number);
    }
}

/// Hashes a group's number with one multiplication: numbers are consecutive, and a product
/// by an odd constant keeps their low bits apart and spreads them into the high ones.
#[derive(Default)]
pub(crate) struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
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
    /// Bit `i` is set once slot `i` was answered (read since, or not).
    answered: u64,
    /// The deliveries waiting: their slot, and who to wake.
    waiting: Vec<(usize, Waker)>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: Mutex::new(GroupState {
                outcomes: (0..GROUP).map(|_| None).collect(),
                answered: 0,
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

impl Slots for Group {
    fn len(&self) -> usize {
        GROUP
    }

    fn all_answered(&self) -> bool {
        self.lock().answered == ALL_ANSWERED
    }

    fn fill(&self, index: usize, outcome: impl FnOnce() -> Outcome) -> bool {
        let (waker, all) = {
            let mut state = self.lock();
            if index >= GROUP || state.answered & bit(index) != 0 {
                return false;
            }
            state.outcomes[index] = Some(outcome());
            state.answered |= bit(index);
            // Released after the outcome is in its slot: a reader that sees the bit then
            // takes the lock, and the outcome with it.
            let filled = self.filled.load(Ordering::Relaxed);
            self.filled.store(filled | bit(index), Ordering::Release);
            let at = state.waiting.iter().position(|(i, _)| *i == index);
            let waker = at.map(|at| state.waiting.swap_remove(at).1);
            (waker, state.answered == ALL_ANSWERED)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        all
    }
}

/// [`GroupState::answered`] once every slot is.
const ALL_ANSWERED: u64 = u64::MAX >> (64 - GROUP);

/// Slot `index`'s bit in [`Group::filled`].
fn bit(index: usize) -> u64 {
    1 << (index % GROUP)
}

/// The numbers of `send_all` calls: unique in the process, so that the task, which holds the
/// calls of one producer, never takes one for another.
static CALLS: AtomicU64 = AtomicU64::new(0);

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

impl Slots for Shared {
    fn len(&self) -> usize {
        self.lock().outcomes.len()
    }

    fn all_answered(&self) -> bool {
        self.lock().remaining == 0
    }

    /// Wakes the waiter once the last slot is filled.
    fn fill(&self, index: usize, outcome: impl FnOnce() -> Outcome) -> bool {
        let waker = {
            let mut state = self.lock();
            match state.outcomes.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(outcome());
                    state.remaining -= 1;
                }
                // Answered already, or not a slot of the group: nothing changes.
                _ => return false,
            }
            if state.remaining > 0 {
                return false;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
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
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let members = (0..len)
            .map(|index| Member {
                number: call,
                index,
                opens: None,
            })
            .collect();
        (Deliveries { shared, len }, members)
    }

    /// Answers `member` here, on the sending side: a record refused before it was queued.
    pub(crate) fn refuse(&self, member: Member, outcome: Outcome) {
        self.shared.fill(member.index, || outcome);
    }

    /// Makes `member`, the first of the call's records queued, carry the call's [`Writer`] to
    /// the task.
    pub(crate) fn hand_over(&self, member: &mut Member) {
        member.opens = Some(Writer(self.shared.clone()));
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
    /// in, and only once all are; the call's first record carries it to the task, which lets
    /// it go once all are answered; a record answered twice keeps its first outcome; what is
    /// left unanswered when the task's calls are dropped (the task gone) reads as closed; a
    /// record refused before it was queued is answered on the sending side.
    #[tokio::test]
    async fn records_sent_together_resolve_once_all_are_done_in_their_order() {
        let mut open = OpenGroups::default();
        let (deliveries, members) = Deliveries::new(3);
        assert_eq!(deliveries.len(), 3);
        let mut members = members.into_iter();
        let (mut first, second, third) = (
            members.next().unwrap(),
            members.next().unwrap(),
            members.next().unwrap(),
        );
        deliveries.hand_over(&mut first);
        let mut first = Reply::Member(first);
        first.open(&mut open);
        assert_eq!(open.calls.len(), 1);
        Reply::Member(third).answer(Ok(delivered(12)), &mut open);
        first.answer(Ok(delivered(10)), &mut open);
        let deliveries = deliveries.try_outcomes().expect_err("one is not done");
        let waiting = tokio::spawn(deliveries);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let again = Member {
            number: second.number,
            index: second.index,
            opens: None,
        };
        Reply::Member(second).answer(Ok(delivered(11)), &mut open);
        assert!(open.calls.is_empty(), "let go once all are answered");
        Reply::Member(again).answer(Ok(delivered(99)), &mut open);
        let outcomes = waiting.await.unwrap();
        let offsets: Vec<_> = outcomes
            .iter()
            .map(|o| o.as_ref().unwrap().offset)
            .collect();
        assert_eq!(offsets, [Some(10), Some(11), Some(12)]);

        let (deliveries, members) = Deliveries::new(3);
        let mut members = members.into_iter();
        let refused = members.next().unwrap();
        deliveries.refuse(refused, Err(ProduceError::closed()));
        let mut first = members.next().unwrap();
        deliveries.hand_over(&mut first);
        let mut first = Reply::Member(first);
        first.open(&mut open);
        first.answer(Ok(delivered(1)), &mut open);
        let deliveries = deliveries.try_outcomes().expect_err("one is not done");
        drop(open);
        let outcomes = deliveries.try_outcomes().expect("closed with the task");
        assert!(outcomes[0].is_err(), "refused");
        assert_eq!(outcomes[1].as_ref().unwrap().offset, Some(1));
        assert_eq!(
            outcomes[2].as_ref().unwrap_err().kind(),
            ErrorKind::Closed,
            "left unanswered"
        );

        let (none, members) = Deliveries::new(0);
        assert!(members.is_empty() && none.is_empty());
        assert!(none.await.is_empty());
    }

    /// Records sent alone one after another share a group of slots, a new one after
    /// [`GROUP`], whose first slot carries its writer; each delivery reads its own slot, woken
    /// when its outcome comes, whatever order they come in; a group is let go once all its
    /// slots are answered, and every slot left unanswered reads as closed once the task's
    /// groups are dropped (the task gone).
    #[tokio::test]
    async fn records_sent_alone_share_groups_of_slots_and_each_reads_its_own() {
        let mut handout = Handout::default();
        let mut open = OpenGroups::default();
        let mut slots: Vec<_> = (0..2 * GROUP + 2).map(|_| handout.next()).collect();
        let opens: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].0.opens.is_some())
            .collect();
        assert_eq!(
            opens,
            [0, GROUP, 2 * GROUP],
            "each group's first slot opens it"
        );
        assert!(Arc::ptr_eq(&slots[0].1.group, &slots[GROUP - 1].1.group));
        assert!(!Arc::ptr_eq(&slots[0].1.group, &slots[GROUP].1.group));
        assert_eq!(
            (slots[GROUP + 1].0.number, slots[GROUP + 1].0.index),
            (1, 1)
        );
        for (single, _) in &mut slots {
            if let Some(writer) = single.opens.take() {
                open.groups.insert(single.number, writer);
            }
        }
        assert_eq!(open.len(), 3);

        // The second group, answered whole, last slot first: let go, its deliveries read.
        let second: Vec<_> = slots.drain(GROUP..2 * GROUP).collect();
        let mut deliveries = Vec::new();
        for (i, (single, delivery)) in second.into_iter().enumerate().rev() {
            Reply::One(single).answer(Ok(delivered(100 + i as i64)), &mut open);
            deliveries.push((i, delivery));
        }
        assert_eq!(open.len(), 2, "a group all answered is let go");
        for (i, delivery) in deliveries {
            match delivery.try_outcome() {
                Ok(Ok(d)) => assert_eq!(d.offset, Some(100 + i as i64)),
                other => panic!("not slot {i}'s: {other:?}"),
            }
        }

        let (last, last_delivery) = slots.pop().unwrap();
        let (_third, third_delivery) = slots.pop().unwrap();
        let (second, second_delivery) = slots.remove(1);
        let (first, first_delivery) = slots.remove(0);
        let waiting = tokio::spawn(first_delivery);
        tokio::task::yield_now().await;
        Reply::One(second).answer(Ok(delivered(2)), &mut open);
        assert!(!waiting.is_finished(), "woken by another slot's outcome");
        Reply::One(first).answer(Ok(delivered(1)), &mut open);
        assert_eq!(waiting.await.unwrap().unwrap().offset, Some(1));
        match second_delivery.try_outcome() {
            Ok(Ok(d)) => assert_eq!(d.offset, Some(2)),
            other => panic!("not the second's: {other:?}"),
        }
        let last_delivery = last_delivery.try_outcome().expect_err("not answered yet");
        Reply::One(last).answer(Ok(delivered(9)), &mut open);
        assert_eq!(last_delivery.await.unwrap().offset, Some(9));

        // The task gone: what it held unanswered reads as closed, waiters woken; what was
        // answered keeps its outcome.
        let left = slots.pop().expect("the first group's last slot");
        let waiting = tokio::spawn(left.1);
        tokio::task::yield_now().await;
        drop(open);
        match waiting.await.unwrap() {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("not closed: {other:?}"),
        }
        match third_delivery.try_outcome() {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("not closed: {other:?}"),
        }
    }

    /// A slot answered twice keeps its first outcome and counts once; a group opened by a
    /// record the task never took (its command dropped) answers its slots as closed.
    #[test]
    fn a_slot_is_answered_once_and_a_group_never_taken_closes_its_slots() {
        let mut handout = Handout::default();
        let mut open = OpenGroups::default();
        let (first, first_delivery) = handout.next();
        let copy = Single {
            number: first.number,
            index: first.index,
            opens: None,
        };
        Reply::One(first).answer(Ok(delivered(1)), &mut open);
        Reply::One(copy).answer(Ok(delivered(2)), &mut open);
        match first_delivery.try_outcome() {
            Ok(Ok(d)) => assert_eq!(d.offset, Some(1)),
            other => panic!("not the first outcome: {other:?}"),
        }
        // Counted once: the group stays open until each of its other slots is answered.
        let rest: Vec<_> = (1..GROUP).map(|_| handout.next()).collect();
        for (i, (single, _)) in rest.into_iter().enumerate() {
            assert_eq!(open.len(), 1, "let go after {i} more slots");
            Reply::One(single).answer(Ok(delivered(i as i64)), &mut open);
        }
        assert_eq!(open.len(), 0, "let go once every slot is answered");

        let mut other = Handout::default();
        let (opener, _) = other.next();
        let (_, delivery) = other.next();
        drop(opener);
        match delivery.try_outcome() {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("not closed: {other:?}"),
        }
    }

    /// A slot's bit says whether it holds an outcome not read yet, however it is read: set
    /// when it is filled, cleared when `take` or `poll` reads it, never set for a slot outside
    /// the group.
    #[test]
    fn a_slots_bit_follows_its_outcome() {
        let group = Group::new();
        let filled = || group.filled.load(Ordering::Relaxed);
        assert!(group.take(5).is_none(), "nothing yet");
        group.fill(5, || Ok(delivered(5)));
        group.fill(GROUP - 1, || Ok(delivered(63)));
        group.fill(GROUP + 3, || Ok(delivered(0)));
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

    /// Deliveries awaited on one thread while the task sets their slots on another, in any
    /// order: every one resolves to its own outcome (no wake-up lost between a delivery that
    /// leaves its waker and a slot set meanwhile).
    #[test]
    fn deliveries_awaited_while_another_thread_sets_them_all_resolve() {
        let mut handout = Handout::default();
        let sent: Vec<_> = (0..200 * GROUP).map(|_| handout.next()).collect();
        let (singles, deliveries): (Vec<_>, Vec<_>) = sent.into_iter().unzip();
        let task = std::thread::spawn(move || {
            let mut open = OpenGroups::default();
            let mut singles: Vec<_> = singles.into_iter().enumerate().collect();
            for (_, single) in &mut singles {
                if let Some(writer) = single.opens.take() {
                    open.groups.insert(single.number, writer);
                }
            }
            // In groups of three: the last first.
            singles.sort_by_key(|(i, _)| (i / 3, std::cmp::Reverse(*i)));
            for (i, single) in singles {
                Reply::One(single).answer(Ok(delivered(i as i64)), &mut open);
            }
            assert_eq!(open.len(), 0, "every group answered whole and let go");
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            for (i, delivery) in deliveries.into_iter().enumerate() {
                let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), delivery)
                    .await
                    .unwrap_or_else(|_| panic!("delivery {i} not woken"));
                assert_eq!(outcome.unwrap().offset, Some(i as i64));
            }
        });
        task.join().unwrap();
    }
}
