//! Reading chosen partitions without a consumer group: no rebalances, no commits. Each
//! partition starts at the beginning of its log (or at `START`); the lag is printed every 100
//! records.
//!
//! ```text
//! cargo run -p kcon --example manual_assignment -- [BOOTSTRAP] [TOPIC] [PARTITIONS] [START]
//! ```
//!
//! `PARTITIONS` is a comma-separated list (`0,1,2`). Each argument falls back to
//! `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_PARTITIONS`, `KCON_START`, then to `localhost:9092`,
//! `events`, `0`, and the beginning of the log. Stop it with Ctrl-C.

#![allow(clippy::print_stdout, reason = "an example shows what it consumes")]

use kcon::{Consumer, ErrorKind, TopicPartition};

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "events");
    let partitions = setting(3, "KCON_PARTITIONS", "0");
    let start = setting(4, "KCON_START", "");

    let partitions: Vec<TopicPartition> = partitions
        .split(',')
        .map(|p| match p.trim().parse() {
            Ok(p) => Ok(TopicPartition::new(&topic, p)),
            Err(_) => Err(format!("{p:?} is not a partition number")),
        })
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| exit(&e));

    // No group.id: nothing is committed, and offsets cannot be.
    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.assign(partitions.iter().cloned())?;
    if !start.is_empty() {
        let offset: i64 = start
            .parse()
            .unwrap_or_else(|_| exit(&format!("{start:?} is not an offset")));
        for tp in &partitions {
            // Before the first receiving call, a seek sets where the partition starts.
            consumer.seek(tp.clone(), offset)?;
        }
    }
    for tp in &partitions {
        let w = consumer.watermarks(tp).await?;
        println!("{tp}: offsets {}..{}", w.log_start, w.high_watermark);
    }

    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let mut received = 0u64;
    loop {
        let record = tokio::select! {
            record = consumer.recv() => record,
            _ = &mut stop => break,
        };
        let record = match record {
            Ok(r) => r,
            // A start offset past the end of the log, for instance: say so and go on with the
            // other partitions.
            Err(e) if e.kind() == ErrorKind::NoOffset => {
                println!("{e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        println!("{}-{}@{}", record.topic, record.partition, record.offset);
        received += 1;
        if received.is_multiple_of(100) {
            for (tp, lag) in consumer.lag().await? {
                println!(
                    "{tp}: position {:?}, {:?} records behind",
                    lag.position, lag.records
                );
            }
        }
    }
    consumer.close().await
}

fn exit(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
