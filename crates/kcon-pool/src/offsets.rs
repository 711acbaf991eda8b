//! ListOffsets per leader, and the watermarks built on it: one-shot lookups over a [`Pool`],
//! which the consumer's `offsets_for_times`, `watermarks` and `lag` and the admin calls make.
//! The request's shape and the answer's reading are kcon-core's
//! ([`kcon_core::list_offsets`]); this is the sending, with the leaders found in the pool's
//! metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::error_codes::{error_name, is_stale_metadata_error};
use kcon_core::list_offsets::{ListedOffset, list_offsets_request, list_offsets_response};
use kcon_core::{Cause, IsolationLevel, OffsetSpec, Outcome, TopicPartition, Watermarks};

use crate::error::Error;
use crate::metadata::TopicScope;
use crate::pool::{BrokerTarget, Pool};

/// How many times a ListOffsets round is retried after stale-metadata errors (a moved leader):
/// each retry refreshes the metadata first.
const LIST_OFFSETS_ATTEMPTS: u32 = 5;

/// How long to wait between those retries (the metadata refresh itself is coalesced by the
/// pool).
const LIST_OFFSETS_BACKOFF: Duration = Duration::from_millis(100);

/// Each partition's answer or why it has none.
pub type EachListed = BTreeMap<TopicPartition, Result<ListedOffset, ListOffsetsError>>;

/// ListOffsets for `partitions`, each sent to its leader. Partitions whose answer is a
/// stale-metadata error (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
/// ...) are asked again after a metadata refresh, up to a bound; what is still an error then is
/// returned with its error code, like the Java client's `ListOffsetsResult` per partition. A
/// partition without a leader answers LEADER_NOT_AVAILABLE, one missing from the metadata
/// UNKNOWN_TOPIC_OR_PARTITION. A leader that cannot be reached fails the call.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn list_offsets(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, ListedOffset>, ListOffsetsError> {
    let mut out = BTreeMap::new();
    for (tp, listed) in list_offsets_each(pool, partitions, isolation).await? {
        let listed = match listed {
            Ok(l) => l,
            Err(ListOffsetsError::Broker { error, .. }) => missing(error.code()),
            Err(ListOffsetsError::NoLeader(_)) => missing(ResponseError::LeaderNotAvailable.code()),
            Err(e) => return Err(e),
        };
        out.insert(tp, listed);
    }
    Ok(out)
}

