//! One connection against a scripted peer: handshake, pipelining, slots, timeouts, poisoning,
//! cancellation.

use std::collections::VecDeque;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, HeartbeatRequest, HeartbeatResponse, OffsetForLeaderEpochRequest,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{Connection, Corruption, Error, Misuse, Peer, TransportError};
use proptest::prelude::*;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::support::*;

#[tokio::test]
async fn handshake_asks_api_versions_v3_with_the_client_software() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let r = p.handshake().await;
        assert_eq!(r.header.client_id.as_deref(), Some("kcon"));
        let req = r.decode::<ApiVersionsRequest>();
        assert_eq!(&*req.client_software_name, "kcon");
        assert_eq!(&*req.client_software_version, env!("CARGO_PKG_VERSION"));
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let conn = conn.unwrap();
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 17);
    assert_eq!(conn.versions().offered(ApiKey::Metadata), Some((0, 13)));
    assert_eq!(conn.socket_addr(), l.addr);
}

/// The answer librdkafka's mock cluster gives to ApiVersions v3: UNSUPPORTED_VERSION, with the
/// rest of the body in v3's flexible layout (a 1-byte compact count where v0 has 4 bytes).
fn mock_cluster_refusal(correlation_id: i32) -> Vec<u8> {
    let mut body = correlation_id.to_be_bytes().to_vec();
    body.extend(35i16.to_be_bytes());
    body.push(2); // compact array of one entry
    body.extend(18i16.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend(2i16.to_be_bytes());
    body.push(0); // the entry's tagged fields
    body.extend(0i32.to_be_bytes()); // throttle time
    body.push(0); // tagged fields
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

#[tokio::test]
async fn unsupported_version_in_the_flexible_layout_falls_back_to_v0() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let r = p.recv().await.unwrap();
        assert_eq!(r.version(), 3);
        p.send_raw(&mock_cluster_refusal(r.correlation_id())).await;
        let r = p.recv().await.unwrap();
        assert_eq!((r.api_key(), r.version()), (18, 0));
        p.reply::<ApiVersionsRequest>(&r, &api_versions(&kcon_versions()))
            .await;
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    assert_eq!(conn.unwrap().version(ApiKey::Heartbeat).unwrap(), 4);
}

#[tokio::test]
async fn unsupported_version_with_a_v0_body_retries_at_the_brokers_own_max() {
    // Kafka's way (KIP-511): the refusal is a v0 body listing the broker's ApiVersions range;
    // the Java client retries at its max.
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let r = p.recv().await.unwrap();
        let refusal = api_versions(&[(18, 0, 2)]).with_error_code(35);
        p.send_raw(&frame::<ApiVersionsRequest>(
            r.correlation_id(),
            0,
            &refusal,
        ))
        .await;
        let r = p.recv().await.unwrap();
        assert_eq!(r.version(), 2);
        p.reply::<ApiVersionsRequest>(&r, &api_versions(&kcon_versions()))
            .await;
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    conn.unwrap();
}

#[tokio::test]
async fn a_v3_answer_that_does_not_decode_falls_back_to_v0() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let r = p.recv().await.unwrap();
        let mut body = r.correlation_id().to_be_bytes().to_vec();
        body.extend([0, 0, 0xff, 0xff, 0xff]);
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend(body);
        p.send_raw(&f).await;
        let r = p.recv().await.unwrap();
        assert_eq!(r.version(), 0);
        p.reply::<ApiVersionsRequest>(&r, &api_versions(&kcon_versions()))
            .await;
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    conn.unwrap();
}

