"""pyrunc-ctl's image commands: pull, images (ls), rmi, tag, image inspect, save, load, and
``run IMAGE`` (ImageRun).

``pull`` asks the daemon to pull (pyrunc.services.pull.v1: the daemon talks to the registry) and
shows progress — on a terminal one line per blob with bytes and speed, redrawn in place;
otherwise one line per finished blob. ``images``, ``rmi`` and ``tag`` are containerd's Images
service; ``rmi`` collects garbage synchronously, so the image's blobs and snapshots are gone when
it returns.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from supervisor.ctlbase import grpc, print_table  # grpc: imported on first use


def ImageError(message: str):
    """ctl's own error (printed as one line, non-zero exit)."""
    from supervisor.ctlbase import CtlError
    return CtlError(message)


def _setup_pull(p) -> None:
    p.add_argument("--plain-http", action="store_true", help="plain HTTP to a localhost registry")
    p.add_argument("--platform", default="", help="os/arch (default: the host's)")
    p.add_argument("ref")


def _setup_images(p) -> None:
    p.add_argument("-q", "--quiet", action="store_true")


def _setup_image(p) -> None:
    p.add_argument("action", choices=("inspect",))
    p.add_argument("refs", nargs="+")


def _setup_save(p) -> None:
    p.add_argument("-o", "--output", default="-")
    p.add_argument("refs", nargs="+")


def _setup_tag(p) -> None:
    p.add_argument("source")
    p.add_argument("target")


def add_commands(table: dict) -> None:
    """ctl's command table: the image commands."""
    here = "supervisor.ctl_images:"
    table["pull"] = ("pull an image (the supervisor fetches and unpacks it)", _setup_pull,
                     here + "cmd_pull")
    table["images"] = ("list images", _setup_images, here + "cmd_images")
    table["rmi"] = ("remove images (and, by garbage collection, what only they used)",
                    lambda p: p.add_argument("refs", nargs="+"), here + "cmd_rmi")
    table["image"] = ("image commands: inspect", _setup_image, here + "cmd_image")
    table["save"] = ("write images as an OCI image layout tarball", _setup_save,
                     here + "cmd_save")
    table["load"] = ("load an OCI layout tarball or a docker save archive",
                     lambda p: p.add_argument("-i", "--input", default="-"), here + "cmd_load")
    table["tag"] = ("give an image another name", _setup_tag, here + "cmd_tag")


def _sha256(data: bytes) -> str:
    """The hex sha256 (hashlib imported here: it is slow to import and most commands skip it)."""
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


def add_run_options(p) -> None:
    """run/create's image options."""
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing",
                   help="for an IMAGE: pull it when missing (default), always, or never")
    p.add_argument("--plain-http", action="store_true",
                   help="pull over plain HTTP (a localhost registry)")


def _md(ctl):
    return [("containerd-namespace", ctl.args.namespace)]


def _images_stub(ctl):
    from supervisor.gen.containerd.services.images.v1 import images_pb2_grpc
    return images_pb2_grpc.ImagesStub(ctl.client.channel)


def cmd_pull(ctl, a) -> int:
    from supervisor.gen.pyrunc.services.pull.v1 import pull_pb2, pull_pb2_grpc
    stub = pull_pb2_grpc.PullStub(ctl.client.channel)
    tty = sys.stdout.isatty()
    seen: dict[str, tuple[int, int]] = {}
    start = time.monotonic()
    drawn = 0
    for p in stub.Pull(pull_pb2.PullRequest(ref=a.ref, plain_http=a.plain_http,
                                            platform=a.platform), metadata=_md(ctl)):
        if p.image:
            print(f"{p.image}: {p.target.digest}")
            return 0
        if p.unpacking:
            print(f"unpacking {p.unpacking[:19]}", flush=True) if not tty else None
            continue
        was = seen.get(p.digest)
        seen[p.digest] = (p.offset, p.total)
        if tty:
            drawn = _draw(seen, start, drawn)
        elif p.done and (was is None or was[0] != p.total):
            print(f"{p.digest[:19]}: done {p.total} bytes", flush=True)
    return 0


