//! Fetch sessions (KIP-227) kept by the peer: reuse, forgotten partitions, recovery from
//! session errors, incremental answers that leave partitions out, and the close.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::fetch_request::FetchRequest;

use super::peer::{Answered, SessionBroker, TOPIC, TOPIC_ID, summarize, summary};
use super::{Reader, config, expected, tp};

/// The client's session in the model: (session id, next epoch, partition → (fetch offset,
/// current leader epoch)).
type ModelSession = (i32, i32, BTreeMap<i32, (i64, i32)>);

/// Replays the Fetches and the peer's answers against a model of the client's session and
/// checks KIP-227's client rules: an incremental request names the session the broker opened,
/// at the next epoch; it carries only partitions that are new to the session or changed, and
/// forgets only partitions the session holds; after a session error the next request is full.
/// Returns the number of incremental requests.
fn check_session_use(fetches: &[FetchRequest], answered: &[Answered]) -> usize {
    let mut session: Option<ModelSession> = None;
    let mut incremental = 0;
    for (i, f) in fetches.iter().enumerate() {
        let (id, epoch, ..) = summary(f);
        let sent: BTreeMap<i32, (i64, i32)> = f
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition, (p.fetch_offset, p.current_leader_epoch)))
            })
            .collect();
        let mut view = match epoch {
            -1 => {
                session = None;
                continue;
            }
            0 => sent,
            e => {
                let Some((sid, next, mut held)) = session.take() else {
                    panic!(
                        "request {i} is incremental with no session: {:?}",
                        summary(f)
                    );
                };
                assert_eq!((id, e), (sid, next), "request {i}: {:?}", summary(f));
                for (p, fields) in sent {
                    assert_ne!(
                        held.get(&p),
                        Some(&fields),
                        "request {i} resends unchanged partition {p}: {:?}",
                        summary(f)
                    );
                    held.insert(p, fields);
                }
                for t in &f.forgotten_topics_data {
                    for p in &t.partitions {
                        assert!(
                            held.remove(p).is_some(),
                            "request {i} forgets partition {p} the session lacks"
                        );
                    }
                }
                incremental += 1;
                held
            }
        };
        let Some(a) = answered.get(i) else {
            break;
        };
        session = if a.error_code != 0 || a.session_id == 0 {
            None
        } else if epoch == 0 {
            Some((a.session_id, 1, std::mem::take(&mut view)))
        } else {
            let next = if epoch == i32::MAX { 1 } else { epoch + 1 };
            Some((a.session_id, next, view))
        };
    }
    incremental
}

async fn full_then_incremental(version: i16) {
    let b = SessionBroker::start(3, 5, version).await;
    b.append(0, 5);
    b.append(1, 5);
    let mut c = Reader::start(&b, config(&[]));
    c.assign((0..3).map(|p| (tp(p), 0)));
    c.until_count(0, 5).await;
    c.until_count(1, 5).await;
    b.append(1, 3);
    c.until_count(1, 8).await;
    b.append(2, 4);
    c.until_count(2, 4).await;
    b.append(0, 2);
    c.until_count(0, 7).await;
    c.read_for(Duration::from_millis(100)).await;

    assert_eq!(c.records[&0], expected(0, 0..7));
    assert_eq!(c.records[&1], expected(1, 0..8));
    assert_eq!(c.records[&2], expected(2, 0..4));
    assert!(c.errors().is_empty(), "{:?}", c.errors());

    let fetches = b.fetches();
    let answered = b.answered();
    assert!(
        b.received()
            .iter()
            .filter(|r| r.api_key() == 1)
            .all(|r| r.version() == version)
    );
    for f in &fetches {
        for t in &f.topics {
            if version >= 13 {
                assert_eq!(*t.topic_id.as_bytes(), TOPIC_ID);
            } else {
                assert_eq!(t.topic.as_str(), TOPIC);
            }
        }
    }
    // The first is full and opens the session; every later one reuses it, epochs 1, 2, 3...
    assert_eq!(
        summary(&fetches[0]),
        (0, 0, vec![(0, 0), (1, 0), (2, 0)], vec![])
    );
    let session = answered[0].session_id;
    assert_ne!(session, 0);
    for (i, f) in fetches.iter().enumerate().skip(1) {
        assert_eq!(
            (f.session_id, f.session_epoch),
            (session, i as i32),
            "{:#?}",
            summarize(&fetches)
        );
    }
    let incremental = check_session_use(&fetches, &answered);
    assert!(incremental >= 4, "{:#?}", summarize(&fetches));
    // The peer did leave unchanged partitions out of incremental answers.
    assert!(
        answered
            .iter()
            .any(|a| a.incremental && a.partitions.len() < 3),
        "{answered:#?}"
    );
}

#[tokio::test]
async fn first_fetch_is_full_then_incremental_in_one_session_v12_names() {
    full_then_incremental(12).await;
}

#[tokio::test]
async fn first_fetch_is_full_then_incremental_in_one_session_v13_topic_ids() {
    full_then_incremental(13).await;
}

