//! The `producer_machine` target: kcon-produce's sans-IO `SenderMachine` as a transactional
//! producer, against the simulated cluster of its tests (`kcon_produce::fuzzing::Cluster`: one
//! broker that coordinates the transactions and the group and leads topic `t`'s two
//! partitions), driven by an interpreter over the fuzz bytes.
//!
//! The first byte picks the transaction version (bit 0: 2, else 1) and `linger.ms` (bit 1:
//! 0, else 5). The producer is then initialized with no fault. Then each step reads an op byte
//! and what the op needs (a missing byte reads as 0); the run stops when the bytes run out or
//! after [`OPS`] ops, and then every fault is disarmed, the call out (if any) is answered, the
//! producer is closed, the markers the coordinator holds are written, and the broker answers
//! everything until the machine is finished. Ops (the op byte modulo 17; 14 to 16 came last, so
//! inputs of the ops below 14 keep their meaning):
//!
//! | op | what |
//! |---|---|
//! | 0, 1 | send a record to partition 0 or 1 (the next byte's bit 0) |
//! | 2 | `begin_transaction` |
//! | 3 | `send_offsets_to_transaction` of `t-0` at a fuzzed offset, at the group's generation or (one time in eight) a stale one |
//! | 4 | `commit_transaction` |
//! | 5 | `abort_transaction` |
//! | 6, 7, 13 | the broker answers the oldest request out |
//! | 8 | the broker answers every request out |
//! | 9 | the oldest request is lost before the broker reads it: the machine gets a failure |
//! | 10 | the oldest request, if a Produce, is written and its answer lost: the machine gets a failure |
//! | 11 | an error pushed on an API, from the sets of the machine's random-fault test: PRODUCER_FENCED now and then, UNKNOWN_PRODUCER_ID or NOT_ENOUGH_REPLICAS on Produce, COORDINATOR_NOT_AVAILABLE on FindCoordinator, TOPIC_AUTHORIZATION_FAILED on AddPartitionsToTxn, else a retriable coordinator error |
//! | 12 | the clock advances by up to 2.55 s and the timers due fire |
//! | 14 | the coordinator times the ongoing transaction out (`transaction.timeout.ms` passed): it bumps the epoch and aborts it; nothing if none is ongoing |
//! | 15 | the oldest request, if an EndTxn or a TxnOffsetCommit, takes effect and its answer is lost: the machine gets a failure; for an EndTxn that ends a transaction, the next byte's bit 0 has the coordinator hold its markers (the transaction completing) until op 16 |
//! | 16 | the coordinator writes the markers it holds |
//!
//! A transaction call is made only when none is out, as an application awaiting each does;
//! records go at any time. After every op the machine's requests are taken (kept out until
//! an op answers or loses them), its events drained and its timers due fired, within
//! [`MAX_PER_OP`], and these hold (a failure panics naming the invariant):
//! - (a) no record outside a transaction: every Produce batch is transactional and goes while
//!   a transaction is open (`begin_transaction` answered, no EndTxn sent since); at
//!   transaction version 1 only to partitions an AddPartitionsToTxn answer added to it; a
//!   record sent while no transaction is open is never delivered, and a record is delivered
//!   only while its own transaction is open;
//! - (b) every record's delivery is answered exactly once, and every transaction call exactly
//!   once (checked at the end, after the close, for those never answered);
//! - (c) an EndTxn goes only when no AddPartitionsToTxn and no Produce is out, and a commit
//!   succeeds only once every record of its transaction was answered;
//! - (d) a transaction that met an abortable error (a record of it failed, a call of it failed
//!   abortably) never sends a committing EndTxn and its commit never succeeds;
//! - (e) a commit the coordinator made (its EndTxn's answer lost) is never reported abortable,
//!   nor its transaction's abort successful: it is reported successful, fatal, or not yet;
//! - after every op, what a read_committed reader and the group see (the cluster's committed
//!   records and offsets) is exactly what the successful commits delivered, and a commit the
//!   coordinator made whose answer was lost once its markers are written: never a record or
//!   offset of a transaction that did not commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::Input;
use kcon_codec::records::{DecodeOptions, RecordBatches};
use kcon_core::{ConsumerGroupMetadata, Machine, RequestFailure, RequestId, TopicPartition};
use kcon_produce::Outcome;
use kcon_produce::fuzzing::{
    CallId, Cluster, Event, FAULT_APIS, Request, Response, SenderMachine, TxnCall, TxnOffset,
    TxnOp, fault, record_to, transactional_machine,
};

