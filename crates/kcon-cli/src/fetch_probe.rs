//! One sessionless Fetch per partition leader, answered without waiting for data: where each
//! partition's log starts and ends, and the timestamp of the record at a given offset.
//!
//! `kcon group describe` needs both for each partition (LOG-END-OFFSET, and LAG-SECONDS: the
//! age of the record at the committed offset), and `group reset-offsets --to-latest` needs the
//! end. A Fetch answers both in one round trip per leader. It is also the only exact end on
//! Tansu, which answers ListOffsets latest with the last batch's base offset + 1
//! (shared/BROKERS.md); the Fetch high watermark is the same number as ListOffsets latest on
//! Apache Kafka. The request is built by `kcon_fetch::fetch_request`, as the consumer's are.

use std::collections::{BTreeMap, BTreeSet};

use kcon::TopicPartition;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::records::{DecodeOptions, RecordBatches};
use kcon_core::{IsolationLevel, OffsetSpec, TopicId};
use kcon_fetch::{
    FINAL_EPOCH, FetchParams, PartitionFetch, RequestKind, SessionRequest, fetch_request,
};
use kcon_offsets::admin;
use kcon_pool::{BrokerTarget, Pool, TopicScope};

use crate::failure::{Failure, error_name};

/// Bytes asked for per partition: a whole default-sized batch (1 MiB) and then some, so that
/// the record at the offset asked for arrives.
const PARTITION_MAX_BYTES: i32 = 2 * 1024 * 1024;

/// Bytes asked for per answer.
const MAX_BYTES: i32 = 32 * 1024 * 1024;

/// How long the broker may hold the answer. Apache Kafka answers at once (`min_bytes` is 0);
/// Tansu 0.6 holds every Fetch for its whole `max_wait_ms` and answers a `max_wait_ms` of 0
/// with no partitions at all (measured), so the wait is short but not zero.
const MAX_WAIT_MS: i32 = 50;

/// OFFSET_OUT_OF_RANGE: the offset asked for is below the log start (or past the end).
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// What the probe learnt of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogState {
    /// The partition's error code in the answer (0: none).
    pub(crate) error_code: i16,
    /// The high watermark: the offset after the last record consumers can read.
    pub(crate) end: Option<i64>,
    /// The log start offset, when the broker says (Fetch v5+).
    pub(crate) start: Option<i64>,
    /// The offset the record was read from: the one asked for, or the log start when that
    /// was out of range.
    pub(crate) read_from: i64,
    /// The timestamp of the first record at or after `read_from`, when the answer held one.
    pub(crate) timestamp: Option<i64>,
}

/// Probes each partition of `at` from the offset it maps to; a partition whose offset is
/// below the log start is probed again from the log start.
pub(crate) async fn probe(
    pool: &Pool,
    at: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, LogState>, Failure> {
    let mut found = probe_once(pool, at).await?;
    let out_of_range: BTreeSet<TopicPartition> = found
        .iter()
        .filter(|(_, s)| s.error_code == OFFSET_OUT_OF_RANGE)
        .map(|(tp, _)| tp.clone())
        .collect();
    if out_of_range.is_empty() {
        return Ok(found);
    }
    let specs = out_of_range
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Earliest))
        .collect();
    let starts = admin::list_offsets(pool, &specs, IsolationLevel::ReadUncommitted)
        .await
        .map_err(|e| Failure::from_admin("looking up log start offsets", e))?;
    let again: BTreeMap<TopicPartition, i64> = starts
        .into_iter()
        .filter(|(_, l)| l.error_code == 0 && l.offset >= 0)
        .map(|(tp, l)| (tp, l.offset))
        .collect();
    found.extend(probe_once(pool, &again).await?);
    Ok(found)
}

