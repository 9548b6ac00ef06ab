"""pyrunc-ctl's later features, on real containers through the supervisor: restarting a
container made from an image, anonymous volumes, --privileged, log timestamps/--since/rotation
and stdin for attach/start -i. Facts come from inside the container (or its log files).

The image is a busybox OCI layout (sv_registry) loaded with ``pyrunc-ctl load``: no registry.
Comparisons with Docker's own output are in conformance/engines/test_docker_ctl_features.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from sv_harness import wait_for
from sv_layers import Layer
from sv_registry import busybox_image


@pytest.fixture(scope="module")
def image(sv):
    """A busybox image with /data/seed (owned 1000:1000) and a VOLUME /cache holding one file."""
    d = tempfile.mkdtemp(prefix="svt-feat-", dir="/tmp")
    name = "example.com/feat:" + sv.id("t")
    extra = Layer().dir("data", uid=1000, gid=1000).file("data/seed", b"from the image\n")
    extra.dir("cache").file("cache/c", b"cached\n")
    try:
        busybox_image(os.path.join(d, "img"), extra_layers=[(extra, "gzip")],
                      config={"Volumes": {"/cache": {}}})
        with open(os.path.join(d, "img", "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
        with open(os.path.join(d, "img", "index.json"), "w") as f:
            json.dump(index, f)
        subprocess.run(["tar", "-C", os.path.join(d, "img"), "-cf", os.path.join(d, "i.tar"),
                        "."], check=True)
        sv.ctl("load", "-i", os.path.join(d, "i.tar"))
        yield name
    finally:
        sv.ctl("rmi", name, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cleanup(sv):
    made: list[str] = []
    yield made
    for name in made:
        sv.ctl("rm", "-f", "-v", name, check=False)


def inspect(sv, ref) -> dict:
    return json.loads(sv.ctl("inspect", ref).stdout)[0]


# -- restarting a container made from an image ------------------------------------------------------

def test_image_container_restarts_by_policy_with_its_rootfs(sv, image, cleanup):
    name = sv.id("ri")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, "--restart", "on-failure:2", image, "sh", "-c",
           "echo run >> /data/runs; cat /data/runs | wc -l; exit 1")
    wait_for(lambda: (inspect(sv, name)["RestartCount"], inspect(sv, name)["State"]["Status"])
             == (2, "exited"), timeout=120, what="two restarts, then a stop")
    # each run saw the same copy-on-write rootfs: the file grew by one line per run
    assert sv.ctl("logs", name).stdout.split() == ["1", "2", "3"]
    assert inspect(sv, name)["State"]["ExitCode"] == 1


def test_image_container_stop_and_start(sv, image, cleanup):
    name = sv.id("ri")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, image, "sh", "-c",
           "echo x >> /data/starts; wc -l < /data/starts; exec sleep 300")
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1"], what="first start")
    sv.ctl("stop", "-t", "1", name)
    sv.ctl("start", name)
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1", "2"], what="second start")
    assert inspect(sv, name)["State"]["Status"] == "running"
    sv.ctl("restart", "-t", "1", name)
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1", "2", "3"], what="restart")


# -- --privileged ---------------------------------------------------------------------------------

def test_privileged_sees_host_devices_and_a_writable_sys(sv, sv_rootfs):
    from supervisor.ctlopts import host_devices
    host = sorted(d["path"] for d in host_devices())
    assert host, "the host has device nodes under /dev"
    script = ("find /dev -type c -o -type b | sort; grep ' /sys ' /proc/mounts | cut -d' ' -f4;"
              " head -c 16 /dev/urandom | wc -c; grep CapEff /proc/self/status")
    out = sv.ctl("run", "--rm", "--privileged", sv_rootfs, "sh", "-c", script).stdout.split()
    inside = {p for p in out if p.startswith("/dev/")}
    assert set(host) <= inside  # every host device, numbers and all (checked below)
    assert any(o.startswith("rw,") for o in out)  # /sys writable
    plain = sv.ctl("run", "--rm", sv_rootfs, "sh", "-c", script).stdout.split()
    assert not (set(host) - {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                             "/dev/urandom", "/dev/tty"}) & set(plain)
    assert any(o.startswith("ro,") for o in plain)
    dev = next(d for d in host_devices() if d["path"] not in ("/dev/null", "/dev/zero"))
    stat = sv.ctl("run", "--rm", "--privileged", sv_rootfs, "stat", "-c", "%F %t:%T",
                  dev["path"]).stdout.split()
    kind = "character" if dev["type"] == "c" else "block"
    assert stat[0] == kind and stat[-1] == f"{dev['major']:x}:{dev['minor']:x}"
