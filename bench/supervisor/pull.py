"""Image pulls: pyrunc-supervisor against containerd 1.6, side by side in one run, both pulling
the same images from the same local registry (docker-registry 2.8 on 127.0.0.1 inside a network
namespace made here; both daemons and every client run in it). Issue 14, "Measurements":

(a) pull + unpack of a multi-layer image (~SIZE MB of incompressible data in LAYERS layers plus
    busybox), with unmodified ``ctr images pull`` against each daemon (ctr pulls client-side
    through Content.Write, Snapshots, Diff.Apply), and with the supervisor's own daemon-side pull
    (``pyrunc-ctl pull``). Runs interleaved, image removed (and collected) between runs;
    medians. Peak RSS of each daemon process during the pulls (sampled every 20 ms).
(b) ``ctr run --rm IMAGE true`` with the image present: interleaved runs, medians.
(c) an image of 100 small layers: pull, then run (overlay's option-length limit).

Nothing asserts: the numbers are printed with ratios supervisor/containerd (target: (a) <= 1.0,
(b) <= 0.8). containerd gets its own config, root, state and socket in a temporary directory.

    python bench/supervisor/pull.py [--size MB] [--layers N] [--runs N] [--deep N] [--parts abc]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "spec-tests", "supervisor"), REPO, HERE]

from sv_layers import Layer  # noqa: E402  (the tests' image builders)
from sv_registry import Registry, busybox_image  # noqa: E402
from run import CONTAINERD, CTR, PYTHON, Containerd, Supervisor, wait_socket  # noqa: E402


class InNetns:
    """Start the daemon inside the registry's network namespace."""

    def popen(self, argv, **kw):
        return subprocess.Popen(self.registry.nsenter(argv), **kw)

    def ctr_net(self, *args, check=True):
        res = subprocess.run(self.registry.nsenter([CTR, "-a", self.sock, "-n", self.ns, *args]),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            sys.exit(f"bench: {self.name}: ctr {' '.join(args)}: {res.stderr.strip()}")
        return res


class NetContainerd(InNetns, Containerd):
    def start(self) -> None:
        cfg = os.path.join(self.base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        log = open(os.path.join(self.base, "containerd.log"), "wb")
        self.proc = self.popen([CONTAINERD, "--config", cfg], stdout=log, stderr=log)
        wait_socket(self.sock, self.proc, "containerd")


class NetSupervisor(InNetns, Supervisor):
    def start(self) -> None:
        log = open(os.path.join(self.base, "supervisor.log"), "wb")
        self.proc = self.popen(
            [PYTHON, "-m", "supervisor.daemon", "--address", self.sock,
             "--state", os.path.join(self.base, "state"), "--root", os.path.join(self.base, "root"),
             "--runtime", self.runtime], cwd=REPO, stdout=log, stderr=log)
        wait_socket(self.sock, self.proc, "pyrunc-supervisor")

    def ctl_pull(self, ref: str) -> None:
        env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=self.sock, PYRUNC_NAMESPACE=self.ns)
        res = subprocess.run([PYTHON, "-m", "supervisor.ctl", "pull", "--plain-http", ref],
                             capture_output=True, text=True, cwd=REPO, env=env)
        if res.returncode != 0:
            sys.exit(f"bench: pyrunc-ctl pull: {res.stderr.strip()}")


def daemon_pid(engine) -> int:
    """The daemon itself (the Popen is nsenter, which execs it: same pid)."""
    return engine.proc.pid


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRSS:
    """Sample a process's RSS every 20 ms while a block runs; the peak in KiB."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def _sample(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            self.stop.wait(0.02)

    def __enter__(self):
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build_images(reg: Registry, base: str, size_mb: int, layers: int, deep: int) -> tuple:
    per = max(1, size_mb // layers) << 20
    extra = [(Layer().file(f"data/{i}", os.urandom(per)), "gzip") for i in range(layers)]
    busybox_image(os.path.join(base, "big"), extra)
    big = reg.push(os.path.join(base, "big"), "bench/big:latest")
    many = [(Layer().file(f"l/{i}", str(i).encode()), "gzip") for i in range(deep - 1)]
    busybox_image(os.path.join(base, "deep"), many)
    deep_ref = reg.push(os.path.join(base, "deep"), "bench/deep:latest")
    return big, deep_ref


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def pulls(sup, ctd, big: str, n: int) -> None:
    """(a): pull + unpack, ctr's and the daemon's own, against containerd's; peak RSS."""
    times = {"supervisor (ctr pull)": [], "supervisor (daemon pull)": [], "containerd": []}
    peaks = {k: 0 for k in times}
    idle = {e.name: rss_kib(daemon_pid(e)) for e in (sup, ctd)}
    print(f"\n(a) pull + unpack of {big} ({n} runs each, interleaved)")
    for _ in range(n):
        for label, eng, fn in (
                ("supervisor (ctr pull)", sup,
                 lambda: sup.ctr_net("images", "pull", "--plain-http", big)),
                ("supervisor (daemon pull)", sup, lambda: sup.ctl_pull(big)),
                ("containerd", ctd,
                 lambda: ctd.ctr_net("images", "pull", "--plain-http", big))):
            with PeakRSS(daemon_pid(eng)) as peak:
                times[label].append(timed(fn))
            peaks[label] = max(peaks[label], peak.peak)
            eng.ctr_net("images", "rm", "--sync", big)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:26s} median {v:7.3f} s   "
              f"(runs: {', '.join(f'{t:.3f}' for t in times[k])})")
    print(f"  ratio supervisor/containerd: ctr pull "
          f"{ratio(med['supervisor (ctr pull)'], med['containerd'])}   daemon pull "
          f"{ratio(med['supervisor (daemon pull)'], med['containerd'])}   (target <= 1.0)")
    print(f"  daemon RSS before the pulls: supervisor {idle[sup.name] / 1024:.1f} MiB, "
          f"containerd {idle[ctd.name] / 1024:.1f} MiB")
    for k in ("supervisor (ctr pull)", "supervisor (daemon pull)"):
        print(f"  peak daemon RSS, {k:24s} {peaks[k] / 1024:6.1f} MiB vs containerd "
              f"{peaks['containerd'] / 1024:.1f} MiB   ratio "
              f"{ratio(peaks[k], peaks['containerd'])}   (target <= 1.0)")


