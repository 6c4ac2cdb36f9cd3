"""The Python-facing ranking equals a pure-Python brute force over random fleets."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch_core import UnitIndex
from dispatch_core.types import Agency, Grade, UnitStatus
from tests import oracle

TYPES = [
    (Agency.POLICE, "irv"),
    (Agency.POLICE, "dog"),
    (Agency.POLICE, "foot"),
    (Agency.FIRE, "pump"),
    (Agency.AMBULANCE, "ambulance"),
]
CAPS = ["firearms", "taser", "dog", "first_aid", "negotiator", "lang_polish"]
AREAS = ["Westminster", "Camden", "Hackney"]

lat_s = st.floats(51.3, 51.7)
lon_s = st.floats(-0.5, 0.3)
units_s = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.frozensets(st.sampled_from(CAPS), max_size=3),
        st.sampled_from(list(UnitStatus)),
        st.none() | st.sampled_from(AREAS),
        st.none() | st.tuples(st.integers(0, 4_000_000), st.integers(1, 8_000_000)),
        # A position and its time: against now_ms below, any age, fresh to long excluded.
        st.none() | st.tuples(lat_s, lon_s, st.integers(1, 10_000_000)),
    ),
    max_size=80,
)
query_s = st.fixed_dictionaries(
    {
        "lat": lat_s,
        "lon": lon_s,
        "now_ms": st.integers(0, 10_000_000),
        "k": st.integers(1, 10),
        "grade": st.sampled_from(list(Grade)),
        "required": st.frozensets(st.sampled_from(CAPS), max_size=2),
        "agencies": st.none() | st.sets(st.sampled_from(list(Agency)), min_size=1),
        "statuses": st.none() | st.sets(st.sampled_from(list(UnitStatus)), min_size=1),
        "unit_types": st.none() | st.sets(st.sampled_from([t for _, t in TYPES]), min_size=1),
        "area": st.none() | st.sampled_from([*AREAS, "Nowhere"]),
    }
)


def load(index: UnitIndex, rows: list[tuple]) -> list[oracle.Unit]:  # type: ignore[type-arg]
    units = []
    for i, ((agency, utype), caps, status, area, shift, pos) in enumerate(rows):
        # Few distinct positions and ids sorting unlike insertion order exercise the tie-break.
        uid = f"U{(i * 37) % 101:03d}-{i}"
        start, end = (shift[0], shift[0] + shift[1]) if shift else (None, None)
        index.upsert_unit(
            uid,
            agency=agency,
            unit_type=utype,
            capabilities=sorted(caps),
            home_area=area,
            shift_start_ms=start,
            shift_end_ms=end,
            status=status,
        )
        if pos:
            index.update_location(uid, pos[0], pos[1], pos[2])
        units.append(
            oracle.Unit(
                uid,
                agency,
                utype,
                caps,
                status,
                *(pos[:2] if pos else (None, None)),
                home_area=area,
                shift_start_ms=start,
                shift_end_ms=end,
                location_ms=pos[2] if pos else None,
            )
        )
    return units


@settings(max_examples=150, deadline=None)
@given(
    rows=units_s,
    queries=st.lists(query_s, min_size=1, max_size=4),
    cell_deg=st.sampled_from([0.005, 0.01, 0.1]),
)
def test_rank_equals_brute_force(rows: list, queries: list[dict], cell_deg: float) -> None:  # type: ignore[type-arg]
    index = UnitIndex(cell_deg=cell_deg)
    units = load(index, rows)
    for q in queries:
        got = index.rank(
            q["lat"],
            q["lon"],
            now_ms=q["now_ms"],
            k=q["k"],
            grade=q["grade"],
            required=sorted(q["required"]),
            agencies=q["agencies"] and sorted(q["agencies"]),
            statuses=q["statuses"] and sorted(q["statuses"]),
            unit_types=q["unit_types"] and sorted(q["unit_types"]),
            area=q["area"],
        )
        want = oracle.rank(
            index,
            units,
            q["lat"],
            q["lon"],
            now_ms=q["now_ms"],
            k=q["k"],
            grade=q["grade"],
            required=q["required"],
            agencies=q["agencies"],
            statuses=q["statuses"],
            unit_types=q["unit_types"],
            area=q["area"],
        )
        oracle.assert_same_ranking(
            [(c.unit_id, c.eta_seconds, c.distance_m, c.score) for c in got], want
        )
        for c in got:
            w = next(x for x in want if x.unit_id == c.unit_id)
            b = c.breakdown
            for name, value in w.terms.items():
                assert math.isclose(getattr(b, name), value, rel_tol=1e-9, abs_tol=1e-9), name
            unit = next(u for u in units if u.unit_id == c.unit_id)
            assert unit.location_ms is not None
            assert c.position_age_seconds == max(0, q["now_ms"] - unit.location_ms) / 1000


@settings(max_examples=40, deadline=None)
@given(
    rows=units_s,
    points=st.lists(st.tuples(lat_s, lon_s), min_size=1, max_size=20),
    k=st.integers(1, 6),
    required=st.frozensets(st.sampled_from(CAPS), max_size=1),
)
def test_rank_batch_equals_single_calls(
    rows: list, points: list, k: int, required: frozenset
) -> None:  # type: ignore[type-arg]
    index = UnitIndex()
    load(index, rows)
    lat = np.array([p[0] for p in points])
    lon = np.array([p[1] for p in points])
    batch = index.rank_batch(lat, lon, now_ms=5_000_000, k=k, required=sorted(required))
    for i, (a, o) in enumerate(points):
        single = index.rank(a, o, now_ms=5_000_000, k=k, required=sorted(required))
        assert batch.counts[i] == len(single)
        assert list(batch.slots[i, : len(single)]) == [c.slot for c in single]
        assert list(batch.score[i, : len(single)]) == [c.score for c in single]
        assert (batch.slots[i, len(single) :] == -1).all()
        assert np.isnan(batch.eta_seconds[i, len(single) :]).all()


def test_no_eligible_unit_is_an_empty_list() -> None:
    index = UnitIndex()
    index.upsert_unit("MD21", agency=Agency.POLICE, unit_type="irv")
    index.update_location("MD21", 51.5, -0.12, 1)
    assert index.rank(51.5, -0.12, now_ms=2, required=["dog"]) == []
    assert index.rank(51.5, -0.12, now_ms=2, agencies=[Agency.FIRE]) == []
    assert [c.unit_id for c in index.rank(51.5, -0.12, now_ms=2)] == ["MD21"]


def test_overridden_model_changes_the_eta() -> None:
    index = UnitIndex()
    index.upsert_unit("A", agency=Agency.POLICE, unit_type="irv")
    index.update_location("A", 51.5, -0.12, 1)
    before = index.rank(51.51, -0.12, now_ms=2)[0].eta_seconds
    index.set_config({"circuity": 2.0, "mobilisation_seconds": {"AVAILABLE": 0.0}})
    after = index.rank(51.51, -0.12, now_ms=2)[0]
    assert after.breakdown.mobilisation_seconds == 0.0
    assert math.isclose(after.breakdown.travel_seconds, (before - 30.0) * 2.0 / 1.33, rel_tol=1e-9)
