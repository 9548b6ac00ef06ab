"""Helpers for the supervisor's tests: a busybox rootfs, a daemon per test session (or per test
where the test kills it), ctr / pyrunc-ctl runners, and a thorough clean-up.

Everything a test creates lives under one short private directory (/tmp/svt-XXXX: unix socket
paths are limited to 108 bytes) and one unique namespace (svt<hex>), which also names the
container cgroups (ctr puts them at /<namespace>/<id>). Clean-up never relies on the daemon being
healthy: it kills only processes whose command line names our own directory.

The OCI runtime under test is ``$SUPERVISOR_TEST_RUNTIME`` (default: the project's pyrunc).
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time

import grpc
import pytest

from supervisor import spec as specmod
from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
CTR = shutil.which("ctr") or "/usr/bin/ctr"
# The project's own runtime by default (the supervisor drives runc just as well:
# SUPERVISOR_TEST_RUNTIME=/usr/sbin/runc).
RUNTIME = os.environ.get("SUPERVISOR_TEST_RUNTIME", os.path.join(ROOT, ".venv", "bin", "pyrunc"))
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
CGROUP_ROOT = "/sys/fs/cgroup"


def build_rootfs(path: str) -> str:
    """A busybox rootfs: the static binary plus one symlink per applet."""
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        link = os.path.join(path, "bin", name)
        if name != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    return path


def wait_for(pred, timeout: float = 10.0, step: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def processes_mentioning(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and pid_alive(int(entry)):
            out.append(int(entry))
    return out


def unix_listeners_under(prefix: str, netns_pids=("self",)) -> set[int]:
    """Inodes of listening unix sockets bound below ``prefix`` (from /proc/PID/net/unix, of the
    network namespaces of ``netns_pids``: a listener's path is visible in its own netns only)."""
    inodes = set()
    for pid in netns_pids:
        try:
            with open(f"/proc/{pid}/net/unix") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split(None, 7)
            # Flags 00010000 (__SO_ACCEPTCON): listening; accepted sockets carry the path too
            if len(fields) == 8 and fields[7].startswith(prefix) and int(fields[3], 16) & 0x10000:
                inodes.add(int(fields[6]))
    return inodes


def processes_holding(inodes: set[int]) -> list[int]:
    """Live processes with an open file descriptor on one of these socket inodes."""
    wanted = {f"socket:[{i}]" for i in inodes}
    return processes_with_open(wanted.__contains__) if wanted else []


def processes_with_open(match) -> list[int]:
    """Live processes (not this one) with an open file descriptor whose link ``match`` accepts:
    found through /proc/<pid>/fd, so whatever network namespace they are in."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if match(os.readlink(f"/proc/{entry}/fd/{fd}")):
                    out.append(int(entry))
                    break
            except OSError:
                continue
    return [p for p in out if pid_alive(p)]


def mounts_under(path: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                out.append(target)
    return out


def cgroup_dirs(ns: str, name: str = "") -> list[str]:
    """Cgroup directories named after our namespace (or one container in it) on any hierarchy."""
    found = []
    for hier in [CGROUP_ROOT] + [os.path.join(CGROUP_ROOT, h) for h in os.listdir(CGROUP_ROOT)]:
        d = os.path.join(hier, ns, name) if name else os.path.join(hier, ns)
        if os.path.isdir(d) and os.path.exists(os.path.join(hier, "cgroup.procs")):
            found.append(d)
    return sorted(set(found))


def remove_cgroup_tree(path: str) -> None:
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


class Supervisor:
    """One pyrunc-supervisor daemon with private directories, driven by ctr and the API."""

    def __init__(self, base: str | None = None, runtime: str = RUNTIME, args=()):
        self.base = base or tempfile.mkdtemp(prefix="svt-", dir="/tmp")
        self.args = list(args)  # more daemon flags
        self.sock = os.path.join(self.base, "sv.sock")
        self.state = os.path.join(self.base, "state")
        self.root = os.path.join(self.base, "root")
        self.runtime = runtime
        self.ns = "svt" + secrets.token_hex(4)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.base, "daemon.log")
        self._clients = []
        self._n = 0

    # -- daemon ---------------------------------------------------------------------------------
    def start(self) -> "Supervisor":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "supervisor.daemon", "--address", self.sock, "--state", self.state,
             "--root", self.root, "--runtime", self.runtime, *self.args],
            cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(self._answers, 20, what=f"daemon socket (log: {self.log_path})")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    # -- clients -----------------------------------------------------------------------------------
    def id(self, prefix: str = "c") -> str:
        self._n += 1
        return f"{prefix}{self._n}-{secrets.token_hex(3)}"

    def client(self, namespace: str | None = None):
        from supervisor.client import Client
        c = Client(self.sock, namespace or self.ns)
        self._clients.append(c)
        return c

    def ctr(self, *args, check: bool = True, timeout: float = 60, input=None,
            namespace: str | None = None) -> subprocess.CompletedProcess:
        cmd = [CTR, "--address", self.sock, "--namespace", namespace or self.ns, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                             stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def ctl(self, *args, check: bool = True, timeout: float = 60, input=None, env=None):
        environ = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=self.sock, PYRUNC_NAMESPACE=self.ns,
                       PYRUNC_CTL_LOG_DIR=os.path.join(self.base, "logs"))
        environ.update(env or {})
        cmd = [PYTHON, "-m", "supervisor.ctl", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                             cwd=ROOT, env=environ,
                             stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"pyrunc-ctl {' '.join(args)} -> {res.returncode}\n"
                                 f"{res.stdout}{res.stderr}")
        return res

    # -- observation -------------------------------------------------------------------------------
    def task_dirs(self, namespace: str | None = None) -> list[str]:
        d = os.path.join(self.state, "tasks", namespace or self.ns)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def shim_pids(self) -> list[int]:
        """The zygote and every shim: the processes listening on a socket in <state>/s/ (their
        command lines are process titles such as ``pyrunc-shim ns=... id=...``, which do not
        name our directories)."""
        netns = ["self"] + ([self.proc.pid] if self.proc and self.proc.poll() is None else [])
        return processes_holding(unix_listeners_under(os.path.join(self.state, "s") + "/", netns))

    def runtime_list(self, namespace: str | None = None) -> list[dict]:
        root = os.path.join(self.state, "runtime", namespace or self.ns)
        if not os.path.isdir(root):
            return []
        out = subprocess.run([RUNTIME, "--root", root, "list", "--format", "json"],
                             capture_output=True, text=True).stdout
        return json.loads(out or "null") or []

    def db_count(self, table: str, namespace: str | None = None) -> int:
        import sqlite3
        db = sqlite3.connect(os.path.join(self.root, "meta.db"))
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table} WHERE ns=?",
                              (namespace or self.ns,)).fetchone()[0]
        finally:
            db.close()

    # -- clean-up ----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove everything this daemon and its containers created, whatever state it is in.

        Each step runs even if an earlier one failed; the first failure is raised at the end."""
        errors = []
        for step in (self._close_clients, self.stop, self._kill_our_processes,
                     self._delete_runtime_state, self._unmount, self._remove_cgroups,
                     lambda: shutil.rmtree(self.base, ignore_errors=True)):
            try:
                step()
            except Exception as e:  # keep cleaning
                errors.append(e)
        if errors:
            raise errors[0]

    def _close_clients(self) -> None:
        for c in self._clients:
            c.close()

    def _kill_our_processes(self) -> None:
        # shims outlive a stopped daemon by design; one in a network namespace that is gone has
        # no listener this process can see, but it still holds its log under our directory
        ours = processes_with_open(lambda link: link.startswith(self.base + "/"))
        for pid in set(processes_mentioning(self.state + "/")) | set(self.shim_pids()) | set(ours):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _delete_runtime_state(self) -> None:
        runtime_root = os.path.join(self.state, "runtime")
        for ns in os.listdir(runtime_root) if os.path.isdir(runtime_root) else []:
            for c in self.runtime_list(ns):
                subprocess.run([RUNTIME, "--root", os.path.join(runtime_root, ns), "delete",
                                "--force", c["id"]], capture_output=True)

    def _unmount(self) -> None:
        for target in reversed(mounts_under(self.base)):
            subprocess.run(["umount", "-l", target], capture_output=True)

    def _remove_cgroups(self) -> None:
        for d in cgroup_dirs(self.ns):
            remove_cgroup_tree(d)


# -- helpers shared by the tests ------------------------------------------------------------------

def make_spec(sv, rootfs, cid, args, terminal=False):
    spec = specmod.default_spec(rootfs, args, cid)
    return specmod.apply_options(spec, terminal=terminal, cgroups_path=f"/{sv.ns}/{cid}")


def code_of(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as exc:
        fn(*args, **kw)
    return exc.value.code(), exc.value.details()


class Fifos:
    """Client-side FIFOs with readers that collect everything into memory."""

    def __init__(self, base, name, stdin=False, outputs=("stdout", "stderr")):
        self.dir = os.path.join(base, "fifo-" + name)
        os.makedirs(self.dir)
        self.paths = {}
        for s in (("stdin",) if stdin else ()) + tuple(outputs):
            self.paths[s] = os.path.join(self.dir, s)
            os.mkfifo(self.paths[s])
        self.data = {"stdout": b"", "stderr": b""}
        self.fds = {s: os.open(self.paths[s], os.O_RDONLY | os.O_NONBLOCK) for s in outputs}
        self.threads = []

    def start(self):
        for s, fd in self.fds.items():
            t = threading.Thread(target=self._read, args=(s, fd), daemon=True)
            t.start()
            self.threads.append(t)

    def _read(self, s, fd):
        while True:
            select.select([fd], [], [])
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            self.data[s] += chunk
        os.close(fd)

    def join(self):
        for t in self.threads:
            t.join(10)


def create(sv, client, rootfs, args, cid=None, **task_kw):
    cid = cid or sv.id()
    client.create_container(cid, make_spec(sv, rootfs, cid, args))
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, **task_kw))
    return cid


def destroy(sv, client, cid):
    try:
        client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9, all=True))
    except grpc.RpcError:
        pass
    try:
        client.wait(cid, timeout=20)
        client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    except grpc.RpcError:
        pass
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def assert_no_task_left(sv, cid):
    assert cid not in sv.task_dirs()
    assert cid not in [c["id"] for c in sv.runtime_list()]
    assert not cgroup_dirs(sv.ns, cid)


def pty_run(argv, cols=91, rows=17, send=b"", timeout=30):
    master, slave = os.openpty()
    winsize = b"".join(v.to_bytes(2, sys.byteorder) for v in (rows, cols, 0, 0))
    fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    if send:
        os.write(master, send)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout), out.decode(errors="replace")
