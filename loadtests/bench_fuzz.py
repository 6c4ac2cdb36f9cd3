"""Fuzzing the live server: every unary RPC, structure-aware and byte-mutated requests.

    python -m loadtests.bench_fuzz [--messages 100000] [--seed 1] [--batch 2000]
                                   [--out bench-results]

Starts a real `dispatch-core serve` (SQLite journal in a temporary directory, small
request memory and closed-incident retention so that the journal lookups and the archive
are exercised too), seeds a small fleet, then sends `--messages` requests to the unary
RPCs of `dispatch.v1.DispatchService` as raw bytes:

- structure-aware ones, built from the proto descriptors (every field of every request
  message, oneofs, optionals, repeated columns), with values drawn mostly from the seeded
  fleet (its unit ids, the incidents the server created, borough names, unit types, the
  capability vocabulary, page tokens the server issued) so that most get past validation
  into the state machine, and hostile values (control and bidi characters, blank and
  over-long ids, NaN, out-of-range enums and sizes) in every field now and then;
- byte-mutated ones: a structure-aware request serialized, then bits flipped, bytes
  inserted, deleted, duplicated or copied elsewhere, truncated.

After every batch it checks that the server still answers (health SERVING, Ping) and that
the state holds together, from the outside: every unit attached to an incident is listed
by that open incident and by no other, every listed attachment is the unit's, closed
incidents hold no units, the picture's counts per status and grade and the metrics'
gauges equal a recount of the listings. A crash is the process dying, an RPC answering
INTERNAL / UNKNOWN / UNAVAILABLE / DEADLINE_EXCEEDED / DATA_LOSS, or a traceback in the
server's log. At the end the server is stopped (it must exit 0), and the state is rebuilt
from its journal in this process and checked with the core's own `check_invariants` and
against the last listing.

Writes bench-results/fuzz.json and fuzz.md: messages, rate, crashes, invariant breaks, the
share of messages that got past validation (answered OK, NOT_FOUND, ALREADY_EXISTS or
FAILED_PRECONDITION rather than INVALID_ARGUMENT), per RPC. The generator takes its
choices from a `Choices` source: a seeded `random.Random` here, hypothesis in
`tests/test_fuzz.py` (which also runs a short seeded run of this driver).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor as gdesc
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from dispatch_core._core import DispatchCore
from dispatch_core.boroughs import boroughs
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.recovery import JournalConfig, open_journal_checked
from dispatch_core.loadtest.procs import machine_info
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

T = TypeVar("T")

SERVICE = pb.DESCRIPTOR.services_by_name["DispatchService"]
#: Every unary RPC of the service (the streaming ones are outside this harness).
UNARY: list[gdesc.MethodDescriptor] = [
    m for m in SERVICE.methods if not m.client_streaming and not m.server_streaming
]
#: How often each RPC is picked, relative; commands more than reads (they change state),
#: the operating picture rarely (it computes coverage of all London: milliseconds, not
#: microseconds), Ping rarely (nothing to find there).
WEIGHTS: dict[str, float] = {
    "Ping": 0.2,
    "UpsertUnit": 2.0,
    "SetUnitStatus": 3.0,
    "CreateIncident": 2.0,
    "UpdateIncident": 1.5,
    "CloseIncident": 1.0,
    "AssignUnits": 3.0,
    "GetUnit": 1.0,
    "ListUnits": 0.7,
    "GetIncident": 1.0,
    "ListIncidents": 0.7,
    "ListPending": 0.7,
    "UpdateLocations": 1.5,
    "RecommendUnits": 1.0,
    "BatchRecommendUnits": 0.5,
    "GetOperatingPicture": 0.1,
    # The audit trail is the service's, not the core's, and refuses unauthenticated callers.
    "QueryAudit": 0.1,
    # Duty management: a few people, shifts and crews on the fleet's units, so that crews
    # get booked and the clock's roster deadlines fire while the rest runs.
    "UpsertPerson": 1.0,
    "GetPerson": 0.5,
    "UpsertShift": 1.0,
    "BookCrew": 1.0,
    # The plans in force, and a reload of the server's own file (nothing to change).
    "GetResponsePlans": 0.2,
    "ReloadResponsePlans": 0.05,
}
#: Codes that mean the request got past validation into the core (or the core's reads).
PAST_VALIDATION = frozenset({"OK", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION"})
#: Codes that mean the server failed: a bug, whatever the request was.
CRASH_CODES = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"})

#: Strings no identifier accepts, or only at the edge (see `rust/core/src/wire/ident.rs`).
HOSTILE_STRINGS: tuple[str, ...] = (
    "",
    " ",
    " MD21",
    "MD21\n2026-12-01 INFO forged line",
    "a\x00b",
    "\u202eevil",
    "MD\u200d21",
    "MD\u200b21",
    "\ufeffMD21",
    "MD\u00a021",
    "U" * 65,
    "U" * 64,
    "\U0001f693" * 16,
    "\U0001f693" * 17,
    "dogg",
    "%%%not-a-token",
    "\x1b[31mred",
)
HOSTILE_FLOATS: tuple[float, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    90.0000001,
    -180.0000001,
    1e308,
    -0.0,
    5e-324,
    90.0,
    -180.0,
)
HOSTILE_INTS: tuple[int, ...] = (0, -1, 1, 2**31 - 1, -(2**31), 1001, 51, 100_001, 7, 8)
INCIDENT_TYPES = ("violence", "burglary", "rtc", "fire", "concern_for_welfare")
UNIT_TYPES = ("irv", "arv", "pump", "ambulance", "dog_van", "tsg")
#: Scalar protobuf field types, by descriptor constant.
_INTS = {
    gdesc.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    gdesc.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    gdesc.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    gdesc.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


class Choices(Protocol):
    """Where the generator's decisions come from: a seeded `random.Random` for long runs,
    hypothesis (which can shrink a failing request) in the tests."""

    def chance(self, p: float) -> bool: ...
    def integer(self, lo: int, hi: int) -> int: ...
    def uniform(self, lo: float, hi: float) -> float: ...
    def pick(self, options: Sequence[T]) -> T: ...
    def text(self, max_chars: int) -> str: ...
    def blob(self, max_bytes: int) -> bytes: ...


class RandomChoices:
    """`Choices` from a seeded `random.Random`: cheap, reproducible."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def uniform(self, lo: float, hi: float) -> float:
        return self.rng.uniform(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def text(self, max_chars: int) -> str:
        # Any code point but surrogates (protobuf strings are UTF-8): mostly ASCII, some of
        # every plane.
        out = []
        for _ in range(self.rng.randint(0, max_chars)):
            roll = self.rng.random()
            if roll < 0.7:
                cp = self.rng.randint(0x20, 0x7E)
            elif roll < 0.8:
                cp = self.rng.randint(0, 0x1F)
            else:
                cp = self.rng.randint(0x80, 0x10FFFF)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0xFFFD
            out.append(chr(cp))
        return "".join(out)

    def blob(self, max_bytes: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_bytes))


