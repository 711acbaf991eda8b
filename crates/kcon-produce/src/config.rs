//! The producer's configuration: Kafka property names, the Java client's defaults (librdkafka's
//! where Java has no such property).

use std::time::Duration;

use kcon_codec::compression::Compression;
use kcon_core::ConfigError;
use kcon_core::property::registry::{
    self, Configurable, DefaultValue, Input, Kind, Part, Property,
};
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
    /// Default 5 ms (the Java client's since 4.0, and librdkafka's). On Linux the producer's
    /// task wakes for it within microseconds, by a `timerfd`; elsewhere it sends the batch
    /// within 1 ms of it, up to 1 ms early (as the Java client, which counts whole
    /// milliseconds), since tokio's timers fire up to that late.
    pub linger: Duration,
    /// `batch.size`: a batch is full once its records take this many bytes (their uncompressed
    /// size, counted as the record format lays them out). A record larger than this goes in a
    /// batch of its own. Default 1000000, librdkafka's (franz-go's is 1000012; the Java
    /// client's 16384): a partition has one batch in flight at a time, so while it is out the
    /// next one takes every record that comes, up to this size, until `linger.ms` has passed
    /// or the first comes back. With 16384 a partition carried 16 KiB per round trip: a
    /// million 100-byte records took 9.4-18.8 s at `acks=all` on three nodes, against
    /// 1.4-3.9 s.
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
    /// `queue.buffering.max.messages` (librdkafka's name; the Java client has no count
    /// limit): records sent and not yet acknowledged may be at most this many; `send` waits
    /// beyond it. Each record takes at least `buffer.memory` / this many bytes of
    /// `buffer.memory`'s room, so that one count keeps both limits (records of mixed sizes may
    /// wait a little before either is reached). What a record costs beside its bytes (its
    /// reply, its place in a batch, its `Delivery`) is a few hundred bytes, so the count, not
    /// the bytes, bounds the memory of small records. Default 100000.
    pub queue_buffering_max_messages: usize,
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
    /// `transactional.id`: makes the producer transactional (KIP-98): its records go out in
    /// transactions begun, committed and aborted by the application, and a later producer with
    /// the same id fences this one. Implies `enable.idempotence`. Unset by default.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: how long the transaction coordinator lets a transaction stay
    /// open before it aborts it; at most the broker's `transaction.max.timeout.ms`. Default
    /// 60000.
    pub transaction_timeout: Duration,
}

impl ProducerConfig {
    /// Sets a property by its Kafka name: the producer's own ([`PROPERTIES`]) or a connection
    /// property, which goes to the pool's configuration. A bad name or value is refused with
    /// an error naming the property and what it accepts, and leaves the configuration
    /// unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if registry::lookup(PROPERTIES, name).is_some() {
            return registry::set(PROPERTIES, self, name, value);
        }
        if is_pool_property(name) {
            return self.pool.set(name, value);
        }
        // The producer's properties and the pool's, either of which may be the one meant.
        let pool = registry::erased(kcon_pool::property::PROPERTIES)
            .filter(|p| p.configures(kcon_pool::property::POOL));
        let known = registry::names(registry::erased(PROPERTIES).chain(pool));
        Err(ConfigError::unknown(name, known))
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
        if self.idempotent() {
            if self.acks != Acks::All {
                return Err(ConfigError::invalid(
                    "acks",
                    "1",
                    "all (or -1) with enable.idempotence=true or a transactional.id: a leader \
                     could lose a batch it acknowledged, and its sequence with it",
                ));
            }
            if self.retries == 0 {
                return Err(ConfigError::invalid(
                    "retries",
                    "0",
                    "at least 1 with enable.idempotence=true or a transactional.id",
                ));
            }
        }
        if self.transactional_id.is_some() {
            let ms = self.transaction_timeout.as_millis();
            if ms > i32::MAX as u128 {
                return Err(ConfigError::invalid(
                    "transaction.timeout.ms",
                    &ms.to_string(),
                    "at most 2147483647 milliseconds",
                ));
            }
        }
        if self.buffer_memory > MAX_BUFFER_MEMORY {
            return Err(ConfigError::invalid(
                "buffer.memory",
                &self.buffer_memory.to_string(),
                BUFFER_MEMORY,
            ));
        }
        Ok(())
    }
}

impl ProducerConfig {
    /// The room in `buffer.memory` a record of `size` bytes (its size bound) takes while it is
    /// queued: its size, and at least `buffer.memory` / `queue.buffering.max.messages`.
    pub fn room(&self, size: usize) -> usize {
        let least = self.buffer_memory / self.queue_buffering_max_messages.max(1);
        size.max(least).max(1)
    }

