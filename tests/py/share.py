"""A share group member (librdkafka's ShareConsumer, through confluent-kafka) for kcon's
share-group tests (KIP-932).

Input: one JSON object, as argv[1] or else as the first line of stdin:

  {"bootstrap": "host:port", "group": "g", "topics": ["t", ...],
   "expect": n, "quiet_ms": 1500, "within_ms": 30000, "limit": null | n,
   "ack": null | "accept" | "release" | "reject" | "none" | [type, ...],
   "hold_ms": 0, "pause_ms": 0, "each": false, "config": {property: value, ...}}

The member subscribes, prints {"event": "ready"}, then polls until one of:
  - it has `expect` records and nothing more came for `quiet_ms` (`expect` 0: nothing came
    for `quiet_ms` after the first record);
  - it has `limit` records (when given), at once;
  - `within_ms` passed since the first poll.
Records are counted per delivery: a record redelivered three times counts three times.

"ack" chooses the acknowledgement:
  null       implicit mode (share.acknowledgement.mode=implicit): each poll's records are
             accepted by the next poll, or by close;
  "accept", "release", "reject"
             explicit mode, every record acknowledged so;
  [t1, t2, ...]
             explicit mode, a record acknowledged by its delivery count: t1 on the first
             delivery, t2 on the second, ...; the last one for every later delivery (e.g.
             ["release", "accept"]: released once, accepted when redelivered);
  "none"     explicit mode, and nothing is acknowledged: after the first batch the member
             stops polling (explicit mode refuses a poll while records are unacknowledged),
             waits `hold_ms`, and closes, so the records stay locked until their lock expires.
"pause_ms" makes a slow member: after each batch with records it sleeps that long before the
next poll (the batch's records stay acquired meanwhile; in implicit mode their acceptance goes
with that next poll). Explicit acknowledgements go to the broker with the next poll (librdkafka piggybacks them on
ShareFetch), the last ones with a commit_sync before close. `config` adds librdkafka
properties (e.g. "debug": "cgrp,protocol", on stderr).

With "each": true every record is also printed as it arrives:
  {"event": "record", "topic": t, "partition": p, "offset": o, "key": text | null,
   "value": text | null, "delivery_count": n | null, "ack": type | null}
(key and value decoded as UTF-8, undecodable bytes replaced; `ack` is what the member
acknowledged it with, null in implicit mode and for "none"), and the broker's answer to each
acknowledgement commit, from librdkafka's acknowledgement commit callback:
  {"event": "acked", "offsets": [[topic, partition, [offset, ...]], ...], "error": text | null}

At the end the member closes (committing what is pending, leaving the group) and prints
  {"event": "records", "records": [[topic, partition, offset, delivery_count, key, value],
                                   ...]}
in the order the records arrived. Any client error fails the script (exit 1) with the reason
on stderr.
"""

import json
import sys
import time

from confluent_kafka import AcknowledgeType, ShareConsumer

ACKS = {
    "accept": AcknowledgeType.ACCEPT,
    "release": AcknowledgeType.RELEASE,
    "reject": AcknowledgeType.REJECT,
}


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def text(data):
    return None if data is None else data.decode("utf-8", errors="replace")


def acked(offsets, error):
    emit("acked", offsets=sorted([tp.topic, tp.partition, sorted(o)] for tp, o in offsets.items()),
         error=None if error is None else str(error))


def ack_plan(ack):
    """(explicit mode?, the ack type name for a delivery count, or None for no ack)."""
    if ack is None:
        return False, lambda count: None
    if ack == "none":
        return True, lambda count: None
    plan = [ack] if isinstance(ack, str) else list(ack)
    if not plan or any(a not in ACKS for a in plan):
        raise SystemExit(f"share.py: ack {ack!r}: use null, \"none\", one of "
                         f"{sorted(ACKS)} or a non-empty list of them")
    return True, lambda count: plan[min(max(count or 1, 1), len(plan)) - 1]


def main():
    req = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.readline())
    explicit, ack_for = ack_plan(req.get("ack"))
    hold = req.get("ack") == "none"
    config = {
        "bootstrap.servers": req["bootstrap"],
        "group.id": req["group"],
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
    }
    config.update(req.get("config", {}))
    consumer = ShareConsumer(config)
    each = req.get("each", False)
    if each:
        consumer.set_acknowledgement_commit_callback(acked)
    consumer.subscribe(req["topics"])
    emit("ready")
    records = []
    expect = req.get("expect", 0)
    limit = req.get("limit")
    quiet = req.get("quiet_ms", 1500) / 1000
    deadline = time.monotonic() + req.get("within_ms", 30000) / 1000
    last = None
    while time.monotonic() < deadline:
        if last is not None and len(records) >= expect and time.monotonic() - last >= quiet:
            break
        if limit is not None and len(records) >= limit:
            break
        batch = consumer.poll(0.2)
        for msg in batch:
            if msg.error() is not None:
                raise RuntimeError(f"share consumer error: {msg.error()}")
            count = msg.delivery_count()
            ack = ack_for(count)
            key, value = text(msg.key()), text(msg.value())
            records.append([msg.topic(), msg.partition(), msg.offset(), count, key, value])
            last = time.monotonic()
            if ack is not None:
                consumer.acknowledge(msg, ACKS[ack])
            if each:
                emit("record", topic=msg.topic(), partition=msg.partition(),
                     offset=msg.offset(), key=key, value=value, delivery_count=count,
                     ack=ack)
        if hold and len(batch) > 0:
            time.sleep(req.get("hold_ms", 0) / 1000)
            break
        if len(batch) > 0 and req.get("pause_ms"):
            time.sleep(req["pause_ms"] / 1000)
    if explicit and not hold:
        consumer.commit_sync()
    consumer.close()
    emit("records", records=records)


if __name__ == "__main__":
    main()
