//! The share consumer's driver, sans-IO: what to do with each input (a group event, a share
//! fetch event), how the machine's commands reach the parts ([`Parts`], one method per thing a
//! part can be told), how a `recv_batch` waits, how a commit is waited for, and the order of a
//! close.
//!
//! The tokio [`ShareConsumer`](super::ShareConsumer) feeds it: it waits for the next input
//! (the member's and the fetcher's channels) and hands it in, with its parts the tasks'
//! handles ([`super::wiring`]). The feature `fuzzing` exports it for a shell of another kind:
//! kcon-sim's share simulation, whose parts (`kcon_sim::share_consumer::ShareParts`) are
//! kcon-group's member and kcon-fetch's share fetch machine on a virtual clock, and whose model
//! applications call it as applications call the `ShareConsumer`. A new command is a new
//! method of [`Parts`], which each implementation must implement before it compiles.
//!
//! ```text
//!   call ─► the events waiting handed in ─► turn ─┬─ Error ─► the call returns it
//!   (start_batch: settle, alive)                 ├─ Ready ─► the call takes a batch
//!                                                └─ Wait ──► a want goes out; the shell
//!                                                   waits for one input:            │
//!                                   turn again ◄── group_event | fetch_event ◄──────┘
//! ```
//!
//! A commit is handed the fetcher's events until the one saying it is answered
//! ([`Driver::commit_input`]); a close settles the last batch and closes the fetcher, hands in
//! what it told while closing, then the member leaves ([`Driver::close`], [`Driver::leave`]).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use kcon_core::{Machine, TopicPartition};
use kcon_fetch::share::{AcknowledgeType, AcknowledgementOutcome, ShareEvent};
use kcon_group::{GroupEvent, RevocationId};

use super::ShareMetrics;
use super::machine::{Command, ShareConsumerMachine};
use crate::error::Error;

/// The parts around a share consumer's machine: what it commands (the group member, the share
/// fetcher) and what watches it (the acknowledgement hooks, the metrics handle). One method per
/// thing a part can be told; none has a default, so a new command fails to compile in every
/// implementation until it says what it does.
///
/// The tokio tasks' handles implement it (`wiring::Wiring`), the tests' recording parts, and,
/// through the feature `fuzzing`, kcon-sim's share simulation over the machines on a virtual
/// clock.
pub trait Parts {
    // ----- the group member -----

    /// Subscribe to these topics (empty: leave).
    fn subscribe(&mut self, now: Instant, topics: Vec<String>);
    /// The application is alive.
    fn alive(&mut self, now: Instant);
    /// The revocation `id` is done.
    fn revocation_done(&mut self, now: Instant, id: RevocationId);
    /// The member's next event, without waiting.
    fn member_event(&mut self) -> Option<GroupEvent>;
    /// Leave the group; what the member tells while it leaves goes to
    /// [`Driver::member_closed`].
    fn close_member(&mut self, now: Instant);

    // ----- the share fetcher -----

    /// The requests carry the member id the group member has now.
    fn member_id(&mut self, now: Instant);
    /// Fetch these partitions: every one assigned now.
    fn assign(&mut self, now: Instant, partitions: BTreeSet<TopicPartition>);
    /// Acknowledge `first..=last` of `tp` as `kind`, with the next request to its leader.
    fn acknowledge(
        &mut self,
        now: Instant,
        tp: TopicPartition,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    );
    /// Send every acknowledgement given so far; tell [`ShareEvent::Committed`] with `id` once
    /// they are answered.
    fn commit(&mut self, now: Instant, id: u64);
    /// The application waits for records, having read `seen` [`ShareEvent::Records`].
    fn want_records(&mut self, now: Instant, seen: u64);
    /// The wait ended with records, or a new want replaces it (the fetcher stopped wanting by
    /// itself).
    fn want_ended(&mut self, now: Instant);
    /// The wait was called off: stop fetching.
    fn stop_wanting(&mut self, now: Instant);
    /// The fetcher's next event, without waiting.
    fn fetch_event(&mut self) -> Option<ShareEvent>;
    /// Send the acknowledgements left and close every share session; what the fetcher tells
    /// while it closes goes to [`Driver::fetch_event`].
    fn close_fetcher(&mut self, now: Instant);

    // ----- what watches the consumer: the hooks, the metrics handle -----

    /// An acknowledgement's outcome was read.
    fn acknowledged(&mut self, now: Instant, outcome: &AcknowledgementOutcome);
    /// Publish the counts.
    fn publish(&mut self, now: Instant, metrics: &ShareMetrics);
}

/// What a `recv_batch` does after a [`turn`](Driver::turn).
#[derive(Debug)]
pub enum Turn {
    /// Records are ready: take a batch ([`ShareConsumerMachine::take_batch`]).
    Ready,
    /// Nothing to hand out: a want is out; wait for the next input (a group or fetch event).
    Wait,
    /// Return this error.
    Error(Error),
}

