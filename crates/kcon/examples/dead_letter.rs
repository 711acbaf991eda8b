//! Record policies: JSON orders handed to a handler that can fail. A failure that may pass (the
//! payment service timed out) is retried with backoff, only that order's partition waiting; a
//! poison order (bad JSON, or an order the handler refuses for good) goes to a dead-letter
//! topic, acknowledged before its offset is committed; twenty failures in a row open the
//! circuit breaker and stop the consumer. The processor runs on a task of its own; SIGTERM or
//! Ctrl-C closes it, committing what was done with.
//!
//! ```text
//! cargo run -p kcon --example dead_letter -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `orders`, `billing`. Dead letters go to `<TOPIC>.dlq`; replay them with
//! `kcon dlq replay -b BOOTSTRAP --from <TOPIC>.dlq`.

#![allow(clippy::print_stdout, reason = "an example shows what it processes")]

use std::time::Duration;

use kcon::deserialize::{JsonDeserializer, Nullable, StringDeserializer};
use kcon::{Consumer, ErrorKind, ErrorTolerance, Failure, FailureExt, Processor};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, serde::Deserialize)]
struct Order {
    id: u64,
    amount_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "orders");
    let group = setting(3, "KCON_GROUP", "billing");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut processor = Processor::builder(consumer)
        .key(Nullable(StringDeserializer))
        .value(JsonDeserializer::<Order>::new())
        // A record that failed for good goes to the dead-letter topic, and processing goes on.
        .errors_tolerance(ErrorTolerance::All)
        .dead_letter_topic(&format!("{topic}.dlq"))
        // Up to 5 tries, 200 ms then doubling up to 5 s apart.
        .retry_max_attempts(5)
        .set("errors.retry.backoff.ms", "200")
        .set("errors.retry.delay.max.ms", "5000")
        // A downstream outage looks like every record failing: stop instead of dead-lettering
        // the whole topic.
        .set("errors.breaker.consecutive.failures", "20")
        .build()?;

    // The processor runs on a task of its own (its future is `Send`); this task waits for
    // SIGTERM or Ctrl-C and then tells it to stop after the record in hand.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut worker = tokio::spawn(async move {
        let outcome = processor
            .run_until(
                async {
                    stopped.await.ok();
                },
                async move |order| {
                    let o = &order.value;
                    if o.amount_cents == 0 {
                        return Err(
                            Failure::permanent("an order of nothing").with_class("empty-order")
                        );
                    }
                    charge(o.id, o.amount_cents).await.retriable()?;
                    println!(
                        "{}-{}@{}: charged order {} (try {})",
                        order.record.topic,
                        order.record.partition,
                        order.record.offset,
                        o.id,
                        order.attempt
                    );
                    Ok(())
                },
            )
            .await;
        let m = processor.metrics();
        println!(
            "processed {}, retried {}, dead-lettered {}",
            m.records_processed, m.records_retried, m.records_dead_lettered
        );
        // Commits what was done with (processed or dead-lettered), then leaves the group.
        processor.close().await?;
        outcome
    });

    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let outcome = tokio::select! {
        // The processor stopped by itself (the breaker opened, a fatal error).
        ended = &mut worker => ended,
        _ = terminate.recv() => { let _ = stop.send(()); worker.await }
        _ = tokio::signal::ctrl_c() => { let _ = stop.send(()); worker.await }
    };
    match outcome.expect("the processor's task does not panic") {
        Err(e) if e.kind() == ErrorKind::CircuitOpen => {
            eprintln!("stopped: {e}");
            std::process::exit(1);
        }
        other => other,
    }
}

/// The payment service: here, one call in ten times out.
async fn charge(id: u64, _amount_cents: u64) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if id % 10 == 3 && fastrand::bool() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the payment service timed out",
        ));
    }
    Ok(())
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
