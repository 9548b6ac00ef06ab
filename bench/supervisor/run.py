"""pyrunc-supervisor against containerd 1.6, side by side in one run, both driving the same OCI
runtime (runc unless --runtime says otherwise) and the same busybox rootfs, both driven by ctr.

Three measurements (issue 5, "Measurements"):

(a) shim memory: N detached ``sleep`` containers on each; PSS and RSS per shim process
    (pyrunc-shim vs containerd-shim-runc-v2). Target: ratio <= 1.
(b) ``ctr run --rm`` of a ``true`` container: runs interleaved (supervisor, containerd, ...) so
    drift in the machine's load hits both alike; medians. Target: ratio <= 1.
(c) 50 containers started concurrently (50 ``ctr run -d`` at once): wall time until all run,
    then total memory (daemon + shims, PSS and RSS).

containerd runs with its own config, root, state and socket in a temporary directory and is
stopped afterwards; the system's containerd (if any) is never touched. Nothing here asserts:
the numbers are printed for people to read, with ratios supervisor/containerd.

    python bench/supervisor/run.py [--runs N] [--shims N] [--concurrent N] [--runtime PATH]
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
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTR = shutil.which("ctr") or "/usr/bin/ctr"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable


def build_rootfs(path: str) -> str:
    os.makedirs(os.path.join(path, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(path, d))
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    for applet in ("sh", "true", "sleep"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    return path


def wait_socket(path: str, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
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


class Engine:
    """A daemon plus the ctr command line pointed at it."""

    def __init__(self, name: str, base: str, runtime: str):
        self.name, self.base, self.runtime = name, base, runtime
        self.ns = "bench" + secrets.token_hex(3)
        self.sock = os.path.join(base, "grpc.sock")
        self.proc: subprocess.Popen | None = None

    def ctr(self, *args, check=True) -> subprocess.CompletedProcess:
        res = subprocess.run([CTR, "-a", self.sock, "-n", self.ns, *args], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            sys.exit(f"bench: {self.name}: ctr {' '.join(args)}: {res.stderr.strip()}")
        return res

    def run_args(self) -> list[str]:
        return []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def daemon_pids(self) -> list[int]:
        return [self.proc.pid]


class Containerd(Engine):
    def start(self) -> None:
        cfg = os.path.join(self.base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        log = open(os.path.join(self.base, "containerd.log"), "wb")
        self.proc = subprocess.Popen([CONTAINERD, "--config", cfg], stdout=log, stderr=log)
        wait_socket(self.sock, self.proc, "containerd")

    def run_args(self) -> list[str]:
        return ["--runc-binary", self.runtime]

    def shim_pids(self, with_task_only: bool = True) -> list[int]:
        return pids_matching("containerd-shim-runc-v2", self.sock)


class Supervisor(Engine):
    def start(self) -> None:
        log = open(os.path.join(self.base, "supervisor.log"), "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "supervisor.daemon", "--address", self.sock,
             "--state", os.path.join(self.base, "state"), "--root", os.path.join(self.base, "root"),
             "--runtime", self.runtime], cwd=REPO, stdout=log, stderr=log)
        wait_socket(self.sock, self.proc, "pyrunc-supervisor")
        time.sleep(0.5)  # let it warm its spare shim, as a long-running daemon has

    def shim_pids(self, with_task_only: bool = True) -> list[int]:
        pids = shim_pids(os.path.join(self.base, "state", "s") + "/")
        if with_task_only:
            pids = [p for p in pids if has_children(p)]
        return pids


def shim_pids(sock_dir: str) -> list[int]:
    """The processes listening on a socket in the shims' directory (a shim's command line is its
    title, ``pyrunc-shim ns=... id=...``; see spec-tests/supervisor/sv_harness.py)."""
    with open("/proc/self/net/unix") as f:
        inodes = {f"socket:[{fl[6]}]" for fl in (ln.split(None, 7) for ln in f.readlines()[1:])
                  if len(fl) == 8 and fl[7].startswith(sock_dir) and int(fl[3], 16) & 0x10000}
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes
                   for fd in os.listdir(f"/proc/{entry}/fd")):
                out.append(int(entry))
        except OSError:
            continue
    return out


def pids_matching(*needles: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            out.append(int(entry))
    return out


def has_children(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().split())
    except OSError:
        return False


def memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def total_memory(pids) -> tuple[int, int]:
    mems = [memory(p) for p in pids]
    return sum(m[0] for m in mems), sum(m[1] for m in mems)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def start_detached(engine: Engine, rootfs: str, ids: list[str], workers: int) -> float:
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda cid: engine.ctr("run", "-d", *engine.run_args(), "--rootfs", rootfs,
                                             cid, "/bin/sleep", "3600"), ids))
    return time.monotonic() - t0


def remove_all(engine: Engine, ids: list[str]) -> None:
    def rm(cid):
        engine.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        for _ in range(200):
            out = engine.ctr("tasks", "ls", check=False).stdout
            if f"{cid} " not in out or "STOPPED" in [ln.split()[-1] for ln in out.splitlines()
                                                     if ln.startswith(cid + " ")]:
                break
            time.sleep(0.05)
        engine.ctr("tasks", "delete", cid, check=False)
        engine.ctr("containers", "rm", cid, check=False)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(rm, ids))


def bench_shim_memory(engines, rootfs: str, n: int) -> None:
    print(f"\n(a) shim memory, {n} detached sleep containers each")
    results = {}
    for e in engines:
        ids = [f"mem{i}-{secrets.token_hex(2)}" for i in range(n)]
        start_detached(e, rootfs, ids, 4)
        time.sleep(1.0)
        pids = e.shim_pids()
        pss, rss = total_memory(pids)
        per = (pss / max(len(pids), 1), rss / max(len(pids), 1))
        results[e.name] = per
        print(f"  {e.name:18} {len(pids):3} shims   PSS {per[0] / 1024:6.2f} MiB/shim   "
              f"RSS {per[1] / 1024:6.2f} MiB/shim")
        if isinstance(e, Supervisor):
            idle = [p for p in e.shim_pids(with_task_only=False) if p not in pids]
            ipss, irss = total_memory(idle)
            print(f"  {'':18} + {len(idle)} idle (zygote, spare): PSS {ipss / 1024:5.2f} MiB  "
                  f"RSS {irss / 1024:5.2f} MiB in all; with them amortised over these shims: "
                  f"PSS {(pss + ipss) / max(len(pids), 1) / 1024:5.2f} MiB/shim")
        remove_all(e, ids)
    s, c = results["pyrunc-supervisor"], results["containerd"]
    print(f"  ratio supervisor/containerd: PSS {ratio(s[0], c[0])}  RSS {ratio(s[1], c[1])}"
          "   (target <= 1)")


def bench_run_rm(engines, rootfs: str, runs: int) -> None:
    print(f"\n(b) ctr run --rm <true container>, {runs} runs each, interleaved")
    times = {e.name: [] for e in engines}
    for i in range(runs):
        for e in engines:
            cid = f"rm{i}-{secrets.token_hex(2)}"
            t0 = time.monotonic()
            e.ctr("run", "--rm", *e.run_args(), "--rootfs", rootfs, cid, "/bin/true")
            times[e.name].append(time.monotonic() - t0)
    med = {}
    for e in engines:
        t = times[e.name]
        med[e.name] = statistics.median(t)
        print(f"  {e.name:18} median {med[e.name] * 1000:6.1f} ms   mean "
              f"{statistics.mean(t) * 1000:6.1f} ms   min {min(t) * 1000:6.1f} ms")
    print(f"  ratio supervisor/containerd (medians): "
          f"{ratio(med['pyrunc-supervisor'], med['containerd'])}   (target <= 1)")


def bench_concurrent(engines, rootfs: str, n: int) -> None:
    print(f"\n(c) {n} containers started concurrently ({n} ctr run -d at once)")
    results = {}
    for e in engines:
        ids = [f"cc{i}-{secrets.token_hex(2)}" for i in range(n)]
        wall = start_detached(e, rootfs, ids, n)
        time.sleep(1.0)
        shims = e.shim_pids()
        every = e.shim_pids(with_task_only=False) if isinstance(e, Supervisor) else shims
        pss, rss = total_memory(every + e.daemon_pids())
        results[e.name] = (wall, pss, rss)
        print(f"  {e.name:18} wall {wall:6.2f} s   {len(shims)} shims   total (daemon+all shims) "
              f"PSS {pss / 1024:7.1f} MiB   RSS {rss / 1024:7.1f} MiB")
        remove_all(e, ids)
    s, c = results["pyrunc-supervisor"], results["containerd"]
    print(f"  ratio supervisor/containerd: wall {ratio(s[0], c[0])}   PSS {ratio(s[1], c[1])}   "
          f"RSS {ratio(s[2], c[2])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--shims", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--runtime", default=shutil.which("runc") or "/usr/sbin/runc")
    args, _ = ap.parse_known_args()
    if os.geteuid() != 0:
        print("bench/supervisor: needs root (runs containers); skipped")
        return 0
    for tool in (CTR, CONTAINERD, args.runtime):
        if not os.access(tool, os.X_OK):
            print(f"bench/supervisor: {tool} not installed; skipped")
            return 0
    base = tempfile.mkdtemp(prefix="svb-", dir="/tmp")
    engines = []
    try:
        rootfs = build_rootfs(os.path.join(base, "rootfs"))
        for cls, name in ((Supervisor, "pyrunc-supervisor"), (Containerd, "containerd")):
            d = os.path.join(base, name[:4])
            os.makedirs(d)
            e = cls(name, d, args.runtime)
            e.start()
            engines.append(e)
        print(f"runtime: {args.runtime}   ctr: {CTR}")
        bench_run_rm(engines, rootfs, args.runs)
        bench_shim_memory(engines, rootfs, args.shims)
        bench_concurrent(engines, rootfs, args.concurrent)
    finally:
        cleanup(engines, base)
    return 0


def cleanup(engines, base: str) -> None:
    for e in engines:
        e.stop()
    for pid in set(pids_matching(base)) | set(shim_pids(base + "/")):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open("/proc/self/mountinfo") as f:
        targets = [ln.split()[4] for ln in f if f" {base}/" in ln]
    for t in reversed(targets):
        subprocess.run(["umount", "-l", t], capture_output=True)
    for e in engines:
        for hier in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", hier, e.ns)
            for dirpath, _, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
