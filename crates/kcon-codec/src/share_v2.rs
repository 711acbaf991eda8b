//! Version 2 of ShareFetch and ShareAcknowledge (Apache Kafka 4.2: KIP-1206's acquire mode,
//! KIP-1222's lock renewal), which kafka-protocol 0.18 does not have. Each type here is
//! kafka-protocol's v1 message with the fields v2 adds beside it, and speaks both versions:
//! v1 is kafka-protocol's encoding; v2 is the same bytes with the new fields where the message
//! files place them:
//!
//! - ShareFetch request: `ShareAcquireMode` (int8) and `IsRenewAck` (bool) after `BatchSize`;
//! - ShareFetch response: unchanged;
//! - ShareAcknowledge request: `IsRenewAck` (bool) after `ShareSessionEpoch`;
//! - ShareAcknowledge response: `AcquisitionLockTimeoutMs` (int32) after `ErrorMessage`.
//!
//! Every version of both is flexible, and every field before an insertion point has a fixed
//! size or is a compact nullable string, so the point is found by reading those strings'
//! lengths (each message's `Lead`).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, VersionRange,
};

/// The versions the types here speak.
const VERSIONS: VersionRange = VersionRange { min: 1, max: 2 };

/// `ShareAcquireMode`: whole batches (v1's only behaviour).
pub const BATCH_OPTIMIZED: i8 = 0;
/// `ShareAcquireMode`: at most `MaxRecords` records (KIP-1206).
pub const RECORD_LIMIT: i8 = 1;

fn check(version: i16, what: &str) -> anyhow::Result<()> {
    if (VERSIONS.min..=VERSIONS.max).contains(&version) {
        Ok(())
    } else {
        anyhow::bail!("{what} v{version}: kcon speaks v1 and v2")
    }
}

/// The length of the compact nullable string at `at` in `b` (its length prefix included).
fn compact_string_len(b: &[u8], at: usize) -> anyhow::Result<usize> {
    let mut n: u64 = 0;
    let mut shift = 0;
    let mut i = at;
    loop {
        let Some(&byte) = b.get(i) else {
            anyhow::bail!("a string's length is cut off");
        };
        i += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            anyhow::bail!("a string's length does not end");
        }
    }
    // 0 is null; otherwise the length is n - 1.
    let len = usize::try_from(n.saturating_sub(1))?;
    let end = (i - at)
        .checked_add(len)
        .ok_or_else(|| anyhow::anyhow!("a string's length overflows"))?;
    if at + end > b.len() {
        anyhow::bail!("a string is cut off");
    }
    Ok(end)
}

/// One field before the point where v2's fields go.
#[derive(Clone, Copy)]
enum Lead {
    /// A field of this many bytes.
    Fixed(usize),
    /// A compact nullable string.
    Str,
}

/// Where the fields v2 adds go in a v1 encoding `b`: after the fields `lead`.
fn insertion_point(b: &[u8], lead: &[Lead]) -> anyhow::Result<usize> {
    let mut at = 0;
    for field in lead {
        at += match *field {
            Lead::Fixed(n) => n,
            Lead::Str => compact_string_len(b, at)?,
        };
        if at > b.len() {
            anyhow::bail!("the message ends before its version 2 fields");
        }
    }
    Ok(at)
}

/// `v1` encoded, with `extra` inserted after the fields `lead`.
fn encode_with<B: ByteBufMut>(
    buf: &mut B,
    v1: &BytesMut,
    lead: &[Lead],
    extra: &[u8],
) -> anyhow::Result<()> {
    let at = insertion_point(v1, lead)?;
    buf.put_slice(&v1[..at]);
    buf.put_slice(extra);
    buf.put_slice(&v1[at..]);
    Ok(())
}

/// The rest of `buf` with the `len` bytes after the fields `lead` taken out, and those bytes.
fn take_out<B: ByteBuf>(buf: &mut B, lead: &[Lead], len: usize) -> anyhow::Result<(Bytes, Bytes)> {
    let all = buf.copy_to_bytes(buf.remaining());
    let at = insertion_point(&all, lead)?;
    if at + len > all.len() {
        anyhow::bail!("the message ends in its version 2 fields");
    }
    let mut rest = BytesMut::with_capacity(all.len() - len);
    rest.extend_from_slice(&all[..at]);
    rest.extend_from_slice(&all[at + len..]);
    Ok((rest.freeze(), all.slice(at..at + len)))
}

