//! The machine driven by hand on a made-up clock: no runtime, no pool, no broker.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use kcon_codec::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};

use super::sim::{WALL_MS, config, metadata_of};
use super::*;

/// Broker 1 leads the one partition of topic `t`.
fn metadata() -> Arc<Metadata> {
    metadata_of(1)
}

fn machine(
    config: Arc<ProducerConfig>,
    metadata: Arc<Metadata>,
    now: Instant,
) -> (SenderMachine<u32>, Arc<Counters>) {
    let stats = Arc::new(Counters::default());
    let m = SenderMachine::new(config, metadata, stats.clone(), 7, now, WALL_MS);
    (m, stats)
}

fn incoming(waiter: u32, now: Instant) -> Incoming<u32> {
    let record = ProducerRecord::new("t", "v");
    Incoming {
        size: record.size_upper_bound(),
        record,
        packed: None,
        waiter,
        received: now,
    }
}

/// [`incoming`] for `partition`, chosen by the caller.
fn incoming_to(partition: i32, waiter: u32, now: Instant) -> Incoming<u32> {
    let mut i = incoming(waiter, now);
    i.record = i.record.with_partition(partition);
    i
}

fn produce_answer(error_code: i16, base_offset: i64) -> Response {
    Response::Produce(Ok(ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_error_code(error_code)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(-1),
            ]),
    ])))
}

/// The partitions of `request`'s first topic, in the request's order.
fn partitions_of(request: &ProduceRequest) -> Vec<i32> {
    request.topic_data[0]
        .partition_data
        .iter()
        .map(|p| p.index)
        .collect()
}

/// The one Produce request out, to broker 1, carrying partition `t-0`'s batch.
fn produce_request(m: &mut SenderMachine<u32>, now: Instant) -> (RequestId, Bytes) {
    let out = m.poll_request(now).expect("a Produce request");
    assert_eq!(out.target, Target::Broker(1));
    let Request::Produce(request, None) = out.request else {
        panic!(
            "not a Produce request of a producer without transactions: {:?}",
            out.request
        );
    };
    assert!(m.poll_request(now).is_none());
    let [topic] = &request.topic_data[..] else {
        panic!("one topic");
    };
    assert_eq!(topic.name.0.as_str(), "t");
    let [partition] = &topic.partition_data[..] else {
        panic!("one partition");
    };
    assert_eq!(partition.index, 0);
    (out.id, partition.records.clone().expect("a batch"))
}

/// With a timer slack, a batch counts as lingered that much before `linger.ms` is over, and
/// at once when its linger is no longer than the slack; without one it waits the whole linger
/// (the next test).
#[test]
fn a_timer_slack_ends_a_linger_early_by_at_most_itself() {
    let t0 = Instant::now();
    let slack = Duration::from_millis(1);
    let config5 = config(&[("linger.ms", "5"), ("enable.idempotence", "false")]);
    let (m, _) = machine(config5, metadata(), t0);
    let mut m = m.with_timer_slack(slack);
    m.record(t0, incoming(7, t0));
    assert!(m.poll_request(t0).is_none());
    let lingered = t0 + Duration::from_millis(4);
    assert_eq!(m.poll_timeout(), Some(lingered));
    assert!(m.lingering());
    m.handle_timeout(lingered - Duration::from_micros(1));
    assert!(m.poll_request(t0).is_none(), "more than the slack is left");
    m.handle_timeout(lingered);
    produce_request(&mut m, lingered);

    let config1 = config(&[("linger.ms", "1"), ("enable.idempotence", "false")]);
    let (m, _) = machine(config1, metadata(), t0);
    let mut m = m.with_timer_slack(slack);
    m.record(t0, incoming(8, t0));
    produce_request(&mut m, t0);
}

/// A head that is ready takes its leader's other heads with it, lingered or not, as the Java
/// client's drain takes every partition of a ready node; a leader with no ready head sends
/// nothing, and a head not ready never makes a request of its own.
#[test]
fn a_lingered_batch_takes_the_other_heads_of_its_leader_with_it() {
    let t0 = Instant::now();
    let config = config(&[("linger.ms", "5"), ("enable.idempotence", "false")]);
    let (mut m, _) = machine(config, metadata_of(3), t0);
    m.record(t0, incoming_to(0, 1, t0));
    let t1 = t0 + Duration::from_millis(2);
    m.record(t1, incoming_to(1, 2, t1));
    // Neither has lingered: nothing goes, and the first linger's end is the next wake.
    assert!(m.poll_request(t1).is_none());
    let lingered = t0 + Duration::from_millis(5);
    assert_eq!(m.poll_timeout(), Some(lingered));
    m.handle_timeout(lingered);
    let out = m.poll_request(lingered).expect("a Produce request");
    assert!(m.poll_request(lingered).is_none(), "one request");
    let Request::Produce(request, None) = out.request else {
        panic!("not a Produce request: {:?}", out.request);
    };
    assert_eq!(
        partitions_of(&request),
        [0, 1],
        "partition 1 went 3 ms before its linger's end"
    );
    // Partition 2's batch, opened now, lingers its whole linger: the heads in flight are not
    // ready heads of its leader.
    m.record(lingered, incoming_to(2, 3, lingered));
    assert!(m.poll_request(lingered).is_none());
    assert_eq!(m.poll_timeout(), Some(lingered + Duration::from_millis(5)));
}

