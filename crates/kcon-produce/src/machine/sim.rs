//! A simulated cluster for the transactional producer, compiled for the tests and under the
//! feature `fuzzing`: one broker that is the transaction coordinator, the group coordinator
//! and the leader of topic `t`'s partitions, on a wall clock that stands still. What it ends up
//! holding (records committed or aborted, offsets kept) is what a read_committed reader and the
//! group would see. The machine's tests and the fuzz target `producer_machine` drive the
//! machine against it.
//!
//! Faults are made by hand, never by a clock: errors pushed on an API
//! ([`Cluster::push_error`]), the coordinator timing the open transaction out
//! ([`Cluster::time_out_open_transaction`]), an answer lost after the request took effect (the
//! caller answers the request and hands the machine a retriable failure instead; a retried
//! EndTxn or TxnOffsetCommit is answered as Apache Kafka's coordinators answer it), and an
//! EndTxn whose markers are held ([`Cluster::hold_markers`], until
//! [`Cluster::write_markers`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use kcon_codec::kafka_protocol::ResponseError as E;
use kcon_codec::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kcon_codec::kafka_protocol::messages::describe_transactions_response::TransactionState;
use kcon_codec::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use kcon_codec::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kcon_codec::kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, BrokerId, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdResponse, MetadataResponse, ProduceResponse,
    ProducerId, TopicName, TxnOffsetCommitResponse, metadata_response::MetadataResponseBroker,
    metadata_response::MetadataResponsePartition, metadata_response::MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::RequestFailure;
use kcon_core::coordinator::FoundCoordinator;
use kcon_pool::Metadata;

use super::{Incoming, Request, Response, SenderMachine, TxnProtocol};
use crate::config::ProducerConfig;
use crate::producer::Counters;
use crate::record::ProducerRecord;

/// The milliseconds since the epoch the wall clock stands at: the machine is handed this, and
/// never another, as the wall clock.
pub const WALL_MS: i64 = 1_700_000_000_000;

/// A producer's configuration: bootstrap `b1:9092` and `properties`.
pub fn config(properties: &[(&str, &str)]) -> Arc<ProducerConfig> {
    let mut config = ProducerConfig::default();
    config.set("bootstrap.servers", "b1:9092").unwrap();
    for (name, value) in properties {
        config.set(name, value).unwrap();
    }
    Arc::new(config)
}

/// Broker 1 leads every partition of topic `t`, which has `partitions`.
pub fn metadata_of(partitions: i32) -> Arc<Metadata> {
    let answer = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("b1"))
                .with_port(9092),
        ])
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                                .with_leader_epoch(0)
                        })
                        .collect(),
                ),
        ]);
    Arc::new(Metadata::from_answer(&answer))
}

/// The APIs random faults are pushed on.
pub const FAULT_APIS: &[Api] = &[
    Api::AddPartitions,
    Api::AddOffsets,
    Api::TxnOffsetCommit,
    Api::EndTxn,
    Api::Produce,
    Api::Find,
];

/// The retriable errors a random fault picks among.
pub const RETRIABLE: &[E] = &[
    E::ConcurrentTransactions,
    E::CoordinatorLoadInProgress,
    E::NotCoordinator,
    E::CoordinatorNotAvailable,
];

/// The error a random fault pushes on `api` for `draw` (0 to 19): now and then fencing, a lost
/// producer id or too few replicas for a Produce, a refused topic for AddPartitionsToTxn, a
/// coordinator not available for FindCoordinator, otherwise what `retriable` picks among
/// [`RETRIABLE`] (asked only then, so a seeded draw stays the same).
pub fn fault(api: Api, draw: u8, retriable: impl FnOnce(&[E]) -> E) -> E {
    match (api, draw) {
        (_, 0) => E::ProducerFenced,
        (Api::Produce, 1..=3) => E::UnknownProducerId,
        (Api::Produce, _) => E::NotEnoughReplicas,
        (Api::Find, _) => E::CoordinatorNotAvailable,
        (Api::AddPartitions, 1..=2) => E::TopicAuthorizationFailed,
        _ => retriable(RETRIABLE),
    }
}