/// The share consumer's machine and what its driver keeps between inputs.
#[derive(Debug)]
pub struct Driver {
    /// The machine (its queries and the application's calls are made on it directly).
    pub machine: ShareConsumerMachine,
    /// Errors the machine told the application, not returned yet.
    errors: VecDeque<Error>,
}

impl Driver {
    /// Drives `machine`.
    pub fn new(machine: ShareConsumerMachine) -> Driver {
        Driver {
            machine,
            errors: VecDeque::new(),
        }
    }

    /// Passes the machine's commands to the parts, in order: after every input.
    pub fn run<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        while let Some(command) = self.machine.poll_event() {
            match command {
                Command::Subscribe(topics) => parts.subscribe(now, topics),
                Command::Alive => parts.alive(now),
                Command::RevocationDone(id) => parts.revocation_done(now, id),
                Command::MemberId => parts.member_id(now),
                Command::Assign(partitions) => parts.assign(now, partitions),
                Command::Acknowledge(tp, first, last, kind) => {
                    parts.acknowledge(now, tp, first, last, kind);
                }
                Command::Commit(id) => parts.commit(now, id),
                Command::Want(seen) => parts.want_records(now, seen),
                Command::WantEnded => parts.want_ended(now),
                Command::StopWanting => parts.stop_wanting(now),
                Command::CloseFetcher => parts.close_fetcher(now),
                Command::CloseMember => parts.close_member(now),
                Command::Publish => parts.publish(now, self.machine.metrics()),
                Command::Acknowledged(outcome) => parts.acknowledged(now, &outcome),
                Command::Error(e) => self.errors.push_back(e),
            }
        }
    }

    /// The application subscribes to `topics`.
    pub fn subscribe<P: Parts>(
        &mut self,
        now: Instant,
        topics: Vec<String>,
        parts: &mut P,
    ) -> Result<(), Error> {
        let result = self.machine.subscribe(now, topics);
        self.run(now, parts);
        result
    }

    /// The application acknowledges `record` as `kind`.
    pub fn acknowledge<P: Parts>(
        &mut self,
        now: Instant,
        record: &kcon_core::Record,
        kind: AcknowledgeType,
        parts: &mut P,
    ) -> Result<(), Error> {
        let result = self.machine.acknowledge(now, record, kind);
        self.run(now, parts);
        result
    }

    /// A `recv_batch` starts: it fails at once when the consumer cannot hand out records (the
    /// member failed, it is closed, nothing is subscribed, or in explicit mode the last batch
    /// is not all acknowledged); else the last batch is settled, the member hears the
    /// application is alive, and the events the member and then the fetcher have told are
    /// handed in (the first error among the member's is returned).
    pub fn call<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Result<(), Error> {
        self.machine.start_batch(now)?;
        self.run(now, parts);
        while let Some(event) = parts.member_event() {
            self.group_event(now, Some(event), parts);
            if let Some(e) = self.errors.pop_front() {
                return Err(e);
            }
        }
        while let Some(event) = parts.fetch_event() {
            self.fetch_event(now, Some(event), parts);
        }
        Ok(())
    }

    /// One turn of a `recv_batch`, before it waits: an error goes to the application (the
    /// want out is called off), records ready end the wait, and otherwise a new want goes
    /// (the one before ended: a want sent before a batch was read is stale).
    pub fn turn<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Turn {
        let turn = if let Some(e) = self.errors.pop_front() {
            self.machine.wait_over(now, false);
            Turn::Error(e)
        } else if self.machine.has_records() {
            self.machine.wait_over(now, true);
            Turn::Ready
        } else {
            self.machine.want(now);
            Turn::Wait
        };
        self.run(now, parts);
        turn
    }

    /// The group member's event (`None`: its task stopped); an error it comes to is the next
    /// turn's.
    pub fn group_event<P: Parts>(
        &mut self,
        now: Instant,
        event: Option<GroupEvent>,
        parts: &mut P,
    ) {
        self.machine.group_event(now, event);
        self.run(now, parts);
    }

    /// Time passed to the machine's `poll_timeout`: a `recv_batch` that waits tells the member
    /// the application is alive.
    pub fn timeout<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        self.machine.handle_timeout(now);
        self.run(now, parts);
    }

    /// The fetcher's event (`None`: its task stopped); an error it comes to is the next
    /// turn's.
    pub fn fetch_event<P: Parts>(
        &mut self,
        now: Instant,
        event: Option<ShareEvent>,
        parts: &mut P,
    ) {
        self.machine.fetch_event(now, event);
        self.run(now, parts);
    }

    /// A commit starts: every acknowledgement given so far goes (in implicit mode, the last
    /// batch accepted first). Returns the number its answer comes with.
    pub fn commit<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Result<u64, Error> {
        let id = self.machine.commit(now);
        self.run(now, parts);
        id
    }

    /// The fetcher's event while commit `id` waits (`None`: its task stopped): whether the
    /// commit is answered, or the error it returns. Other events are handled as always.
    pub fn commit_input<P: Parts>(
        &mut self,
        now: Instant,
        id: u64,
        event: Option<ShareEvent>,
        parts: &mut P,
    ) -> Result<bool, Error> {
        match event {
            Some(ShareEvent::Committed(done)) if done >= id => {
                self.machine.commit_done(now);
                self.run(now, parts);
                Ok(true)
            }
            event => {
                self.fetch_event(now, event, parts);
                match self.errors.pop_front() {
                    Some(e) => Err(e),
                    None => Ok(false),
                }
            }
        }
    }

    /// A close starts: in implicit mode the last batch is accepted, the rest released, and
    /// the fetcher closes (what it tells meanwhile goes to [`fetch_event`](Self::fetch_event)).
    pub fn close<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        self.machine.close(now);
        self.run(now, parts);
    }

    /// The fetcher closed, or the close gave up on it: the member leaves.
    pub fn leave<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        self.machine.leave(now);
        self.run(now, parts);
    }

    /// The events the member told while it left.
    pub fn member_closed(&mut self, now: Instant, events: Vec<GroupEvent>) {
        self.machine.member_closed(now, events);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use kcon_core::Record;
    use kcon_group::GroupError;

    use super::*;
    use crate::config::AcknowledgementMode;
    use crate::error::ErrorKind;

    /// Parts that write down what they are told, and hold events to hand out without waiting.
    #[derive(Default)]
    struct Log {
        told: Vec<String>,
        member: VecDeque<GroupEvent>,
        fetch: VecDeque<ShareEvent>,
        published: Option<ShareMetrics>,
    }

    impl Parts for Log {
        fn subscribe(&mut self, _now: Instant, topics: Vec<String>) {
            self.told.push(format!("subscribe {topics:?}"));
        }
        fn alive(&mut self, _now: Instant) {
            self.told.push("alive".to_owned());
        }
        fn revocation_done(&mut self, _now: Instant, _id: RevocationId) {
            self.told.push("revocation done".to_owned());
        }
        fn member_event(&mut self) -> Option<GroupEvent> {
            self.member.pop_front()
        }
        fn close_member(&mut self, _now: Instant) {
            self.told.push("close member".to_owned());
        }
        fn member_id(&mut self, _now: Instant) {
            self.told.push("member id".to_owned());
        }
        fn assign(&mut self, _now: Instant, partitions: BTreeSet<TopicPartition>) {
            self.told.push(format!("assign {}", partitions.len()));
        }
        fn acknowledge(
            &mut self,
            _now: Instant,
            tp: TopicPartition,
            first: i64,
            last: i64,
            kind: AcknowledgeType,
        ) {
            self.told
                .push(format!("{} {tp} {first}..={last}", kind.name()));
        }
        fn commit(&mut self, _now: Instant, id: u64) {
            self.told.push(format!("commit {id}"));
        }
        fn want_records(&mut self, _now: Instant, seen: u64) {
            self.told.push(format!("want {seen}"));
        }
        fn want_ended(&mut self, _now: Instant) {
            self.told.push("want ended".to_owned());
        }
        fn stop_wanting(&mut self, _now: Instant) {
            self.told.push("stop wanting".to_owned());
        }
        fn fetch_event(&mut self) -> Option<ShareEvent> {
            self.fetch.pop_front()
        }
        fn close_fetcher(&mut self, _now: Instant) {
            self.told.push("close fetcher".to_owned());
        }
        fn acknowledged(&mut self, _now: Instant, outcome: &AcknowledgementOutcome) {
            self.told.push(format!("outcome {}", outcome.partition));
        }
        fn publish(&mut self, _now: Instant, metrics: &ShareMetrics) {
            self.published = Some(metrics.clone());
        }
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn records(offsets: std::ops::Range<i64>) -> ShareEvent {
        ShareEvent::Records {
            partition: tp(),
            records: offsets
                .map(|o| Record::new("t", 0, o, None, None))
                .collect(),
            lock_timeout_ms: 30_000,
            lock_expired: 0,
        }
    }

    fn driver(mode: AcknowledgementMode, parts: &mut Log) -> Driver {
        let mut d = Driver::new(ShareConsumerMachine::new(
            mode,
            10,
            Duration::from_secs(300),
            Instant::now(),
        ));
        d.subscribe(Instant::now(), vec!["t".to_owned()], parts)
            .unwrap();
        parts.told.clear();
        d
    }

    /// A `recv_batch` as the shell runs it: waits with a want, a new want after an event that
    /// brought nothing, and records end the wait; the next call accepts the batch (implicit
    /// mode) before the member hears the application is alive.
    #[test]
    fn a_call_waits_with_a_want_until_records_come() {
        let now = Instant::now();
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Implicit, &mut parts);
        d.call(now, &mut parts).unwrap();
        assert!(matches!(d.turn(now, &mut parts), Turn::Wait));
        d.group_event(
            now,
            Some(GroupEvent::Assigned {
                partitions: vec![tp()],
                generation_id: 1,
            }),
            &mut parts,
        );
        assert!(matches!(d.turn(now, &mut parts), Turn::Wait));
        d.fetch_event(now, Some(records(0..3)), &mut parts);
        assert!(matches!(d.turn(now, &mut parts), Turn::Ready));
        assert_eq!(d.machine.take_batch().len(), 3);
        assert_eq!(
            parts.told,
            [
                "alive",
                "want 0",
                "member id",
                "assign 1",
                "want ended",
                "want 0",
                "want ended",
            ]
        );
        assert_eq!(parts.published.as_ref().unwrap().records_acquired, 3);
        parts.told.clear();
        d.call(now, &mut parts).unwrap();
        assert_eq!(parts.told, ["accept t-0 0..=2", "alive"]);
    }

    /// The events waiting are handed in when a call starts, the member's first: its fatal
    /// error ends the call before the fetcher's are read, and is returned by every call after.
    #[test]
    fn a_call_hands_in_the_events_waiting_and_stops_at_an_error() {
        let now = Instant::now();
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Implicit, &mut parts);
        parts.fetch.push_back(records(0..1));
        parts
            .member
            .push_back(GroupEvent::Fatal(GroupError::Request("refused".to_owned())));
        let e = d.call(now, &mut parts).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(parts.fetch.len(), 1, "the fetcher's event was not read");
        assert_eq!(
            d.call(now, &mut parts).unwrap_err().to_string(),
            e.to_string()
        );
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Implicit, &mut parts);
        parts.fetch.push_back(records(0..2));
        d.call(now, &mut parts).unwrap();
        assert!(matches!(d.turn(now, &mut parts), Turn::Ready), "no wait");
        assert_eq!(parts.told, ["alive"]);
    }

    /// An error while the call waits is the next turn's, which calls the want off.
    #[test]
    fn an_error_while_waiting_calls_the_want_off() {
        let now = Instant::now();
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Explicit, &mut parts);
        d.call(now, &mut parts).unwrap();
        assert!(matches!(d.turn(now, &mut parts), Turn::Wait));
        d.fetch_event(now, None, &mut parts);
        let Turn::Error(e) = d.turn(now, &mut parts) else {
            panic!("no error")
        };
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert_eq!(parts.told, ["alive", "want 0", "stop wanting"]);
    }

    /// A commit reads the fetcher's events until its own is answered: an earlier commit's
    /// answer and an outcome are handled on the way, and only its own counts.
    #[test]
    fn a_commit_waits_for_its_own_answer() {
        let now = Instant::now();
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Implicit, &mut parts);
        assert_eq!(d.commit(now, &mut parts).unwrap(), 0);
        assert_eq!(d.commit(now, &mut parts).unwrap(), 1);
        assert!(
            !d.commit_input(now, 1, Some(ShareEvent::Committed(0)), &mut parts)
                .unwrap()
        );
        let outcome = AcknowledgementOutcome {
            partition: tp(),
            ranges: Vec::new(),
            error_code: 0,
            failure: None,
        };
        assert!(
            !d.commit_input(
                now,
                1,
                Some(ShareEvent::Acknowledged(outcome.clone())),
                &mut parts
            )
            .unwrap()
        );
        assert!(
            d.commit_input(now, 1, Some(ShareEvent::Committed(1)), &mut parts)
                .unwrap()
        );
        assert_eq!(d.machine.metrics().commits, 1);
        assert_eq!(d.machine.take_outcomes(), [outcome]);
        assert_eq!(parts.told, ["commit 0", "commit 1", "outcome t-0"]);
        let e = d.commit_input(now, 2, None, &mut parts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
    }

    /// A close releases what was acquired and not handed out, closes the fetcher, then the
    /// member leaves.
    #[test]
    fn a_close_releases_then_closes_the_fetcher_then_the_member() {
        let now = Instant::now();
        let mut parts = Log::default();
        let mut d = driver(AcknowledgementMode::Explicit, &mut parts);
        d.fetch_event(now, Some(records(4..6)), &mut parts);
        d.close(now, &mut parts);
        d.leave(now, &mut parts);
        assert_eq!(
            parts.told,
            ["release t-0 4..=5", "close fetcher", "close member"]
        );
    }
}
