use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("orders", partition)
}

fn record(partition: i32, offset: i64, key: Option<&str>) -> Record {
    Record::new(
        "orders",
        partition,
        offset,
        key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        None,
    )
}

/// Starts records until none may start: their (partition, offset)s.
fn start_all(s: &mut Scheduler) -> Vec<(Unit, (i32, i64))> {
    std::iter::from_fn(|| s.start())
        .map(|(unit, r)| (unit, (r.partition, r.offset)))
        .collect()
}

fn offsets(started: &[(Unit, (i32, i64))]) -> Vec<(i32, i64)> {
    started.iter().map(|(_, at)| *at).collect()
}

#[test]
fn under_partition_a_partition_runs_one_record_at_a_time() {
    let mut s = Scheduler::new(Ordering::Partition, 16);
    for offset in 0..3 {
        s.push(record(0, offset, Some("a")));
        s.push(record(1, offset, Some("b")));
    }
    let started = start_all(&mut s);
    assert_eq!(offsets(&started), [(0, 0), (1, 0)]);
    assert_eq!(
        (s.running(), s.waiting(&tp(0)), s.waiting_total()),
        (2, 2, 4)
    );
    s.finished(&started[0].0);
    assert_eq!(offsets(&start_all(&mut s)), [(0, 1)]);
}

#[test]
fn under_key_keys_run_side_by_side_and_a_key_in_offset_order() {
    let mut s = Scheduler::new(Ordering::Key, 16);
    for (offset, key) in ["a", "b", "a", "c", "b"].into_iter().enumerate() {
        s.push(record(0, offset as i64, Some(key)));
    }
    let started = start_all(&mut s);
    assert_eq!(offsets(&started), [(0, 0), (0, 1), (0, 3)]);
    assert_eq!(s.unit_len(&started[0].0), 2);
    s.finished(&started[1].0);
    s.finished(&started[0].0);
    // The units go in the order their heads became ready: b's, then a's.
    assert_eq!(offsets(&start_all(&mut s)), [(0, 4), (0, 2)]);
}

#[test]
fn records_without_a_key_are_ordered_with_nothing() {
    let mut s = Scheduler::new(Ordering::Key, 16);
    s.push(record(0, 0, None));
    s.push(record(0, 1, None));
    s.push(record(0, 2, Some("a")));
    assert_eq!(offsets(&start_all(&mut s)), [(0, 0), (0, 1), (0, 2)]);
    let mut s = Scheduler::new(Ordering::Unordered, 16);
    for offset in 0..3 {
        s.push(record(0, offset, Some("a")));
    }
    assert_eq!(start_all(&mut s).len(), 3);
}

#[test]
fn no_more_than_max_running_run_at_once() {
    let mut s = Scheduler::new(Ordering::Unordered, 2);
    for offset in 0..5 {
        s.push(record(0, offset, None));
    }
    let started = start_all(&mut s);
    assert_eq!(offsets(&started), [(0, 0), (0, 1)]);
    s.finished(&started[1].0);
    assert_eq!(offsets(&start_all(&mut s)), [(0, 2)]);
    // Zero is taken as one.
    let mut s = Scheduler::new(Ordering::Unordered, 0);
    s.push(record(0, 0, None));
    s.push(record(0, 1, None));
    assert_eq!(start_all(&mut s).len(), 1);
}

#[test]
fn a_retry_holds_back_its_key_only() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(Ordering::Key, 16);
    s.push(record(0, 0, Some("a")));
    s.push(record(0, 1, Some("a")));
    s.push(record(0, 2, Some("b")));
    let started = start_all(&mut s);
    assert_eq!(offsets(&started), [(0, 0), (0, 2)]);
    let a = started[0].0.clone();
    s.retry(&a, t0 + Duration::from_secs(1));
    assert_eq!(s.next_retry(), Some(t0 + Duration::from_secs(1)));
    assert_eq!((s.running(), s.waiting(&tp(0))), (1, 2));
    // b goes on; a's records wait for the retry.
    s.finished(&started[1].0);
    assert!(start_all(&mut s).is_empty());
    s.wake(t0 + Duration::from_millis(999));
    assert!(start_all(&mut s).is_empty());
    s.wake(t0 + Duration::from_secs(1));
    assert_eq!(s.next_retry(), None);
    assert_eq!(offsets(&start_all(&mut s)), [(0, 0)]);
    s.finished(&a);
    assert_eq!(offsets(&start_all(&mut s)), [(0, 1)]);
}

#[test]
fn a_partition_leaving_takes_its_records_running_or_not() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(Ordering::Key, 16);
    for offset in 0..4 {
        s.push(record(0, offset, Some(["a", "b"][offset as usize % 2])));
        s.push(record(1, offset, Some("c")));
    }
    let started = start_all(&mut s);
    assert_eq!(offsets(&started), [(0, 0), (1, 0), (0, 1)]);
    s.retry(&started[2].0, t0 + Duration::from_secs(1));
    assert_eq!(s.leaving(&[tp(0)]), 1);
    assert_eq!(
        (s.running(), s.waiting(&tp(0)), s.waiting_total()),
        (1, 0, 3)
    );
    assert_eq!(s.next_retry(), None);
    // Its work's answers change nothing; the other partition goes on.
    s.finished(&started[0].0);
    s.finished(&started[1].0);
    assert_eq!(offsets(&start_all(&mut s)), [(1, 1)]);
}

