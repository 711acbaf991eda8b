//! Size-prefixed frames: a big-endian `i32` length, then that many bytes.
//!
//! Reading is incremental: [`FrameDecoder::decode`] takes whatever bytes have arrived and returns
//! `Ok(None)` until a whole frame is there. The size prefix is checked the moment its four bytes
//! are in, so a negative or oversized frame is refused before a byte is allocated for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// The default largest frame accepted: `receive.message.max.bytes`, 100 MiB as in the Java client
/// and librdkafka.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Bytes of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Splits a byte stream into frames, refusing frames larger than its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame_size` bytes (`receive.message.max.bytes`).
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder { max_frame_size }
    }

    /// The largest frame accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes one frame off the front of `buf`, without its size prefix.
    ///
    /// `Ok(None)`: the frame is not complete yet; `buf` is left as it was, so call again when more
    /// bytes have arrived. An error means the stream is broken: the connection must be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        let Some(size) = self.peek_size(buf)? else {
            return Ok(None);
        };
        if buf.len() - SIZE_PREFIX_LEN < size {
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// The size of the frame at the front of `buf`, once its prefix has arrived and been checked.
    ///
    /// A reader can use it to reserve room for the rest of the frame.
    pub fn peek_size(&self, buf: &[u8]) -> Result<Option<usize>> {
        let Some(prefix) = buf.first_chunk::<SIZE_PREFIX_LEN>() else {
            return Ok(None);
        };
        let size = i32::from_be_bytes(*prefix);
        match usize::try_from(size) {
            Ok(size) if size <= self.max_frame_size => Ok(Some(size)),
            _ => Err(Error::FrameSize {
                size: i64::from(size),
                max: self.max_frame_size,
            }),
        }
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

/// Decodes one frame with the default maximum ([`DEFAULT_MAX_FRAME_SIZE`]).
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Bytes>> {
    FrameDecoder::default().decode(buf)
}

/// Appends a frame of whatever `write` puts into the buffer, with its size prefix in front.
///
/// The prefix is reserved first and filled in once the length is known, so the content is
/// written once, in place.
pub fn write_frame<E>(
    buf: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let start = buf.len();
    buf.put_i32(0);
    match write(buf) {
        Ok(()) => {
            let len = buf.len() - start - SIZE_PREFIX_LEN;
            let len = i32::try_from(len).unwrap_or(i32::MAX);
            buf[start..start + SIZE_PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            // Leave no half frame behind: a later frame in the same buffer must stay aligned.
            buf.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(content: &[u8]) -> Vec<u8> {
        let mut v = (content.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(content);
        v
    }

    #[test]
    fn asks_for_more_until_the_frame_is_whole() {
        let wire = framed(b"hello");
        let d = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert_eq!(d.decode(&mut buf).unwrap(), None, "after {i} bytes");
            assert_eq!(buf.len(), i, "an incomplete frame must not be consumed");
            buf.put_u8(*byte);
        }
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn splits_back_to_back_frames_and_keeps_the_tail() {
        let mut wire = framed(b"a");
        wire.extend(framed(b""));
        wire.extend(framed(b"bcd"));
        wire.extend(&framed(b"efgh")[..6]);
        let mut buf = BytesMut::from(&wire[..]);
        let d = FrameDecoder::default();
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"bcd"[..]));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn refuses_negative_and_oversized_sizes_before_the_body_arrives() {
        let d = FrameDecoder::new(1024);
        let mut neg = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            d.decode(&mut neg),
            Err(Error::FrameSize {
                size: -1,
                max: 1024
            })
        );
        let mut big = BytesMut::from(&1025i32.to_be_bytes()[..]);
        assert_eq!(
            d.decode(&mut big),
            Err(Error::FrameSize {
                size: 1025,
                max: 1024
            })
        );
        let mut exact = BytesMut::from(&1024i32.to_be_bytes()[..]);
        assert_eq!(d.decode(&mut exact), Ok(None));
        assert_eq!(d.peek_size(&exact), Ok(Some(1024)));
    }

    #[test]
    fn write_frame_prefixes_the_length_and_undoes_a_failed_write() {
        let mut buf = BytesMut::new();
        write_frame(&mut buf, |b| {
            b.put_slice(b"xyz");
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(&buf[..], &framed(b"xyz")[..]);
        let err = write_frame(&mut buf, |b| {
            b.put_slice(b"partial");
            Err("nope")
        });
        assert_eq!(err, Err("nope"));
        assert_eq!(&buf[..], &framed(b"xyz")[..]);
    }
}
