"""The states of a shim's process, one object per state (containerd's runc shim has the same in
``process/init_state.go`` and ``exec_state.go``).

A process (:class:`supervisor.shim.task.Process`) always holds one of the five state objects
below, and every request for it goes to its state: the state either does the work, through the
process's task (which runs the OCI runtime and owns the files), and moves the process on, or
refuses with the error the daemon passes to its client. :class:`State` refuses everything, so what
a state allows is exactly what it overrides::

    state     start  kill               pause  resume  exec, pids, stats, update  delete
    created   yes    init: runtime kill  -      -       -                          yes (force)
    running   -      signal             yes    -       yes                        exec: no
    paused    -      signal             -      yes     yes                        -
    stopped   -      NotFound           -      -       -                          yes
    deleted   -      NotFound           -      -       -                          -

``kill --all`` of the init goes through the runtime in every state but stopped and deleted.
"paused" is a state of the init process only (the runtime froze the container's cgroup): an
exec'd process of a paused container stays "running", as in containerd. An exit moves any live
state to "stopped" (so an exit also ends "paused": there is no flag to reset).
"""
from __future__ import annotations

import os


class ShimError(Exception):
    """A refused or failed request; ``code`` names the gRPC status the daemon returns."""

    def __init__(self, code: str, msg: str):
        super().__init__(msg)
        self.code = code


def _precondition(msg: str) -> ShimError:
    return ShimError("FailedPrecondition", msg)


class State:
    """Refuses every operation; the states below override what they allow."""

    name = ""
    finished = False  # the process has exited (its exit is recorded)

    def start(self, p) -> None:
        raise _precondition(f"process {p.name} already started")

    def kill(self, p, sig: int, all_: bool) -> None:
        if all_ and p.is_init:
            p.task.runtime_call("kill", "--all", p.task.id, str(sig))
            return
        try:
            os.kill(p.pid, sig)  # still our unreaped child: the pid cannot be reused
        except ProcessLookupError:
            raise ShimError("NotFound", "process already finished") from None

    def pause(self, p) -> None:
        raise _precondition(f"container {p.task.id} is not running")

    def resume(self, p) -> None:
        raise _precondition(f"container {p.task.id} is not paused")

    def require_live(self, p) -> None:
        """May the container be inspected, updated or get an exec (running or paused)?"""
        raise _precondition(f"container {p.task.id} is not running")

    def delete(self, p) -> None:
        if p.is_init:
            raise _precondition(f"task must be stopped before deletion: {self.name}")
        raise _precondition(f"process {p.exec_id} must be stopped before deletion: {self.name}")

    def exited(self, p, status: int, when: float) -> None:
        p.state = STOPPED
        p.task.on_exit(p, status, when)


class Created(State):
    name = "created"

    def start(self, p) -> None:
        p.task.start_process(p)
        if p.state is self:  # not already stopped (it may exit before start returns)
            p.state = RUNNING

    def kill(self, p, sig: int, all_: bool) -> None:
        if not p.is_init:
            raise _precondition(f"process {p.exec_id} has not started")
        if all_:
            p.task.runtime_call("kill", "--all", p.task.id, str(sig))
        else:
            p.task.runtime_call("kill", p.task.id, str(sig))

    def delete(self, p) -> None:
        p.task.delete_process(p, force=True)
        p.state = DELETED


class Running(State):
    name = "running"

    def pause(self, p) -> None:
        p.task.runtime_call("pause", p.task.id)
        if p.state is self:
            p.state = PAUSED

    def require_live(self, p) -> None:
        pass


class Paused(State):
    name = "paused"

    def pause(self, p) -> None:
        raise _precondition(f"container {p.task.id} is paused")

    def resume(self, p) -> None:
        p.task.runtime_call("resume", p.task.id)
        if p.state is self:
            p.state = RUNNING

    def require_live(self, p) -> None:
        pass


class Stopped(State):
    name = "stopped"
    finished = True

    def kill(self, p, sig: int, all_: bool) -> None:
        raise ShimError("NotFound", "process already finished")

    def delete(self, p) -> None:
        p.task.delete_process(p, force=False)
        p.state = DELETED

    def exited(self, p, status: int, when: float) -> None:
        pass  # the first exit seen is the exit


class Deleted(Stopped):
    name = "deleted"

    def delete(self, p) -> None:
        raise ShimError("NotFound", f"process {p.name} not found")


CREATED, RUNNING, PAUSED, STOPPED, DELETED = Created(), Running(), Paused(), Stopped(), Deleted()