    /// Whether batches carry a producer id and sequence numbers: `enable.idempotence`, or a
    /// `transactional.id`, which implies it.
    pub fn idempotent(&self) -> bool {
        self.enable_idempotence || self.transactional_id.is_some()
    }
}

/// The largest `buffer.memory`: a record's room is taken from a semaphore in `u32` units.
const MAX_BUFFER_MEMORY: usize = u32::MAX as usize;

/// Whether `name` is a connection property: one of kcon-pool's table, which the producer's
/// pool takes.
pub(crate) fn is_pool_property(name: &str) -> bool {
    registry::lookup(kcon_pool::property::PROPERTIES, name)
        .is_some_and(|p| p.configures(kcon_pool::property::POOL))
}

/// The [`Producer`](crate::Producer): [`ProducerConfig`]'s own fields.
pub const PRODUCER: Part = Part::new("producer");

const PRODUCER_ONLY: &[Part] = &[PRODUCER];

/// One of the producer's properties, read by its entry in [`PROPERTIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProducerSetting {
    /// `acks`.
    Acks(Acks),
    /// `compression.type`.
    CompressionType(Compression),
    /// `linger.ms`.
    Linger(Duration),
    /// `batch.size`.
    BatchSize(usize),
    /// `batch.num.messages`.
    BatchNumMessages(usize),
    /// `max.request.size`.
    MaxRequestSize(usize),
    /// `buffer.memory`.
    BufferMemory(usize),
    /// `queue.buffering.max.messages`.
    QueueBufferingMaxMessages(usize),
    /// `retries`.
    Retries(u32),
    /// `delivery.timeout.ms`.
    DeliveryTimeout(Duration),
    /// `enable.idempotence`.
    EnableIdempotence(bool),
    /// `partitioner`.
    Partitioner(PartitionerKind),
    /// `transactional.id`.
    TransactionalId(Option<String>),
    /// `transaction.timeout.ms`.
    TransactionTimeout(Duration),
}

