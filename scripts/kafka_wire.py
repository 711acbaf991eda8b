"""Just enough of the Kafka wire format to label and check captured traffic.

Used by scripts/capture-fixtures.py to find the topics and record batches inside
Produce requests and Fetch responses, to read batch headers (magic, codec, control
and transactional bits, record counts) and to decode uncompressed and gzip'd records,
so the fixtures' manifest can say what each frame holds and the capture can check the
bytes against what the producers were asked to send. It is a test tool, not a codec:
only the APIs and versions the capture needs are covered, and errors raise
WireError with the offset where reading failed.
"""

from __future__ import annotations

import gzip
import struct
import zlib

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list-offsets", 3: "metadata", 8: "offset-commit",
    9: "offset-fetch", 10: "find-coordinator", 11: "join-group", 12: "heartbeat",
    13: "leave-group", 14: "sync-group", 15: "describe-groups", 16: "list-groups",
    17: "sasl-handshake", 18: "api-versions", 19: "create-topics", 20: "delete-topics",
    22: "init-producer-id", 23: "offset-for-leader-epoch", 24: "add-partitions-to-txn",
    25: "add-offsets-to-txn", 26: "end-txn", 28: "txn-offset-commit", 32: "describe-configs",
    36: "sasl-authenticate", 42: "delete-groups", 60: "describe-cluster",
    68: "consumer-group-heartbeat", 71: "get-telemetry-subscriptions",
    72: "push-telemetry",
}

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def api_name(api_key: int) -> str:
    return API_NAMES.get(api_key, f"api{api_key}")


class WireError(Exception):
    """Bytes that don't parse as the structure we expected."""


class Reader:
    """Big-endian cursor over a bytes object, with Kafka's primitive types."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"need {n} bytes at offset {self.pos}, have {self.remaining()}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def i8(self) -> int:
        return self._unpack(">b")

    def i16(self) -> int:
        return self._unpack(">h")

    def i32(self) -> int:
        return self._unpack(">i")

    def u32(self) -> int:
        return self._unpack(">I")

    def i64(self) -> int:
        return self._unpack(">q")

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise WireError(f"varint too long at offset {self.pos}")

    def varint(self) -> int:
        """Zigzag-encoded signed varint, as used inside v2 records."""
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def string(self, flexible: bool) -> str | None:
        length = self.uvarint() - 1 if flexible else self.i16()
        return None if length < 0 else self.take(length).decode("utf-8")

    def bytes_(self, flexible: bool) -> bytes | None:
        length = self.uvarint() - 1 if flexible else self.i32()
        return None if length < 0 else self.take(length)

    def array_len(self, flexible: bool) -> int:
        return self.uvarint() - 1 if flexible else self.i32()

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())


# Version from which each API's messages use the flexible (compact, tagged) encoding.
FLEXIBLE_FROM = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4,
                 18: 3, 19: 5, 22: 2, 24: 3, 26: 3, 32: 4}


def is_flexible(api_key: int, version: int) -> bool:
    first = FLEXIBLE_FROM.get(api_key)
    return first is not None and version >= first


def request_body(data: bytes, api_key: int, version: int) -> Reader:
    """A reader positioned after the request header (v1, or v2 with tagged fields)."""
    reader = Reader(data, 8)
    reader.string(flexible=False)  # client id is a classic string even in header v2
    if is_flexible(api_key, version):
        reader.skip_tagged_fields()
    return reader


def response_body(data: bytes, api_key: int, version: int) -> Reader:
    """A reader positioned after the response header.

    ApiVersions responses always use header v0 (no tagged fields) so that a client
    can read them before knowing what the broker supports.
    """
    reader = Reader(data, 4)
    if is_flexible(api_key, version) and api_key != 18:
        reader.skip_tagged_fields()
    return reader


def parse_produce_request(data: bytes, version: int) -> dict:
    """Topics, partitions and raw record sets of a Produce request (v0-v12)."""
    flex = is_flexible(0, version)
    r = request_body(data, 0, version)
    doc = {"transactional_id": r.string(flex) if version >= 3 else None}
    doc["acks"] = r.i16()
    doc["timeout_ms"] = r.i32()
    topics = []
    for _ in range(r.array_len(flex)):
        name = r.string(flex)
        partitions = []
        for _ in range(r.array_len(flex)):
            index = r.i32()
            records = r.bytes_(flex)
            if flex:
                r.skip_tagged_fields()
            partitions.append({"partition": index, "records": records})
        if flex:
            r.skip_tagged_fields()
        topics.append({"topic": name, "partitions": partitions})
    doc["topics"] = topics
    return doc


def parse_fetch_response(data: bytes, version: int) -> dict:
    """Topics, partitions, offsets and raw record sets of a Fetch response (v0-v17)."""
    flex = is_flexible(1, version)
    r = response_body(data, 1, version)
    doc = {"throttle_time_ms": r.i32() if version >= 1 else 0}
    if version >= 7:
        doc["error_code"] = r.i16()
        doc["session_id"] = r.i32()
    topics = []
    for _ in range(r.array_len(flex)):
        topic = {"topic_id": r.take(16).hex()} if version >= 13 else {"topic": r.string(flex)}
        topic["partitions"] = [_fetch_partition(r, version, flex)
                               for _ in range(r.array_len(flex))]
        if flex:
            r.skip_tagged_fields()
        topics.append(topic)
    doc["topics"] = topics
    if flex:
        r.skip_tagged_fields()
    if r.remaining():
        raise WireError(f"{r.remaining()} bytes left after a Fetch v{version} response")
    return doc


def _fetch_partition(r: Reader, version: int, flex: bool) -> dict:
    part = {"partition": r.i32(), "error_code": r.i16(), "high_watermark": r.i64()}
    if version >= 4:
        part["last_stable_offset"] = r.i64()
    if version >= 5:
        part["log_start_offset"] = r.i64()
    if version >= 4:
        aborted = []
        count = r.array_len(flex)
        for _ in range(max(count, 0)):
            aborted.append({"producer_id": r.i64(), "first_offset": r.i64()})
            if flex:
                r.skip_tagged_fields()
        part["aborted_transactions"] = aborted if count >= 0 else None
    if version >= 11:
        part["preferred_read_replica"] = r.i32()
    part["records"] = r.bytes_(flex)
    if flex:
        r.skip_tagged_fields()
    return part


def parse_record_set(data: bytes | None) -> list[dict]:
    """Summaries of the batches (magic 2) or message-set entries (magic 0/1) in a records field.

    A fetch may end with a partial batch (the broker cuts at max bytes); it is reported
    with "truncated": True instead of raising.
    """
    batches = []
    pos = 0
    while data and pos < len(data):
        if len(data) - pos < 17:
            batches.append({"truncated": True, "bytes": len(data) - pos})
            break
        length = struct.unpack_from(">i", data, pos + 8)[0]
        end = pos + 12 + length
        if end > len(data):
            batches.append({"truncated": True, "bytes": len(data) - pos})
            break
        magic = data[pos + 16]
        entry = data[pos:end]
        batches.append(_batch_v2(entry) if magic == 2 else _legacy_entry(entry))
        pos = end
    return batches


def _batch_v2(entry: bytes) -> dict:
    r = Reader(entry)
    batch = {"base_offset": r.i64(), "batch_length": r.i32(),
             "partition_leader_epoch": r.i32(), "magic": r.i8(), "crc": r.u32()}
    attributes = r.i16()
    batch.update({
        "attributes": attributes,
        "codec": CODECS.get(attributes & 7, f"unknown{attributes & 7}"),
        "timestamp_type": "log-append" if attributes & 8 else "create",
        "transactional": bool(attributes & 16),
        "control": bool(attributes & 32),
        "last_offset_delta": r.i32(), "base_timestamp": r.i64(), "max_timestamp": r.i64(),
        "producer_id": r.i64(), "producer_epoch": r.i16(), "base_sequence": r.i32(),
        "records": r.i32(),
    })
    batch["crc_ok"] = crc32c(entry[21:]) == batch["crc"]
    return batch


def _legacy_entry(entry: bytes) -> dict:
    r = Reader(entry)
    msg = {"offset": r.i64(), "message_size": r.i32(), "crc": r.u32(), "magic": r.i8()}
    attributes = r.i8()
    msg["attributes"] = attributes
    msg["codec"] = CODECS.get(attributes & 7, f"unknown{attributes & 7}")
    msg["crc_ok"] = zlib.crc32(entry[16:]) == msg["crc"]
    if msg["magic"] == 1:
        msg["timestamp_type"] = "log-append" if attributes & 8 else "create"
        msg["timestamp"] = r.i64()
    return msg


def decode_batch_records(entry: bytes) -> list[dict]:
    """Records of one magic-2 batch whose codec Python's stdlib can undo (none, gzip)."""
    summary = _batch_v2(entry)
    payload = entry[61:]
    if summary["codec"] == "gzip":
        payload = gzip.decompress(payload)
    elif summary["codec"] != "none":
        raise WireError(f"can't decompress {summary['codec']} with the standard library")
    r = Reader(payload)
    records = [_record_v2(r, summary) for _ in range(summary["records"])]
    if r.remaining():
        raise WireError(f"{r.remaining()} bytes after the last record")
    return records


