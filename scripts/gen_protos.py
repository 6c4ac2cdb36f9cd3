"""Regenerates the committed Python code of protos/ into python/dispatch_core/proto/.

    python scripts/gen_protos.py [--out DIR]

protoc writes imports as `from dispatch.v1 import ...`, which only resolves with the output
directory on sys.path; the code ships inside the `dispatch_core.proto` package, so those
imports are rewritten. The .proto file keeps its canonical name (`dispatch/v1/dispatch.proto`,
path equals package) so that reflection clients see the name they expect.

The .proto sources are copied beside the code generated from them (as googleapis-common-protos
ships google/rpc/status.proto beside status_pb2.py), so the installed package carries the
API definition a client in another language generates its code from.
tests/test_protos_fresh.py runs this into a temporary directory and fails if the committed
code differs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "python" / "dispatch_core" / "proto"
PACKAGE = "dispatch_core.proto"

_IMPORT = re.compile(r"^from dispatch\.(\S+) import ", re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Writes the generated modules under `out`; returns every file written."""
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    written: list[Path] = []
    for source in proto_files():
        copy = out / source.relative_to(PROTO_ROOT)
        shutil.copyfile(source, copy)
        written.append(copy)
    for path in sorted(out.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        fixed = _IMPORT.sub(rf"from {PACKAGE}.dispatch.\1 import ", text)
        if fixed != text:
            path.write_text(fixed)
        written.append(path)
    # Packages all the way down, so that `dispatch_core.proto.dispatch.v1` imports.
    for directory in sorted({p.parent for p in written} | {out}):
        current = directory
        while True:
            init = current / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
            if current == out:
                break
            current = current.parent
    return sorted(set(written))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output package directory")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
