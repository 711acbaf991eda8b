//! read_committed filtering over batches built with kcon-codec's `RecordBatchBuilder`.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kcon_codec::records::{Batch, DecodeOptions, RecordBatchBuilder, RecordBatches};
use proptest::prelude::*;

use super::*;

/// One batch of a partition's log.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// `n` records of a producer (-1: no producer), transactional or not.
    Data {
        producer: i64,
        transactional: bool,
        n: i32,
    },
    /// The producer's commit or abort marker.
    Marker { producer: i64, commit: bool },
}

/// The log's batches, each at the next offset.
fn log(entries: &[Entry]) -> Vec<Batch> {
    let mut buf = BytesMut::new();
    let mut offset = 0;
    for e in entries {
        let bytes = match *e {
            Entry::Data {
                producer,
                transactional,
                n,
            } => {
                let mut b = RecordBatchBuilder::new(offset)
                    .producer(producer, 0, if producer < 0 { -1 } else { 0 })
                    .transactional(transactional);
                for i in 0..n {
                    b.record(1_000 + i64::from(i), None, Some(b"v"));
                }
                offset += i64::from(n);
                b.build()
            }
            Entry::Marker { producer, commit } => {
                offset += 1;
                RecordBatchBuilder::end_transaction_marker(offset - 1, producer, 0, commit, 7, 1)
                    .build()
            }
        };
        buf.extend_from_slice(&bytes.expect("the builder encodes"));
    }
    RecordBatches::new(Bytes::from(buf), DecodeOptions::default())
        .collect::<Result<_, _>>()
        .expect("the builder's batches decode")
}

fn data(producer: i64, n: i32) -> Entry {
    Entry::Data {
        producer,
        transactional: true,
        n,
    }
}

fn plain(n: i32) -> Entry {
    Entry::Data {
        producer: -1,
        transactional: false,
        n,
    }
}

fn commit(producer: i64) -> Entry {
    Entry::Marker {
        producer,
        commit: true,
    }
}

fn abort(producer: i64) -> Entry {
    Entry::Marker {
        producer,
        commit: false,
    }
}

fn aborted(list: &[(i64, i64)]) -> Vec<AbortedTransaction> {
    list.iter()
        .map(|&(producer_id, first_offset)| AbortedTransaction {
            producer_id,
            first_offset,
        })
        .collect()
}

fn offsets(c: &Committed<'_>) -> Vec<i64> {
    c.records.iter().map(|r| r.offset()).collect()
}

#[test]
fn interleaved_producers() {
    // 0-1 p1, 2 p2, 3 p1, 4 p2 commit, 5 p1 abort, 6 plain.
    let batches = log(&[
        data(1, 2),
        data(2, 1),
        data(1, 1),
        commit(2),
        abort(1),
        plain(1),
    ]);
    let list = aborted(&[(1, 0)]);
    let c = committed_records(&batches, 0, Some(&list), -1).unwrap();
    assert_eq!(offsets(&c), [2, 6]);
    assert_eq!(c.position, 7);
}

#[test]
fn an_abort_spanning_batches_then_a_committed_transaction_of_the_same_producer() {
    // 0-1, 2-3 p1 (aborted at 4); 5 p1 (committed at 6).
    let batches = log(&[data(1, 2), data(1, 2), abort(1), data(1, 1), commit(1)]);
    let list = aborted(&[(1, 0)]);
    let c = committed_records(&batches, 0, Some(&list), -1).unwrap();
    assert_eq!(offsets(&c), [5]);
    assert_eq!(c.position, 7, "past the last control batch");
}

#[test]
fn a_control_batch_last_moves_the_position_past_it() {
    let batches = log(&[data(3, 1), commit(3)]);
    let c = committed_records(&batches, 0, Some(&[]), -1).unwrap();
    assert_eq!(offsets(&c), [0]);
    assert_eq!(c.position, 2);

    // Only a marker: nothing to deliver, the position still moves.
    let batches = log(&[data(3, 1), abort(3)]);
    let c = committed_records(&batches[1..], 1, Some(&aborted(&[(3, 0)])), -1).unwrap();
    assert!(c.records.is_empty());
    assert_eq!(c.position, 2);
}

#[test]
fn stops_at_the_last_stable_offset() {
    // 0 p1 committed at 1; 2 p2 still open; 3 plain.
    let batches = log(&[data(1, 1), commit(1), data(2, 1), plain(1)]);
    let c = committed_records(&batches, 0, Some(&[]), 2).unwrap();
    assert_eq!(offsets(&c), [0]);
    assert_eq!(c.position, 2);
    let mut f = TransactionFilter::read_committed(0, [], 2);
    let verdicts: Vec<_> = batches.iter().map(|b| f.batch(b).unwrap()).collect();
    assert_eq!(verdicts[1], BatchVerdict::Control);
    assert_eq!(verdicts[2], BatchVerdict::Unstable);
}

