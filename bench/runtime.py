"""pyrunc against runc, side by side in one run, on the same busybox bundle.

Two measurements (issue: "Speed"):

(a) ``run`` of a container whose process is ``true`` (foreground, deleted on exit);
(b) a ``create → start → kill → delete`` cycle of a ``sleep`` container;
(c) rootless: (a) run by an unprivileged user (a throwaway one, tools/testuser.py, removed
    after) on a rootless bundle (a user namespace mapping the user to root, no network
    namespace, /sys bound, no cgroup): the timing loop itself runs as the user.

Runs are interleaved (pyrunc, runc, pyrunc, ...) so that drift in the machine's load hits both
alike; each prints its median and the pyrunc/runc ratio of medians.  Targets on this machine:
(a) ≤ 1.25×, (b) ≤ 1.5×, (c) ≤ 1.25×.  Nothing here asserts: the numbers are for people to read.

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


def rootless_bundle(path: str, uid: int, gid: int) -> str:
    """The run bundle made rootless, as ``spec --rootless`` does for runc and pyrunc alike."""
    build_bundle(path, ["true"])
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    linux = config["linux"]
    del linux["resources"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "sysfs"] + [
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def measure_rootless(runtimes: dict[str, str], runs: int) -> dict | None:
    """(c): samples of ``run`` as a throwaway user; None where no user can be made here."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import testuser
    with testuser.test_user() as user:
        bundle = rootless_bundle(str(user.mkdir("bundle")), user.uid, user.gid)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", bundle], check=True)
        work = user.mkdir("roots")
        res = user.run([sys.executable, os.path.abspath(__file__), "--inner-rootless", bundle,
                        "--runs", str(runs), "--pyrunc", runtimes["pyrunc"],
                        "--runc", runtimes["runc"], "--work", str(work)], timeout=3600)
        if res.returncode != 0:
            print(f"(c) rootless: the runs as {user.name} failed: {res.stderr.strip()}")
            return None
        return json.loads(res.stdout)


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
    parser.add_argument("--inner-rootless", metavar="BUNDLE", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    runtimes = {"pyrunc": opts.pyrunc, "runc": opts.runc}
    if opts.inner_rootless:     # (c)'s loop, as the unprivileged user: samples as JSON
        print(json.dumps(measure(runtimes, one_run, opts.inner_rootless, opts.runs, opts.work)))
        return 0
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
    rootless = measure_rootless(runtimes, opts.runs)
    if rootless is not None:
        report("(c) rootless run of a `true` container", rootless, 1.25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
