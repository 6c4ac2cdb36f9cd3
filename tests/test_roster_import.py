"""`dispatch-core roster import` against the real server: a good file lands whole; a file
with bad lines sends nothing and names every bad line; `--skip-bad` sends the rest and
lists what it skipped; importing the same file again changes nothing."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.roster.importer import run_import
from tests.conftest import ServerProcess

HEADER = "kind,id,person_id,name,skills,start,end,role,area\n"


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + body)
    return path


def _exists(stub: pb_grpc.DispatchServiceStub, person_id: str) -> bool:
    try:
        stub.GetPerson(pb.GetPersonRequest(person_id=person_id))
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
        return False
    return True


def test_a_good_file_lands_and_a_second_run_changes_nothing(
    server: ServerProcess, stub: pb_grpc.DispatchServiceStub, tmp_path: Path
) -> None:
    p = f"P-{uuid.uuid4().hex[:8]}"
    path = _file(
        tmp_path,
        f"person,{p},,Jo Bloggs,firearms@2026-01-01/2027-01-01;lang_polish,,,,\n"
        f"shift,{p}-d1,{p},,,2026-03-01T07:00,2026-03-01T17:00,driver,Camden\n"
        f"shift,{p}-d2,{p},,,2026-03-02T07:00Z,2026-03-02T17:00Z,driver,Camden\n",
    )
    out = io.StringIO()
    assert run_import(server.target, path, out) == 0, out.getvalue()
    assert "imported 1 people and 2 shifts (0 refused, 0 skipped)" in out.getvalue()
    read = stub.GetPerson(pb.GetPersonRequest(person_id=p))
    assert [s.capability for s in read.person.skills] == ["firearms", "lang_polish"]
    assert read.person.skills[0].expiry.ToJsonString() == "2027-01-01T00:00:00Z"
    assert [s.shift_id for s in read.shifts] == [f"{p}-d1", f"{p}-d2"]
    again = io.StringIO()
    assert run_import(server.target, path, again) == 0, again.getvalue()
    assert stub.GetPerson(pb.GetPersonRequest(person_id=p)) == read


@pytest.mark.parametrize("skip_bad", [False, True])
def test_bad_lines_are_named_and_nothing_is_sent_without_skip_bad(
    server: ServerProcess, stub: pb_grpc.DispatchServiceStub, tmp_path: Path, skip_bad: bool
) -> None:
    good, bad = f"P-{uuid.uuid4().hex[:8]}", f"P-{uuid.uuid4().hex[:8]}"
    path = _file(
        tmp_path,
        f"person,{good},,,taser,,,,\n"  # line 2
        f"person,{bad},,,tazer;taser@2026-02-01/2026-01-01,,,,\n"  # line 3: two problems
        f"shift,{good}-1,{good},,,2026-03-01T07:00,2026-03-01T17:00,,\n"  # line 4
        f"shift,{good}-2,{good},,,2026-03-01T16:00,2026-03-01T20:00,,\n"  # line 5: overlaps 4
        f"shift,{good}-3,nobody-{good},,,2026-03-01T16:00,2026-03-01T20:00,,\n"  # line 6
        "crew,x,,,,,,,\n",  # line 7
    )
    out = io.StringIO()
    code = run_import(server.target, path, out, skip_bad=skip_bad)
    text = out.getvalue()
    prefix = "skipped line" if skip_bad else "line"
    assert f"{prefix} 3: skills: 'tazer' is not in the capability vocabulary" in text
    assert f"{prefix} 3: skills: taser expires" in text
    assert f"{prefix} 5: start/end: overlaps the shift on line 4" in text
    assert f"{prefix} 6: person_id:" in text
    assert f"{prefix} 7: kind:" in text
    assert not _exists(stub, bad)
    if skip_bad:
        assert code == 0
        assert "imported 1 people and 1 shifts (0 refused, 4 skipped)" in text
        shifts = stub.GetPerson(pb.GetPersonRequest(person_id=good)).shifts
        assert [s.shift_id for s in shifts] == [f"{good}-1"]
    else:
        assert code == 1
        assert "nothing imported" in text
        assert not _exists(stub, good)
