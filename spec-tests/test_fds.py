"""Descriptors: nothing of the runtime reaches the container; --preserve-fds and LISTEN_FDS do."""

import os
import subprocess

from harness import PYRUNC, base_config


def fd_listing(runtime, extra_args=(), pass_fds=(), env=None, args=None):
    cfg = base_config(args or ["ls", "/proc/self/fd"])
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    res = runtime("run", *extra_args, "--bundle", bundle, cid, stdin=subprocess.DEVNULL,
                  pass_fds=pass_fds, env=env)
    assert res.rc == 0, res
    return res.out.split()


def test_only_stdio_inside(runtime):
    """Even with descriptors the caller leaked to pyrunc (not marked close-on-exec)."""
    leaked = os.open("/etc/hostname", os.O_RDONLY)       # inheritable by default: False
    os.set_inheritable(leaked, True)
    try:
        fds = fd_listing(runtime, pass_fds=(leaked,))
    finally:
        os.close(leaked)
    # ls itself has one directory fd open (3); nothing else
    assert fds == ["0", "1", "2", "3"]


def test_init_holds_no_runtime_fds_while_created(runtime):
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    pid = runtime.state(cid)["pid"]
    targets = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    extra = {fd: t for fd, t in targets.items() if fd not in ("0", "1", "2")}
    # only the state directory, through which it waits on exec.fifo, and which closes on exec
    assert list(extra.values()) == [os.path.join(runtime.root, cid)], extra
    for fd in extra:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        assert flags & 0o2000000, "must be close-on-exec"       # O_CLOEXEC
    runtime("start", cid, check=True)
    fds = sorted(os.listdir(f"/proc/{pid}/fd"))
    assert fds == ["0", "1", "2"]


def _run_with_fd3(runtime, bundle, redirect, extra_args=(), env=None):
    """Run pyrunc with fd 3 set up by a shell (``redirect``), leaving our own fds alone."""
    cmd = (f'exec 3{redirect}; exec "$0" --root "$1" run {" ".join(extra_args)} '
           f'--bundle "$2" "$3" </dev/null')
    return subprocess.run(["sh", "-c", cmd, PYRUNC, runtime.root, bundle, runtime.new_id()],
                          env=env, capture_output=True, text=True, timeout=60)


def test_preserve_fds(runtime, tmp_path):
    path = tmp_path / "passed"
    path.write_text("through fd 3\n")
    bundle = runtime.bundle(base_config(["sh", "-c", "cat <&3; ls /proc/self/fd | wc -l"]))
    proc = _run_with_fd3(runtime, bundle, f"<{path}", extra_args=["--preserve-fds", "1"])
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[0] == "through fd 3"
    assert lines[1].strip() == "5"      # 0 1 2 3 and ls's own


def test_listen_fds(runtime, tmp_path):
    path = tmp_path / "socket"
    path.write_text("socket-activated\n")
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1")
    bundle = runtime.bundle(base_config(["sh", "-c",
                                         'head -n1 <&3; echo "$LISTEN_FDS $LISTEN_PID"']))
    proc = _run_with_fd3(runtime, bundle, f"<{path}", env=env)
    assert proc.returncode == 0, proc
    assert proc.stdout.splitlines() == ["socket-activated", "1 1"]
