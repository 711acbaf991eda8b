//! A model of a KIP-848 group coordinator (`group.protocol=consumer`) for one group, written
//! from the KIP and the behaviour Kafka's group coordinator documents:
//!
//! - The coordinator computes every member's target assignment (here a sticky uniform
//!   assignor: balanced counts, partitions stay where they are when they can) whenever the
//!   membership or a subscription changes, and bumps the group epoch.
//! - A member subscribes by names, by a regex (`SubscribedTopicRegex`, matched against whole
//!   topic names as Kafka's RE2/J `matches()` does), or both: it is subscribed to the union.
//!   A topic created later that a regex matches changes the subscription (Kafka refreshes its
//!   resolved regexes when the topics change; the model at once). A regex that does not
//!   compile is INVALID_REGULAR_EXPRESSION. Names and regex come together or not at all, the
//!   promise kcon keeps for librdkafka's mock cluster, which aborts otherwise.
//! - A member reconciles alone. While it owns partitions outside its target it is told to
//!   revoke them (its assignment is its owned partitions within the target; its epoch stays);
//!   once it reported them gone it moves to the group's epoch and is given its target minus
//!   the partitions another member still holds (those come later, without an epoch bump).
//!   A partition is held by a member from the moment it is returned to it until a report the
//!   member sent after hearing it must go leaves it out (a member has one heartbeat in flight,
//!   so a heartbeat comes after the answer to the one before): no partition is ever held by
//!   two members.
//! - Heartbeat answers carry the assignment only when it changed since the last answer (or the
//!   member reported owning something else), as Kafka's do.
//! - Epochs: a heartbeat with another epoch than the member's is FENCED_MEMBER_EPOCH, an
//!   unknown member id UNKNOWN_MEMBER_ID; a member fenced so keeps holding its partitions until
//!   it rejoins with epoch 0 (reporting nothing owned) or its session ends. A commit must carry
//!   the member's current epoch (STALE_MEMBER_EPOCH otherwise, UNKNOWN_MEMBER_ID for a member
//!   the group does not have).
//! - Sessions: a member not heard from for the session timeout is removed, and so is one that
//!   has not revoked what it must within its rebalance timeout. Epoch -1 leaves; epoch -2 (a
//!   static member) leaves but keeps its place and partitions for the session timeout, and the
//!   same `group.instance.id` joining again takes them over. A second live member with an
//!   instance id in use is UNRELEASED_INSTANCE_ID.
//! - Errors can be injected: the next heartbeat gets the error instead of being handled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kcon_core::{TopicId, TopicPartition};
use kcon_group::consumer_group::{
    ConsumerGroupHeartbeat, ConsumerGroupHeartbeatAnswer, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
    TopicIdPartitions,
};
use regex::Regex;

use crate::code;

/// The coordinator's settings (broker configuration).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            heartbeat_interval: Duration::from_millis(500),
            session_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    epoch: i32,
    /// The topics subscribed to by name.
    names: BTreeSet<String>,
    /// The regex subscribed to, compiled to match whole names.
    regex: Option<Regex>,
    /// What it is subscribed to: the names and the topics the regex matches.
    topics: BTreeSet<String>,
    rebalance_timeout: Duration,
    /// What the member last reported owning.
    reported: BTreeSet<TopicPartition>,
    /// What it was last told it may own.
    assigned: BTreeSet<TopicPartition>,
    /// Partitions taken out of `assigned` by the answer being composed or in flight: held
    /// until the member's next heartbeat, sent once it heard.
    unconfirmed: BTreeSet<TopicPartition>,
    /// Whether `assigned` was sent since it last changed.
    told: bool,
    session_deadline: Instant,
    /// When it must have revoked what it was told to.
    revoke_deadline: Option<Instant>,
    /// Left with epoch -2: its place and partitions are kept for the session.
    left_static: bool,
    /// Fenced by an injected error: keeps its partitions until it rejoins.
    fenced: bool,
}

