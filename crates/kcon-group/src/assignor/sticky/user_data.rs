//! The sticky assignors' `Subscription.user_data` formats.
//!
//! - `StickyAssignorUserData` (the Java client's `StickyAssignor` schemas, no version header):
//!   v0 is `previous_assignment [topic string, partitions [i32]]`; v1 appends
//!   `generation i32`. Eager members revoke everything before joining, so this is how the
//!   leader learns what they had.
//! - `CooperativeStickyAssignorUserData` v0: `generation i32`, for members whose subscription
//!   is older than v2 (which carries the generation itself).

use bytes::{BufMut, Bytes, BytesMut};

use kcon_core::TopicPartition;

use kcon_codec::consumer_protocol::{Reader, put_topic_partitions};

const PREVIOUS_ASSIGNMENT: &str = "StickyAssignorUserData.previous_assignment";
const TOPIC: &str = "StickyAssignorUserData.previous_assignment.topic";
const PARTITIONS: &str = "StickyAssignorUserData.previous_assignment.partitions";

/// `StickyAssignorUserData` v1: what a `sticky` member last owned and in which generation.
pub(super) fn encode_sticky(partitions: &[TopicPartition], generation: i32) -> Bytes {
    let mut buf = BytesMut::new();
    put_topic_partitions(&mut buf, partitions);
    buf.put_i32(generation);
    buf.freeze()
}

/// Reads `StickyAssignorUserData` as the Java client's `StickyAssignor.memberData` does: as
/// v1, else as v0 (no generation), else as nothing owned in generation -1. Bytes after the
/// fields are ignored.
pub(super) fn decode_sticky(bytes: &[u8]) -> (Vec<TopicPartition>, Option<i32>) {
    let v1 = {
        let mut r = Reader::new(bytes);
        r.topic_partitions(PREVIOUS_ASSIGNMENT, TOPIC, PARTITIONS)
            .and_then(|partitions| Ok((partitions, r.i32("StickyAssignorUserData.generation")?)))
    };
    if let Ok((partitions, generation)) = v1 {
        return (partitions, Some(generation));
    }
    match Reader::new(bytes).topic_partitions(PREVIOUS_ASSIGNMENT, TOPIC, PARTITIONS) {
        Ok(partitions) => (partitions, None),
        Err(_) => (Vec::new(), Some(-1)),
    }
}

/// `CooperativeStickyAssignorUserData` v0.
pub(super) fn encode_generation(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// The generation in `CooperativeStickyAssignorUserData`, -1 when it cannot be read (as the
/// Java client's `CooperativeStickyAssignor.memberData` falls back).
pub(super) fn decode_generation(bytes: &[u8]) -> i32 {
    Reader::new(bytes)
        .i32("CooperativeStickyAssignorUserData.generation")
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    #[test]
    fn sticky_user_data_v1_bytes() {
        let bytes = encode_sticky(&[tp("t", 0), tp("t", 2)], 5);
        // 1 topic, "t", 2 partitions 0 and 2, generation 5.
        assert_eq!(
            &bytes[..],
            &[
                0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 5
            ]
        );
        assert_eq!(
            decode_sticky(&bytes),
            (vec![tp("t", 0), tp("t", 2)], Some(5))
        );
    }

    #[test]
    fn sticky_user_data_v0_has_no_generation() {
        // Java's StickyAssignorTest.testSchemaBackwardCompatibility writes the v0 schema.
        let bytes = encode_sticky(&[tp("t", 1)], 0);
        let v0 = &bytes[..bytes.len() - 4];
        assert_eq!(decode_sticky(v0), (vec![tp("t", 1)], None));
    }

    #[test]
    fn unreadable_sticky_user_data_owns_nothing() {
        assert_eq!(decode_sticky(&[0, 0]), (vec![], Some(-1)));
        assert_eq!(decode_sticky(&[0xff, 0xff, 0xff, 0xff]), (vec![], Some(-1)));
        assert_eq!(decode_sticky(&[0x7f, 0, 0, 0, 1]), (vec![], Some(-1)));
    }

    #[test]
    fn cooperative_generation() {
        assert_eq!(decode_generation(&encode_generation(10)), 10);
        assert_eq!(decode_generation(&encode_generation(-1)), -1);
        assert_eq!(decode_generation(&[1, 2]), -1);
        assert_eq!(decode_generation(&[0, 0, 0, 3, 9, 9]), 3);
    }
}
