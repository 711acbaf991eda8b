use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::protocol::StrBytes;

use super::*;
use crate::error_codes::code;
use crate::error_codes::code::INVALID_RECORD;

const INTERVAL: Duration = Duration::from_secs(10);

fn machine(now: Instant) -> TelemetryMachine {
    let mut m = TelemetryMachine::new(
        now,
        ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        7,
    );
    m.ready(now);
    m
}

#[test]
fn asks_nothing_until_the_client_reached_the_cluster() {
    let t0 = Instant::now();
    let backoff = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut m = TelemetryMachine::new(t0, backoff, 7);
    assert!(m.is_waiting());
    assert_eq!(m.poll_timeout(), None);
    assert!(m.poll_request(t0 + INTERVAL).is_none());
    let later = t0 + INTERVAL;
    m.ready(later);
    assert!(!m.is_waiting());
    let out = m.poll_request(later).expect("asks once ready");
    assert!(matches!(out.request, TelemetryRequest::Subscriptions(_)));

    // Closed while waiting: done, nothing asked.
    let mut m = TelemetryMachine::new(t0, backoff, 7);
    m.close(t0);
    assert_eq!(events(&mut m), [TelemetryEvent::Ended]);
    assert!(m.is_done());
    m.ready(t0);
    assert!(m.poll_request(t0).is_none());
}

fn subscription(id: i32, requested: &[&str]) -> TelemetryResponse {
    let mut r = GetTelemetrySubscriptionsResponse::default();
    r.client_instance_id = uuid::Uuid::from_bytes([9; 16]);
    r.subscription_id = id;
    r.accepted_compression_types = vec![4, 3];
    r.push_interval_ms = INTERVAL.as_millis() as i32;
    r.telemetry_max_bytes = 1 << 20;
    r.delta_temporality = true;
    r.requested_metrics = requested
        .iter()
        .map(|m| StrBytes::from_string(m.to_string()))
        .collect();
    TelemetryResponse::Subscriptions(r)
}

fn pushed(error_code: i16) -> TelemetryResponse {
    let mut r = PushTelemetryResponse::default();
    r.error_code = error_code;
    TelemetryResponse::Push(r)
}

fn events(m: &mut TelemetryMachine) -> Vec<TelemetryEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Asks for the subscription and answers it; returns the time of the answer.
fn subscribe(m: &mut TelemetryMachine, now: Instant, requested: &[&str]) {
    let out = m.poll_request(now).expect("GetTelemetrySubscriptions");
    assert!(matches!(out.request, TelemetryRequest::Subscriptions(_)));
    m.handle_response(now, out.id, Ok(subscription(3, requested)));
}

/// Runs the machine to its next Collect and hands it a payload; returns the push sent.
fn push_due(m: &mut TelemetryMachine) -> (Instant, Outgoing<TelemetryRequest>) {
    let at = m.poll_timeout().expect("a push is due some time");
    m.handle_timeout(at);
    let collect = events(m)
        .into_iter()
        .find(|e| matches!(e, TelemetryEvent::Collect { .. }))
        .expect("asked to collect");
    let TelemetryEvent::Collect { terminating, .. } = collect else {
        unreachable!()
    };
    assert!(!terminating);
    assert!(m.poll_request(at).is_none(), "no push before the payload");
    m.payload(at, 4, Bytes::from_static(b"metrics"));
    (at, m.poll_request(at).expect("the push"))
}

/// Whether `told` ends with the Collect of the last push (after `before` other events).
fn collects_the_last(told: &[TelemetryEvent], before: usize) -> bool {
    told.len() == before + 1
        && matches!(
            told[before],
            TelemetryEvent::Collect {
                terminating: true,
                ..
            }
        )
}

/// The request polled at `at`, which must be the terminating push carrying `metrics`.
fn the_last_push(
    m: &mut TelemetryMachine,
    at: Instant,
    metrics: &[u8],
) -> Outgoing<TelemetryRequest> {
    let out = m.poll_request(at).expect("the terminating push");
    assert!(
        matches!(&out.request, TelemetryRequest::Push(r) if r.terminating && &r.metrics[..] == metrics),
        "{out:?}"
    );
    out
}

