// Confluent's parallel-consumer (io.confluent.parallelconsumer:parallel-consumer-core) as a peer
// of the processing benchmark, on the Java client it asks for (kafka-clients 3.9.1: it does not
// run on Apache Kafka 4.4's, see pom.xml). Its classpath is what Maven copies from pom.xml.
//
//   process --bootstrap B --topic T --group G --ends E0,E1,.. --keys K --handler-ms M
//           --concurrency C
//
// A ParallelStreamProcessor over a KafkaConsumer in the new group G (reading from the earliest
// offset) handles every record of T: `ProcessingOrder.KEY`, `maxConcurrency(C)`, the rest at
// parallel-consumer's defaults (one record per call, commits periodic and asynchronous). Each
// call of the poll callback sleeps M ms with `Thread.sleep` (nothing at all for 0), as the
// library's users block in it. Once every record below the partitions' ends was handled, the
// processor is closed (which commits). The consumer sets `enable.auto.commit=false`, which
// parallel-consumer requires.
//
// Prints one JSON line with the same fields as `kcon-compare process`. On failure it prints the
// trace and then a one-line reason to stderr and exits 1; a run that handles nothing for 60 s
// fails the same way, saying what it saw. The client logs to stderr, WARN and above.

import java.lang.management.ManagementFactory;
import java.time.Instant;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import io.confluent.parallelconsumer.internal.AbstractParallelEoSStreamProcessor;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.config.Configurator;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilder;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilderFactory;
import org.apache.logging.log4j.core.config.builder.impl.BuiltConfiguration;

public final class Parallel {
    /** A run that handles nothing new for this long fails. */
    static final long STALL_NS = 60_000_000_000L;

    public static void main(String[] argv) {
        quietLogging();
        String command = argv.length > 0 ? argv[0] : "";
        int status;
        try {
            Args args = new Args(argv);
            if (!command.equals("process")) {
                throw new IllegalArgumentException("usage: Parallel process --name value ...");
            }
            status = process(args);
        } catch (Throwable e) {
            // The trace first, for the log; the reason last, for the driver's report.
            e.printStackTrace();
            System.err.println("parallel " + command + ": " + oneLine(e));
            status = 1;
        }
        System.out.flush();
        System.err.flush();
        System.exit(status);
    }

