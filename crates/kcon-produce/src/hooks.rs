//! Hooks: what the producer tells an observer of each record (about to be sent, and its
//! outcome), for tracing, metrics or audit without wrapping every send.

use crate::error::ProduceError;
use crate::record::{Delivered, ProducerRecord};

/// An observer of a producer, given to
/// [`ProducerBuilder::hooks`](crate::ProducerBuilder::hooks): the place of the Java client's
/// `ProducerInterceptor`.
///
/// Every method has an empty default: implement those you need. Several hooks are called in
/// the order they were added. Each record sent is told to [`on_send`](Self::on_send) once, and
/// its outcome to [`on_acknowledgement`](Self::on_acknowledgement) once, whatever it is:
/// written, refused before it was queued, failed by the brokers, or failed at close.
///
/// ```
/// use kcon_produce::{ProducerHooks, ProducerRecord};
///
/// struct Origin;
///
/// impl ProducerHooks for Origin {
///     fn on_send(&self, record: &mut ProducerRecord) {
///         if !record.headers.iter().any(|(name, _)| name == "origin") {
///             record.headers.push(("origin".into(), Some("billing".into())));
///         }
///     }
/// }
/// let b = kcon_produce::Producer::builder().hooks(Origin);
/// # drop(b);
/// ```
pub trait ProducerHooks: Send + Sync + 'static {
    /// `record` is being sent: called on the sending task, before the record is checked, sized
    /// and queued, so a change made here (a header carrying a trace context) is what is sent.
    fn on_send(&self, record: &mut ProducerRecord) {
        let _ = record;
    }

    /// A record's outcome: where it was written, or why it failed. Called on the producer's
    /// task (or, for a record refused before it was queued, on the sending task), in the middle
    /// of its work: return quickly and never block.
    fn on_acknowledgement(&self, outcome: Result<&Delivered, &ProduceError>) {
        let _ = outcome;
    }
}

/// The hooks of one producer, shared by its handles and its task.
pub(crate) type Hooks = std::sync::Arc<[std::sync::Arc<dyn ProducerHooks>]>;

/// Tells every hook of `hooks` that `record` is being sent.
pub(crate) fn sending(hooks: &Hooks, record: &mut ProducerRecord) {
    for h in hooks.iter() {
        h.on_send(record);
    }
}

/// Tells every hook of `hooks` a record's outcome.
pub(crate) fn acknowledged(hooks: &Hooks, outcome: Result<&Delivered, &ProduceError>) {
    for h in hooks.iter() {
        h.on_acknowledgement(outcome);
    }
}
