//! The `group_member` target: one kcon-group member ([`MemberMachine`], classic or KIP-848)
//! on kcon-core's virtual-clock [`Harness`], answered by a coordinator the fuzz bytes make up:
//! every answer well-formed, but saying anything (generations and epochs going backwards,
//! assignments of partitions that do not exist or that another member holds, a leader's
//! member list of duplicate ids and undecodable subscriptions, member ids that change, topic
//! ids naming other topics, heartbeat intervals of zero or years).
//!
//! The first byte picks `group.protocol` (bit 0), the assignors (bits 1-3: range, roundrobin,
//! cooperative-sticky, range then roundrobin, cooperative-sticky then range, sticky), a static
//! member (bit 4), `session.timeout.ms` and `max.poll.interval.ms` (bits 5-7). The member
//! subscribes to topic `t` at once. Then each op reads an op byte (modulo 16) and what it needs
//! (a missing byte reads as 0), at most [`MAX_OPS`] ops:
//!
//! | op | what |
//! |---|---|
//! | 0–4 | answer the oldest outstanding request with an answer of its kind made from the next bytes |
//! | 5 | answer it with an answer of another kind |
//! | 6 | fail it (retriable or not) |
//! | 7 | move the clock by up to 65 s and fire the timers due |
//! | 8 | move the clock to the next timer |
//! | 9 | the application polls |
//! | 10 | the application finishes its oldest revocation |
//! | 11 | subscribe to a subset of `t`, `u`, `v` (a regex beside them, under KIP-848) |
//! | 12 | unsubscribe |
//! | 13 | new metadata: the partition counts of `t`, `u`, `v` change, and the member is told |
//! | 14 | answer the oldest outstanding request the way a sound coordinator would |
//! | 15 | close, at most once; the run then only ends |
//!
//! A request left unanswered past its timeout (or `request.timeout.ms`, 30 s) fails, as the
//! driver fails it; the member no longer waiting for it ignores that.
//!
//! After every op the member's requests and events are drained and timers due fired, each
//! within [`MAX_PER_OP`] (no loop without progress, no timer left in the past), and:
//! - the partitions the application holds, by the events (Assigned adds; Lost, and a
//!   Revoked the application finished, take away), are the member's `assignment()`; a
//!   revocation names only partitions held; an eager member is assigned only when it holds
//!   nothing; no event and no request after `Closed` or `Fatal`;
//! - a classic Heartbeat carries the member's generation and member id; a SyncGroup the
//!   generation of the last JoinGroup answer without error; a leader's SyncGroup assigns only
//!   members of that answer, each partition at most once, and only partitions of the last
//!   Metadata answer of topics the member subscribes to;
//! - a ConsumerGroupHeartbeat carries epoch 0, -1, -2 or the last epoch the coordinator gave,
//!   and owns only partitions the member holds;
//! - a member that is neither idle, closed, failed nor waiting for its application has a
//!   request out or a timer armed;
//! - few requests are out at once.
//!
//! At the end the application polls and finishes its revocations, the member is closed (if
//! it was not), and the coordinator answers as a sound one would: the member must end
//! (`Closed`, or `Fatal` from an answer before) within [`SETTLE_ROUNDS`] rounds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::consumer_protocol::{Assignment, Subscription};
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::error_codes::code;
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, Machine, RequestFailure, TopicId, TopicPartition};
use kcon_group::assignor::{PartitionInfo, TopicPartitions};
use kcon_group::consumer_group::{
    ConsumerGroupHeartbeatAnswer, LEAVE_EPOCH, STATIC_LEAVE_EPOCH, TopicIdPartitions,
};
use kcon_group::{
    GroupConfig, GroupEvent, GroupRequest, GroupResponse, JoinGroupAnswer, JoinedMember,
    MemberMachine, MemberState, Outgoing, RevocationId,
};
use kcon_sim::group::GROUP_ERRORS;

use crate::Input;

/// Ops beyond this are ignored: the run stays short.
pub const MAX_OPS: usize = 256;
/// Requests, events or timer firings one op may produce: more is a loop without progress.
pub const MAX_PER_OP: usize = 10_000;
/// `request.timeout.ms` at its default: a request without its own timeout fails then.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests out at once at most (requests time out after [`REQUEST_TIMEOUT`]): one per kind,
/// and some the member no longer waits for.
const MAX_OUTSTANDING: usize = 16;
/// Rounds of sound answers at the end before the closed member must have ended.
pub const SETTLE_ROUNDS: usize = 500;

