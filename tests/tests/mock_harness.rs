//! The librdkafka mock-cluster harness against the real mock: every control is applied and its
//! effect observed over the wire with the codec-only blocking client.
//!
//! Each test starts its own cluster (its own process and ports), so they run in parallel.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kcon_codec::kafka_protocol::messages::leave_group_request::MemberIdentity;
use kcon_codec::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kcon_codec::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, MetadataRequest,
    MetadataResponse, SyncGroupRequest, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_tests::blocking::BlockingConnection;
use kcon_tests::brokers::{installed, repo_root, unique_name};
use kcon_tests::mock::{CoordinatorType, MockCluster, TRANSPORT_ERROR};

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Metadata for `topics` (`None`: every topic).
fn metadata(conn: &mut BlockingConnection, topics: Option<&[&str]>) -> MetadataResponse {
    let topics = topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(t)))))
            .collect()
    });
    let req = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    conn.send(&req).expect("Metadata").1
}

/// `(node id, address)` of every broker in a Metadata answer, sorted by id.
fn brokers_of(resp: &MetadataResponse) -> Vec<(i32, SocketAddr)> {
    let mut brokers: Vec<_> = resp
        .brokers
        .iter()
        .map(|b| {
            let addr = format!("{}:{}", b.host.as_str(), b.port).parse().unwrap();
            (b.node_id.0, addr)
        })
        .collect();
    brokers.sort();
    brokers
}

/// The leader of `topic`'s `partition` and its epoch, from broker 1's Metadata.
fn leader(mock: &MockCluster, topic: &str, partition: i32) -> (i32, i32) {
    let mut conn = mock.connect(1).unwrap();
    let resp = metadata(&mut conn, Some(&[topic]));
    let p = resp.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .expect("the partition is listed");
    (p.leader_id.0, p.leader_epoch)
}

fn find_coordinator(
    conn: &mut BlockingConnection,
    key: &str,
    key_type: i8,
) -> FindCoordinatorResponse {
    let req = FindCoordinatorRequest::default()
        .with_key(str_bytes(key))
        .with_key_type(key_type);
    conn.send(&req).expect("FindCoordinator").1
}

#[test]
fn metadata_lists_every_broker_with_its_rack() {
    let mock = MockCluster::start(3);
    let addrs = mock.broker_addrs();
    assert_eq!(addrs.len(), 3);
    for addr in &addrs {
        assert!(
            mock.bootstrap().contains(&addr.to_string()),
            "{addr} in {}",
            mock.bootstrap()
        );
    }
    mock.set_rack(2, "rack-b");
    // Every broker describes the same cluster.
    for id in 1..=3 {
        let mut conn = mock.connect(id).unwrap();
        let resp = metadata(&mut conn, Some(&[]));
        let expected: Vec<_> = (1..=3).map(|i| (i, mock.broker_addr(i))).collect();
        assert_eq!(brokers_of(&resp), expected);
        for b in &resp.brokers {
            let rack = b.rack.as_ref().map(|r| r.as_str().to_owned());
            let want = (b.node_id.0 == 2).then(|| "rack-b".to_owned());
            assert_eq!(rack, want, "broker {}", b.node_id.0);
        }
    }
}

#[test]
fn created_topics_have_their_partitions_and_leaders_move() {
    let mock = MockCluster::start(3);
    let topic = unique_name("t");
    mock.create_topic(&topic, 6, 1);
    let mut conn = mock.connect(1).unwrap();
    let resp = metadata(&mut conn, Some(&[&topic]));
    assert_eq!(resp.topics.len(), 1);
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 0);
    let mut ids: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    ids.sort();
    assert_eq!(ids, (0..6).collect::<Vec<_>>());
    assert!(
        t.partitions
            .iter()
            .all(|p| (1..=3).contains(&p.leader_id.0))
    );

    let (before, epoch) = leader(&mock, &topic, 0);
    let next = before % 3 + 1;
    mock.set_leader(&topic, 0, next);
    let (after, new_epoch) = leader(&mock, &topic, 0);
    assert_eq!(after, next);
    assert!(new_epoch > epoch, "leader epoch {epoch} -> {new_epoch}");
    // -1 leaves a partition without a leader.
    mock.set_leader(&topic, 1, -1);
    assert_eq!(leader(&mock, &topic, 1).0, -1);

    // A second create of the same topic is refused, and the refusal reaches the test.
    let refused = mock.try_command(&serde_json::json!({
        "cmd": "topic_create", "topic": topic, "partitions": 1, "replication_factor": 1,
    }));
    assert!(refused.unwrap_err().contains("already exists"));
}

#[test]
fn topic_errors_show_in_metadata() {
    let mock = MockCluster::start(1);
    let topic = unique_name("t");
    mock.create_topic(&topic, 1, 1);
    let failed = code(ResponseError::TopicAuthorizationFailed);
    mock.set_topic_error(&topic, failed);
    let mut conn = mock.connect(1).unwrap();
    assert_eq!(
        metadata(&mut conn, Some(&[&topic])).topics[0].error_code,
        failed
    );
    mock.set_topic_error(&topic, 0);
    assert_eq!(metadata(&mut conn, Some(&[&topic])).topics[0].error_code, 0);
}

