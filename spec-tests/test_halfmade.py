"""A ``create`` killed half-way (issue 12): SIGKILL leaves a record that ``delete`` finishes,
SIGTERM, SIGINT and SIGHUP make create tear itself down; nothing of the container may be left
either way — no process (the init, the stage-1 child, a hook and what it started), no cgroup in
any hierarchy, no mount, no state directory.

Each case kills ``pyrunc create`` at a stage it waits for (never a fixed sleep): a hook of each
kind that signals it has started and then blocks, or a phase of ``--debug``'s log (create has
begun; the init is mounting the rootfs; the init is ready).  Hooks carry a marker in their
environment, so their processes are found wherever they were re-parented.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import PYRUNC, base_config, cgroup_leftovers, host_mounts, processes_of

TIMEOUT = 60


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read()
    except OSError:
        return False


def _alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def leftovers(runtime, marker: str) -> dict:
    """Everything of the test's containers still on the host."""
    procs = [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
             and _alive(p) and _environ_has(p, marker.encode())]
    procs += [str(p) for p in processes_of(runtime.prefix)]
    state = os.listdir(runtime.root) if os.path.isdir(runtime.root) else []
    mounts = [m for m in host_mounts() if runtime.tmp in m]
    return {"processes": sorted(set(procs)), "cgroups": cgroup_leftovers(runtime.prefix),
            "state": state, "mounts": mounts}


def wait_for(condition, what: str):
    deadline = time.monotonic() + TIMEOUT
    delay = 0.01
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _hook(tmp_path, marker: str) -> dict:
    """A hook that says it started (a file), then blocks."""
    flag = tmp_path / "hook-started"
    return {"path": "/bin/sh", "args": ["sh", "-c", f"touch {flag}; sleep 300"],
            "env": [f"PYRUNC_TEST_MARK={marker}", "PATH=/bin:/usr/bin"]}


# stage -> (hook kind or None, what to wait for in the debug log or None)
STAGES = {
    "started": (None, "create: start"),
    "rootfs": (None, "init: mounting"),
    "prestart": ("prestart", None),
    "createRuntime": ("createRuntime", None),
    "createContainer": ("createContainer", None),
    "ready": (None, "create: init ready"),
}


def _start_create(runtime, tmp_path, stage: str, marker: str):
    kind, _ = STAGES[stage]
    cfg = base_config(["sleep", "300"])
    if kind:
        cfg["hooks"] = {kind: [_hook(tmp_path, marker)]}
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    err = open(tmp_path / "create.err", "w+")
    proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "--debug", "create", "--bundle",
                             bundle, cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    return cid, proc, err


def _wait_for_stage(tmp_path, stage: str, err):
    kind, phase = STAGES[stage]
    if kind:
        wait_for(lambda: (tmp_path / "hook-started").exists(), f"the {kind} hook")
    else:
        wait_for(lambda: phase in (tmp_path / "create.err").read_text(), f"{phase!r}")


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_then_delete_leaves_nothing(runtime, tmp_path, stage):
    marker = f"{runtime.prefix}-{stage}"
    cid, proc, err = _start_create(runtime, tmp_path, stage, marker)
    try:
        _wait_for_stage(tmp_path, stage, err)
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        res = runtime("state", cid)
        if STAGES[stage][0] in ("prestart", "createRuntime"):
            # the hook (create's child) still runs: the state says what is true, not "stopped"
            assert res.rc == 0 and json.loads(res.out)["status"] == "creating", res
        elif STAGES[stage][0]:
            # a createContainer hook is the init's: the init exits when create's end of the
            # setup channel closes, and its pid namespace takes the hook with it
            assert res.rc == 0 and json.loads(res.out)["status"] in ("creating", "stopped"), res
        res = runtime("delete", "-f", cid)
        assert res.rc == 0 or "does not exist" in res.err, res
        assert leftovers(runtime, marker) == {"processes": [], "cgroups": [], "state": [],
                                              "mounts": []}
    finally:
        proc.kill()
        proc.wait()
        err.close()


@pytest.mark.parametrize("stage", ["started", "prestart", "createContainer"])
def test_plain_delete_finishes_a_killed_create(runtime, tmp_path, stage):
    """Without --force too: a create that died will never finish, nothing is refused."""
    marker = f"{runtime.prefix}-{stage}"
    cid, proc, err = _start_create(runtime, tmp_path, stage, marker)
    try:
        _wait_for_stage(tmp_path, stage, err)
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        st = runtime("state", cid)
        # (a kill that came after create's last record finds a whole container: -f for it)
        finished = st.rc == 0 and json.loads(st.out)["status"] == "created"
        res = runtime("delete", *(["-f"] if finished else []), cid)
        assert res.rc == 0 or "does not exist" in res.err, res
        assert runtime("state", cid).rc == 1
        assert leftovers(runtime, marker) == {"processes": [], "cgroups": [], "state": [],
                                              "mounts": []}
    finally:
        proc.kill()
        proc.wait()
        err.close()