/// At most this many ops are read.
pub const OPS: usize = 400;
/// Requests, events and timer firings one op may produce: more is a loop without progress.
pub const MAX_PER_OP: usize = 10_000;
/// Rounds the close at the end may take.
const MAX_CLOSE_ROUNDS: usize = 10_000;

/// What a run did, for tests that check an input does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Transactions whose commit succeeded.
    pub committed: usize,
    /// Transactions whose abort succeeded.
    pub aborted: usize,
    /// Records delivered.
    pub delivered: usize,
    /// Records that failed.
    pub failed: usize,
    /// Transactions that met an abortable error.
    pub abortable: usize,
    /// Whether the producer met a fatal error.
    pub fatal: bool,
    /// Transactions the coordinator timed out.
    pub timed_out: usize,
    /// EndTxn and TxnOffsetCommit answers lost after their request took effect.
    pub lost_answers: usize,
}

/// The open transaction as the application sees it.
#[derive(Debug, Default)]
struct Txn {
    /// Which transaction this is, counted from 1.
    serial: u64,
    /// Records delivered, per partition.
    delivered: BTreeMap<i32, usize>,
    /// The offset of `t-0` its last successful `send_offsets_to_transaction` sent.
    offset: Option<i64>,
    /// It met an abortable error.
    abortable: bool,
    /// An EndTxn of it went out.
    end_sent: bool,
    /// Partitions an AddPartitionsToTxn answer added to it (transaction version 1).
    added: BTreeSet<i32>,
}

/// A transaction the coordinator committed whose EndTxn answer was lost, before its commit is
/// reported: what it delivered and the offset it sent.
#[derive(Debug, Clone)]
struct InDoubt {
    delivered: BTreeMap<i32, usize>,
    offset: Option<i64>,
}

/// The interpreter's state: the machine, the cluster and what the application knows.
struct Sim {
    m: SenderMachine<u32>,
    cluster: Cluster,
    now: Instant,
    v2: bool,
    /// Requests out, oldest first.
    out: VecDeque<(RequestId, Request)>,
    /// AddPartitionsToTxn requests out, with their partitions.
    adding: HashMap<RequestId, Vec<i32>>,
    /// Produce requests out.
    producing: HashSet<RequestId>,
    /// Records not answered: the transaction each was sent in (`None`: none was open).
    records: BTreeMap<u32, Option<u64>>,
    next_waiter: u32,
    /// The transaction call out.
    call: Option<(CallId, TxnOp)>,
    /// The offset of `t-0` the `send_offsets_to_transaction` out sends.
    offset_sent: Option<i64>,
    txn: Option<Txn>,
    serial: u64,
    fatal: bool,
    /// What a read_committed reader must see: records per partition, the group's offset.
    expected: BTreeMap<i32, usize>,
    expected_offset: Option<i64>,
    /// The commit the coordinator made whose answer was lost, not yet reported.
    in_doubt: Option<InDoubt>,
    run: Run,
}

/// Runs the machine over `data` (the target's body).
pub fn run(data: &[u8]) {
    replay(data);
}

/// Runs the machine over `data`, checks the invariants, and says what the run did.
pub fn replay(data: &[u8]) -> Run {
    let mut input = Input { data, pos: 0 };
    let setup = input.u8();
    let v2 = setup & 1 == 1;
    let linger = if setup & 2 == 2 { "0" } else { "5" };
    let now = Instant::now();
    let mut sim = Sim {
        m: transactional_machine(&[("linger.ms", linger)], u64::from(setup), now),
        cluster: if v2 { Cluster::v2() } else { Cluster::new() },
        now,
        v2,
        out: VecDeque::new(),
        adding: HashMap::new(),
        producing: HashSet::new(),
        records: BTreeMap::new(),
        next_waiter: 0,
        call: None,
        offset_sent: None,
        txn: None,
        serial: 0,
        fatal: false,
        expected: BTreeMap::new(),
        expected_offset: None,
        in_doubt: None,
        run: Run::default(),
    };
    sim.call(TxnCall::Init);
    sim.settle_call();
    assert!(
        !sim.fatal,
        "the producer failed to initialize without a fault"
    );
    let mut ops = 0;
    while input.pos < data.len() && ops < OPS {
        ops += 1;
        sim.op(&mut input);
        sim.drain();
        sim.check_view();
    }
    sim.finish();
    sim.run
}

