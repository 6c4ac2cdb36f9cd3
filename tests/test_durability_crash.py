"""Jepsen-style: concurrent commands while the server is SIGKILLed at random moments.

Clients send creates, assignments, status changes and closes; a command whose outcome is
unknown (the connection died under it) is retried with the same request_id until it gets a
definite answer. Several times the server is killed with SIGKILL and restarted on the same
journal. At the end, against the journal and the restarted server:

- every acknowledged command is in the journal, with the answer the client got;
- nothing appears that was never sent, or was answered with an error;
- every request_id took effect at most once;
- no unit was ever assigned while it was still assigned elsewhere;
- replaying the journal in a fresh engine gives every journaled answer again, and the
  state the restarted server recovered equals that replay.

Every run's history is written as JSON to the test's tmp dir; its path is in the failure
message, so a failure can be replayed and studied.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from dispatch_core._core import DispatchCore
from dispatch_core.durability.records import METHODS, request_bytes
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.durable import (
    Backend,
    Server,
    backend_fixture,  # noqa: F401 (the fixture)
    free_port,
    incident_request,
    launch,
    unit_request,
)

N_UNITS = 12
N_CLIENTS = 4
KILLS = 4
#: Outcomes that say nothing about whether the command took effect.
UNKNOWN = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}
CHANNEL_OPTIONS = [
    # Reconnect quickly after a restart instead of grpc's default exponential backoff.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


@dataclass
class Op:
    method: str
    request: Message
    outcome: str = "pending"  # ok | error | pending
    code: str = ""
    response: Message | None = None
    attempts: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "request_id": self.request.request_id,  # type: ignore[attr-defined]
            "request": base64.b64encode(self.request.SerializeToString()).decode(),
            "outcome": self.outcome,
            "code": self.code,
            "response": (
                base64.b64encode(self.response.SerializeToString()).decode()
                if self.response is not None
                else None
            ),
            "attempts": self.attempts,
        }


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    incidents: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def note(self, what: str) -> None:
        with self.lock:
            self.events.append(f"{time.monotonic():.3f} {what}")

    def dump(self, path: Path) -> None:
        with self.lock:
            doc = {"ops": [o.record() for o in self.ops], "events": self.events}
        path.write_text(json.dumps(doc, indent=1))


class Cluster:
    """The one server, restarted on the same port and journal after each kill."""

    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.port = free_port()
        self.server: Server | None = None

    def start(self) -> None:
        self.server = launch(self.backend, self.workdir, "--snapshot-every", "150", port=self.port)

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()


def call(stub: pb_grpc.DispatchServiceStub, op: Op, stop_retrying: threading.Event) -> None:
    """Send `op` until its outcome is definite (same request, same request_id each time)."""
    method = getattr(stub, op.method)
    while True:
        op.attempts += 1
        try:
            op.response = method(op.request, timeout=5)
            op.outcome = "ok"
            return
        except grpc.RpcError as exc:
            code = exc.code()
            if code not in UNKNOWN:
                op.outcome, op.code = "error", code.name
                return
            op.code = code.name
        if stop_retrying.is_set():
            return
        time.sleep(0.02)


def client(
    target: str, history: History, seed: int, stop: threading.Event, halt: threading.Event
) -> None:
    rng = random.Random(seed)
    units = [f"U{i:02d}" for i in range(N_UNITS)]
    statuses = [pb.UNIT_STATUS_EN_ROUTE, pb.UNIT_STATUS_ON_SCENE, pb.UNIT_STATUS_AVAILABLE]
    statuses += [pb.UNIT_STATUS_COMMITTED, pb.UNIT_STATUS_UNAVAILABLE]
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        n = 0
        while not stop.is_set():
            n += 1
            rid = str(uuid.uuid4())
            with history.lock:
                known = list(history.incidents)
            roll = rng.random()
            op: Op
            if roll < 0.3 or not known:
                chosen = f"C{seed}-{n}" if rng.random() < 0.5 else ""
                op = Op("CreateIncident", incident_request(rid, chosen))
            elif roll < 0.6:
                picked = rng.sample(units, rng.choice((1, 1, 2)))
                op = Op(
                    "AssignUnits",
                    pb.AssignUnitsRequest(
                        request_id=rid, incident_id=rng.choice(known[-8:]), unit_ids=picked
                    ),
                )
            elif roll < 0.9:
                op = Op(
                    "SetUnitStatus",
                    pb.SetUnitStatusRequest(
                        request_id=rid, unit_id=rng.choice(units), status=rng.choice(statuses)
                    ),
                )
            else:
                op = Op(
                    "CloseIncident",
                    pb.CloseIncidentRequest(request_id=rid, incident_id=rng.choice(known)),
                )
            history.add(op)
            call(stub, op, halt)
            if op.method == "CreateIncident" and op.outcome == "ok":
                assert isinstance(op.response, pb.CreateIncidentResponse)
                with history.lock:
                    history.incidents.append(op.response.incident.incident_id)


def list_state(target: str) -> tuple[list[pb.Unit], list[pb.Incident]]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        units = list(stub.ListUnits(pb.ListUnitsRequest(page_size=1000)).units)
        incidents: list[pb.Incident] = []
        token = ""
        while True:
            page = stub.ListIncidents(pb.ListIncidentsRequest(page_size=500, page_token=token))
            incidents.extend(page.incidents)
            token = page.next_page_token
            if not token:
                return units, incidents


def model_state(core: DispatchCore) -> tuple[list[pb.Unit], list[pb.Incident]]:
    units = pb.ListUnitsResponse.FromString(
        core.list_units(pb.ListUnitsRequest(page_size=1000).SerializeToString())
    )
    incidents: list[pb.Incident] = []
    token = ""
    while True:
        page = pb.ListIncidentsResponse.FromString(
            core.list_incidents(
                pb.ListIncidentsRequest(page_size=500, page_token=token).SerializeToString()
            )
        )
        incidents.extend(page.incidents)
        if not (token := page.next_page_token):
            return list(units.units), incidents


State = tuple[list[pb.Unit], list[pb.Incident]]


def check(history: History, backend: Backend, final: State) -> None:
    with backend.config().open() as journal:
        entries = list(journal.entries_since(0))
    sent = {(o.method, o.request.request_id): o for o in history.ops}  # type: ignore[attr-defined]
    keys = Counter((e.method, e.request_id) for e in entries if e.method != "Tick")
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"request_ids that took effect more than once: {twice[:5]}"
    for e in entries:
        if e.method == "Tick":
            continue  # the server's own clock commands: no client sent them
        op = sent.get((e.method, e.request_id))
        assert op is not None, f"journal entry {e.sequence} ({e.method}) was never sent"
        assert request_bytes(e.payload) == op.request.SerializeToString(deterministic=True), (
            f"entry {e.sequence} does not hold the request that was sent"
        )
        assert op.outcome != "error", (
            f"entry {e.sequence}: {e.method} {e.request_id} was answered {op.code} yet applied"
        )
    journaled = {(e.method, e.request_id): e for e in entries}
    acked = [o for o in history.ops if o.outcome == "ok"]
    for op in acked:
        e = journaled.get((op.method, op.request.request_id))  # type: ignore[attr-defined]
        assert e is not None, f"acknowledged {op.method} {op.request.request_id} is lost"  # type: ignore[attr-defined]
        assert METHODS[op.method][1].FromString(e.result) == op.response, (
            f"entry {e.sequence} holds another answer than the client got"
        )
    pending = [o for o in history.ops if o.outcome == "pending"]
    assert not pending, f"{len(pending)} commands never got a definite answer"

    # Replay the whole journal in a fresh core: same answers, never a double assignment.
    model = DispatchCore()
    active: dict[str, str] = {}
    for e in entries:
        differ = model.replay([(e.sequence, e.method, e.payload, e.result)])
        assert differ == 0, f"replaying entry {e.sequence} answers differently"
        for unit in e.release:
            active.pop(unit, None)
        for a in e.assign:
            assert a.unit_id not in active, (
                f"entry {e.sequence} assigns {a.unit_id} to {a.incident_id} while it is"
                f" assigned to {active[a.unit_id]}"
            )
            active[a.unit_id] = a.incident_id
    units, incidents = model_state(model)
    holders: dict[str, list[str]] = {}
    for incident in incidents:
        if incident.status != pb.INCIDENT_STATUS_CLOSED:
            for unit in incident.attached_unit_ids:
                holders.setdefault(unit, []).append(incident.incident_id)
    doubles = {u: i for u, i in holders.items() if len(i) > 1}
    assert not doubles, f"units attached to two open incidents: {doubles}"
    assert final[0] == units, "recovered units differ from the replayed journal"
    assert final[1] == incidents, "recovered incidents differ from the replayed journal"
    assert sum(1 for o in acked if o.method == "AssignUnits") > 0, "no assignment succeeded"


def test_acknowledged_commands_survive_sigkill(backend: Backend, tmp_path: Path) -> None:
    history = History()
    history_path = tmp_path / "history.json"
    cluster = Cluster(backend, tmp_path / "server")
    cluster.start()
    assert cluster.server is not None
    target = cluster.server.target
    try:
        stop, halt = threading.Event(), threading.Event()
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            for i in range(N_UNITS):
                op = Op("UpsertUnit", unit_request(str(uuid.uuid4()), f"U{i:02d}"))
                history.add(op)
                call(stub, op, halt)
        threads = [
            threading.Thread(target=client, args=(target, history, seed, stop, halt))
            for seed in range(N_CLIENTS)
        ]
        for t in threads:
            t.start()
        rng = random.Random(1)
        for k in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.0))
            cluster.kill()
            history.note(f"kill {k + 1}")
            cluster.start()
            history.note(f"restarted {k + 1}")
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(60)
        # One more crash with nothing in flight, so the state checked is a recovered one.
        cluster.kill()
        cluster.start()
        final = list_state(target)
        assert cluster.server is not None
        assert cluster.server.stop() == 0, cluster.server.log()
        history.dump(history_path)
        try:
            check(history, backend, final)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n(history: {history_path})") from None
        counts = Counter((o.method, o.outcome) for o in history.ops)
        retried = sum(o.attempts > 1 for o in history.ops)
        print(f"history {history_path}: {dict(counts)}; {retried} retried after a crash")
        # The kills must have hit commands in flight, or the retry path went untested.
        assert retried > 0
    finally:
        halt.set()
        history.dump(history_path)
        if cluster.server is not None:
            cluster.server.kill()