#[test]
fn a_batch_lingers_then_is_retried_after_the_backoff_then_delivered() {
    let t0 = Instant::now();
    let config = config(&[
        ("linger.ms", "5"),
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "1000"),
        ("enable.idempotence", "false"),
    ]);
    let (mut m, stats) = machine(config, metadata(), t0);
    m.record(t0, incoming(7, t0));
    // Alone and not full: it lingers.
    assert!(m.poll_request(t0).is_none());
    assert!(m.poll_event().is_none());
    let linger_end = t0 + Duration::from_millis(5);
    assert_eq!(m.poll_timeout(), Some(linger_end));
    m.handle_timeout(linger_end - Duration::from_millis(1));
    assert!(m.poll_request(t0).is_none());

    m.handle_timeout(linger_end);
    let (first, bytes) = produce_request(&mut m, linger_end);
    // NOT_ENOUGH_REPLICAS: retriable, no metadata refresh.
    let t1 = linger_end + Duration::from_millis(1);
    m.handle_response(t1, first, Ok(produce_answer(19, -1)));
    assert!(m.poll_event().is_none());
    assert!(m.poll_request(t1).is_none());
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);
    // The backoff: retry.backoff.ms ± 20 %.
    let retry_at = m.poll_timeout().expect("the backoff");
    assert!(retry_at >= t1 + Duration::from_millis(80), "{retry_at:?}");
    assert!(retry_at <= t1 + Duration::from_millis(120), "{retry_at:?}");
    m.handle_timeout(retry_at - Duration::from_millis(1));
    assert!(m.poll_request(t1).is_none());

    m.handle_timeout(retry_at);
    let (second, again) = produce_request(&mut m, retry_at);
    assert_ne!(first, second);
    // A retry sends the same bytes.
    assert_eq!(again, bytes);
    // An answer to the request already answered changes nothing.
    m.handle_response(retry_at, first, Ok(produce_answer(0, 1)));
    assert!(m.poll_event().is_none());
    m.handle_response(retry_at, second, Ok(produce_answer(0, 42)));
    match m.poll_event() {
        Some(Event::Answer {
            waiter: 7,
            result: Ok(delivered),
        }) => {
            assert_eq!(
                delivered,
                Delivered {
                    topic: "t".into(),
                    partition: 0,
                    offset: Some(42),
                    timestamp: WALL_MS,
                }
            );
        }
        other => panic!("not the delivery: {other:?}"),
    }
    assert!(m.poll_event().is_none());
    assert_eq!(m.poll_timeout(), None);
    assert!(!m.is_finished());
    m.close(retry_at);
    assert!(m.is_finished());
}

#[test]
fn a_record_whose_topic_never_shows_up_times_out() {
    let t0 = Instant::now();
    let config = config(&[
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "400"),
        ("delivery.timeout.ms", "1000"),
        ("enable.idempotence", "false"),
    ]);
    let (mut m, stats) = machine(config, Arc::new(Metadata::default()), t0);
    m.record(t0, incoming(3, t0));
    let flush = m.flush(t0);
    let mut refreshes = 0;
    let mut now = t0;
    let failed = loop {
        while let Some(out) = m.poll_request(now) {
            assert_eq!(out.target, Target::Any);
            let Request::Metadata(scope) = &out.request else {
                panic!("not a metadata refresh: {:?}", out.request);
            };
            assert!(scope.contains("t"));
            refreshes += 1;
            // The topic is still not there.
            let answer = Ok(Response::Metadata(Ok(Arc::new(Metadata::default()))));
            m.handle_response(now, out.id, answer);
        }
        if let Some(event) = m.poll_event() {
            break event;
        }
        now = m
            .poll_timeout()
            .expect("a refresh or the delivery timeout ahead");
        assert!(now > t0 && now <= t0 + Duration::from_millis(1000));
        m.handle_timeout(now);
    };
    // Refreshed with a growing backoff until the delivery timeout.
    assert!(refreshes >= 4, "{refreshes}");
    assert_eq!(now, t0 + Duration::from_millis(1000));
    match failed {
        Event::Answer {
            waiter: 3,
            result: Err(e),
        } => assert_eq!(e.kind(), ErrorKind::TimedOut),
        other => panic!("not the timeout: {other:?}"),
    }
    // The flush was waiting for it.
    assert!(matches!(m.poll_event(), Some(Event::Flushed(f)) if f == flush));
    assert_eq!(stats.records_failed.load(Ordering::Relaxed), 1);
}

/// The one request out, which must be an InitProducerId.
fn init_request(m: &mut SenderMachine<u32>, now: Instant) -> RequestId {
    let out = m.poll_request(now).expect("an InitProducerId request");
    assert!(
        matches!(out.request, Request::InitProducerId(_)),
        "not an InitProducerId request: {:?}",
        out.request
    );
    assert!(m.poll_request(now).is_none());
    out.id
}

