//! The `group_sim` target: kcon-sim's deterministic classic-group simulation
//! ([`kcon_sim::group::Sim`]), driven by an interpreter over the fuzz bytes. The sim checks its
//! own invariants after every step (no partition owned by two members while
//! `strict_ownership`, every application's view equal to its machine's assignment, no timer
//! left in the past) and panics when one breaks.
//!
//! The first byte picks the coordinator (`group.initial.rebalance.delay.ms` 0 or 3 s,
//! `group.max.size` unbounded or 2 to 4, Kafka's or Tansu's way of answering SyncGroup, whether
//! injected faults may drop requests) and the next three the partition counts of topics `t`,
//! `u` and `v` (1 to 8). Then each op reads an op byte (modulo 12) and what it needs (a
//! missing byte reads as 0), at most [`MAX_OPS`] ops:
//!
//! | op | what |
//! |---|---|
//! | 0 | add a member (at most [`MAX_MEMBERS`]): range, roundrobin, cooperative-sticky, range then roundrobin, or cooperative-sticky then range, static or not, session timeout 6/10/30 s, `max.poll.interval.ms` 10/30/60 s, a non-empty subset of the topics, revocations acknowledged at once or after up to 1.5 s; it starts at once |
//! | 1 | (re)start a member that is not running |
//! | 2 | crash a member |
//! | 3 | close a member |
//! | 4 | subscribe a member to a non-empty subset of the topics (a dynamic member only; see `step`) |
//! | 5 | unsubscribe a member |
//! | 6 | grow a topic by 1 to 4 partitions (at most [`MAX_PARTITIONS`]) |
//! | 7 | a member's application stops polling |
//! | 8 | it polls again, every 100 ms to 3 s |
//! | 9 | arm a fault: any `Api`, one member's or anyone's, an error code (of the classic list, or one kcon does not know), a lost connection or a dropped request |
//! | 10 | move the coordinator to broker 1 to 3, loading for 0 to 6 s |
//! | 11 | run for 0 to 25.5 s of virtual time |
//!
//! Every op but 11 also runs 0 to 2.55 s. Each op may take at most [`MAX_STEPS_PER_OP`] steps
//! of the sim: more is a loop without progress.
//!
//! At the end the armed faults are disarmed, every running member polls again (every
//! 500 ms), and a running member that its application unsubscribed (state `Idle`) subscribes
//! again to its topics: a member without a subscription is not in the group, and
//! [`Sim::is_settled`] wants every running member Stable. Then within [`SETTLE`] of virtual time
//! the group must settle, settle again after [`STAYS_SETTLED`] more, and [`Sim::assert_settled`]
//! holds: every live member Stable in the coordinator's generation and every partition of the
//! subscribed topics owned exactly once.
//!
//! A dropped request (`Injected::Drop`) turns `strict_ownership` off for the rest of the run:
//! with the classic protocol a member cut off from the coordinator cannot know it was evicted
//! (see [`Sim::strict_ownership`]); the setup byte's bit 5 forbids drops (they become lost
//! connections) so that most runs keep the check.

use std::cell::Cell;
use std::time::Duration;

use kcon_sim::coordinator::CoordinatorConfig;
use kcon_sim::group::{Api, App, GROUP_ERRORS, Injected, RevocationPolicy, Sim, config};

use crate::Input;
use kcon_group::{Member, MemberState};

/// Ops beyond this are ignored: the run stays short.
pub const MAX_OPS: usize = 64;
/// Log entries each member keeps at least (and at most twice as many).
const LOG_LIMIT: usize = 100;
/// Members at most.
pub const MAX_MEMBERS: usize = 6;
/// Partitions of one topic at most.
pub const MAX_PARTITIONS: i32 = 24;
/// Steps of the sim one op may take (a step delivers what is due at one instant). A run of
/// 25 s with six members takes a few hundred.
pub const MAX_STEPS_PER_OP: u64 = 20_000;
/// Steps the final settling may take.
pub const MAX_STEPS_TO_SETTLE: u64 = 100_000;
/// The virtual time the group has to settle in at the end: longer than any session or
/// rebalance timeout, backoff or coordinator load.
pub const SETTLE: Duration = Duration::from_secs(600);
/// How long a settled group runs before the final check: longer than the longest
/// `max.poll.interval.ms` of [`MAX_POLL_MS`], after which a leader that withheld partitions for
/// the cooperative follow-up rebalance rejoins when they were never handed over (a static
/// member, the leader itself included, restarted before it rejoined).
pub const STAYS_SETTLED: Duration = Duration::from_secs(65);

