"""The identifier grammar and page tokens over real gRPC (issue 13, "Bad input").

Identifiers (unit, incident and request ids, areas, unit and incident types) are printable
text: no control, format (bidi overrides, zero-width joiners), invisible or private-use
characters, no line separators, no space but U+0020 and none at either end, not blank
(`rust/core/src/wire/ident.rs`). A refused id is INVALID_ARGUMENT naming the field, and
changes nothing. Page tokens the server did not issue are INVALID_ARGUMENT naming
`page_token`.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterator

import grpc
import pytest

from dispatch_core.boroughs import boroughs
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.apihelp import bad_fields, create_incident, group, rid, uid, upsert
from tests.conftest import start_server
from tests.test_api_validation import ad_hoc, incident, snapshot, spec

#: Each bad form, by name (the test ids), with a suffix so that no two cases collide.
BAD_FORMS: dict[str, str] = {
    "blank": "   ",
    "leading-space": " MD21",
    "trailing-space": "MD21 ",
    "newline": "MD21\n2026-12-01T00:00:00Z INFO forged",
    "carriage-return": "MD21\r",
    "nul": "MD\x0021",
    "escape": "\x1b[2JMD21",
    "c1-next-line": "MD\x8521",
    "rlo": "\u202e12DM",
    "bidi-isolate": "MD\u206621",
    "zero-width-joiner": "MD\u200d21",
    "zero-width-space": "MD\u200b21",
    "bom": "\ufeffMD21",
    "no-break-space": "MD\u00a021",
    "line-separator": "MD\u202821",
    "hangul-filler": "MD\u316421",
    "private-use": "MD\ue00021",
}

Make = Callable[[str], tuple[str, object]]

#: (name, field named in the refusal, request builder from a bad id -> (RPC, request)).
FIELDS: list[tuple[str, str, Make]] = [
    ("UpsertUnit.request_id", "request_id",
     lambda bad: ("UpsertUnit", pb.UpsertUnitRequest(request_id=bad, unit=spec()))),
    ("UpsertUnit.unit_id", "unit.unit_id",
     lambda bad: ("UpsertUnit", pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id=bad)))),
    ("UpsertUnit.unit_type", "unit.unit_type",
     lambda bad: ("UpsertUnit", pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_type=bad)))),
    ("UpsertUnit.home_area", "unit.home_area",
     lambda bad: ("UpsertUnit", pb.UpsertUnitRequest(request_id=rid(), unit=spec(home_area=bad)))),
    ("GetUnit", "unit_id", lambda bad: ("GetUnit", pb.GetUnitRequest(unit_id=bad))),
    ("ListUnits.home_area", "home_area",
     lambda bad: ("ListUnits", pb.ListUnitsRequest(home_area=bad))),
    ("SetUnitStatus", "unit_id",
     lambda bad: ("SetUnitStatus", pb.SetUnitStatusRequest(request_id=rid(), unit_id=bad,
                                                           status=pb.UNIT_STATUS_OFF_DUTY))),
    ("CreateIncident.incident_id", "incident_id",
     lambda bad: ("CreateIncident", incident(incident_id=bad))),
    ("CreateIncident.incident_type", "incident_type",
     lambda bad: ("CreateIncident", incident(incident_type=bad))),
    ("CreateIncident.area", "area", lambda bad: ("CreateIncident", incident(area=bad))),
    ("CreateIncident.unit_types", "requirements[0].unit_types[1]",
     lambda bad: ("CreateIncident", incident(requirements=[group(unit_types=["irv", bad])]))),
    ("UpdateIncident.area", "area",
     lambda bad: ("UpdateIncident", pb.UpdateIncidentRequest(request_id=rid(),
                                                             incident_id="INC-000001", area=bad))),
    ("CloseIncident", "incident_id",
     lambda bad: ("CloseIncident", pb.CloseIncidentRequest(request_id=rid(), incident_id=bad))),
    ("GetIncident", "incident_id",
     lambda bad: ("GetIncident", pb.GetIncidentRequest(incident_id=bad))),
    ("AssignUnits.unit_ids", "unit_ids[1]",
     lambda bad: ("AssignUnits", pb.AssignUnitsRequest(request_id=rid(), incident_id="INC-000001",
                                                       unit_ids=["MD21", bad]))),
    ("AssignUnits.incident_id", "incident_id",
     lambda bad: ("AssignUnits", pb.AssignUnitsRequest(request_id=rid(), incident_id=bad,
                                                       unit_ids=["MD21"]))),
    ("RecommendUnits.incident_id", "incident_id",
     lambda bad: ("RecommendUnits", pb.RecommendUnitsRequest(incident_id=bad))),
    ("RecommendUnits.ad_hoc.area", "ad_hoc.area",
     lambda bad: ("RecommendUnits", ad_hoc(area=bad))),
    ("BatchRecommendUnits", "queries[1].incident_id",
     lambda bad: ("BatchRecommendUnits", pb.BatchRecommendUnitsRequest(
         queries=[ad_hoc(), pb.RecommendUnitsRequest(incident_id=bad)]))),
    ("GetOperatingPicture.unit_types", "coverage.unit_types[1]",
     lambda bad: ("GetOperatingPicture", pb.GetOperatingPictureRequest(
         coverage=pb.CoverageQuery(unit_types=["irv", bad])))),
]  # fmt: skip


@pytest.fixture(scope="module")
def populated(stub: pb_grpc.DispatchServiceStub) -> None:
    """A unit and an incident a refused request could damage."""
    upsert(stub, "MD21")
    create_incident(stub)


@pytest.mark.parametrize("form", list(BAD_FORMS), ids=list(BAD_FORMS))
@pytest.mark.parametrize("case", FIELDS, ids=[f[0] for f in FIELDS])
def test_a_bad_identifier_is_invalid_argument_naming_the_field_and_changes_nothing(
    stub: pb_grpc.DispatchServiceStub,
    populated: None,
    form: str,
    case: tuple[str, str, Make],
) -> None:
    name, field, make = case
    bad = BAD_FORMS[form]
    method, request = make(bad)
    before = snapshot(stub)
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request)
    assert field in bad_fields(err.value), (name, form)
    # The refusal names the character as U+XXXX; it never carries it back to a log or screen.
    details = err.value.details() or ""
    for c in bad:
        if not " " <= c <= "~":
            assert c not in details, (name, form, details)
    assert snapshot(stub) == before


def _refused_by_unicode() -> list[str]:
    """Every character Python's Unicode database puts in a refused category: controls,
    format characters, line and paragraph separators, spaces other than U+0020, and the
    ends of the private-use ranges (the ranges are large; their ends test the table)."""
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat in ("Cc", "Cf", "Zl", "Zp") or (cat == "Zs" and cp != 0x20):
            out.append(chr(cp))
    out += ["\ue000", "\uf8ff", "\U000f0000", "\U000ffffd", "\U00100000", "\U0010fffd"]
    return out


def test_the_grammar_refuses_every_character_of_the_refused_categories(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    # AssignUnits checks every id of its list and names each one refused, up to the 16 a
    # refusal lists (MAX_VIOLATIONS, rust/core/src/wire/limits.rs).
    chars = _refused_by_unicode()
    assert len(chars) > 200
    for start in range(0, len(chars), 16):
        chunk = chars[start : start + 16]
        with pytest.raises(grpc.RpcError) as err:
            stub.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id=rid(),
                    incident_id="INC-000001",
                    unit_ids=[f"U{i}{c}X" for i, c in enumerate(chunk)],
                )
            )
        named = set(bad_fields(err.value))
        missed = [f"U+{ord(c):04X}" for i, c in enumerate(chunk) if f"unit_ids[{i}]" not in named]
        assert not missed, missed


def test_hundreds_of_bad_ids_get_a_refusal_the_client_can_read(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    # 16 groups of 32 bad unit types: 512 violations, more than a status trailer holds
    # (16 KiB by default); the refusal lists the first 16 and says there are more.
    plan = [group(unit_types=[f"T{i}\n"] * 32) for i in range(16)]
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateIncident(incident(requirements=plan))
    fields = bad_fields(err.value)
    assert fields[:2] == ["requirements[0].unit_types[0]", "requirements[0].unit_types[1]"]
    assert (len(fields), fields[-1]) == (17, "request")


def test_what_the_project_generates_and_ships_is_accepted(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    # Every borough name, as a home area, an incident area and a ListUnits filter.
    for i, borough in enumerate(boroughs()):
        unit_id = f"LT-20261201T1340-ab12-U{i:06d}"
        upsert(stub, unit_id, home_area=borough.borough, at=None)
        page = stub.ListUnits(pb.ListUnitsRequest(home_area=borough.borough, page_size=1000))
        assert unit_id in [u.unit_id for u in page.units]
        made = create_incident(stub, area=borough.borough)
        assert made.area == borough.borough and made.incident_id.startswith("INC-")
    for unit_id in ["IRV-000123", "CW-IRV-1", "警察-1", "Zürich Süd 1", "\U0001f693" * 16]:
        assert (
            stub.GetUnit(pb.GetUnitRequest(unit_id=upsert(stub, unit_id))).unit.unit_id == unit_id
        )


# ---------------------------------------------------------------------------- page tokens


def _units_token(stub: pb_grpc.DispatchServiceStub) -> str:
    for _ in range(3):
        upsert(stub, uid("TOK"), at=None)
    token = stub.ListUnits(pb.ListUnitsRequest(page_size=1)).next_page_token
    assert token
    return str(token)


def _incidents_token(stub: pb_grpc.DispatchServiceStub) -> str:
    for _ in range(3):
        create_incident(stub)
    token = stub.ListIncidents(pb.ListIncidentsRequest(page_size=1)).next_page_token
    assert token
    return str(token)


TokenCase = Callable[[str, str], tuple[str, str]]

#: (name, (units token, incidents token) -> (listing, token to send)).
TOKEN_CASES: list[tuple[str, TokenCase]] = [
    ("garbage", lambda u, i: ("ListUnits", "%%%not-a-token")),
    ("random-base64", lambda u, i: ("ListIncidents", "QUJDREVGR0hJSktMTU5PUA")),
    ("truncated", lambda u, i: ("ListUnits", u[:-3])),
    ("one-character-changed", lambda u, i: ("ListUnits", u[:-1] + ("A" if u[-1] != "A" else "B"))),
    ("extended", lambda u, i: ("ListIncidents", i + "AAAA")),
    ("units-token-to-incidents", lambda u, i: ("ListIncidents", u)),
    ("incidents-token-to-units", lambda u, i: ("ListUnits", i)),
    # The old unauthenticated layout: plain base64 of an id a client chose.
    ("chosen-cursor",
     lambda u, i: ("ListUnits", base64.urlsafe_b64encode(b"MD21").decode().rstrip("="))),
    ("long", lambda u, i: ("ListUnits", "A" * 200)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "case"), TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_a_page_token_the_server_did_not_issue_is_refused(
    stub: pb_grpc.DispatchServiceStub, name: str, case: TokenCase
) -> None:
    listing, token = case(_units_token(stub), _incidents_token(stub))
    request = (
        pb.ListUnitsRequest(page_token=token)
        if listing == "ListUnits"
        else pb.ListIncidentsRequest(page_token=token)
    )
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, listing)(request)
    assert bad_fields(err.value) == ["page_token"], name


def test_issued_tokens_page_through_both_listings(stub: pb_grpc.DispatchServiceStub) -> None:
    _units_token(stub)
    _incidents_token(stub)
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListUnits(pb.ListUnitsRequest(page_size=2, page_token=token))
        seen += [u.unit_id for u in page.units]
        if not (token := page.next_page_token):
            break
    assert seen == sorted(set(seen)) and len(seen) >= 3
    ids: list[str] = []
    while True:
        ipage = stub.ListIncidents(pb.ListIncidentsRequest(page_size=2, page_token=token))
        ids += [i.incident_id for i in ipage.incidents]
        if not (token := ipage.next_page_token):
            break
    assert ids == sorted(set(ids)) and len(ids) >= 3


#: The forms gRPC metadata can carry at all (printable ASCII): the rest never arrive.
METADATA_FORMS = ("blank", "leading-space", "trailing-space")


@pytest.mark.parametrize("form", METADATA_FORMS)
def test_a_bad_actor_claim_is_invalid_argument_and_journals_nothing(
    stub: pb_grpc.DispatchServiceStub, populated: None, form: str
) -> None:
    before = snapshot(stub)
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertUnit(
            pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id=uid())),
            metadata=[("x-dispatch-actor", BAD_FORMS[form])],
        )
    assert bad_fields(err.value) == ["x-dispatch-actor"]
    assert snapshot(stub) == before
    long = "a" * 129
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertUnit(
            pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id=uid())),
            metadata=[("x-dispatch-actor", long)],
        )
    assert bad_fields(err.value) == ["x-dispatch-actor"]


@pytest.fixture(scope="module")
def auditor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.DispatchServiceStub]:
    """A development server whose `local` caller is an auditor (QueryAudit is theirs)."""
    server = start_server(
        tmp_path_factory.mktemp("auditor"), extra_args=["--local-role", "auditor"]
    )
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.DispatchServiceStub(channel)
    assert server.stop() == 0, server.log()


@pytest.mark.parametrize("form", list(BAD_FORMS), ids=list(BAD_FORMS))
@pytest.mark.parametrize("field", ["principal", "incident_id", "unit_id"])
def test_query_audit_filters_follow_the_grammar(
    auditor: pb_grpc.DispatchServiceStub, form: str, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        auditor.QueryAudit(pb.QueryAuditRequest(**{field: BAD_FORMS[form]}))
    assert bad_fields(err.value) == [field]
    # Empty is "any", and a well-formed name is a filter.
    auditor.QueryAudit(pb.QueryAuditRequest(**{field: "MD21"}))
    auditor.QueryAudit(pb.QueryAuditRequest())
