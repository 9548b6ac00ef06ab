#!/usr/bin/env python3
"""Run a command inside a throw-away VM booted with Debian's kernel on a pure cgroup v2 hierarchy.

    .venv/bin/python tools/vm/run.py [--timeout S] [--memory 1G] [--cpus 2] [--kernel PATH] \
        -- COMMAND [ARG...]

The VM is virtme-ng (``vng``, from the venv) driving qemu-system-x86_64 with TCG
(``--disable-kvm``: KVM guests hang on the project's machines).  The guest's root is the host's
root, shared read-only over 9p, with writable overlays on /tmp, /etc, /var... — so the guest
sees this checkout and its venv at the same paths and the command runs in the same directory.
The kernel command line carries ``cgroup_no_v1=all`` so every controller is on cgroup2, which
virtme-ng's init mounts at /sys/fs/cgroup (tools/vm/guest.sh checks, and mounts it if not).

The exit status is the command's.  A VM that cannot start, a guest that never runs the command
and a run over ``--timeout`` are failures (status 2, 3 and 124), never skips: qemu is killed
with its whole process group.  A guest that shows no sign of life within ``--boot-timeout``
(a rare TCG boot stall on a loaded host) is killed and booted once more, within ``--timeout``.  Python files are byte-compiled on the host first, because the
guest cannot write to the shared tree and would otherwise compile on every import, ~50x slower.
"""

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START = "PYRUNC-VM-GUEST-START"
RESULT = re.compile(r"PYRUNC-VM-RESULT (\d+)")
SHUTDOWN_GRACE = 30.0   # seconds a guest may take to power off after reporting its result


def fail(status: int, message: str):
    print(f"vm: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def _version_key(path: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.-]", path)]


def find_kernel(explicit: str | None) -> str:
    """The kernel linux-image-amd64 depends on, else the newest /boot/vmlinuz-*."""
    if explicit:
        return explicit
    try:
        deps = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}", "linux-image-amd64"],
                              capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"linux-image-([0-9][^ ,(]*)", deps)
        if m and os.path.exists(f"/boot/vmlinuz-{m.group(1)}"):
            return f"/boot/vmlinuz-{m.group(1)}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    kernels = sorted(glob.glob("/boot/vmlinuz-*"), key=_version_key)
    if not kernels:
        fail(2, "no kernel in /boot (install linux-image-amd64: make setup)")
    return kernels[-1]


def find_vng() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "vng")
    vng = local if os.access(local, os.X_OK) else shutil.which("vng")
    if not vng:
        fail(2, "vng not found (virtme-ng is in the `test` extra: make setup)")
    return vng


def precompile() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "pyrunc", "spec-tests"],
                   cwd=REPO, stdout=subprocess.DEVNULL, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=420, help="seconds for the whole run")
    ap.add_argument("--boot-timeout", type=float, default=90,
                    help="seconds for the guest to start the command before the VM is retried")
    ap.add_argument("--attempts", type=int, default=2, help="VMs to try if one does not boot")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--cpus", default="2")
    ap.add_argument("--kernel", default=os.environ.get("PYRUNC_VM_KERNEL"))
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given")

    kernel = find_kernel(args.kernel)
    vng = find_vng()
    if not shutil.which("qemu-system-x86_64"):
        fail(2, "qemu-system-x86_64 not found (apt package qemu-system-x86: make setup)")
    if not os.access(kernel, os.R_OK):
        fail(2, f"cannot read {kernel}")
    precompile()

    guest = " ".join(_quote(c) for c in command)
    argv = [vng, "--run", kernel, "--disable-kvm", "--cpus", args.cpus, "--memory", args.memory,
            "--cwd", REPO, "--append", "cgroup_no_v1=all", "--exec", guest]
    env = dict(os.environ, PATH=os.path.dirname(vng) + ":" + os.environ.get("PATH", ""))
    deadline = time.monotonic() + args.timeout
    for attempt in range(1, args.attempts + 1):
        print(f"vm: booting {os.path.basename(kernel)} (TCG, {args.cpus} cpus, {args.memory}) "
              f"to run: {guest}", flush=True)
        outcome, status, took = run_once(argv, env, deadline, args.boot_timeout)
        if outcome == "done":
            print(f"vm: finished in {took:.0f}s, status {status}", flush=True)
            sys.exit(status if status >= 0 else 128 - status)
        if outcome == "timeout":
            fail(124, f"timed out after {args.timeout:g}s (the VM was killed)")
        if outcome == "no-boot" and attempt < args.attempts and \
                deadline - time.monotonic() > args.boot_timeout:
            print(f"vm: no sign of the guest after {took:.0f}s; killed it, trying again",
                  flush=True)
            continue
        fail(3, f"the guest never ran the command ({outcome}, after {took:.0f}s)")


def run_once(argv, env, deadline: float, boot_timeout: float):
    """One VM: ("done", status, secs) | ("timeout"|"no-boot"|"vng exited N", None, secs)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    seen = {"start": False, "result": None}
    reader = threading.Thread(target=_pump, args=(proc.stdout, seen), daemon=True)
    reader.start()
    try:
        while True:
            try:
                status = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now > deadline:
                    _kill_group(proc)
                    return "timeout", None, now - started
                if not seen["start"] and now - started > boot_timeout:
                    _kill_group(proc)
                    return "no-boot", None, now - started
                if seen["result"] is not None and now - seen["result_at"] > SHUTDOWN_GRACE:
                    # the command is done; a VM that does not power off is not its fault
                    _kill_group(proc)
                    return "done", seen["result"], now - started
    except BaseException:
        _kill_group(proc)
        raise
    reader.join(timeout=10)
    took = time.monotonic() - started
    if not seen["start"]:
        return f"vng exited {status}", None, took
    if seen["result"] is not None:
        status = seen["result"]
    return "done", status, took


def _pump(stream, seen: dict) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        if START in line:
            seen["start"] = True
        m = RESULT.search(line)
        if m:
            seen["result"], seen["result_at"] = int(m.group(1)), time.monotonic()
        sys.stdout.write(line)
        sys.stdout.flush()


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


if __name__ == "__main__":
    main()