def runs(engines, big: str, n: int) -> None:
    """(b): ``ctr run --rm IMAGE true`` with the image present, interleaved."""
    print(f"\n(b) ctr run --rm of a `true` container on the image ({n} runs each)")
    for e in engines:
        e.ctr_net("images", "pull", "--plain-http", big)
    times = {e.name: [] for e in engines}
    for i in range(n):
        for e in engines:
            times[e.name].append(timed(lambda: e.ctr_net(
                "run", "--rm", *e.run_args(), big, f"r{i}", "true")))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:26s} median {v * 1000:7.1f} ms")
    print(f"  ratio supervisor/containerd: {ratio(med['pyrunc-supervisor'], med['containerd'])}"
          "   (target <= 0.8)")


def deep_image(engines, deep: str, layers: int) -> None:
    """(c): an image of many layers: pull, then run."""
    print(f"\n(c) {layers}-layer image: pull, then run")
    for e in engines:
        t_pull = timed(lambda: e.ctr_net("images", "pull", "--plain-http", deep))
        out = e.ctr_net("run", "--rm", *e.run_args(), deep, "deep1", "cat", f"/l/{layers - 2}")
        t_run = timed(lambda: e.ctr_net("run", "--rm", *e.run_args(), deep, "deep2", "true"))
        ok = out.stdout.strip() == str(layers - 2)
        print(f"  {e.name:26s} pull {t_pull:6.2f} s   run {t_run * 1000:6.1f} ms   "
              f"top layer visible: {ok}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=200, help="MB of layer data (default 200)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deep", type=int, default=100, help="layers of the deep image")
    ap.add_argument("--parts", default="abc", help="which of (a) (b) (c) to run")
    ap.add_argument("--runtime", default=shutil.which("runc") or "/usr/sbin/runc")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (daemons, mounts, network namespace)")
    base = tempfile.mkdtemp(prefix="bench-pull-", dir="/tmp")
    reg = Registry()
    engines = []
    try:
        reg.start()
        print(f"building and pushing images ({args.size} MB in {args.layers} layers; "
              f"{args.deep} layers) ...", flush=True)
        big, deep = build_images(reg, base, args.size, args.layers, args.deep)
        for cls, name in ((NetSupervisor, "pyrunc-supervisor"), (NetContainerd, "containerd")):
            d = os.path.join(base, name)
            os.makedirs(d)
            e = cls(name, d, args.runtime)
            e.registry = reg
            e.start()
            engines.append(e)
        sup, ctd = engines
        if "a" in args.parts:
            pulls(sup, ctd, big, args.runs)
        if "b" in args.parts:
            runs(engines, big, args.runs * 4)
        if "c" in args.parts:
            deep_image(engines, deep, args.deep)
        return 0
    finally:
        for e in engines:
            e.stop()
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
