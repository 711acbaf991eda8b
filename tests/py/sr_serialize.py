"""Serialize keys and values with confluent-kafka's Schema Registry serializers, for kcon's tests.

Reads one JSON object on stdin:
  {"registry": "http://127.0.0.1:port", "config": {"basic.auth.user.info": "u:p", ...},
   "topic": "t",
   "records": [{"format": "avro" | "protobuf" | "json", "field": "key" | "value",
                "schema": "<Avro or JSON Schema text>" (avro, json),
                "message": "Order" | "Envelope.Line" (protobuf: a message of kcon/test/order.proto),
                "value": <the value as JSON>,
                "decimals": ["price", ...] (avro: top-level fields whose string values are
                                            written as decimal.Decimal, for decimal fields),
                "headers": false}, ...]}
registers the schemas (the serializers' own calls to the registry at "registry"), serializes each
record's value with confluent-kafka's AvroSerializer, ProtobufSerializer or JSONSerializer (with
"headers": true, the schema id goes into the __key_schema_id / __value_schema_id header, GUID
form, as header_schema_id_serializer writes it) and prints
  {"records": [{"bytes": hex, "headers": [[name, hex], ...], "expected": <JSON>}, ...]}
where "expected" is the value as the serializer's own side reads it back as JSON: for Protobuf,
google.protobuf.json_format.MessageToDict of the message.

The Protobuf files are built here from descriptors (no protoc): kcon/test/common.proto (Money),
and kcon/test/order.proto, which imports it and google/protobuf/timestamp.proto and holds Order,
the enum Status and Envelope with the nested message Line (message indexes [1, 0]).
"""

import decimal
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    header_schema_id_serializer,
    prefix_schema_id_serializer,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

F = descriptor_pb2.FieldDescriptorProto


def field(message, name, number, kind, type_name=None, repeated=False):
    f = message.field.add()
    f.name = name
    f.number = number
    f.type = kind
    f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def protobuf_pool():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)

    common = descriptor_pb2.FileDescriptorProto(name="kcon/test/common.proto", package="kcon.test", syntax="proto3")
    money = common.message_type.add(name="Money")
    field(money, "currency", 1, F.TYPE_STRING)
    field(money, "units", 2, F.TYPE_INT64)
    pool.Add(common)

    order_file = descriptor_pb2.FileDescriptorProto(
        name="kcon/test/order.proto",
        package="kcon.test",
        syntax="proto3",
        dependency=["kcon/test/common.proto", "google/protobuf/timestamp.proto"],
    )
    status = order_file.enum_type.add(name="Status")
    status.value.add(name="STATUS_UNKNOWN", number=0)
    status.value.add(name="PAID", number=1)
    status.value.add(name="SHIPPED", number=2)
    order = order_file.message_type.add(name="Order")
    field(order, "id", 1, F.TYPE_STRING)
    field(order, "total", 2, F.TYPE_MESSAGE, ".kcon.test.Money")
    field(order, "items", 3, F.TYPE_STRING, repeated=True)
    field(order, "status", 4, F.TYPE_ENUM, ".kcon.test.Status")
    field(order, "placed_at", 5, F.TYPE_MESSAGE, ".google.protobuf.Timestamp")
    field(order, "weight", 6, F.TYPE_DOUBLE)
    envelope = order_file.message_type.add(name="Envelope")
    line = envelope.nested_type.add(name="Line")
    field(line, "sku", 1, F.TYPE_STRING)
    field(line, "qty", 2, F.TYPE_INT32)
    pool.Add(order_file)
    return pool


def main():
    req = json.load(sys.stdin)
    conf = {"url": req["registry"]}
    conf.update(req.get("config", {}))
    client = SchemaRegistryClient(conf)
    pool = None
    out = []
    for r in req["records"]:
        field_kind = MessageField.KEY if r["field"] == "key" else MessageField.VALUE
        headers = []
        ctx = SerializationContext(req["topic"], field_kind, headers)
        ser_conf = {
            "schema.id.serializer": header_schema_id_serializer
            if r.get("headers")
            else prefix_schema_id_serializer
        }
        fmt = r["format"]
        if fmt == "avro":
            ser = AvroSerializer(client, r["schema"], conf=ser_conf)
            value = r["value"]
            if r.get("decimals"):
                value = dict(value)
                for name in r["decimals"]:
                    if value.get(name) is not None:
                        value[name] = decimal.Decimal(value[name])
            data = ser(value, ctx)
            expected = r["value"]
        elif fmt == "json":
            ser = JSONSerializer(r["schema"], client, conf=ser_conf)
            data = ser(r["value"], ctx)
            expected = r["value"]
        elif fmt == "protobuf":
            pool = pool or protobuf_pool()
            cls = GetMessageClass(pool.FindMessageTypeByName("kcon.test." + r["message"]))
            message = json_format.ParseDict(r["value"], cls())
            ser_conf["use.deprecated.format"] = False
            ser = ProtobufSerializer(cls, client, conf=ser_conf)
            data = ser(message, ctx)
            expected = json_format.MessageToDict(message)
        else:
            raise SystemExit(f"unknown format {fmt}")
        out.append(
            {
                "bytes": data.hex(),
                "headers": [[k, None if v is None else bytes(v).hex()] for k, v in headers],
                "expected": expected,
            }
        )
    print(json.dumps({"records": out}))


if __name__ == "__main__":
    main()
