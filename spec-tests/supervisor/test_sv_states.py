"""The shim's process states (supervisor/shim/states.py) as a table, on a fake task that records
what it was asked to do (pure logic: the real transitions are exercised by test_sv_api.py and
test_sv_ctr.py against real shims)."""
from __future__ import annotations

import pytest

from supervisor.shim import states
from supervisor.shim.states import ShimError


class FakeTask:
    id = "c1"

    def __init__(self):
        self.calls = []

    def runtime_call(self, *args, capture=False):
        self.calls.append(args)
        return ""

    def start_process(self, p):
        self.calls.append(("start", p.name))

    def delete_process(self, p, force):
        self.calls.append(("delete", p.name, force))

    def on_exit(self, p, status, when):
        self.calls.append(("exit", p.name, status))


class FakeProc:
    def __init__(self, state, exec_id=""):
        self.task = FakeTask()
        self.state = state
        self.exec_id = exec_id
        self.pid = 0

    is_init = property(lambda self: self.exec_id == "")
    name = property(lambda self: self.exec_id or self.task.id)


def refused(fn, *args):
    with pytest.raises(ShimError) as exc:
        fn(*args)
    return exc.value.code, str(exc.value)


def test_init_lifecycle_through_every_state():
    p = FakeProc(states.CREATED)
    p.state.start(p)
    assert p.state is states.RUNNING
    p.state.pause(p)
    assert p.state is states.PAUSED
    assert refused(p.state.pause, p) == ("FailedPrecondition", "container c1 is paused")
    p.state.require_live(p)  # pids, stats, update, exec: allowed while paused
    p.state.resume(p)
    assert p.state is states.RUNNING
    p.state.exited(p, 0, 1.0)
    assert p.state is states.STOPPED and p.state.finished
    p.state.exited(p, 9, 2.0)  # a second exit is ignored
    p.state.delete(p)
    assert p.state is states.DELETED
    assert p.task.calls == [("start", "c1"), ("pause", "c1"), ("resume", "c1"),
                            ("exit", "c1", 0), ("delete", "c1", False)]


def test_an_exit_ends_paused():
    p = FakeProc(states.PAUSED)
    p.state.exited(p, 137, 1.0)
    assert p.state is states.STOPPED
    assert refused(p.state.resume, p) == ("FailedPrecondition", "container c1 is not paused")


@pytest.mark.parametrize("state,op,args,expected", [
    (states.RUNNING, "start", (), ("FailedPrecondition", "process c1 already started")),
    (states.STOPPED, "start", (), ("FailedPrecondition", "process c1 already started")),
    (states.CREATED, "pause", (), ("FailedPrecondition", "container c1 is not running")),
    (states.STOPPED, "pause", (), ("FailedPrecondition", "container c1 is not running")),
    (states.RUNNING, "resume", (), ("FailedPrecondition", "container c1 is not paused")),
    (states.CREATED, "require_live", (), ("FailedPrecondition", "container c1 is not running")),
    (states.STOPPED, "require_live", (), ("FailedPrecondition", "container c1 is not running")),
    (states.RUNNING, "delete", (),
     ("FailedPrecondition", "task must be stopped before deletion: running")),
    (states.PAUSED, "delete", (),
     ("FailedPrecondition", "task must be stopped before deletion: paused")),
    (states.STOPPED, "kill", (9, False), ("NotFound", "process already finished")),
    (states.DELETED, "kill", (9, True), ("NotFound", "process already finished")),
])
def test_init_refusals(state, op, args, expected):
    p = FakeProc(state)
    assert refused(getattr(state, op), p, *args) == expected
    assert p.state is state and p.task.calls == []


def test_kill_of_the_init_by_state():
    p = FakeProc(states.CREATED)
    p.state.kill(p, 15, False)
    p.state.kill(p, 9, True)
    assert p.task.calls == [("kill", "c1", "15"), ("kill", "--all", "c1", "9")]
    p = FakeProc(states.PAUSED)
    p.state.kill(p, 9, True)
    assert p.task.calls == [("kill", "--all", "c1", "9")]


def test_exec_states():
    p = FakeProc(states.CREATED, "e1")
    assert refused(p.state.kill, p, 9, True) == ("FailedPrecondition", "process e1 has not started")
    p.state.start(p)
    assert p.state is states.RUNNING
    assert refused(p.state.delete, p) == (
        "FailedPrecondition", "process e1 must be stopped before deletion: running")
    p.state.exited(p, 0, 1.0)
    p.state.delete(p)
    assert p.state is states.DELETED and p.task.calls[-1] == ("delete", "e1", False)
    q = FakeProc(states.CREATED, "e2")
    q.state.delete(q)  # an exec never started may be deleted
    assert q.task.calls == [("delete", "e2", True)]
