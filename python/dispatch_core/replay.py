"""`dispatch-core replay`: print a journal and the state it rebuilds.

For operators and incident reviews: the audit trail (sequence, time, actor, method,
request_id and what each command did) followed by the state a server would start with.
It opens the journal read-only (no single-writer lock, nothing created or repaired), so it
runs beside a live server and shows the journal as it was when replay started; where no
journal exists (a mistyped --data-dir) it refuses rather than report an empty one.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from typing import TextIO

from dispatch_core._core import DispatchCore
from dispatch_core.durability.journal import Journal, JournalCorruptError, JournalVersionError
from dispatch_core.durability.pipeline import Pipeline, ReplayError
from dispatch_core.durability.records import summary
from dispatch_core.durability.recovery import JournalConfig, RecoveryError, open_journal_checked
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.startup import EXIT_JOURNAL_CORRUPT
from dispatch_core.types import UnitStatus


def _when(ms: int) -> str:
    at = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_replay(config: JournalConfig, out: TextIO, *, after: int | None = None) -> int:
    """Prints entries after `after` (default: every entry kept) and the rebuilt state.
    Raises RecoveryError (missing, unreachable, corrupt, version; its exit_code says which)
    for the caller to report."""
    with open_journal_checked(config, read_only=True) as journal:
        try:
            _replay(config, journal, out, after)
        except (JournalCorruptError, JournalVersionError, ReplayError) as exc:
            raise RecoveryError(
                f"{config.describe()} cannot be replayed: {exc}", EXIT_JOURNAL_CORRUPT
            ) from exc
    return 0


def _replay(config: JournalConfig, journal: Journal, out: TextIO, after: int | None) -> None:
    first = journal.earliest_sequence()
    start = max(first - 1, after or 0)
    print(
        f"# {config.describe()}: entries {first}..{journal.last_sequence()}"
        + (f", showing after {start}" if start >= first else ""),
        file=out,
    )
    print("# sequence  time  actor  method  request_id  summary", file=out)
    for entry in journal.entries_since(start):
        print(
            f"{entry.sequence:>8}  {_when(entry.time_unix_ms)}  {entry.actor}"
            f"  {entry.method}  {entry.request_id}  {summary(entry)}",
            file=out,
        )
    pipeline = Pipeline(DispatchCore(), journal=journal)
    report = pipeline.restore()
    print(
        f"\n# state rebuilt: snapshot at {report.snapshot_sequence} + {report.replayed}"
        f" entries replayed = sequence {report.last_sequence} ({report.seconds:.3f} s)",
        file=out,
    )
    _print_state(pipeline.core, out)


def _print_state(core: DispatchCore, out: TextIO) -> None:
    by_status: dict[int, list[str]] = defaultdict(list)
    token = ""
    while True:
        units = pb.ListUnitsResponse.FromString(
            core.list_units(
                pb.ListUnitsRequest(page_size=1000, page_token=token).SerializeToString()
            )
        )
        for unit in units.units:
            by_status[unit.status].append(unit.unit_id)
        if not (token := units.next_page_token):
            break
    print(f"units: {len(core)}", file=out)
    for status in UnitStatus:
        ids = by_status.get(int(status), [])
        if ids:
            print(f"  {status.name:<12} {len(ids):>5}  {' '.join(ids)}", file=out)
    open_incidents: list[pb.Incident] = []
    closed = 0
    while True:
        page = pb.ListIncidentsResponse.FromString(
            core.list_incidents(
                pb.ListIncidentsRequest(page_size=1000, page_token=token).SerializeToString()
            )
        )
        for incident in page.incidents:
            if incident.status == pb.INCIDENT_STATUS_CLOSED:
                closed += 1
            else:
                open_incidents.append(incident)
        if not (token := page.next_page_token):
            break
    print(f"open incidents: {len(open_incidents)} (closed: {closed})", file=out)
    for incident in open_incidents:
        units_text = " ".join(incident.attached_unit_ids) or "-"
        print(
            f"  {incident.incident_id}  {pb.Grade.Name(incident.grade)[6:]:<11}"
            f" {pb.IncidentStatus.Name(incident.status)[16:]:<10}"
            f" {incident.incident_type}  units: {units_text}",
            file=out,
        )
