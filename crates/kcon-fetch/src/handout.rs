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
    /// Decompressed bytes held for a batch leave the budget: its last records were handed
    /// out, and the answer's records go on. Told to the machine as [`Release::Consumed`] is,
    /// but it cannot let a Fetch go that the answer's last part would not (the partition is
    /// not drained), so the handle may tell it together with others
    /// ([`FetchHandle::release`](crate::FetchHandle::release)).
    Returned(TopicPartition, usize),
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
            Release::Consumed(tp, bytes) | Release::Returned(tp, bytes) => {
                machine.records_consumed(&tp, bytes);
            }
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
    /// Whether parts leave with their records where they lie, to be read in place
    /// ([`FetchedRecords::take_undecoded`]), rather than decoded.
    in_place: bool,
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
            in_place: false,
        }
    }

    /// Whether the parts handed out from now on leave their records where they lie in the
    /// answer, for the application to read in place ([`FetchedRecords::borrowed`]), or
    /// decoded (at first). Either way a part holds the same records and says the same of them.
    pub fn set_in_place(&mut self, in_place: bool) {
        self.in_place = in_place;
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

    /// Records leave: at most `max.poll.records` of them, decoded now (or left where they lie,
    /// see [`set_in_place`](Self::set_in_place)); the rest first in line for the next call.
    /// The bytes leave the prefetch budget with the last part (and decompressed bytes held
    /// between parts with the part that ends their batch).
    fn hand_out(&mut self, mut r: FetchedRecords) -> HandedOut {
        let part = if self.in_place {
            r.take_undecoded(self.max_poll_records)
        } else {
            r.take(self.max_poll_records)
        };
        let more = !r.is_empty();
        if more {
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
            // buffered, so a 0 would be a no-op). A part the answer's records go on after
            // gives back only the decompressed bytes of the batch it ended.
            releases.push(if more {
                Release::Returned(tp.clone(), part.size)
            } else {
                Release::Consumed(tp.clone(), part.size)
            });
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

#[cfg(test)]
mod tests {
    //! The hand-out side's `max.poll.records`, with the fetch task played by the test: arrivals
    //! are queued by hand, taken as the consumer takes them (what was released first, then the
    //! next arrival), and the releases each hand-out makes are read back.

    use std::collections::VecDeque;

    use kcon_codec::compression::Compression;
    use kcon_codec::records::RecordBatchBuilder;

    use super::*;
    use crate::Record;

    /// A [`Handout`] over a queue of arrivals, and the releases its hand-outs made, in order.
    struct Side {
        handout: Handout,
        arrivals: VecDeque<Arrival>,
        releases: VecDeque<Release>,
    }

    impl Side {
        fn new(max_poll_records: usize) -> Side {
            Side {
                handout: Handout::new(max_poll_records),
                arrivals: VecDeque::new(),
                releases: VecDeque::new(),
            }
        }

        /// The fetch task sends `r`.
        fn send(&mut self, r: FetchedRecords) {
            self.arrivals
                .push_back(Arrival::Event(FetchEvent::Records(r)));
        }

        /// The next event handed out; `None` once nothing is released and no arrival is left.
        fn next(&mut self) -> Option<FetchEvent> {
            loop {
                if let Some(h) = self.handout.next_released() {
                    return Some(self.hand_out(h));
                }
                let arrival = self.arrivals.pop_front()?;
                if let Some(h) = self.handout.arrive(arrival) {
                    return Some(self.hand_out(h));
                }
            }
        }

        fn hand_out(&mut self, h: HandedOut) -> FetchEvent {
            self.releases.extend(h.releases);
            h.event
        }

        /// The releases made since the last call.
        fn take(&mut self) -> Vec<Release> {
            self.releases.drain(..).collect()
        }

        /// The bytes released as consumed since the last call, per partition, in order.
        fn consumed(&mut self) -> Vec<(i32, usize)> {
            self.take()
                .into_iter()
                .filter_map(|r| match r {
                    Release::Consumed(tp, bytes) => Some((tp.partition, bytes)),
                    _ => None,
                })
                .collect()
        }
    }

    fn records(partition: i32, offsets: std::ops::Range<i64>, next_offset: i64) -> FetchedRecords {
        let records = offsets
            .map(|offset| {
                Record::new("t", partition, offset, None, None).with_leader_epoch(Some(1))
            })
            .collect();
        let tp = TopicPartition::new("t", partition);
        FetchedRecords::new(tp, records, next_offset, next_offset, 700)
    }

    fn offsets(e: Option<FetchEvent>) -> (i32, Vec<i64>, i64, usize) {
        match e {
            Some(FetchEvent::Records(r)) => (
                r.partition.partition,
                r.records.iter().map(|r| r.offset).collect(),
                r.next_offset,
                r.size,
            ),
            other => panic!("not records: {other:?}"),
        }
    }

    #[test]
    fn a_batch_larger_than_max_poll_records_is_handed_out_in_parts_in_order() {
        let mut f = Side::new(3);
        // Offsets 10..17, then a control batch: the position after is 18.
        f.send(records(0, 10..17, 18));
        f.send(records(1, 0..2, 2));

        assert_eq!(offsets(f.next()), (0, vec![10, 11, 12], 13, 0));
        assert_eq!(f.consumed(), []);
        assert_eq!(offsets(f.next()), (0, vec![13, 14, 15], 16, 0));
        assert_eq!(f.consumed(), []);
        // The last part carries the rest of the position and the whole batch's bytes.
        assert_eq!(offsets(f.next()), (0, vec![16], 18, 700));
        assert_eq!(f.consumed(), [(0, 700)]);
        assert_eq!(offsets(f.next()), (1, vec![0, 1], 2, 700));
        assert_eq!(f.consumed(), [(1, 700)]);
    }

    #[test]
    fn the_rest_of_a_split_batch_waits_out_a_pause_and_a_seek_drops_it() {
        let mut f = Side::new(2);
        f.send(records(0, 0..5, 5));
        f.send(records(1, 0..1, 1));
        assert_eq!(offsets(f.next()), (0, vec![0, 1], 2, 0));
        f.handout.pause(TopicPartition::new("t", 0));
        // Partition 0's rest is held; partition 1 comes.
        assert_eq!(offsets(f.next()), (1, vec![0], 1, 700));
        assert!(f.handout.resume(&TopicPartition::new("t", 0)));
        assert_eq!(offsets(f.next()), (0, vec![2, 3], 4, 0));
        f.handout.seek(&TopicPartition::new("t", 0));
        assert!(f.handout.is_idle());
        // Only partition 1's bytes were released: partition 0's go with the seek, in the task.
        assert_eq!(f.consumed(), [(1, 700)]);
    }

    /// `n` records from `base` in one batch compressed with `codec`; `cut` cuts its payload
    /// short under a CRC that holds.
    fn compressed(base: i64, n: usize, codec: Compression, cut: bool) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base)
            .partition_leader_epoch(2)
            .compression(codec);
        for i in 0..n {
            b.record(0, None, Some(format!("v{}", base + i as i64).as_bytes()));
        }
        let mut b = b.build().unwrap().to_vec();
        if cut {
            b.truncate(b.len() - 5);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        b
    }

    fn checked(bytes: Vec<u8>, next_offset_expected: i64) -> FetchedRecords {
        let tp = TopicPartition::new("t", 0);
        let len = bytes.len();
        let d = crate::records::check_partition(
            &tp,
            kcon_core::Topic::new("t"),
            bytes.into(),
            0,
            Some(1),
            None,
            -1,
        );
        assert_eq!(d.position, next_offset_expected);
        let mut r = FetchedRecords::new(tp, Vec::new(), d.position, d.position, len);
        r.undecoded = d.batches;
        r
    }

    #[test]
    fn decompressed_bytes_between_parts_are_held_and_a_corrupt_record_ends_the_answer() {
        let mut f = Side::new(3);
        let mut answer = compressed(0, 5, Compression::Lz4, false);
        answer.extend(compressed(5, 3, Compression::Zstd, true));
        answer.extend(compressed(8, 2, Compression::Lz4, false));
        let wire = answer.len();
        f.send(checked(answer, 10));

        // The first batch is decompressed for offsets 0..3; 3 and 4 wait in it: held.
        assert_eq!(offsets(f.next()).1, [0, 1, 2]);
        let held = match f.take().as_slice() {
            [Release::Held(tp, bytes)] if tp.partition == 0 && *bytes > 0 => *bytes,
            other => panic!("{other:?}"),
        };
        // 3 and 4, then the second batch does not decompress: the last part, with one
        // release that frees everything and says where the records stop.
        let (_, offsets_out, next, size) = offsets(f.next());
        assert_eq!((offsets_out, next, size), (vec![3, 4], 5, wire + held));
        match f.take().as_slice() {
            [Release::Corrupt(tp, c, bytes)] => {
                assert_eq!(tp.partition, 0);
                assert_eq!((c.offset, c.leader_epoch, c.answer_end), (5, Some(2), 10));
                assert_eq!(*bytes, wire + held);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            f.handout.is_idle(),
            "nothing after the corrupt record waits"
        );
    }

    #[test]
    fn bytes_given_back_before_the_answers_last_part_are_returned_not_consumed() {
        let mut f = Side::new(3);
        let mut answer = compressed(0, 5, Compression::Zstd, false);
        answer.extend(compressed(5, 4, Compression::Lz4, false));
        let wire = answer.len();
        f.send(checked(answer, 9));

        // Parts 0..3 and 3..6 (the second ends the first batch and opens the next) hold and
        // give back decompressed bytes, as Held and Returned: the answer's records go on.
        // Only the last part says Consumed, with the answer's bytes and what is still held.
        let mut parts = Vec::new();
        for want in [[0, 1, 2], [3, 4, 5], [6, 7, 8]] {
            assert_eq!(offsets(f.next()).1, want);
            parts.push(f.take());
        }
        let (mut held, mut returned) = (0, 0);
        for release in parts[..2].iter().flatten() {
            match release {
                Release::Held(_, bytes) => held += bytes,
                Release::Returned(_, bytes) => returned += bytes,
                other => panic!("before the last part: {other:?}"),
            }
        }
        assert!(held > 0 && returned > 0, "held {held}, returned {returned}");
        match parts[2].as_slice() {
            [Release::Consumed(tp, bytes)] => {
                assert_eq!(tp.partition, 0);
                assert_eq!(
                    *bytes,
                    wire + held - returned,
                    "every byte counted comes back"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(f.handout.is_idle());
    }

    #[test]
    fn a_batch_within_max_poll_records_is_not_split() {
        let mut r = records(0, 0..3, 3);
        let whole = r.clone();
        assert_eq!(r.take(3), whole);
        assert!(r.is_empty());
    }
}
