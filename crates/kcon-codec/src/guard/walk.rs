//! The one interpreter of the schemas: reads a body field by field, exactly as kafka-protocol's
//! generated decoders would, checking every length and count against the bytes left.
//!
//! Termination: the tagged-field loop consumes at least two bytes per entry, and an array's
//! element loop runs at most `remaining` times (its count check takes every element to be at
//! least one byte long); both end at the end of the input. Recursion follows the schema tree,
//! whose depth is fixed.

use super::Checked;
use super::null_on_error::{NullLength, NullPatches};
use super::schema::{Elem, Field, Message, Null, StructDef, Ty};
use crate::error::{DecodeError, DecodeReason, Part};
use crate::header::wire_decode_error;
use crate::wire::{Reader, WireError};

/// The path of a message's top-level error code: the root struct's path prefix is empty, so
/// its fields' paths are their bare names (see `structs!`).
pub(super) const TOP_LEVEL_ERROR_CODE: &str = "error_code";

/// The path of a message's throttle time, a field of the root struct as its error code is.
#[cfg(test)]
pub(super) const TOP_LEVEL_THROTTLE_TIME_MS: &str = "throttle_time_ms";

/// Walks `body` against `msg` at `version`; Ok if every field reads. Bytes after the end of the
/// message are not read: the answer says where the message ends (see [`Checked`]), and lists
/// the nulls to read as empty (see [`super::null_on_error`]): none for any body kafka-protocol
/// decodes as it is.
pub(super) fn walk(msg: &Message, version: i16, body: &[u8]) -> Result<Checked, DecodeError> {
    let mut w = Walker {
        r: Reader::new(body),
        api_key: msg.api_key as i16,
        version,
        flexible: version >= msg.flexible,
        error_code: None,
        #[cfg(test)]
        throttle_time_ms: None,
        nulls: NullPatches::default(),
    };
    w.structure(msg.body)?;
    Ok(Checked {
        end: w.r.pos(),
        nulls: w.nulls,
        error_code: w.error_code,
        #[cfg(test)]
        throttle_time_ms: w.throttle_time_ms,
    })
}

struct Walker<'a> {
    r: Reader<'a>,
    api_key: i16,
    version: i16,
    flexible: bool,
    /// The top-level error code, once read.
    error_code: Option<i16>,
    /// The throttle time, once read.
    #[cfg(test)]
    throttle_time_ms: Option<i32>,
    /// Nulls taken for empty so far.
    nulls: NullPatches,
}

/// Which fixed-width length prefix a non-compact value has.
#[derive(Clone, Copy)]
enum Prefix {
    /// `int16`: strings.
    Short,
    /// `int32`: bytes and arrays.
    Long,
}

impl<'a> Walker<'a> {
    fn fail(
        &self,
        field: Option<&'static str>,
        offset: usize,
        reason: DecodeReason,
    ) -> DecodeError {
        let e = DecodeError::new(
            self.api_key,
            self.version,
            Part::ResponseBody,
            offset,
            reason,
        );
        match field {
            Some(f) => e.with_field(f),
            None => e,
        }
    }

    fn wire(&self, field: &'static str, e: WireError) -> DecodeError {
        wire_decode_error(self.api_key, self.version, Part::ResponseBody, e).with_field(field)
    }

    /// The fields present at this version in order, then the tagged-field section.
    fn structure(&mut self, def: &'static StructDef) -> Result<(), DecodeError> {
        for f in def.fields {
            if f.tag.is_none() && f.versions.contains(self.version) {
                self.value(f)?;
            }
        }
        if self.flexible {
            self.tagged_fields(def)?;
        }
        Ok(())
    }

    fn value(&mut self, f: &'static Field) -> Result<(), DecodeError> {
        match f.ty {
            Ty::Bool | Ty::I8 => self.fixed(f.path, 1),
            Ty::I16 if f.path == TOP_LEVEL_ERROR_CODE => {
                let code = self.r.i16().map_err(|e| self.wire(f.path, e))?;
                self.error_code = Some(code);
                Ok(())
            }
            Ty::I16 => self.fixed(f.path, 2),
            #[cfg(test)]
            Ty::I32 if f.path == TOP_LEVEL_THROTTLE_TIME_MS => {
                let ms = self.r.i32().map_err(|e| self.wire(f.path, e))?;
                self.throttle_time_ms = Some(ms);
                Ok(())
            }
            Ty::I32 => self.fixed(f.path, 4),
            Ty::I64 => self.fixed(f.path, 8),
            Ty::Uuid => self.fixed(f.path, 16),
            Ty::Str => self.string(f.path, f.null),
            Ty::Bytes => self.bytes(f.path, f.null).map(|_| ()),
            Ty::Struct(def) => self.structure(def),
            Ty::OptStruct(def) => {
                // kafka-protocol reads the struct only for a presence byte of exactly 1 and
                // takes any other value for "absent".
                let present = self.r.i8().map_err(|e| self.wire(f.path, e))?;
                if present == 1 {
                    self.structure(def)?;
                }
                Ok(())
            }
            Ty::Array(elem) => self.array(f, elem),
        }
    }

    fn fixed(&mut self, path: &'static str, n: usize) -> Result<(), DecodeError> {
        self.r.skip(n).map_err(|e| self.wire(path, e))
    }

