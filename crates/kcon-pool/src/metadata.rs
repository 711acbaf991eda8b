//! The cluster metadata cache: brokers, controller, topics and partitions, as the Metadata
//! answers describe them, merged so that no partition's leader epoch goes backwards.

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kcon_codec::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kcon_codec::kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::TopicId;
use tokio::time::Instant;
use tracing::debug;

/// A snapshot of the cluster metadata. The pool replaces it whole on every refresh, so a
/// snapshot never changes under its reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// The cluster id (Metadata v2+).
    pub cluster_id: Option<String>,
    /// The controller's broker id (Metadata v1+), if the broker named one.
    pub controller_id: Option<i32>,
    /// The live brokers, by id.
    pub brokers: BTreeMap<i32, BrokerMetadata>,
    /// The topics asked about, by name.
    pub topics: BTreeMap<String, TopicMetadata>,
    /// How many Metadata answers have been applied: a newer snapshot has a larger one.
    pub generation: u64,
    updated_at: Option<Instant>,
    /// The highest leader epoch seen per partition, kept apart from `topics` so that an answer
    /// that left a partition out for a while cannot bring back an older epoch after it (the
    /// Java client's `Metadata.lastSeenLeaderEpochs`).
    last_seen_epochs: BTreeMap<String, BTreeMap<i32, i32>>,
}

impl Metadata {
    /// The broker with this id.
    pub fn broker(&self, id: i32) -> Option<&BrokerMetadata> {
        self.brokers.get(&id)
    }

    /// The topic with this name.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    /// A partition of a topic.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMetadata> {
        self.topics.get(topic)?.partitions.get(&partition)
    }

    /// The leader of a partition, if it has one and it is a known broker.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerMetadata> {
        self.brokers.get(&self.partition(topic, partition)?.leader?)
    }

    /// When the last answer was applied; `None` before the first.
    pub fn updated_at(&self) -> Option<Instant> {
        self.updated_at
    }

    /// The snapshot one Metadata `answer` for every topic makes by itself, applied to none
    /// before it and with no time of update: what a part that decides by the metadata (the
    /// producer's machine) is given in tests without a pool.
    pub fn from_answer(answer: &MetadataResponse) -> Metadata {
        let mut m = Metadata::default().merged(answer, &TopicScope::All, true, Instant::now());
        m.updated_at = None;
        m
    }

    /// This snapshot with `answer` applied. `asked` is what the request asked for: an answer for
    /// all topics replaces the topic list (a topic missing from it is gone), an answer for some
    /// topics updates those and keeps the rest. `reliable_epochs` is false below Metadata v9,
    /// whose leader epochs brokers did not keep accurate during reassignments (the Java client's
    /// `MetadataResponse.hasReliableLeaderEpochs`): those are taken as they come.
    pub(crate) fn merged(
        &self,
        answer: &MetadataResponse,
        asked: &TopicScope,
        reliable_epochs: bool,
        now: Instant,
    ) -> Metadata {
        let brokers = if answer.brokers.is_empty() {
            // Every broker answers with all live brokers, itself included; an empty list is a
            // broker in trouble, not a cluster without brokers.
            self.brokers.clone()
        } else {
            answer
                .brokers
                .iter()
                .map(|b| {
                    let broker = BrokerMetadata {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    };
                    (broker.id, broker)
                })
                .collect()
        };
        let (mut topics, mut last_seen_epochs) = match asked {
            TopicScope::All => (BTreeMap::new(), BTreeMap::new()),
            TopicScope::Topics(_) => (self.topics.clone(), self.last_seen_epochs.clone()),
        };
        for t in &answer.topics {
            // kcon asks by name, so every topic in the answer has one; an entry without is
            // skipped, having nothing to be found by.
            let Some(name) = &t.name else { continue };
            let name = name.0.to_string();
            let mut fresh = TopicMetadata::from_answer(&name, t);
            let old = self.topics.get(&name);
            let mut epochs = self
                .last_seen_epochs
                .get(&name)
                .cloned()
                .unwrap_or_default();
            // A recreated topic (new id) starts its epochs over (KIP-516).
            if old.is_some_and(|o| o.id.is_some() && fresh.id.is_some() && o.id != fresh.id) {
                epochs.clear();
            }
            if reliable_epochs {
                fresh.keep_newer_epochs(old, &mut epochs);
            }
            topics.insert(name.clone(), fresh);
            last_seen_epochs.insert(name, epochs);
        }
        Metadata {
            cluster_id: answer
                .cluster_id
                .as_ref()
                .map(|c| c.to_string())
                .or_else(|| self.cluster_id.clone()),
            controller_id: (answer.controller_id.0 >= 0).then_some(answer.controller_id.0),
            brokers,
            topics,
            generation: self.generation + 1,
            updated_at: Some(now),
            last_seen_epochs,
        }
    }

    /// This snapshot without its brokers and controller, after a rebootstrap: the topics and
    /// the leader epochs seen stay, so that no epoch goes backwards with the next answer.
    pub(crate) fn without_brokers(&self) -> Metadata {
        let mut m = self.clone();
        m.brokers.clear();
        m.controller_id = None;
        m
    }

    /// This snapshot without the topics `keep` leaves out.
    pub(crate) fn retained(&self, keep: &TopicScope) -> Metadata {
        let mut m = self.clone();
        m.topics.retain(|name, _| keep.contains(name));
        m.last_seen_epochs.retain(|name, _| keep.contains(name));
        m
    }
}

