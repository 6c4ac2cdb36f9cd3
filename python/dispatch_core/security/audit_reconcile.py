"""Start-up reconciliation of the audit trail with the journal: no acknowledged write is
missing from the trail after a crash.

The trail is written a moment after each call (`security/audit.py`), so a crash can lose
the last records. For reads that is the accepted cost of a cheap trail; for writes it is
not, and it need not be: the journal already holds every acknowledged command durably,
with its principal (the entry's actor), time, method, request and answer. The trail stores
a high-water mark, moved in the same transaction as the records it covers: every command
up to it has its record. At start, before the server takes calls, `reconcile` reads the
journal's entries after the mark, writes a record for each command that has none, and
moves the mark to the journal's end. Commands the server sent itself (actor `server:…`:
clock ticks, response-plan installs at start-up or on SIGHUP) were no call and have no
record; the journal holds them.

A rebuilt record says what the journal knows: its roles are empty (the entry names the
principal, not the roles it held) and its peer is `(journal)`, so a reader can tell it
from one written live.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from dispatch_core._core import payload_request
from dispatch_core.durability.journal import Entry, Journal
from dispatch_core.durability.journal.audit import AuditRow, AuditStore
from dispatch_core.durability.pipeline import SERVER_ACTOR_PREFIX
from dispatch_core.security.audit import SERVICE, record_ids
from dispatch_core.security.identity import LOCAL_PRINCIPAL

log = logging.getLogger(__name__)

#: The peer of a record rebuilt from the journal.
FROM_JOURNAL = "(journal)"
#: Records written per transaction while reconciling.
BATCH = 1000
#: Actor prefixes of a proved identity (`Identity.actor`); any other actor is a caller of a
#: plaintext development server, whose principal the trail records as `local`.
_PROVED = ("mtls:", "jwt:")


def principal_of(actor: str) -> str:
    """The trail's principal for a journal actor (`mtls:<p>`, `jwt:<sub>`, or a claim)."""
    for prefix in _PROVED:
        if actor.startswith(prefix):
            return actor[len(prefix) :]
    return LOCAL_PRINCIPAL


def row_of(entry: Entry) -> AuditRow:
    """The record of a journaled command, as the live trail would have written it."""
    method = SERVICE + entry.method
    try:
        request: bytes | None = payload_request(entry.payload)
    except Exception:  # an entry this build cannot read names no resources, still recorded
        request = None
    incidents, units, count = record_ids(method, request, entry.result)
    return AuditRow(
        entry.time_unix_ms,
        principal_of(entry.actor),
        "",
        method,
        "OK",
        tuple(incidents),
        tuple(units),
        count,
        "",
        entry.request_id,
        FROM_JOURNAL,
        sequence=entry.sequence,
    )


def _entries_after(journal: Journal, mark: int) -> Iterator[Entry]:
    # Entries below the journal's earliest were truncated behind a snapshot: nothing to read.
    return journal.entries_since(max(mark, journal.earliest_sequence() - 1))


def reconcile(journal: Journal, store: AuditStore) -> int:
    """Writes the records of commands journaled after the trail's mark that have none;
    returns how many. Call once, after recovery and before serving."""
    last = journal.last_sequence()
    # A mark above the journal's end: the last run applied commands its journal never made
    # durable (it failed). Their sequences will be used again, so look from the journal's end.
    mark = min(store.mark(), last)
    if mark >= last:
        return 0
    present = store.sequences_after(mark)
    written = 0
    batch: list[AuditRow] = []
    for entry in _entries_after(journal, mark):
        # The server's own commands (clock ticks, plan installs at start-up or on SIGHUP)
        # were no call, so they never had a record to lose: the journal is their record.
        own = entry.method == "Tick" or entry.actor.startswith(SERVER_ACTOR_PREFIX)
        if not own and entry.sequence not in present:
            batch.append(row_of(entry))
        if len(batch) >= BATCH:
            store.append(batch, entry.sequence)
            written += len(batch)
            batch = []
    store.append(batch, last)
    written += len(batch)
    if written:
        log.warning(
            "audit trail: %d command records were missing after the last stop (a crash);"
            " rebuilt from journal entries %d to %d",
            written,
            mark + 1,
            last,
        )
    return written
