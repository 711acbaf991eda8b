//! Request headers (v0–v2) and response headers (v0–v1).
//!
//! Request headers are encoded with `kafka-protocol`'s `RequestHeader` (v2 keeps the client id
//! as a legacy nullable string, which that type gets right). Response headers are decoded here:
//! a correlation id, and from v1 a tagged-field section, which no response header version
//! defines fields for, so its entries are checked and skipped.

use kafka_protocol::messages::ApiKey;

use crate::error::{DecodeError, DecodeReason, Error, Part, Result};
use crate::wire::{Reader, WireError};

/// What kcon reads from a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The correlation id of the request this answers.
    pub correlation_id: i32,
}

/// The request header version of `api_key` at `version`.
pub fn request_header_version(api_key: i16, version: i16) -> Result<i16> {
    let api = known_api(api_key, version)?;
    Ok(api.request_header_version(version))
}

/// The response header version of `api_key` at `version` (ApiVersions answers with v0 always, so
/// a client that does not yet know the broker's versions can read the answer).
pub fn response_header_version(api_key: i16, version: i16) -> Result<i16> {
    let api = known_api(api_key, version)?;
    Ok(api.response_header_version(version))
}

fn known_api(api_key: i16, version: i16) -> Result<ApiKey> {
    ApiKey::try_from(api_key).map_err(|()| Error::UnsupportedVersion { api_key, version })
}

/// The correlation id at the front of a response frame, read before the frame's API is known,
/// so that a connection can find the request it answers.
pub fn peek_correlation_id(frame: &[u8]) -> Result<i32> {
    Reader::new(frame)
        .i32()
        .map_err(|e| header_error(-1, -1, e).into())
}

/// Reads the response header of `api_key` at `version` from the front of `frame`, and returns it
/// with the number of bytes it took.
pub fn decode_response_header(
    api_key: i16,
    version: i16,
    frame: &[u8],
) -> Result<(ResponseHeader, usize)> {
    let header_version = response_header_version(api_key, version)?;
    let mut r = Reader::new(frame);
    let correlation_id = r.i32().map_err(|e| header_error(api_key, version, e))?;
    if header_version >= 1 {
        skip_tagged_fields(&mut r).map_err(|e| header_error(api_key, version, e))?;
    }
    Ok((ResponseHeader { correlation_id }, r.pos()))
}

/// Skips a tagged-field section: a count, then per field a tag, a size and that many bytes.
pub(crate) fn skip_tagged_fields(r: &mut Reader<'_>) -> Result<(), WireError> {
    let count = r.uvarint()?;
    for _ in 0..count {
        r.uvarint()?;
        let size = r.uvarint()?;
        r.skip(size as usize)?;
    }
    Ok(())
}

fn header_error(api_key: i16, version: i16, e: WireError) -> DecodeError {
    wire_decode_error(api_key, version, Part::ResponseHeader, e)
}

/// A [`WireError`] as the [`DecodeError`] of a message part.
pub(crate) fn wire_decode_error(
    api_key: i16,
    version: i16,
    part: Part,
    e: WireError,
) -> DecodeError {
    let reason = match e {
        WireError::Truncated {
            needed, available, ..
        } => DecodeReason::Truncated { needed, available },
        WireError::InvalidVarint { .. } => DecodeReason::InvalidVarint,
    };
    DecodeError::new(api_key, version, part, e.offset(), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_header_skips_tagged_fields() {
        // correlation id 7, two tagged fields: tag 0 size 2, tag 5 size 0.
        let frame = [0, 0, 0, 7, 2, 0, 2, 0xaa, 0xbb, 5, 0, 0xee];
        // Fetch v12 has response header v1.
        let (h, used) = decode_response_header(1, 12, &frame).unwrap();
        assert_eq!(h.correlation_id, 7);
        assert_eq!(used, 11);
        // Fetch v11 has response header v0: the tag bytes belong to the body.
        let (_, used) = decode_response_header(1, 11, &frame).unwrap();
        assert_eq!(used, 4);
    }

    #[test]
    fn api_versions_always_answers_with_header_v0() {
        assert_eq!(response_header_version(18, 3).unwrap(), 0);
        assert_eq!(request_header_version(18, 3).unwrap(), 2);
        assert_eq!(request_header_version(18, 2).unwrap(), 1);
    }

    #[test]
    fn a_cut_header_says_where() {
        let err = decode_response_header(1, 12, &[0, 0, 0, 1, 1, 0, 9, 1]).unwrap_err();
        let Error::Decode(d) = err else {
            panic!("expected a decode error, got {err:?}")
        };
        assert_eq!(d.part, Part::ResponseHeader);
        assert_eq!(d.offset, 7);
        assert_eq!(
            d.reason,
            DecodeReason::Truncated {
                needed: 9,
                available: 1
            }
        );
        assert!(peek_correlation_id(&[0, 0, 1]).is_err());
        assert_eq!(peek_correlation_id(&[0, 0, 1, 0, 99]).unwrap(), 256);
    }
}
