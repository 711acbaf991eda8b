//! At-least-once: process a batch, then commit it. A crash between the two reprocesses the
//! batch after the restart; nothing is ever skipped.
//!
//! ```text
//! cargo run -p kcon --example at_least_once -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `events`, `at-least-once`. Stop it with Ctrl-C.

#![allow(clippy::print_stdout, reason = "an example shows what it consumes")]

use kcon::{Consumer, Record};

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "events");
    let group = setting(3, "KCON_GROUP", "at-least-once");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        // The application commits, after processing.
        .enable_auto_commit(false)
        .build()?;
    consumer.subscribe([topic])?;

    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let batch = tokio::select! {
            batch = consumer.recv_batch() => batch?,
            _ = &mut stop => break,
        };
        for record in &batch {
            process(record);
        }
        // Commits everything handed out before this call: the batch just processed.
        consumer.commit().await?;
    }
    // A final commit is not needed: every processed batch was committed.
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
