"""Fixtures for the supervisor's tests (the daemon wrapper and shared helpers are in
sv_harness.py, a module name of its own so it never clashes with other test directories).

- ``sv_rootfs``  a busybox rootfs shared by the session (containers get it read-write, so tests
                 write only below /tmp inside it, under unique names).
- ``sv``         one daemon shared by the session; tests use unique container ids.
- ``sv_own``     a daemon of the test's own, for tests that kill or restart it.

Every fixture cleans up fully (containers, shims, runtime state, mounts, cgroups, directories)
even when the test fails.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from sv_harness import CTR, RUNTIME, Supervisor, build_rootfs


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("the supervisor's tests run containers: they need root")
    for tool, why in ((RUNTIME, "SUPERVISOR_TEST_RUNTIME / runc"), (CTR, "containerd's ctr")):
        if not os.access(tool, os.X_OK):
            pytest.skip(f"{why} not installed at {tool}")


@pytest.fixture(scope="session")
def sv_rootfs():
    _require_host()
    base = tempfile.mkdtemp(prefix="svt-rootfs-", dir="/tmp")
    try:
        yield build_rootfs(os.path.join(base, "rootfs"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sv(sv_rootfs):
    daemon = Supervisor()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def sv_own(sv_rootfs):
    daemon = Supervisor()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()
