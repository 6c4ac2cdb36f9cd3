"""The unit status lifecycle of docs/domain.md and all-or-none assignment, at the extension."""

from __future__ import annotations

import itertools

import pytest

from dispatch_core import InvalidTransition, NotAssignable, UnitIndex
from dispatch_core.types import Agency
from dispatch_core.types import UnitStatus as S

ALLOWED = {
    (S.AVAILABLE, S.UNAVAILABLE),
    (S.AVAILABLE, S.OFF_DUTY),
    (S.DISPATCHED, S.EN_ROUTE),
    (S.DISPATCHED, S.ON_SCENE),
    (S.EN_ROUTE, S.ON_SCENE),
    (S.DISPATCHED, S.AVAILABLE),
    (S.EN_ROUTE, S.AVAILABLE),
    (S.ON_SCENE, S.COMMITTED),
    (S.ON_SCENE, S.AVAILABLE),
    (S.COMMITTED, S.AVAILABLE),
    (S.UNAVAILABLE, S.AVAILABLE),
    (S.UNAVAILABLE, S.OFF_DUTY),
    (S.OFF_DUTY, S.AVAILABLE),
    (S.OFF_DUTY, S.UNAVAILABLE),
}
# How to bring a fresh AVAILABLE unit to each status, through the lifecycle.
PATH = {
    S.AVAILABLE: [],
    S.DISPATCHED: ["assign"],
    S.EN_ROUTE: ["assign", S.EN_ROUTE],
    S.ON_SCENE: ["assign", S.ON_SCENE],
    S.COMMITTED: ["assign", S.ON_SCENE, S.COMMITTED],
    S.UNAVAILABLE: [S.UNAVAILABLE],
    S.OFF_DUTY: [S.OFF_DUTY],
}


def unit_in(status: S) -> UnitIndex:
    idx = UnitIndex()
    idx.upsert_unit("U", agency=Agency.POLICE, unit_type="irv")
    for step in PATH[status]:
        if step == "assign":
            idx.assign("INC", ["U"])
        else:
            idx.set_status("U", step)
    assert idx.get_unit("U").status == status
    return idx


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(list(S), list(S))))
def test_transition_table(src: S, dst: S) -> None:
    idx = unit_in(src)
    before = idx.get_unit("U")
    if (src, dst) in ALLOWED:
        released = idx.set_status("U", dst)
        attached_before = src in (S.DISPATCHED, S.EN_ROUTE, S.ON_SCENE)
        attached_after = dst in (S.DISPATCHED, S.EN_ROUTE, S.ON_SCENE)
        assert released == ("INC" if attached_before and not attached_after else None)
        assert idx.get_unit("U").status == dst
        assert idx.get_unit("U").incident_id == ("INC" if attached_after else None)
    else:
        with pytest.raises(InvalidTransition) as err:
            idx.set_status("U", dst)
        assert err.value.field == "U" and src.name in str(err.value)
        after = idx.get_unit("U")
        assert (after.status, after.incident_id) == (before.status, before.incident_id)


def test_assignment_is_all_or_none_and_names_the_unit() -> None:
    idx = UnitIndex()
    for uid in ("A", "B", "C"):
        idx.upsert_unit(uid, agency=Agency.POLICE, unit_type="irv")
    idx.assign("INC1", ["B"])
    with pytest.raises(NotAssignable) as err:
        idx.assign("INC2", ["A", "B", "C"])
    assert err.value.field == "B" and "INC1" in str(err.value)
    assert idx.get_unit("A").status == S.AVAILABLE and idx.get_unit("C").incident_id is None


def test_closing_releases_attached_units() -> None:
    idx = UnitIndex()
    for uid in ("A", "B", "C"):
        idx.upsert_unit(uid, agency=Agency.POLICE, unit_type="irv")
    idx.assign("INC1", ["A", "B", "C"])
    idx.set_status("B", S.ON_SCENE)
    idx.set_status("C", S.ON_SCENE)
    idx.set_status("C", S.COMMITTED)
    assert sorted(idx.release_incident("INC1", ["A", "B", "C"])) == ["A", "B"]
    assert [idx.get_unit(u).status for u in "ABC"] == [S.AVAILABLE, S.AVAILABLE, S.COMMITTED]


def test_an_attached_unit_cannot_be_removed() -> None:
    idx = UnitIndex()
    idx.upsert_unit("A", agency=Agency.POLICE, unit_type="irv")
    idx.assign("INC1", ["A"])
    with pytest.raises(InvalidTransition):
        idx.remove_unit("A")
    assert len(idx) == 1
