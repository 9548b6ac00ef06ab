"""Hardening: each defence against a hostile container, attacked from inside a real one.

The container is hostile by assumption: its rootfs, its programs and whatever it does while the
runtime works on it are the attacker's.  Every test here builds that attacker — a probe looping
over ``/proc``, a ``#!/proc/self/exe`` program, a symlink swapped in a loop, a pre-seeded
``/dev/null`` — and asserts from both sides (inside the container and on the host) that it got
nowhere.  When a defence fails, the tests never do harm: symlinks point at sentinel directories
of the test's own, and a file opened for writing is closed at once without a byte written.

``docs/security.md`` lists each threat, the code that defends against it and its tests (these
and the older ones in test_fds.py, test_exec.py, test_rootfs.py, test_badinput.py,
test_process.py and test_namespaces.py).

Some attacks need Python inside the container: ``py_template`` is a busybox rootfs plus *copies*
of the host's interpreter, the libraries it links and three modules of its standard library —
the attacker's own tools, none of them a host file.
"""

import ast
import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest

from harness import BUSYBOX, PYRUNC, REPO, base_config, make_rootfs, status_fields

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "security_data")
CAP = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5, "CAP_SETGID": 6,
       "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_PTRACE": 19,
       "CAP_SYS_ADMIN": 21, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29}
BASE_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]     # base_config()'s
FS_IOC_GETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x10


# --- helpers ------------------------------------------------------------------------------------

def mask(*names) -> int:
    return sum(1 << CAP[n] for n in set(names))


def set_caps(cfg: dict, bounding, effective=None, inheritable=(), ambient=()) -> None:
    effective = list(bounding if effective is None else effective)
    cfg["process"]["capabilities"] = {"bounding": list(bounding), "effective": effective,
                                      "permitted": effective, "inheritable": list(inheritable),
                                      "ambient": list(ambient)}


def add_userns(cfg: dict, uid_maps=((0, 100000, 65536),), gid_maps=None) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": c, "hostID": h, "size": s}
                                   for c, h, s in uid_maps]
    cfg["linux"]["gidMappings"] = [{"containerID": c, "hostID": h, "size": s}
                                   for c, h, s in (gid_maps or uid_maps)]


def without_mounts(cfg: dict, *destinations) -> dict:
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] not in destinations]
    return cfg


def tree_listing(path) -> list:
    """Every entry under ``path`` with its type and content, to see that nothing changed."""
    out = []
    for base, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(base, name)
            st = os.lstat(full)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
            out.append((os.path.relpath(full, path), stat.S_IFMT(st.st_mode), data))
    return out


def sentinel_dir(tmp_path, name="sentinel"):
    """A host directory a failed defence would write into; its contents are known."""
    path = tmp_path / name
    (path / "sub").mkdir(parents=True)
    (path / "keep").write_text("sentinel\n")
    return path


def host_mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def single_error(res) -> str:
    lines = [line for line in res.err.splitlines() if "level=error" in line]
    assert len(lines) == 1, res
    return lines[0]


# --- an attacker with Python ----------------------------------------------------------------

def _linked_libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        paths = [w for w in line.split() if w.startswith("/")]
        if paths:
            libs.append(paths[0])
    return libs


def _copy_into(root: str, path: str, mode: int | None = None) -> str:
    dest = root + path
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy(path, dest)         # a copy, never a link: the container may write to it
    if mode is not None:
        os.chmod(dest, mode)
    return dest


def set_file_caps(path: str, *names) -> None:
    """security.capability (VFS_CAP_REVISION_2) granting ``names`` permitted + effective."""
    bits = mask(*names)
    data = (0x02000000 | 0x1).to_bytes(4, "little")     # revision 2, effective flag
    data += (bits & 0xFFFFFFFF).to_bytes(4, "little") + b"\0" * 4
    data += (bits >> 32).to_bytes(4, "little") + b"\0" * 4
    os.setxattr(path, "security.capability", data)


@pytest.fixture(scope="module")
def py_template(tmp_path_factory) -> str:
    """busybox rootfs + the attacker's Python, the probe and the #!/proc/self/exe program."""
    root = make_rootfs(str(tmp_path_factory.mktemp("pytemplate") / "rootfs"))
    interpreter = os.path.realpath(sys.executable)
    for lib in _linked_libraries(interpreter):
        _copy_into(root, lib)
    stdlib = os.path.dirname(os.__file__)
    for module in ("__init__", "aliases", "utf_8"):
        _copy_into(root, f"{stdlib}/encodings/{module}.py")
    os.makedirs(root + stdlib + "/lib-dynload")
    open(root + stdlib + "/os.py", "w").close()     # the landmark that names the prefix
    shutil.copy(interpreter, root + "/bin/python3")
    shutil.copy(os.path.join(DATA, "probe.py"), root + "/probe.py")
    shutil.copy(os.path.join(DATA, "evil.py"), root + "/bin/evil")
    os.chmod(root + "/bin/evil", 0o755)
    # privilege-gaining binaries for the no_new_privs tests: a setuid-root Python and a busybox
    # whose file capabilities grant CAP_NET_RAW and CAP_SYS_ADMIN
    shutil.copy(interpreter, root + "/bin/suidpy")
    os.chmod(root + "/bin/suidpy", 0o4755)
    os.makedirs(root + "/fcap")
    shutil.copy(BUSYBOX, root + "/fcap/cat")
    set_file_caps(root + "/fcap/cat", "CAP_NET_RAW", "CAP_SYS_ADMIN")
    return root


@pytest.fixture
def pyrt(runtime, py_template):
    runtime.template = py_template
    return runtime


def parse_report(res) -> dict:
    assert res.rc == 0, res
    return ast.literal_eval(res.out.strip().splitlines()[-1])


