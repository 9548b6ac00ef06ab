"""Rootless podman 4.3 with ``--runtime PATH``: a throwaway user (tools/testuser.py, removed
after the module with every process it left) runs podman with its own store (vfs), config and
``$XDG_RUNTIME_DIR`` in a temporary directory, ``--network none``; each scenario runs with pyrunc
and with runc.  podman runs the runtime as uid 0 of the user's namespace (its /etc/subuid range
mapped after the user's own id), which is what pyrunc's rootless path must serve.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import enginelib as el
from enginelib import describe

sys.path.insert(0, str(el.REPO / "tools"))
import testuser  # noqa: E402

IMAGE = "localhost/pyrunc-rl/busybox:latest"


class RootlessPodman:
    """podman as the test user: its own containers.conf, storage.conf, store and run dirs."""

    def __init__(self, user: testuser.TestUser):
        self.user = user
        base = user.mkdir("podman")
        self.root, self.runroot = user.mkdir("podman", "root"), user.mkdir("podman", "runroot")
        self.tmp = user.mkdir("podman", "tmp")
        self.cwd = user.mkdir("podman", "cwd")
        conf, storage = base / "containers.conf", base / "storage.conf"
        conf.write_text(f"""# pyrunc rootless engine tests
[containers]
netns = "none"
log_driver = "k8s-file"
default_ulimits = {json.dumps(el.ULIMITS)}

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base / 'events.log'}"
runtime_supports_json = ["runc", "pyrunc"]
tmp_dir = "{self.tmp}"
""")
        storage.write_text(f"""[storage]
