"""pyrunc-ctl's image commands: pull, images (ls), rmi, tag.

``pull`` asks the daemon to pull (pyrunc.services.pull.v1: the daemon talks to the registry) and
shows progress — on a terminal one line per blob with bytes and speed, redrawn in place;
otherwise one line per finished blob. ``images``, ``rmi`` and ``tag`` are containerd's Images
service; ``rmi`` collects garbage synchronously, so the image's blobs and snapshots are gone when
it returns.
"""
from __future__ import annotations

import sys
import time

import grpc


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
    from supervisor.ctl import CtlError
    stub = _images_stub(ctl)
    for i, ref in enumerate(a.refs):
        try:
            stub.Delete(images_pb2.DeleteImageRequest(name=ref, sync=i == len(a.refs) - 1),
                        metadata=_md(ctl))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise CtlError(f"no such image: {ref}") from None
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
