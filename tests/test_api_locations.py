"""AVL pings over gRPC: columnar batches, unary and streamed; bad pings are skipped and
counted, never allowed to drop the good ones."""

from __future__ import annotations

import math

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.apihelp import T0, uid, upsert


def position(stub: pb_grpc.DispatchServiceStub, unit_id: str) -> tuple[float, float, int] | None:
    unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    if not unit.HasField("location"):
        return None
    # Times relative to T0 keep the arithmetic of these tests readable.
    return unit.location.lat, unit.location.lon, unit.location_time.ToMilliseconds() - T0


def test_batch_applies_good_pings_and_counts_each_reason_for_the_rest(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    a, b, c, d = (upsert(stub, at=None) for _ in range(4))
    stub.UpdateLocations(
        pb.UpdateLocationsRequest(unit_ids=[d], lat=[51.4], lon=[-0.2], time_unix_ms=[T0 + 50_000])
    )
    report = stub.UpdateLocations(
        pb.UpdateLocationsRequest(
            unit_ids=[a, uid("GHOST"), b, c, d],
            lat=[51.5, 51.5, math.nan, 51.51, 51.6],
            lon=[-0.1, -0.1, -0.1, 181.0, -0.3],
            time_unix_ms=[T0 + t for t in (10_000, 10_000, 10_000, 10_000, 40_000)],
        )
    )
    assert (
        report.applied,
        report.skipped_unknown_unit,
        report.skipped_bad_coordinate,
        report.skipped_stale,
        report.batches,
    ) == (1, 1, 2, 1, 1)
    assert position(stub, a) == (51.5, -0.1, 10_000)
    assert position(stub, b) is None
    assert position(stub, c) is None
    # Older than the stored position: the stored one stays.
    assert position(stub, d) == (51.4, -0.2, 50_000)


def test_replaying_a_batch_changes_nothing(stub: pb_grpc.DispatchServiceStub) -> None:
    unit_id = upsert(stub, at=None)
    batch = pb.UpdateLocationsRequest(
        unit_ids=[unit_id], lat=[51.45], lon=[-0.05], time_unix_ms=[T0 + 7_000]
    )
    assert stub.UpdateLocations(batch).applied == 1
    stub.UpdateLocations(batch)
    assert position(stub, unit_id) == (51.45, -0.05, 7_000)
    newer = pb.UpdateLocationsRequest(
        unit_ids=[unit_id], lat=[51.46], lon=[-0.06], time_unix_ms=[T0 + 8_000]
    )
    stub.UpdateLocations(newer)
    late = stub.UpdateLocations(batch)
    assert (late.applied, late.skipped_stale) == (0, 1)
    assert position(stub, unit_id) == (51.46, -0.06, 8_000)


def test_empty_batch_is_fine(stub: pb_grpc.DispatchServiceStub) -> None:
    report = stub.UpdateLocations(pb.UpdateLocationsRequest())
    assert (report.applied, report.batches) == (0, 1)


def test_stream_totals_every_batch_and_keeps_the_newest(stub: pb_grpc.DispatchServiceStub) -> None:
    units = [upsert(stub, at=None) for _ in range(50)]

    def batches() -> list[pb.StreamLocationsRequest]:
        out = []
        for step in range(10):
            out.append(
                pb.StreamLocationsRequest(
                    unit_ids=units,
                    lat=[51.3 + 0.001 * step + 0.0001 * i for i in range(len(units))],
                    lon=[-0.1] * len(units),
                    time_unix_ms=[T0 + 1_000 * (step + 1)] * len(units),
                )
            )
        # A late straggler from step 0 must not move anyone back.
        out.append(
            pb.StreamLocationsRequest(
                unit_ids=units[:5], lat=[0.0] * 5, lon=[0.0] * 5, time_unix_ms=[T0 + 1_000] * 5
            )
        )
        return out

    report = stub.StreamLocations(iter(batches()))
    assert report.batches == 11
    assert report.applied == 500
    assert report.skipped_stale == 5
    for i, unit_id in enumerate(units):
        where = position(stub, unit_id)
        assert where is not None
        assert where[2] == 10_000
        assert math.isclose(where[0], 51.3 + 0.009 + 0.0001 * i)
