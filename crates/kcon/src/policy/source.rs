//! What a [`Processor`](crate::Processor) runs over: a [`RecordSource`], a [`Consumer`] or a
//! [`ShareConsumer`]. The processor's machine decides for both (`Delivery` says how a retry
//! goes); the source carries out what it decides: a consumer stores offsets and pauses
//! partitions, a share consumer accepts, rejects and releases records.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kcon_core::group_offsets::OffsetAndMetadata;
use kcon_pool::Pool;
use kcon_produce::ConsumerGroupMetadata;

use super::machine::{Delivery, Settlement};
use crate::TopicPartition;
use crate::consumer::Consumer;
use crate::consumer::hold::RevocationHold;
use crate::error::Error;
use crate::record::Record;
use crate::share::{AcknowledgeType, AcknowledgementMode, ShareConsumer};

/// A source of records a [`Processor`](crate::Processor) runs over: a [`Consumer`] (its
/// partitions' records in offset order; a record done with has its offset stored, a retry
/// waits with its partition paused) or a [`ShareConsumer`] (the records a share group hands
/// out, each settled: accepted, rejected or released, the group's redelivery being the
/// retry). Sealed: these two are the sources there are.
pub trait RecordSource: sealed::Source {}

impl RecordSource for Consumer {}
impl RecordSource for ShareConsumer {}

/// The processor's side of a record source, out of reach of other crates.
pub(crate) mod sealed {
    use super::*;

    /// Told the partitions a consumer lets go of.
    pub(crate) type Leaving = Box<dyn FnMut(&[TopicPartition]) + Send>;

    /// What the processor asks of its source.
    pub trait Source: Send + Sized + 'static {
        /// How its records come, which decides what a retry is.
        fn delivery(&self) -> Delivery;
        /// The pool the dead-letter producer shares.
        fn pool(&self) -> &Pool;
        /// Its `group.id`, if it has one.
        fn group(&self) -> Option<String>;
        /// Its `client.id`.
        fn client_id(&self) -> &str;
        /// The wall clock, in ms since the epoch (a dead letter's failure time).
        fn wall_ms(&self) -> i64;
        /// Checks the source can run under a processor writing dead letters to
        /// `dead_letter_topic` (a topic it reads is refused), and readies it: from now on the
        /// processor settles its records itself, and partitions it lets go of are told to
        /// `leaving`.
        fn prepare(
            &mut self,
            dead_letter_topic: Option<&str>,
            leaving: Leaving,
        ) -> Result<(), Error>;
        /// Has `hold` hold its revocations until the processor releases the partitions
        /// (a consumer's; a share group revokes nothing the processor holds).
        fn hold_revocations(&mut self, hold: Arc<RevocationHold>);
        /// The partitions it owns.
        fn assignment(&self) -> BTreeSet<TopicPartition>;
        /// The partitions it has paused.
        fn paused(&self) -> BTreeSet<TopicPartition>;
        /// Settles `record` as `how` says (a share consumer's records).
        fn settle(&mut self, record: &Record, how: Settlement) -> Result<(), Error>;
        /// Stores `at` for `tp` (a consumer's partitions): its lowest record not done with,
        /// the records done with above it in the metadata.
        fn store(&mut self, tp: TopicPartition, at: OffsetAndMetadata) -> Result<(), Error>;
        /// The offset `tp` started at when it was last assigned and the metadata committed
        /// with it, once, when not empty (a consumer's partitions).
        fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)>;
        /// Pauses these partitions.
        fn pause(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error>;
        /// Resumes these partitions.
        fn resume(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error>;
        /// Its next records.
        fn recv_batch(&mut self) -> impl Future<Output = Result<Vec<Record>, Error>> + Send;
        /// Commits what was settled so far (a share consumer sends its acknowledgements and
        /// waits for their outcomes, each partition's told to its hooks and metrics).
        fn commit(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
        /// How long its close takes at most (its `close.timeout.ms`).
        fn close_timeout(&self) -> Duration;
        /// Closes it within `timeout`.
        fn close_within(self, timeout: Duration) -> impl Future<Output = Result<(), Error>> + Send;

        // ----- the exactly-once mode (a consumer's only) -----

        /// Checks it can feed a processor whose offsets go in transactions: a group, and no
        /// commits of its own.
        fn transactional(&self) -> Result<(), Error>;
        /// Its group membership now, which a transaction's offsets go with.
        fn group_metadata(&self) -> Result<ConsumerGroupMetadata, Error>;
        /// Moves `tp` back to `offset` (an aborted transaction's first record).
        fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), Error>;
    }
}