    /// A length prefix: `None` for null (or for a null taken for empty, which is noted).
    /// Compact lengths are uvarint n+1 with 0 for null; fixed-width ones are n with -1 for null
    /// and any other negative value an error.
    fn length(
        &mut self,
        path: &'static str,
        prefix: Prefix,
        null: Null,
    ) -> Result<Option<u64>, DecodeError> {
        let start = self.r.pos();
        let n: i64 = if self.flexible {
            i64::from(self.r.uvarint().map_err(|e| self.wire(path, e))?) - 1
        } else {
            match prefix {
                Prefix::Short => i64::from(self.r.i16().map_err(|e| self.wire(path, e))?),
                Prefix::Long => i64::from(self.r.i32().map_err(|e| self.wire(path, e))?),
            }
        };
        match (n, null) {
            (-1, Null::Allowed) => Ok(None),
            (-1, Null::EmptyOnError) if self.error_code.is_some_and(|code| code != 0) => {
                let length = match (self.flexible, prefix) {
                    (true, _) => NullLength::Compact,
                    (false, Prefix::Short) => NullLength::Short,
                    (false, Prefix::Long) => NullLength::Long,
                };
                self.nulls.push(start, length);
                Ok(None)
            }
            // Null where the decoder's type has no null: kafka-protocol refuses it as a negative
            // length, and so do we.
            (n, _) if n < 0 => Err(self.fail(Some(path), start, DecodeReason::InvalidLength(n))),
            (n, _) => Ok(Some(n as u64)),
        }
    }

    /// Consumes a bytes value and returns its content (empty for null).
    fn bytes(&mut self, path: &'static str, null: Null) -> Result<&'a [u8], DecodeError> {
        let Some(len) = self.length(path, Prefix::Long, null)? else {
            return Ok(&[]);
        };
        self.content(path, len)
    }

    fn string(&mut self, path: &'static str, null: Null) -> Result<(), DecodeError> {
        let Some(len) = self.length(path, Prefix::Short, null)? else {
            return Ok(());
        };
        let start = self.r.pos();
        let s = self.content(path, len)?;
        // kafka-protocol builds a `StrBytes`, which checks UTF-8; checking here keeps the two
        // decoders agreeing on what is a valid response.
        if std::str::from_utf8(s).is_err() {
            return Err(self.fail(Some(path), start, DecodeReason::InvalidUtf8));
        }
        Ok(())
    }

    fn content(&mut self, path: &'static str, len: u64) -> Result<&'a [u8], DecodeError> {
        // A length past the end is a truncation, reported with the bytes it needed.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.r.take(len).map_err(|e| self.wire(path, e))
    }

    /// An array: the count must leave room for `count` elements of the smallest size an
    /// element can have, before any element is read.
    fn array(&mut self, f: &'static Field, elem: Elem) -> Result<(), DecodeError> {
        let start = self.r.pos();
        let Some(count) = self.length(f.path, Prefix::Long, f.null)? else {
            return Ok(());
        };
        // An element that could take no bytes at all still counts as one, so the loop below is
        // bounded by the input length whatever the schema says.
        let min = elem.min_size(self.version, self.flexible).max(1) as u64;
        let remaining = self.r.remaining();
        if count.saturating_mul(min) > remaining as u64 {
            return Err(self.fail(
                Some(f.path),
                start,
                DecodeReason::CountTooLarge { count, remaining },
            ));
        }
        for _ in 0..count {
            match elem {
                Elem::I8 => self.fixed(f.path, 1)?,
                Elem::I32 => self.fixed(f.path, 4)?,
                Elem::Str => self.string(f.path, Null::Refused)?,
                Elem::Struct(def) => self.structure(def)?,
            }
        }
        Ok(())
    }

    /// A tagged-field section: a count, then per field a tag, a size and the value.
    ///
    /// Known tags are read as their field's type and the size is ignored, because that is what
    /// kafka-protocol does (it never checks that the value filled the size); unknown tags are
    /// skipped by size; a known tag outside its field's versions is an error, as there.
    fn tagged_fields(&mut self, def: &'static StructDef) -> Result<(), DecodeError> {
        let start = self.r.pos();
        let count = self.r.uvarint().map_err(|e| self.wire(def.tags_path, e))?;
        // Each entry takes at least two bytes (a tag and a size), so a larger count cannot be
        // satisfied; refusing it up front keeps this loop's length proportional to the input.
        let remaining = self.r.remaining();
        if u64::from(count) * 2 > remaining as u64 {
            return Err(self.fail(
                Some(def.tags_path),
                start,
                DecodeReason::CountTooLarge {
                    count: u64::from(count),
                    remaining,
                },
            ));
        }
        for _ in 0..count {
            let at = self.r.pos();
            let tag = self.r.uvarint().map_err(|e| self.wire(def.tags_path, e))?;
            let size = self.r.uvarint().map_err(|e| self.wire(def.tags_path, e))?;
            match def.tagged(tag) {
                Some(f) if f.versions.contains(self.version) => self.value(f)?,
                Some(f) => {
                    return Err(self.fail(Some(f.path), at, DecodeReason::InvalidTag(tag)));
                }
                None => self
                    .r
                    .skip(size as usize)
                    .map_err(|e| self.wire(def.tags_path, e))?,
            }
        }
        Ok(())
    }
}