@dataclass
class Pool:
    """What the generator draws plausible values from: the seeded fleet and what the
    server answered since (incident ids it created, page tokens it issued)."""

    unit_ids: list[str]
    areas: list[str]
    capabilities: list[str]
    incident_ids: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def learn(self, method: str, response: bytes) -> None:
        """Keeps the ids and tokens an OK answer carries, a bounded number of each."""
        if method == "CreateIncident":
            incident = pb.CreateIncidentResponse.FromString(response).incident
            self._keep(self.incident_ids, incident.incident_id)
        elif method == "ListUnits":
            self._keep(self.tokens, pb.ListUnitsResponse.FromString(response).next_page_token)
        elif method == "ListIncidents":
            self._keep(self.tokens, pb.ListIncidentsResponse.FromString(response).next_page_token)
        elif method == "ListPending":
            self._keep(self.tokens, pb.ListPendingResponse.FromString(response).next_page_token)

    @staticmethod
    def _keep(values: list[str], value: str, limit: int = 64) -> None:
        if value:
            values.append(value)
            if len(values) > limit:
                del values[0]


class Generator:
    """Requests for every unary RPC, built from the proto descriptors."""

    def __init__(
        self,
        pool: Pool,
        choices: Choices,
        *,
        mutate_share: float = 0.25,
    ) -> None:
        self.pool = pool
        self.c = choices
        self.mutate_share = mutate_share
        self.methods = UNARY
        self.weights = [WEIGHTS.get(m.name, 1.0) for m in UNARY]

    def pick_method(self) -> gdesc.MethodDescriptor:
        total = sum(self.weights)
        x = self.c.uniform(0.0, total)
        for method, w in zip(self.methods, self.weights, strict=True):
            x -= w
            if x <= 0:
                return method
        return self.methods[-1]

    def request(self, method: gdesc.MethodDescriptor) -> tuple[bytes, bool]:
        """(request bytes, whether they were byte-mutated)."""
        message = self.message(method.input_type, method.name, 0)
        data = message.SerializeToString()
        if self.c.chance(self.mutate_share):
            return self.mutate(data), True
        return data, False

    # ------------------------------------------------------------------ structure-aware

    def message(self, desc: gdesc.Descriptor, rpc: str, depth: int) -> Message:
        cls: Callable[[], Message] = _message_class(desc)
        msg = cls()
        if desc.full_name == "google.protobuf.Timestamp":
            at_ms = self.time_ms()
            msg.seconds, msg.nanos = divmod(at_ms, 1000)  # type: ignore[attr-defined]
            msg.nanos *= 1_000_000  # type: ignore[attr-defined]
            if self.c.chance(0.03):
                msg.nanos = self.c.pick(HOSTILE_INTS)  # type: ignore[attr-defined]
            return msg
        chosen_oneof = {
            o.name: (self.c.pick(o.fields) if self.c.chance(0.95) else None)
            for o in desc.oneofs
            if not _synthetic_oneof(o)
        }
        # Columnar requests (UpdateLocations) have equal-length columns, mostly.
        columns = self.c.integer(0, 4) if self.c.chance(0.9) else None
        for f in desc.fields:
            oneof = f.containing_oneof
            if oneof is not None and not _synthetic_oneof(oneof):
                if chosen_oneof[oneof.name] is not f:
                    continue
            elif (oneof is not None or (f.type == f.TYPE_MESSAGE and not _is_repeated(f))) and (
                not self.c.chance(0.85 if depth < 3 else 0.3)
            ):
                # proto3 optional and singular message fields: present most of the time.
                continue
            if _is_repeated(f):
                n = columns if columns is not None and rpc == "UpdateLocations" else self.length(f)
                values = getattr(msg, f.name)
                for _ in range(n):
                    if f.type == f.TYPE_MESSAGE:
                        values.add().CopyFrom(self.message(f.message_type, rpc, depth + 1))
                    else:
                        values.append(self.scalar(f, rpc))
            elif f.type == f.TYPE_MESSAGE:
                getattr(msg, f.name).CopyFrom(self.message(f.message_type, rpc, depth + 1))
            else:
                setattr(msg, f.name, self.scalar(f, rpc))
        return msg

    def length(self, f: gdesc.FieldDescriptor) -> int:
        if self.c.chance(0.02):
            return self.c.integer(0, 120)
        if f.name in ("unit_ids", "queries", "requirements", "groups"):
            return self.c.integer(1, 3)
        return self.c.integer(0, 2)

    def scalar(self, f: gdesc.FieldDescriptor, rpc: str) -> Any:
        name = f.name
        if f.type == f.TYPE_STRING:
            return self.string(name, rpc)
        if f.type == f.TYPE_ENUM:
            numbers = [v.number for v in f.enum_type.values if v.number != 0]
            if self.c.chance(0.9):
                return self.c.pick(numbers)
            return self.c.pick((0, max(numbers) + 1, -1, 2**31 - 1))
        if f.type == f.TYPE_BOOL:
            return self.c.chance(0.5)
        if f.type in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
            return self.floating(name)
        if f.type in _INTS:
            return self.integer(name, *_INTS[f.type])
        if f.type == f.TYPE_BYTES:
            return self.c.blob(16)
        raise AssertionError(f"no generator for field {f.full_name} of type {f.type}")

    def string(self, name: str, rpc: str) -> str:
        if self.c.chance(0.04):
            return self.c.pick(HOSTILE_STRINGS) if self.c.chance(0.7) else self.c.text(20)
        p = self.pool
        if name == "request_id":
            if self.c.chance(0.05) and (seen := self.recall(p.request_ids)):
                return seen  # a retry, or a reuse with other fields
            rid = f"fz-{self.c.integer(0, 2**63):x}"
            Pool._keep(p.request_ids, rid)
            return rid
        if name in ("unit_id", "unit_ids"):
            return self.c.pick(p.unit_ids) if self.c.chance(0.95) else f"FZ-X{self.c.integer(0, 9)}"
        if name in ("incident_id", "released_incident_id"):
            if rpc == "CreateIncident":  # usually server-chosen
                return "" if self.c.chance(0.8) else f"FZ-I{self.c.integer(0, 999):03d}"
            if self.c.chance(0.9) and (known := self.recall(p.incident_ids)):
                return known
            return f"INC-{self.c.integer(1, 50):06d}"
        if name in ("person_id", "person_ids"):
            return f"FZ-P{self.c.integer(0, 7)}"
        if name in ("shift_id", "crew_id"):
            return f"FZ-{name[0].upper()}{self.c.integer(0, 15)}"
        if name == "capability":
            return self.c.pick(p.capabilities)
        if name in ("area", "home_area"):
            return "" if self.c.chance(0.3) else self.c.pick(p.areas)
        if name in ("unit_type", "unit_types"):
            return self.c.pick(UNIT_TYPES)
        if name == "capabilities":
            return self.c.pick(p.capabilities)
        if name == "incident_type":
            return self.c.pick(INCIDENT_TYPES)
        if name == "page_token":
            if self.c.chance(0.6):
                return ""
            if self.c.chance(0.8) and (issued := self.recall(p.tokens)):
                return issued
            return self.c.text(12)
        return self.c.text(12)

    def recall(self, values: list[str]) -> str:
        """One of `values` ("" when there are none). Draws the same whatever the list holds,
        so that the sequence of choices does not depend on what the server answered (which
        hypothesis requires to replay and shrink a request)."""
        i = self.c.integer(0, 63)
        return values[i % len(values)] if values else ""

    def floating(self, name: str) -> float:
        if self.c.chance(0.03):
            return self.c.pick(HOSTILE_FLOATS)
        if name == "lat":
            return self.c.uniform(51.3, 51.7)
        if name == "lon":
            return self.c.uniform(-0.5, 0.3)
        if name == "target_seconds":
            return self.c.pick((0.0, 300.0, 900.0, 1800.0))
        if name == "cell_m":
            return self.c.pick((0.0, 1000.0, 2000.0, 5000.0))
        if name == "interval_seconds":
            return self.c.pick((0.0, 1.0, 5.0))
        return self.c.uniform(-1e3, 1e3)

    def integer(self, name: str, lo: int, hi: int) -> int:
        if self.c.chance(0.03):
            value = self.c.integer(lo, hi) if self.c.chance(0.5) else self.c.pick(HOSTILE_INTS)
            return max(lo, min(hi, value))
        if name == "time_unix_ms":
            return self.time_ms()
        if name in ("k", "page_size"):
            return self.c.integer(0, 12)
        if name in ("count", "holders"):
            return self.c.integer(1, 3)
        return max(lo, min(hi, self.c.integer(0, 100)))

    def time_ms(self) -> int:
        # Around now: pings the server accepts (up to ten minutes old), some dated too far
        # ahead (skipped as future), and shift bounds on either side of now.
        return int(time.time() * 1000) + self.c.integer(-600_000, 60_000)

    # -------------------------------------------------------------------- byte mutation

    def position(self, length: int) -> int:
        """A position in [0, length], drawn as a fraction: the same draw whatever the
        length (hypothesis replays a request whose ids may have other lengths by then)."""
        return min(length, int(self.c.uniform(0.0, 1.0) * (length + 1)))

    def mutate(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.c.integer(1, 3)):
            op = self.c.integer(0, 7)
            at = self.position(len(out))
            if op == 0 and out:  # flip a bit
                i = min(at, len(out) - 1)
                out[i] ^= 1 << self.c.integer(0, 7)
            elif op == 1 and out:  # set a byte, often to a varint continuation or a tag
                i = min(at, len(out) - 1)
                special = (0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x08, self.c.integer(0, 255))
                out[i] = self.c.pick(special)
            elif op == 2:  # insert bytes
                out[at:at] = self.c.blob(8)
            elif op == 3 and out:  # delete a range
                out[at : at + self.c.integer(1, 8)] = b""
            elif op == 4 and out:  # duplicate a range (repeated fields, last-one-wins)
                end = min(len(out), at + self.c.integer(1, 16))
                out[end:end] = out[at:end]
            elif op == 5:  # truncate
                del out[at:]
            elif op == 6:  # copy a part of the request elsewhere (a field into another)
                start = self.position(len(data))
                out[at:at] = data[start : start + self.c.integer(1, 24)]
            else:  # append an unknown or repeated field with a random payload
                out += bytes([self.c.integer(1, 31) << 3 | 2, 4]) + self.c.blob(4).ljust(4, b"x")
        return bytes(out)


