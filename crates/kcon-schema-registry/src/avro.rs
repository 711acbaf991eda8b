//! Avro: the writer's schema from the registry, resolved to the application's reader schema
//! when it gives one (Avro's schema resolution: fields added with defaults, removed, promoted),
//! into a serde type, Avro's own `Value`, or JSON.
//!
//! Before `apache-avro` decodes a payload, kcon walks it once with the writer's schema and
//! refuses what could make the decoder allocate or recurse without bound: a string, bytes or
//! block count longer than the bytes left (the decoder reserves what a length says, up to
//! 512 MiB, and an array's count times the size of a value), nesting deeper than
//! [`MAX_DEPTH`], more values than [`MAX_VALUES_PER_BYTE`] per payload byte, a union or enum
//! index out of range, a `bytes` decimal longer than its precision needs (its digits are worked
//! out in time quadratic in its length).
//!
//! Into JSON ([`AvroJsonDeserializer`]), a decimal is a string of its number with its scale:
//! Avro's `Value::Decimal` holds only the unscaled integer, so the value is read beside the
//! schema it was decoded to (the reader's, when there is one), whose decimal types carry the
//! scale. The digits come from the big-endian two's complement by kcon's own division, so any
//! precision is written whole.
//!
//! With a reader schema, `bytes` decimals are sign-extended to the length their precision can
//! need before the value is resolved ([`widen_decimals`]): apache-avro's resolution refuses
//! shorter ones, and Confluent's serializers write them as short as the value allows.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use std::borrow::Borrow;
use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, RecordSchema, ResolvedSchema, Schema};
use apache_avro::types::Value;
use bytes::Bytes;
use kcon_core::deserialize::{Context, DeserializeError, Deserializer};
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::client::{SchemaRegistry, SchemaType};
use crate::framing::{ParsedKey, SchemaError, SubjectLookup, framed};

/// The deepest nesting of records, arrays, maps and unions a payload may have.
pub const MAX_DEPTH: usize = 64;
/// The most values (of any type, nested ones included) a payload may hold per byte, plus 1024.
pub const MAX_VALUES_PER_BYTE: usize = 8;

/// A writer's schema, parsed with the schemas it refers to.
#[derive(Clone)]
struct Writer {
    schema: Schema,
    references: Vec<Schema>,
}

/// A writer's (or the reader's) schema as a deserializer keeps it: with its named types by full
/// name, for the payload walk and the JSON walk (resolved once, not per record).
struct Parsed {
    writer: Writer,
    names: Names,
    /// Whether the schema has a `bytes` decimal anywhere (see [`widen_decimals`]).
    bytes_decimals: bool,
}

impl Parsed {
    fn new(writer: Writer, names: Names) -> Parsed {
        let bytes_decimals =
            has_bytes_decimal(&writer.schema) || names.values().any(has_bytes_decimal);
        Parsed {
            writer,
            names,
            bytes_decimals,
        }
    }
}

type Names = HashMap<Name, Schema>;

struct Core {
    registry: SchemaRegistry,
    subject: SubjectLookup,
    reader: Option<Arc<Parsed>>,
    parsed: Cache<ParsedKey, Parsed, SchemaError>,
}

impl Core {
    fn new(registry: SchemaRegistry) -> Core {
        Core {
            parsed: Cache::new(registry.capacity()),
            registry,
            subject: SubjectLookup::None,
            reader: None,
        }
    }

    /// A core with this one's settings and an empty cache.
    fn unshared(&self) -> Core {
        Core {
            parsed: Cache::new(self.registry.capacity()),
            registry: self.registry.clone(),
            subject: self.subject,
            reader: self.reader.clone(),
        }
    }

    async fn writer(
        &self,
        schema: kcon_codec::schema_id::SchemaRef,
        subject: Option<String>,
    ) -> Result<Arc<Parsed>, SchemaError> {
        let key = (schema, subject);
        self.parsed
            .get_or_load(&key, || async {
                let registered = self.registry.schema(schema, key.1.as_deref(), None).await?;
                if registered.schema_type != SchemaType::Avro {
                    return Err(SchemaError::unusable(
                        "avro",
                        schema,
                        format!("a {} schema, not Avro", registered.schema_type),
                    ));
                }
                let references = self.registry.references(&registered, None).await?;
                let texts: Vec<&str> = references.iter().map(|(_, s)| s.schema.as_str()).collect();
                let (schema_parsed, references) = if texts.is_empty() {
                    (Schema::parse_str(&registered.schema), Vec::new())
                } else {
                    match Schema::parse_str_with_list(&registered.schema, texts) {
                        Ok((s, refs)) => (Ok(s), refs),
                        Err(e) => (Err(e), Vec::new()),
                    }
                };
                let schema_parsed = schema_parsed.map_err(|e| {
                    SchemaError::unusable("avro", schema, format!("not an Avro schema: {e}"))
                })?;
                let mut schemata: Vec<&Schema> = vec![&schema_parsed];
                schemata.extend(references.iter());
                let names: Names = ResolvedSchema::try_from(schemata)
                    .map_err(|e| SchemaError::unusable("avro", schema, e))?
                    .get_names()
                    .iter()
                    .map(|(n, s)| (n.clone(), (*s).clone()))
                    .collect();
                Ok(Parsed::new(
                    Writer {
                        schema: schema_parsed,
                        references,
                    },
                    names,
                ))
            })
            .await
    }

