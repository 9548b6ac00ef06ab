"""Check records, the @check decorator and the outcome of running a check.

A check is a plain function taking a Session.  It passes by returning, fails by
raising Failed (usually through the expect* helpers), and is skipped only by
raising Skipped naming a real host limit (e.g. "kernel has no time namespace").
Every check carries the spec section it comes from and its level (MUST or
SHOULD), so the report can cite the spec and weigh the failure.
"""

from __future__ import annotations

import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

MUST = "MUST"
SHOULD = "SHOULD"

PASS, FAIL, SKIP, ERROR, TIMEOUT, REFUSED = "pass", "fail", "skip", "error", "timeout", "refused"


class Failed(Exception):
    """The runtime did not do what the spec requires."""


class Skipped(Exception):
    """The check cannot run on this host (a real host limit, named)."""


class Refused(Exception):
    """The runtime refused, with an error, a value the spec lets it choose not to
    support ("runtimes MAY choose which subset of the valid values it will
    support"), while the baseline container runs.  Counts as conformant."""


class CheckTimeout(Exception):
    """The check ran past its own time limit."""


@dataclass(frozen=True)
class Check:
    id: str
    ref: str        # spec file and section, e.g. "runtime.md#start"
    level: str      # MUST or SHOULD
    text: str       # the requirement, e.g. "start of a running container MUST generate an error"
    func: Callable
    timeout: float

    @property
    def title(self) -> str:
        return f"{self.ref}: {self.text}"


CHECKS: list[Check] = []


def check(check_id: str, ref: str, level: str, text: str, timeout: float = 40.0):
    """Register the decorated function as a conformance check."""
    assert level in (MUST, SHOULD), level

    def register(func: Callable) -> Callable:
        if any(c.id == check_id for c in CHECKS):
            raise ValueError(f"duplicate check id {check_id}")
        CHECKS.append(Check(check_id, ref, level, text, func, timeout))
        return func

    return register


@dataclass
class Outcome:
    check: Check
    status: str
    message: str = ""
    diags: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status in (PASS, SKIP, REFUSED)


# --- assertion helpers -----------------------------------------------------------

def expect(cond: bool, message: str) -> None:
    if not cond:
        raise Failed(message)


def expect_eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise Failed(f"{what}: expected {expected!r}, got {actual!r}")


def fail(message: str):
    raise Failed(message)


# --- running ---------------------------------------------------------------------

def _on_alarm(signum, frame):
    raise CheckTimeout()


def run_check(session, chk: Check) -> Outcome:
    """Run one check with its time limit; always clean up what it created."""
    session.begin_check(chk)
    started = time.monotonic()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, chk.timeout)
    status, message = PASS, ""
    try:
        chk.func(session)
    except Failed as exc:
        status, message = FAIL, str(exc)
    except Skipped as exc:
        status, message = SKIP, str(exc)
    except Refused as exc:
        status, message = REFUSED, str(exc)
    except CheckTimeout:
        status, message = TIMEOUT, f"check exceeded its {chk.timeout:.0f}s limit"
    except Exception as exc:  # a bug in the check or an unexpected host error
        status, message = ERROR, f"{type(exc).__name__}: {exc}"
        session.diag(traceback.format_exc().rstrip())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    try:
        session.end_check()
    except Exception as exc:  # cleanup trouble is reported, never hidden
        session.diag(f"cleanup: {type(exc).__name__}: {exc}")
    diags = session.take_diags(include_calls=status not in (PASS, SKIP, REFUSED))
    return Outcome(chk, status, message, diags, time.monotonic() - started)


def select(patterns: list[str] | None) -> list[Check]:
    """Checks whose id or title contains any of the patterns (all when none)."""
    if not patterns:
        return list(CHECKS)
    return [c for c in CHECKS if any(p in c.id or p in c.title for p in patterns)]
