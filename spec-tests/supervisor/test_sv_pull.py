"""The daemon's own pull (pyrunc.services.pull.v1, and ``pyrunc-ctl pull``): the supervisor runs
inside the registry's network namespace and talks to docker-registry 2.8 itself — platform pick
from an index, parallel streamed blobs, digests checked, layers unpacked; the result is an
ordinary containerd image (ctr runs it, ``ctr images check`` finds it complete), garbage
collection removes all of it after ``pyrunc-ctl rmi``, and errors name the image and the reason."""
from __future__ import annotations

import os
import subprocess
import tempfile

import grpc
import pytest

from sv_layers import Layer
from sv_registry import Registry, busybox_image
from sv_harness import PYTHON, ROOT, Supervisor, code_of, wait_for
from supervisor.gen.pyrunc.services.pull.v1 import pull_pb2, pull_pb2_grpc


class NetSupervisor(Supervisor):
    """A daemon started inside the registry's network namespace."""

    def __init__(self, registry, extra=()):
        super().__init__()
        self.registry = registry
        self.extra = list(extra)

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.registry.nsenter(
            [PYTHON, "-m", "supervisor.daemon", "--address", self.sock, "--state", self.state,
             "--root", self.root, "--runtime", self.runtime] + self.extra),
            cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(self._answers, 20, what=f"daemon socket (log: {self.log_path})")
        return self


@pytest.fixture(scope="module")
def net(sv_rootfs):
    reg = Registry()
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    daemon = None
    try:
        reg.start()
        extra = [(Layer().whiteout("etc/passwd").file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
                  .file("big", os.urandom(3 << 20)), "zstd")]
        busybox_image(os.path.join(d, "img"), extra, multi_platform=True)
        ref = reg.push(os.path.join(d, "img"), "pulled:latest", all_platforms=True)
        daemon = NetSupervisor(reg).start()
        yield daemon, ref
    finally:
        if daemon is not None:
            daemon.cleanup()
        reg.stop()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def pull(sv, ref, **kw):
    with grpc.insecure_channel("unix://" + sv.sock) as ch:
        return list(pull_pb2_grpc.PullStub(ch).Pull(pull_pb2.PullRequest(ref=ref, **kw),
                                                    metadata=[("containerd-namespace", sv.ns)],
                                                    timeout=120))


def on_disk(sv):
    base = os.path.join(sv.root, "content")
    return {"blobs": sorted(os.listdir(os.path.join(base, "blobs", "sha256"))),
            "ingests": sorted(os.listdir(os.path.join(base, "ingest"))),
            "snapshots": sorted(os.listdir(os.path.join(sv.root, "snapshots", "overlayfs",
                                                        "snapshots")))}


def test_daemon_pull_then_ctr_runs_it_and_rmi_collects_it(net):
    sv, ref = net
    res = sv.ctl("pull", "--plain-http", ref)
    assert ref in res.stdout
    assert ref in sv.ctl("images", "-q").stdout.split()
    check = sv.ctr("images", "check").stdout
    assert "complete" in check and "true" in check  # all present, unpacked
    out = sv.ctr("run", "--rm", ref, sv.id("p"), "sh", "-c", "cat /etc/passwd; stat -c %s /big")
    assert out.stdout.split() == ["root:x:0:0::/:/bin/sh", str(3 << 20)]
    # Only linux/amd64 was fetched: the arm64 manifest's layer is not here.
    assert len(on_disk(sv)["blobs"]) == 5  # index, manifest, config, 2 layers
    sv.ctl("tag", ref, "example.com/again:1")
    sv.ctl("rmi", ref, "example.com/again:1")
    assert sv.ctl("images", "-q").stdout.split() == []
    assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}


def test_pull_again_reuses_what_is_there(net):
    sv, ref = net
    first = pull(sv, ref, plain_http=True)
    second = pull(sv, ref, plain_http=True)
    assert first[-1].image == second[-1].image == ref
    assert not [p for p in second if p.unpacking]  # every layer's snapshot was already there
    sv.ctl("rmi", ref)