    async fn value(
        &self,
        data: Option<&Bytes>,
        context: Context<'_>,
    ) -> Result<Value, DeserializeError> {
        self.decoded(data, context).await.map(|(value, _)| value)
    }

    /// The value, and the schema it has: the reader's if there is one, else the writer's.
    async fn decoded(
        &self,
        data: Option<&Bytes>,
        context: Context<'_>,
    ) -> Result<(Value, Arc<Parsed>), DeserializeError> {
        let framed = framed(data, &context, false)?;
        let subject = self.subject.subject(&context);
        let parsed = self.writer(framed.schema, subject).await?;
        let writer = &parsed.writer;
        let field = context.field;
        let bad = |what: String| {
            DeserializeError::permanent(
                "avro",
                format!(
                    "the {field} does not read with schema {}: {what}",
                    framed.schema
                ),
            )
        };
        check(&writer.schema, &parsed.names, framed.payload).map_err(bad)?;
        let mut schemata: Vec<&Schema> = vec![&writer.schema];
        schemata.extend(writer.references.iter());
        let mut input = framed.payload;
        let mut value = apache_avro::from_avro_datum_schemata(
            &writer.schema,
            schemata[1..].to_vec(),
            &mut input,
            None,
        )
        .map_err(|e| bad(e.to_string()))?;
        // Resolved as `from_avro_datum_reader_schemata` does, with `bytes` decimals widened
        // first.
        if let Some(reader) = &self.reader {
            if parsed.bytes_decimals {
                widen_decimals(&mut value, &writer.schema, &parsed.names, &None);
            }
            value = value
                .resolve_schemata(
                    &reader.writer.schema,
                    reader.writer.references.iter().collect(),
                )
                .map_err(|e| bad(e.to_string()))?;
        }
        let shape = self.reader.as_ref().unwrap_or(&parsed).clone();
        Ok((value, shape))
    }
}

/// An Avro reader schema given to a deserializer (or a schema it refers to) that does not
/// parse or resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSchemaError {
    reason: String,
}

impl std::fmt::Display for ReaderSchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the Avro reader schema does not parse: {}", self.reason)
    }
}

impl std::error::Error for ReaderSchemaError {}

macro_rules! builder_methods {
    () => {
        /// Resolves every record to `schema` (Avro JSON), the application's reader schema:
        /// fields the writer lacks take their defaults, fields the reader lacks are dropped.
        pub fn reader_schema(self, schema: &str) -> Result<Self, ReaderSchemaError> {
            self.reader_schemata(schema, std::iter::empty::<&str>())
        }

        /// As [`reader_schema`](Self::reader_schema), with the named schemas it refers to.
        pub fn reader_schemata<'s>(
            mut self,
            schema: &str,
            references: impl IntoIterator<Item = &'s str>,
        ) -> Result<Self, ReaderSchemaError> {
            let refs: Vec<&str> = references.into_iter().collect();
            let (schema, references) = if refs.is_empty() {
                (Schema::parse_str(schema), Vec::new())
            } else {
                match Schema::parse_str_with_list(schema, refs) {
                    Ok((s, r)) => (Ok(s), r),
                    Err(e) => (Err(e), Vec::new()),
                }
            };
            let unusable = |e: &dyn std::fmt::Display| ReaderSchemaError {
                reason: e.to_string(),
            };
            let schema = schema.map_err(|e| unusable(&e))?;
            let mut schemata: Vec<&Schema> = vec![&schema];
            schemata.extend(references.iter());
            let names: Names = ResolvedSchema::try_from(schemata)
                .map_err(|e| unusable(&e))?
                .get_names()
                .iter()
                .map(|(n, s)| (n.clone(), (*s).clone()))
                .collect();
            let reader = Arc::new(Parsed::new(Writer { schema, references }, names));
            crate::configure(&mut self.core, Core::unshared, |c| c.reader = Some(reader));
            Ok(self)
        }

        /// Names `subject` in every schema lookup (see [`SubjectLookup`]).
        pub fn subject_lookup(mut self, subject: SubjectLookup) -> Self {
            crate::configure(&mut self.core, Core::unshared, |c| c.subject = subject);
            self
        }
    };
}

