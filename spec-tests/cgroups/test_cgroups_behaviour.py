"""What a container's cgroup does, shown with real processes, on whichever driver this host
has: the v1 driver on hybrid/legacy hosts (CI's machines), the v2 driver on a pure cgroup v2
kernel (``make test-vm`` runs this module in a VM booted with one).

Until the runtime is wired to the Manager, the "container" is a busybox shell put into the
Manager's cgroup before it starts its script.
"""

import errno
import os
import signal
import time

import pytest

from cgtest import MODE, SESSION, assert_nothing_left, cpu_usage, new_counter, wait_for
from pyrunc.cgroups import load_manager, new_manager
from pyrunc.errors import CgroupError

pytestmark = pytest.mark.skipif(MODE == "legacy" and not os.path.isdir("/sys/fs/cgroup/pids"),
                                reason="no pids cgroup mounted")

MiB = 1 << 20


def children_of(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc), to compare with the cgroup's view."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                pass
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        out |= kids
        todo.extend(kids)
    return out


def main_dir(mgr) -> str:
    return mgr.path if mgr.driver == "v2" else mgr.main


# --- placement and removal ----------------------------------------------------------------------

def test_pids_lists_exactly_the_processes_and_destroy_removes_everything(cgroup, spawn):
    mgr = cgroup()
    assert mgr.exists() and mgr.pids() == []
    child = spawn("busybox sleep 60 & busybox sleep 60 & busybox sleep 60 & wait", mgr)
    wait_for(lambda: len(mgr.pids()) == 4, what="4 processes in the cgroup")
    assert set(mgr.pids()) == {child.pid} | children_of(child.pid)
    assert os.getpid() not in mgr.pids()

    # a sub-cgroup made from inside (as a container with a cgroup namespace can) is included,
    # and removed by destroy
    sleeper = sorted(children_of(child.pid))[0]
    sub = os.path.join(main_dir(mgr), "inner")
    os.mkdir(sub)
    with open(os.path.join(sub, "cgroup.procs"), "w") as f:
        f.write(str(sleeper))
    assert sleeper in mgr.pids() and len(mgr.pids()) == 4

    mgr.destroy()
    assert child.proc.wait(timeout=10) == -signal.SIGKILL
    assert_nothing_left(mgr)
    assert not mgr.exists()
    mgr.destroy()                      # idempotent


def test_destroy_is_safe_when_never_created(cgroup):
    mgr = cgroup(create=False)
    assert not mgr.exists()
    mgr.destroy()
    assert_nothing_left(mgr)


def test_load_manager_finds_the_same_cgroup(cgroup, spawn):
    mgr = cgroup({"pids": {"limit": 50}})
    child = spawn("busybox sleep 60", mgr)
    again = load_manager(mgr.to_state())
    assert again.driver == mgr.driver and again.pids() == mgr.pids() == [child.pid]
    again.destroy()
    assert_nothing_left(mgr)


def test_a_parent_shared_with_another_container_stays_while_in_use(cgroup):
    # ``a`` creates the parent, ``b`` finds it there
    top = f"{SESSION}-{new_counter()}"
    a = cgroup(path=f"{top}/a")
    b = cgroup(path=f"{top}/b")
    parent = os.path.dirname(main_dir(a))
    b.destroy()
    assert not b.exists() and os.path.isdir(parent) and a.exists()
    a.destroy()
    assert not os.path.exists(parent)


def test_a_cgroup_with_processes_is_refused(cgroup, spawn):
    mgr = cgroup()
    spawn("busybox sleep 60", mgr)
    path = os.path.relpath(main_dir(mgr), os.path.dirname(os.path.dirname(main_dir(mgr))))
    other = new_manager(path, "other")
    with pytest.raises(CgroupError, match="already has processes in it"):
        other.create(None)
    assert mgr.pids()                  # the first container is untouched


# --- a process placed without being moved (how create places the init) -------------------------