/// Which API a pushed error is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// FindCoordinator.
    Find,
    /// InitProducerId.
    Init,
    /// AddPartitionsToTxn.
    AddPartitions,
    /// AddOffsetsToTxn.
    AddOffsets,
    /// TxnOffsetCommit.
    TxnOffsetCommit,
    /// EndTxn.
    EndTxn,
    /// Produce.
    Produce,
    /// DescribeTransactions.
    Describe,
}

impl Api {
    /// The API of `request`, if it is one the cluster's faults name (not Metadata).
    pub fn of(request: &Request) -> Option<Api> {
        match request {
            Request::Produce(..) => Some(Api::Produce),
            Request::InitProducerId(_) => Some(Api::Init),
            Request::FindCoordinator { .. } => Some(Api::Find),
            Request::AddPartitionsToTxn(_) => Some(Api::AddPartitions),
            Request::AddOffsetsToTxn(_) => Some(Api::AddOffsets),
            Request::TxnOffsetCommit(..) => Some(Api::TxnOffsetCommit),
            Request::EndTxn(..) => Some(Api::EndTxn),
            Request::DescribeTransactions(_) => Some(Api::Describe),
            Request::Metadata(_) => None,
        }
    }
}

/// A batch as the leader keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The partition.
    pub partition: i32,
    /// Records in the batch.
    pub records: usize,
    /// The producer epoch it carries.
    pub producer_epoch: i16,
    /// Its first sequence number.
    pub base_sequence: i32,
    /// Whether it is marked transactional.
    pub transactional: bool,
}

/// The cluster as the transactional producer sees it: one broker (id 1) that coordinates the
/// transactional id and the group and leads the partitions of `t`, at transaction version 1
/// ([`Cluster::new`]) or 2 ([`Cluster::v2`], KIP-890: partitions and offsets join a
/// transaction implicitly, and every EndTxn bumps the epoch).
pub struct Cluster {
    /// Transaction version 2 finalized: the producer must speak it.
    pub v2: bool,
    /// The producer id it gives.
    pub producer_id: i64,
    /// The producer's current epoch (-1 before the first InitProducerId).
    pub epoch: i16,
    /// The transaction open at the coordinator: partitions added, and whether offsets were.
    pub open: Option<(BTreeSet<i32>, bool)>,
    /// Batches written, in order, with the transaction they belong to (index into `ended`),
    /// or none.
    pub log: Vec<(Written, usize)>,
    /// Each transaction's end: committed or aborted.
    pub ended: Vec<Option<bool>>,
    /// Offsets committed inside the open transaction.
    pub pending_offsets: BTreeMap<i32, i64>,
    /// Offsets that took effect: what the group sees.
    pub offsets: BTreeMap<i32, i64>,
    /// The group's generation: TxnOffsetCommit with another is refused.
    pub generation: i32,
    /// Errors to answer, per API, in order.
    pub errors: VecDeque<(Api, i16)>,
    /// Requests seen, in order.
    pub seen: Vec<Api>,
    /// APIs whose next request takes effect but whose answer is lost ([`Cluster::reply`]).
    pub lose: Vec<Api>,
    /// The epoch the coordinator fenced when it timed a transaction out: a bump naming it is
    /// the producer of that transaction coming back, as Apache Kafka accepts it.
    pub timed_out_epoch: Option<i16>,
    /// How the last transaction ended, while no other is open and no InitProducerId came
    /// since: the epoch its EndTxn carried (or, for one timed out at transaction version 2, the
    /// epoch it was open under) and whether it committed. A retried EndTxn matching it is
    /// answered as done.
    pub last_end: Option<(i16, bool)>,
    /// The next EndTxn that ends a transaction leaves it completing: decided, its markers not
    /// written until [`Cluster::write_markers`].
    pub hold_markers: bool,
    /// The transaction decided whose markers are not written yet.
    pub completing: Option<Completing>,
}

