"""pyrunc against runc, side by side in one run, on the same busybox bundle.

Two measurements (issue: "Speed"):

(a) ``run`` of a container whose process is ``true`` (foreground, deleted on exit);
(b) a ``create → start → kill → delete`` cycle of a ``sleep`` container.

Runs are interleaved (pyrunc, runc, pyrunc, ...) so that drift in the machine's load hits both
alike; each prints its median and the pyrunc/runc ratio of medians.  Targets on this machine:
(a) ≤ 1.25×, (b) ≤ 1.5×.  Nothing here asserts: the numbers are for people to read.

    python bench/runtime.py [--runs N] [--pyrunc PATH] [--runc PATH]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_bundle(path: str, args: list[str]) -> str:
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "true", "sleep"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin"], "cwd": "/",
                    "capabilities": {s: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                                     for s in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
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
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list",
                            "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def one_run(runtime: str, root: str, bundle: str, n: int) -> float:
    return timed([runtime, "--root", root, "run", "--bundle", bundle, f"r{n}"])


def one_cycle(runtime: str, root: str, bundle: str, n: int) -> float:
    cid = f"c{n}"
    base = [runtime, "--root", root]
    start = time.perf_counter()
    for args in (["create", "--bundle", bundle, cid], ["start", cid], ["kill", cid, "KILL"],
                 ["delete", "--force", cid]):
        subprocess.run(base + args, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runtimes: dict[str, str], fn, bundle: str, runs: int, tmp: str) -> dict:
    """name -> its samples in ms, sorted."""
    samples = {name: [] for name in runtimes}
    for name, path in runtimes.items():        # warm-up: caches, bytecode
        fn(path, os.path.join(tmp, name), bundle, -1)
    for i in range(runs):
        for name, path in runtimes.items():
            samples[name].append(fn(path, os.path.join(tmp, name), bundle, i) * 1000)
    return {name: sorted(s) for name, s in samples.items()}


def report(title: str, samples: dict, target: float) -> None:
    """Medians, their ratio, and the middle half of each runtime's samples (the machine's load
    moves both, runc's cgroup-move wait most)."""
    med = {name: statistics.median(s) for name, s in samples.items()}
    spread = {name: f"{s[len(s) // 4]:.0f}-{s[(3 * len(s)) // 4]:.0f}"
              for name, s in samples.items()}
    print(f"{title:<40} pyrunc {med['pyrunc']:6.1f} ms ({spread['pyrunc']})   "
          f"runc {med['runc']:6.1f} ms ({spread['runc']})   "
          f"ratio {med['pyrunc'] / med['runc']:4.2f}x   (target <= {target}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--pyrunc", default=os.path.join(REPO, ".venv", "bin", "pyrunc"))
    parser.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    opts = parser.parse_args()
    runtimes = {"pyrunc": opts.pyrunc, "runc": opts.runc}
    with tempfile.TemporaryDirectory(prefix="pyrunc-bench-") as tmp:
        run_bundle = build_bundle(os.path.join(tmp, "run-bundle"), ["true"])
        cycle_bundle = build_bundle(os.path.join(tmp, "cycle-bundle"), ["sleep", "1000"])
        print(f"runtime benchmark: {opts.runs} runs each, interleaved; medians (middle half of the "
              "samples in brackets)")
        report("(a) run of a `true` container", measure(runtimes, one_run, run_bundle,
                                                        opts.runs, tmp), 1.25)
        report("(b) create -> start -> kill -> delete", measure(runtimes, one_cycle,
                                                                cycle_bundle, opts.runs, tmp),
               1.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
