"""Finds `promtool` for the tests of ops/prometheus and of real scrapes.

These tests must run in CI, never skip: a missing promtool fails them with the fix.
"""

from __future__ import annotations

import shutil

import pytest


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed; run `bash scripts/ensure_tool.sh promtool prometheus` "
            "(installs Debian's prometheus package, which ships it)",
            pytrace=False,
        )
    return path
