//! Broker connections for kcon: the tokio layer between the wire codec and the consumer.
//!
//! - [`Connection`]: one TCP connection to a broker. Requests are pipelined (up to
//!   `max.in.flight.requests.per.connection`), matched to answers by correlation id, sent at the
//!   highest version both sides speak (ApiVersions on connect), each bounded by
//!   `request.timeout.ms`. Dropping a request future at any point leaves the connection usable;
//!   corrupt data closes it and fails every request waiting on it, once.
//! - [`Pool`]: connections made on demand per broker and [`Purpose`], bootstrap, the cluster
//!   [`Metadata`] cache with coalesced refreshes, reconnect backoff, idle close.
//! - [`PoolConfig`]: the Kafka properties of all that, settable by name.
//! - Security (`security.protocol`): TLS with rustls (`ssl.*`), SASL PLAIN, SCRAM-SHA-256/512
//!   and OAUTHBEARER (`sasl.*`: tokens from an OAuth 2.0 token endpoint by the client
//!   credentials or the JWT bearer grant, from a file, or from an [`OAuthBearerTokenProvider`]),
//!   with re-authentication before the session expires (KIP-368).
//! - [`http`]: HTTP/1.1 for kcon's clients of HTTP services (the token endpoint, the Schema
//!   Registry).
//! - [`driver`]: what runs a sans-IO machine on tokio: requests in flight, each answered once.
//! - One-shot lookups of the log's offsets: [`list_offsets()`] (ListOffsets per leader, with
//!   stale-metadata retries) and [`watermarks`], which fail with a [`ListOffsetsError`]; the
//!   consumer and the admin calls make them.
//! - [`RequestFailure`](kcon_core::RequestFailure) from a pool [`Error`]: how a machine's
//!   driver reports a request the pool could not get answered.
//!
//! - [`telemetry`]: a client's metrics pushed to the cluster (KIP-714, `enable.metrics.push`).
//!
//! Every request gets a debug-level `tracing` span with its API, version, broker id,
//! correlation id and latency; payloads are never logged.

pub mod clock;
pub mod config;
mod connection;
mod coordinator;
pub mod driver;
pub mod error;
pub mod http;
pub mod metadata;
mod offsets;
mod pool;
pub mod precise_timer;
pub mod property;
mod rebootstrap;
mod sasl;
mod step_down;
pub mod telemetry;
mod throttle;
mod tls;

pub use clock::{Clock, SystemClock};
pub use config::{
    EndpointIdentification, MetadataRecoveryStrategy, Password, PoolConfig, SaslMechanism,
    SecurityProtocol,
};
pub use connection::Connection;
pub use error::{
    AuthError, Corruption, Error, Misuse, Peer, Result, SetupStage, TlsError, TransportError,
};
/// Whose doing an [`Error`] was ([`Error::cause`]): kcon-core's, shared by every facade.
pub use kcon_core::Cause;
pub use metadata::{
    AutoCreate, BrokerMetadata, Metadata, PartitionMetadata, TopicMetadata, TopicScope,
};
pub use offsets::{EachListed, ListOffsetsError, list_offsets, list_offsets_each, watermarks};
pub use pool::{BrokerTarget, Pool, Purpose};
pub use rebootstrap::{RebootstrapCause, RebootstrapCounter, Rebootstraps};
#[cfg(feature = "aws-msk-iam")]
pub use sasl::msk_iam::{MSK_IAM_TOKEN_LIFETIME, MskIamToken, msk_iam_token};
pub use sasl::oauthbearer::{
    BoxError, OAuthBearerToken, OAuthBearerTokenProvider, TokenFuture, TokenProvider, UnsecuredJwt,
};
pub use throttle::{ThrottleCounter, Throttled};
pub use tls::{TlsFiles, client_config as tls_client_config};
