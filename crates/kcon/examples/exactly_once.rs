//! Exactly-once: read a topic, write an upper-cased copy of each record to another, and commit
//! the input offsets inside the same transaction. A crash anywhere leaves either both the
//! outputs and the offsets of a batch or neither (for readers with `isolation.level=
//! read_committed`); the restarted pipeline fences the old one and goes on from the last
//! committed batch.
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
//! when something fails; `kcon::exactly_once::ExactlyOnce` does that loop.

#![allow(clippy::print_stdout, reason = "an example shows what it commits")]

use kcon::Consumer;
use kcon::exactly_once::{Batch, ExactlyOnce};
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
        // One id per pipeline instance: a restarted instance with the same id fences the old.
        .set("transactional.id", format!("{group}-0"))
        .build()?;
    let mut pipeline = ExactlyOnce::new(consumer, producer).await?;

    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let output = output.clone();
        let batch = pipeline.process_batch(|records| async move {
            Ok(records
                .into_iter()
                .map(|r| {
                    let upper = r.value.as_deref().map(<[u8]>::to_ascii_uppercase);
                    let mut out = ProducerRecord::new(output.clone(), upper.unwrap_or_default());
                    out.key = r.key.clone();
                    out
                })
                .collect())
        });
        let batch = tokio::select! {
            batch = batch => batch?,
            _ = &mut stop => break,
        };
        match batch {
            Batch::Committed {
                partition, inputs, ..
            } => println!("{partition}: {inputs} records committed"),
            Batch::Aborted { partition, reason } => {
                println!("{partition}: aborted ({reason}); the batch comes again")
            }
            _ => {}
        }
    }
    // A transaction left open by Ctrl-C is aborted by the close.
    pipeline.close().await;
    Ok(())
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
