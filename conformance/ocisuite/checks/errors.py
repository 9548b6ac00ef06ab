"""Errors the operations MUST generate (runtime.md#operations, #errors), and that
a refused operation MUST have no effect on the container."""

from __future__ import annotations

import time

from .. import host
from ..registry import MUST, check, expect, expect_eq
from .common import (created, expect_create_error, expect_error, expect_no_container,
                     running, sleeper, stopped, wait_file)


def _unchanged(c, status: str, pid=None) -> None:
    st = c.state()
    expect(st is not None, "the container vanished after the refused operation")
    expect_eq(st.get("status"), status, "status after the refused operation")
    if pid is not None:
        expect_eq(st.get("pid"), pid, "pid after the refused operation")
        expect(host.pid_alive(pid), f"the container process {pid} died")


# -- start ---------------------------------------------------------------------------

@check("errors.start-running", "runtime.md#start", MUST,
       "start of a running container MUST generate an error and have no effect")
def start_running(s):
    b, c = running(s)
    pid = c.state()["pid"]
    expect_error(c.start(), "second start")
    _unchanged(c, "running", pid)


@check("errors.start-stopped", "runtime.md#start", MUST,
       "start of a stopped container MUST generate an error and have no effect")
def start_stopped(s):
    b, c = stopped(s)
    (b.rootfs / "started").unlink()
    expect_error(c.start(), "start of a stopped container")
    time.sleep(0.2)
    expect(not (b.rootfs / "started").exists(), "the program ran again")
    _unchanged(c, "stopped")


@check("errors.start-unknown", "runtime.md#start", MUST,
       "start of a container that does not exist MUST generate an error")
def start_unknown(s):
    expect_error(s.runtime.start(s.new_id()), "start of an unknown id")


@check("errors.start-no-id", "runtime.md#start", MUST,
       "start without a container ID MUST generate an error")
def start_no_id(s):
    expect_error(s.runtime.run("start"), "start without an id")


@check("errors.start-no-process", "runtime.md#start", MUST,
       "start MUST generate an error if process was not set")
def start_no_process(s):
    b, c = sleeper(s)
    del b.config["process"]
    res = c.create()
    s.diag(f"create without process: {res.summary()}")
    expect_error(c.start(), "start of a container without process")
    if res.ok:
        _unchanged(c, "created")


# -- kill ----------------------------------------------------------------------------

@check("errors.kill-stopped", "runtime.md#kill", MUST,
       "kill of a stopped container MUST generate an error and have no effect")
def kill_stopped(s):
    b, c = stopped(s)
    expect_error(c.kill(9), "kill of a stopped container")
    _unchanged(c, "stopped")


@check("errors.kill-unknown", "runtime.md#kill", MUST,
       "kill of a container that does not exist MUST generate an error")
def kill_unknown(s):
    expect_error(s.runtime.kill(s.new_id(), 9), "kill of an unknown id")


@check("errors.kill-no-id", "runtime.md#kill", MUST,
       "kill without a container ID MUST generate an error")
def kill_no_id(s):
    expect_error(s.runtime.run("kill"), "kill without an id")


# -- delete --------------------------------------------------------------------------

@check("errors.delete-running", "runtime.md#delete", MUST,
       "delete of a running container MUST generate an error and have no effect")
def delete_running(s):
    b, c = running(s)
    pid = c.state()["pid"]
    expect_error(c.delete(), "delete of a running container")
    _unchanged(c, "running", pid)


@check("errors.delete-created", "runtime.md#delete", MUST,
       "delete of a created container MUST generate an error and have no effect")
def delete_created(s):
    b, c = created(s)
    pid = c.state()["pid"]
    expect_error(c.delete(), "delete of a created container")
    _unchanged(c, "created", pid)


@check("errors.delete-unknown", "runtime.md#delete", MUST,
       "delete of a container that does not exist MUST generate an error")
def delete_unknown(s):
    expect_error(s.runtime.delete(s.new_id()), "delete of an unknown id")


@check("errors.delete-no-id", "runtime.md#delete", MUST,
       "delete without a container ID MUST generate an error")
def delete_no_id(s):
    expect_error(s.runtime.run("delete"), "delete without an id")


# -- create --------------------------------------------------------------------------

@check("errors.create-duplicate", "runtime.md#create", MUST,
       "create with an ID already in use MUST generate an error; no new container")
def create_duplicate(s):
    b, c = created(s)
    pid = c.state()["pid"]
    b2, c2 = sleeper(s)
    c2.id = c.id
    b2.write()
    res = c2.create(write=False)
    expect_error(res, "create with a duplicate id")
    _unchanged(c, "created", pid)
    expect_eq(c.state().get("bundle", "").rstrip("/"), str(b.path), "bundle of the original")
    expect(not host.processes_inside(b2.rootfs), "a process runs in the second bundle")
    c.must_start()
    expect(wait_file(b.rootfs / "started"), "the original container no longer starts")


@check("errors.create-no-id", "runtime.md#create", MUST,
       "create without a container ID MUST generate an error")
def create_no_id(s):
    b, c = sleeper(s)
    b.write()
    res = s.runtime.run("create", "--bundle", str(b.path))
    expect_error(res, "create without an id")
    expect(not host.processes_inside(b.rootfs), "a process was started anyway")


@check("errors.create-no-bundle", "runtime.md#create", MUST,
       "create with a bundle path that does not exist MUST generate an error")
def create_no_bundle(s):
    cid = s.new_id()
    missing = s.workdir / "no-such-bundle"
    expect_error(s.runtime.run("create", "--bundle", str(missing), cid), "create")
    expect_no_container(s, cid, "create with a missing bundle")


@check("errors.create-clean-failure", "runtime.md#errors", MUST,
       "a failed create MUST leave the environment as if never attempted; the ID is reusable")
def create_clean_failure(s):
    b, c = sleeper(s)
    # Fails late: after namespaces, cgroups and the other mounts are set up.
    b.add_mount("/data", "none", str(b.path / "no-such-source"), ["rbind"])
    b.linux["cgroupsPath"] = "/" + s.new_id()
    c, _ = expect_create_error(s, b, "create with a missing bind source")
    b2, c2 = sleeper(s)
    c2.id = c.id
    res = c2.create()
    expect(res.ok, f"the id of the failed create cannot be reused: {res.summary()}")