def _draw(seen: dict, start: float, drawn: int) -> int:
    """Redraw the progress block in place; its height."""
    out = ["\x1b[F" * drawn] if drawn else []
    total = sum(o for o, _ in seen.values())
    for digest, (offset, size) in seen.items():
        state = "done" if offset >= size else f"{_bytes(offset)}/{_bytes(size)}"
        out.append(f"\x1b[K{digest[7:19]}  {state}\n")
    rate = total / max(time.monotonic() - start, 1e-3)
    out.append(f"\x1b[Ktotal {_bytes(total)}  {_bytes(int(rate))}/s\n")
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    return len(seen) + 1


def cmd_images(ctl, a) -> int:
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    images = _images_stub(ctl).List(images_pb2.ListImagesRequest(), metadata=_md(ctl)).images
    if a.quiet:
        for img in images:
            print(img.name)
        return 0
    print_table(("REF", "DIGEST", "SIZE"),
           [(i.name, i.target.digest[:19], _bytes(i.target.size)) for i in images])
    return 0


def cmd_rmi(ctl, a) -> int:
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    stub = _images_stub(ctl)
    for i, ref in enumerate(a.refs):
        try:
            stub.Delete(images_pb2.DeleteImageRequest(name=ref, sync=i == len(a.refs) - 1),
                        metadata=_md(ctl))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise ImageError(f"no such image: {ref}") from None
            raise
        print(ref)
    return 0


def cmd_tag(ctl, a) -> int:
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    stub = _images_stub(ctl)
    src = stub.Get(images_pb2.GetImageRequest(name=a.source), metadata=_md(ctl)).image
    img = images_pb2.Image(name=a.target, labels=src.labels, target=src.target)
    try:
        stub.Create(images_pb2.CreateImageRequest(image=img), metadata=_md(ctl))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        stub.Update(images_pb2.UpdateImageRequest(image=img), metadata=_md(ctl))
    print(a.target)
    return 0


# -- run IMAGE ------------------------------------------------------------------------------------

def is_image_ref(text: str) -> bool:
    """``run``'s argument names an image (not a rootfs directory or bundle on this host)."""
    return not os.path.exists(text) and not text.startswith(("/", "./", "../"))