def _born_in(mgr):
    """A child forked into the manager's cgroup v2 directory (plain fork where there is none)
    that, once told, joins the v1 hierarchies itself; returns (pid, the pipe that tells it)."""
    from pyrunc.linux import sys as k
    fd = mgr.make_clone_dir()
    r, w = os.pipe()
    pid = os.fork() if fd is None else k.fork_into_cgroup(fd)
    if pid == 0:
        try:
            os.close(w)
            os.read(r, 1)
            for path in mgr.self_join_files():
                joined = os.open(path, os.O_WRONLY)
                os.write(joined, b"0")
                os.close(joined)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    if fd is not None:
        os.close(fd)
    return pid, w


def test_a_process_born_in_the_cgroup_joins_every_hierarchy_without_a_move(cgroup):
    name = f"{SESSION}-{new_counter()}/ctr"
    mgr = cgroup(create=False, path=name)
    pid, go = _born_in(mgr)
    try:
        if mgr.clone_dir() is not None:         # in its v2 cgroup from the first instruction
            with open(f"/proc/{pid}/cgroup") as f:
                assert f.read().splitlines()[-1] == f"0::{main_dir_rel(mgr, name)}"
        mgr.create({"pids": {"limit": 10}})     # (the child there is no squatter)
        os.write(go, b"1")
        wait_for(lambda: mgr.pids() == [pid], what="the child in the cgroup")
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        assert all(line.endswith("/" + name) for line in lines), lines
    finally:
        os.close(go)
        mgr.destroy()
        os.waitpid(pid, 0)
    assert_nothing_left(mgr)


def test_destroy_kills_a_process_born_in_a_cgroup_whose_limits_were_refused(cgroup):
    """How a create fails half-way: the init is born in the v2 directory, then the limits are
    refused before it has joined the v1 hierarchies.  destroy must still kill it and leave no
    directory behind (on a hybrid host it is in the unified directory only)."""
    mgr = cgroup(create=False)
    if mgr.clone_dir() is None:
        pytest.skip("legacy cgroup v1 host: no cgroup v2 directory to fork into")
    pid, go = _born_in(mgr)
    try:
        with pytest.raises(CgroupError, match="linux.resources.cpu"):
            mgr.create({"cpu": {"cpus": "0-999"}})
        mgr.destroy()
    finally:
        os.close(go)                    # (the child leaves by itself if nothing killed it)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert_nothing_left(mgr)


def main_dir_rel(mgr, name):
    """The v2 cgroup path /proc/<pid>/cgroup shows for ``name`` (relative to our own)."""
    with open("/proc/self/cgroup") as f:
        own = f.read().splitlines()[-1].split(":", 2)[2]
    parent = (os.path.dirname(own.rstrip("/")) or "/") if mgr.driver == "v2" else own
    return os.path.join(parent, name)


def test_a_clone_dir_with_processes_is_refused(cgroup, spawn):
    mgr = cgroup()
    if mgr.clone_dir() is None:
        pytest.skip("legacy cgroup v1 host: no cgroup v2 directory to fork into")
    spawn("busybox sleep 60", mgr)
    path = os.path.relpath(main_dir(mgr), os.path.dirname(os.path.dirname(main_dir(mgr))))
    with pytest.raises(CgroupError, match="already has processes in it"):
        new_manager(path, "other").make_clone_dir()
    assert mgr.pids()                  # the first container is untouched


def test_fork_into_a_cgroup_fails_cleanly_on_a_bad_descriptor():
    from pyrunc.linux import sys as k
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as err:
            k.fork_into_cgroup(r)       # not a cgroup directory
        assert err.value.errno == errno.EBADF and "clone3" in str(err.value)
    finally:
        os.close(r)
        os.close(w)


# --- limits -----------------------------------------------------------------------------------

def test_memory_hog_is_oom_killed_and_counted(cgroup, spawn):
    mgr = cgroup({"memory": {"limit": 16 * MiB}})
    assert mgr.oom_kill_count() == 0
    small = spawn("exec busybox dd if=/dev/zero of=/dev/null bs=4M count=1", mgr)
    assert small.finish()[0] == 0
    hog = spawn("exec busybox dd if=/dev/zero of=/dev/null bs=64M count=1", mgr)
    status, out = hog.finish()
    assert status == -signal.SIGKILL, out
    assert mgr.oom_kill_count() >= 1
    assert mgr.stats()["memory"]["usage"]["limit"] == 16 * MiB