def test_other_platform_and_errors(net):
    sv, ref = net
    arm = pull(sv, ref, plain_http=True, platform="linux/arm64", no_unpack=True)
    assert arm[-1].image == ref
    sv.ctl("rmi", ref)
    code, details = code_of(pull, sv, ref, plain_http=True, platform="linux/s390x")
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no such platform" in details \
        and ref in details
    missing = ref.rsplit("/", 1)[0] + "/nothing:here"
    code, details = code_of(pull, sv, missing, plain_http=True)
    assert code == grpc.StatusCode.NOT_FOUND and missing in details
    # Plain HTTP is for localhost only when asked: without it, TLS to a plain server fails.
    code, details = code_of(pull, sv, ref)
    assert code != grpc.StatusCode.OK and ref in details
    assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}


def test_htpasswd_registry_needs_the_configured_credentials(sv_rootfs):
    """docker-registry with htpasswd auth: without credentials the pull fails as unauthorized;
    with them in the daemon's --registry-config it succeeds (Basic from WWW-Authenticate)."""
    import json
    reg = Registry(auth=("svtuser", "s3cret-pw"))
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    daemons = []
    try:
        reg.start()
        busybox_image(os.path.join(d, "img"))
        ref = reg.push(os.path.join(d, "img"), "private:latest")
        anon = NetSupervisor(reg).start()
        daemons.append(anon)
        code, details = code_of(pull, anon, ref, plain_http=True)
        assert code != grpc.StatusCode.OK and "unauthorized" in details and ref in details
        cfg = os.path.join(d, "registries.json")
        with open(cfg, "w") as f:
            json.dump({"hosts": {reg.host: {"username": "svtuser", "password": "s3cret-pw"}}}, f)
        authed = NetSupervisor(reg, ["--registry-config", cfg]).start()
        daemons.append(authed)
        assert pull(authed, ref, plain_http=True)[-1].image == ref
        res = authed.ctr("run", "--rm", ref, authed.id("auth"), "echo", "private")
        assert res.stdout.strip() == "private"
    finally:
        for daemon in daemons:
            daemon.cleanup()
        reg.stop()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_ctl_run_image_honours_its_config(net):
    """pyrunc-ctl run IMAGE: pulled when missing, Cmd/Env/WorkingDir/User from the image config
    (User by name, from the image's /etc/passwd), a snapshot of its own that --rm removes."""
    sv, _ = net
    reg = sv.registry
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    try:
        busybox_image(os.path.join(d, "img"), config={
            "Env": ["PATH=/bin", "IMG=configured"], "WorkingDir": "/tmp", "User": "nobody",
            "Cmd": ["sh", "-c", "echo $IMG; pwd; id -u"]})
        ref = reg.push(os.path.join(d, "img"), "configured:latest")
        res = sv.ctl("run", "--rm", "--plain-http", "--pull", "missing", ref)
        assert res.stdout.split()[-3:] == ["configured", "/tmp", "65534"]
        assert ref in sv.ctl("images", "-q").stdout.split()
        # Options override the image: command, user, workdir, env.
        res = sv.ctl("run", "--rm", "--pull", "never", "-u", "0", "-w", "/", "-e", "IMG=cli",
                     ref, "sh", "-c", "echo $IMG; pwd; id -u")
        assert res.stdout.split() == ["cli", "/", "0"]
        snaps = sv.ctr("snapshots", "ls").stdout.splitlines()[1:]
        assert all(line.split()[0].startswith("sha256:") for line in snaps)
        res = sv.ctl("run", "--pull", "never", "example.com/absent:1", "true", check=False)
        assert res.returncode == 125 and "no such image" in res.stderr
        sv.ctl("rmi", ref)
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("mode,reason", [("corrupt", "digest"), ("truncate", "truncated")])
def test_bad_blob_from_the_registry_commits_nothing(net, mode, reason):
    """A registry (here a proxy in front of the real one) that serves a layer with a wrong byte
    or cuts it short: the pull fails naming the image and the reason, no blob of that layer is
    committed, and nothing of the pull is left once garbage collection ran."""
    import json
    import sys
    sv, ref = net
    reg = sv.registry
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    port = 5002 if mode == "corrupt" else 5003
    proxy = None
    try:
        busybox_image(os.path.join(d, "img"), [(Layer().file("f", os.urandom(200_000)), "gzip")])
        pushed = reg.push(os.path.join(d, "img"), f"bad{mode}:latest")
        with open(os.path.join(d, "img", "index.json")) as f:
            mdigest = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(d, "img", "blobs", "sha256", mdigest[7:])) as f:
            layer = json.load(f)["layers"][-1]["digest"]
        proxy = subprocess.Popen(reg.nsenter([sys.executable, os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "stallproxy.py"), str(port),
            str(reg.port), layer, os.path.join(d, "never"), mode]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = [sys.executable, "-c", f"import socket; socket.create_connection(("
                 f"'127.0.0.1', {port}), 5)"]
        wait_for(lambda: subprocess.run(reg.nsenter(probe), capture_output=True).returncode == 0,
                 60, step=0.1, what="the proxy")
        bad = pushed.replace(f":{reg.port}/", f":{port}/")
        code, details = code_of(pull, sv, bad, plain_http=True)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert bad in details and reason in details and layer in details
        assert layer not in sv.ctr("content", "ls", "-q").stdout.split()
        assert bad not in sv.ctl("images", "-q").stdout.split()
        sv.ctr("leases", "create", "--id", "trigger-" + mode)
        sv.ctr("leases", "rm", "--sync", "trigger-" + mode)
        assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_stalled_registry_fails_in_bounded_time(net):
    """A registry that stops sending half-way through a layer: with the host's read timeout set
    (2 s here, --registry-config), the pull fails as timed out instead of hanging."""
    import json
    import sys
    reg = net[0].registry
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    proxy = daemon = None
    try:
        busybox_image(os.path.join(d, "img"), [(Layer().file("f", os.urandom(200_000)), "gzip")])
        pushed = reg.push(os.path.join(d, "img"), "stalled:latest")
        with open(os.path.join(d, "img", "index.json")) as f:
            mdigest = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(d, "img", "blobs", "sha256", mdigest[7:])) as f:
            layer = json.load(f)["layers"][-1]["digest"]
        proxy = subprocess.Popen(reg.nsenter([sys.executable, os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "stallproxy.py"), "5004",
            str(reg.port), layer, os.path.join(d, "never"), "stall"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cfg = os.path.join(d, "registries.json")
        with open(cfg, "w") as f:
            json.dump({"hosts": {"127.0.0.1:5004": {"timeout": 2}}}, f)
        daemon = NetSupervisor(reg, ["--registry-config", cfg]).start()
        probe = [sys.executable, "-c", "import socket; socket.create_connection(("
                 "'127.0.0.1', 5004), 5)"]
        wait_for(lambda: subprocess.run(reg.nsenter(probe), capture_output=True).returncode == 0,
                 60, step=0.1, what="the proxy")
        stalled = pushed.replace(f":{reg.port}/", ":5004/")
        code, details = code_of(pull, daemon, stalled, plain_http=True)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "timed out" in details and layer in details and stalled in details
        assert layer not in daemon.ctr("content", "ls", "-q").stdout.split()
    finally:
        if daemon is not None:
            daemon.cleanup()
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_mirror_serves_a_registry_that_is_not_there(net):
    """--registry-config mirrors: a pull of 127.0.0.1:5999/... (nothing listens there) is served
    by the mirror on the real registry's port, after a first mirror that does not answer; the
    image keeps the name asked for."""
    import json
    sv, ref = net
    reg = sv.registry
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    daemon = None
    try:
        cfg = os.path.join(d, "registries.json")
        with open(cfg, "w") as f:
            json.dump({"hosts": {"127.0.0.1:5999": {
                "mirrors": ["127.0.0.1:5998", reg.host], "timeout": 10}}}, f)
        daemon = NetSupervisor(reg, ["--registry-config", cfg]).start()
        wanted = ref.replace(reg.host, "127.0.0.1:5999")
        assert pull(daemon, wanted, plain_http=True)[-1].image == wanted
        res = daemon.ctr("run", "--rm", wanted, daemon.id("m"), "echo", "mirrored")
        assert res.stdout.strip() == "mirrored"
    finally:
        if daemon is not None:
            daemon.cleanup()
        import shutil
        shutil.rmtree(d, ignore_errors=True)
