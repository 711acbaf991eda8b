//! kcon with its default settings.

use kcon::{Consumer, TopicPartition};

use crate::tally::Tally;
use crate::{BoxError, Workload};

/// Reads the workload with `recv_borrowed` (records read where they lie in the answer) or,
/// when `owned`, with `recv_batch` (a `Record` each), then closes the consumer (leaving the
/// group).
pub async fn run(w: &Workload, owned: bool, tally: &mut Tally) -> Result<(), BoxError> {
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", w.bootstrap.as_str())
        .set("auto.offset.reset", "earliest");
    if let Some(group) = &w.group {
        builder = builder.set("group.id", group.as_str());
    }
    // An experiment's consumer properties (never passed by `run`).
    for (k, v) in crate::experiment_properties() {
        builder = builder.set(&k, v);
    }
    let mut consumer = builder.build()?;
    match &w.group {
        Some(_) => consumer.subscribe([w.topic.as_str()])?,
        None => consumer.assign(
            w.partitions()
                .map(|p| TopicPartition::new(w.topic.as_str(), p)),
        )?,
    }
    while !tally.done() {
        if owned {
            let batch = consumer.recv_batch().await?;
            for r in &batch {
                tally.observe(
                    r.partition,
                    r.offset,
                    r.value.as_ref().map_or(0, |v| v.len()),
                );
            }
        } else {
            let batch = consumer.recv_borrowed().await?;
            for r in &batch {
                tally.observe(r.partition(), r.offset(), r.value().map_or(0, <[u8]>::len));
            }
        }
    }
    consumer.close().await?;
    Ok(())
}

/// An experiment, not a configuration of kcon: `consumers` kcon consumers in one process, each
/// assigned every `consumers`-th partition, read side by side. kcon keeps one Fetch in flight per
/// broker; these keep that many, each on a connection of its own (a broker serves the requests
/// of one connection one at a time), which shows what more fetch concurrency per broker would
/// gain and cost.
pub async fn run_split(w: &Workload, consumers: usize, tally: &mut Tally) -> Result<(), BoxError> {
    if w.group.is_some() {
        return Err("the split experiment reads by assignment only".into());
    }
    let mut all = Vec::new();
    for i in 0..consumers {
        let mut consumer = Consumer::builder()
            .set("bootstrap.servers", w.bootstrap.as_str())
            .set("auto.offset.reset", "earliest")
            .build()?;
        consumer.assign(
            w.partitions()
                .filter(|p| *p as usize % consumers == i)
                .map(|p| TopicPartition::new(w.topic.as_str(), p)),
        )?;
        all.push(consumer);
    }
    while !tally.done() {
        let next = futures::future::select_all(all.iter_mut().map(|c| Box::pin(c.recv_batch())));
        let (batch, _, _) = next.await;
        let batch = batch?;
        for r in &batch {
            tally.observe(
                r.partition,
                r.offset,
                r.value.as_ref().map_or(0, |v| v.len()),
            );
        }
    }
    for c in all {
        c.close().await?;
    }
    Ok(())
}