#[test]
fn api_versions_follow_set_apiversion() {
    let mock = MockCluster::start(1);
    let shipped_fetch = mock.implemented_versions(ApiKey::Fetch).unwrap();
    assert!(
        shipped_fetch.1 > 4,
        "the mock implements Fetch {shipped_fetch:?}"
    );

    mock.set_apiversion(ApiKey::Fetch, 0, 4);
    mock.remove_api(ApiKey::OffsetForLeaderEpoch);
    let conn = mock.connect(1).unwrap();
    assert_eq!(conn.versions().offered(ApiKey::Fetch), Some((0, 4)));
    assert_eq!(conn.versions().version(ApiKey::Fetch), Ok(4));
    assert_eq!(conn.versions().offered(ApiKey::OffsetForLeaderEpoch), None);
    // Untouched APIs keep their versions.
    assert_eq!(
        conn.versions().offered(ApiKey::ListOffsets),
        mock.implemented_versions(ApiKey::ListOffsets)
    );
    // Nothing is lowered from the start: every API runs at the versions the mock advertises,
    // those it mishandles included (kcon steps those down by itself, as a user's would).
    for api in [
        ApiKey::Metadata,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::LeaveGroup,
    ] {
        assert_eq!(
            conn.versions().offered(api),
            mock.implemented_versions(api),
            "{api:?}"
        );
    }
    assert_eq!(
        conn.versions().offered(ApiKey::JoinGroup).map(|r| r.1),
        Some(6)
    );
    assert_eq!(
        conn.versions().offered(ApiKey::SyncGroup).map(|r| r.1),
        Some(4)
    );
    assert_eq!(
        conn.versions().offered(ApiKey::LeaveGroup).map(|r| r.1),
        Some(4)
    );
}

#[test]
#[should_panic(expected = "the mock implements")]
fn set_apiversion_refuses_versions_the_mock_does_not_implement() {
    let mock = MockCluster::start(1);
    let (_, max) = mock.implemented_versions(ApiKey::Fetch).unwrap();
    mock.set_apiversion(ApiKey::Fetch, 0, max + 1);
}

/// A Heartbeat for a member of `group` that doesn't exist: without a pushed error the mock
/// answers with an error of its own (not a coordinator, or no such group), never a pushed one.
fn heartbeat(conn: &mut BlockingConnection, group: &str) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id(1)
        .with_member_id(str_bytes("no-such-member"));
    conn.send(&req).expect("Heartbeat").1.error_code
}

// Heartbeat carries pushed errors in a well-formed answer. FindCoordinator's, JoinGroup's and
// SyncGroup's carry nulls kcon-codec reads as empty (see
// `group_api_error_answers_have_nulls_read_as_empty`).
#[test]
fn pushed_errors_answer_the_next_requests_in_order() {
    let mock = MockCluster::start(2);
    let mut one = mock.connect(1).unwrap();
    let mut two = mock.connect(2).unwrap();
    let group = unique_name("g");
    let first = code(ResponseError::RebalanceInProgress);
    let second = code(ResponseError::IllegalGeneration);
    mock.push_request_errors(ApiKey::Heartbeat, &[first, second]);
    assert_eq!(heartbeat(&mut one, &group), first);
    // Cluster-wide errors apply to whichever broker gets the request.
    assert_eq!(heartbeat(&mut two, &group), second);
    let own = heartbeat(&mut one, &group);
    assert!(
        own != first && own != second,
        "the stack is used up, got {own}"
    );

    // Cleared errors are never used.
    mock.push_request_errors(ApiKey::Heartbeat, &[first]);
    mock.clear_request_errors(ApiKey::Heartbeat);
    assert_eq!(heartbeat(&mut one, &group), own);

    // The transport pseudo-error makes the broker drop the connection instead of answering.
    mock.push_request_errors(ApiKey::FindCoordinator, &[TRANSPORT_ERROR]);
    let req = FindCoordinatorRequest::default().with_key(str_bytes(&group));
    let err = one.send(&req).unwrap_err();
    assert!(err.contains("closed"), "{err}");
}

#[test]
fn broker_error_rtts_delay_and_fail_one_broker() {
    let mock = MockCluster::start(2);
    let group = unique_name("g");
    let pushed = code(ResponseError::RebalanceInProgress);
    let rtt = Duration::from_millis(300);
    mock.push_request_error_rtts(2, ApiKey::Heartbeat, &[(pushed, rtt), (0, rtt)]);
    assert_eq!(mock.error_stack_len(2, ApiKey::Heartbeat), 2);
    assert_eq!(mock.error_stack_len(1, ApiKey::Heartbeat), 0);

    // Broker 1 is unaffected.
    let mut one = mock.connect(1).unwrap();
    assert_ne!(heartbeat(&mut one, &group), pushed);

    let mut two = mock.connect(2).unwrap();
    let started = Instant::now();
    assert_eq!(heartbeat(&mut two, &group), pushed);
    let took = started.elapsed();
    assert!(took >= rtt, "answered after {took:?}");
    assert_eq!(mock.error_stack_len(2, ApiKey::Heartbeat), 1);
    // An entry with error 0 only delays: the answer is the mock's own.
    let started = Instant::now();
    assert_ne!(heartbeat(&mut two, &group), pushed);
    let took = started.elapsed();
    assert!(took >= rtt, "answered after {took:?}");
    assert_eq!(mock.error_stack_len(2, ApiKey::Heartbeat), 0);
}

