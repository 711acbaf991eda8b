//! The `consumer` target: kcon-sim's whole-consumer simulation ([`kcon_sim::consumer::World`]:
//! kcon's `Consumer` driver, its group member, commit machine and fetch loop, against kcon-sim's
//! coordinators and partition logs on a virtual clock), driven by an interpreter over the fuzz
//! bytes.
//!
//! [`simulate`] reads its input as a setup byte and then operations, one per step, each an op
//! byte and the bytes it reads (missing bytes read as zero):
//!
//! - setup: bit 0 the group protocol (0 classic, 1 KIP-848), bits 1-2 the classic assignor
//!   (`range`, `roundrobin`, `cooperative-sticky`, `cooperative-sticky`), bit 3 the
//!   applications store their offsets themselves (`store_elsewhere`, as a processor does),
//!   bit 4 `enable.auto.commit=false`.
//! - ops (op byte modulo 14): start a consumer (subscribing to `t`, or `t` and `u`); produce
//!   records; let time pass; an application stops calling, or calls again; pause or resume an
//!   owned partition; seek an owned partition back (never past a record nobody was handed);
//!   commit (sync or async); subscribe anew; close; crash; cut a consumer off the network; the
//!   classic coordinator fails over; the KIP-848 coordinator answers the next heartbeats with
//!   errors.
//!
//! After every op, besides the simulation's own checks after every step (no partition owned
//! by two live consumers at once, unless a fault may have evicted a member without its
//! knowing; under KIP-848 the coordinator never lets two members hold a partition and accepts
//! commits only from the holder at its current epoch; no commit past a record no consumer was
//! handed; every machine's timers after now once fired): the op took at most
//! [`STEPS_PER_OP`] steps, and the records each consumer was handed out of a partition went
//! forward, without a repeat, but after a seek of it or a listener call naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon_core::TopicPartition;
use kcon_offsets::CommitKind;

use kcon_sim::code;
use kcon_sim::consumer::{App, ClientConfig, Doing, Happened, World};

use crate::Input;

/// At most this many simulation steps per op: an op that takes more spins.
pub const STEPS_PER_OP: u64 = 50_000;

/// At most this many consumers.
const CLIENTS: usize = 4;

/// At most this many ops are read.
const OPS: usize = 400;

/// The topics: `t` with three partitions, `u` with two.
const TOPICS: [(&str, i32); 2] = [("t", 3), ("u", 2)];

/// What a run did, for tests that check a seed does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerRun {
    /// Records handed to applications, over all consumers.
    pub handed: usize,
    /// Commits the coordinator accepted.
    pub commits: usize,
    /// Consumers started.
    pub consumers: usize,
}