class Probe:
    """probe.py running as the main process of a container, controlled through a shared dir."""

    def __init__(self, rt, caps=BASE_CAPS):
        self.rt = rt
        self.ctl = os.path.join(rt.tmp, f"ctl-{uuid.uuid4().hex[:6]}")
        os.makedirs(self.ctl)
        cfg = base_config(["/bin/python3", "-S", "/probe.py", "/ctl"])
        set_caps(cfg, caps)
        cfg["mounts"].append({"destination": "/ctl", "source": self.ctl, "options": ["bind"]})
        self.bundle = rt.bundle(cfg)
        self.cid = rt.new_id()
        rt("run", "-d", "--bundle", self.bundle, self.cid, check=True, stdin=subprocess.DEVNULL)
        self.pid = rt.state(self.cid)["pid"]
        self._wait_for("ready")

    def _wait_for(self, name: str) -> None:
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.ctl, name)):
            assert time.monotonic() < deadline, f"the probe never wrote {name}"
            time.sleep(0.01)

    def result(self) -> dict:
        open(os.path.join(self.ctl, "stop"), "w").close()
        self._wait_for("result")
        with open(os.path.join(self.ctl, "result")) as f:
            return ast.literal_eval(f.read())


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def runtime_interpreters() -> set[str]:
    """The interpreter files pyrunc runs on: its launcher's, the venv's, the system's."""
    found = {os.path.realpath("/usr/bin/python3")}
    with open(PYRUNC, "rb") as f:
        first = f.readline()
    if first.startswith(b"#!"):
        found.add(os.path.realpath(first[2:].split()[0].decode()))
    venv_bin = os.path.join(REPO, ".venv", "bin")
    if os.path.isdir(venv_bin):
        found |= {os.path.realpath(os.path.join(venv_bin, n)) for n in os.listdir(venv_bin)
                  if n.startswith("python")}
    return {p for p in found if os.path.isfile(p)}


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        paths = {parts[5] for parts in (line.split(None, 5) for line in f) if len(parts) == 6}
    return {p.strip() for p in paths if p.startswith("/") and os.path.isfile(p.strip())}


def runtime_files(rt) -> set[str]:
    """What a hostile container must never be able to change: the interpreters, every file a
    runtime process maps (seen in a created init), every file of the pyrunc package."""
    bundle = rt.bundle(base_config(["true"]))
    cid = rt.new_id()
    rt("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    try:
        files = mapped_files(rt.state(cid)["pid"])
    finally:
        rt("delete", "-f", cid, check=True)
    files |= runtime_interpreters()
    for base, _dirs, names in os.walk(os.path.join(REPO, "pyrunc")):
        files |= {os.path.join(base, n) for n in names}
    return files


def identities(paths) -> set[tuple[int, int]]:
    out = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def state_and_config_files(rt) -> set[str]:
    out = {rt.root}
    for base, dirs, names in os.walk(rt.root):
        out |= {os.path.join(base, n) for n in dirs + names}
    for name in os.listdir(rt.tmp):
        config = os.path.join(rt.tmp, name, "config.json")
        if os.path.isfile(config):
            out.add(config)
    return out


def assert_exe_sealed(report: dict) -> None:
    """The runtime's interpreter as a #!/proc/self/exe program saw it: not writable, and
    protected by more than ETXTBSY (which ends when the last interpreter exits)."""
    for key in ("exe_w", "exe_rw", "reopen_w", "reopen_rw"):
        assert report[key] != "OPENED", f"{key}: the runtime's interpreter opened for writing"
    assert report["ro_mount"] or report["immutable"] is True, \
        f"the runtime's interpreter is a writable host file (busy only by chance): {report}"
    assert "OPENED" not in report["map_files"], report


def violations(result: dict, protected: set) -> list:
    """Probe findings that are a way out: a protected file opened for writing, a directory
    outside the container's root, a held interpreter reopened for writing or unprotected."""
    bad = []
    for (kind, outcome, target), count in result["found"].items():
        if outcome == "ESCAPE":
            bad.append((kind, outcome, target, count))
        elif outcome == "OPENED" and (target[0], target[1]) in protected:
            bad.append((kind, outcome, target, count))
    for held in result["held"]:
        if "OPENED" in (held["w"], held["rw"]) or not (held["ro_mount"] or
                                                       held["immutable"] is True):
            bad.append(("held exe", held))
    return bad


# === 1. the runtime's binary (CVE-2019-5736 class) ================================================

def test_shebang_exe_through_exec_is_sealed(pyrt):
    """``pyrunc exec`` runs a #!/proc/self/exe program: the runtime's own interpreter starts in
    the container and tries to open itself, its mappings and a held handle for writing."""
    bundle = pyrt.bundle(base_config(["sleep", "1000"]))
    cid = pyrt.new_id()
    pyrt("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    interpreters = identities(runtime_interpreters())
    for _ in range(3):
        report = parse_report(pyrt("exec", cid, "/bin/evil"))
        assert report["pid"] != 1
        assert tuple(report["exe_id"]) in interpreters, "not the runtime's interpreter?"
        assert_exe_sealed(report)


def test_shebang_exe_as_the_init_is_sealed(pyrt):
    """The same program as the container's process: the init is the runtime until it execs."""
    for caps in (BASE_CAPS, sorted(CAP)):           # also with CAP_SYS_PTRACE, CAP_SYS_ADMIN
        cfg = base_config(["/bin/evil"])
        set_caps(cfg, caps)
        report = parse_report(pyrt.run(cfg))
        assert report["pid"] == 1
        assert_exe_sealed(report)


def test_created_init_exe_is_read_only_or_immutable(runtime):
    """Seen from the host: the exe of an init waiting for start is not a writable host file."""
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    pid = runtime.state(cid)["pid"]
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ro = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
        try:
            flags = int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8), "little")
        except OSError:
            flags = 0
        assert ro or flags & FS_IMMUTABLE_FL, "the init's exe is a writable host file"
        for how in (os.O_WRONLY, os.O_RDWR):
            try:
                w = os.open(f"/proc/self/fd/{fd}", how | os.O_CLOEXEC)
            except OSError as err:
                assert err.errno in (errno.EROFS, errno.EPERM, errno.ETXTBSY)
            else:
                os.close(w)         # nothing written
                pytest.fail("the init's exe opened for writing")
    finally:
        os.close(fd)


def _second_container(rt, pid_of_first: int, userns: bool) -> str:
    """A bundle whose container joins the first one's pid namespace (as pods share one)."""
    cfg = base_config(["true"])
    cfg["linux"]["namespaces"] = [{"type": "pid", "path": f"/proc/{pid_of_first}/ns/pid"},
                                  {"type": "mount"}, {"type": "network"}, {"type": "ipc"},
                                  {"type": "uts"}]
    if userns:
        add_userns(cfg)
        # a new user namespace cannot mount procfs for a pid namespace it does not own
        without_mounts(cfg, "/proc")
        cfg["linux"]["maskedPaths"] = []
        cfg["linux"]["readonlyPaths"] = []
    return rt.bundle(cfg)