#[test]
fn a_down_broker_refuses_and_comes_back_up() {
    let mock = MockCluster::start(3);
    let mut open = mock.connect(2).unwrap();
    mock.set_down(2);

    // The open connection is closed, and new ones get no answer.
    assert!(metadata_result(&mut open).is_err());
    assert!(mock.connect(2).is_err());
    // The others still answer, and no longer list it.
    let mut one = mock.connect(1).unwrap();
    let ids: Vec<i32> = brokers_of(&metadata(&mut one, Some(&[])))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [1, 3]);

    mock.set_up(2);
    let mut again = mock.connect(2).unwrap();
    assert_eq!(brokers_of(&metadata(&mut again, Some(&[]))).len(), 3);
}

fn metadata_result(conn: &mut BlockingConnection) -> Result<MetadataResponse, String> {
    conn.send(&MetadataRequest::default()).map(|r| r.1)
}

#[test]
fn rtt_delays_every_answer_of_that_broker() {
    let mock = MockCluster::start(2);
    let mut conn = mock.connect(2).unwrap();
    let rtt = Duration::from_millis(400);
    mock.set_rtt(2, rtt);
    let started = Instant::now();
    metadata(&mut conn, Some(&[]));
    assert!(
        started.elapsed() >= rtt,
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn request_tracking_records_the_requests_sent() {
    let mock = MockCluster::start(3);
    let group = unique_name("g");
    mock.start_request_tracking();
    let mut three = mock.connect(3).unwrap();
    metadata(&mut three, Some(&[]));
    find_coordinator(&mut three, &group, 0);
    let mut one = mock.connect(1).unwrap();
    metadata(&mut one, Some(&[]));

    let requests = mock.requests();
    let keys_to = |broker: i32| -> Vec<i16> {
        let to_broker = requests.iter().filter(|r| r.broker_id == broker);
        to_broker.map(|r| r.api_key).collect()
    };
    // The blocking client asks ApiVersions at v3 first and, refused, again at v0.
    let api_versions = ApiKey::ApiVersions as i16;
    let (md, fc) = (ApiKey::Metadata as i16, ApiKey::FindCoordinator as i16);
    assert_eq!(
        keys_to(3),
        [api_versions, api_versions, md, fc],
        "{requests:?}"
    );
    assert_eq!(keys_to(1), [api_versions, api_versions, md], "{requests:?}");
    assert_eq!(requests.len(), 7, "{requests:?}");
    assert_eq!(
        requests.last().map(|r| (r.broker_id, r.api())),
        Some((1, Some(ApiKey::Metadata)))
    );
    assert!(
        requests
            .windows(2)
            .all(|w| w[0].timestamp_us <= w[1].timestamp_us),
        "{requests:?}"
    );

    mock.clear_requests();
    assert!(mock.requests().is_empty());
    mock.stop_request_tracking();
    metadata(&mut one, Some(&[]));
    assert!(mock.requests().is_empty());
}

#[test]
fn coordinator_set_moves_find_coordinator_answers() {
    let mock = MockCluster::start(3);
    let group = unique_name("g");
    let txn = unique_name("tx");
    let mut conn = mock.connect(1).unwrap();
    for id in [3, 2] {
        mock.set_coordinator(CoordinatorType::Group, &group, id);
        let resp = find_coordinator(&mut conn, &group, 0);
        assert_eq!((resp.error_code, resp.node_id.0), (0, id));
        let addr: SocketAddr = format!("{}:{}", resp.host.as_str(), resp.port)
            .parse()
            .unwrap();
        assert_eq!(addr, mock.broker_addr(id));
    }
    mock.set_coordinator(CoordinatorType::Transaction, &txn, 2);
    let resp = find_coordinator(&mut conn, &txn, 1);
    assert_eq!((resp.error_code, resp.node_id.0), (0, 2));
}

/// `topic` for a Fetch request, by name and by the id `conn`'s broker gives it: the encoder
/// writes whichever the version has (the name up to v12, the id from v13).
fn fetch_topic(conn: &mut BlockingConnection, topic: &str) -> FetchTopic {
    let meta = metadata(conn, Some(&[topic]));
    let id = meta.topics[0].topic_id;
    assert!(!id.is_nil(), "no topic id for {topic}: {meta:?}");
    FetchTopic::default()
        .with_topic(TopicName(str_bytes(topic)))
        .with_topic_id(id)
}

/// A Fetch of partition 0 of `topic` from offset 0, over `conn`.
fn fetch_request(conn: &mut BlockingConnection, topic: &str) -> FetchRequest {
    let topic = fetch_topic(conn, topic).with_partitions(vec![
        FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20),
    ]);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic])
}