/// Runs the simulation over `data`; panics when an invariant breaks.
pub fn simulate(data: &[u8]) -> ConsumerRun {
    let mut bytes = Input { data, pos: 0 };
    let setup = bytes.u8();
    let kip848 = setup & 1 == 1;
    let strategy = [
        "range",
        "roundrobin",
        "cooperative-sticky",
        "cooperative-sticky",
    ][usize::from((setup >> 1) & 3)];
    let stores = setup & 8 != 0;
    let no_auto_commit = setup & 16 != 0;
    let mut config = if kip848 {
        ClientConfig::consumer_protocol()
    } else {
        ClientConfig::new(strategy)
    };
    if no_auto_commit {
        config = config.set("enable.auto.commit", "false");
    }
    let app = App {
        stores,
        ..App::default()
    };

    let mut w = World::new(&TOPICS);
    w.produce("t", 20);
    w.produce("u", 10);
    let mut order = Order::default();
    let mut run = ConsumerRun::default();
    let mut ops = 0;
    while bytes.pos < data.len() && ops < OPS {
        ops += 1;
        let before = w.steps();
        let op = bytes.u8() % 14;
        let arg = bytes.u8();
        let live: Vec<usize> = (0..w.clients.len())
            .filter(|i| w.clients[*i].is_live())
            .collect();
        let pick = |a: u8| -> Option<usize> {
            (!live.is_empty()).then(|| live[usize::from(a) % live.len()])
        };
        match op {
            0 => {
                if w.clients.len() < CLIENTS {
                    let topics: &[&str] = if arg & 1 == 0 { &["t"] } else { &["t", "u"] };
                    w.start(config.clone(), topics, app.clone());
                    run.consumers += 1;
                }
            }
            1 => {
                let topic = TOPICS[usize::from(arg & 1)].0;
                w.produce(topic, usize::from(arg >> 1) % 40 + 1);
            }
            2 => w.run_for(Duration::from_millis(u64::from(arg) * 50)),
            3 => {
                if let Some(i) = pick(arg) {
                    w.go_away(i);
                }
            }
            4 => {
                if let Some(i) = pick(arg) {
                    w.come_back(i);
                }
            }
            5 | 6 => {
                let which = bytes.u8();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let c = &w.clients[i];
                    let candidates: Vec<TopicPartition> = if op == 5 {
                        c.owned()
                            .iter()
                            .filter(|tp| !c.consumer().paused().contains(*tp))
                            .cloned()
                            .collect()
                    } else {
                        c.consumer().paused().iter().cloned().collect()
                    };
                    if !candidates.is_empty() {
                        let tp = candidates[usize::from(which) % candidates.len()].clone();
                        if op == 5 {
                            w.pause(i, &tp);
                        } else {
                            w.resume(i, &tp);
                        }
                    }
                }
            }
            7 => {
                let which = bytes.u8();
                let back = bytes.u8();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let owned: Vec<TopicPartition> = w.clients[i].owned().iter().cloned().collect();
                    if !owned.is_empty() {
                        let tp = owned[usize::from(which) % owned.len()].clone();
                        // Never past a record nobody was handed: a seek forward skips records
                        // on the application's word, and a commit may then pass them.
                        let first_unhanded = first_unhanded(&w, &tp);
                        let offset = (first_unhanded - i64::from(back)).max(0);
                        w.seek(i, &tp, offset);
                    }
                }
            }
            8 => {
                if let Some(i) = pick(arg) {
                    let kind = if arg & 0x80 == 0 {
                        CommitKind::Sync
                    } else {
                        CommitKind::Async
                    };
                    w.commit(i, kind);
                }
            }
            9 => {
                let which = bytes.u8();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let topics: &[&str] = match which % 3 {
                        0 => &["t"],
                        1 => &["u"],
                        _ => &["t", "u"],
                    };
                    w.subscribe(i, topics);
                }
            }
            10 => {
                if let Some(i) = pick(arg) {
                    w.close(i);
                }
            }
            11 => {
                if let Some(i) = pick(arg) {
                    w.crash(i);
                }
            }
            12 => {
                let ms = bytes.u8();
                if let Some(i) = pick(arg) {
                    // A member cut off may be evicted before it can know: another may be given
                    // its partitions meanwhile, which the group protocols allow.
                    w.strict_ownership = false;
                    w.isolate(i, Duration::from_millis(u64::from(ms) * 100));
                }
            }
            13 => {
                if kip848 {
                    // Retriable and fencing errors of ConsumerGroupHeartbeat; a fenced member
                    // loses its partitions when it hears of it, after they may have moved.
                    const ERRORS: [i16; 5] = [
                        code::COORDINATOR_NOT_AVAILABLE,
                        code::NOT_COORDINATOR,
                        code::COORDINATOR_LOAD_IN_PROGRESS,
                        code::FENCED_MEMBER_EPOCH,
                        code::UNKNOWN_MEMBER_ID,
                    ];
                    let error = ERRORS[usize::from(arg) % ERRORS.len()];
                    if matches!(error, code::FENCED_MEMBER_EPOCH | code::UNKNOWN_MEMBER_ID) {
                        w.strict_ownership = false;
                    }
                    w.consumer_coordinator.inject(&[error]);
                } else {
                    let now = w.now;
                    w.coordinator.fail_over(now);
                }
            }
            _ => unreachable!("op modulo 14"),
        }
        let took = w.steps() - before;
        assert!(
            took <= STEPS_PER_OP,
            "op {op} took {took} steps\n{}",
            w.dump(40)
        );
        order.check(&w);
    }
    // The groups settle once the faults are over: every record is handed out in the end.
    run.handed = w.clients.iter().map(|c| c.processed.len()).sum();
    run.commits = w.commits.len();
    run
}

/// Whether consumer `i` is running and its application may call it.
fn usable(w: &World, i: usize) -> bool {
    let c = &w.clients[i];
    c.is_live() && c.doing != Doing::Closing && c.consumer().usable().is_ok()
}

/// The first offset of `tp` no consumer was handed.
fn first_unhanded(w: &World, tp: &TopicPartition) -> i64 {
    let handed: std::collections::BTreeSet<i64> = w
        .clients
        .iter()
        .flat_map(|c| c.processed.iter())
        .filter(|(p, _)| p == tp)
        .map(|(_, o)| *o)
        .collect();
    (0..).find(|o| !handed.contains(o)).unwrap_or(0)
}

/// Each consumer's hand-outs, read from its log as it grows: per partition, the next offset
/// it may be handed at the least.
#[derive(Default)]
struct Order {
    /// Per consumer, how far its log was read, and per partition the offset after the last
    /// record handed out.
    read: Vec<(usize, BTreeMap<TopicPartition, i64>)>,
}

impl Order {
    fn check(&mut self, w: &World) {
        self.read.resize_with(w.clients.len(), Default::default);
        for (i, c) in w.clients.iter().enumerate() {
            let (read, next) = &mut self.read[i];
            for (_, happened) in &c.log()[*read..] {
                match happened {
                    Happened::Handed(tp, first, last) => {
                        if let Some(expected) = next.get(tp) {
                            assert!(
                                first >= expected,
                                "consumer {i} was handed {tp}@{first} after @{}\n{}",
                                expected - 1,
                                w.dump(40)
                            );
                        }
                        assert!(first <= last);
                        next.insert(tp.clone(), last + 1);
                    }
                    Happened::Seeked(tp, _) => {
                        next.remove(tp);
                    }
                    Happened::Listener(_, partitions) | Happened::Leaving(partitions) => {
                        for tp in partitions {
                            next.remove(tp);
                        }
                    }
                    _ => {}
                }
            }
            *read = c.log().len();
        }
    }
}

