"""The engine harness: a private containerd and a private podman store driving a runtime.

One :class:`Workspace` per test session holds everything the engines create: a temp tree
``/tmp/pyrunc-eng-<token>/`` (configs, stores, sockets, runtime roots, FIFOs, logs), cgroups
named ``pyrunc-eng-<token>*``, a tmux server on its own socket.  Nothing is shared with other
users of the machine: containerd runs with its own root, state dir and socket; podman gets its
own containers.conf, storage.conf, --root, --runroot and tmp dir.

Runtimes are called through a tracing wrapper (``<ws>/trace/<name>/<name>``, the same basename as
the real binary, so the engines treat it exactly as they treat the binary itself): a few lines
of sh that append the command line to ``<ws>/trace/calls.log`` and ``exec`` the real runtime
(an ``update`` reading its resources from stdin is logged with them and piped on).  A failing
test prints the runtime calls made while it ran.  ``ENGINES_DIRECT=1`` hands the engines the
binaries themselves.

Teardown works even after failures: every container, task, image of the private stores, the
daemon and its shims, mounts below the tree, cgroups named after the session, the tmux server
and the tree itself.  Only processes this session started (or that live in its cgroups) are
ever signalled.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
IMAGE = "localhost/pyrunc-eng/busybox:latest"
PAUSE_IMAGE = "localhost/pyrunc-eng/pause:latest"     # the CRI sandbox image (sleeps forever)
# Below this machine's hard limits (nofile 20000, nproc 96365; no CAP_SYS_RESOURCE): podman's
# defaults exceed them and every runtime then fails to set them.
ULIMITS = ["nofile=1024:1024", "nproc=4096:4096"]


TIMING = os.environ.get("ENGINES_TIMING") == "1"     # print each command's duration


@dataclass(frozen=True)
class Runtime:
    name: str           # "pyrunc" or "runc": the column of the table
    binary: str         # what the engines are told to run (the tracing wrapper or the binary)
    real: str           # the runtime itself


def runtime_binaries() -> dict[str, str]:
    return {
        "pyrunc": os.environ.get("ENGINES_PYRUNC") or str(REPO / ".venv" / "bin" / "pyrunc"),
        "runc": os.environ.get("ENGINES_RUNC") or "/usr/sbin/runc",
    }


class CommandFailed(AssertionError):
    pass


def run(cmd: list[str], *, env=None, timeout: float = 60, input: str | None = None,
        check: bool = False, cwd=None) -> subprocess.CompletedProcess:
    """Run a command to completion (own process group, killed on time-out)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
        if TIMING:
            print(f"[{time.monotonic() - t0:6.2f}s] {shlex.join(cmd)[:300]}", file=sys.stderr)
    except subprocess.TimeoutExpired:
        _killpg(p.pid)
        out, err = p.communicate()
        raise CommandFailed(f"timed out after {timeout}s: {shlex.join(cmd)}\nstdout: {out}\n"
                            f"stderr: {err}") from None
    res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and res.returncode != 0:
        raise CommandFailed(describe(res))
    return res


def describe(res: subprocess.CompletedProcess) -> str:
    return (f"`{shlex.join(res.args)}` exited {res.returncode}\n"
            f"stdout: {res.stdout.strip()[-2000:]}\nstderr: {res.stderr.strip()[-2000:]}")