deserializer_type! {
    /// Avro into any serde type `T`, through Avro's own value (with the reader schema, if given).
    ///
    /// ```no_run
    /// # fn f(registry: kcon_schema_registry::SchemaRegistry) -> Result<(), Box<dyn std::error::Error>> {
    /// use kcon_schema_registry::AvroDeserializer;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Payment { id: String, amount: f64, currency: String }
    ///
    /// let value = AvroDeserializer::<Payment>::new(registry).reader_schema(
    ///     r#"{"type":"record","name":"Payment","fields":[
    ///         {"name":"id","type":"string"},{"name":"amount","type":"double"},
    ///         {"name":"currency","type":"string","default":"EUR"}]}"#,
    /// )?;
    /// # let _ = value;
    /// # Ok(())
    /// # }
    /// ```
    AvroDeserializer<T>
}

impl<T: DeserializeOwned + Send> Deserializer for AvroDeserializer<T> {
    type Output = T;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<T, DeserializeError> {
        let value = self.core.value(data, context).await?;
        apache_avro::from_value::<T>(&value).map_err(|e| {
            DeserializeError::permanent(
                "avro",
                format!(
                    "the {} is not a {}: {e}",
                    context.field,
                    std::any::type_name::<T>()
                ),
            )
        })
    }
}

deserializer_type! {
    /// Avro into Avro's own [`Value`](apache_avro::types::Value).
    AvroValueDeserializer
}

impl Deserializer for AvroValueDeserializer {
    type Output = Value;

    fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> impl Future<Output = Result<Value, DeserializeError>> + Send + 'a {
        self.core.value(data, context)
    }
}

deserializer_type! {
    /// Avro into JSON: records as objects, unions as the branch's value, enums as their symbol,
    /// bytes and fixed as strings of the code points U+0000–U+00FF (Avro's JSON encoding), logical
    /// types as the values they annotate except decimals and UUIDs, which are strings:
    /// a decimal (`bytes` or `fixed`) as its number with its schema's scale, in plain notation
    /// (`"12.34"`, `"-0.05"`, `"1234"` for scale 0, `"12.30"` keeping the scale's zeros: Kafka
    /// Connect's numeric decimal format, as a string so that no digit is lost to a reader's
    /// floating point), a UUID as its text; floating-point NaN and infinities as the strings
    /// `"NaN"`, `"Infinity"`, `"-Infinity"`.
    AvroJsonDeserializer
}

impl Deserializer for AvroJsonDeserializer {
    type Output = serde_json::Value;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<serde_json::Value, DeserializeError> {
        let (value, shape) = self.core.decoded(data, context).await?;
        Ok(json(value, Some(&shape.writer.schema), &shape.names, &None))
    }
}

/// An Avro value as JSON (see [`AvroJsonDeserializer`]), without its schema.
///
/// A `Value::Decimal` does not carry its scale (the schema does): here it is written as its
/// unscaled digits (`"1234"` for 12.34 of scale 2). [`AvroJsonDeserializer`], which has the
/// schema, writes decimals with their scale.
pub fn to_json(value: Value) -> serde_json::Value {
    json(value, None, &Names::new(), &None)
}

/// `value` as JSON, read beside `schema` (the one it was decoded or resolved to, its named
/// types in `names`, `ns` the enclosing namespace) where that is known: decimals take their
/// scale from it.
fn json(value: Value, schema: Option<&Schema>, names: &Names, ns: &Namespace) -> serde_json::Value {
    use serde_json::Value as J;
    // A named type's reference: the type, in its own namespace.
    let (schema, ns) = match schema {
        Some(Schema::Ref { name }) => match names.get_key_value(&name.fully_qualified_name(ns)) {
            Some((full, s)) => (Some(s), &full.namespace),
            None => (None, ns),
        },
        other => (other, ns),
    };
    let latin1 = |b: Vec<u8>| J::String(b.into_iter().map(char::from).collect());
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(
            || {
                J::String(
                    if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .to_owned(),
                )
            },
            J::Number,
        )
    };
    match value {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => J::from(i),
        Value::Long(l)
        | Value::TimeMicros(l)
        | Value::TimestampMillis(l)
        | Value::TimestampMicros(l)
        | Value::TimestampNanos(l)
        | Value::LocalTimestampMillis(l)
        | Value::LocalTimestampMicros(l)
        | Value::LocalTimestampNanos(l) => J::from(l),
        Value::Float(f) => float(f64::from(f)),
        Value::Double(d) => float(d),
        Value::Bytes(b) | Value::Fixed(_, b) => latin1(b),
        Value::String(s) | Value::Enum(_, s) => J::String(s),
        Value::Union(i, v) => {
            let branch = match schema {
                Some(Schema::Union(u)) => usize::try_from(i).ok().and_then(|i| u.variants().get(i)),
                _ => None,
            };
            json(*v, branch, names, ns)
        }
        Value::Array(items) => {
            let items_schema = match schema {
                Some(Schema::Array(a)) => Some(&*a.items),
                _ => None,
            };
            J::Array(
                items
                    .into_iter()
                    .map(|v| json(v, items_schema, names, ns))
                    .collect(),
            )
        }
        Value::Map(m) => {
            let values = match schema {
                Some(Schema::Map(m)) => Some(&*m.types),
                _ => None,
            };
            J::Object(
                m.into_iter()
                    .map(|(k, v)| (k, json(v, values, names, ns)))
                    .collect(),
            )
        }
        Value::Record(fields) => {
            let record = match schema {
                Some(Schema::Record(r)) => Some(r),
                _ => None,
            };
            let inner = match record {
                Some(r) if r.name.namespace.is_some() => &r.name.namespace,
                _ => ns,
            };
            J::Object(
                fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        let field = record.and_then(|r| field_schema(r, i, &k));
                        let v = json(v, field, names, inner);
                        (k, v)
                    })
                    .collect(),
            )
        }
        Value::Decimal(d) => {
            let bytes: Vec<u8> = Vec::try_from(d).unwrap_or_default();
            match schema {
                Some(Schema::Decimal(d)) => J::String(decimal_text(&bytes, d.scale)),
                _ => J::String(unscaled_digits(&bytes)),
            }
        }
        // Its scale comes with each value, from the payload: plain notation could be made as
        // long as the payload likes, so bigdecimal's notation (exponential past a few zeros).
        Value::BigDecimal(d) => J::String(d.to_string()),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::Duration(d) => {
            let bytes: [u8; 12] = d.into();
            latin1(bytes.to_vec())
        }
    }
}

