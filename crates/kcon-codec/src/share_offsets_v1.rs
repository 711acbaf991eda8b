//! Version 1 of DescribeShareGroupOffsets (KIP-1226: each share-partition's lag, as the broker
//! counts it), which kafka-protocol 0.18 does not have: it has v0 only. v1's request is v0's;
//! v1's answer is v0's with `Lag` (int64, default -1) in each partition after `LeaderEpoch`.
//! The types here speak both versions: v0 is kafka-protocol's encoding; v1 is the same bytes
//! with each partition's lag where the message file places it.
//!
//! The lag sits in every element of a nested array, so it is found by walking the answer:
//! every field before it is of fixed size, a compact string, a uuid, or an array of those, and
//! every struct ends with its tagged fields. The walk allocates nothing from counts it reads
//! (the guard has checked the answer against its schema first); each lag kept takes 8 bytes
//! for a partition that takes at least 28 on the wire.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse,
};
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, VersionRange,
};

/// The versions the types here speak.
const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// The lag v1 sends when the broker has none to give (the field's default).
pub const NO_LAG: i64 = -1;

fn check(version: i16) -> anyhow::Result<()> {
    if (VERSIONS.min..=VERSIONS.max).contains(&version) {
        Ok(())
    } else {
        anyhow::bail!("DescribeShareGroupOffsets v{version}: kcon speaks v0 and v1")
    }
}

/// DescribeShareGroupOffsets, v0 or v1 (the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeShareGroupOffsetsRequestV1(pub DescribeShareGroupOffsetsRequest);

impl Message for DescribeShareGroupOffsetsRequestV1 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for DescribeShareGroupOffsetsRequestV1 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version)?;
        self.0.encode(buf, 0)
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        self.0.compute_size(0)
    }
}

impl Decodable for DescribeShareGroupOffsetsRequestV1 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version)?;
        Ok(DescribeShareGroupOffsetsRequestV1(
            DescribeShareGroupOffsetsRequest::decode(buf, 0)?,
        ))
    }
}

impl HeaderVersion for DescribeShareGroupOffsetsRequestV1 {
    fn header_version(_version: i16) -> i16 {
        DescribeShareGroupOffsetsRequest::header_version(0)
    }
}

impl Request for DescribeShareGroupOffsetsRequestV1 {
    const KEY: i16 = DescribeShareGroupOffsetsRequest::KEY;
    type Response = DescribeShareGroupOffsetsResponseV1;
}

/// DescribeShareGroupOffsets' answer, v0 or v1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeShareGroupOffsetsResponseV1 {
    /// The answer's v0 fields.
    pub body: DescribeShareGroupOffsetsResponse,
    /// `Lag` (v1) of each partition, as `lags[group][topic][partition]` follows
    /// `body.groups[group].topics[topic].partitions[partition]`; empty in a v0 answer. A
    /// partition missing here has no lag ([`NO_LAG`]).
    pub lags: Vec<Vec<Vec<i64>>>,
}

impl DescribeShareGroupOffsetsResponseV1 {
    /// The lag the broker gave the partition `partition` of topic `topic` of group `group`
    /// (indexes into `body`); `None` in a v0 answer, or where it sent [`NO_LAG`] or any other
    /// negative number.
    pub fn lag(&self, group: usize, topic: usize, partition: usize) -> Option<i64> {
        self.lags
            .get(group)?
            .get(topic)?
            .get(partition)
            .copied()
            .filter(|l| *l >= 0)
    }
}

impl Message for DescribeShareGroupOffsetsResponseV1 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for DescribeShareGroupOffsetsResponseV1 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version)?;
        if version == 0 {
            return self.body.encode(buf, 0);
        }
        let mut v0 = BytesMut::new();
        self.body.encode(&mut v0, 0)?;
        let mut out = BytesMut::with_capacity(v0.len() + 8 * partitions(&self.body));
        Walk {
            b: &v0,
            at: 0,
            out: &mut out,
            lags: Lags::Insert(&self.lags),
        }
        .message()?;
        buf.put_slice(&out);
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let v0 = self.body.compute_size(0)?;
        Ok(if version >= 1 {
            v0 + 8 * partitions(&self.body)
        } else {
            v0
        })
    }
}

impl Decodable for DescribeShareGroupOffsetsResponseV1 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version)?;
        if version == 0 {
            return Ok(DescribeShareGroupOffsetsResponseV1 {
                body: DescribeShareGroupOffsetsResponse::decode(buf, 0)?,
                lags: Vec::new(),
            });
        }
        // As kafka-protocol's decoders, this reads the message to its end and leaves nothing
        // after it (the guard hands it the message alone).
        let all = buf.copy_to_bytes(buf.remaining());
        let mut v0 = BytesMut::with_capacity(all.len());
        let mut lags = Vec::new();
        Walk {
            b: &all,
            at: 0,
            out: &mut v0,
            lags: Lags::Take(&mut lags),
        }
        .message()?;
        let body = DescribeShareGroupOffsetsResponse::decode(&mut v0.freeze(), 0)?;
        Ok(DescribeShareGroupOffsetsResponseV1 { body, lags })
    }
}

