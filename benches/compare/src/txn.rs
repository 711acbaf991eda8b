//! `txn --client kcon|kcon-all|rdkafka --bootstrap B --topic T --transactions N --records R
//! --size S`:
//! a transactional producer initializes, then writes N transactions of R records of S bytes to
//! partition 0 of T: begin, send the records, commit (which sends what is queued without
//! waiting for `linger.ms` and returns once all of it is written), then read each record's
//! outcome, done by then, as the Java client's `commitTransaction` is used. Prints one JSON line:
//! the transactions and records written, the seconds from the first `begin` to the last commit,
//! the rates, and the process's CPU seconds (startup and close included).
//!
//! kcon: `kcon_produce::Producer` with `transactional.id`, each record sent with `send`;
//! kcon-all: the same, a transaction's records sent in one `send_all`. rust-rdkafka:
//! `FutureProducer` with `transactional.id`, `send_result` per record, each delivery awaited
//! before the commit (see there why). All otherwise with default settings.

use std::time::{Duration, Instant};

use crate::BoxError;
use crate::args::Args;

const CALL: Duration = Duration::from_secs(30);

/// The process's user + system CPU seconds so far.
pub(crate) fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub fn main(args: &Args) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let transactions: usize = args.number("transactions")?;
    let records: usize = args.number("records")?;
    let size: usize = args.number("size")?;
    let value = vec![b'x'; size];
    let id = format!("bench-{client}-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let seconds = runtime.block_on(async {
        match client.as_str() {
            "kcon" => {
                kcon(
                    &bootstrap,
                    &topic,
                    &id,
                    transactions,
                    records,
                    &value,
                    false,
                )
                .await
            }
            "kcon-all" => kcon(&bootstrap, &topic, &id, transactions, records, &value, true).await,
            "rdkafka" => rdkafka(&bootstrap, &topic, &id, transactions, records, &value).await,
            other => Err(format!("unknown client {other:?}: kcon, kcon-all or rdkafka").into()),
        }
    })?;
    drop(runtime);
    let written = transactions * records;
    println!(
        "{{\"client\":\"{client}\",\"transactions\":{transactions},\"records\":{written},\
         \"seconds\":{seconds:.3},\"transactions_per_s\":{:.1},\"records_per_s\":{:.0},\
         \"cpu_s\":{:.3}}}",
        transactions as f64 / seconds,
        written as f64 / seconds,
        cpu_seconds()
    );
    Ok(())
}

async fn kcon(
    bootstrap: &str,
    topic: &str,
    id: &str,
    transactions: usize,
    records: usize,
    value: &[u8],
    together: bool,
) -> Result<f64, BoxError> {
    use kcon_produce::{Producer, ProducerRecord};
    let mut builder = Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", id);
    // An experiment's properties, `name=value,...`: not what `run` measures.
    for (k, v) in crate::experiment_properties() {
        builder = builder.set(&k, v);
    }
    let producer = builder.build()?;
    producer.init_transactions(CALL).await?;
    let value = bytes::Bytes::copy_from_slice(value);
    let topic = kcon_produce::Topic::new(topic);
    let started = Instant::now();
    for _ in 0..transactions {
        producer.begin_transaction(CALL).await?;
        let record = || ProducerRecord::new(topic, value.clone()).with_partition(0);
        if together {
            let deliveries = producer.send_all((0..records).map(|_| record())).await?;
            producer.commit_transaction(CALL).await?;
            for outcome in deliveries.await {
                outcome?;
            }
        } else {
            let mut deliveries = Vec::with_capacity(records);
            for _ in 0..records {
                deliveries.push(producer.send(record()).await?);
            }
            producer.commit_transaction(CALL).await?;
            for d in deliveries {
                d.await?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if std::env::var_os("KCON_COMPARE_STATS").is_some() {
        eprintln!("kcon: {:?}", producer.metrics());
    }
    producer.close().await?;
    Ok(seconds)
}

async fn rdkafka(
    bootstrap: &str,
    topic: &str,
    id: &str,
    transactions: usize,
    records: usize,
    value: &[u8],
) -> Result<f64, BoxError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .create()?;
    producer.init_transactions(CALL)?;
    let started = Instant::now();
    for _ in 0..transactions {
        producer.begin_transaction()?;
        let mut deliveries = Vec::with_capacity(records);
        for _ in 0..records {
            let record = FutureRecord::<(), [u8]>::to(topic)
                .payload(value)
                .partition(0);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| format!("send: {e}"))?,
            );
        }
        // Each delivery awaited before the commit: librdkafka's commit flushes too, but
        // called with records still queued it returns only after about 100 ms (measured:
        // 9.8 transactions a second instead of 120).
        for d in deliveries {
            d.await?.map_err(|(e, _)| format!("delivery: {e}"))?;
        }
        producer.commit_transaction(CALL)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(seconds)
}