/// The schema of field `name`, the `i`th of a record value: decoded and resolved values keep
/// the schema's field order, so it is the `i`th field unless the names differ.
fn field_schema<'s>(r: &'s RecordSchema, i: usize, name: &str) -> Option<&'s Schema> {
    r.fields
        .get(i)
        .filter(|f| f.name == name)
        .or_else(|| r.lookup.get(name).and_then(|&j| r.fields.get(j)))
        .map(|f| &f.schema)
}

/// Sign-extends every `bytes` decimal of `value` (as decoded with `schema`) to as many bytes
/// as its precision can need, before the value is resolved to a reader schema.
///
/// apache-avro's resolution refuses a decimal whose byte length could not hold its precision's
/// digits ("Precision 10 too small to hold decimal values with 2 bytes"), but a `bytes` decimal
/// is written in as few bytes as its value needs (12.34 in two, by Confluent's serializers and
/// Java's), so every small value would fail to resolve. The number is the same; only the
/// resolved `Value::Decimal` is longer. A `fixed` decimal has its size already.
fn widen_decimals(value: &mut Value, schema: &Schema, names: &Names, ns: &Namespace) {
    let (schema, ns) = match schema {
        Schema::Ref { name } => match names.get_key_value(&name.fully_qualified_name(ns)) {
            Some((full, s)) => (s, &full.namespace),
            None => return,
        },
        other => (other, ns),
    };
    match (value, schema) {
        (Value::Decimal(d), Schema::Decimal(ds)) if matches!(*ds.inner, Schema::Bytes) => {
            let needed = decimal_bytes_for(ds.precision);
            let Ok(bytes) = Vec::<u8>::try_from(&*d) else {
                return;
            };
            if bytes.len() < needed {
                let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                    0xff
                } else {
                    0
                };
                let mut wide = vec![fill; needed - bytes.len()];
                wide.extend(bytes);
                *d = apache_avro::Decimal::from(wide);
            }
        }
        (Value::Union(i, v), Schema::Union(u)) => {
            if let Some(branch) = usize::try_from(*i).ok().and_then(|i| u.variants().get(i)) {
                widen_decimals(v, branch, names, ns);
            }
        }
        (Value::Array(items), Schema::Array(a)) => {
            for v in items {
                widen_decimals(v, &a.items, names, ns);
            }
        }
        (Value::Map(m), Schema::Map(ms)) => {
            for v in m.values_mut() {
                widen_decimals(v, &ms.types, names, ns);
            }
        }
        (Value::Record(fields), Schema::Record(r)) => {
            let inner = if r.name.namespace.is_some() {
                &r.name.namespace
            } else {
                ns
            };
            for (i, (k, v)) in fields.iter_mut().enumerate() {
                if let Some(s) = field_schema(r, i, k) {
                    widen_decimals(v, s, names, inner);
                }
            }
        }
        _ => {}
    }
}

/// The fewest bytes apache-avro's resolution takes to hold `precision` digits: its own rule,
/// floor(log10(2^(8n-1) - 1)) >= precision. Past 128 bytes the rule takes any precision.
fn decimal_bytes_for(precision: usize) -> usize {
    (1..=129usize)
        .find(|&n| {
            let max = (2f64.powi(8 * n as i32 - 1) - 1.0).log10().floor();
            max >= precision as f64
        })
        .unwrap_or(129)
}

/// The most bytes a `bytes` decimal of `precision` digits is read from: the two's complement
/// of the largest such number (`ceil((ceil(precision × log2 10) + 1) / 8)` bytes, what Java's
/// `BigInteger.toByteArray` writes at most), and 8 more for writers that sign-extend.
fn decimal_bytes_max(precision: usize) -> usize {
    let bits = (precision as f64 * std::f64::consts::LOG2_10).ceil() as usize + 1;
    bits.div_ceil(8) + 8
}

