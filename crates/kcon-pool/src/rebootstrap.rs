//! Rebootstrap (KIP-899, KIP-1102): why the pool goes back to `bootstrap.servers`, how often it
//! did, and how a connection tells the pool that a broker asked for it.
//!
//! The pool rebootstraps, under `metadata.recovery.strategy=rebootstrap`:
//! - when every broker of the last metadata answer is unreachable (each failed to connect or
//!   waits out its reconnect backoff) and something needs any broker;
//! - when it has been trying to get metadata for `metadata.recovery.rebootstrap.trigger.ms`
//!   without getting any;
//! - when a broker answers REBOOTSTRAP_REQUIRED (129): in a Metadata answer's top-level error
//!   code (v13), or in the top-level error code of any other answer.
//!
//! A rebootstrap closes every connection (requests in flight fail as after a lost connection,
//! and their callers retry), forgets the brokers (the topics and their leader epochs stay), and
//! asks the bootstrap servers, resolved again, for the metadata at once.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kcon_codec::kafka_protocol::messages::MetadataResponse;
use kcon_codec::top_level;
use kcon_core::error_codes::code::REBOOTSTRAP_REQUIRED;
use tokio::sync::Notify;

use crate::throttle::ThrottleCounter;

/// Why the pool rebootstrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RebootstrapCause {
    /// Every broker of the last metadata answer was unreachable.
    Unreachable,
    /// No metadata came for `metadata.recovery.rebootstrap.trigger.ms`.
    NoMetadata,
    /// A broker answered REBOOTSTRAP_REQUIRED.
    Required,
}

impl RebootstrapCause {
    /// Every cause, in the order of [`Rebootstraps`]' fields.
    pub const ALL: [RebootstrapCause; 3] = [
        RebootstrapCause::Unreachable,
        RebootstrapCause::NoMetadata,
        RebootstrapCause::Required,
    ];

    /// A short name, for a metric's label: `unreachable`, `no_metadata`, `required`.
    pub fn name(self) -> &'static str {
        match self {
            RebootstrapCause::Unreachable => "unreachable",
            RebootstrapCause::NoMetadata => "no_metadata",
            RebootstrapCause::Required => "required",
        }
    }

    fn index(self) -> usize {
        match self {
            RebootstrapCause::Unreachable => 0,
            RebootstrapCause::NoMetadata => 1,
            RebootstrapCause::Required => 2,
        }
    }
}

impl fmt::Display for RebootstrapCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RebootstrapCause::Unreachable => "every known broker is unreachable",
            RebootstrapCause::NoMetadata => {
                "no metadata came for metadata.recovery.rebootstrap.trigger.ms"
            }
            RebootstrapCause::Required => "a broker answered REBOOTSTRAP_REQUIRED",
        })
    }
}

/// How many times a pool rebootstrapped, by cause ([`Pool::rebootstraps`](crate::Pool::rebootstraps)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Rebootstraps {
    /// Every known broker was unreachable.
    pub unreachable: u64,
    /// No metadata came for `metadata.recovery.rebootstrap.trigger.ms`.
    pub no_metadata: u64,
    /// A broker answered REBOOTSTRAP_REQUIRED.
    pub required: u64,
}

impl Rebootstraps {
    /// The count for `cause`.
    pub fn of(&self, cause: RebootstrapCause) -> u64 {
        match cause {
            RebootstrapCause::Unreachable => self.unreachable,
            RebootstrapCause::NoMetadata => self.no_metadata,
            RebootstrapCause::Required => self.required,
        }
    }

    /// All causes together.
    pub fn total(&self) -> u64 {
        self.unreachable + self.no_metadata + self.required
    }
}

/// The pool's rebootstrap counters, shared with whoever reads them live (a consumer's metrics
/// handle) without holding the pool.
#[derive(Debug, Default)]
pub struct RebootstrapCounter {
    counts: [AtomicU64; 3],
}

impl RebootstrapCounter {
    pub(crate) fn count(&self, cause: RebootstrapCause) {
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Rebootstraps {
        let read = |c: RebootstrapCause| self.counts[c.index()].load(Ordering::Relaxed);
        Rebootstraps {
            unreachable: read(RebootstrapCause::Unreachable),
            no_metadata: read(RebootstrapCause::NoMetadata),
            required: read(RebootstrapCause::Required),
        }
    }
}

/// What every connection of a pool tells it of the answers it decodes: a broker asked for a
/// rebootstrap. The pool's background task acts on it.
#[derive(Debug)]
pub(crate) struct AnswerWatch {
    required: AtomicBool,
    wake: Arc<Notify>,
    /// The answers that throttled a connection for a quota.
    throttles: Arc<ThrottleCounter>,
}

impl AnswerWatch {
    /// A watch that wakes the pool's background task through `wake`.
    pub(crate) fn new(wake: Arc<Notify>) -> AnswerWatch {
        AnswerWatch {
            required: AtomicBool::new(false),
            wake,
            throttles: Arc::new(ThrottleCounter::default()),
        }
    }

