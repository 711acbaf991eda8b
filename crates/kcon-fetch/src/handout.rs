//! The fetcher's side that faces the application, sans-IO: what it does with the fetch task's
//! events before handing them out.
//!
//! The fetch task runs ahead of the application: records it sent before it applied a seek, an
//! unassignment or a pause are already on their way. [`Handout`] sorts them out in the order
//! the application's commands were given:
//! - a seek or an unassignment fences its partitions: records of them that arrive before the
//!   task confirms the command ([`Arrival::Fenced`]) are stale and dropped (the task dropped
//!   their bytes from the budget when it applied the command);
//! - records of a paused partition are held, in order, and handed out after the resume before
//!   anything newer (the Java consumer withholds a paused partition's buffered records). When
//!   the task moves the partition meanwhile (a [`FetchEvent::Reset`], a log truncation it
//!   repositioned), they were fetched for the old position: as its event arrives they are
//!   dropped, but for those before the offset where a truncated log diverged, which are still
//!   on the leader's log (the task dropped their bytes from the budget when it moved it);
//! - records are decoded (and compressed batches decompressed) as they are handed out, at most
//!   `max.poll.records` at a time; the rest of a batch goes first on the next call. The
//!   answer's bytes leave the prefetch budget with the last part, not proportionally: until
//!   then the partition still holds fetched records and is not fetched again, so the parts are
//!   never overtaken. A batch decompressed for one part whose later records wait for the next
//!   is held decompressed meanwhile, and the budget counts those bytes too;
//! - a corrupt record found as a compressed batch is read ends the answer's records: the
//!   records before it are handed out, and the task hears, in the same message that releases
//!   the answer's bytes, that the partition goes back to the corrupt record (the answer had
//!   moved it to its end).
//!
//! What the task must hear of a hand-out comes as [`Release`]s, applied to the machine with
//! [`Release::apply`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use kcon_core::{ConfigError, TopicPartition};

use crate::config::FetchConfig;
use crate::machine::FetchMachine;
use crate::messages::FetchEvent;
use crate::position::PartitionError;
use crate::records::{CorruptRecords, FetchedRecords};

/// What reaches the application's side from the fetch task, in order.
#[derive(Debug)]
pub enum Arrival {
    /// An event of the machine.
    Event(FetchEvent),
    /// The command with this fence was applied to these partitions: their later records are
    /// current.
    Fenced(Vec<TopicPartition>, u64),
}

/// An event handed to the application, and what the fetch machine must hear of it, in order.
#[derive(Debug)]
pub struct HandedOut {
    /// The event.
    pub event: FetchEvent,
    /// What it holds or releases from the prefetch budget.
    pub releases: Vec<Release>,
}

/// What records handed out do to the fetch machine's budget and positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Decompressed bytes now held for records still to come of a batch.
    Held(TopicPartition, usize),
    /// The answer's bytes leave the budget: its last records were handed out.
    Consumed(TopicPartition, usize),
    /// The records handed out end at a corrupt record: the answer's bytes leave the budget and
    /// the partition goes back to the corrupt record. One message, since between a release
    /// and a rewind the machine could fetch the partition from the answer's end.
    Corrupt(TopicPartition, CorruptRecords, usize),
}

impl Release {
    /// Tells `machine`, at `now`.
    pub fn apply(self, machine: &mut FetchMachine, now: Instant) {
        match self {
            Release::Held(tp, bytes) => machine.records_held(&tp, bytes),
            Release::Consumed(tp, bytes) => machine.records_consumed(&tp, bytes),
            Release::Corrupt(tp, corrupt, bytes) => {
                machine.records_corrupt(now, &tp, &corrupt, bytes);
            }
        }
    }
}