def _killpg(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(pred, timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    """Poll ``pred`` until it returns a true value; returns it, or raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- terminals

def run_in_pty(cmd: list[str], *, env=None, cwd=None, timeout: float = 30, rows: int = 24,
               cols: int = 80) -> tuple[int, str]:
    """Run ``cmd`` with a new pty as its controlling terminal and stdio; (exit status, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def child_setup():              # runs in the child: own session, the pty as its terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                         preexec_fn=child_setup, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _killpg(p.pid)
                raise AssertionError(f"timed out after {timeout}s: {shlex.join(cmd)}\n"
                                     f"output: {b''.join(chunks).decode(errors='replace')}")
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:        # EIO: every slave end is closed
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                chunks.append(data)
            elif p.poll() is not None:
                # the command exited; a grandchild may still hold the slave: take what is left
                _drain(master, chunks)
                break
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
    return rc, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def _drain(fd: int, chunks: list[bytes]):
    while select.select([fd], [], [], 0.1)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


class Tmux:
    """A tmux server on the session's own socket: one window per interactive scenario."""

    def __init__(self, ws: "Workspace"):
        self.socket = ws.path / "tmux.sock"
        self.names = itertools.count(1)

    def cmd(self, *args, check=True) -> subprocess.CompletedProcess:
        return run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args], check=check,
                   timeout=20)

    def start(self, command: str, env: dict[str, str], rows: int = 30, cols: int = 100) -> str:
        """Start ``command`` (a shell line) in a new detached session; returns its name.  Its
        exit status goes to a file (see :meth:`exit_status`)."""
        name = f"s{next(self.names)}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        rc_file = self.socket.parent / f"tmux-{name}.rc"
        line = (f"env {exports} {command}" if exports else command) + f"; echo $? > {rc_file}"
        self.cmd("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                 "-c", str(self.socket.parent), f"sh -c {shlex.quote(line)}")
        self.cmd("set-option", "-t", name, "status", "off", check=False)
        self.cmd("set-option", "-t", name, "remain-on-exit", "on", check=False)
        return name

    def send(self, name: str, text: str, enter: bool = True):
        self.cmd("send-keys", "-t", name, "-l", text)
        if enter:
            self.cmd("send-keys", "-t", name, "Enter")

    def screen(self, name: str) -> str:
        return self.cmd("capture-pane", "-p", "-J", "-t", name, "-S", "-200").stdout

    def wait_screen(self, name: str, text: str, timeout: float = 20) -> str:
        last = [""]

        def seen():
            last[0] = self.screen(name)
            return text in last[0]
        try:
            wait_for(seen, timeout, 0.1, f"{text!r} on the tmux screen")
        except AssertionError as e:
            raise AssertionError(f"{e}\nscreen:\n{last[0]}") from None
        return last[0]

    def pane(self, name: str, fmt: str) -> str:
        return self.cmd("display-message", "-p", "-t", name, fmt).stdout.strip()

    def exit_status(self, name: str, timeout: float = 20) -> int:
        """Wait for the session's command to exit; its exit status."""
        rc_file = self.socket.parent / f"tmux-{name}.rc"
        text = wait_for(lambda: rc_file.exists() and rc_file.read_text().strip(), timeout, 0.1,
                        "the command in tmux to exit")
        return int(text)

    def kill_server(self):
        if self.socket.exists():
            self.cmd("kill-server", check=False)


# ---------------------------------------------------------------- the workspace

class Workspace:
    """The session's temp tree and everything named after it."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="pyrunc-eng-", dir="/tmp"))
        self.token = secrets.token_hex(3)
        self.prefix = f"pyrunc-eng-{self.token}"       # cgroups, namespaces, names
        self.counter = itertools.count(1)
        self.trace_log = self.path / "trace" / "calls.log"
        self.trace_log.parent.mkdir(parents=True)
        self.trace_log.touch()
        self.runtimes = self._runtimes()
        self.tmux = Tmux(self)
        self.known_ids: set[str] = set()              # container IDs handed to the runtimes
        self.cleanups: list = []                      # run after the processes are killed

    def name(self, tag: str = "c") -> str:
        return f"{self.prefix}-{tag}{next(self.counter)}"

    def mkdir(self, *parts) -> Path:
        p = self.path.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def _runtimes(self) -> dict[str, Runtime]:
        out = {}
        for name, real in runtime_binaries().items():
            if os.environ.get("ENGINES_DIRECT") == "1":
                out[name] = Runtime(name, real, real)
                continue
            d = self.mkdir("trace", name)
            wrapper = d / Path(real).name
            wrapper.write_text(_WRAPPER.format(log=shlex.quote(str(self.trace_log)),
                                               tag=name, real=shlex.quote(real)))
            wrapper.chmod(0o755)
            out[name] = Runtime(name, str(wrapper), real)
        return out

    def trace_offset(self) -> int:
        try:
            return self.trace_log.stat().st_size
        except OSError:
            return 0

    def trace_since(self, offset: int) -> str:
        try:
            with open(self.trace_log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        """Everything named after the session; safe to call after any failure."""
        self.tmux.kill_server()
        kill_session_processes(self)
        for fn in self.cleanups:
            fn()
        unmount_below(self.path)
        remove_cgroups(self.prefix)
        delete_runtime_state(self)
        unmount_below(self.path)
        shutil.rmtree(self.path, ignore_errors=True)


# The tracing wrapper: log the call (shell-quoted argv; an update's resources from stdin), then
# become the runtime.  Kept to shell built-ins on the common path: it runs on every engine call.
_WRAPPER = r"""#!/bin/sh
line="[{tag}]"
upd=0
for a in "$@"; do
  case $a in
    update) upd=1 ;;
  esac
  case $a in
    ''|*[!A-Za-z0-9_./=:,@%+-]*) line="$line '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
    *) line="$line $a" ;;
  esac
