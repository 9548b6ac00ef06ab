"""pyrunc-ctl against the docker CLI, side by side in one run (issue 16, "Measurements").

(a) ``run --rm IMAGE true``: ``pyrunc-ctl`` (the console script, as a user types it) on
    pyrunc-supervisor vs ``docker`` on Debian's docker.io (dockerd on its own containerd, with
    runc). Interleaved (pyrunc-ctl, docker, pyrunc-ctl, ...) so drift in the machine's load hits
    both alike; medians. Target: ratio <= 0.5.
(b) ``ps`` with a few running containers on each. Target: ratio <= 1.0.
(c) ``--help``: the client's bare start-up cost (no daemon involved).
(d) ``inspect NAME`` of a running container.

Every daemon runs inside a network namespace made here (entered with nsenter), dockerd with
``--bridge=none --iptables=false`` and its own containerd, data root, exec root and sockets in a
temporary directory, so nothing on the host changes; docker containers run with
``--network none`` (pyrunc-ctl's have a private network namespace with loopback only). Docker's
image is the same busybox rootfs, imported with ``docker import``. pyrunc-ctl runs the rootfs
directly (no copy-on-write layer until images land), docker mounts an overlay: an honest
difference, noted in the output. Nothing here asserts; numbers are printed with ratios.

    python bench/ctl.py [--runs N] [--ps-containers N] [--runtime PATH]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv", "bin")
PYTHON = os.path.join(VENV, "python") if os.path.exists(os.path.join(VENV, "python")) \
    else sys.executable
CTL = os.path.join(VENV, "pyrunc-ctl")
DOCKER, DOCKERD = "/usr/bin/docker", shutil.which("dockerd") or "/usr/sbin/dockerd"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"


def build_rootfs(path: str) -> str:
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(path, d))
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    for applet in ("sh", "true", "sleep"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    return path


def wait_socket(path: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise SystemExit(f"bench: {what} did not come up")


class Bench:
    def __init__(self, runtime: str):
        self.base = tempfile.mkdtemp(prefix="bench-ctl-", dir="/tmp")
        self.netns = "benchctl-" + secrets.token_hex(4)
        self.ns = "benchctl" + secrets.token_hex(3)
        self.runtime = runtime
        self.procs: list[subprocess.Popen] = []
        self.sv_sock = os.path.join(self.base, "sv.sock")
        self.docker_sock = os.path.join(self.base, "docker.sock")
        self.rootfs = build_rootfs(os.path.join(self.base, "rootfs"))
        self.env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=self.sv_sock,
                        PYRUNC_NAMESPACE=self.ns,
                        PYRUNC_CTL_LOG_DIR=os.path.join(self.base, "logs"))

    # -- daemons -------------------------------------------------------------------------------
    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(os.path.join(self.base, log), "wb") as f:
            proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                                    stdout=f, stderr=f, stdin=subprocess.DEVNULL, cwd=REPO)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        sv = self._spawn([PYTHON, "-m", "supervisor.daemon", "--address", self.sv_sock,
                          "--state", os.path.join(self.base, "sv-state"),
                          "--root", os.path.join(self.base, "sv-root"),
                          "--runtime", self.runtime], "supervisor.log")
        ctd = os.path.join(self.base, "ctd")
        os.makedirs(ctd)
        cfg = os.path.join(ctd, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{ctd}/root"\nstate = "{ctd}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{ctd}/c.sock"\n'
                    f'[ttrpc]\n  address = "{ctd}/c.sock.ttrpc"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        containerd = self._spawn([CONTAINERD, "--config", cfg], "containerd.log")
        wait_socket(f"{ctd}/c.sock", containerd, "containerd")
        dockerd = self._spawn([DOCKERD, "-H", "unix://" + self.docker_sock,
                               "--containerd", f"{ctd}/c.sock",
                               "--data-root", os.path.join(self.base, "docker"),
                               "--exec-root", os.path.join(self.base, "dexec"),
                               "--pidfile", os.path.join(self.base, "docker.pid"),
                               "--bridge=none", "--iptables=false", "--ip-masq=false",
                               "--storage-driver", "overlay2"], "dockerd.log")
        wait_socket(self.sv_sock, sv, "pyrunc-supervisor")
        wait_socket(self.docker_sock, dockerd, "dockerd")
        tar = subprocess.Popen(["tar", "-C", self.rootfs, "-c", "."], stdout=subprocess.PIPE)
        self.docker("import", "-", "bench-busybox:1", stdin=tar.stdout)
        tar.wait()

    def stop(self) -> None:
        for args in (["ps", "-aq"],):
            ids = self.docker(*args, check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        ids = self.ctl("ps", "-aq", check=False).stdout.split()
        if ids:
            self.ctl("rm", "-f", *ids, check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f if ln.split()[4].startswith(self.base)]
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", target], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- clients -------------------------------------------------------------------------------
    def docker(self, *args, check=True, stdin=None) -> subprocess.CompletedProcess:
        res = subprocess.run([DOCKER, "-H", "unix://" + self.docker_sock, *args],
                             capture_output=True, text=True, stdin=stdin or subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise SystemExit(f"bench: docker {' '.join(args)}: {res.stderr}")
        return res

    def ctl(self, *args, check=True) -> subprocess.CompletedProcess:
        res = subprocess.run([CTL, *args], capture_output=True, text=True, env=self.env,
                             stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise SystemExit(f"bench: pyrunc-ctl {' '.join(args)}: {res.stderr}")
        return res

    def timed(self, fn, *args) -> float:
        t = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t


def interleaved(bench: Bench, runs: int, ctl_args, docker_args) -> tuple[float, float]:
    ctl_times, docker_times = [], []
    bench.ctl(*ctl_args)  # warm caches on both sides
    bench.docker(*docker_args)
    for _ in range(runs):
        ctl_times.append(bench.timed(bench.ctl, *ctl_args))
        docker_times.append(bench.timed(bench.docker, *docker_args))
    return statistics.median(ctl_times), statistics.median(docker_times)


def report(what: str, ctl_s: float, docker_s: float, target: str) -> None:
    print(f"{what:<34} pyrunc-ctl {ctl_s * 1000:7.1f} ms   docker {docker_s * 1000:7.1f} ms   "
          f"ratio {ctl_s / docker_s:5.2f}   (target {target})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ps-containers", type=int, default=5)
    ap.add_argument("--runtime", default=os.path.join(VENV, "pyrunc"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (daemons, namespaces)")
    for tool in (DOCKER, DOCKERD, CONTAINERD, CTL):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"bench: {tool} is not installed")
    bench = Bench(a.runtime)
    try:
        bench.start()
        print(f"pyrunc-ctl ({os.path.basename(a.runtime)} runtime, rootfs used directly) vs "
              f"docker 20.10 (runc, overlay2); medians of {a.runs} interleaved runs")
        report("--help (client start-up)", *interleaved(bench, a.runs, ["--help"], ["--help"]),
               "-")
        report("run --rm IMAGE true", *interleaved(
            bench, a.runs, ["run", "--rm", bench.rootfs, "true"],
            ["run", "--rm", "--network", "none", "bench-busybox:1", "true"]), "<= 0.5")
        for _ in range(a.ps_containers):
            bench.ctl("run", "-d", bench.rootfs, "sleep", "600")
            bench.docker("run", "-d", "--network", "none", "bench-busybox:1", "sleep", "600")
        report(f"ps ({a.ps_containers} running)", *interleaved(bench, a.runs, ["ps"], ["ps"]),
               "<= 1.0")
        bench.ctl("run", "-d", "--name", "bench-inspect", bench.rootfs, "sleep", "600")
        bench.docker("run", "-d", "--name", "bench-inspect", "--network", "none",
                     "bench-busybox:1", "sleep", "600")
        report("inspect NAME", *interleaved(bench, a.runs, ["inspect", "bench-inspect"],
                                            ["inspect", "bench-inspect"]), "<= 1.0")
    finally:
        bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
