//! A `kcon::Processor` running records side by side (`processing.ordering=key`, 256 in the
//! handler at once) as a process of its own, for tests that kill it: reads TOPIC in GROUP as the
//! static member INSTANCE (a restarted process takes its place at once), each record's handling
//! taking 20 to 80 ms (by its offset, so that records finish out of order). It prints a line when
//! a record's handling starts (`s PARTITION OFFSET KEY SEQUENCE`, the value being
//! `KEY:SEQUENCE`) and one when it ends (`d PARTITION OFFSET`), before the handler returns.
//! Offsets are committed by auto-commit every second (the processor stores each partition's
//! lowest record not done with, the records done above it in the metadata); SIGTERM ends the
//! run and closes the processor.
//!
//! Usage: `concurrent_member BOOTSTRAP TOPIC GROUP INSTANCE`

use std::time::Duration;

use kcon::Processor;
use kcon::deserialize::StringDeserializer;
use kcon_tests::member::line;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, group, instance] = &args[..] else {
        eprintln!("usage: concurrent_member BOOTSTRAP TOPIC GROUP INSTANCE");
        std::process::exit(2);
    };
    let mut consumer = kcon_tests::consumer::builder_at_defaults(bootstrap)
        .group_id(group)
        .set("group.instance.id", instance.as_str())
        .set("auto.commit.interval.ms", "1000")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut processor = Processor::builder(consumer)
        .key(StringDeserializer)
        .value(StringDeserializer)
        .set("processing.ordering", "key")
        .set("processing.max.concurrency", "256")
        .build()?;
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let stop = async move {
        terminate.recv().await;
    };
    let outcome = processor
        .run_concurrently_until(stop, async |r| {
            let (p, o) = (r.record.partition, r.record.offset);
            let seq = r.value.split(':').nth(1).unwrap_or("?");
            line(&format!("s {p} {o} {} {seq}", r.key));
            let ms = 20 + (o.unsigned_abs() * 7919 % 60);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            line(&format!("d {p} {o}"));
            Ok(())
        })
        .await;
    processor.close().await?;
    outcome
}