const TOPICS: [&str; 3] = ["t", "u", "v"];
/// Members of strategies with none in common fail with INCONSISTENT_GROUP_PROTOCOL; the lists
/// of two overlap with the others.
const STRATEGIES: [&str; 5] = [
    "range",
    "roundrobin",
    "cooperative-sticky",
    "range,roundrobin",
    "cooperative-sticky,range",
];
const SESSION_MS: [&str; 3] = ["6000", "10000", "30000"];
const MAX_POLL_MS: [&str; 3] = ["10000", "30000", "60000"];
const APIS: [Api; 6] = [
    Api::FindCoordinator,
    Api::Metadata,
    Api::JoinGroup,
    Api::SyncGroup,
    Api::Heartbeat,
    Api::LeaveGroup,
];
/// Beside the classic group errors: `UNKNOWN_SERVER_ERROR` and a code kcon does not know.
const OTHER_ERRORS: [i16; 2] = [-1, 999];

/// Runs the interpreter over `data`. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut run = Run::new(data);
    let mut ops = 0;
    while let Some(op) = run.bytes.next() {
        if ops == MAX_OPS {
            break;
        }
        run.step(op);
        ops += 1;
    }
    run.settle();
}

pub(crate) struct Run<'a> {
    bytes: Input<'a>,
    pub(crate) sim: Sim,
    drops: bool,
}