/// A broker, as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BrokerMetadata {
    /// The broker id.
    pub id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port`, with an IPv6 host in brackets, ready to resolve and dial.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A topic, as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic id (Metadata v10+), `None` when the broker sent none (all zeros).
    pub id: Option<TopicId>,
    /// The topic's error code (0: none). UNKNOWN_TOPIC_OR_PARTITION (3), LEADER_NOT_AVAILABLE
    /// (5), TOPIC_AUTHORIZATION_FAILED (29), ... are kept here for the caller to act on.
    pub error_code: i16,
    /// Whether it is an internal topic (`__consumer_offsets`, ...).
    pub is_internal: bool,
    /// Its partitions, by index.
    pub partitions: BTreeMap<i32, PartitionMetadata>,
}

impl TopicMetadata {
    fn from_answer(name: &str, t: &MetadataResponseTopic) -> TopicMetadata {
        let id = *t.topic_id.as_bytes();
        TopicMetadata {
            name: name.to_owned(),
            id: (id != [0; 16]).then_some(TopicId(id)),
            error_code: t.error_code,
            is_internal: t.is_internal,
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect();
                    let partition = PartitionMetadata {
                        partition: p.partition_index,
                        error_code: p.error_code,
                        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                        leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                        replicas: ids(&p.replica_nodes),
                        isr: ids(&p.isr_nodes),
                        offline_replicas: ids(&p.offline_replicas),
                    };
                    (partition.partition, partition)
                })
                .collect(),
        }
    }

    /// Replaces every partition whose epoch is older than the last seen with the cached one if
    /// that is current, or drops it (the Java client's `Metadata.updateLatestMetadata` and
    /// `partitionMetadataIfCurrent`); records the epochs accepted.
    fn keep_newer_epochs(&mut self, old: Option<&TopicMetadata>, epochs: &mut BTreeMap<i32, i32>) {
        let mut dropped = Vec::new();
        for (index, p) in self.partitions.iter_mut() {
            let Some(epoch) = p.leader_epoch else {
                continue;
            };
            match epochs.get(index) {
                Some(&seen) if seen > epoch => {
                    debug!(topic = %self.name, partition = index, epoch, seen, "metadata answer has an older leader epoch; keeping the newer");
                    match old
                        .and_then(|o| o.partitions.get(index))
                        .filter(|o| o.leader_epoch == Some(seen))
                    {
                        Some(current) => *p = current.clone(),
                        None => dropped.push(*index),
                    }
                }
                _ => {
                    epochs.insert(*index, epoch);
                }
            }
        }
        for index in dropped {
            self.partitions.remove(&index);
        }
    }
}

/// A partition, as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetadata {
    /// The partition index.
    pub partition: i32,
    /// The partition's error code (0: none).
    pub error_code: i16,
    /// The leader's broker id, `None` while there is none (leader -1).
    pub leader: Option<i32>,
    /// The leader epoch (Metadata v7+), `None` when the broker sent none (-1).
    pub leader_epoch: Option<i32>,
    /// The replicas' broker ids.
    pub replicas: Vec<i32>,
    /// The in-sync replicas' broker ids.
    pub isr: Vec<i32>,
    /// The offline replicas' broker ids (Metadata v5+).
    pub offline_replicas: Vec<i32>,
}

/// Which topics a Metadata request asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicScope {
    /// Every topic in the cluster.
    All,
    /// These topics (none: just the brokers and the cluster).
    Topics(BTreeSet<String>),
}

impl TopicScope {
    /// No topics: a refresh asks only for the brokers and the cluster.
    pub fn none() -> TopicScope {
        TopicScope::Topics(BTreeSet::new())
    }

    /// These topics.
    pub fn topics<I, S>(names: I) -> TopicScope
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TopicScope::Topics(names.into_iter().map(Into::into).collect())
    }

    /// Whether an answer for `self` answers everything `other` asks.
    pub fn covers(&self, other: &TopicScope) -> bool {
        match (self, other) {
            (TopicScope::All, _) => true,
            (TopicScope::Topics(_), TopicScope::All) => false,
            (TopicScope::Topics(mine), TopicScope::Topics(theirs)) => theirs.is_subset(mine),
        }
    }

    /// Whether `topic` is in the scope.
    pub fn contains(&self, topic: &str) -> bool {
        match self {
            TopicScope::All => true,
            TopicScope::Topics(t) => t.contains(topic),
        }
    }

    /// Adds what `other` asks for.
    pub(crate) fn include(&mut self, other: &TopicScope) {
        match (&mut *self, other) {
            (TopicScope::All, _) => {}
            (_, TopicScope::All) => *self = TopicScope::All,
            (TopicScope::Topics(mine), TopicScope::Topics(theirs)) => {
                mine.extend(theirs.iter().cloned());
            }
        }
    }
}

/// Whether a Metadata request asks the brokers to create the missing topics it names
/// (`allow_auto_topic_creation`, Metadata v4+), by who asks. A broker creates one only where
/// its `auto.create.topics.enable` is true (Apache Kafka's default), and answers
/// UNKNOWN_TOPIC_OR_PARTITION where it is false; below v4 the field does not exist and brokers
/// go by their own setting alone. [`asks`](AutoCreate::asks) is the one place the flag is
/// decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoCreate {
    /// As the pool's `allow.auto.create.topics` says (default true, as the Java consumer's
    /// `ConsumerConfig.DEFAULT_ALLOW_AUTO_CREATE_TOPICS`). What every request of the pool's own
    /// (the periodic refresh), of a consumer or an admin call asks, and a producer's on a pool
    /// of its own (true by default: the Java producer always asks; false honoured, as
    /// librdkafka's producer honours it).
    #[default]
    Configured,
    /// Always: a producer's requests on a pool it shares, whose `allow.auto.create.topics` is
    /// its other users' (a consumer's), as the Java producer's (which has no property for it).
    Always,
}

impl AutoCreate {
    /// Whether a request made for `self` asks for creation, with `allow.auto.create.topics`
    /// set to `configured`.
    pub fn asks(self, configured: bool) -> bool {
        match self {
            AutoCreate::Configured => configured,
            AutoCreate::Always => true,
        }
    }
}

/// The Metadata request for `scope` at `version`; `allow_auto_topic_creation` is
/// [`AutoCreate::asks`]'s answer.
pub(crate) fn metadata_request(
    scope: &TopicScope,
    version: i16,
    allow_auto_topic_creation: bool,
) -> MetadataRequest {
    let topics = match scope {
        // v0 has no null list: an empty one means every topic. (So v0 cannot ask for no
        // topics either; it gets them all, which is only more than asked.)
        TopicScope::All if version == 0 => Some(Vec::new()),
        TopicScope::All => None,
        TopicScope::Topics(names) => Some(
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                })
                .collect(),
        ),
    };
    MetadataRequest::default()
        .with_topics(topics)
        // Below v4 the field does not exist and brokers auto-create by their own config only.
        .with_allow_auto_topic_creation(allow_auto_topic_creation || version < 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcon_codec::kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition,
    };

    fn answer(partitions: &[(i32, i32, i32)]) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("h1"))
                    .with_port(9092),
            ])
            .with_controller_id(BrokerId(1))
            .with_topics(vec![topic("t", partitions)])
    }

    fn topic(name: &'static str, partitions: &[(i32, i32, i32)]) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(name))))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(index, leader, epoch)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(index)
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch)
                            .with_replica_nodes(vec![BrokerId(leader)])
                            .with_isr_nodes(vec![BrokerId(leader)])
                    })
                    .collect(),
            )
    }

    fn some(names: &[&str]) -> TopicScope {
        TopicScope::topics(names.iter().copied())
    }

    #[test]
    fn leader_epochs_never_go_backwards() {
        let now = Instant::now();
        let m =
            Metadata::default().merged(&answer(&[(0, 1, 5), (1, 1, 2)]), &some(&["t"]), true, now);
        assert_eq!(m.partition("t", 0).unwrap().leader_epoch, Some(5));
        // An older answer (a broker that has not caught up) for partition 0, a newer for 1.
        let m = m.merged(&answer(&[(0, 2, 3), (1, 2, 3)]), &some(&["t"]), true, now);
        let p0 = m.partition("t", 0).unwrap();
        assert_eq!((p0.leader, p0.leader_epoch), (Some(1), Some(5)));
        let p1 = m.partition("t", 1).unwrap();
        assert_eq!((p1.leader, p1.leader_epoch), (Some(2), Some(3)));
        // Equal epochs are taken (the ISR can change without a new epoch).
        let m = m.merged(&answer(&[(0, 1, 5), (1, 2, 3)]), &some(&["t"]), true, now);
        assert_eq!(m.partition("t", 0).unwrap().leader_epoch, Some(5));
        let m = m.merged(&answer(&[(0, 3, 6)]), &some(&["t"]), true, now);
        let p0 = m.partition("t", 0).unwrap();
        assert_eq!((p0.leader, p0.leader_epoch), (Some(3), Some(6)));
        assert_eq!(m.generation, 4);
    }

    #[test]
    fn an_epoch_seen_before_a_gap_still_holds_after_it() {
        let now = Instant::now();
        let m = Metadata::default().merged(&answer(&[(0, 1, 5)]), &some(&["t"]), true, now);
        // The partition is left out once (topic-level error), then comes back older.
        let m = m.merged(&answer(&[]), &some(&["t"]), true, now);
        assert!(m.partition("t", 0).is_none());
        let m = m.merged(&answer(&[(0, 2, 4)]), &some(&["t"]), true, now);
        assert!(
            m.partition("t", 0).is_none(),
            "no current info for the partition: better none than an older leader"
        );
        let m = m.merged(&answer(&[(0, 2, 5)]), &some(&["t"]), true, now);
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
    }

    #[test]
    fn a_recreated_topic_starts_its_epochs_over() {
        let now = Instant::now();
        let mut a = answer(&[(0, 1, 9)]);
        a.topics[0].topic_id = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        let m = Metadata::default().merged(&a, &some(&["t"]), true, now);
        let mut b = answer(&[(0, 2, 0)]);
        b.topics[0].topic_id = "11111111-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        let m = m.merged(&b, &some(&["t"]), true, now);
        assert_eq!(m.partition("t", 0).unwrap().leader_epoch, Some(0));
    }

    #[test]
    fn unreliable_epochs_below_v9_are_taken_as_they_come() {
        let now = Instant::now();
        let m = Metadata::default().merged(&answer(&[(0, 1, 5)]), &some(&["t"]), false, now);
        let m = m.merged(&answer(&[(0, 2, 3)]), &some(&["t"]), false, now);
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
    }

    #[test]
    fn all_topics_answer_replaces_some_topics_answer_merges() {
        let now = Instant::now();
        let mut a = answer(&[(0, 1, 1)]);
        a.topics.push(topic("u", &[(0, 1, 1)]));
        let m = Metadata::default().merged(&a, &TopicScope::All, true, now);
        assert_eq!(m.topics.len(), 2);
        // Asked for "t" only: "u" is kept.
        let m = m.merged(&answer(&[(0, 1, 2)]), &some(&["t"]), true, now);
        assert!(m.topic("u").is_some());
        // Asked for all: "u" is gone from the cluster.
        let m = m.merged(&answer(&[(0, 1, 2)]), &TopicScope::All, true, now);
        assert!(m.topic("u").is_none());
        assert_eq!(m.leader("t", 0).unwrap().address(), "h1:9092");
        assert_eq!(m.controller_id, Some(1));
    }

    #[test]
    fn an_answer_without_brokers_keeps_the_known_ones() {
        let now = Instant::now();
        let m = Metadata::default().merged(&answer(&[]), &TopicScope::none(), true, now);
        let m = m.merged(&MetadataResponse::default(), &TopicScope::none(), true, now);
        assert_eq!(m.brokers.len(), 1);
    }

    #[test]
    fn scopes_cover_and_include() {
        let mut s = some(&["a"]);
        assert!(s.covers(&some(&[])));
        assert!(!s.covers(&some(&["a", "b"])));
        s.include(&some(&["b"]));
        assert!(s.covers(&some(&["a", "b"])));
        assert!(!s.covers(&TopicScope::All));
        s.include(&TopicScope::All);
        assert_eq!(s, TopicScope::All);
        assert!(s.covers(&some(&["z"])));
    }

    #[test]
    fn requests_fit_their_version() {
        let all0 = metadata_request(&TopicScope::All, 0, false);
        assert_eq!(all0.topics, Some(vec![]));
        assert!(all0.allow_auto_topic_creation);
        let all = metadata_request(&TopicScope::All, 12, false);
        assert_eq!(all.topics, None);
        assert!(!all.allow_auto_topic_creation);
        let some = metadata_request(&some(&["x"]), 12, true);
        assert_eq!(some.topics.unwrap().len(), 1);
        assert!(some.allow_auto_topic_creation);
    }

    #[test]
    fn a_producer_always_asks_for_creation_and_the_rest_as_configured() {
        assert!(AutoCreate::Always.asks(false));
        assert!(AutoCreate::Always.asks(true));
        assert!(AutoCreate::Configured.asks(true));
        assert!(!AutoCreate::Configured.asks(false));
        assert_eq!(AutoCreate::default(), AutoCreate::Configured);
    }
}
