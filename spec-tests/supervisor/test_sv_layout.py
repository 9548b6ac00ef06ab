"""The supervisor's layout rules, checked on its source (docs/supervisor.md, "Modules"):

- from ``pyrunc/`` the supervisor imports only ``pyrunc.linux`` (the kernel layer); it drives
  runtimes through their command line;
- arrows point down: ``core/`` and ``metadata/`` never import ``api/`` (the gRPC layer), the shim
  never imports the daemon's side (``core/``, ``api/``, ``metadata/``, grpc), ``metadata/`` never
  imports ``core/``.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUPERVISOR = os.path.join(ROOT, "supervisor")


def _modules():
    for base, dirs, files in os.walk(SUPERVISOR):
        dirs[:] = [d for d in dirs if d not in ("gen", "__pycache__")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(base, name)
                yield os.path.relpath(path, ROOT), path


def imports_of(path: str) -> set[str]:
    """Every absolute name imported anywhere in the file (lazy imports included); ``from a
    import b`` counts as ``a.b``, so ``from pyrunc import linux`` is ``pyrunc.linux``."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_the_whole_supervisor():
    found = {rel for rel, _ in _modules()}
    assert {"supervisor/daemon.py", "supervisor/mounts.py", "supervisor/core/tasks.py",
            "supervisor/metadata/store.py", "supervisor/shim/task.py"} <= found
    assert "pyrunc.linux.sys" in imports_of(os.path.join(SUPERVISOR, "mounts.py"))


def test_supervisor_imports_only_pyrunc_linux_from_pyrunc():
    bad = sorted(f"{rel}: {name}" for rel, path in _modules() for name in imports_of(path)
                 if _under(name, "pyrunc") and not _under(name, "pyrunc.linux"))
    assert not bad, "supervisor/ may import pyrunc.linux only:\n" + "\n".join(bad)


@pytest.mark.parametrize("package,forbidden", [
    ("supervisor/core", ("supervisor.api", "grpc")),
    ("supervisor/metadata", ("supervisor.api", "supervisor.core", "grpc")),
    ("supervisor/network", ("supervisor.api", "supervisor.core", "grpc")),
    ("supervisor/shim", ("supervisor.api", "supervisor.core", "supervisor.metadata", "grpc",
                         "asyncio")),
])
def test_arrows_point_down(package, forbidden):
    bad = sorted(f"{rel}: {name}" for rel, path in _modules() if rel.startswith(package + "/")
                 for name in imports_of(path) if any(_under(name, f) for f in forbidden))
    assert not bad, f"{package} must not import {forbidden}:\n" + "\n".join(bad)


def test_the_rule_catches_a_violation(tmp_path):
    """The checker itself: a module importing pyrunc.spec is reported, pyrunc.linux is not."""
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text("def f():\n    from pyrunc.spec import load\n    import pyrunc.cli\n")
    good.write_text("from pyrunc.linux import sys as linux\n")
    assert {"pyrunc.spec.load", "pyrunc.cli"} <= imports_of(str(bad))
    assert all(_under(n, "pyrunc.linux") for n in imports_of(str(good)) if _under(n, "pyrunc"))
