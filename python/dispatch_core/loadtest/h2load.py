"""h2load (Debian's nghttp2-client), the C HTTP/2 generator capacity mode uses for reads.

It cannot present a client certificate, so against a mutual-TLS server capacity mode
uses the Python generator for reads too (server TLS and bearer tokens work).

One Python process cannot offer more than a few thousand gRPC calls a second on a small
machine; h2load sends the same frames for a fraction of the CPU, so the figure it finds is
the server's. It repeats one request body and only sees HTTP status (a gRPC error is HTTP
200 with a non-zero grpc-status trailer), so errors are counted from the server's metrics
by code (capacity.py). Writes need a fresh request_id per call and stay with the Python
generator.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dispatch_core.service.servicer import SERVICE_NAME

#: Connections and streams per connection: enough in flight that a steady rate never waits
#: for a free stream (which would turn the open loop into a closed one).
CLIENTS = 4
STREAMS = 64


def find() -> str | None:
    """The h2load executable, or None when nghttp2-client is not installed."""
    return shutil.which("h2load")


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass
class H2Result:
    """One h2load run: what was sent and answered, latencies in ms, CPU seconds."""

    requests: int
    non_200: int
    seconds: float
    latency_ms: np.ndarray[Any, np.dtype[np.float64]]
    cpu_s: float
    summary: str

    @property
    def achieved_per_s(self) -> float:
        return (self.requests - self.non_200) / max(1e-9, self.seconds)


def run(
    exe: str,
    target: str,
    rpc: str,
    body: bytes,
    *,
    seconds: float,
    rate_per_s: float | None,
    workdir: Path,
    warm_up_s: float = 1.0,
    tls: bool = False,
    token: str | None = None,
) -> H2Result:
    """`rpc` with `body` for `seconds`: at `rate_per_s`, or as fast as answered when None."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"{rpc}.bin"
    data.write_bytes(grpc_frame(body))
    log = workdir / f"{rpc}.log"
    log.unlink(missing_ok=True)
    args = [
        exe,
        "-D",
        f"{seconds:g}",
        "--warm-up-time",
        f"{warm_up_s:g}",
        "-c",
        str(CLIENTS),
        "-m",
        str(STREAMS),
        "-t",
        "1",
        "-d",
        str(data),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"--log-file={log}",
    ]
    if rate_per_s is not None:
        args += ["--rps", f"{rate_per_s / CLIENTS:.3f}"]
    if token:
        args += ["-H", f"authorization: Bearer {token}"]
    # Over TLS h2load does not verify the server's certificate: it measures, it does not
    # trust anything it is told.
    args.append(f"{'https' if tls else 'http'}://{target}/{SERVICE_NAME}/{rpc}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    rows = (
        np.loadtxt(log, dtype=np.int64, ndmin=2, usecols=(0, 1, 2))
        if log.stat().st_size
        else np.empty((0, 3), np.int64)
    )
    status, micros = rows[:, 1], rows[:, 2]
    ok = status == 200
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = next((ln for ln in done.stdout.splitlines() if ln.startswith("finished in")), "")
    return H2Result(
        requests=int(rows.shape[0]),
        non_200=int((~ok).sum()),
        seconds=min(seconds, max(1e-9, wall - warm_up_s)),
        latency_ms=micros[ok].astype(np.float64) / 1e3,
        cpu_s=cpu,
        summary=summary,
    )