    /// An answer throttled its connection for `ms` milliseconds.
    pub(crate) fn throttled(&self, ms: i32) {
        self.throttles.count(ms);
    }

    /// Where the throttled answers are counted.
    pub(crate) fn throttles(&self) -> Arc<ThrottleCounter> {
        self.throttles.clone()
    }

    /// Looks at a decoded answer: one whose top-level error code is REBOOTSTRAP_REQUIRED asks
    /// the pool for a rebootstrap. (Metadata answers are the pool's own, read where it applies
    /// them.)
    pub(crate) fn answered(&self, answer: &dyn Any) {
        if top_level_error(answer) == Some(REBOOTSTRAP_REQUIRED) {
            self.required.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Whether a rebootstrap was asked for since the last call.
    pub(crate) fn take_required(&self) -> bool {
        self.required.swap(false, Ordering::AcqRel)
    }
}

/// The top-level error code of an answer of any API that has one, from the codec's table of
/// them ([`top_level`]); `None` for Metadata's, which the pool reads itself where it applies
/// the answer.
pub(crate) fn top_level_error(answer: &dyn Any) -> Option<i16> {
    if answer.is::<MetadataResponse>() {
        return None;
    }
    top_level::error_code(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcon_codec::kafka_protocol::messages::{
        AddOffsetsToTxnResponse, EndTxnResponse, FetchResponse, HeartbeatResponse,
        JoinGroupResponse, OffsetCommitResponse, ShareAcknowledgeResponse, ShareFetchResponse,
        ShareGroupHeartbeatResponse,
    };
    use kcon_codec::share_v2::{ShareAcknowledgeResponseV2, ShareFetchResponseV2};

    #[test]
    fn top_level_errors_are_read_where_answers_have_them() {
        let hb = HeartbeatResponse::default().with_error_code(REBOOTSTRAP_REQUIRED);
        assert_eq!(top_level_error(&hb), Some(129));
        let fetch = FetchResponse::default().with_error_code(0);
        assert_eq!(top_level_error(&fetch), Some(0));
        assert_eq!(top_level_error(&OffsetCommitResponse::default()), None);
        assert_eq!(top_level_error(&MetadataResponse::default()), None);
        let metadata = MetadataResponse::default().with_error_code(REBOOTSTRAP_REQUIRED);
        assert_eq!(top_level_error(&metadata), None);
    }

    #[test]
    fn share_and_transaction_answers_can_ask_for_a_rebootstrap() {
        let share_fetch = ShareFetchResponse::default().with_error_code(REBOOTSTRAP_REQUIRED);
        let share_ack = ShareAcknowledgeResponse::default().with_error_code(REBOOTSTRAP_REQUIRED);
        let answers: [&dyn Any; 7] = [
            &ShareFetchResponseV2(share_fetch.clone()),
            &share_fetch,
            &ShareAcknowledgeResponseV2 {
                body: share_ack.clone(),
                acquisition_lock_timeout_ms: 0,
            },
            &share_ack,
            &ShareGroupHeartbeatResponse::default().with_error_code(REBOOTSTRAP_REQUIRED),
            &EndTxnResponse::default().with_error_code(REBOOTSTRAP_REQUIRED),
            &AddOffsetsToTxnResponse::default().with_error_code(REBOOTSTRAP_REQUIRED),
        ];
        let watch = AnswerWatch::new(Arc::new(Notify::new()));
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(
                top_level_error(answer),
                Some(REBOOTSTRAP_REQUIRED),
                "answer {i}"
            );
            watch.answered(answer);
            assert!(watch.take_required(), "answer {i}");
        }
    }

    #[test]
    fn a_watch_reports_a_request_once() {
        let watch = AnswerWatch::new(Arc::new(Notify::new()));
        watch.answered(&HeartbeatResponse::default());
        assert!(!watch.take_required());
        watch.answered(&JoinGroupResponse::default().with_error_code(REBOOTSTRAP_REQUIRED));
        assert!(watch.take_required());
        assert!(!watch.take_required());
    }

    #[test]
    fn counts_by_cause() {
        let c = RebootstrapCounter::default();
        c.count(RebootstrapCause::Required);
        c.count(RebootstrapCause::Required);
        c.count(RebootstrapCause::Unreachable);
        let s = c.snapshot();
        assert_eq!((s.unreachable, s.no_metadata, s.required), (1, 0, 2));
        assert_eq!(s.total(), 3);
        for cause in RebootstrapCause::ALL {
            assert!(!cause.name().is_empty());
        }
    }
}
