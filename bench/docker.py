"""``docker run --rm`` of a ``true`` container: dockerd on pyrunc-supervisor with pyrunc, against
dockerd on containerd 1.6 with runc (the anchor), interleaved in one run (issue 11).

Both dockerds are Debian's 20.10, each in a network namespace of its own with its own data root
(conformance/engines/dockerlib.py); containerd is a private one (its own root, state, socket).
The runtimes are called directly (no tracing wrapper).  A third column, dockerd on the
supervisor with runc, shows how much of the difference is the runtime and how much the rest.
Measured twice: on Docker's default bridge network (dockerd's own network set-up, the same
for all, is most of the time) and with ``--network none`` (closer to the layers that differ).
Runs go A, B, C, A, B, C, ... so drift in the machine's load hits all alike; medians.  Nothing
asserts: the numbers are for people to read.  Target (issue 11): supervisor+pyrunc / containerd
+runc <= 0.8.

    python bench/docker.py [--runs N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "conformance", "engines"))
os.environ["ENGINES_DIRECT"] = "1"          # the runtimes themselves, no tracing wrapper

import dockerlib as dl  # noqa: E402
import enginelib as el  # noqa: E402


def time_run(stack: dl.DockerStack, runtime: str, net: list[str]) -> float:
    t0 = time.perf_counter()
    res = stack("run", "--rm", *net, "--runtime", stack.runtime_names[runtime], dl.IMAGE,
                "true")
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"bench: docker run failed: {el.describe(res)}")
    return dt


def report(columns, net: list[str], runs: int, title: str) -> None:
    for _, stack, rt in columns:                 # warm-up: page cache, zygotes, first shims
        time_run(stack, rt, net)
    times = {name: [] for name, _, _ in columns}
    for _ in range(runs):
        for name, stack, rt in columns:
            times[name].append(time_run(stack, rt, net))
    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["containerd + runc"]
    print(f"docker run --rm true ({title}), {runs} interleaved runs each, medians:")
    for name, _, _ in columns:
        print(f"  dockerd on {name:<22} {med[name] * 1000:7.1f} ms   "
              f"{med[name] / base:5.2f}x containerd + runc")
    print(f"  ratio supervisor+pyrunc / containerd+runc: "
          f"{med['supervisor + pyrunc'] / base:.2f} (target <= 0.8)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/docker.py: needs root (dockerd, namespaces); skipped")
        return 0
    ws = el.Workspace()
    ctd = el.Containerd(ws)
    stacks = []
    try:
        ctd.start()
        tar = el.build_rootfs_tar(ws)
        sv = dl.DockerStack(ws, tag="sv")
        anchor = dl.DockerStack(ws, tag="ctd", containerd=ctd.sock)
        stacks = [sv, anchor]
        for s in stacks:
            s.start()
            s.import_image(tar)
        columns = [("supervisor + pyrunc", sv, "pyrunc"),
                   ("containerd + runc", anchor, "runc"),
                   ("supervisor + runc", sv, "runc")]
        for title, net in (("default bridge network", []), ("--network none", ["--network",
                                                                             "none"])):
            report(columns, net, args.runs, title)
    finally:
        for s in stacks:
            s.stop()
        ctd.stop()
        ws.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
