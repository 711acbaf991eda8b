//! A [`SessionRequest`] in kafka-protocol's types, for the Fetch version a broker speaks
//! (v4–v17): fields a version lacks are left out (kafka-protocol refuses a request that sets
//! them), and what a version cannot express is an error rather than a different request.

use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::wire::VersionError;
use kcon_core::{IsolationLevel, TopicId};

use super::{RequestKind, SessionRequest};

/// The consumer settings a Fetch request carries besides the session's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchParams {
    /// `fetch.max.wait.ms`.
    pub max_wait_ms: i32,
    /// `fetch.min.bytes`.
    pub min_bytes: i32,
    /// `fetch.max.bytes`.
    pub max_bytes: i32,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `client.rack` (Fetch v11+, KIP-392); empty when unset.
    pub rack_id: String,
}

impl Default for FetchParams {
    /// The Java consumer's defaults.
    fn default() -> Self {
        FetchParams {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 52_428_800,
            isolation_level: IsolationLevel::ReadUncommitted,
            rack_id: String::new(),
        }
    }
}

fn id_bytes(id: Option<TopicId>) -> [u8; 16] {
    id.map_or([0; 16], |id| id.0)
}

/// kafka-protocol's `Uuid` (the `uuid` crate's, which it does not re-export) from a topic id:
/// through its text form, the one constructor reachable without naming the type.
pub(crate) fn set_uuid<U>(field: &mut U, id: Option<TopicId>)
where
    U: std::str::FromStr,
{
    let text: String = id_bytes(id).iter().map(|b| format!("{b:02x}")).collect();
    // Invariant: 32 hex digits are the `simple` form every `uuid` version parses.
    if let Ok(v) = text.parse() {
        *field = v;
    }
}

/// kafka-protocol's `FetchRequest` for `request` at `version` (4–17). Replica fields and the
/// cluster id keep their defaults: a consumer is no replica (KIP-903, KIP-966 fields unset).
pub fn fetch_request(
    request: &SessionRequest,
    params: &FetchParams,
    version: i16,
) -> Result<FetchRequest, VersionError> {
    if !(4..=17).contains(&version) {
        return Err(VersionError(format!(
            "kcon speaks Fetch v4-v17, not v{version}"
        )));
    }
    if version < 7 && (request.session_id != 0 || request.kind != RequestKind::Full) {
        return Err(VersionError(format!(
            "fetch sessions (KIP-227) need Fetch v7; the broker speaks v{version}"
        )));
    }
    // An empty request (a close) says nothing about topics, so any version can carry it.
    let names_topics = !request.partitions.is_empty() || !request.forgotten.is_empty();
    if names_topics && request.topic_ids != (version >= 13) {
        return Err(VersionError(format!(
            "the request names topics by {}, which Fetch v{version} does not",
            if request.topic_ids { "id" } else { "name" }
        )));
    }
    let mut r = FetchRequest::default();
    r.max_wait_ms = params.max_wait_ms;
    r.min_bytes = params.min_bytes;
    r.max_bytes = params.max_bytes;
    r.isolation_level = params.isolation_level.code();
    r.session_id = request.session_id;
    r.session_epoch = request.epoch;
    if version >= 11 {
        r.rack_id = StrBytes::from_string(params.rack_id.clone());
    }
    // The session keeps partitions sorted, so a topic's partitions are consecutive; a new
    // entry starts whenever the topic changes.
    for (tp, p) in &request.partitions {
        let same = r.topics.last().is_some_and(|t: &FetchTopic| {
            t.topic.as_str() == tp.topic && *t.topic_id.as_bytes() == id_bytes(p.topic_id)
        });
        if !same {
            let mut t = FetchTopic::default();
            // Encoded below v13 only; kept at v13+ too, to group the partitions.
            t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
            if version >= 13 {
                set_uuid(&mut t.topic_id, p.topic_id);
            }
            r.topics.push(t);
        }
        let mut fp = FetchPartition::default();
        fp.partition = tp.partition;
        fp.fetch_offset = p.fetch_offset;
        fp.partition_max_bytes = p.partition_max_bytes;
        if version >= 5 {
            fp.log_start_offset = p.log_start_offset;
        }
        if version >= 9 {
            fp.current_leader_epoch = p.current_leader_epoch.unwrap_or(-1);
        }
        if version >= 12 {
            fp.last_fetched_epoch = p.last_fetched_epoch.unwrap_or(-1);
        }
        // Invariant: the `if !same` above pushed a topic when there was none.
        if let Some(t) = r.topics.last_mut() {
            t.partitions.push(fp);
        }
    }
    for f in &request.forgotten {
        let tp = &f.partition;
        let same = r
            .forgotten_topics_data
            .last()
            .is_some_and(|t: &ForgottenTopic| {
                t.topic.as_str() == tp.topic && *t.topic_id.as_bytes() == id_bytes(f.topic_id)
            });
        if !same {
            let mut t = ForgottenTopic::default();
            t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
            if version >= 13 {
                set_uuid(&mut t.topic_id, f.topic_id);
            }
            r.forgotten_topics_data.push(t);
        }
        // Invariant: as for the topics above.
        if let Some(t) = r.forgotten_topics_data.last_mut() {
            t.partitions.push(tp.partition);
        }
    }
    Ok(r)
}
