"""``pyrunc exec``: runc's flags and behaviour, asserted from inside the exec'd process."""

import json
import os
import subprocess
import threading
import time

import pytest

from harness import base_config, status_fields


@pytest.fixture
def running(runtime):
    """A running container (sleep), its id and bundle."""
    cfg = base_config(["sleep", "1000"])
    cfg["process"]["env"].append("FROM_CONFIG=yes")
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    return cid, bundle


def test_exec_joins_every_namespace_and_the_cgroup(runtime, running):
    cid, _ = running
    init = runtime.state(cid)["pid"]
    names = ["pid", "net", "ipc", "uts", "mnt"]
    res = runtime("exec", cid, "sh", "-c",
                  "for n in " + " ".join(names) + "; do readlink /proc/self/ns/$n; done; "
                  "echo $$")
    assert res.rc == 0, res
    lines = res.out.split()
    for n, got in zip(names, lines):
        assert got == os.readlink(f"/proc/{init}/ns/{n}"), n
    assert lines[-1] != "1"


def test_exec_process_is_in_the_container_cgroup(runtime, running):
    cid, _ = running
    init = runtime.state(cid)["pid"]
    marker = f"/tmp/exec-cg-{cid}"
    res = runtime("exec", "-d", "--pid-file", marker, cid, "sleep", "30")
    assert res.rc == 0, res
    with open(marker) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{init}/cgroup") as b:
        assert a.read() == b.read()
    os.unlink(marker)


def test_exec_exit_code_and_signal(runtime, running):
    cid, _ = running
    assert runtime("exec", cid, "sh", "-c", "exit 12").rc == 12
    assert runtime("exec", cid, "sh", "-c", "kill -KILL $$").rc == 137


def test_exec_env_cwd_user_groups(runtime, running):
    cid, _ = running
    res = runtime("exec", "-e", "NEW=1", "-e", "FROM_CONFIG=overridden", "--cwd", "/tmp",
                  "-u", "1000:1000", "-g", "5", "-g", "7", cid, "sh", "-c",
                  'echo "$NEW $FROM_CONFIG $HOME"; pwd; id -u; id -g; id -G')
    assert res.rc == 0, res
    lines = res.out.splitlines()
    assert lines[0] == "1 overridden /home/user"
    assert lines[1] == "/tmp"
    assert lines[2:4] == ["1000", "1000"]
    assert sorted(lines[4].split()) == ["1000", "5", "7"]


def test_exec_user_by_name(runtime, running):
    cid, _ = running
    res = runtime("exec", "-u", "user", cid, "id")
    assert res.out.startswith("uid=1000(user) gid=1000(user)"), res


def test_exec_inherits_config_env(runtime, running):
    cid, _ = running
    assert runtime("exec", cid, "sh", "-c", "echo $FROM_CONFIG").out == "yes\n"


def test_exec_caps_and_no_new_privs(runtime, running):
    cid, _ = running
    from pyrunc.capabilities import NUMBERS
    res = runtime("exec", "--cap", "CAP_SYS_ADMIN", "--cap", "net_raw", cid,
                  "cat", "/proc/self/status")
    st = status_fields(res.out)
    base = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    want = sum(1 << NUMBERS[n] for n in base + ["CAP_SYS_ADMIN", "CAP_NET_RAW"])
    assert int(st["CapBnd"], 16) == want
    assert int(st["CapEff"], 16) == want
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert st["NoNewPrivs"] == "1"       # from the config


def test_exec_process_file(runtime, running, tmp_path):
    cid, _ = running
    doc = {"args": ["sh", "-c", "echo $X; pwd; id -u; grep NoNewPrivs /proc/self/status"],
           "env": ["X=from-file", "PATH=/bin"], "cwd": "/etc", "user": {"uid": 65534, "gid": 65534},
           "noNewPrivileges": False}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(doc))
    res = runtime("exec", "--process", str(path), cid)
    assert res.rc == 0, res
    assert res.out.split() == ["from-file", "/etc", "65534", "NoNewPrivs:", "0"]


def test_exec_no_fds_leak(runtime, running):
    cid, _ = running
    leaked = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        res = runtime("exec", cid, "ls", "/proc/self/fd", pass_fds=(leaked,))
    finally:
        os.close(leaked)
    assert res.out.split() == ["0", "1", "2", "3"]


def test_exec_many_in_parallel(runtime, running):
    cid, _ = running
    results = []

    def one(i):
        results.append(runtime("exec", cid, "sh", "-c", f"echo {i}; exit {i % 5}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(int(r.out) for r in results) == list(range(12))
    assert sorted(r.rc for r in results) == sorted(i % 5 for i in range(12)), [r for r in results if r.err]


def test_exec_into_stopped_container_fails(runtime):
    bundle = runtime.bundle(base_config(["true"]))
    cid = runtime.new_id()
    runtime("run", "--keep", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    res = runtime("exec", cid, "true")
    assert res.rc == 255 and "stopped" in res.err      # runc's code for a failed exec


def test_exec_racing_container_exit_never_hangs(runtime):
    """Exec while the container exits: each exec ends promptly, by running or with an error."""
    for _ in range(3):
        bundle = runtime.bundle(base_config(["sleep", "0.3"]))
        cid = runtime.new_id()
        runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            res = runtime("exec", cid, "true", timeout=20)
            assert res.rc in (0, 255, 137), res
        runtime("delete", "-f", cid)


def test_exec_missing_program(runtime, running):
    cid, _ = running
    res = runtime("exec", running[0], "/nope")
    assert res.rc == 255 and "/nope" in res.err


@pytest.mark.parametrize("args,needle", [
    (["--cap", "CAP_NOPE"], "unknown capability"),
    (["-u", "nosuchuser"], "unknown user"),
    (["-u", "0:nosuchgroup"], "unknown group"),
    (["--cwd", "/proc/self/fd/3"], "inside /proc is refused"),
    (["--cwd", "relative"], "not an absolute path"),
    (["--preserve-fds", "9"], "is not open"),
])
def test_exec_bad_input(runtime, running, args, needle):
    """255 as runc, but for what is refused with the flags (1, a usage error)."""
    cid, _ = running
    res = runtime("exec", *args, cid, "true")
    assert res.rc == (1 if args[0] == "--preserve-fds" else 255) and needle in res.err, res


def test_exec_bad_process_json(runtime, running, tmp_path):
    cid, _ = running
    for text, needle in (("{", "invalid JSON"), ('{"args": "sh"}', "p.json: args:"),
                         ("[]", "JSON object")):
        path = tmp_path / "p.json"
        path.write_text(text)
        res = runtime("exec", "--process", str(path), cid)
        assert res.rc == 255 and needle in res.err, res
    res = runtime("exec", "--process", str(tmp_path / "missing.json"), cid)
    assert res.rc == 255 and "No such file" in res.err


def test_exec_cwd_outside_root_refused(runtime, running):
    """A cwd that resolves outside the root (here: through a symlink to a host path held open)
    is refused after chdir."""
    cid, bundle = running
    res = runtime("exec", "--cwd", "/does/not/exist", cid, "true")
    assert res.rc == 255 and "cwd" in res.err


def test_exec_with_tty_console_socket(runtime, running, tmp_path):
    from test_terminal import ConsoleSocket
    cid, _ = running
    console = ConsoleSocket(tmp_path / "c.sock")
    try:
        res = runtime("exec", "-t", "-d", "--console-socket", console.path, cid,
                      "sh", "-c", "tty; echo done")
        assert res.rc == 0, res
        out = console.read_until(b"done").decode()
        assert "/dev/pts/" in out
    finally:
        console.close()
