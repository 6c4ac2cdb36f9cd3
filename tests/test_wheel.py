"""The wheel is what a deployment installs: it must carry the API definition, the ops kit
and the license, earn a manylinux tag, and run without the source tree. And a development
start (scripts/serve.sh) must not rebuild or reinstall when nothing changed.

The wheel is built by maturin with the project's own settings ([tool.maturin] in
pyproject.toml: the manylinux policy it audits against, the included files) and installed
with `--no-deps --no-index` into a fresh virtualenv, so nothing is fetched. The
dependencies it needs to start come from the project's .venv through a path entry that adds
that directory to sys.path after the fresh venv's own site-packages and processes none of
its .pth files, so the editable dispatch_core installed there cannot shadow the wheel's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

glibc_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="the manylinux tag is a glibc Linux matter",
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    maturin = Path(sys.executable).with_name("maturin")
    # The interpreter of the test run, as `maturin develop` uses: the same PyO3 build
    # configuration, so cargo reuses what setup already compiled.
    built = subprocess.run(
        [str(maturin), "build", "--release", "--interpreter", sys.executable, "--out", str(out)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, f"maturin build failed:\n{built.stderr[-4000:]}"
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.mark.slow
@glibc_linux
def test_wheel_is_manylinux_tagged_by_the_audit(wheel: Path) -> None:
    # cp311-cp311-manylinux_2_34_x86_64: maturin chose the tag after checking the library's
    # symbols against the policy, and refuses to build when they do not comply.
    platform_tag = wheel.stem.split("-")[-1]
    assert platform_tag.startswith("manylinux_"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        tags = archive.read("dispatch_core-0.1.0.dist-info/WHEEL").decode()
    assert f"Tag: {'-'.join(wheel.stem.split('-')[-3:])}" in tags


@pytest.mark.slow
@glibc_linux
def test_wheel_carries_protos_ops_kit_and_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

        def inside(prefix: str, files: dict[str, bytes]) -> None:
            for name, content in files.items():
                assert f"{prefix}/{name}" in names, f"{prefix}/{name} missing from the wheel"
                assert archive.read(f"{prefix}/{name}") == content, f"{prefix}/{name} differs"

        inside("dispatch_core/proto", _files(ROOT / "protos"))
        inside("dispatch_core/ops", _files(ROOT / "ops"))
        inside(
            "dispatch_core/loadtest/scenarios",
            _files(ROOT / "python/dispatch_core/loadtest/scenarios"),
        )
        inside(
            "dispatch_core-0.1.0.dist-info/licenses", {"LICENSE": (ROOT / "LICENSE").read_bytes()}
        )
        metadata = archive.read("dispatch_core-0.1.0.dist-info/METADATA").decode()
    assert "License-File: LICENSE" in metadata
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.slow
@glibc_linux
def test_wheel_installs_and_runs_from_a_clean_virtualenv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies (grpcio, numpy, ...), from the project's environment: see the
    # module docstring for why this cannot pick up the editable dispatch_core.
    (site / "_dispatch_core_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import dispatch_core, dispatch_core._core as c; print(dispatch_core.__file__);"
            " print(c.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=120,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert (site / "dispatch_core/proto/dispatch/v1/dispatch.proto").is_file()
    assert (site / "dispatch_core/ops/grafana/dispatch-core.json").is_file()

    helped = subprocess.run(
        [str(env_dir / "bin" / "dispatch-core"), "--help"],
        check=True,
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=120,
    )
    assert "serve" in helped.stdout

    # The load-test command ships too, scenarios included, and needs no source tree.
    assert (site / "dispatch_core/loadtest/scenarios/nye-surge.toml").is_file()
    loadtest_help = subprocess.run(
        [str(env_dir / "bin" / "dispatch-core"), "loadtest", "--help"],
        check=True,
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=120,
    )
    assert "--capacity" in loadtest_help.stdout and "nye-surge" in loadtest_help.stdout


def test_a_current_setup_runs_neither_pip_nor_maturin() -> None:
    check = subprocess.run(["bash", "scripts/setup.sh", "--check"], cwd=ROOT, check=False)
    if check.returncode != 0:
        pytest.skip("the set-up is not current: run scripts/setup.sh (scripts/test.sh does)")
    stamp = ROOT / ".venv" / ".dispatch-setup"
    before = stamp.stat().st_mtime_ns
    # A package index that cannot answer: the set-up must not need one.
    offline = os.environ | {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=ROOT,
        env=offline,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "nothing changed" in done.stderr and "building" not in done.stderr, done.stderr
    assert stamp.stat().st_mtime_ns == before
    assert time.monotonic() - started < 10