/// Whether `schema` has a `bytes` decimal, named types aside (they are looked at on their own).
fn has_bytes_decimal(schema: &Schema) -> bool {
    match schema {
        Schema::Decimal(d) => matches!(*d.inner, Schema::Bytes),
        Schema::Union(u) => u.variants().iter().any(has_bytes_decimal),
        Schema::Array(a) => has_bytes_decimal(&a.items),
        Schema::Map(m) => has_bytes_decimal(&m.types),
        Schema::Record(r) => r.fields.iter().any(|f| has_bytes_decimal(&f.schema)),
        _ => false,
    }
}

/// The most digits a decimal's text has after the point in plain notation; a larger scale
/// (no real schema has one) is written as `<unscaled>E-<scale>`, so that a schema cannot make
/// the text as long as it likes.
const MAX_PLAIN_SCALE: usize = 1 << 12;

/// A decimal as text: its unscaled value (big-endian two's complement, any length) with
/// `scale` digits after the point, in plain notation as Java's `BigDecimal.toPlainString`
/// writes it (`"12.34"`, `"-0.05"`, `"1234"` for scale 0, trailing zeros kept).
fn decimal_text(unscaled: &[u8], scale: usize) -> String {
    let digits = unscaled_digits(unscaled);
    if scale == 0 {
        return digits;
    }
    if scale > MAX_PLAIN_SCALE {
        return format!("{digits}E-{scale}");
    }
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits.as_str()),
    };
    let zeros = (scale + 1).saturating_sub(digits.len());
    let mut text = String::with_capacity(sign.len() + zeros + digits.len() + 1);
    text.push_str(sign);
    text.extend(std::iter::repeat_n('0', zeros));
    text.push_str(digits);
    text.insert(text.len() - scale, '.');
    text
}

/// The decimal digits of a big-endian two's-complement integer (a decimal's unscaled value;
/// the scale is the schema's).
fn unscaled_digits(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "0".to_owned();
    }
    let negative = bytes[0] & 0x80 != 0;
    // Magnitude, big-endian.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Walks `payload` with `schema` and refuses what would make the decoder allocate or recurse
/// without bound (see the module documentation).
pub(crate) fn check<S: Borrow<Schema>>(
    schema: &Schema,
    names: &HashMap<Name, S>,
    payload: &[u8],
) -> Result<(), String> {
    let mut walk = Walk {
        buf: payload,
        pos: 0,
        names,
        values: 0,
        max_values: MAX_VALUES_PER_BYTE * payload.len() + 1024,
    };
    walk.walk(schema, &None, 0)
}

struct Walk<'a, S> {
    buf: &'a [u8],
    pos: usize,
    names: &'a HashMap<Name, S>,
    values: usize,
    max_values: usize,
}