#[test]
fn a_failed_init_producer_id_is_asked_again_after_its_backoff() {
    let t0 = Instant::now();
    let config = config(&[
        ("linger.ms", "0"),
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "1000"),
        ("enable.idempotence", "true"),
    ]);
    let (mut m, _) = machine(config, metadata(), t0);
    m.record(t0, incoming(1, t0));
    // The first record asks for a producer id; nothing is sent before it comes.
    let first = init_request(&mut m, t0);
    let loading = InitProducerIdResponse::default().with_error_code(
        kcon_codec::kafka_protocol::ResponseError::CoordinatorLoadInProgress.code(),
    );
    m.handle_response(t0, first, Ok(Response::InitProducerId(Ok((loading, 0)))));
    assert!(m.poll_request(t0).is_none());
    // The backoff: retry.backoff.ms ± 20 %, and nothing before it.
    let again = m.poll_timeout().expect("the backoff");
    assert!(again >= t0 + Duration::from_millis(80), "{again:?}");
    assert!(again <= t0 + Duration::from_millis(120), "{again:?}");
    m.handle_timeout(again - Duration::from_millis(1));
    assert!(m.poll_request(again).is_none());

    m.handle_timeout(again);
    let second = init_request(&mut m, again);
    let id = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(5))
        .with_producer_epoch(0);
    m.handle_response(again, second, Ok(Response::InitProducerId(Ok((id, 0)))));
    // The batch goes under the new id.
    let (_, bytes) = produce_request(&mut m, again);
    // Producer id at byte 43 of a magic-2 batch header.
    assert_eq!(i64::from_be_bytes(bytes[43..51].try_into().unwrap()), 5);
}

/// The answer to `request` with every partition it carries written at offset 0.
fn written(request: &ProduceRequest) -> Response {
    let topics = request.topic_data.iter().map(|t| {
        let partitions = t.partition_data.iter().map(|p| {
            PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(0)
                .with_log_append_time_ms(-1)
        });
        TopicProduceResponse::default()
            .with_name(t.name.clone())
            .with_partition_responses(partitions.collect())
    });
    Response::Produce(Ok(
        ProduceResponse::default().with_responses(topics.collect())
    ))
}

/// Answers every Produce request out, and those its answers let go, with every partition it
/// carries written; the partition each waiter's record went to.
fn deliver_everything(m: &mut SenderMachine<u32>, now: Instant) -> BTreeMap<u32, i32> {
    while let Some(out) = m.poll_request(now) {
        let Request::Produce(request, _) = out.request else {
            panic!("not a Produce request: {:?}", out.request);
        };
        m.handle_response(now, out.id, Ok(written(&request)));
    }
    let mut partitions = BTreeMap::new();
    while let Some(event) = m.poll_event() {
        match event {
            Event::Answer {
                waiter,
                result: Ok(delivered),
            } => partitions.insert(waiter, delivered.partition),
            other => panic!("not a delivery: {other:?}"),
        };
    }
    partitions
}

#[test]
fn a_seed_spreads_null_keyed_records_the_same_way_every_time() {
    let t0 = Instant::now();
    let spread = |seed| {
        let config = config(&[
            ("partitioner", "murmur2_random"),
            ("linger.ms", "0"),
            ("enable.idempotence", "false"),
        ]);
        let stats = Arc::new(Counters::default());
        let mut m = SenderMachine::new(config, metadata_of(4), stats, seed, t0, WALL_MS);
        for waiter in 0..40 {
            m.record(t0, incoming(waiter, t0));
        }
        let partitions = deliver_everything(&mut m, t0);
        assert_eq!(partitions.len(), 40, "every record delivered");
        partitions
    };
    let first = spread(9);
    assert_eq!(first, spread(9));
    assert_ne!(first, spread(10), "another seed, another spread");
    let used: BTreeSet<i32> = first.values().copied().collect();
    assert_eq!(used, (0..4).collect());
}

/// Ready batches go the one opened first first, whatever its partition: with one request slot
/// and requests too small for two batches, a partition whose next batch is ready whenever its
/// answer comes does not keep the slot from the partitions whose batches waited longer.
#[test]
fn the_ready_batch_opened_first_goes_first_whatever_its_partition() {
    let t0 = Instant::now();
    let config = config(&[
        ("linger.ms", "0"),
        ("enable.idempotence", "false"),
        ("max.in.flight.requests.per.connection", "1"),
        ("max.request.size", "100"),
    ]);
    let (mut m, _) = machine(config, metadata_of(3), t0);
    for p in 0..3 {
        m.record(t0, incoming_to(p, p as u32, t0));
    }
    let mut order = Vec::new();
    let mut now = t0;
    for waiter in 10..16 {
        now += Duration::from_millis(1);
        let out = m.poll_request(now).expect("a Produce request");
        assert!(m.poll_request(now).is_none(), "one request slot");
        let Request::Produce(request, _) = out.request else {
            panic!("not a Produce request: {:?}", out.request);
        };
        let [sent] = partitions_of(&request)[..] else {
            panic!("one batch a request: {:?}", partitions_of(&request));
        };
        order.push(sent);
        // The partition just sent has its next batch ready before its answer comes.
        m.record(now, incoming_to(sent, waiter, now));
        m.handle_response(now, out.id, Ok(written(&request)));
        while m.poll_event().is_some() {}
    }
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
}

