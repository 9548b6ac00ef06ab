"""Hooks (config.md "POSIX-platform Hooks"): order, namespaces, stdin state, failures."""

import json
import os
import stat
import subprocess

from harness import base_config


def write_hook(path, body: str) -> str:
    """A hook script (run with the host's /bin/sh, or busybox inside the container)."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return str(path)


def logging_hooks(tmp_path, log):
    """One hook per kind, each appending its name, the state's status and pid, and the mount
    namespace it runs in to ``log`` (a host path; startContainer's copy lives in the rootfs)."""
    hook = write_hook(tmp_path / "hook.sh",
                      f'state=$(cat); echo "$1 $(readlink /proc/self/ns/mnt) $state" >> {log}')
    return {kind: [{"path": hook, "args": ["hook.sh", kind]}]
            for kind in ("prestart", "createRuntime", "createContainer", "poststart",
                         "poststop")}


def test_hook_order_namespaces_and_state(runtime, tmp_path):
    log = tmp_path / "hooks.log"
    cfg = base_config(["sh", "-c", "echo process >> /hooklog"])
    cfg["hooks"] = logging_hooks(tmp_path, log)
    cfg["annotations"] = {"a": "b"}
    bundle = runtime.bundle(cfg)
    # startContainer runs in the container: its path resolves in the rootfs
    write_hook(os.path.join(bundle, "rootfs/start-hook"),
               'state=$(cat); echo "startContainer $(readlink /proc/self/ns/mnt) $state" '
               '>> /hooklog')
    cfg["hooks"]["startContainer"] = [{"path": "/start-hook"}]
    runtime.write_config(bundle, cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    runtime("start", cid, check=True)
    import time
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runtime("delete", cid, check=True)

    host_mnt = os.readlink("/proc/self/ns/mnt")
    entries = [line.split(" ", 2) for line in log.read_text().splitlines()]
    inside = open(os.path.join(bundle, "rootfs/hooklog")).read().splitlines()
    assert [e[0] for e in entries] == ["prestart", "createRuntime", "createContainer",
                                       "poststart", "poststop"]
    assert inside[0].startswith("startContainer ") and inside[1] == "process"
    kinds = {e[0]: (e[1], json.loads(e[2])) for e in entries}
    start_ns, start_state = inside[0].split(" ", 2)[1], json.loads(inside[0].split(" ", 2)[2])
    # runtime namespace vs container namespace
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        assert kinds[kind][0] == host_mnt, kind
    assert kinds["createContainer"][0] != host_mnt
    assert start_ns == kinds["createContainer"][0]
    # the state on stdin
    for kind, (_, state) in kinds.items():
        assert state["id"] == cid and state["bundle"] == bundle
        assert state["annotations"] == {"a": "b"}
    assert kinds["prestart"][1]["status"] == "creating"
    assert kinds["createRuntime"][1]["pid"] > 1                  # as the runtime sees it
    assert kinds["createContainer"][1]["pid"] == 1               # as the container sees it
    assert start_state["status"] == "created" and start_state["pid"] == 1
    assert kinds["poststart"][1]["status"] == "running"
    assert kinds["poststop"][1]["status"] == "stopped"


def test_hook_args_and_env(runtime, tmp_path):
    out = tmp_path / "out"
    hook = write_hook(tmp_path / "h.sh", f'echo "$0|$1|$2|$FOO|$(env | wc -l)" > {out}')
    cfg = base_config()
    cfg["hooks"] = {"createRuntime": [{"path": hook, "args": ["argv0", "x", "y"],
                                       "env": ["FOO=bar"]}]}
    res = runtime.run(cfg)
    assert res.rc == 0, res
    argv0, x, y, foo, nenv = out.read_text().strip().split("|")
    assert (x, y, foo) == ("x", "y", "bar")
    assert int(nenv) <= 3   # FOO plus what sh itself adds (PWD, SHLVL): nothing of ours


def test_failing_create_hook_fails_create_and_leaves_nothing(runtime, tmp_path):
    hook = write_hook(tmp_path / "fail.sh", "echo broken-hook >&2; exit 3")
    for kind in ("prestart", "createRuntime", "createContainer"):
        cfg = base_config()
        cfg["hooks"] = {kind: [{"path": hook}]}
        bundle = runtime.bundle(cfg)
        cid = runtime.new_id()
        res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
        assert res.rc == 1
        assert f"hooks.{kind}[0]" in res.err and "exit status 3" in res.err
        assert "broken-hook" in res.err
        assert runtime("state", cid).rc == 1


def test_failing_start_container_hook_fails_start(runtime, tmp_path):
    cfg = base_config(["sh", "-c", "echo ran > /ran"])
    bundle = runtime.bundle(cfg)
    write_hook(os.path.join(bundle, "rootfs/bad-hook"), "exit 5")
    cfg["hooks"] = {"startContainer": [{"path": "/bad-hook"}]}
    runtime.write_config(bundle, cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    res = runtime("start", cid)
    assert res.rc == 1 and "startContainer" in res.err and "exit status 5" in res.err
    assert not os.path.exists(os.path.join(bundle, "rootfs/ran"))
    assert runtime.state(cid)["status"] == "stopped"


def test_failing_poststart_hook_stops_container(runtime, tmp_path):
    hook = write_hook(tmp_path / "fail.sh", "exit 1")
    cfg = base_config(["sleep", "1000"])
    cfg["hooks"] = {"poststart": [{"path": hook}]}
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    res = runtime("start", cid)
    assert res.rc == 1 and "poststart" in res.err
    assert runtime.state(cid)["status"] == "stopped"


def test_failing_poststop_hook_warns(runtime, tmp_path):
    hook = write_hook(tmp_path / "fail.sh", "exit 1")
    cfg = base_config()
    cfg["hooks"] = {"poststop": [{"path": hook}, {"path": write_hook(tmp_path / "ok.sh",
                                                                     f"touch {tmp_path}/ran")}]}
    res = runtime.run(cfg)
    assert res.rc == 0
    assert "warning" in res.err and "poststop" in res.err
    assert (tmp_path / "ran").exists()      # the remaining hooks still run


def test_hook_timeout(runtime, tmp_path):
    hook = write_hook(tmp_path / "slow.sh", "sleep 30")
    cfg = base_config()
    cfg["hooks"] = {"createRuntime": [{"path": hook, "timeout": 1}]}
    import time
    started = time.monotonic()
    res = runtime.run(cfg)
    assert res.rc == 1 and "timed out after 1s" in res.err
    assert time.monotonic() - started < 20


def test_missing_hook_binary(runtime, tmp_path):
    cfg = base_config()
    cfg["hooks"] = {"prestart": [{"path": str(tmp_path / "nope")}]}
    res = runtime.run(cfg)
    assert res.rc == 1 and "No such file" in res.err


def test_hook_path_must_be_absolute(runtime):
    cfg = base_config()
    cfg["hooks"] = {"prestart": [{"path": "relative/hook"}]}
    res = runtime.run(cfg)
    assert res.rc == 1 and "hooks.prestart[0].path" in res.err


def test_hook_stdin_is_closed_after_state(runtime, tmp_path):
    """A hook reading stdin to EOF gets the state and then end of file, without hanging."""
    out = tmp_path / "stdin-copy"
    hook = write_hook(tmp_path / "h.sh", f"cat > {out}")
    cfg = base_config()
    cfg["hooks"] = {"createRuntime": [{"path": hook, "timeout": 10}]}
    assert runtime.run(cfg).rc == 0
    assert json.loads(out.read_text())["status"] == "creating"
    assert stat.S_ISREG(os.stat(out).st_mode)
