//! Schemas of the share-group responses (KIP-932): those a share consumer reads
//! (ShareGroupHeartbeat at v1, the first version Apache Kafka released; ShareFetch and
//! ShareAcknowledge at v1 and v2, whose decoders are kcon's `share_v2` over kafka-protocol's v1) and those that describe a share group from outside it (ShareGroupDescribe v1,
//! DescribeShareGroupOffsets v0 and v1, whose decoder is kcon's `share_offsets_v1` over
//! kafka-protocol's v0). Every version of each is flexible.
//!
//! Field order, versions and nullability follow kafka-protocol 0.18's generated decoders.

use kafka_protocol::messages::ApiKey;

use super::schema::Ty::{Bytes, I16, I32, I64, OptStruct, Str, Struct, Uuid};
use super::schema::{
    ALL, Field, I32_ARRAY, Message, STR_ARRAY, StructDef, array, only, since, structs,
};

pub(super) const SHARE_GROUP_HEARTBEAT: Message = Message {
    api_key: ApiKey::ShareGroupHeartbeat,
    versions: only(1, 1),
    flexible: 0,
    body: &SHARE_GROUP_HEARTBEAT_BODY,
};

structs! {
    SHARE_GROUP_HEARTBEAT_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        member_id: Str, ALL, nullable;
        member_epoch: I32, ALL;
        heartbeat_interval_ms: I32, ALL;
        assignment: OptStruct(&SHARE_GROUP_HEARTBEAT_ASSIGNMENT), ALL;
    }
    SHARE_GROUP_HEARTBEAT_ASSIGNMENT = "assignment." {
        topic_partitions: array(&SHARE_GROUP_HEARTBEAT_TOPIC), ALL;
    }
    SHARE_GROUP_HEARTBEAT_TOPIC = "assignment.topic_partitions." {
        topic_id: Uuid, ALL;
        partitions: I32_ARRAY, ALL;
    }
}

pub(super) const SHARE_FETCH: Message = Message {
    api_key: ApiKey::ShareFetch,
    // v2's answer is v1's (kcon's `share_v2`).
    versions: only(1, 2),
    flexible: 0,
    body: &SHARE_FETCH_BODY,
};

structs! {
    SHARE_FETCH_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        acquisition_lock_timeout_ms: I32, ALL;
        responses: array(&SHARE_FETCH_TOPIC), ALL;
        node_endpoints: array(&SHARE_NODE), ALL;
    }
    SHARE_FETCH_TOPIC = "responses." {
        topic_id: Uuid, ALL;
        partitions: array(&SHARE_FETCH_PARTITION), ALL;
    }
    SHARE_FETCH_PARTITION = "responses.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        acknowledge_error_code: I16, ALL;
        acknowledge_error_message: Str, ALL, nullable;
        current_leader: Struct(&SHARE_LEADER), ALL;
        records: Bytes, ALL, nullable;
        acquired_records: array(&SHARE_FETCH_ACQUIRED), ALL;
    }
    // Also ShareAcknowledge's: the same fields at the same paths.
    SHARE_LEADER = "responses.partitions.current_leader." {
        leader_id: I32, ALL;
        leader_epoch: I32, ALL;
    }
    SHARE_FETCH_ACQUIRED = "responses.partitions.acquired_records." {
        first_offset: I64, ALL;
        last_offset: I64, ALL;
        delivery_count: I16, ALL;
    }
    // Also ShareAcknowledge's.
    SHARE_NODE = "node_endpoints." {
        node_id: I32, ALL;
        host: Str, ALL;
        port: I32, ALL;
        rack: Str, ALL, nullable;
    }
}

pub(super) const SHARE_ACKNOWLEDGE: Message = Message {
    api_key: ApiKey::ShareAcknowledge,
    versions: only(1, 2),
    flexible: 0,
    body: &SHARE_ACKNOWLEDGE_BODY,
};

