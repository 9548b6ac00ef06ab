"""Self-test of the suite: its checks can fail.

selftest/broken-runtime wraps a working runtime ($OCISUITE_BROKEN_BASE, default
Debian's runc) and breaks config.json on create: it drops the user, rlimits,
oomScoreAdj, ambient capabilities, masked and read-only paths, sysctls,
annotations and the ipc namespace, reverses the device allowlist, changes the
hostname, strips some mount options and leaks a variable into the environment.
Every check below must fail against it, while the baseline keeps working.

    .venv/bin/python -m pytest conformance/test_selftest.py -q
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ocisuite import checks  # noqa: E402,F401
from ocisuite.registry import CHECKS, FAIL, PASS, run_check  # noqa: E402
from ocisuite.session import Session  # noqa: E402

BASE = os.environ.get("OCISUITE_BROKEN_BASE", "/usr/sbin/runc")
MUST_FAIL = [
    "process.user-uid", "process.rlimits", "process.oom-set", "process.nnp-true",
    "process.caps-ambient", "process.env-no-leak", "linux.masked-file", "linux.masked-dir",
    "linux.readonly-paths", "linux.sysctl", "cgroups.devices-order", "namespaces.new-ipc",
    "config.hostname", "state.annotations", "hooks.stdin-fields", "mounts.nosuid",
    "mounts.rro", "mounts.shared",
]
MUST_PASS = ["lifecycle.start-runs", "process.cwd", "mounts.ro"]


@pytest.fixture(scope="module")
def session():
    if os.geteuid() != 0:
        pytest.skip("host: the conformance suite needs root")
    if not shutil.which(BASE):
        pytest.skip(f"host: no base runtime {BASE} to break")
    s = Session(str(HERE / "selftest" / "broken-runtime"))
    yield s
    s.close()


def _check(check_id):
    return next(c for c in CHECKS if c.id == check_id)


@pytest.mark.parametrize("check_id", MUST_FAIL)
def test_check_catches_the_breakage(session, check_id):
    outcome = run_check(session, _check(check_id))
    assert outcome.status == FAIL, (f"{check_id} against a runtime that breaks its field: "
                                    f"{outcome.status} {outcome.message}")


@pytest.mark.parametrize("check_id", MUST_PASS)
def test_untouched_checks_still_pass(session, check_id):
    outcome = run_check(session, _check(check_id))
    assert outcome.status == PASS, f"{check_id}: {outcome.status}: {outcome.message}"