/// The application's side of a fetcher (see the module documentation).
#[derive(Debug)]
pub struct Handout {
    /// Partitions sought or unassigned, and the fence their records wait for.
    fences: HashMap<TopicPartition, u64>,
    next_fence: u64,
    /// Partitions the application paused.
    paused: HashSet<TopicPartition>,
    /// Records of paused partitions, oldest first.
    held: VecDeque<FetchedRecords>,
    /// Records of resumed partitions, and the rest of a batch split by `max.poll.records`
    /// (at the front), handed out before anything newer.
    released: VecDeque<FetchedRecords>,
    /// `max.poll.records`, at least 1.
    max_poll_records: usize,
}

impl Handout {
    /// Nothing fenced, paused or held; records handed out `max_poll_records` at a time.
    pub fn new(max_poll_records: usize) -> Self {
        Handout {
            fences: HashMap::new(),
            next_fence: 0,
            paused: HashSet::new(),
            held: VecDeque::new(),
            released: VecDeque::new(),
            max_poll_records: max_poll_records.max(1),
        }
    }

    /// A hand-out side for a fetch task with `config`: `max.poll.records` checked (the field
    /// can be set directly, past [`FetchConfig::set`]'s check).
    pub fn for_config(config: &FetchConfig) -> Result<Self, ConfigError> {
        usize::try_from(config.max_poll_records)
            .ok()
            .filter(|&n| n >= 1)
            .map(Handout::new)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "max.poll.records",
                    &config.max_poll_records.to_string(),
                    "a whole number, 1 to 2147483647",
                )
            })
    }

    /// Whether records are released and wait to be handed out before anything newer
    /// ([`next_released`](Self::next_released)); some may turn out held by a pause since.
    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// The application stops fetching `partitions`: their records, held, released or on
    /// their way, are stale. Returns the fence to send with the command.
    pub fn unassign(&mut self, partitions: &[TopicPartition]) -> u64 {
        for tp in partitions {
            self.paused.remove(tp);
        }
        self.fence(partitions)
    }

    /// The application moves `tp`: its records fetched for the old position are stale.
    /// Returns the fence to send with the command.
    pub fn seek(&mut self, tp: &TopicPartition) -> u64 {
        self.fence(std::slice::from_ref(tp))
    }

    /// The application pauses `tp`: none of its records are handed out until the resume.
    pub fn pause(&mut self, tp: TopicPartition) {
        self.paused.insert(tp);
    }

    /// The application resumes `tp`: its held records come first, in order. Returns whether
    /// it was paused.
    pub fn resume(&mut self, tp: &TopicPartition) -> bool {
        if !self.paused.remove(tp) {
            return false;
        }
        // The held records are older than anything of `tp` still on its way: the task sent
        // nothing of it after it applied the pause, and nothing before the resume.
        let (resumed, still): (VecDeque<_>, VecDeque<_>) =
            self.held.drain(..).partition(|r| &r.partition == tp);
        self.held = still;
        self.released.extend(resumed);
        true
    }

    /// The next records released (a resumed partition's, or the rest of a split batch).
    pub fn next_released(&mut self) -> Option<HandedOut> {
        while let Some(r) = self.released.pop_front() {
            // The rest of a split batch whose partition was paused since: held like the
            // records that arrive for it.
            if self.paused.contains(&r.partition) {
                self.held.push_back(r);
                continue;
            }
            return Some(self.hand_out(r));
        }
        None
    }

    /// What arrived from the task: an event to hand out, or nothing (a confirmation, stale
    /// records, records held for a pause).
    pub fn arrive(&mut self, arrival: Arrival) -> Option<HandedOut> {
        match arrival {
            Arrival::Fenced(partitions, fence) => {
                for tp in partitions {
                    if self.fences.get(&tp) == Some(&fence) {
                        self.fences.remove(&tp);
                    }
                }
                None
            }
            // Fetched before a seek or unassignment: the task already dropped their bytes.
            Arrival::Event(FetchEvent::Records(r)) if self.fences.contains_key(&r.partition) => {
                None
            }
            Arrival::Event(FetchEvent::Records(r)) if self.paused.contains(&r.partition) => {
                self.held.push_back(r);
                None
            }
            Arrival::Event(FetchEvent::Records(r)) => Some(self.hand_out(r)),
            Arrival::Event(event) => {
                let event = self.unfenced(event)?;
                if let Some((tp, diverged_at)) = repositioned(&event) {
                    self.moved(tp, diverged_at);
                }
                Some(HandedOut {
                    event,
                    releases: Vec::new(),
                })
            }
        }
    }

    /// `event`, less what it says of partitions behind a fence: the task sent it before it took
    /// the seek or unassignment, about the position left (a truncation or reset there, an error
    /// told again until the application seeks), so it is as stale as that position's records.
    /// `None` when nothing is left of it.
    fn unfenced(&self, event: FetchEvent) -> Option<FetchEvent> {
        match event {
            FetchEvent::PartitionError { ref partition, .. }
            | FetchEvent::Reset { ref partition, .. }
            | FetchEvent::ResetFailed { ref partition, .. }
                if self.fences.contains_key(partition) =>
            {
                None
            }
            FetchEvent::NoPosition { partitions } => {
                let partitions: Vec<TopicPartition> = partitions
                    .into_iter()
                    .filter(|tp| !self.fences.contains_key(tp))
                    .collect();
                (!partitions.is_empty()).then_some(FetchEvent::NoPosition { partitions })
            }
            event => Some(event),
        }
    }

    /// Records leave: at most `max.poll.records` of them, decoded now; the rest first in line
    /// for the next call. The bytes leave the prefetch budget with the last part (and
    /// decompressed bytes held between parts with the part that ends their batch).
    fn hand_out(&mut self, mut r: FetchedRecords) -> HandedOut {
        let part = r.take(self.max_poll_records);
        if !r.is_empty() {
            self.released.push_front(r);
        }
        let tp = &part.partition;
        let mut releases = Vec::new();
        if part.held_more() > 0 {
            releases.push(Release::Held(tp.clone(), part.held_more()));
        }
        if let Some(corrupt) = part.corrupt() {
            releases.push(Release::Corrupt(tp.clone(), *corrupt, part.size));
        } else if part.size > 0 {
            // Parts that release nothing say nothing (the budget has no entry for nothing
            // buffered, so a 0 would be a no-op).
            releases.push(Release::Consumed(tp.clone(), part.size));
        }
        HandedOut {
            event: FetchEvent::Records(part),
            releases,
        }
    }

    /// The task moved `tp` itself: its records held or released here were fetched for the old
    /// position, and their bytes left the budget with the move. Those before `diverged_at`,
    /// where its log diverged from the leader's, are still on the leader's log and the
    /// application has not had them: they are kept (counting no bytes). The rest are dropped.
    fn moved(&mut self, tp: &TopicPartition, diverged_at: Option<i64>) {
        let keep = |r: &mut FetchedRecords| {
            &r.partition != tp || diverged_at.is_some_and(|offset| r.cut_at(offset))
        };
        self.held.retain_mut(keep);
        self.released.retain_mut(keep);
    }

    /// Records of `partitions` fetched for their old position are stale from now: those on
    /// their way are dropped until the task confirms, those held or released at once.
    fn fence(&mut self, partitions: &[TopicPartition]) -> u64 {
        self.next_fence += 1;
        for tp in partitions {
            self.fences.insert(tp.clone(), self.next_fence);
        }
        self.held.retain(|r| !partitions.contains(&r.partition));
        self.released.retain(|r| !partitions.contains(&r.partition));
        self.next_fence
    }

    /// Whether nothing is held or released.
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.released.is_empty()
    }
}

/// The partition `event` says the task moved, not at the application's command (a reset, or a
/// log truncation it repositioned), and where its log diverged, when known.
fn repositioned(event: &FetchEvent) -> Option<(&TopicPartition, Option<i64>)> {
    match event {
        FetchEvent::Reset { partition, .. } => Some((partition, None)),
        FetchEvent::PartitionError {
            partition,
            error:
                PartitionError::LogTruncation {
                    divergent,
                    repositioned: true,
                    ..
                },
        } => Some((partition, divergent.map(|(offset, _)| offset))),
        _ => None,
    }
}
