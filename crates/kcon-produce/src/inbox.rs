//! The queue between a producer's handles and its task, and when a handle wakes the task.
//!
//! Every command (a record, records, a flush, a close, a transaction call) goes into one queue,
//! in the order the handles queued them; a doorbell on the task's channel wakes the task to
//! take them. A handle rings only when the task would not look at the queue in time by
//! itself: the task says, before it waits, whether it waits for a batch's `linger.ms` to end
//! ([`Inbox::may_wait`]). A record queued meanwhile loses nothing by waiting for that too: a
//! batch it joins lingers until then at least, and one it opens until later (the task takes
//! the queue before it acts on what woke it). So a producer sending at a moderate rate
//! wakes its task about once per linger, not once per record, and the task takes the records
//! together. A handle rings at once for anything else (a flush, a close, a transaction call),
//! when the task waits for nothing of its own (a reply, or no timer at all), or when the
//! records queued would fill a batch (`batch.size`, `batch.num.messages`).
//!
//! A record left so is stamped with the instant it was queued (the one clock read `send` then
//! makes; a record the task takes at once is stamped when taken): a batch it opens lingers from
//! its send, as the Java client's does, and its timestamp is its send's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::deliveries::{Handout, Single};
use crate::producer::Delivery;
use crate::sender::{Command, Incoming};

/// The most commands the task takes in one round: a round each would partition, batch and
/// look for batches to send once per record; one of unbounded size would hold back the
/// answers it has to give.
pub(crate) const COMMANDS_PER_ROUND: usize = 1024;

/// The doorbell a handle rings: the queue has what the task must take now.
#[derive(Debug)]
pub(crate) struct Ring;

/// The producer's task is gone: a command was not queued.
#[derive(Debug)]
pub(crate) struct Gone;

/// A handle's side: queues commands and rings the task when it must.
#[derive(Debug)]
pub(crate) struct Queue {
    inbox: Arc<Inbox>,
    doorbell: mpsc::UnboundedSender<Ring>,
}

/// The task's side, shared with the handles' [`Queue`].
#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// `batch.size`: queued record bytes that ring the doorbell.
    batch_size: usize,
    /// `batch.num.messages`: queued records that ring it.
    batch_records: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Command>,
    /// The bytes of the records queued (each its size bound).
    bytes: usize,
    /// The records queued.
    records: usize,
    /// The commands queued that are not records.
    urgent: usize,
    /// The task waits for a batch's linger to end, and takes the queue then.
    lingering: bool,
    /// The task's last take left commands queued before it: it takes them before it waits.
    behind: bool,
    /// A doorbell is on its way.
    rung: bool,
    /// The task is gone: nothing more is queued.
    closed: bool,
    /// The slots of records sent alone, handed out as they are queued.
    handout: Handout,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .field("lingering", &self.lingering)
            .field("rung", &self.rung)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Whether the task must take the queue now rather than when its linger ends.
    fn wanted(&self, inbox: &Inbox) -> bool {
        !self.queue.is_empty()
            && (!self.lingering
                || self.urgent > 0
                || self.behind
                || self.bytes >= inbox.batch_size
                || self.records >= inbox.batch_records
                || self.queue.len() >= COMMANDS_PER_ROUND)
    }
}

/// What the task took off the queue.
pub(crate) struct Taken {
    /// The queue is empty now.
    pub(crate) emptied: bool,
}

/// A new queue for a producer of `batch_size` and `batch_records`, the handles' side, and the
/// doorbell's receiving end, which the task waits on.
pub(crate) fn queue(
    batch_size: usize,
    batch_records: usize,
) -> (Queue, Arc<Inbox>, mpsc::UnboundedReceiver<Ring>) {
    let inbox = Arc::new(Inbox {
        state: Mutex::default(),
        batch_size,
        batch_records,
    });
    let (doorbell, rx) = mpsc::unbounded_channel();
    (
        Queue {
            inbox: inbox.clone(),
            doorbell,
        },
        inbox,
        rx,
    )
}

impl Queue {
    /// Queues `command` behind those queued before, waking the task if it must take it now;
    /// fails (dropping it) when the task is gone.
    pub(crate) fn send(&self, command: Command) -> Result<(), Gone> {
        let state = self.inbox.lock();
        if state.closed {
            return Err(Gone);
        }
        self.push(state, command);
        Ok(())
    }

    /// Queues the record `make` makes of the next slot for a record sent alone, and returns
    /// the record's [`Delivery`]: the slot is handed out with the lock that queues the record
    /// held, so that the task takes the slots in the order they were handed out. Fails (making
    /// nothing) when the task is gone.
    pub(crate) fn send_single(
        &self,
        make: impl FnOnce(Single) -> Incoming,
    ) -> Result<Delivery, Gone> {
        let mut state = self.inbox.lock();
        if state.closed {
            return Err(Gone);
        }
        let (single, delivery) = state.handout.next();
        let command = Command::Record(make(single));
        self.push(state, command);
        Ok(delivery)
    }

