//! The log probe: one sessionless Fetch per partition leader, answered without waiting for
//! data, telling where each partition's log starts and ends and the timestamp of the record at
//! a given offset.
//!
//! Lag in seconds needs the age of the record at a group's committed offset, and no other
//! request gives a record's timestamp by offset (ListOffsets goes the other way, from a
//! timestamp). A Fetch gives it and the log end in one round trip per leader. Its high
//! watermark is also the only exact log end on a broker whose ListOffsets latest lags behind
//! (Tansu 0.6 answers it with the last batch's base offset + 1); on Apache Kafka the two are the
//! same number.

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::records::{DecodeOptions, RecordBatches};
use kcon_core::{IsolationLevel, OffsetSpec, TopicId, TopicPartition};
use kcon_pool::{BrokerTarget, Pool, TopicScope};

use crate::error::Error;
use crate::offsets::{list_offsets_each, unknown_partition};
use crate::wire::{ProbeAt, probe_request};

/// Bytes asked for per partition: a whole default-sized batch (1 MiB) and then some, so that
/// the record at the offset asked for arrives.
const PARTITION_MAX_BYTES: i32 = 2 * 1024 * 1024;

/// Bytes asked for per answer.
const MAX_BYTES: i32 = 32 * 1024 * 1024;

/// How long the broker may hold the answer. Apache Kafka answers at once (`min_bytes` is 0);
/// Tansu 0.6 holds every Fetch for its whole `max_wait_ms` and answers a `max_wait_ms` of 0
/// with no partitions at all (measured), so the wait is short but not zero.
const MAX_WAIT_MS: i32 = 50;

/// What a probe learnt of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbedLog {
    /// The end of the log for the isolation level asked: the high watermark, or the last
    /// stable offset under read_committed (`None` when the broker did not say).
    pub end: Option<i64>,
    /// The log start offset, when the broker says (Fetch v5+).
    pub start: Option<i64>,
    /// The offset the record was read from: the one asked for, or the log start when that
    /// was out of range.
    pub read_from: i64,
    /// The timestamp of the first record at or after `read_from`, when the answer held one.
    pub timestamp: Option<i64>,
}

/// Each partition's probe, or why it has none.
pub type Probed = BTreeMap<TopicPartition, Result<ProbedLog, Error>>;

/// Probes each partition of `at` from the offset it maps to; a partition whose offset is out
/// of range (below the log start, or past the end) is probed again from the log start. Each
/// partition has its own outcome: a leader that cannot be reached or a partition error fails
/// those partitions only. The call fails only when the metadata cannot be had.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn probe(
    pool: &Pool,
    at: &BTreeMap<TopicPartition, i64>,
    isolation: IsolationLevel,
) -> Result<Probed, Error> {
    let mut found = probe_once(pool, at, isolation).await?;
    let out_of_range: BTreeMap<TopicPartition, OffsetSpec> = found
        .iter()
        .filter(|(_, s)| {
            matches!(
                s,
                Err(Error::Broker {
                    error: ResponseError::OffsetOutOfRange,
                    ..
                })
            )
        })
        .map(|(tp, _)| (tp.clone(), OffsetSpec::Earliest))
        .collect();
    if out_of_range.is_empty() {
        return Ok(found);
    }
    let starts = list_offsets_each(pool, &out_of_range, IsolationLevel::ReadUncommitted).await?;
    let mut again = BTreeMap::new();
    for (tp, start) in starts {
        match start {
            Ok(l) if l.offset >= 0 => {
                again.insert(tp, l.offset);
            }
            Ok(_) => {}
            Err(e) => {
                found.insert(tp, Err(e));
            }
        }
    }
    found.extend(probe_once(pool, &again, isolation).await?);
    Ok(found)
}

async fn probe_once(
    pool: &Pool,
    at: &BTreeMap<TopicPartition, i64>,
    isolation: IsolationLevel,
) -> Result<Probed, Error> {
    let mut out = BTreeMap::new();
    if at.is_empty() {
        return Ok(out);
    }
    let topics: BTreeSet<String> = at.keys().map(|tp| tp.topic.clone()).collect();
    let metadata = pool.refresh_metadata(TopicScope::topics(topics)).await?;
    let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, ProbeAt>> = BTreeMap::new();
    for (tp, &offset) in at {
        let Some(p) = metadata.partition(&tp.topic, tp.partition) else {
            out.insert(tp.clone(), Err(unknown_partition(tp)));
            continue;
        };
        let Some(leader) = p.leader else {
            out.insert(tp.clone(), Err(Error::NoLeader(tp.clone())));
            continue;
        };
        let topic_id = metadata.topic(&tp.topic).and_then(|t| t.id);
        by_leader
            .entry(leader)
            .or_default()
            .insert(tp.clone(), ProbeAt { offset, topic_id });
    }
    for (leader, partitions) in by_leader {
        let mut answered = match probe_leader(pool, leader, &partitions, isolation).await {
            Ok(a) => a,
            Err(e) => {
                out.extend(partitions.into_keys().map(|tp| (tp, Err(e.clone()))));
                continue;
            }
        };
        // A broker short of time may leave partitions out (Tansu stops reading them when its
        // wait is over): ask for those once more, then call them unknown.
        let left: BTreeMap<TopicPartition, ProbeAt> = partitions
            .into_iter()
            .filter(|(tp, _)| !answered.contains_key(tp))
            .collect();
        if !left.is_empty() {
            match probe_leader(pool, leader, &left, isolation).await {
                Ok(again) => answered.extend(again),
                Err(e) => answered.extend(left.keys().map(|tp| (tp.clone(), Err(e.clone())))),
            }
            for tp in left.into_keys() {
                answered.entry(tp.clone()).or_insert_with(|| {
                    Err(Error::Broker {
                        api: ApiKey::Fetch,
                        error: ResponseError::UnknownTopicOrPartition,
                        partition: Some(tp),
                        message: Some("the answer leaves the partition out".into()),
                    })
                });
            }
        }
        out.extend(answered);
    }
    Ok(out)
}