def _message_class(desc: gdesc.Descriptor) -> Callable[[], Message]:
    return message_factory.GetMessageClass(desc)


def _is_repeated(f: gdesc.FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def _synthetic_oneof(o: gdesc.OneofDescriptor) -> bool:
    """A proto3 `optional` field's oneof (one field, named after it with an underscore)."""
    return len(o.fields) == 1 and o.name == f"_{o.fields[0].name}"


# ------------------------------------------------------------------------------- server


_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
_METRICS_AT = re.compile(r"metrics served at (http://\S+/metrics)")


@dataclass
class FuzzServer:
    """A `dispatch-core serve` subprocess with its data directory."""

    process: subprocess.Popen[bytes]
    workdir: Path
    target: str
    metrics_url: str

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_server(workdir: Path, timeout_s: float = 60.0) -> FuzzServer:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    command = [
        sys.executable, "-m", "dispatch_core.cli", "serve",
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
        "--data-dir", str(workdir / "data"),
        # Durable to the process, not to power loss: the journal is still replayed at the
        # end, and the fsyncs would only slow the fuzzer.
        "--synchronous", "OFF",
        # Small windows so that the journal's request_id lookup and the archive of closed
        # incidents are in play, not only the in-memory paths.
        "--request-memory", "500",
        "--closed-retention-count", "200",
        "--shutdown-delay", "0", "--grace", "2",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout_s
    port = metrics = None
    while port is None or metrics is None:
        text = log_path.read_text(errors="replace")
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start:\n{text}")
        if (m := _LISTENING.search(text)) is not None:
            port = int(m.group(1))
        if (u := _METRICS_AT.search(text)) is not None:
            metrics = u.group(1)
        time.sleep(0.05)
    server = FuzzServer(process, workdir, f"127.0.0.1:{port}", metrics)
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"server never became SERVING:\n{server.log()}")
            time.sleep(0.05)
    return server


# -------------------------------------------------------------------------------- state


@dataclass
class Listing:
    units: list[pb.Unit]
    incidents: list[pb.Incident]


def _call(channel: grpc.Channel, name: str) -> Callable[..., bytes]:
    # Bytes in, bytes out: the fuzzer sends whatever it made, parsed or not.
    return channel.unary_unary(f"/{SERVICE.full_name}/{name}")  # type: ignore[no-any-return]


def list_all(channel: grpc.Channel) -> Listing:
    units: list[pb.Unit] = []
    token = ""
    while True:
        page = pb.ListUnitsResponse.FromString(
            _call(channel, "ListUnits")(
                pb.ListUnitsRequest(page_size=1000, page_token=token).SerializeToString(),
                timeout=30,
            )
        )
        units.extend(page.units)
        if not (token := page.next_page_token):
            break
    incidents: list[pb.Incident] = []
    while True:
        ipage = pb.ListIncidentsResponse.FromString(
            _call(channel, "ListIncidents")(
                pb.ListIncidentsRequest(page_size=1000, page_token=token).SerializeToString(),
                timeout=30,
            )
        )
        incidents.extend(ipage.incidents)
        if not (token := ipage.next_page_token):
            break
    return Listing(units, incidents)


#: Statuses in which a unit is attached to an incident (proto: Unit.incident_id).
ATTACHED = frozenset({pb.UNIT_STATUS_DISPATCHED, pb.UNIT_STATUS_EN_ROUTE, pb.UNIT_STATUS_ON_SCENE})


def state_problems(listing: Listing) -> list[str]:
    """What is wrong with a listing of the whole state; empty when it holds together."""
    problems: list[str] = []
    unit_ids = [u.unit_id for u in listing.units]
    incident_ids = [i.incident_id for i in listing.incidents]
    if unit_ids != sorted(set(unit_ids)):
        problems.append("ListUnits is not in unit_id order without repeats")
    if incident_ids != sorted(set(incident_ids)):
        problems.append("ListIncidents is not in incident_id order without repeats")
    units = {u.unit_id: u for u in listing.units}
    incidents = {i.incident_id: i for i in listing.incidents}
    holders: dict[str, list[str]] = defaultdict(list)
    for i in listing.incidents:
        closed = i.status == pb.INCIDENT_STATUS_CLOSED
        if closed and i.attached_unit_ids:
            problems.append(f"closed incident {i.incident_id} holds {list(i.attached_unit_ids)}")
        for uid in i.attached_unit_ids:
            holders[uid].append(i.incident_id)
            if uid not in units:
                problems.append(f"incident {i.incident_id} holds unknown unit {uid}")
            elif units[uid].incident_id != i.incident_id:
                problems.append(
                    f"incident {i.incident_id} holds {uid}, linked to {units[uid].incident_id!r}"
                )
    for uid, held in holders.items():
        if len(held) > 1:
            problems.append(f"unit {uid} is on {len(held)} incidents: {held}")
    for u in listing.units:
        if u.incident_id:
            i = incidents.get(u.incident_id)
            if i is None or i.status == pb.INCIDENT_STATUS_CLOSED:
                problems.append(f"unit {u.unit_id} linked to missing or closed {u.incident_id}")
            elif u.unit_id not in i.attached_unit_ids:
                problems.append(f"unit {u.unit_id} linked to {u.incident_id}, which omits it")
            if u.status not in ATTACHED:
                problems.append(f"unit {u.unit_id} linked to {u.incident_id} while {u.status}")
        elif u.status in ATTACHED:
            problems.append(f"unit {u.unit_id} is {pb.UnitStatus.Name(u.status)} with no incident")
    return problems


def _name(enum: Any, number: int, prefix: str) -> str:
    """An enum value's name as the picture and the metrics label it: `AVAILABLE`."""
    return str(enum.Name(number)).removeprefix(prefix)


def count_problems(listing: Listing, picture: pb.OperatingPicture, metrics: str) -> list[str]:
    """The picture's and the metrics' counts against a recount of the listing."""
    problems: list[str] = []
    positioned: Counter[str] = Counter(
        _name(pb.UnitStatus, u.status, "UNIT_STATUS_")
        for u in listing.units
        if u.HasField("location")
    )
    pictured: Counter[str] = Counter()
    open_by_grade: Counter[str] = Counter()
    for area in picture.areas:
        pictured.update(dict(area.units_by_status))
        open_by_grade.update(dict(area.open_incidents_by_grade))
    recount_open: Counter[str] = Counter(
        _name(pb.Grade, i.grade, "GRADE_")
        for i in listing.incidents
        if i.status != pb.INCIDENT_STATUS_CLOSED
    )
    if +pictured != +positioned:
        problems.append(f"picture units by status {dict(pictured)} != recount {dict(positioned)}")
    if +open_by_grade != +recount_open:
        problems.append(f"picture open incidents {dict(open_by_grade)} != {dict(recount_open)}")
    gauges: Counter[tuple[str, str]] = Counter()
    open_gauge: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == "dispatch_units":
                gauges[(s.labels["agency"], s.labels["status"])] += int(s.value)
            elif s.name == "dispatch_incidents_open":
                open_gauge[s.labels["grade"]] += int(s.value)
    recount: Counter[tuple[str, str]] = Counter(
        (_name(pb.Agency, u.agency, "AGENCY_"), _name(pb.UnitStatus, u.status, "UNIT_STATUS_"))
        for u in listing.units
    )
    if +gauges != +recount:
        problems.append(f"dispatch_units {dict(+gauges)} != recount {dict(recount)}")
    if +open_gauge != +recount_open:
        problems.append(f"dispatch_incidents_open {dict(+open_gauge)} != {dict(recount_open)}")
    return problems


# ---------------------------------------------------------------------------------- run


@dataclass
class Report:
    messages: int = 0
    mutated: int = 0
    crashes: list[str] = field(default_factory=list)
    invariant_breaks: list[str] = field(default_factory=list)
    checks: int = 0
    seconds: float = 0.0
    by_rpc: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def past_validation(self, rpcs: Sequence[str] | None = None) -> tuple[int, int]:
        """(past validation, total) over the RPCs that validate (all but Ping)."""
        past = total = 0
        for rpc, codes in self.by_rpc.items():
            if rpc == "Ping" or (rpcs is not None and rpc not in rpcs):
                continue
            total += sum(codes.values())
            past += sum(n for code, n in codes.items() if code in PAST_VALIDATION)
        return past, total

    def share(self) -> float:
        past, total = self.past_validation()
        return past / total if total else 0.0


class Fuzzer:
    """One seeded fleet on one server, and a generator of requests against it."""

    def __init__(
        self,
        server: FuzzServer,
        choices: Choices,
        *,
        units: int = 40,
    ) -> None:
        self.server = server
        # No receive limit: a large answer (a batch of recommendations) is not a failure.
        self.channel = grpc.insecure_channel(
            server.target, options=[("grpc.max_receive_message_length", -1)]
        )
        self.calls = {m.name: _call(self.channel, m.name) for m in UNARY}
        areas = [b.borough for b in boroughs()]
        capabilities = DispatchCore().capability_names()
        self.pool = Pool(
            unit_ids=[f"FZ-U{i:03d}" for i in range(units)], areas=areas, capabilities=capabilities
        )
        self.gen = Generator(self.pool, choices)
        self.report = Report()
        self.last_listing: Listing | None = None
        self._seed_fleet(choices)

    def _seed_fleet(self, c: Choices) -> None:
        now = self.pool.now_ms
        for i, unit_id in enumerate(self.pool.unit_ids):
            spec = pb.UnitSpec(
                unit_id=unit_id,
                agency=1 + i % 3,
                unit_type=UNIT_TYPES[i % len(UNIT_TYPES)],
                capabilities=self.pool.capabilities[i % 5 : i % 5 + 2],
                home_area=self.pool.areas[i % len(self.pool.areas)],
            )
            self.calls["UpsertUnit"](
                pb.UpsertUnitRequest(request_id=str(uuid.uuid4()), unit=spec).SerializeToString()
            )
        self.calls["UpdateLocations"](
            pb.UpdateLocationsRequest(
                unit_ids=self.pool.unit_ids,
                lat=[c.uniform(51.4, 51.6) for _ in self.pool.unit_ids],
                lon=[c.uniform(-0.3, 0.1) for _ in self.pool.unit_ids],
                time_unix_ms=[now - 60_000] * len(self.pool.unit_ids),
            ).SerializeToString()
        )

    def send(self, n: int) -> None:
        """Sends `n` generated requests, counting each answer's code per RPC."""
        start = time.perf_counter()
        for _ in range(n):
            method = self.gen.pick_method()
            data, mutated = self.gen.request(method)
            self.send_one(method.name, data, mutated)
        self.report.seconds += time.perf_counter() - start

    def send_one(self, rpc: str, data: bytes, mutated: bool = False) -> str:
        self.report.messages += 1
        self.report.mutated += mutated
        try:
            response = self.calls[rpc](data, timeout=30)
            code = "OK"
            if not mutated:
                self.pool.learn(rpc, response)
        except grpc.RpcError as err:
            code = err.code().name  # type: ignore[attr-defined]
            if code in CRASH_CODES:
                self.report.crashes.append(
                    f"{rpc} answered {code} ({err.details()}) to {data.hex()}"  # type: ignore[attr-defined]
                )
        self.report.by_rpc[rpc][code] += 1
        return code

    def check(self) -> list[str]:
        """Is the server alive and its state whole? Records and returns what is wrong."""
        self.report.checks += 1
        problems: list[str] = []
        if self.server.process.poll() is not None:
            problems.append(f"server exited with {self.server.process.returncode}")
            self.report.crashes.extend(problems)
            return problems
        try:
            health = health_pb2_grpc.HealthStub(self.channel)
            if health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != 1:
                problems.append("health is not SERVING")
            self.calls["Ping"](pb.PingRequest().SerializeToString(), timeout=10)
        except grpc.RpcError as err:
            problems.append(f"health or Ping failed: {err}")
            self.report.crashes.extend(problems)
            return problems
        listing = list_all(self.channel)
        picture = pb.OperatingPicture.FromString(
            self.calls["GetOperatingPicture"](
                pb.GetOperatingPictureRequest(
                    coverage=pb.CoverageQuery(cell_m=5000)
                ).SerializeToString(),
                timeout=30,
            )
        )
        with urllib.request.urlopen(self.server.metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        # A tick may archive closed incidents between the listing and the picture; neither
        # changes units or open incidents, which is all the recount compares.
        broken = state_problems(listing) + count_problems(listing, picture, metrics)
        self.report.invariant_breaks.extend(broken)
        self.last_listing = listing
        return problems + broken

    def finish(self) -> list[str]:
        """Stops the server and checks it ended cleanly and that its journal rebuilds the
        state it served."""
        self.channel.close()
        problems: list[str] = []
        code = self.server.stop()
        if code != 0:
            problems.append(f"server exited {code} at SIGTERM")
        if "Traceback" in self.server.log():
            problems.append("traceback in the server log:\n" + self.server.log()[-4000:])
        self.report.crashes.extend(problems)
        broken = rebuild_problems(self.server.workdir / "data", self.last_listing)
        self.report.invariant_breaks.extend(broken)
        return problems + broken


def rebuild_problems(data_dir: Path, last: Listing | None) -> list[str]:
    """Rebuilds the state from the journal in `data_dir` (snapshot + entries, as a restart
    does) and checks it: the core's invariants, and the same units and incidents as the
    last listing of the live server."""
    config = JournalConfig(data_dir=data_dir)
    with open_journal_checked(config, read_only=True) as journal:
        pipeline = Pipeline(DispatchCore(), journal=journal)
        pipeline.restore()
        core = pipeline.core
        problems: list[str] = []
        try:
            core.check_invariants()
        except ValueError as err:
            problems.append(f"rebuilt state: {err}")
        units: list[pb.Unit] = []
        token = ""
        while True:
            page = pb.ListUnitsResponse.FromString(
                core.list_units(
                    pb.ListUnitsRequest(page_size=1000, page_token=token).SerializeToString()
                )
            )
            units.extend(page.units)
            if not (token := page.next_page_token):
                break
        rebuilt = [(u.unit_id, u.status, u.incident_id) for u in units]
        if last is not None:
            live = [(u.unit_id, u.status, u.incident_id) for u in last.units]
            if rebuilt != live:
                problems.append("the state rebuilt from the journal differs from the live one")
    return problems


def run(
    messages: int,
    seed: int,
    batch: int,
    workdir: Path,
    *,
    progress: bool = False,
) -> Report:
    server = start_server(workdir)
    try:
        fuzzer = Fuzzer(server, RandomChoices(seed))
        fuzzer.check()
        sent = 0
        while sent < messages and not fuzzer.report.crashes:
            n = min(batch, messages - sent)
            fuzzer.send(n)
            sent += n
            fuzzer.check()
            if progress:
                r = fuzzer.report
                print(
                    f"{sent:>9} messages  {sent / r.seconds:,.0f}/s  past validation"
                    f" {r.share():.1%}  crashes {len(r.crashes)}  breaks {len(r.invariant_breaks)}",
                    file=sys.stderr,
                    flush=True,
                )
        fuzzer.finish()
        return fuzzer.report
    finally:
        server.stop()


def to_json(r: Report, seed: int) -> dict[str, Any]:
    past, total = r.past_validation()
    return {
        "benchmark": "fuzz",
        "seed": seed,
        "machine": machine_info(),
        "messages": r.messages,
        "byte_mutated": r.mutated,
        "seconds_sending": round(r.seconds, 2),
        "messages_per_second": round(r.messages / r.seconds, 1) if r.seconds else 0.0,
        "state_checks": r.checks,
        "crashes": len(r.crashes),
        "invariant_breaks": len(r.invariant_breaks),
        "crash_details": r.crashes[:20],
        "invariant_break_details": r.invariant_breaks[:20],
        "past_validation": past,
        "validated_messages": total,
        "share_past_validation": round(past / total, 4) if total else 0.0,
        "by_rpc": {rpc: dict(codes) for rpc, codes in sorted(r.by_rpc.items())},
    }


def to_markdown(d: dict[str, Any]) -> str:
    m = d["machine"]
    lines = [
        "# Fuzzing the live server",
        "",
        f"{d['messages']:,} messages ({d['byte_mutated']:,} byte-mutated) to every unary RPC,"
        f" seed {d['seed']}, {d['messages_per_second']:,.0f} messages/s"
        f" ({d['seconds_sending']:,.0f} s sending), {d['state_checks']} state checks;"
        f" {m.get('nproc')} cores, {m.get('cpu_model')}.",
        "",
        f"- crashes: **{d['crashes']}**",
        f"- invariant breaks: **{d['invariant_breaks']}**",
        f"- past validation: **{d['share_past_validation']:.1%}**"
        f" ({d['past_validation']:,} of {d['validated_messages']:,}, Ping excluded)",
        "",
        "| RPC | messages | OK | INVALID_ARGUMENT | NOT_FOUND | FAILED_PRECONDITION | other |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rpc, codes in d["by_rpc"].items():
        named = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION")
        other = {c: n for c, n in codes.items() if c not in named}
        lines.append(
            f"| {rpc} | {sum(codes.values()):,} | "
            + " | ".join(f"{codes.get(c, 0):,}" for c in named)
            + f" | {', '.join(f'{c} {n:,}' for c, n in sorted(other.items())) or '0'} |"
        )
    details = (("Crashes", "crash_details"), ("Invariant breaks", "invariant_break_details"))
    for title, key in details:
        if d[key]:
            lines += ["", f"## {title}", ""] + [f"- `{x[:500]}`" for x in d[key]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2000, help="messages between state checks")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dispatch-fuzz-") as tmp:
        report = run(
            args.messages,
            args.seed,
            args.batch,
            Path(tmp),
            progress=True,
        )
    d = to_json(report, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.json").write_text(json.dumps(d, indent=2) + "\n")
    (args.out / "fuzz.md").write_text(to_markdown(d))
    print(to_markdown(d))
    return 1 if report.crashes or report.invariant_breaks else 0


if __name__ == "__main__":
    sys.exit(main())
