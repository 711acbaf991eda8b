//! The fetch session against a model of a broker's fetch-session cache (KIP-227's rules), and
//! the wire form per version.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kcon_codec::kafka_protocol::protocol::{Encodable, StrBytes};
use kcon_core::TopicId;
use kcon_core::TopicPartition;
use proptest::prelude::*;

use super::wire::{FetchParams, fetch_request, set_uuid};
use super::*;
use crate::IsolationLevel;

// ---------------------------------------------------------------------------------------
// The model broker.

/// One cached session (KIP-227 `FetchSession`): the epoch it expects next and its partitions.
#[derive(Debug, Clone)]
struct Cached {
    epoch: i32,
    topic_ids: bool,
    partitions: BTreeMap<TopicPartition, PartitionFetch>,
}

/// A broker's fetch-session cache, as KIP-227 describes it.
#[derive(Debug)]
struct Broker {
    keeps_sessions: bool,
    sessions: BTreeMap<i32, Cached>,
    next_id: i32,
}

/// What goes wrong around one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The request is lost before the broker sees it.
    LostRequest,
    /// The broker applies the request; the answer is lost.
    LostAnswer,
    /// The broker evicted the session before the request came.
    Evicted,
    /// The broker answers FETCH_SESSION_TOPIC_ID_ERROR without applying anything.
    TopicIdError,
}

impl Broker {
    fn new(keeps_sessions: bool) -> Self {
        Broker {
            keeps_sessions,
            sessions: BTreeMap::new(),
            next_id: 1000,
        }
    }

    fn error(code: i16) -> FetchResponse {
        let mut r = FetchResponse::default();
        r.error_code = code;
        r
    }

    /// KIP-227's request handling. `data` picks which unchanged partitions have new data
    /// for an incremental answer.
    fn handle(&mut self, req: &SessionRequest, data: u64) -> FetchResponse {
        if req.epoch <= 0 {
            // Full: close the named session first; open a new one on epoch 0.
            if req.session_id != 0 {
                self.sessions.remove(&req.session_id);
            }
            let partitions: BTreeMap<_, _> = req.partitions.iter().cloned().collect();
            let id = if req.epoch == INITIAL_EPOCH && self.keeps_sessions {
                self.next_id += 1;
                self.sessions.insert(
                    self.next_id,
                    Cached {
                        epoch: 1,
                        topic_ids: req.topic_ids,
                        partitions: partitions.clone(),
                    },
                );
                self.next_id
            } else {
                0
            };
            let all: Vec<_> = partitions.into_iter().collect();
            return answer(id, &all, req.topic_ids);
        }
        let Some(s) = self.sessions.get_mut(&req.session_id) else {
            return Broker::error(70);
        };
        if s.epoch != req.epoch {
            return Broker::error(71);
        }
        if s.topic_ids != req.topic_ids {
            return Broker::error(106);
        }
        for f in &req.forgotten {
            if s.partitions.get(&f.partition).map(|p| p.topic_id) == Some(f.topic_id)
                || !req.topic_ids
            {
                s.partitions.remove(&f.partition);
            }
        }
        for (tp, p) in &req.partitions {
            s.partitions.insert(tp.clone(), *p);
        }
        s.epoch = next_epoch(s.epoch);
        let sent: BTreeSet<_> = req.partitions.iter().map(|(tp, _)| tp).collect();
        let with_data: Vec<_> = s
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, (tp, _))| sent.contains(tp) || data >> (i % 64) & 1 == 1)
            .map(|(_, (tp, p))| (tp.clone(), *p))
            .collect();
        answer(req.session_id, &with_data, req.topic_ids)
    }
}

