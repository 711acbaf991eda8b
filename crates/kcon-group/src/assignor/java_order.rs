//! The orders the Java client's assignors happen to use, reproduced so that kcon as a leader
//! hands out what a Java leader would for the same JoinGroup answer.
//!
//! Java sorts member ids with `String.compareTo` (UTF-16 code units), and where it walks a
//! `HashMap` or `HashSet` (the leader's member map, the sticky assignor's movement sets) the
//! order is its bucket order: `(hash ^ hash >>> 16) & (capacity - 1)`, then insertion order
//! within a bucket, with the table doubling past 3/4 full (and, below 64 buckets, when a
//! bucket reaches 9 entries instead of becoming a tree). Only large buckets turned into trees
//! (9+ colliding keys in a table of 64 or more) are not reproduced. All of it is a pure
//! function of the keys and their insertion order, so it stays deterministic.

use std::cmp::Ordering;

/// Java's `String.compareTo`: by UTF-16 code units. It differs from Rust's byte order only
/// when characters above U+FFFF meet characters in U+E000..=U+FFFF.
pub(super) fn java_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `String.hashCode`.
pub(super) fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Java's `TopicPartition.hashCode`.
pub(super) fn java_topic_partition_hash(topic: &str, partition: i32) -> i32 {
    31i32
        .wrapping_mul(31i32.wrapping_add(partition))
        .wrapping_add(java_string_hash(topic))
}

/// The keys of a Java `HashMap`/`HashSet` built by `new HashMap<>()` and these inserts and
/// removals, in its iteration order.
#[derive(Debug, Clone)]
pub(super) struct JavaHashOrder<K> {
    capacity: usize,
    /// Keys with their hashes, in insertion order.
    entries: Vec<(K, i32)>,
    /// Entries per bucket at the current capacity.
    bucket_len: Vec<usize>,
}

impl<K: Copy + PartialEq> JavaHashOrder<K> {
    pub(super) fn new() -> Self {
        JavaHashOrder {
            capacity: 16,
            entries: Vec::new(),
            bucket_len: vec![0; 16],
        }
    }

    fn bucket(hash: i32, capacity: usize) -> usize {
        let h = hash as u32;
        (h ^ (h >> 16)) as usize & (capacity - 1)
    }

    fn grow(&mut self) {
        self.capacity *= 2;
        self.bucket_len = vec![0; self.capacity];
        for e in &self.entries {
            self.bucket_len[Self::bucket(e.1, self.capacity)] += 1;
        }
    }

    /// Adds `key` (not already present) with Java hash `hash`.
    pub(super) fn insert(&mut self, key: K, hash: i32) {
        let bucket = Self::bucket(hash, self.capacity);
        let in_bucket = self.bucket_len[bucket];
        self.entries.push((key, hash));
        self.bucket_len[bucket] += 1;
        // `HashMap.putVal`: a ninth entry in one bucket makes `treeifyBin` resize a small table.
        if in_bucket >= 8 && self.capacity < 64 {
            self.grow();
        }
        if self.entries.len() > self.capacity / 4 * 3 {
            self.grow();
        }
    }

    /// Removes `key` (tables never shrink).
    pub(super) fn remove(&mut self, key: K) {
        if let Some(i) = self.entries.iter().position(|e| e.0 == key) {
            let (_, hash) = self.entries.remove(i);
            self.bucket_len[Self::bucket(hash, self.capacity)] -= 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first key in iteration order.
    pub(super) fn first(&self) -> Option<K> {
        self.entries
            .iter()
            .enumerate()
            .min_by_key(|(i, e)| (Self::bucket(e.1, self.capacity), *i))
            .map(|(_, e)| e.0)
    }

    /// All keys in iteration order.
    pub(super) fn ordered(&self) -> Vec<K> {
        let mut keyed: Vec<(usize, usize, K)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (Self::bucket(e.1, self.capacity), i, e.0))
            .collect();
        keyed.sort_by_key(|k| (k.0, k.1));
        keyed.into_iter().map(|k| k.2).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_hashes_match_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        // "consumer1".hashCode() == -421004549 in Java.
        assert_eq!(java_string_hash("consumer1"), 0xe6e7_fafb_u32 as i32);
        // Characters above U+FFFF hash as two UTF-16 units.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_topic_partition_hash("t", 0), 31 * 31 + 116);
    }

    #[test]
    fn hash_map_order_is_bucket_then_insertion_order() {
        // Java iterates a HashMap of consumer1..consumer4 as consumer4, 3, 2, 1: the high
        // half of the hash flips the low bits.
        let mut order = JavaHashOrder::new();
        for (i, id) in ["consumer1", "consumer2", "consumer3", "consumer4"]
            .iter()
            .enumerate()
        {
            order.insert(i, java_string_hash(id));
        }
        assert_eq!(order.ordered(), vec![3, 2, 1, 0]);
        assert_eq!(order.first(), Some(3));
        order.remove(3);
        assert_eq!(order.first(), Some(2));
        // Same bucket: insertion order.
        let mut same = JavaHashOrder::new();
        same.insert('b', 16);
        same.insert('a', 0);
        assert_eq!(same.ordered(), vec!['b', 'a']);
    }

    #[test]
    fn tables_grow_past_three_quarters_and_on_crowded_buckets() {
        let mut order = JavaHashOrder::new();
        for i in 0..13 {
            order.insert(i, i * 16);
        }
        // The ninth key in bucket 0 of the 16-bucket table doubled it (a 13th entry would
        // have too); in 32 buckets the keys split into buckets 0 and 16.
        assert_eq!(order.capacity, 32);
        let buckets: Vec<i32> = order.ordered().iter().map(|k| (k * 16) % 32).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(order.ordered()[..7], [0, 2, 4, 6, 8, 10, 12]);
    }
}