/// Records given to the machine together go where one at a time would put them, in fewer
/// Produce requests (one pass places them all before anything is sent), and a flush behind
/// them is answered once every one of them is done.
#[test]
fn records_that_come_together_are_placed_as_one_at_a_time_would_be_in_fewer_requests() {
    let t0 = Instant::now();
    let config = || {
        config(&[
            ("linger.ms", "0"),
            ("enable.idempotence", "false"),
            ("max.in.flight.requests.per.connection", "1"),
        ])
    };
    let (mut one_by_one, _) = machine(config(), metadata_of(4), t0);
    let mut requests_one_by_one = 0;
    let mut placed = BTreeMap::new();
    for waiter in 0..40 {
        one_by_one.record(t0, incoming(waiter, t0));
        // Each answered before the next comes: nothing waits behind a request in flight.
        while let Some(out) = one_by_one.poll_request(t0) {
            requests_one_by_one += 1;
            let Request::Produce(request, _) = out.request else {
                panic!("not a Produce request: {:?}", out.request);
            };
            one_by_one.handle_response(t0, out.id, Ok(written(&request)));
        }
        placed.extend(deliver_everything(&mut one_by_one, t0));
    }
    assert_eq!(requests_one_by_one, 40);

    let (mut together, _) = machine(config(), metadata_of(4), t0);
    together.records(t0, (0..40).map(|waiter| incoming(waiter, t0)));
    let flush = together.flush(t0);
    let out = together.poll_request(t0).expect("a Produce request");
    assert!(together.poll_request(t0).is_none(), "one request");
    let Request::Produce(request, _) = &out.request else {
        panic!("not a Produce request: {:?}", out.request);
    };
    assert_eq!(
        partitions_of(request),
        [0, 1, 2, 3],
        "all four partitions in it"
    );
    assert!(together.poll_event().is_none(), "the flush waits");
    let mut answered = BTreeMap::new();
    together.handle_response(t0, out.id, Ok(written(request)));
    let mut flushed = false;
    while let Some(event) = together.poll_event() {
        match event {
            Event::Answer {
                waiter,
                result: Ok(delivered),
            } => {
                assert!(!flushed, "the flush answered before record {waiter}");
                answered.insert(waiter, delivered.partition);
            }
            Event::Flushed(id) => {
                assert_eq!(id, flush);
                flushed = true;
            }
            other => panic!("not a delivery: {other:?}"),
        }
    }
    assert!(flushed);
    assert_eq!(answered, placed, "the same partition for each record");
}

/// A record for a partition its topic lacks fails alone; records sent while their topic is
/// missing from the metadata wait for it, and a record sent once it is back comes behind
/// them. Every record is written in the order it was sent.
#[test]
fn a_record_waits_behind_its_topics_records_waiting_for_metadata() {
    let t0 = Instant::now();
    let config = config(&[
        ("linger.ms", "5000"),
        ("enable.idempotence", "false"),
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "100"),
    ]);
    let (mut m, stats) = machine(config, metadata(), t0);
    m.record(t0, incoming(1, t0));
    m.record(t0, incoming(2, t0));
    let mut missing = incoming(90, t0);
    missing.record.partition = Some(3);
    m.record(t0, missing);
    match m.poll_event() {
        Some(Event::Answer {
            waiter: 90,
            result: Err(e),
        }) => {
            assert_eq!(e.kind(), ErrorKind::InvalidRecord);
            assert!(e.to_string().contains("partition 3 of t"), "{e}");
        }
        other => panic!("not the record for partition 3 failing: {other:?}"),
    }
    // A record for a topic not known asks for the metadata, which comes back without `t`.
    let mut elsewhere = incoming(91, t0);
    elsewhere.record = ProducerRecord::new("u", "v");
    m.record(t0, elsewhere);
    let out = m.poll_request(t0).expect("a metadata refresh");
    assert!(matches!(out.request, Request::Metadata(_)), "{out:?}");
    let gone = Ok(Response::Metadata(Ok(Arc::new(Metadata::default()))));
    m.handle_response(t0, out.id, gone);
    m.record(t0, incoming(3, t0));
    m.record(t0, incoming(4, t0));
    assert_eq!(m.topics["t"].waiting.len(), 2, "waiting for t's metadata");
    let mut now = t0;
    let mut offsets = BTreeMap::new();
    let mut back = false;
    while offsets.len() < 5 {
        while let Some(out) = m.poll_request(now) {
            match out.request {
                Request::Metadata(_) => {
                    m.handle_response(now, out.id, Ok(Response::Metadata(Ok(metadata()))));
                    if !back {
                        // `t` is back: 3 and 4 are placed; 5 comes behind them.
                        back = true;
                        m.record(now, incoming(5, now));
                    }
                }
                Request::Produce(request, _) => {
                    m.handle_response(now, out.id, Ok(written(&request)));
                }
                other => panic!("neither a refresh nor a Produce request: {other:?}"),
            }
        }
        while let Some(event) = m.poll_event() {
            match event {
                Event::Answer {
                    waiter,
                    result: Ok(delivered),
                } => offsets.insert(waiter, delivered.offset),
                other => panic!("not a delivery: {other:?}"),
            };
        }
        now = m.poll_timeout().expect("a refresh or the linger ahead");
        assert!(
            now < t0 + Duration::from_secs(10),
            "nothing written by {now:?}"
        );
        m.handle_timeout(now);
    }
    assert!(back);
    let written: Vec<_> = offsets.into_iter().collect();
    let expected: Vec<_> = (1..=5).zip((0..5).map(Some)).collect();
    assert_eq!(written, expected, "one batch, in the order sent");
    assert_eq!(stats.records_failed.load(Ordering::Relaxed), 1);
}

