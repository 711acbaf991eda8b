//! How long a kcon follower of a classic group takes from its JoinGroup answer to its SyncGroup,
//! measured on the wire by a scripted coordinator over 50 generations.
//!
//! A scripted peer because no broker here says it: a coordinator does not report when it wrote
//! an answer, and librdkafka's mock cluster only shows the result, a follower whose SyncGroup
//! comes after the leader's losing its generation (`kcon_tests::mock`, `mock_harness`). The coordinator runs on a thread and runtime of its own, so that its
//! work does not queue behind the member's tasks; it holds each JoinGroup as a coordinator does
//! while the other members join, so the member's runtime has gone idle when the answer comes,
//! as it has in a real rebalance.
//!
//! Each generation goes as on a broker: SyncGroup answered, the member stable; its next
//! Heartbeat answered REBALANCE_IN_PROGRESS; it revokes, the application acknowledges, it joins
//! again. The gap, from the JoinGroup answer written to the SyncGroup read, is printed (median
//! and spread; run with `--no-capture` to see it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, MetadataRequest, SyncGroupRequest,
    SyncGroupResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_scripted::{
    Answer, Listener, PeerConn, Received, api_versions, coordinator_answer, kcon_versions,
    one_broker_metadata,
};
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{Member, group_config_at_defaults};

/// Generations measured.
const GENERATIONS: usize = 50;
/// How long the coordinator holds each JoinGroup, as while the other members join.
const HOLD: Duration = Duration::from_millis(100);
const TOPIC: &str = "sync-gap";
const MEMBER_ID: &str = "follower-1";
const LEADER_ID: &str = "leader-0";
/// REBALANCE_IN_PROGRESS.
const REBALANCE_IN_PROGRESS: i16 = 27;

/// What the coordinator saw, shared by its connections.
#[derive(Debug, Default)]
struct Seen {
    /// The generation last handed out, and when its JoinGroup answer was written.
    joined: Option<(i32, Instant)>,
    /// Each generation's gap from the JoinGroup answer written to the SyncGroup read.
    gaps: Vec<Duration>,
    /// SyncGroups that did not carry the generation and member id just handed out.
    wrong: Vec<String>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Serves one connection until the member closes it.
async fn serve(mut conn: PeerConn, addr: SocketAddr, seen: Arc<Mutex<Seen>>) {
    while let Some(r) = conn.recv().await {
        match r.api() {
            Some(ApiKey::ApiVersions) => {
                conn.reply::<ApiVersionsRequest>(&r, &api_versions(&kcon_versions()))
                    .await
            }
            Some(ApiKey::Metadata) => {
                conn.reply::<MetadataRequest>(&r, &one_broker_metadata(addr, &[(TOPIC, 1)]))
                    .await
            }
            Some(ApiKey::FindCoordinator) => match coordinator_answer(&r, 1, addr) {
                Answer::Frame(f) => conn.send_raw(&f).await,
                other => panic!("a FindCoordinator answer is a frame: {other:?}"),
            },
            Some(ApiKey::JoinGroup) => join(&mut conn, &r, &seen).await,
            Some(ApiKey::SyncGroup) => {
                let read = Instant::now();
                let sync = r.decode::<SyncGroupRequest>();
                {
                    let mut seen = seen.lock().unwrap();
                    match seen.joined.take() {
                        Some((generation, written))
                            if sync.generation_id == generation
                                && sync.member_id.as_str() == MEMBER_ID =>
                        {
                            seen.gaps.push(read - written);
                        }
                        joined => {
                            let what = format!("{sync:?} after {joined:?}");
                            seen.wrong.push(what);
                        }
                    }
                }
                let answer = SyncGroupResponse::default()
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
                conn.reply::<SyncGroupRequest>(&r, &answer).await;
            }
            Some(ApiKey::Heartbeat) => {
                let more = seen.lock().unwrap().gaps.len() < GENERATIONS;
                let error_code = if more { REBALANCE_IN_PROGRESS } else { 0 };
                let answer = HeartbeatResponse::default().with_error_code(error_code);
                conn.reply::<HeartbeatRequest>(&r, &answer).await;
            }
            Some(ApiKey::LeaveGroup) => {
                conn.reply::<LeaveGroupRequest>(&r, &LeaveGroupResponse::default())
                    .await
            }
            other => panic!("the coordinator was not scripted for {other:?}"),
        }
    }
}

/// Holds the JoinGroup, then names the member a follower of the next generation.
async fn join(conn: &mut PeerConn, r: &Received, seen: &Mutex<Seen>) {
    tokio::time::sleep(HOLD).await;
    let generation = seen.lock().unwrap().gaps.len() as i32 + 1;
    let answer = JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_leader(s(LEADER_ID))
        .with_member_id(s(MEMBER_ID));
    conn.reply::<JoinGroupRequest>(r, &answer).await;
    seen.lock().unwrap().joined = Some((generation, Instant::now()));
}

/// The coordinator, on a thread and current-thread runtime of its own; returns its address.
fn start_coordinator(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = Listener::bind().await;
            let addr = listener.addr;
            tx.send(addr).expect("the test waits for the address");
            loop {
                let conn = listener.accept().await;
                tokio::spawn(serve(conn, addr, seen.clone()));
            }
        });
    });
    rx.recv().expect("the coordinator's address")
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_syncs_soon_after_its_join_answer() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = start_coordinator(seen.clone());
    let group = unique_name("sync-gap");
    let config = group_config_at_defaults(&group, "range", &[("heartbeat.interval.ms", "100")]);
    let member = Member::start("follower", &addr.to_string(), config, &[TOPIC]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().gaps.len() < GENERATIONS {
        assert!(
            Instant::now() < deadline,
            "{} generations within 60 s: {:?}",
            seen.lock().unwrap().gaps.len(),
            member.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = member.close().await;
    let seen = seen.lock().unwrap();
    assert!(seen.wrong.is_empty(), "{:?}", seen.wrong);
    assert!(log.fatal.is_none(), "{log:?}");
    assert!(
        log.generations.len() >= GENERATIONS,
        "each generation is joined once: {log:?}"
    );
    let mut gaps: Vec<f64> = seen.gaps.iter().copied().map(micros).collect();
    gaps.sort_by(f64::total_cmp);
    let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "JoinGroup answer to SyncGroup over {} generations, µs: min {:.0}, p10 {:.0}, median {:.0}, p90 {:.0}, max {:.0}",
        gaps.len(),
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}