    /// Queues `command` with the lock held (released here), and rings the task if it must
    /// take it now.
    fn push(&self, mut state: MutexGuard<'_, State>, command: Command) {
        let (records, bytes) = match &command {
            Command::Record(i) => (1, i.size),
            Command::Records(all) => (all.len(), all.iter().map(|i| i.size).sum()),
            _ => (0, 0),
        };
        if records == 0 && !matches!(command, Command::Records(_)) {
            state.urgent += 1;
        }
        state.queue.push_back(command);
        state.records = state.records.saturating_add(records);
        state.bytes = state.bytes.saturating_add(bytes);
        let ring = !state.rung && state.wanted(&self.inbox);
        if ring {
            state.rung = true;
        } else if state.lingering {
            // Left for the linger's end: stamped now, in its place (the lock keeps the
            // queue's order and the stamps' together).
            let at = tokio::time::Instant::now().into_std();
            match state.queue.back_mut() {
                Some(Command::Record(i)) => i.queued = Some(at),
                Some(Command::Records(all)) => all.iter_mut().for_each(|i| i.queued = Some(at)),
                _ => {}
            }
        }
        drop(state);
        if ring {
            // The task gone meanwhile fails what its queue holds when it ends, this included.
            let _ = self.doorbell.send(Ring);
        }
    }
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A handle that panicked mid-push left the queue whole (a push is one call).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// The task took a doorbell: the next command that must wake it rings again.
    pub(crate) fn answered(&self) {
        self.lock().rung = false;
    }

    /// Moves up to [`COMMANDS_PER_ROUND`] commands into `into`, oldest first: records, up to
    /// and including the first command of another kind. The task is awake until it says
    /// otherwise ([`may_wait`](Self::may_wait)).
    pub(crate) fn take(&self, into: &mut VecDeque<Command>) -> Taken {
        let mut state = self.lock();
        state.lingering = false;
        if state.queue.is_empty() {
            state.behind = false;
            return Taken { emptied: true };
        }
        // Records alone, within a round's share: the queue goes whole, its buffer swapped for
        // `into`'s, not moved out command by command (a command is 224 bytes, and the handles
        // wait on the lock meanwhile).
        if state.urgent == 0 && state.queue.len() <= COMMANDS_PER_ROUND && into.is_empty() {
            std::mem::swap(&mut state.queue, into);
            state.records = 0;
            state.bytes = 0;
            state.behind = false;
            return Taken { emptied: true };
        }
        // Records up to the first other command, which ends the round's take: the events the
        // commands before it caused are handed on first (a transaction call's kept outcome
        // reaches its caller, or goes back to the machine, before the next call is taken).
        let n = state
            .queue
            .iter()
            .take(COMMANDS_PER_ROUND)
            .position(|c| !matches!(c, Command::Record(_) | Command::Records(_)))
            .map_or(state.queue.len().min(COMMANDS_PER_ROUND), |i| i + 1);
        let (mut records, mut bytes, mut urgent) = (0usize, 0usize, 0usize);
        for command in state.queue.drain(..n) {
            match &command {
                Command::Record(i) => (records, bytes) = (records + 1, bytes + i.size),
                Command::Records(all) => {
                    records += all.len();
                    bytes += all.iter().map(|i| i.size).sum::<usize>();
                }
                _ => urgent += 1,
            }
            into.push_back(command);
        }
        state.records = state.records.saturating_sub(records);
        state.bytes = state.bytes.saturating_sub(bytes);
        state.urgent = state.urgent.saturating_sub(urgent);
        let emptied = state.queue.is_empty();
        // What is left is taken before the task waits.
        state.behind = !emptied;
        Taken { emptied }
    }

    /// Whether the task may wait now, `lingering` saying whether it waits for a batch's linger
    /// to end (its timer then wakes it by then): not while the queue holds what it must take
    /// at once.
    pub(crate) fn may_wait(&self, lingering: bool) -> bool {
        let mut state = self.lock();
        state.lingering = lingering;
        if state.wanted(self) {
            state.lingering = false;
            return false;
        }
        true
    }