/// An answer with an (empty) entry for each partition.
fn answer(
    session_id: i32,
    partitions: &[(TopicPartition, PartitionFetch)],
    topic_ids: bool,
) -> FetchResponse {
    let mut r = FetchResponse::default();
    r.session_id = session_id;
    for (tp, p) in partitions {
        let same = r
            .responses
            .last()
            .is_some_and(|t: &FetchableTopicResponse| t.topic.as_str() == tp.topic);
        if !same {
            let mut t = FetchableTopicResponse::default();
            t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
            if topic_ids {
                set_uuid(&mut t.topic_id, p.topic_id);
                t.topic = TopicName(StrBytes::from_static_str(""));
            }
            r.responses.push(t);
        }
        let mut d = PartitionData::default();
        d.partition_index = tp.partition;
        if let Some(t) = r.responses.last_mut() {
            t.partitions.push(d);
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// The client side of the simulation.

const TOPICS: [&str; 2] = ["a", "b"];
const PARTITIONS: i32 = 3;

fn tp(i: usize) -> TopicPartition {
    TopicPartition::new(
        TOPICS[i / PARTITIONS as usize],
        (i % PARTITIONS as usize) as i32,
    )
}

fn topic_id(topic: &str, generation: u8) -> TopicId {
    let mut id = [0; 16];
    id[0] = topic.as_bytes()[0];
    id[1] = generation + 1;
    TopicId(id)
}

#[derive(Debug, Clone)]
enum Change {
    Add(usize, i64),
    Remove(usize),
    Advance(usize, i64),
    MaxBytes(usize, i32),
    /// The topic was recreated: a new id.
    Recreate(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Fetch {
        changes: Vec<Change>,
        data: u64,
        fault: Fault,
    },
    Version(i16),
}

fn change() -> impl Strategy<Value = Change> {
    let n = TOPICS.len() * PARTITIONS as usize;
    prop_oneof![
        (0..n, 0i64..1000).prop_map(|(i, o)| Change::Add(i, o)),
        (0..n).prop_map(Change::Remove),
        (0..n, 1i64..50).prop_map(|(i, d)| Change::Advance(i, d)),
        (0..n, 1i32..4).prop_map(|(i, m)| Change::MaxBytes(i, m * 1024)),
        (0..n).prop_map(Change::Recreate),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::LostRequest),
        1 => Just(Fault::LostAnswer),
        1 => Just(Fault::Evicted),
        1 => Just(Fault::TopicIdError),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (prop::collection::vec(change(), 0..4), any::<u64>(), fault())
            .prop_map(|(changes, data, fault)| Step::Fetch { changes, data, fault }),
        // Between names and ids; a broker never goes back below sessions (v7) while it has one.
        1 => prop::sample::select(vec![7i16, 12, 13, 17]).prop_map(Step::Version),
    ]
}

/// The consumer's wishes: partitions and topic generations.
#[derive(Debug, Default)]
struct Consumer {
    wanted: BTreeMap<TopicPartition, PartitionFetch>,
    generation: BTreeMap<String, u8>,
}

impl Consumer {
    fn apply(&mut self, c: &Change) {
        match *c {
            Change::Add(i, offset) => {
                let tp = tp(i);
                let g = *self.generation.get(&tp.topic).unwrap_or(&0);
                let id = topic_id(&tp.topic, g);
                self.wanted
                    .entry(tp)
                    .or_insert(PartitionFetch::new(Some(id), offset, 1024));
            }
            Change::Remove(i) => {
                self.wanted.remove(&tp(i));
            }
            Change::Advance(i, d) => {
                if let Some(p) = self.wanted.get_mut(&tp(i)) {
                    p.fetch_offset += d;
                }
            }
            Change::MaxBytes(i, m) => {
                if let Some(p) = self.wanted.get_mut(&tp(i)) {
                    p.partition_max_bytes = m;
                }
            }
            Change::Recreate(i) => {
                let topic = tp(i).topic;
                let g = self.generation.entry(topic.clone()).or_insert(0);
                *g += 1;
                let id = topic_id(&topic, *g);
                for (t, p) in self.wanted.iter_mut() {
                    if t.topic == topic {
                        p.topic_id = Some(id);
                    }
                }
            }
        }
    }
}

/// What the broker compares: the topic id only when requests carry ids.
fn normalized(
    m: &BTreeMap<TopicPartition, PartitionFetch>,
    topic_ids: bool,
) -> BTreeMap<TopicPartition, PartitionFetch> {
    m.iter()
        .map(|(tp, p)| {
            let mut p = *p;
            if !topic_ids {
                p.topic_id = None;
            }
            (tp.clone(), p)
        })
        .collect()
}

/// The minimal request: everything for a full one; for an incremental one, exactly the
/// added or changed partitions, and the removed (or, with ids, replaced) ones forgotten.
fn check_minimal(
    req: &SessionRequest,
    prev: &BTreeMap<TopicPartition, PartitionFetch>,
    wanted: &BTreeMap<TopicPartition, PartitionFetch>,
) {
    let sent: BTreeMap<_, _> = req.partitions.iter().cloned().collect();
    assert_eq!(sent.len(), req.partitions.len(), "a partition sent twice");
    match req.kind {
        RequestKind::Full => {
            assert_eq!(&sent, wanted);
            assert!(req.forgotten.is_empty());
        }
        RequestKind::Incremental => {
            let replaced =
                |tp: &TopicPartition| req.topic_ids && prev[tp].topic_id != wanted[tp].topic_id;
            let expect: BTreeMap<_, _> = wanted
                .iter()
                .filter(|(tp, p)| !prev.contains_key(*tp) || prev[*tp].differs(p) || replaced(tp))
                .map(|(tp, p)| (tp.clone(), *p))
                .collect();
            assert_eq!(sent, expect, "incremental partitions");
            let forgotten: BTreeSet<_> = req.forgotten.iter().map(|f| &f.partition).collect();
            let expect: BTreeSet<_> = prev
                .keys()
                .filter(|tp| !wanted.contains_key(*tp) || replaced(tp))
                .collect();
            assert_eq!(forgotten, expect, "forgotten partitions");
        }
        RequestKind::Close => panic!("build made a close request"),
    }
}

/// Every request must encode at its version.
fn check_encodes(req: &SessionRequest, version: i16) {
    let r = fetch_request(req, &FetchParams::default(), version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
    let mut buf = BytesMut::new();
    r.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("v{version} does not encode: {e}"));
}

/// Runs `steps` against a broker; after each, the client's session equals the broker's.
fn simulate(
    keeps_sessions: bool,
    mut version: i16,
    steps: &[Step],
    mut session: FetchSession,
    mut broker: Broker,
    mut consumer: Consumer,
) {
    let mut leaked = 0;
    for step in steps {
        let (changes, data, fault) = match step {
            Step::Version(v) => {
                version = *v;
                continue;
            }
            Step::Fetch {
                changes,
                data,
                fault,
            } => (changes, *data, *fault),
        };
        for c in changes {
            consumer.apply(c);
        }
        let prev = session.partitions().clone();
        let established = session.session_id();
        let prev_ids = session.topic_ids;
        let req = session.build(&consumer.wanted, version).expect("build");
        let expect_incremental =
            established.is_some() && version >= 7 && prev_ids == (version >= 13);
        assert_eq!(
            req.kind == RequestKind::Incremental,
            expect_incremental,
            "{req:?}"
        );
        if let Some(id) = established {
            assert_eq!(req.session_id, id, "the session is reused");
        }
        check_minimal(&req, &prev, &consumer.wanted);
        check_encodes(&req, version);
        assert_eq!(
            session.build(&consumer.wanted, version),
            Err(SessionError::RequestInFlight)
        );

        let outcome = match fault {
            Fault::LostRequest => session.handle_failure(),
            Fault::LostAnswer => {
                // A session the broker opened for a lost answer stays until it is evicted: the
                // client never learnt its id (the Java client leaks it the same way).
                let before = broker.next_id;
                broker.handle(&req, data);
                if broker.next_id != before {
                    leaked += 1;
                }
                session.handle_failure()
            }
            Fault::Evicted | Fault::TopicIdError | Fault::None => {
                if fault == Fault::Evicted {
                    broker.sessions.clear();
                }
                let answer = if fault == Fault::TopicIdError {
                    Broker::error(106)
                } else {
                    broker.handle(&req, data)
                };
                session.handle_response(&answer)
            }
        }
        .expect("answer");
        match (&outcome, fault) {
            (SessionOutcome::Reset(SessionReset::Transport), Fault::LostRequest)
            | (SessionOutcome::Reset(SessionReset::Transport), Fault::LostAnswer) => {}
            (SessionOutcome::Reset(r), Fault::TopicIdError) => {
                assert_eq!(r, &SessionReset::TopicIdError);
                assert!(r.needs_metadata_refresh());
            }
            (SessionOutcome::Reset(SessionReset::SessionNotFound), Fault::Evicted) => {
                assert_eq!(req.kind, RequestKind::Incremental)
            }
            (SessionOutcome::Accepted { incremental }, Fault::None | Fault::Evicted) => {
                assert_eq!(*incremental, req.kind == RequestKind::Incremental)
            }
            other => panic!("unexpected outcome {other:?} for {req:?}"),
        }

        // The client's view equals the broker's whenever the client will go on incrementally.
        if let Some(id) = session.session_id() {
            assert!(keeps_sessions && version >= 7);
            let cached = broker
                .sessions
                .get(&id)
                .expect("the broker has the session");
            assert_eq!(Some(cached.epoch), session.next_epoch(), "epochs");
            assert_eq!(cached.topic_ids, session.topic_ids);
            assert_eq!(
                normalized(&cached.partitions, cached.topic_ids),
                normalized(session.partitions(), cached.topic_ids),
            );
        } else {
            // A broker that keeps sessions opens or continues one on every good answer.
            assert!(!(keeps_sessions && version >= 7 && fault == Fault::None));
        }
        if !keeps_sessions {
            assert!(broker.sessions.is_empty());
            assert!(session.is_sessionless() || fault != Fault::None || version < 7);
        }
        // Sessions are reused and closed in passing: none pile up but those whose answer
        // was lost.
        assert!(
            broker.sessions.len() <= 1 + leaked,
            "{:?}",
            broker.sessions.keys()
        );
    }

    let had = session.session_id();
    match session.close() {
        Some(close) => {
            assert_eq!(close.kind, RequestKind::Close);
            assert_eq!(close.epoch, FINAL_EPOCH);
            check_encodes(&close, version.max(7));
            let a = broker.handle(&close, 0);
            assert_eq!(a.session_id, 0);
            assert!(!broker.sessions.contains_key(&close.session_id));
        }
        None => assert_eq!(had, None),
    }
    assert!(session.is_closed());
    assert_eq!(
        session.build(&consumer.wanted, version),
        Err(SessionError::Closed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn session_matches_the_broker_cache(
        keeps_sessions in prop::bool::weighted(0.8),
        version in prop::sample::select(vec![6i16, 7, 12, 13, 17]),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        simulate(
            keeps_sessions,
            version,
            &steps,
            FetchSession::new(),
            Broker::new(keeps_sessions),
            Consumer::default(),
        );
    }

    #[test]
    fn epoch_wraps_to_one(
        start in (i32::MAX - 5)..=i32::MAX,
        steps in prop::collection::vec(step(), 1..15),
    ) {
        let mut consumer = Consumer::default();
        for i in 0..3 {
            consumer.apply(&Change::Add(i, 10));
        }
        let mut broker = Broker::new(true);
        broker.sessions.insert(7, Cached {
            epoch: start,
            topic_ids: true,
            partitions: consumer.wanted.clone(),
        });
        let session = FetchSession::resumed(7, start, consumer.wanted.clone(), true);
        simulate(true, 17, &steps, session, broker, consumer);
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios.

fn wanted(offsets: &[(usize, i64)]) -> BTreeMap<TopicPartition, PartitionFetch> {
    offsets
        .iter()
        .map(|&(i, o)| {
            (
                tp(i),
                PartitionFetch::new(Some(topic_id(&tp(i).topic, 0)), o, 1024),
            )
        })
        .collect()
}

#[test]
fn epochs_go_up_and_wrap_past_zero() {
    assert_eq!(next_epoch(1), 2);
    assert_eq!(next_epoch(i32::MAX - 1), i32::MAX);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);

    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::resumed(9, i32::MAX, w.clone(), false);
    let r = s.build(&w, 12).unwrap();
    assert_eq!((r.session_id, r.epoch), (9, i32::MAX));
    s.handle_response(&answer(9, &[], false)).unwrap();
    assert_eq!(s.next_epoch(), Some(1));
}

#[test]
fn sessionless_broker_gets_full_fetches_asking_for_a_session() {
    let w = wanted(&[(0, 5), (1, 7)]);
    let mut s = FetchSession::new();
    for _ in 0..3 {
        let r = s.build(&w, 12).unwrap();
        assert_eq!(r.kind, RequestKind::Full);
        assert_eq!((r.session_id, r.epoch), (0, INITIAL_EPOCH));
        assert_eq!(r.partitions.len(), 2);
        let a = answer(0, &r.partitions, false);
        assert_eq!(
            s.handle_response(&a),
            Ok(SessionOutcome::Accepted { incremental: false })
        );
        assert!(s.is_sessionless());
        assert_eq!(s.session_id(), None);
    }
    assert_eq!(s.close(), None, "nothing to close");
}

#[test]
fn below_v7_requests_are_sessionless() {
    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::new();
    let r = s.build(&w, 6).unwrap();
    assert_eq!((r.session_id, r.epoch), (0, FINAL_EPOCH));
    let req = fetch_request(&r, &FetchParams::default(), 6).unwrap();
    assert_eq!(req.topics[0].topic.as_str(), "a");
    assert_eq!(req.topics[0].partitions[0].log_start_offset, -1);
}

#[test]
fn session_errors_reset_to_a_full_request() {
    let w = wanted(&[(0, 5), (3, 1)]);
    for (code, reason, close) in [
        (70, SessionReset::SessionNotFound, 0),
        (71, SessionReset::InvalidEpoch, 42),
        (106, SessionReset::TopicIdError, 42),
        (58, SessionReset::Error(58), 42),
    ] {
        let mut s = FetchSession::resumed(42, 3, w.clone(), true);
        let r = s.build(&w, 13).unwrap();
        assert_eq!(r.kind, RequestKind::Incremental);
        assert!(r.partitions.is_empty() && r.forgotten.is_empty());
        assert_eq!(
            s.handle_response(&Broker::error(code)),
            Ok(SessionOutcome::Reset(reason.clone()))
        );
        assert_eq!(reason.needs_metadata_refresh(), code == 106);
        let r = s.build(&w, 13).unwrap();
        assert_eq!(r.kind, RequestKind::Full);
        assert_eq!((r.session_id, r.epoch), (close, INITIAL_EPOCH));
        assert_eq!(r.partitions.len(), 2);
    }
}

#[test]
fn incremental_answer_leaves_out_unchanged_partitions() {
    let w = wanted(&[(0, 5), (1, 5), (4, 9)]);
    let mut s = FetchSession::resumed(5, 1, w.clone(), false);
    s.build(&w, 12).unwrap();
    // Only one partition has news: the others are unchanged, and the answer is good.
    let only = [(tp(1), w[&tp(1)])];
    assert_eq!(
        s.handle_response(&answer(5, &only, false)),
        Ok(SessionOutcome::Accepted { incremental: true })
    );
    assert_eq!(s.partitions(), &w);
    assert_eq!(s.next_epoch(), Some(2));
}

#[test]
fn an_answer_naming_a_partition_not_in_the_session_resets_it() {
    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::resumed(5, 1, w.clone(), true);
    s.build(&w, 13).unwrap();
    let stranger = [(tp(4), PartitionFetch::new(Some(topic_id("b", 0)), 0, 1))];
    assert!(matches!(
        s.handle_response(&answer(5, &stranger, true)),
        Ok(SessionOutcome::Reset(SessionReset::UnexpectedPartition(_)))
    ));
    assert_eq!(s.build(&w, 13).unwrap().session_id, 5, "closed in passing");
}

#[test]
fn an_incremental_answer_with_session_zero_closes_the_session() {
    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::resumed(5, 1, w.clone(), false);
    s.build(&w, 12).unwrap();
    assert_eq!(
        s.handle_response(&answer(0, &[], false)),
        Ok(SessionOutcome::Accepted { incremental: true })
    );
    assert_eq!(s.session_id(), None);
    let r = s.build(&w, 12).unwrap();
    assert_eq!((r.kind, r.session_id, r.epoch), (RequestKind::Full, 0, 0));
}

#[test]
fn misuse_is_refused() {
    let mut s = FetchSession::new();
    assert_eq!(
        s.handle_response(&answer(0, &[], false)),
        Err(SessionError::NoRequestInFlight)
    );
    assert_eq!(s.handle_failure(), Err(SessionError::NoRequestInFlight));
    let mut w = wanted(&[(0, 5)]);
    if let Some(p) = w.get_mut(&tp(0)) {
        p.topic_id = None;
    }
    assert_eq!(s.build(&w, 13), Err(SessionError::MissingTopicId(tp(0))));
    assert!(s.build(&w, 12).is_ok());
}

#[test]
fn close_with_a_request_in_flight_names_its_session() {
    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::resumed(5, 1, w.clone(), false);
    s.build(&w, 12).unwrap();
    let c = s.close().expect("a close request");
    assert_eq!((c.session_id, c.epoch, c.kind), (5, -1, RequestKind::Close));
    assert!(c.partitions.is_empty());
    assert_eq!(s.close(), None);
    assert_eq!(
        s.handle_response(&answer(5, &[], false)),
        Err(SessionError::Closed)
    );
}

// ---------------------------------------------------------------------------------------
// The wire form.

#[test]
fn wire_v17_names_topics_by_id_and_forgets_by_id() {
    let mut w = wanted(&[(0, 5), (1, 6), (3, 7)]);
    let mut s = FetchSession::resumed(5, 1, w.clone(), true);
    w.remove(&tp(3));
    if let Some(p) = w.get_mut(&tp(1)) {
        p.fetch_offset = 60;
        p.current_leader_epoch = Some(4);
        p.last_fetched_epoch = Some(3);
    }
    let r = s.build(&w, 17).unwrap();
    let params = FetchParams {
        isolation_level: IsolationLevel::ReadCommitted,
        rack_id: "r1".into(),
        ..FetchParams::default()
    };
    let f = fetch_request(&r, &params, 17).unwrap();
    assert_eq!(
        (f.session_id, f.session_epoch, f.isolation_level),
        (5, 1, 1)
    );
    assert_eq!(f.rack_id.as_str(), "r1");
    assert_eq!(f.topics.len(), 1);
    assert_eq!(*f.topics[0].topic_id.as_bytes(), topic_id("a", 0).0);
    let p = &f.topics[0].partitions[0];
    assert_eq!(
        (
            p.partition,
            p.fetch_offset,
            p.current_leader_epoch,
            p.last_fetched_epoch
        ),
        (1, 60, 4, 3)
    );
    assert_eq!(f.forgotten_topics_data.len(), 1);
    assert_eq!(
        *f.forgotten_topics_data[0].topic_id.as_bytes(),
        topic_id("b", 0).0
    );
    assert_eq!(f.forgotten_topics_data[0].partitions, vec![0]);
    let mut buf = BytesMut::new();
    f.encode(&mut buf, 17).unwrap();
}

#[test]
fn wire_refuses_what_a_version_cannot_say() {
    let w = wanted(&[(0, 5)]);
    let mut s = FetchSession::resumed(5, 1, w, false);
    let r = s.build(&wanted(&[(0, 6)]), 12).unwrap();
    let p = FetchParams::default();
    assert!(fetch_request(&r, &p, 6).is_err(), "no sessions below v7");
    assert!(fetch_request(&r, &p, 13).is_err(), "names at v13");
    assert!(fetch_request(&r, &p, 18).is_err(), "kcon speaks up to v17");
    assert!(fetch_request(&r, &p, 3).is_err());
    let f = fetch_request(&r, &p, 8).unwrap();
    // Fields a version lacks stay at their defaults, so kafka-protocol encodes it.
    assert_eq!(f.topics[0].partitions[0].last_fetched_epoch, -1);
    let mut buf = BytesMut::new();
    f.encode(&mut buf, 8).unwrap();
}
