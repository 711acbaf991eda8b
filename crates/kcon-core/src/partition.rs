//! Partitions and topics by name and by id.

use std::fmt;

/// A topic partition: defined with the consumer protocol's codec, whose partition lists are
/// made of it.
pub use kcon_codec::TopicPartition;

/// A topic id (KIP-516): 16 bytes, shown as Kafka shows them, URL-safe base64 without padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub [u8; 16]);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.0.chunks(3) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= u32::from(*b) << (16 - 8 * i);
            }
            // 3 bytes give 4 characters; the last 1-byte chunk gives 2 (no padding).
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_does() {
        // Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, no padding.
        assert_eq!(TopicId([0; 16]).to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(TopicId([0xff; 16]).to_string(), "_____________________w");
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(TopicId(id).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