/// The records sent before their topic's metadata came wait in its queue; once they are placed,
/// a later pass needing far less room gives the rest back, and one needing about as much
/// keeps it.
#[test]
fn a_topics_queue_gives_back_the_room_of_a_burst_once_placed() {
    let t0 = Instant::now();
    let config = config(&[("linger.ms", "5000"), ("enable.idempotence", "false")]);
    let (mut m, _) = machine(config, Arc::new(Metadata::default()), t0);
    m.records(t0, (0..1000).map(|waiter| incoming(waiter, t0)));
    assert_eq!(m.topics["t"].waiting.len(), 1000);
    let out = m.poll_request(t0).expect("a metadata refresh");
    assert!(matches!(out.request, Request::Metadata(_)), "{out:?}");
    m.handle_response(t0, out.id, Ok(Response::Metadata(Ok(metadata()))));
    let room = |m: &SenderMachine<u32>| m.topics["t"].waiting.capacity();
    assert!(m.topics["t"].waiting.is_empty(), "placed");
    assert!(room(&m) <= 2 * WAITING_KEPT, "given back: {}", room(&m));
    assert_eq!(m.acc.records(), 1000);
    // The topic's partitions known, records are placed as they come, without a turn in its
    // queue, which keeps no more room for them.
    m.records(t0, (1000..1600).map(|waiter| incoming(waiter, t0)));
    assert!(m.topics["t"].waiting.is_empty());
    assert!(room(&m) <= 2 * WAITING_KEPT, "none taken: {}", room(&m));
    assert_eq!(m.acc.records(), 1600);
}

/// Once a topic's partitions are known its records are placed as they come; a new metadata
/// sends the next through the topic's queue, to be partitioned by the partitions it gives.
#[test]
fn records_placed_as_they_come_follow_a_new_metadatas_partitions() {
    let t0 = Instant::now();
    let config = config(&[("linger.ms", "5000"), ("enable.idempotence", "false")]);
    let (mut m, stats) = machine(config, metadata_of(1), t0);
    m.record(t0, incoming(1, t0));
    assert!(m.topics["t"].placing, "placed by the first pass");
    m.record(t0, incoming_to(1, 2, t0));
    match m.poll_event() {
        Some(Event::Answer {
            waiter: 2,
            result: Err(e),
        }) => assert!(e.to_string().contains("partition 1 of t"), "{e}"),
        other => panic!("not the record for partition 1 failing: {other:?}"),
    }
    m.refreshed(Ok(Ok(metadata_of(2))), t0);
    assert!(!m.topics["t"].placing, "checked again at the next pass");
    m.record(t0, incoming_to(1, 3, t0));
    assert!(m.topics["t"].placing);
    assert!(m.poll_event().is_none(), "placed");
    let placed: Vec<_> = m.acc.partitions().map(|tp| tp.partition).collect();
    assert_eq!(placed, [0, 1]);
    assert_eq!(m.acc.records(), 2);
    assert_eq!(stats.records_failed.load(Ordering::Relaxed), 1);
}

/// The ids of records not done: the lowest is the lowest not taken out, whatever order they
/// finish in; an id taken out twice, or never added, changes nothing.
#[test]
fn the_lowest_incomplete_id_follows_records_finishing_in_any_order() {
    let mut ids = Incomplete::default();
    assert_eq!(ids.first(), None);
    assert!(ids.is_empty());
    for id in 10..15 {
        ids.insert(id);
    }
    assert_eq!(ids.first(), Some(10));
    ids.remove(&12);
    ids.remove(&12);
    ids.remove(&3);
    ids.remove(&99);
    assert_eq!(ids.first(), Some(10));
    ids.remove(&10);
    assert_eq!(ids.first(), Some(11));
    ids.remove(&11);
    assert_eq!(ids.first(), Some(13), "12 was done already");
    ids.insert(20);
    ids.remove(&13);
    ids.remove(&14);
    assert_eq!(ids.first(), Some(20), "the ids skipped count as done");
    ids.remove(&20);
    assert_eq!(ids.first(), None);
    assert!(ids.is_empty());
    ids.insert(30);
    assert_eq!(ids.first(), Some(30));
}

/// A transactional producer against the simulated cluster, with the faults of a transaction
/// timeout and of answers lost after their request took effect.
mod timeouts_and_lost_answers {
    use kcon_codec::kafka_protocol::ResponseError as E;
    use kcon_codec::kafka_protocol::messages::EndTxnRequest;
    use kcon_core::{ConsumerGroupMetadata, RequestFailure};

    use super::super::sim::{Api, Cluster, record_to, transactional_machine};
    use super::super::txn::TxnOffset;
    use super::txn::{Seen, run};
    use super::*;
    use crate::error::Outcome as ErrorOutcome;

    /// The machine, the cluster (whose `lose` names the answers to lose), the clock, and what
    /// the machine told.
    struct Driver {
        m: SenderMachine<u32>,
        cluster: Cluster,
        now: Instant,
        seen: Seen,
    }

    impl Driver {
        /// A producer initialized on `cluster`.
        fn started_on(cluster: Cluster) -> Driver {
            let now = Instant::now();
            let mut d = Driver {
                m: transactional_machine(&[], 7, now),
                cluster,
                now,
                seen: Seen::default(),
            };
            d.call(TxnCall::Init).expect("initialized");
            d
        }

        /// A producer initialized on `cluster`, in a transaction holding record 1 (partition 0)
        /// and the group's offset 5.
        fn in_transaction_on(cluster: Cluster) -> Driver {
            let mut d = Driver::started_on(cluster);
            d.call(TxnCall::Begin).unwrap();
            d.record(1, 0);
            d.send_offsets(5).unwrap();
            d
        }

        /// Runs the machine against the cluster up to `limit` of virtual time (the shared
        /// [`run`]).
        fn run(&mut self, limit: Duration) {
            run(
                &mut self.m,
                &mut self.cluster,
                &mut self.now,
                &mut self.seen,
                limit,
            );
        }