/// ShareFetch, v1 or v2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareFetchRequestV2 {
    /// The message's v1 fields.
    pub body: ShareFetchRequest,
    /// `ShareAcquireMode` (v2): [`BATCH_OPTIMIZED`] or [`RECORD_LIMIT`].
    pub share_acquire_mode: i8,
    /// `IsRenewAck` (v2): the acknowledgements include renewals (type 4); the fetch limits
    /// are then zero, and nothing is acquired.
    pub is_renew_ack: bool,
}

/// ShareFetch's fields before `ShareAcquireMode`: the group and member ids, then the session
/// epoch, max wait, min bytes, max bytes, max records and batch size.
const FETCH_LEAD: &[Lead] = &[Lead::Str, Lead::Str, Lead::Fixed(6 * 4)];

impl Message for ShareFetchRequestV2 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for ShareFetchRequestV2 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version, "ShareFetch")?;
        if version == 1 {
            if self.share_acquire_mode != BATCH_OPTIMIZED || self.is_renew_ack {
                anyhow::bail!("ShareFetch v1 has no acquire mode and no renewals");
            }
            return self.body.encode(buf, 1);
        }
        let mut v1 = BytesMut::new();
        self.body.encode(&mut v1, 1)?;
        let extra = [self.share_acquire_mode as u8, u8::from(self.is_renew_ack)];
        encode_with(buf, &v1, FETCH_LEAD, &extra)
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let v1 = self.body.compute_size(1)?;
        Ok(if version >= 2 { v1 + 2 } else { v1 })
    }
}

impl Decodable for ShareFetchRequestV2 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version, "ShareFetch")?;
        if version == 1 {
            return Ok(ShareFetchRequestV2 {
                body: ShareFetchRequest::decode(buf, 1)?,
                ..Default::default()
            });
        }
        let (mut rest, extra) = take_out(buf, FETCH_LEAD, 2)?;
        Ok(ShareFetchRequestV2 {
            body: ShareFetchRequest::decode(&mut rest, 1)?,
            share_acquire_mode: extra[0] as i8,
            is_renew_ack: extra[1] != 0,
        })
    }
}

impl HeaderVersion for ShareFetchRequestV2 {
    fn header_version(_version: i16) -> i16 {
        ShareFetchRequest::header_version(1)
    }
}

impl Request for ShareFetchRequestV2 {
    const KEY: i16 = ShareFetchRequest::KEY;
    type Response = ShareFetchResponseV2;
}

/// ShareFetch's answer, v1 or v2 (the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareFetchResponseV2(pub ShareFetchResponse);

impl Message for ShareFetchResponseV2 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for ShareFetchResponseV2 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version, "ShareFetch")?;
        self.0.encode(buf, 1)
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        self.0.compute_size(1)
    }
}

impl Decodable for ShareFetchResponseV2 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version, "ShareFetch")?;
        Ok(ShareFetchResponseV2(ShareFetchResponse::decode(buf, 1)?))
    }
}

impl HeaderVersion for ShareFetchResponseV2 {
    fn header_version(_version: i16) -> i16 {
        ShareFetchResponse::header_version(1)
    }
}

/// ShareAcknowledge, v1 or v2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareAcknowledgeRequestV2 {
    /// The message's v1 fields.
    pub body: ShareAcknowledgeRequest,
    /// `IsRenewAck` (v2): the acknowledgements include renewals (type 4).
    pub is_renew_ack: bool,
}

/// ShareAcknowledge's fields before `IsRenewAck`: the group and member ids and the session
/// epoch.
const ACKNOWLEDGE_LEAD: &[Lead] = &[Lead::Str, Lead::Str, Lead::Fixed(4)];

/// ShareAcknowledge's answer's fields before `AcquisitionLockTimeoutMs`: the throttle time,
/// the error code and the error message.
const ACKNOWLEDGE_ANSWER_LEAD: &[Lead] = &[Lead::Fixed(4), Lead::Fixed(2), Lead::Str];