done
if [ $upd = 1 ] && [ ! -t 0 ]; then
  case " $* " in
    *" - "*|*"=- "*)
      data=$(cat)
      printf '%s\n  stdin: %s\n' "$line" "$data" >> {log}
      printf '%s' "$data" | {real} "$@"
      exit $? ;;
  esac
fi
printf '%s\n' "$line" >> {log}
exec {real} "$@"
"""


# ---------------------------------------------------------------- host-side cleanup

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def mounts_below(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix) or target == str(root):
                found.append(target)
    return found


def unmount_below(root: Path):
    for _ in range(3):
        targets = sorted(set(mounts_below(root)), key=len, reverse=True)
        if not targets:
            return
        for t in targets:
            _libc.umount2(t.encode(), MNT_DETACH)


def cgroup_dirs(prefix: str) -> list[Path]:
    """Every cgroup directory (any hierarchy, any depth below the root) named ``prefix*``."""
    found = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hier in CGROUP_ROOT.iterdir():
        if not hier.is_dir():
            continue
        for d in hier.iterdir():
            if d.is_dir() and d.name.startswith(prefix):
                found.append(d)
    return found


def pids_in_cgroups(prefix: str) -> set[int]:
    pids = set()
    for top in cgroup_dirs(prefix):
        for dirpath, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
                except OSError:
                    pass
    return pids


def thaw(top: Path) -> None:
    """Thaw every v1 freezer cgroup at or below ``top``: a frozen task's SIGKILL stays pending
    (and its cgroup cannot be removed) until then."""
    for dirpath, _, files in os.walk(top):
        if "freezer.state" in files:
            try:
                Path(dirpath, "freezer.state").write_text("THAWED")
            except OSError:
                pass


def kill_cgroup(rel: str):
    """SIGKILL every process in cgroup ``rel`` (any hierarchy, with its children), thawed."""
    for _ in range(5):
        pids = set()
        for hier in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
            top = hier / rel.lstrip("/")
            if not top.is_dir():
                continue
            thaw(top)
            for dirpath, _, _ in os.walk(top):
                try:
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
                except (OSError, ValueError):
                    pass
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def remove_cgroups(prefix: str):
    for top in cgroup_dirs(prefix):
        # frozen cgroups (a paused container) first thawed so their processes can die
        thaw(top)
        for dirpath, dirs, _ in os.walk(top, topdown=False):
            for _ in range(20):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def session_pids(ws: Workspace) -> set[int]:
    """Processes this session started: in its cgroups, with its tree in their command line
    (containerd, its shims, conmon, a stray engine client), or listening on a unix socket in its
    tree (pyrunc-supervisor's shims, whose command lines are titles: ``pyrunc-shim ns=... id=...``)."""
    mine = pids_in_cgroups(ws.prefix)
    needle = str(ws.path).encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "cmdline").read_bytes():
                    mine.add(int(d.name))
            except OSError:
                pass
    mine |= listening_below(str(ws.path) + "/")
    mine.discard(os.getpid())
    return mine