/// [`list_offsets`] with each partition's own outcome: `Ok` only for an answer without error;
/// a leader that cannot be reached fails its partitions, not the call. The call fails only
/// when the metadata cannot be had.
pub async fn list_offsets_each(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<EachListed, ListOffsetsError> {
    let mut out = BTreeMap::new();
    let mut todo: BTreeMap<TopicPartition, OffsetSpec> = partitions.clone();
    let topics: BTreeSet<String> = partitions.keys().map(|tp| tp.topic.clone()).collect();
    let mut metadata = pool.metadata();
    if topics.iter().any(|t| metadata.topic(t).is_none()) {
        metadata = pool
            .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
            .await?;
    }
    for attempt in 0..LIST_OFFSETS_ATTEMPTS {
        let last = attempt + 1 == LIST_OFFSETS_ATTEMPTS;
        let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>> =
            BTreeMap::new();
        for (tp, spec) in &todo {
            let Some(p) = metadata.partition(&tp.topic, tp.partition) else {
                out.insert(tp.clone(), Err(ListOffsetsError::unknown_partition(tp)));
                continue;
            };
            let Some(leader) = p.leader else {
                out.insert(tp.clone(), Err(ListOffsetsError::NoLeader(tp.clone())));
                continue;
            };
            by_leader
                .entry(leader)
                .or_default()
                .insert(tp.clone(), (*spec, p.leader_epoch));
        }
        let mut stale = BTreeMap::new();
        for (leader, batch) in by_leader {
            let answer = match ask_leader(pool, leader, &batch, isolation).await {
                Ok(a) => a,
                Err(e) => {
                    for tp in batch.into_keys() {
                        out.insert(tp, Err(e.clone()));
                    }
                    continue;
                }
            };
            for (tp, (spec, _)) in batch {
                // A partition the answer leaves out: the leader does not know it (the Java
                // client's ListOffsetsHandler fails such a partition too).
                let code = answer
                    .get(&tp)
                    .map_or(ResponseError::UnknownTopicOrPartition.code(), |l| {
                        l.error_code
                    });
                if is_stale_metadata_error(code) && !last {
                    stale.insert(tp.clone(), spec);
                }
                let listed = match ListOffsetsError::partition(ApiKey::ListOffsets, code, &tp) {
                    None => Ok(answer[&tp]),
                    Some(e) => Err(e),
                };
                out.insert(tp, listed);
            }
        }
        if stale.is_empty() {
            break;
        }
        tokio::time::sleep(LIST_OFFSETS_BACKOFF).await;
        metadata = pool
            .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
            .await?;
        todo = stale;
    }
    Ok(out)
}

async fn ask_leader(
    pool: &Pool,
    leader: i32,
    batch: &BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, ListedOffset>, ListOffsetsError> {
    let conn = pool.connection(BrokerTarget::Broker(leader)).await?;
    let v = conn.version(ApiKey::ListOffsets)?;
    let req = list_offsets_request(batch, isolation, v)
        .map_err(|e| ListOffsetsError::Unsupported { reason: e.0 })?;
    Ok(list_offsets_response(conn.send(&req).await?))
}

fn missing(error_code: i16) -> ListedOffset {
    ListedOffset {
        error_code,
        offset: -1,
        timestamp: -1,
        leader_epoch: None,
    }
}

/// The watermarks of `partitions`: log start (earliest), high watermark (latest under
/// read_uncommitted) and last stable offset (latest under read_committed). Partitions with an
/// error in any of the three lookups are left out.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn watermarks(
    pool: &Pool,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, Watermarks>, ListOffsetsError> {
    let spec = |s: OffsetSpec| partitions.iter().map(|tp| (tp.clone(), s)).collect();
    let start = list_offsets(
        pool,
        &spec(OffsetSpec::Earliest),
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    let high = list_offsets(
        pool,
        &spec(OffsetSpec::Latest),
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    let stable = list_offsets(
        pool,
        &spec(OffsetSpec::Latest),
        IsolationLevel::ReadCommitted,
    )
    .await;
    let mut out = BTreeMap::new();
    for tp in partitions {
        let (Some(s), Some(h)) = (start.get(tp), high.get(tp)) else {
            continue;
        };
        if s.error_code != 0 || h.error_code != 0 {
            continue;
        }
        let last_stable = stable
            .as_ref()
            .ok()
            .and_then(|m| m.get(tp))
            .filter(|l| l.error_code == 0)
            .map(|l| l.offset);
        out.insert(
            tp.clone(),
            Watermarks {
                log_start: s.offset,
                high_watermark: h.offset,
                last_stable,
            },
        );
    }
    Ok(out)
}

/// Why a ListOffsets lookup, or one partition of it, has no answer.
///
/// The variant says who caused it: a broker that answered an error code for the partition
/// ([`Broker`](ListOffsetsError::Broker)), a partition without a leader
/// ([`NoLeader`](ListOffsetsError::NoLeader)), a leader whose ListOffsets version cannot carry
/// the query ([`Unsupported`](ListOffsetsError::Unsupported)), or the pool, which could not
/// send the request, read its answer or get the metadata ([`Pool`](ListOffsetsError::Pool)).
/// Like every client's error it answers [`cause`](ListOffsetsError::cause),
/// [`outcome`](ListOffsetsError::outcome), [`code`](ListOffsetsError::code) and
/// [`api`](ListOffsetsError::api), also as kcon-core's [`KconError`](kcon_core::KconError).
#[derive(Debug, Clone)]
pub enum ListOffsetsError {
    /// A broker answered `api` with an error code for `partition`: its leader answered
    /// ListOffsets with one, or the metadata does not have the partition (Metadata,
    /// UNKNOWN_TOPIC_OR_PARTITION).
    Broker {
        /// The request it answered.
        api: ApiKey,
        /// The error, by name.
        error: ResponseError,
        /// The partition the error is about.
        partition: TopicPartition,
    },
    /// The partition has no leader in the metadata, even after a refresh (a leader election
    /// under way, or every replica offline).
    NoLeader(TopicPartition),
    /// The leader's ListOffsets version cannot carry the query: read_committed needs v2, the
    /// max-timestamp query v7.
    Unsupported {
        /// What is missing.
        reason: String,
    },
    /// The request could not be sent or its answer not read, or the metadata could not be
    /// had: the network, TLS, SASL, a corrupt answer, a broker that does not offer ListOffsets,
    /// a runtime shutting down. The pool's error says which, and whether a retry can help.
    Pool(Error),
}

impl ListOffsetsError {
    /// A broker's error code for one partition of `api`; `None` for code 0 (no error).
    pub fn partition(api: ApiKey, code: i16, tp: &TopicPartition) -> Option<ListOffsetsError> {
        ResponseError::try_from_code(code).map(|error| ListOffsetsError::Broker {
            api,
            error,
            partition: tp.clone(),
        })
    }

    /// A partition the metadata does not have: its topic is unknown, or has fewer partitions.
    pub fn unknown_partition(tp: &TopicPartition) -> ListOffsetsError {
        ListOffsetsError::Broker {
            api: ApiKey::Metadata,
            error: ResponseError::UnknownTopicOrPartition,
            partition: tp.clone(),
        }
    }

    /// Whether the same lookup can succeed later without anything changing on the caller's
    /// side: a retriable Kafka error (a moved leader, a timeout), a leader being elected, a
    /// connection that may come back.
    pub fn is_retriable(&self) -> bool {
        match self {
            ListOffsetsError::Broker { error, .. } => error.is_retriable(),
            ListOffsetsError::NoLeader(_) => true,
            ListOffsetsError::Unsupported { .. } => false,
            ListOffsetsError::Pool(e) => e.is_retriable(),
        }
    }

    /// Whose doing it was: the pool's error says its own; a broker's error code and a
    /// partition without a leader are what the brokers say of the cluster ([`Cause::Broker`]).
    pub fn cause(&self) -> Cause {
        match self {
            ListOffsetsError::Broker { .. } | ListOffsetsError::NoLeader(_) => Cause::Broker,
            ListOffsetsError::Unsupported { .. } => Cause::Unsupported,
            ListOffsetsError::Pool(e) => e.cause(),
        }
    }

    /// What the caller does next: the pool's own outcome for its errors, else
    /// [`Outcome::Retry`] when [`is_retriable`](ListOffsetsError::is_retriable), else
    /// [`Outcome::Fix`].
    pub fn outcome(&self) -> Outcome {
        match self {
            ListOffsetsError::Pool(e) => e.outcome(),
            e if e.is_retriable() => Outcome::Retry,
            _ => Outcome::Fix,
        }
    }

    /// The broker's error, when a broker answered one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            ListOffsetsError::Broker { error, .. } => Some(*error),
            ListOffsetsError::Pool(e) => e.code(),
            _ => None,
        }
    }

    /// The request the error is about, when known.
    pub fn api(&self) -> Option<ApiKey> {
        match self {
            ListOffsetsError::Broker { api, .. } => Some(*api),
            ListOffsetsError::NoLeader(_) => None,
            ListOffsetsError::Unsupported { .. } => Some(ApiKey::ListOffsets),
            ListOffsetsError::Pool(e) => e.api(),
        }
    }

    /// The partition the error is about, when it is about one.
    pub fn topic_partition(&self) -> Option<&TopicPartition> {
        match self {
            ListOffsetsError::Broker { partition, .. } => Some(partition),
            ListOffsetsError::NoLeader(tp) => Some(tp),
            _ => None,
        }
    }
}

kcon_core::impl_kcon_error!(ListOffsetsError);

impl From<Error> for ListOffsetsError {
    fn from(e: Error) -> ListOffsetsError {
        ListOffsetsError::Pool(e)
    }
}

impl fmt::Display for ListOffsetsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListOffsetsError::Broker {
                api,
                error,
                partition,
            } => write!(
                f,
                "{api:?} answered {} for {partition}",
                error_name(error.code())
            ),
            ListOffsetsError::NoLeader(tp) => write!(f, "{tp} has no leader in the metadata"),
            ListOffsetsError::Unsupported { reason } => f.write_str(reason),
            ListOffsetsError::Pool(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ListOffsetsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListOffsetsError::Broker { error, .. } => Some(error),
            ListOffsetsError::Pool(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use kcon_core::ConfigError;

    use super::*;

    #[test]
    fn errors_are_named_as_kafka_documents_them() {
        let tp = TopicPartition::new("t", 2);
        let e = ListOffsetsError::partition(ApiKey::ListOffsets, 6, &tp).expect("an error");
        assert_eq!(
            e.to_string(),
            "ListOffsets answered NOT_LEADER_OR_FOLLOWER (6) for t-2"
        );
        assert_eq!(e.code(), Some(ResponseError::NotLeaderOrFollower));
        assert_eq!(e.api(), Some(ApiKey::ListOffsets));
        assert!(e.is_retriable());
        assert_eq!(e.topic_partition(), Some(&tp));
        assert!(ListOffsetsError::partition(ApiKey::ListOffsets, 0, &tp).is_none());
        let e = ListOffsetsError::unknown_partition(&tp);
        assert_eq!(
            e.to_string(),
            "Metadata answered UNKNOWN_TOPIC_OR_PARTITION (3) for t-2"
        );
        assert!(ListOffsetsError::NoLeader(tp).is_retriable());
    }

    /// Every error answers the four questions of kcon-core's error model, through the trait as
    /// through its own methods; the pool's errors keep their own answers.
    #[test]
    fn each_error_says_whose_doing_it_was_and_what_next() {
        let tp = TopicPartition::new("t", 0);
        let cases = [
            (
                ListOffsetsError::partition(ApiKey::ListOffsets, 29, &tp).expect("an error"),
                (Cause::Broker, Outcome::Fix),
            ),
            (
                ListOffsetsError::partition(ApiKey::ListOffsets, 6, &tp).expect("an error"),
                (Cause::Broker, Outcome::Retry),
            ),
            (
                ListOffsetsError::NoLeader(tp.clone()),
                (Cause::Broker, Outcome::Retry),
            ),
            (
                ListOffsetsError::Unsupported {
                    reason: "read_committed needs ListOffsets v2".into(),
                },
                (Cause::Unsupported, Outcome::Fix),
            ),
            (
                ListOffsetsError::from(Error::UnknownBroker { id: 3 }),
                (Cause::Transport, Outcome::Retry),
            ),
            (
                ListOffsetsError::from(Error::Config(ConfigError::invalid(
                    "request.timeout.ms",
                    "soon",
                    "a number",
                ))),
                (Cause::Config, Outcome::Fix),
            ),
            (
                ListOffsetsError::from(Error::Stopped),
                (Cause::Closed, Outcome::Closed),
            ),
        ];
        for (e, expected) in cases {
            assert_eq!((e.cause(), e.outcome()), expected, "{e}");
            let any: &dyn kcon_core::KconError = &e;
            assert_eq!((any.cause(), any.outcome()), expected, "{e}");
            assert_eq!((any.code(), any.api()), (e.code(), e.api()), "{e}");
            assert_eq!(any.is_retriable(), e.is_retriable(), "{e}");
        }
    }
}
