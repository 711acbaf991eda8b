//! kcon's KIP-714 payload (`kcon_codec::otlp`) read back by OpenTelemetry's own protobuf
//! types: what a broker's metrics plugin decodes is what kcon meant to write.

use kcon_codec::otlp::{Kind, Point, Temporality, Value, encode_metrics};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{MetricsData, metric, number_data_point};
use prost::Message;

fn point(name: &str, kind: Kind, value: Value, attributes: &[(&str, &str)]) -> Point {
    Point {
        name: name.into(),
        kind,
        value,
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        start_time_unix_nano: if kind == Kind::Gauge { 0 } else { 1_000 },
        time_unix_nano: 2_000,
    }
}

#[test]
fn opentelemetrys_types_read_every_field_kcon_writes() {
    let delta = Kind::Sum {
        temporality: Temporality::Delta,
        monotonic: true,
    };
    let cumulative = Kind::Sum {
        temporality: Temporality::Cumulative,
        monotonic: true,
    };
    let lag = "org.apache.kafka.consumer.fetch.manager.records.lag";
    let points = [
        point(
            "org.apache.kafka.consumer.fetch.manager.records.consumed.total",
            delta,
            Value::Int(42),
            &[],
        ),
        point(
            lag,
            Kind::Gauge,
            Value::Int(7),
            &[("topic", "t"), ("partition", "0")],
        ),
        point(
            lag,
            Kind::Gauge,
            Value::Int(-1),
            &[("topic", "t"), ("partition", "1")],
        ),
        point(
            "org.apache.kafka.consumer.fetch.manager.fetch.latency.avg",
            Kind::Gauge,
            Value::Double(12.5),
            &[],
        ),
        point(
            "x.total",
            cumulative,
            Value::Int(i64::MAX),
            &[("empty", "")],
        ),
    ];
    let resource = [("group_id".to_string(), "g".to_string())];
    let data = MetricsData::decode(encode_metrics(&resource, "kcon", "0.1.0", &points))
        .expect("OTLP MetricsData");

    assert_eq!(data.resource_metrics.len(), 1);
    let rm = &data.resource_metrics[0];
    let attrs = &rm.resource.as_ref().expect("a resource").attributes;
    assert_eq!(attrs.len(), 1);
    assert_eq!(attrs[0].key, "group_id");
    assert_eq!(
        attrs[0].value.as_ref().and_then(|v| v.value.clone()),
        Some(any_value::Value::StringValue("g".into()))
    );
    assert_eq!(rm.scope_metrics.len(), 1);
    let sm = &rm.scope_metrics[0];
    let scope = sm.scope.as_ref().expect("a scope");
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("kcon", "0.1.0")
    );
    let names: Vec<_> = sm.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "org.apache.kafka.consumer.fetch.manager.records.consumed.total",
            lag,
            "org.apache.kafka.consumer.fetch.manager.fetch.latency.avg",
            "x.total"
        ],
        "the two lag points share one metric"
    );

    let Some(metric::Data::Sum(sum)) = &sm.metrics[0].data else {
        panic!("{:?}", sm.metrics[0])
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 1, "DELTA");
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(42)));
    assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_000, 2_000));

    let Some(metric::Data::Gauge(gauge)) = &sm.metrics[1].data else {
        panic!("{:?}", sm.metrics[1])
    };
    let by_partition: Vec<_> = gauge
        .data_points
        .iter()
        .map(|p| {
            let partition = p
                .attributes
                .iter()
                .find(|a| a.key == "partition")
                .and_then(|a| a.value.as_ref()?.value.clone());
            (partition, p.value, p.start_time_unix_nano)
        })
        .collect();
    assert_eq!(
        by_partition,
        [
            (
                Some(any_value::Value::StringValue("0".into())),
                Some(number_data_point::Value::AsInt(7)),
                0
            ),
            (
                Some(any_value::Value::StringValue("1".into())),
                Some(number_data_point::Value::AsInt(-1)),
                0
            ),
        ]
    );

    let Some(metric::Data::Gauge(avg)) = &sm.metrics[2].data else {
        panic!("{:?}", sm.metrics[2])
    };
    assert_eq!(
        avg.data_points[0].value,
        Some(number_data_point::Value::AsDouble(12.5))
    );

    let Some(metric::Data::Sum(total)) = &sm.metrics[3].data else {
        panic!("{:?}", sm.metrics[3])
    };
    assert_eq!(total.aggregation_temporality, 2, "CUMULATIVE");
    let p = &total.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(i64::MAX)));
    assert_eq!(
        p.attributes[0].value.as_ref().and_then(|v| v.value.clone()),
        Some(any_value::Value::StringValue(String::new())),
        "an empty string is still a string"
    );
}