const GROUP: &str = "g";
const TOPICS: [&str; 3] = ["t", "u", "v"];
/// Topics of assignments and subscriptions: the three, and one no metadata has.
const ANY_TOPICS: [&str; 4] = ["t", "u", "v", "x"];
const STRATEGIES: [&str; 6] = [
    "range",
    "roundrobin",
    "cooperative-sticky",
    "range,roundrobin",
    "cooperative-sticky,range",
    "sticky",
];
/// Member ids a made-up answer uses, beside the member's own.
const OTHERS: [&str; 3] = ["m-a", "m-b", "m-c"];

/// Error codes of the classic group APIs: often none, every one the member tells apart
/// (kcon-sim's list), then some it does not know.
fn classic_error(bytes: &mut Input<'_>) -> i16 {
    const NONE: usize = 6;
    const MORE: [i16; 3] = [code::INVALID_REQUEST, -1, 9999];
    let i = usize::from(bytes.u8()) % (NONE + GROUP_ERRORS.len() + MORE.len());
    match i.checked_sub(NONE) {
        None => code::NONE,
        Some(i) => GROUP_ERRORS
            .get(i)
            .copied()
            .unwrap_or_else(|| MORE[i - GROUP_ERRORS.len()]),
    }
}
/// Error codes of ConsumerGroupHeartbeat, the same way.
const CONSUMER_ERRORS: &[i16] = &[
    code::NONE,
    code::NONE,
    code::NONE,
    code::NONE,
    code::NONE,
    code::NONE,
    code::NOT_COORDINATOR,
    code::COORDINATOR_NOT_AVAILABLE,
    code::COORDINATOR_LOAD_IN_PROGRESS,
    code::UNKNOWN_MEMBER_ID,
    code::FENCED_MEMBER_EPOCH,
    code::STALE_MEMBER_EPOCH,
    code::UNRELEASED_INSTANCE_ID,
    code::UNSUPPORTED_ASSIGNOR,
    code::FENCED_INSTANCE_ID,
    code::GROUP_AUTHORIZATION_FAILED,
    code::GROUP_MAX_SIZE_REACHED,
    code::INVALID_REQUEST,
    -1,
    9999,
];
const FIND_ERRORS: &[i16] = &[
    code::NONE,
    code::NONE,
    code::NONE,
    code::COORDINATOR_NOT_AVAILABLE,
    code::NOT_COORDINATOR,
    code::GROUP_AUTHORIZATION_FAILED,
    9999,
];

/// Runs the interpreter over `data`. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    Run::play(data, false).end();
}

fn topic_id(topic: &str) -> TopicId {
    let i = ANY_TOPICS.iter().position(|t| *t == topic).unwrap_or(9);
    TopicId([i as u8 + 1; 16])
}

fn coordinator(id: i32) -> Coordinator {
    Coordinator {
        id,
        host: format!("broker-{id}"),
        port: 9092,
    }
}

/// The application's side, by the events.
#[derive(Default)]
struct App {
    held: BTreeSet<TopicPartition>,
    /// Revocations handed to the application and not finished, oldest first; the partitions
    /// still held under each.
    revoking: VecDeque<(RevocationId, BTreeSet<TopicPartition>)>,
    ended: bool,
    closed: bool,
}

pub(crate) struct Run<'a> {
    bytes: Input<'a>,
    h: Harness<MemberMachine>,
    consumer_protocol: bool,
    eager: bool,
    /// Requests sent and not answered, oldest first, each with when it times out.
    outstanding: VecDeque<(Instant, Outgoing)>,
    /// The cluster's partition counts.
    counts: BTreeMap<&'static str, i32>,
    /// The last Metadata answer given.
    metadata_answer: Option<TopicPartitions>,
    /// The last JoinGroup answer given without error.
    joined: Option<JoinGroupAnswer>,
    /// The last SyncGroup a leader sent: its own assignment, for a later answer to echo.
    own_assignment: Option<Bytes>,
    /// The epochs (above 0) ConsumerGroupHeartbeat answers without error gave, oldest first.
    epochs: Vec<i32>,
    /// The member id the last answer gave.
    member_id: String,
    generation: i32,
    closing: bool,
    app: App,
}

