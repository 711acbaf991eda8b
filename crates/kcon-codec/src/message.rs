//! Typed requests and responses over `kafka-protocol`'s message types.
//!
//! Client side: [`encode_request`] writes a whole frame (size, header, body);
//! [`decode_response`] reads one back. Every response is first walked by kcon's guard, which
//! checks each length and array count against the bytes actually present, because
//! `kafka-protocol` reserves `Vec` capacity straight from counts on the wire. Only then is the
//! body decoded, up to where the guard found the message to end. A body that ends early is an
//! error; bytes after the message are ignored and logged at debug level, as the Java client
//! and librdkafka ignore them (see the guard's module doc for why).
//!
//! The guard is as strict as the decoder but for one thing: in an error answer to
//! FindCoordinator, JoinGroup or SyncGroup, a null in the few non-nullable fields librdkafka's
//! mock cluster nulls there (host, leader, member id, assignment) is read as empty, as
//! librdkafka reads it. Successful answers are read strictly. See the guard's `null_on_error`
//! module.
//!
//! Broker side, for the scripted peers of kcon's tests: [`decode_request`] and
//! [`encode_response`]. Requests come from kcon's own code, not from the network, so they are
//! not guarded.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tracing::debug;

use crate::error::{DecodeError, DecodeReason, Error, Part, Result, api_name};
use crate::frame::write_frame;
use crate::guard;
use crate::header::{ResponseHeader, decode_response_header};

/// Appends `request` at `version` to `buf` as one frame: size, request header, body.
///
/// On error nothing is appended.
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&StrBytes>,
    version: i16,
    request: &R,
) -> Result<()> {
    check_version::<R>(version)?;
    let header = request_header::<R>(correlation_id, client_id, version);
    let header_version = R::header_version(version);
    write_frame(buf, |buf| {
        // Room for all of it first: a Produce request carries its batches, up to
        // `max.request.size`, and a buffer grown as it is written would copy them again at
        // every doubling.
        let size = header
            .compute_size(header_version)?
            .saturating_add(request.compute_size(version)?);
        buf.reserve(size);
        header
            .encode(buf, header_version)
            .and_then(|()| request.encode(buf, version))
    })
    .map_err(|e| Error::Encode {
        api_key: R::KEY,
        version,
        reason: e.to_string(),
    })
}

/// Decodes a response frame (without its size prefix) to `R` sent at `version`.
///
/// Fails with [`Error::UnsupportedVersion`] for a version kcon does not speak (and so has no
/// guard for), and with [`Error::Decode`] for bytes that do not start with one valid response.
/// Bytes after the response are not read: they are logged at debug level and dropped. The one
/// other leniency is described in the module doc: a null where librdkafka's mock cluster puts
/// one in an error answer comes back empty.
pub fn decode_response<R: Request>(
    frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, R::Response)> {
    check_version::<R>(version)?;
    if !guard::covers(R::KEY, version) {
        return Err(Error::UnsupportedVersion {
            api_key: R::KEY,
            version,
        });
    }
    let (header, header_len) = decode_response_header(R::KEY, version, &frame)?;
    let body = frame.slice(header_len..);
    let checked = guard::check_response(R::KEY, version, &body)?;
    let trailing = body.len() - checked.end;
    if trailing > 0 {
        // Not an error: the Java client and librdkafka stop reading at the message's last field
        // too, and librdkafka's mock cluster ends every flexible Metadata answer with one byte
        // more. The message itself was fully read and checked, and nothing is read from these.
        debug!(
            api = %api_name(R::KEY),
            version,
            bytes = trailing,
            "ignoring bytes after the end of a response"
        );
    }
    let body = checked.nulls.apply(body.slice(..checked.end));
    // Exactly the message: a decoder that stops elsewhere than the guard disagrees with it,
    // and that is an error rather than a guess at which of the two is right.
    let response = decode_exact(R::KEY, version, Part::ResponseBody, body)?;
    Ok((header, response))
}

