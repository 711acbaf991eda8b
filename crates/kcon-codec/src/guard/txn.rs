//! Schemas of the transaction responses a transactional producer reads: AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions.
//!
//! Field order, versions and nullability follow kafka-protocol 0.18's generated decoders.
//! AddPartitionsToTxn is covered at v0-v3 only: from v4 its answer is the brokers' batched form
//! (per transaction), which a client does not send.

use kafka_protocol::messages::ApiKey;

use super::schema::Ty::{I16, I32, I64, Str};
use super::schema::{
    ALL, Field, I32_ARRAY, Message, StructDef, array, only, since, structs, until,
};

pub(super) const ADD_PARTITIONS_TO_TXN: Message = Message {
    api_key: ApiKey::AddPartitionsToTxn,
    versions: only(0, 3),
    flexible: 3,
    body: &ADD_PARTITIONS_TO_TXN_BODY,
};

structs! {
    ADD_PARTITIONS_TO_TXN_BODY = "" {
        throttle_time_ms: I32, ALL;
        results_by_topic_v3_and_below: array(&ADD_PARTITIONS_TO_TXN_TOPIC), until(3);
    }
    ADD_PARTITIONS_TO_TXN_TOPIC = "results_by_topic_v3_and_below." {
        name: Str, ALL;
        results_by_partition: array(&ADD_PARTITIONS_TO_TXN_PARTITION), ALL;
    }
    ADD_PARTITIONS_TO_TXN_PARTITION = "results_by_topic_v3_and_below.results_by_partition." {
        partition_index: I32, ALL;
        partition_error_code: I16, ALL;
    }
}

pub(super) const ADD_OFFSETS_TO_TXN: Message = Message {
    api_key: ApiKey::AddOffsetsToTxn,
    versions: only(0, 4),
    flexible: 3,
    body: &ADD_OFFSETS_TO_TXN_BODY,
};

structs! {
    ADD_OFFSETS_TO_TXN_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
    }
}

pub(super) const TXN_OFFSET_COMMIT: Message = Message {
    api_key: ApiKey::TxnOffsetCommit,
    versions: only(0, 5),
    flexible: 3,
    body: &TXN_OFFSET_COMMIT_BODY,
};

structs! {
    TXN_OFFSET_COMMIT_BODY = "" {
        throttle_time_ms: I32, ALL;
        topics: array(&TXN_OFFSET_COMMIT_TOPIC), ALL;
    }
    TXN_OFFSET_COMMIT_TOPIC = "topics." {
        name: Str, ALL;
        partitions: array(&TXN_OFFSET_COMMIT_PARTITION), ALL;
    }
    TXN_OFFSET_COMMIT_PARTITION = "topics.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
    }
}

pub(super) const END_TXN: Message = Message {
    api_key: ApiKey::EndTxn,
    versions: only(0, 5),
    flexible: 3,
    body: &END_TXN_BODY,
};

structs! {
    END_TXN_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        producer_id: I64, since(5);
        producer_epoch: I16, since(5);
    }
}

pub(super) const DESCRIBE_TRANSACTIONS: Message = Message {
    api_key: ApiKey::DescribeTransactions,
    versions: only(0, 0),
    flexible: 0,
    body: &DESCRIBE_TRANSACTIONS_BODY,
};

structs! {
    DESCRIBE_TRANSACTIONS_BODY = "" {
        throttle_time_ms: I32, ALL;
        transaction_states: array(&DESCRIBE_TRANSACTIONS_STATE), ALL;
    }
    DESCRIBE_TRANSACTIONS_STATE = "transaction_states." {
        error_code: I16, ALL;
        transactional_id: Str, ALL;
        transaction_state: Str, ALL;
        transaction_timeout_ms: I32, ALL;
        transaction_start_time_ms: I64, ALL;
        producer_id: I64, ALL;
        producer_epoch: I16, ALL;
        topics: array(&DESCRIBE_TRANSACTIONS_TOPIC), ALL;
    }
    DESCRIBE_TRANSACTIONS_TOPIC = "transaction_states.topics." {
        topic: Str, ALL;
        partitions: I32_ARRAY, ALL;
    }
}
