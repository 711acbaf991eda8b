// The Apache Kafka Java client 4.4 on either side of kcon's transactions: the same requests and
// answers as tests/py/txn.py (librdkafka), so a test can check kcon against the reference
// client.
//
// Reads one JSON object on stdin (or args[0]), with "op" one of:
//   {"op": "produce", "bootstrap": "host:port", "topic": "t", "transactional_id": "tx",
//    "transactions": [{"values": ["a", "b"], "partition": 0, "commit": true}, ...]}
//       a transactional producer writes each transaction's values (UTF-8) to the partition and
//       commits or aborts it; prints {"done": n}.
//   {"op": "read", "bootstrap": "host:port", "topic": "t", "partitions": 1,
//    "isolation": "read_committed" | "read_uncommitted", "expect": n, "quiet_ms": 2000,
//    "within_ms": 30000}
//       reads every partition from the start with that isolation level until it has `expect`
//       records and then nothing more for `quiet_ms` (or `within_ms` pass), and prints
//       {"values": [...], "offsets": [[partition, offset], ...], "end": [[partition, offset], ...]}
//       where `end` is each partition's position at the end (read_committed: at most the last
//       stable offset).
// Any error fails the program (exit 1) with the reason on stderr.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class Txn {
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        String line = args.length > 0 ? args[0]
                : new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))
                        .readLine();
        JsonNode req = JSON.readTree(line);
        ObjectNode answer;
        switch (req.get("op").asText()) {
            case "produce": answer = produce(req); break;
            case "read": answer = read(req); break;
            default: throw new IllegalArgumentException("unknown op " + req.get("op"));
        }
        System.out.println(answer.toString());
        System.out.flush();
        System.exit(0);
    }

    static ObjectNode produce(JsonNode req) {
        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("transactional.id", req.get("transactional_id").asText());
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        props.put("linger.ms", "5");
        int done = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            String topic = req.get("topic").asText();
            for (JsonNode txn : req.get("transactions")) {
                producer.beginTransaction();
                int partition = txn.path("partition").asInt(0);
                for (JsonNode v : txn.get("values")) {
                    producer.send(new ProducerRecord<>(topic, partition, null,
                            v.asText().getBytes(StandardCharsets.UTF_8)));
                }
                // Flushed first, so that an aborted transaction's records are on the log too.
                producer.flush();
                if (txn.get("commit").asBoolean()) {
                    producer.commitTransaction();
                } else {
                    producer.abortTransaction();
                }
                done++;
            }
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("done", done);
        return out;
    }

    static ObjectNode read(JsonNode req) {
        Properties props = new Properties();
        props.put("bootstrap.servers", req.get("bootstrap").asText());
        props.put("isolation.level", req.path("isolation").asText("read_committed"));
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        String topic = req.get("topic").asText();
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < req.path("partitions").asInt(1); p++) {
            tps.add(new TopicPartition(topic, p));
        }
        int expect = req.path("expect").asInt(0);
        long quiet = req.path("quiet_ms").asLong(2000);
        long deadline = System.currentTimeMillis() + req.path("within_ms").asLong(30000);
        ObjectNode out = JSON.createObjectNode();
        ArrayNode values = out.putArray("values");
        ArrayNode offsets = out.putArray("offsets");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long last = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline) {
                if (values.size() >= expect && System.currentTimeMillis() - last >= quiet) {
                    break;
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    values.add(r.value() == null ? null
                            : new String(r.value(), StandardCharsets.UTF_8));
                    offsets.addArray().add(r.partition()).add(r.offset());
                    last = System.currentTimeMillis();
                }
            }
            ArrayNode end = out.putArray("end");
            for (TopicPartition tp : tps) {
                end.addArray().add(tp.partition()).add(consumer.position(tp));
            }
        }
        return out;
    }
}
