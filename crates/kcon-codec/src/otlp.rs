//! OpenTelemetry's `MetricsData` (OTLP metrics v1, protobuf), written: the payload of a KIP-714
//! PushTelemetry request.
//!
//! Only what a client's metrics need: one resource with string attributes, one instrumentation
//! scope, and per metric a gauge or a sum of number data points (a double or an integer each,
//! with string attributes). The message numbers are those of `opentelemetry/proto/metrics/v1/
//! metrics.proto`, `common/v1/common.proto` and `resource/v1/resource.proto`; a field whose value
//! is the default is left out, as protobuf writers do.

use bytes::{BufMut, Bytes, BytesMut};

/// A metric's value at one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A whole number (`as_int`).
    Int(i64),
    /// A fraction (`as_double`).
    Double(f64),
}

/// How a sum's points add up over time (`AggregationTemporality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Each point counts what happened since the one before (`DELTA`, 1).
    Delta,
    /// Each point counts what happened since the start (`CUMULATIVE`, 2).
    Cumulative,
}

impl Temporality {
    fn wire(self) -> u64 {
        match self {
            Temporality::Delta => 1,
            Temporality::Cumulative => 2,
        }
    }
}

/// What kind of metric a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value read at the time (`Gauge`).
    Gauge,
    /// A sum (`Sum`), monotonic or not.
    Sum {
        /// How its points add up.
        temporality: Temporality,
        /// Whether it only ever grows (a counter).
        monotonic: bool,
    },
}

/// One data point of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric's name (`org.apache.kafka.consumer.fetch.manager.records.consumed.total`).
    pub name: String,
    /// Gauge or sum.
    pub kind: Kind,
    /// The value.
    pub value: Value,
    /// The point's attributes (`topic`, `partition`, ...).
    pub attributes: Vec<(String, String)>,
    /// When what it counts started (nanoseconds since the Unix epoch): the start of a
    /// cumulative sum, the point before a delta's; 0 for a gauge.
    pub start_time_unix_nano: u64,
    /// When it was read (nanoseconds since the Unix epoch).
    pub time_unix_nano: u64,
}

/// Writes a `MetricsData` of one resource and one scope: a metric per point, in the points'
/// order (points of one name and kind that follow each other share one metric).
pub fn encode_metrics(
    resource: &[(String, String)],
    scope_name: &str,
    scope_version: &str,
    points: &[Point],
) -> Bytes {
    // Innermost first: each message is written to its own buffer, then framed by its length.
    let mut scope_metrics = BytesMut::new();
    let mut scope = BytesMut::new();
    string_field(&mut scope, 1, scope_name);
    string_field(&mut scope, 2, scope_version);
    message_field(&mut scope_metrics, 1, &scope);
    let mut start = 0;
    while start < points.len() {
        let first = &points[start];
        let end = start
            + points[start..]
                .iter()
                .take_while(|p| p.name == first.name && p.kind == first.kind)
                .count();
        message_field(&mut scope_metrics, 2, &metric(&points[start..end]));
        start = end;
    }
    let mut resource_metrics = BytesMut::new();
    let mut res = BytesMut::new();
    for (key, value) in resource {
        message_field(&mut res, 1, &key_value(key, value));
    }
    message_field(&mut resource_metrics, 1, &res);
    message_field(&mut resource_metrics, 2, &scope_metrics);
    let mut data = BytesMut::new();
    message_field(&mut data, 1, &resource_metrics);
    data.freeze()
}

/// A `Metric` of points that share its name and kind.
fn metric(points: &[Point]) -> BytesMut {
    let first = &points[0];
    let mut out = BytesMut::new();
    string_field(&mut out, 1, &first.name);
    let mut data = BytesMut::new();
    for point in points {
        message_field(&mut data, 1, &number_point(point));
    }
    match first.kind {
        Kind::Gauge => message_field(&mut out, 5, &data),
        Kind::Sum {
            temporality,
            monotonic,
        } => {
            varint_field(&mut data, 2, temporality.wire());
            varint_field(&mut data, 3, u64::from(monotonic));
            message_field(&mut out, 7, &data);
        }
    }
    out
}