def test_probe_races_exec_and_a_shared_pid_namespace(pyrt):
    """The probe loops over /proc/<pid>/{exe,map_files,fd,cwd,root} of every process it sees
    while the test runs ``pyrunc exec`` (a #!/proc/self/exe program and a plain one) again and
    again, and while a second container joining its pid namespace is created — so that the
    init of that create, the runtime before exec, is in sight.  Afterwards no host file the
    runtime uses may have changed."""
    files = runtime_files(pyrt)
    before = {p: sha256(p) for p in files}
    probe = Probe(pyrt)
    reports = []
    for _ in range(12):
        reports.append(parse_report(pyrt("exec", probe.cid, "/bin/evil")))
        assert pyrt("exec", probe.cid, "true").rc == 0
    for _ in range(4):
        bundle = _second_container(pyrt, probe.pid, userns=False)
        cid = pyrt.new_id()
        pyrt("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
        time.sleep(0.1)             # the created init waits, non-dumpable, in the probe's sight
        pyrt("delete", "-f", cid, check=True)
    result = probe.result()
    protected = identities(files | state_and_config_files(pyrt))
    assert result["rounds"] > 10 and result["pids"] > 20, result["rounds"]
    assert result["held"], "the probe never caught the runtime's interpreter running"
    assert not violations(result, protected)
    for report in reports:
        assert_exe_sealed(report)
    changed = [p for p in files if sha256(p) != before[p]]
    assert not changed, f"host files changed: {changed}"


def test_userns_container_joining_a_pid_namespace_is_not_reachable(pyrt):
    """A user-namespaced container joins the pid namespace of a running one.  While its init
    sets up, it still holds the host: its root and cwd, the rootfs, the state directory.  The
    probe in the first container (root, default capabilities, no user namespace) must not
    reach any of it through /proc/<pid>."""
    probe = Probe(pyrt)
    for _ in range(6):
        bundle = _second_container(pyrt, probe.pid, userns=True)
        cid = pyrt.new_id()
        res = pyrt("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
        assert res.rc == 0, res
        pyrt("delete", "-f", cid, check=True)
    result = probe.result()
    protected = identities(state_and_config_files(pyrt))
    assert result["pids"] > 1
    found = violations(result, protected)
    assert not found, f"reached from the other container: {found}"


# === 2. leaked descriptors, cwd (CVE-2024-21626 class) ============================================

def test_created_init_unreachable_from_an_exec(runtime):
    """While the container is created, its init (the runtime) holds the state directory; an
    exec'd process, root with the default capabilities, sees none of it."""
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    script = ("for l in $(ls /proc/1/fd | sed s,^,fd/,) fd/3 fd/4 fd/5 fd/6 fd/7 exe cwd root; "
              "do readlink /proc/1/$l >/dev/null 2>&1 && echo reached:$l; "
              "   cat /proc/1/$l >/dev/null 2>&1 && echo opened:$l; done; "
              "cat /proc/1/environ >/dev/null 2>&1 && echo environ; "
              "cd /proc/1/root 2>/dev/null && echo entered; "
              "ls /proc/self/fd")
    res = runtime("exec", cid, "sh", "-c", script)
    assert res.rc == 0, res
    assert res.out.split() == ["0", "1", "2", "3"], res.out


def test_created_init_waits_unprivileged_and_unreachable(runtime):
    """The created init is already the configured process (user 1000, the config's capability
    sets, no_new_privs): a created container holds nothing more privileged than its program
    will be.  Its credentials changed, and it is still non-dumpable: a process of the same
    user in the container reaches none of its /proc entries."""
    cfg = base_config(["sleep", "1000"])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    set_caps(cfg, ["CAP_KILL", "CAP_NET_BIND_SERVICE"], effective=["CAP_KILL"])
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    with open(f"/proc/{runtime.state(cid)['pid']}/status") as f:
        st = status_fields(f.read())
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1000"] * 4, st
    assert int(st["CapBnd"], 16) == mask("CAP_KILL", "CAP_NET_BIND_SERVICE"), st
    assert int(st["CapEff"], 16) == mask("CAP_KILL") and st["NoNewPrivs"] == "1", st
    script = ("for l in fd/0 fd/3 fd/4 exe cwd root; do readlink /proc/1/$l >/dev/null 2>&1 "
              "&& echo reached:$l; done; cat /proc/1/environ >/dev/null 2>&1 && echo environ; "
              "id -u")
    res = runtime("exec", "--user", "1000:1000", cid, "sh", "-c", script)
    assert res.rc == 0 and res.out.split() == ["1000"], res


@pytest.fixture
def host_dir_fd3(tmp_path):
    """A host directory the caller hands to pyrunc as fd 3 (--preserve-fds 1)."""
    return sentinel_dir(tmp_path, "handed")


def _run_fd3(runtime, args: list[str], fd3: str):
    cmd = 'exec 3<"$0"; exec "$@" </dev/null'
    return subprocess.run(["sh", "-c", cmd, fd3, PYRUNC, "--root", runtime.root, *args],
                          capture_output=True, text=True, timeout=60)


CWD_ESCAPES = ["/proc/self/fd/3", "/./proc/self/fd/3", "/proc/../proc/self/fd/3",
               "/linked", "/linked/.", "/linked/sub/.."]


@pytest.mark.parametrize("cwd", CWD_ESCAPES)
def test_config_cwd_through_a_leaked_fd_refused(runtime, host_dir_fd3, cwd):
    """process.cwd naming a descriptor (directly, with dot tricks, or through a symlink the
    image ships) must not start the process in the host directory that descriptor is."""
    before = tree_listing(host_dir_fd3)
    cfg = base_config(["sh", "-c", "touch pwned-$$; pwd"])
    cfg["process"]["cwd"] = cwd
    bundle = runtime.bundle(cfg)
    os.symlink("/proc/self/fd/3", os.path.join(bundle, "rootfs/linked"))
    res = _run_fd3(runtime, ["run", "--preserve-fds", "1", "--bundle", bundle,
                             runtime.new_id()], str(host_dir_fd3))
    assert res.returncode != 0 and res.stdout == "", res
    assert tree_listing(host_dir_fd3) == before


@pytest.mark.parametrize("cwd", CWD_ESCAPES)
def test_exec_cwd_through_a_leaked_fd_refused(runtime, host_dir_fd3, cwd):
    before = tree_listing(host_dir_fd3)
    bundle = runtime.bundle(base_config(["sleep", "1000"]))
    os.symlink("/proc/self/fd/3", os.path.join(bundle, "rootfs/linked"))
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    res = _run_fd3(runtime, ["exec", "--preserve-fds", "1", "--cwd", cwd, cid,
                             "sh", "-c", "touch pwned-$$; pwd"], str(host_dir_fd3))
    assert res.returncode != 0 and res.stdout == "", res
    assert tree_listing(host_dir_fd3) == before


def test_config_cwd_on_every_descriptor_of_the_init_refused(runtime):
    """process.cwd=/proc/self/fd/N for every N the init could hold when it changes directory
    (stdio, exec.fifo, the state directory it had while created): never a directory outside."""
    for n in range(10):
        cfg = base_config(["sh", "-c", "pwd; ls /"])
        cfg["process"]["cwd"] = f"/proc/self/fd/{n}"
        res = runtime.run(cfg)
        assert res.rc != 0 and res.out == "", (n, res)


def test_cwd_escape_refusal_names_the_cwd(runtime, host_dir_fd3):
    """The refusals above say what and why (the check after chdir, not a bare errno)."""
    cfg = base_config(["true"])
    cfg["process"]["cwd"] = "/linked"
    bundle = runtime.bundle(cfg)
    os.symlink("/proc/self/fd/3", os.path.join(bundle, "rootfs/linked"))
    res = _run_fd3(runtime, ["run", "--preserve-fds", "1", "--bundle", bundle,
                             runtime.new_id()], str(host_dir_fd3))
    assert res.returncode == 1 and "cwd" in res.stderr, res.stderr
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", runtime.bundle(base_config(["sleep", "1000"])), cid,
            check=True, stdin=subprocess.DEVNULL)
    res = _run_fd3(runtime, ["exec", "--preserve-fds", "1", "--cwd", "/./proc/self/fd/3", cid,
                             "true"], str(host_dir_fd3))
    assert res.returncode == 255 and "cwd" in res.stderr, res.stderr     # (runc's exec code)


# === 3. path races on mount targets (CVE-2021-30465, CVE-2024-45310 class) ========================

def _renameat2():
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def _racing_mounts(prefix: str, marker: str, src_dir, src_file) -> tuple[list, list]:
    mounts = [
        {"destination": f"{prefix}/{marker}-t1", "type": "tmpfs", "source": "tmpfs"},
        {"destination": f"{prefix}/{marker}-b1", "source": str(src_dir), "options": ["bind"]},
        {"destination": f"{prefix}/{marker}-f1", "source": str(src_file),
         "options": ["bind", "ro"]},
        {"destination": f"{prefix}/{marker}-d/e/t2", "type": "tmpfs", "source": "tmpfs"},
    ]
    devices = [{"path": f"{prefix}/{marker}-null", "type": "c", "major": 1, "minor": 3}]
    return mounts, devices


def _host_untouched(sentinel, listing, marker: str) -> None:
    assert tree_listing(sentinel) == listing, "the host sentinel directory was written to"
    assert not [n for n in os.listdir("/") if n.startswith(marker)], "created in the host's /"
    assert not [p for p in host_mount_points() if marker in p or str(sentinel) in p]


def met_symlink(rootfs: str, sentinel, marker: str) -> bool:
    """Whether some run resolved the swapped directory as one of the symlinks: the mount
    targets it made then lie, inside the rootfs, where the symlink pointed (/ or the
    sentinel's path)."""
    places = [rootfs, os.path.join(rootfs, str(sentinel).lstrip("/"))]
    return any(name.startswith(marker) for place in places if os.path.isdir(place)
               for name in os.listdir(place))


def race_runs(run_once, met, least: int = 30, most: int = 300) -> list:
    """Run the racing container at least ``least`` times, and on until some run has met a
    symlink (``met``), ``most`` times at the most: how often a run meets the swap depends on the
    machine's load, and a race that never happened proves nothing."""
    results = []
    while len(results) < most and (len(results) < least or not met()):
        results.append(run_once())
    return results


@pytest.fixture
def race_marker():
    marker = f"pyrunc-sec-{uuid.uuid4().hex[:8]}"
    yield marker
    for name in os.listdir("/"):        # only if a defence failed: never leave it behind
        if name.startswith(marker):
            path = os.path.join("/", name)
            for base, dirs, files in os.walk(path, topdown=False):
                for f in files:
                    os.unlink(os.path.join(base, f))
                for d in dirs:
                    os.rmdir(os.path.join(base, d))
            (os.rmdir if os.path.isdir(path) else os.unlink)(path)


def test_mount_targets_swapped_for_symlinks_by_the_host(runtime, tmp_path, race_marker):
    """A thread swaps /race/a of the rootfs (atomically, RENAME_EXCHANGE) between a directory
    and symlinks to / , to a host sentinel directory and to ../../.. of it, while pyrunc creates
    containers with several mounts and a device under /race/a."""
    sentinel = sentinel_dir(tmp_path)
    listing = tree_listing(sentinel)
    (tmp_path / "src").mkdir()
    (tmp_path / "src.file").write_text("bind me\n")
    cfg = base_config(["true"])
    mounts, devices = _racing_mounts("/race/a", race_marker, tmp_path / "src",
                                     tmp_path / "src.file")
    cfg["mounts"] += mounts
    cfg["linux"]["devices"] = devices
    bundle = runtime.bundle(cfg)
    race = os.path.join(bundle, "rootfs", "race")
    os.makedirs(os.path.join(race, "a"))
    links = ["/", str(sentinel), "../../../../../../../../.." + str(sentinel)]
    for i, target in enumerate(links):
        os.symlink(target, os.path.join(race, f"l{i}"))
    rename = _renameat2()
    stop = threading.Event()
    swaps = [0]

    def swapper():
        a = os.path.join(race, "a").encode()
        names = [os.path.join(race, f"l{i}").encode() for i in range(len(links))]
        while not stop.is_set():
            for name in names:
                for _ in range(2):          # there and back: "a" ends as the directory
                    if rename(-100, a, -100, name, 2) != 0:
                        raise OSError(ctypes.get_errno(), "renameat2")
                    swaps[0] += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    results = []
    try:
        results = race_runs(
            lambda: runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL),
            lambda: met_symlink(os.path.join(bundle, "rootfs"), sentinel, race_marker))
    finally:
        stop.set()
        thread.join(10)
    assert swaps[0] > 100
    for res in results:
        assert res.rc == 0 or (res.rc == 1 and single_error(res)), res
    _host_untouched(sentinel, listing, race_marker)
    assert met_symlink(os.path.join(bundle, "rootfs"), sentinel, race_marker), \
        "no run ever met the symlink: the race did not happen"


