//! The producer's configuration: Kafka property names, the Java client's defaults (librdkafka's
//! where Java has no such property).

use std::time::Duration;

use kcon_codec::compression::Compression;
use kcon_core::ConfigError;
use kcon_core::property::registry::{self, Part};
use kcon_core::property::{parse_bool, parse_count, parse_millis};
use kcon_pool::PoolConfig;

use crate::partitioner::PartitionerKind;

/// Which acknowledgement the producer waits for (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `all` or `-1`: every in-sync replica has the batch.
    All,
    /// `1`: the leader has written the batch to its log.
    Leader,
}

impl Acks {
    /// The value of the Produce request's `acks` field.
    pub fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
        }
    }
}

/// The configuration of a [`Producer`](crate::Producer).
///
/// Set by Kafka property name with [`ProducerConfig::set`]; the connection properties (those
/// kcon-pool's [`PoolConfig`] takes) go to [`ProducerConfig::pool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// The connections: `bootstrap.servers`, `request.timeout.ms`,
    /// `max.in.flight.requests.per.connection`, `retry.backoff.ms`, `retry.backoff.max.ms`,
    /// security, ...
    pub pool: PoolConfig,
    /// `acks`: `all` (or `-1`, the default) or `1`. `0` is refused: a Produce request with
    /// acks=0 gets no answer, and kcon's connections wait for an answer to every request.
    pub acks: Acks,
    /// `compression.type`: `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: Compression,
    /// `linger.ms`: how long a batch that is not full waits for more records before it is sent.
    /// Default 5 ms (the Java client's since 4.0, and librdkafka's).
    pub linger: Duration,
    /// `batch.size`: a batch is full once its records take this many bytes (their uncompressed
    /// size, counted as the record format lays them out). A record larger than this goes in a
    /// batch of its own. Default 16384.
    pub batch_size: usize,
    /// `batch.num.messages` (librdkafka's name; Java has no count limit): a batch is full at
    /// this many records. Default 10000.
    pub batch_num_messages: usize,
    /// `max.request.size`: the largest record accepted, and the most batch bytes put in one
    /// Produce request (a request always takes at least one batch). Default 1048576.
    pub max_request_size: usize,
    /// `buffer.memory`: records sent and not yet acknowledged may take this many bytes; `send`
    /// waits for room beyond it. Default 33554432.
    pub buffer_memory: usize,
    /// `retries`: how many times a batch is sent again after a retriable failure. Default
    /// 2147483647: `delivery.timeout.ms` is what bounds retries, as in the Java client.
    pub retries: u32,
    /// `delivery.timeout.ms`: how long after a record's batch was opened its delivery may take
    /// in all (waiting for metadata, lingering, sending, retrying) before it fails. At least
    /// `linger.ms` + `request.timeout.ms`. Default 120 s.
    pub delivery_timeout: Duration,
    /// `enable.idempotence`: a producer id and per-partition sequence numbers in every batch
    /// (KIP-98), so that a retried batch the broker already has is not written twice. Needs
    /// `acks=all` and `retries` above 0. Default `false` (librdkafka's default; the Java client
    /// turns it on by default since 3.0).
    pub enable_idempotence: bool,
    /// `partitioner`: how null-keyed records are spread; keyed records always follow murmur2.
    pub partitioner: PartitionerKind,
}