/// Reads the request header at the front of a request frame (without its size prefix) and
/// returns it with the body that follows.
pub fn decode_request_header(mut frame: Bytes) -> Result<(RequestHeader, Bytes)> {
    let (api_key, api_version) = match frame.first_chunk::<4>() {
        Some(&[a, b, c, d]) => (i16::from_be_bytes([a, b]), i16::from_be_bytes([c, d])),
        None => {
            return Err(DecodeError::new(
                -1,
                -1,
                Part::RequestHeader,
                0,
                DecodeReason::Truncated {
                    needed: 4,
                    available: frame.len(),
                },
            )
            .into());
        }
    };
    let header_version = crate::header::request_header_version(api_key, api_version)?;
    let start = frame.len();
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| {
        DecodeError::new(
            api_key,
            api_version,
            Part::RequestHeader,
            start - frame.len(),
            DecodeReason::Other(e.to_string()),
        )
    })?;
    Ok((header, frame))
}

/// Decodes a request body of type `R` at `version`.
pub fn decode_request<R: Request>(body: Bytes, version: i16) -> Result<R> {
    check_version::<R>(version)?;
    decode_exact(R::KEY, version, Part::RequestBody, body)
}

/// Appends `response` to `buf` as one frame: size, response header, body.
pub fn encode_response<R: Request>(
    buf: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    response: &R::Response,
) -> Result<()> {
    check_version::<R>(version)?;
    let header =
        kafka_protocol::messages::ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::Response::header_version(version);
    write_frame(buf, |buf| {
        header
            .encode(buf, header_version)
            .and_then(|()| response.encode(buf, version))
    })
    .map_err(|e| Error::Encode {
        api_key: R::KEY,
        version,
        reason: e.to_string(),
    })
}

/// The header of request `R` at `version`.
pub(crate) fn request_header<R: Request>(
    correlation_id: i32,
    client_id: Option<&StrBytes>,
    version: i16,
) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.cloned())
}

pub(crate) fn check_version<R: Request>(version: i16) -> Result<()> {
    let range = R::VERSIONS;
    if version < range.min || version > range.max {
        return Err(Error::UnsupportedVersion {
            api_key: R::KEY,
            version,
        });
    }
    Ok(())
}

