"""The README's worked client example runs, unchanged, against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def test_worked_example_runs(tmp_path: Path) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert code, "the README has no Python example"
    server = start_server(tmp_path / "server")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code.group(1)],
            env={**os.environ, "DISPATCH_TARGET": server.target},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert server.stop() == 0
    assert done.returncode == 0, done.stderr
    # The taser-trained car is the only one that qualifies, so it must be the one sent.
    assert done.stdout.startswith("CW-IRV-1 ETA "), done.stdout
    assert "FAILED_PRECONDITION" not in done.stdout