class ImageRun:
    """What ``run IMAGE`` needs beyond a rootfs run: the image (pulled per --pull), its config,
    a snapshot of the container's own on the image's chain, and its mounts for the task."""

    def __init__(self, ctl, a, name: str):
        from supervisor.gen.containerd.services.images.v1 import images_pb2
        self.ctl, self.name = ctl, name
        self.snapshotter = "overlayfs"
        stub = _images_stub(ctl)
        ref = a.image
        image = None
        if a.pull != "always":
            image = self._get(stub, images_pb2, ref)
        if image is None:
            if a.pull == "never":
                raise ImageError(f"no such image: {ref} (and --pull never)")
            cmd_pull(ctl, argparse.Namespace(ref=ref, plain_http=a.plain_http, platform=""))
            image = self._get(stub, images_pb2, ref) or self._get(stub, images_pb2,
                                                                  _normalized(ref))
        self.image = image
        self.config, self.chain = self._config(image.target)
        self.mounts = None

    def _get(self, stub, images_pb2, ref):
        try:
            return stub.Get(images_pb2.GetImageRequest(name=ref), metadata=_md(self.ctl)).image
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def _read(self, digest: str) -> dict:
        from supervisor.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
        stub = content_pb2_grpc.ContentStub(self.ctl.client.channel)
        data = b"".join(r.data for r in stub.Read(content_pb2.ReadContentRequest(digest=digest),
                                                   metadata=_md(self.ctl)))
        return json.loads(data)

    def _config(self, target) -> tuple[dict, str]:
        doc = self._read(target.digest)
        if "manifests" in doc:
            want = "amd64" if os.uname().machine == "x86_64" else os.uname().machine
            picks = [m for m in doc["manifests"]
                     if (m.get("platform") or {}).get("architecture") == want]
            if not picks:
                raise ImageError(f"{self.image.name}: no manifest for linux/{want}")
            doc = self._read(picks[0]["digest"])
        config = self._read(doc["config"]["digest"])
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        chain = ""
        for d in diff_ids:
            chain = d if not chain else \
                "sha256:" + _sha256(f"{chain} {d}".encode())
        return config.get("config") or {}, chain

    def base_spec(self, a) -> dict:
        """The OCI spec from the image config (Entrypoint + Cmd, Env, WorkingDir, User), for
        ctl to put the run options on; the container's snapshot is prepared here."""
        from supervisor import spec as specmod
        self.prepare()
        cfg = self.config
        entry = list(cfg.get("Entrypoint") or [])
        if entry and a.command and not getattr(a, "entrypoint", ""):
            a.command = entry + list(a.command)  # a command replaces Cmd, not the Entrypoint
        spec = specmod.default_spec("rootfs", entry + list(cfg.get("Cmd") or []),
                                    self.name[:12])
        spec["process"]["env"] = list(cfg.get("Env") or [specmod.DEFAULT_PATH])
        spec["process"]["cwd"] = cfg.get("WorkingDir") or "/"
        if cfg.get("User") and not a.user:
            spec["process"]["user"] = specmod.parse_user(self._numeric_user(cfg["User"]))
        return spec

    def _numeric_user(self, user: str) -> str:
        """``name[:group]`` resolved in the image's /etc/passwd and /etc/group."""
        if not user or all(p.isdigit() for p in user.split(":")):
            return user
        name, _, group = user.partition(":")
        uid = gid = None
        for line in self._image_file("etc/passwd").splitlines():
            f = line.split(":")
            if len(f) > 3 and (f[0] == name or f[2] == name):
                uid, gid = f[2], f[3]
        if uid is None:
            raise ImageError(f"user {name!r}: not in the image's /etc/passwd")
        if group:
            gid = group if group.isdigit() else next(
                (g.split(":")[2] for g in self._image_file("etc/group").splitlines()
                 if g.split(":")[0] == group), gid)
        return f"{uid}:{gid}"

    def _image_file(self, rel: str) -> str:
        """A file of the prepared snapshot, read from its layer directories (top first)."""
        dirs = []
        for m in self.mounts or []:
            if m.type == "bind":
                dirs.append(m.source)
            for opt in m.options:
                if opt.startswith(("upperdir=", "lowerdir=")):
                    dirs += opt.split("=", 1)[1].split(":")
        for d in dirs:
            path = os.path.join(d, rel)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, errors="replace") as f:
                    return f.read()
        return ""

    def prepare(self) -> list:
        from supervisor.gen.containerd.services.snapshots.v1 import (snapshots_pb2,
                                                                     snapshots_pb2_grpc)
        stub = snapshots_pb2_grpc.SnapshotsStub(self.ctl.client.channel)
        self.mounts = list(stub.Prepare(snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=self.snapshotter, key=self.name, parent=self.chain),
            metadata=_md(self.ctl)).mounts)
        return self.mounts

    def create_container(self, spec: dict, labels: dict, runtime_binary: str) -> None:
        from google.protobuf import any_pb2
        from supervisor.client import RUNTIME_NAME, SPEC_URL, json_any
        from supervisor.gen.containerd.services.containers.v1 import containers_pb2
        c = containers_pb2.Container(id=self.name, labels=labels, image=self.image.name,
                                     spec=json_any(SPEC_URL, spec),
                                     snapshotter=self.snapshotter, snapshot_key=self.name)
        c.runtime.name = RUNTIME_NAME
        if runtime_binary:
            from supervisor.gen.containerd.runc.v1 import options_pb2
            opts = options_pb2.Options(binary_name=runtime_binary)
            c.runtime.options.CopyFrom(any_pb2.Any(type_url="containerd.runc.v1.Options",
                                                   value=opts.SerializeToString()))
        try:
            return self.ctl.client.containers.Create(
                containers_pb2.CreateContainerRequest(container=c)).container
        except BaseException:
            remove_snapshot(self.ctl, c)
            raise


