"""Registering a fleet with a server over gRPC, and the requests benchmarks reuse."""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.synthetic.fleet import Fleet, unit_spec
from dispatch_core.types import Agency, Grade, UnitStatus

#: Units per RecommendUnits answer in the benchmarks and capacity runs.
K = 5


def request_id() -> str:
    return uuid.uuid4().hex


def namespaced(fleet: Fleet, prefix: str) -> Fleet:
    """The fleet with every unit id under `prefix`, so a run never touches others' units."""
    return dataclasses.replace(fleet, ids=[f"{prefix}{i}" for i in fleet.ids])


def windowed(calls: Iterator[Callable[[], grpc.Future]], window: int) -> list[Any]:
    """Runs future-returning calls with at most `window` in flight; results in order."""
    pending: deque[grpc.Future] = deque()
    results: list[Any] = []
    for call in calls:
        if len(pending) >= window:
            results.append(pending.popleft().result())
        pending.append(call())
    results.extend(f.result() for f in pending)
    return results


def grpc_reachable_statuses(fleet: Fleet) -> npt.NDArray[np.int64]:
    """The fleet's statuses as the API can set them on a fresh unit.

    A new unit starts AVAILABLE and SetUnitStatus can move it to UNAVAILABLE or OFF_DUTY;
    DISPATCHED and the states after it need an incident and AssignUnits. Ranking asks for
    AVAILABLE units only, so mapping every other busy state to UNAVAILABLE keeps the
    ranking (and its 20% selectivity) exactly that of `make_fleet`.
    """
    out = np.full(len(fleet), int(UnitStatus.UNAVAILABLE), dtype=np.int64)
    out[fleet.status == int(UnitStatus.AVAILABLE)] = int(UnitStatus.AVAILABLE)
    out[fleet.status == int(UnitStatus.OFF_DUTY)] = int(UnitStatus.OFF_DUTY)
    return out


def seed_server(stub: pb_grpc.DispatchServiceStub, fleet: Fleet, now_ms: int) -> dict[str, Any]:
    """UpsertUnit + SetUnitStatus + UpdateLocations for every unit, as load_into does."""
    n = len(fleet)
    window = 64

    def upsert(i: int) -> Callable[[], grpc.Future]:
        req = pb.UpsertUnitRequest(request_id=request_id(), unit=unit_spec(fleet, i, now_ms))
        return functools.partial(stub.UpsertUnit.future, req)

    t0 = time.perf_counter()
    created = sum(r.created for r in windowed((upsert(i) for i in range(n)), window))
    t1 = time.perf_counter()
    statuses = grpc_reachable_statuses(fleet)
    busy = np.flatnonzero(statuses != int(UnitStatus.AVAILABLE))
    set_statuses(stub, [fleet.ids[int(i)] for i in busy], [int(statuses[i]) for i in busy])
    t2 = time.perf_counter()
    applied = 0
    for lo in range(0, n, 10_000):
        hi = min(n, lo + 10_000)
        reply = stub.UpdateLocations(
            pb.UpdateLocationsRequest(
                unit_ids=fleet.ids[lo:hi],
                lat=fleet.lat[lo:hi].tolist(),
                lon=fleet.lon[lo:hi].tolist(),
                time_unix_ms=[now_ms] * (hi - lo),
            )
        )
        applied += reply.applied
    t3 = time.perf_counter()
    if created != n or applied != n:
        raise SystemExit(f"seeding failed: created {created}/{n}, located {applied}/{n}")
    return {
        "units": n,
        "available": int((statuses == int(UnitStatus.AVAILABLE)).sum()),
        "upsert_s": t1 - t0,
        "upsert_per_s": n / (t1 - t0),
        "set_status_calls": int(busy.size),
        "set_status_s": t2 - t1,
        "locate_s": t3 - t2,
        "window": window,
        # One journal entry per UpsertUnit and SetUnitStatus; pings are not journalled.
        "journal_entries": n + int(busy.size),
    }


def set_statuses(
    stub: pb_grpc.DispatchServiceStub, unit_ids: list[str], statuses: list[int], window: int = 64
) -> list[Any]:
    """SetUnitStatus for each unit, `window` in flight; the answers, in order."""
    return windowed(
        (
            functools.partial(
                stub.SetUnitStatus.future,
                pb.SetUnitStatusRequest(
                    request_id=request_id(),
                    unit_id=unit_id,
                    status=status,  # type: ignore[arg-type]
                ),
            )
            for unit_id, status in zip(unit_ids, statuses, strict=True)
        ),
        window,
    )


def recommend_requests(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> list[Any]:
    """Ad-hoc RecommendUnits requests: one police group, no capability, top-K."""
    group = pb.RequirementGroup(agency=int(Agency.POLICE), count=1)  # type: ignore[arg-type]
    return [
        pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=float(a), lon=float(o)),
                grade=int(Grade.IMMEDIATE),  # type: ignore[arg-type]
                requirements=[group],
            ),
            k=K,
        )
        for a, o in zip(lat, lon, strict=True)
    ]
