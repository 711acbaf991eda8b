//! Schemas of the consumer-group responses: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, DescribeGroups, ListGroups,
//! DeleteGroups, ConsumerGroupHeartbeat, ConsumerGroupDescribe.
//!
//! Field order, versions and nullability follow kafka-protocol 0.18's generated decoders;
//! `null_on_error` marks the fields librdkafka's mock cluster nulls in its error answers (see
//! [`super::null_on_error`]).

use kafka_protocol::messages::ApiKey;

use super::schema::Ty::{Bool, Bytes, I8, I16, I32, I64, Str, Uuid};
use super::schema::{
    ALL, Field, I32_ARRAY, Message, NEVER, STR_ARRAY, StructDef, Ty, array, only, since, structs,
    until,
};

pub(super) const FIND_COORDINATOR: Message = Message {
    api_key: ApiKey::FindCoordinator,
    versions: only(0, 6),
    flexible: 3,
    body: &FIND_COORDINATOR_BODY,
};

structs! {
    FIND_COORDINATOR_BODY = "" {
        throttle_time_ms: I32, since(1);
        error_code: I16, until(3);
        error_message: Str, only(1, 3), nullable;
        node_id: I32, until(3);
        host: Str, until(3), null_on_error;
        port: I32, until(3);
        coordinators: array(&FIND_COORDINATOR_COORDINATOR), since(4);
    }
    FIND_COORDINATOR_COORDINATOR = "coordinators." {
        key: Str, since(4);
        node_id: I32, since(4);
        host: Str, since(4);
        port: I32, since(4);
        error_code: I16, since(4);
        error_message: Str, since(4), nullable;
    }
}

pub(super) const JOIN_GROUP: Message = Message {
    api_key: ApiKey::JoinGroup,
    versions: only(0, 9),
    flexible: 6,
    body: &JOIN_GROUP_BODY,
};

structs! {
    JOIN_GROUP_BODY = "" {
        throttle_time_ms: I32, since(2);
        error_code: I16, ALL;
        generation_id: I32, ALL;
        protocol_type: Str, since(7), nullable;
        // Nullable in the decoder at every version (the protocol says from v7).
        protocol_name: Str, ALL, nullable;
        leader: Str, ALL, null_on_error;
        skip_assignment: Bool, since(9);
        member_id: Str, ALL, null_on_error;
        members: array(&JOIN_GROUP_MEMBER), ALL;
    }
    JOIN_GROUP_MEMBER = "members." {
        member_id: Str, ALL;
        group_instance_id: Str, since(5), nullable;
        metadata: Bytes, ALL;
    }
}

pub(super) const HEARTBEAT: Message = Message {
    api_key: ApiKey::Heartbeat,
    versions: only(0, 4),
    flexible: 4,
    body: &HEARTBEAT_BODY,
};

structs! {
    HEARTBEAT_BODY = "" {
        throttle_time_ms: I32, since(1);
        error_code: I16, ALL;
    }
}

pub(super) const LEAVE_GROUP: Message = Message {
    api_key: ApiKey::LeaveGroup,
    versions: only(0, 5),
    flexible: 4,
    body: &LEAVE_GROUP_BODY,
};

structs! {
    LEAVE_GROUP_BODY = "" {
        throttle_time_ms: I32, since(1);
        error_code: I16, ALL;
        members: array(&LEAVE_GROUP_MEMBER), since(3);
    }
    LEAVE_GROUP_MEMBER = "members." {
        member_id: Str, since(3);
        group_instance_id: Str, since(3), nullable;
        error_code: I16, since(3);
    }
}

pub(super) const SYNC_GROUP: Message = Message {
    api_key: ApiKey::SyncGroup,
    versions: only(0, 5),
    flexible: 4,
    body: &SYNC_GROUP_BODY,
};

structs! {
    SYNC_GROUP_BODY = "" {
        throttle_time_ms: I32, since(1);
        error_code: I16, ALL;
        protocol_type: Str, since(5), nullable;
        protocol_name: Str, since(5), nullable;
        assignment: Bytes, ALL, null_on_error;
    }
}

pub(super) const OFFSET_COMMIT: Message = Message {
    api_key: ApiKey::OffsetCommit,
    versions: only(2, 9),
    flexible: 8,
    body: &OFFSET_COMMIT_BODY,
};

