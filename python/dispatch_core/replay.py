"""`dispatch-core replay`: print a journal and the state it rebuilds.

For operators and incident reviews: the audit trail (sequence, time, actor, method,
request_id and what each command did) followed by the state a server would start with.
It opens the journal as its single writer (SQLite's lock file, PostgreSQL's advisory lock),
so it refuses to run against a journal a live server holds, exactly like a second server.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from typing import TextIO

from dispatch_core._core import UnitIndex
from dispatch_core.durability import JournalConfig
from dispatch_core.engine import Engine
from dispatch_core.records import summary
from dispatch_core.types import IncidentStatus, UnitStatus


def _when(ms: int) -> str:
    at = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_replay(config: JournalConfig, out: TextIO, *, after: int | None = None) -> int:
    """Prints entries after `after` (default: every entry kept) and the rebuilt state.
    Raises the journal's errors (locked, corrupt, version) for the caller to report."""
    with config.open() as journal:
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
        engine = Engine(UnitIndex(), journal=journal)
        report = engine.restore()
        print(
            f"\n# state rebuilt: snapshot at {report.snapshot_sequence} + {report.replayed}"
            f" entries replayed = sequence {report.last_sequence} ({report.seconds:.3f} s)",
            file=out,
        )
        by_status: dict[int, list[str]] = defaultdict(list)
        for view in engine.index.list_units():
            by_status[view.status].append(view.unit_id)
        print(f"units: {len(engine.index)}", file=out)
        for status in UnitStatus:
            ids = sorted(by_status.get(int(status), []))
            if ids:
                print(f"  {status.name:<12} {len(ids):>5}  {' '.join(ids)}", file=out)
        open_incidents = [
            i for i in engine.incidents.iter_after("") if i.status is not IncidentStatus.CLOSED
        ]
        closed = len(engine.incidents) - len(open_incidents)
        print(f"open incidents: {len(open_incidents)} (closed: {closed})", file=out)
        for incident in open_incidents:
            units = " ".join(incident.attached_unit_ids) or "-"
            print(
                f"  {incident.incident_id}  {incident.grade.name:<11} {incident.status.name:<10}"
                f" {incident.incident_type}  units: {units}",
                file=out,
            )
    return 0
