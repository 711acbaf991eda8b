//! A work queue over a share group (KIP-932): every member of the group `GROUP` reads the
//! same topic, each job handed to one of them at a time. A job whose handler fails retriably is
//! released, and the group hands it out again (to this member or another) with its delivery
//! count raised; one that fails for good (a job that does not parse) goes to a dead-letter
//! topic, and is then accepted.
//!
//! ```text
//! cargo run -p kcon --example share_queue -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `jobs`, `workers`. Start several to share the work; stop one with Ctrl-C:
//! what it held unsettled goes to the others. Share groups need Apache Kafka 4.1 or later with
//! share groups enabled.
//!
//! A new share group starts at the log's end (its `share.auto.offset.reset` is `latest`), so
//! jobs written before the group's first member joined are not read. To read them, set the
//! group's config first, with the `kcon` tool (or `kcon_admin::alter_group_configs`, or
//! Kafka's `kafka-configs.sh --alter --entity-type groups`):
//!
//! ```text
//! kcon group config -b localhost:9092 workers --set share.auto.offset.reset=earliest
//! ```

#![allow(clippy::print_stdout, reason = "an example shows what it processes")]

use kcon::deserialize::{BytesDeserializer, StringDeserializer};
use kcon::share::ShareConsumer;
use kcon::{Failure, FailureExt, Processor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "jobs");
    let group = setting(3, "KCON_GROUP", "workers");

    let mut consumer = ShareConsumer::builder()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        // The processor settles every job itself.
        .set("share.acknowledgement.mode", "explicit")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut processor = Processor::builder(consumer)
        .key(BytesDeserializer)
        .value(StringDeserializer)
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", format!("{topic}.dlq"))
        // At or below the group's share.delivery.count.limit (5 by default), so that the
        // processor, not the broker, settles a job's last delivery.
        .retry_max_attempts(4)
        .build()?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    processor
        .run_until(stop, async |job| {
            let n: u64 = job.value.trim().parse().permanent()?;
            if n.is_multiple_of(7) && job.attempt < 2 {
                // A job that fails the first time: released, and retried on its redelivery.
                return Err(Failure::retriable("the downstream service is busy"));
            }
            println!("job {n} done at delivery {}", job.attempt);
            Ok(())
        })
        .await?;
    let counts = processor.metrics();
    println!(
        "processed {}, released to retry {}, dead-lettered {}",
        counts.records_processed, counts.records_retried, counts.records_dead_lettered
    );
    processor.close().await?;
    Ok(())
}

/// The `index`th argument, else the environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
