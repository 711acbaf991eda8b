//! Schemas of the data-path responses: Produce, Fetch, ListOffsets, Metadata,
//! OffsetForLeaderEpoch.
//!
//! Field order, versions and nullability follow kafka-protocol 0.18's generated decoders, which
//! are what actually reads these bytes after the guard.

use kafka_protocol::messages::ApiKey;

use super::schema::Ty::{Bool, Bytes, I16, I32, I64, Str, Uuid};
use super::schema::{
    ALL, Field, I32_ARRAY, Message, StructDef, Ty, array, only, since, structs, until,
};

pub(super) const PRODUCE: Message = Message {
    api_key: ApiKey::Produce,
    versions: only(3, 12),
    flexible: 9,
    body: &PRODUCE_BODY,
};

structs! {
    PRODUCE_BODY = "" {
        responses: array(&PRODUCE_TOPIC), ALL;
        throttle_time_ms: I32, ALL;
        node_endpoints: array(&PRODUCE_NODE), since(10), tag(0);
    }
    PRODUCE_TOPIC = "responses." {
        name: Str, until(12);
        topic_id: Uuid, since(13);
        partition_responses: array(&PRODUCE_PARTITION), ALL;
    }
    PRODUCE_PARTITION = "responses.partition_responses." {
        index: I32, ALL;
        error_code: I16, ALL;
        base_offset: I64, ALL;
        log_append_time_ms: I64, ALL;
        log_start_offset: I64, since(5);
        record_errors: array(&PRODUCE_RECORD_ERROR), since(8);
        error_message: Str, since(8), nullable;
        current_leader: Ty::Struct(&PRODUCE_LEADER), since(10), tag(0);
    }
    PRODUCE_RECORD_ERROR = "responses.partition_responses.record_errors." {
        batch_index: I32, since(8);
        batch_index_error_message: Str, since(8), nullable;
    }
    PRODUCE_LEADER = "responses.partition_responses.current_leader." {
        leader_id: I32, since(10);
        leader_epoch: I32, since(10);
    }
    PRODUCE_NODE = "node_endpoints." {
        node_id: I32, since(10);
        host: Str, since(10);
        port: I32, since(10);
        rack: Str, since(10), nullable;
    }
}

pub(super) const FETCH: Message = Message {
    api_key: ApiKey::Fetch,
    versions: only(4, 17),
    flexible: 12,
    body: &FETCH_BODY,
};

structs! {
    FETCH_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, since(7);
        session_id: I32, since(7);
        responses: array(&FETCH_TOPIC), ALL;
        node_endpoints: array(&FETCH_NODE), since(16), tag(0);
    }
    FETCH_TOPIC = "responses." {
        topic: Str, until(12);
        topic_id: Uuid, since(13);
        partitions: array(&FETCH_PARTITION), ALL;
    }
    FETCH_PARTITION = "responses.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
        high_watermark: I64, ALL;
        last_stable_offset: I64, ALL;
        log_start_offset: I64, since(5);
        diverging_epoch: Ty::Struct(&FETCH_EPOCH), ALL, tag(0);
        current_leader: Ty::Struct(&FETCH_LEADER), ALL, tag(1);
        snapshot_id: Ty::Struct(&FETCH_SNAPSHOT), ALL, tag(2);
        aborted_transactions: array(&FETCH_ABORTED), ALL, nullable;
        preferred_read_replica: I32, since(11);
        records: Bytes, ALL, nullable;
    }
    FETCH_EPOCH = "responses.partitions.diverging_epoch." {
        epoch: I32, since(12);
        end_offset: I64, since(12);
    }
    FETCH_LEADER = "responses.partitions.current_leader." {
        leader_id: I32, since(12);
        leader_epoch: I32, since(12);
    }
    FETCH_SNAPSHOT = "responses.partitions.snapshot_id." {
        end_offset: I64, ALL;
        epoch: I32, ALL;
    }
    FETCH_ABORTED = "responses.partitions.aborted_transactions." {
        producer_id: I64, ALL;
        first_offset: I64, ALL;
    }
    FETCH_NODE = "node_endpoints." {
        node_id: I32, since(16);
        host: Str, since(16);
        port: I32, since(16);
        rack: Str, since(16), nullable;
    }
}

pub(super) const LIST_OFFSETS: Message = Message {
    api_key: ApiKey::ListOffsets,
    versions: only(1, 9),
    flexible: 6,
    body: &LIST_OFFSETS_BODY,
};

structs! {
    LIST_OFFSETS_BODY = "" {
        throttle_time_ms: I32, since(2);
        topics: array(&LIST_OFFSETS_TOPIC), ALL;
    }
    LIST_OFFSETS_TOPIC = "topics." {
        name: Str, ALL;
        partitions: array(&LIST_OFFSETS_PARTITION), ALL;
    }
    LIST_OFFSETS_PARTITION = "topics.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
        timestamp: I64, ALL;
        offset: I64, ALL;
        leader_epoch: I32, since(4);
    }
}

pub(super) const METADATA: Message = Message {
    api_key: ApiKey::Metadata,
    versions: only(0, 13),
    flexible: 9,
    body: &METADATA_BODY,
};

structs! {
    METADATA_BODY = "" {
        throttle_time_ms: I32, since(3);
        brokers: array(&METADATA_BROKER), ALL;
        cluster_id: Str, since(2), nullable;
        controller_id: I32, since(1);
        topics: array(&METADATA_TOPIC), ALL;
        cluster_authorized_operations: I32, only(8, 10);
        error_code: I16, since(13);
    }
    METADATA_BROKER = "brokers." {
        node_id: I32, ALL;
        host: Str, ALL;
        port: I32, ALL;
        rack: Str, since(1), nullable;
    }
    METADATA_TOPIC = "topics." {
        error_code: I16, ALL;
        // Nullable in the decoder at every version (the protocol says from v12).
        name: Str, ALL, nullable;
        topic_id: Uuid, since(10);
        is_internal: Bool, since(1);
        partitions: array(&METADATA_PARTITION), ALL;
        topic_authorized_operations: I32, since(8);
    }
    METADATA_PARTITION = "topics.partitions." {
        error_code: I16, ALL;
        partition_index: I32, ALL;
        leader_id: I32, ALL;
        leader_epoch: I32, since(7);
        replica_nodes: I32_ARRAY, ALL;
        isr_nodes: I32_ARRAY, ALL;
        offline_replicas: I32_ARRAY, since(5);
    }
}

pub(super) const OFFSET_FOR_LEADER_EPOCH: Message = Message {
    api_key: ApiKey::OffsetForLeaderEpoch,
    versions: only(2, 4),
    flexible: 4,
    body: &OFFSET_FOR_LEADER_EPOCH_BODY,
};

structs! {
    OFFSET_FOR_LEADER_EPOCH_BODY = "" {
        throttle_time_ms: I32, ALL;
        topics: array(&OFFSET_FOR_LEADER_EPOCH_TOPIC), ALL;
    }
    OFFSET_FOR_LEADER_EPOCH_TOPIC = "topics." {
        topic: Str, ALL;
        partitions: array(&OFFSET_FOR_LEADER_EPOCH_PARTITION), ALL;
    }
    OFFSET_FOR_LEADER_EPOCH_PARTITION = "topics.partitions." {
        error_code: I16, ALL;
        partition: I32, ALL;
        leader_epoch: I32, ALL;
        end_offset: I64, ALL;
    }
}
