"""Docker on pyrunc-supervisor: a private dockerd whose containerd is the supervisor.

The chain under test is the seed's: ``docker`` CLI -> dockerd -> pyrunc-supervisor -> pyrunc-shim
-> the OCI runtime (pyrunc, or runc for the side-by-side column).  A :class:`DockerStack` is one
supervisor and one dockerd, both started inside a network namespace the test made (entered with
``nsenter --net=``, so the host's cgroup mounts stay visible), each with directories of their own
under the session's tree:

- the supervisor: ``--address``, ``--state``, ``--root``;
- dockerd: ``--containerd`` (the supervisor's socket), ``--data-root``, ``--exec-root``,
  ``--pidfile``, ``-H unix://...``, ``--config-file`` (only the trust key's path),
  ``--cgroup-parent`` named after the session (the workspace removes such cgroups), and one
  ``--add-runtime`` per runtime column (the tracing wrappers), pyrunc the default.

Docker's bridge, its iptables rules and published ports live in the namespace, so the host's
network is never touched; deleting the namespace takes them all.  Tear-down works after any
failure: containers removed through dockerd when it answers, the daemons stopped (SIGTERM, then
SIGKILL), every process still inside the namespace killed (docker-proxy, shims, containers
sharing it), mounts below the stack's tree detached, the namespace deleted, the tree removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import enginelib as el

IMAGE = "pyrunc-eng/busybox:latest"
DOCKER = "/usr/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


# ---------------------------------------------------------------- network namespace

class Netns:
    """A named network namespace (``ip netns add``) with its loopback up."""

    def __init__(self, name: str):
        self.name = name
        self.path = Path("/run/netns") / name
        el.run(["ip", "netns", "add", name], check=True)
        try:
            self.nsenter(["ip", "link", "set", "lo", "up"], check=True)
            self.inode = os.stat(self.path).st_ino
        except BaseException:
            self.delete()
            raise

    def argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *cmd]

    def nsenter(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return el.run(self.argv(cmd), **kw)

    def pids(self) -> set[int]:
        """Every process whose network namespace is this one."""
        found = set()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.stat(d / "ns" / "net").st_ino == self.inode:
                        found.add(int(d.name))
                except OSError:
                    pass
        found.discard(os.getpid())
        return found

    def kill_all(self):
        for _ in range(20):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def delete(self):
        el.run(["ip", "netns", "delete", self.name])


# ---------------------------------------------------------------- the stack

def _stop(proc: subprocess.Popen | None, timeout: float = 30):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DockerStack:
    """pyrunc-supervisor + dockerd in a network namespace of their own."""

    def __init__(self, ws: el.Workspace, tag: str = "d", live_restore: bool = False,
                 containerd: Path | None = None):
        self.ws = ws
        self.containerd = containerd        # a real containerd's socket instead (the anchor)
        self.dir = ws.mkdir(f"docker-{tag}")
        self.netns: Netns | None = None
        self.sv_sock = self.dir / "sv.sock"
        self.sock = self.dir / "docker.sock"
        self.sv_log, self.log = self.dir / "supervisor.log", self.dir / "dockerd.log"
        self.sv: subprocess.Popen | None = None
        self.dockerd: subprocess.Popen | None = None
        self.cgroup_parent = f"/{ws.prefix}-{tag}"
        self.live_restore = live_restore
        self.netns_name = f"{ws.prefix}-{tag}"
        # the docker CLI's own state (config.json, contexts) stays in the tree too
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=str(ws.mkdir(f"docker-{tag}", "cli")))
        self.env.pop("DOCKER_CONTEXT", None)
        # a runtime column -> the name dockerd knows it by ("runc" is dockerd's built-in)
        self.runtime_names = {name: f"eng-{name}" for name in ws.runtimes}

    # -- daemons ---------------------------------------------------------------------------
    def start(self):
        self.netns = Netns(self.netns_name)
        if self.containerd is None:
            self.start_supervisor()
        self.start_dockerd()

    def _serving_lines(self) -> int:
        try:
            # the daemon's ready line (supervisor/daemon.py: log.info("serving", address=...))
            return self.sv_log.read_text().count(f"msg=serving address={self.sv_sock} ")
        except OSError:
            return 0

    def start_supervisor(self):
        before = self._serving_lines()      # a restart appends to the same log
        logf = open(self.sv_log, "ab")
        cmd = [sys.executable, "-m", "supervisor.daemon", "--address", str(self.sv_sock),
               "--state", str(self.dir / "sv-state"), "--root", str(self.dir / "sv-root"),
               "--runtime", self.ws.runtimes["pyrunc"].binary]
        self.sv = subprocess.Popen(self.netns.argv(cmd), stdin=subprocess.DEVNULL, stdout=logf,
                                   stderr=logf, cwd=el.REPO, start_new_session=True)
        logf.close()

        def up():
            if self.sv.poll() is not None:
                raise RuntimeError(f"pyrunc-supervisor exited {self.sv.returncode}:\n"
                                   f"{self.sv_log.read_text()[-3000:]}")
            return self._serving_lines() > before
        el.wait_for(up, 60, 0.05, "pyrunc-supervisor to listen")

    def kill_supervisor(self):
        """kill -9, as a crash would."""
        self.sv.kill()
        self.sv.wait()

    def dockerd_argv(self) -> list[str]:
        cfg = self.dir / "daemon.json"
        # the trust key would go to /etc/docker/key.json: the option is daemon.json-only
        cfg.write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        cmd = [DOCKERD, "--debug", "--containerd", str(self.containerd or self.sv_sock),
               "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
               "--pidfile", str(self.dir / "docker.pid"), "-H", f"unix://{self.sock}",
               "--config-file", str(cfg),
               "--cgroup-parent", self.cgroup_parent, "--storage-driver", "overlay2"]
        for name, rt in self.ws.runtimes.items():
            cmd += ["--add-runtime", f"{self.runtime_names[name]}={rt.binary}"]
        cmd += ["--default-runtime", self.runtime_names["pyrunc"]]
        if self.live_restore:
            cmd.append("--live-restore")
        return cmd

    def start_dockerd(self):
        logf = open(self.log, "ab")
        self.dockerd = subprocess.Popen(self.netns.argv(self.dockerd_argv()),
                                        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                        cwd=self.dir, start_new_session=True)
        logf.close()

        def up():
            if self.dockerd.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.dockerd.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            return self.sock.exists() and self("version").returncode == 0
        el.wait_for(up, 90, 0.1, "dockerd to answer")

    def stop_dockerd(self):
        _stop(self.dockerd)

    def stop(self):
        """Everything the stack made, whatever state it is in."""
        try:
            if self.dockerd is not None and self.dockerd.poll() is None:
                ids = self("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self("rm", "-f", *ids, timeout=120)
        except AssertionError:
            pass
        finally:
            _stop(self.dockerd)
            _stop(self.sv)
            if self.netns is not None:
                self.netns.kill_all()
            el.unmount_below(self.dir)
            if self.netns is not None:
                self.netns.delete()

    # -- the CLI -------------------------------------------------------------------------------
    def argv(self, *args) -> list[str]:
        return [DOCKER, *[str(a) for a in args]]

    def __call__(self, *args, timeout: float = 120, check: bool = False,
                 input: str | None = None) -> subprocess.CompletedProcess:
        return el.run(self.argv(*args), env=self.env, timeout=timeout, check=check, input=input,
                      cwd=self.dir)

    def import_image(self, tar: Path):
        self("import", "--change", 'CMD ["/bin/sh"]', tar, IMAGE, check=True)

    def logs_tail(self, n: int = 60) -> str:
        out = []
        for f in (self.log, self.sv_log):
            try:
                out.append(f"--- {f.name}\n" + "\n".join(f.read_text().splitlines()[-n:]))
            except OSError:
                pass
        return "\n".join(out)


class DockerClient:
    """The docker CLI bound to one runtime column; removes the containers of one test."""

    def __init__(self, stack: DockerStack, runtime: el.Runtime):
        self.stack, self.runtime, self.ws = stack, runtime, stack.ws
        self.names: list[str] = []

    def name(self) -> str:
        n = self.ws.name("k")
        self.names.append(n)
        return n

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.stack(*args, **kw)

    def argv(self, *args) -> list[str]:
        return self.stack.argv(*args)

    @property
    def env(self) -> dict:
        return self.stack.env

    def run_opts(self, name: str | None = None) -> list[str]:
        opts = ["--runtime", self.stack.runtime_names[self.runtime.name]]
        return opts + (["--name", name] if name else [])

    def run(self, *args, name: str | None = None, **kw) -> subprocess.CompletedProcess:
        return self("run", *self.run_opts(name), *args, **kw)

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, name, check=True).stdout.strip()

    def wait_state(self, name: str, fmt: str, want: str, timeout: float = 60) -> str:
        last = [""]

        def seen():
            res = self("inspect", "--format", fmt, name)
            last[0] = res.stdout.strip() if res.returncode == 0 else res.stderr.strip()
            return last[0] == want
        try:
            el.wait_for(seen, timeout, 0.2, f"{name}: {fmt} == {want!r}")
        except AssertionError as e:
            raise AssertionError(f"{e} (last: {last[0]!r})\n{self.stack.logs_tail()}") from None
        return last[0]

    def cleanup(self):
        for n in self.names:
            res = self("inspect", "--format", "{{.Id}}", n, timeout=30)
            if res.returncode == 0:
                self.ws.known_ids.add(res.stdout.strip())
                self("rm", "-f", n, timeout=60)