def listening_below(prefix: str) -> set[int]:
    """Processes with a listening unix socket bound below ``prefix``, in any network namespace
    (a socket's path is listed only in its own namespace's /proc/PID/net/unix)."""
    inodes, seen_netns, fds = set(), set(), {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fds[int(d.name)] = [os.readlink(f) for f in (d / "fd").iterdir()]
            netns = os.stat(d / "ns" / "net").st_ino
            if netns not in seen_netns:
                for line in (d / "net" / "unix").read_text().splitlines()[1:]:
                    f = line.split(None, 7)     # ... Flags(3) ... Inode(6) Path(7)
                    if len(f) == 8 and f[7].startswith(prefix) and int(f[3], 16) & 0x10000:
                        inodes.add(f"socket:[{f[6]}]")
                seen_netns.add(netns)
        except OSError:
            continue
    return {pid for pid, links in fds.items() if inodes.intersection(links)}


def kill_session_processes(ws: Workspace):
    for _ in range(10):
        pids = session_pids(ws)
        if not pids:
            return
        for top in cgroup_dirs(ws.prefix):          # thaw, or SIGKILL stays pending
            thaw(top)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def delete_runtime_state(ws: Workspace):
    """Runtime state left in the runtimes' default roots by containers of this session."""
    for name, rt in ws.runtimes.items():
        root = DEFAULT_ROOT[name]
        for cid in ws.known_ids:
            if Path(root, cid).exists():
                run([rt.real, "--root", root, "delete", "--force", cid], timeout=20)


# ---------------------------------------------------------------- images

def build_rootfs_tar(ws: Workspace) -> Path:
    """A busybox rootfs (busybox-static, one symlink per applet) as a tarball for podman import."""
    root = ws.mkdir("image", "rootfs")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = run(["/bin/busybox", "--list"], check=True).stdout.split()
    for a in applets:
        if a != "busybox" and not (root / "bin" / a).exists():
            os.symlink("busybox", root / "bin" / a)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "app:x:1000:1000:app:/home/app:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nnogroup:x:65534:\n")
    os.chown(root / "home" / "app", 1000, 1000)
    tar = ws.path / "image" / "busybox.tar"
    run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tar), "."], check=True)
    return tar


# ---------------------------------------------------------------- podman

class Podman:
    """podman with its own containers.conf, storage.conf, --root, --runroot and tmp dir."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        base = ws.mkdir("podman")
        self.root, self.runroot = ws.mkdir("podman", "root"), ws.mkdir("podman", "runroot")
        self.tmp, self.netconf = ws.mkdir("podman", "tmp"), ws.mkdir("podman", "networks")
        self.events = base / "events.log"
        self.cwd = ws.mkdir("podman", "cwd")
        self.cgroup_parent = f"/{ws.prefix}-podman"
        conf = base / "containers.conf"
        conf.write_text(f"""# pyrunc engine tests: private podman configuration
[containers]
default_ulimits = {json.dumps(ULIMITS)}
netns = "none"
log_driver = "k8s-file"

[network]
network_config_dir = "{self.netconf}"

[engine]
cgroup_manager = "cgroupfs"
runtime_supports_json = ["runc", "pyrunc"]
events_logger = "file"
events_logfile_path = "{self.events}"
tmp_dir = "{self.tmp}"
""")
        storage = base / "storage.conf"
        storage.write_text(f"""[storage]
driver = "overlay"
graphroot = "{self.root}"
runroot = "{self.runroot}"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf),
                        CONTAINERS_STORAGE_CONF=str(storage),
                        CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"),
                        TMPDIR=str(ws.mkdir("podman", "tmpdir")))
        (base / "registries.conf").write_text("unqualified-search-registries = []\n")

    def argv(self, *args, runtime: Runtime | None = None) -> list[str]:
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot),
               "--tmpdir", str(self.tmp), "--cgroup-manager", "cgroupfs",
               "--events-backend", "file"]
        if runtime is not None:
            cmd += ["--runtime", runtime.binary]
        return cmd + [str(a) for a in args]

    def __call__(self, *args, runtime: Runtime | None = None, timeout: float = 60,
                 check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
        # from the session's tree: conmon writes files (an ``oom`` marker) into its cwd
        return run(self.argv(*args, runtime=runtime), env=self.env, timeout=timeout, check=check,
                   input=input, cwd=self.cwd)

    def import_images(self, tar: Path):
        self("import", "--change", 'CMD ["/bin/sh"]', tar, IMAGE, check=True)
        self("import", "--change", 'CMD ["/bin/sleep", "2147483647"]', tar, PAUSE_IMAGE,
             check=True)

    def save_oci(self, image: str, dest: Path):
        self("save", "--format", "oci-archive", "-o", dest, image, check=True)

    def all_ids(self) -> list[str]:
        res = self("ps", "-aq", "--no-trunc")
        return res.stdout.split() if res.returncode == 0 else []

    def cleanup(self):
        self.ws.known_ids.update(self.all_ids())
        self("rm", "-af", "-t", "0", timeout=120)
        self("rmi", "-af", timeout=60)


class PodmanClient:
    """podman bound to one runtime, naming and removing the containers of one test."""

    def __init__(self, podman: Podman, runtime: Runtime):
        self.podman, self.runtime, self.ws = podman, runtime, podman.ws
        self.names: list[str] = []

    def name(self) -> str:
        n = self.ws.name("p")
        self.names.append(n)
        return n

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.podman(*args, runtime=self.runtime, **kw)

    def argv(self, *args) -> list[str]:
        return self.podman.argv(*args, runtime=self.runtime)

    @property
    def env(self) -> dict:
        return self.podman.env

    def run_opts(self, name: str) -> list[str]:
        """The options every test container gets: its name, no network, the session's cgroup."""
        return ["--name", name, "--network", "none", "--cgroup-parent",
                self.podman.cgroup_parent]

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, name, check=True).stdout.strip()

    def container_id(self, name: str) -> str:
        cid = self.inspect(name, "{{.Id}}")
        self.ws.known_ids.add(cid)
        return cid

    def cleanup(self):
        for n in self.names:
            res = self("inspect", "--format", "{{.Id}}", n)
            if res.returncode == 0:
                self.ws.known_ids.add(res.stdout.strip())
                self("rm", "-f", "-t", "0", n, timeout=60)


