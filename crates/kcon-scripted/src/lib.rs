//! A scripted Kafka broker for kcon's tests: a TCP listener on a loopback port that reads kcon's
//! requests with kcon-codec and answers whatever the test says, well-formed or not. It stands in
//! for what no real broker here shows (fetch sessions, corrupt batches, timestamp lookups,
//! producer sequence errors, SASL refusals, a consumer-protocol group described) and for
//! connection-level faults (a cut frame, a hang-up, an answer that never comes).
//!
//! Two ways to drive it:
//! - step by step: [`Listener::accept`] gives a [`PeerConn`] on which the test reads each
//!   request ([`PeerConn::recv`]) and writes what it wants ([`PeerConn::reply`],
//!   [`PeerConn::send_raw`]);
//! - as a server: [`Broker::start`] serves every connection on a task of its own, answering
//!   ApiVersions itself and every other request with the test's handler (an [`Answer`]: a frame,
//!   a frame later, raw bytes and a hang-up, or nothing), and records what it received
//!   ([`Stats`]). A stateful script is a [`Script`] run by a [`ScriptedBroker`].
//!
//! The answers most tests need are here once: [`api_versions`] at kcon's own ranges
//! ([`kcon_versions`]) or any others, and Metadata for brokers and topics ([`metadata`],
//! [`one_broker_metadata`]).

mod broker;
mod peer;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kcon_codec::kafka_protocol::messages::api_versions_response::ApiVersion;
use kcon_codec::kafka_protocol::messages::find_coordinator_response::Coordinator;
use kcon_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataResponse, RequestHeader, TopicName,
};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::message::{decode_request, encode_response};
use kcon_codec::versions::{SUPPORTED, supported};

pub use broker::{Answer, Broker, Handler, Script, ScriptedBroker, Stats};
pub use peer::{Listener, PeerConn, dead_address};

/// The id a one-broker cluster gives its broker ([`one_broker_metadata`]).
pub const BROKER_ID: i32 = 1;

/// A request as the broker read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its header.
    pub header: RequestHeader,
    /// Its body, not decoded.
    pub body: Bytes,
    /// Where the broker received it: the listener's address.
    pub broker: SocketAddr,
}

impl Received {
    /// Its API key, as sent.
    pub fn api_key(&self) -> i16 {
        self.header.request_api_key
    }

    /// Its API, when the key is one kafka-protocol knows.
    pub fn api(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key()).ok()
    }

    /// Its version.
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// Its correlation id.
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Its body, decoded. Panics on a body kcon's codec cannot decode: that is a bug in what
    /// kcon sent.
    pub fn decode<R: Request>(&self) -> R {
        decode_request::<R>(self.body.clone(), self.version()).expect("a request kcon can send")
    }

    /// The frame answering it with `response`, at its version.
    pub fn frame<R: Request>(&self, response: &R::Response) -> Bytes {
        frame::<R>(self.correlation_id(), self.version(), response)
    }

    /// An [`Answer`] of that frame.
    pub fn answer<R: Request>(&self, response: &R::Response) -> Answer {
        Answer::Frame(self.frame::<R>(response))
    }
}

/// A response frame, size prefix included. Panics on a response kcon's codec cannot encode at
/// `version` (a bug in the test).
pub fn frame<R: Request>(correlation_id: i32, version: i16, response: &R::Response) -> Bytes {
    let mut buf = BytesMut::new();
    encode_response::<R>(&mut buf, correlation_id, version, response)
        .expect("an answer kcon's codec encodes");
    buf.freeze()
}

/// One API's version range in an ApiVersions answer: `(api key, min, max)`.
pub type VersionRange = (i16, i16, i16);

/// Every API kcon speaks, at kcon's own ranges, but KIP-714's (GetTelemetrySubscriptions and
/// PushTelemetry): a broker offers those only when a client-metrics plugin is configured, and
/// a scripted broker answers what its test scripts, which a consumer's or producer's telemetry
/// task would otherwise ask of it at any time. A test of the telemetry offers them itself.
pub fn kcon_versions() -> Vec<VersionRange> {
    SUPPORTED
        .iter()
        .filter(|(k, _, _)| !matches!(k, ApiKey::GetTelemetrySubscriptions | ApiKey::PushTelemetry))
        .map(|&(k, min, max)| (k as i16, min, max))
        .collect()
}

/// `apis` at kcon's own ranges. Panics on an API kcon does not speak.
pub fn kcon_versions_of(apis: &[ApiKey]) -> Vec<VersionRange> {
    apis.iter()
        .map(|&k| {
            let (min, max) = supported(k).expect("an API kcon speaks");
            (k as i16, min, max)
        })
        .collect()
}

/// An ApiVersions answer offering `ranges`.
pub fn api_versions(ranges: &[VersionRange]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

/// A partition in [`metadata`]: `(partition, leader, leader epoch)`.
pub type PartitionSpec = (i32, i32, i32);

/// A Metadata answer: `brokers` by id and address (the first is the controller); `topics`
/// with their partitions, each replicated on its leader alone.
pub fn metadata(
    brokers: &[(i32, SocketAddr)],
    topics: &[(&str, &[PartitionSpec])],
) -> MetadataResponse {
    MetadataResponse::default()
        .with_cluster_id(Some(StrBytes::from_static_str("scripted")))
        .with_controller_id(BrokerId(brokers.first().map_or(-1, |b| b.0)))
        .with_brokers(
            brokers
                .iter()
                .map(|&(id, addr)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                })
                .collect(),
        )
        .with_topics(
            topics
                .iter()
                .map(|&(name, partitions)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&(index, leader, epoch)| partition(index, leader, epoch))
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// A Metadata answer of one broker ([`BROKER_ID`], at `addr`) leading every partition of
/// `topics` (name, partition count) at leader epoch 0.
pub fn one_broker_metadata(addr: SocketAddr, topics: &[(&str, usize)]) -> MetadataResponse {
    let topics: Vec<(&str, Vec<PartitionSpec>)> = topics
        .iter()
        .map(|&(name, count)| {
            let partitions = (0..count).map(|p| (p as i32, BROKER_ID, 0)).collect();
            (name, partitions)
        })
        .collect();
    let topics: Vec<(&str, &[PartitionSpec])> =
        topics.iter().map(|(n, p)| (*n, p.as_slice())).collect();
    metadata(&[(BROKER_ID, addr)], &topics)
}

/// One partition of a Metadata answer, replicated on its leader alone.
pub fn partition(index: i32, leader: i32, epoch: i32) -> MetadataResponsePartition {
    MetadataResponsePartition::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(epoch)
        .with_replica_nodes(vec![BrokerId(leader)])
        .with_isr_nodes(vec![BrokerId(leader)])
}

/// The answer to a FindCoordinator request: broker `node_id` at `addr` coordinates every key
/// asked for (v4 and later list one coordinator per key; earlier versions name one).
pub fn coordinator_answer(req: &Received, node_id: i32, addr: SocketAddr) -> Answer {
    let r = req.decode::<FindCoordinatorRequest>();
    let host = StrBytes::from_string(addr.ip().to_string());
    let port = i32::from(addr.port());
    let answer = if req.version() >= 4 {
        let coordinators = r
            .coordinator_keys
            .iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(node_id))
                    .with_host(host.clone())
                    .with_port(port)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node_id))
            .with_host(host)
            .with_port(port)
    };
    req.answer::<FindCoordinatorRequest>(&answer)
}