/// Starts what may start, checking each: its unit, never two of a unit at once, a unit's
/// records in offset order, at most `max` running.
fn start_checked(
    s: &mut Scheduler,
    running: &mut BTreeMap<Unit, (i32, i64)>,
    last_started: &mut BTreeMap<Unit, i64>,
    ordering: Ordering,
    max: usize,
    seed: u64,
) {
    while let Some((unit, r)) = s.start() {
        assert_eq!(ordering.unit(&r), unit);
        assert!(
            running
                .insert(unit.clone(), (r.partition, r.offset))
                .is_none(),
            "seed {seed}: two records of {unit:?} at once"
        );
        if let Some(&before) = last_started.get(&unit) {
            assert!(r.offset >= before, "seed {seed}: {unit:?} went back");
        }
        last_started.insert(unit, r.offset);
    }
    assert!(
        running.len() <= max && running.len() == s.running(),
        "seed {seed}"
    );
}

/// Random runs: records of two partitions with a few keys pushed in offset order, started,
/// finished, retried after a while and partitions leaving and coming back, under every
/// ordering and a few limits. After every step: at most `max_running` run, never two records
/// of a unit; a unit starts its records in offset order (a retry starts the same one again);
/// the counts agree with what is out. At the end every record pushed and not taken by a
/// partition leaving finished exactly once.
#[test]
fn random_runs_keep_the_order_and_lose_nothing() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let ordering = [Ordering::Partition, Ordering::Key, Ordering::Unordered][seed as usize % 3];
        let max = [1, 2, 5, 64][rng.usize(..4)];
        let mut s = Scheduler::new(ordering, max);
        let t0 = Instant::now();
        let mut now = t0;
        let mut next = [0i64; 2];
        let mut pushed: BTreeSet<(i32, i64)> = BTreeSet::new();
        let mut finished: BTreeSet<(i32, i64)> = BTreeSet::new();
        let mut running: BTreeMap<Unit, (i32, i64)> = BTreeMap::new();
        let mut last_started: BTreeMap<Unit, i64> = BTreeMap::new();
        for _ in 0..400 {
            match rng.u8(..10) {
                0..=2 => {
                    let p = rng.i32(0..2);
                    for _ in 0..rng.usize(1..5) {
                        let offset = next[p as usize];
                        next[p as usize] += rng.i64(1..3);
                        let key = ["a", "b", "c"][rng.usize(..3)];
                        let key = (rng.u8(..8) != 0).then_some(key);
                        s.push(record(p, offset, key));
                        pushed.insert((p, offset));
                    }
                }
                3..=5 => {
                    if let Some(unit) = running
                        .keys()
                        .nth(rng.usize(..running.len().max(1)))
                        .cloned()
                    {
                        let done = running.remove(&unit).unwrap_or_default();
                        assert!(
                            finished.insert(done),
                            "seed {seed}: {done:?} finished twice"
                        );
                        s.finished(&unit);
                    }
                }
                6 => {
                    if let Some(unit) = running.keys().next().cloned() {
                        running.remove(&unit);
                        s.retry(&unit, now + Duration::from_millis(rng.u64(1..500)));
                    }
                }
                7 | 8 => {
                    now += Duration::from_millis(rng.u64(0..300));
                    s.wake(now);
                }
                _ => {
                    let p = rng.i32(0..2);
                    let gone = running.keys().filter(|u| u.partition() == &tp(p)).count();
                    assert_eq!(s.leaving(&[tp(p)]), gone, "seed {seed}");
                    running.retain(|u, _| u.partition() != &tp(p));
                    last_started.retain(|u, _| u.partition() != &tp(p));
                    // The next owner (this member again, say) reads them from the start.
                    pushed.retain(|(q, o)| *q != p || finished.contains(&(*q, *o)));
                }
            }
            start_checked(&mut s, &mut running, &mut last_started, ordering, max, seed);
            let waiting: usize = (0..2).map(|p| s.waiting(&tp(p))).sum();
            assert_eq!(waiting, s.waiting_total(), "seed {seed}");
        }
        // The end: every retry due, every record finished as it runs.
        loop {
            s.wake(now + Duration::from_secs(3600));
            start_checked(&mut s, &mut running, &mut last_started, ordering, max, seed);
            let Some(unit) = running.keys().next().cloned() else {
                break;
            };
            let done = running.remove(&unit).unwrap_or_default();
            assert!(
                finished.insert(done),
                "seed {seed}: {done:?} finished twice"
            );
            s.finished(&unit);
        }
        assert_eq!(s.waiting_total(), 0, "seed {seed}");
        assert!(pushed.is_subset(&finished), "seed {seed}: a record lost");
    }
}