impl Sim {
    fn op(&mut self, input: &mut Input<'_>) {
        let op = input.u8() % 17;
        match op {
            0 | 1 => {
                let partition = i32::from(input.u8() & 1);
                let waiter = self.next_waiter;
                self.next_waiter += 1;
                // The transaction it belongs to, if it is sent while one takes records.
                let takes = self.call.is_none_or(|(_, op)| op == TxnOp::SendOffsets);
                let txn = self
                    .txn
                    .as_ref()
                    .filter(|t| takes && !t.abortable && !t.end_sent)
                    .map(|t| t.serial);
                self.records.insert(waiter, txn);
                self.m
                    .records(self.now, [record_to(waiter, partition, self.now)]);
            }
            2 => self.call(TxnCall::Begin),
            3 => {
                let b = input.u8();
                let generation = if b & 7 == 0 { 2 } else { 3 };
                if self.call.is_none() {
                    self.offset_sent = Some(i64::from(b >> 3));
                }
                self.call(TxnCall::SendOffsets {
                    offsets: vec![TxnOffset {
                        partition: TopicPartition::new("t", 0),
                        offset: i64::from(b >> 3),
                        leader_epoch: None,
                        metadata: None,
                    }],
                    group: ConsumerGroupMetadata::member("g", generation, "member-1", None),
                });
            }
            4 => self.call(TxnCall::Commit),
            5 => self.call(TxnCall::Abort),
            6 | 7 | 13 => self.answer_oldest(),
            8 => {
                for _ in 0..self.out.len() {
                    self.answer_oldest();
                }
            }
            9 => {
                if let Some((id, request)) = self.out.pop_front() {
                    self.forget(id);
                    let _ = request;
                    let failure = RequestFailure::retriable("the connection closed");
                    self.m.handle_response(self.now, id, Err(failure));
                }
            }
            10 => {
                if matches!(self.out.front(), Some((_, Request::Produce(..)))) {
                    let (id, request) = self.out.pop_front().expect("a request");
                    self.forget(id);
                    let _ = self.cluster.answer(request);
                    let failure = RequestFailure::retriable("the connection closed");
                    self.m.handle_response(self.now, id, Err(failure));
                }
            }
            11 => {
                let api = input.pick(FAULT_APIS);
                let error = fault(api, input.u8() % 20, |from| input.pick(from));
                self.cluster.push_error(api, error);
            }
            12 => {
                self.now += Duration::from_millis(u64::from(input.u8()) * 10);
            }
            14 => {
                if self.cluster.time_out_open_transaction() {
                    self.run.timed_out += 1;
                }
            }
            15 => {
                let hold = input.u8() & 1 == 1;
                if matches!(
                    self.out.front(),
                    Some((_, Request::EndTxn(..) | Request::TxnOffsetCommit(..)))
                ) {
                    let (id, request) = self.out.pop_front().expect("a request");
                    self.forget(id);
                    self.lose_answer(id, request, hold);
                }
            }
            16 => {
                self.cluster.write_markers();
            }
            _ => unreachable!("op modulo 17"),
        }
    }

    /// Makes `call` if no call is out.
    fn call(&mut self, call: TxnCall) {
        if self.call.is_none() {
            let op = call.op();
            let id = self.m.transaction(self.now, call);
            self.call = Some((id, op));
        }
    }

    /// The request `id` is no longer out.
    fn forget(&mut self, id: RequestId) {
        self.adding.remove(&id);
        self.producing.remove(&id);
    }