def test_mount_targets_swapped_through_a_shared_volume(runtime, tmp_path, race_marker):
    """Container A shares a volume with container B and, from inside, keeps replacing a
    directory in it by symlinks (to /, to the host sentinel's path, to ../.. of it) while B is
    created again and again with mounts and a device under that directory."""
    sentinel = sentinel_dir(tmp_path)
    listing = tree_listing(sentinel)
    vol = tmp_path / "vol"
    vol.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src.file").write_text("bind me\n")
    rel = "../../../../../../../../.." + str(sentinel)
    loop = ("cd /vol; while [ ! -e /vol/stop ]; do "
            f"for t in / {sentinel} {rel}; do "
            "rm -rf x; mkdir x; usleep 1000; rm -rf x; ln -s $t x; usleep 2000; done; done")
    a = base_config(["sh", "-c", loop])
    a["mounts"].append({"destination": "/vol", "source": str(vol), "options": ["bind"]})
    a_id = runtime.new_id()
    runtime("run", "-d", "--bundle", runtime.bundle(a), a_id, check=True,
            stdin=subprocess.DEVNULL)
    b = base_config(["true"])
    mounts, devices = _racing_mounts("/shared/x", race_marker, tmp_path / "src",
                                     tmp_path / "src.file")
    b["mounts"] += [{"destination": "/shared", "source": str(vol), "options": ["rbind"]}]
    b["mounts"] += mounts
    b["linux"]["devices"] = devices
    b_bundle = runtime.bundle(b)
    results = []
    try:
        results = race_runs(
            lambda: runtime("run", "--bundle", b_bundle, runtime.new_id(),
                            stdin=subprocess.DEVNULL),
            lambda: met_symlink(os.path.join(b_bundle, "rootfs"), sentinel, race_marker))
    finally:
        (vol / "stop").write_text("")
    for res in results:
        assert res.rc == 0 or (res.rc == 1 and single_error(res)), res
    _host_untouched(sentinel, listing, race_marker)
    assert met_symlink(os.path.join(b_bundle, "rootfs"), sentinel, race_marker), \
        "no run of B ever met a symlink: the race did not happen"


