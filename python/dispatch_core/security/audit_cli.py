"""`dispatch-core audit`: the audit trail beside a journal, filtered, one record a line."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from typing import TextIO

from dispatch_core.durability.journal.audit import MAX_PAGE, AuditQuery, open_audit_store
from dispatch_core.startup import EXIT_USAGE, StartupError


def _time_ms(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise StartupError(
            EXIT_USAGE, f"{flag} {text!r} is not an ISO 8601 time", "e.g. 2026-12-01T13:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def run_audit(args: argparse.Namespace, out: TextIO) -> int:
    """Prints the records `args` select (the `audit` subcommand's flags); returns 0."""
    query = AuditQuery(
        principal=args.principal,
        incident_id=args.incident,
        unit_id=args.unit,
        since_unix_ms=_time_ms("--since", args.since),
        until_unix_ms=_time_ms("--until", args.until),
    )
    store = open_audit_store(args.journal, args.data_dir, args.journal_name, read_only=True)
    try:
        left = args.limit
        while left > 0:
            page = min(left, MAX_PAGE)
            rows = store.query(dataclasses.replace(query, limit=page))
            for row in rows:
                when = dt.datetime.fromtimestamp(row.time_unix_ms / 1000, dt.UTC)
                fields = [
                    f"{row.id}",
                    when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    f"principal={row.principal or '-'}",
                    f"roles={row.roles or '-'}",
                    row.method,
                    row.code,
                ]
                if row.incident_ids:
                    fields.append(f"incidents={','.join(row.incident_ids)}")
                if row.unit_ids:
                    fields.append(f"units={','.join(row.unit_ids)}")
                if row.location_count:
                    fields.append(f"locations={row.location_count}")
                if row.justification:
                    fields.append(f"justification={row.justification!r}")
                if row.request_id:
                    fields.append(f"request_id={row.request_id}")
                if row.peer:
                    fields.append(f"peer={row.peer}")
                out.write(" ".join(fields) + "\n")
            left -= len(rows)
            if len(rows) < page:
                break
            query = dataclasses.replace(query, after_id=rows[-1].id)
    finally:
        store.close()
    return 0
