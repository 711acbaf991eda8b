use proptest::prelude::*;

use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn tps(ps: impl IntoIterator<Item = i32>) -> Vec<TopicPartition> {
    ps.into_iter().map(tp).collect()
}

#[test]
fn grant_reserves_up_to_the_request_cap_and_what_is_left() {
    let mut b = PrefetchBudget::new(1000, 600);
    let g = b.grant(1, tps(0..2)).expect("budget left");
    assert_eq!(g.max_bytes, 600);
    assert_eq!(g.partitions, tps(0..2));
    assert_eq!(b.in_flight(), 600);
    let g = b.grant(2, tps(2..4)).expect("budget left");
    assert_eq!(g.max_bytes, 400);
    assert_eq!(b.available(), 0);
    assert_eq!(b.grant(3, tps(4..5)), None);
}

const MIB: usize = 1024 * 1024;

fn pace(waited_ms: u64, read_ms: u64) -> AnswerPace {
    AnswerPace {
        waited: std::time::Duration::from_millis(waited_ms),
        read: std::time::Duration::from_millis(read_ms),
    }
}

/// One request to broker 1 for the whole window, answered with `answered` bytes at `pace`;
/// the window asked for.
fn answer(b: &mut PrefetchBudget, answered: usize, at: AnswerPace) -> usize {
    let g = b.grant(1, tps(0..4)).expect("budget left");
    b.paced(1, answered, at);
    b.failed(1);
    g.max_bytes
}

#[test]
fn requests_ask_for_the_first_window_until_answers_widen_it() {
    let mut b = PrefetchBudget::new(200 * MIB, 50 * MIB);
    assert_eq!(b.window(1), FIRST_WINDOW);
    assert_eq!(answer(&mut b, FIRST_WINDOW, pace(6, 4)), FIRST_WINDOW);
    // One long wait is not enough: it may be a core the broker did not get.
    assert_eq!(b.window(1), FIRST_WINDOW);
    // The shorter of two waits (6 ms) is 1.5 times the shorter read (4 ms): the window whose
    // read would be 1.5 times the wait is 2.25 times as large.
    assert_eq!(
        answer(&mut b, FIRST_WINDOW - FIRST_WINDOW / 8, pace(9, 5)),
        FIRST_WINDOW
    );
    assert_eq!(b.window(1), FIRST_WINDOW * 9 / 4);
    assert_eq!(b.window(2), FIRST_WINDOW, "each broker has its own");
    // Two more such answers reach fetch.max.bytes, and it goes no further.
    answer(&mut b, FIRST_WINDOW * 9 / 4, pace(40, 10));
    assert_eq!(
        answer(&mut b, FIRST_WINDOW * 9 / 4, pace(40, 10)),
        FIRST_WINDOW * 9 / 4
    );
    assert_eq!(b.window(1), 50 * MIB);
    assert_eq!(answer(&mut b, 50 * MIB, pace(40, 10)), 50 * MIB);
}

#[test]
fn a_window_widens_at_least_twice_over() {
    let mut b = PrefetchBudget::new(200 * MIB, 50 * MIB);
    // Waits exactly two thirds of the reads: the window balanced is this one.
    answer(&mut b, FIRST_WINDOW, pace(2, 3));
    answer(&mut b, FIRST_WINDOW, pace(4, 3));
    assert_eq!(b.window(1), 2 * FIRST_WINDOW);
}

#[test]
fn short_waits_half_answers_and_cut_requests_leave_the_window() {
    let mut b = PrefetchBudget::new(200 * MIB, 50 * MIB);
    // Waits under two thirds of the reads: twice the window would not come a quarter faster.
    answer(&mut b, FIRST_WINDOW, pace(10, 16));
    answer(&mut b, FIRST_WINDOW, pace(20, 16));
    answer(&mut b, FIRST_WINDOW, pace(10, 20));
    assert_eq!(b.window(1), FIRST_WINDOW);
    // Answers short of seven eighths of the window: the broker had no more to send.
    let mut b = PrefetchBudget::new(200 * MIB, 50 * MIB);
    for _ in 0..3 {
        answer(&mut b, FIRST_WINDOW - FIRST_WINDOW / 8 - 1, pace(50, 1));
    }
    assert_eq!(b.window(1), FIRST_WINDOW);
    // Requests the budget cut below the window say nothing of it.
    let mut b = PrefetchBudget::new(FIRST_WINDOW / 2, 50 * MIB);
    for _ in 0..3 {
        assert_eq!(
            answer(&mut b, FIRST_WINDOW / 2, pace(50, 1)),
            FIRST_WINDOW / 2
        );
    }
    assert_eq!(b.window(1), FIRST_WINDOW);
}

