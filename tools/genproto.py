#!/usr/bin/env python3
"""Generate the supervisor's Python gRPC stubs from proto/ into supervisor/gen/.

grpcio-tools' bundled protoc compiles every .proto under proto/ (import paths are relative to
proto/; google/protobuf/* come with grpcio-tools). protoc writes absolute imports named after the
proto paths (``from containerd.types import mount_pb2``); those are rewritten to live under the
``supervisor.gen`` package, so nothing has to be put on sys.path. The output is built in a
temporary directory and swapped in whole, so a half-written tree is never importable.

Run by ``make proto`` (part of ``make setup``); ``--force`` regenerates even when up to date.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "supervisor" / "gen"
# Top-level proto packages whose generated modules live in supervisor/gen.
# (pyrunc: pyrunc.network and pyrunc.services.pull, the project's own services)
LOCAL_ROOTS = ("containerd", "google.rpc", "pyrunc")
IMPORT_RE = re.compile(r"^(from|import) (%s)\b" % "|".join(re.escape(r) for r in LOCAL_ROOTS),
                       re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(PROTO.rglob("*.proto"))


def up_to_date(files: list[Path]) -> bool:
    stamp = OUT / ".stamp"
    if not stamp.exists():
        return False
    newest = max(f.stat().st_mtime for f in files + [Path(__file__)])
    return stamp.stat().st_mtime >= newest


def run_protoc(files: list[Path], out: Path) -> None:
    from grpc_tools import protoc  # imported here: only needed when regenerating
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}"] + [str(f.relative_to(PROTO)) for f in files]
    if protoc.main(args) != 0:
        sys.exit("genproto: protoc failed")


def rewrite_imports(out: Path) -> None:
    for py in out.rglob("*.py"):
        text = py.read_text()
        new = IMPORT_RE.sub(lambda m: f"{m.group(1)} supervisor.gen.{m.group(2)}", text)
        if new != text:
            py.write_text(new)


def add_init_files(out: Path) -> None:
    for d in [out] + [p for p in out.rglob("*") if p.is_dir()]:
        (d / "__init__.py").touch()


def main() -> int:
    files = proto_files()
    if not files:
        return 0
    if "--force" not in sys.argv and up_to_date(files):
        return 0
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=OUT.parent))
    try:
        run_protoc(files, tmp)
        rewrite_imports(tmp)
        add_init_files(tmp)
        (tmp / ".stamp").touch()
        old = OUT.with_name(".gen-old-%d" % os.getpid())
        if OUT.exists():
            OUT.rename(old)
        tmp.rename(OUT)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"genproto: {len(files)} protos -> {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
