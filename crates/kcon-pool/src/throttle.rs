//! Quota throttling (KIP-219): a broker that throttles a client for a quota answers at once with
//! the time in `throttle_time_ms` and then stops reading that connection for that long. The
//! client is to send nothing more on the connection until the time has passed, as the Java
//! client and librdkafka do: a request written meanwhile only waits in the broker's socket
//! buffer, its request timeout running. A connection keeps the time it may send again
//! (`Shared::throttle` in `connection.rs`); the pool counts the throttled answers for the
//! clients' metrics.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kcon_codec::top_level;

/// How long an answer asks its client to wait before the next request on the connection, in
/// milliseconds, from the codec's table of what every answer carries at top level
/// ([`top_level::throttle_wait_ms`]); `None` for an answer without a throttle time, or at a
/// version from before KIP-219 (Kafka 2.0), at which the broker delayed the answer itself and
/// the client must not wait again.
pub(crate) fn throttle_time_ms(answer: &dyn Any, version: i16) -> Option<i32> {
    top_level::throttle_wait_ms(answer, version)
}

/// The throttled answers of a pool's connections, counted for the clients' metrics.
#[derive(Debug, Default)]
pub struct ThrottleCounter {
    answers: AtomicU64,
    total_ms: AtomicU64,
    max_ms: AtomicU64,
}

impl ThrottleCounter {
    pub(crate) fn count(&self, ms: i32) {
        let ms = ms.max(0) as u64;
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Throttled {
        Throttled {
            answers: self.answers.load(Ordering::Relaxed),
            total: Duration::from_millis(self.total_ms.load(Ordering::Relaxed)),
            max: Duration::from_millis(self.max_ms.load(Ordering::Relaxed)),
        }
    }
}

/// Answers in which a broker throttled the client for a quota (`throttle_time_ms` above zero),
/// and for how long in all and at most. Each one held back the next request on its connection
/// for that time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttled {
    /// Throttled answers.
    pub answers: u64,
    /// The throttle times added up.
    pub total: Duration,
    /// The longest throttle time.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcon_codec::kafka_protocol::messages::{
        DescribeShareGroupOffsetsResponse, FetchResponse, ProduceResponse,
        SaslAuthenticateResponse, ShareAcknowledgeResponse, ShareFetchResponse,
    };
    use kcon_codec::share_offsets_v1::DescribeShareGroupOffsetsResponseV1;
    use kcon_codec::share_v2::{ShareAcknowledgeResponseV2, ShareFetchResponseV2};

    #[test]
    fn the_throttle_time_counts_from_kip_219_versions_on() {
        let fetch = FetchResponse::default().with_throttle_time_ms(250);
        assert_eq!(throttle_time_ms(&fetch, 8), Some(250));
        assert_eq!(throttle_time_ms(&fetch, 17), Some(250));
        // Before KIP-219 the broker delayed the answer itself.
        assert_eq!(throttle_time_ms(&fetch, 7), None);
        let produce = ProduceResponse::default().with_throttle_time_ms(40);
        assert_eq!(throttle_time_ms(&produce, 5), None);
        assert_eq!(throttle_time_ms(&produce, 6), Some(40));
        let share = ShareFetchResponse::default().with_throttle_time_ms(7);
        assert_eq!(throttle_time_ms(&share, 1), Some(7));
        assert_eq!(
            throttle_time_ms(&SaslAuthenticateResponse::default(), 2),
            None
        );
    }

    #[test]
    fn share_answers_decoded_to_kcons_own_types_are_throttled_too() {
        // The types the pool decodes ShareFetch, ShareAcknowledge and DescribeShareGroupOffsets
        // answers to, at every version it speaks.
        let fetch = ShareFetchResponseV2(ShareFetchResponse::default().with_throttle_time_ms(7));
        assert_eq!(throttle_time_ms(&fetch, 1), Some(7));
        assert_eq!(throttle_time_ms(&fetch, 2), Some(7));
        let ack = ShareAcknowledgeResponseV2 {
            body: ShareAcknowledgeResponse::default().with_throttle_time_ms(8),
            acquisition_lock_timeout_ms: 30_000,
        };
        assert_eq!(throttle_time_ms(&ack, 1), Some(8));
        assert_eq!(throttle_time_ms(&ack, 2), Some(8));
        let offsets = DescribeShareGroupOffsetsResponseV1 {
            body: DescribeShareGroupOffsetsResponse::default().with_throttle_time_ms(9),
            lags: Vec::new(),
        };
        assert_eq!(throttle_time_ms(&offsets, 0), Some(9));
        assert_eq!(throttle_time_ms(&offsets, 1), Some(9));
    }

    #[test]
    fn counts_add_up_and_keep_the_longest() {
        let c = ThrottleCounter::default();
        c.count(100);
        c.count(300);
        c.count(50);
        assert_eq!(
            c.snapshot(),
            Throttled {
                answers: 3,
                total: Duration::from_millis(450),
                max: Duration::from_millis(300),
            }
        );
    }
}
