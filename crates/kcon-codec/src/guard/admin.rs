//! Schemas of the connection and admin responses: ApiVersions, SaslHandshake,
//! SaslAuthenticate, CreateTopics, InitProducerId, DescribeConfigs, IncrementalAlterConfigs,
//! GetTelemetrySubscriptions, PushTelemetry.
//!
//! Field order, versions and nullability follow kafka-protocol 0.18's generated decoders.

use kafka_protocol::messages::ApiKey;

use super::schema::Ty::{Bool, Bytes, I8, I16, I32, I64, Str, Uuid};
use super::schema::{
    ALL, Field, I8_ARRAY, Message, NEVER, STR_ARRAY, StructDef, array, only, since, structs,
};

pub(super) const API_VERSIONS: Message = Message {
    api_key: ApiKey::ApiVersions,
    versions: only(0, 3),
    // The response *header* stays v0 at every version (so that a client can read the answer
    // before it knows what the broker speaks), but the body is flexible from v3.
    flexible: 3,
    body: &API_VERSIONS_BODY,
};

structs! {
    API_VERSIONS_BODY = "" {
        error_code: I16, ALL;
        api_keys: array(&API_VERSIONS_KEY), ALL;
        throttle_time_ms: I32, since(1);
        supported_features: array(&API_VERSIONS_SUPPORTED), since(3), tag(0);
        finalized_features_epoch: I64, since(3), tag(1);
        finalized_features: array(&API_VERSIONS_FINALIZED), since(3), tag(2);
        zk_migration_ready: Bool, since(3), tag(3);
    }
    API_VERSIONS_KEY = "api_keys." {
        api_key: I16, ALL;
        min_version: I16, ALL;
        max_version: I16, ALL;
    }
    API_VERSIONS_SUPPORTED = "supported_features." {
        name: Str, since(3);
        min_version: I16, since(3);
        max_version: I16, since(3);
    }
    API_VERSIONS_FINALIZED = "finalized_features." {
        name: Str, since(3);
        max_version_level: I16, since(3);
        min_version_level: I16, since(3);
    }
}

pub(super) const SASL_HANDSHAKE: Message = Message {
    api_key: ApiKey::SaslHandshake,
    versions: only(0, 1),
    flexible: NEVER,
    body: &SASL_HANDSHAKE_BODY,
};

structs! {
    SASL_HANDSHAKE_BODY = "" {
        error_code: I16, ALL;
        mechanisms: STR_ARRAY, ALL;
    }
}

pub(super) const SASL_AUTHENTICATE: Message = Message {
    api_key: ApiKey::SaslAuthenticate,
    versions: only(0, 2),
    flexible: 2,
    body: &SASL_AUTHENTICATE_BODY,
};

structs! {
    SASL_AUTHENTICATE_BODY = "" {
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        auth_bytes: Bytes, ALL;
        session_lifetime_ms: I64, since(1);
    }
}

pub(super) const CREATE_TOPICS: Message = Message {
    api_key: ApiKey::CreateTopics,
    versions: only(2, 7),
    flexible: 5,
    body: &CREATE_TOPICS_BODY,
};

structs! {
    CREATE_TOPICS_BODY = "" {
        throttle_time_ms: I32, ALL;
        topics: array(&CREATE_TOPICS_TOPIC), ALL;
    }
    CREATE_TOPICS_TOPIC = "topics." {
        name: Str, ALL;
        topic_id: Uuid, since(7);
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        topic_config_error_code: I16, since(5), tag(0);
        num_partitions: I32, since(5);
        replication_factor: I16, since(5);
        configs: array(&CREATE_TOPICS_CONFIG), since(5), nullable;
    }
    CREATE_TOPICS_CONFIG = "topics.configs." {
        name: Str, since(5);
        value: Str, since(5), nullable;
        read_only: Bool, since(5);
        config_source: I8, since(5);
        is_sensitive: Bool, since(5);
    }
}

pub(super) const INIT_PRODUCER_ID: Message = Message {
    api_key: ApiKey::InitProducerId,
    versions: only(0, 5),
    flexible: 2,
    body: &INIT_PRODUCER_ID_BODY,
};

structs! {
    INIT_PRODUCER_ID_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        producer_id: I64, ALL;
        producer_epoch: I16, ALL;
    }
}

pub(super) const DESCRIBE_CONFIGS: Message = Message {
    api_key: ApiKey::DescribeConfigs,
    versions: only(1, 4),
    flexible: 4,
    body: &DESCRIBE_CONFIGS_BODY,
};

structs! {
    DESCRIBE_CONFIGS_BODY = "" {
        throttle_time_ms: I32, ALL;
        results: array(&DESCRIBE_CONFIGS_RESULT), ALL;
    }
    DESCRIBE_CONFIGS_RESULT = "results." {
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        resource_type: I8, ALL;
        resource_name: Str, ALL;
        configs: array(&DESCRIBE_CONFIGS_ENTRY), ALL;
    }
    DESCRIBE_CONFIGS_ENTRY = "results.configs." {
        name: Str, ALL;
        value: Str, ALL, nullable;
        read_only: Bool, ALL;
        config_source: I8, ALL;
        is_sensitive: Bool, ALL;
        synonyms: array(&DESCRIBE_CONFIGS_SYNONYM), ALL;
        config_type: I8, since(3);
        documentation: Str, since(3), nullable;
    }
    DESCRIBE_CONFIGS_SYNONYM = "results.configs.synonyms." {
        name: Str, ALL;
        value: Str, ALL, nullable;
        source: I8, ALL;
    }
}

pub(super) const INCREMENTAL_ALTER_CONFIGS: Message = Message {
    api_key: ApiKey::IncrementalAlterConfigs,
    versions: only(0, 1),
    flexible: 1,
    body: &INCREMENTAL_ALTER_CONFIGS_BODY,
};

structs! {
    INCREMENTAL_ALTER_CONFIGS_BODY = "" {
        throttle_time_ms: I32, ALL;
        responses: array(&INCREMENTAL_ALTER_CONFIGS_RESPONSE), ALL;
    }
    INCREMENTAL_ALTER_CONFIGS_RESPONSE = "responses." {
        error_code: I16, ALL;
        error_message: Str, ALL, nullable;
        resource_type: I8, ALL;
        resource_name: Str, ALL;
    }
}

pub(super) const GET_TELEMETRY_SUBSCRIPTIONS: Message = Message {
    api_key: ApiKey::GetTelemetrySubscriptions,
    versions: only(0, 0),
    flexible: 0,
    body: &GET_TELEMETRY_SUBSCRIPTIONS_BODY,
};

structs! {
    GET_TELEMETRY_SUBSCRIPTIONS_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
        client_instance_id: Uuid, ALL;
        subscription_id: I32, ALL;
        accepted_compression_types: I8_ARRAY, ALL;
        push_interval_ms: I32, ALL;
        telemetry_max_bytes: I32, ALL;
        delta_temporality: Bool, ALL;
        requested_metrics: STR_ARRAY, ALL;
    }
}

pub(super) const PUSH_TELEMETRY: Message = Message {
    api_key: ApiKey::PushTelemetry,
    versions: only(0, 0),
    flexible: 0,
    body: &PUSH_TELEMETRY_BODY,
};

structs! {
    PUSH_TELEMETRY_BODY = "" {
        throttle_time_ms: I32, ALL;
        error_code: I16, ALL;
    }
}