def rootfs_of(ctl, cid: str) -> list:
    """The task's rootfs mounts: those of the container's snapshot, if it has one."""
    run = getattr(ctl, "_image_run", None)
    if run is not None and run.name == cid and run.mounts is not None:
        return run.mounts
    try:
        c = ctl.client.containers.Get(ctl.cpb.GetContainerRequest(id=cid)).container
    except grpc.RpcError:
        return []
    if not c.snapshot_key:
        return []
    from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
    stub = snapshots_pb2_grpc.SnapshotsStub(ctl.client.channel)
    return list(stub.Mounts(snapshots_pb2.MountsRequest(
        snapshotter=c.snapshotter or "overlayfs", key=c.snapshot_key), metadata=_md(ctl)).mounts)


def remove_snapshot(ctl, container) -> None:
    """After a container is deleted: its own snapshot goes too (what ``rm`` promises)."""
    if not container.snapshot_key:
        return
    from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
    stub = snapshots_pb2_grpc.SnapshotsStub(ctl.client.channel)
    try:
        stub.Remove(snapshots_pb2.RemoveSnapshotRequest(
            snapshotter=container.snapshotter or "overlayfs", key=container.snapshot_key),
            metadata=_md(ctl))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise


def _normalized(ref: str) -> str:
    from supervisor.images.remote import parse_reference
    return parse_reference(ref).name



# -- inspect, save, load ----------------------------------------------------------------------------

def _content(ctl):
    from supervisor.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
    return content_pb2, content_pb2_grpc.ContentStub(ctl.client.channel)


def _read_blob(ctl, digest: str) -> bytes:
    content_pb2, stub = _content(ctl)
    return b"".join(r.data for r in stub.Read(content_pb2.ReadContentRequest(digest=digest),
                                              metadata=_md(ctl)))


def _get_image(ctl, ref: str):
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    try:
        return _images_stub(ctl).Get(images_pb2.GetImageRequest(name=ref), metadata=_md(ctl)).image
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            raise ImageError(f"no such image: {ref}") from None
        raise


def _walk(ctl, digest: str, media: str, out: list) -> None:
    """Every blob the descriptor reaches that this namespace holds (indexes may list
    platforms that were never pulled), depth first."""
    content_pb2, stub = _content(ctl)
    try:
        stub.Info(content_pb2.InfoRequest(digest=digest), metadata=_md(ctl))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return
        raise
    out.append((digest, media))
    if media.endswith("json") and ("manifest" in media or "index" in media):
        doc = json.loads(_read_blob(ctl, digest))
        for child in doc.get("manifests", []) + ([doc["config"]] if "config" in doc else []) \
                + doc.get("layers", []):
            _walk(ctl, child["digest"], child.get("mediaType", ""), out)


def cmd_image(ctl, a) -> int:
    """``image inspect REF...``: the record, the manifest for this host and the config."""
    out = []
    for ref in a.refs:
        img = _get_image(ctl, ref)
        doc = json.loads(_read_blob(ctl, img.target.digest))
        entry = {"Name": img.name, "Digest": img.target.digest,
                 "MediaType": img.target.media_type, "Labels": dict(img.labels)}
        if "manifests" in doc:
            entry["Index"] = doc
            arch = "amd64" if os.uname().machine == "x86_64" else os.uname().machine
            picks = [m for m in doc["manifests"]
                     if (m.get("platform") or {}).get("architecture") == arch]
            doc = json.loads(_read_blob(ctl, picks[0]["digest"])) if picks else {}
        entry["Manifest"] = doc
        if doc.get("config"):
            entry["Config"] = json.loads(_read_blob(ctl, doc["config"]["digest"]))
        out.append(entry)
    print(json.dumps(out, indent=2))
    return 0


