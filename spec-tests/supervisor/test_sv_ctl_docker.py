"""pyrunc-ctl as a Docker user's fingers expect it: names, flags, exit codes and output layout.

Real containers through the shared supervisor; facts from inside the container or from the
container's cgroup. Where the docker CLI decides on its own (flag parsing, argument counts),
its answer is taken from /usr/bin/docker itself, pointed at a socket that does not exist so no
daemon is involved.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from sv_harness import CGROUP_ROOT, wait_for

DOCKER = "/usr/bin/docker"
PS_HEADER = ("CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES")


def docker_cli(*args) -> subprocess.CompletedProcess:
    if not os.access(DOCKER, os.X_OK):
        pytest.skip("the docker CLI is not installed at /usr/bin/docker")
    return subprocess.run([DOCKER, "-H", "unix:///nonexistent/docker.sock", *args],
                          capture_output=True, text=True, timeout=60)


def names(sv, *flags) -> dict[str, str]:
    """name -> STATUS column of ``ps -a``."""
    out = sv.ctl("ps", "-a", *flags, "--format", "{{.Names}}\t{{.Status}}").stdout
    return dict(ln.split("\t") for ln in out.splitlines())


def name_set(sv) -> set[str]:
    return set(sv.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split())


def detached(sv, rootfs, *args, name=None, flags=()):
    name = name or sv.id("dk")
    cid = sv.ctl("run", "-d", "--name", name, *flags, rootfs, *(args or ("sleep", "300")))
    return name, cid.stdout.strip()


@pytest.fixture
def cleanup(sv):
    """Names to force-remove after the test, whatever happened."""
    made: list[str] = []
    yield made
    for name in made:
        sv.ctl("rm", "-f", name, check=False)


def cgroup_file(sv, cid: str, controller: str, name: str) -> str:
    with open(os.path.join(CGROUP_ROOT, controller, sv.ns, cid, name)) as f:
        return f.read().strip()


# -- names, IDs, references -----------------------------------------------------------------------

def test_ids_names_and_references(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs)
    cleanup.append(name)
    assert re.fullmatch("[0-9a-f]{64}", cid)
    for ref in (name, cid, cid[:12], cid[:5]):  # name, full ID, unique prefixes
        assert sv.ctl("inspect", "-f", "{{.Id}}", ref).stdout == cid + "\n"
    gen = sv.ctl("create", sv_rootfs, "true").stdout.strip()
    cleanup.append(gen)
    generated = sv.ctl("inspect", "-f", "{{.Name}}", gen).stdout.strip()
    assert re.fullmatch(r"/[a-z]+_[a-z]+\d*", generated)


def test_name_in_use_is_refused_and_leaves_nothing(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs)
    cleanup.append(name)
    before = name_set(sv)
    res = sv.ctl("run", "-d", "--name", name, sv_rootfs, "sleep", "1", check=False)
    assert res.returncode == 125
    assert (f'Conflict. The container name "/{name}" is already in use by container "{cid}"'
            in res.stderr)
    assert res.stdout == ""
    assert name_set(sv) == before
    res = sv.ctl("run", "--name", "bad name!", sv_rootfs, "true", check=False)
    assert res.returncode == 125 and "Invalid container name (bad name!)" in res.stderr


def test_rename(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs)
    other, _ = detached(sv, sv_rootfs)
    new = sv.id("renamed")
    cleanup.extend([name, other, new])
    sv.ctl("rename", name, new)
    assert sv.ctl("inspect", "-f", "{{.Name}} {{.Id}}", new).stdout == f"/{new} {cid}\n"
    assert sv.ctl("inspect", name, check=False).returncode == 1
    res = sv.ctl("rename", new, other, check=False)
    assert res.returncode == 1 and "is already in use" in res.stderr
    res = sv.ctl("rename", "no-such-ctr", sv.id(), check=False)
    assert (res.returncode, res.stderr) == (1, "Error response from daemon: No such container: "
                                               "no-such-ctr\n")


# -- exit codes ------------------------------------------------------------------------------------

def test_exit_codes_of_run_and_exec(sv, sv_rootfs, cleanup):
    assert sv.ctl("run", "--rm", sv_rootfs, "sh", "-c", "exit 42", check=False).returncode == 42
    res = sv.ctl("run", "--rm", sv_rootfs, "no-such-command", check=False)
    assert res.returncode == 127 and "executable file not found" in res.stderr
    res = sv.ctl("run", "--rm", sv_rootfs, "/etc", check=False)
    assert res.returncode == 126
    assert sv.ctl("run", "--rm", sv_rootfs, "sh", "-c", 'sh -c "kill -9 \\$\\$"; exit $?',
                  check=False).returncode == 137
    name, _ = detached(sv, sv_rootfs)
    cleanup.append(name)
    assert sv.ctl("exec", name, "sh", "-c", "exit 7", check=False).returncode == 7
    assert sv.ctl("exec", name, "no-such-command", check=False).returncode == 127
    assert sv.ctl("exec", name, "/etc", check=False).returncode == 126
    res = sv.ctl("exec", "no-such-ctr", "true", check=False)
    assert res.returncode == 1 and "No such container: no-such-ctr" in res.stderr


@pytest.mark.parametrize("args", [
    ["run", "--memory", "abc", "IMG"],
    ["run", "--cpus", "x", "IMG"],
    ["run", "--pids-limit", "x", "IMG"],
    ["run", "-h"],
    ["ps", "--no-such-flag"],
    ["stop", "-t", "0.5", "x"],
    ["rm"],
    ["logs"],
    ["rename", "x"],
    ["exec", "x"],
    ["run", "--hostname"],
])
def test_flag_errors_match_docker(sv, sv_rootfs, args):
    """The exit code and first line of the docker CLI's own answer (no daemon involved)."""
    want = docker_cli(*[a.replace("IMG", "busybox") for a in args])
    got = sv.ctl(*[a.replace("IMG", sv_rootfs) for a in args], check=False)
    assert got.returncode == want.returncode, (got.stderr, want.stderr)
    first = want.stderr.splitlines()[0].replace("docker", "pyrunc-ctl")
    assert got.stderr.splitlines()[0] == first, (got.stderr, want.stderr)
    assert got.stdout == ""


