"""`dispatch-core roster import FILE`: a roster CSV sent to a running server over gRPC.

The whole file is checked first ([`csvfile.parse`]); a file with any bad line sends
nothing unless `--skip-bad`, which sends the good lines and lists every skipped one. Lines
go as UpsertPerson / UpsertShift calls, many in flight at once (the server's group commit
makes them durable together), each with a request_id made of the file's digest and the
line number: running the same file again changes nothing and answers as the first run did.
A refusal by the server (a shift overlapping one it already holds) is reported by line;
without `--skip-bad` no further line is sent, and the lines sent before it stay applied.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import grpc

from dispatch_core._core import DispatchCore
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.roster.csvfile import parse
from dispatch_core.security.client import ClientCredentials

#: Calls in flight at once.
WINDOW = 256
EXIT_BAD_FILE = 1


def _people_on_server(stub: pb_grpc.DispatchServiceStub, ids: set[str]) -> set[str]:
    found = set()
    for person_id in sorted(ids):
        try:
            stub.GetPerson(pb.GetPersonRequest(person_id=person_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            found.add(person_id)
    return found


def run_import(
    target: str,
    path: Path,
    out: TextIO,
    *,
    credentials: ClientCredentials | None = None,
    skip_bad: bool = False,
) -> int:
    """Imports `path` into the server at `target`; returns the exit code (0: every line
    applied or, with skip_bad, skipped and listed)."""
    data = path.read_bytes()
    text = data.decode("utf-8-sig").splitlines()
    vocabulary = DispatchCore().capability_names()
    channel = (credentials or ClientCredentials()).channel(target)
    stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        first = parse(text, vocabulary)
        missing = {
            c.shift.person_id
            for _, method, c in first.commands
            if method == "UpsertShift" and isinstance(c, pb.UpsertShiftRequest)
        } - {
            c.person.person_id
            for _, m, c in first.commands
            if isinstance(c, pb.UpsertPersonRequest)
        }
        parsed = parse(text, vocabulary, _people_on_server(stub, missing)) if missing else first
        bad = parsed.bad_lines()
        for line, problem in parsed.errors:
            out.write(f"{'skipped ' if skip_bad else ''}line {line}: {problem}\n")
        if bad and not skip_bad:
            out.write(f"{len(bad)} bad lines: nothing imported (--skip-bad imports the rest)\n")
            return EXIT_BAD_FILE
        digest = hashlib.sha256(data).hexdigest()[:16]
        started = time.perf_counter()
        sent = {"UpsertPerson": 0, "UpsertShift": 0}
        refused = 0
        pending: deque[tuple[int, grpc.Future]] = deque()

        def settle(limit: int) -> None:
            nonlocal refused
            while len(pending) > limit:
                line, future = pending.popleft()
                try:
                    future.result()
                except grpc.RpcError as exc:
                    refused += 1
                    out.write(f"line {line}: {exc.code().name}: {exc.details()}\n")

        # People first, then shifts, each in file order: a shift's person is always there.
        for kind in ("UpsertPerson", "UpsertShift"):
            call = getattr(stub, kind)
            for line, method, request in parsed.commands:
                if method != kind or line in bad:
                    continue
                if refused and not skip_bad:
                    break
                request.request_id = f"roster-{digest}-{line}"  # type: ignore[attr-defined]
                pending.append((line, call.future(request, timeout=60)))
                sent[kind] += 1
                settle(WINDOW)
            settle(0)
        elapsed = time.perf_counter() - started
        out.write(
            f"imported {sent['UpsertPerson']} people and {sent['UpsertShift']} shifts"
            f" ({refused} refused, {len(bad)} skipped) in {elapsed:.1f} s\n"
        )
        return EXIT_BAD_FILE if refused and not skip_bad else 0
    finally:
        channel.close()