impl Member {
    fn held(&self) -> impl Iterator<Item = &TopicPartition> {
        self.reported
            .iter()
            .chain(self.assigned.iter())
            .chain(self.unconfirmed.iter())
    }
}

/// One consumer group's KIP-848 coordinator.
#[derive(Debug)]
pub struct ConsumerGroupCoordinator {
    config: ConsumerGroupConfig,
    /// Each topic's id and partition count.
    topics: BTreeMap<String, (TopicId, i32)>,
    group_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    injected: Vec<i16>,
    /// Members removed for their session or rebalance timeout.
    pub expired: u32,
    /// Members fenced by injected errors.
    pub fenced: u32,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Every regex a heartbeat carried (the empty one beside names left out), in order.
    pub regexes_received: Vec<String>,
}

impl ConsumerGroupCoordinator {
    /// An empty group over `topics` (name, id, partition count).
    pub fn new(config: ConsumerGroupConfig, topics: &[(String, TopicId, i32)]) -> Self {
        ConsumerGroupCoordinator {
            config,
            topics: topics
                .iter()
                .map(|(name, id, n)| (name.clone(), (*id, *n)))
                .collect(),
            group_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            injected: Vec::new(),
            expired: 0,
            fenced: 0,
            heartbeats: 0,
            regexes_received: Vec::new(),
        }
    }

    // ----- queries -----

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The members' ids (those that left statically included).
    pub fn member_ids(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }

    /// A member's epoch.
    pub fn member_epoch(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(|m| m.epoch)
    }

    /// A member's target assignment.
    pub fn target(&self, member_id: &str) -> BTreeSet<TopicPartition> {
        self.target.get(member_id).cloned().unwrap_or_default()
    }

    /// Whether every member has reached its target: at the group epoch, told its whole target,
    /// reporting exactly it.
    pub fn is_reconciled(&self) -> bool {
        self.members.iter().all(|(id, m)| {
            let target = self.target(id);
            m.left_static
                || (m.epoch == self.group_epoch && m.assigned == target && m.reported == target)
        })
    }

    /// The partitions each member holds (returned to it, or reported owned): the invariant is
    /// that none is held by two.
    pub fn holders(&self) -> BTreeMap<TopicPartition, Vec<String>> {
        let mut out: BTreeMap<TopicPartition, Vec<String>> = BTreeMap::new();
        for (id, m) in &self.members {
            let held: BTreeSet<&TopicPartition> = m.held().collect();
            for tp in held {
                out.entry(tp.clone()).or_default().push(id.clone());
            }
        }
        out
    }