impl HeaderVersion for DescribeShareGroupOffsetsResponseV1 {
    fn header_version(_version: i16) -> i16 {
        DescribeShareGroupOffsetsResponse::header_version(0)
    }
}

/// How many partitions `r` answers, over all its groups and topics.
fn partitions(r: &DescribeShareGroupOffsetsResponse) -> usize {
    r.groups
        .iter()
        .flat_map(|g| &g.topics)
        .map(|t| t.partitions.len())
        .sum()
}

/// What a [`Walk`] does where a partition's lag goes.
enum Lags<'a> {
    /// Encoding v1 from v0: writes each partition's lag (or [`NO_LAG`]).
    Insert(&'a [Vec<Vec<i64>>]),
    /// Decoding v1 into v0: reads each partition's lag out, writing nothing.
    Take(&'a mut Vec<Vec<Vec<i64>>>),
}

/// A walk over a flexible DescribeShareGroupOffsets answer in `b`, copying every byte to
/// `out` but the lags (decoding v1) or adding them (encoding v1 from v0).
struct Walk<'a> {
    b: &'a [u8],
    at: usize,
    out: &'a mut BytesMut,
    lags: Lags<'a>,
}

/// An answer that ends too soon.
fn cut_off() -> anyhow::Error {
    anyhow::anyhow!("the DescribeShareGroupOffsets answer is cut off")
}