/// Runs the simulation over `data` (the target's body).
pub fn run(data: &[u8]) {
    simulate(data);
}

/// Hand-made seeds for `corpus/consumer/`, each checked here to hand records out and commit;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops: 0 start (arg bit 0: also `u`), 1 produce, 2 time (arg × 50 ms), 3 away, 4 back,
    // 5 pause, 6 resume, 7 seek, 8 commit, 9 subscribe, 10 close, 11 crash, 12 isolate,
    // 13 coordinator fault.
    let time = [2, 200];
    let two_join = [&[0, 0][..], &[0, 1], &time, &time, &[1, 40], &time, &time].concat();
    let classic_range = [&[0][..], &two_join].concat();
    let kip848 = [&[1][..], &two_join].concat();
    // Cooperative-sticky, storing itself, no auto-commit: a third joins, commits, one closes.
    let cooperative = [
        &[0b0_1100][..],
        &two_join,
        &[0, 0],
        &time,
        &[8, 0],
        &[8, 0x81],
        &time,
        &[10, 1],
        &time,
        &time,
        &[8, 0],
        &time,
    ]
    .concat();
    // Pause, seek back, resume, a fail-over (classic) or a retriable heartbeat error (KIP-848).
    let faults = |setup: u8| {
        [
            &[setup][..],
            &two_join,
            &[5, 0, 0],
            &[7, 1, 0, 5],
            &time,
            &[6, 0, 0],
            &[13, 0],
            &time,
            &[1, 20],
            &[9, 0, 2],
            &time,
            &[3, 0],
            &time,
            &[4, 0],
            &time,
        ]
        .concat()
    };
    // Crash and isolation: the others take the partitions over.
    let crash = [
        &[0b0100][..],
        &two_join,
        &[0, 1],
        &time,
        &[11, 0],
        &[12, 1, 30],
        &time,
        &time,
        &time,
        &[1, 30],
        &time,
    ]
    .concat();
    vec![
        ("classic-range", classic_range),
        ("kip848", kip848),
        ("cooperative-stores-commits", cooperative),
        ("classic-faults", faults(0b0100)),
        ("kip848-faults", faults(1)),
        ("crash-isolate", crash),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classic_group_hands_records_out_and_commits() {
        // Setup 0 (classic, range); start two consumers, let time pass, produce, time.
        let run = simulate(&[0, 0, 0, 0, 1, 2, 200, 1, 20, 2, 200, 2, 200]);
        assert_eq!(run.consumers, 2);
        assert!(run.handed >= 60, "{run:?}");
        assert!(run.commits > 0, "{run:?}");
    }

    #[test]
    fn a_kip848_group_hands_records_out_and_commits() {
        let run = simulate(&[1, 0, 1, 0, 0, 2, 200, 8, 0, 2, 200, 2, 200]);
        assert_eq!(run.consumers, 2);
        assert!(run.handed >= 60, "{run:?}");
        assert!(run.commits > 0, "{run:?}");
    }

    /// A consumer whose application stopped calling past `max.poll.interval.ms` leaves the
    /// group, its member telling it the partitions are lost; the coordinator hands them to
    /// another before the application calls again and hears of it (fuzz target `consumer`).
    #[test]
    fn partitions_lost_by_an_application_away_may_be_another_consumers_before_it_hears() {
        let input = [
            0x0c, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc8, 0x02, 0xc8, 0x01, 0x28, 0x06, 0xc8, 0x02,
            0x02, 0xc8, 0x33, 0x08, 0xc8, 0xfe, 0xff, 0xff, 0xff, 0x00, 0x04, 0x02, 0xc8, 0x08,
            0x00, 0x08, 0x81, 0x02, 0xc8, 0x0a, 0x01, 0x02, 0xc8, 0x02, 0xc8, 0x09, 0x00, 0x02,
            0xc8,
        ];
        simulate(&input);
    }

    #[test]
    fn every_seed_hands_records_out_and_commits() {
        for (name, data) in seeds() {
            let run = simulate(&data);
            assert!(run.consumers >= 2, "{name}: {run:?}");
            assert!(run.handed >= 30, "{name}: {run:?}");
            assert!(run.commits > 0, "{name}: {run:?}");
        }
    }

    /// The inputs that once failed, kept in the corpus as `regression-*`, hold the invariants
    /// (a KIP-848 consumer fenced while its close's commit waited, then let in again with a
    /// new epoch: the commit went under that epoch with the partition the coordinator had
    /// given to another member).
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("consumer");
        for (_, data) in &regressions {
            run(data);
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("consumer", seeds());
    }
}