impl<'a> Run<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let mut bytes = Input { data, pos: 0 };
        let setup = bytes.u8();
        let coordinator = CoordinatorConfig {
            initial_rebalance_delay: Duration::from_secs(if setup & 1 == 0 { 0 } else { 3 }),
            max_size: match (setup >> 1) & 3 {
                0 | 1 => usize::MAX,
                n => usize::from(n) + usize::from(setup >> 6),
            },
            sync_looks: (setup & 8 != 0).then(|| Duration::from_secs(1)),
        };
        let counts: Vec<(&str, i32)> = TOPICS
            .iter()
            .map(|t| (*t, i32::from(bytes.u8() % 8) + 1))
            .collect();
        let sim = Sim::new(u64::from(setup), &counts, coordinator);
        Run {
            bytes,
            sim,
            drops: setup & 32 == 0,
        }
    }

    fn member(&mut self) -> Option<usize> {
        let n = self.sim.nodes.len();
        (n > 0).then(|| usize::from(self.bytes.u8()) % n)
    }

    /// A classic group error, `UNKNOWN_SERVER_ERROR` or a code kcon does not know.
    fn error(&mut self) -> i16 {
        let i = usize::from(self.bytes.u8()) % (GROUP_ERRORS.len() + OTHER_ERRORS.len());
        GROUP_ERRORS
            .get(i)
            .copied()
            .unwrap_or_else(|| OTHER_ERRORS[i - GROUP_ERRORS.len()])
    }

    fn topics(&mut self) -> Vec<&'static str> {
        let mask = self.bytes.u8() % 7 + 1;
        TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect()
    }

    fn running(&self, i: usize) -> bool {
        self.sim.nodes[i].machine.is_some()
    }

    pub(crate) fn step(&mut self, op: u8) {
        match op % 12 {
            0 if self.sim.nodes.len() < MAX_MEMBERS => {
                let strategy = self.bytes.pick(&STRATEGIES);
                let flags = self.bytes.u8();
                let instance = format!("static-{}", self.sim.nodes.len());
                let mut c = config(strategy, (flags & 1 == 1).then_some(instance.as_str()));
                c.set("session.timeout.ms", self.bytes.pick(&SESSION_MS))
                    .unwrap();
                c.set("max.poll.interval.ms", self.bytes.pick(&MAX_POLL_MS))
                    .unwrap();
                let topics = self.topics();
                let revocation = match flags >> 1 & 3 {
                    0 | 1 => RevocationPolicy::Immediate,
                    n => RevocationPolicy::After(Duration::from_millis(
                        u64::from(n) * 500 + u64::from(flags >> 3) * 10,
                    )),
                };
                let app = App {
                    revocation,
                    ..App::default()
                };
                let i = self.sim.add(c, &topics, app);
                // The logs serve failure messages (the newest entries) only; whole, a long
                // run's outgrow the allocation bound, which is there for kcon-group's own.
                self.sim.nodes[i].log_limit = Some(LOG_LIMIT);
                self.sim.start(i);
            }
            1 => {
                if let Some(i) = self.member()
                    && !self.sim.nodes[i].is_live()
                {
                    self.sim.start(i);
                }
            }
            2 => {
                if let Some(i) = self.member() {
                    self.sim.crash(i);
                }
            }
            3 => {
                if let Some(i) = self.member() {
                    self.sim.close(i);
                }
            }
            4 => {
                // Dynamic members only, as in kcon-group's own simulation: a static member that
                // restarts with another subscription than the coordinator stored gets its old
                // assignment back without a rebalance (Kafka's coordinator compares only the
                // chosen protocol), so partitions of a topic it no longer subscribes stay with
                // it until something else rebalances the group.
                if let Some(i) = self.member() {
                    let topics = self.topics();
                    if self.sim.nodes[i].config.group_instance_id.is_none() {
                        self.sim.subscribe(i, &topics);
                    }
                }
            }
            5 => {
                if let Some(i) = self.member() {
                    self.sim.unsubscribe(i);
                }
            }
            6 => {
                let topic = self.bytes.pick(&TOPICS);
                let more = i32::from(self.bytes.u8() % 4) + 1;
                let n = self.sim.topics[topic].len() as i32;
                let more = more.min(MAX_PARTITIONS - n);
                if more > 0 {
                    self.sim.grow_topic(topic, more);
                }
            }
            7 => {
                if let Some(i) = self.member() {
                    self.sim.stop_polling(i);
                }
            }
            8 => {
                if let Some(i) = self.member() {
                    let every = Duration::from_millis(100 + u64::from(self.bytes.u8()) * 11);
                    self.sim.resume_polling(i, every);
                }
            }
            9 => {
                let api = self.bytes.pick(&APIS);
                let who = self.bytes.u8();
                let member = match (who & 1, self.sim.nodes.len()) {
                    (1, n) if n > 0 => Some(usize::from(who >> 1) % n),
                    _ => None,
                };
                let kind = self.bytes.u8();
                let mut what = match kind % 4 {
                    0 | 1 => Injected::Error(self.error()),
                    2 => Injected::Transport,
                    _ => Injected::Drop,
                };
                // Metadata answers carry no group error code: faults on it are failures.
                if api == Api::Metadata && matches!(what, Injected::Error(_)) {
                    what = Injected::Transport;
                }
                if what == Injected::Drop {
                    if self.drops {
                        self.sim.strict_ownership = false;
                    } else {
                        what = Injected::Transport;
                    }
                }
                self.sim.inject(api, member, what);
            }
            10 => {
                let to = i32::from(self.bytes.u8() % 3) + 1;
                let load = Duration::from_millis(u64::from(self.bytes.u8()) * 25);
                self.sim.move_coordinator(to, load);
            }
            11 => {
                let d = Duration::from_millis(u64::from(self.bytes.u8()) * 100);
                self.run_for(d, MAX_STEPS_PER_OP);
                return;
            }
            _ => {}
        }
        let d = Duration::from_millis(u64::from(self.bytes.u8()) * 10);
        self.run_for(d, MAX_STEPS_PER_OP);
    }

    /// Runs `d` of virtual time in at most `cap` steps.
    fn run_for(&mut self, d: Duration, cap: u64) {
        let steps = Cell::new(0u64);
        self.sim.run_until_cond(d, |s| {
            steps.set(steps.get() + 1);
            assert!(
                steps.get() <= cap,
                "more than {cap} steps in one op: a loop without progress\n{}",
                s.dump(40)
            );
            false
        });
    }

    /// Ends the run: no more faults, every running member polls and is subscribed; the group
    /// must settle.
    pub(crate) fn settle(&mut self) {
        self.sim.faults.retain(|f| f.fired.is_some());
        for i in 0..self.sim.nodes.len() {
            if self.running(i) {
                self.sim.resume_polling(i, Duration::from_millis(500));
            }
        }
        // A member whose application unsubscribed may still be giving its partitions up (the
        // application acknowledges within about 1.5 s) and then leaving: only then is it idle,
        // and an idle member stays out of the group until its application subscribes again.
        self.run_for(Duration::from_secs(5), MAX_STEPS_PER_OP);
        for i in 0..self.sim.nodes.len() {
            let idle = self.sim.nodes[i]
                .machine
                .as_ref()
                .is_some_and(|m| m.state() == MemberState::Idle);
            if idle {
                let topics: Vec<String> = self.sim.nodes[i].topics.clone();
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                self.sim.subscribe(i, &topics);
            }
        }
        // The polls just scheduled hand every member the current metadata (a leader rejoins
        // when a partition count changed): the group is not settled before they ran.
        self.run_for(Duration::from_secs(2), MAX_STEPS_PER_OP);
        self.settle_within(SETTLE);
        // Settled, it stays so (a retried heartbeat, a handover rejoin may come late), and a
        // leader whose assignment withheld partitions that were never handed over asks for the
        // follow-up rebalance.
        self.run_for(STAYS_SETTLED, MAX_STEPS_PER_OP);
        self.settle_within(SETTLE);
        self.sim.assert_settled();
    }

    fn settle_within(&mut self, limit: Duration) {
        let steps = Cell::new(0u64);
        let settled = self.sim.run_until_cond(limit, |s| {
            steps.set(steps.get() + 1);
            assert!(
                steps.get() <= MAX_STEPS_TO_SETTLE,
                "more than {MAX_STEPS_TO_SETTLE} steps settling\n{}",
                s.dump(40)
            );
            s.is_settled()
        });
        assert!(
            settled,
            "the group did not settle within {limit:?}\n{}",
            self.sim.dump(80)
        );
    }
}

