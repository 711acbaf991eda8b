//! An exactly-once processor (`kcon::Processor` built with `exactly_once`) as a process of its
//! own, for tests that kill it: reads INPUT in GROUP, writes `out:<input value>` to OUTPUT with
//! the input's `partition:offset` as key, in the processor's transactions, as transactional id
//! TXN_ID. Each run of the processor ends once it has handled a batch (at most ten records of
//! one partition) and committed or aborted its transaction; a JSON line per partition of the
//! run's records tells what became of them (`{"committed":N,"partition":P}` or
//! `{"aborted":P}`).
//!
//! Usage: `eos_member BOOTSTRAP INPUT OUTPUT GROUP TXN_ID [BATCH_MS]`: each record's handling
//! takes a tenth of BATCH_MS (default 0) before its output is sent, so that a batch of ten holds
//! its transaction open about BATCH_MS with outputs written, and a kill often lands in a
//! transaction with records written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kcon::Processor;
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::member::line;
use kcon_tests::policy::after_a_batch;

/// Records of a batch: at most this many, and a tenth of BATCH_MS each.
const BATCH: u32 = 10;

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
    let pause = std::time::Duration::from_millis(batch_ms) / BATCH;
    let mut consumer = kcon_tests::consumer::group_builder_at_defaults(bootstrap, group, "range")
        .enable_auto_commit(false)
        .set("isolation.level", "read_committed")
        .set("max.poll.records", BATCH.to_string())
        .build()?;
    consumer.subscribe([input.as_str()])?;
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", txn_id.as_str())
        .build()?;
    let mut processor = Processor::builder(consumer)
        .exactly_once(producer)
        .build()?;
    let sink = processor.sink()?;
    let handled = Arc::new(AtomicUsize::new(0));
    // The records each run handled, per partition.
    let partitions = Arc::new(Mutex::new(BTreeMap::<i32, usize>::new()));
    loop {
        let before = processor.transactions().unwrap_or_default();
        let (sink, output) = (sink.clone(), output.clone());
        let (count, seen) = (handled.clone(), partitions.clone());
        processor
            .run_until(after_a_batch(handled.clone()), async move |r| {
                count.fetch_add(1, Ordering::SeqCst);
                *seen.lock().unwrap().entry(r.record.partition).or_default() += 1;
                tokio::time::sleep(pause).await;
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                let out = ProducerRecord::new(output.clone(), format!("out:{value}"))
                    .with_key(format!("{}:{}", r.record.partition, r.record.offset))
                    .with_partition(0);
                sink.send(out);
                Ok(())
            })
            .await?;
        let after = processor.transactions().unwrap_or_default();
        let run = std::mem::take(&mut *partitions.lock().unwrap());
        for (partition, inputs) in run {
            if after.aborted > before.aborted {
                line(&format!(r#"{{"aborted":{partition}}}"#));
            }
            if after.committed > before.committed {
                line(&format!(
                    r#"{{"committed":{inputs},"partition":{partition}}}"#
                ));
            }
        }
    }
}
