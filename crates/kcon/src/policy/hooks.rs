//! Hooks of the record policies: told of every retry, skip, dead letter and breaker trip.

use std::time::Duration;

use super::failure::FailureInfo;
use crate::TopicPartition;
use crate::record::Record;

/// An observer of a [`Processor`](crate::Processor)'s policies, given to
/// [`ProcessorBuilder::hooks`](crate::ProcessorBuilder::hooks).
///
/// Every method has an empty default. They are called on the processor's task, in place:
/// return quickly and never block.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use kcon::{FailureInfo, PolicyHooks, Record};
///
/// #[derive(Default)]
/// struct Poison(AtomicU64);
///
/// impl PolicyHooks for Poison {
///     fn on_dead_letter(&self, record: &Record, failure: &FailureInfo) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         eprintln!("{}-{}@{}: {failure}", record.topic, record.partition, record.offset);
///     }
/// }
/// ```
pub trait PolicyHooks: Send + Sync + 'static {
    /// Try number `attempt` of `record` failed retriably; it is tried again in `delay`, its
    /// partition paused meanwhile.
    fn on_retry(&self, record: &Record, failure: &FailureInfo, attempt: u32, delay: Duration) {
        let _ = (record, failure, attempt, delay);
    }

    /// `record` failed for good and was skipped (`errors.tolerance=all`, no dead-letter topic).
    fn on_skip(&self, record: &Record, failure: &FailureInfo) {
        let _ = (record, failure);
    }

    /// `record` failed for good and the dead-letter topic acknowledged its copy.
    fn on_dead_letter(&self, record: &Record, failure: &FailureInfo) {
        let _ = (record, failure);
    }

    /// `record`'s failure opened the circuit breaker: processing stops.
    fn on_breaker_open(&self, record: &Record, failure: &FailureInfo) {
        let _ = (record, failure);
    }

    /// The records done with above `partition`'s committed offset no longer all fit in the
    /// commit's metadata (`offset.metadata.max.bytes`, 4,096 bytes): it names those up to
    /// `named` (an offset), and a restart processes the rest again. Records that run long
    /// while many after them finish cause it: a lower `processing.max.buffered.records` or
    /// a retry timeout keeps the gap small.
    fn on_metadata_cut(&self, partition: &TopicPartition, named: i64) {
        let _ = (partition, named);
    }
}