#[test]
fn the_leader_names_the_follower_which_reports_its_watermarks() {
    let mock = MockCluster::start(3);
    let topic = unique_name("t");
    mock.create_topic(&topic, 1, 3);
    mock.set_leader(&topic, 0, 1);
    mock.set_follower(&topic, 0, 2);
    mock.set_follower_watermarks(&topic, 0, 3, 42);

    // Fetch at the negotiated version, the highest the mock advertises (v13+ names topics by
    // id; KIP-392's preferred read replica is there from v11).
    let mut leader = mock.connect(1).unwrap();
    let (_, advertised) = mock.implemented_versions(ApiKey::Fetch).unwrap();
    let req = fetch_request(&mut leader, &topic);
    let (version, resp) = leader.send(&req).unwrap();
    let (_, ours) = kcon_codec::versions::supported(ApiKey::Fetch).unwrap();
    assert_eq!(version, advertised.min(ours));
    assert!(version >= 13, "Fetch v{version} names no topic ids");
    assert_eq!(resp.responses[0].topic_id, req.topics[0].topic_id);
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.preferred_read_replica.0), (0, 2));

    let mut follower = mock.connect(2).unwrap();
    let (_, resp) = follower.send(&req).unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!((p.log_start_offset, p.high_watermark), (3, 42));

    // Broker 3 is neither leader nor follower.
    let mut other = mock.connect(3).unwrap();
    let (_, resp) = other.send(&req).unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        code(ResponseError::NotLeaderOrFollower)
    );
}

/// A classic JoinGroup for a new member of `group`.
fn join_request(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(str_bytes("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0])),
        ])
}

/// A classic JoinGroup for a new member of `group`, answered once the group's rebalance ends.
fn join(conn: &mut BlockingConnection, group: &str) -> (Duration, JoinGroupResponse) {
    let started = Instant::now();
    let (_, resp) = conn.send(&join_request(group)).expect("JoinGroup");
    (started.elapsed(), resp)
}

#[test]
fn initial_rebalance_delay_holds_the_first_join() {
    let mock = MockCluster::start(1);
    // Spoken by hand, on connections that send the highest version advertised and never
    // step down: at the versions the mock serves.
    mock.lower_mishandled_versions();
    let mut conn = mock.connect(1).unwrap();

    // The mock's default delay is 3 s; with 0 the first join completes at once.
    mock.set_group_initial_rebalance_delay(Duration::ZERO);
    let (quick, resp) = join(&mut conn, &unique_name("g"));
    assert_eq!(resp.error_code, 0);
    assert!(quick < Duration::from_secs(2), "joined after {quick:?}");

    let delay = Duration::from_millis(1500);
    mock.set_group_initial_rebalance_delay(delay);
    let (slow, resp) = join(&mut conn, &unique_name("g"));
    assert_eq!(resp.error_code, 0);
    assert!(slow >= delay, "joined after {slow:?}");
}

#[test]
fn a_classic_group_round_trip_works_at_the_lowered_versions() {
    let mock = MockCluster::start(1);
    // Spoken by hand, on connections that send the highest version advertised and never
    // step down: at the versions the mock serves.
    mock.lower_mishandled_versions();
    mock.set_group_initial_rebalance_delay(Duration::ZERO);
    let mut conn = mock.connect(1).unwrap();
    let group = unique_name("g");
    let (_, joined) = join(&mut conn, &group);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id, "the only member leads");

    let assignment = bytes::Bytes::from_static(b"assignment bytes");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_protocol_type(Some(str_bytes("consumer")))
        .with_protocol_name(joined.protocol_name.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(assignment.clone()),
        ]);
    let (version, synced) = conn.send(&sync).expect("SyncGroup");
    assert_eq!(version, 3);
    assert_eq!((synced.error_code, synced.assignment), (0, assignment));

    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    assert_eq!(conn.send(&hb).expect("Heartbeat").1.error_code, 0);

    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_member_id(joined.member_id.clone());
    let (version, left) = conn.send(&leave).expect("LeaveGroup");
    assert_eq!((version, left.error_code), (2, 0));
}

fn join_result(conn: &mut BlockingConnection, group: &str) -> Result<i16, String> {
    conn.send(&join_request(group)).map(|(_, r)| r.error_code)
}

