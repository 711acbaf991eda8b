// A receiver of KIP-714 client metrics, as a broker plugin: the metrics reporter of the `single`
// cluster's nodes (scripts/kafka), so that a test can read back what a client pushed to the broker
// with PushTelemetry, decoded. With a reporter like this one configured the broker offers
// GetTelemetrySubscriptions and PushTelemetry (it offers neither without one), as managed
// services that collect client metrics do; which clients push what, and how often, is the
// CLIENT_METRICS config resources' (a test's subscription, set with IncrementalAlterConfigs).
//
// Configured by the broker properties
//   metric.reporters=...,KconTelemetrySink
//   kcon.telemetry.sink.file=<path>
// it appends one JSON line to that file for every push the broker hands it (a push with no
// metrics is not handed on), decoded from the payload's OTLP MetricsData (which the broker has
// already decompressed) with the protobuf classes shaded into kafka-clients:
//   {"client_instance_id":"<uuid, 8-4-4-4-12 lower-case hex>","terminating":bool,
//    "client_id":"...","push_interval_ms":N,"content_type":"...","resource":{"k":"v",...},
//    "points":[{"scope":"...","metric":"...","type":"sum"|"gauge"|"histogram"|
//               "exponential_histogram"|"summary","monotonic":bool,
//               "temporality":"delta"|"cumulative"|"unspecified","value":N,
//               "attributes":{"k":"v",...},"start_time_unix_nano":N,"time_unix_nano":N},...]}
// one point per data point: `value` is a number point's asDouble or asInt, a histogram's or a
// summary's count (a value that is no finite number is written as the string "NaN",
// "Infinity" or "-Infinity"); attribute values are the string form of what their AnyValue holds.
// A payload that is no MetricsData gets the line
//   {"client_instance_id":...,"terminating":...,"client_id":...,"push_interval_ms":...,
//    "content_type":...,"error":"<parser's message>","bytes":N}
// and the export fails, so the broker answers the push INVALID_RECORD, as it would when a real
// plugin failed on it. tests/src/telemetry.rs reads the file.
//
// One class, no inner or anonymous ones: the broker loads this from tests/java's compiled classes,
// which `scripts/kafka java` may compile afresh (replacing the directory) while the broker runs;
// a class loaded late could then be missing for a moment, or come from another compilation.

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.metrics.MetricsReporter;
import org.apache.kafka.server.telemetry.ClientTelemetryContext;
import org.apache.kafka.server.telemetry.ClientTelemetryExporter;
import org.apache.kafka.server.telemetry.ClientTelemetryExporterProvider;
import org.apache.kafka.server.telemetry.ClientTelemetryPayload;
import org.apache.kafka.shaded.io.opentelemetry.proto.common.v1.AnyValue;
import org.apache.kafka.shaded.io.opentelemetry.proto.common.v1.KeyValue;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.AggregationTemporality;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.HistogramDataPoint;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.Metric;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.MetricsData;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.NumberDataPoint;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.ResourceMetrics;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.ScopeMetrics;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.SummaryDataPoint;

