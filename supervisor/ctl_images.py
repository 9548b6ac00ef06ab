"""pyrunc-ctl's image commands: pull, images (ls), rmi, tag.

``pull`` asks the daemon to pull (pyrunc.services.pull.v1: the daemon talks to the registry) and
shows progress — on a terminal one line per blob with bytes and speed, redrawn in place;
otherwise one line per finished blob. ``images``, ``rmi`` and ``tag`` are containerd's Images
service; ``rmi`` collects garbage synchronously, so the image's blobs and snapshots are gone when
it returns.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import grpc


class ImageError(Exception):
    """A one-line error of an image command (pyrunc-ctl prints it and exits 125)."""


def add_parsers(add) -> None:
    p = add("pull", help="pull an image (the supervisor fetches and unpacks it)")
    p.add_argument("--plain-http", action="store_true", help="plain HTTP to a localhost registry")
    p.add_argument("--platform", default="", help="os/arch (default: the host's)")
    p.add_argument("ref")
    p = add("images", help="list images")
    p.add_argument("-q", "--quiet", action="store_true")
    p = add("rmi", help="remove images (and, by garbage collection, what only they used)")
    p.add_argument("refs", nargs="+")
    p = add("tag", help="give an image another name")
    p.add_argument("source")
    p.add_argument("target")


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
    from supervisor.ctl import _bytes
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
    from supervisor.ctl import _bytes, _table
    from supervisor.gen.containerd.services.images.v1 import images_pb2
    images = _images_stub(ctl).List(images_pb2.ListImagesRequest(), metadata=_md(ctl)).images
    if a.quiet:
        for img in images:
            print(img.name)
        return 0
    _table(("REF", "DIGEST", "SIZE"),
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
                "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
        return config.get("config") or {}, chain

    def spec(self, a) -> dict:
        """The OCI spec from the image config (Entrypoint, Cmd, Env, WorkingDir, User) with
        the run options on top."""
        from supervisor import spec as specmod
        cfg = self.config
        args = list(cfg.get("Entrypoint") or []) + (list(a.command) or list(cfg.get("Cmd") or []))
        spec = specmod.default_spec("rootfs", args, self.name)
        spec["process"]["env"] = list(cfg.get("Env") or [specmod.DEFAULT_PATH])
        spec["process"]["cwd"] = cfg.get("WorkingDir") or "/"
        user = a.user or cfg.get("User") or ""
        return specmod.apply_options(spec, env=a.env, user=self._numeric_user(user),
                                     cwd=a.workdir, volumes=a.volume, terminal=a.tty,
                                     cgroups_path=f"/{self.ctl.args.namespace}/{self.name}")

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
        self.ctl.client.containers.Create(containers_pb2.CreateContainerRequest(container=c))


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

