//! A scripted broker for the idempotent producer's sequence handling, which a real broker
//! only shows after losing state: one broker (id 1) leading every partition of one topic, that
//! answers ApiVersions, Metadata, InitProducerId (ids 1, 2, ... at epoch 0) and Produce, the
//! first Produce answers with the error codes the test gives (then success), and records what
//! each Produce carried.

use kcon_codec::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, ProduceRequest,
    ProduceResponse, ProducerId,
};
use kcon_scripted::{
    Answer, Received, Script, ScriptedBroker, kcon_versions_of, one_broker_metadata,
};

const ANSWERED: [ApiKey; 4] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::InitProducerId,
];

/// One batch a Produce request carried, and the code it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The partition.
    pub partition: i32,
    /// The batch header's producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// Its base sequence.
    pub base_sequence: i32,
    /// Its record count.
    pub records: i32,
    /// The error code it was answered with.
    pub answered: i16,
}

#[derive(Debug)]
struct State {
    topic: String,
    partitions: i32,
    /// Error codes for the next batches, in order; success once empty.
    script: Vec<i16>,
    sent: Vec<Sent>,
    /// The log end per partition: batches answered with success are written.
    ends: Vec<i64>,
    producer_ids: i64,
}

/// The scripted broker, serving until dropped.
#[derive(Debug)]
pub struct SequenceBroker(ScriptedBroker<State>);

impl SequenceBroker {
    /// A broker for `topic` with `partitions` partitions whose first batches are answered with
    /// `script`'s codes, in order.
    pub async fn start(topic: &str, partitions: i32, script: Vec<i16>) -> SequenceBroker {
        let state = State {
            topic: topic.to_owned(),
            partitions,
            script,
            sent: Vec::new(),
            ends: vec![0; partitions as usize],
            producer_ids: 0,
        };
        SequenceBroker(ScriptedBroker::start(kcon_versions_of(&ANSWERED), state).await)
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.0.bootstrap()
    }

    /// Every batch received, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.0.script().sent.clone()
    }

    /// How many producer ids it gave out.
    pub fn producer_ids(&self) -> i64 {
        self.0.script().producer_ids
    }
}

impl Script for State {
    /// Panics on a request kcon's codec cannot decode (a bug in what kcon sent).
    fn answer(&mut self, r: &Received) -> Answer {
        match r.api() {
            Some(ApiKey::Metadata) => {
                let _ = r.decode::<MetadataRequest>();
                let m = one_broker_metadata(r.broker, &[(&self.topic, self.partitions as usize)]);
                r.answer::<MetadataRequest>(&m)
            }
            Some(ApiKey::InitProducerId) => {
                let _ = r.decode::<InitProducerIdRequest>();
                self.producer_ids += 1;
                let response = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(self.producer_ids))
                    .with_producer_epoch(0);
                r.answer::<InitProducerIdRequest>(&response)
            }
            Some(ApiKey::Produce) => {
                let request = r.decode::<ProduceRequest>();
                let response = produce(self, &request);
                r.answer::<ProduceRequest>(&response)
            }
            _ => Answer::Silent,
        }
    }
}

fn produce(s: &mut State, request: &ProduceRequest) -> ProduceResponse {
    let mut topics = Vec::new();
    for t in &request.topic_data {
        let mut partitions = Vec::new();
        for p in &t.partition_data {
            let batch = p.records.as_deref().unwrap_or_default();
            // A magic-2 batch header: producer id at 43, epoch at 51, base sequence at 53,
            // record count at 57.
            let field = |at: usize, n: usize| batch.get(at..at + n).unwrap_or(&[0; 8][..n]);
            let sent = Sent {
                partition: p.index,
                producer_id: i64::from_be_bytes(field(43, 8).try_into().unwrap()),
                producer_epoch: i16::from_be_bytes(field(51, 2).try_into().unwrap()),
                base_sequence: i32::from_be_bytes(field(53, 4).try_into().unwrap()),
                records: i32::from_be_bytes(field(57, 4).try_into().unwrap()),
                answered: if s.script.is_empty() {
                    0
                } else {
                    s.script.remove(0)
                },
            };
            s.sent.push(sent);
            let mut answer = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(sent.answered);
            if sent.answered == 0
                && let Some(end) = s.ends.get_mut(p.index as usize)
            {
                answer = answer.with_base_offset(*end);
                *end += i64::from(sent.records);
            }
            partitions.push(answer);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(topics)
}