/// A few meaningful inputs: members joining, a crash and restart, faults, a coordinator move.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            // Three members (range; range then roundrobin; cooperative-sticky then range),
            // then 20 s.
            "seed-three-members",
            vec![
                0, 4, 3, 2, //
                0, 0, 0, 1, 1, 6, 100, //
                0, 3, 0, 1, 1, 6, 100, //
                0, 4, 0, 1, 1, 6, 100, //
                11, 200,
            ],
        ),
        (
            // Two cooperative members, one static; the static one crashes and restarts, a
            // topic grows.
            "seed-static-crash-grow",
            vec![
                1, 4, 4, 4, //
                0, 2, 1, 1, 1, 6, 200, //
                0, 2, 4, 1, 1, 6, 200, //
                11, 200, //
                2, 0, 50, //
                1, 0, 50, //
                6, 0, 2, 50, //
                11, 250,
            ],
        ),
        (
            // Two eager members, a heartbeat error, a SyncGroup lost connection, a coordinator
            // move, an unsubscribe and a stopped poll.
            "seed-faults-move",
            vec![
                32, 3, 5, 2, //
                0, 0, 0, 1, 1, 1, 100, //
                0, 0, 6, 1, 1, 2, 100, //
                11, 150, //
                9, 4, 0, 0, 4, 10, //
                9, 3, 1, 2, 10, //
                10, 2, 40, 10, //
                5, 1, 100, //
                7, 0, 100, //
                4, 1, 3, 100, //
                11, 250,
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(data: &[u8]) -> Run<'_> {
        let mut run = Run::new(data);
        let mut ops = 0;
        while let Some(op) = run.bytes.next() {
            if ops == MAX_OPS {
                break;
            }
            run.step(op);
            ops += 1;
        }
        run.settle();
        run
    }

    /// The inputs kept as `regression-*`: `regression-unsubscribed-while-settling` unsubscribes a
    /// member just before the input ends, so that it still gives its partitions up when the run
    /// settles and leaves only after; it must be subscribed again once idle for the group to
    /// settle (the target once looked for idle members too early and failed it).
    /// `regression-static-leader-restarted-after-growth` grows a topic while the static
    /// leader has stopped polling, then crashes and restarts it within its session: the
    /// coordinator hands it the old assignment with `skip_assignment`, and kcon-group's leader
    /// once never assigned the new partitions. `regression-log-outgrew-the-allocation-bound`
    /// runs long enough that a member's whole log (kept by kcon-sim for failure messages) grew
    /// past the target's allocation bound; the target now keeps only the newest entries.
    /// `regression-static-leader-restarted-mid-cooperative-rebalance` and
    /// `regression-static-member-restarted-before-follow-up` restart a static member, under the
    /// cooperative protocol, after the leader withheld partitions it was to revoke and before it
    /// rejoined for the follow-up rebalance: the coordinator kept the generation, and the
    /// withheld partitions once stayed unassigned for good.
    /// `regression-follow-up-after-the-final-check` closes the static leader while its
    /// application still revokes the partitions it withheld and restarts it within its
    /// session, with `max.poll.interval.ms` at 60 s: its follow-up rebalance comes 60 s after
    /// the sync, and the target once checked the group 30 s after it settled, before that.
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("group_sim");
        for (name, data) in &regressions {
            let run = replay(data);
            assert!(run.sim.is_settled(), "{name}");
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    /// The final wait outlasts every member's `max.poll.interval.ms`, which is when a leader
    /// asks for a follow-up rebalance nobody else asked for.
    #[test]
    fn the_final_wait_outlasts_every_max_poll_interval() {
        for ms in MAX_POLL_MS {
            let interval = Duration::from_millis(ms.parse().unwrap());
            assert!(STAYS_SETTLED > interval, "{ms} ms");
        }
    }

    #[test]
    fn the_seeds_settle_with_partitions_owned() {
        for (name, data) in seeds() {
            let run = replay(&data);
            let live: Vec<_> = run.sim.nodes.iter().filter(|n| n.is_live()).collect();
            assert!(live.len() >= 2, "{name}: {} live", live.len());
            for n in &live {
                assert!(!n.app.owned.is_empty(), "{name}\n{}", run.sim.dump(40));
            }
        }
    }

    /// Replays the input in `$REPLAY`.
    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        let run = replay(&data);
        if std::env::var_os("TRACE").is_some() {
            eprintln!("{}", run.sim.dump(200));
        }
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("group_sim", seeds());
    }
}