#[tokio::test]
async fn another_handshake_error_fails_the_connect_naming_the_code() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let r = p.recv().await.unwrap();
        let refusal = api_versions(&[]).with_error_code(42);
        p.reply::<ApiVersionsRequest>(&r, &refusal).await;
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let err = conn.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Broker {
                api_key: 18,
                error_code: 42,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_thousand_pipelined_requests_are_matched_to_out_of_order_answers() {
    const N: i32 = 1000;
    const CAP: usize = 8;
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.max_in_flight_requests_per_connection = CAP;
    let (conn, mut p) = connect(&l, &c).await;
    let peer = tokio::spawn(async move {
        let mut answered = 0;
        let mut batch = Vec::new();
        while answered < N {
            batch.push(p.recv().await.unwrap());
            if batch.len() == CAP {
                // Last asked, first answered: no answer comes in the order asked.
                for r in batch.drain(..).rev() {
                    p.echo(&r).await;
                    answered += 1;
                }
            }
        }
        p
    });
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let conn = conn.clone();
        tasks.spawn(async move {
            let answer = conn.send(&heartbeat(i)).await.unwrap();
            assert_eq!(
                answer.throttle_time_ms, i,
                "answer matched to the wrong request"
            );
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let _p = peer.await.unwrap();
    assert_eq!(conn.in_flight(), 0);
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn no_more_requests_than_the_cap_are_outstanding_and_the_rest_wait() {
    const CAP: usize = 3;
    const N: i32 = 12;
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.max_in_flight_requests_per_connection = CAP;
    let (conn, mut p) = connect(&l, &c).await;
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let conn = conn.clone();
        tasks.spawn(async move { conn.send(&heartbeat(i)).await.unwrap() });
    }
    let mut outstanding = VecDeque::new();
    for answered in 0..N {
        // Take requests until the cap (or all that are left) is outstanding, then make sure no
        // other comes while the peer sits on them.
        let left = (N - answered) as usize;
        while outstanding.len() < CAP.min(left) {
            outstanding.push_back(p.recv().await.unwrap());
        }
        if let Ok(extra) = timeout(Duration::from_millis(100), p.recv()).await {
            panic!(
                "a request beyond the cap of {CAP} was sent: {:?}",
                extra.map(|r| r.heartbeat_number())
            );
        }
        let r = outstanding.pop_front().unwrap();
        p.echo(&r).await;
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn a_request_timeout_fails_the_request_and_closes_the_connection() {
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.request_timeout = Duration::from_secs(5);
    let (conn, mut p) = connect(&l, &c).await;
    // Virtual time from here, where the request timeout is the only timer: the clock jumps
    // straight to it. (Set up on the real clock: with the clock paused, a park during socket
    // IO can let it jump to an unrelated timer.)
    tokio::time::pause();
    let start = Instant::now();
    let request = heartbeat(1);
    let (result, r) = tokio::join!(conn.send(&request), p.recv());
    assert_eq!(r.unwrap().heartbeat_number(), 1);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportError::RequestTimeout { api_key: 12, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retriable());
    // Timers fire on whole milliseconds.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed <= Duration::from_millis(5001),
        "{elapsed:?}"
    );
    assert!(conn.is_closed());
    p.expect_closed().await;
    let again = conn.send(&heartbeat(2)).await.unwrap_err();
    assert!(matches!(
        again,
        Error::Transport {
            kind: TransportError::RequestTimeout { .. },
            ..
        }
    ));
}

/// A broker throttling a client for a quota answers at once and then reads nothing more from
/// the connection until the throttle time is up (KIP-219); the client holds its requests back
/// until then, the throttled request's own answer not delayed.
#[tokio::test]
async fn an_answer_with_a_throttle_time_holds_the_next_request_back_for_that_long() {
    const THROTTLE: Duration = Duration::from_millis(400);
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(1)).await })
    };
    let r = p.recv().await.unwrap();
    p.reply::<HeartbeatRequest>(
        &r,
        &HeartbeatResponse::default().with_throttle_time_ms(THROTTLE.as_millis() as i32),
    )
    .await;
    let answered = Instant::now();
    assert_eq!(
        first.await.unwrap().unwrap().throttle_time_ms,
        THROTTLE.as_millis() as i32
    );
    // Sent at once, written only once the throttle time has passed since the answer left.
    let second = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(2)).await })
    };
    let r = p.recv().await.unwrap();
    let waited = answered.elapsed();
    assert_eq!(r.heartbeat_number(), 2);
    assert!(
        waited >= THROTTLE,
        "the next request came {waited:?} after an answer that throttled for {THROTTLE:?}"
    );
    p.echo(&r).await;
    second.await.unwrap().unwrap();
    // A throttle time of zero holds nothing back.
    let third = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(0)).await })
    };
    let r = p.recv().await.unwrap();
    p.echo(&r).await;
    assert_eq!(third.await.unwrap().unwrap().throttle_time_ms, 0);
    assert!(!conn.is_closed());
}

