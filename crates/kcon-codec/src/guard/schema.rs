//! The schema language of the guard: a message is a tree of [`StructDef`]s, each a list of
//! [`Field`]s with the versions they exist in.
//!
//! Everything here is `const` data, so the schemas live in read-only memory and walking them
//! allocates nothing. A schema cannot be cyclic: a `const` that refers to itself does not
//! compile, so the depth of every walk is fixed by the schema text.

use kafka_protocol::messages::ApiKey;

/// An inclusive range of message versions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Versions {
    min: i16,
    max: i16,
}

impl Versions {
    pub(super) const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Every version.
pub(super) const ALL: Versions = Versions {
    min: 0,
    max: i16::MAX,
};

/// `min` and every later version.
pub(super) const fn since(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

/// Every version up to `max`, inclusive.
pub(super) const fn until(max: i16) -> Versions {
    Versions { min: 0, max }
}

/// `min` to `max`, inclusive.
pub(super) const fn only(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// The wire type of a field. Strings, bytes and arrays switch to their compact (uvarint-length)
/// encodings in the message's flexible versions.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Bool,
    I8,
    I16,
    I32,
    I64,
    Uuid,
    Str,
    Bytes,
    /// A struct inline (no length, no presence byte); only used by tagged fields.
    Struct(&'static StructDef),
    /// A presence byte (1 = present; any other value = absent), then the struct.
    OptStruct(&'static StructDef),
    Array(Elem),
}

/// The element type of an array.
#[derive(Debug, Clone, Copy)]
pub(super) enum Elem {
    I8,
    I32,
    Str,
    Struct(&'static StructDef),
}

/// An array of structs.
pub(super) const fn array(def: &'static StructDef) -> Ty {
    Ty::Array(Elem::Struct(def))
}

/// An array of `int8`.
pub(super) const I8_ARRAY: Ty = Ty::Array(Elem::I8);

/// An array of `int32`.
pub(super) const I32_ARRAY: Ty = Ty::Array(Elem::I32);

/// An array of (non-null) strings.
pub(super) const STR_ARRAY: Ty = Ty::Array(Elem::Str);

/// One field of a struct.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    /// Path of the field from the message root, for error messages.
    pub(super) path: &'static str,
    pub(super) ty: Ty,
    /// Versions in which the field is on the wire (for a tagged field: in which its tag is
    /// accepted; kafka-protocol rejects a known tag outside them).
    pub(super) versions: Versions,
    /// What a null (length -1, or compact length 0) means here.
    pub(super) null: Null,
    /// The tag of a tagged field: it is read only from the struct's tagged-field section.
    pub(super) tag: Option<u32>,
}

impl Field {
    pub(super) const fn new(path: &'static str, ty: Ty, versions: Versions) -> Field {
        Field {
            path,
            ty,
            versions,
            null: Null::Refused,
            tag: None,
        }
    }

    pub(super) const fn nullable(mut self) -> Field {
        self.null = Null::Allowed;
        self
    }

    /// See [`Null::EmptyOnError`].
    pub(super) const fn null_on_error(mut self) -> Field {
        self.null = Null::EmptyOnError;
        self
    }

    pub(super) const fn tag(mut self, tag: u32) -> Field {
        self.tag = Some(tag);
        self
    }
}

/// How the walk takes a null string, bytes or array.
///
/// kafka-protocol decides nullability by the Rust type (`Option<_>`), the same at every
/// version, so this is per field, not per version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Null {
    /// The decoder's type has no null: kafka-protocol refuses it as a negative length, and so
    /// does the walk.
    Refused,
    /// The decoder's type is an `Option`.
    Allowed,
    /// The decoder's type has no null, but in an answer whose top-level `error_code` (read
    /// before this field) is non-zero a null is taken for empty: the walk notes where, and
    /// [`super::null_on_error`] rewrites it to an empty value before decoding. Only for the
    /// fields a real broker is known to null; see that module for which and why.
    EmptyOnError,
}

/// A struct: its fields in wire order, then (in flexible versions) a tagged-field section.
#[derive(Debug)]
pub(super) struct StructDef {
    /// Path of the struct's tagged-field section, for error messages.
    pub(super) tags_path: &'static str,
    pub(super) fields: &'static [Field],
}

impl StructDef {
    /// The fewest bytes the struct can take at `version`: an array of n of them needs at least
    /// n times this many bytes, which is what bounds the allocation an array count can cause.
    pub(super) fn min_size(&self, version: i16, flexible: bool) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .filter(|f| f.tag.is_none() && f.versions.contains(version))
            .map(|f| f.ty.min_size(version, flexible))
            .sum();
        // The tagged-field count takes at least one byte.
        fields + usize::from(flexible)
    }

    /// The field with tag `tag`, if the struct has one (at any version).
    pub(super) fn tagged(&self, tag: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.tag == Some(tag))
    }
}

impl Ty {
    /// The fewest bytes a value of this type takes at `version`.
    pub(super) fn min_size(self, version: i16, flexible: bool) -> usize {
        match self {
            Ty::Bool | Ty::I8 | Ty::OptStruct(_) => 1,
            Ty::I16 => 2,
            Ty::I32 => 4,
            Ty::I64 => 8,
            Ty::Uuid => 16,
            // Null or empty: a one-byte uvarint, or the fixed-width length.
            Ty::Str if flexible => 1,
            Ty::Str => 2,
            Ty::Bytes | Ty::Array(_) if flexible => 1,
            Ty::Bytes | Ty::Array(_) => 4,
            Ty::Struct(def) => def.min_size(version, flexible),
        }
    }
}

impl Elem {
    /// The fewest bytes one element takes at `version`.
    pub(super) fn min_size(self, version: i16, flexible: bool) -> usize {
        match self {
            Elem::I8 => 1,
            Elem::I32 => 4,
            Elem::Str => Ty::Str.min_size(version, flexible),
            Elem::Struct(def) => def.min_size(version, flexible),
        }
    }
}

/// The response schema of one API.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) api_key: ApiKey,
    /// The versions this schema was checked against kafka-protocol's decoder for: exactly
    /// kcon's supported range (a test holds the two together).
    pub(super) versions: Versions,
    /// The first flexible version (`i16::MAX` for an API that has none).
    pub(super) flexible: i16,
    pub(super) body: &'static StructDef,
}

/// An API that has no flexible version.
pub(super) const NEVER: i16 = i16::MAX;

/// Defines `StructDef` consts: `NAME = "path.prefix." { field: TYPE, VERSIONS [, flag]*; ... }`.
/// Each field's error path is the prefix followed by the field name; flags are the [`Field`]
/// builder methods (`nullable`, `null_on_error`, `tag(n)`).
macro_rules! structs {
    ($(
        $id:ident = $prefix:literal {
            $( $name:ident : $ty:expr, $vers:expr $(, $flag:ident $(($arg:expr))?)* ; )*
        }
    )*) => {
        $(
            const $id: StructDef = StructDef {
                tags_path: concat!($prefix, "_tagged_fields"),
                fields: &[
                    $(
                        Field::new(concat!($prefix, stringify!($name)), $ty, $vers)
                            $(.$flag($($arg)?))*,
                    )*
                ],
            };
        )*
    };
}

pub(super) use structs;
