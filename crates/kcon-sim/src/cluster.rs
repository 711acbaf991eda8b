//! The data side of a simulated cluster: partition logs on one broker, one group's committed
//! offsets, and the answers the fetch and commit machines get for them.
//!
//! The broker keeps no fetch sessions (it answers session id 0, as Tansu and librdkafka's mock
//! cluster do), speaks Fetch v12 (topics by name) and offers no OffsetForLeaderEpoch, so the
//! machines take the paths the real brokers here make them take.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::{OffsetSpec, TopicId, TopicPartition};
use kcon_fetch::position::LeaderAndEpoch;
use kcon_fetch::{BrokerInfo, MetadataView, PartitionInfo, SessionRequest};
use kcon_group::assignor::{self, TopicPartitions};
use kcon_offsets::{OffsetAndMetadata, OffsetsResponse, PartitionOffset};

/// The one broker of the simulated cluster: every partition's leader.
pub const BROKER: i32 = 1;

/// Every partition's leader epoch.
pub const LEADER_EPOCH: i32 = 5;

/// The most records one partition's part of a Fetch answer carries.
const RECORDS_PER_FETCH: usize = 200;

/// The records of the cluster and what one group committed.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Each topic's partitions; each partition's log holds its records' timestamps (the
    /// offset is the index).
    topics: BTreeMap<String, Vec<Vec<i64>>>,
    /// The group's committed offsets.
    committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

impl Cluster {
    /// Topics with these partition counts, empty.
    pub fn new(topics: &[(&str, i32)]) -> Self {
        Cluster {
            topics: topics
                .iter()
                .map(|(t, n)| ((*t).to_owned(), vec![Vec::new(); *n as usize]))
                .collect(),
            committed: BTreeMap::new(),
        }
    }