#[tokio::test]
async fn a_paused_partition_is_forgotten_and_a_resumed_one_rejoins_the_session() {
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 3);
    b.append(1, 3);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until_count(0, 3).await;
    c.until_count(1, 3).await;
    let session = b.answered()[0].session_id;
    // Partition 1 is in the session at its new position before it is paused.
    b.wait_until("partition 1 at 3 in the session", |b| {
        b.session_partitions(session)
            .is_some_and(|s| s.get(&1) == Some(&3))
    })
    .await;

    let before_pause = b.fetches().len();
    c.consumer().pause([tp(1)]).unwrap();
    b.wait_until("partition 1 forgotten", |b| {
        b.fetches()[before_pause..]
            .iter()
            .any(|f| summary(f).3.contains(&1))
    })
    .await;
    let forgot_at = b
        .fetches()
        .iter()
        .enumerate()
        .skip(before_pause)
        .find(|(_, f)| summary(f).3.contains(&1))
        .map(|(i, _)| i)
        .unwrap();
    let f = &b.fetches()[forgot_at];
    assert_eq!(f.session_id, session, "forgotten in the same session");
    assert!(f.session_epoch > 0);
    b.append(0, 2);
    b.append(1, 2);
    c.until_count(0, 5).await;
    c.read_for(Duration::from_millis(150)).await;
    assert_eq!(
        c.records[&1],
        expected(1, 0..3),
        "a paused partition's data stops"
    );
    assert!(!b.session_partitions(session).unwrap().contains_key(&1));

    let before_resume = b.fetches().len();
    c.consumer().resume([tp(1)]).unwrap();
    c.until_count(1, 5).await;
    assert_eq!(c.records[&0], expected(0, 0..5));
    assert_eq!(c.records[&1], expected(1, 0..5));
    let fetches = b.fetches();
    for f in &fetches[forgot_at + 1..before_resume] {
        assert!(
            !summary(f).2.iter().any(|(p, _)| *p == 1),
            "paused partition 1 fetched: {:?}",
            summary(f)
        );
    }
    let back = fetches[before_resume..]
        .iter()
        .find(|f| summary(f).2.iter().any(|(p, _)| *p == 1))
        .expect("partition 1 fetched again");
    assert_eq!(back.session_id, session, "{:?}", summary(back));
    assert!(
        back.session_epoch > 0,
        "rejoins incrementally: {:?}",
        summary(back)
    );
    assert!(summary(back).2.contains(&(1, 3)));
    check_session_use(&fetches, &b.answered());
}

#[tokio::test]
async fn session_errors_and_an_eviction_start_a_full_fetch_with_no_loss_or_duplicates() {
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 2);
    b.append(1, 2);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until_count(0, 2).await;
    c.until_count(1, 2).await;

    let mut total = 2;
    for (round, code) in [(0, Some(70)), (1, Some(71)), (2, None)].into_iter() {
        let before = b.fetches().len();
        match code {
            Some(code) => b.inject_fetch_error(code),
            None => b.evict_sessions(),
        }
        b.wait_until("a session error answered", |b| {
            b.answered()[before..].iter().any(|a| a.error_code != 0)
        })
        .await;
        b.append(0, 2);
        b.append(1, 3);
        total += 2;
        c.until_count(0, total).await;
        c.until_count(1, total + round + 1).await;

        let fetches = b.fetches();
        let answered = b.answered();
        let i = before
            + answered[before..]
                .iter()
                .position(|a| a.error_code != 0)
                .unwrap();
        let failed = &fetches[i];
        assert!(failed.session_epoch > 0, "{:?}", summary(failed));
        let expected_code = code.unwrap_or(70);
        assert_eq!(answered[i].error_code, expected_code);
        let next = &fetches[i + 1];
        let (id, epoch, partitions, forgotten) = summary(next);
        assert_eq!(
            epoch,
            0,
            "a full request after {expected_code}: {:?}",
            summary(next)
        );
        // 70: the session is gone, nothing to close; 71: the broker still holds it, so the
        // full request closes it in passing (DESIGN.md's diagram).
        let close = if expected_code == 70 {
            0
        } else {
            failed.session_id
        };
        assert_eq!(id, close, "{:?}", summary(next));
        assert_eq!(
            partitions.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [0, 1],
            "a full request carries every partition"
        );
        assert!(forgotten.is_empty());
        assert_ne!(answered[i + 1].session_id, 0, "a new session");
    }
    c.read_for(Duration::from_millis(100)).await;
    assert_eq!(c.records[&0], expected(0, 0..8));
    assert_eq!(c.records[&1], expected(1, 0..11));
    assert_eq!(
        b.sessions().len(),
        1,
        "the old sessions were closed or evicted"
    );
    check_session_use(&b.fetches(), &b.answered());
}

