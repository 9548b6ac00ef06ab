"""containerd 1.6's CRI plugin with the runtime chosen by containerd's configuration: a runtime
handler per runtime (``io.containerd.runc.v2``, ``BinaryName`` in its options), named by the
pod as a kubelet would.  Each scenario runs with pyrunc and with runc and asserts the same
observable behaviour.

Pods use the host network (no CNI here), their own pid namespace per container and the
session's cgroup parent.
"""

from __future__ import annotations

import time

import pytest

import enginelib as el


@pytest.fixture
def pod(cri, runtime):
    """A pod of its own for each scenario, on the runtime's handler."""
    import crilib
    p = crilib.CriPod(cri, runtime)
    try:
        yield p
    finally:
        p.close()


def security(pb, **kw):
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def log_lines(path) -> list[tuple[str, str]]:
    """CRI log lines ``<time> <stream> <F|P> <text>`` as (stream, text)."""
    out = []
    for line in path.read_text().splitlines():
        _, stream, _tag, text = (line.split(" ", 3) + [""])[:4]
        out.append((stream, text))
    return out


def sleeper(pod, **kw) -> str:
    cid, _ = pod.run(sh("while :; do sleep 0.2; done"), **kw)
    return cid


def test_sandbox_on_configured_binary(pod, containerd, runtime):
    st = pod.status()
    assert st.state == pod.pb.SANDBOX_READY and st.runtime_handler == runtime.name
    # the sandbox runs under the handler's BinaryName: that runtime's state root knows it
    root = containerd.runc_root(runtime, "cri") / "k8s.io"
    res = el.run([runtime.real, "--root", str(root), "state", pod.id])
    assert res.returncode == 0 and '"running"' in res.stdout, el.describe(res)


def test_run_exit_code_and_logs(pod):
    cid, log = pod.run(sh("echo out; echo err >&2; exit 7"))
    st = pod.wait_exited(cid)
    assert st.exit_code == 7, st
    el.wait_for(lambda: log.exists() and len(log_lines(log)) >= 2, 10, 0.05, "the log")
    assert sorted(log_lines(log)) == [("stderr", "err"), ("stdout", "out")], log.read_text()


def test_exec_sync(pod):
    cid = sleeper(pod)
    r = pod.exec_sync(cid, sh("echo hi; echo oops >&2; exit 4"))
    assert (r.exit_code, r.stdout, r.stderr) == (4, b"hi\n", b"oops\n"), r


def test_stop_sigterm(pod):
    cid, log = pod.run(sh("trap 'echo got-term; exit 3' TERM; echo ready; "
                          "while :; do sleep 0.1; done"))
    el.wait_for(lambda: log.exists() and "ready" in log.read_text(), 10, 0.05, "ready")
    pod.stop(cid, grace=10)
    st = pod.container_status(cid)
    assert st.exit_code == 3, st
    assert ("stdout", "got-term") in log_lines(log), log.read_text()


def test_stop_sigterm_ignored_then_sigkill(pod):
    cid, log = pod.run(sh("trap '' TERM; echo ready; while :; do sleep 0.1; done"))
    el.wait_for(lambda: log.exists() and "ready" in log.read_text(), 10, 0.05, "ready")
    t0 = time.monotonic()
    pod.stop(cid, grace=2)
    waited = time.monotonic() - t0
    st = pod.container_status(cid)
    assert st.state == pod.pb.CONTAINER_EXITED and st.exit_code == 137, st
    assert waited >= 1.5, f"stopped after {waited:.1f}s, before the 2 s grace period"


def test_remove(pod, containerd, runtime):
    cid = sleeper(pod)
    root = containerd.runc_root(runtime, "cri") / "k8s.io"
    assert el.run([runtime.real, "--root", str(root), "state", cid]).returncode == 0
    cgroup = f"{pod.config.linux.cgroup_parent}/{cid}"
    assert el.Path(f"/sys/fs/cgroup/memory{cgroup}").is_dir()
    pod.stop(cid, grace=0)
    pod.remove(cid)
    res = el.run([runtime.real, "--root", str(root), "state", cid])
    assert res.returncode != 0, f"runtime state left after remove: {res.stdout}"
    assert not el.Path(f"/sys/fs/cgroup/memory{cgroup}").exists(), f"cgroup {cgroup} left"
    assert not el.host_mounts_mentioning(cid), el.host_mounts_mentioning(cid)


