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