        /// The outcome of call `id`, if it was answered.
        fn outcome(&mut self, id: CallId) -> Option<Result<(), ProduceError>> {
            let i = self.seen.calls.iter().position(|(c, _, _)| *c == id)?;
            Some(self.seen.calls.remove(i).2)
        }

        /// Makes `call` and runs until it is answered; its outcome.
        fn call(&mut self, call: TxnCall) -> Result<(), ProduceError> {
            let id = self.m.transaction(self.now, call);
            self.run(Duration::from_secs(60));
            self.outcome(id).expect("the call was answered")
        }

        /// Sends a record of `waiter` to `partition` and runs until it is answered.
        fn record(&mut self, waiter: u32, partition: i32) {
            self.m
                .record(self.now, record_to(waiter, partition, self.now));
            self.run(Duration::from_secs(1));
        }

        /// `send_offsets_to_transaction` of `t-0` at `offset`, at the group's generation.
        fn send_offsets(&mut self, offset: i64) -> Result<(), ProduceError> {
            self.call(TxnCall::SendOffsets {
                offsets: vec![TxnOffset {
                    partition: TopicPartition::new("t", 0),
                    offset,
                    leader_epoch: None,
                    metadata: None,
                }],
                group: ConsumerGroupMetadata::member("g", 3, "member-1", None),
            })
        }

        /// How many requests of `api` the cluster has seen.
        fn seen(&self, api: Api) -> usize {
            self.cluster.seen.iter().filter(|a| **a == api).count()
        }
    }

    /// The cluster's answer to an EndTxn (`committed`) at `epoch`: its error code and the epoch
    /// it gives.
    fn end(cluster: &mut Cluster, committed: bool, epoch: i16) -> (i16, i16) {
        let protocol = if cluster.v2 {
            TxnProtocol::V2
        } else {
            TxnProtocol::V1
        };
        let request = EndTxnRequest::default()
            .with_producer_id(ProducerId(cluster.producer_id))
            .with_producer_epoch(epoch)
            .with_committed(committed);
        match cluster.answer(Request::EndTxn(request, protocol)) {
            Response::EndTxn(Ok(a)) => (a.error_code, a.producer_epoch),
            other => panic!("not an EndTxn answer: {other:?}"),
        }
    }

    /// The cluster at transaction version 1, then at version 2.
    fn both_versions() -> [Cluster; 2] {
        [Cluster::new(), Cluster::v2()]
    }

    /// A transaction open at the coordinator (a record written, offsets sent) that it times out
    /// at transaction version 1: it bumps the epoch and aborts, so the commit that follows is
    /// an EndTxn at the old epoch, fenced (PRODUCER_FENCED, fatal: only a close is left). A
    /// read_committed reader sees nothing, the record is aborted, the group keeps no offset.
    #[test]
    fn at_transaction_version_1_a_commit_after_the_coordinator_timed_the_transaction_out_is_fenced()
    {
        let mut d = Driver::started_on(Cluster::new());
        d.call(TxnCall::Begin).unwrap();
        d.record(1, 0);
        assert_eq!(d.seen.delivered, [1]);
        d.send_offsets(5).unwrap();
        assert_eq!(d.cluster.pending_offsets, BTreeMap::from([(0, 5)]));
        assert!(d.cluster.time_out_open_transaction());
        assert_eq!(d.cluster.epoch, 1, "the timeout bumps the epoch");
        assert!(
            !d.cluster.time_out_open_transaction(),
            "nothing is open to time out any more"
        );
        let before = d.cluster.seen.len();
        let e = d.call(TxnCall::Commit).unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
        assert_eq!(e.code(), Some(E::ProducerFenced), "{e}");
        assert_eq!(d.cluster.seen[before..], [Api::EndTxn]);
        assert_eq!(d.cluster.committed_records(), BTreeMap::new());
        assert_eq!(d.cluster.aborted_records(), 1);
        assert_eq!(d.cluster.offsets, BTreeMap::new());
        let e = d.call(TxnCall::Begin).unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
    }

    /// After the coordinator timed the transaction out at transaction version 1, a record to a
    /// partition not yet in it needs an AddPartitionsToTxn at the old epoch, which the
    /// coordinator fences: the record fails, the producer is fenced, nothing is committed.
    #[test]
    fn at_transaction_version_1_a_partition_added_after_the_timeout_is_fenced() {
        let mut d = Driver::started_on(Cluster::new());
        d.call(TxnCall::Begin).unwrap();
        d.record(1, 0);
        assert!(d.cluster.time_out_open_transaction());
        let before = d.cluster.seen.len();
        d.record(2, 1);
        assert_eq!(d.cluster.seen[before..], [Api::AddPartitions]);
        let (waiter, e) = d.seen.failed.last().expect("the record failed");
        assert_eq!(*waiter, 2);
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
        let e = d.call(TxnCall::Commit).unwrap_err();
        assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
        assert_eq!(d.cluster.committed_records(), BTreeMap::new());
        assert_eq!(d.cluster.aborted_records(), 1);
    }