    /// The coordinator takes `request` in (holding the markers of a transaction it ends if
    /// `hold`) and its answer is lost: the machine gets a retriable failure. A commit it made
    /// is in doubt until the machine reports it.
    fn lose_answer(&mut self, id: RequestId, request: Request, hold: bool) {
        let commit = matches!(&request, Request::EndTxn(r, _) if r.committed);
        self.cluster.hold_markers = hold;
        let response = self.cluster.answer(request);
        self.cluster.hold_markers = false;
        self.run.lost_answers += 1;
        if let Response::EndTxn(Ok(a)) = &response
            && a.error_code == 0
            && commit
            && self.in_doubt.is_none()
        {
            let txn = self
                .txn
                .as_ref()
                .expect("(a) a committing EndTxn with no transaction");
            self.in_doubt = Some(InDoubt {
                delivered: txn.delivered.clone(),
                offset: txn.offset,
            });
        }
        let failure = RequestFailure::retriable("the connection closed");
        self.m.handle_response(self.now, id, Err(failure));
    }

    /// The broker answers the oldest request out.
    fn answer_oldest(&mut self) {
        let Some((id, request)) = self.out.pop_front() else {
            return;
        };
        self.forget(id);
        let response = self.cluster.answer(request);
        if let Response::AddPartitionsToTxn(Ok(answer)) = &response
            && let Some(txn) = self.txn.as_mut()
        {
            for topic in &answer.results_by_topic_v3_and_below {
                for p in &topic.results_by_partition {
                    if p.partition_error_code == 0 {
                        txn.added.insert(p.partition_index);
                    }
                }
            }
        }
        self.m.handle_response(self.now, id, Ok(response));
    }

    /// Takes the machine's requests, drains its events and fires its timers due, checking
    /// each request and event.
    fn drain(&mut self) {
        let mut n = 0;
        loop {
            n += 1;
            assert!(
                n <= MAX_PER_OP,
                "more than {MAX_PER_OP} requests, events and timers in one op"
            );
            // Events first: those of an input come before the requests it let go (a
            // delivery before the EndTxn its answer let go).
            if let Some(event) = self.m.poll_event() {
                self.event(event);
                continue;
            }
            if let Some(out) = self.m.poll_request(self.now) {
                self.sent(out.id, &out.request);
                self.out.push_back((out.id, out.request));
                continue;
            }
            match self.m.poll_timeout() {
                Some(at) if at <= self.now => self.m.handle_timeout(self.now),
                _ => break,
            }
        }
    }