#[test]
fn asks_at_once_and_again_an_interval_later_while_nothing_is_requested() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let out = m.poll_request(t0).expect("asks at once");
    assert_eq!(out.target, Target::Any);
    let TelemetryRequest::Subscriptions(r) = &out.request else {
        panic!("{out:?}")
    };
    assert_eq!(
        r.client_instance_id.as_bytes(),
        &[0; 16],
        "a new client sends the zero id"
    );
    assert!(m.poll_request(t0).is_none(), "one request at a time");
    m.handle_response(t0, out.id, Ok(subscription(3, &[])));
    assert_eq!(
        events(&mut m),
        [TelemetryEvent::InstanceId(ClientInstanceId([9; 16]))]
    );
    assert_eq!(m.poll_timeout(), Some(t0 + INTERVAL));
    assert!(m.poll_request(t0 + INTERVAL / 2).is_none());
    let out = m.poll_request(t0 + INTERVAL).expect("asks again");
    let TelemetryRequest::Subscriptions(r) = &out.request else {
        panic!("{out:?}")
    };
    assert_eq!(r.client_instance_id.as_bytes(), &[9; 16], "then its own id");
    m.handle_response(t0 + INTERVAL, out.id, Ok(subscription(3, &[])));
    assert!(events(&mut m).is_empty(), "the instance id is told once");
}

#[test]
fn pushes_first_after_a_jittered_interval_then_every_interval() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    subscribe(&mut m, t0, &["org.apache.kafka.consumer."]);
    let first = m.poll_timeout().unwrap();
    assert!(
        first >= t0 + INTERVAL / 2 && first <= t0 + INTERVAL * 3 / 2,
        "{:?}",
        first - t0
    );
    let (at, out) = push_due(&mut m);
    let TelemetryRequest::Push(r) = &out.request else {
        panic!("{out:?}")
    };
    assert_eq!(r.client_instance_id.as_bytes(), &[9; 16]);
    assert_eq!(r.subscription_id, 3);
    assert!(!r.terminating);
    assert_eq!(r.compression_type, 4);
    assert_eq!(&r.metrics[..], b"metrics");
    m.handle_response(at, out.id, Ok(pushed(0)));
    assert_eq!(m.poll_timeout(), Some(at + INTERVAL), "then every interval");
    let (_, out) = push_due(&mut m);
    assert!(matches!(out.request, TelemetryRequest::Push(_)));
}

#[test]
fn an_instance_id_prints_as_kafka_and_as_a_uuid() {
    let mut bytes = [0u8; 16];
    bytes[0] = 0xab;
    bytes[15] = 1;
    let id = ClientInstanceId(bytes);
    assert_eq!(id.to_string(), "qwAAAAAAAAAAAAAAAAAAAQ");
    assert_eq!(id.hyphenated(), "ab000000-0000-0000-0000-000000000001");
}

#[test]
fn subscriptions_say_which_metrics_they_want() {
    let s = |requested: &[&str]| Subscription {
        id: 1,
        accepted_compression: vec![],
        push_interval: INTERVAL,
        max_bytes: 0,
        delta_temporality: true,
        requested: requested.iter().map(|r| r.to_string()).collect(),
    };
    assert!(!s(&[]).wants("org.apache.kafka.consumer.x"));
    assert!(s(&["*"]).wants("anything"));
    assert!(s(&[""]).wants("anything"));
    let consumer = s(&[
        "org.apache.kafka.consumer.fetch",
        "org.apache.kafka.producer.",
    ]);
    assert!(consumer.wants("org.apache.kafka.consumer.fetch.manager.fetch.latency.avg"));
    assert!(!consumer.wants("org.apache.kafka.consumer.coordinator.commit.latency.avg"));
}

