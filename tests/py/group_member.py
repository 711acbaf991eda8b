"""A long-running consumer-group member (librdkafka through confluent-kafka, or kafka-python)
for kcon's mixed-group tests.

Input: one JSON object, as argv[1] or else as the first line of stdin:
  {"client": "confluent" | "kafka-python", "bootstrap": "host:port,...", "group": "g",
   "topics": ["t", ...], "strategy": "range" | "roundrobin" | "cooperative-sticky" | "sticky",
   "session_timeout_ms": null | n, "heartbeat_interval_ms": null | n,
   "group_instance_id": null | "id", "group_protocol": null | "classic" | "consumer",
   "extra": {property: value, ...}}
`extra` holds client-specific settings: librdkafka property names for "confluent"
("auto.offset.reset", ...), KafkaConsumer keyword arguments for "kafka-python"
("auto_offset_reset", ...). "sticky" exists only in kafka-python (librdkafka's classic
protocol has no eager sticky assignor). "group_protocol": "consumer" (librdkafka only) joins
with KIP-848's protocol: the coordinator assigns, so strategy, session timeout and heartbeat
interval are not set (librdkafka refuses them there), and the assignment is incremental.

The member subscribes, then polls without end, consuming and discarding records, and prints
one JSON object per line on stdout, flushed at once:
  {"event": "ready"}                               subscribed; polling starts
  {"event": "assigned", "partitions": [["t", 0], ...], "full": [...]}
  {"event": "revoked",  "partitions": [...], "full": [...]}
  {"event": "lost",     "partitions": [...], "full": [...]}
  {"event": "error", "message": "..."}             a client error (not always fatal)
  {"event": "closed"}                              after consumer.close(); then exit 0
`partitions` is what the callback was given; `full` is the member's whole assignment after the
callback, sorted: the callback's set under the eager protocol, the running union under the
cooperative one (both clients hand only the added and removed partitions there).

kafka-python logs at INFO on stderr (each join, sync and assignment), which the tests show
when a wait fails. Set GROUP_MEMBER_DEBUG in the environment to have the client log more:
kafka-python's logging at DEBUG, or librdkafka's `debug` property set to the variable's value
(e.g. "cgrp,protocol"; "1" means "cgrp").

Stdin commands, one per line: "close" closes the consumer (leaving the group), prints
{"event": "closed"} and exits 0. End of stdin does the same, so a test that dies takes its
members with it.
"""

import json
import logging
import os
import queue
import sys
import threading
import time
import traceback

_print_lock = threading.Lock()


def emit(event, **fields):
    # Callbacks may run on another thread than the poll loop (kafka-python's IO loop): one
    # line at a time.
    with _print_lock:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


def tp_list(tps):
    return sorted([tp.topic, tp.partition] for tp in tps)


class Assignment:
    """The member's full assignment, tracked from the rebalance callbacks."""

    def __init__(self, cooperative):
        self.cooperative = cooperative
        self.full = set()

    def assigned(self, tps):
        added = {(tp.topic, tp.partition) for tp in tps}
        self.full = self.full | added if self.cooperative else added
        emit("assigned", partitions=tp_list(tps), full=sorted(map(list, self.full)))

    def removed(self, event, tps):
        self.full -= {(tp.topic, tp.partition) for tp in tps}
        emit(event, partitions=tp_list(tps), full=sorted(map(list, self.full)))


def stdin_commands(commands):
    """Feeds stdin lines to `commands`; None at end of input."""
    for line in sys.stdin:
        line = line.strip()
        if line:
            commands.put(line)
    commands.put(None)