#[test]
fn consumer_group_heartbeat_follows_the_configured_interval_and_session_timeout() {
    let mock = MockCluster::start(1);
    let topic = unique_name("t");
    let group = unique_name("g");
    mock.create_topic(&topic, 2, 1);
    mock.set_coordinator(CoordinatorType::Group, &group, 1);
    mock.set_group_consumer_heartbeat_interval(Duration::from_millis(1234));
    mock.set_group_consumer_session_timeout(Duration::from_millis(200));

    let mut conn = mock.connect(1).unwrap();
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_member_id(str_bytes("AAAAAAAAAAAAAAAAAAAAAA"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(str_bytes(&topic))]))
        // The mock asserts (and the whole process aborts) unless names and regex are both
        // set or both null; librdkafka sends an empty regex with the names.
        .with_subscribed_topic_regex(Some(str_bytes("")))
        .with_topic_partitions(Some(Vec::new()));
    let (_, joined) = conn.send(&join).expect("ConsumerGroupHeartbeat");
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(joined.heartbeat_interval_ms, 1234);
    assert!(joined.member_epoch > 0);

    // The mock checks sessions once a second: a member silent for its 200 ms session is gone
    // by the check after that, 1.2 s after its heartbeat at the latest. (A heartbeat would
    // keep it: the test can only wait, and waits long enough for a loaded machine.)
    std::thread::sleep(Duration::from_millis(2500));
    let beat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_member_id(str_bytes("AAAAAAAAAAAAAAAAAAAAAA"))
        .with_member_epoch(joined.member_epoch)
        .with_rebalance_timeout_ms(-1);
    let (_, resp) = conn.send(&beat).expect("ConsumerGroupHeartbeat");
    assert_eq!(
        resp.error_code,
        code(ResponseError::UnknownMemberId),
        "{resp:?}"
    );
}

/// Why Metadata is not among [`kcon_tests::mock::MISHANDLED_VERSIONS`] although the mock's
/// flexible answers are not what Kafka sends: from v9 each carries one byte after the message
/// (the handler writes the body's empty tagged-field section, then the mock's generic send path
/// writes another). kcon-codec reads the message and ignores what follows, as the Java client
/// and librdkafka do. Older versions are exact. If librdkafka drops the byte, this test says so.
#[test]
fn flexible_metadata_answers_carry_one_byte_after_the_message_and_decode() {
    use kcon_codec::message::{decode_response, encode_response};

    let mock = MockCluster::start(1);
    let topic = unique_name("t");
    mock.create_topic(&topic, 2, 1);
    let mut conn = mock.connect(1).unwrap();
    let (_, advertised) = mock.implemented_versions(ApiKey::Metadata).unwrap();
    let (ours_min, ours_max) = kcon_codec::versions::supported(ApiKey::Metadata).unwrap();
    assert!(
        advertised >= 9,
        "the mock advertises Metadata v{advertised}"
    );
    // The topic exists, so the default auto-creation (the only choice before v4) changes
    // nothing.
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(&topic)))),
    ]));
    for version in ours_min..=advertised.min(ours_max) {
        let raw = conn.send_raw_at(&req, version).unwrap();
        let (header, resp) = decode_response::<MetadataRequest>(raw.clone(), version)
            .unwrap_or_else(|e| panic!("Metadata v{version}: {e}"));
        assert_eq!(resp.topics.len(), 1, "v{version}");
        assert_eq!(resp.topics[0].partitions.len(), 2, "v{version}");
        // What was read, encoded again: the message alone. The mock's answer is that, plus
        // one empty tagged-field section from v9 on.
        let mut again = BytesMut::new();
        encode_response::<MetadataRequest>(&mut again, header.correlation_id, version, &resp)
            .unwrap();
        let message = again.split_off(4);
        let after: &[u8] = if version >= 9 { &[0] } else { &[] };
        assert_eq!(
            raw[..],
            [&message[..], after].concat()[..],
            "Metadata v{version}: the answer is the message and {after:?}"
        );
    }
    // The connection reads on past each answer: the next one decodes at the negotiated
    // version, which is the mock's own.
    let (version, resp) = conn.send(&req).unwrap();
    assert_eq!(version, advertised.min(ours_max));
    assert!(!resp.topics[0].topic_id.is_nil(), "{resp:?}");
}

/// What [`kcon_tests::mock::MISHANDLED_VERSIONS`] lists: each version above the one it names
/// fails against the mock (kcon's pool steps each down by itself; the consumer tests on the
/// mock meet them all). If librdkafka fixes one, this test says so.
#[test]
fn the_mock_mishandles_the_versions_kcon_steps_down() {
    let listed: Vec<(ApiKey, i16)> = kcon_tests::mock::MISHANDLED_VERSIONS
        .iter()
        .map(|&(api, max, _)| (api, max))
        .collect();
    assert_eq!(
        listed,
        [
            (ApiKey::JoinGroup, 5),
            (ApiKey::SyncGroup, 3),
            (ApiKey::LeaveGroup, 2)
        ]
    );
    let mock = MockCluster::start(1);
    mock.set_group_initial_rebalance_delay(Duration::ZERO);
    let group = unique_name("g");

    // JoinGroup v6: the protocols count is misread and the connection dropped.
    let mut conn = mock.connect(1).unwrap();
    assert_eq!(conn.versions().version(ApiKey::JoinGroup), Ok(6));
    let err = join_result(&mut conn, &unique_name("g")).unwrap_err();
    assert!(err.contains("closed"), "{err}");
    // The rest of this test needs a member (and the other versions as advertised).
    mock.set_apiversion(ApiKey::JoinGroup, 0, 5);

    // SyncGroup v4: the assignments count is misread and the connection dropped.
    let mut conn = mock.connect(1).unwrap();
    let (_, joined) = join(&mut conn, &group);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    let err = conn.send_at(&sync, 4).unwrap_err();
    assert!(err.contains("closed"), "{err}");

    // LeaveGroup v3: answered without the members array the version requires.
    let mut conn = mock.connect(1).unwrap();
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(joined.member_id.clone()),
        ]);
    let err = conn.send_at(&leave, 3).unwrap_err();
    assert!(err.contains("malformed LeaveGroup v3 response"), "{err}");
    // And v4, the highest it advertises, likewise.
    let mut conn = mock.connect(1).unwrap();
    let err = conn.send_at(&leave, 4).unwrap_err();
    assert!(err.contains("malformed LeaveGroup v4 response"), "{err}");
}

