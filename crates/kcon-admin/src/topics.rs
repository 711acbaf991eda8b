//! Topics: creating one (CreateTopics) and listing them (Metadata).

use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::TopicId;
use kcon_pool::{BrokerTarget, Metadata, Pool, TopicScope};

use crate::error::Error;
use crate::wire;

/// How often [`create_topic`] looks whether the new topic's partitions have leaders.
const LEADER_POLL: Duration = Duration::from_millis(100);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// How many partitions.
    pub partitions: i32,
    /// How many replicas of each.
    pub replication_factor: i16,
    /// Topic configuration entries (`retention.ms`, `cleanup.policy`, ...).
    pub configs: Vec<(String, String)>,
}

/// What [`create_topic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The topic was created and each partition has a leader.
    Created,
    /// The topic exists already (TOPIC_ALREADY_EXISTS), and `if_not_exists` was asked.
    AlreadyExists,
}

/// A topic as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Its name.
    pub name: String,
    /// Its id (Metadata v10+, KIP-516).
    pub id: Option<TopicId>,
    /// How many partitions it has.
    pub partitions: usize,
    /// Whether it is internal (`__consumer_offsets`, ...).
    pub internal: bool,
}

/// Creates `topic` (CreateTopics, sent to the controller, as the Java admin client's
/// `createTopics` does, or to any broker when the metadata names no broker as the controller)
/// and waits, at most `leaders_within`, until each of its partitions has a leader: producing at
/// once would meet LEADER_NOT_AVAILABLE while leaders are elected. With `if_not_exists`,
/// TOPIC_ALREADY_EXISTS is [`Created::AlreadyExists`] rather than an error. A refusal's message
/// names the broker that answered.
///
/// # Cancel safety
///
/// Not cancel-safe in effect: dropped once CreateTopics went out, the topic may be created all the
/// same (the wait for its leaders is what is abandoned). Call it again with `if_not_exists`, which
/// answers [`Created::AlreadyExists`] for a topic the dropped call created, or look with
/// [`list_topics`].
pub async fn create_topic(
    pool: &Pool,
    topic: &NewTopic,
    if_not_exists: bool,
    leaders_within: Duration,
) -> Result<Created, Error> {
    let target = create_topics_target(&pool.metadata());
    let timeout_ms = i32::try_from(leaders_within.as_millis()).unwrap_or(i32::MAX);
    let conn = pool.connection(target).await?;
    let answer = conn
        .send(&wire::create_topics_request(topic, timeout_ms))
        .await?;
    let peer = conn.peer().clone();
    let Some(result) = answer.topics.iter().find(|t| t.name.as_str() == topic.name) else {
        return Err(Error::Broker {
            api: ApiKey::CreateTopics,
            error: ResponseError::UnknownServerError,
            partition: None,
            message: Some(format!("{peer}'s answer leaves the topic out")),
        });
    };
    match ResponseError::try_from_code(result.error_code) {
        None => {}
        Some(ResponseError::TopicAlreadyExists) if if_not_exists => {
            return Ok(Created::AlreadyExists);
        }
        Some(error) => {
            let message = match result.error_message.as_deref() {
                Some(m) if !m.is_empty() => format!("{peer} says: {m}"),
                _ => format!("from {peer}"),
            };
            return Err(Error::Broker {
                api: ApiKey::CreateTopics,
                error,
                partition: None,
                message: Some(message),
            });
        }
    }
    let deadline = Instant::now() + leaders_within;
    loop {
        let m = pool
            .refresh_metadata(TopicScope::topics([topic.name.clone()]))
            .await?;
        let ready = m.topic(&topic.name).is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == topic.partitions as usize
                && t.partitions.values().all(|p| p.leader.is_some())
        });
        if ready {
            return Ok(Created::Created);
        }
        if Instant::now() >= deadline {
            return Err(Error::Broker {
                api: ApiKey::Metadata,
                error: ResponseError::LeaderNotAvailable,
                partition: None,
                message: Some(format!(
                    "topic {:?} was created, but its partitions have no leaders after {} ms",
                    topic.name,
                    leaders_within.as_millis()
                )),
            });
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

/// Where CreateTopics goes: the controller the metadata names, if it is one of the brokers it
/// lists; else any broker. A KRaft cluster's controllers are not among the brokers clients
/// reach (its brokers name one of themselves, or a random broker, and forward the request to
/// the active controller); librdkafka's mock cluster names an id no broker has; a broker that
/// names none takes the request itself.
fn create_topics_target(m: &Metadata) -> BrokerTarget {
    match m.controller_id {
        Some(id) if m.brokers.contains_key(&id) => BrokerTarget::Broker(id),
        _ => BrokerTarget::Any,
    }
}

/// Every topic of the cluster, by name.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn list_topics(pool: &Pool) -> Result<Vec<TopicListing>, Error> {
    let m = pool.refresh_metadata(TopicScope::All).await?;
    Ok(m.topics
        .values()
        .map(|t| TopicListing {
            name: t.name.clone(),
            id: t.id,
            partitions: t.partitions.len(),
            internal: t.is_internal,
        })
        .collect())
}
