"""`dispatch-core demo`: a walk through the API against a running server.

Seeds a synthetic London fleet (laid out around the borough centroids of
`data/london_boroughs.csv`, see `fleet.py`), then takes a few incidents through
create → recommend → assign → en route → on scene → close, printing each step. Safe to run
again on the same server: units are upserted, incidents get fresh ids.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import grpc

from dispatch_core.boroughs import Borough, boroughs
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.client import ClientCredentials
from dispatch_core.synthetic.fleet import make_fleet
from dispatch_core.types import Agency, Grade, UnitStatus


@dataclass(frozen=True)
class Scenario:
    """An incident to walk through: where, what and the response plan."""

    borough: str
    incident_type: str
    grade: Grade
    plan: tuple[tuple[Agency, tuple[str, ...], tuple[str, ...], int], ...]


SCENARIOS = (
    Scenario(
        "Westminster",
        "firearms_threat",
        Grade.IMMEDIATE,
        ((Agency.POLICE, (), ("firearms",), 2), (Agency.POLICE, ("irv",), (), 1)),
    ),
    Scenario(
        "Camden",
        "rtc_injury",
        Grade.IMMEDIATE,
        (
            (Agency.POLICE, (), (), 1),
            (Agency.AMBULANCE, (), (), 1),
            (Agency.FIRE, ("pump",), (), 1),
        ),
    ),
    Scenario("Croydon", "domestic_immediate", Grade.IMMEDIATE, ((Agency.POLICE, (), (), 2),)),
    Scenario("Hackney", "burglary_report", Grade.EXTENDED, ((Agency.POLICE, ("foot",), (), 1),)),
)


def _rid() -> str:
    return str(uuid.uuid4())


def _borough(name: str) -> Borough:
    return next(b for b in boroughs() if b.borough == name)


def seed_fleet(stub: pb_grpc.DispatchServiceStub, n_units: int, seed: int) -> int:
    """Registers and places the fleet; returns how many pings were applied."""
    fleet = make_fleet(n_units, seed=seed, available_share=1.0)
    for i, unit_id in enumerate(fleet.ids):
        stub.UpsertUnit(
            pb.UpsertUnitRequest(
                request_id=_rid(),
                unit=pb.UnitSpec(
                    unit_id=unit_id,
                    agency=int(fleet.agency[i]),  # type: ignore[arg-type]
                    unit_type=fleet.unit_type[i],
                    capabilities=fleet.caps[i],
                    home_area=fleet.home_area[i],
                ),
            )
        )
    now_ms = time.time_ns() // 1_000_000
    report = stub.UpdateLocations(
        pb.UpdateLocationsRequest(
            unit_ids=fleet.ids,
            lat=fleet.lat.tolist(),
            lon=fleet.lon.tolist(),
            time_unix_ms=[now_ms] * len(fleet),
        )
    )
    # A demo re-run on the same server sends these units back to AVAILABLE positions; pings
    # not newer than the stored ones are skipped, which is the point of the stale check.
    return int(report.applied)


def walk(stub: pb_grpc.DispatchServiceStub, scenario: Scenario) -> None:
    where = _borough(scenario.borough)
    created = stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=_rid(),
            grade=int(scenario.grade),  # type: ignore[arg-type]
            incident_type=scenario.incident_type,
            location=pb.Location(lat=where.centroid_lat, lon=where.centroid_lon),
            area=where.borough,
            requirements=[
                pb.RequirementGroup(
                    agency=int(agency),  # type: ignore[arg-type]
                    unit_types=types,
                    capabilities=caps,
                    count=count,
                )
                for agency, types, caps, count in scenario.plan
            ],
        )
    ).incident
    iid = created.incident_id
    print(f"\n{iid}: {scenario.incident_type} ({scenario.grade.name}) in {where.borough}")
    recommendation = stub.RecommendUnits(pb.RecommendUnitsRequest(incident_id=iid))
    chosen: list[str] = []
    for group in recommendation.groups:
        need = group.group.count
        label = (
            f"{Agency(group.group.agency).name.lower()} x{need}"
            f" {'/'.join(group.group.unit_types) or 'any type'}"
            f" {'+'.join(group.group.capabilities)}"
        ).rstrip()
        print(f"  group {group.group_index}: {label}")
        for c in group.candidates[:3]:
            b = c.breakdown
            print(
                f"    {c.unit_id:<14} eta {c.eta_seconds:6.0f} s  {c.distance_m / 1000:5.1f} km"
                f"  score {c.score:6.0f} (mobilise {b.mobilisation_seconds:.0f}, travel"
                f" {b.travel_seconds:.0f}, cross-area {b.cross_area_cost_seconds:.0f},"
                f" specialist {b.specialist_cost_seconds:.0f})"
            )
        # A unit can be the best for two groups; it can only go once.
        picks = [c.unit_id for c in group.candidates if c.unit_id not in chosen][:need]
        if len(picks) < need:
            print(f"    only {len(picks)} of {need} available: the plan is not covered")
        chosen.extend(picks)
    if not chosen:
        print("  nobody to send")
        return
    try:
        assigned = stub.AssignUnits(
            pb.AssignUnitsRequest(request_id=_rid(), incident_id=iid, unit_ids=chosen)
        ).incident
    except grpc.RpcError as exc:
        print(f"  assignment refused: {exc.code().name}: {exc.details()}")
        return
    print(f"  assigned {', '.join(chosen)} -> {pb.IncidentStatus.Name(assigned.status)}")
    first = chosen[0]
    for status in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE):
        stub.SetUnitStatus(
            pb.SetUnitStatusRequest(request_id=_rid(), unit_id=first, status=int(status))  # type: ignore[arg-type]
        )
    attended = stub.GetIncident(pb.GetIncidentRequest(incident_id=iid)).incident
    print(f"  {first} on scene -> {pb.IncidentStatus.Name(attended.status)}")
    closed = stub.CloseIncident(pb.CloseIncidentRequest(request_id=_rid(), incident_id=iid))
    print(
        f"  closed -> {pb.IncidentStatus.Name(closed.incident.status)};"
        f" released {', '.join(closed.released_unit_ids) or 'nobody'}"
    )


def run_demo(
    target: str,
    *,
    n_units: int = 400,
    seed: int = 7,
    credentials: ClientCredentials | None = None,
) -> int:
    """Runs the walk-through against `target`; returns the process exit code.

    `credentials` reach a secured server (README, "Security"): the walk-through registers
    units and sends positions as well as dispatching, so it needs a principal holding
    `supervisor` and `avl_feed` rights, such as `admin`."""
    with (credentials or ClientCredentials()).channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            print(f"dispatch-core demo: no server answering at {target}")
            return 1
        stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
        applied = seed_fleet(stub, n_units, seed)
        print(
            f"seeded {n_units} units around {len(boroughs())} London areas"
            f" ({applied} positions applied)"
        )
        for scenario in SCENARIOS:
            walk(stub, scenario)
    return 0