/// Decodes `T` from all of `body`: bytes left over are an error, as are bytes missing.
///
/// A response body arrives here cut where the guard found its end, so leftovers mean the guard
/// and the decoder disagree on where the message ends. A request body comes from kcon's own
/// encoder (through a scripted peer), where leftovers mean a bug in one of the two.
fn decode_exact<T: Decodable>(api_key: i16, version: i16, part: Part, body: Bytes) -> Result<T> {
    let len = body.len();
    let mut buf = body;
    let value = T::decode(&mut buf, version).map_err(|e| {
        DecodeError::new(
            api_key,
            version,
            part,
            len - buf.remaining(),
            DecodeReason::Other(e.to_string()),
        )
    })?;
    if buf.has_remaining() {
        return Err(DecodeError::new(
            api_key,
            version,
            part,
            len - buf.remaining(),
            DecodeReason::TrailingBytes {
                remaining: buf.remaining(),
            },
        )
        .into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use kafka_protocol::messages::{
        HeartbeatRequest, HeartbeatResponse, MetadataRequest, MetadataResponse,
    };

    #[test]
    fn request_frame_round_trips_through_the_peer_side() {
        let mut buf = BytesMut::new();
        let req = HeartbeatRequest::default()
            .with_group_id(StrBytes::from_static_str("g").into())
            .with_generation_id(3)
            .with_member_id(StrBytes::from_static_str("m-1"));
        let client = StrBytes::from_static_str("kcon");
        encode_request(&mut buf, 42, Some(&client), 4, &req).unwrap();
        let frame = decode_frame(&mut buf).unwrap().unwrap();
        let (header, body) = decode_request_header(frame).unwrap();
        assert_eq!(header.request_api_key, 12);
        assert_eq!(header.request_api_version, 4);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("kcon"));
        assert_eq!(decode_request::<HeartbeatRequest>(body, 4).unwrap(), req);
    }

    /// A request is written into room made for all of it at once: a Produce request's batch is
    /// copied once, not again at each doubling of a buffer grown as it is written.
    #[test]
    fn a_request_is_written_into_room_made_for_all_of_it() {
        use kafka_protocol::messages::ProduceRequest;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let batch = Bytes::from(vec![7u8; 1_000_000]);
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(StrBytes::from_static_str("t").into())
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone())),
                    ]),
            ]);
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 1, None, 11, &req).unwrap();
        assert!(buf.len() > batch.len());
        assert_eq!(
            buf.capacity(),
            buf.len(),
            "one allocation of the frame's size"
        );
        let frame = decode_frame(&mut buf).unwrap().unwrap();
        let (header, _) = decode_request_header(frame).unwrap();
        assert_eq!(header.request_api_key, 0);
    }

    #[test]
    fn response_round_trips_at_every_supported_version() {
        for version in 0..=4 {
            let resp = HeartbeatResponse::default()
                .with_error_code(27)
                .with_throttle_time_ms(if version >= 1 { 5 } else { 0 });
            let mut buf = BytesMut::new();
            encode_response::<HeartbeatRequest>(&mut buf, 9, version, &resp).unwrap();
            let frame = decode_frame(&mut buf).unwrap().unwrap();
            let (h, back) = decode_response::<HeartbeatRequest>(frame, version).unwrap();
            assert_eq!(h.correlation_id, 9);
            assert_eq!(back, resp, "v{version}");
        }
    }

    /// A Metadata v12 response frame with one broker and one topic of two partitions.
    fn metadata_v12_frame() -> (MetadataResponse, Bytes) {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::{BrokerId, TopicName};
        let partitions = (0..2)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(1))
                    .with_replica_nodes(vec![BrokerId(1)])
                    .with_isr_nodes(vec![BrokerId(1)])
            })
            .collect();
        let resp = MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092),
            ])
            .with_cluster_id(Some(StrBytes::from_static_str("mock")))
            .with_controller_id(BrokerId(1))
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("T"))))
                    .with_partitions(partitions),
            ]);
        let mut buf = BytesMut::new();
        encode_response::<MetadataRequest>(&mut buf, 5, 12, &resp).unwrap();
        (resp, decode_frame(&mut buf).unwrap().unwrap())
    }

    #[test]
    fn bytes_after_the_response_are_ignored() {
        let (resp, frame) = metadata_v12_frame();
        // One empty tagged-field section more, as librdkafka's mock cluster sends; bytes that
        // would ask for a huge array or run a varint past its five bytes if anything read
        // them; a whole second copy of the message.
        let tails: [&[u8]; 4] = [
            &[0],
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0x80; 64],
            &frame[4..],
        ];
        for tail in tails {
            let mut long = frame.to_vec();
            long.extend_from_slice(tail);
            let (h, back) = decode_response::<MetadataRequest>(long.into(), 12)
                .unwrap_or_else(|e| panic!("{} bytes after: {e}", tail.len()));
            assert_eq!(h.correlation_id, 5);
            assert_eq!(back, resp);
        }

        // A version without tagged fields too: Heartbeat v0 is one error code.
        let mut buf = BytesMut::new();
        let answer = HeartbeatResponse::default().with_error_code(27);
        encode_response::<HeartbeatRequest>(&mut buf, 1, 0, &answer).unwrap();
        let mut long = decode_frame(&mut buf).unwrap().unwrap().to_vec();
        long.extend_from_slice(&[0, 0, 0, 1]);
        let (_, back) = decode_response::<HeartbeatRequest>(long.into(), 0).unwrap();
        assert_eq!(back, answer);
    }

    #[test]
    fn a_response_that_ends_early_is_an_error() {
        let (_, frame) = metadata_v12_frame();
        // The correlation id and the header's tagged-field section take 5 bytes; every cut
        // after them leaves the body short of its last field, found as a field or an array
        // that needs more bytes than are left.
        for cut in 5..frame.len() {
            let err = decode_response::<MetadataRequest>(frame.slice(..cut), 12).unwrap_err();
            let Error::Decode(d) = &err else {
                panic!("cut at {cut}: {err:?}")
            };
            assert_eq!(d.part, Part::ResponseBody, "cut at {cut}");
            assert!(
                matches!(
                    d.reason,
                    DecodeReason::Truncated { .. } | DecodeReason::CountTooLarge { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_version_outside_the_message_range_is_refused_before_encoding() {
        let mut buf = BytesMut::new();
        let err = encode_request(&mut buf, 1, None, 99, &MetadataRequest::default()).unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedVersion {
                api_key: 3,
                version: 99
            }
        );
        assert!(buf.is_empty());
    }
}