/// A throttle longer than what is left of a request's timeout fails the request as timed out,
/// unsent: the connection stays open and sends again once the throttle time is up.
#[tokio::test]
async fn a_request_that_times_out_while_throttled_is_never_written() {
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.request_timeout = Duration::from_millis(300);
    let (conn, mut p) = connect(&l, &c).await;
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(1)).await })
    };
    let r = p.recv().await.unwrap();
    p.reply::<HeartbeatRequest>(
        &r,
        &HeartbeatResponse::default().with_throttle_time_ms(1_000),
    )
    .await;
    first.await.unwrap().unwrap();
    let err = conn.send(&heartbeat(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportError::RequestTimeout { api_key: 12, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !conn.is_closed(),
        "nothing was written: the connection stays"
    );
    // The throttle ends: the next request goes, and it is the first the peer sees since.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let third = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(3)).await })
    };
    let r = p.recv().await.unwrap();
    assert_eq!(r.heartbeat_number(), 3);
    p.echo(&r).await;
    third.await.unwrap().unwrap();
}

#[tokio::test]
async fn timing_out_while_waiting_for_a_slot_leaves_the_connection_open() {
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.max_in_flight_requests_per_connection = 1;
    let (conn, mut p) = connect(&l, &c).await;
    let first = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(&heartbeat(1)).await }
    });
    let r1 = p.recv().await.unwrap();
    let err = conn
        .send_with_timeout(&heartbeat(2), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Transport {
            kind: TransportError::RequestTimeout { .. },
            ..
        }
    ));
    assert!(!conn.is_closed());
    p.echo(&r1).await;
    assert_eq!(first.await.unwrap().unwrap().throttle_time_ms, 1);
    // The request that timed out was never sent: the next one the peer sees is the third.
    let request = heartbeat(3);
    let (third, r3) = tokio::join!(conn.send(&request), async {
        let r = p.recv().await.unwrap();
        p.echo(&r).await;
        r
    });
    assert_eq!(r3.heartbeat_number(), 3);
    assert_eq!(third.unwrap().throttle_time_ms, 3);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_the_handshake_hits_the_setup_timeout() {
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.socket_connection_setup_timeout = Duration::from_secs(2);
    let start = Instant::now();
    let (result, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        async {
            // Accepts, and never answers.
            let mut p = l.accept().await;
            let _ = p.recv().await;
            p
        }
    );
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportError::SetupTimeout { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_millis(2001),
        "{elapsed:?}"
    );
}

/// Sends three heartbeats, lets the peer read them, then has it send `bytes`; returns the three
/// results, the connection and the peer.
async fn three_pending_then(
    c: &kcon_pool::PoolConfig,
    bytes: impl FnOnce(i32) -> Vec<u8>,
) -> (
    Vec<kcon_pool::Result<HeartbeatResponse>>,
    Connection,
    PeerConn,
) {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, c).await;
    let mut tasks = Vec::new();
    for i in 1..=3 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move { conn.send(&heartbeat(i)).await }));
    }
    let mut first = None;
    for _ in 0..3 {
        let r = p.recv().await.unwrap();
        if r.heartbeat_number() == 1 {
            first = Some(r.correlation_id());
        }
    }
    p.send_raw(&bytes(first.unwrap())).await;
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    (results, conn, p)
}

#[tokio::test]
async fn a_connection_closed_mid_frame_fails_every_pending_request_once() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let mut tasks = Vec::new();
    for i in 1..=3 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move { conn.send(&heartbeat(i)).await }));
    }
    let mut cid = 0;
    for _ in 0..3 {
        let r = p.recv().await.unwrap();
        cid = r.correlation_id();
    }
    let half = frame::<HeartbeatRequest>(cid, 4, &HeartbeatResponse::default());
    p.send_raw(&half[..6]).await;
    drop(p);
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transport {
                    kind: TransportError::ClosedMidFrame { buffered: 6 },
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert!(conn.is_closed());
    assert_eq!(conn.in_flight(), 0);
    let again = conn.send(&heartbeat(4)).await.unwrap_err();
    assert!(matches!(
        again,
        Error::Transport {
            kind: TransportError::ClosedMidFrame { .. },
            ..
        }
    ));
}

