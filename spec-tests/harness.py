"""Helpers and fixtures for the runtime's tests: busybox bundles, a private --root, and leak checks.

Every test that runs containers gets its own state root and bundle directory, and on the way out
the ``runtime`` fixture force-deletes whatever is left and asserts that nothing leaked: no state
directory, no process still running from its containers, no host mount and no cgroup created for
them.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRUNC = os.environ.get("PYRUNC", os.path.join(REPO, ".venv", "bin", "pyrunc"))
BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin") or "/bin/busybox"


def status_fields(text: str) -> dict:
    """``/proc/<pid>/status`` text as a dict of its fields (values stripped)."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def base_config(args=("true",)) -> dict:
    """A config close to what engines send: new namespaces, the usual mounts, masked paths."""
    return {
        "ociVersion": "1.3.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "pyrunc-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def make_rootfs(path: str) -> str:
    """A busybox rootfs: /bin with busybox and its applets, the usual empty dirs, passwd/group."""
    os.makedirs(os.path.join(path, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "home/user", "var", "run"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    os.symlink("bin", os.path.join(path, "sbin"))
    os.makedirs(os.path.join(path, "usr"))
    os.symlink("../bin", os.path.join(path, "usr", "bin"))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\ntty:x:5:\nnogroup:x:65534:\n")
    return path


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> str:
    return make_rootfs(str(tmp_path_factory.mktemp("template") / "rootfs"))


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


class Runtime:
    """Runs ``pyrunc --root <private root>`` and builds bundles for one test."""

    def __init__(self, tmp_path, template):
        self.tmp = str(tmp_path)
        self.root = os.path.join(self.tmp, "state")
        self.template = template
        self.ids: list[str] = []
        self.prefix = "t" + uuid.uuid4().hex[:8]

    def new_id(self) -> str:
        cid = f"{self.prefix}-{len(self.ids)}"
        self.ids.append(cid)
        return cid

    def bundle(self, config: dict | None = None, name: str | None = None, **changes) -> str:
        """A bundle dir with its own rootfs (hard links to the template) and config.json."""
        path = os.path.join(self.tmp, name or f"bundle{len(os.listdir(self.tmp))}")
        os.makedirs(path)
        shutil.copytree(self.template, os.path.join(path, "rootfs"), symlinks=True,
                        copy_function=os.link)
        cfg = copy.deepcopy(config) if config is not None else base_config()
        for key, value in changes.items():
            cfg[key] = value
        self.write_config(path, cfg)
        return path

    @staticmethod
    def write_config(bundle: str, cfg) -> None:
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(cfg if isinstance(cfg, str) else json.dumps(cfg))

    def __call__(self, *args, timeout=60, input=None, check=False, pass_fds=(), env=None,
                 stdin=None, **kw) -> Result:
        # stdout/stderr go to files, not pipes: after create the container's init holds them,
        # and a pipe would never reach end of file while it lives.
        import tempfile
        cmd = [PYRUNC, "--root", self.root, *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(cmd, stdout=kw.pop("stdout", out), stderr=kw.pop("stderr", err),
                                  text=True, timeout=timeout, input=input, pass_fds=pass_fds,
                                  env=env, stdin=stdin if input is None else None, **kw)
            out.seek(0)
            err.seek(0)
            proc.stdout, proc.stderr = out.read(), err.read()
        result = Result(proc)
        if check:
            assert result.rc == 0, f"{' '.join(args)} failed: {result}"
        return result

    def run(self, config: dict, **kw) -> Result:
        """``pyrunc run`` a config to completion; stdin is /dev/null."""
        bundle = self.bundle(config)
        cid = self.new_id()
        return self("run", "--bundle", bundle, cid, stdin=subprocess.DEVNULL, **kw)

    def sh(self, script: str, **changes) -> Result:
        """Run ``sh -c script`` in a container from base_config() with ``changes`` applied."""
        cfg = base_config(["sh", "-c", script])
        for key, value in changes.items():
            cfg[key] = value
        return self.run(cfg)

    def state(self, cid: str) -> dict:
        res = self("state", cid)
        assert res.rc == 0, res
        return json.loads(res.out)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid, timeout=30)


def host_mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def cgroup_leftovers(prefix: str) -> list[str]:
    found = []
    for base, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith(prefix):
                found.append(os.path.join(base, d))
        dirs[:] = [d for d in dirs if d in ("pyrunc",) or base == "/sys/fs/cgroup"
                   or d.startswith(prefix)]
    return found


def processes_of(prefix: str) -> list[int]:
    """Processes whose cgroup or command line names this test's container prefix."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue        # exited; only its parent's wait is missing
            with open(f"/proc/{name}/cgroup") as f:
                if prefix in f.read():
                    pids.append(int(name))
        except OSError:
            pass
    return pids


def describe_processes(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{pid}/cgroup") as f:
                cg = f.read().splitlines()[0]
            out.append(f"{pid} [{' '.join(st)}] {cmd} ({cg})")
        except OSError:
            out.append(f"{pid} (gone)")
    return out


def reap_orphans() -> None:
    """Containers' inits are re-parented to us (a subreaper, as engines are): reap them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap_container_zombies(stop) -> None:
    """Reap, as engines' shims do, the exited container processes re-parented to us.

    Only zombies in a container cgroup (``/pyrunc/``): our own subprocesses are waited for by
    subprocess, and stealing their exit status would break it.  Until reaped, an exited process
    keeps its cgroup busy, and ``delete`` would wait for it.
    """
    me = os.getpid()
    while not stop.wait(0.05):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z" or int(fields[1]) != me:
                    continue
                with open(f"/proc/{name}/cgroup") as f:
                    if "/pyrunc/" not in f.read():
                        continue
                os.waitpid(int(name), os.WNOHANG)
            except (OSError, ChildProcessError):
                pass


@pytest.fixture(scope="session", autouse=True)
def subreaper():
    import threading
    import prctl
    prctl.set_child_subreaper(True)
    stop = threading.Event()
    thread = threading.Thread(target=_reap_container_zombies, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    reap_orphans()


@pytest.fixture
def runtime(tmp_path, rootfs_template):
    rt = Runtime(tmp_path, rootfs_template)
    mounts_before = host_mounts()
    yield rt
    rt.cleanup()
    reap_orphans()
    leaked_state = [n for n in (os.listdir(rt.root) if os.path.isdir(rt.root) else [])]
    assert not leaked_state, f"state directories left behind: {leaked_state}"
    left = processes_of(rt.prefix)
    if left:        # SIGKILL is asynchronous: give the kernel a moment before calling it a leak
        import time
        time.sleep(1.0)
        reap_orphans()
        left = processes_of(rt.prefix)
    assert not left, f"container processes left behind: {describe_processes(left)}"
    assert not cgroup_leftovers(rt.prefix), f"cgroups left: {cgroup_leftovers(rt.prefix)}"
    new_mounts = host_mounts() - mounts_before
    assert not [m for m in new_mounts if rt.tmp in m], f"mounts left behind: {new_mounts}"


def pytest_report_header(config):
    return [f"pyrunc: {PYRUNC}", f"python: {sys.version.split()[0]}"]
