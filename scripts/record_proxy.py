#!/usr/bin/env python3
"""A recording TCP proxy for the Kafka wire protocol.

Sits between Kafka clients and one broker, forwards every byte both ways unchanged,
and records each Kafka frame (the bytes after the 4-byte size prefix) with its
direction. Request headers are parsed (api key, api version, correlation id, client
id) so that each response can be labelled with the api key and version of the request
it answers: a Kafka response carries only the correlation id, and its body can't be
read without knowing which request it belongs to.

To record *all* of a client's traffic, the broker must advertise the proxy's address
(e.g. Tansu's `--advertised-listener-url`), otherwise clients follow the metadata to
the broker directly after bootstrap.

Use as a module (what scripts/capture-fixtures.py does):

    recorder = Recorder()
    proxy = ProxyThread(recorder, upstream=("127.0.0.1", broker_port))
    port = proxy.start()          # listening on 127.0.0.1:port
    ...                           # point clients at 127.0.0.1:port
    proxy.stop()
    for frame in recorder.frames(): ...

The proxy can also lower the versions a broker offers to chosen clients (matched by
client id), by rewriting the max version of chosen APIs in the ApiVersions responses it
forwards to them. That makes a modern client fall back to old request versions (e.g.
Produce v2, where librdkafka writes magic-1 message sets) against a modern broker. The
recorder keeps the broker's original bytes and marks the frame `rewritten`.

Or standalone, writing the frames to a JSON-lines file until interrupted:

    python3 scripts/record_proxy.py --upstream 127.0.0.1:9092 [--listen 127.0.0.1:0] --out frames.jsonl

It prints `port=N` (the port it listens on) on stdout once ready. With `--upstream -` it
reads the broker's HOST:PORT from a line of stdin after that, holding the clients that
connect before: for a broker that must be told the proxy's port before it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

REQUEST = "request"
RESPONSE = "response"

# Anything bigger is not a Kafka frame we want to buffer (the Java broker's default
# socket.request.max.bytes is 100 MiB); we stop recording that connection instead.
MAX_FRAME = 128 * 1024 * 1024


@dataclass
class Frame:
    """One Kafka frame as seen on the wire, without its 4-byte size prefix."""

    seq: int  # global arrival order across all connections
    conn: int  # connection number, in accept order
    direction: str  # REQUEST (client to broker) or RESPONSE (broker to client)
    data: bytes
    time: float
    api_key: int | None = None
    api_version: int | None = None
    correlation_id: int | None = None
    client_id: str | None = None  # from the request header; copied onto its response
    answered_by: int | None = None  # for a request: seq of its response, if any
    answers: int | None = None  # for a response: seq of its request
    rewritten: bool = False  # forwarded with lowered versions (ApiVersions caps)

    def to_json(self) -> dict:
        doc = {k: v for k, v in self.__dict__.items() if k != "data"}
        doc["data"] = base64.b64encode(self.data).decode()
        return doc


@dataclass
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def parse_request_header(data: bytes) -> RequestHeader:
    """Parse the fields that all request header versions (v0, v1, v2) start with.

    v0 has no client id (only ancient clients send it); v1 and v2 have a nullable
    INT16-length string right after the correlation id, so reading it is safe for them.
    v0 is not distinguishable from the bytes alone, so a client id that doesn't fit is
    reported as None rather than raising.
    """
    if len(data) < 8:
        raise ValueError(f"request frame of {len(data)} bytes is shorter than a request header")
    api_key, api_version, correlation_id = struct.unpack_from(">hhi", data, 0)
    client_id = None
    if len(data) >= 10:
        (length,) = struct.unpack_from(">h", data, 8)
        if 0 <= length <= len(data) - 10:
            client_id = data[10 : 10 + length].decode("utf-8", "replace")
    return RequestHeader(api_key, api_version, correlation_id, client_id)


@dataclass
class Recorder:
    """Thread-safe store of frames; pairs responses with the requests they answer."""

    _frames: list[Frame] = field(default_factory=list)
    _pending: dict[tuple[int, int], Frame] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_conn: int = 0

    def new_connection(self) -> int:
        with self._lock:
            self._next_conn += 1
            return self._next_conn

    def record(self, conn: int, direction: str, data: bytes) -> Frame:
        with self._lock:
            frame = Frame(len(self._frames), conn, direction, data, time.time())
            if direction == REQUEST:
                self._label_request(frame)
            else:
                self._label_response(frame)
            self._frames.append(frame)
            return frame

    def _label_request(self, frame: Frame) -> None:
        try:
            header = parse_request_header(frame.data)
        except ValueError:
            return
        frame.api_key = header.api_key
        frame.api_version = header.api_version
        frame.correlation_id = header.correlation_id
        frame.client_id = header.client_id
        self._pending[(frame.conn, header.correlation_id)] = frame

    def _label_response(self, frame: Frame) -> None:
        if len(frame.data) < 4:
            return
        (frame.correlation_id,) = struct.unpack_from(">i", frame.data, 0)
        request = self._pending.pop((frame.conn, frame.correlation_id), None)
        if request is None:
            return  # unsolicited, or its request wasn't parseable: leave unlabelled
        frame.api_key = request.api_key
        frame.api_version = request.api_version
        frame.client_id = request.client_id
        frame.answers = request.seq
        request.answered_by = frame.seq

    def frames(self) -> list[Frame]:
        with self._lock:
            return list(self._frames)


def cap_api_versions(data: bytes, version: int, caps: dict[int, int]) -> bytes:
    """An ApiVersions response (header + body) with max versions lowered to `caps`.

    The entries are patched in place (same length), so nothing else in the frame moves.
    ApiVersions responses always use response header v0: the body starts at byte 4.
    """
    out = bytearray(data)
    if struct.unpack_from(">h", out, 4)[0] != 0:
        return data  # an error answer may be laid out as v0 whatever was asked: leave it
    pos = 4 + 2  # correlation id, error code
    if version >= 3:  # flexible: compact array (count + 1 as an unsigned varint)
        count, shift = 0, 0
        while True:
            byte = out[pos]
            pos += 1
            count |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", out, pos)
        pos += 4
    for _ in range(max(count, 0)):
        api_key, low, high = struct.unpack_from(">hhh", out, pos)
        if api_key in caps and high > caps[api_key]:
            struct.pack_into(">h", out, pos + 4, max(low, caps[api_key]))
        pos += 6
        if version >= 3:
            if out[pos] != 0:  # entries carry no tagged fields in any known broker
                raise ValueError("ApiVersions entry with tagged fields: can't patch in place")
            pos += 1
    return bytes(out)


async def _pump(conn: int, direction: str, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter, recorder: Recorder,
                caps: dict[str, dict[int, int]]) -> None:
    """Copy frames from reader to writer, recording each one before forwarding it.

    Recording before forwarding guarantees a request is in the recorder (and its
    correlation id pending) before the broker can possibly answer it.
    """
    try:
        while True:
            prefix = await reader.readexactly(4)
            (size,) = struct.unpack(">i", prefix)
            if size < 0 or size > MAX_FRAME:
                print(f"record_proxy: conn {conn} {direction}: implausible frame size {size}; "
                      "closing the connection", file=sys.stderr)
                return
            data = await reader.readexactly(size)
            frame = recorder.record(conn, direction, data)
            if frame.api_key == 18 and direction == RESPONSE and frame.client_id in caps:
                data = cap_api_versions(data, frame.api_version, caps[frame.client_id])
                frame.rewritten = data != frame.data
            writer.write(prefix + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # the peer closed; the finally of _handle closes the other side
    finally:
        writer.close()


class Proxy:
    """The asyncio part: accepts clients and opens one upstream connection per client."""

    def __init__(self, recorder: Recorder, upstream: tuple[str, int] | None,
                 caps: dict[str, dict[int, int]] | None = None):
        self.recorder = recorder
        # None until set_upstream: clients that connect meanwhile wait for it.
        self.upstream = upstream
        self._upstream_known = asyncio.Event()
        if upstream is not None:
            self._upstream_known.set()
        # client id -> {api key: highest version to offer that client}
        self.caps = caps or {}
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    def set_upstream(self, upstream: tuple[str, int]) -> None:
        """Names the broker, for a proxy started without one (call on the proxy's loop)."""
        self.upstream = upstream
        self._upstream_known.set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        conn = self.recorder.new_connection()
        await self._upstream_known.wait()
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self.upstream)
        except OSError as error:
            print(f"record_proxy: conn {conn}: cannot reach upstream {self.upstream}: {error}",
                  file=sys.stderr)
            client_writer.close()
            return
        pumps = [
            asyncio.create_task(_pump(conn, REQUEST, client_reader, broker_writer, self.recorder,
                                      self.caps)),
            asyncio.create_task(_pump(conn, RESPONSE, broker_reader, client_writer, self.recorder,
                                      self.caps)),
        ]
        self._tasks.update(pumps)
        # When either side closes, close the other too, so clients notice a broker drop.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        client_writer.close()
        broker_writer.close()
        self._tasks.difference_update(pumps)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()


