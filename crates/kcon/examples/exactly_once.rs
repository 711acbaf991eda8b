//! Exactly-once: read a topic, write an upper-cased copy of each record to another, and commit
//! the input offsets inside the same transaction. A crash anywhere leaves either both the
//! outputs and the offsets of a batch or neither (for readers with `isolation.level=
//! read_committed`); the restarted processor fences the old one and goes on from the last
//! committed transaction.
//!
//! ```text
//! cargo run -p kcon --example exactly_once -- [BOOTSTRAP] [INPUT] [OUTPUT] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_OUTPUT`, `KCON_GROUP`,
//! then to `localhost:9092`, `events`, `events-upper`, `exactly-once`. Stop it with Ctrl-C.
//!
//! The same pattern by hand, as with librdkafka or the Java client: `init_transactions`
//! once, then per batch `begin_transaction`, the sends, `send_offsets_to_transaction(offsets,
//! consumer.group_metadata())`, `commit_transaction`, and `abort_transaction` (then seek back)
//! when something fails; a `kcon::Processor` built with `exactly_once(producer)` does that
//! loop, the handler sending its outputs to the processor's sink.

#![allow(clippy::print_stdout, reason = "an example shows what it commits")]

use kcon::{Consumer, Processor};
use kcon_produce::{Producer, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let input = setting(2, "KCON_TOPIC", "events");
    let output = setting(3, "KCON_OUTPUT", "events-upper");
    let group = setting(4, "KCON_GROUP", "exactly-once");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        // Offsets go in the transactions, never on their own.
        .enable_auto_commit(false)
        // Reads only what other transactional writers committed.
        .set("isolation.level", "read_committed")
        .build()?;
    consumer.subscribe([input])?;
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        // One id per processor instance: a restarted instance with the same id fences the old.
        .set("transactional.id", format!("{group}-0"))
        .build()?;
    // The producer's transactions are initialized at the first run.
    let mut processor = Processor::builder(consumer)
        .exactly_once(producer)
        .build()?;
    let sink = processor.sink()?;

    // A transaction commits once the batch handed out is done, and when the run stops; one
    // that fails is aborted and its records come again.
    let stop = async {
        tokio::signal::ctrl_c().await.ok();
    };
    let outcome = processor
        .run_until(stop, async move |r| {
            let upper = r.value.as_deref().map(<[u8]>::to_ascii_uppercase);
            let mut out = ProducerRecord::new(output.clone(), upper.unwrap_or_default());
            out.key = r.key.clone();
            sink.send(out);
            Ok(())
        })
        .await;
    if let Some(counts) = processor.transactions() {
        println!(
            "{} transactions committed, {} aborted (their records came again)",
            counts.committed, counts.aborted
        );
    }
    // The run committed its transaction as it stopped; the close closes the consumer and the
    // producer.
    processor.close().await?;
    outcome?;
    Ok(())
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