/// One Fetch to `leader`: the partitions its answer has.
async fn probe_leader(
    pool: &Pool,
    leader: i32,
    partitions: &BTreeMap<TopicPartition, ProbeAt>,
    isolation: IsolationLevel,
) -> Result<Probed, Error> {
    let conn = pool.connection(BrokerTarget::Broker(leader)).await?;
    let version = conn.version(ApiKey::Fetch)?;
    let by_ids = version >= 13;
    let names_by_id: BTreeMap<TopicId, &str> = partitions
        .iter()
        .filter_map(|(tp, at)| Some((at.topic_id?, tp.topic.as_str())))
        .collect();
    let request = probe_request(
        partitions,
        isolation,
        MAX_WAIT_MS,
        PARTITION_MAX_BYTES,
        MAX_BYTES,
        version,
    )
    .map_err(|e| Error::version(ApiKey::Fetch, e))?;
    let answer = conn.send(&request).await?;
    if let Some(e) = Error::broker(ApiKey::Fetch, answer.error_code) {
        return Err(e);
    }
    let mut out = BTreeMap::new();
    for t in &answer.responses {
        let name = if by_ids {
            match names_by_id.get(&TopicId(*t.topic_id.as_bytes())) {
                Some(n) => *n,
                None => continue,
            }
        } else {
            t.topic.as_str()
        };
        for p in &t.partitions {
            let tp = TopicPartition::new(name, p.partition_index);
            let Some(asked) = partitions.get(&tp) else {
                continue;
            };
            if let Some(e) = Error::partition(ApiKey::Fetch, p.error_code, &tp) {
                out.insert(tp, Err(e));
                continue;
            }
            let timestamp = p
                .records
                .as_ref()
                .and_then(|bytes| first_timestamp(bytes.clone(), asked.offset));
            let end = match isolation {
                IsolationLevel::ReadUncommitted => p.high_watermark,
                IsolationLevel::ReadCommitted => p.last_stable_offset,
            };
            out.insert(
                tp,
                Ok(ProbedLog {
                    end: (end >= 0).then_some(end),
                    start: (p.log_start_offset >= 0).then_some(p.log_start_offset),
                    read_from: asked.offset,
                    timestamp,
                }),
            );
        }
    }
    Ok(out)
}

/// The timestamp of the first data record at or after `from` in a partition's record bytes;
/// `None` if they hold none (only a truncated batch, control batches, or nothing).
fn first_timestamp(bytes: bytes::Bytes, from: i64) -> Option<i64> {
    for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
        let batch = batch.ok()?;
        if batch.is_control() || batch.next_offset() <= from {
            continue;
        }
        for record in batch.records() {
            let record = record.ok()?;
            if record.offset() >= from {
                return Some(record.timestamp());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use kcon_codec::records::RecordBatchBuilder;

    use super::*;

    #[test]
    fn the_first_record_at_or_after_the_offset_gives_the_timestamp() {
        let mut a = RecordBatchBuilder::new(10);
        a.record(100, None, Some(b"a"));
        a.record(110, None, Some(b"b"));
        let mut b = RecordBatchBuilder::new(12);
        b.record(120, None, Some(b"c"));
        let mut bytes = a.build().unwrap().to_vec();
        bytes.extend_from_slice(&b.build().unwrap());
        let bytes = bytes::Bytes::from(bytes);
        assert_eq!(first_timestamp(bytes.clone(), 0), Some(100));
        assert_eq!(first_timestamp(bytes.clone(), 11), Some(110));
        assert_eq!(first_timestamp(bytes.clone(), 12), Some(120));
        assert_eq!(first_timestamp(bytes.clone(), 13), None);
        // A batch cut short by the size limit holds nothing readable.
        assert_eq!(first_timestamp(bytes.slice(..20), 0), None);
    }
}