def cmd_save(ctl, a) -> int:
    """``save -o FILE REF...``: an OCI image layout tarball (with each name in index.json)."""
    import io
    import tarfile
    manifests, blobs = [], []
    for ref in a.refs:
        img = _get_image(ctl, ref)
        manifests.append({"mediaType": img.target.media_type, "digest": img.target.digest,
                          "size": img.target.size,
                          "annotations": {"io.containerd.image.name": img.name,
                                          "org.opencontainers.image.ref.name":
                                              img.name.rsplit(":", 1)[-1]}})
        _walk(ctl, img.target.digest, img.target.media_type, blobs)
    out = open(a.output, "wb") if a.output != "-" else sys.stdout.buffer
    try:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            def add(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
            add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            add("index.json", json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())
            seen = set()
            for digest, _ in blobs:
                if digest not in seen:
                    seen.add(digest)
                    add("blobs/sha256/" + digest[7:], _read_blob(ctl, digest))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def cmd_load(ctl, a) -> int:
    """``load -i FILE``: an OCI layout tarball (``save``'s, ``ctr images export``'s) or a
    ``docker save`` archive; blobs written with their digests checked by the store, images
    created, and layers unpacked by the supervisor (Snapshots + Diff.Apply)."""
    import tarfile
    src = open(a.input, "rb") if a.input != "-" else sys.stdin.buffer
    with src, tarfile.open(fileobj=src, mode="r|*") as tar:
        files = {}
        for ti in tar:
            if ti.isreg():
                files[ti.name.lstrip("./")] = tar.extractfile(ti).read()
    if "index.json" in files:
        images = _load_oci(ctl, files)
    elif "manifest.json" in files:
        images = _load_docker(ctl, files)
    else:
        raise ImageError(f"{a.input}: neither an OCI layout nor a docker archive")
    for name, target in images:
        _create_or_update(ctl, name, target)
        _unpack(ctl, target)
        print(name)
    return 0


def _put(ctl, data: bytes, labels: dict | None = None) -> str:
    content_pb2, stub = _content(ctl)
    digest = "sha256:" + _sha256(data)
    msgs = [content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="load-" + digest,
                                            total=len(data), expected=digest, data=data,
                                            labels=labels or {})]
    try:
        list(stub.Write(iter(msgs), metadata=_md(ctl)))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        if labels:
            stub.Update(content_pb2.UpdateRequest(info=content_pb2.Info(digest=digest,
                                                                        labels=labels)),
                        metadata=_md(ctl))
    return digest


def _load_oci(ctl, files: dict) -> list:
    index = json.loads(files["index.json"])
    blobs = {("sha256:" + n.rsplit("/", 1)[-1]): d for n, d in files.items()
             if n.startswith("blobs/sha256/")}
    for digest, data in blobs.items():
        if "sha256:" + _sha256(data) != digest:
            raise ImageError(f"blob {digest}: digest mismatch")
    # Children first, each parent labelled with its children (the gc references).
    def store(digest):
        data = blobs.get(digest)
        if data is None:
            return False
        labels = {}
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "schemaVersion" in doc:  # an index or a manifest
            kids = [("m", m) for m in doc.get("manifests", [])]
            kids += [("config", doc["config"])] if isinstance(doc.get("config"), dict) else []
            kids += [("l", l) for l in doc.get("layers", [])]
            for i, (kind, child) in enumerate(kids):
                if store(child["digest"]):
                    key = "config" if kind == "config" else f"{kind}.{i}"
                    labels[f"containerd.io/gc.ref.content.{key}"] = child["digest"]
        _put(ctl, data, labels)
        return True
    out = []
    for m in index.get("manifests", []):
        ann = m.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        if not name:
            continue
        store(m["digest"])
        out.append((name, m))
    return out