def test_bad_values_leave_nothing_behind(sv, sv_rootfs):
    before = name_set(sv)
    for flags in (["--restart", "bogus"], ["--restart", "always:3"], ["--log-opt", "color=red"],
                  ["--mount", "type=volume,target=/x"], ["--cap-add", "NO_SUCH_CAP"],
                  ["-v", "/nonexistent/src:/x"],
                  ["--env-file", "/nonexistent/env"], ["--tmpfs", "relative"]):
        res = sv.ctl("run", "--name", sv.id("bad"), *flags, sv_rootfs, "true", check=False)
        assert res.returncode == 125, (flags, res.stderr)
        assert res.stderr.count("\n") <= 2, res.stderr  # one message (and the --help hint)
    assert name_set(sv) == before


# -- ps ----------------------------------------------------------------------------------

def test_ps_layout_quiet_all_and_no_trunc(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs, "sleep", "300")
    done = sv.id("dk")
    cleanup.extend([name, done])
    sv.ctl("run", "--name", done, sv_rootfs, "sh", "-c", "exit 3", check=False)
    out = sv.ctl("ps", "-f", f"name={name}").stdout.splitlines()
    header = out[0]
    assert re.sub(" +", " ", header) == re.sub(" +", " ", PS_HEADER)
    # the columns start where the header's do (tabwriter alignment)
    starts = [header.index(col) for col in ("IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    row = out[1]
    assert row.startswith(cid[:12] + " ")
    assert row[starts[0]:].startswith(sv_rootfs)
    assert row[starts[1]:].startswith('"sleep 300"')
    assert re.match(r"(Less than a second|\d+ seconds?) ago", row[starts[2]:])
    assert re.match(r"Up (Less than a second|\d+ seconds?)", row[starts[3]:])
    assert row[starts[4]:] == name
    assert cid[:12] in sv.ctl("ps", "-q").stdout.split()
    assert done not in sv.ctl("ps").stdout
    assert re.search(r"Exited \(3\) .* ago", names(sv)[done])
    assert cid in sv.ctl("ps", "-q", "--no-trunc").stdout.split()
    long_cmd = sv.ctl("ps", "-f", f"name={name}", "--format", "{{.Command}}").stdout
    assert long_cmd == '"sleep 300"\n'


def test_ps_format_and_filters(sv, sv_rootfs, cleanup):
    lab = sv.id("lab")
    a, _ = detached(sv, sv_rootfs, flags=("-l", f"{lab}=a"))
    b, bid = detached(sv, sv_rootfs, "sh", "-c", "exit 5", flags=("-l", f"{lab}=b"))
    cleanup.extend([a, b])
    sv.ctl("wait", b)
    fmt = ["--format", "{{.Names}}"]
    assert sv.ctl("ps", "-f", f"label={lab}", *fmt).stdout.split() == [a]
    assert sorted(sv.ctl("ps", "-a", "-f", f"label={lab}", *fmt).stdout.split()) == sorted([a, b])
    assert sv.ctl("ps", "-a", "-f", f"label={lab}=b", *fmt).stdout.split() == [b]
    assert sv.ctl("ps", "-f", f"label={lab}", "-f", "status=exited", *fmt).stdout.split() == [b]
    assert sv.ctl("ps", "-f", f"label={lab}", "-f", "exited=5", *fmt).stdout.split() == [b]
    assert sv.ctl("ps", "-a", "-f", f"id={bid[:8]}", *fmt).stdout.split() == [b]
    table = sv.ctl("ps", "-a", "-f", f"label={lab}", "--format",
                   "table {{.Names}}\\t{{.State}}\\t{{.Label \"" + lab + "\"}}").stdout
    lines = table.splitlines()
    assert lines[0].split() == ["NAMES", "STATE", "LABEL"]
    assert sorted(ln.split() for ln in lines[1:]) == sorted([[a, "running", "a"],
                                                             [b, "exited", "b"]])
    js = sv.ctl("ps", "-f", f"name={a}", "--format", "{{json .Names}}").stdout
    assert json.loads(js) == a
    res = sv.ctl("ps", "-f", "colour=red", check=False)
    assert (res.returncode, res.stderr) == (1, "Error response from daemon: Invalid filter "
                                               "'colour'\n")
    res = sv.ctl("ps", "--format", "{{.NoSuchField}}", check=False)
    assert res.returncode == 1 and "can't evaluate field NoSuchField" in res.stderr


# -- inspect ----------------------------------------------------------------------------------

def test_inspect_fields_where_docker_puts_them(sv, sv_rootfs, cleanup):
    host_dir = os.path.join(sv.base, sv.id("bind"))
    os.makedirs(host_dir)
    name, cid = detached(sv, sv_rootfs, "sleep", "300", flags=(
        "-e", "A=1", "-w", "/tmp", "-h", "myhost", "-l", "tier=web", "-v", f"{host_dir}:/data:ro",
        "--memory", "64m", "--restart", "on-failure:3", "--read-only"))
    cleanup.append(name)
    info = json.loads(sv.ctl("inspect", name).stdout)
    assert len(info) == 1
    c = info[0]
    assert (c["Id"], c["Name"], c["Path"], c["Args"]) == (cid, "/" + name, "sleep", ["300"])
    st = c["State"]
    assert (st["Status"], st["Running"], st["Paused"], st["ExitCode"]) == ("running", True,
                                                                           False, 0)
    assert st["Pid"] > 0 and st["StartedAt"].startswith("20")
    assert c["Config"]["Hostname"] == "myhost" and "A=1" in c["Config"]["Env"]
    assert c["Config"]["WorkingDir"] == "/tmp" and c["Config"]["Labels"] == {"tier": "web"}
    assert c["Config"]["Cmd"] == ["sleep", "300"] and c["Config"]["Image"] == sv_rootfs
    hc = c["HostConfig"]
    assert hc["Memory"] == 64 << 20 and hc["ReadonlyRootfs"] is True
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["Binds"] == [f"{host_dir}:/data:ro"]
    assert c["Mounts"] == [{"Type": "bind", "Source": host_dir, "Destination": "/data",
                            "Mode": "", "RW": False, "Propagation": "rprivate"}]
    assert "Networks" in c["NetworkSettings"]
    out = sv.ctl("inspect", "-f", "{{.State.Running}} {{json .Config.Cmd}} {{index "
                 ".Config.Labels \"tier\"}}", name).stdout
    assert out == 'true ["sleep","300"] web\n'
    res = sv.ctl("inspect", name, "no-such-ctr", check=False)
    assert res.returncode == 1 and res.stderr == "Error: No such object: no-such-ctr\n"
    assert len(json.loads(res.stdout)) == 1
    res = sv.ctl("inspect", "no-such-ctr", check=False)
    assert (res.returncode, res.stdout.strip()) == (1, "[]")


# -- run flags, seen from inside ------------------------------------------------------------------

def test_run_flags_from_inside(sv, sv_rootfs, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\nB=file\n")
    out = sv.ctl("run", "--rm", "-h", "box", "--env-file", str(env_file), "-e", "B=flag",
                 "-u", "65534:65534", "-w", "/tmp", "--entrypoint", "/bin/sh", sv_rootfs,
                 "-c", 'echo "$(hostname) $FROM_FILE $B $(id -u) $(pwd)"').stdout
    assert out == "box yes flag 65534 /tmp\n"
    res = sv.ctl("run", "--rm", "--read-only", "--tmpfs", "/scratch", sv_rootfs, "sh", "-c",
                 "touch /x 2>/dev/null && echo rw || echo ro; touch /scratch/y && echo tmpfs-ok")
    assert res.stdout == "ro\ntmpfs-ok\n"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("bound\n")
    res = sv.ctl("run", "--rm", "--mount", f"type=bind,source={src},target=/m,readonly",
                 "--mount", "type=tmpfs,target=/t", sv_rootfs, "sh", "-c",
                 "cat /m/f; touch /m/g 2>/dev/null || echo ro; grep ' /t ' /proc/mounts "
                 "| cut -d' ' -f3")
    assert res.stdout == "bound\nro\ntmpfs\n"


def _cap_bnd(sv, rootfs, *flags) -> int:
    out = sv.ctl("run", "--rm", *flags, rootfs, "grep", "CapBnd", "/proc/self/status").stdout
    return int(out.split()[1], 16)


def test_capabilities_and_privileged(sv, sv_rootfs):
    default = _cap_bnd(sv, sv_rootfs)
    net_raw, sys_admin = 1 << 13, 1 << 21
    assert default & net_raw and not default & sys_admin
    assert not _cap_bnd(sv, sv_rootfs, "--cap-drop", "NET_RAW") & net_raw
    assert _cap_bnd(sv, sv_rootfs, "--cap-add", "SYS_ADMIN") & sys_admin
    assert _cap_bnd(sv, sv_rootfs, "--cap-drop", "ALL") == 0
    with open("/proc/self/status") as f:  # every capability this host can hand out
        host = int(next(ln for ln in f if ln.startswith("CapBnd")).split()[1], 16)
    assert _cap_bnd(sv, sv_rootfs, "--privileged") == host


def test_resource_flags_reach_the_cgroup(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs, flags=("--memory", "48m", "--cpus", "0.5",
                                               "--pids-limit", "33"))
    cleanup.append(name)
    assert int(cgroup_file(sv, cid, "memory", "memory.limit_in_bytes")) == 48 << 20
    assert cgroup_file(sv, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(sv, cid, "pids", "pids.max") == "33"
    hc = json.loads(sv.ctl("inspect", "-f", "{{json .HostConfig}}", name).stdout)
    assert (hc["NanoCpus"], hc["PidsLimit"]) == (500000000, 33)


def test_init_reaps_as_pid_1(sv, sv_rootfs):
    if not any(os.access(p, os.X_OK) for p in ("/usr/bin/docker-init", "/usr/bin/tini-static",
                                                "/usr/bin/tini")):
        pytest.skip("no docker-init or tini binary on this host")
    out = sv.ctl("run", "--rm", "--init", sv_rootfs, "sh", "-c",
                 "tr '\\0' ' ' </proc/1/cmdline; echo; exit 4", check=False)
    assert out.returncode == 4
    assert out.stdout.startswith("/sbin/docker-init -- sh -c")


# -- lifecycle ----------------------------------------------------------------------------------

def test_create_start_wait_logs_tail(sv, sv_rootfs, cleanup):
    name = sv.id("dk")
    cleanup.append(name)
    cid = sv.ctl("create", "--name", name, sv_rootfs, "sh", "-c",
                 "for i in 1 2 3 4 5; do echo line$i; done; exit 9").stdout.strip()
    assert re.fullmatch("[0-9a-f]{64}", cid)
    assert names(sv)[name] == "Created"
    assert sv.ctl("start", name).stdout == name + "\n"
    assert sv.ctl("wait", name).stdout == "9\n"
    assert sv.ctl("logs", name).stdout == "".join(f"line{i}\n" for i in range(1, 6))
    assert sv.ctl("logs", "--tail", "2", name).stdout == "line4\nline5\n"
    assert sv.ctl("logs", "-n", "0", name).stdout == ""
    res = sv.ctl("start", "-a", name, check=False)  # again, attached: output and exit code
    assert (res.returncode, res.stdout) == (9, "".join(f"line{i}\n" for i in range(1, 6)))


def test_restart_stop_kill_pause_many(sv, sv_rootfs, cleanup):
    a, aid = detached(sv, sv_rootfs, "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait")
    b, _ = detached(sv, sv_rootfs)
    cleanup.extend([a, b])
    pid = json.loads(sv.ctl("inspect", a).stdout)[0]["State"]["Pid"]
    assert sv.ctl("restart", "-t", "30", a).stdout == a + "\n"
    pid2 = json.loads(sv.ctl("inspect", a).stdout)[0]["State"]["Pid"]
    assert pid2 != pid and names(sv)[a].startswith("Up")
    assert sv.ctl("pause", a, b).stdout == f"{a}\n{b}\n"
    assert names(sv)[a].endswith("(Paused)") and names(sv)[b].endswith("(Paused)")
    res = sv.ctl("pause", a, check=False)
    assert res.returncode == 1 and "is already paused" in res.stderr
    assert sv.ctl("unpause", a, b).stdout == f"{a}\n{b}\n"
    res = sv.ctl("kill", "-s", "TERM", a, "no-such-ctr", check=False)
    assert (res.returncode, res.stdout) == (1, a + "\n")
    assert res.stderr == "Error response from daemon: No such container: no-such-ctr\n"
    assert sv.ctl("wait", a).stdout == "0\n"
    res = sv.ctl("kill", a, check=False)
    assert res.returncode == 1 and f"Container {aid} is not running" in res.stderr
    assert sv.ctl("stop", "-t", "1", a, b).stdout == f"{a}\n{b}\n"  # a stopped one is fine
    assert re.match(r"Exited \(137\)", names(sv)[b])
    assert sv.ctl("rm", a, b).stdout == f"{a}\n{b}\n"
    assert a not in names(sv) and b not in names(sv)


def test_top_lists_the_container_processes(sv, sv_rootfs, cleanup):
    name, _ = detached(sv, sv_rootfs, "sh", "-c", "sleep 301 & sleep 302 & wait")
    cleanup.append(name)
    wait_for(lambda: "sleep 302" in sv.ctl("top", name).stdout, timeout=60, what="sleeps")
    lines = sv.ctl("top", name).stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = sorted(ln.split(None, 7)[7] for ln in lines[1:])
    assert cmds == ["sh -c sleep 301 & sleep 302 & wait", "sleep 301", "sleep 302"]
    out = sv.ctl("top", name, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and len(out) == 4


def test_stats_no_stream_layout(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs, flags=("--memory", "64m"))
    cleanup.append(name)
    out = sv.ctl("stats", "--no-stream", name).stdout.splitlines()
    assert re.split(" {2,}", out[0]) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
                                         "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    cells = re.split(" {2,}", out[1])
    assert cells[0] == cid[:12] and cells[1] == name
    assert re.fullmatch(r"\d+\.\d\d%", cells[2])
    assert re.fullmatch(r"[\d.]+[KMG]?i?B / 64MiB", cells[3])
    assert re.fullmatch(r"\d+\.\d\d%", cells[4]) and cells[7] == "1"


def test_rm_refuses_running_and_force_removes(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs)
    cleanup.append(name)
    res = sv.ctl("rm", name, check=False)
    assert res.returncode == 1
    assert res.stderr == (f"Error response from daemon: You cannot remove a running container "
                          f"{cid}. Stop the container before attempting removal or force "
                          "remove\n")
    assert sv.ctl("rm", "-f", name).stdout == name + "\n"
    assert name not in names(sv)
    assert not os.path.exists(os.path.join(CGROUP_ROOT, "memory", sv.ns, cid))


# -- cp ----------------------------------------------------------------------------------

CP_SETUP = ("mkdir -p /tmp/d/sub && echo a > /tmp/d/a && echo b > /tmp/d/sub/b && "
            "ln -s a /tmp/d/link && ln -s {host}/secret /tmp/abs && "
            "ln -s ../../../../../../..{host}/secret /tmp/rel && ln -s {host} /tmp/hostdir && "
            "ln -s /etc/passwd /tmp/plink && echo tmp > /scratch/t && touch /tmp/ready && "
            "exec sleep 300")


class Box:
    """A container for cp tests; ``p(path)`` places a /tmp path in its own directory of the
    shared rootfs."""

    def __init__(self, name, host, top):
        self.name, self.host, self.top = name, host, top

    def p(self, path: str) -> str:
        return path.replace("/tmp", self.top, 1)


@pytest.fixture
def cp_box(sv, sv_rootfs, tmp_path, cleanup):
    """A running container whose tree has symlinks aimed at a host directory (absolute and
    ../-relative), next to that host directory with a secret in it."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("HOST SECRET\n")
    top = "/tmp/" + sv.id("cp")
    script = CP_SETUP.replace("/tmp", top).format(host=host)
    name, cid = detached(sv, sv_rootfs, "sh", "-c", script, flags=("--tmpfs", "/scratch"))
    cleanup.append(name)
    wait_for(lambda: sv.ctl("exec", name, "test", "-e", f"{top}/ready", check=False)
             .returncode == 0, timeout=60, what="the container's files")
    return Box(name, host, top)


def _in(sv, name, script) -> str:
    return sv.ctl("exec", name, "sh", "-c", script).stdout


def test_cp_out_of_a_container(sv, cp_box, tmp_path):
    box = cp_box
    name, host = box.name, box.host
    out = tmp_path / "out"
    out.mkdir()
    assert sv.ctl("cp", f"{name}:{box.p('/tmp/d')}", str(out)).stdout == ""
    assert (out / "d" / "a").read_text() == "a\n" and (out / "d/sub/b").read_text() == "b\n"
    assert os.readlink(out / "d" / "link") == "a"            # a symlink stays a symlink
    sv.ctl("cp", f"{name}:{box.p('/tmp/d/.')}", str(out / "flat"))  # DIR/. : the contents
    assert sorted(os.listdir(out / "flat")) == ["a", "link", "sub"]
    sv.ctl("cp", f"{name}:{box.p('/tmp/plink')}", str(out / "plink"))
    assert os.readlink(out / "plink") == "/etc/passwd"
    # -L: followed, inside the root
    sv.ctl("cp", "-L", f"{name}:{box.p('/tmp/plink')}", str(out / "passwd"))
    assert (out / "passwd").read_text().startswith("root:x:0:0")
    sv.ctl("cp", f"{name}:/scratch/t", str(out / "t"))        # the container's own mounts
    assert (out / "t").read_text() == "tmp\n"
    # aimed at the host: not there inside the container
    for link in (box.p("/tmp/abs"), box.p("/tmp/rel")):
        res = sv.ctl("cp", "-L", f"{name}:{link}", str(out / "stolen"), check=False)
        assert (res.returncode, res.stderr) == (1, f"Error: No such container:path: "
                                                   f"{name}:{link}\n")
    assert not (out / "stolen").exists()
    res = sv.ctl("cp", f"{name}:/no/such", str(out), check=False)
    assert (res.returncode, res.stderr) == (1, f"Error: No such container:path: "
                                               f"{name}:/no/such\n")


def _cp_in_checks(sv, box, tmp_path, running: bool):
    name, host = box.name, box.host
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "f").write_text("from host\n")
    (src / "tree").mkdir(exist_ok=True)
    (src / "tree" / "g").write_text("g\n")
    # a file onto a symlink replaces the link, it never writes its aim
    sv.ctl("cp", str(src / "f"), f"{name}:{box.p('/tmp/abs')}")
    # a symlinked directory is resolved inside the root: not there, so refused
    res = sv.ctl("cp", str(src / "f"), f"{name}:{box.p('/tmp/hostdir/')}", check=False)
    assert res.returncode == 1 and "no such directory" in res.stderr
    res = sv.ctl("cp", str(src / "f"), f"{name}:{box.p('/tmp/hostdir/x')}", check=False)
    assert res.returncode == 1 and "no such directory" in res.stderr
    sv.ctl("cp", str(src / "f"), f"{name}:../../../..{box.p('/tmp/up')}")  # .. stops at the root
    sv.ctl("cp", str(src / "tree"), f"{name}:{box.p('/tmp/d')}")
    assert (host / "secret").read_text() == "HOST SECRET\n"
    assert sorted(os.listdir(host)) == ["secret"]
    if running:
        script = "cat /tmp/abs /tmp/up /tmp/d/tree/g; test -L /tmp/abs || echo file"
        check = _in(sv, name, script.replace("/tmp", box.top))
        assert check == "from host\nfrom host\ng\nfile\n"


def test_cp_into_a_running_container_stays_inside(sv, cp_box, tmp_path):
    box = cp_box
    name, host = box.name, box.host
    _cp_in_checks(sv, box, tmp_path, running=True)


def test_cp_into_a_stopped_container_stays_inside(sv, sv_rootfs, cp_box, tmp_path):
    """Stopped, the container's root is a plain host directory: the same rules hold."""
    box = cp_box
    name, host = box.name, box.host
    sv.ctl("stop", "-t", "1", name)
    _cp_in_checks(sv, box, tmp_path, running=False)
    script = "cat /tmp/abs /tmp/up; test -L /tmp/abs || echo file".replace("/tmp", box.top)
    seen = sv.ctl("run", "--rm", sv_rootfs, "sh", "-c", script).stdout  # the same rootfs
    assert seen == "from host\nfrom host\nfile\n"


def test_cp_errors(sv, cp_box, tmp_path):
    box = cp_box
    name = box.name
    res = sv.ctl("cp", "no-such-ctr:/x", str(tmp_path), check=False)
    assert (res.returncode, res.stderr) == (1, "Error: No such container:path: "
                                               "no-such-ctr:/x\n")
    res = sv.ctl("cp", str(tmp_path), str(tmp_path / "y"), check=False)
    assert (res.returncode, res.stderr) == (1, "must specify at least one container source\n")
    res = sv.ctl("cp", f"{name}:/a", f"{name}:/b", check=False)
    assert (res.returncode, res.stderr) == (1, "copying between containers is not supported\n")
    res = sv.ctl("cp", str(tmp_path / "missing"), f"{name}:{box.p('/tmp')}", check=False)
    assert res.returncode == 1 and "no such file or directory" in res.stderr
    (tmp_path / "file").write_text("x")
    res = sv.ctl("cp", f"{name}:{box.p('/tmp/d')}", str(tmp_path / "file"), check=False)
    assert res.returncode == 1 and "cannot copy a directory to a file" in res.stderr


# -- volumes, update, attach, port, version, info ----------------------------------------------

def test_named_volumes_and_files_under_the_supervisor_root(sv, sv_rootfs, cleanup):
    vol = sv.id("vol")
    nolog = {"PYRUNC_CTL_LOG_DIR": ""}  # the default: under the supervisor's --root
    assert sv.ctl("volume", "create", vol).stdout == vol + "\n"
    assert vol in sv.ctl("volume", "ls", "-q").stdout.split()
    ls = sv.ctl("volume", "ls").stdout.splitlines()
    assert ls[0] == "DRIVER    VOLUME NAME" and f"local     {vol}" in ls
    sv.ctl("run", "--rm", "-v", f"{vol}:/data", sv_rootfs, "sh", "-c", "echo kept > /data/f")
    name = sv.id("dk")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, "-v", f"{vol}:/data", sv_rootfs, "sh", "-c",
           "cat /data/f; exec sleep 300", env=nolog)
    wait_for(lambda: sv.ctl("logs", name).stdout == "kept\n", timeout=60, what="the volume")
    info = json.loads(sv.ctl("volume", "inspect", vol).stdout)[0]
    assert info["Mountpoint"] == os.path.join(sv.root, "ctl", "volumes", vol, "_data")
    mounts = json.loads(sv.ctl("inspect", "-f", "{{json .Mounts}}", name).stdout)
    assert mounts[0]["Type"] == "volume" and mounts[0]["Name"] == vol
    log = sv.ctl("inspect", "-f", "{{.LogPath}}", name).stdout.strip()
    assert log.startswith(os.path.join(sv.root, "ctl", "logs") + "/")
    res = sv.ctl("volume", "rm", vol, check=False)
    assert res.returncode == 1 and "volume is in use" in res.stderr
    sv.ctl("rm", "-f", name)
    assert not os.path.exists(log)
    assert sv.ctl("volume", "rm", vol).stdout == vol + "\n"
    res = sv.ctl("volume", "inspect", vol, check=False)
    assert res.returncode == 1 and f"No such volume: {vol}" in res.stderr


def test_update_changes_live_limits_and_the_policy(sv, sv_rootfs, cleanup):
    name, cid = detached(sv, sv_rootfs)
    cleanup.append(name)
    assert sv.ctl("update", "--memory", "40m", "--pids-limit", "21", "--restart",
                  "unless-stopped", name).stdout == name + "\n"
    assert int(cgroup_file(sv, cid, "memory", "memory.limit_in_bytes")) == 40 << 20
    assert cgroup_file(sv, cid, "pids", "pids.max") == "21"
    hc = json.loads(sv.ctl("inspect", "-f", "{{json .HostConfig}}", name).stdout)
    assert (hc["Memory"], hc["PidsLimit"]) == (40 << 20, 21)
    assert hc["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    res = sv.ctl("update", name, check=False)
    assert res.returncode == 1 and "one or more flags" in res.stderr


def test_attach_follows_output_and_returns_the_exit_code(sv, sv_rootfs, cleanup):
    top = "/tmp/" + sv.id("at")
    name, _ = detached(sv, sv_rootfs, "sh", "-c",
                       f"mkdir -p {top}; while [ ! -e {top}/go ]; do echo tick; sleep 0.05; "
                       "done; echo bye; exit 6")
    cleanup.append(name)
    env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=sv.sock, PYRUNC_NAMESPACE=sv.ns)
    from sv_harness import PYTHON, ROOT
    proc = subprocess.Popen([PYTHON, "-m", "supervisor.ctl", "attach", name], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "tick\n"  # following: now let it finish
        sv.ctl("exec", name, "touch", f"{top}/go")
        rest = proc.stdout.read()
        assert proc.wait(60) == 6
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rest.endswith("bye\n") and set(rest.splitlines()[:-1]) <= {"tick"}
    res = sv.ctl("attach", name, check=False)
    assert res.returncode == 1 and "is not running" in res.stderr


def test_port_version_info(sv, sv_rootfs, cleanup):
    name, _ = detached(sv, sv_rootfs)
    cleanup.append(name)
    assert sv.ctl("port", name).stdout == ""
    res = sv.ctl("port", name, "80", check=False)
    assert (res.returncode, res.stderr) == (1, f"Error: No public port '80/tcp' published for "
                                               f"{name}\n")
    out = sv.ctl("version").stdout
    assert out.startswith("Client:\n Version:") and "Server: pyrunc-supervisor" in out
    info = dict(ln.strip().split(": ", 1) for ln in sv.ctl("info").stdout.splitlines()
                if ": " in ln)
    assert int(info["Running"]) >= 1 and info["Namespace"] == sv.ns
    assert info["Pyrunc Root Dir"] == os.path.join(sv.root, "ctl")


def test_foreground_logs_and_system_prune(sv_own, sv_rootfs):
    """A daemon of its own: prune removes every stopped container of the namespace."""
    sv = sv_own
    done, up = sv.id("pr"), sv.id("pr")
    res = sv.ctl("run", "--name", done, sv_rootfs, "sh", "-c", "echo out; echo err >&2; exit 2",
                 check=False)
    assert (res.returncode, res.stdout, res.stderr) == (2, "out\n", "err\n")
    logs = sv.ctl("logs", done)  # kept, as docker: each line on the stream it came from
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    created = sv.ctl("create", sv_rootfs, "true").stdout.strip()
    vol = sv.id("vol")
    sv.ctl("volume", "create", vol)
    sv.ctl("run", "-d", "--name", up, sv_rootfs, "sleep", "300")
    res = sv.ctl("system", "prune", input="n\n")  # asks first; "n" keeps everything
    assert "Are you sure you want to continue? [y/N]" in res.stdout
    assert done in sv.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split()
    out = sv.ctl("system", "prune", "-f", "--volumes").stdout
    ids = out.split("Deleted Containers:\n")[1].split("\n\n")[0].split()
    assert created in ids and len(ids) == 2
    assert f"Deleted Volumes:\n{vol}\n" in out and out.endswith("Total reclaimed space: 0B\n")
    assert sv.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split() == [up]
    sv.ctl("rm", "-f", up)
