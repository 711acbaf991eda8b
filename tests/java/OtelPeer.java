// The Apache Kafka Java client 4.4 under OpenTelemetry's own instrumentation of it
// (opentelemetry-kafka-clients-2.6, the library form: KafkaTelemetry wraps the producer and the
// consumer), on either side of kcon's: a test checks that a trace crosses between the two.
// The SDK (W3C trace context and baggage propagators, every span sampled) keeps the spans in
// memory; they are printed once the client is closed.
//
// Reads one JSON object on stdin (or args[0]), with "op" one of:
//   {"op": "produce", "bootstrap": "host:port", "topic": "t", "values": ["a", "b"]}
//       the wrapped producer sends each value (UTF-8) to partition 0, in order, and waits for
//       each to be acknowledged.
//   {"op": "consume", "bootstrap": "host:port", "topic": "t", "group": "g", "expect": n,
//    "within_ms": 30000}
//       the wrapped consumer, in the group, reads the topic from the start until it has `expect`
//       records, iterating each poll's records as an application does.
// Both print {"values": [...], "spans": [span, ...]} with each span as
//   {"name", "kind", "trace_id", "span_id", "parent_span_id", "links": [{"trace_id",
//    "span_id"}], "attributes": {"key": "value as text"}}.
// Any error fails the program (exit 1) with the reason on stderr.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.opentelemetry.api.baggage.propagation.W3CBaggagePropagator;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.propagation.ContextPropagators;
import io.opentelemetry.context.propagation.TextMapPropagator;
import io.opentelemetry.instrumentation.kafkaclients.v2_6.KafkaTelemetry;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.LinkData;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import io.opentelemetry.sdk.trace.samplers.Sampler;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collections;
import java.util.Properties;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class OtelPeer {
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        String line = args.length > 0 ? args[0]
                : new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))
                        .readLine();
        JsonNode req = JSON.readTree(line);
        InMemorySpanExporter spans = InMemorySpanExporter.create();
        OpenTelemetrySdk otel = OpenTelemetrySdk.builder()
                .setTracerProvider(SdkTracerProvider.builder()
                        .setSampler(Sampler.alwaysOn())
                        .addSpanProcessor(SimpleSpanProcessor.create(spans))
                        .build())
                .setPropagators(ContextPropagators.create(TextMapPropagator.composite(
                        W3CTraceContextPropagator.getInstance(),
                        W3CBaggagePropagator.getInstance())))
                .build();
        KafkaTelemetry telemetry = KafkaTelemetry.create(otel);
        ArrayNode values;
        switch (req.get("op").asText()) {
            case "produce": values = produce(telemetry, req); break;
            case "consume": values = consume(telemetry, req); break;
            default: throw new IllegalArgumentException("unknown op " + req.get("op"));
        }
        otel.getSdkTracerProvider().forceFlush();
        ObjectNode answer = JSON.createObjectNode();
        answer.set("values", values);
        ArrayNode out = answer.putArray("spans");
        for (SpanData span : spans.getFinishedSpanItems()) {
            out.add(describe(span));
        }
        System.out.println(answer.toString());
        System.out.flush();
        System.exit(0);
    }

    static ArrayNode produce(KafkaTelemetry telemetry, JsonNode req) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        ArrayNode sent = JSON.createArrayNode();
        try (Producer<byte[], byte[]> producer =
                telemetry.wrap(new KafkaProducer<byte[], byte[]>(props))) {
            String topic = req.get("topic").asText();
            for (JsonNode v : req.get("values")) {
                producer.send(new ProducerRecord<>(topic, 0, null,
                        v.asText().getBytes(StandardCharsets.UTF_8))).get();
                sent.add(v.asText());
            }
        }
        return sent;
    }

    static ArrayNode consume(KafkaTelemetry telemetry, JsonNode req) {
        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("group.id", req.get("group").asText());
        props.put("auto.offset.reset", "earliest");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        int expect = req.get("expect").asInt();
        long deadline = System.currentTimeMillis() + req.path("within_ms").asLong(30000);
        ArrayNode read = JSON.createArrayNode();
        try (Consumer<byte[], byte[]> consumer =
                telemetry.wrap(new KafkaConsumer<byte[], byte[]>(props))) {
            consumer.subscribe(Collections.singletonList(req.get("topic").asText()));
            while (read.size() < expect) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("read " + read.size() + " of " + expect
                            + " records before the deadline");
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    read.add(new String(record.value(), StandardCharsets.UTF_8));
                }
            }
            consumer.commitSync();
        }
        return read;
    }

    static ObjectNode describe(SpanData span) {
        ObjectNode s = JSON.createObjectNode();
        s.put("name", span.getName());
        s.put("kind", span.getKind().name());
        s.put("trace_id", span.getTraceId());
        s.put("span_id", span.getSpanId());
        s.put("parent_span_id", span.getParentSpanContext().isValid()
                ? span.getParentSpanId() : null);
        ArrayNode links = s.putArray("links");
        for (LinkData link : span.getLinks()) {
            ObjectNode l = links.addObject();
            l.put("trace_id", link.getSpanContext().getTraceId());
            l.put("span_id", link.getSpanContext().getSpanId());
        }
        ObjectNode attributes = s.putObject("attributes");
        span.getAttributes().forEach((k, v) -> attributes.put(k.getKey(), String.valueOf(v)));
        return s;
    }
}
