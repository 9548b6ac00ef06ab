"""Hooks (config.md#posix-platform-hooks, runtime.md#lifecycle steps 3-13).

Every hook is the same small shell script, `hook.sh NAME DIR [EXIT [SLEEP]]`,
which saves its stdin (the state), its namespaces, its environment and, when
the state has a pid, that process's command line, then appends NAME to
DIR/order (and with SLEEP becomes `sleep`, so that aborting the hook process
ends it: no child keeps the runtime's pipes open).  Runtime-namespace hooks and
createContainer (whose path resolves in the runtime namespace, before
pivot_root) run the host copy with the host path of DIR; startContainer (path
resolved in the container) runs the copy inside the rootfs with DIR as seen
from the container.  DIR is <rootfs>/hooks/log, so all hooks append to one
order file.

One container walks the whole lifecycle with two hooks per phase; the order
file is read after each operation returns.
"""

from __future__ import annotations

import json
import os
import time

from .. import host
from ..registry import MUST, check, expect, expect_eq
from .common import (expect_create_error, expect_error, expect_no_container, realpath,
                     wait_file)

HOOK_SCRIPT = """#!/bin/sh
# ocisuite hook: hook.sh NAME DIR [EXIT [SLEEP]] -- record this invocation
name=$1
dir=$2
cat > "$dir/$name.stdin"
for ns in mnt pid net ipc uts; do echo "$ns $(readlink /proc/self/ns/$ns)"; done > "$dir/$name.ns"
env > "$dir/$name.env"
pid=$(sed -n 's/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p' "$dir/$name.stdin" | head -n 1)
if [ -n "$pid" ]; then tr '\\0' ' ' < /proc/$pid/cmdline > "$dir/$name.cmdline" 2>/dev/null; fi
echo "$name" >> "$dir/order"
if [ -n "$4" ]; then exec sleep "$4"; fi
exit "${3:-0}"
"""

PHASES = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop"]
RUNTIME_NS = ["prestart", "createRuntime", "poststart", "poststop"]
CONTAINER_NS = ["createContainer", "startContainer"]
STATUS = {"prestart": "creating", "createRuntime": "creating", "createContainer": "creating",
          "startContainer": "created", "poststart": "running", "poststop": "stopped"}
HOST_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "OCISUITE_HOOK=set"]
ANNOTATIONS = {"org.example.ocisuite.hooks": "yes"}
LEAK_VAR = "OCISUITE_RUNTIME_ONLY"


class HookBundle:
    """A bundle with hook scripts installed and a hook log directory."""

    def __init__(self, s):
        self.b = s.bundle()
        self.log = self.b.rootfs / "hooks" / "log"
        self.log.mkdir(parents=True)
        os.chmod(self.log, 0o777)
        self.host_script = self.b.path / "hook.sh"
        self.inner_script = self.b.rootfs / "hooks" / "hook.sh"
        for path in (self.host_script, self.inner_script):
            path.write_text(HOOK_SCRIPT)
            path.chmod(0o755)

    def entry(self, phase: str, name: str, exit_code: int = 0, sleep: int = 0,
              timeout: int | None = None) -> dict:
        inside = phase == "startContainer"
        path = "/hooks/hook.sh" if inside else str(self.host_script)
        logdir = "/hooks/log" if inside else str(self.log)
        args = ["hook.sh", name, logdir, str(exit_code)] + ([str(sleep)] if sleep else [])
        env = ["PATH=/bin", "OCISUITE_HOOK=set"] if inside else list(HOST_ENV)
        hook = {"path": path, "args": args, "env": env}
        if timeout is not None:
            hook["timeout"] = timeout
        return hook

    def add(self, phase: str, name: str | None = None, **kw) -> None:
        hooks = self.b.config.setdefault("hooks", {})
        hooks.setdefault(phase, []).append(self.entry(phase, name or phase, **kw))

    def order(self) -> list[str]:
        try:
            return (self.log / "order").read_text().split()
        except FileNotFoundError:
            return []

    def read(self, name: str, kind: str) -> str | None:
        try:
            return (self.log / f"{name}.{kind}").read_text()
        except FileNotFoundError:
            return None