driver = "vfs"
graphroot = "{self.root}"
runroot = "{self.runroot}"
""")
        (base / "registries.conf").write_text("unqualified-search-registries = []\n")
        for f in (conf, storage, base / "registries.conf"):
            os.chown(f, user.uid, user.gid)
        self.env = {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
                    "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
                    "TMPDIR": str(self.tmp)}

    def __call__(self, *args, runtime: str | None = None, timeout: float = 120):
        argv = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        if runtime is not None:
            argv += ["--runtime", runtime]
        return self.user.run(argv + [str(a) for a in args], env=self.env, timeout=timeout,
                             cwd=self.cwd)

    def import_image(self):
        root = self.user.mkdir("image", "rootfs")
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "tmp").chmod(0o1777)
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        for applet in el.run(["/bin/busybox", "--list"], check=True).stdout.split():
            if applet != "busybox":
                os.symlink("busybox", root / "bin" / applet)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                             "app:x:1000:1000:app:/home/app:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
        tar = self.user.base / "image" / "busybox.tar"
        el.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."], check=True)
        os.chown(tar, self.user.uid, self.user.gid)
        res = self("import", "--change", 'CMD ["/bin/sh"]', tar, IMAGE)
        assert res.returncode == 0, describe(res)


@pytest.fixture(scope="module")
def user():
    if os.geteuid() != 0:
        pytest.skip("host: making a test user needs root")
    if not shutil.which("newuidmap"):
        pytest.skip("host: rootless podman needs newuidmap (package uidmap)")
    with testuser.test_user() as u:
        yield u


@pytest.fixture(scope="module")
def podman(user):
    p = RootlessPodman(user)
    try:
        p.import_image()
        yield p
    finally:
        p("rm", "-af", "-t", "0")
        testuser.kill_user_processes(user.uid)   # conmon, podman's pause process


@pytest.fixture(scope="module", params=["pyrunc", "runc"])
def runtime(request) -> str:
    """Overrides conftest's: the binary itself (the tracing wrappers are in root's private
    workspace, out of the user's reach); the param names the table's column."""
    return el.runtime_binaries()[request.param]


class Client:
    def __init__(self, podman: RootlessPodman, runtime: str):
        self.podman, self.runtime = podman, runtime
        self.count = 0
        self.names: list[str] = []

    def __call__(self, *args, timeout: float = 120):
        return self.podman(*args, runtime=self.runtime, timeout=timeout)

    def name(self) -> str:
        self.count += 1
        n = f"rl{self.count}-{os.path.basename(self.runtime)}"
        self.names.append(n)
        return n

    def run_opts(self, name: str) -> list[str]:
        return ["--name", name, "--network", "none"]

    def inspect(self, name: str, fmt: str) -> str:
        res = self("inspect", "--format", fmt, name)
        assert res.returncode == 0, describe(res)
        return res.stdout.strip()

    def detached(self, script: str, *opts) -> str:
        name = self.name()
        res = self("run", "-d", *self.run_opts(name), *opts, IMAGE, "sh", "-c", script)
        assert res.returncode == 0, describe(res)
        return name

    def logs_contain(self, name: str, text: str, timeout: float = 60):
        el.wait_for(lambda: text in (lambda r: r.stdout + r.stderr)(self("logs", name)),
                    timeout, 0.1, f"{text!r} in the logs of {name}")


@pytest.fixture
def pm(podman, runtime):
    c = Client(podman, runtime)
    try:
        yield c
    finally:
        for n in c.names:
            c("rm", "-f", "-t", "0", n)


def runtime_root(user, runtime: str) -> Path:
    """Where the runtime keeps its state under rootless podman (no --root given)."""
    return user.runtime_dir / ("pyrunc" if runtime.endswith("pyrunc") else "runc")


# ---------------------------------------------------------------- scenarios

def test_run_exit_code_and_user_namespace(pm, podman):
    name = pm.name()
    res = pm("run", "--rm", *pm.run_opts(name), IMAGE, "sh", "-c",
             "id -u; cat /proc/self/uid_map; echo err >&2; exit 7")
    assert res.returncode == 7, describe(res)
    lines = res.stdout.splitlines()
    user = podman.user
    assert lines[0] == "0", describe(res)
    assert [x.split() for x in lines[1:3]] == [
        ["0", str(user.uid), "1"], ["1", str(user.subuid[0]), str(user.subuid[1])]], \
        describe(res)
    assert "err" in res.stderr, describe(res)
    assert pm("container", "exists", name).returncode == 1, "--rm left the container"


def test_detached_logs_exec(pm):
    name = pm.detached("echo line-out; echo line-err >&2; echo ready; "
                       "while :; do sleep 0.2; done")
    pm.logs_contain(name, "ready")
    res = pm("logs", name)
    assert "line-out\n" in res.stdout and "line-err\n" in res.stderr, describe(res)
    assert pm.inspect(name, "{{.State.Status}}") == "running"
    res = pm("exec", name, "sh", "-c", "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 5")
    assert res.returncode == 5 and "pid1=sh -c echo line-out" in res.stdout, describe(res)
    res = pm("exec", "-e", "X=from-exec", "-w", "/tmp", "--user", "1000", name,
             "sh", "-c", "echo $X $(pwd) $(id -u)")
    assert (res.returncode, res.stdout) == (0, "from-exec /tmp 1000\n"), describe(res)


def test_stop_delivers_sigterm(pm):
    name = pm.detached("trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done")
    pm.logs_contain(name, "ready")
    res = pm("stop", "-t", "30", name)
    assert res.returncode == 0 and "SIGKILL" not in res.stderr, describe(res)
    assert pm.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 3"


def test_rm_leaves_nothing(pm, podman, runtime):
    name = pm.detached("echo ready; while :; do sleep 0.2; done")
    pm.logs_contain(name, "ready")
    cid = pm.inspect(name, "{{.Id}}")
    pid = int(pm.inspect(name, "{{.State.Pid}}"))
    assert (runtime_root(podman.user, runtime) / cid).is_dir()
    res = pm("rm", "-f", "-t", "0", name)
    assert res.returncode == 0, describe(res)
    el.wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, 0.05, "the init to go")
    assert not (runtime_root(podman.user, runtime) / cid).exists(), "runtime state left"
    assert not el.host_mounts_mentioning(cid), el.host_mounts_mentioning(cid)


def test_volume_files_belong_to_the_user(pm, podman):
    vol = podman.user.mkdir("vol-" + os.path.basename(pm.runtime))
    res = pm("run", "--rm", *pm.run_opts(pm.name()), "-v", f"{vol}:/data", IMAGE,
             "sh", "-c", "echo hi > /data/f && ls -n /data/f")
    assert res.returncode == 0, describe(res)
    st = (vol / "f").stat()
    assert (st.st_uid, (vol / "f").read_text()) == (podman.user.uid, "hi\n")


def test_resources_on_this_host(pm):
    """cgroup v1 (this host kind) cannot be delegated to a user: podman drops the limits with a
    warning and the container runs, with either runtime."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("host: pure cgroup v2; the delegated-cgroup case is not set up here")
    res = pm("run", "--rm", *pm.run_opts(pm.name()), "--memory", "64m", "--pids-limit", "50",
             IMAGE, "echo", "ran")
    assert res.returncode == 0 and res.stdout == "ran\n", describe(res)
    assert "not supported and ignored on cgroups V1 rootless" in res.stderr, describe(res)