    /// Creates `topic` with `partitions` empty partitions (nothing when it exists).
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        self.topics
            .entry(topic.to_owned())
            .or_insert_with(|| vec![Vec::new(); partitions.max(0) as usize]);
    }

    /// Appends `n` records to `tp`, timestamped `now_ms`.
    pub fn produce(&mut self, tp: &TopicPartition, n: usize, now_ms: i64) {
        let log = self.log_mut(tp);
        log.extend(std::iter::repeat_n(now_ms, n));
    }

    /// The offset after `tp`'s last record.
    pub fn end(&self, tp: &TopicPartition) -> i64 {
        self.log(tp).map_or(0, |l| l.len() as i64)
    }

    /// Every partition of every topic.
    pub fn partitions(&self) -> BTreeSet<TopicPartition> {
        self.topics
            .iter()
            .flat_map(|(t, ps)| (0..ps.len()).map(|p| TopicPartition::new(t.clone(), p as i32)))
            .collect()
    }

    /// Every topic's name.
    pub fn topic_names(&self) -> BTreeSet<String> {
        self.topics.keys().cloned().collect()
    }

    /// A topic's id: the same for the same name, different for different ones (KIP-848's
    /// coordinator assigns by id).
    pub fn topic_id(name: &str) -> TopicId {
        let mut id = [0u8; 16];
        for (i, b) in name.bytes().enumerate() {
            id[i % 16] = id[i % 16].wrapping_mul(31).wrapping_add(b);
        }
        id[15] = name.len() as u8;
        TopicId(id)
    }

    /// Every topic's id, name and partition count.
    pub fn topic_ids(&self) -> Vec<(String, TopicId, i32)> {
        self.topics
            .iter()
            .map(|(t, ps)| (t.clone(), Cluster::topic_id(t), ps.len() as i32))
            .collect()
    }

    /// The group's committed offsets.
    pub fn committed(&self) -> &BTreeMap<TopicPartition, OffsetAndMetadata> {
        &self.committed
    }

    /// The partitions of `topics`, as the group leader's Metadata request sees them.
    pub fn topic_partitions(&self, topics: &BTreeSet<String>) -> TopicPartitions {
        self.topics
            .iter()
            .filter(|(t, _)| topics.contains(*t))
            .map(|(t, ps)| {
                let infos = (0..ps.len())
                    .map(|p| assignor::PartitionInfo::new(p as i32, Vec::new()))
                    .collect();
                (t.clone(), infos)
            })
            .collect()
    }

    /// The fetch machine's view of `topics`: every partition led by [`BROKER`].
    pub fn metadata_view(&self, topics: &[String]) -> MetadataView {
        let mut view = MetadataView::default();
        for t in topics {
            let Some(ps) = self.topics.get(t) else {
                continue;
            };
            for p in 0..ps.len() {
                view.partitions.insert(
                    TopicPartition::new(t.clone(), p as i32),
                    PartitionInfo {
                        leader: LeaderAndEpoch::new(BROKER, LEADER_EPOCH),
                        topic_id: None,
                    },
                );
            }
        }
        view.brokers.insert(BROKER, broker_info());
        view
    }

    /// The answer to a Fetch, and whether it carries records (a broker holds an answer
    /// without any for `fetch.max.wait.ms`).
    pub fn fetch(&self, session: &SessionRequest) -> (FetchResponse, bool) {
        let mut by_topic: BTreeMap<&str, FetchableTopicResponse> = BTreeMap::new();
        let mut any = false;
        for (tp, p) in &session.partitions {
            let log = self.log(tp).map_or(&[][..], Vec::as_slice);
            let end = log.len() as i64;
            let mut d = PartitionData::default();
            d.partition_index = tp.partition;
            d.high_watermark = end;
            d.last_stable_offset = end;
            d.log_start_offset = 0;
            if p.fetch_offset > end || p.fetch_offset < 0 {
                d.error_code = kcon_codec::kafka_protocol::ResponseError::OffsetOutOfRange.code();
            } else if p.fetch_offset < end {
                let from = p.fetch_offset as usize;
                let to = (from + RECORDS_PER_FETCH).min(log.len());
                d.records = Some(batch(tp, p.fetch_offset, &log[from..to]));
                any = true;
            }
            by_topic
                .entry(tp.topic.as_str())
                .or_insert_with(|| {
                    let mut t = FetchableTopicResponse::default();
                    t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
                    t
                })
                .partitions
                .push(d);
        }
        let mut r = FetchResponse::default();
        r.session_id = 0;
        r.responses = by_topic.into_values().collect();
        (r, any)
    }

    /// ListOffsets for `partitions` by `spec`.
    pub fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> BTreeMap<TopicPartition, ListedOffset> {
        partitions
            .iter()
            .map(|tp| {
                let log = self.log(tp).map_or(&[][..], Vec::as_slice);
                let (offset, timestamp) = match spec {
                    OffsetSpec::Earliest => (0, -1),
                    OffsetSpec::Latest => (log.len() as i64, -1),
                    OffsetSpec::MaxTimestamp => {
                        (log.len() as i64 - 1, log.last().copied().unwrap_or(-1))
                    }
                    OffsetSpec::Timestamp(t) => log
                        .iter()
                        .position(|ts| *ts >= t)
                        .map_or((-1, -1), |i| (i as i64, log[i])),
                };
                let listed = ListedOffset {
                    error_code: 0,
                    offset,
                    timestamp,
                    leader_epoch: Some(LEADER_EPOCH),
                };
                (tp.clone(), listed)
            })
            .collect()
    }

    /// Stores a commit the coordinator accepted.
    pub fn commit(&mut self, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) {
        for (tp, o) in offsets {
            self.committed.insert(tp.clone(), o.clone());
        }
    }

    /// The answer to an OffsetFetch of `partitions` (`None`: every partition with an offset).
    pub fn offset_fetch(&self, partitions: Option<&BTreeSet<TopicPartition>>) -> OffsetsResponse {
        let wanted: Vec<TopicPartition> = match partitions {
            Some(ps) => ps.iter().cloned().collect(),
            None => self.committed.keys().cloned().collect(),
        };
        OffsetsResponse::OffsetFetch {
            error_code: 0,
            partitions: wanted
                .into_iter()
                .map(|tp| {
                    let committed = self.committed.get(&tp).cloned();
                    (
                        tp,
                        PartitionOffset {
                            error_code: 0,
                            committed,
                        },
                    )
                })
                .collect(),
        }
    }

    fn log(&self, tp: &TopicPartition) -> Option<&Vec<i64>> {
        self.topics.get(&tp.topic)?.get(tp.partition as usize)
    }

    fn log_mut(&mut self, tp: &TopicPartition) -> &mut Vec<i64> {
        self.topics
            .get_mut(&tp.topic)
            .and_then(|ps| ps.get_mut(tp.partition as usize))
            .expect("a partition of the cluster")
    }
}

/// What the fetcher learns of [`BROKER`] when it connects.
pub fn broker_info() -> BrokerInfo {
    BrokerInfo {
        id: BROKER,
        fetch_version: 12,
        can_validate: false,
    }
}

/// One batch of `timestamps.len()` records from `base`; each record's value names it
/// (`topic-partition@offset`), so a test can tell every record apart.
fn batch(tp: &TopicPartition, base: i64, timestamps: &[i64]) -> Bytes {
    let mut b = RecordBatchBuilder::new(base).partition_leader_epoch(LEADER_EPOCH);
    for (i, ts) in timestamps.iter().enumerate() {
        let value = format!("{tp}@{}", base + i as i64);
        b.record(*ts, None, Some(value.as_bytes()));
    }
    b.build().expect("a batch the builder can encode")
}
