//! How the producer's task answers whoever waits for a record: a channel of its own for a
//! record sent alone ([`Delivery`](crate::Delivery)), or a slot in the shared results of the
//! records sent together ([`Deliveries`]), which the task fills as they are done and which
//! wakes its waiter once, when the last is.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use crate::error::ProduceError;
use crate::record::Delivered;

/// What one record came to.
pub(crate) type Outcome = Result<Delivered, ProduceError>;

/// Where the outcome of one record goes.
pub(crate) enum Reply {
    /// A record sent alone: its [`Delivery`](crate::Delivery) waits on the other end.
    One(oneshot::Sender<Outcome>),
    /// A record sent with others: its slot among their [`Deliveries`].
    Member(Member),
}

impl Reply {
    /// Gives the record's outcome to whoever waits for it. One who stopped waiting (a future
    /// dropped) reads nothing: the outcome is counted in the producer's stats either way.
    pub(crate) fn answer(self, outcome: Outcome) {
        match self {
            Reply::One(reply) => {
                let _ = reply.send(outcome);
            }
            Reply::Member(member) => member.answer(outcome),
        }
    }
}

/// The results of records sent together, as the task fills them and their waiter reads them.
#[derive(Debug)]
struct Shared {
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

/// One record's place among records sent together: answered once, by the task, or as closed
/// when dropped unanswered (the task gone), so that its group is never left waiting.
pub(crate) struct Member {
    shared: Arc<Shared>,
    index: usize,
    answered: bool,
}

impl Member {
    fn answer(mut self, outcome: Outcome) {
        self.set(outcome);
    }

    fn set(&mut self, outcome: Outcome) {
        self.answered = true;
        let waker = {
            let mut state = self.shared.lock();
            let slot = state.outcomes.get_mut(self.index);
            match slot {
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

impl Drop for Member {
    fn drop(&mut self) {
        if !self.answered {
            self.set(Err(ProduceError::closed()));
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
                shared: shared.clone(),
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
}
