// Apache Kafka's own Java client (kafka-clients) as a peer of the comparison benchmark.
//
// One process runs one workload and prints one JSON line to stdout; the client logs only to
// stderr, at WARN and above. Subcommands, each taking `--name value` options only:
//
//   consume  --bootstrap B --topic T --ends E0,E1,.. [--group G] [--warmup N]
//            reads partitions 0..n-1 of T from offset 0 up to their ends with a KafkaConsumer,
//            by assignment or in group G, and checks that every offset came exactly once;
//   produce  --bootstrap B --topic T --records N --values FILE --size S --acks 1|all
//            --idempotence true|false --compression none|lz4|zstd --keys true|false [--warmup N]
//            sends N records with a KafkaProducer, each with a completion callback, then flushes;
//   txn      --bootstrap B --topic T --transactions N --records R --size S
//            writes N transactions of R records to partition 0 with a transactional producer;
//   share    --bootstrap B --topic T --group G --records N
//            reads N distinct records as a member of share group G (KafkaShareConsumer, records
//            acknowledged implicitly);
//   latency  --bootstrap B --topic T --partitions P --rate R --seconds D --warmup-seconds W --size S
//            a producer sends R stamped records a second while a consumer in the same process
//            measures how long each took to arrive.
//
// Every client runs at its default settings except what the subcommand sets. On failure the
// program prints a one-line reason to stderr and exits 1; a run that makes no progress for 60 s
// fails the same way, saying what it saw.

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.config.Configurator;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilder;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilderFactory;
import org.apache.logging.log4j.core.config.builder.impl.BuiltConfiguration;

public final class Peer {
    /** The client's name in the output lines. */
    static final String CLIENT = "java";

    /** How long one poll waits for records when none are ready. */
    static final Duration POLL = Duration.ofMillis(100);

    public static void main(String[] argv) {
        quietLogging();
        String command = argv.length > 0 ? argv[0] : "";
        int status;
        try {
            Args args = new Args(argv);
            Watchdog.start(command);
            status = switch (command) {
                case "consume" -> consume(args);
                case "produce" -> produce(args);
                case "txn" -> txn(args);
                case "share" -> share(args);
                case "latency" -> latency(args);
                default -> throw new IllegalArgumentException(
                        "usage: Peer consume|produce|txn|share|latency --name value ...");
            };
        } catch (Throwable e) {
            System.err.println("java " + command + ": " + oneLine(e));
            status = 1;
        }
        System.out.flush();
        System.err.flush();
        // The client's threads are daemons, but a failed run may leave one busy: end here.
        System.exit(status);
    }

    // ---------------------------------------------------------------------------------------
    // consume

    /** The `consume` subcommand: warm-up passes, then the measured pass and its report. */
    static int consume(Args args) {
        String bootstrap = args.required("bootstrap");
        String topic = args.required("topic");
        long[] ends = args.longs("ends");
        String group = args.optional("group");
        int warmup = args.integer("warmup", 0);
        for (int pass = 1; pass <= warmup; pass++) {
            read(bootstrap, topic, ends, group == null ? null : group + "-warm" + pass,
                    new Tally(ends));
        }
        long passStarted = nowNs();
        long cpuBefore = cpuNanos();
        Tally tally = new Tally(ends);
        read(bootstrap, topic, ends, group, tally);
        long closed = nowNs();
        long cpuAfter = cpuNanos();
        Json out = new Json()
                .put("records", tally.records)
                .put("bytes", tally.bytes)
                .put("started_ns", startedNs())
                .put("first_ns", tally.firstNs)
                .put("last_ns", tally.lastNs)
                .put("closed_ns", closed)
                .put("complete", tally.done())
                .put("duplicates", tally.duplicates)
                .put("missing", tally.missing)
                .put("unexpected", tally.unexpected)
                .put("exactly_once", tally.exactlyOnce())
                // The JVM cannot read a socket's TCP_INFO.
                .put("wire_sent", (Long) null)
                .put("wire_received", (Long) null)
                .put("wire_connections", (Long) null);
        if (args.has("warmup")) {
            out.put("warmup_passes", warmup).put("warm_cpu_s", cpuAfter - cpuBefore, 1e-9, 3)
                    .put("pass_started_ns", passStarted);
        }
        System.out.println(out);
        return 0;
    }

