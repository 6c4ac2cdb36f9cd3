"""Start-up mistakes end in one line (what, where, how to fix) and a documented exit code,
never a traceback: the real CLI, real directories and files, the real PostgreSQL.

Exit codes (README, "Exit codes"): 2 usage or port taken, 3 journal held by another
writer, 5 data directory unusable, 6 journal unreachable, 7 journal corrupt or unknown
version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatch_core.durability.journal import open_journal
from tests.opsserver import launch, one_line, run_cli

PG = "postgresql://postgres@127.0.0.1:5432/test"
#: Quick to refuse on any start-up that gets past the checks: no metrics, any port.
SERVE = ("serve", "--port", "0", "--metrics-port", "-1")


def _serve(data_dir: Path | str, *flags: str, **kwargs: Any) -> Any:
    return run_cli(*SERVE, "--data-dir", str(data_dir), *flags, **kwargs)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (a directory) made unwritable for this process: the permission bits for a
    normal user; for root, who writes through those, the immutable attribute."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory unwritable")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {made.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# ----------------------------------------------------------------------- data directory
def test_a_data_dir_that_is_a_file_exits_5(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a directory")
    result = _serve(path)
    assert result.returncode == 5, result.stderr
    line = one_line(result)
    assert f"data directory {path} is not a directory" in line
    assert "--data-dir" in line


def test_a_data_dir_with_a_missing_parent_exits_5_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not-mounted" / "data"
    result = _serve(path)
    assert result.returncode == 5, result.stderr
    line = one_line(result)
    assert f"its parent {path.parent} does not exist" in line
    assert not path.parent.exists()


def test_a_read_only_working_directory_exits_5(tmp_path: Path) -> None:
    # The default --data-dir is ./data: in a directory nobody may write, it cannot be made.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with read_only(cwd):
        result = run_cli(*SERVE, cwd=cwd, env={"DISPATCH_DATA_DIR": "./data"})
    assert result.returncode == 5, result.stderr
    assert "data directory data cannot be created (" in one_line(result)
    assert not (cwd / "data").exists()


def test_an_existing_unwritable_data_dir_exits_5(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with read_only(data):
        result = _serve(data)
    assert result.returncode == 5, result.stderr
    assert f"data directory {data} is not writable (" in one_line(result)


# ------------------------------------------------------------------------------ journal
def test_an_unknown_journal_scheme_is_a_usage_error(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--journal", "mysql://db/x")
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "unknown journal 'mysql://db/x'" in line
    assert "postgresql://USER@HOST:PORT/DATABASE" in line


def test_a_postgres_dsn_naming_no_database_is_refused(tmp_path: Path) -> None:
    for dsn in ("postgresql://", "postgresql://postgres@127.0.0.1:5432"):
        result = _serve(tmp_path, "--journal", dsn)
        assert result.returncode == 2, result.stderr
        assert "names no database" in one_line(result)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens


def test_postgres_on_a_closed_port_exits_6_with_the_password_redacted(tmp_path: Path) -> None:
    port = _closed_port()
    result = _serve(tmp_path, "--journal", f"postgresql://postgres:hunter2@127.0.0.1:{port}/test")
    assert result.returncode == 6, result.stderr
    line = one_line(result)
    assert "hunter2" not in result.stderr + result.stdout
    assert f"postgresql://postgres:***@127.0.0.1:{port}/test" in line
    assert "cannot reach" in line and "check that PostgreSQL runs there" in line


def test_postgres_with_an_unknown_role_exits_6(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--journal", "postgresql://no_such_role@127.0.0.1:5432/test")
    assert result.returncode == 6, result.stderr
    line = one_line(result)
    assert 'role "no_such_role" does not exist' in line
    assert "127.0.0.1:5432/test" in line


def test_a_journal_of_an_unknown_version_exits_7(tmp_path: Path) -> None:
    open_journal("sqlite", tmp_path).close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as conn:
        conn.execute("UPDATE journal_meta SET value = '99' WHERE key = 'format_version'")
    result = _serve(tmp_path)
    assert result.returncode == 7, result.stderr
    assert "format version 99" in one_line(result)


def test_a_journal_held_by_another_writer_exits_3(tmp_path: Path) -> None:
    with open_journal("sqlite", tmp_path):
        result = _serve(tmp_path)
    assert result.returncode == 3, result.stderr
    assert "already open by another writer" in one_line(result)


# ---------------------------------------------------------------- flags and environment
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPATCH_PORT", "abc"),
        ("DISPATCH_SNAPSHOT_EVERY", "many"),
        ("DISPATCH_TICK_INTERVAL", "-1"),
        ("DISPATCH_LOG_FORMAT", "xml"),
        ("DISPATCH_LOG_LEVEL", "verbose"),
        ("DISPATCH_ACCESS_LOG", "some"),
        ("DISPATCH_SHUTDOWN_DELAY", "soon"),
    ],
)
def test_a_bad_environment_default_is_one_line(tmp_path: Path, name: str, value: str) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path), env={name: value})
    assert result.returncode == 2, result.stderr
    assert f"{name}={value!r}" in one_line(result)


def test_a_taken_port_is_one_line_without_grpc_noise(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(port), "--metrics-port", "-1", "--data-dir", str(tmp_path)
        )
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in line
    # Refused before the journal was touched.
    assert not (tmp_path / "journal.sqlite3").exists()


def test_version_module_entry_point_and_log_options_after_the_subcommand(tmp_path: Path) -> None:
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("dispatch-core ")
    # --log-level and --log-format are accepted after the subcommand too, and win there.
    result = run_cli(
        "replay", "--log-level", "debug", "--log-format", "json", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 6, result.stderr
    assert "no journal found" in one_line(result)


# ---------------------------------------------------------------------------- replay
def test_replay_refuses_where_no_journal_exists_and_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "dta"
    result = run_cli("replay", "--data-dir", str(mistyped))
    assert result.returncode == 6, result.stderr
    line = one_line(result)
    assert f"no journal found at {mistyped / 'journal.sqlite3'}" in line
    assert not mistyped.exists()


def test_replay_of_a_missing_postgres_schema_is_refused() -> None:
    result = run_cli("replay", "--journal", PG, "--journal-name", "no_such_journal_schema")
    assert result.returncode == 6, result.stderr
    assert "no journal found" in one_line(result)


# ---------------------------------------------------------------------- start-up order
def test_metrics_are_bound_before_listening_is_logged(tmp_path: Path) -> None:
    server = launch(tmp_path, metrics=True)
    try:
        log = server.log()
        assert log.index("metrics served at") < log.index("listening on")
        # The start-up log names where the journal is.
        assert f"sqlite journal ({tmp_path / 'data'}" in log
    finally:
        assert server.stop() == 0
