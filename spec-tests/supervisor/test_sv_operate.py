"""Operating the supervisor like a daemon operators know (issue 19): shim process titles,
``--version`` everywhere, the config file, log levels, Prometheus metrics."""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tomllib

import grpc
import pytest
from google.protobuf import empty_pb2

from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
from supervisor.gen.containerd.types import descriptor_pb2
from supervisor import __version__, version
from sv_harness import (CGROUP_ROOT, PYTHON, ROOT, code_of, create, destroy, make_spec,
                        pid_alive, wait_for)

BIN = os.path.join(ROOT, ".venv", "bin")


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def ps_args() -> dict[int, str]:
    """``ps -eo pid,args`` as operators read it."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                         check=True).stdout
    return {int(pid): args for pid, _, args in (ln.strip().partition(" ")
                                                for ln in out.splitlines())}


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


# -- process titles --------------------------------------------------------------------------------

def test_ps_names_every_shim_and_its_container(sv_own, sv_rootfs):
    sv = sv_own
    other_ns = sv.ns + "b"
    started = [(sv.ns, sv.id("title")), (sv.ns, sv.id("title")), (other_ns, sv.id("title"))]
    for ns, cid in started:
        sv.ctr("run", "-d", "--rootfs", sv_rootfs, cid, "sleep", "1000", namespace=ns)
    # every container's shim, the zygote and the spare (started in the background)
    wait_for(lambda: len(sv.shim_pids()) == len(started) + 2, 60, what="shims, zygote, spare")
    shims = sv.shim_pids()
    titles = ps_args()
    want = {f"pyrunc-shim ns={ns} id={cid}" for ns, cid in started}
    assert sorted(titles[p] for p in shims) == sorted(want | {"pyrunc-shim zygote",
                                                              "pyrunc-shim spare"}), titles
    for ns, cid in started:
        # the titled shim is the one that owns the container: its init's parent
        init = int(sv.ctr("task", "ls", namespace=ns).stdout.split(cid)[1].split()[0])
        assert titles[ppid(init)] == f"pyrunc-shim ns={ns} id={cid}"
        # pgrep finds it by its title
        found = subprocess.run(["pgrep", "-f", f"^pyrunc-shim ns={ns} id={cid}$"],
                               capture_output=True, text=True).stdout.split()
        assert [int(p) for p in found] == [ppid(init)]
    # the process name (what top shows, pgrep matches without -f) says pyrunc-shim as well
    for pid in shims:
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().startswith("pyrunc-shim"), pid
    # a deleted container's shim is gone, with its title
    ns, cid = started[0]
    gone = [p for p in shims if titles[p] == f"pyrunc-shim ns={ns} id={cid}"][0]
    sv.ctr("task", "kill", "-s", "KILL", cid, namespace=ns)
    wait_for(lambda: "STOPPED" in sv.ctr("task", "ls", namespace=ns).stdout, 60,
             what="task stopped")
    sv.ctr("task", "delete", cid, namespace=ns)
    sv.ctr("container", "delete", cid, namespace=ns)
    wait_for(lambda: not pid_alive(gone), 60, what="the deleted container's shim exits")
    for ns, cid in started[1:]:
        destroy(sv, sv.client(ns), cid)


# -- versions -----------------------------------------------------------------------------------------

def git_commit() -> str | None:
    """The checkout's commit by git itself (None without git: then only consistency is checked)."""
    git = shutil.which("git")
    if git is None:
        return None
    res = subprocess.run([git, "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def test_every_command_prints_its_version_and_the_servers_revision(sv):
    revision = sv.client().version.Version(empty_pb2.Empty()).revision
    expected = git_commit()
    if expected is not None:
        assert revision == expected
    assert revision
    for prog in ("pyrunc-supervisor", "pyrunc-shim", "pyrunc-ctl"):
        res = subprocess.run([os.path.join(BIN, prog), "--version"], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res
        assert res.stdout == f"{prog} {__version__} {revision}\n"
    res = subprocess.run([os.path.join(BIN, "pyrunc"), "--version"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and f"\ncommit: {revision}\n" in res.stdout, res
    # what a containerd client shows
    out = sv.ctr("version").stdout
    assert f"Revision: {revision}" in out.split("Server:")[1]


# -- the config file --------------------------------------------------------------------------------

def daemon_cmd(base: str, *args: str) -> list[str]:
    """A daemon command line with private directories below ``base``."""
    return [PYTHON, "-m", "supervisor.daemon", "--address", os.path.join(base, "sv.sock"),
            "--state", os.path.join(base, "state"), "--root", os.path.join(base, "root"),
            *args]


def run_daemon_cmd(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          stdin=subprocess.DEVNULL, **kw)


def test_config_default_is_the_configuration_without_a_file(tmp_path):
    """``config default`` is valid TOML naming every key; given back as the file, it is what
    ``config dump`` shows with no file at all."""
    from supervisor.config import DEFAULT_PATH, KEYS
    if os.path.exists(DEFAULT_PATH):
        pytest.skip(f"this host has a config file at {DEFAULT_PATH}")
    default = run_daemon_cmd([PYTHON, "-m", "supervisor.daemon", "config", "default"])
    assert default.returncode == 0, default
    doc = tomllib.loads(default.stdout)
    for key in KEYS:
        table = doc
        for part in key.name.split(".")[:-1]:
            table = table[part]
        assert key.leaf in table, key.name
    assert default.stdout.count("\n# ") >= len(KEYS) - 1  # every key explained
    path = tmp_path / "default.toml"
    path.write_text(default.stdout)
    no_file = run_daemon_cmd([PYTHON, "-m", "supervisor.daemon", "config", "dump"])
    from_file = run_daemon_cmd([PYTHON, "-m", "supervisor.daemon", "--config", str(path),
                                "config", "dump"])
    assert no_file.returncode == 0 and from_file.returncode == 0
    assert no_file.stdout == from_file.stdout
    assert tomllib.loads(no_file.stdout) == {k: v for k, v in doc.items()}


def test_flags_and_environment_override_the_file(tmp_path):
    path = tmp_path / "sv.toml"
    path.write_text('[grpc]\naddress = "/tmp/from-file.sock"\n[runtime]\nbinary = "runc"\n'
                    '[debug]\nlevel = "warn"\n[registry]\ninsecure = ["127.0.0.1:5000"]\n'
                    '[registry.mirrors]\n"docker.io" = ["http://127.0.0.1:5000"]\n')
    res = run_daemon_cmd([PYTHON, "-m", "supervisor.daemon", "--config", str(path),
                          "--log-level", "error", "config", "dump"],
                         env=dict(os.environ, PYRUNC_SUPERVISOR_RUNTIME="crun"))
    assert res.returncode == 0, res
    dump = tomllib.loads(res.stdout)
    assert dump["grpc"]["address"] == "/tmp/from-file.sock"     # the file
    assert dump["runtime"]["binary"] == "crun"                  # the environment beats the file
    assert dump["debug"]["level"] == "error"                    # the flag beats both
    assert dump["registry"] == {"insecure": ["127.0.0.1:5000"],
                                "mirrors": {"docker.io": ["http://127.0.0.1:5000"]}}


BAD_CONFIGS = [
    ('[grpc]\nadress = "/x.sock"\n', "grpc.adress: unknown key"),
    ('[nonsense]\nx = 1\n', "nonsense: unknown key"),
    ('grpc = "/x.sock"\n', "grpc: expected a section"),
    ('[debug]\nlevel = "loud"\n', "debug.level: 'loud' is not one of"),
    ('[debug]\nlevel = 3\n', "debug.level: expected a string"),
    ('[metrics]\naddress = "0.0.0.0:9100"\n', "metrics.address: '0.0.0.0' is not a loopback"),
    ('[metrics]\naddress = "127.0.0.1:http"\n', "metrics.address: '127.0.0.1:http' is not"),
    ('[gc]\ninterval = "soon"\n', "gc.interval: expected a number of seconds"),
    ('[network]\ndefault_subnet = "10.88.0.1/16"\n', "network.default_subnet: "),
    ('[registry.mirrors]\n"docker.io" = ["ftp://m"]\n', "registry.mirrors.'docker.io': 'ftp://m'"),
    ('[cni]\npath = "/usr/lib/cni"\n', "cni.path: expected an array"),
    ('version = 2\n', "version: format version 2 is not supported"),
    (f'[grpc]\naddress = "/{"x" * 120}"\n', "grpc.address: socket path too long"),
    (f'[grpc]\naddress = "/{"x" * 105}"\n', "grpc.address: socket path too long (106 bytes, "
     "at most 105)"),   # grpc cannot bind 106 or 107 bytes
    ('[grpc\n', "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_a_bad_config_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "sv.toml"
    path.write_text(text)
    base = str(tmp_path / "d")
    res = run_daemon_cmd(daemon_cmd(base, "--config", str(path)))
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert res.stderr.startswith(f"pyrunc-supervisor: config {path}: ")
    assert not os.path.exists(base)   # the daemon did not start: nothing was created


def test_bad_flags_and_a_missing_file_are_refused(tmp_path):
    base = str(tmp_path / "d")
    for args, message in ((["--log-level", "verbose"], "--log-level: debug.level: 'verbose'"),
                          (["--metrics-address", "10.1.2.3:9100"], "--metrics-address: "),
                          (["--cni-timeout", "never"], "--cni-timeout: cni.timeout: 'never'"),
                          (["--config", str(tmp_path / "absent.toml")], "no such file")):
        res = run_daemon_cmd(daemon_cmd(base, *args))
        assert res.returncode == 2 and message in res.stderr, (args, res)
        assert res.stderr.count("\n") == 1
        assert not os.path.exists(base)


# -- logs ----------------------------------------------------------------------------------------------

def log_lines(sv) -> list[dict]:
    """The daemon's log, every line a JSON object (asserted)."""
    with open(sv.log_path) as f:
        return [json.loads(line) for line in f.read().splitlines()]


def wait_log(sv, pred, what: str, start: int = 0) -> dict:
    """The first line (after line ``start``) for which ``pred`` holds, waiting for it."""
    def find():
        for line in log_lines(sv)[start:]:
            if pred(line):
                return line
        return None
    return wait_for(find, 60, what=f"log line: {what}")


@pytest.fixture
def sv_json(sv_rootfs, tmp_path):
    """A daemon configured by a file: JSON log at info, metrics on a unix socket; the file's
    own address is overridden by the harness's --address flag."""
    from sv_harness import Supervisor
    conf = tmp_path / "supervisor.toml"
    daemon = Supervisor(args=["--config", str(conf)])
    metrics = os.path.join(daemon.base, "metrics.sock")
    daemon.conf, daemon.metrics = conf, metrics
    daemon.write_conf = lambda level, extra="": conf.write_text(
        f'[grpc]\naddress = "{daemon.base}/not-this.sock"\n[debug]\nlevel = "{level}"\n'
        f'format = "json"\n[metrics]\naddress = "unix:{metrics}"\n{extra}')
    daemon.write_conf("info")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


def test_json_log_lines_name_namespace_and_container(sv_json, sv_rootfs):
    sv = sv_json
    assert not os.path.exists(os.path.join(sv.base, "not-this.sock"))  # the flag won
    started = wait_log(sv, lambda ln: ln["msg"] == "serving", "serving")
    assert started["level"] == "info" and started["address"] == sv.sock
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "exit 7"])
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=60) == 7
    exit_line = wait_log(sv, lambda ln: ln.get("topic") == "/tasks/exit" and ln.get("id") == cid,
                         "task exit")
    assert exit_line["level"] == "info" and exit_line["ns"] == sv.ns
    assert exit_line["exit_status"] == 7 and exit_line["pid"] > 0
    for topic in ("/containers/create", "/tasks/create", "/tasks/start"):
        wait_log(sv, lambda ln: ln.get("topic") == topic and ln.get("id") == cid, topic)
    # at info, requests are not logged
    assert not [ln for ln in log_lines(sv) if ln["msg"] == "request"]
    destroy(sv, client, cid)
    wait_log(sv, lambda ln: ln.get("topic") == "/tasks/delete" and ln.get("id") == cid, "delete")


def test_text_log_is_key_value_lines(sv_own, sv_rootfs):
    """The default format: logrus-style key=value, values with spaces quoted."""
    sv = sv_own
    cid = sv.id("text")
    sv.ctr("run", "--rm", "--rootfs", sv_rootfs, cid, "/bin/true")
    want = f"msg=event topic=/tasks/exit ns={sv.ns} id={cid} "

    def lines():
        with open(sv.log_path) as f:
            return f.read().splitlines()
    line = wait_for(lambda: [ln for ln in lines() if want in ln], 60, what="the exit's line")[0]
    assert line.startswith("time=") and " level=info " in line and "exit_status=0" in line
    serving = [ln for ln in lines() if " msg=serving " in ln]
    assert serving and f"address={sv.sock}" in serving[0]


def test_sighup_rereads_the_log_level(sv_json, sv_rootfs):
    sv = sv_json
    client = sv.client()
    client.containers.List(cpb.ListContainersRequest())
    # the request's line, if any, is written before the reply is sent: none at info
    assert not [ln for ln in log_lines(sv) if ln["msg"] == "request"]
    sv.write_conf("debug")
    mark = len(log_lines(sv))
    sv.proc.send_signal(signal.SIGHUP)
    reloaded = wait_log(sv, lambda ln: ln["msg"] == "reloaded", "reloaded", mark)
    assert reloaded["level"] == "info" and reloaded["log_level"] == "debug"
    code, _ = code_of(client.containers.Get, cpb.GetContainerRequest(id="no-such"))
    assert code == grpc.StatusCode.NOT_FOUND
    line = wait_log(sv, lambda ln: ln["msg"] == "request" and ln.get("id") == "no-such",
                    "request line", mark)
    assert line["level"] == "debug" and line["ns"] == sv.ns and line["code"] == "NotFound"
    assert line["method"] == "/containerd.services.containers.v1.Containers/Get"
    # a key that needs a restart is named; a broken file is refused and the daemon goes on
    sv.write_conf("debug", '[gc]\ninterval = 5\n')
    mark = len(log_lines(sv))
    sv.proc.send_signal(signal.SIGHUP)
    warned = wait_log(sv, lambda ln: ln["msg"].startswith("reload: these keys"), "keys", mark)
    assert warned["level"] == "warn" and warned["keys"] == "gc.interval"
    sv.conf.write_text("[debug]\nlevel = 'chatty'\n")
    mark = len(log_lines(sv))
    sv.proc.send_signal(signal.SIGHUP)
    refused = wait_log(sv, lambda ln: ln["msg"].startswith("reload: configuration refused"),
                       "refused", mark)
    assert refused["level"] == "error" and "debug.level" in refused["error"]
    client.containers.List(cpb.ListContainersRequest())
    assert sv.proc.poll() is None


# -- metrics -----------------------------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.socket_path)


def http_get(conn, path="/metrics", method="GET") -> tuple[int, str, str]:
    try:
        conn.request(method, path)
        res = conn.getresponse()
        return res.status, res.getheader("Content-Type", ""), res.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple, float]:
    """{(name, (label, value)...): value} of an exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_metrics_on_a_unix_socket_count_containers_and_requests(sv_json, sv_rootfs):
    sv = sv_json
    assert os.stat(sv.metrics).st_mode & 0o777 == 0o600
    client = sv.client()
    cids = [create(sv, client, sv_rootfs, ["sleep", "1000"]) for _ in range(2)]
    client.tasks.Start(tpb.StartRequest(container_id=cids[0]))
    code_of(client.containers.Get, cpb.GetContainerRequest(id="no-such"))
    sv.ctr("snapshots", "prepare", "metrics-snap")
    sv.ctr("content", "ingest", "metrics-blob", input="twelve bytes")
    images = images_pb2_grpc.ImagesStub(client.channel)
    md = [("containerd-namespace", sv.ns)]
    for name in ("example.com/metrics:1", "example.com/metrics:2"):
        images.Create(images_pb2.CreateImageRequest(image=images_pb2.Image(
            name=name, target=descriptor_pb2.Descriptor(
                media_type="application/vnd.oci.image.index.v1+json",
                digest="sha256:" + "b" * 64, size=12))), metadata=md)
    status, ctype, body = http_get(UnixHTTPConnection(sv.metrics))
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    found = samples(body)
    assert value(found, "pyrunc_containers", namespace=sv.ns) == 2
    assert value(found, "pyrunc_tasks", namespace=sv.ns, status="running") == 1
    assert value(found, "pyrunc_tasks", namespace=sv.ns, status="created") == 1
    assert value(found, "pyrunc_shims", role="container") == 2
    assert value(found, "pyrunc_shims", role="zygote") == 1
    assert value(found, "pyrunc_snapshots", namespace=sv.ns) == 1
    assert value(found, "pyrunc_images", namespace=sv.ns) == 2
    assert value(found, "pyrunc_content_blobs", namespace=sv.ns) == 1
    assert value(found, "pyrunc_content_bytes", namespace=sv.ns) == 12
    get = dict(grpc_type="unary", grpc_service="containerd.services.containers.v1.Containers",
               grpc_method="Get")
    assert value(found, "grpc_server_handled_total", grpc_code="NotFound", **get) == 1, \
        [k for k in found if k[0].startswith("grpc")]
    assert value(found, "grpc_server_handling_seconds_count", **get) >= 1
    create_ = dict(get, grpc_service="containerd.services.tasks.v1.Tasks", grpc_method="Create")
    assert value(found, "grpc_server_handled_total", grpc_code="OK", **create_) == 2
    assert value(found, "pyrunc_build_info", version=__version__,
                 revision=version.revision()) == 1
    assert http_get(UnixHTTPConnection(sv.metrics), "/other")[0] == 404
    assert http_get(UnixHTTPConnection(sv.metrics), method="POST")[0] == 405
    for cid in cids:
        destroy(sv, client, cid)
    sv.ctr("snapshots", "rm", "metrics-snap")
    for name in ("example.com/metrics:1", "example.com/metrics:2"):
        images.Delete(images_pb2.DeleteImageRequest(name=name), metadata=md)
    found = samples(http_get(UnixHTTPConnection(sv.metrics))[2])
    assert value(found, "pyrunc_containers", namespace=sv.ns) is None
    assert value(found, "pyrunc_snapshots", namespace=sv.ns) is None
    assert value(found, "pyrunc_images", namespace=sv.ns) is None
    assert value(found, "pyrunc_shims", role="container") == 0


class NetNS:
    """A network namespace of the test's own (/run/netns/NAME), loopback up."""

    def __init__(self):
        self.name = "svtop-" + secrets.token_hex(4)
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd, input=None):
        res = subprocess.run(["nsenter", f"--net={self.path}", *cmd], capture_output=True,
                             text=True, timeout=60, input=input)
        assert res.returncode == 0, res
        return res.stdout

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


SCRAPE = """
import http.client, json, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=60)
conn.request("GET", "/metrics")
res = conn.getresponse()
print(json.dumps([res.status, res.getheader("Content-Type"), res.read().decode()]))
"""


@pytest.fixture
def sv_tcp_metrics(sv_rootfs):
    """A daemon in a network namespace of the test's, its metrics on 127.0.0.1:9338 there."""
    from sv_harness import Supervisor
    if not (shutil.which("ip") and shutil.which("nsenter")):
        pytest.skip("ip and nsenter are needed for a private network namespace")
    netns = NetNS()
    daemon = Supervisor(args=["--metrics-address", "127.0.0.1:9338"])
    daemon.netns = netns
    start = daemon.start

    def start_in_netns():
        real = subprocess.Popen

        def popen(cmd, **kw):
            return real(["nsenter", f"--net={netns.path}", *cmd], **kw)
        subprocess.Popen = popen
        try:
            return start()
        finally:
            subprocess.Popen = real
    try:
        start_in_netns()
        yield daemon
    finally:
        try:
            daemon.cleanup()
        finally:
            netns.delete()


def cgroup_file_values(sv, cid: str) -> dict[str, float]:
    """The container's usage as its cgroup files say (v1 or v2), for comparison."""
    def read(path):
        with open(path) as f:
            return f.read()
    v1 = os.path.join(CGROUP_ROOT, "memory", sv.ns, cid)
    if os.path.isdir(v1):
        d = {c: os.path.join(CGROUP_ROOT, c, sv.ns, cid) for c in ("cpuacct", "memory", "pids",
                                                                  "blkio")}
        io = {"Read": 0, "Write": 0}
        for line in read(os.path.join(d["blkio"], "blkio.throttle.io_service_bytes")).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in io:
                io[parts[1]] += int(parts[2])
        return {"cpu": int(read(os.path.join(d["cpuacct"], "cpuacct.usage"))) / 1e9,
                "memory": int(read(os.path.join(d["memory"], "memory.usage_in_bytes"))),
                "memory_limit": int(read(os.path.join(d["memory"], "memory.limit_in_bytes"))),
                "pids": int(read(os.path.join(d["pids"], "pids.current"))),
                "pids_limit": int(read(os.path.join(d["pids"], "pids.max"))),
                "io_read": io["Read"], "io_write": io["Write"]}
    d = os.path.join(CGROUP_ROOT, sv.ns, cid)
    cpu = dict(line.split() for line in read(os.path.join(d, "cpu.stat")).splitlines())
    io = {"rbytes": 0, "wbytes": 0}
    for line in read(os.path.join(d, "io.stat")).splitlines():
        for item in line.split()[1:]:
            k, _, v = item.partition("=")
            if k in io:
                io[k] += int(v)
    return {"cpu": int(cpu["usage_usec"]) / 1e6,
            "memory": int(read(os.path.join(d, "memory.current"))),
            "memory_limit": int(read(os.path.join(d, "memory.max"))),
            "pids": int(read(os.path.join(d, "pids.current"))),
            "pids_limit": int(read(os.path.join(d, "pids.max"))),
            "io_read": io["rbytes"], "io_write": io["wbytes"]}


def test_metrics_scraped_over_http_match_the_cgroup_files(sv_tcp_metrics, sv_rootfs):
    sv = sv_tcp_metrics
    client = sv.client()
    cid = sv.id("metrics")
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/sh", "-c",
                                          "dd if=/dev/zero of=/tmp/m-$$ bs=1M count=8 "
                                          "2>/dev/null; sleep 1000 & sleep 1000 & wait"])
    spec["linux"]["resources"] = {"memory": {"limit": 96 << 20}, "pids": {"limit": 37}}
    client.create_container(cid, spec)
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid))
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    # both sleeps are running (init + 2 children) when the container is frozen: the cgroup's
    # numbers then stay put while the files and the endpoint are read
    wait_for(lambda: len(client.tasks.ListPids(tpb.ListPidsRequest(container_id=cid))
                         .processes) == 3, 60, what="the container's three processes")
    client.tasks.Pause(tpb.PauseTaskRequest(container_id=cid))
    before = cgroup_file_values(sv, cid)
    status, ctype, body = json.loads(sv.netns.run(PYTHON, "-c", SCRAPE, "127.0.0.1", "9338"))
    after = cgroup_file_values(sv, cid)
    assert status == 200 and ctype.startswith("text/plain")
    found = samples(body)
    labels = dict(namespace=sv.ns, container_id=cid)

    def between(metric, key):
        got = value(found, metric, **labels)
        lo, hi = sorted((before[key], after[key]))
        assert got is not None and lo <= got <= hi, (metric, got, before[key], after[key])

    between("pyrunc_container_cpu_usage_seconds_total", "cpu")
    between("pyrunc_container_memory_usage_bytes", "memory")
    between("pyrunc_container_io_read_bytes_total", "io_read")
    between("pyrunc_container_io_write_bytes_total", "io_write")
    assert value(found, "pyrunc_container_pids", **labels) == before["pids"] == 3
    assert value(found, "pyrunc_container_memory_limit_bytes", **labels) == 96 << 20
    assert value(found, "pyrunc_container_pids_limit", **labels) == 37 == before["pids_limit"]
    assert before["memory"] >= 8 << 20   # the 8 MiB written to its tmpfs-less /tmp is cached
    assert value(found, "pyrunc_tasks", namespace=sv.ns, status="paused") == 1
    client.tasks.Resume(tpb.ResumeTaskRequest(container_id=cid))
    destroy(sv, client, cid)


