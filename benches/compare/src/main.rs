//! `kcon-compare`: one Kafka client running one workload, as a process of its own, so that the
//! driver (`benches/compare/run`) can read the client's CPU time and peak RSS from `wait4`. The
//! franz-go and Java peers (`franz/`, `java/`) take the same subcommands and options and print
//! the same lines.
//!
//! Subcommands (every option is `--name value`):
//!
//! - `fill --bootstrap B --topic T --partitions P --records N --size S --codec none|lz4|zstd
//!   --batch K [--keys K2]`: creates the topic and produces N records of S-byte values, spread
//!   evenly over the partitions, K records per batch. With `--keys`, record i has the key
//!   `i mod K2` (eight digits) and goes to partition `(i mod K2) mod P`. Prints one JSON line
//!   with each partition's count.
//! - `consume --client C --bootstrap B --topic T --ends E0,E1,.. [--group G]`: consumes every
//!   partition from offset 0 to its end `Ei` with client C (see [`Client`]), in a group when G is
//!   given, else by assigning the partitions. Prints one JSON line: counts, times and the
//!   exactly-once check.
//! - `member --client C --bootstrap B --topic T --group G --strategy range|cooperative-sticky`:
//!   a group member for the rebalance benchmark, printing a JSON line per second (records
//!   received per partition, with the times of the first and last) until its stdin closes,
//!   then leaving the group.
//! - `traffic --bootstrap B --topic T --partitions P --rate R`: produces R records per second
//!   per partition until its stdin closes (the rebalance benchmark's traffic).
//! - `ends --bootstrap B --topic T --partitions P`: prints the partitions' end offsets.
//! - `produce --client kcon|kcon-all|rdkafka --bootstrap B --topic T --records N --values FILE
//!   --size S --acks A --idempotence true|false --compression C --keys true|false`: writes N
//!   records and waits for every acknowledgement (`src/produce.rs`).
//! - `latency --client kcon|rdkafka --bootstrap B --topic T --partitions P --rate R --seconds D
//!   --warmup-seconds W --size S`: end-to-end latency at a fixed rate (`src/latency.rs`).
//! - `txn --client kcon|rdkafka --bootstrap B --topic T --transactions N --records R --size S`:
//!   N transactions of R records with a transactional producer (`src/txn.rs`).
//! - `share --client kcon|kacrab|krafka --bootstrap B --topic T --group G --records N`: a share
//!   group member reading N records (`src/share.rs`).
//! - `process --client kcon --bootstrap B --topic T --group G --ends E0,E1,.. --keys K
//!   --handler-ms M --concurrency C`: a `Processor` handling every record of T with
//!   `run_concurrently`, C at once, ordered by key, each taking M ms (`src/process.rs`).

mod args;
mod confluent_client;
mod exact_wait;
mod fill;
mod kacrab_client;
mod kcon_client;
mod krafka_client;
mod latency;
mod member;
mod otel;
mod process;
mod produce;
mod rdkafka_client;
mod rskafka_client;
mod share;
mod tally;
mod txn;

use std::process::ExitCode;
use std::time::SystemTime;

use args::Args;
use tally::Tally;

/// A boxed error: the clients' error types differ, and every error ends the process.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Properties written `name=value,name=value`: `produce --set`'s and `KCON_COMPARE_SET`'s
/// form. A piece without `=` is passed over.
pub fn properties(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// An experiment's properties for a kcon client, from `KCON_COMPARE_SET` ([`properties`]):
/// never passed by `run`, so not what it measures.
pub fn experiment_properties() -> Vec<(String, String)> {
    properties(&std::env::var("KCON_COMPARE_SET").unwrap_or_default())
}

/// The clients and their configurations. Every one reads from the earliest offset (the one
/// setting all of them need to read a topic from its start); the rest is as named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// kcon, default settings, `recv_borrowed`.
    Kcon,
    /// kcon, default settings, `recv_batch`.
    KconBatch,
    /// rust-rdkafka's `BaseConsumer`, default settings.
    RdkafkaBase,
    /// rust-rdkafka's `BaseConsumer` with `fetch.queue.backoff.ms=0`.
    RdkafkaBaseNoBackoff,
    /// rust-rdkafka's `StreamConsumer`, default settings.
    RdkafkaStream,
    /// krafka, default settings.
    Krafka,
    /// krafka with `max_poll_records=10000` and `max_buffered_records=20000`.
    KrafkaTuned,
    /// rskafka (no consumer groups): one `StreamConsumer` per partition, merged.
    Rskafka,
    /// kacrab, default settings.
    Kacrab,
    /// Confluent's Rust client (`confluent-kafka`), default settings, by assignment only.
    Confluent,
    /// An experiment: two kcon consumers in one process, each assigned half the partitions
    /// (two Fetches in flight to the broker, on two connections).
    KconSplit2,
}

