//! The record handed to the application: kcon-core's, made by the fetch layer without a copy;
//! and the records lent to be read where they lie in the Fetch answer.

use std::fmt;

pub use kcon_core::Record;
use kcon_core::TopicPartition;
pub use kcon_fetch::{BorrowedHeaders, BorrowedRecord, BorrowedRecords};

/// Records of one partition, in order, lent by
/// [`Consumer::recv_borrowed`](crate::Consumer::recv_borrowed) to be read where they lie in the
/// Fetch answer: each key, value and header a slice of the answer's bytes (of the decompressed
/// batch, for a compressed one), no [`Record`] built. It borrows the consumer: drop it before
/// the consumer's next call.
///
/// ```no_run
/// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
/// let batch = consumer.recv_borrowed().await?;
/// let mut bytes = 0;
/// for record in &batch {
///     bytes += record.value().map_or(0, <[u8]>::len);
/// }
/// println!("{} records, {bytes} bytes of {}", batch.len(), batch.partition());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BorrowedBatch<'a> {
    partition: &'a TopicPartition,
    records: BorrowedRecords<'a>,
}

impl<'a> BorrowedBatch<'a> {
    pub(crate) fn new(partition: &'a TopicPartition, records: BorrowedRecords<'a>) -> Self {
        BorrowedBatch { partition, records }
    }

    /// The partition.
    pub fn partition(&self) -> &'a TopicPartition {
        self.partition
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none (never, for a batch a consumer lent).
    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// The records, in order; read again from the first at each call.
    pub fn iter(&self) -> BorrowedRecords<'a> {
        self.records.clone()
    }
}

impl<'a> IntoIterator for BorrowedBatch<'a> {
    type Item = BorrowedRecord<'a>;
    type IntoIter = BorrowedRecords<'a>;

    fn into_iter(self) -> BorrowedRecords<'a> {
        self.records
    }
}

impl<'a> IntoIterator for &BorrowedBatch<'a> {
    type Item = BorrowedRecord<'a>;
    type IntoIter = BorrowedRecords<'a>;

    fn into_iter(self) -> BorrowedRecords<'a> {
        self.iter()
    }
}

impl fmt::Debug for BorrowedBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BorrowedBatch")
            .field("partition", &self.partition)
            .field("len", &self.records.len())
            .finish_non_exhaustive()
    }
}