def _load_docker(ctl, files: dict) -> list:
    out = []
    for entry in json.loads(files["manifest.json"]):
        config = files[entry["Config"]]
        layers = []
        for path in entry["Layers"]:
            data = files[path]
            media = "application/vnd.docker.image.rootfs.diff.tar"
            if data[:2] == b"\x1f\x8b":
                media += ".gzip"
            layers.append({"mediaType": media, "digest": _put(ctl, data), "size": len(data)})
        cdigest = _put(ctl, config)
        manifest = {"schemaVersion": 2,
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "digest": cdigest, "size": len(config)}, "layers": layers}
        data = json.dumps(manifest).encode()
        labels = {"containerd.io/gc.ref.content.config": cdigest}
        labels.update({f"containerd.io/gc.ref.content.l.{i}": l["digest"]
                       for i, l in enumerate(layers)})
        digest = _put(ctl, data, labels)
        target = {"mediaType": manifest["mediaType"], "digest": digest, "size": len(data)}
        for tag in entry.get("RepoTags") or []:
            out.append((_normalized(tag), target))
    return out


def _create_or_update(ctl, name: str, target: dict) -> None:
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    from supervisor.gen.containerd.types import descriptor_pb2
    img = images_pb2.Image(name=name, target=descriptor_pb2.Descriptor(
        media_type=target.get("mediaType", ""), digest=target["digest"],
        size=target.get("size", 0)))
    stub = _images_stub(ctl)
    try:
        stub.Create(images_pb2.CreateImageRequest(image=img), metadata=_md(ctl))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        stub.Update(images_pb2.UpdateImageRequest(image=img), metadata=_md(ctl))


def _unpack(ctl, target: dict) -> None:
    """Layers into committed snapshots named by chain ID, as containerd's unpacker does."""
    import secrets
    from supervisor.gen.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
    from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
    from supervisor.gen.containerd.types import descriptor_pb2
    doc = json.loads(_read_blob(ctl, target["digest"]))
    if "manifests" in doc:
        arch = "amd64" if os.uname().machine == "x86_64" else os.uname().machine
        picks = [m for m in doc["manifests"]
                 if (m.get("platform") or {}).get("architecture") == arch]
        if not picks:
            return
        doc = json.loads(_read_blob(ctl, picks[0]["digest"]))
    config = json.loads(_read_blob(ctl, doc["config"]["digest"]))
    ss = snapshots_pb2_grpc.SnapshotsStub(ctl.client.channel)
    ds = diff_pb2_grpc.DiffStub(ctl.client.channel)
    md = _md(ctl)
    parent = ""
    for layer, diff_id in zip(doc["layers"], config["rootfs"]["diff_ids"]):
        chain = diff_id if not parent else \
            "sha256:" + _sha256(f"{parent} {diff_id}".encode())
        try:
            ss.Stat(snapshots_pb2.StatSnapshotRequest(snapshotter="overlayfs", key=chain),
                    metadata=md)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            key = f"extract-{secrets.token_hex(6)} {chain}"
            mounts = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(
                snapshotter="overlayfs", key=key, parent=parent), metadata=md).mounts
            try:
                applied = ds.Apply(diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(
                    media_type=layer["mediaType"], digest=layer["digest"], size=layer["size"]),
                    mounts=mounts), metadata=md).applied
                if applied.digest != diff_id:
                    raise ImageError(f"layer {layer['digest']}: diff ID {applied.digest}, the "
                                     f"config says {diff_id}")
                ss.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter="overlayfs",
                                                              name=chain, key=key), metadata=md)
            except BaseException:
                ss.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=key),
                          metadata=md)
                raise
        parent = chain
    content_pb2, stub = _content(ctl)
    stub.Update(content_pb2.UpdateRequest(
        info=content_pb2.Info(digest=doc["config"]["digest"],
                              labels={"containerd.io/gc.ref.snapshot.overlayfs": parent}),
        update_mask={"paths": ["labels.containerd.io/gc.ref.snapshot.overlayfs"]}),
        metadata=md)