#[test]
fn each_error_of_a_push_is_taken_as_kip_714_says() {
    // (error, what follows: Some(delay) asks for the subscription after it, None gives up)
    let cases = [
        (UNKNOWN_SUBSCRIPTION_ID, Some(Duration::ZERO)),
        (UNSUPPORTED_COMPRESSION_TYPE, Some(Duration::ZERO)),
        (TELEMETRY_TOO_LARGE, Some(INTERVAL)),
        (THROTTLING_QUOTA_EXCEEDED, Some(INTERVAL)),
        (INVALID_RECORD, None),
        (code::INVALID_REQUEST, None),
        (code::UNSUPPORTED_VERSION, None),
        (code::UNKNOWN_SERVER_ERROR, None),
    ];
    for (error, then) in cases {
        let t0 = Instant::now();
        let mut m = machine(t0);
        subscribe(&mut m, t0, &["*"]);
        let (at, out) = push_due(&mut m);
        m.handle_response(at, out.id, Ok(pushed(error)));
        match then {
            Some(delay) => {
                assert_eq!(m.poll_timeout(), Some(at + delay), "{error}");
                let out = m.poll_request(at + delay).expect("asks again");
                assert!(matches!(out.request, TelemetryRequest::Subscriptions(_)));
                assert!(!m.is_done());
            }
            None => {
                let told = events(&mut m);
                let [
                    TelemetryEvent::Pushed(PushOutcome::Refused),
                    TelemetryEvent::Disabled { reason, quiet },
                    TelemetryEvent::Ended,
                ] = &told[..]
                else {
                    panic!("{error}: {told:?}")
                };
                assert!(!quiet);
                assert!(reason.contains(&error_name(error)), "{reason}");
                assert!(m.is_done());
                assert_eq!(m.poll_timeout(), None);
                assert!(m.poll_request(at + INTERVAL * 100).is_none());
            }
        }
    }
}

#[test]
fn an_error_in_the_subscription_answer_is_taken_the_same_way() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let out = m.poll_request(t0).unwrap();
    let TelemetryResponse::Subscriptions(mut answer) = subscription(3, &["*"]) else {
        unreachable!()
    };
    answer.error_code = THROTTLING_QUOTA_EXCEEDED;
    m.handle_response(t0, out.id, Ok(TelemetryResponse::Subscriptions(answer)));
    assert_eq!(m.poll_timeout(), Some(t0 + DEFAULT_PUSH_INTERVAL));
    assert!(events(&mut m).is_empty(), "no instance id from an error");
}

#[test]
fn a_broker_without_the_api_disables_it_quietly_and_a_lost_answer_backs_off() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let out = m.poll_request(t0).unwrap();
    let mut unsupported =
        RequestFailure::fatal("the broker does not offer GetTelemetrySubscriptions");
    unsupported.cause = Some(Cause::Unsupported);
    m.handle_response(t0, out.id, Err(unsupported));
    let told = events(&mut m);
    assert!(
        matches!(
            &told[..],
            [
                TelemetryEvent::Disabled { quiet: true, .. },
                TelemetryEvent::Ended
            ]
        ),
        "{told:?}"
    );

    let mut m = machine(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        let out = m.poll_request(now).expect("asks again");
        m.handle_response(
            now,
            out.id,
            Err(RequestFailure::retriable("connection lost")),
        );
        let next = m.poll_timeout().unwrap();
        delays.push(next - now);
        now = next;
    }
    // 100 ms doubling to the 1 s cap, each ±20 %.
    assert!(delays[0] >= Duration::from_millis(80) && delays[0] < Duration::from_millis(120));
    assert!(delays[7] > Duration::from_millis(700) && delays[7] <= Duration::from_secs(1));
    assert!(!m.is_done());
}

#[test]
fn close_pushes_once_more_marked_terminating_then_ends() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    subscribe(&mut m, t0, &["*"]);
    let _ = events(&mut m);
    m.close(t0);
    let told = events(&mut m);
    assert!(collects_the_last(&told, 0), "{told:?}");
    m.payload(t0, 0, Bytes::from_static(b"last"));
    let out = the_last_push(&mut m, t0, b"last");
    assert!(!m.is_done());
    // Whatever the answer, nothing follows the last push.
    m.handle_response(t0, out.id, Ok(pushed(THROTTLING_QUOTA_EXCEEDED)));
    assert_eq!(
        events(&mut m),
        [
            TelemetryEvent::Pushed(PushOutcome::Refused),
            TelemetryEvent::Ended
        ]
    );
    assert!(m.is_done());
    assert!(m.poll_request(t0 + INTERVAL * 10).is_none());
}

#[test]
fn close_before_a_subscription_ends_at_once() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    let out = m.poll_request(t0).unwrap();
    m.close(t0);
    assert_eq!(events(&mut m), [TelemetryEvent::Ended]);
    assert!(m.is_done());
    m.handle_response(t0, out.id, Ok(subscription(3, &["*"])));
    assert!(m.poll_request(t0).is_none() && events(&mut m).is_empty());
}

