"""pyrunc run by an unprivileged user (rootless), as rootless podman calls runc.

A throwaway user (tools/testuser.py: its own /etc/subuid and /etc/subgid ranges, removed after
the module, always) runs pyrunc through ``setpriv``; every assertion about the container comes
from inside it (its /proc/self/uid_map, its ids) or from the host's view of what it made.  This
host is hybrid (cgroup v1): nothing is delegated to a user, so containers without limits run
without a cgroup of their own (as runc's rootless mode) and limits are refused.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from harness import PYRUNC, REPO, base_config, reap_orphans

sys.path.insert(0, os.path.join(REPO, "tools"))
import testuser  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="host: making a test user needs root")


@pytest.fixture(scope="module")
def user():
    with testuser.test_user() as u:
        yield u


class Rootless:
    """pyrunc as the test user, with bundles in its own directories."""

    def __init__(self, user, base, template):
        self.user, self.base, self.template = user, base, template
        self.count = 0
        self.root = os.path.join(user.runtime_dir, "pyrunc")    # the default root

    def __call__(self, *args, timeout=60, root=None):
        argv = [PYRUNC, *(["--root", root] if root else []), *args]
        return self.user.run(argv, timeout=timeout)

    def bundle(self, config: dict) -> str:
        self.count += 1
        path = os.path.join(self.base, f"bundle{self.count}")
        shutil.copytree(self.template, os.path.join(path, "rootfs"), symlinks=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        subprocess.run(["chown", "-R", f"{self.user.uid}:{self.user.gid}", path], check=True)
        return path

    def run(self, config: dict, cid: str = "c1"):
        return self("run", "--bundle", self.bundle(config), cid)

    def state(self, cid: str) -> dict:
        res = self("state", cid)
        assert res.returncode == 0, res
        return json.loads(res.stdout)

    def wait_stopped(self, cid: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            reap_orphans()      # a detached init is re-parented to us (the test's subreaper)
            if self.state(cid)["status"] == "stopped":
                return
            assert time.monotonic() < deadline, f"{cid} did not stop"
            time.sleep(0.05)


@pytest.fixture
def rl(user, rootfs_template, tmp_path):
    base = user.mkdir(tmp_path.name)
    r = Rootless(user, str(base), rootfs_template)
    try:
        yield r
        left = os.listdir(r.root) if os.path.isdir(r.root) else []
        assert not left, f"state left in {r.root}: {left}"
    finally:
        if os.path.isdir(r.root):
            for cid in os.listdir(r.root):
                r("delete", "--force", cid)
        reap_orphans()
        testuser.kill_user_processes(user.uid)
        reap_orphans()
        shutil.rmtree(base, ignore_errors=True)


def rootless_config(user, args, multi=False) -> dict:
    """base_config() as rootless engines send it: a user namespace, no network namespace, /sys
    bound from the host (sysfs needs a network namespace of the user's own), no cgroup."""
    cfg = base_config(args)
    linux = cfg["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    uid_maps = [{"containerID": 0, "hostID": user.uid, "size": 1}]
    gid_maps = [{"containerID": 0, "hostID": user.gid, "size": 1}]
    if multi:       # podman's shape: the user as root, its subordinate range after it
        uid_maps.append({"containerID": 1, "hostID": user.subuid[0], "size": user.subuid[1]})
        gid_maps.append({"containerID": 1, "hostID": user.subgid[0], "size": user.subgid[1]})
    linux["uidMappings"], linux["gidMappings"] = uid_maps, gid_maps
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"] + [
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    return cfg


def map_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


# --- running ------------------------------------------------------------------------------------

def test_spec_rootless_runs_with_the_callers_single_mapping(rl, user):
    """`pyrunc spec --rootless` as the user, then run: root inside is the user outside, mapped
    directly (one id), with setgroups denied as the kernel requires."""
    bundle = rl.bundle(base_config())
    os.unlink(os.path.join(bundle, "config.json"))
    res = rl("spec", "--rootless", "--bundle", bundle)
    assert res.returncode == 0, res
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map "
                              "/proc/self/gid_map /proc/self/setgroups"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    res = rl("run", "--bundle", bundle, "c1")
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[:2] == ["0", "0"], res
    assert map_lines("\n".join(lines[2:4])) == [["0", str(user.uid), "1"],
                                                ["0", str(user.gid), "1"]], res
    assert lines[4] == "deny", res


def test_multi_id_mapping_goes_through_newuidmap(rl, user):
    """Podman's mapping: the user as root plus its /etc/subuid range.  Inside, both ranges; a
    file chowned to uid 1 inside belongs on the host to the first subordinate uid."""
    cfg = rootless_config(user, ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; "
                                 "touch /tmp/f && chown 1:2 /tmp/f && echo chowned"], multi=True)
    for caps in cfg["process"]["capabilities"].values():
        caps.append("CAP_CHOWN")
    bundle = rl.bundle(cfg)
    res = rl("run", "--bundle", bundle, "c1")
    assert res.returncode == 0, res
    lines = map_lines(res.stdout)
    assert lines[:4] == [["0", str(user.uid), "1"], ["1", str(user.subuid[0]),
                                                     str(user.subuid[1])],
                         ["0", str(user.gid), "1"], ["1", str(user.subgid[0]),
                                                     str(user.subgid[1])]], res
    assert lines[4] == ["chowned"], res
    st = os.stat(os.path.join(bundle, "rootfs", "tmp", "f"))
    assert (st.st_uid, st.st_gid) == (user.subuid[0], user.subgid[0] + 1)


def test_default_root_is_xdg_runtime_dir_and_root_flag_wins(rl, user):
    cfg = rootless_config(user, ["sleep", "600"])
    bundle = rl.bundle(cfg)
    assert rl("run", "--detach", "--bundle", bundle, "c1").returncode == 0
    assert os.path.isfile(os.path.join(user.runtime_dir, "pyrunc", "c1", "state.json"))
    st = os.stat(os.path.join(user.runtime_dir, "pyrunc"))
    assert (st.st_uid, st.st_mode & 0o777) == (user.uid, 0o700)
    listed = rl("list", "--format", "json")
    assert [c["id"] for c in json.loads(listed.stdout)] == ["c1"], listed
    other = os.path.join(rl.base, "other-root")
    res = rl("run", "--detach", "--bundle", bundle, "c2", root=other)
    assert res.returncode == 0, res
    assert os.path.isfile(os.path.join(other, "c2", "state.json"))
    assert rl("delete", "--force", "c2", root=other).returncode == 0
    assert os.listdir(other) == []
    assert rl("delete", "--force", "c1").returncode == 0


def test_lifecycle_exec_ps_kill_delete(rl, user):
    """create, start, state, exec (joins the user namespace: same maps), ps and kill without a
    cgroup (the container's pid namespace), delete."""
    cfg = rootless_config(user, ["sh", "-c", "echo $$ > /tmp/pid; exec sleep 600"], multi=True)
    bundle = rl.bundle(cfg)
    res = rl("create", "--bundle", bundle, "c1")
    assert res.returncode == 0, res
    assert rl.state("c1")["status"] == "created"
    assert rl("start", "c1").returncode == 0
    assert rl.state("c1")["status"] == "running"
    res = rl("exec", "c1", "sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/1/cmdline")
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[0] == "0", res
    assert map_lines("\n".join(lines[1:3]))[1] == ["1", str(user.subuid[0]),
                                                   str(user.subuid[1])], res
    assert lines[3].startswith("sleep"), res
    res = rl("exec", "--user", "1000", "c1", "id", "-u")
    assert (res.returncode, res.stdout) == (0, "1000\n"), res
    pid = rl.state("c1")["pid"]
    res = rl("ps", "--format", "json", "c1")
    assert res.returncode == 0 and json.loads(res.stdout) == [pid], res
    assert os.stat(f"/proc/{pid}").st_uid == user.uid
    assert rl("kill", "c1", "KILL").returncode == 0
    rl.wait_stopped("c1")
    assert rl("delete", "c1").returncode == 0
    assert not os.path.exists(os.path.join(rl.root, "c1"))


def test_foreground_exit_code_and_output(rl, user):
    res = rl.run(rootless_config(user, ["sh", "-c", "echo out; echo err >&2; exit 7"]))
    assert (res.returncode, res.stdout, res.stderr) == (7, "out\n", "err\n"), res


def test_process_settings(rl, user):
    """oomScoreAdj (written by stage 1 to its own /proc/self while still dumpable), rlimits
    within the user's own, a non-root user inside, hostname."""
    cfg = rootless_config(user, ["sh", "-c", "cat /proc/self/oom_score_adj; ulimit -n; id -u; "
                                 "hostname"], multi=True)
    cfg["process"]["oomScoreAdj"] = 500
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    res = rl.run(cfg)
    assert res.returncode == 0, res
    assert res.stdout.split() == ["500", "123", "1000", "pyrunc-test"], res


# --- refused, clearly, leaving nothing ----------------------------------------------------------

def _refused(rl, res, *words):
    """Exit 1, one error line naming ``words``, and nothing left: no state in the user's root,
    no process of the user or of its subordinate range, no cgroup directory it owns."""
    assert res.returncode == 1, res
    errors = [line for line in res.stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1, res
    for word in words:
        assert word in errors[0], res
    assert not (os.path.isdir(rl.root) and os.listdir(rl.root)), os.listdir(rl.root)
    reap_orphans()
    assert not _processes_of(rl.user), _processes_of(rl.user)
    assert not _cgroups_owned_by(rl.user.uid)
    return errors[0]


def _processes_of(user) -> list[int]:
    """Live processes running as the user or as an id of its subordinate range."""
    lo, n = user.subuid
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        uid = int(fields["Uid"].split()[0])
        if (uid == user.uid or lo <= uid < lo + n) and fields["State"].split()[0] != "Z":
            found.append(int(entry))
    return found


def _cgroups_owned_by(uid: int, depth: int = 4) -> list[str]:
    """Cgroup directories (to ``depth`` below each hierarchy) the user owns: a rootless
    container's, made where nothing was delegated."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if top.count("/") - 3 >= depth:
            dirs[:] = []
        for d in dirs:
            try:
                if os.stat(os.path.join(top, d)).st_uid == uid:
                    found.append(os.path.join(top, d))
            except OSError:
                pass
    return found


def test_limits_without_delegated_cgroup_are_refused(rl, user):
    cfg = rootless_config(user, ["true"])
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    _refused(rl, rl.run(cfg), "linux.resources.memory", "rootless", "delegated")
    # device rules alone are not limits: ignored, as runc does rootless
    cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}], "memory": {}}
    res = rl.run(cfg)
    assert res.returncode == 0, res


def test_pause_without_cgroup_is_refused(rl, user):
    bundle = rl.bundle(rootless_config(user, ["sleep", "600"]))
    assert rl("run", "--detach", "--bundle", bundle, "c1").returncode == 0
    for args in (["pause", "c1"], ["update", "--pids-limit", "10", "c1"]):
        res = rl(*args)
        assert res.returncode == 1 and "no cgroup" in res.stderr and "rootless" in res.stderr, res
    assert rl.state("c1")["status"] == "running"
    assert rl("delete", "--force", "c1").returncode == 0


def test_mapping_outside_subuid_is_refused(rl, user):
    cfg = rootless_config(user, ["true"], multi=True)
    cfg["linux"]["uidMappings"][1]["hostID"] = user.subuid[0] + user.subuid[1]  # past its range
    _refused(rl, rl.run(cfg), "linux.uidMappings", "newuidmap", "not allowed")
    cfg = rootless_config(user, ["true"], multi=True)
    cfg["linux"]["gidMappings"][1]["size"] = user.subgid[1] + 1
    _refused(rl, rl.run(cfg), "linux.gidMappings", "newgidmap", "not allowed")


def test_hard_rlimit_above_the_users_is_refused(rl, user):
    hard = int(user.run(["sh", "-c", "ulimit -Hn"]).stdout)
    cfg = rootless_config(user, ["true"])
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": hard + 1}]
    _refused(rl, rl.run(cfg), "process.rlimits", "RLIMIT_NOFILE", "Operation not permitted",
             "rootless")


def test_device_node_is_bound_from_the_host_or_refused(rl, user):
    """A user namespace cannot mknod: the host's node is bound in; a node the host lacks is one
    clear error."""
    cfg = rootless_config(user, ["ls", "-l", "/dev/kmsg"])
    cfg["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
    res = rl.run(cfg)
    assert res.returncode == 0 and "1,  11" in res.stdout, res
    # a node named the container's own way: the host's node of that number is bound
    cfg = rootless_config(user, ["sh", "-c", "ls -l /dev/my-null; echo x > /dev/my-null"])
    cfg["linux"]["devices"] = [{"path": "/dev/my-null", "type": "c", "major": 1, "minor": 3}]
    res = rl.run(cfg, cid="c2")
    assert res.returncode == 0 and "1,   3" in res.stdout, res
    cfg["linux"]["devices"] = [{"path": "/dev/pyrunc-none", "type": "b", "major": 7,
                                "minor": 250}]
    _refused(rl, rl.run(cfg, cid="c3"), "/dev/pyrunc-none", "no b 7:250")


def test_systemd_cgroup_is_refused(rl, user):
    """As for root: create and run refuse it (exit 1, one error, nothing in the state root),
    other commands ignore it, as runc does."""
    bundle = rl.bundle(rootless_config(user, ["true"]))
    for cmd in ("create", "run"):
        res = rl("--systemd-cgroup", cmd, "--bundle", bundle, "c1")
        _refused(rl, res, "--systemd-cgroup: pyrunc has no systemd cgroup driver")
    res = rl("--systemd-cgroup", "list")
    assert res.returncode == 0, res


def test_sysfs_and_cgroup_mounts_the_rootless_way(rl, user):
    """No network namespace of its own: sysfs cannot be mounted, the host's /sys is bound
    read-only instead; a cgroup mount on top shows the hierarchies (not the copies the /sys
    bind brought along, which the cgroup mount's tmpfs hides)."""
    cfg = rootless_config(user, ["sh", "-c", "ls /sys/kernel >/dev/null && echo sys-ok; "
                                 "ls /sys/fs/cgroup; touch /sys/x 2>/dev/null || echo ro"])
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"] + [
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}]
    res = rl.run(cfg)
    assert res.returncode == 0, res
    lines = res.stdout.split()
    assert lines[0] == "sys-ok" and lines[-1] == "ro", res
    with open("/proc/self/mountinfo") as f:
        hierarchies = {line.split()[4].rsplit("/", 1)[1] for line in f
                       if " - cgroup" in line and line.split()[4].startswith("/sys/fs/cgroup/")}
    if hierarchies:         # (hybrid or v1 host: a tmpfs with one directory per hierarchy)
        assert set(lines[1:-1]) == hierarchies, res
    else:                   # (pure v2: the cgroup itself)
        assert "cgroup.procs" in lines, res
