//! Which partition a record goes to: keyed records where the Java producer's default
//! partitioner puts them (murmur2), null-keyed records in turn or at random.

/// How null-keyed records are spread (`partitioner`). Keyed records always go where the Java
/// client's `BuiltInPartitioner.partitionForKey` puts them, so that kcon and every other client
/// agree on a key's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionerKind {
    /// `murmur2_round_robin` (the default): null-keyed records take the partitions in turn, one
    /// record each, as the Java client's `RoundRobinPartitioner` does. Chosen over the sticky
    /// partitioner (KIP-480/KIP-794) because it spreads records evenly and predictably whatever
    /// `linger.ms` is, and because `kcon produce` has always promised it; the sticky
    /// partitioner's gain, fuller batches under a small `linger.ms`, matters less to a producer
    /// that keeps one batch per partition in flight and lets the next one fill meanwhile.
    #[default]
    Murmur2RoundRobin,
    /// `murmur2_random`: null-keyed records go to a random partition (librdkafka's
    /// `murmur2_random`, its Java-compatible partitioner), drawn from a small generator seeded
    /// once: a producer seeds each topic's from its own seed, so a given seed spreads the
    /// records the same way every time.
    Murmur2Random,
}

impl PartitionerKind {
    /// What `partitioner` accepts.
    pub(crate) const EXPECTED: &'static str = "murmur2_round_robin or murmur2_random";

    /// The value of the `partitioner` property.
    pub(crate) fn parse(value: &str) -> Option<PartitionerKind> {
        match value.to_ascii_lowercase().as_str() {
            "murmur2_round_robin" => Some(PartitionerKind::Murmur2RoundRobin),
            "murmur2_random" => Some(PartitionerKind::Murmur2Random),
            _ => None,
        }
    }
}

/// Chooses partitions for the records of one topic.
#[derive(Debug, Clone)]
pub struct Partitioner {
    kind: PartitionerKind,
    partitions: i32,
    next: i32,
    /// The random partitions of `murmur2_random`, from the seed it was made with.
    rng: fastrand::Rng,
}

impl Partitioner {
    /// For a topic of `partitions` partitions (at least one is assumed); `murmur2_random`'s
    /// generator is seeded from fastrand's thread-local one (seeded from the clock and the
    /// thread).
    pub fn new(kind: PartitionerKind, partitions: i32) -> Partitioner {
        Partitioner::with_seed(kind, partitions, fastrand::u64(..))
    }

    /// The same, with `murmur2_random`'s generator seeded from `seed`: the same seed picks the
    /// same partitions in the same order.
    pub(crate) fn with_seed(kind: PartitionerKind, partitions: i32, seed: u64) -> Partitioner {
        Partitioner {
            kind,
            partitions: partitions.max(1),
            next: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The partition count it spreads over.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The same turn, over a new partition count (partitions were added to the topic).
    pub fn resize(&mut self, partitions: i32) {
        self.partitions = partitions.max(1);
        self.next %= self.partitions;
    }

    /// The partition of a record with `key`: murmur2 of the key, made positive, modulo the
    /// partition count (the Java client's `BuiltInPartitioner.partitionForKey`, and
    /// `DefaultPartitioner` before it); for a null key, by [`PartitionerKind`].
    pub fn partition(&mut self, key: Option<&[u8]>) -> i32 {
        match (key, self.kind) {
            (Some(key), _) => partition_for_key(key, self.partitions),
            (None, PartitionerKind::Murmur2RoundRobin) => {
                let p = self.next;
                self.next = (self.next + 1) % self.partitions;
                p
            }
            (None, PartitionerKind::Murmur2Random) => self.rng.i32(0..self.partitions),
        }
    }
}

/// The partition the Java client gives `key` among `partitions` (at least 1): murmur2 with the
/// sign bit cleared (`Utils.toPositive`), modulo the count.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// MurmurHash2 (32-bit) with the seed and the little-endian word reading of the Java client's
/// `Utils.murmur2`, whose partitions every Kafka client reproduces for keyed records.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The last one to three bytes, mixed in as Java's switch falls through.
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The expected values of Kafka's `UtilsTest.testMurmur2`.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data) as i32,
                expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn keys_land_where_java_puts_them_and_null_keys_take_turns() {
        let mut p = Partitioner::new(PartitionerKind::Murmur2RoundRobin, 6);
        // toPositive(murmur2(key)) % 6, as the Java producer computes it.
        assert_eq!(p.partition(Some(b"a-little-bit-longer-string")), 5);
        assert_eq!(p.partition(Some(b"abc")), 3);
        assert_eq!(p.partition(Some(b"")), 3);
        let turns: Vec<i32> = (0..8).map(|_| p.partition(None)).collect();
        assert_eq!(turns, [0, 1, 2, 3, 4, 5, 0, 1]);
        // Keyed records do not move the turn.
        p.partition(Some(b"abc"));
        assert_eq!(p.partition(None), 2);
        p.resize(2);
        assert_eq!(p.partition(None), 1);
        assert_eq!(p.partition(Some(b"abc")), partition_for_key(b"abc", 2));
    }

    #[test]
    fn random_null_keys_stay_in_range_and_keys_still_hash() {
        let mut p = Partitioner::new(PartitionerKind::Murmur2Random, 3);
        let mut seen = [0u32; 3];
        for _ in 0..600 {
            seen[p.partition(None) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
        assert_eq!(
            p.partition(Some(b"foobar")),
            partition_for_key(b"foobar", 3)
        );
    }

    #[test]
    fn a_seed_picks_the_same_random_partitions_and_covers_every_one() {
        let picks = |seed| {
            let mut p = Partitioner::with_seed(PartitionerKind::Murmur2Random, 5, seed);
            (0..200).map(|_| p.partition(None)).collect::<Vec<i32>>()
        };
        let first = picks(42);
        assert_eq!(first, picks(42));
        assert_ne!(first, picks(43), "another seed, another sequence");
        let covered: std::collections::BTreeSet<i32> = first.iter().copied().collect();
        assert_eq!(covered, (0..5).collect());
    }

    #[test]
    fn partitioner_names() {
        assert_eq!(
            PartitionerKind::parse("MURMUR2_RANDOM"),
            Some(PartitionerKind::Murmur2Random)
        );
        assert_eq!(
            PartitionerKind::parse("murmur2_round_robin"),
            Some(PartitionerKind::Murmur2RoundRobin)
        );
        assert_eq!(PartitionerKind::parse("sticky"), None);
    }
}