@pytest.mark.parametrize("sig,stage", [
    (signal.SIGTERM, "started"), (signal.SIGTERM, "rootfs"), (signal.SIGTERM, "prestart"),
    (signal.SIGTERM, "createRuntime"), (signal.SIGTERM, "createContainer"),
    (signal.SIGINT, "createRuntime"), (signal.SIGHUP, "createContainer"),
])
def test_signal_tears_create_down(runtime, tmp_path, sig, stage):
    """create exits 128+signal having removed everything itself (no delete needed)."""
    marker = f"{runtime.prefix}-{stage}"
    cid, proc, err = _start_create(runtime, tmp_path, stage, marker)
    try:
        _wait_for_stage(tmp_path, stage, err)
        proc.send_signal(sig)
        rc = proc.wait(timeout=TIMEOUT)
        if rc == 0:     # the signal came after the container was made: it stays, whole
            assert runtime.state(cid)["status"] == "created"
            runtime("delete", "-f", cid, check=True)
        else:
            assert rc == 128 + sig, (tmp_path / "create.err").read_text()[-2000:]
            assert runtime("state", cid).rc == 1
        assert leftovers(runtime, marker) == {"processes": [], "cgroups": [], "state": [],
                                              "mounts": []}
    finally:
        proc.kill()
        proc.wait()
        err.close()


def test_signal_tears_run_down_during_a_hook(runtime, tmp_path):
    marker = f"{runtime.prefix}-run"
    cfg = base_config(["sleep", "300"])
    cfg["hooks"] = {"createRuntime": [_hook(tmp_path, marker)]}
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "run", "--bundle", bundle, cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "hook-started").exists(), "the hook")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
        assert runtime("state", cid).rc == 1
        assert leftovers(runtime, marker) == {"processes": [], "cgroups": [], "state": [],
                                              "mounts": []}
    finally:
        proc.kill()
        proc.wait()


def test_a_state_directory_without_state_is_deleted(runtime):
    """create killed between its mkdir and its first record: delete removes the directory."""
    cid = runtime.new_id()
    os.makedirs(os.path.join(runtime.root, cid))
    assert runtime("state", cid).rc == 1
    runtime("delete", cid, check=True)
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --- the debug stop point: every stage, deterministically --------------------------------------

DEBUG_STAGES = ["claimed", "cgroup", "rootfs", "init", "ready"]


def _start_stopped_create(runtime, tmp_path, stage: str):
    """``pyrunc create`` blocked at ``stage`` (PYRUNC_DEBUG_STOP_AT, see pyrunc.debugstop),
    its cgroup under a parent no other container uses: the parents must go too."""
    note = tmp_path / "stopped"
    cfg = base_config(["sleep", "300"])
    cid = runtime.new_id()
    cfg["linux"]["cgroupsPath"] = f"/{runtime.prefix}-parent/sub/{cid}"
    bundle = runtime.bundle(cfg)
    env = dict(os.environ, PYRUNC_DEBUG_STOP_AT=stage, PYRUNC_DEBUG_STOP_NOTE=str(note),
               PYRUNC_TEST_MARK=runtime.prefix)
    proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "create", "--bundle", bundle, cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    wait_for(lambda: note.exists() and note.read_text().startswith(stage), f"stage {stage}")
    return cid, proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("stage", DEBUG_STAGES)
def test_killed_at_each_debug_stage(runtime, tmp_path, stage, sig):
    """SIGKILL: ``delete -f`` finishes it; SIGTERM: create tears itself down (exit 143).  No
    process, cgroup (every v1 hierarchy, the unified one, the parents made for it), mount or
    state directory stays.  ``cgroup`` is the window where the v1 parents are made but not yet
    recorded as made: they were claimed in the first record, so delete finds them."""
    cid, proc = _start_stopped_create(runtime, tmp_path, stage)
    try:
        if stage != "claimed":      # something was made in some hierarchy: the test sees it
            assert cgroup_leftovers(runtime.prefix)
        proc.send_signal(sig)
        rc = proc.wait(timeout=TIMEOUT)
        if sig == signal.SIGKILL:
            assert runtime("state", cid).rc == 0
            res = runtime("delete", "-f", cid)
            assert res.rc == 0, res
        else:
            assert rc == 128 + sig
        assert runtime("state", cid).rc == 1
        assert leftovers(runtime, runtime.prefix) == {"processes": [], "cgroups": [],
                                                      "state": [], "mounts": []}
    finally:
        proc.kill()
        proc.wait()


def _marked(marker: str) -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and _alive(p) and _environ_has(p, marker.encode())]


def test_the_init_exits_with_its_create(runtime, tmp_path):
    """An init blocked in setup (here in its rootfs stage) whose create is SIGKILLed exits by
    itself — engines read the pipes it holds to their end — and delete finishes the rest."""
    cid, proc = _start_stopped_create(runtime, tmp_path, "rootfs")
    try:
        assert len(_marked(runtime.prefix)) == 2        # create and its init
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        wait_for(lambda: not _marked(runtime.prefix), "the init to exit")
        runtime("delete", cid, check=True)
        assert leftovers(runtime, runtime.prefix) == {"processes": [], "cgroups": [],
                                                      "state": [], "mounts": []}
    finally:
        proc.kill()
        proc.wait()