/// A `NumberDataPoint`.
fn number_point(point: &Point) -> BytesMut {
    let mut out = BytesMut::new();
    if point.start_time_unix_nano != 0 {
        tag(&mut out, 2, FIXED64);
        out.put_u64_le(point.start_time_unix_nano);
    }
    tag(&mut out, 3, FIXED64);
    out.put_u64_le(point.time_unix_nano);
    match point.value {
        Value::Double(v) => {
            tag(&mut out, 4, FIXED64);
            out.put_f64_le(v);
        }
        Value::Int(v) => {
            tag(&mut out, 6, FIXED64);
            out.put_i64_le(v);
        }
    }
    for (key, value) in &point.attributes {
        message_field(&mut out, 7, &key_value(key, value));
    }
    out
}

/// A `KeyValue` whose value is a string.
fn key_value(key: &str, value: &str) -> BytesMut {
    let mut any = BytesMut::new();
    // AnyValue's string_value is always written: an empty string is still a string.
    tag(&mut any, 1, LEN);
    varint(&mut any, value.len() as u64);
    any.put_slice(value.as_bytes());
    let mut out = BytesMut::new();
    string_field(&mut out, 1, key);
    message_field(&mut out, 2, &any);
    out
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn tag(out: &mut BytesMut, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn varint_field(out: &mut BytesMut, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, VARINT);
        varint(out, v);
    }
}

fn string_field(out: &mut BytesMut, field: u32, s: &str) {
    if !s.is_empty() {
        tag(out, field, LEN);
        varint(out, s.len() as u64);
        out.put_slice(s.as_bytes());
    }
}

/// An embedded message, written even when empty (its presence can mean something: a gauge
/// with no points is still a gauge).
fn message_field(out: &mut BytesMut, field: u32, body: &[u8]) {
    tag(out, field, LEN);
    varint(out, body.len() as u64);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut out = BytesMut::new();
        varint(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
        out.clear();
        varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(out[9], 0x01);
    }

    #[test]
    fn a_gauge_of_one_point_is_laid_out_as_the_proto_says() {
        let point = Point {
            name: "g".into(),
            kind: Kind::Gauge,
            value: Value::Int(5),
            attributes: vec![],
            start_time_unix_nano: 0,
            time_unix_nano: 7,
        };
        let data = encode_metrics(&[], "", "", &[point]);
        let number_point = [
            0x19, 7, 0, 0, 0, 0, 0, 0, 0, // time_unix_nano (3, fixed64)
            0x31, 5, 0, 0, 0, 0, 0, 0, 0, // as_int (6, fixed64)
        ];
        let mut gauge = vec![0x0a, number_point.len() as u8];
        gauge.extend_from_slice(&number_point);
        let mut metric = vec![0x0a, 1, b'g', 0x2a, gauge.len() as u8];
        metric.extend_from_slice(&gauge);
        let mut scope_metrics = vec![0x0a, 0, 0x12, metric.len() as u8];
        scope_metrics.extend_from_slice(&metric);
        let mut resource_metrics = vec![0x0a, 0, 0x12, scope_metrics.len() as u8];
        resource_metrics.extend_from_slice(&scope_metrics);
        let mut expected = vec![0x0a, resource_metrics.len() as u8];
        expected.extend_from_slice(&resource_metrics);
        assert_eq!(&data[..], &expected[..]);
    }

    #[test]
    fn points_of_one_metric_share_it_and_a_new_name_starts_another() {
        let point = |name: &str, partition: &str| Point {
            name: name.into(),
            kind: Kind::Sum {
                temporality: Temporality::Delta,
                monotonic: true,
            },
            value: Value::Double(1.5),
            attributes: vec![("partition".into(), partition.into())],
            start_time_unix_nano: 1,
            time_unix_nano: 2,
        };
        let data = encode_metrics(
            &[("client_id".into(), "c".into())],
            "kcon",
            "1",
            &[point("a", "0"), point("a", "1"), point("b", "0")],
        );
        // Two metrics: "a" with two points, "b" with one (each name is written once).
        let text = String::from_utf8_lossy(&data);
        assert_eq!(text.matches("partition").count(), 3);
        let metric_names = data
            .windows(3)
            .filter(|w| w[0] == 0x0a && w[1] == 1 && (w[2] == b'a' || w[2] == b'b'))
            .count();
        assert_eq!(metric_names, 2);
    }
}
