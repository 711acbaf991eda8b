//! A rebalance listener that commits before partitions go (auto-commit off): the next owner of
//! a partition starts right after the last record this consumer processed.
//!
//! ```text
//! cargo run -p kcon --example rebalance_listener -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `events`, `commit-on-revoke`. Start two of them in the same group to see
//! partitions move; stop one with Ctrl-C.

#![allow(clippy::print_stdout, reason = "an example shows what it consumes")]

use kcon::{Consumer, ListenerFuture, RebalanceContext, RebalanceListener, TopicPartition};

/// Commits what was processed when partitions are revoked; says what happens.
struct CommitOnRevoke;

impl RebalanceListener for CommitOnRevoke {
    fn on_assigned<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        // Newly assigned partitions start at their committed offsets (or by
        // auto.offset.reset); `ctx.seek` could start them elsewhere.
        println!("assigned {}", names(partitions));
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            // The generation is still valid here: this commit counts. It covers every record
            // handed out before the rebalance (enable.auto.offset.store stores them when the
            // application asks for more).
            match ctx.commit().await {
                Ok(()) => println!("committed, then gave up {}", names(partitions)),
                Err(e) => println!("giving up {} without a commit: {e}", names(partitions)),
            }
        })
    }

    fn on_lost<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        // Another member may own them already: committing now could overwrite its progress.
        println!("lost {}", names(partitions));
        Box::pin(async {})
    }
}

fn names(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
    names.join(", ")
}

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "events");
    let group = setting(3, "KCON_GROUP", "commit-on-revoke");

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        .partition_assignment_strategy("cooperative-sticky")
        .enable_auto_commit(false)
        .rebalance_listener(CommitOnRevoke)
        .build()?;
    consumer.subscribe([topic])?;

    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let mut since_commit = 0u32;
    loop {
        let record = tokio::select! {
            record = consumer.recv() => record?,
            _ = &mut stop => break,
        };
        println!("{}-{}@{}", record.topic, record.partition, record.offset);
        since_commit += 1;
        // Between rebalances, commit now and then; the listener covers the rest.
        if since_commit == 100 {
            consumer.commit().await?;
            since_commit = 0;
        }
    }
    // The listener is told the partitions are revoked on close too: it commits them.
    consumer.close().await
}

/// Command-line argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