/// A Heartbeat answer of about `bytes` bytes: an unknown tagged field (read and kept by the
/// codec) of a pattern that shows a byte out of place.
fn large_heartbeat_answer(bytes: usize) -> HeartbeatResponse {
    let body: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    HeartbeatResponse::default()
        .with_throttle_time_ms(7)
        .with_unknown_tagged_fields([(100, bytes::Bytes::from(body))].into())
}

/// An answer of megabytes (read into a memory map of its own), arriving in pieces with the
/// next answer behind it in the same write, is read whole and in order, and the small answer
/// after it through the shared buffer as before.
#[tokio::test]
async fn a_large_answer_arriving_in_pieces_is_read_whole_and_the_next_after_it() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let (first, second) = {
        let conn = conn.clone();
        let conn2 = conn.clone();
        (
            tokio::spawn(async move { conn.send(&heartbeat(1)).await }),
            tokio::spawn(async move { conn2.send(&heartbeat(2)).await }),
        )
    };
    let mut received = [p.recv().await.unwrap(), p.recv().await.unwrap()];
    received.sort_by_key(|r| r.heartbeat_number());
    let large = large_heartbeat_answer(3 << 20);
    let big = received[0].frame::<HeartbeatRequest>(&large);
    assert!(big.len() > 3 << 20);
    let small = received[1].frame::<HeartbeatRequest>(&HeartbeatResponse::default());
    // Part of the size prefix, then a little more, then the rest in reads of 64 KiB; the last
    // piece carries the small answer too.
    p.send_raw(&big[..3]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.send_raw(&big[3..1000]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut at = 1000;
    while big.len() - at > 64 * 1024 {
        p.send_raw(&big[at..at + 64 * 1024]).await;
        at += 64 * 1024;
    }
    let mut tail = big[at..].to_vec();
    tail.extend_from_slice(&small);
    p.send_raw(&tail).await;
    let answer = first.await.unwrap().unwrap();
    assert_eq!(answer.throttle_time_ms, 7);
    assert!(
        answer.unknown_tagged_fields == large.unknown_tagged_fields,
        "the large answer's bytes came back changed"
    );
    assert_eq!(second.await.unwrap().unwrap(), HeartbeatResponse::default());
    assert_eq!(conn.in_flight(), 0);
}

/// The unknown tagged field of a large Heartbeat answer: its bytes, and where they lie.
fn large_field(answer: &HeartbeatResponse) -> (&bytes::Bytes, usize) {
    let field = &answer.unknown_tagged_fields[&100];
    (field, field.as_ptr() as usize)
}

/// Sends Heartbeats numbered from `n`, one for each of `answers`, and has the peer answer
/// them in order, all in one write; returns the answers as the connection read them.
async fn answered_in_one_write(
    conn: &Connection,
    p: &mut PeerConn,
    n: i32,
    answers: &[HeartbeatResponse],
) -> Vec<HeartbeatResponse> {
    let mut sent = Vec::new();
    let mut bytes = Vec::new();
    for (i, answer) in (n..).zip(answers) {
        let conn = conn.clone();
        sent.push(tokio::spawn(async move { conn.send(&heartbeat(i)).await }));
        let r = p.recv().await.unwrap();
        bytes.extend_from_slice(&r.frame::<HeartbeatRequest>(answer));
    }
    p.send_raw(&bytes).await;
    let mut got = Vec::new();
    for answer in sent {
        got.push(answer.await.unwrap().unwrap());
    }
    got
}

/// Large answers read one after another: once an answer's bytes are dropped, the next one
/// no larger is read into the same map, exactly its own bytes (the small answer written
/// right behind it is read after it, not into the map's room beyond it); a larger one gets a
/// map of its own.
#[tokio::test]
async fn a_large_answer_is_read_into_the_map_of_the_last_one_dropped() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let three = large_heartbeat_answer(3 << 20);
    let got = answered_in_one_write(&conn, &mut p, 1, std::slice::from_ref(&three)).await;
    assert!(got[0].unknown_tagged_fields == three.unknown_tagged_fields);
    let (_, first_at) = large_field(&got[0]);
    drop(got);
    // Two MiB of another pattern, with a small answer in the same write behind it.
    let mut two = large_heartbeat_answer(2 << 20);
    let field: Vec<u8> = (0..2 << 20).map(|i| (i % 241) as u8).collect();
    two.unknown_tagged_fields = [(100, bytes::Bytes::from(field))].into();
    let got = answered_in_one_write(
        &conn,
        &mut p,
        3,
        &[two.clone(), HeartbeatResponse::default()],
    )
    .await;
    assert!(got[0].unknown_tagged_fields == two.unknown_tagged_fields);
    assert_eq!(got[1], HeartbeatResponse::default());
    let (field, at) = large_field(&got[0]);
    assert_eq!(field.len(), 2 << 20);
    assert_eq!(at, first_at, "read into the first answer's map");
    let kept = got;
    // Larger than the map kept, and that map still held: a map of its own.
    let four = large_heartbeat_answer(4 << 20);
    let got = answered_in_one_write(&conn, &mut p, 5, std::slice::from_ref(&four)).await;
    assert!(got[0].unknown_tagged_fields == four.unknown_tagged_fields);
    assert_ne!(large_field(&got[0]).1, first_at);
    assert!(
        kept[0].unknown_tagged_fields == two.unknown_tagged_fields,
        "untouched"
    );
    assert_eq!(conn.in_flight(), 0);
}