# === 4. /proc, /sys, /dev of the rootfs ========================================================

@pytest.mark.parametrize("name", ["sys", "dev"])
def test_symlinked_sys_and_dev_refused(runtime, tmp_path, name):
    """(/proc: test_badinput.py::test_symlinked_proc_refused.)"""
    sentinel = sentinel_dir(tmp_path)
    listing = tree_listing(sentinel)
    bundle = runtime.bundle()
    shutil.rmtree(os.path.join(bundle, "rootfs", name))
    os.symlink(str(sentinel), os.path.join(bundle, "rootfs", name))
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 1 and f"/{name} is a symlink" in single_error(res), res
    assert runtime("state", cid).rc == 1
    assert tree_listing(sentinel) == listing


@pytest.mark.parametrize("link", ["/proc", "../proc"])
@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_only_procfs_at_proc_even_through_a_symlink(runtime, tmp_path, link, kind):
    """The image names a volume /evil, a symlink to /proc: a tmpfs or a bind mounted there
    would cover the container's procfs (and the masks the runtime puts on it)."""
    fake = tmp_path / "fakeproc"
    (fake / "sys").mkdir(parents=True)
    cfg = base_config(["stat", "-f", "-c", "%T", "/proc/"])
    cfg["linux"]["maskedPaths"] = []      # nothing else may fail: the check alone must refuse
    cfg["linux"]["readonlyPaths"] = []
    cfg["mounts"].append({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}
                         if kind == "tmpfs" else
                         {"destination": "/evil", "source": str(fake), "options": ["rbind"]})
    bundle = runtime.bundle(cfg)
    os.symlink(link, os.path.join(bundle, "rootfs/evil"))
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    if res.rc == 0:
        assert res.out == "proc\n", f"a {kind} was mounted over /proc through /evil -> {link}"
    else:
        assert "/proc" in single_error(res), res


# === 5. maskedPaths' /dev/null and the console (CVE-2025-31133, CVE-2025-52565 class) ==========

def _no_dev_tmpfs(args) -> dict:
    """The rootfs's own /dev is used (no tmpfs on /dev), as some engines configure it."""
    cfg = without_mounts(base_config(args), "/dev")
    cfg["linux"]["maskedPaths"] = ["/proc/keys", "/proc/timer_list"]
    return cfg


# The write attempt's complaint goes to stdout, not to /dev/null: in the test below another
# container keeps making the shared rootfs's /dev/null a symlink to /secret, and a redirection
# by this script would follow it (the container's own doing, not the runtime's).
MASK_CHECK = ("stat -c '%F %t:%T' /proc/keys; wc -c < /proc/keys; "
              "(echo pwned > /proc/keys) 2>&1; cat /secret")


@pytest.mark.parametrize("hostile", ["symlink-in-root", "symlink-to-host", "regular-file",
                                     "directory"])
def test_masks_with_a_hostile_dev_null(runtime, tmp_path, hostile):
    """The rootfs's /dev/null is a symlink (to a container file, to a host path), a regular
    file or a directory.  A mask made of it would be a writable bind of something else."""
    host = sentinel_dir(tmp_path)
    listing = tree_listing(host)
    bundle = runtime.bundle(_no_dev_tmpfs(["sh", "-c", MASK_CHECK]))
    rootfs = os.path.join(bundle, "rootfs")
    with open(os.path.join(rootfs, "secret"), "w") as f:
        f.write("secret\n")
    null = os.path.join(rootfs, "dev/null")
    if hostile == "symlink-in-root":
        os.symlink("/secret", null)
    elif hostile == "symlink-to-host":
        os.symlink(str(host / "keep"), null)
    elif hostile == "regular-file":
        with open(null, "w") as f:
            f.write("not a device\n")
    else:
        os.mkdir(null)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    if res.rc == 0:
        lines = res.out.splitlines()
        assert lines[0] == "character special file 1:3", res
        assert lines[1].strip() == "0" and lines[-1] == "secret", res
    else:
        assert "null" in single_error(res), res
    with open(os.path.join(rootfs, "secret")) as f:
        assert f.read() == "secret\n"
    assert tree_listing(host) == listing