impl Walk<'_> {
    /// Copies the next `n` bytes.
    fn copy(&mut self, n: usize) -> anyhow::Result<()> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(cut_off)?;
        self.out.put_slice(&self.b[self.at..end]);
        self.at = end;
        Ok(())
    }

    /// Reads (and copies) an unsigned varint.
    fn varint(&mut self) -> anyhow::Result<u64> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self.b.get(self.at).ok_or_else(cut_off)?;
            self.copy(1)?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
            shift += 7;
            if shift > 63 {
                anyhow::bail!("a varint of the DescribeShareGroupOffsets answer does not end");
            }
        }
    }

    /// A compact (nullable) string.
    fn string(&mut self) -> anyhow::Result<()> {
        let len = usize::try_from(self.varint()?.saturating_sub(1))?;
        self.copy(len)
    }

    /// A compact array's length (0 for null).
    fn array(&mut self) -> anyhow::Result<u64> {
        Ok(self.varint()?.saturating_sub(1))
    }

    /// A struct's tagged fields.
    fn tagged(&mut self) -> anyhow::Result<()> {
        for _ in 0..self.varint()? {
            self.varint()?;
            let size = usize::try_from(self.varint()?)?;
            self.copy(size)?;
        }
        Ok(())
    }

    /// Where the lag of partition `p` of topic `t` of group `g` goes.
    fn lag(&mut self, g: usize, t: usize, p: usize) -> anyhow::Result<()> {
        match &mut self.lags {
            Lags::Insert(lags) => {
                let lag = lags
                    .get(g)
                    .and_then(|topics| topics.get(t))
                    .and_then(|partitions| partitions.get(p))
                    .copied()
                    .unwrap_or(NO_LAG);
                self.out.put_i64(lag);
            }
            Lags::Take(lags) => {
                let bytes = self.b.get(self.at..self.at + 8).ok_or_else(cut_off)?;
                let lag = i64::from_be_bytes(bytes.try_into()?);
                self.at += 8;
                // One entry per group and topic as they come, so the indexes follow the body.
                while lags.len() <= g {
                    lags.push(Vec::new());
                }
                while lags[g].len() <= t {
                    lags[g].push(Vec::new());
                }
                lags[g][t].push(lag);
            }
        }
        Ok(())
    }

    /// The whole message, to its top-level tagged fields.
    fn message(&mut self) -> anyhow::Result<()> {
        // ThrottleTimeMs.
        self.copy(4)?;
        for g in 0..self.array()? {
            // GroupId.
            self.string()?;
            for t in 0..self.array()? {
                // TopicName, TopicId.
                self.string()?;
                self.copy(16)?;
                for p in 0..self.array()? {
                    // PartitionIndex, StartOffset, LeaderEpoch; then v1's Lag.
                    self.copy(4 + 8 + 4)?;
                    self.lag(
                        usize::try_from(g)?,
                        usize::try_from(t)?,
                        usize::try_from(p)?,
                    )?;
                    // ErrorCode, ErrorMessage.
                    self.copy(2)?;
                    self.string()?;
                    self.tagged()?;
                }
                self.tagged()?;
            }
            // ErrorCode, ErrorMessage.
            self.copy(2)?;
            self.string()?;
            self.tagged()?;
        }
        self.tagged()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group,
        DescribeShareGroupOffsetsResponsePartition as Partition,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    use kafka_protocol::messages::{GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn s(v: &'static str) -> StrBytes {
        StrBytes::from_static_str(v)
    }

    fn answer() -> DescribeShareGroupOffsetsResponseV1 {
        let partition = |i: i32, message: Option<StrBytes>| {
            Partition::default()
                .with_partition_index(i)
                .with_start_offset(100 + i64::from(i))
                .with_leader_epoch(7)
                .with_error_message(message)
        };
        let topic = |name: &'static str, partitions| {
            Topic::default()
                .with_topic_name(TopicName(s(name)))
                .with_partitions(partitions)
        };
        let body = DescribeShareGroupOffsetsResponse::default()
            .with_throttle_time_ms(5)
            .with_groups(vec![
                Group::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(vec![
                        topic("a", vec![partition(0, None), partition(1, Some(s("x")))]),
                        topic("b", vec![partition(0, None)]),
                    ]),
                Group::default()
                    .with_group_id(GroupId(s("h")))
                    .with_topics(vec![topic("c", vec![partition(3, None)])])
                    .with_error_code(30)
                    .with_error_message(Some(s("denied"))),
            ]);
        DescribeShareGroupOffsetsResponseV1 {
            body,
            lags: vec![vec![vec![0, 3000], vec![NO_LAG]], vec![vec![12]]],
        }
    }

    /// v1 is v0 with each partition's lag after its leader epoch: the bytes of v0 with 8
    /// bytes more per partition, and back to the same lags.
    #[test]
    fn v1_places_each_partitions_lag_after_its_leader_epoch() {
        let r = answer();
        let mut v0 = BytesMut::new();
        r.body.encode(&mut v0, 0).unwrap();
        let mut v1 = BytesMut::new();
        r.encode(&mut v1, 1).unwrap();
        assert_eq!(v1.len(), v0.len() + 4 * 8);
        assert_eq!(v1.len(), r.compute_size(1).unwrap());
        // Throttle time; 2 groups (1); the group id "g" (2); 2 topics (1); "a" (2); its id
        // (16); 2 partitions (1); the first one's index, start offset and leader epoch (16):
        // then its lag.
        let at = 4 + 1 + 2 + 1 + 2 + 16 + 1 + 16;
        assert_eq!(&v1[..at], &v0[..at]);
        assert_eq!(&v1[at..at + 8], &0i64.to_be_bytes());
        assert_eq!(&v1[at + 8..at + 8 + 4], &v0[at..at + 4]);
        let back = DescribeShareGroupOffsetsResponseV1::decode(&mut v1.freeze(), 1).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.lag(0, 0, 1), Some(3000));
        assert_eq!(back.lag(0, 1, 0), None, "-1: no lag");
        assert_eq!(back.lag(1, 0, 0), Some(12));
        assert_eq!(back.lag(2, 0, 0), None);

        // v0 carries none.
        let back = DescribeShareGroupOffsetsResponseV1::decode(&mut v0.freeze(), 0).unwrap();
        assert_eq!((&back.body, back.lags.len()), (&r.body, 0));
        let mut again = BytesMut::new();
        r.encode(&mut again, 0).unwrap();
        assert_eq!(again.len(), r.compute_size(0).unwrap());
    }

    /// A v1 answer cut anywhere fails to decode, and never panics.
    #[test]
    fn a_cut_answer_is_an_error() {
        let mut v1 = BytesMut::new();
        answer().encode(&mut v1, 1).unwrap();
        let v1 = v1.freeze();
        for len in 0..v1.len() {
            let mut cut = v1.slice(..len);
            assert!(
                DescribeShareGroupOffsetsResponseV1::decode(&mut cut, 1).is_err(),
                "cut at {len}"
            );
        }
        assert!(DescribeShareGroupOffsetsResponseV1::decode(&mut v1.clone(), 2).is_err());
    }

    /// The request is v0's at both versions.
    #[test]
    fn the_request_is_the_same_at_both_versions() {
        let mut r = DescribeShareGroupOffsetsRequest::default();
        r.groups = vec![Default::default()];
        let r = DescribeShareGroupOffsetsRequestV1(r);
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        r.encode(&mut a, 0).unwrap();
        r.encode(&mut b, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            DescribeShareGroupOffsetsRequestV1::decode(&mut b.freeze(), 1).unwrap(),
            r
        );
    }
}