/// A transaction the coordinator decided (PrepareCommit or PrepareAbort) whose markers are not
/// written yet: a read_committed reader sees none of its records, and the group none of its
/// offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completing {
    /// The transaction, as an index into [`Cluster::ended`].
    pub txn: usize,
    /// Whether it commits.
    pub committed: bool,
    /// The offsets it commits.
    pub offsets: BTreeMap<i32, i64>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    /// A cluster at transaction version 1, with no producer id given yet.
    pub fn new() -> Self {
        Cluster {
            v2: false,
            producer_id: 4000,
            epoch: -1,
            open: None,
            log: Vec::new(),
            ended: Vec::new(),
            pending_offsets: BTreeMap::new(),
            offsets: BTreeMap::new(),
            generation: 3,
            errors: VecDeque::new(),
            seen: Vec::new(),
            lose: Vec::new(),
            timed_out_epoch: None,
            last_end: None,
            hold_markers: false,
            completing: None,
        }
    }

    /// A cluster at transaction version 2.
    pub fn v2() -> Self {
        Cluster {
            v2: true,
            ..Cluster::new()
        }
    }

    /// The protocol the producer must speak to this cluster.
    fn protocol(&self) -> TxnProtocol {
        if self.v2 {
            TxnProtocol::V2
        } else {
            TxnProtocol::V1
        }
    }

    /// The finalized `transaction.version` the cluster reports.
    fn feature_level(&self) -> i16 {
        if self.v2 { 2 } else { 0 }
    }

    /// The coordinator ends the open transaction under a new epoch, as it does once
    /// `transaction.timeout.ms` passes (`timed_out`) or another producer with the
    /// transactional id initializes: aborted, its markers carrying the new epoch.
    pub fn abort_under_a_new_epoch(&mut self, timed_out: bool) {
        assert!(self.open.take().is_some(), "no transaction open");
        let i = self.current();
        self.ended[i] = Some(false);
        self.pending_offsets.clear();
        self.timed_out_epoch = timed_out.then_some(self.epoch);
        // At transaction version 2 the transaction is left CompleteAbort one epoch above the
        // producer's: its EndTxn at the old epoch is taken as a retry of that abort.
        self.last_end = (timed_out && self.v2).then_some((self.epoch, false));
        self.epoch += 1;
    }

    /// The coordinator times the open transaction out, as Apache Kafka's does once
    /// `transaction.timeout.ms` passes with it ongoing: it fences the producer's epoch and
    /// aborts the transaction under the bumped epoch, at either transaction version. The
    /// leader then refuses the producer's batches of the old epoch (INVALID_PRODUCER_EPOCH),
    /// the coordinator its AddPartitionsToTxn and AddOffsetsToTxn (PRODUCER_FENCED), the group
    /// coordinator its TxnOffsetCommit (INVALID_PRODUCER_EPOCH, the transaction verification's
    /// answer); its EndTxn is fenced at version 1, and at version 2 an abort is taken as done
    /// and a commit refused with INVALID_TXN_STATE. False, and nothing changes, when no
    /// transaction is ongoing (none has a partition or offsets in it, or the one decided is
    /// completing).
    pub fn time_out_open_transaction(&mut self) -> bool {
        if self.open.is_none() || self.completing.is_some() {
            return false;
        }
        self.abort_under_a_new_epoch(true);
        true
    }

    /// The coordinator writes the markers of the transaction completing: a read_committed
    /// reader sees its records if it committed, the group its offsets. False when none is
    /// completing.
    pub fn write_markers(&mut self) -> bool {
        let Some(completing) = self.completing.take() else {
            return false;
        };
        if completing.committed {
            self.offsets.extend(completing.offsets);
        }
        true
    }

    /// The open transaction, a new one if none is: one that opens forgets how the last ended.
    fn opened(&mut self) -> &mut (BTreeSet<i32>, bool) {
        if self.open.is_none() {
            self.last_end = None;
        }
        self.open.get_or_insert_with(Default::default)
    }

    /// Ends the open transaction as an EndTxn at `epoch` asks (`committed`): decided, its
    /// markers written at once unless [`Cluster::hold_markers`] is set.
    fn end_open(&mut self, epoch: i16, committed: bool) {
        assert!(self.open.take().is_some(), "EndTxn with nothing added");
        let i = self.current();
        self.ended[i] = Some(committed);
        let offsets = std::mem::take(&mut self.pending_offsets);
        self.last_end = Some((epoch, committed));
        if std::mem::take(&mut self.hold_markers) {
            self.completing = Some(Completing {
                txn: i,
                committed,
                offsets,
            });
        } else if committed {
            self.offsets.extend(offsets);
        }
    }

    /// The answer to an EndTxn (`committed`) that finds no transaction ongoing at its epoch:
    /// the one completing is CONCURRENT_TRANSACTIONS for the same outcome, the last one ended
    /// is done for the same outcome, either with the other outcome is INVALID_TXN_STATE.
    fn end_again(&self, committed: bool) -> i16 {
        let ended = match (&self.completing, self.last_end) {
            (Some(c), _) if c.committed == committed => return E::ConcurrentTransactions.code(),
            (Some(_), _) => return E::InvalidTxnState.code(),
            (None, Some((_, ended))) => ended,
            (None, None) => panic!("EndTxn with nothing added"),
        };
        if ended == committed {
            0
        } else {
            E::InvalidTxnState.code()
        }
    }

    /// Answers the next request of `api` with `error`.
    pub fn push_error(&mut self, api: Api, error: E) {
        self.errors.push_back((api, error.code()));
    }

    fn error_for(&mut self, api: Api) -> i16 {
        self.seen.push(api);
        match self.errors.iter().position(|(a, _)| *a == api) {
            Some(i) => self.errors.remove(i).map_or(0, |(_, c)| c),
            None => 0,
        }
    }

    /// The transaction open now, as an index into `ended` (a new one if none is).
    fn current(&mut self) -> usize {
        if self.ended.last().is_none_or(|e| e.is_some()) {
            self.ended.push(None);
        }
        self.ended.len() - 1
    }

    /// What the machine gets for `request`: [`answer`](Cluster::answer)'s answer, or, for the
    /// next request of an API [`lose`](Cluster::lose) names, a retriable failure once the
    /// request took effect (the connection closed before the answer came back).
    pub fn reply(&mut self, request: Request) -> Result<Response, RequestFailure> {
        let lost = Api::of(&request).and_then(|api| self.lose.iter().position(|a| *a == api));
        let response = self.answer(request);
        match lost {
            Some(i) => {
                self.lose.remove(i);
                Err(RequestFailure::retriable("the connection closed"))
            }
            None => Ok(response),
        }
    }

    /// The answer to `request`, as the broker gives it, with what it changes applied.
    pub fn answer(&mut self, request: Request) -> Response {
        match request {
            Request::FindCoordinator { key, key_type } => {
                let code = self.error_for(Api::Find);
                let _ = (key, key_type);
                Response::FindCoordinator(Ok(FoundCoordinator {
                    error_code: code,
                    error_message: None,
                    coordinator: (code == 0).then(|| kcon_core::Coordinator {
                        id: 1,
                        host: "b1".into(),
                        port: 9092,
                    }),
                }))
            }
            Request::InitProducerId(r) => {
                let code = self.error_for(Api::Init);
                let level = self.feature_level();
                if code != 0 {
                    let refused = InitProducerIdResponse::default().with_error_code(code);
                    return Response::InitProducerId(Ok((refused, level)));
                }
                assert!(r.transactional_id.is_some());
                if r.producer_id.0 >= 0 {
                    // A bump names the current id and epoch, or the epoch a timeout fenced.
                    assert_eq!(r.producer_id.0, self.producer_id);
                    if r.producer_epoch != self.epoch
                        && Some(r.producer_epoch) != self.timed_out_epoch
                    {
                        let fenced = InitProducerIdResponse::default()
                            .with_error_code(E::ProducerFenced.code());
                        return Response::InitProducerId(Ok((fenced, level)));
                    }
                }
                if self.completing.is_some() {
                    // The markers of the last transaction are still being written.
                    let busy = InitProducerIdResponse::default()
                        .with_error_code(E::ConcurrentTransactions.code());
                    return Response::InitProducerId(Ok((busy, level)));
                }
                self.timed_out_epoch = None;
                self.last_end = None;
                // A new epoch aborts what the last one left open.
                if self.open.take().is_some() {
                    let i = self.current();
                    self.ended[i] = Some(false);
                    self.pending_offsets.clear();
                }
                self.epoch += 1;
                let id = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(self.producer_id))
                    .with_producer_epoch(self.epoch);
                Response::InitProducerId(Ok((id, level)))
            }
            Request::AddPartitionsToTxn(r) => {
                assert!(!self.v2, "AddPartitionsToTxn at transaction version 2");
                let mut code = self.error_for(Api::AddPartitions);
                if code == 0 {
                    code = self.coordinator_check(r.v3_and_below_producer_epoch);
                }
                let mut results = Vec::new();
                for topic in &r.v3_and_below_topics {
                    let mut partitions = Vec::new();
                    for &p in &topic.partitions {
                        if code == 0 {
                            self.opened().0.insert(p);
                        }
                        partitions.push(
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code),
                        );
                    }
                    results.push(
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(topic.name.clone())
                            .with_results_by_partition(partitions),
                    );
                }
                Response::AddPartitionsToTxn(Ok(AddPartitionsToTxnResponse::default()
                    .with_results_by_topic_v3_and_below(results)))
            }
            Request::AddOffsetsToTxn(r) => {
                assert!(!self.v2, "AddOffsetsToTxn at transaction version 2");
                let mut code = self.error_for(Api::AddOffsets);
                if code == 0 {
                    code = self.coordinator_check(r.producer_epoch);
                }
                if code == 0 {
                    self.opened().1 = true;
                }
                Response::AddOffsetsToTxn(Ok(
                    AddOffsetsToTxnResponse::default().with_error_code(code)
                ))
            }
            Request::TxnOffsetCommit(r, protocol) => {
                assert_eq!(protocol, self.protocol());
                let mut code = self.error_for(Api::TxnOffsetCommit);
                if code == 0 && r.producer_epoch != self.epoch {
                    // The group coordinator verifies the transaction with the transaction
                    // coordinator, whose PRODUCER_FENCED it answers as INVALID_PRODUCER_EPOCH.
                    code = E::InvalidProducerEpoch.code();
                } else if code == 0 && self.completing.is_some() {
                    code = E::ConcurrentTransactions.code();
                }
                if self.v2 && code == 0 {
                    // TxnOffsetCommit v5 adds the offsets to the transaction.
                    self.opened().1 = true;
                }
                assert!(
                    self.v2 || code != 0 || self.open.as_ref().is_some_and(|o| o.1),
                    "TxnOffsetCommit before AddOffsetsToTxn"
                );
                if code == 0 && r.generation_id != self.generation {
                    code = E::IllegalGeneration.code();
                }
                let mut topics = Vec::new();
                for topic in &r.topics {
                    let mut partitions = Vec::new();
                    for p in &topic.partitions {
                        if code == 0 {
                            // Written again when sent again: the last write of a partition's
                            // offset wins, so a retry changes nothing.
                            self.pending_offsets
                                .insert(p.partition_index, p.committed_offset);
                        }
                        partitions.push(
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code),
                        );
                    }
                    topics.push(
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(topic.name.clone())
                            .with_partitions(partitions),
                    );
                }
                Response::TxnOffsetCommit(
                    Ok(TxnOffsetCommitResponse::default().with_topics(topics)),
                )
            }
            Request::EndTxn(r, protocol) => {
                assert_eq!(protocol, self.protocol());
                if self.v2 {
                    return self.end_v2(&r);
                }
                let mut code = self.error_for(Api::EndTxn);
                // An old epoch's EndTxn is fenced, whatever ended its transaction (Apache
                // Kafka's coordinator at transaction version 1).
                if code == 0 && r.producer_epoch < self.epoch {
                    code = E::ProducerFenced.code();
                }
                if code == 0 {
                    assert_eq!(r.producer_epoch, self.epoch);
                    if self.open.is_some() && self.completing.is_none() {
                        self.end_open(r.producer_epoch, r.committed);
                    } else {
                        // A retry: at version 1 the epoch stays, and the state says.
                        code = self.end_again(r.committed);
                    }
                }
                Response::EndTxn(Ok(EndTxnResponse::default().with_error_code(code)))
            }
            Request::Produce(r, protocol) => {
                assert_eq!(protocol, Some(self.protocol()));
                let code = self.error_for(Api::Produce);
                assert!(r.transactional_id.is_some());
                let mut topics = Vec::new();
                for topic in &r.topic_data {
                    let mut partitions = Vec::new();
                    for p in &topic.partition_data {
                        let bytes = p.records.clone().expect("a batch");
                        let batch = kcon_codec::records::RecordBatches::new(
                            bytes,
                            kcon_codec::records::DecodeOptions::default(),
                        )
                        .next()
                        .expect("a batch")
                        .expect("a batch that decodes");
                        let written = Written {
                            partition: p.index,
                            records: batch.record_count() as usize,
                            producer_epoch: batch.producer_epoch(),
                            base_sequence: batch.base_sequence(),
                            transactional: batch.is_transactional(),
                        };
                        // The leader has seen the markers of a newer epoch.
                        let code = if code == 0 && written.producer_epoch < self.epoch {
                            E::InvalidProducerEpoch.code()
                        } else if code == 0 && self.completing.is_some() {
                            // The transaction verification finds the last one completing.
                            E::ConcurrentTransactions.code()
                        } else {
                            code
                        };
                        if code == 0 && self.v2 {
                            // Produce v12 adds the partition to the transaction.
                            self.opened().0.insert(p.index);
                        }
                        if code == 0 {
                            assert!(
                                self.open.as_ref().is_some_and(|o| o.0.contains(&p.index)),
                                "a batch for t-{} before the partition was added",
                                p.index
                            );
                            assert_eq!(written.producer_epoch, self.epoch);
                            let i = self.current();
                            self.log.push((written, i));
                        }
                        partitions.push(
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code)
                                .with_base_offset(self.log.len() as i64)
                                .with_log_append_time_ms(-1),
                        );
                    }
                    topics.push(
                        TopicProduceResponse::default()
                            .with_name(topic.name.clone())
                            .with_partition_responses(partitions),
                    );
                }
                Response::Produce(Ok(ProduceResponse::default().with_responses(topics)))
            }
            Request::DescribeTransactions(r) => {
                let code = self.error_for(Api::Describe);
                let state = match (&self.completing, &self.open, self.last_end) {
                    (Some(c), _, _) if c.committed => "PrepareCommit",
                    (Some(_), _, _) => "PrepareAbort",
                    (None, Some(_), _) => "Ongoing",
                    (None, None, Some((_, true))) => "CompleteCommit",
                    (None, None, Some((_, false))) => "CompleteAbort",
                    (None, None, None) => "Empty",
                };
                let states = r
                    .transactional_ids
                    .into_iter()
                    .map(|id| {
                        TransactionState::default()
                            .with_transactional_id(id)
                            .with_error_code(code)
                            .with_transaction_state(StrBytes::from_static_str(state))
                            .with_producer_id(ProducerId(self.producer_id))
                            .with_producer_epoch(self.epoch)
                    })
                    .collect();
                Response::DescribeTransactions(Ok(
                    DescribeTransactionsResponse::default().with_transaction_states(states)
                ))
            }
            Request::Metadata(_) => Response::Metadata(Ok(metadata_of(2))),
        }
    }

    /// EndTxn at transaction version 2, as Apache Kafka 4's coordinator answers it: the epoch
    /// bumped and returned. An EndTxn at the epoch just below, the one the last end (or a
    /// timeout) bumped from, is a retry: the same outcome is answered as done with the current
    /// epoch (CONCURRENT_TRANSACTIONS while the markers are written), the other with
    /// INVALID_TXN_STATE (a commit of a transaction the timeout aborted); any other old epoch
    /// is fenced.
    fn end_v2(&mut self, r: &EndTxnRequest) -> Response {
        let code = self.error_for(Api::EndTxn);
        let producer_id = self.producer_id;
        let answer = move |code: i16, epoch: i16| {
            let mut a = EndTxnResponse::default().with_error_code(code);
            if code == 0 {
                a = a
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch);
            }
            Response::EndTxn(Ok(a))
        };
        if code == 0 && r.producer_epoch < self.epoch {
            let retry = self
                .last_end
                .is_some_and(|(epoch, _)| epoch == r.producer_epoch);
            if !retry {
                return answer(E::ProducerFenced.code(), -1);
            }
            let code = self.end_again(r.committed);
            if code == 0 && !r.committed {
                self.timed_out_epoch = None;
            }
            return answer(code, self.epoch);
        }
        if code != 0 {
            return answer(code, -1);
        }
        assert_eq!(r.producer_epoch, self.epoch);
        if self.open.is_some() {
            self.end_open(r.producer_epoch, r.committed);
        } else {
            self.last_end = Some((r.producer_epoch, r.committed));
        }
        self.epoch += 1;
        answer(0, self.epoch)
    }

    /// The transaction coordinator's checks of an AddPartitionsToTxn or AddOffsetsToTxn at
    /// `epoch`: another epoch is fenced, and the last transaction's markers still being
    /// written make it wait (CONCURRENT_TRANSACTIONS).
    fn coordinator_check(&self, epoch: i16) -> i16 {
        if epoch != self.epoch {
            E::ProducerFenced.code()
        } else if self.completing.is_some() {
            E::ConcurrentTransactions.code()
        } else {
            0
        }
    }

    /// Whether the markers of transaction `txn` are written.
    fn marked(&self, txn: usize) -> bool {
        self.completing.as_ref().is_none_or(|c| c.txn != txn)
    }

    /// Records a read_committed reader sees, per partition.
    pub fn committed_records(&self) -> BTreeMap<i32, usize> {
        let mut seen = BTreeMap::new();
        for (w, txn) in &self.log {
            if self.ended[*txn] == Some(true) && self.marked(*txn) {
                *seen.entry(w.partition).or_insert(0) += w.records;
            }
        }
        seen
    }

    /// Records written in aborted transactions.
    pub fn aborted_records(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, t)| self.ended[*t] == Some(false) && self.marked(*t))
            .map(|(w, _)| w.records)
            .sum()
    }
}

