//! At-most-once: commit a batch as soon as it arrives, then process it. A crash while
//! processing loses the rest of the batch; nothing is ever processed twice.
//!
//! ```text
//! cargo run -p kcon --example at_most_once -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `events`, `at-most-once`. Stop it with Ctrl-C.

#![allow(clippy::print_stdout, reason = "an example shows what it consumes")]

use kcon::{Consumer, Record, TopicPartition};

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "events");
    let group = setting(3, "KCON_GROUP", "at-most-once");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "latest")
        // Nothing is committed behind the application's back: only the explicit commits
        // below, which name their offsets.
        .enable_auto_commit(false)
        .enable_auto_offset_store(false)
        .build()?;
    consumer.subscribe([topic])?;

    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let batch = tokio::select! {
            batch = consumer.recv_batch() => batch?,
            _ = &mut stop => break,
        };
        // A batch holds records of one partition, in order: commit past its last record
        // before touching any of them.
        let Some(last) = batch.last() else { continue };
        let tp = TopicPartition::new(&*last.topic, last.partition);
        consumer.commit_offsets([(tp, last.offset + 1)]).await?;
        for record in &batch {
            process(record);
        }
    }
    consumer.close().await
}

fn process(record: &Record) {
    let value = record.value.as_deref().map(String::from_utf8_lossy);
    println!(
        "{}-{}@{}: {}",
        record.topic,
        record.partition,
        record.offset,
        value.as_deref().unwrap_or("<null>")
    );
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
