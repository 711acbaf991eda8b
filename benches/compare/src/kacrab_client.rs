//! kacrab: default settings (its `consumer` feature only: plaintext, every codec).

use std::time::Duration;

use kacrab::common::TopicPartition;
use kacrab::consumer::Consumer;

use crate::tally::Tally;
use crate::{BoxError, Workload};

/// Reads the workload with `poll`, then closes the consumer (leaving the group).
pub async fn run(w: &Workload, tally: &mut Tally) -> Result<(), BoxError> {
    let mut config = vec![
        ("bootstrap.servers", w.bootstrap.clone()),
        ("auto.offset.reset", "earliest".to_owned()),
    ];
    if let Some(group) = &w.group {
        config.push(("group.id", group.clone()));
    }
    let mut consumer = Consumer::from_map(config).await?;
    match &w.group {
        Some(_) => consumer.subscribe([w.topic.as_str()])?,
        None => consumer.assign(
            w.partitions()
                .map(|p| TopicPartition::new(w.topic.as_str(), p)),
        )?,
    }
    while !tally.done() {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        for r in records.iter() {
            tally.observe(
                r.partition,
                r.offset,
                r.value.as_ref().map_or(0, |v| v.len()),
            );
        }
    }
    consumer.close().await;
    Ok(())
}