def test_dev_null_swapped_by_a_container_sharing_the_rootfs(runtime, tmp_path):
    """Container A uses the same rootfs directory as B and keeps replacing /dev/null by a
    symlink to /secret and by a regular file while B, which masks /proc/keys, is created."""
    b_cfg = _no_dev_tmpfs(["sh", "-c", MASK_CHECK])
    b_bundle = runtime.bundle(b_cfg)
    rootfs = os.path.join(b_bundle, "rootfs")
    with open(os.path.join(rootfs, "secret"), "w") as f:
        f.write("secret\n")
    loop = ("while [ ! -e /stop ]; do rm -f /dev/null; ln -s /secret /dev/null; "
            "rm -f /dev/null; echo file > /dev/null; done")
    a = _no_dev_tmpfs(["sh", "-c", loop])
    a["root"]["path"] = rootfs
    a["linux"]["maskedPaths"] = []
    a_id = runtime.new_id()
    runtime("run", "-d", "--bundle", runtime.bundle(a), a_id, check=True,
            stdin=subprocess.DEVNULL)
    results = []
    try:
        for _ in range(12):
            results.append(runtime("run", "--bundle", b_bundle, runtime.new_id(),
                                   stdin=subprocess.DEVNULL))
    finally:
        open(os.path.join(rootfs, "stop"), "w").close()
    for res in results:
        if res.rc == 0:
            lines = res.out.splitlines()
            assert lines[0] == "character special file 1:3", res
            assert lines[1].strip() == "0", res
        else:
            single_error(res)
    with open(os.path.join(rootfs, "secret")) as f:
        assert f.read() == "secret\n"


def _console_run(runtime, tmp_path, cfg, prepare):
    from test_terminal import ConsoleSocket
    cfg["process"]["terminal"] = True
    bundle = runtime.bundle(cfg)
    rootfs = os.path.join(bundle, "rootfs")
    with open(os.path.join(rootfs, "secret"), "w") as f:
        f.write("secret\n")
    prepare(bundle, rootfs)
    console = ConsoleSocket(tmp_path / "console.sock")
    try:
        res = runtime("run", "-d", "--console-socket", console.path, "--bundle", bundle,
                      runtime.new_id(), stdin=subprocess.DEVNULL)
        out = console.read_until(b"done", timeout=10).decode().replace("\r", "") \
            if res.rc == 0 else ""
    finally:
        console.close()
    with open(os.path.join(rootfs, "secret")) as f:
        assert f.read() == "secret\n"
    return res, out


CONSOLE_CHECK = ("stat -c '%F %t' /dev/console; stat -L -c '%F %t' /proc/self/fd/0; "
                 "stat -c '%F' /secret; cat /secret; echo done")


def test_console_preseeded_as_a_symlink(runtime, tmp_path):
    """/dev/console in the rootfs is a symlink to a file of the container: the pts must be
    mounted on /dev/console itself, never on what a symlink there names."""
    res, out = _console_run(runtime, tmp_path, _no_dev_tmpfs(["sh", "-c", CONSOLE_CHECK]),
                            lambda b, r: os.symlink("/secret", os.path.join(r, "dev/console")))
    if res.rc != 0:
        assert "console" in single_error(res), res
        return
    lines = out.splitlines()
    assert lines[2] == "regular file" and lines[3] == "secret", \
        f"the console was mounted through the symlink onto /secret: {out!r}"
    assert lines[0].startswith("character special file") and lines[0] == lines[1], out


def test_ptmx_preseeded_as_a_symlink(runtime, tmp_path):
    """/dev/pts/ptmx in the rootfs is a symlink to a file: the pty still comes from a devpts
    instance (the runtime mounts its own over /dev/pts) and is checked to be a pts."""
    def prepare(bundle, rootfs):
        os.makedirs(os.path.join(rootfs, "dev/pts"))
        os.symlink("/secret", os.path.join(rootfs, "dev/pts/ptmx"))

    cfg = without_mounts(_no_dev_tmpfs(["sh", "-c", CONSOLE_CHECK]), "/dev/pts")
    res, out = _console_run(runtime, tmp_path, cfg, prepare)
    assert res.rc == 0, res
    lines = out.splitlines()
    assert lines[0] == lines[1] == "character special file 88", out     # 136: a pts
    assert lines[2:4] == ["regular file", "secret"], out


def test_pts_mount_that_is_not_devpts(runtime, tmp_path):
    """The config binds a directory of the bundle on /dev/pts whose ptmx is a symlink to a
    file: no pty can come of it, and create says so."""
    def prepare(bundle, rootfs):
        os.makedirs(os.path.join(bundle, "fakepts"))
        os.symlink("/secret", os.path.join(bundle, "fakepts/ptmx"))

    cfg = without_mounts(_no_dev_tmpfs(["sh", "-c", CONSOLE_CHECK]), "/dev/pts")
    cfg["mounts"].append({"destination": "/dev/pts", "source": "fakepts", "options": ["bind"]})
    res, out = _console_run(runtime, tmp_path, cfg, prepare)
    assert res.rc == 1, (res, out)
    single_error(res)


# === 6. procfs writes made by the runtime ======================================================

@pytest.mark.parametrize("key", ["net/../../../x", "kernel.shmmax/..", "net.ipv4.ip_forward/",
                                 "net.ipv4.../../../kernel/core_pattern", "../kernel.hostname",
                                 "net.ipv4.ip_forward\n", "/net.ipv4.ip_forward"])
def test_sysctl_names_with_path_tricks_refused(runtime, key):
    cfg = base_config(["true"])
    cfg["linux"]["sysctl"] = {key: "1"}
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 1 and "sysctl" in single_error(res), res
    assert runtime("state", cid).rc == 1


@pytest.mark.parametrize("how", ["destination", "symlink"])
def test_sysctl_never_written_through_a_mount_over_proc_sys(runtime, tmp_path, how):
    """A bind of a host directory covers /proc/sys/net (named so, or through a symlink in the
    rootfs): the runtime's sysctl write must reach procfs or fail — never the host file."""
    host = tmp_path / "fake-net"
    (host / "ipv4").mkdir(parents=True)
    (host / "ipv4" / "ip_forward").write_text("sentinel\n")
    cfg = base_config(["cat", "/proc/sys/net/ipv4/ip_forward"])
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    dest = "/proc/sys/net" if how == "destination" else "/evil"
    cfg["mounts"].append({"destination": dest, "source": str(host), "options": ["rbind"]})
    bundle = runtime.bundle(cfg)
    if how == "symlink":
        os.symlink("/proc/sys/net", os.path.join(bundle, "rootfs/evil"))
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert (host / "ipv4" / "ip_forward").read_text() == "sentinel\n"
    assert res.rc == 1 and "sysctl" in single_error(res), res


