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

/// Random runs of the scheduler, through the interpreter the fuzz target `ordering` runs
/// (`check_run`: records of two partitions with a few keys pushed in offset order, started,
/// finished, retried after a while, time passing, partitions leaving; its checks after every
/// step and at the end), over 300 pseudo-random inputs.
#[test]
fn random_runs_keep_the_order_and_lose_nothing() {
    let mut total = OrderingRun::default();
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let data: Vec<u8> = (0..rng.usize(1..1200)).map(|_| rng.u8(..)).collect();
        let run = check_run(&data);
        total.started += run.started;
        total.finished += run.finished;
        total.retried += run.retried;
        total.left += run.left;
    }
    assert!(
        total.finished > 10_000 && total.retried > 1_000 && total.left > 1_000,
        "{total:?}"
    );
}
