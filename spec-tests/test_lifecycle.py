"""Lifecycle (runtime.md): create → start → kill → delete, the state after each, and refusals."""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import base_config


def wait_status(runtime, cid, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = runtime.state(cid)
        if st["status"] == status:
            return st
        time.sleep(0.02)
    raise AssertionError(f"{cid} never reached {status}: {runtime.state(cid)}")


def create(runtime, config=None, **kw):
    bundle = runtime.bundle(config or base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL, **kw)
    assert res.rc == 0, res
    return cid, bundle


def test_create_start_kill_delete(runtime):
    cid, bundle = create(runtime)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == bundle and st["ociVersion"] == "1.3.0"
    pid = st["pid"]
    # created: the init exists but has not run the user's program yet
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    runtime("start", cid, check=True)
    st = runtime.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1000"]
    runtime("kill", cid, "KILL", check=True)
    st = wait_status(runtime, cid, "stopped")
    assert st["pid"] == 0
    runtime("delete", cid, check=True)
    res = runtime("state", cid)
    assert res.rc == 1 and "does not exist" in res.err


def test_state_json_matches_schema(runtime):
    jsonschema = pytest.importorskip("jsonschema")
    from pyrunc import validate
    schema = validate.load_schema("state")
    cfg = base_config(["sleep", "1000"])
    cfg["annotations"] = {"org.example.key": "value"}
    cid, _ = create(runtime, cfg)
    for _ in ("created", "running", "stopped"):
        st = runtime.state(cid)
        jsonschema.validate(st, schema)
        assert validate.validate(st, "state") == []
        if st["status"] == "created":
            assert st["annotations"] == {"org.example.key": "value"}
            runtime("start", cid, check=True)
        elif st["status"] == "running":
            runtime("kill", cid, "9", check=True)
            wait_status(runtime, cid, "stopped")


def test_start_twice_is_an_error(runtime):
    cid, _ = create(runtime)
    runtime("start", cid, check=True)
    res = runtime("start", cid)
    assert res.rc == 1 and "it is running" in res.err
    assert runtime.state(cid)["status"] == "running"


def test_delete_running_refused_without_force(runtime):
    cid, _ = create(runtime)
    res = runtime("delete", cid)
    assert res.rc == 1 and "it is created" in res.err
    runtime("start", cid, check=True)
    res = runtime("delete", cid)
    assert res.rc == 1 and "it is running" in res.err
    assert runtime.state(cid)["status"] == "running"
    pid = runtime.state(cid)["pid"]
    runtime("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or \
        open(f"/proc/{pid}/stat").read().split()[2] in "ZX"


def test_kill_stopped_is_an_error(runtime):
    cid, _ = create(runtime, base_config(["true"]))
    runtime("start", cid, check=True)
    wait_status(runtime, cid, "stopped")
    res = runtime("kill", cid, "TERM")
    assert res.rc == 1 and "not running" in res.err


def test_kill_all_after_exit_is_not_an_error(runtime):
    """containerd's shim sends ``kill --all ID 9`` once the init has exited; runc takes it."""
    cid, _ = create(runtime, base_config(["true"]))
    runtime("start", cid, check=True)
    wait_status(runtime, cid, "stopped")
    assert runtime("kill", "--all", cid, "9").rc == 0
    assert runtime("kill", cid, "9").rc == 1      # the init alone: not running, an error


def test_kill_signal_forms(runtime):
    cfg = base_config(["sh", "-c", "trap 'echo got-usr1 > /tmp/usr1' USR1; "
                                   "while :; do sleep 0.05; done"])
    cid, bundle = create(runtime, cfg)
    runtime("start", cid, check=True)
    for form in ("USR1", "SIGUSR1", str(signal.SIGUSR1)):
        os.unlink(os.path.join(bundle, "rootfs/tmp/usr1")) \
            if os.path.exists(os.path.join(bundle, "rootfs/tmp/usr1")) else None
        time.sleep(0.1)     # let the trap be installed
        runtime("kill", cid, form, check=True)
        deadline = time.monotonic() + 5
        while not os.path.exists(os.path.join(bundle, "rootfs/tmp/usr1")):
            assert time.monotonic() < deadline, f"signal {form} not delivered"
            time.sleep(0.02)
    res = runtime("kill", cid, "NOSUCHSIG")
    assert res.rc == 1 and "invalid signal" in res.err


def test_default_kill_signal_is_sigterm(runtime):
    cfg = base_config(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    cid, _ = create(runtime, cfg)
    runtime("start", cid, check=True)
    time.sleep(0.1)
    runtime("kill", cid, check=True)
    wait_status(runtime, cid, "stopped")


def test_duplicate_id_refused(runtime):
    cid, bundle = create(runtime)
    res = runtime("create", "--bundle", bundle, cid)
    assert res.rc == 1 and "already exists" in res.err
    assert runtime.state(cid)["status"] == "created"


def _processes_running(argv: list[str]) -> list[int]:
    """Live processes whose command line is ``argv`` (pyrunc's forks keep their parent's)."""
    want = ("\0".join(argv) + "\0").encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read() == want:
                    found.append(int(name))
        except OSError:
            pass
    return found


def test_refused_create_leaves_no_setup_process(runtime):
    """The setup child is forked before the config and the ID are checked, and may have forked
    the init already (in new namespaces, in no cgroup) when the parent refuses: both are gone
    by the time create returns."""
    from harness import PYRUNC
    cid, bundle = create(runtime)
    for _ in range(5):
        argv = [PYRUNC, "--root", runtime.root, "create", "--bundle", bundle, cid]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert res.returncode == 1 and "already exists" in res.stderr
        assert _processes_running(argv) == []
    assert runtime.state(cid)["status"] == "created"


@pytest.mark.parametrize("bad", ["a/b", "..", ".", "a b", "x;y", "é", ""])
def test_bad_ids_refused(runtime, bad):
    bundle = runtime.bundle()
    res = runtime("create", "--bundle", bundle, bad)
    assert res.rc == 1
    assert "container id" in res.err
    assert not os.path.isdir(runtime.root) or os.listdir(runtime.root) == []


def test_run_returns_exit_code(runtime):
    assert runtime.sh("exit 7").rc == 7
    # pid 1 of a pid namespace cannot kill itself: share the host's pid namespace for this one
    no_pidns = [{"type": t} for t in ("network", "ipc", "uts", "mount")]
    assert runtime.sh("kill -KILL $$", linux=dict(base_config()["linux"],
                                                  namespaces=no_pidns)).rc == 128 + 9
    res = runtime.sh("echo out; echo err >&2")
    assert (res.rc, res.out, res.err) == (0, "out\n", "err\n")


def test_run_detach_then_delete(runtime):
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    res = runtime("run", "-d", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "-f", cid, check=True)


def test_run_forwards_signals(runtime, tmp_path):
    cfg = base_config(["sh", "-c", "trap 'echo term; exit 42' TERM; echo ready; "
                                   "while :; do sleep 0.05; done"])
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    from harness import PYRUNC
    proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "run", "--bundle", bundle, cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
        assert proc.stdout.read() == "term\n"
    finally:
        proc.kill()
        proc.wait()
    assert runtime("state", cid).rc == 1       # run deleted it


def test_run_sigterm_before_the_program_starts_leaves_nothing(runtime):
    """SIGTERM that reaches ``run`` while it is still creating the container either tears the
    half-made container down (during set-up: see test_halfmade.py) or, once the container is
    made, is delivered to its process; ``run`` exits 143 and leaves no container behind."""
    cfg = base_config(["sleep", "30"])
    # no pid namespace: as the init of one, sleep would ignore SIGTERM (no handler)
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    from harness import PYRUNC
    proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "--debug", "run", "--bundle",
                             bundle, cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:            # the debug log: create has begun, nothing runs yet
            if "create: start" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM     # torn down, or sleep got it
    finally:
        proc.kill()
        proc.wait()
    assert runtime("state", cid).rc == 1       # run deleted it


def test_run_keep_leaves_stopped_container(runtime):
    bundle = runtime.bundle(base_config(["true"]))
    cid = runtime.new_id()
    res = runtime("run", "--keep", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    assert runtime.state(cid)["status"] == "stopped"


def test_list_table_json_quiet(runtime):
    cid, bundle = create(runtime)
    res = runtime("list", check=True)
    lines = res.out.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert lines[1].split()[:4] == [cid, str(runtime.state(cid)["pid"]), "created", bundle]
    items = json.loads(runtime("list", "--format", "json", check=True).out)
    assert [i["id"] for i in items] == [cid] and items[0]["owner"] == "root"
    assert runtime("list", "-q", check=True).out == f"{cid}\n"


def test_list_empty_json_is_null(runtime):
    assert runtime("list", "-f", "json", check=True).out.strip() == "null"


def test_pid_file(runtime, tmp_path):
    pid_file = str(tmp_path / "init.pid")
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    runtime("create", "--pid-file", pid_file, "--bundle", bundle, cid, check=True,
            stdin=subprocess.DEVNULL)
    with open(pid_file) as f:
        assert int(f.read()) == runtime.state(cid)["pid"]


def test_stale_pid_not_mistaken(runtime):
    """A stopped container whose pid was recycled reads stopped (the start time differs)."""
    cid, _ = create(runtime, base_config(["true"]))
    runtime("start", cid, check=True)
    wait_status(runtime, cid, "stopped")
    state_file = os.path.join(runtime.root, cid, "state.json")
    with open(state_file) as f:
        doc = json.load(f)
    doc["pid"] = os.getpid()       # a live process that is certainly not the container
    with open(state_file, "w") as f:
        json.dump(doc, f)
    assert runtime.state(cid)["status"] == "stopped"
    assert runtime("kill", cid, "0").rc == 1


def test_state_written_atomically(runtime):
    cid, _ = create(runtime)
    names = os.listdir(os.path.join(runtime.root, cid))
    assert sorted(names) == ["exec.fifo", "state.json"]


def test_start_without_process_is_an_error(runtime):
    cfg = base_config()
    del cfg["process"]
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True)
    res = runtime("start", cid)
    assert res.rc == 1 and "process" in res.err
    assert runtime.state(cid)["status"] == "created"


def test_start_of_missing_program_fails_at_create(runtime):
    bundle = runtime.bundle(base_config(["/no/such/program"]))
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid)
    assert res.rc == 1 and "/no/such/program" in res.err
    assert runtime("state", cid).rc == 1


def test_concurrent_operations_serialised(runtime):
    """Several starts at once: exactly one succeeds."""
    cid, _ = create(runtime)
    from harness import PYRUNC
    procs = [subprocess.Popen([PYRUNC, "--root", runtime.root, "start", cid],
                              stderr=subprocess.PIPE) for _ in range(4)]
    codes = [p.wait(timeout=30) for p in procs]
    for p in procs:
        p.stderr.close()
    assert sorted(codes) == [0, 1, 1, 1]
