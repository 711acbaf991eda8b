//! An exactly-once pipeline (`kcon::exactly_once::ExactlyOnce`) as a process of its own, for
//! tests that kill it: reads INPUT in GROUP, writes `out:<input value>` to OUTPUT with the
//! input's `partition:offset` as key, one transaction per batch, as transactional id TXN_ID.
//! Prints a JSON line per batch (`{"committed":N,"partition":P}` or `{"aborted":P}`).
//!
//! Usage: `eos_member BOOTSTRAP INPUT OUTPUT GROUP TXN_ID [BATCH_MS]`: each batch's transform
//! writes its outputs through the producer itself, then takes BATCH_MS (default 0) before the
//! commit, so that a kill often lands in a transaction with records written.

use std::io::Write;

use kcon::exactly_once::{Batch, ExactlyOnce};
use kcon_produce::{Producer, ProducerRecord};

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bootstrap, input, output, group, txn_id, batch_ms) = match &args[..] {
        [b, i, o, g, t] => (b, i, o, g, t, 0),
        [b, i, o, g, t, ms] => (b, i, o, g, t, ms.parse::<u64>()?),
        _ => {
            eprintln!("usage: eos_member BOOTSTRAP INPUT OUTPUT GROUP TXN_ID [BATCH_MS]");
            std::process::exit(2);
        }
    };
    let pause = std::time::Duration::from_millis(batch_ms);
    let mut consumer = kcon_tests::consumer::group_builder_at_defaults(bootstrap, group, "range")
        .enable_auto_commit(false)
        .set("isolation.level", "read_committed")
        .set("max.poll.records", "10")
        .build()?;
    consumer.subscribe([input.as_str()])?;
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", txn_id.as_str())
        .build()?;
    let writer = producer.clone();
    let mut pipeline = ExactlyOnce::new(consumer, producer).await?;
    loop {
        let output = output.clone();
        let writer = writer.clone();
        let batch = pipeline
            .process_batch(|records| async move {
                let mut deliveries = Vec::new();
                for r in records {
                    let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    let out = ProducerRecord::new(output.clone(), format!("out:{value}"))
                        .with_key(format!("{}:{}", r.partition, r.offset))
                        .with_partition(0);
                    deliveries.push(writer.send(out).await?);
                }
                for d in deliveries {
                    d.await?;
                }
                tokio::time::sleep(pause).await;
                Ok(Vec::new())
            })
            .await?;
        match batch {
            Batch::Committed {
                partition, inputs, ..
            } => line(&format!(
                r#"{{"committed":{inputs},"partition":{}}}"#,
                partition.partition
            )),
            Batch::Aborted { partition, .. } => {
                line(&format!(r#"{{"aborted":{}}}"#, partition.partition))
            }
            _ => {}
        }
    }
}