async fn probe_once(
    pool: &Pool,
    at: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, LogState>, Failure> {
    let mut out = BTreeMap::new();
    if at.is_empty() {
        return Ok(out);
    }
    let topics: BTreeSet<String> = at.keys().map(|tp| tp.topic.clone()).collect();
    let metadata = pool
        .refresh_metadata(TopicScope::topics(topics))
        .await
        .map_err(Failure::from_pool)?;
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, Option<TopicId>, i64)>> = BTreeMap::new();
    for (tp, &offset) in at {
        let leader = metadata
            .partition(&tp.topic, tp.partition)
            .and_then(|p| p.leader);
        let Some(leader) = leader else {
            out.insert(tp.clone(), LogState::failed(5, offset));
            continue;
        };
        let id = metadata.topic(&tp.topic).and_then(|t| t.id);
        by_leader
            .entry(leader)
            .or_default()
            .push((tp.clone(), id, offset));
    }
    for (leader, partitions) in by_leader {
        let mut answered = probe_leader(pool, leader, partitions.clone()).await?;
        // A broker short of time may leave partitions out (Tansu stops reading them when its
        // wait is over): ask for those once more, then call them unknown.
        let left: Vec<_> = partitions
            .into_iter()
            .filter(|(tp, _, _)| !answered.contains_key(tp))
            .collect();
        if !left.is_empty() {
            let again = probe_leader(pool, leader, left.clone()).await?;
            answered.extend(again);
            for (tp, _, from) in left {
                answered.entry(tp).or_insert(LogState::failed(3, from));
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
    partitions: Vec<(TopicPartition, Option<TopicId>, i64)>,
) -> Result<BTreeMap<TopicPartition, LogState>, Failure> {
    let conn = pool
        .connection(BrokerTarget::Broker(leader))
        .await
        .map_err(Failure::from_pool)?;
    let version = conn.version(ApiKey::Fetch).map_err(Failure::from_pool)?;
    let by_ids = version >= 13;
    let mut names_by_id = BTreeMap::new();
    let mut asked = BTreeMap::new();
    let mut entries = Vec::new();
    for (tp, id, offset) in partitions {
        if by_ids {
            let Some(id) = id else {
                return Err(Failure::runtime(format!(
                    "broker {leader} speaks Fetch v{version}, which names topics by id, but \
                     gave no id for {:?}",
                    tp.topic
                )));
            };
            names_by_id.insert(id, tp.topic.clone());
        }
        asked.insert(tp.clone(), offset);
        entries.push((tp, PartitionFetch::new(id, offset, PARTITION_MAX_BYTES)));
    }
    let request = SessionRequest {
        kind: RequestKind::Full,
        session_id: 0,
        epoch: FINAL_EPOCH,
        partitions: entries,
        forgotten: Vec::new(),
        topic_ids: by_ids,
    };
    let params = FetchParams {
        max_wait_ms: MAX_WAIT_MS,
        min_bytes: 0,
        max_bytes: MAX_BYTES,
        isolation_level: IsolationLevel::ReadUncommitted,
        rack_id: String::new(),
    };
    let request = fetch_request(&request, &params, version)
        .map_err(|e| Failure::runtime(format!("cannot fetch from broker {leader}: {e}")))?;
    let answer = conn.send(&request).await.map_err(Failure::from_pool)?;
    if answer.error_code != 0 {
        return Err(Failure::runtime(format!(
            "broker {leader} answered Fetch with {}",
            error_name(answer.error_code)
        )));
    }
    let mut out = BTreeMap::new();
    for t in &answer.responses {
        let name = if by_ids {
            match names_by_id.get(&TopicId(*t.topic_id.as_bytes())) {
                Some(n) => n.clone(),
                None => continue,
            }
        } else {
            t.topic.to_string()
        };
        for p in &t.partitions {
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            let Some(&from) = asked.get(&tp) else {
                continue;
            };
            if p.error_code != 0 {
                out.insert(tp, LogState::failed(p.error_code, from));
                continue;
            }
            let timestamp = p
                .records
                .as_ref()
                .and_then(|bytes| first_timestamp(bytes.clone(), from));
            out.insert(
                tp,
                LogState {
                    error_code: 0,
                    end: Some(p.high_watermark),
                    start: (p.log_start_offset >= 0).then_some(p.log_start_offset),
                    read_from: from,
                    timestamp,
                },
            );
        }
    }
    Ok(out)
}

impl LogState {
    fn failed(error_code: i16, read_from: i64) -> LogState {
        LogState {
            error_code,
            end: None,
            start: None,
            read_from,
            timestamp: None,
        }
    }
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
