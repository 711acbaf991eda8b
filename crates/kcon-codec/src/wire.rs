//! A bounds-checked reader over a byte slice: the primitive types of the Kafka protocol.
//!
//! Shared by the response header decoder, the response guard and the record decoders, so that
//! every length and varint from the wire is read, and checked, in one place. Nothing here
//! allocates.

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Fewer bytes left than the read needs.
    Truncated {
        /// Position of the read.
        offset: usize,
        /// Bytes it needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A varint continues past its longest legal encoding.
    InvalidVarint {
        /// Position of the varint.
        offset: usize,
    },
}

impl WireError {
    /// Where the failing read started.
    pub(crate) fn offset(self) -> usize {
        match self {
            WireError::Truncated { offset, .. } | WireError::InvalidVarint { offset } => offset,
        }
    }
}

/// A cursor over `buf`; `pos` is the offset of the next byte to read.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte.
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, consumed.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.take(n).map(|_| ())
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        // The slice has exactly N bytes: `take` returned it for that length.
        Ok(s.try_into().unwrap_or([0; N]))
    }

    #[inline]
    pub(crate) fn i8(&mut self) -> Result<i8, WireError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An unsigned varint of at most 5 bytes (the flexible-version lengths and tags).
    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u32, WireError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated {
                    offset: start,
                    needed: i + 1,
                    available: i,
                });
            };
            self.pos += 1;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.pos = start;
        Err(WireError::InvalidVarint { offset: start })
    }

    /// A zigzag-encoded signed varint of at most 5 bytes (record fields).
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<i32, WireError> {
        Ok(unzigzag32(self.uvarint()?))
    }

    /// A zigzag-encoded signed varlong of at most 10 bytes (record timestamp and offset deltas).
    #[inline]
    pub(crate) fn varlong(&mut self) -> Result<i64, WireError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated {
                    offset: start,
                    needed: i + 1,
                    available: i,
                });
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(unzigzag64(value));
            }
        }
        self.pos = start;
        Err(WireError::InvalidVarint { offset: start })
    }
}

/// Undoes the zigzag encoding of a signed varint.
#[inline(always)]
pub(crate) fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Undoes the zigzag encoding of a signed varlong.
#[inline(always)]
pub(crate) fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as an unsigned varint.
#[inline]
pub(crate) fn put_uvarint(buf: &mut impl bytes::BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Appends `v` zigzag-encoded as a signed varint (or varlong: the encoding is the same).
#[inline]
pub(crate) fn put_varlong(buf: &mut impl bytes::BufMut, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Bytes `v` takes as a zigzag varint or varlong.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_big_endian_primitives_and_reports_truncation() {
        let mut r = Reader::new(&[0xff, 0x00, 0x01, 0, 0, 0, 2, 9]);
        assert_eq!(r.i8(), Ok(-1));
        assert_eq!(r.i16(), Ok(1));
        assert_eq!(r.i32(), Ok(2));
        assert_eq!(
            r.i16(),
            Err(WireError::Truncated {
                offset: 7,
                needed: 2,
                available: 1
            })
        );
        assert_eq!(r.pos(), 7, "a failed read consumes nothing");
    }

    #[test]
    fn a_sixth_varint_byte_is_an_error() {
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(r.uvarint(), Err(WireError::InvalidVarint { offset: 0 }));
        let mut r = Reader::new(&[0xff; 11]);
        assert_eq!(r.varlong(), Err(WireError::InvalidVarint { offset: 0 }));
    }

    proptest! {
        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            prop_assert_eq!(buf.len(), varlong_len(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varlong(), Ok(v));
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, i64::from(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint(), Ok(v));
        }

        #[test]
        fn uvarint_round_trips(v in any::<u32>()) {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, u64::from(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.uvarint(), Ok(v));
        }
    }
}