impl Message for ShareAcknowledgeRequestV2 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for ShareAcknowledgeRequestV2 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version, "ShareAcknowledge")?;
        if version == 1 {
            if self.is_renew_ack {
                anyhow::bail!("ShareAcknowledge v1 has no renewals");
            }
            return self.body.encode(buf, 1);
        }
        let mut v1 = BytesMut::new();
        self.body.encode(&mut v1, 1)?;
        encode_with(buf, &v1, ACKNOWLEDGE_LEAD, &[u8::from(self.is_renew_ack)])
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let v1 = self.body.compute_size(1)?;
        Ok(if version >= 2 { v1 + 1 } else { v1 })
    }
}

impl Decodable for ShareAcknowledgeRequestV2 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version, "ShareAcknowledge")?;
        if version == 1 {
            return Ok(ShareAcknowledgeRequestV2 {
                body: ShareAcknowledgeRequest::decode(buf, 1)?,
                is_renew_ack: false,
            });
        }
        let (mut rest, extra) = take_out(buf, ACKNOWLEDGE_LEAD, 1)?;
        Ok(ShareAcknowledgeRequestV2 {
            body: ShareAcknowledgeRequest::decode(&mut rest, 1)?,
            is_renew_ack: extra[0] != 0,
        })
    }
}

impl HeaderVersion for ShareAcknowledgeRequestV2 {
    fn header_version(_version: i16) -> i16 {
        ShareAcknowledgeRequest::header_version(1)
    }
}

impl Request for ShareAcknowledgeRequestV2 {
    const KEY: i16 = ShareAcknowledgeRequest::KEY;
    type Response = ShareAcknowledgeResponseV2;
}

/// ShareAcknowledge's answer, v1 or v2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareAcknowledgeResponseV2 {
    /// The message's v1 fields.
    pub body: ShareAcknowledgeResponse,
    /// `AcquisitionLockTimeoutMs` (v2): how long the records' locks last, renewed ones
    /// included; 0 in a v1 answer.
    pub acquisition_lock_timeout_ms: i32,
}

impl Message for ShareAcknowledgeResponseV2 {
    const VERSIONS: VersionRange = VERSIONS;
    const DEPRECATED_VERSIONS: Option<VersionRange> = None;
}

impl Encodable for ShareAcknowledgeResponseV2 {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        check(version, "ShareAcknowledge")?;
        if version == 1 {
            return self.body.encode(buf, 1);
        }
        let mut v1 = BytesMut::new();
        self.body.encode(&mut v1, 1)?;
        encode_with(
            buf,
            &v1,
            ACKNOWLEDGE_ANSWER_LEAD,
            &self.acquisition_lock_timeout_ms.to_be_bytes(),
        )
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let v1 = self.body.compute_size(1)?;
        Ok(if version >= 2 { v1 + 4 } else { v1 })
    }
}

impl Decodable for ShareAcknowledgeResponseV2 {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        check(version, "ShareAcknowledge")?;
        if version == 1 {
            return Ok(ShareAcknowledgeResponseV2 {
                body: ShareAcknowledgeResponse::decode(buf, 1)?,
                acquisition_lock_timeout_ms: 0,
            });
        }
        let (mut rest, mut timeout) = take_out(buf, ACKNOWLEDGE_ANSWER_LEAD, 4)?;
        Ok(ShareAcknowledgeResponseV2 {
            body: ShareAcknowledgeResponse::decode(&mut rest, 1)?,
            acquisition_lock_timeout_ms: timeout.get_i32(),
        })
    }
}

