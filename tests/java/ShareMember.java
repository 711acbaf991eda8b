// A share group member of the Apache Kafka Java client 4.4 (KafkaShareConsumer, KIP-932) for
// kcon's share-group tests: the same input and output lines as tests/py/share.py, so the same
// test support drives either.
//
// Input: one JSON object, as args[0] or else as the first line of stdin:
//   {"bootstrap": "host:port", "group": "g", "topics": ["t", ...],
//    "expect": n, "quiet_ms": 1500, "within_ms": 30000, "limit": null | n,
//    "ack": null | "accept" | "release" | "reject" | "none" | [type, ...],
//    "hold_ms": 0, "pause_ms": 0, "each": false, "config": {property: value, ...}}
// It subscribes, prints {"event": "ready"}, then polls until it has `expect` records and
// nothing more came for `quiet_ms`, or it has `limit` records, or `within_ms` passed. "ack":
// null is implicit mode; a type (or a list, by delivery count) acknowledges every record so in
// explicit mode; "none" acknowledges nothing, holds the first batch `hold_ms` and closes.
// "pause_ms" sleeps after each batch with records. With "each": every record as
//   {"event": "record", "topic", "partition", "offset", "key", "value", "delivery_count", "ack"}
// and every acknowledgement commit as
//   {"event": "acked", "offsets": [[topic, partition, [offset, ...]], ...], "error": text|null}
// At the end, after closing:
//   {"event": "records", "records": [[topic, partition, offset, delivery_count, key, value], ...]}

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class ShareMember {
    static final ObjectMapper JSON = new ObjectMapper();

    static synchronized void emit(ObjectNode event) {
        System.out.println(event.toString());
        System.out.flush();
    }

    static String text(byte[] data) {
        return data == null ? null : new String(data, StandardCharsets.UTF_8);
    }

    static AcknowledgeType type(String name) {
        switch (name) {
            case "accept": return AcknowledgeType.ACCEPT;
            case "release": return AcknowledgeType.RELEASE;
            case "reject": return AcknowledgeType.REJECT;
            default: throw new IllegalArgumentException("unknown acknowledgement " + name);
        }
    }

    public static void main(String[] args) throws Exception {
        String line = args.length > 0 ? args[0]
                : new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))
                        .readLine();
        JsonNode req = JSON.readTree(line);
        JsonNode ack = req.path("ack");
        boolean hold = ack.isTextual() && ack.asText().equals("none");
        boolean explicit = !ack.isNull() && !ack.isMissingNode();
        List<String> plan = new ArrayList<>();
        if (ack.isTextual() && !hold) {
            plan.add(ack.asText());
        } else if (ack.isArray()) {
            ack.forEach(a -> plan.add(a.asText()));
        }
        plan.forEach(ShareMember::type);

        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("group.id", req.get("group").asText());
        props.put("share.acknowledgement.mode", explicit ? "explicit" : "implicit");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        for (Iterator<Map.Entry<String, JsonNode>> it = req.path("config").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            props.put(e.getKey(), e.getValue().asText());
        }
        boolean each = req.path("each").asBoolean(false);
        KafkaShareConsumer<byte[], byte[]> consumer = new KafkaShareConsumer<>(props);
        if (each) {
            consumer.setAcknowledgementCommitCallback(
                    (Map<TopicIdPartition, Set<Long>> offsets, Exception error) -> {
                        ObjectNode e = JSON.createObjectNode();
                        e.put("event", "acked");
                        ArrayNode list = e.putArray("offsets");
                        offsets.entrySet().stream()
                                .sorted((a, b) -> {
                                    int t = a.getKey().topic().compareTo(b.getKey().topic());
                                    return t != 0 ? t
                                            : Integer.compare(a.getKey().partition(),
                                                    b.getKey().partition());
                                })
                                .forEach(entry -> {
                                    ArrayNode one = list.addArray();
                                    one.add(entry.getKey().topic());
                                    one.add(entry.getKey().partition());
                                    ArrayNode os = one.addArray();
                                    new TreeSet<>(entry.getValue()).forEach(os::add);
                                });
                        if (error == null) {
                            e.putNull("error");
                        } else {
                            e.put("error", error.toString());
                        }
                        emit(e);
                    });
        }
        List<String> topics = new ArrayList<>();
        req.get("topics").forEach(t -> topics.add(t.asText()));
        consumer.subscribe(topics);
        ObjectNode ready = JSON.createObjectNode();
        ready.put("event", "ready");
        emit(ready);

        ArrayNode records = JSON.createArrayNode();
        int expect = req.path("expect").asInt(0);
        Integer limit = req.hasNonNull("limit") ? req.get("limit").asInt() : null;
        long quiet = req.path("quiet_ms").asLong(1500);
        long deadline = System.currentTimeMillis() + req.path("within_ms").asLong(30000);
        long pause = req.path("pause_ms").asLong(0);
        Long last = null;
        while (System.currentTimeMillis() < deadline) {
            if (last != null && records.size() >= expect
                    && System.currentTimeMillis() - last >= quiet) {
                break;
            }
            if (limit != null && records.size() >= limit) {
                break;
            }
            ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(200));
            for (ConsumerRecord<byte[], byte[]> r : batch) {
                Integer count = r.deliveryCount().map(Short::intValue).orElse(null);
                String ackName = plan.isEmpty() ? null
                        : plan.get(Math.min(Math.max(count == null ? 1 : count, 1), plan.size()) - 1);
                ArrayNode row = records.addArray();
                row.add(r.topic()).add(r.partition()).add(r.offset());
                if (count == null) {
                    row.addNull();
                } else {
                    row.add(count);
                }
                row.add(text(r.key())).add(text(r.value()));
                last = System.currentTimeMillis();
                if (ackName != null) {
                    consumer.acknowledge(r, type(ackName));
                }
                if (each) {
                    ObjectNode e = JSON.createObjectNode();
                    e.put("event", "record");
                    e.put("topic", r.topic());
                    e.put("partition", r.partition());
                    e.put("offset", r.offset());
                    e.put("key", text(r.key()));
                    e.put("value", text(r.value()));
                    if (count == null) {
                        e.putNull("delivery_count");
                    } else {
                        e.put("delivery_count", count);
                    }
                    e.put("ack", ackName);
                    emit(e);
                }
            }
            if (hold && !batch.isEmpty()) {
                Thread.sleep(req.path("hold_ms").asLong(0));
                break;
            }
            if (!batch.isEmpty() && pause > 0) {
                Thread.sleep(pause);
            }
        }
        if (explicit && !hold) {
            consumer.commitSync();
        }
        consumer.close();
        ObjectNode end = JSON.createObjectNode();
        end.put("event", "records");
        end.set("records", records);
        emit(end);
        System.exit(0);
    }
}