impl<S: Borrow<Schema>> Walk<'_, S> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "{what} of {n} bytes with {} bytes left",
                self.left()
            ));
        }
        self.pos += n;
        Ok(())
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("the data ends inside a number".to_owned());
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err("a number of more than 10 bytes".to_owned())
    }

    fn length(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long()?;
        if n < 0 || n as u64 > self.left() as u64 {
            return Err(format!(
                "{what} of length {n} with {} bytes left",
                self.left()
            ));
        }
        Ok(n as usize)
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.values = self.values.saturating_add(n);
        if self.values > self.max_values {
            return Err(format!(
                "more than {} values in {} bytes",
                self.max_values,
                self.buf.len()
            ));
        }
        Ok(())
    }

    fn walk(&mut self, schema: &Schema, ns: &Namespace, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        self.count(1)?;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.take(1, "a boolean"),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4, "a float"),
            Schema::Double => self.take(8, "a double"),
            Schema::Duration => self.take(12, "a duration"),
            Schema::Bytes | Schema::String | Schema::BigDecimal | Schema::Uuid => {
                let n = self.length("a string or bytes")?;
                self.take(n, "a string or bytes")
            }
            Schema::Fixed(f) => self.take(f.size, "a fixed"),
            // A `bytes` decimal's length is the payload's: bounded by its precision, so that
            // writing its digits (quadratic in its length) stays cheap.
            Schema::Decimal(d) if matches!(*d.inner, Schema::Bytes) => {
                let n = self.length("a decimal")?;
                let most = decimal_bytes_max(d.precision);
                if n > most {
                    return Err(format!(
                        "a decimal of {n} bytes where precision {} needs at most {most}",
                        d.precision
                    ));
                }
                self.take(n, "a decimal")
            }
            Schema::Decimal(d) => self.walk(&d.inner, ns, depth + 1),
            Schema::Enum(e) => {
                let i = self.long()?;
                if i < 0 || i as u64 >= e.symbols.len() as u64 {
                    return Err(format!("enum index {i} of {} symbols", e.symbols.len()));
                }
                Ok(())
            }
            Schema::Union(u) => {
                let i = self.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| format!("union index {i} of {} branches", u.variants().len()))?;
                self.walk(branch, ns, depth + 1)
            }
            Schema::Array(a) => self.blocks(ns, depth, |w, ns| w.walk(&a.items, ns, depth + 1)),
            Schema::Map(m) => self.blocks(ns, depth, |w, ns| {
                let n = w.length("a map key")?;
                w.take(n, "a map key")?;
                w.walk(&m.types, ns, depth + 1)
            }),
            Schema::Record(r) => {
                let inner = r.name.namespace.clone().or_else(|| ns.clone());
                for field in &r.fields {
                    self.walk(&field.schema, &inner, depth + 1)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let full: Name = name.fully_qualified_name(ns);
                let names = self.names;
                let target = names
                    .get(&full)
                    .ok_or_else(|| format!("an unknown named type {}", full.fullname(None)))?;
                self.walk(target.borrow(), &full.namespace, depth + 1)
            }
        }
    }

    fn blocks(
        &mut self,
        ns: &Namespace,
        depth: usize,
        mut item: impl FnMut(&mut Self, &Namespace) -> Result<(), String>,
    ) -> Result<(), String> {
        if depth + 1 > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        loop {
            let n = self.long()?;
            if n == 0 {
                return Ok(());
            }
            let count = n.unsigned_abs();
            if n < 0 {
                // A negative count is followed by the block's size in bytes.
                let size = self.long()?;
                if size < 0 || size as u64 > self.left() as u64 {
                    return Err(format!(
                        "a block of {size} bytes with {} bytes left",
                        self.left()
                    ));
                }
            }
            if count > self.left() as u64 {
                return Err(format!(
                    "a block of {count} items with {} bytes left",
                    self.left()
                ));
            }
            self.count(count as usize)?;
            for _ in 0..count {
                item(self, ns)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(schema: &str, payload: &[u8]) -> Result<(), String> {
        let schema = Schema::parse_str(schema).unwrap();
        let resolved = ResolvedSchema::try_from(&schema).unwrap();
        check(&schema, resolved.get_names(), payload)
    }

    #[test]
    fn lengths_and_counts_past_the_end_are_refused_before_decoding() {
        // A string claiming 2^62 bytes.
        let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(walk(r#""string""#, &huge).unwrap_err().contains("length"));
        // An array of nulls claiming a million items in four bytes.
        let mut arr = vec![0x80, 0x89, 0x7a];
        arr.push(0);
        assert!(
            walk(r#"{"type":"array","items":"null"}"#, &arr)
                .unwrap_err()
                .contains("items")
        );
        assert!(walk(r#"{"type":"enum","name":"E","symbols":["A"]}"#, &[2]).is_err());
        assert!(walk(r#"["null","int"]"#, &[4]).is_err());
        // Fine ones.
        walk(r#""string""#, &[6, b'a', b'b', b'c']).unwrap();
        walk(r#"{"type":"array","items":"int"}"#, &[4, 2, 4, 0]).unwrap();
        walk(r#"{"type":"map","values":"long"}"#, &[2, 2, b'k', 6, 0]).unwrap();
    }

    #[test]
    fn a_bytes_decimal_longer_than_its_precision_needs_is_refused() {
        let money = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;
        // 10 digits take 5 bytes; 8 more are allowed for sign extension.
        assert_eq!(decimal_bytes_max(10), 13);
        assert_eq!(
            decimal_bytes_max(38),
            24,
            "16 bytes, as an i128 holds 38 digits"
        );
        let with = |n: usize| {
            let mut p = Vec::new();
            let mut z = (n as u64) << 1;
            while z >= 0x80 {
                p.push((z as u8) | 0x80);
                z >>= 7;
            }
            p.push(z as u8);
            p.extend(std::iter::repeat_n(0x11, n));
            p
        };
        walk(money, &with(13)).unwrap();
        // A megabyte of digits behind a precision-10 decimal: a poison record, refused before
        // its digits are worked out.
        let err = walk(money, &with(1 << 20)).unwrap_err();
        assert!(err.contains("precision 10"), "{err}");
    }

    #[test]
    fn recursion_deeper_than_the_bound_is_refused() {
        let list = r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"]}]}"#;
        // Each level: union branch 1; the last: branch 0.
        let mut deep = vec![2u8; 1000];
        deep.push(0);
        assert!(walk(list, &deep).unwrap_err().contains("nesting"));
        let mut shallow = vec![2u8; 10];
        shallow.push(0);
        walk(list, &shallow).unwrap();
    }

    /// `value` written with `schema` and read back through the deserializer's JSON walk.
    fn round_trip(schema: &str, value: Value) -> serde_json::Value {
        let schema = Schema::parse_str(schema).unwrap();
        let names: Names = ResolvedSchema::try_from(&schema)
            .unwrap()
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        let bytes = apache_avro::to_avro_datum(&schema, value).unwrap();
        check(&schema, &names, &bytes).unwrap();
        let decoded = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
        json(decoded, Some(&schema), &names, &None)
    }

    /// The minimal big-endian two's complement of the decimal integer `digits` (built by
    /// multiplying up, independently of `unscaled_digits`, which divides down).
    fn twos_complement(digits: &str) -> Vec<u8> {
        let (negative, digits) = match digits.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, digits),
        };
        // Little-endian magnitude.
        let mut m: Vec<u8> = vec![0];
        for d in digits.bytes() {
            let mut carry = u32::from(d - b'0');
            for b in m.iter_mut() {
                let v = u32::from(*b) * 10 + carry;
                *b = v as u8;
                carry = v >> 8;
            }
            if carry > 0 {
                m.push(carry as u8);
            }
        }
        // Room for the sign bit.
        m.push(0);
        if negative {
            let mut carry = 1u16;
            for b in m.iter_mut() {
                let v = u16::from(!*b) + carry;
                *b = v as u8;
                carry = v >> 8;
            }
        }
        // Drop redundant sign bytes, then big-endian.
        let sign = if negative { 0xff } else { 0 };
        while m.len() > 1 && m[m.len() - 1] == sign && (m[m.len() - 2] & 0x80) == (sign & 0x80) {
            m.pop();
        }
        m.reverse();
        m
    }

    fn decimal(digits: &str) -> Value {
        Value::Decimal(apache_avro::Decimal::from(twos_complement(digits)))
    }

    /// The decimal `digits` sign-extended to `size` bytes (a fixed's).
    fn decimal_of(digits: &str, size: usize) -> Value {
        let b = twos_complement(digits);
        let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
        let mut out = vec![fill; size - b.len()];
        out.extend(b);
        Value::Decimal(apache_avro::Decimal::from(out))
    }

    const MONEY: &str = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;

    #[test]
    fn bytes_decimals_are_written_with_their_scale() {
        for (unscaled, text) in [
            ("1234", "12.34"),
            ("-1234", "-12.34"),
            ("5", "0.05"),
            ("-5", "-0.05"),
            ("50", "0.50"),
            ("100", "1.00"),
            ("-100", "-1.00"),
            ("1230", "12.30"),
            ("0", "0.00"),
            ("-1", "-0.01"),
            ("9999999999", "99999999.99"),
            ("-128", "-1.28"),
            ("128", "1.28"),
        ] {
            assert_eq!(
                round_trip(MONEY, decimal(unscaled)),
                serde_json::json!(text),
                "{unscaled}"
            );
        }
        let scale_0 = r#"{"type":"bytes","logicalType":"decimal","precision":4}"#;
        for (unscaled, text) in [
            ("1234", "1234"),
            ("-1234", "-1234"),
            ("0", "0"),
            ("-1", "-1"),
        ] {
            assert_eq!(
                round_trip(scale_0, decimal(unscaled)),
                serde_json::json!(text),
                "{unscaled}"
            );
        }
        // Every digit of the scale after the point, and one before it.
        let scale_5 = r#"{"type":"bytes","logicalType":"decimal","precision":5,"scale":5}"#;
        assert_eq!(
            round_trip(scale_5, decimal("-42")),
            serde_json::json!("-0.00042")
        );
        assert_eq!(
            round_trip(scale_5, decimal("99999")),
            serde_json::json!("0.99999")
        );
    }

    #[test]
    fn decimals_beyond_i128_keep_every_digit() {
        let big = r#"{"type":"bytes","logicalType":"decimal","precision":70,"scale":20}"#;
        let digits = "1234567890123456789012345678901234567890123456789012345678901234567890";
        let text = "12345678901234567890123456789012345678901234567890.12345678901234567890";
        assert_eq!(round_trip(big, decimal(digits)), serde_json::json!(text));
        assert_eq!(
            round_trip(big, decimal(&format!("-{digits}"))),
            serde_json::json!(format!("-{text}"))
        );
        // i128's extremes and one past them.
        let i128_ = r#"{"type":"bytes","logicalType":"decimal","precision":40,"scale":0}"#;
        for n in [
            i128::MAX.to_string(),
            i128::MIN.to_string(),
            "170141183460469231731687303715884105728".to_owned(),
            "-170141183460469231731687303715884105729".to_owned(),
        ] {
            assert_eq!(round_trip(i128_, decimal(&n)), serde_json::json!(n));
        }
    }

    #[test]
    fn fixed_decimals_nested_and_referenced_are_written_with_their_scale() {
        // A fixed of 16 bytes (sign-extended), in a record of a namespace; decimals in a union,
        // an array, a map and a record of another namespace referred to by name. (A named
        // decimal fixed cannot be referred to by name: apache-avro's `ResolvedSchema` does not
        // register it, and the schema is refused as unusable.)
        let schema = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
            {"name":"total","type":{"type":"fixed","name":"Amount","size":16,
                "logicalType":"decimal","precision":38,"scale":4}},
            {"name":"refund","type":{"type":"record","name":"Refund","namespace":"pay","fields":[
                {"name":"amount","type":{"type":"fixed","name":"Cents","size":4,
                    "logicalType":"decimal","precision":9,"scale":2}}]}},
            {"name":"again","type":"pay.Refund"},
            {"name":"tip","type":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":1}]},
            {"name":"lines","type":{"type":"array","items":
                {"type":"bytes","logicalType":"decimal","precision":38,"scale":4}}},
            {"name":"fees","type":{"type":"map","values":
                {"type":"bytes","logicalType":"decimal","precision":9,"scale":3}}},
            {"name":"raw","type":{"type":"fixed","name":"Raw","size":2}}]}"#;
        let fixed = decimal_of;
        let refund = |digits: &str| Value::Record(vec![("amount".into(), fixed(digits, 4))]);
        let value = Value::Record(vec![
            ("total".into(), fixed("-5", 16)),
            ("refund".into(), refund("123456")),
            ("again".into(), refund("-7")),
            ("tip".into(), Value::Union(1, Box::new(decimal("25")))),
            (
                "lines".into(),
                Value::Array(vec![
                    decimal("10000"),
                    decimal("-99999999999999999999999999999999999999"),
                ]),
            ),
            (
                "fees".into(),
                Value::Map([("vat".to_owned(), decimal("1500"))].into_iter().collect()),
            ),
            ("raw".into(), Value::Fixed(2, vec![0x41, 0x42])),
        ]);
        assert_eq!(
            round_trip(schema, value),
            serde_json::json!({
                "total": "-0.0005",
                "refund": {"amount": "1234.56"},
                "again": {"amount": "-0.07"},
                "tip": "2.5",
                "lines": ["1.0000", "-9999999999999999999999999999999999.9999"],
                "fees": {"vat": "1.500"},
                "raw": "AB",
            })
        );
    }

    #[test]
    fn bytes_decimals_are_widened_so_that_they_resolve_to_a_reader_schema() {
        // apache-avro's own rule: n bytes hold floor(log10(2^(8n-1) - 1)) digits.
        for (precision, bytes) in [(0, 1), (2, 1), (3, 2), (4, 2), (9, 4), (10, 5), (38, 16)] {
            assert_eq!(decimal_bytes_for(precision), bytes, "precision {precision}");
        }
        assert_eq!(decimal_bytes_for(100_000), 129);
        let schema = format!(
            r#"{{"type":"record","name":"P","fields":[{{"name":"price","type":{MONEY}}},
                {{"name":"maybe","type":["null",{MONEY}]}},
                {{"name":"t","type":{{"type":"fixed","name":"T","size":2,
                    "logicalType":"decimal","precision":4,"scale":1}}}}]}}"#
        );
        let schema = Schema::parse_str(&schema).unwrap();
        let names = Names::new();
        assert!(has_bytes_decimal(&schema));
        for (unscaled, text) in [("1234", "12.34"), ("-5", "-0.05"), ("0", "0.00")] {
            let value = Value::Record(vec![
                ("price".into(), decimal(unscaled)),
                ("maybe".into(), Value::Union(1, Box::new(decimal(unscaled)))),
                ("t".into(), decimal_of(unscaled, 2)),
            ]);
            let bytes = apache_avro::to_avro_datum(&schema, value).unwrap();
            let decoded = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
            assert!(
                decoded.clone().resolve(&schema).is_err(),
                "apache-avro refuses {unscaled} unwidened"
            );
            let mut widened = decoded;
            widen_decimals(&mut widened, &schema, &names, &None);
            let resolved = widened.resolve(&schema).unwrap();
            assert_eq!(
                json(resolved, Some(&schema), &names, &None),
                serde_json::json!({"price": text, "maybe": text,
                                   "t": decimal_text(&twos_complement(unscaled), 1)})
            );
        }
    }

    #[test]
    fn without_its_schema_a_decimal_is_its_unscaled_digits() {
        assert_eq!(to_json(decimal("1234")), serde_json::json!("1234"));
        assert_eq!(decimal_text(&twos_complement("-1234"), 2), "-12.34");
        // A scale no schema has: exponential notation, not megabytes of zeros.
        assert_eq!(decimal_text(&[0x07], 1 << 20), "7E-1048576");
    }

    #[test]
    fn decimals_and_bytes_render_as_json_strings() {
        assert_eq!(unscaled_digits(&[0x01, 0x00]), "256");
        assert_eq!(unscaled_digits(&[0xff]), "-1");
        assert_eq!(unscaled_digits(&[0xff, 0x00]), "-256");
        assert_eq!(unscaled_digits(&[]), "0");
        assert_eq!(
            to_json(Value::Bytes(vec![0x41, 0xff])),
            serde_json::json!("A\u{ff}")
        );
        assert_eq!(to_json(Value::Double(f64::NAN)), serde_json::json!("NaN"));
        assert_eq!(
            to_json(Value::Union(1, Box::new(Value::Int(3)))),
            serde_json::json!(3)
        );
    }
}