#[test]
fn a_batch_straddling_the_lso_is_cut_there() {
    let batches = log(&[plain(5)]);
    let c = committed_records(&batches, 1, Some(&[]), 3).unwrap();
    assert_eq!(offsets(&c), [1, 2]);
    assert_eq!(c.position, 3);
}

#[test]
fn read_uncommitted_keeps_aborted_records_and_drops_markers() {
    let batches = log(&[data(1, 2), abort(1), plain(1)]);
    let c = committed_records(&batches, 0, None, -1).unwrap();
    assert_eq!(offsets(&c), [0, 1, 3]);
    assert_eq!(c.position, 4);
}

#[test]
fn a_fetch_from_inside_a_batch_skips_its_earlier_records() {
    let batches = log(&[plain(4), plain(2)]);
    let c = committed_records(&batches, 2, Some(&[]), -1).unwrap();
    assert_eq!(offsets(&c), [2, 3, 4, 5]);
    assert_eq!(c.position, 6);
}

// ---------------------------------------------------------------------------------------
// Against a reference model: a record is visible iff its transaction committed (or it has
// none), it is at or past the fetch offset, and before the first open transaction.

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => (0i64..3, 1i32..4).prop_map(|(p, n)| data(p, n)),
        1 => (1i32..3).prop_map(plain),
        2 => (0i64..3, any::<bool>()).prop_map(|(producer, commit)| Entry::Marker { producer, commit }),
    ]
}

/// What a broker would write and answer: markers only for open transactions.
struct Model {
    entries: Vec<Entry>,
    /// Offset → whether a consumer may see it (data records only).
    visible: BTreeMap<i64, bool>,
    /// (producer, first offset, marker offset) of each aborted transaction.
    aborted: Vec<(i64, i64, i64)>,
    lso: Option<i64>,
    end: i64,
}

fn model(raw: &[Entry]) -> Model {
    let mut entries = Vec::new();
    let mut open: BTreeMap<i64, (i64, Vec<i64>)> = BTreeMap::new();
    let mut visible = BTreeMap::new();
    let mut aborted = Vec::new();
    let mut offset = 0;
    for e in raw {
        match *e {
            Entry::Data {
                producer,
                transactional,
                n,
            } => {
                for o in offset..offset + i64::from(n) {
                    if transactional {
                        open.entry(producer).or_insert((o, Vec::new())).1.push(o);
                    } else {
                        visible.insert(o, true);
                    }
                }
                offset += i64::from(n);
                entries.push(*e);
            }
            Entry::Marker { producer, commit } => {
                let Some((first, records)) = open.remove(&producer) else {
                    continue;
                };
                for o in records {
                    visible.insert(o, commit);
                }
                if !commit {
                    aborted.push((producer, first, offset));
                }
                offset += 1;
                entries.push(*e);
            }
        }
    }
    let lso = open.values().map(|(first, _)| *first).min();
    for (_, records) in open.values() {
        for o in records {
            visible.insert(*o, false);
        }
    }
    Model {
        entries,
        visible,
        aborted,
        lso,
        end: offset,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn read_committed_matches_the_model(
        raw in prop::collection::vec(entry(), 1..25),
        fetch_at in 0.0f64..1.0,
    ) {
        let m = model(&raw);
        let batches = log(&m.entries);
        let fetch_offset = (m.end as f64 * fetch_at) as i64;
        // The broker answers from the batch holding the fetch offset, with the aborted
        // transactions that end at or after it (Kafka's `collectAbortedTransactions`).
        let first = batches
            .iter()
            .position(|b| b.next_offset() > fetch_offset)
            .unwrap_or(batches.len());
        let list: Vec<_> = m
            .aborted
            .iter()
            .filter(|(_, _, last)| *last >= fetch_offset)
            .map(|&(producer_id, first_offset, _)| AbortedTransaction { producer_id, first_offset })
            .collect();
        let lso = m.lso.unwrap_or(m.end);
        let c = committed_records(&batches[first..], fetch_offset, Some(&list), lso).unwrap();

        let expected: Vec<i64> = m
            .visible
            .iter()
            .filter(|(o, v)| **v && **o >= fetch_offset && **o < lso)
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(offsets(&c), expected.clone());
        prop_assert!(c.position >= fetch_offset.min(lso));
        prop_assert!(c.position <= lso.max(fetch_offset));
        if let Some(last) = expected.last() {
            prop_assert!(c.position > *last);
        }
        if m.lso.is_none() && first < batches.len() {
            prop_assert_eq!(c.position, m.end, "past every batch, control ones included");
        }
    }
}
