"""The cost of a container network: pyrunc-supervisor (CNI bridge) beside Docker, in one run.

(a) ``run --rm`` of a ``true`` container with the default bridge network, with a user-defined
    network (whose containers get a DNS resolver: pyrunc's at 127.0.0.11, docker's embedded DNS)
    and with ``none``, through the supervisor (pyrunc-ctl) and through Docker (dockerd 20.10,
    Debian's docker.io, /usr/bin/docker), runs interleaved so the machine's load hits all six
    alike; medians. A network's cost is its time minus none's for each; target: pyrunc's cost
    <= Docker's.
(b) N containers (default 50) on one bridge started concurrently through the API: wall time
    until all have an address, every address distinct, and one more container pinging them all.

Each daemon runs in a network namespace of its own (``nsenter --net``) with private directories,
so the bridges, NAT rules and veths exist only there and the host's network is never changed.
Nothing asserts; the numbers are printed for people to read.

    python bench/network.py [--runs N] [--concurrent N] [--runtime PATH] [--no-docker]
"""
from __future__ import annotations

import argparse
import json
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
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable
DOCKER = "/usr/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
USER_NET = "benchnet"


def build_rootfs(path: str) -> str:
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    for applet in ("sh", "true", "sleep", "ip", "ping", "seq", "cat"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    return path


def wait_socket(path: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {what} exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    sys.exit(f"bench: {what} did not come up")


class NetNS:
    def __init__(self):
        self.name = "bnet-" + secrets.token_hex(4)
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Supervisor:
    def __init__(self, base: str, runtime: str):
        self.base, self.runtime = base, runtime
        self.netns = NetNS()
        self.sock = os.path.join(base, "sv.sock")
        self.state = os.path.join(base, "state")
        self.ns = "bench" + secrets.token_hex(3)
        self.proc = None

    def start(self):
        log = open(os.path.join(self.base, "sv.log"), "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns.path}", PYTHON, "-m", "supervisor.daemon",
             "--address", self.sock, "--state", self.state, "--root",
             os.path.join(self.base, "root"), "--runtime", self.runtime],
            cwd=REPO, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_socket(self.sock, self.proc, "pyrunc-supervisor")

    def ctl(self, *args):
        env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=self.sock, PYRUNC_NAMESPACE=self.ns)
        return subprocess.run([PYTHON, "-m", "supervisor.ctl", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in _pids_mentioning(self.state + "/"):
            _kill(pid)
        _unmount_under(self.base)
        self.netns.delete()


class Docker:
    def __init__(self, base: str):
        self.base = base
        self.netns = NetNS()
        self.sock = os.path.join(base, "docker.sock")
        self.proc = None

    def start(self, rootfs: str):
        conf = os.path.join(self.base, "daemon.json")
        with open(conf, "w") as f:
            json.dump({"storage-driver": "overlay2", "log-driver": "none"}, f)
        log = open(os.path.join(self.base, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns.path}", DOCKERD, "--data-root",
             os.path.join(self.base, "data"), "--exec-root", os.path.join(self.base, "exec"),
             "--pidfile", os.path.join(self.base, "docker.pid"), "-H", "unix://" + self.sock,
             "--config-file", conf],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_socket(self.sock, self.proc, "dockerd")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "-H", "unix://" + self.sock, "import", "-", "bench-busybox"],
                       stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()

    def run(self, *args):
        return subprocess.run([DOCKER, "-H", "unix://" + self.sock, *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in _pids_mentioning(self.base + "/"):
            _kill(pid)
        _unmount_under(self.base)
        self.netns.delete()


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(entry))
            except OSError:
                pass
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _unmount_under(path: str) -> None:
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            t = line.split()[4]
            if t == path or t.startswith(path + "/"):
                targets.append(t)
    for t in reversed(targets):
        subprocess.run(["umount", "-l", t], capture_output=True)


def timed(fn) -> float:
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(res.args[-6:])}: {res.returncode} {res.stderr.strip()}")
    return dt * 1000


def bench_cost(sv, docker, rootfs, runs: int) -> None:
    kinds = ("bridge", USER_NET, "none")
    sv.ctl("network", "create", USER_NET)
    cases = {("pyrunc", k): (lambda k=k: sv.ctl("run", "--rm", "--network", k, rootfs, "true"))
             for k in kinds}
    if docker:
        docker.run("network", "create", USER_NET)
        cases.update({("docker", k): (lambda k=k: docker.run("run", "--rm", "--network", k,
                                                             "bench-busybox", "true"))
                      for k in kinds})
    for fn in cases.values():  # warm-up: the default network, image, caches
        timed(fn)
    times = {k: [] for k in cases}
    for _ in range(runs):
        for k, fn in cases.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"(a) run --rm of a true container, medians of {runs} interleaved runs (ms)")
    print(f"    {'':8} {'bridge':>8} {'user':>8} {'none':>8} {'cost bridge':>12} "
          f"{'cost user':>10}")
    cost = {}
    for who in ("pyrunc", "docker"):
        if (who, "bridge") in med:
            cost[who] = [med[(who, k)] - med[(who, "none")] for k in ("bridge", USER_NET)]
            print(f"    {who:8} {med[(who, 'bridge')]:8.1f} {med[(who, USER_NET)]:8.1f} "
                  f"{med[(who, 'none')]:8.1f} {cost[who][0]:12.1f} {cost[who][1]:10.1f}")
    if "docker" in cost and min(cost["docker"]) > 0:
        print("    network cost ratio pyrunc/docker: bridge "
              f"{cost['pyrunc'][0] / cost['docker'][0]:.2f}x, user-defined (with DNS) "
              f"{cost['pyrunc'][1] / cost['docker'][1]:.2f}x (target <= 1)")


def bench_concurrent(sv, rootfs, n: int) -> None:
    from supervisor.client import Client
    from supervisor import spec as specmod
    from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
    client = Client(sv.sock, sv.ns)
    ids = [f"c{i}-{secrets.token_hex(2)}" for i in range(n)]
    outs = {cid: os.path.join(sv.base, cid + ".out") for cid in ids}

    def start(cid, args, labels):
        spec = specmod.default_spec(rootfs, args, cid)
        spec["linux"]["cgroupsPath"] = f"/{sv.ns}/{cid}"
        client.create_container(cid, spec, labels)
        out = "file://" + outs.setdefault(cid, os.path.join(sv.base, cid + ".out"))
        client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, stdout=out, stderr=out))
        client.tasks.Start(tpb.StartRequest(container_id=cid))

    def address(cid):
        try:
            with open(outs[cid]) as f:
                words = f.read().split()
        except FileNotFoundError:
            return ""
        return words[words.index("inet") + 1].split("/")[0] if "inet" in words else ""

    labels = {"io.pyrunc.network": "bridge"}
    script = ["sh", "-c", "ip -o -4 addr show eth0; exec sleep 600"]
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda c: start(c, script, labels), ids))
        deadline = time.monotonic() + 120
        while not all(address(c) for c in ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        ips = [address(c) for c in ids]
        print(f"(b) {n} containers on one bridge started concurrently: {wall:.2f} s wall, "
              f"{len(set(filter(None, ips)))} distinct addresses")
        pinger = "pinger-" + secrets.token_hex(2)
        ping = " ".join(f"ping -c1 -W5 {ip} >/dev/null && echo ok {ip};" for ip in ips)
        start(pinger, ["sh", "-c", ping], labels)
        client.wait(pinger, timeout=300)
        with open(outs[pinger]) as f:
            reached = f.read().count("ok ")
        print(f"    one more container on the bridge pinged {reached}/{n} of them")
        ids.append(pinger)
    finally:
        for cid in ids:
            try:
                client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9, all=True))
            except Exception:
                pass
        for cid in ids:
            try:
                client.wait(cid, timeout=60)
                client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
            except Exception:
                pass
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--runtime", default=os.path.join(REPO, ".venv", "bin", "pyrunc"))
    ap.add_argument("--no-docker", action="store_true")
    args, _ = ap.parse_known_args()
    if os.geteuid() != 0:
        print("bench/network.py: needs root; skipped")
        return 0
    base = tempfile.mkdtemp(prefix="bnet-", dir="/tmp")
    rootfs = build_rootfs(os.path.join(base, "rootfs"))
    sv = Supervisor(os.path.join(base, "sv"), args.runtime)
    os.makedirs(sv.base)
    docker = None
    if not args.no_docker and os.access(DOCKER, os.X_OK) and os.access(DOCKERD, os.X_OK):
        docker = Docker(os.path.join(base, "docker"))
        os.makedirs(docker.base)
    try:
        sv.start()
        if docker:
            docker.start(rootfs)
        else:
            print("(docker not run: no /usr/bin/docker or dockerd, or --no-docker)")
        bench_cost(sv, docker, rootfs, args.runs)
        bench_concurrent(sv, rootfs, args.concurrent)
    finally:
        sv.stop()
        if docker:
            docker.stop()
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