    /// Checks a request as the machine sends it.
    fn sent(&mut self, id: RequestId, request: &Request) {
        match request {
            Request::Produce(r, _) => {
                let txn = self.txn.as_ref();
                let open = txn.is_some_and(|t| !t.end_sent);
                assert!(
                    open,
                    "(a) a Produce request while no transaction is open (none begun, or its EndTxn sent)"
                );
                for topic in &r.topic_data {
                    for p in &topic.partition_data {
                        let bytes = p.records.clone().expect("a batch");
                        for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
                            let batch = batch.expect("a batch that decodes");
                            assert!(
                                batch.is_transactional(),
                                "(a) a batch for t-{} not marked transactional",
                                p.index
                            );
                        }
                        if !self.v2 {
                            assert!(
                                txn.is_some_and(|t| t.added.contains(&p.index)),
                                "(a) a batch for t-{} before an AddPartitionsToTxn answer added it",
                                p.index
                            );
                        }
                    }
                }
                self.producing.insert(id);
            }
            Request::AddPartitionsToTxn(r) => {
                let partitions = r
                    .v3_and_below_topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().copied())
                    .collect();
                self.adding.insert(id, partitions);
            }
            Request::EndTxn(r, _) => {
                assert!(
                    self.adding.is_empty(),
                    "(c) EndTxn sent while AddPartitionsToTxn {:?} is out",
                    self.adding.values().collect::<Vec<_>>()
                );
                assert!(
                    self.producing.is_empty(),
                    "(c) EndTxn sent while {} Produce requests are out",
                    self.producing.len()
                );
                if let Some(txn) = self.txn.as_mut() {
                    assert!(
                        !(r.committed && txn.abortable),
                        "(d) a committing EndTxn for a transaction that met an abortable error"
                    );
                    txn.end_sent = true;
                }
            }
            _ => {}
        }
    }

    /// Checks an event and keeps what it tells.
    fn event(&mut self, event: Event<u32>) {
        match event {
            Event::Answer { waiter, result } => {
                let Some(sent_in) = self.records.remove(&waiter) else {
                    panic!("(b) record {waiter} answered twice, or never sent");
                };
                match result {
                    Ok(delivered) => {
                        self.run.delivered += 1;
                        let txn = self.txn.as_mut().filter(|t| !t.end_sent);
                        let Some(txn) = txn else {
                            panic!("(a) record {waiter} delivered while no transaction is open");
                        };
                        assert_eq!(
                            sent_in,
                            Some(txn.serial),
                            "(a) record {waiter} delivered in a transaction it was not sent in"
                        );
                        *txn.delivered.entry(delivered.partition).or_insert(0) += 1;
                    }
                    Err(_) => {
                        self.run.failed += 1;
                        if let Some(txn) = self.txn.as_mut()
                            && sent_in == Some(txn.serial)
                        {
                            txn.abortable = true;
                        }
                    }
                }
            }
            Event::Flushed(_) => {}
            Event::Transaction { calls, op, result } => {
                let Some((id, made)) = self.call.take() else {
                    panic!("(b) {op:?} answered with no call out");
                };
                assert!(
                    calls == [id] && made == op,
                    "(b) {op:?} answered, not the call out"
                );
                if let (TxnOp::Commit, Err(e)) = (op, &result)
                    && self.in_doubt.is_some()
                {
                    // Fatal or to be called again, it stays in doubt: the commit stands.
                    assert!(
                        e.outcome() != Outcome::Abort,
                        "(e) a commit the coordinator made reported abortable: {e}"
                    );
                }
                if let Err(e) = &result {
                    match e.outcome() {
                        Outcome::Close => self.fatal = true,
                        Outcome::Abort => {
                            if let Some(txn) = self.txn.as_mut() {
                                txn.abortable = true;
                            }
                        }
                        _ => {}
                    }
                }
                match (op, result) {
                    (TxnOp::Begin, Ok(())) => {
                        assert!(
                            self.txn.is_none(),
                            "(a) begin_transaction inside a transaction"
                        );
                        self.serial += 1;
                        self.txn = Some(Txn {
                            serial: self.serial,
                            ..Txn::default()
                        });
                    }
                    (TxnOp::SendOffsets, Ok(())) => {
                        if let Some(txn) = self.txn.as_mut() {
                            // The last offsets sent win.
                            txn.offset = self.offset_sent;
                        }
                    }
                    (TxnOp::Commit, Ok(())) => {
                        let txn = self.txn.take().expect("(a) a commit with no transaction");
                        assert!(
                            !txn.abortable,
                            "(d) a transaction that met an abortable error committed"
                        );
                        let unanswered = self
                            .records
                            .values()
                            .filter(|t| **t == Some(txn.serial))
                            .count();
                        assert_eq!(
                            unanswered, 0,
                            "(c) a commit succeeded with records of it unanswered"
                        );
                        self.in_doubt = None;
                        self.commit_seen(txn.delivered, txn.offset);
                        self.run.committed += 1;
                    }
                    (TxnOp::Abort, Ok(())) => {
                        assert!(
                            self.in_doubt.is_none(),
                            "(e) an abort reported for a transaction the coordinator committed"
                        );
                        if let Some(txn) = self.txn.take() {
                            self.run.abortable += usize::from(txn.abortable);
                        }
                        self.run.aborted += 1;
                    }
                    _ => {}
                }
            }
        }
    }

    /// A committed transaction's records and offset join what a reader must see.
    fn commit_seen(&mut self, delivered: BTreeMap<i32, usize>, offset: Option<i64>) {
        for (p, n) in delivered {
            *self.expected.entry(p).or_insert(0) += n;
        }
        if offset.is_some() {
            self.expected_offset = offset;
        }
    }

    /// What a read_committed reader and the group see is what the commits delivered, with the
    /// commit in doubt once its markers are written.
    fn check_view(&self) {
        let mut expected = self.expected.clone();
        let mut expected_offset = self.expected_offset;
        if let Some(made) = &self.in_doubt
            && self.cluster.completing.is_none()
        {
            for (p, n) in &made.delivered {
                *expected.entry(*p).or_insert(0) += n;
            }
            expected_offset = made.offset.or(expected_offset);
        }
        expected.retain(|_, n| *n > 0);
        let mut seen = self.cluster.committed_records();
        seen.retain(|_, n| *n > 0);
        assert_eq!(
            seen, expected,
            "(d) the records a read_committed reader sees are not those committed"
        );
        assert_eq!(
            self.cluster.offsets.get(&0).copied(),
            expected_offset,
            "(d) the group's offset is not the one committed"
        );
    }

    /// Answers everything and moves the clock until the call out is answered.
    fn settle_call(&mut self) {
        for _ in 0..MAX_CLOSE_ROUNDS {
            self.drain();
            if self.call.is_none() {
                return;
            }
            self.round();
        }
        panic!("(b) the call out was never answered");
    }

    /// One round of the end: the broker answers every request out, else the clock moves to
    /// the machine's next timer. False when there was nothing to do.
    fn round(&mut self) -> bool {
        if !self.out.is_empty() {
            for _ in 0..self.out.len() {
                self.answer_oldest();
            }
            true
        } else if let Some(at) = self.m.poll_timeout() {
            self.now = self.now.max(at);
            self.m.handle_timeout(self.now);
            true
        } else {
            false
        }
    }

    /// Faults disarmed, the call out answered, the producer closed: every record and call is
    /// answered, and what was committed is all a reader sees.
    fn finish(&mut self) {
        self.cluster.errors.clear();
        self.cluster.write_markers();
        self.settle_call();
        self.check_view();
        self.m.close(self.now);
        let mut finished = false;
        for _ in 0..MAX_CLOSE_ROUNDS {
            self.drain();
            self.check_view();
            if self.m.is_finished() && self.out.is_empty() {
                finished = true;
                break;
            }
            assert!(
                self.round(),
                "(b) the closed machine is neither finished nor waiting for anything"
            );
        }
        assert!(
            finished,
            "(b) the closed machine did not finish in {MAX_CLOSE_ROUNDS} rounds"
        );
        assert!(
            self.records.is_empty(),
            "(b) records never answered: {:?}",
            self.records.keys().collect::<Vec<_>>()
        );
        assert!(self.call.is_none(), "(b) a call never answered");
        self.run.fatal = self.fatal;
    }
}

