"""Bad input to the extension: a clear exception naming the problem, and no partial change."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dispatch_core import MAX_K, InvalidArgument, UnitIndex, UnknownUnit
from dispatch_core.types import Agency, UnitStatus


@pytest.fixture
def index() -> UnitIndex:
    idx = UnitIndex()
    for uid in ("A", "B"):
        idx.upsert_unit(uid, agency=Agency.POLICE, unit_type="irv", capabilities=["taser"])
        idx.update_location(uid, 51.5, -0.1, 10)
    return idx


def snapshot(idx: UnitIndex) -> list[tuple[object, ...]]:
    return [
        (u.unit_id, u.lat, u.lon, u.location_time_ms, u.status, tuple(u.capabilities))
        for u in idx.list_units()
    ]


@pytest.mark.parametrize(
    ("lat", "lon", "field"),
    [
        (math.nan, 0.0, "lat"),
        (math.inf, 0.0, "lat"),
        (90.5, 0.0, "lat"),
        (-91.0, 0.0, "lat"),
        (0.0, math.nan, "lon"),
        (0.0, -math.inf, "lon"),
        (0.0, 180.01, "lon"),
    ],
)
def test_bad_coordinates_name_the_field(
    index: UnitIndex, lat: float, lon: float, field: str
) -> None:
    before = snapshot(index)
    with pytest.raises(InvalidArgument) as err:
        index.update_location("A", lat, lon, 20)
    assert err.value.field == field and field in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        index.rank(lat, lon, now_ms=20)
    assert err.value.field == field
    assert snapshot(index) == before


def test_strict_batch_with_one_bad_ping_changes_nothing(index: UnitIndex) -> None:
    before = snapshot(index)
    with pytest.raises(InvalidArgument) as err:
        index.update_locations(
            ["A", "B"], np.array([51.6, 51.6]), np.array([-0.1, 200.0]), np.array([20, 20])
        )
    assert err.value.field == "lon[1]"
    with pytest.raises(UnknownUnit) as missing:
        index.update_locations(
            ["A", "ZZ"], np.array([51.6, 51.6]), np.array([-0.1, -0.1]), np.array([20, 20])
        )
    assert missing.value.field == "ZZ"
    slots = index.slots_of(["A", "B"])
    with pytest.raises(InvalidArgument) as bad_slot:
        index.update_locations_by_slot(
            np.array([slots[0], 99]),
            np.array([51.6, 51.6]),
            np.array([-0.1, -0.1]),
            np.array([20, 20]),
        )
    assert bad_slot.value.field == "slots[1]"
    assert snapshot(index) == before


def test_lenient_batch_applies_good_pings_and_counts_the_rest(index: UnitIndex) -> None:
    report = index.update_locations(
        ["A", "B", "ZZ", "A"],
        np.array([51.6, math.nan, 51.0, 51.7]),
        np.array([-0.1, -0.1, -0.1, -0.1]),
        np.array([20, 20, 20, 5]),
        strict=False,
    )
    assert (
        report.applied,
        report.skipped_bad_coordinate,
        report.skipped_unknown_unit,
        report.skipped_stale,
    ) == (1, 1, 1, 1)
    assert index.get_unit("A").lat == 51.6 and index.get_unit("B").lat == 51.5


def test_mismatched_lengths_are_refused(index: UnitIndex) -> None:
    with pytest.raises(InvalidArgument) as err:
        index.update_locations(
            ["A", "B"], np.array([51.6]), np.array([-0.1, -0.1]), np.array([20, 20])
        )
    assert err.value.field == "lat"
    with pytest.raises(InvalidArgument):
        index.rank_batch(np.array([51.5, 51.6]), np.array([-0.1]), now_ms=20)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 10**9])
def test_k_out_of_range(index: UnitIndex, k: int) -> None:
    with pytest.raises((InvalidArgument, OverflowError)):
        index.rank(51.5, -0.1, now_ms=20, k=k)


def test_unknown_capability_is_an_error_not_a_new_skill(index: UnitIndex) -> None:
    with pytest.raises(InvalidArgument) as err:
        index.rank(51.5, -0.1, now_ms=20, required=["tazer"])
    assert "tazer" in str(err.value) and err.value.field == "capabilities"
    with pytest.raises(InvalidArgument):
        index.upsert_unit("A", agency=Agency.POLICE, unit_type="irv", capabilities=["tazer"])
    assert index.get_unit("A").capabilities == ["taser"]
    assert "tazer" not in index.capability_names()


def test_unknown_ids_and_enum_values(index: UnitIndex) -> None:
    with pytest.raises(UnknownUnit):
        index.get_unit("nope")
    with pytest.raises(UnknownUnit):
        index.update_location("nope", 51.5, -0.1, 1)
    with pytest.raises(InvalidArgument) as err:
        index.upsert_unit("C", agency=0, unit_type="irv")
    assert err.value.field == "agency"
    with pytest.raises(InvalidArgument):
        index.rank(51.5, -0.1, now_ms=1, grade=9)
    with pytest.raises(InvalidArgument):
        index.upsert_unit("", agency=Agency.POLICE, unit_type="irv")
    with pytest.raises(InvalidArgument) as long_id:
        index.upsert_unit("X" * 65, agency=Agency.POLICE, unit_type="irv")
    assert long_id.value.field == "unit_id"
    assert len(index) == 2


def test_bad_config_is_refused_whole(index: UnitIndex) -> None:
    before = index.config()
    with pytest.raises(InvalidArgument) as err:
        index.set_config({"circuity": 1.5, "agency_speed_mps": {"POLICE": -3.0}})
    assert "agency_speed_mps.POLICE" in str(err.value)
    with pytest.raises(InvalidArgument):
        index.set_config({"circuitty": 1.5})
    assert index.config() == before


def test_custom_vocabulary_of_128_capabilities() -> None:
    names = [f"skill_{i}" for i in range(128)]
    idx = UnitIndex(capabilities=names, scarce_capabilities=["skill_127"])
    idx.upsert_unit("A", agency=Agency.POLICE, unit_type="irv", capabilities=["skill_127"])
    idx.update_location("A", 51.5, -0.1, 1)
    assert [c.unit_id for c in idx.rank(51.5, -0.1, now_ms=2, required=["skill_127"])] == ["A"]
    with pytest.raises(InvalidArgument):
        UnitIndex(capabilities=[*names, "one_too_many"])


def test_status_cannot_be_changed_by_upsert(index: UnitIndex) -> None:
    with pytest.raises(InvalidArgument) as err:
        index.upsert_unit("A", agency=Agency.POLICE, unit_type="irv", status=UnitStatus.OFF_DUTY)
    assert err.value.field == "status"
    assert index.get_unit("A").status == UnitStatus.AVAILABLE