def test_a_shims_log_line_reaches_the_daemons_log_with_the_container(sv_json, sv_rootfs):
    """A shim's unexpected error (here: a malformed request sent straight to its socket) is
    logged by the shim and copied into the daemon's log, naming the container."""
    from supervisor import wire
    sv = sv_json
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["sleep", "1000"])
    with open(os.path.join(sv.state, "tasks", sv.ns, cid, "task.json")) as f:
        shim_socket = json.load(f)["socket"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    try:
        s.connect(shim_socket)
        s.sendall(wire.encode({"op": "exec", "rid": 1}))      # no exec_id: a KeyError
        buf = bytearray()
        while not (frames := wire.decode_frames(buf)):
            buf += s.recv(65536)
    finally:
        s.close()
    assert frames[0]["ok"] is False and frames[0]["code"] == "InvalidArgument"
    line = wait_log(sv, lambda ln: ln.get("source") == "shim" and ln.get("id") == cid,
                    "the shim's line")
    assert line["level"] == "error" and line["ns"] == sv.ns
    assert "KeyError" in line["msg"] and "Traceback" in line["msg"]
    assert line["shim_pid"] in sv.shim_pids()
    destroy(sv, client, cid)


# -- pure logic: cgroup file formats, the shim's log lines ------------------------------------------

def test_cgstats_reads_v2_and_v1_files(tmp_path):
    """The parsers on files written here (this host has one cgroup layout; the other is the
    format the kernel documents): v2 unified, v1 per controller, unlimited and missing files."""
    from supervisor import cgstats
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (v2 / "memory.current").write_text("1048576\n")
    (v2 / "memory.max").write_text("max\n")
    (v2 / "pids.current").write_text("4\n")
    (v2 / "pids.max").write_text("100\n")
    (v2 / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                                "8:16 rbytes=1 wbytes=2 rios=3 wios=4\n")
    s = cgstats.read_v2(str(v2))
    assert (s.cpu_seconds, s.memory_bytes, s.memory_limit_bytes, s.pids, s.pids_limit) == \
        (2.5, 1048576, None, 4, 100)
    assert s.io == {"read_bytes": 4097, "write_bytes": 8194, "reads": 4, "writes": 6}
    dirs = {}
    for c in ("cpuacct", "memory", "pids", "blkio"):
        dirs[c] = str(tmp_path / c)
        os.mkdir(dirs[c])
    files = {"cpuacct/cpuacct.usage": "1500000000\n", "memory/memory.usage_in_bytes": "2048\n",
             "memory/memory.limit_in_bytes": "9223372036854771712\n",
             "pids/pids.current": "2\n", "pids/pids.max": "max\n",
             "blkio/blkio.throttle.io_service_bytes": "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n"
                                                     "8:0 Total 30\n8:16 Read 1\nTotal 31\n"}
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    s = cgstats.read_v1(dirs)
    assert (s.cpu_seconds, s.memory_bytes, s.memory_limit_bytes, s.pids, s.pids_limit) == \
        (1.5, 2048, None, 2, None)
    assert s.io == {"read_bytes": 11, "write_bytes": 20}   # no io_serviced file: no op counts
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 25 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n")
    assert cgstats._mounts(str(mountinfo)) == (
        {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
         "memory": "/sys/fs/cgroup/memory"}, "/sys/fs/cgroup/unified")


def test_shim_log_lines_survive_tabs_newlines_and_backslashes():
    from supervisor.shim import shimlog
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(w, 2)
        shimlog.set_container("ns1", "c1")
        shimlog.write("warn", "a\tb\nc\\n end\n")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
        shimlog.set_container("", "")
    line = os.read(r, 65536).decode()
    os.close(r)
    assert line.count("\n") == 1
    assert shimlog.parse(line.rstrip("\n")) == {"level": "warn", "ns": "ns1", "id": "c1",
                                                "pid": os.getpid(), "msg": "a\tb\nc\\n end"}
    assert shimlog.parse("Fatal Python error: ...") is None