impl<'a> Run<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let mut bytes = Input { data, pos: 0 };
        let setup = bytes.u8();
        let consumer_protocol = setup & 1 == 1;
        let strategy = STRATEGIES[usize::from(setup >> 1 & 7) % STRATEGIES.len()];
        let mut c = GroupConfig::new(GROUP);
        c.set("partition.assignment.strategy", strategy).unwrap();
        let (session, max_poll) = [
            ("10000", "30000"),
            ("6000", "10000"),
            ("45000", "300000"),
            ("30000", "10000"),
        ][usize::from(setup >> 5 & 3)];
        c.set("session.timeout.ms", session).unwrap();
        c.set("heartbeat.interval.ms", "1000").unwrap();
        c.set("max.poll.interval.ms", max_poll).unwrap();
        if setup & 0x10 != 0 {
            c.set("group.instance.id", "static-1").unwrap();
        }
        if setup & 0x80 != 0 {
            c.set("retry.backoff.ms", "0").unwrap();
        }
        if consumer_protocol {
            c.set("group.protocol", "consumer").unwrap();
        }
        let now = Instant::now();
        let mut machine = MemberMachine::new(c, now, 7);
        machine.subscribe(now, ["t"]);
        let mut run = Run {
            bytes,
            h: Harness::new(machine, now),
            consumer_protocol,
            eager: !consumer_protocol && strategy != "cooperative-sticky",
            outstanding: VecDeque::new(),
            counts: TOPICS.iter().map(|t| (*t, 3)).collect(),
            metadata_answer: None,
            joined: None,
            own_assignment: None,
            epochs: Vec::new(),
            member_id: String::new(),
            generation: 0,
            closing: false,
            app: App::default(),
        };
        run.tell_metadata();
        run.drain();
        run.check();
        run
    }

    /// The ops of `data`, each followed by the checks; `trace` prints the state after each.
    fn play(data: &'a [u8], trace: bool) -> Self {
        let mut run = Run::new(data);
        let mut ops = 0;
        while let Some(op) = run.bytes.next() {
            if ops == MAX_OPS {
                break;
            }
            run.step(op);
            run.drain();
            run.check();
            ops += 1;
            if trace {
                let out: Vec<_> = run.outstanding.iter().map(|(_, o)| &o.request).collect();
                eprintln!(
                    "op {} at {}: {:?} held {:?} out {out:?}",
                    op % 16,
                    run.bytes.pos,
                    run.h.machine.state(),
                    run.app.held,
                );
            }
        }
        run
    }

    fn now(&self) -> Instant {
        self.h.now
    }

    fn step(&mut self, op: u8) {
        let now = self.now();
        match op % 16 {
            0..=4 => {
                if let Some(o) = self.take_oldest() {
                    let answer = self.made_up(&o.request);
                    self.h.answer(o.id, answer);
                }
            }
            5 => {
                if let Some(o) = self.take_oldest() {
                    let answer = self.wrong_kind(&o.request);
                    self.h.answer(o.id, answer);
                }
            }
            6 => {
                if let Some(o) = self.take_oldest() {
                    let failure = match self.bytes.u8() % 4 {
                        0 => RequestFailure::retriable("connection lost"),
                        1 => RequestFailure::retriable("request timed out"),
                        2 => RequestFailure::fatal("unsupported version"),
                        _ => RequestFailure::retriable("broker disconnected"),
                    };
                    self.h.fail(o.id, failure);
                }
            }
            7 => {
                let ms = u64::from(self.bytes.u16());
                self.h.advance(Duration::from_millis(ms));
            }
            8 if self.h.machine.poll_timeout().is_some() => {
                self.h.run_to_timeout();
            }
            9 => self.h.machine.application_polled(now),
            10 => self.finish_revocation(),
            11 if !self.closing => {
                let mask = self.bytes.u8();
                let topics: Vec<&str> = TOPICS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, t)| *t)
                    .collect();
                let regex = (self.consumer_protocol && mask & 8 != 0).then(|| "^v.*".to_owned());
                if topics.is_empty() && regex.is_none() {
                    self.h.machine.unsubscribe(now);
                } else {
                    self.h.machine.subscribe_with_regex(now, topics, regex);
                }
            }
            12 if !self.closing => self.h.machine.unsubscribe(now),
            13 => {
                for t in TOPICS {
                    let b = self.bytes.u8();
                    if b & 1 == 1 {
                        self.counts.insert(t, i32::from(b >> 1) % 9);
                    }
                }
                self.tell_metadata();
            }
            14 => {
                if let Some(o) = self.take_oldest() {
                    let answer = self.sound(&o.request);
                    self.h.answer(o.id, answer);
                }
            }
            15 if !self.closing => {
                self.closing = true;
                self.h.machine.close(now);
            }
            _ => {}
        }
    }

    /// The metadata of the cluster now, as the pool would hand it to the member.
    fn topic_partitions(&self) -> TopicPartitions {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| {
                let parts = (0..*n).map(|p| PartitionInfo::new(p, Vec::new())).collect();
                ((*t).to_owned(), parts)
            })
            .collect()
    }

    fn topic_ids(&self) -> BTreeMap<TopicId, String> {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, _)| (topic_id(t), (*t).to_owned()))
            .collect()
    }

    fn tell_metadata(&mut self) {
        let now = self.now();
        let topics = self.topic_partitions();
        let ids = self.topic_ids();
        self.h.machine.metadata_updated(now, &topics, &ids);
    }

    fn finish_revocation(&mut self) {
        if let Some((id, parts)) = self.app.revoking.pop_front() {
            for tp in &parts {
                self.app.held.remove(tp);
            }
            let now = self.now();
            self.h.machine.revocation_done(now, id);
        }
    }

    fn error(&mut self, from: &[i16]) -> i16 {
        self.bytes.pick(from)
    }

    fn member(&mut self) -> String {
        match self.bytes.u8() % 5 {
            0 | 1 => self.h.machine.generation().member_id,
            2 => String::new(),
            n => OTHERS[usize::from(n) % OTHERS.len()].to_owned(),
        }
    }

    /// A partition list: partitions of the four topics, some out of range, negative or twice.
    fn partitions(&mut self) -> Vec<TopicPartition> {
        let n = self.bytes.u8() % 8;
        (0..n)
            .map(|_| {
                let b = self.bytes.u8();
                let topic = ANY_TOPICS[usize::from(b & 3)];
                let partition = match b >> 2 {
                    63 => -1,
                    p => i32::from(p % 12),
                };
                TopicPartition::new(topic, partition)
            })
            .collect()
    }

    fn subscription_bytes(&mut self) -> Bytes {
        let b = self.bytes.u8();
        if b & 7 == 7 {
            // Not a subscription at all.
            let n = usize::from(self.bytes.u8() % 16);
            return Bytes::copy_from_slice(self.bytes.slice(n));
        }
        let topics = ANY_TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| b >> 3 & (1 << i) != 0)
            .map(|(_, t)| (*t).to_owned())
            .collect();
        let s = Subscription {
            topics,
            user_data: None,
            owned_partitions: self.partitions(),
            generation_id: i32::from(self.bytes.u8() as i8),
            rack_id: None,
        };
        s.encode(i16::from(b & 3))
    }

    fn assignment_bytes(&mut self) -> Bytes {
        match self.bytes.u8() % 8 {
            0 => Bytes::new(),
            1 => {
                let n = usize::from(self.bytes.u8() % 16);
                Bytes::copy_from_slice(self.bytes.slice(n))
            }
            2 => self.own_assignment.clone().unwrap_or_default(),
            v => Assignment {
                partitions: self.partitions(),
                user_data: None,
            }
            .encode(i16::from(v % 4)),
        }
    }

    /// An answer of the request's kind, made up from the bytes.
    fn made_up(&mut self, request: &GroupRequest) -> GroupResponse {
        match request {
            GroupRequest::FindCoordinator { .. } => {
                let error_code = self.error(FIND_ERRORS);
                let b = self.bytes.u8();
                GroupResponse::FindCoordinator(FoundCoordinator {
                    error_code,
                    error_message: None,
                    coordinator: (b & 3 != 3).then(|| coordinator(i32::from(b >> 2) % 3 + 1)),
                })
            }
            GroupRequest::Metadata { topics } => {
                let mut answer = TopicPartitions::new();
                for t in topics {
                    let b = self.bytes.u8();
                    if b & 7 == 0 {
                        continue;
                    }
                    let parts = if b & 8 == 0 {
                        (0..i32::from(b >> 4)).collect::<Vec<_>>()
                    } else {
                        // Out of order, twice, negative.
                        vec![i32::from(b >> 4), 0, 0, -1]
                    };
                    let parts = parts
                        .into_iter()
                        .map(|p| PartitionInfo::new(p, Vec::new()))
                        .collect();
                    answer.insert(t.clone(), parts);
                }
                self.metadata_answer = Some(answer.clone());
                GroupResponse::Metadata(answer)
            }
            GroupRequest::TopicIds { .. } => {
                let mut ids = BTreeMap::new();
                for _ in 0..self.bytes.u8() % 5 {
                    let b = self.bytes.u8();
                    ids.insert(
                        topic_id(ANY_TOPICS[usize::from(b & 3)]),
                        ANY_TOPICS[usize::from(b >> 2 & 3)].to_owned(),
                    );
                }
                GroupResponse::TopicIds(ids)
            }
            GroupRequest::JoinGroup(j) => {
                let error_code = classic_error(&mut self.bytes);
                let b = self.bytes.u8();
                let generation_id = match b & 3 {
                    0 => self.generation + 1,
                    1 => self.generation,
                    2 => self.generation - 1,
                    _ => i32::from(self.bytes.u8() as i8),
                };
                let member_id = match b >> 2 & 3 {
                    0 | 1 if !j.member_id.is_empty() => j.member_id.clone(),
                    0 | 1 => "m-self".to_owned(),
                    _ => self.member(),
                };
                let leader = if b & 0x10 == 0 {
                    member_id.clone()
                } else {
                    self.member()
                };
                let protocol_name = match self.bytes.u8() % 4 {
                    0 => None,
                    1 => Some("unknown-assignor".to_owned()),
                    _ => j.protocols.first().map(|(n, _)| n.clone()),
                };
                let mut members = Vec::new();
                if leader == member_id {
                    for _ in 0..self.bytes.u8() % 5 {
                        let id = match self.bytes.u8() % 3 {
                            0 => member_id.clone(),
                            n => OTHERS[usize::from(n)].to_owned(),
                        };
                        members.push(JoinedMember {
                            member_id: id,
                            group_instance_id: None,
                            metadata: self.subscription_bytes(),
                        });
                    }
                }
                let answer = JoinGroupAnswer {
                    error_code,
                    generation_id,
                    protocol_type: (b & 0x20 != 0).then(|| "consumer".to_owned()),
                    protocol_name,
                    leader,
                    skip_assignment: b & 0x40 != 0,
                    member_id,
                    members,
                };
                if error_code == code::NONE {
                    self.generation = generation_id;
                    self.member_id = answer.member_id.clone();
                    self.joined = Some(answer.clone());
                }
                GroupResponse::JoinGroup(answer)
            }
            GroupRequest::SyncGroup(s) => {
                let error_code = classic_error(&mut self.bytes);
                let b = self.bytes.u8();
                GroupResponse::SyncGroup {
                    error_code,
                    protocol_type: (b & 1 != 0).then(|| "consumer".to_owned()),
                    protocol_name: (b & 2 != 0).then(|| {
                        if b & 4 == 0 {
                            s.protocol_name.clone()
                        } else {
                            "other".to_owned()
                        }
                    }),
                    assignment: self.assignment_bytes(),
                }
            }
            GroupRequest::Heartbeat(_) => GroupResponse::Heartbeat {
                error_code: classic_error(&mut self.bytes),
            },
            GroupRequest::LeaveGroup(_) => GroupResponse::LeaveGroup {
                error_code: classic_error(&mut self.bytes),
            },
            GroupRequest::ConsumerGroupHeartbeat(c) => {
                let error_code = self.error(CONSUMER_ERRORS);
                let b = self.bytes.u8();
                let last = self.epochs.last().copied().unwrap_or(0);
                let member_epoch = match b & 7 {
                    0 | 1 => last + 1,
                    2 => last,
                    3 => c.member_epoch,
                    4 => last - 1,
                    5 => 0,
                    6 => -1,
                    _ => i32::from(self.bytes.u8() as i8),
                };
                let member_id = match b >> 3 & 3 {
                    0 | 1 => Some(c.member_id.clone()),
                    2 => None,
                    _ => Some("m-other".to_owned()),
                };
                let heartbeat_interval_ms = match b >> 5 {
                    0 => 0,
                    1 => -1,
                    2 => i32::MAX,
                    _ => 100 + i32::from(self.bytes.u8()) * 20,
                };
                let assignment = (self.bytes.u8() & 1 == 1).then(|| {
                    let mut a = TopicIdPartitions::new();
                    for tp in self.partitions() {
                        a.entry(topic_id(&tp.topic))
                            .or_default()
                            .insert(tp.partition);
                    }
                    a
                });
                if error_code == code::NONE && member_epoch > 0 {
                    self.epochs.push(member_epoch);
                }
                GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
                    error_code,
                    error_message: (b & 4 != 0).then(|| "made up".to_owned()),
                    member_id,
                    member_epoch,
                    heartbeat_interval_ms,
                    assignment,
                })
            }
            _ => self.sound(request),
        }
    }

    /// An answer of another kind than the request's.
    fn wrong_kind(&mut self, request: &GroupRequest) -> GroupResponse {
        match (request, self.bytes.u8() % 3) {
            (GroupRequest::Heartbeat(_), _) => GroupResponse::LeaveGroup {
                error_code: code::NONE,
            },
            (GroupRequest::Metadata { .. }, _) => GroupResponse::TopicIds(self.topic_ids()),
            (_, 0) => GroupResponse::Heartbeat {
                error_code: code::NONE,
            },
            (_, 1) => GroupResponse::Metadata(self.topic_partitions()),
            _ => GroupResponse::TopicIds(self.topic_ids()),
        }
    }

    /// The answer a sound coordinator (and cluster) gives.
    fn sound(&mut self, request: &GroupRequest) -> GroupResponse {
        match request {
            GroupRequest::FindCoordinator { .. } => {
                GroupResponse::FindCoordinator(FoundCoordinator {
                    error_code: code::NONE,
                    error_message: None,
                    coordinator: Some(coordinator(1)),
                })
            }
            GroupRequest::Metadata { topics } => {
                let all = self.topic_partitions();
                let answer: TopicPartitions = all
                    .into_iter()
                    .filter(|(t, _)| topics.contains(t))
                    .collect();
                self.metadata_answer = Some(answer.clone());
                GroupResponse::Metadata(answer)
            }
            GroupRequest::TopicIds { .. } => GroupResponse::TopicIds(self.topic_ids()),
            GroupRequest::JoinGroup(j) => {
                let member_id = if j.member_id.is_empty() {
                    "m-self".to_owned()
                } else {
                    j.member_id.clone()
                };
                let (name, metadata) = j.protocols.first().cloned().unwrap_or_default();
                let answer = JoinGroupAnswer {
                    error_code: code::NONE,
                    generation_id: self.generation.max(0) + 1,
                    protocol_type: Some("consumer".to_owned()),
                    protocol_name: Some(name),
                    leader: member_id.clone(),
                    skip_assignment: false,
                    member_id: member_id.clone(),
                    members: vec![JoinedMember {
                        member_id,
                        group_instance_id: j.group_instance_id.clone(),
                        metadata,
                    }],
                };
                self.generation = answer.generation_id;
                self.member_id = answer.member_id.clone();
                self.joined = Some(answer.clone());
                GroupResponse::JoinGroup(answer)
            }
            GroupRequest::SyncGroup(s) => GroupResponse::SyncGroup {
                error_code: code::NONE,
                protocol_type: None,
                protocol_name: None,
                assignment: s
                    .assignments
                    .iter()
                    .find(|(m, _)| *m == s.member_id)
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default(),
            },
            GroupRequest::Heartbeat(_) => GroupResponse::Heartbeat {
                error_code: code::NONE,
            },
            GroupRequest::LeaveGroup(_) => GroupResponse::LeaveGroup {
                error_code: code::NONE,
            },
            GroupRequest::ConsumerGroupHeartbeat(c) => {
                let member_epoch = if c.member_epoch < 0 {
                    c.member_epoch
                } else {
                    self.epochs.last().copied().unwrap_or(0).max(0) + 1
                };
                if member_epoch >= 0 {
                    self.epochs.push(member_epoch);
                }
                GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
                    error_code: code::NONE,
                    error_message: None,
                    member_id: Some(c.member_id.clone()),
                    member_epoch,
                    heartbeat_interval_ms: 1000,
                    assignment: None,
                })
            }
            other => panic!("a request kcon-group does not send: {other:?}"),
        }
    }

    fn take_oldest(&mut self) -> Option<Outgoing> {
        self.outstanding.pop_front().map(|(_, o)| o)
    }

    /// Drains requests and events, fails the requests that timed out (as the driver does after
    /// `request.timeout.ms`, or the request's own timeout) and fires the timers due.
    fn drain(&mut self) {
        let mut n = 0;
        loop {
            while let Some(i) = self
                .outstanding
                .iter()
                .position(|(deadline, _)| *deadline <= self.h.now)
            {
                let (_, o) = self.outstanding.remove(i).expect("found");
                self.h
                    .fail(o.id, RequestFailure::retriable("request timed out"));
            }
            let Some(out) = crate::next_output(&mut self.h, &mut n, MAX_PER_OP) else {
                break;
            };
            match out {
                crate::Output::Request(o) => {
                    self.sent(&o);
                    let deadline = self.h.now + o.timeout.unwrap_or(REQUEST_TIMEOUT);
                    self.outstanding.push_back((deadline, o));
                }
                crate::Output::Event(e) => self.event(e),
            }
        }
    }

    fn event(&mut self, e: GroupEvent) {
        assert!(!self.app.ended, "an event after the member ended: {e:?}");
        match e {
            GroupEvent::Assigned { partitions, .. } => {
                if self.eager {
                    assert!(
                        self.app.held.is_empty(),
                        "eager: assigned {partitions:?} while holding {:?}",
                        self.app.held
                    );
                }
                for tp in partitions {
                    for (_, r) in &mut self.app.revoking {
                        r.remove(&tp);
                    }
                    self.app.held.insert(tp);
                }
            }
            GroupEvent::Revoked { partitions, id } => {
                let parts: BTreeSet<TopicPartition> = partitions.into_iter().collect();
                assert!(
                    parts.is_subset(&self.app.held),
                    "revoked {parts:?}, holding {:?}",
                    self.app.held
                );
                self.app.revoking.push_back((id, parts));
            }
            GroupEvent::Lost { partitions } => {
                for tp in &partitions {
                    self.app.held.remove(tp);
                    for (_, r) in &mut self.app.revoking {
                        r.remove(tp);
                    }
                }
            }
            GroupEvent::Fatal(_) => self.app.ended = true,
            GroupEvent::Closed => {
                self.app.ended = true;
                self.app.closed = true;
            }
            _ => {}
        }
    }

    /// Checks a request as it goes.
    fn sent(&mut self, o: &Outgoing) {
        assert!(
            !self.app.ended,
            "a request after the member ended: {:?}",
            o.request
        );
        let generation = self.h.machine.generation();
        match &o.request {
            GroupRequest::Heartbeat(hb) => {
                assert_eq!(hb.generation_id, generation.id, "{hb:?}");
                assert_eq!(hb.member_id, generation.member_id, "{hb:?}");
            }
            GroupRequest::SyncGroup(s) => {
                let joined = self.joined.as_ref().expect("a SyncGroup before any join");
                assert_eq!(s.generation_id, joined.generation_id, "{s:?}");
                if !s.assignments.is_empty() {
                    self.check_assignments(s);
                }
                self.own_assignment = s
                    .assignments
                    .iter()
                    .find(|(m, _)| *m == s.member_id)
                    .map(|(_, a)| a.clone());
            }
            GroupRequest::ConsumerGroupHeartbeat(c) => {
                // The member takes no epoch below 1 from an answer, and an answer may come
                // when it no longer listens (leaving): any epoch given is one it may have.
                assert!(
                    [0, LEAVE_EPOCH, STATIC_LEAVE_EPOCH].contains(&c.member_epoch)
                        || self.epochs.contains(&c.member_epoch),
                    "epoch {} sent; the coordinator gave {:?}",
                    c.member_epoch,
                    self.epochs
                );
                // By count: a TopicIds answer may have named an id's topic otherwise than the
                // metadata does.
                if let Some(owned) = &c.owned {
                    let n: usize = owned.values().map(BTreeSet::len).sum();
                    let held = self.h.machine.assignment();
                    assert!(n <= held.len(), "owns {owned:?}, holds {held:?}");
                }
            }
            _ => {}
        }
    }

    /// A leader's assignments: only members of the join answer, each partition once, only
    /// partitions the last Metadata answer has, of topics the member subscribes to.
    fn check_assignments(&self, s: &kcon_group::SyncGroup) {
        let joined = self.joined.as_ref().expect("joined");
        let metadata = self.metadata_answer.clone().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for (member, bytes) in &s.assignments {
            let m = joined
                .members
                .iter()
                .find(|m| m.member_id == *member)
                .unwrap_or_else(|| panic!("an assignment for {member}, not a member: {s:?}"));
            let topics: BTreeSet<String> = Subscription::decode(&m.metadata)
                .map(|s| s.topics.into_iter().collect())
                .unwrap_or_default();
            let a = Assignment::decode(bytes).expect("the leader's assignment decodes");
            for tp in a.partitions {
                assert!(
                    topics.contains(&tp.topic),
                    "{member} is given {tp}, not subscribed: {s:?}"
                );
                let exists = metadata
                    .get(&tp.topic)
                    .is_some_and(|p| p.iter().any(|i| i.partition == tp.partition));
                assert!(exists, "{tp} is not in the metadata {metadata:?}");
                assert!(seen.insert(tp.clone()), "{tp} assigned twice: {s:?}");
            }
        }
    }

    fn check(&self) {
        let m = &self.h.machine;
        assert!(
            self.outstanding.len() <= MAX_OUTSTANDING,
            "{} requests out",
            self.outstanding.len()
        );
        assert_eq!(
            &self.app.held,
            m.assignment(),
            "the application holds other partitions than the member's assignment"
        );
        if self.app.ended {
            assert!(m.is_terminated(), "ended but not terminated");
            assert!(m.poll_timeout().is_none(), "a timer after the end");
        }
        let waits_for_app = matches!(m.state(), MemberState::PollExpired | MemberState::Revoking)
            || !self.app.revoking.is_empty();
        let asleep = matches!(
            m.state(),
            MemberState::Idle | MemberState::Closed | MemberState::Failed
        );
        assert!(
            asleep || waits_for_app || !self.outstanding.is_empty() || m.poll_timeout().is_some(),
            "{:?} with nothing out and no timer",
            m.state()
        );
    }

    /// The application polls and finishes its revocations, the member is closed, and the
    /// coordinator answers soundly: the member must end.
    fn end(&mut self) {
        let now = self.now();
        self.h.machine.application_polled(now);
        if !self.closing {
            self.closing = true;
            self.h.machine.close(now);
        }
        self.drain();
        self.check();
        for _ in 0..SETTLE_ROUNDS {
            if self.app.ended {
                break;
            }
            if !self.app.revoking.is_empty() {
                self.finish_revocation();
            } else if let Some(o) = self.take_oldest() {
                let answer = self.sound(&o.request);
                self.h.answer(o.id, answer);
            } else if self.h.machine.poll_timeout().is_some() {
                self.h.run_to_timeout();
            } else {
                let now = self.now();
                self.h.machine.application_polled(now);
            }
            self.drain();
            self.check();
        }
        assert!(
            self.app.ended,
            "the closed member did not end: {:?}, {} out",
            self.h.machine.state(),
            self.outstanding.len()
        );
    }
}