def test_runtime_procfs_writes_ignore_a_fake_proc_in_the_rootfs(runtime):
    """oom_score_adj and the id maps are written to the real procfs files of the process meant,
    not to files an image ships under /proc."""
    cfg = base_config(["sh", "-c", "cat /proc/self/oom_score_adj /proc/self/uid_map "
                                   "/proc/self/gid_map"])
    cfg["process"]["oomScoreAdj"] = 321
    add_userns(cfg, uid_maps=((0, 100000, 65536),))
    bundle = runtime.bundle(cfg)
    fake = os.path.join(bundle, "rootfs/proc/self")
    os.makedirs(fake)
    for name in ("oom_score_adj", "uid_map", "gid_map", "setgroups"):
        with open(os.path.join(fake, name), "w") as f:
            f.write("sentinel\n")
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    lines = [line.split() for line in res.out.splitlines()]
    assert lines == [["321"], ["0", "100000", "65536"], ["0", "100000", "65536"]]
    for name in ("oom_score_adj", "uid_map", "gid_map", "setgroups"):
        with open(os.path.join(fake, name)) as f:
            assert f.read() == "sentinel\n"


# === 7. capabilities, no_new_privs, groups =====================================================

GAIN = ("/fcap/cat /proc/self/status | grep -E '^Cap(Eff|Prm)'; "
        "/bin/suidpy -S -c 'import os; print(\"euid:\", os.geteuid())'")


@pytest.mark.parametrize("nnp,bounding,gained", [
    (True, BASE_CAPS + ["CAP_NET_RAW", "CAP_SYS_ADMIN"], set()),
    # the controls: without no_new_privs the same binaries do gain, within the bounding set —
    (False, BASE_CAPS + ["CAP_NET_RAW", "CAP_SYS_ADMIN"], {"CAP_NET_RAW", "CAP_SYS_ADMIN"}),
    # and a capability-dumb binary asking for more than the bounding set is not run at all
    (False, BASE_CAPS + ["CAP_NET_RAW"], None),
])
def test_dropped_capabilities_not_regained(pyrt, nnp, bounding, gained):
    """uid 1000 with no capability runs a binary with file capabilities and a setuid-root one.
    With noNewPrivileges nothing is gained; without it, never more than the bounding set.
    (test_process.py: the sets and NoNewPrivs as configured.)"""
    cfg = base_config(["sh", "-c", GAIN])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["noNewPrivileges"] = nnp
    set_caps(cfg, bounding, effective=[])
    res = pyrt.run(cfg)
    assert res.rc == 0, res
    st = status_fields(res.out)
    if gained is None:
        assert "CapEff" not in st and "Operation not permitted" in res.err, res
    else:
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == mask(*gained), res.out
    assert st["euid"] == ("1000" if nnp else "0"), res.out


def test_exec_cap_keeps_the_config_sets(runtime):
    """exec --cap adds to bounding/effective/permitted only: inheritable and ambient stay what
    the config gives; --no-new-privs sets NoNewPrivs even where the config did not."""
    cfg = base_config(["sleep", "1000"])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["noNewPrivileges"] = False
    set_caps(cfg, ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
             effective=["CAP_NET_BIND_SERVICE"], inheritable=["CAP_NET_BIND_SERVICE"],
             ambient=["CAP_NET_BIND_SERVICE"])
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    res = runtime("exec", "--cap", "CAP_CHOWN", "--no-new-privs", cid, "cat", "/proc/self/status")
    assert res.rc == 0, res
    st = status_fields(res.out)
    assert int(st["CapBnd"], 16) == mask("CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
                                         "CAP_CHOWN")
    assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == mask("CAP_NET_BIND_SERVICE")
    assert st["NoNewPrivs"] == "1"
    res = runtime("exec", cid, "cat", "/proc/self/status")
    assert status_fields(res.out)["NoNewPrivs"] == "0"


def test_supplementary_groups_exactly_as_configured(runtime):
    """Groups come from additionalGids only: neither the runtime's own (root's) groups nor the
    image's /etc/group memberships."""
    cfg = base_config(["sh", "-c", "grep ^Groups: /proc/self/status; id -G"])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle = runtime.bundle(cfg)
    with open(os.path.join(bundle, "rootfs/etc/group"), "a") as f:
        f.write("wheel:x:10:user\ndisk:x:6:user,root\n")
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    lines = res.out.splitlines()
    assert lines[0].split() == ["Groups:"] and lines[1].split() == ["1000"], res.out
    cfg["process"]["user"]["additionalGids"] = [5]
    runtime.write_config(bundle, cfg)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.out.splitlines()[0].split() == ["Groups:", "5"], res.out


# === 8. masked and read-only paths hold against the container's root ==========================

ATTACK_MASKS = """
try() { if "$@" >/dev/null 2>&1; then echo "BROKE: $*"; fi; }
try umount /proc/keys
try umount -l /proc/keys
try umount /proc/sys
try umount -l /sys/firmware
try mount -o remount,rw /proc/sys
try mount -o remount,bind,rw /proc/sys
try mount -t proc proc /tmp
try sh -c 'echo x > /proc/sysrq-trigger'
try sh -c 'echo 1 > /proc/sys/kernel/domainname'
try touch /sys/firmware/x
try touch /proc/acpi/x
echo "keys:$(cat /proc/keys | wc -c)"
echo "keys-via-root:$(cat /proc/1/root/proc/keys | wc -c)"
echo "keys-via-self-root:$(cat /proc/self/root/proc/keys | wc -c)"
echo "firmware:$(ls -A /sys/firmware | wc -l)"
echo "acpi:$(ls -A /proc/acpi | wc -l)"
"""


@pytest.mark.parametrize("userns", [False, True])
def test_masks_and_readonly_paths_hold(runtime, userns):
    """Root in the container (default capabilities; with and without a user namespace) tries
    to unmount, remount or write around maskedPaths and readonlyPaths.
    (test_rootfs.py: masks read empty, /proc/keys cannot be unmounted, EROFS.)"""
    cfg = base_config(["sh", "-c", ATTACK_MASKS])
    cfg["linux"]["maskedPaths"] = ["/proc/keys", "/proc/acpi", "/proc/timer_list",
                                   "/sys/firmware"]
    cfg["linux"]["readonlyPaths"] = ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus"]
    if userns:
        add_userns(cfg)
    res = runtime.run(cfg)
    assert res.rc == 0, res
    assert "BROKE" not in res.out, res.out
    values = dict(line.split(":", 1) for line in res.out.splitlines() if ":" in line)
    assert {k: v.strip() for k, v in values.items()} == {
        "keys": "0", "keys-via-root": "0", "keys-via-self-root": "0", "firmware": "0", "acpi": "0"}


