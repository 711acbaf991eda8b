//! rskafka: no consumer groups, so assignment only: a `StreamConsumer` per partition with
//! default settings, merged into one stream.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::select_all;
use rskafka::client::ClientBuilder;
use rskafka::client::consumer::{StartOffset, StreamConsumerBuilder};
use rskafka::client::partition::UnknownTopicHandling;

use crate::tally::Tally;
use crate::{BoxError, Workload};

/// Reads the workload from every partition's stream.
pub async fn run(w: &Workload, tally: &mut Tally) -> Result<(), BoxError> {
    if w.group.is_some() {
        return Err("rskafka has no consumer groups".into());
    }
    let client = ClientBuilder::new(vec![w.bootstrap.clone()])
        .build()
        .await?;
    let mut streams = Vec::new();
    for p in w.partitions() {
        let partition = client
            .partition_client(w.topic.as_str(), p, UnknownTopicHandling::Retry)
            .await?;
        let stream = StreamConsumerBuilder::new(Arc::new(partition), StartOffset::Earliest).build();
        streams.push(stream.map(move |item| (p, item)));
    }
    let mut merged = select_all(streams);
    while !tally.done() {
        let Some((p, item)) = merged.next().await else {
            return Err("every partition stream ended".into());
        };
        let (r, _high_watermark) = item?;
        tally.observe(p, r.offset, r.record.value.as_ref().map_or(0, Vec::len));
    }
    Ok(())
}