/// A few meaningful inputs: a classic member joining as leader and syncing; the same
/// cooperative with a rebalance; a KIP-848 member assigned partitions then fenced.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Classic, range, not static, 10 s sessions. FindCoordinator, JoinGroup, Metadata and
    // SyncGroup answered soundly, then time passes with heartbeats answered.
    let classic = vec![0, 14, 14, 14, 14, 7, 0x10, 0x27, 14, 7, 0x10, 0x27, 14];
    // Cooperative-sticky (strategy 2): the same, then REBALANCE_IN_PROGRESS on a heartbeat
    // (answered with a made-up error: index 9 of the classic list), then sound answers.
    let cooperative = vec![
        4, 14, 14, 14, 14, 7, 0xe8, 0x03, 0, 9, 14, 14, 14, 14, 9, 10, 14,
    ];
    // KIP-848: FindCoordinator, then a heartbeat answer with an assignment of t-0 and t-1,
    // then FENCED_MEMBER_EPOCH (index 10 of the consumer list).
    let mut consumer = vec![1, 14];
    // Error 0, epoch last + 1, member id kept, interval 100 + 5*20 ms, an assignment of two
    // partitions: t-0 (topic byte 0), t-1 (partition 1 << 2).
    consumer.extend_from_slice(&[0, 0, 0x60, 5, 1, 2, 0, 4]);
    consumer.extend_from_slice(&[9, 14, 7, 0xe8, 0x03, 0, 10, 0, 9, 10, 14, 14]);
    vec![
        ("seed-classic-leader", classic),
        ("seed-cooperative-rebalance", cooperative),
        ("seed-consumer-fenced", consumer),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(data: &[u8]) -> Run<'_> {
        Run::play(data, std::env::var_os("TRACE").is_some())
    }

    #[test]
    fn the_seeds_get_partitions_then_close() {
        for (name, data) in seeds() {
            let mut run = replay(&data);
            assert!(
                run.epochs.len() + usize::from(run.joined.is_some()) > 0,
                "{name}: never joined"
            );
            let held = run.app.held.len();
            if name == "seed-consumer-fenced" {
                assert_eq!(run.h.machine.state(), MemberState::Joining, "{name}");
            }
            run.end();
            assert!(run.app.closed || name == "seed-consumer-fenced", "{name}");
            match name {
                "seed-classic-leader" => assert_eq!(held, 3, "{name}: t's three partitions"),
                // Rebalanced into generation 2, keeping all three partitions throughout.
                "seed-cooperative-rebalance" => {
                    assert_eq!((run.generation, held), (2, 3), "{name}");
                }
                // Assigned two partitions, then fenced: lost them and joining again.
                _ => {
                    assert!(!run.epochs.is_empty(), "{name}");
                    assert_eq!(held, 0, "{name}");
                }
            }
        }
    }

    /// The inputs that once failed, kept as `regression-*`, hold the invariants:
    /// `regression-lookup-refused-after-close` closes a classic member while its
    /// FindCoordinator is out, then answers it GROUP_AUTHORIZATION_FAILED (the member once
    /// reported it as a fatal error after `Closed`); `regression-leave-answered-with-a-heartbeat`
    /// answers a closing member's LeaveGroup with a Heartbeat answer (the member once ignored
    /// it and stayed leaving for ever, with nothing out and no timer);
    /// `regression-abandoned-heartbeats-time-out` has a KIP-848 member leave on poll expiry
    /// and join again many times with its heartbeats unanswered (the target once kept them out
    /// for ever instead of timing them out as the driver does).
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("group_member");
        for (_, data) in &regressions {
            replay(data).end();
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    /// Replays the input in `$REPLAY`, with `$TRACE` set to see each op.
    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        replay(&data).end();
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("group_member", seeds());
    }
}