def hook_walk(s) -> dict:
    """One container through create, start, kill and delete with two hooks per phase."""
    def compute():
        hb = HookBundle(s)
        b = hb.b
        for phase in PHASES:
            hb.add(phase, f"{phase}.1")
            hb.add(phase, f"{phase}.2")
        b.config["annotations"] = dict(ANNOTATIONS)
        b.set_script("cat /hooks/log/order > /hooks/log/program.saw; echo started > /started; "
                     "while :; do sleep 0.1; done")
        c = s.container(b)
        walk = {"id": c.id, "bundle": str(b.path), "hb": hb}
        res = c.create(env=dict(os.environ, **{LEAK_VAR: "leaked"}))
        expect(res.ok, f"create with hooks failed: {res.summary()}")
        walk["after_create"] = hb.order()
        st = c.state() or {}
        walk["pid"] = st.get("pid")
        walk["container_ns"] = _ns_of(walk["pid"])
        res = c.start()
        expect(res.ok, f"start with hooks failed: {res.summary()}")
        walk["after_start"] = hb.order()
        wait_file(b.rootfs / "started")
        walk["program_saw"] = (hb.read("program", "saw") or "").split()
        c.kill(9)
        c.wait_status("stopped")
        walk["before_delete"] = hb.order()
        res = c.delete()
        expect(res.ok, f"delete with hooks failed: {res.summary()}")
        walk["after_delete"] = hb.order()
        walk["files"] = {f"{p}.{i}": {k: hb.read(f"{p}.{i}", k)
                                      for k in ("stdin", "ns", "env", "cmdline")}
                         for p in PHASES for i in (1, 2)}
        return walk
    return s.cached("hooks-walk", compute)


def _ns_of(pid) -> dict[str, str]:
    out = {}
    for ns in ("mnt", "pid", "net", "ipc", "uts"):
        try:
            out[ns] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except (OSError, TypeError):
            out[ns] = "?"
    return out


def _hook_ns(walk, name) -> dict[str, str]:
    text = walk["files"][name]["ns"] or ""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def _state_of(walk, name) -> dict:
    text = walk["files"][name]["stdin"]
    expect(text is not None, f"hook {name} did not run")
    try:
        data = json.loads(text)
    except ValueError as exc:
        expect(False, f"hook {name} got no JSON on stdin ({exc}): {text[:200]!r}")
    expect(isinstance(data, dict), f"hook {name} got {text[:200]!r} on stdin")
    return data


def _names(*phases) -> list[str]:
    return [f"{p}.{i}" for p in phases for i in (1, 2)]


# -- order --------------------------------------------------------------------------------

@check("hooks.create-order", "config.md#posix-platform-hooks", MUST,
       "create calls prestart, createRuntime, then createContainer hooks, each in listed order")
def create_order(s):
    expect_eq(hook_walk(s)["after_create"], _names("prestart", "createRuntime", "createContainer"),
              "hooks run when create returned")


@check("hooks.start-order", "config.md#posix-platform-hooks", MUST,
       "start calls startContainer, then poststart hooks in listed order, before it returns")
def start_order(s):
    walk = hook_walk(s)
    expect_eq(walk["after_start"][len(walk["after_create"]):],
              _names("startContainer", "poststart"), "hooks run by start")


@check("hooks.start-before-program", "config.md#startcontainer-hooks", MUST,
       "startContainer hooks MUST be called before the user-specified process is executed")
def start_before_program(s):
    saw = hook_walk(s)["program_saw"]
    expect(all(n in saw for n in _names("startContainer")),
           f"when the program started, the hooks run were {saw}")


@check("hooks.poststart-after-exec", "config.md#poststart", MUST,
       "poststart hooks MUST be called after the user-specified process is executed")
def poststart_after_exec(s):
    walk = hook_walk(s)
    for name in _names("poststart"):
        cmdline = walk["files"][name]["cmdline"]
        expect(cmdline is not None and cmdline.startswith("sh -c "),
               f"{name}: the state's pid was running {cmdline!r}, not the user program")


@check("hooks.poststop-on-delete", "config.md#poststop", MUST,
       "poststop hooks MUST be called by delete, after the container is deleted, before it returns")
def poststop_on_delete(s):
    walk = hook_walk(s)
    expect(not any(n.startswith("poststop") for n in walk["before_delete"]),
           f"poststop ran before delete: {walk['before_delete']}")
    expect_eq(walk["after_delete"][len(walk["before_delete"]):], _names("poststop"),
              "hooks run by delete")