/// Hand-made seeds for `corpus/producer_machine/`, each checked here to commit or to abort a
/// transaction that failed;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops: 0/1 record (next byte: partition), 2 begin, 3 send offsets (next byte: offset × 8,
    // low 3 bits 0 a stale generation), 4 commit, 5 abort, 6/7 answer the oldest, 8 answer
    // all, 9 lose the oldest, 10 lose a written Produce's answer, 11 push an error (API,
    // error), 12 time (× 10 ms), 13 answer the oldest, 14 the coordinator times the
    // transaction out, 15 lose an EndTxn's or a TxnOffsetCommit's answer (next byte: bit 0
    // holds the markers), 16 the markers written.
    let answer_all = [8, 12, 1, 8, 8, 8, 8];
    let mut commit_v1 = vec![0, 2, 0, 0, 0, 1, 0, 1];
    commit_v1.extend_from_slice(&answer_all);
    commit_v1.extend_from_slice(&[3, 0x51]);
    commit_v1.extend_from_slice(&answer_all);
    commit_v1.extend_from_slice(&[4]);
    commit_v1.extend_from_slice(&answer_all);
    let mut commit_v2 = commit_v1.clone();
    commit_v2[0] = 1;
    // Version 1, faults: errors pushed, a request lost, a written Produce's answer lost; its
    // transaction fails and is aborted.
    let mut faults = vec![2, 11, 3, 1, 2, 0, 0, 9];
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[4]);
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[2, 0, 1, 8, 10]);
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[4]);
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[5]);
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[2, 1, 0]);
    faults.extend_from_slice(&answer_all);
    faults.extend_from_slice(&[4]);
    faults.extend_from_slice(&answer_all);
    // Answers lost: the offsets' TxnOffsetCommit (the loss tried after each answer, so it
    // finds it first out) and the commit's EndTxn, its markers held and written after a retry
    // was answered CONCURRENT_TRANSACTIONS; the commit succeeds.
    let lose_first_out = [15, 0, 8, 15, 0, 8, 15, 0, 8, 15, 0, 8, 12, 50, 8, 8, 8];
    let mut lost_v1 = vec![0, 2, 0, 0, 0, 1];
    lost_v1.extend_from_slice(&answer_all);
    lost_v1.extend_from_slice(&[3, 0x51]);
    lost_v1.extend_from_slice(&lose_first_out);
    lost_v1.extend_from_slice(&answer_all);
    lost_v1.extend_from_slice(&[4, 15, 1, 12, 50, 8, 16, 12, 150, 8]);
    lost_v1.extend_from_slice(&answer_all);
    let mut lost_v2 = lost_v1.clone();
    lost_v2[0] = 1;
    // Version 2, a transaction the coordinator times out: its next record is refused, its
    // commit fails abortably, its abort is taken as done; the next transaction commits.
    let mut timeout = vec![1, 2, 0, 0];
    timeout.extend_from_slice(&answer_all);
    timeout.extend_from_slice(&[14, 0, 0]);
    timeout.extend_from_slice(&answer_all);
    timeout.extend_from_slice(&[4]);
    timeout.extend_from_slice(&answer_all);
    timeout.extend_from_slice(&[5]);
    timeout.extend_from_slice(&answer_all);
    timeout.extend_from_slice(&[2, 0, 1]);
    timeout.extend_from_slice(&answer_all);
    timeout.extend_from_slice(&[4]);
    timeout.extend_from_slice(&answer_all);
    vec![
        ("commit-v1", commit_v1),
        ("commit-v2", commit_v2),
        ("faults-aborted", faults),
        ("commit-lost-answers-v1", lost_v1),
        ("commit-lost-answers-v2", lost_v2),
        ("timeout-aborted-v2", timeout),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_does_what_it_was_written_for() {
        for (name, data) in seeds() {
            let run = replay(&data);
            if name.starts_with("commit") {
                assert!(run.committed >= 1 && run.delivered >= 2, "{name}: {run:?}");
            } else {
                assert!(run.abortable >= 1 && run.aborted >= 1, "{name}: {run:?}");
            }
            if name.contains("lost-answers") {
                assert!(run.lost_answers >= 2 && !run.fatal, "{name}: {run:?}");
            }
            if name.starts_with("timeout") {
                assert!(
                    run.timed_out == 1 && run.committed == 1 && !run.fatal,
                    "{name}: {run:?}"
                );
            }
        }
    }

    /// A few hundred inputs from a seeded generator: the invariants hold over each, and
    /// between them commits, aborts after an abortable error, fatal errors, timeouts and lost
    /// answers all happen.
    #[test]
    fn pseudo_random_inputs_keep_the_invariants() {
        let mut total = Run::default();
        let mut fatal = 0;
        for seed in 0..400u64 {
            let mut next = crate::seeded(seed);
            let len = next() % 300 + 1;
            let mut data = vec![next() as u8];
            for _ in 1..len {
                // Answers more often than anything else, so transactions get somewhere.
                let b = match next() % 4 {
                    0 => 8,
                    _ => next() as u8,
                };
                data.push(b);
            }
            let run = replay(&data);
            total.committed += run.committed;
            total.abortable += run.abortable;
            total.timed_out += run.timed_out;
            total.lost_answers += run.lost_answers;
            fatal += usize::from(run.fatal);
        }
        assert!(
            total.committed > 0 && total.abortable > 0 && fatal > 0,
            "{total:?}, fatal {fatal}"
        );
        assert!(
            total.timed_out > 0 && total.lost_answers > 0,
            "the faults of ops 14 and 15 happen: {total:?}"
        );
    }

    #[test]
    #[ignore]
    fn replay_file() {
        let data = std::fs::read(std::env::var_os("REPLAY").expect("$REPLAY")).unwrap();
        replay(&data);
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("producer_machine", seeds());
    }
}
