//! A `kcon::share::ShareConsumer` as a process of its own, for tests that kill it: a member of
//! a share group that prints every record it processes (`PARTITION OFFSET DELIVERY_COUNT`, one
//! line each, flushed) and then accepts it (explicit acknowledgement, sent with the next
//! fetch), without end.
//!
//! Usage: `share_member BOOTSTRAP GROUP TOPIC`

use std::io::Write;

use kcon::share::{AcknowledgeType, ShareConsumer};

#[tokio::main]
async fn main() -> Result<(), kcon::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, group, topic] = &args[..] else {
        eprintln!("usage: share_member BOOTSTRAP GROUP TOPIC");
        std::process::exit(2);
    };
    let mut consumer = ShareConsumer::builder()
        .set("bootstrap.servers", bootstrap.as_str())
        .set("group.id", group.as_str())
        .set("fetch.max.wait.ms", "200")
        .set("max.poll.records", "5")
        .set("share.acknowledgement.mode", "explicit")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    loop {
        for r in consumer.recv_batch().await? {
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{} {} {}",
                    r.partition,
                    r.offset,
                    r.delivery_count.unwrap_or(0)
                );
                let _ = out.flush();
            }
            consumer.acknowledge(&r, AcknowledgeType::Accept)?;
        }
    }
}