def test_user_and_read_only_rootfs(pod):
    pb = pod.pb
    cid, log = pod.run(sh("id -u; id -g; grep CapEff /proc/self/status; touch /x 2>&1; "
                          "echo touch=$?"),
                       linux=security(pb, run_as_user=pb.Int64Value(value=1000),
                                      run_as_group=pb.Int64Value(value=1000),
                                      readonly_rootfs=True))
    assert pod.wait_exited(cid).exit_code == 0
    text = [t for s, t in log_lines(log) if s == "stdout"]
    assert text[:2] == ["1000", "1000"], text
    assert el.caps_of("\n".join(text)) == 0, text
    assert "touch=1" in text and any("Read-only file system" in t for t in text), text


def test_capabilities(pod):
    pb = pod.pb
    base, base_log = pod.run(["cat", "/proc/self/status"])
    assert pod.wait_exited(base).exit_code == 0
    cid, log = pod.run(["cat", "/proc/self/status"],
                       linux=security(pb, capabilities=pb.Capability(
                           add_capabilities=["SYS_ADMIN"], drop_capabilities=["CHOWN"])))
    assert pod.wait_exited(cid).exit_code == 0
    before = "\n".join(t for _, t in log_lines(base_log))
    after = "\n".join(t for _, t in log_lines(log))
    chown, admin = 1 << el.CAP["CHOWN"], 1 << el.CAP["SYS_ADMIN"]
    for which in ("CapEff", "CapPrm", "CapBnd"):
        assert el.caps_of(after, which) == (el.caps_of(before, which) & ~chown) | admin, which


def test_env_workdir_mounts(pod, ws):
    pb = pod.pb
    rw, ro = ws.mkdir("vol", ws.name("cri")), ws.mkdir("vol", ws.name("cri"))
    (rw / "host.txt").write_text("from-host\n")
    cid, log = pod.run(
        sh('echo "$FOO|$SPACED"; pwd; cat /data/host.txt; echo c > /data/c.txt; '
           "touch /ro/x 2>&1; echo ro=$?"),
        env={"FOO": "bar", "SPACED": "a b  c"}, workdir="/srv/new",
        mounts=[pb.Mount(container_path="/data", host_path=str(rw)),
                pb.Mount(container_path="/ro", host_path=str(ro), readonly=True)])
    assert pod.wait_exited(cid).exit_code == 0, log.read_text()
    text = [t for s, t in log_lines(log) if s == "stdout"]
    assert text[:3] == ["bar|a b  c", "/srv/new", "from-host"], text
    assert (rw / "c.txt").read_text() == "c\n"
    assert "ro=1" in text, text


def test_resources(pod):
    pb = pod.pb
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_period=100000,
                                     cpu_quota=50000)
    cid = sleeper(pod, linux=pb.LinuxContainerConfig(resources=res))
    r = pod.exec_sync(cid, sh(f"{el.PROBE_MEMORY}; {el.PROBE_CPU}"))
    assert r.stdout.decode().split("\n")[:2] == [str(64 << 20), "50000 100000"], r


def test_update_resources(pod):
    pb = pod.pb
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_period=100000,
                                     cpu_quota=50000)
    cid = sleeper(pod, linux=pb.LinuxContainerConfig(resources=res))
    pod.update(cid, pb.LinuxContainerResources(memory_limit_in_bytes=128 << 20,
                                               cpu_period=100000, cpu_quota=150000))
    r = pod.exec_sync(cid, sh(f"{el.PROBE_MEMORY}; {el.PROBE_CPU}"))
    assert r.stdout.decode().split("\n")[:2] == [str(128 << 20), "150000 100000"], r