# ---------------------------------------------------------------- containerd

class Containerd:
    """A private containerd: own config, root, state dir, socket; the CRI plugin configured
    with one runtime handler per runtime (io.containerd.runc.v2 with ``BinaryName``)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.dir = ws.mkdir("containerd")
        self.sock = self.dir / "containerd.sock"
        self.ns = ws.prefix                     # ctr's namespace: cgroups /<prefix>/<id>
        self.fifo = ws.mkdir("containerd", "fifo")
        self.cni_conf = ws.mkdir("containerd", "cni")        # empty: pods use the host network
        self.cni_bin = ws.mkdir("containerd", "cnibin")
        self.log = self.dir / "containerd.log"
        self.proc: subprocess.Popen | None = None
        self.cri_cgroup_parent = f"/{ws.prefix}-cri"
        # ctr makes its console sockets (run -t, exec -t) under TMPDIR
        self.env = dict(os.environ, TMPDIR=str(ws.mkdir("containerd", "tmp")))

    def runc_root(self, runtime: Runtime, kind: str = "ctr") -> Path:
        return self.ws.mkdir("containerd", f"{kind}-root", runtime.name)

    def config(self) -> str:
        crt = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes'
        handlers = "".join(f"""
[{crt}.{rt.name}]
  runtime_type = "io.containerd.runc.v2"
[{crt}.{rt.name}.options]
  BinaryName = "{rt.binary}"
  Root = "{self.runc_root(rt, 'cri')}"
  SystemdCgroup = false
""" for rt in self.ws.runtimes.values())
        return f"""# pyrunc engine tests: a private containerd
version = 2
root = "{self.dir / 'root'}"
state = "{self.dir / 'state'}"
oom_score = 0

