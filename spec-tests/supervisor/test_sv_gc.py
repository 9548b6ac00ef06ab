"""Garbage collection with unmodified ctr 1.6: after ``ctr images rm --sync`` no blob, ingest or
snapshot of the image is left; nothing a running container uses is removed; kill -9 of the
supervisor in the middle of a pull leaves no visible partial blob, the same pull then completes,
and collection cleans what the broken pull left. Each test has a daemon of its own (sv_own), so
what is on disk is exactly its own."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from sv_layers import Layer
from sv_registry import Registry, busybox_image
from sv_harness import CTR, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def reg_image(sv):
    reg = Registry()
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    try:
        reg.start()
        big = Layer().file("big", os.urandom(4 << 20))
        busybox_image(os.path.join(d, "img"), [(big, "gzip")])
        ref = reg.push(os.path.join(d, "img"), "gcimage:latest")
        with open(os.path.join(d, "img", "index.json")) as f:
            import json
            manifest_digest = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(d, "img", "blobs", "sha256", manifest_digest[7:])) as f:
            big_digest = json.load(f)["layers"][-1]["digest"]
        yield reg, ref, big_digest
    finally:
        reg.stop()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def pull(sv, reg, ref, check=True, **kw):
    return reg.run([CTR, "-a", sv.sock, "-n", sv.ns, "images", "pull", "--plain-http", ref],
                   check=check, **kw)


def on_disk(sv):
    base = os.path.join(sv.root, "content")
    return {"blobs": sorted(os.listdir(os.path.join(base, "blobs", "sha256"))),
            "ingests": sorted(os.listdir(os.path.join(base, "ingest"))),
            "snapshots": sorted(os.listdir(os.path.join(sv.root, "snapshots", "overlayfs",
                                                        "snapshots")))}


def listed(sv, *what):
    return sv.ctr(*what, "ls", "-q").stdout.split() if what[0] != "snapshots" else \
        [line.split()[0] for line in sv.ctr("snapshots", "ls").stdout.splitlines()[1:]]


def test_image_rm_sync_leaves_nothing(sv_own, reg_image):
    sv = sv_own
    reg, ref, _ = reg_image
    pull(sv, reg, ref)
    res = sv.ctr("run", "--rm", ref, sv.id("gc"), "cat", "/etc/passwd")
    assert res.stdout.startswith("root:")
    assert on_disk(sv)["blobs"] and on_disk(sv)["snapshots"]
    sv.ctr("images", "rm", "--sync", ref)
    assert listed(sv, "content") == [] and listed(sv, "snapshots") == []
    assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}


def test_running_container_keeps_its_snapshots(sv_own, reg_image):
    sv = sv_own
    reg, ref, _ = reg_image
    pull(sv, reg, ref)
    cid = sv.id("gcrun")
    sv.ctr("run", "-d", ref, cid, "sleep", "600")
    try:
        sv.ctr("images", "rm", "--sync", ref)
        # The container's snapshot and its whole parent chain stay; the blobs may go.
        assert len(listed(sv, "snapshots")) == 3
        res = sv.ctr("task", "exec", "--exec-id", "e1", cid, "cat", "/etc/passwd")
        assert res.stdout.startswith("root:")
    finally:
        sv.ctr("task", "kill", "-s", "KILL", cid, check=False)
        sv.ctr("task", "delete", "-f", cid, check=False)
        sv.ctr("containers", "delete", cid, check=False)
    sv.ctr("leases", "create", "--id", "trigger")
    sv.ctr("leases", "rm", "--sync", "trigger")
    assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}


def test_kill9_mid_pull(sv_own, reg_image):
    sv = sv_own
    reg, ref, big = reg_image
    release = os.path.join(sv.base, "release")
    proxy = subprocess.Popen(reg.nsenter([sys.executable, os.path.join(HERE, "stallproxy.py"),
                                          "5001", str(reg.port), big, release]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    puller = None
    try:
        via_proxy = ref.replace(f":{reg.port}/", ":5001/")
        probe = [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', "
                 "5001), 5)"]
        wait_for(lambda: subprocess.run(reg.nsenter(probe), capture_output=True).returncode == 0,
                 60, step=0.1, what="the stalling proxy")
        puller = subprocess.Popen(reg.nsenter([CTR, "-a", sv.sock, "-n", sv.ns, "images",
                                               "pull", "--plain-http", via_proxy]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stalled_half_way():
            """The big layer's ingest holds data (the proxy sent half of it, then stalls)."""
            for line in sv.ctr("content", "active", check=False).stdout.splitlines()[1:]:
                if big[7:] in line:
                    base = os.path.join(sv.root, "content", "ingest")
                    return any(os.path.getsize(os.path.join(base, k, "data")) > 0
                               for k in os.listdir(base)
                               if os.path.exists(os.path.join(base, k, "data")))
            return False
        wait_for(stalled_half_way, 120, step=0.1, what="the pull to stall in the big layer")
        sv.kill9()
        puller.kill()  # ctr itself waits on the stalled registry, not on the dead daemon
        puller.wait(60)
        sv.start()
        # Nothing partial is visible: the big layer is neither listed nor on disk.
        assert big not in listed(sv, "content")
        assert big[7:] not in on_disk(sv)["blobs"]
        with open(release, "w"):
            pass
        pull(sv, reg, via_proxy)
        assert big in listed(sv, "content")
        assert sv.ctr("run", "--rm", via_proxy, sv.id("after"), "stat", "-c", "%s",
                      "/big").stdout.strip() == str(4 << 20)
        # The broken pull's lease still holds its leftovers; once it goes, so do they.
        for lease in sv.ctr("leases", "ls", "-q").stdout.split():
            sv.ctr("leases", "rm", "--sync", lease)
        assert on_disk(sv)["ingests"] == []
        sv.ctr("images", "rm", "--sync", via_proxy)
        assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}
    finally:
        if puller is not None and puller.poll() is None:
            puller.kill()
            puller.wait()
        proxy.kill()
        proxy.wait()
