// A long-running consumer-group member of the Apache Kafka Java client (the reference client),
// for kcon's mixed-group tests: the same line protocol as tests/py/group_member.py, so
// kcon_tests::group_peers::GroupPeer drives either.
//
// Input: one JSON object, as args[0] or else as the first line of stdin:
//   {"bootstrap": "host:port,...", "group": "g", "topics": ["t", ...],
//    "strategy": "range" | "roundrobin" | "sticky" | "cooperative-sticky",
//    "session_timeout_ms": null | n, "heartbeat_interval_ms": null | n,
//    "group_instance_id": null | "id", "group_protocol": null | "classic" | "consumer",
//    "report_records": false | true, "extra": {property: value, ...}}
// Null (or absent) timeouts keep the client's defaults. With "group_protocol": "consumer"
// (KIP-848) the coordinator assigns: strategy, session timeout and heartbeat interval are not
// set (the Java client refuses them there); `extra` may name "group.remote.assignor".
//
// The member subscribes, then polls without end, discarding records, and prints one JSON object
// per line on stdout:
//   {"event": "ready"}
//   {"event": "assigned", "partitions": [["t", 0], ...], "full": [...]}
//   {"event": "revoked",  "partitions": [...], "full": [...]}
//   {"event": "lost",     "partitions": [...], "full": [...]}
//   {"event": "records", "records": [["t", 0, offset], ...]}   with "report_records": true,
//                                                 each poll's records, before the next poll
//   {"event": "error", "message": "..."}
//   {"event": "closed"}                          after consumer.close(); then exit 0
// `partitions` is what the listener was given, `full` the member's whole assignment after it.
// Stdin commands, one per line: "close" (also at end of stdin) closes the consumer, leaving
// the group, and exits 0.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class GroupMember {
    static final ObjectMapper JSON = new ObjectMapper();

    static synchronized void emit(ObjectNode event) {
        System.out.println(event.toString());
        System.out.flush();
    }

    static ObjectNode event(String name) {
        ObjectNode e = JSON.createObjectNode();
        e.put("event", name);
        return e;
    }

    static ArrayNode list(Collection<TopicPartition> tps) {
        List<TopicPartition> sorted = new ArrayList<>(tps);
        sorted.sort(Comparator.comparing(TopicPartition::topic)
                .thenComparingInt(TopicPartition::partition));
        ArrayNode out = JSON.createArrayNode();
        for (TopicPartition tp : sorted) {
            out.addArray().add(tp.topic()).add(tp.partition());
        }
        return out;
    }

    static String assignor(String strategy) {
        switch (strategy) {
            case "range": return "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin": return "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "sticky": return "org.apache.kafka.clients.consumer.StickyAssignor";
            case "cooperative-sticky":
                return "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default: throw new IllegalArgumentException("unknown strategy " + strategy);
        }
    }

    public static void main(String[] args) throws Exception {
        BufferedReader stdin = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line = args.length > 0 ? args[0] : stdin.readLine();
        JsonNode cfg = JSON.readTree(line);
        try {
            run(cfg, stdin);
        } catch (Exception e) {
            ObjectNode err = event("error");
            err.put("message", e.getClass().getSimpleName() + ": " + e.getMessage());
            emit(err);
            e.printStackTrace();
            System.exit(1);
        }
    }

    static void run(JsonNode cfg, BufferedReader stdin) throws Exception {
        boolean kip848 = "consumer".equals(cfg.path("group_protocol").asText(null));
        Properties props = new Properties();
        props.put("bootstrap.servers", cfg.get("bootstrap").asText());
        props.put("group.id", cfg.get("group").asText());
        props.put("auto.offset.reset", "earliest");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        String strategy = cfg.path("strategy").asText("range");
        if (kip848) {
            props.put("group.protocol", "consumer");
        } else {
            props.put("partition.assignment.strategy", assignor(strategy));
            if (cfg.hasNonNull("session_timeout_ms")) {
                props.put("session.timeout.ms", cfg.get("session_timeout_ms").asText());
            }
            if (cfg.hasNonNull("heartbeat_interval_ms")) {
                props.put("heartbeat.interval.ms", cfg.get("heartbeat_interval_ms").asText());
            }
        }
        if (cfg.hasNonNull("group_instance_id")) {
            props.put("group.instance.id", cfg.get("group_instance_id").asText());
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = cfg.path("extra").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            props.put(e.getKey(), e.getValue().asText());
        }
        // Cooperative (and KIP-848) listeners are given what was added or removed; eager ones the
        // whole assignment.
        boolean incremental = kip848 || "cooperative-sticky".equals(strategy);
        TreeSet<String> full = new TreeSet<>();
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
        ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                if (!incremental) {
                    full.clear();
                }
                tps.forEach(tp -> full.add(tp.topic() + "\u0000" + tp.partition()));
                tell("assigned", tps);
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                tps.forEach(tp -> full.remove(tp.topic() + "\u0000" + tp.partition()));
                tell("revoked", tps);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> tps) {
                tps.forEach(tp -> full.remove(tp.topic() + "\u0000" + tp.partition()));
                tell("lost", tps);
            }

            void tell(String name, Collection<TopicPartition> tps) {
                ObjectNode e = event(name);
                e.set("partitions", list(tps));
                List<TopicPartition> all = new ArrayList<>();
                for (String key : full) {
                    String[] parts = key.split("\u0000");
                    all.add(new TopicPartition(parts[0], Integer.parseInt(parts[1])));
                }
                e.set("full", list(all));
                emit(e);
            }
        };
        List<String> topics = new ArrayList<>();
        cfg.get("topics").forEach(t -> topics.add(t.asText()));
        consumer.subscribe(topics, listener);
        emit(event("ready"));

        AtomicBoolean closing = new AtomicBoolean(false);
        Thread commands = new Thread(() -> {
            try {
                String command;
                while ((command = stdin.readLine()) != null) {
                    command = command.trim();
                    if (command.equals("close")) {
                        break;
                    }
                    if (!command.isEmpty()) {
                        ObjectNode err = event("error");
                        err.put("message", "unknown command " + command);
                        emit(err);
                    }
                }
            } catch (Exception ignored) {
                // End of input closes the member, as "close" does.
            }
            closing.set(true);
            consumer.wakeup();
        });
        commands.setDaemon(true);
        commands.start();

        boolean reportRecords = cfg.path("report_records").asBoolean(false);
        while (!closing.get()) {
            try {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                if (reportRecords && !records.isEmpty()) {
                    ObjectNode e = event("records");
                    ArrayNode out = e.putArray("records");
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        out.addArray().add(r.topic()).add(r.partition()).add(r.offset());
                    }
                    emit(e);
                }
            } catch (WakeupException e) {
                // closing
            } catch (Exception e) {
                ObjectNode err = event("error");
                err.put("message", e.getClass().getSimpleName() + ": " + e.getMessage());
                emit(err);
            }
        }
        consumer.close();
        emit(event("closed"));
        System.exit(0);
    }
}