/// A SyncGroup for a member of `group` that doesn't exist, without assignments.
fn sync_request(group: &str) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id(1)
        .with_member_id(str_bytes("no-such-member"))
}

/// Not fixable by versions: the mock's error answers to FindCoordinator, JoinGroup and
/// SyncGroup put null in non-nullable strings and bytes (host; leader and member id;
/// assignment), which Java's generated decoders would reject. kcon-codec reads exactly those
/// nulls as empty when the answer's error code is non-zero, as librdkafka does; this pins
/// which fields the mock nulls (at the harness's versions: FindCoordinator v3, compact; JoinGroup
/// v5 and SyncGroup v3, fixed-width).
#[test]
fn group_api_error_answers_have_nulls_read_as_empty() {
    let mock = MockCluster::start(1);
    // Spoken by hand, on connections that send the highest version advertised and never
    // step down: at the versions the mock serves.
    mock.lower_mishandled_versions();
    let group = unique_name("g");
    let pushed = code(ResponseError::NotCoordinator);
    let mut conn = mock.connect(1).unwrap();

    mock.push_request_errors(ApiKey::FindCoordinator, &[pushed]);
    let req = FindCoordinatorRequest::default().with_key(str_bytes(&group));
    let (version, resp) = conn.send(&req).expect("FindCoordinator");
    assert_eq!(version, 3);
    assert_eq!(
        (
            resp.error_code,
            resp.node_id.0,
            resp.host.as_str(),
            resp.port
        ),
        (pushed, -1, "", -1)
    );
    assert!(resp.error_message.is_some_and(|m| !m.is_empty()));

    mock.push_request_errors(ApiKey::JoinGroup, &[pushed]);
    let (version, resp) = conn.send(&join_request(&group)).expect("JoinGroup");
    assert_eq!(version, 5);
    assert_eq!((resp.error_code, resp.generation_id), (pushed, -1));
    assert_eq!(resp.protocol_name, None);
    assert_eq!((resp.leader.as_str(), resp.member_id.as_str()), ("", ""));
    assert!(resp.members.is_empty());

    mock.push_request_errors(ApiKey::SyncGroup, &[pushed]);
    let (version, resp) = conn.send(&sync_request(&group)).expect("SyncGroup");
    assert_eq!(version, 3);
    assert_eq!((resp.error_code, resp.assignment.len()), (pushed, 0));

    // The same connection goes on answering.
    let resp = find_coordinator(&mut conn, &group, 0);
    assert_eq!((resp.error_code, resp.node_id.0), (0, 1));
}