    /// The earliest timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.revoke_deadline])
            .flatten()
            .min()
    }

    // ----- inputs -----

    /// The next heartbeats get these errors, in order, instead of being handled.
    pub fn inject(&mut self, errors: &[i16]) {
        self.injected.extend_from_slice(errors);
    }

    /// A topic is created: the members whose regex matches it are subscribed to it now.
    pub fn create_topic(&mut self, name: &str, id: TopicId, partitions: i32) {
        self.topics.insert(name.to_owned(), (id, partitions));
        let mut changed = false;
        let resolved: Vec<(String, BTreeSet<String>)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), self.resolve(&m.names, m.regex.as_ref())))
            .collect();
        for (id, topics) in resolved {
            let m = self.members.get_mut(&id).expect("a member");
            if m.topics != topics {
                m.topics = topics;
                changed = true;
            }
        }
        if changed {
            self.assign();
        }
    }

    /// Removes members whose session or rebalance timeout passed.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.expired += 1;
            self.remove(&id);
        }
    }

    /// Validates a commit's member id and epoch (generation field of OffsetCommit v9).
    pub fn validate_commit(&self, epoch: i32, member_id: &str) -> i16 {
        match self.members.get(member_id) {
            None => code::UNKNOWN_MEMBER_ID,
            Some(m) if m.left_static || m.fenced => code::UNKNOWN_MEMBER_ID,
            Some(m) if m.epoch != epoch => code::STALE_MEMBER_EPOCH,
            Some(_) => code::NONE,
        }
    }

    /// Answers a ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        h: &ConsumerGroupHeartbeat,
    ) -> ConsumerGroupHeartbeatAnswer {
        self.heartbeats += 1;
        if !self.injected.is_empty() {
            let code = self.injected.remove(0);
            if matches!(code, code::FENCED_MEMBER_EPOCH | code::UNKNOWN_MEMBER_ID)
                && let Some(m) = self.members.get_mut(&h.member_id)
            {
                self.fenced += 1;
                m.fenced = true;
            }
            return self.error(code);
        }
        assert!(
            !h.member_id.is_empty(),
            "a heartbeat without a member id: {h:?}"
        );
        assert_eq!(
            h.subscribed_topic_names.is_some(),
            h.subscribed_topic_regex.is_some(),
            "names and regex must come together: {h:?}"
        );
        // Checked before anything about the member changes, as Kafka's coordinator does.
        let regex = match h.subscribed_topic_regex.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(r) => {
                self.regexes_received.push(r.to_owned());
                // Compiled as sent (Kafka's `Pattern.compile`), matched against whole names.
                match Regex::new(r).and_then(|_| Regex::new(&format!("^(?:{r})$"))) {
                    Ok(re) => Some(Some(re)),
                    Err(e) => {
                        let mut answer = self.error(code::INVALID_REGULAR_EXPRESSION);
                        answer.error_message = Some(format!(
                            "SubscribedTopicRegex `{r}` is not a valid regular expression: {e}."
                        ));
                        return answer;
                    }
                }
            }
        };
        match h.member_epoch {
            LEAVE_EPOCH => {
                if self.members.contains_key(&h.member_id) {
                    self.remove(&h.member_id);
                }
                return self.left(h.member_epoch);
            }
            STATIC_LEAVE_EPOCH => {
                assert!(
                    h.instance_id.is_some(),
                    "a static leave without an instance id"
                );
                if let Some(m) = self.members.get_mut(&h.member_id) {
                    m.left_static = true;
                    m.told = false;
                }
                return self.left(h.member_epoch);
            }
            0 => {
                // KIP-848's checks of a join.
                assert!(
                    h.rebalance_timeout_ms > 0,
                    "a join without a rebalance timeout: {h:?}"
                );
                assert!(
                    h.subscribed_topic_names
                        .as_ref()
                        .is_some_and(|t| !t.is_empty())
                        || h.subscribed_topic_regex
                            .as_ref()
                            .is_some_and(|r| !r.is_empty()),
                    "a join without a subscription: {h:?}"
                );
                assert_eq!(
                    h.owned,
                    Some(TopicIdPartitions::new()),
                    "a join owning partitions"
                );
                if let Some(code) = self.join(now, h) {
                    return self.error(code);
                }
            }
            epoch => {
                let Some(m) = self.members.get(&h.member_id) else {
                    return self.error(code::UNKNOWN_MEMBER_ID);
                };
                if m.left_static {
                    return self.error(code::UNKNOWN_MEMBER_ID);
                }
                if m.fenced || m.epoch != epoch {
                    return self.error(code::FENCED_MEMBER_EPOCH);
                }
            }
        }
        let session_timeout = self.config.session_timeout;
        let owned = h.owned.as_ref().map(|o| self.names(o));
        let m = self.members.get_mut(&h.member_id).expect("a member");
        m.session_deadline = now + session_timeout;
        // The member heard every earlier answer before sending this.
        m.unconfirmed.clear();
        let reported = owned.is_some();
        if let Some(owned) = owned {
            m.reported = owned;
        }
        if let (Some(names), Some(regex)) = (&h.subscribed_topic_names, regex) {
            m.names = names.iter().cloned().collect();
            m.regex = regex;
            let (names, regex) = (m.names.clone(), m.regex.clone());
            let topics = self.resolve(&names, regex.as_ref());
            let m = self.members.get_mut(&h.member_id).expect("a member");
            if topics != m.topics {
                m.topics = topics;
                self.assign();
            }
        }
        self.advance(now, &h.member_id, reported);
        let m = &self.members[&h.member_id];
        let assignment = (!m.told).then(|| self.ids(&m.assigned));
        let epoch = m.epoch;
        self.members.get_mut(&h.member_id).expect("a member").told = true;
        ConsumerGroupHeartbeatAnswer {
            error_code: code::NONE,
            error_message: None,
            member_id: Some(h.member_id.clone()),
            member_epoch: epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as i32,
            assignment,
        }
    }

    // ----- the rules -----

    /// A join (epoch 0); `Some(error)` when refused.
    fn join(&mut self, now: Instant, h: &ConsumerGroupHeartbeat) -> Option<i16> {
        let instance_holder = h.instance_id.as_ref().and_then(|i| {
            self.members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(i))
                .map(|(id, m)| (id.clone(), m.left_static))
        });
        let rebalance_timeout = Duration::from_millis(h.rebalance_timeout_ms as u64);
        match instance_holder {
            Some((old, false)) if old != h.member_id => return Some(code::UNRELEASED_INSTANCE_ID),
            Some((old, _)) if old != h.member_id => {
                // The static member is back under a new member id: it takes over its place.
                let mut m = self.members.remove(&old).expect("the static member");
                let target = self.target.remove(&old).unwrap_or_default();
                m.left_static = false;
                m.fenced = false;
                m.told = false;
                m.epoch = 0;
                m.rebalance_timeout = rebalance_timeout;
                self.members.insert(h.member_id.clone(), m);
                self.target.insert(h.member_id.clone(), target);
                return None;
            }
            _ => {}
        }
        if let Some(m) = self.members.get_mut(&h.member_id) {
            // Rejoining after a fence: whatever it held is given up now.
            m.fenced = false;
            m.left_static = false;
            m.epoch = 0;
            m.reported.clear();
            m.assigned.clear();
            m.unconfirmed.clear();
            m.told = false;
            m.revoke_deadline = None;
            m.rebalance_timeout = rebalance_timeout;
            return None;
        }
        self.members.insert(
            h.member_id.clone(),
            Member {
                instance_id: h.instance_id.clone(),
                epoch: 0,
                names: BTreeSet::new(),
                regex: None,
                topics: BTreeSet::new(),
                rebalance_timeout,
                reported: BTreeSet::new(),
                assigned: BTreeSet::new(),
                unconfirmed: BTreeSet::new(),
                told: false,
                session_deadline: now + self.config.session_timeout,
                revoke_deadline: None,
                left_static: false,
                fenced: false,
            },
        );
        self.assign();
        None
    }

    /// Moves member `id` one step towards its target.
    fn advance(&mut self, now: Instant, id: &str, reported: bool) {
        let target = self.target(id);
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.held().cloned().collect::<Vec<_>>())
            .collect();
        let group_epoch = self.group_epoch;
        let m = self.members.get_mut(id).expect("a member");
        let holding: BTreeSet<TopicPartition> = m.held().cloned().collect();
        let must_go = holding.iter().any(|tp| !target.contains(tp));
        let new_assigned: BTreeSet<TopicPartition> = if must_go {
            // Revoke first: it keeps only what stays, is given nothing new, keeps its epoch.
            m.revoke_deadline.get_or_insert(now + m.rebalance_timeout);
            m.assigned.intersection(&target).cloned().collect()
        } else {
            m.revoke_deadline = None;
            m.epoch = group_epoch.max(1);
            target
                .iter()
                .filter(|tp| !held_by_others.contains(tp) || holding.contains(tp))
                .cloned()
                .collect()
        };
        let dropped: Vec<TopicPartition> = m.assigned.difference(&new_assigned).cloned().collect();
        m.unconfirmed.extend(dropped);
        if new_assigned != m.assigned || (reported && m.reported != new_assigned) {
            m.assigned = new_assigned;
            m.told = false;
        }
    }

    /// The sticky uniform assignor: every member subscribed to a topic gets an equal share of
    /// its partitions (the first ones one more), keeping what it has where it can.
    fn assign(&mut self) {
        self.group_epoch += 1;
        let live: Vec<String> = self.members.keys().cloned().collect();
        let mut target: BTreeMap<String, BTreeSet<TopicPartition>> = live
            .iter()
            .map(|id| (id.clone(), BTreeSet::new()))
            .collect();
        for (topic, (_, n)) in &self.topics {
            let subscribers: Vec<&String> = live
                .iter()
                .filter(|id| self.members[*id].topics.contains(topic))
                .collect();
            if subscribers.is_empty() {
                continue;
            }
            let count = subscribers.len() as i32;
            let quota = |i: usize| n / count + i32::from((i as i32) < n % count);
            let mut free: Vec<TopicPartition> = Vec::new();
            let mut share: BTreeMap<&String, Vec<TopicPartition>> = BTreeMap::new();
            for p in 0..*n {
                let tp = TopicPartition::new(topic, p);
                let keeper = subscribers.iter().find(|id| {
                    self.target
                        .get(id.as_str())
                        .is_some_and(|t| t.contains(&tp))
                });
                match keeper {
                    Some(id) => share.entry(*id).or_default().push(tp),
                    None => free.push(tp),
                }
            }
            for (i, id) in subscribers.iter().enumerate() {
                let mine = share.entry(*id).or_default();
                let q = quota(i) as usize;
                while mine.len() > q {
                    free.push(mine.pop().expect("a partition"));
                }
            }
            free.sort();
            for (i, id) in subscribers.iter().enumerate() {
                let q = quota(i) as usize;
                let mine = share.entry(*id).or_default();
                while mine.len() < q {
                    mine.push(free.remove(0));
                }
                target
                    .get_mut(*id)
                    .expect("a live member")
                    .extend(mine.iter().cloned());
            }
        }
        self.target = target;
        for m in self.members.values_mut() {
            m.told = false;
        }
    }

    /// What `names` and `regex` subscribe to now.
    fn resolve(&self, names: &BTreeSet<String>, regex: Option<&Regex>) -> BTreeSet<String> {
        let mut topics = names.clone();
        if let Some(re) = regex {
            topics.extend(self.topics.keys().filter(|t| re.is_match(t)).cloned());
        }
        topics
    }

    fn remove(&mut self, id: &str) {
        self.members.remove(id);
        self.target.remove(id);
        self.assign();
    }

    fn error(&self, error_code: i16) -> ConsumerGroupHeartbeatAnswer {
        ConsumerGroupHeartbeatAnswer {
            error_code,
            error_message: Some(format!("error {error_code} from the model")),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    fn left(&self, epoch: i32) -> ConsumerGroupHeartbeatAnswer {
        ConsumerGroupHeartbeatAnswer {
            error_code: code::NONE,
            error_message: None,
            member_id: None,
            member_epoch: epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as i32,
            assignment: None,
        }
    }

    fn names(&self, owned: &TopicIdPartitions) -> BTreeSet<TopicPartition> {
        let by_id: BTreeMap<&TopicId, &String> = self
            .topics
            .iter()
            .map(|(name, (id, _))| (id, name))
            .collect();
        owned
            .iter()
            .filter_map(|(id, ps)| Some((by_id.get(id)?, ps)))
            .flat_map(|(name, ps)| ps.iter().map(|p| TopicPartition::new(*name, *p)))
            .collect()
    }

    fn ids(&self, partitions: &BTreeSet<TopicPartition>) -> TopicIdPartitions {
        let mut out = TopicIdPartitions::new();
        for tp in partitions {
            if let Some((id, _)) = self.topics.get(&tp.topic) {
                out.entry(*id).or_default().insert(tp.partition);
            }
        }
        out
    }
}
