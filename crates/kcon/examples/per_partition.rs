//! Concurrent processing per partition: one task per owned partition works through that
//! partition's records in order while the other partitions go on. When a partition's task
//! falls behind, its stream fills up and the consumer pauses that partition (it stops
//! fetching it) until the task catches up: backpressure per partition, with nothing buffered
//! without bound.
//!
//! Offsets are stored as each task finishes a record (auto-store: when the task asks its
//! stream for the next one) and committed by auto-commit, before a partition is given up and
//! at close: at-least-once. A partition given up in a rebalance ends its stream; its next
//! owner starts after the last commit.
//!
//! ```text
//! cargo run -p kcon --example per_partition -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `events`, `per-partition`. Stop it with Ctrl-C.

#![allow(clippy::print_stdout, reason = "an example shows what it consumes")]

use std::time::Duration;

use kcon::{Consumer, Record};

/// Batches a partition's stream may hold before the partition is paused.
const BUFFER: usize = 2;

/// Stands for the application's work on one record.
async fn process(record: &Record) {
    println!("{}-{}@{}", record.topic, record.partition, record.offset);
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "events");
    let group = setting(3, "KCON_GROUP", "per-partition");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        .set("max.poll.records", "100")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut streams = consumer.into_partition_streams(BUFFER);

    loop {
        tokio::select! {
            stream = streams.next() => {
                // `None`: the consumer stopped (a fatal error): close says which.
                let Some(mut stream) = stream else { break };
                tokio::spawn(async move {
                    while let Some(record) = stream.recv().await {
                        match record {
                            Ok(record) => process(&record).await,
                            Err(e) => eprintln!("{}: {e}", stream.partition()),
                        }
                    }
                    // The partition was revoked or lost, or the consumer closed.
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Every stream ends, what the tasks finished is committed, the member leaves the group.
    streams.close().await
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