def test_update_raises_a_live_memory_limit(cgroup, spawn):
    mgr = cgroup({"memory": {"limit": 16 * MiB}})
    assert spawn("exec busybox dd if=/dev/zero of=/dev/null bs=32M count=1", mgr).finish()[0] \
        == -signal.SIGKILL
    mgr.update({"memory": {"limit": 96 * MiB}})
    assert spawn("exec busybox dd if=/dev/zero of=/dev/null bs=32M count=1", mgr).finish()[0] == 0


def test_pids_limit_contains_a_fork_bomb(cgroup, spawn):
    limit = 16
    mgr = cgroup({"pids": {"limit": limit}})
    assert mgr.stats()["pids"]["limit"] == limit       # never start the bomb unconfined
    # a bomb with a depth bound, so that even a broken limit could not take the machine down
    bomb = spawn('b() { [ ${#1} -lt 11 ] && { b x$1 | b x$1 & }; busybox sleep 5; }; b', mgr)
    highest = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        # pids.current: every task, including exited ones not yet reaped
        highest = max(highest, mgr.stats()["pids"].get("current", 0))
        time.sleep(0.02)
    assert limit // 2 <= highest <= limit
    d = main_dir(mgr)
    events = dict(line.split() for line in open(os.path.join(d, "pids.events")))
    assert int(events["max"]) > 0                       # forks were refused
    mgr.kill_all(signal.SIGKILL)
    wait_for(lambda: not mgr.pids(), what="the bomb to be gone")
    # the first shell died of a refused fork (ash exits 2) or of the SIGKILL
    assert bomb.finish()[0] in (2, -signal.SIGKILL)


def test_update_raises_a_live_pids_limit(cgroup, spawn):
    mgr = cgroup({"pids": {"limit": 1}})
    status, out = spawn("busybox true && echo forked", mgr).finish()
    assert "can't fork" in out and "forked" not in out
    mgr.update({"pids": {"limit": 10}})
    assert spawn("busybox true && echo forked", mgr).finish() == (0, "forked\n")


def test_freeze_stops_a_busy_loop_and_thaw_resumes_it(cgroup, spawn):
    mgr = cgroup()
    spawn("while :; do :; done", mgr)
    wait_for(lambda: cpu_usage(mgr) > 0, what="the loop to use CPU")
    mgr.freeze()
    assert mgr.frozen()
    before = cpu_usage(mgr)
    time.sleep(0.5)
    assert cpu_usage(mgr) == before
    mgr.thaw()
    assert not mgr.frozen()
    wait_for(lambda: cpu_usage(mgr) > before + 50_000_000, what="the loop to run again")