    /**
     * Reads the workload once with a new consumer: in `group` (subscribing) or, without one, by
     * assigning every partition; both start from the earliest offset. Closes the consumer once
     * every partition has reached its end.
     */
    static void read(String bootstrap, String topic, long[] ends, String group, Tally tally) {
        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("auto.offset.reset", "earliest");
        if (group != null) {
            config.put("group.id", group);
        }
        Watchdog.seen = tally::describe;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(
                config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            if (group != null) {
                consumer.subscribe(List.of(topic));
            } else {
                List<TopicPartition> partitions = new ArrayList<>();
                for (int p = 0; p < ends.length; p++) {
                    partitions.add(new TopicPartition(topic, p));
                }
                consumer.assign(partitions);
            }
            while (!tally.done()) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(POLL);
                if (records.isEmpty()) {
                    continue;
                }
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    tally.observe(r.partition(), r.offset(), r.value() == null ? 0 : r.value().length);
                }
                Watchdog.progress();
            }
        }
    }

    /** What a consumer handed to the application, and whether every offset came exactly once. */
    static final class Tally {
        final long[] ends;
        /** Per partition, the next offset expected. */
        final long[] next;
        /** Partitions that have not delivered their last record yet. */
        int remaining;
        long records, bytes, duplicates, missing, unexpected;
        Long firstNs, lastNs;

        Tally(long[] ends) {
            this.ends = ends;
            this.next = new long[ends.length];
            for (long end : ends) {
                if (end > 0) {
                    remaining++;
                }
            }
        }

        /** Counts one record of `partition` at `offset` with a value of `length` bytes. */
        void observe(int partition, long offset, int length) {
            if (firstNs == null) {
                firstNs = nowNs();
            }
            records++;
            bytes += length;
            if (partition < 0 || partition >= ends.length) {
                unexpected++;
            } else if (offset < next[partition]) {
                duplicates++;
            } else if (offset >= ends[partition]) {
                unexpected++;
            } else {
                missing += offset - next[partition];
                next[partition] = offset + 1;
                if (offset + 1 == ends[partition] && --remaining == 0) {
                    lastNs = nowNs();
                }
            }
        }

        boolean done() {
            return remaining == 0;
        }

        boolean exactlyOnce() {
            return done() && duplicates == 0 && missing == 0 && unexpected == 0;
        }

        /** For a stalled run: the counts and each partition's position against its end. */
        String describe() {
            StringBuilder s = new StringBuilder();
            s.append(records).append(" records, ").append(duplicates).append(" duplicates, ")
                    .append(missing).append(" missing, ").append(unexpected)
                    .append(" unexpected; next offset / end per partition:");
            for (int p = 0; p < ends.length; p++) {
                s.append(' ').append(p).append('=').append(next[p]).append('/').append(ends[p]);
            }
            return s.toString();
        }
    }

    // ---------------------------------------------------------------------------------------
    // produce

    /** The `produce` subcommand: warm-up passes, then the measured pass and its report. */
    static int produce(Args args) throws Exception {
        String bootstrap = args.required("bootstrap");
        String topic = args.required("topic");
        long count = args.number("records");
        int size = (int) args.number("size");
        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("acks", args.oneOf("acks", "1", "all"));
        config.put("enable.idempotence", args.oneOf("idempotence", "true", "false"));
        config.put("compression.type", args.oneOf("compression", "none", "lz4", "zstd"));
        boolean withKeys = args.oneOf("keys", "true", "false").equals("true");
        int warmup = args.integer("warmup", 0);

        // The values: the file's bytes cut into values of `size` bytes; record i has value i mod K.
        byte[] file = Files.readAllBytes(Path.of(args.required("values")));
        if (size <= 0 || file.length < size) {
            throw new IllegalArgumentException("the values file holds no value of " + size + " bytes");
        }
        byte[][] values = new byte[file.length / size][];
        for (int v = 0; v < values.length; v++) {
            values[v] = Arrays.copyOfRange(file, v * size, (v + 1) * size);
        }
        // The keys: record i's key is i mod 10007 as 8 zero-padded digits.
        byte[][] keys = null;
        if (withKeys) {
            keys = new byte[10007][];
            for (int k = 0; k < keys.length; k++) {
                keys[k] = String.format("%08d", k).getBytes(StandardCharsets.US_ASCII);
            }
        }

        for (int pass = 1; pass <= warmup; pass++) {
            Sent sent = send(config, topic, count, values, keys);
            if (sent.errors.get() > 0) {
                throw new IllegalStateException("warm-up pass " + pass + ": " + sent.errors.get()
                        + " records failed, the first with " + sent.firstError.get());
            }
        }
        long passStarted = nowNs();
        long cpuBefore = cpuNanos();
        Sent sent = send(config, topic, count, values, keys);
        long cpuAfter = cpuNanos();
        Json out = new Json()
                .put("records", count)
                .put("bytes", count * size)
                .put("started_ns", startedNs())
                .put("first_ns", sent.firstNs)
                .put("last_ns", sent.lastNs)
                .put("closed_ns", sent.closedNs)
                .put("errors", sent.errors.get())
                .put("first_error", sent.firstError.get());
        if (args.has("warmup")) {
            out.put("warmup_passes", warmup).put("warm_cpu_s", cpuAfter - cpuBefore, 1e-9, 3)
                    .put("pass_started_ns", passStarted);
        }
        System.out.println(out);
        if (sent.errors.get() > 0) {
            System.err.println("java produce: " + sent.errors.get()
                    + " records failed, the first with " + sent.firstError.get());
            return 1;
        }
        return 0;
    }

    /**
     * The completion of every record of one produce pass (the producer's callback, run on its
     * I/O thread), and the pass's times.
     */
    static final class Sent implements Callback {
        final AtomicLong acknowledged = new AtomicLong();
        final AtomicLong errors = new AtomicLong();
        final AtomicReference<String> firstError = new AtomicReference<>();
        long firstNs, lastNs, closedNs;

        @Override
        public void onCompletion(RecordMetadata metadata, Exception error) {
            if (error != null) {
                errors.incrementAndGet();
                firstError.compareAndSet(null, oneLine(error));
            }
            acknowledged.incrementAndGet();
            Watchdog.progress();
        }
    }

    /**
     * One produce pass with a new producer: every record sent asynchronously with its
     * completion callback, then a flush (which waits for every completion), then close.
     */
    static Sent send(Properties config, String topic, long count, byte[][] values, byte[][] keys) {
        Sent sent = new Sent();
        long[] sends = {0};
        Watchdog.seen = () -> sends[0] + " of " + count + " records sent, "
                + sent.acknowledged.get() + " completed, " + sent.errors.get() + " failed";
        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        sent.firstNs = nowNs();
        for (long i = 0; i < count; i++) {
            byte[] key = keys == null ? null : keys[(int) (i % keys.length)];
            producer.send(new ProducerRecord<>(topic, key, values[(int) (i % values.length)]), sent);
            sends[0] = i + 1;
        }
        producer.flush();
        sent.lastNs = nowNs();
        producer.close();
        sent.closedNs = nowNs();
        return sent;
    }

    // ---------------------------------------------------------------------------------------
    // txn

    /** The `txn` subcommand: N transactions of R records to partition 0, each committed. */
    static int txn(Args args) {
        String topic = args.required("topic");
        long transactions = args.number("transactions");
        long records = args.number("records");
        byte[] value = new byte[(int) args.number("size")];
        Arrays.fill(value, (byte) 'x');
        Properties config = new Properties();
        config.put("bootstrap.servers", args.required("bootstrap"));
        config.put("transactional.id", "bench-" + CLIENT + "-" + ProcessHandle.current().pid());
        long[] committed = {0};
        Watchdog.seen = () -> committed[0] + " of " + transactions + " transactions committed";

        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        producer.initTransactions();
        long started = System.nanoTime();
        for (long t = 0; t < transactions; t++) {
            producer.beginTransaction();
            for (long r = 0; r < records; r++) {
                producer.send(new ProducerRecord<>(topic, 0, null, value));
            }
            // Flushes the transaction's records, then commits; fails if any of them failed.
            producer.commitTransaction();
            committed[0] = t + 1;
            Watchdog.progress();
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        producer.close();

        long written = transactions * records;
        System.out.println(new Json()
                .put("client", CLIENT)
                .put("transactions", transactions)
                .put("records", written)
                .put("seconds", seconds, 1, 3)
                .put("transactions_per_s", transactions / seconds, 1, 1)
                .put("records_per_s", written / seconds, 1, 0)
                .put("cpu_s", cpuNanos(), 1e-9, 3));
        return 0;
    }

    // ---------------------------------------------------------------------------------------
    // share

    /**
     * Distinct (partition, offset) pairs: a bit per offset in a bitmap per partition (the
     * benchmark's topic is new, its offsets start at 0), a set for any other; a set of boxed
     * longs for all would be the harness's cost, not the client's.
     */
    static final class Distinct {
        final ArrayList<BitSet> bits = new ArrayList<>();
        final HashSet<Long> others = new HashSet<>();
        long count;

        boolean add(int partition, long offset) {
            boolean added;
            if (partition < 0 || partition > 65535 || offset < 0 || offset >= (1 << 26)) {
                added = others.add(((long) partition << 40) + offset);
            } else {
                while (bits.size() <= partition) {
                    bits.add(new BitSet());
                }
                BitSet set = bits.get(partition);
                added = !set.get((int) offset);
                set.set((int) offset);
            }
            if (added) {
                count++;
            }
            return added;
        }
    }

    /** The `share` subcommand: a share-group member reads until it has N distinct offsets. */
    static int share(Args args) {
        String topic = args.required("topic");
        long want = args.number("records");
        Properties config = new Properties();
        config.put("bootstrap.servers", args.required("bootstrap"));
        config.put("group.id", args.required("group"));
        Distinct seen = new Distinct();
        long first = 0, last = 0;
        Watchdog.seen = () -> seen.count + " of " + want + " distinct records";

        // Records are acknowledged implicitly: each poll accepts the records of the one before,
        // and close accepts the last poll's.
        try (KafkaShareConsumer<byte[], byte[]> consumer = new KafkaShareConsumer<>(
                config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (seen.count < want) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(POLL);
                if (records.isEmpty()) {
                    continue;
                }
                // A batch's records all reached the application at this moment.
                long now = System.nanoTime();
                if (first == 0) {
                    first = now;
                }
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (seen.add(r.partition(), r.offset())) {
                        last = now;
                    }
                }
                Watchdog.progress();
            }
        }
        double seconds = (last - first) / 1e9;
        System.out.println(new Json()
                .put("client", CLIENT)
                .put("records", seen.count)
                .put("seconds", seconds, 1, 3)
                .put("records_per_s", seen.count / Math.max(seconds, 1e-9), 1, 0)
                .put("cpu_s", cpuNanos(), 1e-9, 3));
        return 0;
    }

    // ---------------------------------------------------------------------------------------
    // latency

    /**
     * The `latency` subcommand: a consumer on a thread of its own, then a producer sending
     * records at an even pace, each stamped with the wall-clock time of its send; the consumer
     * notes how long each took to arrive.
     */
    static int latency(Args args) throws Exception {
        String bootstrap = args.required("bootstrap");
        String topic = args.required("topic");
        int partitions = args.integer("partitions", -1);
        long rate = args.number("rate");
        long seconds = args.number("seconds");
        long warmupSeconds = args.number("warmup-seconds");
        int size = (int) args.number("size");
        if (partitions <= 0 || rate <= 0 || size < 8) {
            throw new IllegalArgumentException("need --partitions > 0, --rate > 0 and --size >= 8");
        }
        long total = rate * (warmupSeconds + seconds);
        long uncounted = rate * warmupSeconds;

        Receiver receiver = new Receiver(bootstrap, topic, partitions, (int) (rate * seconds));
        Thread consumerThread = new Thread(receiver, "latency-consumer");
        consumerThread.start();
        Watchdog.seen = () -> "the consumer has not fetched yet";
        while (!receiver.ready.await(100, TimeUnit.MILLISECONDS)) {
            receiver.check();
        }
        receiver.check();

        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        long[] sent = {0};
        Watchdog.seen = () -> sent[0] + " of " + total + " records sent, "
                + receiver.received + " received";
        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        byte[] filler = new byte[size];
        Arrays.fill(filler, (byte) 'x');

        // Record i is due at t0 + i / rate; the loop sends every record due, then sleeps until
        // the next one is due, at most a millisecond.
        long t0 = System.nanoTime();
        long i = 0;
        while (i < total) {
            long due = Math.min(total, (System.nanoTime() - t0) * rate / 1_000_000_000L + 1);
            for (; i < due; i++) {
                byte[] value = filler.clone();
                long stamp = nowNs();
                if (i == uncounted) {
                    // This record and every later one are counted.
                    receiver.countFrom = stamp;
                }
                ByteBuffer.wrap(value).putLong(0, stamp);
                producer.send(new ProducerRecord<>(topic, null, value));
            }
            sent[0] = i;
            Watchdog.progress();
            if (i < total) {
                long wait = t0 + i * 1_000_000_000L / rate - System.nanoTime();
                LockSupport.parkNanos(Math.min(wait, 1_000_000L));
            }
        }

        // Every record sent: wait until all have arrived, or 30 s.
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (receiver.received < total && System.nanoTime() < deadline) {
            receiver.check();
            LockSupport.parkNanos(1_000_000L);
        }
        receiver.stop = true;
        consumerThread.join();
        receiver.check();
        producer.close();

        long received = receiver.received;
        long[] latencies = Arrays.copyOf(receiver.latencies, receiver.counted);
        Arrays.sort(latencies);
        System.out.println(new Json()
                .put("client", CLIENT)
                .put("sent", total)
                .put("received", received)
                .put("counted", latencies.length)
                .put("lost", Math.max(0, total - received))
                .raw("p50_us", percentileMicros(latencies, 0.5))
                .raw("p99_us", percentileMicros(latencies, 0.99))
                .raw("p999_us", percentileMicros(latencies, 0.999))
                .raw("max_us", percentileMicros(latencies, 1.0))
                .put("cpu_s", cpuNanos(), 1e-9, 3));
        return 0;
    }

    /** The q-th percentile of sorted nanoseconds, in microseconds with one decimal, as JSON. */
    static String percentileMicros(long[] sorted, double q) {
        if (sorted.length == 0) {
            return "null";
        }
        int index = (int) Math.ceil(q * sorted.length) - 1;
        return String.format(Locale.ROOT, "%.1f", sorted[Math.max(index, 0)] / 1000.0);
    }

    /**
     * The latency run's consumer, polling on its own thread: it assigns every partition from
     * offset 0, is ready once its first fetch has completed (so the next one is under way), and
     * notes each counted record's latency.
     */
    static final class Receiver implements Runnable {
        final String bootstrap, topic;
        final int partitions;
        final CountDownLatch ready = new CountDownLatch(1);
        /** The stamp of the first counted record, once it is sent. */
        volatile long countFrom = Long.MAX_VALUE;
        volatile boolean stop;
        volatile long received;
        volatile Throwable failure;
        /** Latencies of counted records, in nanoseconds (written by the consumer thread). */
        long[] latencies;
        int counted;

        Receiver(String bootstrap, String topic, int partitions, int expected) {
            this.bootstrap = bootstrap;
            this.topic = topic;
            this.partitions = partitions;
            this.latencies = new long[Math.max(expected, 1024)];
        }

        /** Rethrows the consumer thread's failure, if it failed. */
        void check() throws Exception {
            Throwable t = failure;
            if (t != null) {
                throw new IllegalStateException("consumer: " + oneLine(t), t);
            }
        }

        @Override
        public void run() {
            Properties config = new Properties();
            config.put("bootstrap.servers", bootstrap);
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(
                    config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                List<TopicPartition> assigned = new ArrayList<>();
                for (int p = 0; p < partitions; p++) {
                    assigned.add(new TopicPartition(topic, p));
                }
                consumer.assign(assigned);
                for (TopicPartition tp : assigned) {
                    consumer.seek(tp, 0);
                }
                long got = 0;
                while (!stop) {
                    ConsumerRecords<byte[], byte[]> records = consumer.poll(POLL);
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        long now = nowNs();
                        long stamp = ByteBuffer.wrap(r.value()).getLong(0);
                        if (stamp >= countFrom) {
                            if (counted == latencies.length) {
                                latencies = Arrays.copyOf(latencies, counted * 2);
                            }
                            latencies[counted++] = now - stamp;
                        }
                        got++;
                    }
                    if (!records.isEmpty()) {
                        received = got;
                        Watchdog.progress();
                    }
                    if (ready.getCount() > 0 && fetchesCompleted(consumer) > 0) {
                        ready.countDown();
                    }
                }
            } catch (Throwable t) {
                failure = t;
                ready.countDown();
            }
        }

        /** The consumer's count of completed fetches (its `fetch-total` metric). */
        static double fetchesCompleted(KafkaConsumer<?, ?> consumer) {
            for (Map.Entry<MetricName, ? extends Metric> m : consumer.metrics().entrySet()) {
                MetricName name = m.getKey();
                if (name.name().equals("fetch-total")
                        && name.group().equals("consumer-fetch-manager-metrics")
                        && !name.tags().containsKey("topic")) {
                    return ((Number) m.getValue().metricValue()).doubleValue();
                }
            }
            return 0;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Common parts

    /** Wall-clock nanoseconds since the Unix epoch. */
    static long nowNs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    /** When the JVM started, in nanoseconds since the Unix epoch (it is known to the millisecond). */
    static long startedNs() {
        return ManagementFactory.getRuntimeMXBean().getStartTime() * 1_000_000L;
    }

    /** The process's CPU time so far (user + system, every thread), in nanoseconds. */
    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    /** An error as one line of text: its type and message. */
    static String oneLine(Throwable e) {
        String message = e.getMessage();
        String text = e.getClass().getSimpleName() + (message == null ? "" : ": " + message);
        return text.replaceAll("\\s*[\\r\\n]+\\s*", " ");
    }

    /**
     * Sends the client's log (log4j2, which it reaches through SLF4J) to stderr, WARN and above:
     * without a configuration log4j2 would print errors to stdout, which holds only the result.
     */
    static void quietLogging() {
        ConfigurationBuilder<BuiltConfiguration> b = ConfigurationBuilderFactory.newConfigurationBuilder();
        b.setStatusLevel(Level.ERROR);
        b.add(b.newAppender("stderr", "Console")
                .addAttribute("target", "SYSTEM_ERR")
                .add(b.newLayout("PatternLayout")
                        .addAttribute("pattern", "%d{HH:mm:ss.SSS} %-5level %c{1}: %msg%n")));
        b.add(b.newRootLogger(Level.WARN).add(b.newAppenderRef("stderr")));
        Configurator.initialize(b.build());
    }

    /** Fails the run when nothing has progressed for 60 s, saying what it saw. */
    static final class Watchdog {
        static final AtomicLong PROGRESS = new AtomicLong();
        /** What the run has seen so far, for the failure message. */
        static volatile Supplier<String> seen = () -> "nothing yet";

        /** Notes that the run moved on (records arrived, were acknowledged, ...). */
        static void progress() {
            PROGRESS.incrementAndGet();
        }

        static void start(String command) {
            Thread t = new Thread(() -> {
                long last = PROGRESS.get();
                long since = System.nanoTime();
                while (true) {
                    try {
                        Thread.sleep(1000);
                    } catch (InterruptedException e) {
                        return;
                    }
                    long now = PROGRESS.get();
                    if (now != last) {
                        last = now;
                        since = System.nanoTime();
                    } else if (System.nanoTime() - since >= 60_000_000_000L) {
                        System.err.println("java " + command + ": no progress for 60 s: " + seen.get());
                        System.err.flush();
                        Runtime.getRuntime().halt(1);
                    }
                }
            }, "watchdog");
            t.setDaemon(true);
            t.start();
        }
    }

    /** The command line: a subcommand, then `--name value` pairs. */
    static final class Args {
        final Map<String, String> values = new HashMap<>();

        Args(String[] argv) {
            for (int i = 1; i < argv.length; i += 2) {
                if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                    throw new IllegalArgumentException("expected --name value, got " + argv[i]);
                }
                values.put(argv[i].substring(2), argv[i + 1]);
            }
        }

        boolean has(String name) {
            return values.containsKey(name);
        }

        String optional(String name) {
            return values.get(name);
        }

        String required(String name) {
            String v = values.get(name);
            if (v == null) {
                throw new IllegalArgumentException("missing --" + name);
            }
            return v;
        }

        long number(String name) {
            String v = required(name);
            try {
                return Long.parseLong(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--" + name + " " + v + " is not a number");
            }
        }

        int integer(String name, int absent) {
            return has(name) ? Math.toIntExact(number(name)) : absent;
        }

        long[] longs(String name) {
            return Arrays.stream(required(name).split(",")).mapToLong(Long::parseLong).toArray();
        }

        String oneOf(String name, String... allowed) {
            String v = required(name);
            if (!Arrays.asList(allowed).contains(v)) {
                throw new IllegalArgumentException("--" + name + " must be one of "
                        + String.join(", ", allowed) + ", not " + v);
            }
            return v;
        }
    }

    /** One JSON object, built field by field in order. */
    static final class Json {
        final StringBuilder s = new StringBuilder("{");

        private Json key(String name) {
            if (s.length() > 1) {
                s.append(',');
            }
            s.append('"').append(name).append("\":");
            return this;
        }

        Json put(String name, long value) {
            key(name).s.append(value);
            return this;
        }

        Json put(String name, boolean value) {
            key(name).s.append(value);
            return this;
        }

        /** Text that is JSON already. */
        Json raw(String name, String json) {
            key(name).s.append(json);
            return this;
        }

        /** A number or null. */
        Json put(String name, Long value) {
            key(name).s.append(value == null ? "null" : value.toString());
            return this;
        }

        /** `value * scale` with `decimals` decimals. */
        Json put(String name, double value, double scale, int decimals) {
            key(name).s.append(String.format(Locale.ROOT, "%." + decimals + "f", value * scale));
            return this;
        }

        /** A string, quoted, or null. */
        Json put(String name, String value) {
            key(name);
            if (value == null) {
                s.append("null");
                return this;
            }
            s.append('"');
            for (char c : value.toCharArray()) {
                switch (c) {
                    case '"' -> s.append("\\\"");
                    case '\\' -> s.append("\\\\");
                    default -> {
                        if (c < 0x20) {
                            s.append(String.format("\\u%04x", (int) c));
                        } else {
                            s.append(c);
                        }
                    }
                }
            }
            s.append('"');
            return this;
        }

        @Override
        public String toString() {
            return s + "}";
        }
    }
}