#[test]
fn a_first_window_of_fetch_max_bytes_asks_for_it_from_the_first() {
    let mut b = PrefetchBudget::with_first_window(200 * MIB, 50 * MIB, 50 * MIB);
    assert_eq!(answer(&mut b, 50 * MIB, pace(50, 1)), 50 * MIB);
    // A smaller fetch.max.bytes is the window whatever the first.
    let mut b = PrefetchBudget::new(200 * MIB, MIB);
    assert_eq!(b.window(1), MIB);
    answer(&mut b, MIB, pace(50, 1));
    answer(&mut b, MIB, pace(50, 1));
    assert_eq!(answer(&mut b, MIB, pace(50, 1)), MIB);
}

#[test]
fn one_request_per_broker() {
    let mut b = PrefetchBudget::new(1000, 100);
    assert!(b.grant(1, tps(0..1)).is_some());
    assert!(b.is_in_flight(1));
    assert_eq!(b.grant(1, tps(1..2)), None);
    b.failed(1);
    assert_eq!(b.in_flight(), 0);
    assert!(b.grant(1, tps(1..2)).is_some());
}

#[test]
fn buffered_partitions_wait_until_drained() {
    let mut b = PrefetchBudget::new(1000, 500);
    b.grant(1, tps(0..2));
    b.complete(1, [(tp(0), 300), (tp(1), 0)]);
    assert_eq!(b.buffered(), 300);
    assert_eq!(b.buffered_for(&tp(0)), 300);
    assert_eq!(b.in_flight(), 0);
    let g = b.grant(1, tps(0..2)).expect("partition 1 is drained");
    assert_eq!(g.partitions, tps([1]));
    b.failed(1);
    b.consumed(&tp(0), 200);
    assert_eq!(b.grant(1, tps([0])), None);
    b.consumed(&tp(0), 500);
    assert_eq!(b.buffered(), 0);
    assert!(b.grant(1, tps([0])).is_some());
}

#[test]
fn decompressed_bytes_held_count_until_given_back() {
    let mut b = PrefetchBudget::new(1000, 500);
    b.grant(1, tps(0..2));
    b.complete(1, [(tp(0), 300)]);
    // A batch decompressed for a part, its rest waiting: 250 more held for partition 0.
    b.hold(&tp(0), 250);
    assert_eq!((b.buffered(), b.buffered_for(&tp(0))), (550, 550));
    assert_eq!(b.available(), 450);
    // The next part hands that batch out: its bytes go back, the answer's stay.
    b.consumed(&tp(0), 250);
    assert_eq!(b.buffered_for(&tp(0)), 300);
    // Nothing is held for a partition whose records were dropped.
    b.discard(&tp(0));
    b.hold(&tp(0), 100);
    b.hold(&tp(1), 100);
    assert_eq!(b.buffered(), 0);
}

#[test]
fn the_free_list_share_is_what_the_budget_has_not_buffered() {
    let mut b = PrefetchBudget::new(1000, 500);
    assert_eq!(b.free_list_share(), 1000);
    // A reservation is not memory yet: the share stays.
    b.grant(1, tps(0..2));
    assert_eq!(b.free_list_share(), 1000);
    b.complete(1, [(tp(0), 300), (tp(1), 200)]);
    assert_eq!(b.free_list_share(), 500);
    b.hold(&tp(0), 100);
    assert_eq!(b.free_list_share(), 400);
    b.consumed(&tp(0), 400);
    assert_eq!(b.free_list_share(), 800);
    b.discard(&tp(1));
    assert_eq!(b.free_list_share(), 1000);
    // Past the budget (a first batch larger than asked, KIP-74): no idle buffer is kept.
    b.grant(1, tps([0]));
    b.complete(1, [(tp(0), 1500)]);
    assert_eq!(b.free_list_share(), 0);
}

#[test]
fn an_oversized_answer_blocks_requests_until_drained_below_the_budget() {
    let mut b = PrefetchBudget::new(1000, 1000);
    b.grant(1, tps([0, 1]));
    // KIP-74: the first batch comes whole even when larger than the request's limit.
    b.complete(1, [(tp(0), 1500)]);
    assert_eq!(b.available(), 0);
    assert_eq!(b.grant(2, tps([1])), None);
    b.consumed(&tp(0), 600);
    let g = b.grant(2, tps([1])).expect("below the budget again");
    assert_eq!(g.max_bytes, 100);
}

