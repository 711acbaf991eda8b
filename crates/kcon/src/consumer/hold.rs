//! An owner above the consumer holding a revocation (a record processor running records side
//! by side): the consumer tells it which partitions it begins revoking, and waits, before the
//! listener's `on_revoked` and the revocation's commit, until the owner has finished the
//! records of those partitions that are in its handler and stored their offsets, or until the
//! hold's timeout. Lost partitions are not held: nothing of theirs may be committed.
//!
//! ```text
//!  consumer (a receiving call)            owner (its run's turns)
//!  revoking(partitions) ──wake──────────► take_revoking: stop starting their records,
//!  listener step: released(partitions)      drop those not started, finish those running,
//!        ▲ (or the timeout)                 store the lowest record not done with
//!        └────────────────────────notify─── release(partitions)
//!  on_revoked, commit, let go
//! ```

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use kcon_core::TopicPartition;
use tokio::sync::Notify;
use tracing::warn;

/// The revocations an owner holds (see the module's documentation).
#[derive(Debug)]
#[allow(
    unreachable_pub,
    reason = "named by the sealed trait behind `RecordSource`, whose methods are public"
)]
pub struct RevocationHold {
    state: Mutex<State>,
    /// Wakes the owner: partitions began revoking.
    to_owner: Notify,
    /// Wakes the consumer's waits: partitions were released.
    to_consumer: Notify,
    /// The longest a revocation waits.
    timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Revoking and not released.
    held: BTreeSet<TopicPartition>,
    /// Revoking, not yet taken by the owner.
    new: Vec<TopicPartition>,
    /// The owner closed: nothing is held any more.
    closed: bool,
}

impl RevocationHold {
    /// A hold whose revocations wait at most `timeout`.
    pub(crate) fn new(timeout: Duration) -> RevocationHold {
        RevocationHold {
            state: Mutex::default(),
            to_owner: Notify::new(),
            to_consumer: Notify::new(),
            timeout,
        }
    }

    /// The consumer begins revoking `partitions`: held until the owner releases them.
    pub(crate) fn revoking(&self, partitions: &[TopicPartition]) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.held.extend(partitions.iter().cloned());
        state.new.extend_from_slice(partitions);
        drop(state);
        self.to_owner.notify_one();
    }

    /// The partitions that began revoking since the owner last asked.
    pub(crate) fn take_revoking(&self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.lock().new)
    }

    /// Completes when partitions began revoking (the owner's wake-up); a wake-up that came
    /// while the owner was not waiting is kept for its next wait.
    pub(crate) async fn wanted(&self) {
        self.to_owner.notified().await;
    }

    /// The owner is done with `partitions`: the consumer may go on revoking them.
    pub(crate) fn release(&self, partitions: &[TopicPartition]) {
        let mut state = self.lock();
        for tp in partitions {
            state.held.remove(tp);
        }
        drop(state);
        self.to_consumer.notify_waiters();
    }

    /// The owner closes: every revocation goes on at once.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.held.clear();
        drop(state);
        self.to_consumer.notify_waiters();
    }

    /// Completes when none of `partitions` is held, or after the hold's timeout (a WARN line
    /// says which were not released: the next owner may process their records while this
    /// one's handler still runs them).
    pub(crate) async fn released(&self, partitions: &[TopicPartition]) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let notified = self.to_consumer.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let held: Vec<TopicPartition> = {
                let state = self.lock();
                partitions
                    .iter()
                    .filter(|tp| state.held.contains(*tp))
                    .cloned()
                    .collect()
            };
            if held.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                warn!(
                    ?held,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "revoking partitions whose records are still in the processor's handler \
                     after processing.revocation.timeout.ms: they are committed as far as they \
                     were done with, and their next owner may process them while this one does"
                );
                self.release(&held);
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_waits_for_its_partitions_release_and_no_longer_than_the_timeout() {
        let hold = std::sync::Arc::new(RevocationHold::new(Duration::from_secs(30)));
        hold.revoking(&[tp(0), tp(1)]);
        hold.wanted().await;
        assert_eq!(hold.take_revoking(), [tp(0), tp(1)]);
        let waiting = tokio::spawn({
            let hold = hold.clone();
            async move { hold.released(&[tp(0), tp(1)]).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        hold.release(&[tp(0)]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "1 is still held");
        hold.release(&[tp(1)]);
        waiting.await.unwrap();

        hold.revoking(&[tp(2)]);
        let started = tokio::time::Instant::now();
        hold.released(&[tp(2)]).await;
        assert_eq!(started.elapsed(), Duration::from_secs(30), "the timeout");
        hold.revoking(&[tp(3)]);
        hold.close();
        hold.released(&[tp(3)]).await;
        hold.revoking(&[tp(4)]);
        hold.released(&[tp(4)]).await;
    }
}