/// The producer's own properties, in the order of the README's table; it takes the pool's
/// connection properties too (through [`ProducerConfig::pool`]).
pub static PROPERTIES: &[Property<ProducerSetting>] = &[
    Property {
        name: "acks",
        aliases: &[],
        default: DefaultValue::Value("all"),
        parts: PRODUCER_ONLY,
        doc: "The acknowledgement the producer waits for: all (or -1), every in-sync replica has \
              the batch; 1, the leader has written it. 0 is refused: such a request gets no \
              answer, and kcon's connections wait for one.",
        kind: Kind::Other {
            allowed: "all, -1 or 1",
            parse: acks,
        },
    },
    Property {
        name: "compression.type",
        aliases: &[],
        default: DefaultValue::Value("none"),
        parts: PRODUCER_ONLY,
        doc: "How record batches are compressed.",
        kind: Kind::Other {
            allowed: "none, gzip, snappy, lz4 or zstd",
            parse: compression,
        },
    },
    Property {
        name: "linger.ms",
        aliases: &[],
        default: DefaultValue::Value("5"),
        parts: PRODUCER_ONLY,
        doc: "How long a batch that is not full waits for more records before it is sent \
              (on Linux to the microsecond; elsewhere within 1 ms of it, up to 1 ms early).",
        kind: Kind::Millis {
            min: 0,
            setting: ProducerSetting::Linger,
        },
    },
    Property {
        name: "batch.size",
        aliases: &[],
        default: DefaultValue::Value("1000000"),
        parts: PRODUCER_ONLY,
        doc: "A batch is full once its records take this many bytes (uncompressed, as the \
              record format lays them out); a larger record goes in a batch of its own.",
        kind: Kind::Count {
            min: 0,
            max: i32::MAX as usize,
            allowed: "a whole number of bytes from 0 to 2147483647",
            setting: ProducerSetting::BatchSize,
        },
    },
    Property {
        name: "batch.num.messages",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: PRODUCER_ONLY,
        doc: "librdkafka's: a batch is full at this many records.",
        kind: Kind::Count {
            min: 1,
            max: 1_000_000,
            allowed: "a whole number from 1 to 1000000",
            setting: ProducerSetting::BatchNumMessages,
        },
    },
    Property {
        name: "max.request.size",
        aliases: &[],
        default: DefaultValue::Value("1048576"),
        parts: PRODUCER_ONLY,
        doc: "The largest record accepted, and the most batch bytes put in one Produce request \
              (a request always takes at least one batch).",
        kind: Kind::Count {
            min: 1,
            max: i32::MAX as usize,
            allowed: "a whole number of bytes from 1 to 2147483647",
            setting: ProducerSetting::MaxRequestSize,
        },
    },
    Property {
        name: "buffer.memory",
        aliases: &[],
        default: DefaultValue::Value("33554432"),
        parts: PRODUCER_ONLY,
        doc: "The bytes records sent and not yet acknowledged may take; sending waits for room \
              beyond it.",
        kind: Kind::Count {
            min: 1,
            max: MAX_BUFFER_MEMORY,
            allowed: BUFFER_MEMORY,
            setting: ProducerSetting::BufferMemory,
        },
    },
    Property {
        name: "queue.buffering.max.messages",
        aliases: &[],
        default: DefaultValue::Value("100000"),
        parts: PRODUCER_ONLY,
        doc: "librdkafka's: the most records sent and not yet acknowledged; sending waits \
              beyond it. Each record takes at least buffer.memory divided by this of \
              buffer.memory's room.",
        kind: Kind::Count {
            min: 1,
            max: i32::MAX as usize,
            allowed: "a whole number from 1 to 2147483647",
            setting: ProducerSetting::QueueBufferingMaxMessages,
        },
    },
    Property {
        name: "retries",
        aliases: &[],
        default: DefaultValue::Value("2147483647"),
        parts: PRODUCER_ONLY,
        doc: "How many times a batch is sent again after a retriable failure; \
              delivery.timeout.ms is what bounds retries, as in the Java client.",
        kind: Kind::Count {
            min: 0,
            max: i32::MAX as usize,
            allowed: "a whole number from 0 to 2147483647",
            setting: |n| ProducerSetting::Retries(n as u32),
        },
    },
    Property {
        name: "delivery.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("120000"),
        parts: PRODUCER_ONLY,
        doc: "How long after its batch was opened a record's delivery may take in all (waiting \
              for metadata, lingering, sending, retrying) before it fails; at least linger.ms + \
              request.timeout.ms.",
        kind: Kind::Millis {
            min: 1,
            setting: ProducerSetting::DeliveryTimeout,
        },
    },
    Property {
        name: "enable.idempotence",
        aliases: &[],
        default: DefaultValue::Value("false"),
        parts: PRODUCER_ONLY,
        doc: "A producer id and per-partition sequence numbers in every batch (KIP-98), so that \
              a retried batch the broker already has is not written twice; needs acks=all and \
              retries above 0.",
        kind: Kind::Bool(ProducerSetting::EnableIdempotence),
    },
    Property {
        name: "partitioner",
        aliases: &[],
        default: DefaultValue::Value("murmur2_round_robin"),
        parts: PRODUCER_ONLY,
        doc: "How records without a key are spread; keyed records always follow murmur2.",
        kind: Kind::Other {
            allowed: PartitionerKind::EXPECTED,
            parse: |i| {
                PartitionerKind::parse(i.trimmed())
                    .map(ProducerSetting::Partitioner)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "transactional.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: PRODUCER_ONLY,
        doc: "Makes the producer transactional: records go out in transactions the application \
              begins, commits or aborts, with consumed offsets committed inside them, and a \
              later producer with the same id fences this one. Implies enable.idempotence.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a transactional id; empty unsets it",
            setting: ProducerSetting::TransactionalId,
        },
    },
    Property {
        name: "transaction.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: PRODUCER_ONLY,
        doc: "How long the transaction coordinator lets a transaction stay open before it \
              aborts it; at most the broker's transaction.max.timeout.ms.",
        kind: Kind::Millis {
            min: 1,
            setting: ProducerSetting::TransactionTimeout,
        },
    },
];

const BUFFER_MEMORY: &str = "a whole number of bytes from 1 to 4294967295";

/// `acks`: `all` or `-1`, or `1`; `0` refused with the reason.
fn acks(i: &Input<'_>) -> Result<ProducerSetting, ConfigError> {
    match i.trimmed().to_ascii_lowercase().as_str() {
        "all" | "-1" => Ok(ProducerSetting::Acks(Acks::All)),
        "1" => Ok(ProducerSetting::Acks(Acks::Leader)),
        "0" => Err(ConfigError::invalid(
            i.property,
            i.value,
            "all, -1 or 1 (acks=0 is not supported: such requests get no answer and kcon's \
             connections wait for one)",
        )),
        _ => Err(i.refused()),
    }
}

/// `compression.type`, in any case.
fn compression(i: &Input<'_>) -> Result<ProducerSetting, ConfigError> {
    let codec = match i.trimmed().to_ascii_lowercase().as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return Err(i.refused()),
    };
    Ok(ProducerSetting::CompressionType(codec))
}