/// The broker refuses every push after a terminating one: a close while a push is in flight
/// sends the last push only after that push's answer, whatever the answer was, so the push in
/// flight cannot arrive second and be refused with its counts.
#[test]
fn close_during_a_push_waits_for_its_answer_then_pushes_the_last() {
    let answers: [(&str, Result<TelemetryResponse, RequestFailure>); 4] = [
        ("taken", Ok(pushed(0))),
        ("throttled", Ok(pushed(THROTTLING_QUOTA_EXCEEDED))),
        ("unknown subscription", Ok(pushed(UNKNOWN_SUBSCRIPTION_ID))),
        (
            "unanswered",
            Err(RequestFailure::retriable("connection lost")),
        ),
    ];
    for (what, answer) in answers {
        let t0 = Instant::now();
        let mut m = machine(t0);
        subscribe(&mut m, t0, &["*"]);
        let _ = events(&mut m);
        let (at, push) = push_due(&mut m);
        m.close(at);
        assert!(events(&mut m).is_empty(), "{what}: nothing collected yet");
        assert!(
            m.poll_request(at).is_none(),
            "{what}: no last push beside the one in flight"
        );
        assert!(!m.is_done());
        m.handle_response(at, push.id, answer);
        let told = events(&mut m);
        assert!(
            matches!(told[0], TelemetryEvent::Pushed(_)) && collects_the_last(&told, 1),
            "{what}: {told:?}"
        );
        m.payload(at, 0, Bytes::from_static(b"last"));
        let last = the_last_push(&mut m, at, b"last");
        m.handle_response(at, last.id, Ok(pushed(0)));
        assert!(m.is_done(), "{what}");
    }

    // A push that ends the machine (a refusal no retry fixes) leaves nothing to push last.
    let t0 = Instant::now();
    let mut m = machine(t0);
    subscribe(&mut m, t0, &["*"]);
    let (at, push) = push_due(&mut m);
    m.close(at);
    m.handle_response(at, push.id, Ok(pushed(INVALID_RECORD)));
    assert!(m.is_done());
    assert!(m.poll_request(at).is_none());
}

/// A close while a push is being collected, or collected and not yet sent, makes that push
/// the last: its counts are pushed once, marked terminating.
#[test]
fn close_while_a_push_is_collected_makes_it_the_last() {
    let t0 = Instant::now();
    let mut m = machine(t0);
    subscribe(&mut m, t0, &["*"]);
    let _ = events(&mut m);
    let at = m.poll_timeout().unwrap();
    m.handle_timeout(at);
    m.close(at);
    let told = events(&mut m);
    assert!(
        collects_the_last(&told, 0),
        "one collection, told as the last: {told:?}"
    );
    m.payload(at, 0, Bytes::from_static(b"counts"));
    the_last_push(&mut m, at, b"counts");

    let mut m = machine(t0);
    subscribe(&mut m, t0, &["*"]);
    let at = m.poll_timeout().unwrap();
    m.handle_timeout(at);
    let _ = events(&mut m);
    m.payload(at, 0, Bytes::from_static(b"counts"));
    m.close(at);
    assert!(events(&mut m).is_empty(), "nothing more to collect");
    the_last_push(&mut m, at, b"counts");
}

/// Each push's answer is told: taken, refused (an error code) or unanswered.
#[test]
fn the_outcome_of_each_push_is_told() {
    let cases: [(Result<TelemetryResponse, RequestFailure>, PushOutcome); 3] = [
        (Ok(pushed(0)), PushOutcome::Taken),
        (Ok(pushed(THROTTLING_QUOTA_EXCEEDED)), PushOutcome::Refused),
        (
            Err(RequestFailure::retriable("timed out")),
            PushOutcome::Unanswered,
        ),
    ];
    for (answer, outcome) in cases {
        let t0 = Instant::now();
        let mut m = machine(t0);
        subscribe(&mut m, t0, &["*"]);
        let _ = events(&mut m);
        let (at, push) = push_due(&mut m);
        m.handle_response(at, push.id, answer);
        assert_eq!(events(&mut m), [TelemetryEvent::Pushed(outcome)]);
    }
}