/// Several large answers held at once and dropped in any order: the maps of all of them are
/// kept, and later answers are read into them, each into the smallest that holds it.
#[tokio::test]
async fn the_maps_of_large_answers_dropped_together_are_all_used_again() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let five = large_heartbeat_answer(5 << 20);
    let three = large_heartbeat_answer(3 << 20);
    let got = answered_in_one_write(&conn, &mut p, 1, &[five.clone(), three.clone()]).await;
    let (five_at, three_at) = (large_field(&got[0]).1, large_field(&got[1]).1);
    assert_ne!(five_at, three_at);
    // Dropped the larger first: both are kept all the same.
    let [first, second] = <[HeartbeatResponse; 2]>::try_from(got).unwrap();
    drop(first);
    drop(second);
    // Smaller answers each go to the smallest map that holds them, whatever their order.
    let mut two = large_heartbeat_answer(2 << 20);
    let field: Vec<u8> = (0..2 << 20).map(|i| (i % 241) as u8).collect();
    two.unknown_tagged_fields = [(100, bytes::Bytes::from(field))].into();
    let four = large_heartbeat_answer(4 << 20);
    let got = answered_in_one_write(&conn, &mut p, 3, &[four.clone(), two.clone()]).await;
    assert!(got[0].unknown_tagged_fields == four.unknown_tagged_fields);
    assert!(got[1].unknown_tagged_fields == two.unknown_tagged_fields);
    assert_eq!(
        large_field(&got[0]).1,
        five_at,
        "four MiB in the five's map"
    );
    assert_eq!(
        large_field(&got[1]).1,
        three_at,
        "two MiB in the three's map"
    );
    assert_eq!(conn.in_flight(), 0);
}

/// A connection closed in the middle of a large answer fails the request with what it had
/// read, prefix included.
#[tokio::test]
async fn a_connection_closed_in_a_large_answer_says_how_much_it_read() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let sent = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(&heartbeat(1)).await })
    };
    let r = p.recv().await.unwrap();
    let big = r.frame::<HeartbeatRequest>(&large_heartbeat_answer(2 << 20));
    p.send_raw(&big[..1 << 20]).await;
    drop(p);
    let err = sent.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportError::ClosedMidFrame { buffered },
                ..
            } if buffered == 1 << 20
        ),
        "{err:?}"
    );
    assert!(conn.is_closed());
}