impl Configurable<ProducerSetting> for ProducerConfig {
    const PART: Part = PRODUCER;

    fn apply(&mut self, setting: &ProducerSetting) -> bool {
        match setting {
            ProducerSetting::Acks(acks) => self.acks = *acks,
            ProducerSetting::CompressionType(c) => self.compression = *c,
            ProducerSetting::Linger(d) => self.linger = *d,
            ProducerSetting::BatchSize(n) => self.batch_size = *n,
            ProducerSetting::BatchNumMessages(n) => self.batch_num_messages = *n,
            ProducerSetting::MaxRequestSize(n) => self.max_request_size = *n,
            ProducerSetting::BufferMemory(n) => self.buffer_memory = *n,
            ProducerSetting::QueueBufferingMaxMessages(n) => self.queue_buffering_max_messages = *n,
            ProducerSetting::Retries(n) => self.retries = *n,
            ProducerSetting::DeliveryTimeout(d) => self.delivery_timeout = *d,
            ProducerSetting::EnableIdempotence(on) => self.enable_idempotence = *on,
            ProducerSetting::Partitioner(kind) => self.partitioner = *kind,
            ProducerSetting::TransactionalId(id) => self.transactional_id = id.clone(),
            ProducerSetting::TransactionTimeout(d) => self.transaction_timeout = *d,
        }
        true
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            pool: PoolConfig::default(),
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 1_000_000,
            batch_num_messages: 10_000,
            max_request_size: 1_048_576,
            buffer_memory: 33_554_432,
            queue_buffering_max_messages: 100_000,
            retries: i32::MAX as u32,
            delivery_timeout: Duration::from_millis(120_000),
            enable_idempotence: false,
            partitioner: PartitionerKind::default(),
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
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
        assert_eq!(e.suggestion(), None, "nothing close: {e}");
    }

    /// A name close to a producer property, or to a connection property the producer takes,
    /// is suggested.
    #[test]
    fn an_unknown_property_suggests_the_producer_or_pool_property_meant() {
        let e = config(&[("enable.idempotance", "true")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown configuration property enable.idempotance (did you mean \
             enable.idempotence?)"
        );
        let e = config(&[("bootstrap.server", "a:1")]).unwrap_err();
        assert_eq!(e.suggestion(), Some("bootstrap.servers"), "{e}");
        let e = config(&[("LINGER_MS", "5")]).unwrap_err();
        assert_eq!(e.suggestion(), Some("linger.ms"), "{e}");
    }

    #[test]
    fn the_table_is_sound_and_its_defaults_are_the_producers() {
        assert_eq!(
            registry::faults(registry::erased(PROPERTIES)),
            [] as [String; 0]
        );
        assert_eq!(
            registry::defaults_disagreeing::<_, ProducerConfig>(PROPERTIES),
            [] as [&str; 0]
        );
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
        // A transactional id implies idempotence, and its checks.
        let e = config(&[("transactional.id", "tx"), ("acks", "1")]).unwrap_err();
        assert_eq!(e.property(), "acks");
        assert!(e.to_string().contains("transactional.id"), "{e}");
    }

    #[test]
    fn a_records_room_is_at_least_its_share_of_the_count() {
        let c = ProducerConfig::default();
        // 33554432 / 100000: a small record takes its share of the count.
        assert_eq!(c.room(100), 335);
        assert_eq!(c.room(0), 335);
        assert_eq!(c.room(5000), 5000);
        let c = config(&[
            ("buffer.memory", "1000"),
            ("queue.buffering.max.messages", "2000"),
        ])
        .unwrap();
        // Never below one byte: the count is then no tighter than the bytes.
        assert_eq!((c.room(0), c.room(7)), (1, 7));
    }

    #[test]
    fn a_transactional_id_implies_idempotence() {
        let c = config(&[
            ("transactional.id", " tx-1 "),
            ("transaction.timeout.ms", "9000"),
        ])
        .unwrap();
        assert_eq!(c.transactional_id.as_deref(), Some("tx-1"));
        assert_eq!(c.transaction_timeout, Duration::from_secs(9));
        assert!(c.idempotent() && !c.enable_idempotence);
        let plain = config(&[]).unwrap();
        assert!(!plain.idempotent());
        assert_eq!(plain.transaction_timeout, Duration::from_secs(60));
        assert_eq!(
            config(&[("transactional.id", "")])
                .unwrap()
                .transactional_id,
            None
        );
        let e = config(&[("transaction.timeout.ms", "0")]).unwrap_err();
        assert_eq!(e.property(), "transaction.timeout.ms");
    }
}