def run_confluent(cfg, commands):
    from confluent_kafka import Consumer, KafkaException

    strategy = cfg["strategy"]
    if strategy == "sticky":
        raise ValueError("librdkafka has no eager sticky assignor; use cooperative-sticky")
    kip848 = cfg.get("group_protocol") == "consumer"
    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "auto.offset.reset": "earliest",
        "error_cb": lambda err: emit("error", message=str(err)),
    }
    if kip848:
        conf["group.protocol"] = "consumer"
    else:
        conf["partition.assignment.strategy"] = strategy
        # null keeps librdkafka's default.
        for key, prop in (("session_timeout_ms", "session.timeout.ms"),
                          ("heartbeat_interval_ms", "heartbeat.interval.ms")):
            if cfg.get(key) is not None:
                conf[prop] = cfg[key]
    if cfg.get("group_instance_id"):
        conf["group.instance.id"] = cfg["group_instance_id"]
    debug = os.environ.get("GROUP_MEMBER_DEBUG")
    if debug:
        conf["debug"] = "cgrp" if debug == "1" else debug
    conf.update(cfg.get("extra") or {})
    consumer = Consumer(conf)
    tracked = Assignment(kip848 or strategy == "cooperative-sticky")
    # confluent-kafka applies the (incremental) assign or unassign itself after each callback
    # that doesn't.
    consumer.subscribe(
        cfg["topics"],
        on_assign=lambda _c, tps: tracked.assigned(tps),
        on_revoke=lambda _c, tps: tracked.removed("revoked", tps),
        on_lost=lambda _c, tps: tracked.removed("lost", tps),
    )
    emit("ready")
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = ""
        if command is None or command == "close":
            consumer.close()
            emit("closed")
            return
        if command:
            emit("error", message=f"unknown command {command!r}")
        try:
            msg = consumer.poll(0.1)
        except KafkaException as err:
            emit("error", message=str(err))
            continue
        if msg is not None and msg.error():
            emit("error", message=str(msg.error()))


def run_kafka_python(cfg, commands):
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    assignors = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }
    strategy = cfg["strategy"]
    if strategy not in assignors:
        raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(assignors)}")
    kwargs = {
        "bootstrap_servers": cfg["bootstrap"].split(","),
        "group_id": cfg["group"],
        "partition_assignment_strategy": (assignors[strategy],),
        "auto_offset_reset": "earliest",
    }
    # null keeps kafka-python's default.
    for key in ("session_timeout_ms", "heartbeat_interval_ms"):
        if cfg.get(key) is not None:
            kwargs[key] = cfg[key]
    if cfg.get("group_instance_id"):
        kwargs["group_instance_id"] = cfg["group_instance_id"]
    debug = os.environ.get("GROUP_MEMBER_DEBUG")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    kwargs.update(cfg.get("extra") or {})
    # JSON has no tuples; kafka-python wants its broker version as one, e.g. [2, 3] -> (2, 3).
    if isinstance(kwargs.get("api_version"), list):
        kwargs["api_version"] = tuple(kwargs["api_version"])
    consumer = KafkaConsumer(**kwargs)
    tracked = Assignment(strategy == "cooperative-sticky")

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            tracked.removed("revoked", revoked)

        def on_partitions_assigned(self, assigned):
            tracked.assigned(assigned)

        def on_partitions_lost(self, lost):
            tracked.removed("lost", lost)

    # kafka-python 3.0.12 can stay in a group without its assignment for good when it leads a
    # rebalance that only its own metadata asked for: a leader whose first join came before its
    # metadata knew the topic's partitions assigns nothing, then rejoins once the metadata
    # names them (its assignment's snapshot of the metadata no longer matches). Performing that
    # second assignment brings the snapshot up to date while the SyncGroup is in flight; if a
    # poll's wait for the join ran out just before (polls here wait 100 ms), the next poll sees
    # nothing to rejoin and never takes the sync's answer: no assignment callback, heartbeats
    # off (`join_group_async` in kafka/coordinator/base.py). Knowing the partitions before
    # subscribing, the first join assigns them all and that rejoin never comes.
    deadline = time.monotonic() + 20
    for topic in cfg["topics"]:
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                emit("error", message=f"no partitions of {topic!r} in the metadata within 20 s")
                break
            time.sleep(0.1)
    consumer.subscribe(cfg["topics"], listener=Listener())
    emit("ready")
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = ""
        if command is None or command == "close":
            consumer.close()
            emit("closed")
            return
        if command:
            emit("error", message=f"unknown command {command!r}")
        try:
            consumer.poll(timeout_ms=100)
        except Exception as err:  # noqa: BLE001 - reported, and the member keeps polling
            emit("error", message=f"{type(err).__name__}: {err}")


def main():
    line = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.readline()
    cfg = json.loads(line)
    commands = queue.Queue()
    # Lines after the config line (if it came on stdin) are commands.
    threading.Thread(target=stdin_commands, args=(commands,), daemon=True).start()
    runners = {"confluent": run_confluent, "kafka-python": run_kafka_python}
    client = cfg.get("client")
    if client not in runners:
        raise ValueError(f"unknown client {client!r}; known: {sorted(runners)}")
    runners[client](cfg, commands)


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # noqa: BLE001 - reported on stdout too, then a failing exit
        emit("error", message=f"{type(err).__name__}: {err}")
        traceback.print_exc()
        sys.exit(1)