impl HeaderVersion for ShareAcknowledgeResponseV2 {
    fn header_version(_version: i16) -> i16 {
        ShareAcknowledgeResponse::header_version(1)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::GroupId;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn fetch() -> ShareFetchRequestV2 {
        let mut body = ShareFetchRequest::default();
        body.group_id = Some(GroupId(StrBytes::from_static_str("g")));
        body.member_id = Some(StrBytes::from_static_str("member-1"));
        body.share_session_epoch = 3;
        body.max_wait_ms = 500;
        body.min_bytes = 1;
        body.max_bytes = 1 << 20;
        body.max_records = 7;
        body.batch_size = 7;
        ShareFetchRequestV2 {
            body,
            share_acquire_mode: RECORD_LIMIT,
            is_renew_ack: true,
        }
    }

    /// v2 is v1 with `ShareAcquireMode` and `IsRenewAck` after `BatchSize`: byte for byte, and
    /// back.
    #[test]
    fn share_fetch_v2_places_its_fields_after_the_batch_size() {
        let r = fetch();
        let mut v1 = BytesMut::new();
        r.body.encode(&mut v1, 1).unwrap();
        let mut v2 = BytesMut::new();
        r.encode(&mut v2, 2).unwrap();
        assert_eq!(v2.len(), r.compute_size(2).unwrap());
        // "g" and "member-1" as compact strings: 2 and 9 bytes; then six int32s.
        let at = 2 + 9 + 24;
        assert_eq!(&v2[..at], &v1[..at]);
        assert_eq!(&v2[at..at + 2], &[1, 1]);
        assert_eq!(&v2[at + 2..], &v1[at..]);
        let back = ShareFetchRequestV2::decode(&mut v2.freeze(), 2).unwrap();
        assert_eq!(back, r);
        // v1 has no room for them.
        assert!(r.encode(&mut BytesMut::new(), 1).is_err());
        let plain = ShareFetchRequestV2 {
            body: r.body.clone(),
            ..Default::default()
        };
        let mut b = BytesMut::new();
        plain.encode(&mut b, 1).unwrap();
        assert_eq!(b, v1);
    }

    /// ShareAcknowledge v2's `IsRenewAck` follows the session epoch; a null member id (a
    /// one-byte string) moves nothing else.
    #[test]
    fn share_acknowledge_v2_places_its_flag_after_the_epoch() {
        let mut body = ShareAcknowledgeRequest::default();
        body.group_id = Some(GroupId(StrBytes::from_static_str("group")));
        body.member_id = None;
        body.share_session_epoch = -1;
        let r = ShareAcknowledgeRequestV2 {
            body,
            is_renew_ack: true,
        };
        let mut v1 = BytesMut::new();
        r.body.encode(&mut v1, 1).unwrap();
        let mut v2 = BytesMut::new();
        r.encode(&mut v2, 2).unwrap();
        let at = 6 + 1 + 4;
        assert_eq!(v2[at], 1);
        assert_eq!(&v2[..at], &v1[..at]);
        assert_eq!(&v2[at + 1..], &v1[at..]);
        assert_eq!(
            ShareAcknowledgeRequestV2::decode(&mut v2.freeze(), 2).unwrap(),
            r
        );
    }

    /// ShareAcknowledge's v2 answer carries the lock timeout after the error message.
    #[test]
    fn share_acknowledge_v2_answer_carries_the_lock_timeout() {
        let mut body = ShareAcknowledgeResponse::default();
        body.throttle_time_ms = 5;
        body.error_message = Some(StrBytes::from_static_str("fine"));
        let r = ShareAcknowledgeResponseV2 {
            body,
            acquisition_lock_timeout_ms: 15_000,
        };
        let mut v1 = BytesMut::new();
        r.body.encode(&mut v1, 1).unwrap();
        let mut v2 = BytesMut::new();
        r.encode(&mut v2, 2).unwrap();
        let at = 4 + 2 + 5;
        assert_eq!(&v2[at..at + 4], &15_000i32.to_be_bytes());
        assert_eq!(&v2[..at], &v1[..at]);
        assert_eq!(&v2[at + 4..], &v1[at..]);
        assert_eq!(
            ShareAcknowledgeResponseV2::decode(&mut v2.freeze(), 2).unwrap(),
            r
        );
    }

    /// A cut message is an error, never a panic.
    #[test]
    fn cut_messages_are_errors() {
        let mut v2 = BytesMut::new();
        fetch().encode(&mut v2, 2).unwrap();
        let v2 = v2.freeze();
        for len in 0..v2.len() {
            let _ = ShareFetchRequestV2::decode(&mut v2.slice(..len), 2);
        }
        for len in 0..12 {
            let mut b = Bytes::from(vec![0x80u8; len]);
            assert!(ShareAcknowledgeResponseV2::decode(&mut b, 2).is_err());
        }
    }
}
