"""Helpers for the cgroup tests (imported by conftest.py and the test modules)."""

import itertools
import os
import secrets
import signal
import subprocess
import time

from pyrunc.cgroups import detect_mode

MODE = detect_mode()
SESSION = f"pyrunc-test-{secrets.token_hex(3)}"
_counter = itertools.count(1)
all_managers = []


def new_counter() -> int:
    return next(_counter)


def wait_for(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def top_dirs(mgr):
    """The per-test top directory (``.../pyrunc-test-<s>-<n>``) in every hierarchy."""
    return sorted({os.path.dirname(d) for d in leaf_dirs(mgr)})


def leaf_dirs(mgr):
    if mgr.driver == "v2":
        return [mgr.path]
    return mgr.leaf_dirs()


def assert_nothing_left(mgr):
    left = [d for d in top_dirs(mgr) + leaf_dirs(mgr) if os.path.exists(d)]
    assert not left, f"cgroup directories left behind: {left}"


class Child:
    """``busybox sh -c 'read _; <script>'`` in its own process group."""

    def __init__(self, script: str, env=None):
        self.proc = subprocess.Popen(
            ["busybox", "sh", "-c", f"read _go; {script}"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", **(env or {})})
        self.pid = self.proc.pid

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self, timeout=30.0):
        """(exit status, output); a signal death is -signo."""
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(errors="replace")

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def cpu_usage(mgr) -> int:
    return mgr.stats()["cpu"]["usage"].get("total", 0)


def cgroup_file(mgr, ctrl: str, name: str) -> str:
    d = mgr.path if mgr.driver == "v2" else mgr.dirs[ctrl]
    with open(os.path.join(d, name)) as f:
        return f.read().strip()