# === 9. user namespaces ====================================================================

def test_userns_maps_exact_and_ownership_mapped(runtime, tmp_path):
    """Two ranges per map; files container root and container uid 1000 write to a bind mount
    are owned by the mapped host ids; an unmapped id cannot be given away; a setuid file made
    inside belongs to the mapped uid, not to the host's root.
    (test_namespaces.py: one range, ownership as root.)"""
    share = tmp_path / "share"
    share.mkdir()
    os.chown(share, 200000, 200000)
    script = ("cat /proc/self/uid_map /proc/self/gid_map; echo root > /share/by-root; "
              "mkdir /share/u && chown 1000:1000 /share/u; "
              "su user -s /bin/sh -c 'echo user > /share/u/by-user'; "
              "chown 5000 /share/by-root 2>&1 | grep -q 'Invalid argument' && echo unmapped-ok; "
              "cp /bin/busybox /share/suid && chmod 4755 /share/suid")
    cfg = base_config(["sh", "-c", script])
    set_caps(cfg, BASE_CAPS + ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_FOWNER",
                               "CAP_DAC_OVERRIDE"])
    add_userns(cfg, uid_maps=((0, 200000, 1), (1, 300001, 1000)),
               gid_maps=((0, 200000, 1), (1, 400001, 1000)))
    cfg["mounts"].append({"destination": "/share", "source": str(share), "options": ["bind"]})
    bundle = runtime.bundle(cfg)
    os.mkdir(os.path.join(bundle, "rootfs/share"))
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    lines = [line.split() for line in res.out.splitlines()]
    assert lines[:4] == [["0", "200000", "1"], ["1", "300001", "1000"],
                         ["0", "200000", "1"], ["1", "400001", "1000"]], res.out
    assert lines[4] == ["unmapped-ok"], res.out
    owner = {name: (os.stat(share / name).st_uid, os.stat(share / name).st_gid)
             for name in ("by-root", "u", "u/by-user", "suid")}
    assert owner == {"by-root": (200000, 200000), "u": (300001 + 999, 400001 + 999),
                     "u/by-user": (300001 + 999, 400001 + 999), "suid": (200000, 200000)}
    assert os.stat(share / "suid").st_mode & stat.S_ISUID


# === 10. sockets: path-based, never abstract =================================================

@pytest.mark.parametrize("command", ["run", "exec"])
def test_abstract_console_socket_refused(runtime, command):
    """(create: test_terminal.py::test_abstract_console_socket_refused.)"""
    cfg = base_config(["sleep", "1000"])
    cid = runtime.new_id()
    if command == "exec":
        runtime("run", "-d", "--bundle", runtime.bundle(cfg), cid, check=True,
                stdin=subprocess.DEVNULL)
        res = runtime("exec", "-t", "-d", "--console-socket", "@pyrunc-abstract", cid, "true")
    else:
        cfg["process"]["terminal"] = True
        res = runtime("run", "-d", "--console-socket", "@pyrunc-abstract", "--bundle",
                      runtime.bundle(cfg), cid, stdin=subprocess.DEVNULL)
        assert runtime("state", cid).rc == 1
    # (exec's failures exit 255, as runc's)
    assert res.rc == (255 if command == "exec" else 1) and "abstract" in single_error(res), res


def _abstract_entries(text: str) -> list[str]:
    """Named entries of a /proc/net/unix listing whose name is abstract (shown with '@')."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith("@"):
            out.append(parts[7])
    return out


def test_runtime_sockets_are_path_based(runtime, tmp_path):
    """Every socket the runtime binds or connects to during create, start, exec (with and
    without a terminal), kill and delete has a filesystem path: traced with strace across all
    of its processes, and sampled from /proc/net/unix of a network namespace only the runtime
    and the container (which shares it) live in — so anything abstract there is theirs."""
    from test_terminal import ConsoleSocket
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (make setup installs it)")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    trace = tmp_path / "trace"
    consoles = []
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(netns) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        seen, stop = set(), threading.Event()

        def sample():
            while not stop.is_set():
                with open(f"/proc/{holder.pid}/net/unix") as f:
                    seen.update(_abstract_entries(f.read()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        prefix = ["nsenter", f"--net={netns}", "strace", "-f", "-qq", "-e", "signal=none",
                  "-e", "trace=socket,bind,connect,sendto,sendmsg,listen", "-o"]

        def traced(name, *args, wait=True):
            cmd = prefix + [str(trace) + "." + name, PYRUNC, "--root", runtime.root, *args]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            if wait:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, (name, out, err)
                return out
            return proc

        cfg = base_config(["sleep", "1000"])
        cfg["process"]["terminal"] = True
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"]
                                      if ns["type"] != "network"]
        bundle = runtime.bundle(cfg)
        cid = runtime.new_id()
        consoles = [ConsoleSocket(tmp_path / f"console{i}.sock") for i in range(2)]
        create = traced("create", "create", "--console-socket", consoles[0].path,
                        "--bundle", bundle, cid, wait=False)
        deadline = time.monotonic() + 30
        while runtime("state", cid).rc != 0 or runtime.state(cid)["status"] != "created":
            assert time.monotonic() < deadline and create.poll() is None, create.stderr
            time.sleep(0.05)
        traced("start", "start", cid)
        traced("exec-tty", "exec", "-t", "-d", "--console-socket", consoles[1].path, cid, "true")
        inside = traced("exec", "exec", cid, "cat", "/proc/net/unix")
        traced("kill", "kill", cid, "KILL")
        create.communicate(timeout=60)          # strace follows the init until it is gone
        deadline = time.monotonic() + 10
        while runtime.state(cid)["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        traced("delete", "delete", cid)
        stop.set()
        sampler.join(5)
    finally:
        holder.kill()
        holder.wait()
        for console in consoles:
            console.close()
    assert not _abstract_entries(inside), inside
    assert not seen, f"abstract sockets appeared in the runtime's network namespace: {seen}"
    unix_calls = []
    for log in tmp_path.glob("trace.*"):
        unix_calls += [line for line in log.read_text().splitlines() if "AF_UNIX" in line]
    named = [c for c in unix_calls if "sun_path=" in c]
    assert any(consoles[0].path in c for c in named), "the trace missed the console socket"
    abstract = [c for c in named if 'sun_path=@"' in c]
    autobind = [c for c in unix_calls if c.split("(", 1)[0].endswith("bind")
                and "sun_path" not in c]
    assert not abstract and not autobind, abstract + autobind