# -- the state on stdin ------------------------------------------------------------------

@check("hooks.stdin-schema", "config.md#posix-platform-hooks", MUST,
       "the state MUST be passed to hooks over stdin (valid against state-schema.json)")
def stdin_schema(s):
    walk = hook_walk(s)
    for name in _names(*PHASES):
        errors = s.spec.validate(_state_of(walk, name), "state-schema.json")
        expect(not errors, f"{name}: stdin breaks state-schema.json: {'; '.join(errors)}")


@check("hooks.stdin-fields", "config.md#posix-platform-hooks", MUST,
       "the state on stdin has the container's id, bundle and annotations")
def stdin_fields(s):
    walk = hook_walk(s)
    for name in _names(*PHASES):
        st = _state_of(walk, name)
        expect_eq(st.get("id"), walk["id"], f"{name}: id")
        expect_eq(realpath(st.get("bundle", "")), realpath(walk["bundle"]), f"{name}: bundle")
        expect_eq(st.get("annotations"), ANNOTATIONS, f"{name}: annotations")


@check("hooks.stdin-status", "runtime.md#state", MUST,
       "the state on stdin has the status of that moment: creating, created, running, stopped")
def stdin_status(s):
    walk = hook_walk(s)
    wrong = {n: _state_of(walk, n).get("status") for n in _names(*PHASES)
             if _state_of(walk, n).get("status") != STATUS[n.split(".")[0]]}
    expect(not wrong, f"status on stdin (want {STATUS}): {wrong}")


@check("hooks.stdin-pid-runtime", "runtime.md#state", MUST,
       "for hooks in the runtime namespace, pid is the container process as seen by the runtime")
def stdin_pid_runtime(s):
    walk = hook_walk(s)
    for name in _names("prestart", "createRuntime", "poststart"):
        expect_eq(_state_of(walk, name).get("pid"), walk["pid"], f"{name}: pid")


@check("hooks.stdin-pid-container", "runtime.md#state", MUST,
       "for hooks in the container namespace, pid is the process as seen by the container")
def stdin_pid_container(s):
    walk = hook_walk(s)
    for name in _names(*CONTAINER_NS):
        expect_eq(_state_of(walk, name).get("pid"), 1, f"{name}: pid (new pid namespace)")


# -- where hooks run, with what ------------------------------------------------------------

@check("hooks.runtime-namespace", "config.md#posix-platform-hooks", MUST,
       "prestart, createRuntime, poststart and poststop hooks MUST run in the runtime namespace")
def runtime_namespace(s):
    walk = hook_walk(s)
    mine = _ns_of("self")
    for name in _names(*RUNTIME_NS):
        ns = _hook_ns(walk, name)
        expect(ns, f"hook {name} did not record its namespaces")
        differ = {k: v for k, v in ns.items() if mine.get(k) != v}
        expect(not differ, f"{name} ran outside the runtime namespace: {differ}")


@check("hooks.container-namespace", "config.md#posix-platform-hooks", MUST,
       "createContainer and startContainer hooks MUST run in the container namespace")
def container_namespace(s):
    walk = hook_walk(s)
    theirs = walk["container_ns"]
    for name in _names(*CONTAINER_NS):
        ns = _hook_ns(walk, name)
        expect(ns, f"hook {name} did not record its namespaces")
        differ = {k: (v, theirs.get(k)) for k, v in ns.items() if theirs.get(k) != v}
        expect(not differ, f"{name} ran outside the container namespace "
               f"(hook's, container's): {differ}")


@check("hooks.env", "config.md#posix-platform-hooks", MUST,
       "a hook's environment is its env (the runtime's own variables are not passed on)")
def hooks_env(s):
    walk = hook_walk(s)
    for name in _names(*PHASES):
        env = (walk["files"][name]["env"] or "").splitlines()
        expect("OCISUITE_HOOK=set" in env, f"{name}: OCISUITE_HOOK=set missing from {env}")
        leaked = [e for e in env if e.startswith(LEAK_VAR + "=")]
        expect(not leaked, f"{name}: the runtime's environment leaked: {leaked}")


