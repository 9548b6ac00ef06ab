"""Building blocks shared by the check modules.

- a long-running program with a start marker and a SIGTERM trap (sleeper)
- "create must fail and leave nothing behind" (expect_create_error)
- probes that keep the container alive for a host-side look (hold_probe)
- the fallback that separates "this one field was refused" from "the runtime
  runs nothing" (field_refused)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import host, probe
from ..registry import Failed, Refused, expect

# The user program of lifecycle checks: marks that it ran, records SIGTERM, idles.
SLEEPER = ("echo started > /started; "
           "trap 'echo term > /got-term; exit 0' TERM; "
           "while :; do sleep 0.1; done")


def sleeper(s, script: str = SLEEPER):
    """A bundle and container whose program runs until killed."""
    b = s.bundle()
    b.set_script(script)
    return b, s.container(b)


def wait_file(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def created(s, script: str = SLEEPER):
    b, c = sleeper(s, script)
    c.must_create()
    return b, c


def running(s, script: str = SLEEPER):
    b, c = created(s, script)
    c.must_start()
    expect(wait_file(b.rootfs / "started"), "the container program did not start")
    return b, c


def stopped(s):
    b, c = created(s, "echo started > /started")
    c.must_start()
    st = c.wait_status("stopped")
    expect(st is not None and st.get("status") == "stopped",
           f"container did not reach 'stopped' after its program exited (state {st})")
    return b, c


def expect_error(res, what: str) -> None:
    """The runtime call must fail (non-zero exit, not a hang)."""
    expect(not res.timed_out, f"{what}: the runtime hung (killed after {res.seconds:.0f}s)")
    expect(res.rc != 0, f"{what}: the runtime exited 0 instead of generating an error")


def expect_no_container(s, cid: str, what: str) -> None:
    res, st = s.runtime.state(cid)
    expect(st is None, f"{what}: a container was created anyway (state {st})")


def expect_nothing_left(s, bundle, what: str) -> None:
    """No process inside the rootfs, no host mount under the bundle, and (when the
    config names an absolute cgroupsPath) no cgroup there."""
    procs = host.processes_inside(bundle.rootfs)
    expect(not procs, f"{what}: processes left running inside the rootfs: {procs}")
    mounts = host.mounts_under(bundle.path)
    expect(not mounts, f"{what}: host mounts left under the bundle: {mounts}")
    path = bundle.config.get("linux", {}).get("cgroupsPath", "")
    if path.startswith("/"):
        left = [str(base / path.lstrip("/")) for base in host.cgroup_mountpoints()
                if (base / path.lstrip("/")).exists()]
        expect(not left, f"{what}: cgroups left: {left}")


def expect_create_error(s, bundle, what: str, write: bool = True):
    """create must generate an error, create no container and leave nothing behind."""
    c = s.container(bundle)
    res = c.create(write=write)
    if res.ok:
        s.diag(f"create accepted it; state: {c.state()}")
    expect_error(res, what)
    expect_no_container(s, c.id, what)
    expect_nothing_left(s, bundle, what)
    return c, res


def field_refused(s, exc: Failed, may_refuse: bool = False) -> None:
    """A probe with one special field failed: re-raise, noting whether the baseline
    container works at all.  Where the spec lets a runtime choose not to support a
    value (may_refuse), a create error while the baseline works is a Refused."""
    try:
        s.base_probe()
    except Failed as base:
        raise Failed(f"{exc} (the baseline container fails too: {base})")
    if may_refuse and str(exc).startswith("create failed"):
        raise Refused(str(exc))
    raise exc


def hold_probe(s, bundle, commands: dict[str, str], observe=None, timeout: float = 15.0,
               create_kw: dict | None = None):
    """Run the probe, keep the container alive, call observe(pid, container) from
    the host, then kill it.  Returns (Probe, observation)."""
    bundle.set_script(probe.script(commands) + "echo @@done\nexec sleep 600\n")
    c = s.container(bundle)
    c.must_create(**(create_kw or {}))
    c.must_start()
    deadline = time.monotonic() + timeout
    while "@@done" not in c.output():
        st = c.state()
        if time.monotonic() > deadline or (st and st.get("status") == "stopped"):
            raise Failed(f"probe did not finish (state {st}); output: {c.output()[-300:]!r}")
        time.sleep(0.02)
    st = c.state() or {}
    seen = observe(st.get("pid"), c) if observe else None
    c.kill(9)
    c.wait_status("stopped", 5)
    c.delete()
    return probe.Probe.parse(c.output()), seen


def read_proc(pid, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError as exc:
        raise Failed(f"cannot read /proc/{pid}/{name} on the host: {exc}")


def own_oom_score_adj() -> int:
    return int(Path("/proc/self/oom_score_adj").read_text())


def raise_oom_score_adj(value: int):
    """A preexec_fn raising the runtime's oom_score_adj (raising needs no privilege)."""
    def preexec():
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    return preexec


def realpath(p) -> str:
    return os.path.realpath(str(p))