    /// The task ends: nothing more is queued, and what was is given back to be refused.
    pub(crate) fn close(&self) -> VecDeque<Command> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.queue)
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::deliveries::Reply;
    use crate::record::ProducerRecord;

    const BATCH: usize = 1000;

    fn record(size: usize) -> Command {
        let (reply, _) = crate::deliveries::Handout::default().next();
        Command::Record(Incoming {
            record: ProducerRecord::new("t", vec![0u8; size]),
            packed: None,
            size,
            reply: Reply::One(reply),
            room: 0,
            queued: None,
        })
    }

    fn flush() -> Command {
        Command::Flush(oneshot::channel().0)
    }

    /// Doorbells rung since the last look.
    fn rings(doorbell: &mut mpsc::UnboundedReceiver<Ring>) -> usize {
        std::iter::from_fn(|| doorbell.try_recv().ok()).count()
    }

    #[test]
    fn a_task_awake_is_rung_once_until_it_answers() {
        let (queue, inbox, mut doorbell) = super::queue(BATCH, 100);
        queue.send(record(10)).expect("queued");
        queue.send(record(10)).expect("queued");
        assert_eq!(rings(&mut doorbell), 1, "one doorbell for both");
        inbox.answered();
        queue.send(record(10)).expect("queued");
        assert_eq!(rings(&mut doorbell), 1, "answered, it rings again");
        // Waiting for nothing of its own (no linger), the task may not wait on what is queued.
        assert!(!inbox.may_wait(false));
    }

    #[test]
    fn while_the_task_lingers_records_wait_until_they_would_fill_a_batch() {
        let (queue, inbox, mut doorbell) = super::queue(BATCH, 100);
        let before = std::time::Instant::now();
        assert!(inbox.may_wait(true));
        for _ in 0..4 {
            queue.send(record(200)).expect("queued");
        }
        assert_eq!(
            rings(&mut doorbell),
            0,
            "800 bytes: the linger's end is soon enough"
        );
        assert!(inbox.may_wait(true), "looked at again, it may still wait");
        queue.send(record(200)).expect("queued");
        assert_eq!(rings(&mut doorbell), 1, "1000 bytes fill a batch");
        let mut taken = VecDeque::new();
        let t = inbox.take(&mut taken);
        assert_eq!(taken.len(), 5);
        assert!(t.emptied);
        // Each left record stamped when it was queued; the one that rang, when taken.
        let stamps: Vec<Option<std::time::Instant>> = taken
            .iter()
            .map(|c| match c {
                Command::Record(i) => i.queued,
                _ => None,
            })
            .collect();
        assert!(
            stamps[..4].iter().all(|s| s.is_some_and(|at| at >= before)),
            "{stamps:?}"
        );
        assert!(stamps[..4].is_sorted(), "{stamps:?}");
        assert_eq!(stamps[4], None);
        inbox.answered();
        // Taken, the bytes counted start over; the task is awake until it says otherwise.
        assert!(inbox.may_wait(true));
        queue.send(record(200)).expect("queued");
        assert_eq!(rings(&mut doorbell), 0);
    }

    #[test]
    fn while_the_task_lingers_a_record_count_or_a_flush_rings_at_once() {
        let (queue, inbox, mut doorbell) = super::queue(BATCH, 3);
        assert!(inbox.may_wait(true));
        queue.send(record(1)).expect("queued");
        queue.send(record(1)).expect("queued");
        assert_eq!(rings(&mut doorbell), 0);
        queue.send(record(1)).expect("queued");
        assert_eq!(rings(&mut doorbell), 1, "batch.num.messages reached");

        let (queue, inbox, mut doorbell) = super::queue(BATCH, 100);
        assert!(inbox.may_wait(true));
        queue.send(record(1)).expect("queued");
        queue.send(flush()).expect("queued");
        assert_eq!(rings(&mut doorbell), 1, "a flush does not wait");
        assert!(
            !inbox.may_wait(true),
            "nor does the task, with a flush queued"
        );
        let mut taken = VecDeque::new();
        inbox.take(&mut taken);
        assert!(
            matches!(
                taken.make_contiguous(),
                [Command::Record(_), Command::Flush(_)]
            ),
            "in the order queued"
        );
    }

    #[test]
    fn a_round_takes_records_up_to_the_first_other_command_and_the_rest_next() {
        let (queue, inbox, _doorbell) = super::queue(BATCH, 100);
        for command in [record(1), flush(), flush(), record(1)] {
            queue.send(command).expect("queued");
        }
        let mut taken = VecDeque::new();
        assert!(!inbox.take(&mut taken).emptied);
        assert!(matches!(
            taken.make_contiguous(),
            [Command::Record(_), Command::Flush(_)]
        ));
        assert!(
            !inbox.may_wait(true),
            "the rest is taken before the task waits"
        );
        taken.clear();
        assert!(!inbox.take(&mut taken).emptied);
        assert!(matches!(taken.make_contiguous(), [Command::Flush(_)]));
        taken.clear();
        assert!(inbox.take(&mut taken).emptied);
        assert!(matches!(taken.make_contiguous(), [Command::Record(_)]));
    }

    #[test]
    fn a_round_takes_at_most_its_share_and_the_task_looks_again_before_waiting() {
        let (queue, inbox, _doorbell) = super::queue(usize::MAX, usize::MAX);
        for _ in 0..COMMANDS_PER_ROUND + 5 {
            queue.send(record(1)).expect("queued");
        }
        let mut taken = VecDeque::new();
        let t = inbox.take(&mut taken);
        assert_eq!(taken.len(), COMMANDS_PER_ROUND);
        assert!(!t.emptied);
        assert!(
            !inbox.may_wait(true),
            "what is left is taken before the task waits"
        );
        taken.clear();
        assert!(inbox.take(&mut taken).emptied);
        assert_eq!(taken.len(), 5);
        assert!(inbox.may_wait(true));
    }

    #[test]
    fn once_the_task_is_gone_nothing_is_queued_and_what_was_is_given_back() {
        let (queue, inbox, _doorbell) = super::queue(BATCH, 100);
        queue.send(record(1)).expect("queued");
        assert_eq!(inbox.close().len(), 1);
        assert!(queue.send(record(1)).is_err());
        assert!(inbox.is_empty());
    }
}
