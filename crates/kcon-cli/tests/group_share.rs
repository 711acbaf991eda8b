//! `kcon group describe` of a share group (KIP-932) against a scripted broker holding share
//! groups as Apache Kafka 4.1 would (DescribeShareGroupOffsets v0, no lag of its own), which no
//! broker here is; Apache Kafka 4.4's own lag is kcon-tests' `admin_kafka.rs`'s.

mod common;

use common::kcon;
use kcon_tests::share_groups::start;
use serde_json::json;

/// The rows of the table whose header starts with `first`, each split at whitespace.
fn table(text: &str, first: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with(first))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The group `shared`: two members sharing `orders-1`; share-partition start offsets 40 and
/// 10 (the log of `orders-1` starting past it, at 20); `orders-2` assigned without state yet;
/// `orders-3` refused with UNKNOWN_TOPIC_OR_PARTITION.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_group_is_described_in_text_and_json() {
    let broker = start(true).await;
    let b = broker.bootstrap();
    let run = kcon(&["group", "describe", "-b", &b, "shared"]).await.ok();
    let text = &run.stdout;
    assert!(text.contains("state Stable"), "{text}");
    assert!(
        text.contains("group epoch 6, assignment epoch 5, lag at most 90 records"),
        "{text}"
    );
    let rows = |t: &[&[&str]]| -> Vec<Vec<String>> {
        t.iter()
            .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
            .collect()
    };
    assert_eq!(
        table(text, "GROUP"),
        rows(&[
            &["shared", "orders", "0", "40", "100", "<=60", "m-1"],
            &["shared", "orders", "1", "10", "50", "<=30", "m-1,m-2"],
            &["shared", "orders", "2", "-", "7", "-", "m-2"],
            &["shared", "orders", "3", "-", "9", "-", "-"],
        ])
    );
    assert_eq!(
        table(text, "CONSUMER-ID"),
        rows(&[
            &[
                "m-1",
                "/10.0.0.7",
                "kcon-share",
                "6",
                "rack-a",
                "orders",
                "2",
                "orders:0,1"
            ],
            &[
                "m-2",
                "/10.0.0.7",
                "kcon-share",
                "5",
                "rack-a",
                "orders",
                "2",
                "orders:1,2"
            ],
        ])
    );

    let run = kcon(&["group", "describe", "-b", &b, "--format", "json", "shared"])
        .await
        .ok();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    let g = &lines[0];
    assert_eq!(
        (&g["protocol_type"], &g["lag"], &g["share_group"]),
        (
            &json!("share"),
            &json!(90),
            &json!({"assignment_epoch": 5, "group_epoch": 6})
        )
    );
    assert_eq!(g["lag_upper_bound"], json!(true), "the broker gave no lag");
    let partitions = g["partitions"].as_array().expect("partitions");
    let by_partition: Vec<_> = partitions
        .iter()
        .map(|p| {
            (
                p["partition"].clone(),
                p["start_offset"].clone(),
                p["log_start_offset"].clone(),
                p["lag"].clone(),
                p["member_ids"].clone(),
            )
        })
        .collect();
    assert_eq!(
        by_partition,
        [
            (json!(0), json!(40), json!(0), json!(60), json!(["m-1"])),
            (
                json!(1),
                json!(10),
                json!(20),
                json!(30),
                json!(["m-1", "m-2"])
            ),
            (json!(2), json!(null), json!(0), json!(null), json!(["m-2"])),
            (json!(3), json!(null), json!(0), json!(null), json!([])),
        ]
    );
    let error = partitions[3]["error"].as_str().expect("orders-3's error");
    assert!(
        error.contains("DescribeShareGroupOffsets") && error.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{error}"
    );
}

/// A coordinator without ShareGroupDescribe, listing the group as a share group: exit status
/// 1 and an error naming the API.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_without_share_group_describe_is_named() {
    let broker = start(false).await;
    let run = kcon(&["group", "describe", "-b", &broker.bootstrap(), "shared"]).await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.contains("ShareGroupDescribe"), "{run:?}");
}