impl Client {
    /// Every client, by its command-line name.
    pub const ALL: [(&'static str, Client); 11] = [
        ("kcon", Client::Kcon),
        ("kcon-batch", Client::KconBatch),
        ("rdkafka-base", Client::RdkafkaBase),
        ("rdkafka-base-backoff0", Client::RdkafkaBaseNoBackoff),
        ("rdkafka-stream", Client::RdkafkaStream),
        ("krafka", Client::Krafka),
        ("krafka-tuned", Client::KrafkaTuned),
        ("rskafka", Client::Rskafka),
        ("kacrab", Client::Kacrab),
        ("confluent", Client::Confluent),
        ("kcon-split2", Client::KconSplit2),
    ];

    fn parse(name: &str) -> Result<Client, BoxError> {
        Client::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| c)
            .ok_or_else(|| format!("unknown client {name:?}").into())
    }
}

/// What one `consume` process reads.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `host:port`.
    pub bootstrap: String,
    /// The topic; its partitions are `0..ends.len()`.
    pub topic: String,
    /// Read in this group (subscribing), or by assignment when `None`.
    pub group: Option<String>,
    /// The end offset of each partition: everything below it is read.
    pub ends: Vec<i64>,
}

impl Workload {
    /// The partitions, `0..n`.
    pub fn partitions(&self) -> std::ops::Range<i32> {
        0..self.ends.len() as i32
    }
}

fn main() -> ExitCode {
    // Taken first: the child's own view of when it started (the driver also notes when it
    // spawned the process).
    let started = SystemTime::now();
    let mut argv = std::env::args().skip(1);
    let Some(command) = argv.next() else {
        eprintln!(
            "usage: kcon-compare fill|consume|member|produce|txn|share|process --name value ..."
        );
        return ExitCode::from(2);
    };
    let result = Args::parse(argv).and_then(|args| match command.as_str() {
        "fill" => fill::main(&args),
        "consume" => consume(&args, started),
        "member" => member::main(&args),
        "traffic" => fill::produce_main(&args),
        "ends" => fill::ends_main(&args),
        "produce" => produce::main(&args, started),
        "latency" => latency::main(&args),
        "txn" => txn::main(&args),
        "share" => share::main(&args),
        "process" => process::main(&args, started),
        other => Err(format!("unknown subcommand {other:?}").into()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcon-compare {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn consume(args: &Args, started: SystemTime) -> Result<(), BoxError> {
    let client = Client::parse(args.required("client")?)?;
    let workload = Workload {
        bootstrap: args.required("bootstrap")?.to_owned(),
        topic: args.required("topic")?.to_owned(),
        group: args.optional("group").map(str::to_owned),
        ends: args.list("ends")?,
    };
    let mut tally = Tally::new(started, &workload.ends, &workload.bootstrap);
    match client {
        // rdkafka's BaseConsumer runs no async code: no runtime of ours around it.
        Client::RdkafkaBase | Client::RdkafkaBaseNoBackoff => {
            rdkafka_client::run_base(&workload, client, &mut tally)?
        }
        _ => {
            // The runtime an application gets from `#[tokio::main]`.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                match client {
                    Client::Kcon => kcon_client::run(&workload, false, &mut tally).await,
                    Client::KconBatch => kcon_client::run(&workload, true, &mut tally).await,
                    Client::RdkafkaStream => {
                        rdkafka_client::run_stream(&workload, &mut tally).await
                    }
                    Client::Krafka | Client::KrafkaTuned => {
                        krafka_client::run(&workload, client, &mut tally).await
                    }
                    Client::Rskafka => rskafka_client::run(&workload, &mut tally).await,
                    Client::Kacrab => kacrab_client::run(&workload, &mut tally).await,
                    Client::Confluent => confluent_client::run(&workload, &mut tally).await,
                    Client::KconSplit2 => kcon_client::run_split(&workload, 2, &mut tally).await,
                    Client::RdkafkaBase | Client::RdkafkaBaseNoBackoff => {
                        unreachable!("handled above")
                    }
                }
            })?;
        }
    }
    let done = SystemTime::now();
    println!("{}", tally.report(done));
    Ok(())
}