[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  max_container_log_line_size = 16384
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{self.cni_bin}"
  conf_dir = "{self.cni_conf}"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
{handlers}"""

    def start(self):
        cfg = self.dir / "config.toml"
        cfg.write_text(self.config())
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir, env=self.env,
                                     start_new_session=True)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            return self.sock.exists() and self.ctr("version").returncode == 0
        wait_for(up, 30, 0.1, "containerd to listen")

    def ctr(self, *args, ns: str | None = None, timeout: float = 60, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess:
        return run(["ctr", "--address", str(self.sock), "--namespace", ns or self.ns,
                    *[str(a) for a in args]], env=self.env, timeout=timeout, check=check,
                   input=input, cwd=self.dir)

    def ctr_argv(self, *args) -> list[str]:
        return ["ctr", "--address", str(self.sock), "--namespace", self.ns, *[str(a) for a in args]]

    def shim_sockets(self) -> list[Path]:
        """The sockets the runc v2 shims of this daemon make: containerd 1.6 puts them in
        /run/containerd/s/ (whatever the daemon's state dir), named by the sha256 of
        ``<daemon address>/<namespace>/<id>``.  A shim that is killed leaves its socket."""
        import hashlib
        return [Path("/run/containerd/s") /
                hashlib.sha256(f"{self.sock}/{ns}/{i}".encode()).hexdigest()
                for ns in (self.ns, "k8s.io") for i in self.ws.known_ids]

    def import_image(self, archive: Path, ns: str | None = None):
        self.ctr("images", "import", archive, ns=ns, check=True, timeout=120)

    def cleanup_namespace(self, ns: str):
        for _ in range(2):
            tasks = self.ctr("tasks", "ls", "-q", ns=ns).stdout.split()
            for t in tasks:
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", t, ns=ns)
            for t in tasks:
                self.ctr("tasks", "delete", "-f", t, ns=ns)
            for c in self.ctr("containers", "ls", "-q", ns=ns).stdout.split():
                self.ctr("containers", "rm", c, ns=ns)
        images = self.ctr("images", "ls", "-q", ns=ns).stdout.split()
        if images:
            self.ctr("images", "rm", *images, ns=ns)
        self.ctr("namespaces", "rm", ns, ns="default")

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                for ns in self.ctr("namespaces", "ls", "-q", ns="default").stdout.split():
                    self.cleanup_namespace(ns)
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def remove_shim_sockets(self):
        """After the shims are gone (Workspace.cleanup kills what is left)."""
        for sock in self.shim_sockets():
            try:
                sock.unlink()
            except OSError:
                pass


class CtrClient:
    """ctr bound to one runtime (``--runc-binary``, a runtime root of its own)."""

    def __init__(self, ctd: Containerd, runtime: Runtime):
        self.ctd, self.runtime, self.ws = ctd, runtime, ctd.ws
        self.ids: list[str] = []
        self.root = ctd.runc_root(runtime)

    def name(self) -> str:
        n = self.ws.name("t")
        self.ids.append(n)
        self.ws.known_ids.add(n)
        return n

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.ctd.ctr(*args, **kw)

    def argv(self, *args) -> list[str]:
        return self.ctd.ctr_argv(*args)

    def run_opts(self) -> list[str]:
        return ["--runc-binary", self.runtime.binary, "--runc-root", str(self.root),
                "--fifo-dir", str(self.ctd.fifo)]

    def cleanup(self):
        for cid in self.ids:
            # a task stuck in the shim (say, a runtime call that never returns) would block
            # ctr's kill: the processes in the task's cgroup go first, then the engine's records
            kill_cgroup(f"/{self.ctd.ns}/{cid}")
            self("tasks", "delete", "-f", cid, timeout=20)
            self("containers", "rm", cid, timeout=20)

    def task_status(self, cid: str) -> str:
        for line in self("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                return parts[-1]
        return ""


# ---------------------------------------------------------------- host views

def cgroup_of(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller list or '' (cgroup2): path}."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def parse_cgroup_file(text: str) -> dict[str, str]:
    out = {}
    for line in text.strip().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def status_field(status_text: str, key: str) -> str:
    for line in status_text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in /proc/self/status:\n{status_text}")


CAP = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETUID": 7, "NET_RAW": 13,
       "SYS_ADMIN": 21, "SYS_TIME": 25}

# Shell snippets read inside a container: a cgroup limit as cgroup v2 spells it ("max" or a
# number; "quota period" for the CPU), from v2 files or, on v1/hybrid hosts, the v1 ones.
PROBE_MEMORY = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
PROBE_PIDS = "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
PROBE_CPU = ("cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo "
             "\"$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
             "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\"")
# A loop that proves the container runs: a counter in a bind-mounted file.
COUNTER_LOOP = "i=0; while :; do i=$((i+1)); echo $i > /data/count; sleep 0.05; done"
# The runtimes' default state roots (podman passes no --root).
DEFAULT_ROOT = {"pyrunc": "/run/pyrunc", "runc": "/run/runc"}


def read_counter(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def caps_of(status_text: str, which: str = "CapEff") -> int:
    return int(status_field(status_text, which), 16)


# Run with --cap-drop CHOWN --cap-add SYS_ADMIN; assert_cap_drop_and_add reads its output.
CAP_PROBE = ("cat /proc/self/status; chown 65534 /tmp 2>&1; echo chown=$?; "
             "mkdir /tmp/m; mount -t tmpfs probe /tmp/m 2>&1; echo mount=$?")


def assert_cap_drop_and_add(base: str, res: str) -> None:
    """``res`` is ``base`` (both /proc/self/status texts) without CHOWN and with SYS_ADMIN, in
    the effective, permitted and bounding sets; the probe's chown failed and its mount worked."""
    chown, admin = 1 << CAP["CHOWN"], 1 << CAP["SYS_ADMIN"]
    for which in ("CapEff", "CapPrm", "CapBnd"):
        want = (caps_of(base, which) & ~chown) | admin
        assert caps_of(res, which) == want, f"{which}: {res}"
    assert "chown=1" in res and "mount=0" in res, res


def host_mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if text in line]
