//! Which partition `kcon produce` sends a record to: keyed records where the Java producer's
//! default partitioner puts them, the others in turn.

/// Chooses partitions for records of one topic.
#[derive(Debug)]
pub(crate) struct Partitioner {
    partitions: i32,
    next: i32,
}

impl Partitioner {
    /// For a topic of `partitions` partitions (at least one).
    pub(crate) fn new(partitions: i32) -> Partitioner {
        Partitioner {
            partitions: partitions.max(1),
            next: 0,
        }
    }

    /// The partition of a record with `key`: murmur2 of the key, made positive, modulo the
    /// partition count (the Java client's `BuiltInPartitioner.partitionForKey`, and
    /// `DefaultPartitioner` before it); round-robin for a null key.
    pub(crate) fn partition(&mut self, key: Option<&[u8]>) -> i32 {
        match key {
            Some(key) => ((murmur2(key) & 0x7fff_ffff) % self.partitions as u32) as i32,
            None => {
                let p = self.next;
                self.next = (self.next + 1) % self.partitions;
                p
            }
        }
    }
}

/// MurmurHash2 (32-bit) with the seed and the little-endian word reading of the Java client's
/// `Utils.murmur2`, whose partitions every Kafka client reproduces for keyed records.
pub(crate) fn murmur2(data: &[u8]) -> u32 {
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
        let mut p = Partitioner::new(6);
        // toPositive(murmur2(key)) % 6, as the Java producer computes it.
        assert_eq!(p.partition(Some(b"a-little-bit-longer-string")), 5);
        assert_eq!(p.partition(Some(b"abc")), 3);
        assert_eq!(p.partition(Some(b"")), 3);
        let turns: Vec<i32> = (0..8).map(|_| p.partition(None)).collect();
        assert_eq!(turns, [0, 1, 2, 3, 4, 5, 0, 1]);
    }
}