structs! {
    SHARE_ACKNOWLEDGE_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        acquisition_lock_timeout_ms: I32, since(2);
        responses: array(&SHARE_ACKNOWLEDGE_TOPIC), ALL;
        node_endpoints: array(&SHARE_NODE), ALL;
    }
    SHARE_ACKNOWLEDGE_TOPIC = "responses." {
        topic_id: Uuid, ALL;
        partitions: array(&SHARE_ACKNOWLEDGE_PARTITION), ALL;
    }
    SHARE_ACKNOWLEDGE_PARTITION = "responses.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        current_leader: Struct(&SHARE_LEADER), ALL;
    }
}

pub(super) const SHARE_GROUP_DESCRIBE: Message = Message {
    api_key: ApiKey::ShareGroupDescribe,
    versions: only(1, 1),
    flexible: 0,
    body: &SHARE_GROUP_DESCRIBE_BODY,
};

structs! {
    SHARE_GROUP_DESCRIBE_BODY = "" {
        throttle_time_ms: I32, ALL;
        groups: array(&SHARE_GROUP_DESCRIBE_GROUP), ALL;
    }
    SHARE_GROUP_DESCRIBE_GROUP = "groups." {
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        group_id: Str, ALL;
        group_state: Str, ALL;
        group_epoch: I32, ALL;
        assignment_epoch: I32, ALL;
        assignor_name: Str, ALL;
        members: array(&SHARE_GROUP_DESCRIBE_MEMBER), ALL;
        authorized_operations: I32, ALL;
    }
    SHARE_GROUP_DESCRIBE_MEMBER = "groups.members." {
        member_id: Str, ALL;
        rack_id: Str, ALL, nullable;
        member_epoch: I32, ALL;
        client_id: Str, ALL;
        client_host: Str, ALL;
        subscribed_topic_names: STR_ARRAY, ALL;
        assignment: Struct(&SHARE_GROUP_DESCRIBE_ASSIGNMENT), ALL;
    }
    SHARE_GROUP_DESCRIBE_ASSIGNMENT = "groups.members.assignment." {
        topic_partitions: array(&SHARE_GROUP_DESCRIBE_TOPIC), ALL;
    }
    SHARE_GROUP_DESCRIBE_TOPIC = "groups.members.assignment.topic_partitions." {
        topic_id: Uuid, ALL;
        topic_name: Str, ALL;
        partitions: I32_ARRAY, ALL;
    }
}

pub(super) const DESCRIBE_SHARE_GROUP_OFFSETS: Message = Message {
    api_key: ApiKey::DescribeShareGroupOffsets,
    // v1 adds each partition's lag (KIP-1226; kcon's `share_offsets_v1`).
    versions: only(0, 1),
    flexible: 0,
    body: &DESCRIBE_SHARE_GROUP_OFFSETS_BODY,
};

structs! {
    DESCRIBE_SHARE_GROUP_OFFSETS_BODY = "" {
        throttle_time_ms: I32, ALL;
        groups: array(&DESCRIBE_SHARE_GROUP_OFFSETS_GROUP), ALL;
    }
    DESCRIBE_SHARE_GROUP_OFFSETS_GROUP = "groups." {
        group_id: Str, ALL;
        topics: array(&DESCRIBE_SHARE_GROUP_OFFSETS_TOPIC), ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
    }
    DESCRIBE_SHARE_GROUP_OFFSETS_TOPIC = "groups.topics." {
        topic_name: Str, ALL;
        topic_id: Uuid, ALL;
        partitions: array(&DESCRIBE_SHARE_GROUP_OFFSETS_PARTITION), ALL;
    }
    DESCRIBE_SHARE_GROUP_OFFSETS_PARTITION = "groups.topics.partitions." {
        partition_index: I32, ALL;
        start_offset: I64, ALL;
        leader_epoch: I32, ALL;
        lag: I64, since(1);
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
    }
}
