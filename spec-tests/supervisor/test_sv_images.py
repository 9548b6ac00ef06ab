"""Images with unmodified ctr 1.6 against the supervisor: pull from a real registry
(docker-registry 2.8 on 127.0.0.1 in the test's network namespace) of images built here from
busybox-static — several layers, whiteouts, zstd, a multi-platform index — then run, tag, check,
remove; hostile layers make the pull fail without leaving a snapshot; the Images API directly."""
from __future__ import annotations

import os
import tempfile

import grpc
import pytest

from sv_layers import Layer
from sv_registry import REGISTRY, SKOPEO, Registry, busybox_image
from sv_harness import CTR, code_of
from supervisor.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from supervisor.gen.containerd.types import descriptor_pb2


@pytest.fixture(scope="module")
def registry(sv):
    for tool in (REGISTRY, SKOPEO):
        if not os.access(tool, os.X_OK):
            pytest.skip(f"{tool} is not installed (make setup installs it)")
    reg = Registry()
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def busybox(registry):
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    try:
        extra = [(Layer().whiteout("etc/passwd").file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
                  .dir("data").file("data/old", b"old"), "zstd"),
                 (Layer().opaque("data").file("data/new", b"new", mode=0o4755, uid=7), "gzip")]
        busybox_image(os.path.join(d, "img"), extra, multi_platform=True,
                      config={"Env": ["PATH=/bin", "IMG=yes"], "WorkingDir": "/data"})
        return registry.push(os.path.join(d, "img"), "busybox:latest", all_platforms=True)
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def pull(sv, registry, ref, check=True):
    return registry.run([CTR, "-a", sv.sock, "-n", sv.ns, "images", "pull", "--plain-http", ref],
                        check=check)


def snapshot_names(sv):
    return [line.split()[0] for line in sv.ctr("snapshots", "ls").stdout.splitlines()[1:]]


def test_pull_and_run(sv, registry, busybox):
    pull(sv, registry, busybox)
    ls = sv.ctr("images", "ls").stdout
    assert busybox in ls and "linux/amd64,linux/arm64" in ls
    assert "complete" in sv.ctr("images", "check").stdout
    assert len([n for n in snapshot_names(sv) if n.startswith("sha256:")]) >= 3
    cid = sv.id("img")
    res = sv.ctr("run", "--rm", busybox, cid, "sh", "-c",
                 "cat /etc/passwd; ls /data; stat -c '%a %u' /data/new; echo $IMG; pwd; exit 3",
                 check=False)
    assert res.returncode == 3, res.stderr
    assert res.stdout.split() == ["root:x:0:0::/:/bin/sh", "new", "4755", "7", "yes", "/data"]
    # --rm removed the container's own snapshot: only the image's committed chain is left.
    assert cid not in " ".join(snapshot_names(sv))


def test_run_detached_on_the_image(sv, registry, busybox):
    pull(sv, registry, busybox)
    cid = sv.id("imgd")
    sv.ctr("run", "-d", busybox, cid, "sh", "-c", "echo up > /tmp/ready; sleep 600")
    try:
        res = sv.ctr("task", "exec", "--exec-id", "e1", cid, "cat", "/tmp/ready")
        assert res.stdout.strip() == "up"
    finally:
        sv.ctr("task", "kill", "-s", "KILL", cid, check=False)
        sv.ctr("task", "delete", "-f", cid, check=False)
        sv.ctr("containers", "delete", cid, check=False)
    assert cid not in " ".join(snapshot_names(sv))


def test_tag_and_remove(sv, registry, busybox):
    pull(sv, registry, busybox)
    sv.ctr("images", "tag", busybox, "example.com/copy:1")
    assert "example.com/copy:1" in sv.ctr("images", "ls", "-q").stdout
    sv.ctr("images", "rm", "example.com/copy:1")
    assert "example.com/copy:1" not in sv.ctr("images", "ls", "-q").stdout
    assert busybox in sv.ctr("images", "ls", "-q").stdout