class ProxyThread:
    """Runs a Proxy on its own event loop in a daemon thread, for blocking callers."""

    def __init__(self, recorder: Recorder, upstream: tuple[str, int],
                 caps: dict[str, dict[int, int]] | None = None):
        self.proxy = Proxy(recorder, upstream, caps)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="record-proxy",
                                        daemon=True)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port actually bound."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.proxy.start(host, port), self._loop)
        return future.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _upstream(text: str) -> tuple[str, int] | None:
    return None if text == "-" else _host_port(text)


async def _run_standalone(args: argparse.Namespace) -> None:
    recorder = Recorder()
    proxy = Proxy(recorder, args.upstream)
    port = await proxy.start(*args.listen)
    print(f"port={port}", flush=True)  # for scripts that asked for a free port (":0")
    if args.upstream is None:
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        try:
            proxy.set_upstream(_host_port(line.strip()))
        except argparse.ArgumentTypeError as error:
            sys.exit(f"record_proxy: the upstream read from stdin: {error}")
    print(f"record_proxy: listening on {args.listen[0]}:{port}, forwarding to "
          f"{proxy.upstream[0]}:{proxy.upstream[1]}; Ctrl-C writes {args.out}", file=sys.stderr)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.stop()
    frames = recorder.frames()
    with open(args.out, "w") as out:
        for frame in frames:
            out.write(json.dumps(frame.to_json()) + "\n")
    print(f"record_proxy: wrote {len(frames)} frames to {args.out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=_upstream, required=True,
                        help="broker HOST:PORT, or - to read it from stdin once listening")
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0),
                        help="HOST:PORT to listen on (default 127.0.0.1:0, a free port)")
    parser.add_argument("--out", required=True, help="JSON-lines file to write frames to")
    asyncio.run(_run_standalone(parser.parse_args()))


if __name__ == "__main__":
    main()
