//! What a leader assigned from, carried in the `user_data` of its own assignment: the
//! partition counts, and how many partitions the cooperative protocol withheld for the
//! follow-up rebalance.
//!
//! A static leader that restarts gets its old assignment back without assigning
//! (`skip_assignment`, KIP-814), and remembers nothing of what its previous process did.
//! Two things would then go unnoticed:
//!
//! - A topic that grew while it was away: it watches partition counts from the metadata it
//!   has now, so the new partitions would stay unassigned (the coordinator kept an assignment
//!   made before the growth). Counts that differ from the current ones make it rejoin, and
//!   the coordinator rebalances.
//! - A cooperative rebalance it did not finish: partitions moving between members are
//!   withheld from everyone until their owners have revoked them and rejoined (KIP-429). If
//!   the revoking member was this leader, its restart forgot the rejoin, and the withheld
//!   partitions would stay unassigned. A count of withheld partitions above 0 arms the
//!   follow-up check (see `Timer::FollowUp`), as it does for the leader that assigned.
//!
//! The Java client has both gaps. kcon's leader writes the snapshot only when the assignor
//! left `user_data` empty; no other member sees it.
//!
//! The bytes: [`MAGIC`], an `i32` count of topics, then per topic an `i16` name length, the
//! name in UTF-8, and an `i32` partition count; then an `i32` count of partitions withheld.
//! Anything else (another assignor's data, an earlier version, a truncated or corrupt
//! snapshot) reads as no snapshot.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kcon_codec::consumer_protocol::{Reader, put_string};

/// Marks the bytes as kcon's snapshot, version 2.
const MAGIC: &[u8] = b"kcon.assigned-from.2";

/// What a leader assigned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// Partitions per subscribed topic, as the metadata said.
    pub(super) counts: BTreeMap<String, usize>,
    /// Partitions of those topics the assignment gave to no one (cooperative: moving).
    pub(super) withheld: usize,
}

/// The snapshot as `user_data` bytes; `None` if it does not fit the encoding (a topic name
/// over `i16::MAX` bytes, which no subscription can carry).
pub(super) fn encode(counts: &BTreeMap<String, usize>, withheld: usize) -> Option<Bytes> {
    let mut b = BytesMut::with_capacity(
        MAGIC.len() + 8 + counts.keys().map(|t| 6 + t.len()).sum::<usize>(),
    );
    b.put_slice(MAGIC);
    b.put_i32(i32::try_from(counts.len()).ok()?);
    for (topic, n) in counts {
        i16::try_from(topic.len()).ok()?;
        put_string(&mut b, topic);
        b.put_i32(i32::try_from(*n).ok()?);
    }
    b.put_i32(i32::try_from(withheld).ok()?);
    Some(b.freeze())
}

/// The snapshot, if `bytes` are a whole one.
pub(super) fn decode(bytes: &[u8]) -> Option<Snapshot> {
    let body = bytes.strip_prefix(MAGIC)?;
    let mut r = Reader::new(body);
    // Each topic takes at least 6 bytes (an empty name and its count).
    let topics = r.array_len("topics", 6).ok()?;
    let mut counts = BTreeMap::new();
    for _ in 0..topics {
        let name = r.string("topic").ok()?;
        let n = usize::try_from(r.i32("partitions").ok()?).ok()?;
        counts.insert(name, n);
    }
    let withheld = usize::try_from(r.i32("withheld").ok()?).ok()?;
    r.is_at_end().then_some(Snapshot { counts, withheld })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &[(&str, usize)]) -> BTreeMap<String, usize> {
        c.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    #[test]
    fn round_trip() {
        for (c, withheld) in [
            (counts(&[]), 0),
            (counts(&[("t", 4), ("ü-topic", 0), ("u", 1 << 20)]), 3),
        ] {
            let back = decode(&encode(&c, withheld).unwrap());
            assert_eq!(
                back,
                Some(Snapshot {
                    counts: c,
                    withheld
                })
            );
        }
    }

    #[test]
    fn anything_else_is_no_snapshot() {
        let whole = encode(&counts(&[("t", 4), ("u", 2)]), 1).unwrap();
        // Every truncation, and one byte too many.
        for end in 0..whole.len() {
            assert_eq!(decode(&whole[..end]), None, "{end}");
        }
        let mut longer = whole.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        // Another assignor's bytes, a negative or huge topic count, a name not in UTF-8.
        assert_eq!(decode(&[0xff; 4]), None);
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode(&b), None);
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode(&b), None);
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(0xff);
        b.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(decode(&b), None);
        // A negative partition count.
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&(-3i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(decode(&b), None);
        // A negative count of withheld partitions.
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode(&b), None);
    }

    #[test]
    fn a_topic_name_too_long_leaves_the_snapshot_out() {
        let long = "t".repeat(usize::try_from(i16::MAX).unwrap() + 1);
        assert_eq!(encode(&counts(&[(long.as_str(), 1)]), 0), None);
    }
}