#[tokio::test]
async fn a_partition_left_out_of_incremental_answers_is_unchanged_not_empty() {
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 3);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until_count(0, 3).await;
    b.append(0, 2);
    c.until_count(0, 5).await;
    b.append(0, 2);
    c.until_count(0, 7).await;
    // Partition 1 was idle through several incremental answers that left it out.
    let answered = b.answered();
    let left_out = answered
        .iter()
        .filter(|a| a.incremental && !a.partitions.iter().any(|(p, _)| *p == 1))
        .count();
    assert!(left_out >= 2, "{answered:#?}");

    b.append(1, 4);
    c.until_count(1, 4).await;
    b.append(1, 1);
    c.until_count(1, 5).await;
    c.read_for(Duration::from_millis(100)).await;
    assert_eq!(c.records[&0], expected(0, 0..7));
    assert_eq!(c.records[&1], expected(1, 0..5));
    assert!(
        c.errors().is_empty() && c.others().is_empty(),
        "{:?} {:?}",
        c.errors(),
        c.others()
    );
    let fetches = b.fetches();
    // Partition 1 went out at 0 once (the full request) and then only at new positions.
    let p1: Vec<i64> = fetches
        .iter()
        .flat_map(|f| summary(f).2)
        .filter(|(p, _)| *p == 1)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(p1.iter().filter(|o| **o == 0).count(), 1, "{p1:?}");
    assert!(fetches[1..].iter().all(|f| f.session_epoch > 0));
    check_session_use(&fetches, &b.answered());
}

#[tokio::test]
async fn close_sends_epoch_minus_one_for_the_session() {
    let b = SessionBroker::start(2, 5, 12).await;
    b.append(0, 2);
    let mut c = Reader::start(&b, config(&[]));
    c.assign([(tp(0), 0), (tp(1), 0)]);
    c.until_count(0, 2).await;
    let session = b.answered()[0].session_id;
    assert_eq!(b.sessions(), [session]);

    let started = tokio::time::Instant::now();
    let consumer = c.consumer.take().unwrap();
    consumer
        .close_within(Duration::from_secs(2))
        .await
        .expect("closed");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close waited for its timeout"
    );
    let fetches = b.fetches();
    let last = fetches.last().unwrap();
    assert_eq!(summary(last), (session, -1, vec![], vec![]));
    assert_eq!(
        fetches.iter().filter(|f| f.session_epoch == -1).count(),
        1,
        "{:#?}",
        summarize(&fetches)
    );
    assert!(b.sessions().is_empty(), "the peer dropped the session");
}

/// The Fetch requests of a consumer owning `n` partitions, once it has read a record of each
/// and then, five times over, a new record of partition 0: (every request's body size, in
/// order; those of the steady part).
async fn request_sizes(n: i32, keep_sessions: bool) -> (Vec<usize>, Vec<usize>) {
    let b = SessionBroker::start(n, 5, 17).await;
    if !keep_sessions {
        b.keep_no_sessions();
    }
    for p in 0..n {
        b.append(p, 1);
    }
    let mut c = Reader::start(&b, config(&[]));
    c.assign((0..n).map(|p| (tp(p), 0)));
    c.until(&format!("a record of each of {n} partitions"), |c| {
        (0..n).all(|p| c.offsets(p).len() == 1)
    })
    .await;
    let before = b.received().len();
    for i in 1..=5 {
        b.append(0, 1);
        c.until_count(0, 1 + i).await;
    }
    let sizes = |from: usize| -> Vec<usize> {
        b.received()[from..]
            .iter()
            .filter(|r| r.api_key() == 1)
            .map(|r| r.body.len())
            .collect()
    };
    let steady = sizes(before);
    let all = sizes(0);
    assert_eq!(c.offsets(0), (0..6).collect::<Vec<_>>());
    assert!(c.errors().is_empty(), "{:?}", c.errors());
    if keep_sessions {
        assert!(
            b.answered().iter().any(|a| a.incremental),
            "the peer kept a session"
        );
    }
    (all, steady)
}

/// What a fetch session (KIP-227) saves a consumer owning 2,000 partitions of one broker: with
/// it, a Fetch names only the partitions whose position moved (the first after every
/// partition got a record names them all again); without it (Tansu, the mock, librdkafka),
/// every Fetch names all 2,000. Prints the sizes (`--nocapture`); the figures are quoted in
/// benches/README.md.
#[tokio::test]
#[allow(clippy::print_stdout, reason = "the test prints the sizes it measures")]
async fn request_size_at_2000_partitions() {
    let (all_with, mut with) = request_sizes(2000, true).await;
    let (_, without) = request_sizes(2000, false).await;
    println!(
        "Fetch v17 request bodies at 2,000 partitions: the first (full) {} bytes; then, one \
         partition moving, {with:?} bytes in a session against {without:?} without",
        all_with[0]
    );
    let smallest_without = *without
        .iter()
        .min()
        .expect("steady Fetches without a session");
    // Without a session every request names every partition: at least ~30 bytes each.
    assert!(smallest_without >= 2000 * 30, "{without:?}");
    // In the session, most requests carry only the partition that moved.
    with.sort_unstable();
    let median_with = with[with.len() / 2];
    assert!(
        median_with * 100 < smallest_without,
        "with a session {with:?}, without {without:?}"
    );
}