def test_hostile_image_fails_and_leaves_no_snapshot(sv, registry):
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    victim = os.path.join(d, "victim")
    os.makedirs(victim)
    try:
        bad = Layer().symlink("evil", victim).file("evil/pwned", b"x")
        busybox_image(os.path.join(d, "img"), [(bad, "gzip")])
        ref = registry.push(os.path.join(d, "img"), "hostile:latest")
        before = snapshot_names(sv)
        res = pull(sv, registry, ref, check=False)
        assert res.returncode != 0 and "symlink" in res.stderr
        assert os.listdir(victim) == []
        after = snapshot_names(sv)
        # The good base layer may stay committed (it is shared, and GC takes it); no active
        # extraction snapshot is left behind.
        assert not [n for n in after if n not in before and not n.startswith("sha256:")]
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_images_api(sv):
    ch = grpc.insecure_channel("unix://" + sv.sock)
    md = [("containerd-namespace", sv.ns)]
    st = images_pb2_grpc.ImagesStub(ch)
    name = "example.com/api:" + sv.id("t")
    target = descriptor_pb2.Descriptor(media_type="application/vnd.oci.image.index.v1+json",
                                       digest="sha256:" + "a" * 64, size=10)
    try:
        st.Create(images_pb2.CreateImageRequest(image=images_pb2.Image(
            name=name, target=target, labels={"a": "1"})), metadata=md)
        assert code_of(st.Create, images_pb2.CreateImageRequest(image=images_pb2.Image(
            name=name, target=target)), metadata=md)[0] == grpc.StatusCode.ALREADY_EXISTS
        got = st.Get(images_pb2.GetImageRequest(name=name), metadata=md).image
        assert (got.target.digest, dict(got.labels)) == (target.digest, {"a": "1"})
        from google.protobuf import field_mask_pb2
        st.Update(images_pb2.UpdateImageRequest(
            image=images_pb2.Image(name=name, labels={"b": "2"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.b"])), metadata=md)
        got = st.Get(images_pb2.GetImageRequest(name=name), metadata=md).image
        assert dict(got.labels) == {"a": "1", "b": "2"}
        names = [i.name for i in st.List(images_pb2.ListImagesRequest(
            filters=["labels.b==2"]), metadata=md).images]
        assert names == [name]
        bad = descriptor_pb2.Descriptor(media_type="x", digest="sha256:nothex")
        assert code_of(st.Create, images_pb2.CreateImageRequest(image=images_pb2.Image(
            name=name + "x", target=bad)), metadata=md)[0] == grpc.StatusCode.INVALID_ARGUMENT
        st.Delete(images_pb2.DeleteImageRequest(name=name), metadata=md)
        assert code_of(st.Get, images_pb2.GetImageRequest(name=name), metadata=md)[0] == \
            grpc.StatusCode.NOT_FOUND
    finally:
        ch.close()


def test_import_export_round_trip(sv):
    """ctr images import of an OCI layout tarball, export (OCI layout with docker's
    manifest.json), and import of that export into another namespace, which then runs."""
    import shutil
    import subprocess
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    other = sv.ns + "x"
    name = "example.com/imported:" + sv.id("t")
    try:
        busybox_image(os.path.join(d, "img"))
        subprocess.run(["tar", "-C", os.path.join(d, "img"), "-cf", os.path.join(d, "in.tar"),
                        "."], check=True)
        sv.ctr("images", "import", "--index-name", name, os.path.join(d, "in.tar"))
        sv.ctr("images", "export", os.path.join(d, "out.tar"), name)
        listing = subprocess.run(["tar", "-tf", os.path.join(d, "out.tar")], capture_output=True,
                                 text=True, check=True).stdout.split()
        assert {"index.json", "manifest.json", "oci-layout"} <= set(listing)
        sv.ctr("images", "import", os.path.join(d, "out.tar"), namespace=other)
        assert name in sv.ctr("images", "ls", "-q", namespace=other).stdout.split()
        res = sv.ctr("run", "--rm", name, sv.id("imp"), "echo", "imported", namespace=other)
        assert res.stdout.strip() == "imported"
    finally:
        for ns in (sv.ns, other):
            for ref in sv.ctr("images", "ls", "-q", namespace=ns, check=False).stdout.split():
                if ref == name or ref.startswith("import-"):
                    sv.ctr("images", "rm", "--sync", ref, namespace=ns, check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_ctl_load_save_inspect(sv):
    """pyrunc-ctl load of an OCI layout tarball and of a docker-save archive (uncompressed layer
    tars, manifest.json), image inspect, save, and load of the saved file in another namespace;
    every loaded image runs under ctr."""
    import io
    import json
    import shutil
    import subprocess
    import tarfile
    from sv_layers import digest
    from sv_registry import busybox_layer
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    other = sv.ns + "l"
    name = "example.com/loaded:" + sv.id("t")
    try:
        busybox_image(os.path.join(d, "img"), config={"Env": ["PATH=/bin", "LOADED=1"]})
        with open(os.path.join(d, "img", "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
        with open(os.path.join(d, "img", "index.json"), "w") as f:
            json.dump(index, f)
        subprocess.run(["tar", "-C", os.path.join(d, "img"), "-cf", os.path.join(d, "oci.tar"),
                        "."], check=True)
        assert sv.ctl("load", "-i", os.path.join(d, "oci.tar")).stdout.split() == [name]
        res = sv.ctr("run", "--rm", name, sv.id("ld"), "sh", "-c", "echo $LOADED")
        assert res.stdout.strip() == "1"
        info = json.loads(sv.ctl("image", "inspect", name).stdout)
        assert info[0]["Name"] == name and "LOADED=1" in info[0]["Config"]["config"]["Env"]
        sv.ctl("save", "-o", os.path.join(d, "saved.tar"), name)
        sv.ctl("load", "-i", os.path.join(d, "saved.tar"), env={"PYRUNC_NAMESPACE": other})
        res = sv.ctr("run", "--rm", name, sv.id("ld"), "echo", "again", namespace=other)
        assert res.stdout.strip() == "again"
        # docker save: uncompressed layers and manifest.json.
        layer = busybox_layer().tar_bytes()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for fname, data in (("cfg.json", config), ("abc/layer.tar", layer), (
                    "manifest.json", json.dumps([{"Config": "cfg.json", "Layers": [
                        "abc/layer.tar"], "RepoTags": ["dockerish:1"]}]).encode())):
                ti = tarfile.TarInfo(fname)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        with open(os.path.join(d, "docker.tar"), "wb") as f:
            f.write(buf.getvalue())
        loaded = sv.ctl("load", "-i", os.path.join(d, "docker.tar")).stdout.split()
        assert loaded == ["docker.io/library/dockerish:1"]
        res = sv.ctr("run", "--rm", loaded[0], sv.id("dk"), "echo", "docker")
        assert res.stdout.strip() == "docker"
    finally:
        for ns in (sv.ns, other):
            for ref in sv.ctr("images", "ls", "-q", namespace=ns, check=False).stdout.split():
                if ref in (name, "docker.io/library/dockerish:1"):
                    sv.ctr("images", "rm", "--sync", ref, namespace=ns, check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_hundred_layer_image_pulls_and_runs(sv, registry):
    """100 layers: the container's overlay lowerdir list is far past a page (the shim mounts
    it relative to the layers' common directory), and the top and bottom layers are visible."""
    import shutil
    d = tempfile.mkdtemp(prefix="svt-img-", dir="/tmp")
    try:
        layers = [(Layer().file(f"l/{i}", str(i).encode()), "gzip") for i in range(99)]
        busybox_image(os.path.join(d, "img"), layers)
        ref = registry.push(os.path.join(d, "img"), "deep:latest")
        pull(sv, registry, ref)
        res = sv.ctr("run", "--rm", ref, sv.id("deep"), "sh", "-c",
                     "cat /l/0; echo; cat /l/98; echo; ls /l | wc -l")
        assert res.stdout.split() == ["0", "98", "99"]
        sv.ctr("images", "rm", "--sync", ref)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_image_events(sv):
    """/images/create, /images/update and /images/delete reach an events subscriber."""
    import threading
    from google.protobuf import field_mask_pb2
    from supervisor.gen.containerd.events import image_pb2
    client = sv.client()
    stream = client.subscribe(f'namespace=={sv.ns},topic~="^/images/"')
    got = []

    def collect():
        try:
            for env in stream:
                got.append(env)
                if env.topic == "/images/delete" and \
                        image_pb2.ImageDelete.FromString(env.event.value).name == name:
                    return
        except grpc.RpcError:
            pass
    t = threading.Thread(target=collect, daemon=True)
    t.start()
    ch = grpc.insecure_channel("unix://" + sv.sock)
    md = [("containerd-namespace", sv.ns)]
    st = images_pb2_grpc.ImagesStub(ch)
    name = "example.com/events:" + sv.id("e")
    target = descriptor_pb2.Descriptor(media_type="application/vnd.oci.image.index.v1+json",
                                       digest="sha256:" + "b" * 64, size=1)
    try:
        from sv_harness import wait_for

        def live():
            """The subscription is live once an event published now arrives."""
            probe = name + "-probe"
            st.Create(images_pb2.CreateImageRequest(image=images_pb2.Image(name=probe,
                                                                           target=target)),
                      metadata=md)
            st.Delete(images_pb2.DeleteImageRequest(name=probe), metadata=md)
            return bool(got)
        wait_for(live, 60, step=0.2, what="the events subscription")
        got.clear()
        st.Create(images_pb2.CreateImageRequest(image=images_pb2.Image(name=name, target=target)),
                  metadata=md)
        st.Update(images_pb2.UpdateImageRequest(image=images_pb2.Image(
            name=name, labels={"x": "1"}), update_mask=field_mask_pb2.FieldMask(
            paths=["labels.x"])), metadata=md)
        st.Delete(images_pb2.DeleteImageRequest(name=name), metadata=md)
        t.join(60)
        ours = [e.topic for e in got if name + "-probe" not in str(e.event.value)]
        assert ours[-3:] == ["/images/create", "/images/update", "/images/delete"], ours
        assert image_pb2.ImageDelete.FromString(got[-1].event.value).name == name
    finally:
        stream.cancel()
        ch.close()