# -- failing hooks --------------------------------------------------------------------------

def _failing_create(s, phase: str):
    hb = HookBundle(s)
    hb.add(phase, f"{phase}.fail", exit_code=1)
    hb.add("poststop", "poststop.1")
    hb.b.linux["cgroupsPath"] = "/" + s.new_id()
    c, _ = expect_create_error(s, hb.b, f"create with a failing {phase} hook")
    return hb, c


def _register_create_failure(phase: str) -> None:
    @check(f"hooks.{phase.lower()}-fails", "runtime.md#lifecycle", MUST,
           f"a failing {phase} hook: the runtime MUST generate an error and stop the container")
    def failing(s):
        _failing_create(s, phase)


for _phase in ("prestart", "createRuntime", "createContainer"):
    _register_create_failure(_phase)


@check("hooks.failure-poststop", "runtime.md#lifecycle", MUST,
       "after a failing createRuntime hook the lifecycle continues at step 12: poststop hooks run")
def failure_poststop(s):
    hb, _ = _failing_create(s, "createRuntime")
    expect("poststop.1" in hb.order(), f"hooks run: {hb.order()} (no poststop)")


def _failing_start(s, phase: str):
    hb = HookBundle(s)
    hb.add(phase, f"{phase}.fail", exit_code=1)
    hb.b.set_script("echo started > /started; while :; do sleep 0.1; done")
    c = s.container(hb.b)
    c.must_create()
    pid = (c.state() or {}).get("pid")
    expect_error(c.start(), f"start with a failing {phase} hook")
    deadline = time.monotonic() + 3
    while pid and host.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    expect(not (pid and host.pid_alive(pid)), f"the container process {pid} still runs")
    st = c.state()
    expect(st is None or st.get("status") == "stopped", f"state after the failed start: {st}")
    return hb, c


@check("hooks.startcontainer-fails", "runtime.md#lifecycle", MUST,
       "a failing startContainer hook: start MUST generate an error, the program does not run")
def startcontainer_fails(s):
    hb, c = _failing_start(s, "startContainer")
    expect(not (hb.b.rootfs / "started").exists(), "the user program ran")


@check("hooks.poststart-fails", "runtime.md#lifecycle", MUST,
       "a failing poststart hook: start MUST generate an error and stop the container")
def poststart_fails(s):
    _failing_start(s, "poststart")


@check("hooks.poststop-fails", "runtime.md#lifecycle", MUST,
       "a failing poststop hook is a warning: delete succeeds and later poststop hooks run")
def poststop_fails(s):
    hb = HookBundle(s)
    hb.add("poststop", "poststop.fail", exit_code=1)
    hb.add("poststop", "poststop.2")
    c = s.container(hb.b)
    c.run(delete=False)
    res = c.delete()
    expect(res.ok, f"delete with a failing poststop hook failed: {res.summary()}")
    expect_eq(hb.order(), ["poststop.fail", "poststop.2"], "poststop hooks run")
    expect_no_container(s, c.id, "after delete")


@check("hooks.timeout", "config.md#posix-platform-hooks", MUST,
       "a hook running past its timeout is aborted and the operation fails")
def timeout(s):
    hb = HookBundle(s)
    hb.add("createRuntime", "createRuntime.slow", sleep=30, timeout=1)
    started = time.monotonic()
    expect_create_error(s, hb.b, "create with a hook that outlives its timeout")
    took = time.monotonic() - started
    expect(took < 10, f"create took {took:.1f}s with a 1s hook timeout")


@check("hooks.timeout-zero", "config.md#posix-platform-hooks", MUST,
       "timeout MUST be greater than zero: a zero timeout MUST generate an error")
def timeout_zero(s):
    hb = HookBundle(s)
    hb.add("createRuntime", "createRuntime.zero", timeout=0)
    expect_create_error(s, hb.b, "create with a hook timeout of 0")


@check("hooks.path-relative", "config.md#posix-platform-hooks", MUST,
       "a hook path MUST be absolute: a relative one MUST generate an error")
def path_relative(s):
    hb = HookBundle(s)
    hb.add("createRuntime", "createRuntime.rel")
    hb.b.config["hooks"]["createRuntime"][0]["path"] = "hook.sh"
    expect_create_error(s, hb.b, "create with a relative hook path")
