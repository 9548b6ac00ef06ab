"""Lifecycle (runtime.md#lifecycle, #create, #start, #kill, #delete): each
operation succeeds in the state where the spec allows it and leaves the
container in the state the spec names."""

from __future__ import annotations

import os
import time

from .. import host
from ..registry import MUST, check, expect, expect_eq
from .common import created, realpath, running, sleeper, stopped, wait_file


@check("lifecycle.create-created", "runtime.md#create", MUST,
       "create MUST create a new container, whose state is 'created'")
def create_created(s):
    b, c = created(s)
    st = c.state()
    expect(st is not None, "state of the created container failed")
    expect_eq(st.get("status"), "created", "status after create")
    expect_eq(st.get("id"), c.id, "id after create")


@check("lifecycle.create-not-run", "runtime.md#create", MUST,
       "process.args MUST NOT be applied until triggered by start")
def create_not_run(s):
    b, c = created(s)
    time.sleep(0.3)
    expect(not (b.rootfs / "started").exists(), "the user program ran before start")
    expect_eq(c.status(), "created", "status 0.3s after create")


@check("lifecycle.start-runs", "runtime.md#start", MUST,
       "start MUST run the user-specified program; the state becomes 'running'")
def start_runs(s):
    b, c = created(s)
    c.must_start()
    expect(wait_file(b.rootfs / "started"), "the user program did not run after start")
    expect_eq(c.status(), "running", "status of a started container")


@check("lifecycle.exit-stopped", "runtime.md#state", MUST,
       "when the container process exits the state is 'stopped'")
def exit_stopped(s):
    stopped(s)


@check("lifecycle.kill-signal", "runtime.md#kill", MUST,
       "kill MUST send the specified signal to the container process")
def kill_signal(s):
    b, c = running(s)
    res = c.kill(15)
    expect(res.ok, f"kill TERM of a running container failed: {res.summary()}")
    expect(wait_file(b.rootfs / "got-term"), "the container process never got SIGTERM")
    st = c.wait_status("stopped")
    expect_eq(st and st.get("status"), "stopped", "status after the program exited on SIGTERM")


@check("lifecycle.kill-running-stopped", "runtime.md#kill", MUST,
       "kill SIGKILL of a running container stops it (state 'stopped')")
def kill_running(s):
    b, c = running(s)
    res = c.kill(9)
    expect(res.ok, f"kill KILL failed: {res.summary()}")
    st = c.wait_status("stopped")
    expect_eq(st and st.get("status"), "stopped", "status after SIGKILL")


@check("lifecycle.kill-created", "runtime.md#kill", MUST,
       "kill of a 'created' container MUST send the signal (SIGKILL stops it)")
def kill_created(s):
    b, c = created(s)
    res = c.kill(9)
    expect(res.ok, f"kill of a created container failed: {res.summary()}")
    st = c.wait_status("stopped")
    expect_eq(st and st.get("status"), "stopped", "status after SIGKILL of a created container")
    expect(not (b.rootfs / "started").exists(), "the user program ran although never started")


@check("lifecycle.delete-stopped", "runtime.md#delete", MUST,
       "delete of a stopped container succeeds and the container no longer exists")
def delete_stopped(s):
    b, c = stopped(s)
    res = c.delete()
    expect(res.ok, f"delete of a stopped container failed: {res.summary()}")
    expect(c.state() is None, "state still answers after delete")


@check("lifecycle.delete-resources", "runtime.md#delete", MUST,
       "delete MUST delete the resources created during create (processes, mounts, cgroups)")
def delete_resources(s):
    b, c = created(s, "echo started > /started; sleep 600")
    st = c.state() or {}
    pid = st.get("pid")
    expect(isinstance(pid, int) and pid > 0, f"no pid in the state of a created container: {st}")
    cgroups = {k: d for k, d in host.cgroup_dirs(host.cgroup_membership(pid)).items()
               if host.cgroup_membership("self").get(k) != host.cgroup_membership(pid).get(k)}
    c.must_start()
    c.kill(9)
    c.wait_status("stopped")
    res = c.delete()
    expect(res.ok, f"delete failed: {res.summary()}")
    deadline = time.monotonic() + 2
    while host.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    expect(not host.pid_alive(pid), f"container process {pid} still alive after delete")
    left = host.processes_inside(b.rootfs)
    expect(not left, f"processes left inside the rootfs after delete: {left}")
    mounts = host.mounts_under(b.path)
    expect(not mounts, f"mounts left under the bundle after delete: {mounts}")
    s.diag(f"container cgroups: {sorted(str(d) for d in cgroups.values())}")
    kept = [str(d) for d in cgroups.values() if d.exists()]
    expect(not kept, f"cgroups left after delete: {kept}")


@check("lifecycle.delete-keeps-others", "runtime.md#delete", MUST,
       "resources associated with the container but not created by it MUST NOT be deleted")
def delete_keeps_others(s):
    b, c = sleeper(s)
    src = b.path / "volume"
    src.mkdir()
    (src / "keep").write_text("kept\n")
    b.add_mount("/data", "none", str(src), ["rbind", "rw"])
    holder = host.namespace_holder(s, ["ipc"])
    b.linux["namespaces"] = [n for n in b.linux["namespaces"] if n["type"] != "ipc"]
    b.linux["namespaces"].append({"type": "ipc", "path": f"/proc/{holder}/ns/ipc"})
    c.must_create()
    c.must_start()
    c.kill(9)
    c.wait_status("stopped")
    res = c.delete()
    expect(res.ok, f"delete failed: {res.summary()}")
    expect((src / "keep").is_file(), "the bind-mount source's content was deleted")
    expect((b.rootfs / "bin" / "busybox").is_file(), "the rootfs content was deleted")
    expect((b.path / "config.json").is_file(), "the bundle's config.json was deleted")
    expect(host.pid_alive(holder), "the process holding the joined ipc namespace was killed")


@check("lifecycle.config-frozen", "runtime.md#lifecycle", MUST,
       "updates to config.json after create MUST NOT affect the container")
def config_frozen(s):
    b, c = sleeper(s, "echo original > /which")
    c.must_create()
    b.set_script("echo changed > /which")
    b.config["hostname"] = "changed"
    b.write()
    c.must_start()
    expect(wait_file(b.rootfs / "which"), "the container program did not run")
    time.sleep(0.05)
    expect_eq((b.rootfs / "which").read_text().strip(), "original",
              "program run after config.json changed")


@check("lifecycle.bundle-absolute", "runtime.md#state", MUST,
       "state.bundle is the absolute path of the bundle, also when create got a relative one")
def bundle_absolute(s):
    b, c = sleeper(s)
    b.write()
    res = c.create(write=False, cwd=str(b.path.parent), bundle_arg=b.path.name)
    expect(res.ok, f"create with a relative --bundle failed: {res.summary()}")
    st = c.state() or {}
    bundle = st.get("bundle", "")
    expect(os.path.isabs(bundle), f"state.bundle is not absolute: {bundle!r}")
    expect_eq(realpath(bundle), realpath(b.path), "state.bundle")
