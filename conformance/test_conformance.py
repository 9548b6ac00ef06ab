"""pytest entry: every conformance check is one test, run against $RUNTIME.

    RUNTIME=/usr/sbin/runc .venv/bin/python -m pytest conformance -q
    RUNTIME=/usr/sbin/runc .venv/bin/python -m pytest conformance -k hooks -m "not should"

RUNTIME defaults to the project's own runtime, <repo>/.venv/bin/pyrunc.  One
session (temp tree, runtime --root) serves all the tests of a run.  SHOULD-level
checks carry the `should` mark.  A skip names a host limit or an optional part
of the spec the runtime does not provide; a failure prints the check's reason
and the runtime calls it made.  Needs root.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ocisuite import checks  # noqa: E402,F401  (registers the checks)
from ocisuite.registry import CHECKS, SHOULD, SKIP, run_check  # noqa: E402
from ocisuite.session import Session  # noqa: E402

RUNTIME = os.environ.get("RUNTIME") or str(HERE.parent / ".venv" / "bin" / "pyrunc")


@pytest.fixture(scope="session")
def session():
    if os.geteuid() != 0:
        pytest.skip("host: the conformance suite needs root")
    s = Session(RUNTIME)
    yield s
    s.close()


def _params() -> list:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.should] if c.level == SHOULD else [])
            for c in CHECKS]


@pytest.mark.parametrize("chk", _params())
def test_check(session, chk):
    outcome = run_check(session, chk)
    if outcome.status == SKIP:
        pytest.skip(outcome.message)
    if not outcome.passed:
        details = "\n".join(outcome.diags)
        pytest.fail(f"[{chk.level}] {chk.title}\n{outcome.status}: {outcome.message}\n{details}",
                    pytrace=False)