/// A test that dies never runs drop; its pipes close instead, and the script must then end on
/// its own so the cluster doesn't outlive the test.
#[test]
fn the_script_exits_when_its_stdin_closes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(&installed().python)
        .arg(repo_root().join("scripts/mock_cluster.py"))
        .arg("1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("\"bootstraps\""), "{ready}");
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the script still ran 5 s after its stdin closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// kcon-pool over the mock's error answers to the group APIs: each pushed error comes back in
/// the typed answer (the nulls the mock writes beside it read as empty), and the connection
/// stays open and usable, both for a held [`kcon_pool::Connection`] and through the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reads_group_api_errors_and_keeps_the_connection() {
    use kcon_pool::{BrokerTarget, Pool};
    use kcon_tests::pool::config;

    let mock = MockCluster::start(3);
    // Spoken by hand, on connections that send the highest version advertised and never
    // step down: at the versions the mock serves.
    mock.lower_mishandled_versions();
    let group = unique_name("g");
    let not_coordinator = code(ResponseError::NotCoordinator);
    let not_available = code(ResponseError::CoordinatorNotAvailable);
    let unknown_member = code(ResponseError::UnknownMemberId);
    let rebalancing = code(ResponseError::RebalanceInProgress);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    let conn = pool.connection(BrokerTarget::Broker(1)).await.unwrap();
    let find = FindCoordinatorRequest::default().with_key(str_bytes(&group));

    mock.push_request_errors(ApiKey::FindCoordinator, &[not_coordinator, not_available]);
    for pushed in [not_coordinator, not_available] {
        let resp = conn.send(&find).await.unwrap();
        assert_eq!(
            (
                resp.error_code,
                resp.node_id.0,
                resp.host.as_str(),
                resp.port
            ),
            (pushed, -1, "", -1)
        );
    }
    mock.push_request_errors(ApiKey::JoinGroup, &[unknown_member, rebalancing]);
    for pushed in [unknown_member, rebalancing] {
        let resp = conn.send(&join_request(&group)).await.unwrap();
        assert_eq!((resp.error_code, resp.generation_id), (pushed, -1));
        assert_eq!((resp.leader.as_str(), resp.member_id.as_str()), ("", ""));
    }
    mock.push_request_errors(ApiKey::SyncGroup, &[unknown_member, rebalancing]);
    for pushed in [unknown_member, rebalancing] {
        let resp = conn.send(&sync_request(&group)).await.unwrap();
        assert_eq!((resp.error_code, resp.assignment.len()), (pushed, 0));
    }
    assert!(!conn.is_closed(), "closed: {:?}", conn.close_reason());
    let resp = conn.send(&find).await.unwrap();
    assert_eq!(resp.error_code, 0);
    let coordinator = resp.node_id.0;
    assert_eq!(
        format!("{}:{}", resp.host.as_str(), resp.port),
        mock.broker_addr(coordinator).to_string()
    );

    // Through the pool: an error answer leaves the pooled connection in place (the pool hands
    // out the same one again), and the next request on it succeeds.
    let target = BrokerTarget::Broker(2);
    let before = pool.connection(target).await.unwrap();
    mock.push_request_errors(ApiKey::SyncGroup, &[rebalancing]);
    let resp = pool.send(target, &sync_request(&group)).await.unwrap();
    assert_eq!(resp.error_code, rebalancing);
    let after = pool.connection(target).await.unwrap();
    assert!(!before.is_closed(), "closed: {:?}", before.close_reason());
    assert_eq!(after.socket_addr(), before.socket_addr());
    let resp = pool.send(target, &find).await.unwrap();
    assert_eq!((resp.error_code, resp.node_id.0), (0, coordinator));
}

/// Two members of a new `group` join at once; returns each one's connection and JoinGroup
/// answer, the leader first.
fn join_two(mock: &MockCluster, group: &str) -> [(BlockingConnection, JoinGroupResponse); 2] {
    // Both JoinGroups are held until the rebalance ends, so each waits on its own thread.
    let joins: Vec<_> = (0..2)
        .map(|_| {
            let mut conn = mock.connect(1).unwrap();
            let group = group.to_owned();
            std::thread::spawn(move || {
                let (_, resp) = join(&mut conn, &group);
                (conn, resp)
            })
        })
        .collect();
    let mut joined: Vec<_> = joins.into_iter().map(|j| j.join().unwrap()).collect();
    for (_, resp) in &joined {
        assert_eq!(resp.error_code, 0, "{resp:?}");
    }
    joined.sort_by_key(|(_, resp)| resp.leader != resp.member_id);
    let [leader, follower]: [_; 2] = joined.try_into().unwrap();
    assert_eq!(leader.1.members.len(), 2, "the leader gets the member list");
    [leader, follower]
}

/// SyncGroup for `joined`'s member, with `assignments` (the leader's) or none.
fn sync_of(
    joined: &JoinGroupResponse,
    group: &str,
    assignments: Vec<SyncGroupRequestAssignment>,
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(assignments)
}

