//! `kcon::exactly_once::ExactlyOnce` as a process of its own (`eos_member`) on Tansu, killed
//! with SIGKILL at random points and started again under the same transactional id, or joined
//! by a second member mid-stream: the output holds every input record exactly once, and the
//! group's committed offsets end at the input's end.
//!
//! Tansu lists no aborted transactions in its Fetch answers (DESIGN.md, "The brokers"), so
//! every client here goes through `kcon_tests::txn_index`, a proxy that adds them; the
//! output is then read by kcon's and librdkafka's read_committed consumers, and also raw
//! (read_uncommitted, control batches included) and judged here by its markers, as a broker's
//! aborted-transaction index does: a transactional batch counts once a COMMIT marker of its
//! producer follows it; an ABORT marker, or a later epoch of the same producer starting before
//! any marker, drops it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::{FetchRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{ControlRecordType, DecodeOptions, RecordBatches};
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::create_topics;
use kcon_tests::offsets::fetch_high_watermark;
use kcon_tests::pool::config;
use kcon_tests::txn_index::{AbortedIndex, tansu_with_aborted_index};
use tokio::process::{Child, Command};

const INPUTS: usize = 300;
const KILLS: usize = 3;

fn member(b: &str, input: &str, output: &str, group: &str, txn: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eos_member"))
        .args([b, input, output, group, txn, "300"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start eos_member")
}

/// The group's committed offsets of `input`'s partitions 0 and 1.
async fn committed(pool: &Pool, group: &str, input: &str) -> Vec<Option<i64>> {
    let groups = [group.to_owned()];
    let answer = kcon_admin::committed_offsets_of_groups(pool, &groups, None, false)
        .await
        .expect("offsets");
    let Some(Ok(offsets)) = answer.get(group) else {
        return vec![None, None];
    };
    (0..2)
        .map(|p| {
            offsets
                .get(&kcon::TopicPartition::new(input, p))
                .and_then(|o| o.committed.as_ref())
                .map(|o| o.offset)
        })
        .collect()
}

/// A record's offset, key and value.
type Keyed = (i64, (String, String));

/// What a read_committed reader would see of `topic`-0: the (key, value) of each record of a
/// committed transaction, in log order; how many transactional records were dropped; and the
/// producer ids whose transactions committed records.
async fn committed_records(
    pool: &Pool,
    topic: &str,
) -> (Vec<(String, String)>, usize, BTreeSet<i64>) {
    let end = fetch_high_watermark(pool, topic, 0).await;
    let meta = pool
        .send(
            BrokerTarget::Any,
            &kcon_tests::pool::metadata_request(&[topic]),
        )
        .await
        .expect("metadata");
    let topic_id = meta.topics[0].topic_id;
    let leader = meta.topics[0].partitions[0].leader_id.0;
    // Per producer id: the epoch of its open transaction and its records, each with its offset.
    // Committed records are kept in log order, not commit order: two members' transactions
    // interleave in the output while one joins mid-stream, and a read_committed reader (the
    // Java client's, librdkafka's, kcon's) delivers the records of committed transactions in
    // offset order, whichever transaction committed first.
    let mut open: BTreeMap<i64, (i16, Vec<Keyed>)> = BTreeMap::new();
    let mut seen = Vec::new();
    let mut dropped = 0;
    let mut writers = BTreeSet::new();
    let mut offset = 0;
    while offset < end {
        let request = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_max_bytes(4 << 20)
            .with_isolation_level(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20),
                    ]),
            ]);
        let answer = pool
            .send(BrokerTarget::Broker(leader), &request)
            .await
            .expect("fetch");
        let p = &answer.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        let bytes = p.records.clone().unwrap_or_default();
        let mut progressed = false;
        for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
            let batch = batch.expect("a batch that decodes");
            offset = batch.next_offset();
            progressed = true;
            let pid = batch.producer_id();
            if batch.is_control() {
                let marker = batch.records().next().expect("a marker").expect("decodes");
                let control = marker
                    .control()
                    .expect("decodes")
                    .expect("a control record");
                let (_, records) = open.remove(&pid).unwrap_or_default();
                match control.kind {
                    ControlRecordType::Commit => {
                        if !records.is_empty() {
                            writers.insert(pid);
                        }
                        seen.extend(records);
                    }
                    ControlRecordType::Abort => dropped += records.len(),
                    ControlRecordType::Other(_) => {}
                }
                continue;
            }
            let records: Vec<Keyed> = batch
                .records()
                .map(|r| {
                    let r = r.expect("a record that decodes");
                    let text = |b: Option<&[u8]>| {
                        String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
                    };
                    (r.offset(), (text(r.key()), text(r.value())))
                })
                .collect();
            if !batch.is_transactional() {
                seen.extend(records);
                continue;
            }
            let epoch = batch.producer_epoch();
            let entry = open.entry(pid).or_insert((epoch, Vec::new()));
            if entry.0 < epoch {
                // A new epoch began a transaction: the old one ended without a commit.
                dropped += entry.1.len();
                *entry = (epoch, Vec::new());
            }
            entry.1.extend(records);
        }
        assert!(
            progressed,
            "no batch at offset {offset} of {topic} (end {end})"
        );
    }
    dropped += open.values().map(|(_, r)| r.len()).sum::<usize>();
    seen.sort_by_key(|(offset, _)| *offset);
    let seen = seen.into_iter().map(|(_, record)| record).collect();
    (seen, dropped, writers)
}