structs! {
    OFFSET_COMMIT_BODY = "" {
        throttle_time_ms: I32, since(3);
        topics: array(&OFFSET_COMMIT_TOPIC), ALL;
    }
    OFFSET_COMMIT_TOPIC = "topics." {
        name: Str, until(9);
        topic_id: Uuid, since(10);
        partitions: array(&OFFSET_COMMIT_PARTITION), ALL;
    }
    OFFSET_COMMIT_PARTITION = "topics.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
    }
}

pub(super) const OFFSET_FETCH: Message = Message {
    api_key: ApiKey::OffsetFetch,
    versions: only(1, 9),
    flexible: 6,
    body: &OFFSET_FETCH_BODY,
};

structs! {
    OFFSET_FETCH_BODY = "" {
        throttle_time_ms: I32, since(3);
        topics: array(&OFFSET_FETCH_TOPIC), until(7);
        error_code: I16, only(2, 7);
        groups: array(&OFFSET_FETCH_GROUP), since(8);
    }
    OFFSET_FETCH_TOPIC = "topics." {
        name: Str, until(7);
        partitions: array(&OFFSET_FETCH_PARTITION), until(7);
    }
    OFFSET_FETCH_PARTITION = "topics.partitions." {
        partition_index: I32, until(7);
        committed_offset: I64, until(7);
        committed_leader_epoch: I32, only(5, 7);
        metadata: Str, until(7), nullable;
        error_code: I16, until(7);
    }
    OFFSET_FETCH_GROUP = "groups." {
        group_id: Str, since(8);
        topics: array(&OFFSET_FETCH_GROUP_TOPIC), since(8);
        error_code: I16, since(8);
    }
    OFFSET_FETCH_GROUP_TOPIC = "groups.topics." {
        name: Str, only(8, 9);
        topic_id: Uuid, since(10);
        partitions: array(&OFFSET_FETCH_GROUP_PARTITION), since(8);
    }
    OFFSET_FETCH_GROUP_PARTITION = "groups.topics.partitions." {
        partition_index: I32, since(8);
        committed_offset: I64, since(8);
        committed_leader_epoch: I32, since(8);
        metadata: Str, since(8), nullable;
        error_code: I16, since(8);
    }
}

pub(super) const OFFSET_DELETE: Message = Message {
    api_key: ApiKey::OffsetDelete,
    versions: only(0, 0),
    flexible: NEVER,
    body: &OFFSET_DELETE_BODY,
};

structs! {
    OFFSET_DELETE_BODY = "" {
        error_code: I16, ALL;
        throttle_time_ms: I32, ALL;
        topics: array(&OFFSET_DELETE_TOPIC), ALL;
    }
    OFFSET_DELETE_TOPIC = "topics." {
        name: Str, ALL;
        partitions: array(&OFFSET_DELETE_PARTITION), ALL;
    }
    OFFSET_DELETE_PARTITION = "topics.partitions." {
        partition_index: I32, ALL;
        error_code: I16, ALL;
    }
}

pub(super) const DESCRIBE_GROUPS: Message = Message {
    api_key: ApiKey::DescribeGroups,
    versions: only(0, 5),
    flexible: 5,
    body: &DESCRIBE_GROUPS_BODY,
};

structs! {
    DESCRIBE_GROUPS_BODY = "" {
        throttle_time_ms: I32, since(1);
        groups: array(&DESCRIBE_GROUPS_GROUP), ALL;
    }
    DESCRIBE_GROUPS_GROUP = "groups." {
        error_code: I16, ALL;
        error_message: Str, since(6), nullable;
        group_id: Str, ALL;
        group_state: Str, ALL;
        protocol_type: Str, ALL;
        protocol_data: Str, ALL;
        members: array(&DESCRIBE_GROUPS_MEMBER), ALL;
        authorized_operations: I32, since(3);
    }
    DESCRIBE_GROUPS_MEMBER = "groups.members." {
        member_id: Str, ALL;
        group_instance_id: Str, since(4), nullable;
        client_id: Str, ALL;
        client_host: Str, ALL;
        member_metadata: Bytes, ALL;
        member_assignment: Bytes, ALL;
    }
}

pub(super) const LIST_GROUPS: Message = Message {
    api_key: ApiKey::ListGroups,
    versions: only(0, 5),
    flexible: 3,
    body: &LIST_GROUPS_BODY,
};