    /// Offsets sent after the coordinator timed the transaction out are refused, whatever the
    /// version: AddOffsetsToTxn fenced at version 1 (PRODUCER_FENCED), TxnOffsetCommit at the
    /// old epoch at version 2 (INVALID_PRODUCER_EPOCH, the group coordinator's verification
    /// answer); both fatal from a coordinator. The group never sees the offsets of the
    /// transaction, neither those sent before the timeout nor those after.
    #[test]
    fn offsets_sent_after_the_coordinator_timed_the_transaction_out_are_refused_and_never_kept() {
        for (cluster, refused, code) in [
            (Cluster::new(), Api::AddOffsets, E::ProducerFenced),
            (Cluster::v2(), Api::TxnOffsetCommit, E::InvalidProducerEpoch),
        ] {
            let mut d = Driver::in_transaction_on(cluster);
            assert!(d.cluster.time_out_open_transaction());
            let before = d.cluster.seen.len();
            let e = d.send_offsets(6).unwrap_err();
            assert_eq!(d.cluster.seen[before..], [refused]);
            assert_eq!(e.code(), Some(code), "{e}");
            assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
            assert_eq!(d.cluster.pending_offsets, BTreeMap::new());
            let e = d.call(TxnCall::Commit).unwrap_err();
            assert_eq!(e.outcome(), ErrorOutcome::Close, "{e}");
            assert_eq!(d.cluster.offsets, BTreeMap::new());
            assert_eq!(d.cluster.committed_records(), BTreeMap::new());
            assert_eq!(d.cluster.aborted_records(), 1);
        }
    }

    /// A commit whose EndTxn takes effect and whose answer is lost: the machine sends the
    /// EndTxn again, which the coordinator answers as done (the last transaction committed, at
    /// version 2 at the epoch just below, with the bumped epoch); the commit succeeds once, the
    /// records and the offsets are there once, and the next transaction commits under the
    /// right epoch.
    #[test]
    fn a_commit_whose_answer_is_lost_is_sent_again_and_answered_as_done() {
        for cluster in both_versions() {
            let v2 = cluster.v2;
            let mut d = Driver::in_transaction_on(cluster);
            d.cluster.lose.push(Api::EndTxn);
            d.call(TxnCall::Commit).unwrap();
            assert!(d.cluster.lose.is_empty(), "the answer was lost");
            assert_eq!(d.seen(Api::EndTxn), 2, "v2 {v2}");
            assert_eq!(d.cluster.ended, [Some(true)]);
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 1)]));
            assert_eq!(d.cluster.offsets, BTreeMap::from([(0, 5)]));
            d.call(TxnCall::Begin).unwrap();
            d.record(2, 1);
            d.send_offsets(6).unwrap();
            d.call(TxnCall::Commit).unwrap();
            assert_eq!(d.seen.delivered, [1, 2]);
            assert!(d.seen.failed.is_empty());
            assert_eq!(d.cluster.ended, [Some(true), Some(true)]);
            assert_eq!(
                d.cluster.committed_records(),
                BTreeMap::from([(0, 1), (1, 1)])
            );
            assert_eq!(d.cluster.offsets, BTreeMap::from([(0, 6)]));
            // At version 2 the retry's answer gave the bumped epoch, which the next
            // transaction's batch carries.
            let (last, _) = d.cluster.log.last().expect("a batch");
            assert_eq!(last.producer_epoch, i16::from(v2));
            assert_eq!(d.cluster.epoch, if v2 { 2 } else { 0 });
        }
    }

    /// A commit whose answer is lost while the coordinator still writes its markers: the
    /// EndTxn sent again is answered CONCURRENT_TRANSACTIONS and sent again after its backoff,
    /// the commit not answered and a read_committed reader seeing nothing yet; once the
    /// markers are written the reader sees the records, the group the offsets, and the next
    /// EndTxn is answered as done: the commit succeeds.
    #[test]
    fn a_commit_sent_again_while_its_markers_are_written_waits_for_them() {
        for cluster in both_versions() {
            let mut d = Driver::in_transaction_on(cluster);
            d.cluster.lose.push(Api::EndTxn);
            d.cluster.hold_markers = true;
            let commit = d.m.transaction(d.now, TxnCall::Commit);
            d.run(Duration::from_secs(3));
            assert!(d.outcome(commit).is_none(), "the commit waits");
            assert!(d.seen(Api::EndTxn) >= 3, "{:?}", d.cluster.seen);
            assert!(d.cluster.completing.is_some());
            assert_eq!(d.cluster.committed_records(), BTreeMap::new());
            assert_eq!(d.cluster.offsets, BTreeMap::new());
            assert!(d.cluster.write_markers());
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 1)]));
            assert_eq!(d.cluster.offsets, BTreeMap::from([(0, 5)]));
            d.run(Duration::from_secs(60));
            assert!(matches!(d.outcome(commit), Some(Ok(()))));
            assert_eq!(d.cluster.ended, [Some(true)]);
            d.call(TxnCall::Begin).unwrap();
            d.record(2, 0);
            d.call(TxnCall::Commit).unwrap();
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 2)]));
        }
    }

    /// An abort whose answer is lost: sent again and answered as done; nothing of the
    /// transaction is seen, and the next transaction commits.
    #[test]
    fn an_abort_whose_answer_is_lost_is_sent_again_and_answered_as_done() {
        for cluster in both_versions() {
            let mut d = Driver::in_transaction_on(cluster);
            d.cluster.lose.push(Api::EndTxn);
            d.call(TxnCall::Abort).unwrap();
            assert_eq!(d.seen(Api::EndTxn), 2);
            assert_eq!(d.cluster.aborted_records(), 1);
            assert_eq!(d.cluster.offsets, BTreeMap::new());
            d.call(TxnCall::Begin).unwrap();
            d.record(2, 1);
            d.call(TxnCall::Commit).unwrap();
            assert_eq!(d.cluster.ended, [Some(false), Some(true)]);
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(1, 1)]));
            assert_eq!(d.cluster.offsets, BTreeMap::new());
        }
    }

    /// Offsets whose TxnOffsetCommit takes effect and whose answer is lost: sent again and
    /// written again, which changes nothing; `send_offsets_to_transaction` succeeds, and the
    /// commit leaves the group at those offsets.
    #[test]
    fn offsets_whose_answer_is_lost_are_sent_again_and_kept_once() {
        for cluster in both_versions() {
            let mut d = Driver::started_on(cluster);
            d.call(TxnCall::Begin).unwrap();
            d.record(1, 0);
            d.cluster.lose.push(Api::TxnOffsetCommit);
            d.send_offsets(9).unwrap();
            assert!(d.cluster.lose.is_empty(), "the answer was lost");
            assert_eq!(d.seen(Api::TxnOffsetCommit), 2);
            assert_eq!(d.cluster.pending_offsets, BTreeMap::from([(0, 9)]));
            d.call(TxnCall::Commit).unwrap();
            assert_eq!(d.cluster.offsets, BTreeMap::from([(0, 9)]));
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 1)]));
        }
    }

    /// The coordinator's answers to an EndTxn that comes again after the transaction it ends
    /// was decided, at either version: the same outcome is CONCURRENT_TRANSACTIONS while the
    /// markers are written and done after (at version 2 with the bumped epoch), the other
    /// outcome INVALID_TXN_STATE; the transaction stays committed once.
    #[test]
    fn an_end_txn_that_comes_again_is_answered_by_the_state_of_the_transaction_it_ended() {
        for cluster in both_versions() {
            let v2 = cluster.v2;
            let mut d = Driver::started_on(cluster);
            d.call(TxnCall::Begin).unwrap();
            d.record(1, 0);
            let epoch = d.cluster.epoch;
            d.cluster.hold_markers = true;
            let commit = d.m.transaction(d.now, TxnCall::Commit);
            // The EndTxn takes effect, its answer lost; the machine's next requests wait.
            let out = d.m.poll_request(d.now).expect("an EndTxn");
            assert!(
                matches!(out.request, Request::EndTxn(..)),
                "{:?}",
                out.request
            );
            let _ = d.cluster.answer(out.request);
            let lost = Err(RequestFailure::retriable("the connection closed"));
            d.m.handle_response(d.now, out.id, lost);
            let code = |e: E| e.code();
            assert_eq!(
                end(&mut d.cluster, true, epoch).0,
                code(E::ConcurrentTransactions)
            );
            assert_eq!(
                end(&mut d.cluster, false, epoch).0,
                code(E::InvalidTxnState)
            );
            assert_eq!(d.cluster.committed_records(), BTreeMap::new());
            assert!(d.cluster.write_markers());
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 1)]));
            let done = end(&mut d.cluster, true, epoch);
            assert_eq!(done.0, 0);
            if v2 {
                assert_eq!(done.1, epoch + 1, "the bumped epoch");
            }
            assert_eq!(
                end(&mut d.cluster, false, epoch).0,
                code(E::InvalidTxnState)
            );
            assert_eq!(d.cluster.ended, [Some(true)]);
            assert_eq!(d.cluster.committed_records(), BTreeMap::from([(0, 1)]));
            d.run(Duration::from_secs(60));
            assert!(matches!(d.outcome(commit), Some(Ok(()))));
        }
    }
}