    static int process(Args args) throws Exception {
        String bootstrap = args.required("bootstrap");
        String topic = args.required("topic");
        String group = args.required("group");
        long[] ends = args.longs("ends");
        int keys = Math.toIntExact(args.number("keys"));
        long handlerMs = args.number("handler-ms");
        int concurrency = Math.toIntExact(args.number("concurrency"));
        Handled handled = new Handled(ends, keys);
        
        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("group.id", group);
        config.put("auto.offset.reset", "earliest");
        // parallel-consumer commits itself and refuses a consumer that auto-commits.
        config.put("enable.auto.commit", "false");
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(
                config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        ParallelConsumerOptions<byte[], byte[]> options = ParallelConsumerOptions.<byte[], byte[]>builder()
                .consumer(consumer)
                .ordering(ProcessingOrder.KEY)
                .maxConcurrency(concurrency)
                .build();
        ParallelStreamProcessor<byte[], byte[]> processor =
                ParallelStreamProcessor.createEosStreamProcessor(options);
        processor.subscribe(List.of(topic));
        processor.poll(context -> {
            ConsumerRecord<byte[], byte[]> r = context.getSingleConsumerRecord();
            int key = handled.keyIndex(r.key());
            handled.start(key, r.offset());
            if (handlerMs > 0) {
                try {
                    long at = System.nanoTime();
                    Thread.sleep(handlerMs);
                    handled.waitedNs.addAndGet(System.nanoTime() - at);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted in the handler", e);
                }
            }
            handled.end(key, r.partition(), r.offset());
        });
        // Every record handled, or the processor failed, or nothing handled for 60 s.
        long progress = -1, since = System.nanoTime();
        while (!handled.done.await(100, TimeUnit.MILLISECONDS)) {
            long now = handled.calls.get();
            if (now != progress) {
                progress = now;
                since = System.nanoTime();
            } else if (System.nanoTime() - since >= STALL_NS) {
                throw new IllegalStateException("nothing handled for 60 s: " + handled.describe());
            }
            if (processor.isClosedOrFailed()) {
                Throwable cause = failure(processor);
                throw new IllegalStateException("parallel-consumer stopped: "
                        + (cause == null ? "no cause given" : oneLine(cause)) + "; " + handled.describe(),
                        cause);
            }
        }
        // Closing commits what was done with and leaves the group.
        processor.close();
        long closed = nowNs();
        long missing = handled.missing();
        long records = handled.distinct.get();
        boolean complete = records == handled.total;
        long duplicates = handled.duplicates.get();
        long unexpected = handled.unexpected.get();
        Json out = new Json()
                .put("records", records)
                .put("calls", handled.calls.get())
                .put("started_ns", startedNs())
                .put("first_ns", handled.firstNs.get() == 0 ? null : handled.firstNs.get())
                .put("last_ns", handled.lastNs.get() == 0 ? null : handled.lastNs.get())
                .put("closed_ns", closed)
                .put("complete", complete)
                .put("duplicates", duplicates)
                .put("missing", missing)
                .put("unexpected", unexpected)
                .put("order_violations", handled.orderViolations.get())
                .put("key_overlaps", handled.keyOverlaps.get())
                .put("most_running", handled.mostRunning.get());
        long calls = handled.calls.get(), waited = handled.waitedNs.get();
        if (waited > 0 && calls > 0) {
            out.put("wait_ms_mean", waited, 1e-6 / calls, 3);
        } else {
            out.put("wait_ms_mean", (Long) null);
        }
        if (handled.cpuLast.get() > 0) {
            out.put("span_cpu_s", handled.cpuLast.get() - handled.cpuFirst.get(), 1e-9, 3);
        } else {
            out.put("span_cpu_s", (Long) null);
        }
        out.put("exactly_once", complete && duplicates == 0 && missing == 0 && unexpected == 0);
        System.out.println(out);
        return 0;
    }

    /**
     * Why the processor stopped: its failure cause, or else what its control thread ended with
     * (an Error, say, which it does not record as the cause).
     */
    static Throwable failure(ParallelStreamProcessor<?, ?> processor) {
        if (!(processor instanceof AbstractParallelEoSStreamProcessor<?, ?> a)) {
            return null;
        }
        if (a.getFailureCause() != null) {
            return a.getFailureCause();
        }
        try {
            java.lang.reflect.Field f = AbstractParallelEoSStreamProcessor.class.getDeclaredField("controlThreadFuture");
            f.setAccessible(true);
            Object future = ((java.util.Optional<?>) f.get(a)).orElse(null);
            if (future instanceof java.util.concurrent.Future<?> done && done.isDone()) {
                done.get();
            }
        } catch (java.util.concurrent.ExecutionException e) {
            return e.getCause();
        } catch (ReflectiveOperationException | RuntimeException | InterruptedException e) {
            return null;
        }
        return null;
    }

    /** What the handlers saw, shared by every record in the handler (the same checks as kcon-compare's). */
    static final class Handled {
        final long[] ends;
        /** Per partition, per offset: times the record was handled to its end. */
        final AtomicIntegerArray[] seen;
        /** Per key: the offset of its record started last (-1: none yet). */
        final AtomicLongArray lastStarted;
        /** Per key: 1 while a record of it is in the handler. */
        final AtomicIntegerArray busy;
        final long total;
        final AtomicLong distinct = new AtomicLong(), calls = new AtomicLong(),
                duplicates = new AtomicLong(), unexpected = new AtomicLong(),
                orderViolations = new AtomicLong(), keyOverlaps = new AtomicLong(),
                running = new AtomicLong(), mostRunning = new AtomicLong(),
                waitedNs = new AtomicLong(),
                firstNs = new AtomicLong(), lastNs = new AtomicLong(),
                cpuFirst = new AtomicLong(), cpuLast = new AtomicLong();
        final CountDownLatch done = new CountDownLatch(1);

        Handled(long[] ends, int keys) {
            this.ends = ends;
            this.seen = new AtomicIntegerArray[ends.length];
            long total = 0;
            for (int p = 0; p < ends.length; p++) {
                seen[p] = new AtomicIntegerArray(Math.toIntExact(Math.max(ends[p], 0)));
                total += Math.max(ends[p], 0);
            }
            this.total = total;
            this.lastStarted = new AtomicLongArray(keys);
            for (int k = 0; k < keys; k++) {
                lastStarted.set(k, -1);
            }
            this.busy = new AtomicIntegerArray(keys);
        }

        /** The key's number, or -1 when it is not one of the K. */
        int keyIndex(byte[] key) {
            if (key == null || key.length == 0) {
                return -1;
            }
            long n = 0;
            for (byte b : key) {
                if (b < '0' || b > '9') {
                    return -1;
                }
                n = n * 10 + (b - '0');
                if (n >= lastStarted.length()) {
                    return -1;
                }
            }
            return (int) n;
        }

        void start(int key, long offset) {
            if (calls.getAndIncrement() == 0) {
                firstNs.set(nowNs());
                cpuFirst.set(cpuNanos());
            }
            long now = running.incrementAndGet();
            mostRunning.accumulateAndGet(now, Math::max);
            if (key < 0) {
                unexpected.incrementAndGet();
                return;
            }
            if (busy.getAndSet(key, 1) != 0) {
                keyOverlaps.incrementAndGet();
            }
            if (lastStarted.getAndSet(key, offset) >= offset) {
                orderViolations.incrementAndGet();
            }
        }

        void end(int key, int partition, long offset) {
            if (key >= 0) {
                busy.set(key, 0);
            }
            running.decrementAndGet();
            
            if (partition < 0 || partition >= seen.length || offset < 0 || offset >= ends[partition]) {
                unexpected.incrementAndGet();
                return;
            }
            if (seen[partition].getAndIncrement((int) offset) > 0) {
                duplicates.incrementAndGet();
                return;
            }
            if (distinct.incrementAndGet() == total) {
                lastNs.set(nowNs());
                cpuLast.set(cpuNanos());
                done.countDown();
            }
        }

        long missing() {
            long n = 0;
            for (AtomicIntegerArray s : seen) {
                for (int o = 0; o < s.length(); o++) {
                    if (s.get(o) == 0) {
                        n++;
                    }
                }
            }
            return n;
        }

        String describe() {
            return distinct.get() + " of " + total + " records handled (" + calls.get() + " calls, "
                    + running.get() + " in the handler), " + duplicates.get() + " duplicates";
        }
    }

    /** Wall-clock nanoseconds since the Unix epoch. */
    static long nowNs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    /** When the JVM started, in nanoseconds since the Unix epoch (known to the millisecond). */
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

    /** The client's log (SLF4J, to log4j2) to stderr, WARN and above: stdout holds only the result. */
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

        long[] longs(String name) {
            return Arrays.stream(required(name).split(",")).mapToLong(Long::parseLong).toArray();
        }
    }

    /** One JSON object of numbers and booleans, built field by field in order. */
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

        @Override
        public String toString() {
            return s + "}";
        }
    }
}