fn assert_all_corrupt(
    results: &[kcon_pool::Result<HeartbeatResponse>],
    check: impl Fn(&Corruption) -> bool,
) {
    assert_eq!(results.len(), 3);
    for r in results {
        match r {
            Err(Error::Corrupt { kind, .. }) if check(kind) => {}
            other => panic!("expected the poisoning error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_negative_frame_size_poisons_the_connection() {
    let (results, conn, mut p) =
        three_pending_then(&config(&[]), |_| (-1i32).to_be_bytes().to_vec()).await;
    assert_all_corrupt(&results, |k| {
        matches!(
            k,
            Corruption::Codec(kcon_codec::Error::FrameSize { size: -1, .. })
        )
    });
    assert!(!results[0].as_ref().unwrap_err().is_retriable());
    assert!(conn.is_closed());
    assert_eq!(conn.in_flight(), 0);
    p.expect_closed().await;
}

#[tokio::test]
async fn a_frame_larger_than_receive_message_max_bytes_poisons_the_connection() {
    let mut c = config(&[]);
    c.receive_message_max_bytes = 1000;
    let (results, conn, mut p) = three_pending_then(&c, |_| 1001i32.to_be_bytes().to_vec()).await;
    assert_all_corrupt(&results, |k| {
        matches!(
            k,
            Corruption::Codec(kcon_codec::Error::FrameSize {
                size: 1001,
                max: 1000
            })
        )
    });
    assert!(conn.is_closed());
    p.expect_closed().await;
}

#[tokio::test]
async fn an_answer_that_does_not_decode_poisons_the_connection_for_all() {
    let (results, conn, mut p) = three_pending_then(&config(&[]), |cid| {
        // A valid frame around a Heartbeat v4 body one byte short.
        let whole = frame::<HeartbeatRequest>(cid, 4, &HeartbeatResponse::default());
        let mut f = ((whole.len() - 5) as i32).to_be_bytes().to_vec();
        f.extend(&whole[4..whole.len() - 1]);
        f
    })
    .await;
    assert_all_corrupt(&results, |k| {
        matches!(k, Corruption::Codec(kcon_codec::Error::Decode(_)))
    });
    assert!(conn.is_closed());
    p.expect_closed().await;
}

#[tokio::test]
async fn an_answer_to_no_request_poisons_the_connection() {
    let (results, conn, mut p) = three_pending_then(&config(&[]), |_| {
        frame::<HeartbeatRequest>(999_999, 4, &HeartbeatResponse::default()).to_vec()
    })
    .await;
    assert_all_corrupt(&results, |k| {
        *k == Corruption::UnknownCorrelationId(999_999)
    });
    assert!(conn.is_closed());
    p.expect_closed().await;
}

#[tokio::test]
async fn asking_for_an_api_the_broker_lacks_names_the_api_and_the_broker() {
    let l = Listener::bind().await;
    let (conn, _p) = connect_with(&l, &config(&[]), &[(18, 0, 3), (12, 0, 4), (1, 0, 3)]).await;
    let err = conn
        .send(&OffsetForLeaderEpochRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                api_key: 23,
                theirs: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "bootstrap server {} does not offer OffsetForLeaderEpoch",
            l.address()
        )
    );
    let err = conn.version(ApiKey::Fetch).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                api_key: 1,
                ours: (4, 17),
                theirs: Some((0, 3)),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!conn.is_closed(), "asking is not a connection failure");
}

#[tokio::test]
async fn a_request_that_cannot_be_encoded_at_the_version_is_misuse_and_harmless() {
    let l = Listener::bind().await;
    // Heartbeat v2 has no group instance id (static membership came with v3).
    let (conn, mut p) = connect_with(&l, &config(&[]), &[(18, 0, 3), (12, 0, 2)]).await;
    let request = heartbeat(1).with_group_instance_id(Some(StrBytes::from_static_str("i")));
    let err = conn.send(&request).await.unwrap_err();
    assert!(matches!(err, Error::Misuse(Misuse::Encode(_))), "{err:?}");
    assert!(!conn.is_closed());
    assert_eq!(conn.in_flight(), 0, "the slot went back");
    let request = heartbeat(2);
    let (answer, _) = tokio::join!(conn.send(&request), async {
        let r = p.recv().await.unwrap();
        p.echo(&r).await;
    });
    assert_eq!(answer.unwrap().throttle_time_ms, 2);
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_socket() {
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let clone = conn.clone();
    drop(conn);
    assert!(!clone.is_closed());
    drop(clone);
    p.expect_closed().await;
}

/// Polls `fut` at most `polls` times, then drops it.
async fn poll_at_most<F: Future>(fut: F, polls: u8) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut n = 0;
    std::future::poll_fn(|cx| {
        if n == polls {
            return Poll::Ready(None);
        }
        n += 1;
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

#[derive(Debug, Clone)]
enum Cancel {
    Never,
    AfterPolls(u8),
    AfterMillis(u16),
}

fn cancel() -> impl Strategy<Value = Cancel> {
    prop_oneof![
        Just(Cancel::Never),
        (1u8..6).prop_map(Cancel::AfterPolls),
        (0u16..4).prop_map(Cancel::AfterMillis),
    ]
}

/// The scenario of the cancellation property; returns the most requests the peer ever had
/// outstanding.
async fn cancel_scenario(cap: usize, cancels: Vec<Cancel>, delays: Vec<u16>) -> usize {
    let l = Listener::bind().await;
    let mut c = config(&[]);
    c.max_in_flight_requests_per_connection = cap;
    let (conn, mut p) = connect(&l, &c).await;
    let peer = tokio::spawn(async move {
        let mut outstanding = Vec::new();
        let mut most = 0;
        let mut tick = 0usize;
        loop {
            let delay = Duration::from_micros(u64::from(delays[tick % delays.len()]) * 100 + 50);
            tokio::select! {
                r = p.recv() => match r {
                    Some(r) => {
                        outstanding.push(r);
                        most = most.max(outstanding.len());
                    }
                    None => return most,
                },
                () = tokio::time::sleep(delay), if !outstanding.is_empty() => {
                    // Answer a pseudo-random outstanding request: out of order.
                    let r = outstanding.swap_remove(tick % outstanding.len());
                    p.echo(&r).await;
                }
            }
            tick += 1;
        }
    });
    let mut tasks = JoinSet::new();
    for (i, cancel) in cancels.into_iter().enumerate() {
        let conn = conn.clone();
        let i = i as i32;
        tasks.spawn(async move {
            let request = heartbeat(i);
            let send = conn.send(&request);
            let outcome = match cancel {
                Cancel::Never => Some(send.await),
                Cancel::AfterPolls(n) => poll_at_most(send, n).await,
                Cancel::AfterMillis(ms) => timeout(Duration::from_millis(u64::from(ms)), send)
                    .await
                    .ok(),
            };
            if let Some(result) = outcome {
                assert_eq!(result.unwrap().throttle_time_ms, i);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Still usable, and still matching answers to requests.
    assert_eq!(
        conn.send(&heartbeat(-7)).await.unwrap().throttle_time_ms,
        -7
    );
    // Every slot comes back once the peer has answered the cancelled requests too.
    for _ in 0..1000 {
        if conn.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(conn.in_flight(), 0, "slots leaked");
    assert!(!conn.is_closed());
    drop(conn);
    peer.await.unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn requests_cancelled_anywhere_leave_the_connection_usable_and_free_their_slots(
        cap in 1usize..4,
        cancels in proptest::collection::vec(cancel(), 1..24),
        delays in proptest::collection::vec(0u16..20, 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let most = runtime.block_on(cancel_scenario(cap, cancels, delays));
        prop_assert!(most <= cap, "peer saw {most} outstanding, cap {cap}");
    }
}

/// A Produce request of more batches than one vectored write takes, each large enough to go
/// from its own buffer, behind a small request sent just before it: the peer reads the small
/// request, then every batch exactly as sent, and both are answered.
#[tokio::test]
async fn a_produce_request_written_in_pieces_arrives_whole_and_in_order() {
    use kcon_codec::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use kcon_codec::kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let l = Listener::bind().await;
    let (conn, mut p) = connect(&l, &config(&[])).await;
    let batches: Vec<bytes::Bytes> = (0..700)
        .map(|i| bytes::Bytes::from(vec![(i % 251) as u8; kcon_codec::parts::SHARED_MIN + i]))
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(
                    batches
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            PartitionProduceData::default()
                                .with_index(i as i32)
                                .with_records(Some(b.clone()))
                        })
                        .collect(),
                ),
        ]);
    let peer = async {
        let h = p.recv().await.unwrap();
        assert_eq!(h.decode::<HeartbeatRequest>(), heartbeat(7));
        let r = p.recv().await.unwrap();
        assert_eq!(r.api(), Some(ApiKey::Produce));
        assert!(
            r.decode::<ProduceRequest>() == request,
            "every batch as sent"
        );
        p.send_raw(&h.frame::<HeartbeatRequest>(&HeartbeatResponse::default()))
            .await;
        p.send_raw(&r.frame::<ProduceRequest>(&ProduceResponse::default()))
            .await;
    };
    // Polled in this order: the heartbeat is queued first.
    let small = heartbeat(7);
    let (beat, produced, ()) = tokio::join!(conn.send(&small), conn.send(&request), peer);
    assert_eq!(beat.unwrap(), HeartbeatResponse::default());
    assert_eq!(produced.unwrap(), ProduceResponse::default());
}