/// A transactional producer's configuration (`transactional.id` `tx-1`, `linger.ms` 5, the
/// retry backoff 100 ms to 1 s) with `extra`.
pub fn txn_config(extra: &[(&str, &str)]) -> Arc<ProducerConfig> {
    let mut properties = vec![
        ("transactional.id", "tx-1"),
        ("linger.ms", "5"),
        ("retry.backoff.ms", "100"),
        ("retry.backoff.max.ms", "1000"),
    ];
    properties.extend_from_slice(extra);
    config(&properties)
}

/// A record of `t` to `partition`, queued at `now` for `waiter`.
pub fn record_to(waiter: u32, partition: i32, now: Instant) -> Incoming<u32> {
    let record = ProducerRecord::new("t", "v").with_partition(partition);
    Incoming {
        size: record.size_upper_bound(),
        record,
        packed: None,
        waiter,
        received: now,
    }
}

/// A transactional producer's machine (configured by [`txn_config`] with `extra`), partitioning
/// by [`metadata_of`] two partitions, its jitter from `seed`; not yet initialized.
pub fn transactional_machine(
    extra: &[(&str, &str)],
    seed: u64,
    now: Instant,
) -> SenderMachine<u32> {
    let stats = Arc::new(Counters::default());
    SenderMachine::new(txn_config(extra), metadata_of(2), stats, seed, now, WALL_MS)
}