def exec_done(pid: int, argv: list[str]) -> bool:
    """``pid`` runs ``argv`` and has no handler for SIGTERM any more (a child forked by the
    shell keeps the shell's handlers until its exec, and would swallow the signal)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().split(b"\0")[:-1] != [a.encode() for a in argv]:
                return False
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt"))
        return not caught & (1 << (signal.SIGTERM - 1))
    except (OSError, StopIteration):
        return False


def test_kill_all_reaches_every_process(cgroup, spawn):
    mgr = cgroup()
    term = spawn("trap 'echo got-term; exit 3' TERM; busybox sleep 60 >/dev/null & "
                 "while :; do busybox sleep 0.05; done", mgr)
    wait_for(lambda: any(exec_done(p, ["busybox", "sleep", "60"]) for p in mgr.pids()),
             what="the background sleep")
    mgr.kill_all(signal.SIGTERM)
    status, out = term.finish()
    assert status == 3 and out.endswith("got-term\n"), out
    wait_for(lambda: not mgr.pids(), what="the sleeps to die of SIGTERM")

    killed = spawn("trap '' TERM; busybox sleep 60 & busybox sleep 60 & wait", mgr)
    wait_for(lambda: len(mgr.pids()) == 3, what="processes")
    mgr.kill_all(signal.SIGKILL)
    assert killed.finish()[0] == -signal.SIGKILL
    wait_for(lambda: not mgr.pids(), what="all to die of SIGKILL")


def test_devices_denied_unless_allowed_and_update_changes_them(cgroup, spawn, tmp_path):
    node = tmp_path / "port"
    os.mknod(node, 0o600 | 0o020000, os.makedev(1, 4))      # /dev/port: not allowed
    mgr = cgroup({"devices": [{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
    check = ('chk() { if err=$( { if [ $1 = r ]; then exec 3<"$2"; else exec 3>"$2"; fi; } 2>&1 ); '
             'then echo "$1 $2 ok"; else echo "$1 $2 denied: $err"; fi; }; '
             'all() { chk r /dev/null; chk w /dev/null; chk r /dev/kmsg; chk w /dev/kmsg; '
             f'chk r {node}; busybox mknod {tmp_path}/kmsg2 c 1 11 && chk r {tmp_path}/kmsg2; '
             f'rm -f {tmp_path}/kmsg2; }}; all; echo ---; : >{tmp_path}/round1; read _; all')
    child = spawn(check, mgr)
    wait_for(lambda: (tmp_path / "round1").exists() or child.proc.poll() is not None, 20,
             "the first round of checks")
    mgr.update({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"}]})
    child.go()
    status, out = child.finish()
    first, second = out.split("---\n")
    denied = "denied: sh: can't {} {}: Operation not permitted"
    assert first.splitlines() == [
        "r /dev/null ok", "w /dev/null ok", "r /dev/kmsg ok",
        "w /dev/kmsg " + denied.format("create", "/dev/kmsg"),
        f"r {node} " + denied.format("open", node),
        f"r {tmp_path}/kmsg2 ok"], out
    assert "w /dev/kmsg ok" in second.splitlines(), out
    assert f"r {node} " + denied.format("open", node) in second.splitlines(), out


# --- bad input ---------------------------------------------------------------------------------

BAD = [
    ({"memory": {"limit": "lots"}}, "linux.resources.memory.limit: must be an integer"),
    ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}, "linux.resources.memory.swap: "),
    ({"cpu": {"quota": 10, "period": 100000}}, "linux.resources.cpu.quota: write"),
    ({"cpu": {"cpus": "1000"}}, "linux.resources.cpu.cpus: write '1000'"),
    ({"pids": {"limit": -3}}, "linux.resources.pids.limit: -3 is invalid"),
    ({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]},
     "linux.resources.hugepageLimits[0].pageSize: huge page size 3MB is not supported"),
    ({"devices": [{"allow": True, "type": "z"}]}, "linux.resources.devices[0].type: "),
    ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs: is not a resource"),
    ({"pids": {"limit": 10}, "blockIO": {"weight": 5000}}, "linux.resources.blockIO.weight: "),
]


@pytest.mark.parametrize("resources, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_values_are_refused_and_leave_nothing_behind(cgroup, resources, message):
    mgr = cgroup(create=False)
    with pytest.raises(CgroupError) as err:
        mgr.create(resources)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
    assert_nothing_left(mgr)


def test_stats_have_runc_shape(cgroup, spawn):
    mgr = cgroup({"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}})
    child = spawn("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; busybox sleep 60; :", mgr)
    wait_for(lambda: len(mgr.pids()) == 2, what="the sleep")
    s = mgr.stats()
    assert set(s) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                      "network_interfaces"}
    assert s["cpu"]["usage"]["total"] > 0 and "kernel" in s["cpu"]["usage"]
    assert s["memory"]["usage"]["limit"] == 64 * MiB and s["memory"]["usage"]["usage"] > 0
    assert s["memory"]["raw"] and all(isinstance(v, int) for v in s["memory"]["raw"].values())
    assert s["pids"] == {"current": 2, "limit": 20}
    assert isinstance(s["blkio"], dict) and isinstance(s["hugetlb"], dict)
    child.kill()