mod txn;

/// Each record's `Delivered` hands back the record's topic: records naming one topic by a
/// `Topic`, a `&str` and an `Arc<str>` go into one batch of one topic, and each gets the one
/// interned name back.
#[test]
fn a_delivery_hands_back_the_records_own_topic() {
    let t0 = Instant::now();
    let config = config(&[("linger.ms", "5"), ("enable.idempotence", "false")]);
    let (mut m, _) = machine(config, metadata(), t0);
    let interned = Topic::new("t");
    let shared: Arc<str> = "t".into();
    let with_topic = |record: ProducerRecord, waiter: u32| Incoming {
        size: record.size_upper_bound(),
        record,
        packed: None,
        waiter,
        received: t0,
    };
    m.records(
        t0,
        [
            with_topic(ProducerRecord::new(interned, "v"), 1),
            with_topic(ProducerRecord::new("t", "v"), 2),
            with_topic(ProducerRecord::new(&shared, "v"), 3),
            with_topic(ProducerRecord::new(String::from("t"), "v"), 4),
        ],
    );
    // Naming the topic made no reference to the caller's `Arc`.
    assert_eq!(Arc::strong_count(&shared), 1);
    let linger_end = t0 + Duration::from_millis(5);
    m.handle_timeout(linger_end);
    let (id, bytes) = produce_request(&mut m, linger_end);
    // One batch of the four: its record count, after the header's fixed fields.
    assert_eq!(i32::from_be_bytes(bytes[57..61].try_into().unwrap()), 4);
    m.handle_response(linger_end, id, Ok(produce_answer(0, 10)));
    let mut topics = Vec::new();
    while let Some(event) = m.poll_event() {
        let Event::Answer {
            waiter,
            result: Ok(delivered),
        } = event
        else {
            panic!("not a delivery");
        };
        assert_eq!(delivered.offset, Some(10 + i64::from(waiter) - 1));
        topics.push((waiter, delivered.topic));
    }
    assert_eq!(topics.len(), 4);
    for (waiter, topic) in topics {
        assert!(
            std::ptr::eq(topic.as_str(), interned.as_str()),
            "record {waiter}'s topic"
        );
    }
}