/// A limit of the mock's classic groups that a client's followers must live with: the mock
/// completes a sync as soon as the leader's SyncGroup has assigned every member (it counts
/// assignments, not SyncGroup requests: `rd_kafka_mock_cgrp_classic_sync_check`), and answers a
/// follower's SyncGroup that comes after that, with the group already stable, with
/// INVALID_REQUEST (`check_state`). A follower that syncs first is held and answered with its
/// assignment. librdkafka's followers sync at once while the leader computes, so they nearly
/// always win; kafka-python's often lose (see `kcon_tests::group_peers`).
#[test]
fn the_mock_refuses_a_follower_that_syncs_after_the_leader() {
    let mock = MockCluster::start(1);
    // Spoken by hand, on connections that send the highest version advertised and never
    // step down: at the versions the mock serves.
    mock.lower_mishandled_versions();
    mock.set_group_initial_rebalance_delay(Duration::from_millis(500));
    let mine = |resp: &JoinGroupResponse| bytes::Bytes::from(resp.member_id.as_str().to_owned());
    let assign_all = |leader: &JoinGroupResponse| {
        leader
            .members
            .iter()
            .map(|m| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(bytes::Bytes::from(m.member_id.as_str().to_owned()))
            })
            .collect::<Vec<_>>()
    };

    // The follower first: held until the leader's SyncGroup, then both get their assignment.
    // The leader syncs once the mock has the follower's SyncGroup (tracked when it arrives).
    let group = unique_name("g");
    let [(mut leader, led), (mut follower, followed)] = join_two(&mock, &group);
    let sync = sync_of(&followed, &group, Vec::new());
    mock.start_request_tracking();
    let waiting = std::thread::spawn(move || follower.send(&sync).expect("SyncGroup").1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mock
        .requests()
        .iter()
        .any(|r| r.api() == Some(ApiKey::SyncGroup))
    {
        assert!(
            Instant::now() < deadline,
            "the follower's SyncGroup did not arrive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, synced) = leader
        .send(&sync_of(&led, &group, assign_all(&led)))
        .expect("SyncGroup");
    assert_eq!((synced.error_code, synced.assignment), (0, mine(&led)));
    let synced = waiting.join().unwrap();
    assert_eq!((synced.error_code, synced.assignment), (0, mine(&followed)));

    // The leader first: the group is stable at once, and the follower is refused.
    let group = unique_name("g");
    let [(mut leader, led), (mut follower, followed)] = join_two(&mock, &group);
    let (_, synced) = leader
        .send(&sync_of(&led, &group, assign_all(&led)))
        .expect("SyncGroup");
    assert_eq!((synced.error_code, synced.assignment), (0, mine(&led)));
    let (_, refused) = follower
        .send(&sync_of(&followed, &group, Vec::new()))
        .expect("SyncGroup");
    assert_eq!(
        (refused.error_code, refused.assignment.len()),
        (code(ResponseError::InvalidRequest), 0)
    );
}

/// A Fetch from offset 0 of `topic`'s partitions `0..partitions`, over kcon-pool: `(top-level
/// error, [(error, high watermark, has records)])` per partition in order.
async fn pool_fetch(
    pool: &kcon_pool::Pool,
    broker: i32,
    topic: &str,
    partitions: i32,
) -> (i16, Vec<(i16, i64, bool)>) {
    let wanted = (0..partitions)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    // By name and by id: the pool's Fetch version names topics by id (v13+).
    let meta = pool
        .send(
            kcon_pool::BrokerTarget::Broker(broker),
            &kcon_tests::pool::metadata_request(&[topic]),
        )
        .await
        .expect("Metadata");
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_topic_id(meta.topics[0].topic_id)
                .with_partitions(wanted),
        ]);
    let resp = pool
        .send(kcon_pool::BrokerTarget::Broker(broker), &req)
        .await
        .expect("Fetch");
    assert_eq!(resp.responses.len(), 1);
    let partitions = resp.responses[0]
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p.partition_index, i as i32, "answered in request order");
            let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
            (p.error_code, p.high_watermark, has_records)
        })
        .collect();
    (resp.error_code, partitions)
}

/// Errors pushed for one partition's Fetch are that partition's error code in the next Fetch
/// answers that reach its leader, one per answer, while the other partitions get their records
/// and the top level stays clear. A Fetch to another broker doesn't use them, nor does one
/// that a cluster-wide error answers; a partition past the topic's end is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_request_errors_fail_only_that_partition() {
    use kcon_tests::offsets::produce;

    let mock = MockCluster::start(2);
    let topic = unique_name("t");
    mock.create_topic(&topic, 3, 2);
    for p in 0..3 {
        mock.set_leader(&topic, p, 1);
    }
    let pool = kcon_pool::Pool::new(kcon_tests::pool::config(mock.bootstrap())).unwrap();
    for p in 0..3 {
        produce(&pool, &topic, p, 5, 1_000).await;
    }
    let not_leader = code(ResponseError::NotLeaderOrFollower);
    let storage = code(ResponseError::KafkaStorageError);
    let unknown = code(ResponseError::UnknownTopicOrPartition);
    let ok = (0, 5, true);
    mock.push_partition_request_errors(&topic, 1, ApiKey::Fetch, &[not_leader, storage, unknown]);

    // Broker 2 leads nothing: its own NOT_LEADER_OR_FOLLOWER everywhere, the stack untouched.
    let (top, parts) = pool_fetch(&pool, 2, &topic, 3).await;
    assert_eq!(top, 0);
    assert!(parts.iter().all(|p| p.0 == not_leader), "{parts:?}");

    // The leader: one pushed error per Fetch, for partition 1 only.
    let fetch = || pool_fetch(&pool, 1, &topic, 3);
    assert_eq!(fetch().await, (0, vec![ok, (not_leader, 5, false), ok]));
    assert_eq!(fetch().await, (0, vec![ok, (storage, 5, false), ok]));

    // A cluster-wide error answers the whole Fetch first and leaves the partition's error.
    mock.push_request_errors(ApiKey::Fetch, &[storage]);
    let (top, parts) = fetch().await;
    assert_eq!(top, storage);
    assert!(parts.iter().all(|p| p.0 == storage), "{parts:?}");
    assert_eq!(fetch().await, (0, vec![ok, (unknown, 5, false), ok]));

    // Used up.
    assert_eq!(fetch().await, (0, vec![ok, ok, ok]));

    let refused = mock.try_command(&serde_json::json!({
        "cmd": "partition_push_request_errors", "topic": topic, "partition": 3,
        "api_key": ApiKey::Fetch as i16, "errors": [not_leader],
    }));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("Unknown topic or partition")),
        "{refused:?}"
    );
}