impl sealed::Source for Consumer {
    fn delivery(&self) -> Delivery {
        Delivery::Partitions
    }

    fn pool(&self) -> &Pool {
        Consumer::pool(self)
    }

    fn group(&self) -> Option<String> {
        self.group_id().map(str::to_owned)
    }

    fn client_id(&self) -> &str {
        Consumer::client_id(self)
    }

    fn wall_ms(&self) -> i64 {
        Consumer::pool(self).clock().now_ms()
    }

    fn prepare(
        &mut self,
        dead_letter_topic: Option<&str>,
        leaving: sealed::Leaving,
    ) -> Result<(), Error> {
        if let Some(topic) = dead_letter_topic
            && (self.subscription().contains(topic)
                || self.assignment().iter().any(|tp| tp.topic == topic))
        {
            return Err(Error::config(
                "errors.deadletterqueue.topic.name",
                topic,
                "a topic the consumer does not read (a record failing there would be \
                 dead-lettered into itself, again and again)",
            ));
        }
        self.take_over_storing(leaving)
    }

    fn hold_revocations(&mut self, hold: Arc<RevocationHold>) {
        Consumer::hold_revocations(self, hold);
    }

    fn assignment(&self) -> BTreeSet<TopicPartition> {
        Consumer::assignment(self)
    }

    fn paused(&self) -> BTreeSet<TopicPartition> {
        Consumer::paused(self)
    }

    /// A consumer's records are stored by partition ([`store`](Self::store)), not settled
    /// one by one.
    fn settle(&mut self, _record: &Record, _how: Settlement) -> Result<(), Error> {
        Ok(())
    }

    fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)> {
        Consumer::take_committed_metadata(self, tp)
    }

    fn store(&mut self, tp: TopicPartition, at: OffsetAndMetadata) -> Result<(), Error> {
        // Without a group nothing is committed, so there is nothing to store.
        if self.group_id().is_none() {
            return Ok(());
        }
        self.store_at(tp, at)
    }

    fn pause(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error> {
        Consumer::pause(self, partitions)
    }

    fn resume(&mut self, partitions: Vec<TopicPartition>) -> Result<(), Error> {
        Consumer::resume(self, partitions)
    }

    fn recv_batch(&mut self) -> impl Future<Output = Result<Vec<Record>, Error>> + Send {
        Consumer::recv_batch(self)
    }

    fn commit(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        Consumer::commit(self)
    }

    fn close_timeout(&self) -> Duration {
        self.close_timeout()
    }

    fn close_within(self, timeout: Duration) -> impl Future<Output = Result<(), Error>> + Send {
        Consumer::close_within(self, timeout)
    }

    fn transactional(&self) -> Result<(), Error> {
        if self.group_id().is_none() {
            return Err(Error::misuse(
                "an exactly-once processor needs a consumer with a group.id: its offsets are \
                 committed for the group in each transaction",
            ));
        }
        if self.enable_auto_commit() {
            return Err(Error::config(
                "enable.auto.commit",
                "true",
                "false under an exactly-once processor (the offsets go in its transactions only)",
            ));
        }
        Ok(())
    }

    fn group_metadata(&self) -> Result<ConsumerGroupMetadata, Error> {
        Consumer::group_metadata(self)
    }

    fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), Error> {
        Consumer::seek(self, tp, offset)
    }
}