// Kafka 4.4's broker takes a reporter's exporter from ClientTelemetryExporterProvider (KIP-1159)
// before the deprecated ClientTelemetry, and uses only one of them: this class offers the first.
public class KconTelemetrySink
        implements MetricsReporter, ClientTelemetryExporterProvider, ClientTelemetryExporter {
    public static final String FILE_CONFIG = "kcon.telemetry.sink.file";

    private String file;

    @Override
    public void configure(Map<String, ?> configs) {
        Object path = configs.get(FILE_CONFIG);
        if (path == null || path.toString().isEmpty()) {
            throw new IllegalArgumentException("KconTelemetrySink needs the broker property "
                + FILE_CONFIG);
        }
        file = path.toString();
        System.out.println("kcon-telemetry-sink writing to " + file);
        System.out.flush();
    }

    @Override
    public void init(List<KafkaMetric> metrics) {}

    @Override
    public void metricChange(KafkaMetric metric) {}

    @Override
    public void metricRemoval(KafkaMetric metric) {}

    @Override
    public void close() {}

    @Override
    public ClientTelemetryExporter clientTelemetryExporter() {
        return this;
    }

    @Override
    public void exportMetrics(ClientTelemetryContext context, ClientTelemetryPayload payload) {
        StringBuilder line = new StringBuilder(4096);
        line.append("{\"client_instance_id\":");
        string(line, uuid(payload.clientInstanceId()));
        line.append(",\"terminating\":").append(payload.isTerminating());
        line.append(",\"client_id\":");
        string(line, context.authorizableRequestContext().clientId());
        line.append(",\"push_interval_ms\":").append(context.pushIntervalMs());
        line.append(",\"content_type\":");
        string(line, payload.contentType());
        ByteBuffer data = payload.data().duplicate();
        int bytes = data.remaining();
        MetricsData metrics;
        try {
            metrics = MetricsData.parseFrom(data);
        } catch (Exception e) {
            line.append(",\"error\":");
            string(line, String.valueOf(e.getMessage()));
            line.append(",\"bytes\":").append(bytes).append("}\n");
            append(line);
            throw new IllegalArgumentException("KconTelemetrySink: a push of " + bytes
                + " bytes is no OTLP MetricsData: " + e.getMessage(), e);
        }
        line.append(",\"resource\":{");
        boolean first = true;
        for (ResourceMetrics resource : metrics.getResourceMetricsList()) {
            for (KeyValue attribute : resource.getResource().getAttributesList()) {
                if (!first) {
                    line.append(',');
                }
                first = false;
                string(line, attribute.getKey());
                line.append(':');
                string(line, text(attribute.getValue()));
            }
        }
        line.append("},\"points\":[");
        first = true;
        for (ResourceMetrics resource : metrics.getResourceMetricsList()) {
            for (ScopeMetrics scope : resource.getScopeMetricsList()) {
                String scopeName = scope.getScope().getName();
                for (Metric metric : scope.getMetricsList()) {
                    first = points(line, first, scopeName, metric);
                }
            }
        }
        line.append("]}\n");
        append(line);
    }

    /** Appends a point for each of `metric`'s data points; returns whether none was written. */
    private static boolean points(StringBuilder line, boolean first, String scope, Metric metric) {
        if (metric.hasSum()) {
            String temporality = temporality(metric.getSum().getAggregationTemporality());
            for (NumberDataPoint p : metric.getSum().getDataPointsList()) {
                first = point(line, first, scope, metric.getName(), "sum",
                    metric.getSum().getIsMonotonic(), temporality, number(p),
                    p.getAttributesList(), p.getStartTimeUnixNano(), p.getTimeUnixNano());
            }
        } else if (metric.hasGauge()) {
            for (NumberDataPoint p : metric.getGauge().getDataPointsList()) {
                first = point(line, first, scope, metric.getName(), "gauge", false,
                    "unspecified", number(p), p.getAttributesList(), p.getStartTimeUnixNano(),
                    p.getTimeUnixNano());
            }
        } else if (metric.hasHistogram()) {
            String temporality = temporality(metric.getHistogram().getAggregationTemporality());
            for (HistogramDataPoint p : metric.getHistogram().getDataPointsList()) {
                first = point(line, first, scope, metric.getName(), "histogram", false,
                    temporality, Long.toString(p.getCount()), p.getAttributesList(),
                    p.getStartTimeUnixNano(), p.getTimeUnixNano());
            }
        } else if (metric.hasExponentialHistogram()) {
            String temporality =
                temporality(metric.getExponentialHistogram().getAggregationTemporality());
            for (ExponentialHistogramDataPoint p :
                    metric.getExponentialHistogram().getDataPointsList()) {
                first = point(line, first, scope, metric.getName(), "exponential_histogram",
                    false, temporality, Long.toString(p.getCount()), p.getAttributesList(),
                    p.getStartTimeUnixNano(), p.getTimeUnixNano());
            }
        } else if (metric.hasSummary()) {
            for (SummaryDataPoint p : metric.getSummary().getDataPointsList()) {
                first = point(line, first, scope, metric.getName(), "summary", false,
                    "unspecified", Long.toString(p.getCount()), p.getAttributesList(),
                    p.getStartTimeUnixNano(), p.getTimeUnixNano());
            }
        }
        return first;
    }

    private static boolean point(StringBuilder line, boolean first, String scope, String metric,
                                 String type, boolean monotonic, String temporality,
                                 String value, List<KeyValue> attributes, long start,
                                 long time) {
        if (!first) {
            line.append(',');
        }
        line.append("{\"scope\":");
        string(line, scope);
        line.append(",\"metric\":");
        string(line, metric);
        line.append(",\"type\":\"").append(type).append('"');
        line.append(",\"monotonic\":").append(monotonic);
        line.append(",\"temporality\":\"").append(temporality).append('"');
        line.append(",\"value\":").append(value);
        line.append(",\"attributes\":{");
        boolean firstAttribute = true;
        for (KeyValue attribute : attributes) {
            if (!firstAttribute) {
                line.append(',');
            }
            firstAttribute = false;
            string(line, attribute.getKey());
            line.append(':');
            string(line, text(attribute.getValue()));
        }
        line.append("},\"start_time_unix_nano\":").append(Long.toUnsignedString(start));
        line.append(",\"time_unix_nano\":").append(Long.toUnsignedString(time)).append('}');
        return false;
    }

    /** A number point's value as a JSON value: its integer, or its double (a string when the
     *  double is no finite number, which JSON cannot write as a number). */
    private static String number(NumberDataPoint p) {
        if (p.getValueCase() == NumberDataPoint.ValueCase.AS_INT) {
            return Long.toString(p.getAsInt());
        }
        double d = p.getAsDouble();
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            return "\"" + d + "\"";
        }
        return Double.toString(d);
    }

    private static String temporality(AggregationTemporality t) {
        if (t == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA) {
            return "delta";
        }
        if (t == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE) {
            return "cumulative";
        }
        return "unspecified";
    }

    /** The string form of what `value` holds: arrays as `[a, b]`, key-value lists as
     *  `{k=v, ...}`, bytes in base64, nothing as the empty string. */
    private static String text(AnyValue value) {
        AnyValue.ValueCase kind = value.getValueCase();
        if (kind == AnyValue.ValueCase.STRING_VALUE) {
            return value.getStringValue();
        }
        if (kind == AnyValue.ValueCase.BOOL_VALUE) {
            return Boolean.toString(value.getBoolValue());
        }
        if (kind == AnyValue.ValueCase.INT_VALUE) {
            return Long.toString(value.getIntValue());
        }
        if (kind == AnyValue.ValueCase.DOUBLE_VALUE) {
            return Double.toString(value.getDoubleValue());
        }
        if (kind == AnyValue.ValueCase.BYTES_VALUE) {
            return Base64.getEncoder().encodeToString(value.getBytesValue().toByteArray());
        }
        StringBuilder out = new StringBuilder();
        if (kind == AnyValue.ValueCase.ARRAY_VALUE) {
            out.append('[');
            for (AnyValue v : value.getArrayValue().getValuesList()) {
                if (out.length() > 1) {
                    out.append(", ");
                }
                out.append(text(v));
            }
            return out.append(']').toString();
        }
        if (kind == AnyValue.ValueCase.KVLIST_VALUE) {
            out.append('{');
            for (KeyValue kv : value.getKvlistValue().getValuesList()) {
                if (out.length() > 1) {
                    out.append(", ");
                }
                out.append(kv.getKey()).append('=').append(text(kv.getValue()));
            }
            return out.append('}').toString();
        }
        return "";
    }

    /** `uuid` as java.util.UUID writes it: 8-4-4-4-12 lower-case hex (Kafka's Uuid writes
     *  base64). */
    private static String uuid(Uuid uuid) {
        return new UUID(uuid.getMostSignificantBits(), uuid.getLeastSignificantBits()).toString();
    }

    /** Appends `s` as a JSON string, quoted and escaped (null as the empty string). */
    private static void string(StringBuilder out, String s) {
        if (s == null) {
            s = "";
        }
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c == '\n') {
                out.append("\\n");
            } else if (c == '\r') {
                out.append("\\r");
            } else if (c == '\t') {
                out.append("\\t");
            } else if (c < 0x20 || c == 0x2028 || c == 0x2029) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        out.append('"');
    }

    /** Appends `line` to the file, whole and flushed, one writer at a time (the class's lock:
     *  the broker may hold more than one instance). */
    private void append(StringBuilder line) {
        byte[] bytes = line.toString().getBytes(StandardCharsets.UTF_8);
        synchronized (KconTelemetrySink.class) {
            try (OutputStream out = new FileOutputStream(file, true)) {
                out.write(bytes);
                out.flush();
            } catch (IOException e) {
                throw new RuntimeException("KconTelemetrySink: cannot append to " + file, e);
            }
        }
    }
}
