"""A real registry for the image tests: Debian's docker-registry (distribution 2.8) with its own
config file (no auth, or htpasswd), serving on 127.0.0.1 inside a network namespace the test made
(entered with nsenter; nothing touches the host's interfaces), plus test images written as OCI
layouts in Python from busybox-static and pushed with skopeo.

Clients that talk to the registry (skopeo, ctr, the supervisor when it pulls) run inside the same
namespace: ``Registry.run(argv)``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

from sv_layers import Layer, digest
from sv_harness import BUSYBOX, wait_for

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZ_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
APPLETS = ("sh", "echo", "cat", "ls", "true", "false", "id", "stat", "test", "env", "pwd",
           "sleep")


class Registry:
    def __init__(self, port: int = 5000, auth: tuple[str, str] | None = None,
                 tls: tuple[str, str] | None = None, extra: dict | None = None):
        """``tls``: (certificate, key) files to serve HTTPS with; ``extra``: more of the
        registry's config (e.g. ``auth: token:``, storage ``middleware``)."""
        self.base = tempfile.mkdtemp(prefix="svt-reg-", dir="/tmp")
        self.auth = auth
        self.tls = tls
        self.extra = extra or {}
        self.netns = "svt-" + secrets.token_hex(4)
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.proc = None

    def start(self) -> "Registry":
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        config = os.path.join(self.base, "config.yml")
        http = {"addr": self.host}
        if self.tls:
            http["tls"] = {"certificate": self.tls[0], "key": self.tls[1]}
        with open(config, "w") as f:
            json.dump({"version": 0.1, "log": {"level": "error"},
                       "storage": {"filesystem": {"rootdirectory": self.data},
                                   "delete": {"enabled": True}},
                       "http": http, **self._auth_config(), **self.extra}, f)  # JSON is YAML
        log = open(os.path.join(self.base, "registry.log"), "ab")
        self.proc = subprocess.Popen(self.nsenter([REGISTRY, "serve", config]), stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        scheme = "https" if self.tls else "http"
        probe = ["python3", "-c", "import ssl, urllib.request, urllib.error\ntry: urllib.request."
                 f"urlopen('{scheme}://{self.host}/v2/', timeout=5, "
                 "context=ssl._create_unverified_context())\n"
                 "except urllib.error.HTTPError as e: assert e.code == 401"]
        wait_for(lambda: self.proc.poll() is None and subprocess.run(
            self.nsenter(probe), capture_output=True).returncode == 0, 60, step=0.2,
            what="the registry")
        return self

    @property
    def data(self) -> str:
        """The registry's storage root (blobs under docker/registry/v2/blobs)."""
        return os.path.join(self.base, "data")

    def _auth_config(self) -> dict:
        if not self.auth:
            return {}
        import warnings
        with warnings.catch_warnings():  # crypt is deprecated (3.13), and here in Debian 12's 3.11
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # bcrypt ($2b$), which the registry's htpasswd wants
        path = os.path.join(self.base, "htpasswd")
        with open(path, "w") as f:
            f.write(f"{self.auth[0]}:{crypt.crypt(self.auth[1], crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        return {"auth": {"htpasswd": {"realm": "svt", "path": path}}}

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"] + list(argv)

    def run(self, argv, check=True, timeout=120, **kw) -> subprocess.CompletedProcess:
        res = subprocess.run(self.nsenter(argv), capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def push(self, layout: str, name: str, all_platforms: bool = False) -> str:
        """Copy the OCI layout's ``latest`` to ``host/name``; the reference."""
        ref = f"{self.host}/{name}"
        creds = ["--dest-creds", ":".join(self.auth)] if self.auth else []
        self.run([SKOPEO, "copy", "--dest-tls-verify=false", "--insecure-policy"] + creds
                 + (["--all"] if all_platforms else []) + ["--preserve-digests",
                 f"oci:{layout}:latest", f"docker://{ref}"])
        return ref

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
        finally:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            shutil.rmtree(self.base, ignore_errors=True)


# -- OCI layouts written in Python ---------------------------------------------------------------

class Layout:
    """An OCI image layout directory with blobs written as they are added."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def blob(self, data: bytes, media_type: str, **extra) -> dict:
        d = digest(data)
        with open(os.path.join(self.path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return dict({"mediaType": media_type, "digest": d, "size": len(data)}, **extra)

    def json_blob(self, obj, media_type: str, **extra) -> dict:
        return self.blob(json.dumps(obj).encode(), media_type, **extra)

    def image(self, layers: list[tuple[Layer, str]], arch: str = "amd64", config=None) -> dict:
        """A manifest of these layers (each with "gzip" or "zstd"); its descriptor."""
        descs, diff_ids = [], []
        for layer, comp in layers:
            plain = layer.tar_bytes()
            data = layer.gzip() if comp == "gzip" else layer.zstd()
            diff_ids.append(digest(plain))
            descs.append(self.blob(data, GZ_LAYER if comp == "gzip" else ZSTD_LAYER))
        cfg = {"architecture": arch, "os": "linux",
               "config": dict({"Env": ["PATH=/bin"], "Cmd": ["sh"]}, **(config or {})),
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": self.json_blob(cfg, OCI_CONFIG), "layers": descs}
        return self.json_blob(manifest, OCI_MANIFEST,
                              platform={"architecture": arch, "os": "linux"})

    def tag(self, desc: dict, tag: str = "latest") -> None:
        desc = dict(desc, annotations={"org.opencontainers.image.ref.name": tag})
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}, f)

    def index(self, manifests: list[dict]) -> dict:
        return self.json_blob({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": manifests}, OCI_INDEX)


def busybox_layer() -> Layer:
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    layer = Layer().dir("bin").dir("etc").dir("tmp", mode=0o1777)
    layer.file("bin/busybox", binary, mode=0o755)
    for applet in APPLETS:
        layer.symlink(f"bin/{applet}", "busybox")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    return layer


def busybox_image(path: str, extra_layers=(), multi_platform: bool = False, config=None) -> str:
    """An OCI layout at ``path``: busybox plus ``extra_layers`` ((Layer, compression) pairs);
    with ``multi_platform``, ``latest`` is an index of linux/amd64 and linux/arm64 manifests."""
    layout = Layout(path)
    layers = [(busybox_layer(), "gzip")] + list(extra_layers)
    amd64 = layout.image(layers, "amd64", config)
    if multi_platform:
        arm = layout.image([(Layer().file("arm64-only", b"arm"), "gzip")], "arm64")
        layout.tag(layout.index([amd64, arm]))
    else:
        layout.tag(amd64)
    return path