structs! {
    LIST_GROUPS_BODY = "" {
        throttle_time_ms: I32, since(1);
        error_code: I16, ALL;
        groups: array(&LIST_GROUPS_GROUP), ALL;
    }
    LIST_GROUPS_GROUP = "groups." {
        group_id: Str, ALL;
        protocol_type: Str, ALL;
        group_state: Str, since(4);
        group_type: Str, since(5);
    }
}

pub(super) const DELETE_GROUPS: Message = Message {
    api_key: ApiKey::DeleteGroups,
    versions: only(0, 2),
    flexible: 2,
    body: &DELETE_GROUPS_BODY,
};

structs! {
    DELETE_GROUPS_BODY = "" {
        throttle_time_ms: I32, ALL;
        results: array(&DELETE_GROUPS_RESULT), ALL;
    }
    DELETE_GROUPS_RESULT = "results." {
        group_id: Str, ALL;
        error_code: I16, ALL;
    }
}

pub(super) const CONSUMER_GROUP_HEARTBEAT: Message = Message {
    api_key: ApiKey::ConsumerGroupHeartbeat,
    versions: only(0, 1),
    flexible: 0,
    body: &CONSUMER_GROUP_HEARTBEAT_BODY,
};

structs! {
    CONSUMER_GROUP_HEARTBEAT_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        member_id: Str, ALL, nullable;
        member_epoch: I32, ALL;
        heartbeat_interval_ms: I32, ALL;
        assignment: Ty::OptStruct(&CONSUMER_GROUP_HEARTBEAT_ASSIGNMENT), ALL;
    }
    CONSUMER_GROUP_HEARTBEAT_ASSIGNMENT = "assignment." {
        topic_partitions: array(&CONSUMER_GROUP_HEARTBEAT_TOPIC), ALL;
    }
    CONSUMER_GROUP_HEARTBEAT_TOPIC = "assignment.topic_partitions." {
        topic_id: Uuid, ALL;
        partitions: I32_ARRAY, ALL;
    }
}

pub(super) const CONSUMER_GROUP_DESCRIBE: Message = Message {
    api_key: ApiKey::ConsumerGroupDescribe,
    versions: only(0, 1),
    flexible: 0,
    body: &CONSUMER_GROUP_DESCRIBE_BODY,
};

structs! {
    CONSUMER_GROUP_DESCRIBE_BODY = "" {
        throttle_time_ms: I32, ALL;
        groups: array(&CONSUMER_GROUP_DESCRIBE_GROUP), ALL;
    }
    CONSUMER_GROUP_DESCRIBE_GROUP = "groups." {
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        group_id: Str, ALL;
        group_state: Str, ALL;
        group_epoch: I32, ALL;
        assignment_epoch: I32, ALL;
        assignor_name: Str, ALL;
        members: array(&CONSUMER_GROUP_DESCRIBE_MEMBER), ALL;
        authorized_operations: I32, ALL;
    }
    CONSUMER_GROUP_DESCRIBE_MEMBER = "groups.members." {
        member_id: Str, ALL;
        instance_id: Str, ALL, nullable;
        rack_id: Str, ALL, nullable;
        member_epoch: I32, ALL;
        client_id: Str, ALL;
        client_host: Str, ALL;
        subscribed_topic_names: STR_ARRAY, ALL;
        subscribed_topic_regex: Str, ALL, nullable;
        assignment: Ty::Struct(&CONSUMER_GROUP_DESCRIBE_ASSIGNMENT), ALL;
        target_assignment: Ty::Struct(&CONSUMER_GROUP_DESCRIBE_TARGET), ALL;
        member_type: I8, since(1);
    }
    CONSUMER_GROUP_DESCRIBE_ASSIGNMENT = "groups.members.assignment." {
        topic_partitions: array(&CONSUMER_GROUP_DESCRIBE_TOPIC), ALL;
    }
    CONSUMER_GROUP_DESCRIBE_TOPIC = "groups.members.assignment.topic_partitions." {
        topic_id: Uuid, ALL;
        topic_name: Str, ALL;
        partitions: I32_ARRAY, ALL;
    }
    CONSUMER_GROUP_DESCRIBE_TARGET = "groups.members.target_assignment." {
        topic_partitions: array(&CONSUMER_GROUP_DESCRIBE_TARGET_TOPIC), ALL;
    }
    CONSUMER_GROUP_DESCRIBE_TARGET_TOPIC = "groups.members.target_assignment.topic_partitions." {
        topic_id: Uuid, ALL;
        topic_name: Str, ALL;
        partitions: I32_ARRAY, ALL;
    }
}
