"""Fixtures for the cgroup tests: managers that are always destroyed, child processes that
are always killed, and a check that nothing was left behind.

Every cgroup a test makes is ``pyrunc-test-<session>-<n>/ctr`` — a *relative* cgroupsPath, so on
cgroup v1 it lands under this process's own cgroup in each hierarchy (and under the parent of
its own cgroup on v2): tests never touch cgroups they did not create.  ``<n>`` is unique per
manager, so "nothing left behind" is simply "``pyrunc-test-<session>-<n>`` is gone from every
hierarchy".

Child processes are ``busybox sh`` scripts (cheap even in the TCG VM, where Python starts in a
second).  Each waits on stdin before running its script, so the test can put it in a cgroup
first: ``child = spawn(script); mgr.apply(child.pid); child.go()``.
"""

import os
import sys

import pytest

# The container fixtures of spec-tests/harness.py, for test_cgroups_containers.py: the VM run
# (tools/vm/guest.sh) stops looking for conftest files at this directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import rootfs_template, runtime, subreaper  # noqa: E402,F401

from cgtest import SESSION, Child, all_managers, assert_nothing_left, new_counter
from pyrunc.cgroups import new_manager


@pytest.fixture
def spawn():
    children = []

    def start(script: str, mgr=None, go=True, env=None) -> Child:
        child = Child(script, env)
        children.append(child)
        if mgr is not None:
            mgr.apply(child.pid)
        if go:
            child.go()
        return child

    yield start
    for child in children:
        child.kill()


@pytest.fixture
def cgroup():
    """``cgroup(resources=None, devices=None, create=True, path=None)`` → a Manager that is
    destroyed (and checked to leave nothing behind) after the test."""
    made = []

    def make(resources=None, devices=None, create=True, path=None):
        name = path or f"{SESSION}-{new_counter()}/ctr"
        mgr = new_manager(name, "ctr")
        made.append(mgr)
        all_managers.append(mgr)
        if create:
            mgr.create(resources, devices)
        return mgr

    yield make
    errors = []
    for mgr in made:
        try:
            mgr.destroy()
            assert_nothing_left(mgr)
        except Exception as err:   # report after cleaning up the rest
            errors.append(err)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session", autouse=True)
def _sweep():
    """Safety net: whatever a failed test left, destroy it at the end of the session."""
    yield
    for mgr in all_managers:
        try:
            mgr.destroy()
        except Exception:
            pass