/// The values of `topic`-0 a kcon read_committed consumer reads: `n`, and nothing after.
async fn read_committed_by_kcon(b: &str, topic: &str, n: usize) -> Vec<String> {
    let mut consumer: kcon::Consumer = kcon_tests::consumer::builder(b)
        .set("isolation.level", "read_committed")
        .build()
        .unwrap();
    consumer
        .assign([kcon::TopicPartition::new(topic, 0)])
        .unwrap();
    let records = kcon_tests::consumer::recv_n(&mut consumer, n, Duration::from_secs(30)).await;
    kcon_tests::consumer::expect_no_record(&mut consumer, Duration::from_secs(1)).await;
    consumer.close().await.unwrap();
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// A Tansu with `input` (2 partitions) holding `n` records `v{i}` and an empty `output`.
struct Setup {
    _tansu: Tansu,
    /// Every client goes through it: read_committed readers get the aborted transactions.
    _index: AbortedIndex,
    b: String,
    pool: Pool,
    input: String,
    output: String,
    group: String,
    /// Each input record's `partition:offset` and the output value it must become.
    inputs: BTreeMap<String, String>,
    /// The input partitions' ends.
    ends: [i64; 2],
}

impl Setup {
    async fn new(n: usize) -> Setup {
        let (tansu, index) = tansu_with_aborted_index().await;
        let b = index.bootstrap();
        let input = unique_name("eos-in");
        let output = unique_name("eos-out");
        let group = unique_name("eos-group");
        let pool = Pool::new(config(&b)).unwrap();
        create_topics(&pool, BrokerTarget::Any, &[(&input, 2), (&output, 1)]).await;
        let plain = Producer::builder().bootstrap_servers(&b).build().unwrap();
        let mut deliveries = Vec::new();
        for i in 0..n {
            let record =
                ProducerRecord::new(input.as_str(), format!("v{i}")).with_partition((i % 2) as i32);
            deliveries.push(plain.send(record).await.unwrap());
        }
        let mut inputs = BTreeMap::new();
        for (i, d) in deliveries.into_iter().enumerate() {
            let d = d.await.unwrap();
            inputs.insert(
                format!("{}:{}", d.partition, d.offset.unwrap()),
                format!("out:v{i}"),
            );
        }
        plain.close().await;
        Setup {
            _tansu: tansu,
            _index: index,
            b,
            pool,
            input,
            output,
            group,
            inputs,
            ends: [n.div_ceil(2) as i64, (n / 2) as i64],
        }
    }

    fn member(&self, txn: &str) -> Child {
        member(&self.b, &self.input, &self.output, &self.group, txn)
    }

    async fn committed(&self) -> Vec<Option<i64>> {
        committed(&self.pool, &self.group, &self.input).await
    }

    /// Waits until the group's offsets reach the input's end.
    async fn wait_for_the_end(&self) {
        let started = Instant::now();
        loop {
            let now = self.committed().await;
            if now == [Some(self.ends[0]), Some(self.ends[1])] {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the group's offsets stayed at {now:?}, short of {:?}",
                self.ends
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks that the output holds every input record exactly once; returns the producer
    /// ids that committed records.
    async fn assert_every_input_once(&self) -> BTreeSet<i64> {
        let (seen, dropped, writers) = committed_records(&self.pool, &self.output).await;
        eprintln!(
            "{} records committed, {dropped} of aborted or open transactions",
            seen.len()
        );
        let mut once = BTreeSet::new();
        for (key, value) in &seen {
            assert!(once.insert(key.clone()), "input {key} written twice");
            assert_eq!(self.inputs.get(key), Some(value), "input {key}");
        }
        assert_eq!(once.len(), self.inputs.len(), "every input once");
        // What read_committed readers of both clients see, given the aborted transactions.
        let values: Vec<String> = seen.into_iter().map(|(_, v)| v).collect();
        let by_kcon = read_committed_by_kcon(&self.b, &self.output, values.len()).await;
        assert_eq!(by_kcon, values, "kcon's read_committed reader");
        let by_librdkafka = kcon_tests::peers::librdkafka_reads(
            &self.b,
            &self.output,
            "read_committed",
            values.len(),
        );
        assert_eq!(by_librdkafka, values, "librdkafka's read_committed reader");
        writers
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_killed_at_random_points_writes_every_input_once() {
    let setup = Setup::new(INPUTS).await;
    let txn = unique_name("eos-tx");
    // Killed at random points: a seed from the clock, printed so that a failure can be rerun.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill seed {seed}");
    let mut rng = seed;
    for round in 0..KILLS {
        let mut child = setup.member(&txn);
        // Joining Tansu's group takes about 3 s (session.timeout.ms / 2), more while the
        // killed member's session runs out; a batch's transaction stays open 300 ms after
        // its outputs are written: kills land from before the first batch to well into the
        // stream, often with a transaction open.
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(3000 + (rng >> 33) % 8000);
        tokio::time::sleep(after).await;
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("the member ends");
        eprintln!(
            "round {round}: killed after {after:?}, committed {:?}",
            setup.committed().await
        );
    }
    // The last member runs until the group's offsets reach the input's end.
    let mut child = setup.member(&txn);
    setup.wait_for_the_end().await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("the member ends");
    setup.assert_every_input_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_loses_and_doubles_nothing() {
    // Twice the records, so that the first member is still busy when the second joins.
    let setup = Setup::new(2 * INPUTS).await;
    let mut first = setup.member(&unique_name("eos-tx-a"));
    // The first member joins (about 3 s) and has committed some batches.
    let started = Instant::now();
    while setup.committed().await.iter().all(Option::is_none) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut second = setup.member(&unique_name("eos-tx-b"));
    setup.wait_for_the_end().await;
    for child in [&mut first, &mut second] {
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("the member ends");
    }
    let writers = setup.assert_every_input_once().await;
    assert_eq!(
        writers.len(),
        2,
        "both members committed batches: {writers:?}"
    );
}