impl sealed::Source for ShareConsumer {
    fn delivery(&self) -> Delivery {
        Delivery::Redelivered
    }

    fn pool(&self) -> &Pool {
        ShareConsumer::pool(self)
    }

    fn group(&self) -> Option<String> {
        Some(self.group_id().to_owned())
    }

    fn client_id(&self) -> &str {
        ShareConsumer::client_id(self)
    }

    fn wall_ms(&self) -> i64 {
        ShareConsumer::pool(self).clock().now_ms()
    }

    fn prepare(
        &mut self,
        dead_letter_topic: Option<&str>,
        _leaving: sealed::Leaving,
    ) -> Result<(), Error> {
        // A share consumer lets go of no records with its partitions: what it acquired stays
        // its own to settle, so nothing is told as leaving.
        if self.acknowledgement_mode() != AcknowledgementMode::Explicit {
            return Err(Error::config(
                "share.acknowledgement.mode",
                "implicit",
                "explicit under a Processor (it settles each record itself)",
            ));
        }
        if let Some(topic) = dead_letter_topic
            && self.subscription().contains(topic)
        {
            return Err(Error::config(
                "errors.deadletterqueue.topic.name",
                topic,
                "a topic the share consumer does not read (a record failing there would be \
                 dead-lettered into itself, again and again)",
            ));
        }
        Ok(())
    }

    fn hold_revocations(&mut self, _hold: Arc<RevocationHold>) {}

    fn assignment(&self) -> BTreeSet<TopicPartition> {
        ShareConsumer::assignment(self)
    }

    fn paused(&self) -> BTreeSet<TopicPartition> {
        BTreeSet::new()
    }

    /// A share group's records are settled one by one: no offsets are stored.
    fn store(&mut self, _tp: TopicPartition, _at: OffsetAndMetadata) -> Result<(), Error> {
        Ok(())
    }

    /// A share group commits no offsets.
    fn take_committed_metadata(&mut self, _tp: &TopicPartition) -> Option<(i64, String)> {
        None
    }

    fn settle(&mut self, record: &Record, how: Settlement) -> Result<(), Error> {
        let kind = match how {
            Settlement::Done => AcknowledgeType::Accept,
            Settlement::Skipped => AcknowledgeType::Reject,
            Settlement::Released => AcknowledgeType::Release,
        };
        self.acknowledge(record, kind)
    }

    /// A share group's partitions are not paused: a retry is a release, and the breaker,
    /// the one other pauser, is refused for a share consumer.
    fn pause(&mut self, _partitions: Vec<TopicPartition>) -> Result<(), Error> {
        Ok(())
    }

    fn resume(&mut self, _partitions: Vec<TopicPartition>) -> Result<(), Error> {
        Ok(())
    }

    fn recv_batch(&mut self) -> impl Future<Output = Result<Vec<Record>, Error>> + Send {
        ShareConsumer::recv_batch(self)
    }

    async fn commit(&mut self) -> Result<(), Error> {
        ShareConsumer::commit(self).await.map(drop)
    }

    fn close_timeout(&self) -> Duration {
        self.close_timeout()
    }

    fn close_within(self, timeout: Duration) -> impl Future<Output = Result<(), Error>> + Send {
        ShareConsumer::close_within(self, timeout)
    }

    fn transactional(&self) -> Result<(), Error> {
        Err(Error::misuse(
            "a share group's records cannot be processed exactly once: share groups commit no \
             offsets",
        ))
    }

    fn group_metadata(&self) -> Result<ConsumerGroupMetadata, Error> {
        self.transactional()
            .map(|()| ConsumerGroupMetadata::new(self.group_id()))
    }

    fn seek(&mut self, _tp: TopicPartition, _offset: i64) -> Result<(), Error> {
        self.transactional()
    }
}