#[test]
fn discard_and_remove_give_the_bytes_back() {
    let mut b = PrefetchBudget::new(1000, 1000);
    b.grant(1, tps(0..2));
    b.complete(1, [(tp(0), 100), (tp(1), 200)]);
    b.discard(&tp(0));
    assert_eq!(b.buffered(), 200);
    b.remove(&tp(1));
    assert_eq!(b.buffered(), 0);
    // Consuming an unknown or drained partition is a no-op.
    b.consumed(&tp(9), 10);
    assert_eq!(b.buffered(), 0);
}

#[test]
fn partitions_that_got_data_go_to_the_back() {
    let mut b = PrefetchBudget::new(10_000, 1000);
    let g = b.grant(1, tps(0..4)).expect("budget");
    assert_eq!(g.partitions, tps(0..4));
    b.complete(1, [(tp(0), 10), (tp(1), 10)]);
    b.consumed(&tp(0), 10);
    b.consumed(&tp(1), 10);
    let g = b.grant(1, tps(0..4)).expect("budget");
    assert_eq!(g.partitions, tps([2, 3, 0, 1]));
}

#[test]
fn duplicate_candidates_are_asked_once() {
    let mut b = PrefetchBudget::new(1000, 1000);
    let g = b.grant(1, tps([0, 1, 0])).expect("budget");
    assert_eq!(g.partitions, tps([0, 1]));
}

#[derive(Debug, Clone)]
enum Op {
    Grant(i32),
    Complete(i32, Vec<usize>),
    Fail(i32),
    Consume(i32, usize),
    Discard(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3i32).prop_map(Op::Grant),
        (0..3i32, prop::collection::vec(0usize..400, 0..6)).prop_map(|(b, v)| Op::Complete(b, v)),
        (0..3i32).prop_map(Op::Fail),
        (0..6i32, 0usize..400).prop_map(|(p, n)| Op::Consume(p, n)),
        (0..6i32).prop_map(Op::Discard),
    ]
}

proptest! {
    /// Brokers that keep to each request's `max_bytes` never make the consumer hold more than
    /// the budget, buffered and reserved together; a buffered partition is never fetched again.
    #[test]
    fn budget_is_never_exceeded(ops in prop::collection::vec(op(), 0..80)) {
        let mut b = PrefetchBudget::new(1000, 400);
        let mut grants: BTreeMap<i32, FetchGrant> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Grant(broker) => {
                    // Broker b serves partitions 2b and 2b+1.
                    if let Some(g) = b.grant(broker, tps([2 * broker, 2 * broker + 1])) {
                        prop_assert!(!grants.contains_key(&broker));
                        for p in &g.partitions {
                            prop_assert_eq!(b.buffered_for(p), 0);
                        }
                        grants.insert(broker, g);
                    }
                }
                Op::Complete(broker, sizes) => {
                    let Some(g) = grants.remove(&broker) else { continue };
                    // Fill partitions in request order up to the grant, as a broker does.
                    let mut left = g.max_bytes;
                    let mut received = Vec::new();
                    for (p, size) in g.partitions.iter().zip(sizes) {
                        let n = size.min(left);
                        left -= n;
                        received.push((p.clone(), n));
                    }
                    b.complete(broker, received);
                }
                Op::Fail(broker) => {
                    grants.remove(&broker);
                    b.failed(broker);
                }
                Op::Consume(p, n) => b.consumed(&tp(p), n),
                Op::Discard(p) => b.discard(&tp(p)),
            }
            prop_assert!(b.buffered() + b.in_flight() <= 1000);
            let reserved: usize = grants.values().map(|g| g.max_bytes).sum();
            prop_assert_eq!(b.in_flight(), reserved);
        }
    }

    /// A broker that fills its answer in request order until `max_bytes`, with partitions that
    /// always have more data than fits: the rotation serves every partition within
    /// ⌈partitions / served per answer⌉ rounds.
    #[test]
    fn rotation_serves_every_partition(n in 1i32..20, per_answer in 1usize..5) {
        let mut b = PrefetchBudget::new(1_000_000, 100 * per_answer);
        let mut last_served: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        let rounds = (n as usize).div_ceil(per_answer);
        for round in 0..rounds * 4 {
            let g = b.grant(1, tps(0..n)).expect("everything drained");
            let received: Vec<_> = g.partitions.iter().take(per_answer).map(|p| (p.clone(), 100)).collect();
            for (p, _) in &received {
                last_served.insert(p.clone(), round);
            }
            b.complete(1, received.clone());
            for (p, bytes) in received {
                b.consumed(&p, bytes);
            }
            if round + 1 >= rounds {
                for p in tps(0..n) {
                    let last = last_served.get(&p).copied();
                    prop_assert!(last.is_some_and(|l| round - l < rounds), "{:?} starved at round {}", p, round);
                }
            }
        }
    }
}
