#!/usr/bin/env python3
"""Run librdkafka's mock Kafka cluster and control it over stdin/stdout, for kcon's tests.

Usage (with the brokers' virtualenv Python, see `scripts/brokers`):

    mock_cluster.py BROKERS [LIBRDKAFKA_SO]

BROKERS is the number of mock brokers (their ids are 1..=BROKERS). LIBRDKAFKA_SO is the
path of librdkafka's shared library; without it, the one `scripts/brokers paths` reports
is used.

The script creates a consumer handle (`rd_kafka_new`), which the mock cluster needs for
its bookkeeping, then `rd_kafka_mock_cluster_new(rk, BROKERS)`, and prints one JSON line

    {"bootstraps": "127.0.0.1:p1,127.0.0.1:p2,..."}

once the brokers listen. After that it reads commands, one JSON object per line, and
answers each with one JSON line: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
A command is `{"cmd": NAME, ...arguments}`. Error codes are Kafka protocol error codes
(librdkafka's internal negative codes also work: -195 `_TRANSPORT` makes the mock broker
drop the connection instead of answering). Broker -1 means every broker where noted.

    broker_set_down / broker_set_up      broker (-1: all)
    broker_set_rtt                       broker (-1: all), rtt_ms
    broker_set_rack                      broker (-1: all), rack
    broker_add                           broker (a new id; partitions are spread over it)
                                         -> {"address": "127.0.0.1:p"}
    broker_decommission                  broker (closes it for good; its partitions move)
    push_request_errors                  api_key, errors: [code, ...]    (any broker)
    broker_push_request_error_rtts       broker, api_key, errors: [[code, rtt_ms], ...]
    broker_error_stack_cnt               broker, api_key          -> {"count": n}
    clear_request_errors                 api_key
    partition_set_leader                 topic, partition, broker (-1: no leader)
    partition_set_follower               topic, partition, broker
    partition_set_follower_wmarks        topic, partition, lo, hi (-1: the leader's)
    partition_push_request_errors        topic, partition, api_key, errors: [code, ...]
    coordinator_set                      key_type ("group" | "transaction"), key, broker
    topic_create                         topic, partitions, replication_factor
    topic_set_error                      topic, error
    set_apiversion                       api_key, min, max ((-1, -1) removes the API)
    start_request_tracking / stop_request_tracking / clear_requests
    get_requests                         -> {"requests": [{"broker_id", "api_key",
                                              "timestamp_us"}, ...]}
    group_initial_rebalance_delay_ms     ms
    set_group_consumer_session_timeout_ms / set_group_consumer_heartbeat_interval_ms   ms
    sharegroup_set                       setting, value: one of the share groups' settings
                                         (KIP-932), for every share group:
                                         session_timeout, heartbeat_interval (ms),
                                         max_delivery_attempts (default 5),
                                         record_lock_duration (ms; 0: the session timeout),
                                         isolation_level (0 read_uncommitted, 1 read_committed),
                                         max_size, max_fetch_sessions, max_record_locks,
                                         auto_offset_reset (0 latest, the default; 1 earliest)
    sharegroup_target_assignment         group, assignment: {member_id: [[topic, partition], ...]}
                                         (replaces the mock's own, which gives each partition
                                         to one member; from then on the group's assignment
                                         stays manual: a member joining later gets nothing
                                         until the next call. Every member's epoch is bumped,
                                         each to a new value: a member that missed the bump
                                         before (it has not heartbeated since another joined)
                                         is fenced and rejoins. An unknown group or member is
                                         refused; topics and partitions are not checked)
    sharegroup_member_ids                group                    -> {"member_ids": [...]}
                                         (none before the first member joins)
    sharegroup_get_member_ids            group                    -> {"member_ids": [...]}
                                         (the same, but a group no member joined yet is an
                                         error: GROUP_ID_NOT_FOUND)
    sharegroup_set_session_timeout       ms (1..=2147483; default 45000; only share groups
                                         created after the call; expiry is checked once a
                                         second)
    sharegroup_set_heartbeat_interval    ms (1..=2147483; default 5000; only share groups
                                         created after the call)
    sharegroup_set_max_delivery_attempts value (0: unlimited; default 5): a record acquired
                                         this many times is archived instead of redelivered
    sharegroup_set_record_lock_duration  ms (0..=2147483; 0: the group's session timeout;
                                         default 30000)
    sharegroup_set_isolation_level       value: "read_uncommitted" or 0 (the default),
                                         "read_committed" or 1
    sharegroup_set_max_size              value: members per group (0: unlimited; default 200)
    sharegroup_set_max_fetch_sessions    value: a group's share sessions per broker (0:
                                         unlimited; default 2000); a new one beyond that is
                                         refused with SHARE_SESSION_LIMIT_REACHED
    sharegroup_set_max_record_locks      value: acquired records per partition (0: unlimited;
                                         default 2000)
    sharegroup_set_auto_offset_reset     value: "latest" or 0 (the default), "earliest" or 1:
                                         where a share-partition starts when first fetched
                                         (with latest, records produced before that are never
                                         delivered)
                                         These set the cluster's default for new share groups
                                         and, but for the first two, every existing group's
                                         value. sharegroup_set {setting: NAME, value} is
                                         sharegroup_set_NAME with `value` (ms included).
    quit

librdkafka 2.16 has no accessor for a tracked request's API version, so get_requests
has none.

partition_push_request_errors gives one partition its own error stack for api_key: each
request of that API that names the partition, reaches its leader (for Fetch also its
follower) and passes the mock's own checks takes the next code as that partition's error
code; the request's other partitions and its top level are untouched. Only the Produce,
Fetch and ShareFetch handlers look at these stacks. Cluster-wide (push_request_errors) and
broker errors take precedence and leave the partition's stack as it is. A code is written
into the answer as it is (-195 closes nothing here). The topic is created if it doesn't
exist; there is no accessor for how many errors are left, and clear_request_errors does not
clear them.

The process exits (after destroying the cluster) on the `quit` command and also when
stdin reaches end of file: a test that dies closes the pipe, so no cluster outlives it.
If startup fails, the reason goes to stderr and the exit status is 1.

Set MOCK_CLUSTER_DEBUG to a librdkafka `debug` list (e.g. `mock,protocol`) to have the mock
log what it receives and why it drops a connection, on stderr.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

RD_KAFKA_CONSUMER = 1
# rd_kafka_destroy_flags(): don't run the consumer close sequence. The handle never joins
# a group, so there's nothing to leave, and skipping it keeps shutdown quick.
RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE = 0x8


# The share groups' settings `sharegroup_set` takes: rd_kafka_mock_sharegroup_set_<name>(int).
SHAREGROUP_SETTINGS = (
    "session_timeout", "heartbeat_interval", "max_delivery_attempts", "record_lock_duration",
    "isolation_level", "max_size", "max_fetch_sessions", "max_record_locks", "auto_offset_reset",
)
# The ones in milliseconds: their sharegroup_set_<name> command takes `ms`.
SHAREGROUP_MS = ("session_timeout", "heartbeat_interval", "record_lock_duration")


class CommandError(Exception):
    """A command was malformed or librdkafka refused it; the message goes back to the caller."""


def librdkafka_path() -> str:
    """The shared library's path as `scripts/brokers paths` reports it."""
    script = Path(__file__).resolve().parent / "brokers"
    result = subprocess.run([sys.executable, str(script), "paths"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mock_cluster: `{script} paths` failed: {result.stderr.strip()}")
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "librdkafka" and value:
            return value
    raise SystemExit(f"mock_cluster: `{script} paths` printed no librdkafka=")


def load(path: str) -> ctypes.CDLL:
    """Open librdkafka and declare the C signatures of every function used (rdkafka_mock.h)."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:
        raise SystemExit(f"mock_cluster: cannot load librdkafka from {path}: {error}") from None
    vp, i16, i32, i64, c_int, c_char_p, size_t = (
        ctypes.c_void_p, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64, ctypes.c_int,
        ctypes.c_char_p, ctypes.c_size_t)
    # rd_kafka_resp_err_t is a C enum, passed and returned as int.
    err = c_int
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (c_int, [vp, c_char_p, c_char_p, c_char_p, size_t]),
        "rd_kafka_new": (vp, [c_int, vp, c_char_p, size_t]),
        "rd_kafka_destroy_flags": (None, [vp, c_int]),
        "rd_kafka_err2str": (c_char_p, [err]),
        "rd_kafka_mock_cluster_new": (vp, [vp, c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_bootstraps": (c_char_p, [vp]),
        "rd_kafka_mock_broker_set_down": (err, [vp, i32]),
        "rd_kafka_mock_broker_set_up": (err, [vp, i32]),
        "rd_kafka_mock_broker_set_rtt": (err, [vp, i32, c_int]),
        "rd_kafka_mock_broker_set_rack": (err, [vp, i32, c_char_p]),
        "rd_kafka_mock_broker_add": (err, [vp, i32]),
        "rd_kafka_mock_broker_decommission": (err, [vp, i32]),
        "rd_kafka_mock_push_request_errors_array": (None, [vp, i16, size_t, ctypes.POINTER(err)]),
        # Variadic after `cnt`: the (err, rtt_ms) pairs are passed as c_int each, which is
        # what C's default argument promotions make of an enum and an int.
        "rd_kafka_mock_broker_push_request_error_rtts": (err, [vp, i32, i16, size_t]),
        "rd_kafka_mock_broker_error_stack_cnt": (err, [vp, i32, i16, ctypes.POINTER(size_t)]),
        "rd_kafka_mock_clear_request_errors": (None, [vp, i16]),
        "rd_kafka_mock_partition_set_leader": (err, [vp, c_char_p, i32, i32]),
        "rd_kafka_mock_partition_set_follower": (err, [vp, c_char_p, i32, i32]),
        "rd_kafka_mock_partition_set_follower_wmarks": (err, [vp, c_char_p, i32, i64, i64]),
        # Variadic after `cnt`: the error codes are passed as c_int each (see above).
        "rd_kafka_mock_partition_push_request_errors": (err, [vp, c_char_p, i32, i16, size_t]),
        "rd_kafka_mock_coordinator_set": (err, [vp, c_char_p, c_char_p, i32]),
        "rd_kafka_mock_topic_create": (err, [vp, c_char_p, c_int, c_int]),
        "rd_kafka_mock_topic_set_error": (None, [vp, c_char_p, err]),
        "rd_kafka_mock_set_apiversion": (err, [vp, i16, i16, i16]),
        "rd_kafka_mock_start_request_tracking": (None, [vp]),
        "rd_kafka_mock_stop_request_tracking": (None, [vp]),
        "rd_kafka_mock_get_requests": (ctypes.POINTER(vp), [vp, ctypes.POINTER(size_t)]),
        "rd_kafka_mock_request_id": (i32, [vp]),
        "rd_kafka_mock_request_api_key": (i16, [vp]),
        "rd_kafka_mock_request_timestamp": (i64, [vp]),
        "rd_kafka_mock_request_destroy_array": (None, [ctypes.POINTER(vp), size_t]),
        "rd_kafka_mock_clear_requests": (None, [vp]),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": (None, [vp, i32]),
        "rd_kafka_mock_set_group_consumer_session_timeout_ms": (None, [vp, c_int]),
        "rd_kafka_mock_set_group_consumer_heartbeat_interval_ms": (None, [vp, c_int]),
        "rd_kafka_topic_partition_list_new": (vp, [c_int]),
        "rd_kafka_topic_partition_list_add": (vp, [vp, c_char_p, i32]),
        "rd_kafka_topic_partition_list_destroy": (None, [vp]),
        "rd_kafka_mem_free": (None, [vp, vp]),
        "rd_kafka_mock_sharegroup_target_assignment": (
            None, [vp, c_char_p, ctypes.POINTER(c_char_p), ctypes.POINTER(vp), size_t]),
        "rd_kafka_mock_sharegroup_get_member_ids": (
            err, [vp, c_char_p, ctypes.POINTER(ctypes.POINTER(c_char_p)),
                  ctypes.POINTER(size_t)]),
        **{f"rd_kafka_mock_sharegroup_set_{name}": (None, [vp, c_int])
           for name in SHAREGROUP_SETTINGS},
    }
    for name, (restype, argtypes) in signatures.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise SystemExit(f"mock_cluster: {path} does not export {name}") from None
        function.restype = restype
        function.argtypes = argtypes
    return lib


class Cluster:
    """A mock cluster and the consumer handle that owns it."""

    def __init__(self, lib: ctypes.CDLL, brokers: int) -> None:
        self.lib = lib
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The owning handle is never used as a client; keep its own logging quiet so the
        # test's captured stderr shows the mock's problems, not this handle's chatter.
        settings = {b"log_level": b"3"}
        # The mock's own protocol log (why it closed a connection, what it parsed) goes
        # through this handle's logger: MOCK_CLUSTER_DEBUG=mock,protocol shows it on stderr.
        debug = os.environ.get("MOCK_CLUSTER_DEBUG")
        if debug:
            settings = {b"log_level": b"7", b"debug": debug.encode()}
        for name, value in settings.items():
            if lib.rd_kafka_conf_set(conf, name, value, errstr, len(errstr)) != 0:
                raise SystemExit(f"mock_cluster: rd_kafka_conf_set {name.decode()}: "
                                 f"{errstr.value.decode()}")
        # rd_kafka_new owns conf from here on success; on failure it would be ours to free,
        # but the process is about to exit.
        self.rk = lib.rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len(errstr))
        if not self.rk:
            raise SystemExit(f"mock_cluster: rd_kafka_new failed: {errstr.value.decode()}")
        self.mc = lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        if not self.mc:
            lib.rd_kafka_destroy_flags(self.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
            raise SystemExit(f"mock_cluster: rd_kafka_mock_cluster_new(rk, {brokers}) failed")

    def bootstraps(self) -> str:
        return self.lib.rd_kafka_mock_cluster_bootstraps(self.mc).decode()

    def destroy(self) -> None:
        self.lib.rd_kafka_mock_cluster_destroy(self.mc)
        self.lib.rd_kafka_destroy_flags(self.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)

    def check(self, what: str, err: int) -> dict[str, Any]:
        """The answer for a call returning rd_kafka_resp_err_t: ok, or the error's text."""
        if err != 0:
            text = self.lib.rd_kafka_err2str(err).decode(errors="replace")
            raise CommandError(f"{what}: {text} (error {err})")
        return {}


# --- argument checking: a malformed command gets a clear answer instead of a crash ---

def arg(command: dict[str, Any], name: str, kind: type) -> Any:
    if name not in command:
        raise CommandError(f"missing argument {name!r}")
    value = command[name]
    if not isinstance(value, kind):
        raise CommandError(f"argument {name!r} must be {kind.__name__}, got {value!r}")
    return value


def fits(name: str, value: Any, bits: int) -> int:
    """`value` if it is an integer that fits a signed C integer of `bits` bits.

    ctypes would silently truncate a larger one, and the mock would act on a wrong value.
    (bool is an int in Python; a JSON true where a number belongs is a caller bug.)
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(f"{name} must be an integer, got {value!r}")
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise CommandError(f"{name} = {value} does not fit in {bits} bits")
    return value


def num(command: dict[str, Any], name: str, bits: int = 32) -> int:
    if name not in command:
        raise CommandError(f"missing argument {name!r}")
    return fits(f"argument {name!r}", command[name], bits)


def int_list(command: dict[str, Any], name: str) -> list[int]:
    return [fits(f"{name}[{i}]", v, 32) for i, v in enumerate(arg(command, name, list))]


def text(command: dict[str, Any], name: str) -> bytes:
    value = arg(command, name, str)
    # C would see the string end at the first NUL.
    if "\0" in value:
        raise CommandError(f"argument {name!r} contains a NUL character")
    return value.encode()


# --- the commands ---

def broker_set_down(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("broker_set_down",
                   c.lib.rd_kafka_mock_broker_set_down(c.mc, num(cmd, "broker")))


def broker_set_up(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("broker_set_up",
                   c.lib.rd_kafka_mock_broker_set_up(c.mc, num(cmd, "broker")))


def broker_set_rtt(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("broker_set_rtt", c.lib.rd_kafka_mock_broker_set_rtt(
        c.mc, num(cmd, "broker"), num(cmd, "rtt_ms")))


def broker_set_rack(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("broker_set_rack", c.lib.rd_kafka_mock_broker_set_rack(
        c.mc, num(cmd, "broker"), text(cmd, "rack")))


def listening_ports() -> set[int]:
    """The loopback TCP ports this process listens on (Linux: /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    with open("/proc/self/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].split(":")[1], 16))
    return ports


def broker_add(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    # The cluster's bootstrap list is fixed at its start, and the library has no accessor for
    # a broker's address: the new listener is the port this process did not listen on before.
    before = listening_ports()
    c.check("broker_add", c.lib.rd_kafka_mock_broker_add(c.mc, num(cmd, "broker")))
    new = listening_ports() - before
    if len(new) != 1:
        raise CommandError(f"broker_add: cannot tell the new broker's port among {sorted(new)}")
    return {"address": f"127.0.0.1:{new.pop()}"}


def broker_decommission(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("broker_decommission",
                   c.lib.rd_kafka_mock_broker_decommission(c.mc, num(cmd, "broker")))


def push_request_errors(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    # The _array variant, because ctypes can't build a C va_list of arbitrary length
    # portably; the array form is the same operation.
    errors = int_list(cmd, "errors")
    array = (ctypes.c_int * len(errors))(*errors)
    c.lib.rd_kafka_mock_push_request_errors_array(
        c.mc, num(cmd, "api_key", 16), len(errors), array)
    return {}


def broker_push_request_error_rtts(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    pairs = arg(cmd, "errors", list)
    flat: list[ctypes.c_int] = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list) or len(pair) != 2:
            raise CommandError(f"each entry of 'errors' must be [error, rtt_ms], got {pair!r}")
        error, rtt_ms = (fits(f"errors[{i}]", v, 32) for v in pair)
        flat += [ctypes.c_int(error), ctypes.c_int(rtt_ms)]
    # Only this function has no array form; on x86-64 and aarch64 Linux, variadic int
    # arguments travel exactly like fixed ones, so ctypes' plain call is correct there.
    return c.check("broker_push_request_error_rtts",
                   c.lib.rd_kafka_mock_broker_push_request_error_rtts(
                       c.mc, num(cmd, "broker"), num(cmd, "api_key", 16),
                       len(pairs), *flat))


def broker_error_stack_cnt(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    count = ctypes.c_size_t(0)
    c.check("broker_error_stack_cnt", c.lib.rd_kafka_mock_broker_error_stack_cnt(
        c.mc, num(cmd, "broker"), num(cmd, "api_key", 16), ctypes.byref(count)))
    return {"count": count.value}


def clear_request_errors(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_clear_request_errors(c.mc, num(cmd, "api_key", 16))
    return {}


def partition_set_leader(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("partition_set_leader", c.lib.rd_kafka_mock_partition_set_leader(
        c.mc, text(cmd, "topic"), num(cmd, "partition"), num(cmd, "broker")))


def partition_set_follower(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("partition_set_follower", c.lib.rd_kafka_mock_partition_set_follower(
        c.mc, text(cmd, "topic"), num(cmd, "partition"), num(cmd, "broker")))


def partition_set_follower_wmarks(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("partition_set_follower_wmarks",
                   c.lib.rd_kafka_mock_partition_set_follower_wmarks(
                       c.mc, text(cmd, "topic"), num(cmd, "partition"),
                       num(cmd, "lo", 64), num(cmd, "hi", 64)))


def partition_push_request_errors(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    errors = [ctypes.c_int(e) for e in int_list(cmd, "errors")]
    partition = num(cmd, "partition")
    # librdkafka checks only the upper bound: a negative index would write before the
    # topic's partition array. Past the end it answers UNKNOWN_TOPIC_OR_PART.
    if partition < 0:
        raise CommandError(f"partition must not be negative, got {partition}")
    # No array form exists; variadic ints travel like fixed ones on x86-64 and aarch64
    # Linux (see broker_push_request_error_rtts).
    return c.check("partition_push_request_errors",
                   c.lib.rd_kafka_mock_partition_push_request_errors(
                       c.mc, text(cmd, "topic"), partition, num(cmd, "api_key", 16),
                       len(errors), *errors))


def coordinator_set(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    key_type = arg(cmd, "key_type", str)
    # librdkafka asserts on other key types (it would abort the whole process).
    if key_type not in ("group", "transaction"):
        raise CommandError(f"key_type must be \"group\" or \"transaction\", got {key_type!r}")
    return c.check("coordinator_set", c.lib.rd_kafka_mock_coordinator_set(
        c.mc, key_type.encode(), text(cmd, "key"), num(cmd, "broker")))


def topic_create(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("topic_create", c.lib.rd_kafka_mock_topic_create(
        c.mc, text(cmd, "topic"), num(cmd, "partitions"),
        num(cmd, "replication_factor")))


def topic_set_error(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_topic_set_error(c.mc, text(cmd, "topic"), num(cmd, "error"))
    return {}


def set_apiversion(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.check("set_apiversion", c.lib.rd_kafka_mock_set_apiversion(
        c.mc, num(cmd, "api_key", 16), num(cmd, "min", 16), num(cmd, "max", 16)))


def start_request_tracking(c: Cluster, _cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_start_request_tracking(c.mc)
    return {}


def stop_request_tracking(c: Cluster, _cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_stop_request_tracking(c.mc)
    return {}


def get_requests(c: Cluster, _cmd: dict[str, Any]) -> dict[str, Any]:
    # librdkafka 2.16 exports no accessor for a tracked request's api version, so the
    # entries have broker id, api key and timestamp only.
    count = ctypes.c_size_t(0)
    array = c.lib.rd_kafka_mock_get_requests(c.mc, ctypes.byref(count))
    requests = []
    for i in range(count.value):
        request = array[i]
        requests.append({
            "broker_id": c.lib.rd_kafka_mock_request_id(request),
            "api_key": c.lib.rd_kafka_mock_request_api_key(request),
            "timestamp_us": c.lib.rd_kafka_mock_request_timestamp(request),
        })
    # get_requests hands out copies: free them and the array (destroy_array does both).
    if array:
        c.lib.rd_kafka_mock_request_destroy_array(array, count.value)
    return {"requests": requests}


def clear_requests(c: Cluster, _cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_clear_requests(c.mc)
    return {}


def group_initial_rebalance_delay_ms(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_group_initial_rebalance_delay_ms(c.mc, num(cmd, "ms"))
    return {}


def set_group_consumer_session_timeout_ms(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_set_group_consumer_session_timeout_ms(c.mc, num(cmd, "ms"))
    return {}


def set_group_consumer_heartbeat_interval_ms(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    c.lib.rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(c.mc, num(cmd, "ms"))
    return {}


def sharegroup_set(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    setting = arg(cmd, "setting", str)
    if setting not in SHAREGROUP_SETTINGS:
        raise CommandError(f"setting: {setting!r} is not one of {', '.join(SHAREGROUP_SETTINGS)}")
    return set_sharegroup_setting(c, setting, cmd, "value")


# The mock multiplies a share group's session timeout and record lock duration by 1000 in a C
# int (microseconds): above this many ms the product overflows and locks or sessions expire at
# once.
SHAREGROUP_MAX_MS = (2**31 - 1) // 1000

# Each setting's (lowest value, highest value, words for some values); durations in ms.
SHAREGROUP_RANGES: dict[str, tuple[int, int, dict[str, int]]] = {
    "session_timeout": (1, SHAREGROUP_MAX_MS, {}),
    "heartbeat_interval": (1, SHAREGROUP_MAX_MS, {}),
    "max_delivery_attempts": (0, 2**31 - 1, {}),
    "record_lock_duration": (0, SHAREGROUP_MAX_MS, {}),
    "isolation_level": (0, 1, {"read_uncommitted": 0, "read_committed": 1}),
    "max_size": (0, 2**31 - 1, {}),
    "max_fetch_sessions": (0, 2**31 - 1, {}),
    "max_record_locks": (0, 2**31 - 1, {}),
    "auto_offset_reset": (0, 1, {"latest": 0, "earliest": 1}),
}


def set_sharegroup_setting(c: Cluster, setting: str, cmd: dict[str, Any],
                           name: str) -> dict[str, Any]:
    """rd_kafka_mock_sharegroup_set_<setting>(cmd[name]), once the value is in range."""
    low, high, words = SHAREGROUP_RANGES[setting]
    if name not in cmd:
        raise CommandError(f"missing argument {name!r}")
    value = cmd[name]
    if isinstance(value, str) and words:
        if value not in words:
            known = " or ".join(repr(w) for w in words)
            raise CommandError(f"{setting}: {name} = {value!r} is not {known} (nor a number)")
        value = words[value]
    value = fits(f"argument {name!r}", value, 32)
    if not low <= value <= high:
        raise CommandError(f"{setting}: {name} = {value} is out of range {low}..={high}")
    getattr(c.lib, f"rd_kafka_mock_sharegroup_set_{setting}")(c.mc, value)
    return {}


def sharegroup_setter(setting: str, name: str) -> Callable[[Cluster, dict[str, Any]],
                                                           dict[str, Any]]:
    """The command sharegroup_set_<setting>, which takes its value as argument `name`."""
    def command(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
        return set_sharegroup_setting(c, setting, cmd, name)
    command.__name__ = f"sharegroup_set_{setting}"
    return command


def sharegroup_target_assignment(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    group = text(cmd, "group")
    assignment = arg(cmd, "assignment", dict)
    members = list(assignment.items())
    # The C function only logs an unknown group, and skips an unknown member without a word.
    known = share_member_ids(c, group)
    if known is None:
        raise CommandError(f"sharegroup_target_assignment: no share group {group.decode()!r} "
                           "(it exists once a member has joined)")
    strangers = [m for m, _ in members if m not in known]
    if strangers:
        raise CommandError(f"sharegroup_target_assignment: {strangers} are not members of "
                           f"{group.decode()!r}, whose members are {known}")
    lists = []
    try:
        for member, partitions in members:
            if not isinstance(member, str) or not member:
                raise CommandError(f"assignment: member id {member!r} is not a non-empty string")
            if not isinstance(partitions, list):
                raise CommandError(f"assignment: {member}'s partitions are not a list")
            plist = c.lib.rd_kafka_topic_partition_list_new(max(len(partitions), 1))
            lists.append(plist)
            for entry in partitions:
                if (not isinstance(entry, list) or len(entry) != 2
                        or not isinstance(entry[0], str) or not isinstance(entry[1], int)
                        or isinstance(entry[1], bool) or not entry[0] or "\0" in entry[0]):
                    raise CommandError(
                        f"assignment: {entry!r} is not a [topic, partition] pair")
                if entry[1] < 0:
                    raise CommandError(f"assignment: partition {entry[1]} is negative")
                c.lib.rd_kafka_topic_partition_list_add(
                    plist, entry[0].encode(), fits("partition", entry[1], 32))
        ids = (ctypes.c_char_p * max(len(members), 1))(*[m.encode() for m, _ in members])
        plists = (ctypes.c_void_p * max(len(lists), 1))(*lists)
        c.lib.rd_kafka_mock_sharegroup_target_assignment(c.mc, group, ids, plists, len(members))
    finally:
        for plist in lists:
            c.lib.rd_kafka_topic_partition_list_destroy(plist)
    return {}


def share_member_ids(c: Cluster, group: bytes) -> list[str] | None:
    """The share group's member ids; None if the mock has no such group."""
    out = ctypes.POINTER(ctypes.c_char_p)()
    count = ctypes.c_size_t()
    error = c.lib.rd_kafka_mock_sharegroup_get_member_ids(
        c.mc, group, ctypes.byref(out), ctypes.byref(count))
    if error == 69:  # GROUP_ID_NOT_FOUND
        return None
    c.check("sharegroup_get_member_ids", error)
    if not out:
        return []
    ids = [out[i].decode(errors="replace") for i in range(count.value)]
    # Each string and the array are librdkafka's (rd_malloc).
    array = ctypes.cast(out, ctypes.POINTER(ctypes.c_void_p))
    for i in range(count.value):
        c.lib.rd_kafka_mem_free(None, array[i])
    c.lib.rd_kafka_mem_free(None, array)
    return ids


def sharegroup_get_member_ids(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    ids = share_member_ids(c, text(cmd, "group"))
    if ids is None:
        c.check("sharegroup_get_member_ids", 69)
    return {"member_ids": ids}


def sharegroup_member_ids(c: Cluster, cmd: dict[str, Any]) -> dict[str, Any]:
    # No group (GROUP_ID_NOT_FOUND): no member has joined yet.
    return {"member_ids": share_member_ids(c, text(cmd, "group")) or []}


COMMANDS: dict[str, Callable[[Cluster, dict[str, Any]], dict[str, Any]]] = {
    f.__name__: f for f in [
        broker_set_down, broker_set_up, broker_set_rtt, broker_set_rack,
        broker_add, broker_decommission,
        push_request_errors, broker_push_request_error_rtts, broker_error_stack_cnt,
        clear_request_errors,
        partition_set_leader, partition_set_follower, partition_set_follower_wmarks,
        partition_push_request_errors, coordinator_set, topic_create, topic_set_error, set_apiversion,
        start_request_tracking, stop_request_tracking, get_requests, clear_requests,
        group_initial_rebalance_delay_ms, set_group_consumer_session_timeout_ms,
        set_group_consumer_heartbeat_interval_ms,
        sharegroup_set, sharegroup_target_assignment, sharegroup_member_ids,
        sharegroup_get_member_ids,
        *[sharegroup_setter(setting, "ms" if setting in SHAREGROUP_MS else "value")
          for setting in SHAREGROUP_SETTINGS],
    ]
}


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(cluster: Cluster) -> None:
    """Answer commands until `quit` or the end of stdin."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise CommandError(f"a command must be a JSON object, got {line.strip()!r}")
            name = command.get("cmd")
            if name == "quit":
                answer({"ok": True})
                return
            if name not in COMMANDS:
                raise CommandError(f"unknown command {name!r}; known: quit, "
                                   + ", ".join(sorted(COMMANDS)))
            answer({"ok": True, **COMMANDS[name](cluster, command)})
        except json.JSONDecodeError as error:
            answer({"ok": False, "error": f"not JSON ({error}): {line.strip()!r}"})
        except CommandError as error:
            answer({"ok": False, "error": str(error)})
        except (ctypes.ArgumentError, OverflowError, TypeError, ValueError) as error:
            # A value ctypes can't convert that the checks above let through: still the
            # caller's mistake, so it gets the answer and the cluster stays up.
            answer({"ok": False, "error": f"{type(error).__name__}: {error}"})


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2) or not argv[0].isdigit() or int(argv[0]) < 1:
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} BROKERS [LIBRDKAFKA_SO]")
    lib = load(argv[1] if len(argv) == 2 else librdkafka_path())
    cluster = Cluster(lib, int(argv[0]))
    try:
        answer({"bootstraps": cluster.bootstraps()})
        serve(cluster)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main(sys.argv[1:])