def _record_v2(r: Reader, batch: dict) -> dict:
    length = r.varint()
    end = r.pos + length
    r.i8()  # record attributes: unused by every Kafka version so far
    timestamp = batch["base_timestamp"] + r.varint()
    offset = batch["base_offset"] + r.varint()
    key = _varint_bytes(r)
    value = _varint_bytes(r)
    headers = [(_varint_bytes(r), _varint_bytes(r)) for _ in range(r.varint())]
    if r.pos != end:
        raise WireError(f"record at offset {offset} is {r.pos - end} bytes off its length")
    return {"offset": offset, "timestamp": timestamp, "key": key, "value": value,
            "headers": headers}


def _varint_bytes(r: Reader) -> bytes | None:
    length = r.varint()
    return None if length < 0 else r.take(length)


def decode_legacy_messages(data: bytes) -> list[dict]:
    """Messages of a magic 0/1 message set, unwrapping gzip'd wrappers (none, gzip only)."""
    messages = []
    r = Reader(data)
    while r.remaining():
        offset = r.i64()
        body = Reader(r.take(r.i32()))
        body.u32()  # crc, checked by parse_record_set
        magic = body.i8()
        attributes = body.i8()
        timestamp = body.i64() if magic == 1 else None
        key = body.bytes_(flexible=False)
        value = body.bytes_(flexible=False)
        codec = attributes & 7
        if codec == 0:
            messages.append({"offset": offset, "magic": magic, "timestamp": timestamp,
                             "key": key, "value": value})
        elif codec == 1:
            messages.extend(decode_legacy_messages(gzip.decompress(value)))
        else:
            raise WireError(f"can't decompress {CODECS.get(codec)} with the standard library")
    return messages


def decode_control_record(record: dict) -> str:
    """'commit' or 'abort' from a control record's key (version i16, type i16)."""
    _, kind = struct.unpack(">hh", record["key"][:4])
    return {0: "abort", 1: "commit"}.get(kind, f"type{kind}")


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of magic-2 batches; the stdlib has only CRC-32."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
