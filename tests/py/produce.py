"""Produce records with librdkafka (confluent-kafka) for kcon's tests.

Reads one JSON object on stdin:
  {"bootstrap": "host:port", "topic": "t", "partitions": 3, "create": true,
   "config": {"compression.type": "lz4", ...},
   "records": [{"partition": 0, "key": hex|null, "value": hex|null,
                "headers": [[name, hex|null], ...]}, ...]}
creates the topic when asked (Tansu does not create topics on produce), produces every record
in order, waits for every delivery report, and prints
  {"delivered": [{"partition": p, "offset": o}, ...]}
in the order of the input. Any delivery error fails the script with the reason.
"""

import json
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def unhex(v):
    return None if v is None else bytes.fromhex(v)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for fut in futures.values():
        fut.result(timeout=30)


def main():
    req = json.load(sys.stdin)
    if req.get("create", True):
        create_topic(req["bootstrap"], req["topic"], req.get("partitions", 1))
    conf = {"bootstrap.servers": req["bootstrap"], "linger.ms": 50}
    conf.update(req.get("config", {}))
    producer = Producer(conf)
    delivered = [None] * len(req["records"])
    errors = []

    def report(index):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                delivered[index] = {"partition": msg.partition(), "offset": msg.offset()}
        return on_delivery

    for i, r in enumerate(req["records"]):
        headers = [(k, unhex(v)) for k, v in r.get("headers", [])]
        producer.produce(
            req["topic"],
            key=unhex(r.get("key")),
            value=unhex(r.get("value")),
            headers=headers or None,
            partition=r.get("partition", 0),
            on_delivery=report(i),
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors or any(d is None for d in delivered):
        sys.exit(f"produce failed: {remaining} undelivered, errors: {errors[:5]}")
    json.dump({"delivered": delivered}, sys.stdout)


if __name__ == "__main__":
    main()
