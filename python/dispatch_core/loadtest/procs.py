"""CPU and memory of processes and of the machine, read from /proc (Linux)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.internal import api_implementation

from dispatch_core import _core

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name may hold spaces; fields after its closing parenthesis are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_jiffies() -> tuple[int, int, int]:
    """(total, idle + iowait, steal) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4], v[7]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    """Output of a git command in the source checkout of this package; "" outside one."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return ""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """What a figure was measured on, so reports compare across machines."""
    commit = _git("rev-parse", "--short", "HEAD")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "loadavg_1m_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf_impl": api_implementation.Type(),
        "numpy": np.__version__,
        "dispatch_core": _core.__version__,
        "platform": platform.platform(),
        # Installed from a wheel there is no checkout: the version above says what ran.
        "commit": commit or None,
        "dirty_tree": bool(_git("status", "--porcelain")) if commit else None,
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
