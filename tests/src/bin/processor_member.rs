//! A `kcon::Processor` as a process of its own, for tests that kill it: reads JSON orders of a
//! topic in a group, refuses poison ones for good (dead-lettered), and prints a JSON line on
//! stdout for every record processed (`{"processed":OFFSET,"partition":P}`) and every dead
//! letter acknowledged (`{"dead_lettered":OFFSET,"partition":P}`). Nothing is committed but
//! at close (SIGTERM): auto-commit's interval is a minute.
//!
//! Usage: `processor_member BOOTSTRAP TOPIC GROUP DEAD_LETTER_TOPIC`

use kcon::deserialize::{JsonDeserializer, StringDeserializer};
use kcon::{Failure, FailureInfo, PolicyHooks, Processor, Record};
use kcon_tests::member::line;
use kcon_tests::policy::Order;
use tokio::signal::unix::{SignalKind, signal};

struct Print;

impl PolicyHooks for Print {
    fn on_dead_letter(&self, record: &Record, _failure: &FailureInfo) {
        line(&format!(
            r#"{{"dead_lettered":{},"partition":{}}}"#,
            record.offset, record.partition
        ));
    }
}

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, group, dlq] = &args[..] else {
        eprintln!("usage: processor_member BOOTSTRAP TOPIC GROUP DEAD_LETTER_TOPIC");
        std::process::exit(2);
    };
    let mut consumer = kcon_tests::consumer::builder_at_defaults(bootstrap)
        .group_id(group)
        .set("auto.commit.interval.ms", "60000")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut processor = Processor::builder(consumer)
        .key(StringDeserializer)
        .value(JsonDeserializer::<Order>::new())
        .hooks(Print)
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", dlq.as_str())
        .build()?;
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let stop = async move {
        terminate.recv().await;
    };
    let outcome = processor
        .run_until(stop, async move |r| {
            if r.value.poison {
                return Err(Failure::permanent("a poison order"));
            }
            line(&format!(
                r#"{{"processed":{},"partition":{}}}"#,
                r.record.offset, r.record.partition
            ));
            Ok(())
        })
        .await;
    processor.close().await?;
    outcome
}
