"""librdkafka (confluent-kafka) on both sides of kcon's transactions.

Reads one JSON object on stdin, with "op" one of:

  {"op": "produce", "bootstrap": "host:port", "topic": "t", "transactional_id": "tx",
   "transactions": [{"values": ["a", "b"], "partition": 0, "commit": true}, ...]}
      a transactional producer writes each transaction's values (UTF-8) to the partition
      and commits or aborts it; prints {"done": n}.

  {"op": "read", "bootstrap": "host:port", "topic": "t", "partitions": 1,
   "isolation": "read_committed"|"read_uncommitted", "expect": n, "quiet_ms": 2000}
      reads every partition from the start with that isolation level until it has `expect`
      records and then nothing more for `quiet_ms` (or 30 s pass), and prints
      {"values": [...], "offsets": [[partition, offset], ...]}.

Any error fails the script with the reason.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(req):
    producer = Producer({
        "bootstrap.servers": req["bootstrap"],
        "transactional.id": req["transactional_id"],
        "linger.ms": 5,
    })
    producer.init_transactions(30)
    for txn in req["transactions"]:
        producer.begin_transaction()
        for v in txn["values"]:
            producer.produce(req["topic"], value=v.encode(), partition=txn.get("partition", 0))
        producer.flush(30)
        if txn["commit"]:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    print(json.dumps({"done": len(req["transactions"])}))


def read(req):
    consumer = Consumer({
        "bootstrap.servers": req["bootstrap"],
        "group.id": "txn-reader-%d" % time.monotonic_ns(),
        "enable.auto.commit": False,
        "isolation.level": req["isolation"],
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(req["topic"], p, 0) for p in range(req.get("partitions", 1))])
    values, offsets = [], []
    expect = req["expect"]
    quiet = req.get("quiet_ms", 2000) / 1000.0
    deadline = time.monotonic() + 30
    last = time.monotonic()
    while time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is None:
            if len(values) >= expect and time.monotonic() - last >= quiet:
                break
            continue
        if msg.error():
            if msg.error().code() == -191:  # partition EOF
                continue
            raise SystemExit("consume error: %s" % msg.error())
        values.append(msg.value().decode())
        offsets.append([msg.partition(), msg.offset()])
        last = time.monotonic()
    consumer.close()
    print(json.dumps({"values": values, "offsets": offsets}))


def main():
    req = json.load(sys.stdin)
    {"produce": produce, "read": read}[req["op"]](req)


if __name__ == "__main__":
    main()
