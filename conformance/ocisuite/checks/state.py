"""State (runtime.md#state, #query-state): the JSON `state` prints at each step
of one container's life, its required properties, and its schema."""

from __future__ import annotations

import os

from .. import host
from ..registry import MUST, check, expect, expect_eq
from .common import SLEEPER, expect_error, realpath, wait_file

ANNOTATIONS = {"org.example.ocisuite.key": "value", "org.example.ocisuite.empty": ""}


def state_walk(s) -> dict:
    """One container through created -> running -> stopped; the states seen."""
    def compute():
        b = s.bundle()
        b.set_script(SLEEPER)
        b.config["annotations"] = dict(ANNOTATIONS)
        c = s.container(b)
        c.must_create()
        walk = {"id": c.id, "bundle": str(b.path), "created": c.state()}
        pid = (walk["created"] or {}).get("pid")
        walk["created_alive"] = isinstance(pid, int) and host.pid_alive(pid)
        c.must_start()
        wait_file(b.rootfs / "started")
        walk["running"] = c.state()
        pid = (walk["running"] or {}).get("pid")
        walk["running_cmdline"] = _cmdline(pid)
        c.kill(15)
        walk["stopped"] = c.wait_status("stopped")
        c.delete()
        return walk
    return s.cached("state-walk", compute)


def _cmdline(pid) -> list[str]:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1]
    except (OSError, TypeError):
        return []


def _state(s, status: str) -> dict:
    st = state_walk(s)[status]
    expect(st is not None, f"`state` gave no JSON object for the {status} container")
    return st


def _schema(s, status: str) -> None:
    st = _state(s, status)
    errors = s.spec.validate(st, "state-schema.json")
    expect(not errors, f"state of the {status} container breaks state-schema.json: "
           + "; ".join(errors))
    expect_eq(st.get("status"), status, "status")


@check("state.schema-created", "runtime.md#state", MUST,
       "state of a created container MUST adhere to schema/state-schema.json")
def schema_created(s):
    _schema(s, "created")


@check("state.schema-running", "runtime.md#state", MUST,
       "state of a running container MUST adhere to schema/state-schema.json")
def schema_running(s):
    _schema(s, "running")


@check("state.schema-stopped", "runtime.md#state", MUST,
       "state of a stopped container MUST adhere to schema/state-schema.json")
def schema_stopped(s):
    _schema(s, "stopped")


@check("state.required", "runtime.md#state", MUST,
       "state has ociVersion, the container's id and the bundle's absolute path (REQUIRED)")
def required(s):
    walk = state_walk(s)
    for status in ("created", "running", "stopped"):
        st = _state(s, status)
        expect(isinstance(st.get("ociVersion"), str) and st["ociVersion"],
               f"{status}: no ociVersion")
        expect_eq(st.get("id"), walk["id"], f"{status}: id")
        bundle = st.get("bundle", "")
        expect(os.path.isabs(bundle), f"{status}: bundle {bundle!r} is not absolute")
        expect_eq(realpath(bundle), realpath(walk["bundle"]), f"{status}: bundle")


@check("state.pid-created", "runtime.md#state", MUST,
       "pid is REQUIRED when the status is 'created' and is the live container process")
def pid_created(s):
    st = _state(s, "created")
    pid = st.get("pid")
    expect(isinstance(pid, int) and pid > 0, f"created: pid {pid!r}")
    expect(state_walk(s)["created_alive"], f"created: pid {pid} is not a live process")


@check("state.pid-running", "runtime.md#state", MUST,
       "pid is REQUIRED when the status is 'running' and is the process running the program")
def pid_running(s):
    st = _state(s, "running")
    pid = st.get("pid")
    expect(isinstance(pid, int) and pid > 0, f"running: pid {pid!r}")
    cmdline = state_walk(s)["running_cmdline"]
    expect(cmdline[:2] == ["sh", "-c"], f"running: /proc/{pid}/cmdline is {cmdline!r}, "
           "not the user program")


@check("state.annotations", "runtime.md#state", MUST,
       "state.annotations lists the annotations of config.json")
def annotations(s):
    for status in ("created", "running", "stopped"):
        expect_eq(_state(s, status).get("annotations"), ANNOTATIONS, f"{status}: annotations")


@check("state.unknown-id", "runtime.md#query-state", MUST,
       "state of a container that does not exist MUST generate an error")
def unknown_id(s):
    expect_error(s.runtime.run("state", s.new_id()), "state of an unknown id")


@check("state.no-id", "runtime.md#query-state", MUST,
       "state without a container ID MUST generate an error")
def no_id(s):
    expect_error(s.runtime.run("state"), "state without an id")