impl ProducerConfig {
    /// The producer's own property names [`ProducerConfig::set`] accepts (the connection
    /// properties [`PoolConfig`] takes are accepted too).
    pub const PROPERTIES: &'static [&'static str] = &[
        "acks",
        "compression.type",
        "linger.ms",
        "batch.size",
        "batch.num.messages",
        "max.request.size",
        "buffer.memory",
        "retries",
        "delivery.timeout.ms",
        "enable.idempotence",
        "partitioner",
    ];

    /// Sets a property by its Kafka name. Connection properties go to the pool's configuration.
    /// A bad name or value is refused with an error naming the property and what it accepts,
    /// and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match name {
            "acks" => {
                self.acks = match v.to_ascii_lowercase().as_str() {
                    "all" | "-1" => Acks::All,
                    "1" => Acks::Leader,
                    "0" => {
                        return Err(ConfigError::invalid(
                            name,
                            value,
                            "all, -1 or 1 (acks=0 is not supported: such requests get no answer \
                             and kcon's connections wait for one)",
                        ));
                    }
                    _ => return Err(ConfigError::invalid(name, value, "all, -1 or 1")),
                };
            }
            "compression.type" => {
                self.compression = match v.to_ascii_lowercase().as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(ConfigError::invalid(
                            name,
                            value,
                            "none, gzip, snappy, lz4 or zstd",
                        ));
                    }
                };
            }
            "linger.ms" => self.linger = parse_millis(name, v, 0)?,
            "batch.size" => {
                self.batch_size = parse_count(
                    name,
                    v,
                    0,
                    i32::MAX as usize,
                    "a whole number of bytes from 0 to 2147483647",
                )?;
            }
            "batch.num.messages" => {
                self.batch_num_messages =
                    parse_count(name, v, 1, 1_000_000, "a whole number from 1 to 1000000")?;
            }
            "max.request.size" => {
                self.max_request_size = parse_count(
                    name,
                    v,
                    1,
                    i32::MAX as usize,
                    "a whole number of bytes from 1 to 2147483647",
                )?;
            }
            "buffer.memory" => {
                self.buffer_memory = parse_count(
                    name,
                    v,
                    1,
                    MAX_BUFFER_MEMORY,
                    "a whole number of bytes from 1 to 4294967295",
                )?;
            }
            "retries" => {
                self.retries = parse_count(
                    name,
                    v,
                    0,
                    i32::MAX as usize,
                    "a whole number from 0 to 2147483647",
                )? as u32;
            }
            "delivery.timeout.ms" => self.delivery_timeout = parse_millis(name, v, 1)?,
            "enable.idempotence" => self.enable_idempotence = parse_bool(name, v)?,
            "partitioner" => {
                self.partitioner = PartitionerKind::parse(v)
                    .ok_or_else(|| ConfigError::invalid(name, value, PartitionerKind::EXPECTED))?;
            }
            _ if registry::lookup(name).is_some_and(|p| p.configures(Part::Pool)) => {
                self.pool.set(name, value)?;
            }
            _ => {
                return Err(ConfigError::UnknownProperty {
                    property: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Checks what `set` cannot check one property at a time (the Java producer's
    /// `ProducerConfig` checks the same pairs), and the pool's configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.pool.validate()?;
        let floor = self.linger + self.pool.request_timeout;
        if self.delivery_timeout < floor {
            return Err(ConfigError::InvalidValue {
                property: "delivery.timeout.ms".to_owned(),
                value: self.delivery_timeout.as_millis().to_string(),
                expected: "at least linger.ms + request.timeout.ms, so that a batch can be sent \
                           once before it times out",
            });
        }
        if self.enable_idempotence {
            if self.acks != Acks::All {
                return Err(ConfigError::invalid(
                    "acks",
                    "1",
                    "all (or -1) with enable.idempotence=true: a leader could lose a batch it \
                     acknowledged, and its sequence with it",
                ));
            }
            if self.retries == 0 {
                return Err(ConfigError::invalid(
                    "retries",
                    "0",
                    "at least 1 with enable.idempotence=true",
                ));
            }
        }
        if self.buffer_memory > MAX_BUFFER_MEMORY {
            return Err(ConfigError::invalid(
                "buffer.memory",
                &self.buffer_memory.to_string(),
                "a whole number of bytes from 1 to 4294967295",
            ));
        }
        Ok(())
    }
}

/// The largest `buffer.memory`: a record's room is taken from a semaphore in `u32` units.
const MAX_BUFFER_MEMORY: usize = u32::MAX as usize;

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            pool: PoolConfig::default(),
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            batch_num_messages: 10_000,
            max_request_size: 1_048_576,
            buffer_memory: 33_554_432,
            retries: i32::MAX as u32,
            delivery_timeout: Duration::from_millis(120_000),
            enable_idempotence: false,
            partitioner: PartitionerKind::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(props: &[(&str, &str)]) -> Result<ProducerConfig, ConfigError> {
        let mut c = ProducerConfig::default();
        c.set("bootstrap.servers", "localhost:9092")?;
        for (k, v) in props {
            c.set(k, v)?;
        }
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn properties_by_kafka_name() {
        let c = config(&[
            ("acks", "1"),
            ("compression.type", "ZSTD"),
            ("linger.ms", "20"),
            ("batch.size", "0"),
            ("batch.num.messages", "7"),
            ("max.request.size", "2000000"),
            ("buffer.memory", "1000"),
            ("retries", "3"),
            ("delivery.timeout.ms", "40000"),
            ("partitioner", "murmur2_random"),
            ("request.timeout.ms", "10000"),
            ("retry.backoff.ms", "5"),
        ])
        .unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!((c.batch_size, c.batch_num_messages), (0, 7));
        assert_eq!((c.max_request_size, c.buffer_memory), (2_000_000, 1000));
        assert_eq!(c.retries, 3);
        assert_eq!(c.delivery_timeout, Duration::from_secs(40));
        assert_eq!(c.partitioner, PartitionerKind::Murmur2Random);
        assert_eq!(c.pool.request_timeout, Duration::from_secs(10));
        assert_eq!(c.pool.retry_backoff, Duration::from_millis(5));
        let all = config(&[("acks", "all"), ("enable.idempotence", "true")]).unwrap();
        assert_eq!(all.acks, Acks::All);
        assert!(all.enable_idempotence);
        assert_eq!(config(&[("acks", "-1")]).unwrap().acks.wire(), -1);
    }

    #[test]
    fn bad_names_and_values_say_what_is_allowed() {
        for (name, value, wanted) in [
            ("acks", "2", "all, -1 or 1"),
            ("acks", "0", "acks=0 is not supported"),
            (
                "compression.type",
                "brotli",
                "none, gzip, snappy, lz4 or zstd",
            ),
            ("linger.ms", "-1", "milliseconds"),
            ("batch.num.messages", "0", "from 1"),
            ("buffer.memory", "0", "from 1"),
            ("retries", "many", "from 0"),
            ("enable.idempotence", "yes", "true or false"),
            ("partitioner", "sticky", "murmur2_round_robin"),
            ("bootstrap.servers", "", "host:port"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert_eq!(e.property(), name, "{e}");
            assert!(e.to_string().contains(wanted), "{e} should say {wanted}");
        }
        let e = config(&[("linger.ms.typo", "1")]).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownProperty { .. }), "{e}");
    }

    #[test]
    fn conflicting_properties_are_refused() {
        let e = config(&[("delivery.timeout.ms", "1000")]).unwrap_err();
        assert_eq!(e.property(), "delivery.timeout.ms");
        assert!(
            e.to_string().contains("linger.ms + request.timeout.ms"),
            "{e}"
        );
        let e = config(&[("enable.idempotence", "true"), ("acks", "1")]).unwrap_err();
        assert_eq!(e.property(), "acks");
        let e = config(&[("enable.idempotence", "true"), ("retries", "0")]).unwrap_err();
        assert_eq!(e.property(), "retries");
    }
}
