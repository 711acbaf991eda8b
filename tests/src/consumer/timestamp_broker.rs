//! A scripted broker for timestamp lookups, which neither real broker here answers truthfully
//! (Tansu answers offset 0 to every ListOffsets by timestamp, the mock cluster doesn't look
//! timestamps up: see DESIGN.md, "The brokers").
//!
//! One broker (id 1) leads every partition of one topic whose records have the timestamps the
//! test gives. It answers ApiVersions, Metadata and ListOffsets (by timestamp: the first record
//! at or after it, Java's `LogSegment.findOffsetByTimestamp`; earliest; latest) and records
//! every ListOffsets query. Requests of any other API are read and never answered, so a
//! consumer's fetcher waits on them without failing the test.

use kcon_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
};
use kcon_scripted::{
    Answer, Received, Script, ScriptedBroker, kcon_versions_of, one_broker_metadata,
};

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// The APIs the broker answers (at kcon's versions), and Fetch, which it advertises (v12, the
/// last to name topics) so that a consumer's fetcher starts, but never answers.
const ANSWERED: [ApiKey; 3] = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::ListOffsets];

/// One ListOffsets query the broker received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The partition asked about.
    pub partition: i32,
    /// The timestamp asked for (-1 latest, -2 earliest).
    pub timestamp: i64,
}

#[derive(Debug)]
struct State {
    topic: String,
    /// Per partition, the timestamp of each record in offset order.
    timestamps: Vec<Vec<i64>>,
    queries: Vec<Query>,
}

/// The scripted broker, serving until dropped.
#[derive(Debug)]
pub struct TimestampBroker(ScriptedBroker<State>);

impl TimestampBroker {
    /// Starts a broker whose `topic` has one partition per entry of `timestamps`, holding one
    /// record per timestamp, in order (timestamps need not increase, as with CreateTime).
    pub async fn start(topic: &str, timestamps: Vec<Vec<i64>>) -> TimestampBroker {
        let mut versions = kcon_versions_of(&ANSWERED);
        versions.push((ApiKey::Fetch as i16, 4, 12));
        let state = State {
            topic: topic.to_owned(),
            timestamps,
            queries: Vec::new(),
        };
        TimestampBroker(ScriptedBroker::start(versions, state).await)
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.0.bootstrap()
    }

    /// Every ListOffsets query so far, in the order received.
    pub fn queries(&self) -> Vec<Query> {
        self.0.script().queries.clone()
    }
}

impl Script for State {
    /// Panics on a request kcon's codec cannot decode: that is a bug in what kcon sent.
    fn answer(&mut self, r: &Received) -> Answer {
        match r.api() {
            Some(ApiKey::Metadata) => {
                let _ = r.decode::<MetadataRequest>();
                let m = one_broker_metadata(r.broker, &[(&self.topic, self.timestamps.len())]);
                r.answer::<MetadataRequest>(&m)
            }
            Some(ApiKey::ListOffsets) => {
                let request = r.decode::<ListOffsetsRequest>();
                let response = list_offsets(self, &request);
                r.answer::<ListOffsetsRequest>(&response)
            }
            _ => Answer::Silent,
        }
    }
}

fn list_offsets(s: &mut State, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in &request.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            s.queries.push(Query {
                partition: p.partition_index,
                timestamp: p.timestamp,
            });
            let answer =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let log = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| s.timestamps.get(i))
                .filter(|_| t.name.0.as_str() == s.topic);
            let Some(log) = log else {
                // UNKNOWN_TOPIC_OR_PARTITION.
                partitions.push(answer.with_error_code(3));
                continue;
            };
            let (offset, timestamp) = match p.timestamp {
                EARLIEST => (0, -1),
                LATEST => (log.len() as i64, -1),
                ts => log
                    .iter()
                    .position(|&t| t >= ts)
                    .map_or((-1, -1), |i| (i as i64, log[i])),
            };
            partitions.push(
                answer
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(0),
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
