"""The daemon's pull: resolve a reference at its registry, fetch what the platform needs into the
content store, record the image, unpack its layers into snapshots.

1. The manifest (or index) by tag or digest; an index / manifest list picks the platform
   (linux/<host arch> by default; "no such platform" otherwise).
2. The config and the layers are fetched in parallel (a few threads), each streamed into a
   content-store ingest with its expected digest and size — the store verifies both on commit,
   and a blob already held is skipped. A resumed ingest asks the registry for the rest (Range).
   Unpacking (5.) runs alongside: each layer is applied as soon as it and those below it are in.
3. containerd's gc labels tie it together: the index names the manifest
   (``gc.ref.content.m.N``), the manifest its config and layers, the config its unpacked chain
   (``gc.ref.snapshot.<snapshotter>``), so the image is one root for garbage collection.
4. The image record is created (or updated to the new target).
5. Unpack: for each layer, the snapshot named by its chain ID is reused if committed, otherwise
   prepared on its parent, the layer applied (supervisor/diff/apply.py), its diff ID checked
   against the config, and committed. A failure removes the half-made snapshot.

Everything is done under a lease (with an expiry), deleted at the end, so a pull killed half-way
leaves only leased leftovers that garbage collection removes once the lease is gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform as platform_mod
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from supervisor.diff.apply import LayerError, apply_layer
from supervisor.errors import AlreadyExists, NotFound, SupervisorError
from supervisor.images.remote import INDEX_TYPES, Registry, RegistryError, parse_reference
from supervisor.snapshots.store import ACTIVE

CHUNK = 1 << 20
PARALLEL = 3
LAYER_TYPES = ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.diff.")
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64"}


class PullError(Exception):
    """A failed pull; ``reason`` as RegistryError's ("unauthorized", "not found", ...)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def host_platform() -> str:
    return "linux/" + ARCH.get(platform_mod.machine(), platform_mod.machine())


def chain_ids(diff_ids: list[str]) -> list[str]:
    out = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class Puller:
    """One pull; ``progress(event: dict)`` is called from worker threads as bytes arrive."""

    def __init__(self, services, ns: str, ref: str, plain_http: bool = False,
                 platform: str = "", snapshotter: str = "overlayfs", unpack: bool = True,
                 progress=None, hosts=None):
        self.content = services.get("content")
        self.images = services.get("images")
        self.leases = services.get("leases")
        self.snapshots = services.get("snapshotters")[snapshotter]
        self.store = services.get("store")
        self.ns, self.snapshotter, self.unpack = ns, snapshotter, unpack
        self.platform = platform or host_platform()
        try:
            self.ref = parse_reference(ref)
        except RegistryError as e:
            raise PullError(str(e)) from None
        config = (hosts or {}).get(self.ref.host)
        certs_dir = services.get("settings")["pull.certs_dir"] \
            if "settings" in services.names() else ""
        self.registry = Registry(self.ref, config, plain_http, certs_dir)
        self.progress = progress or (lambda event: None)
        self.lease = "pull-" + secrets.token_hex(8)

    def run(self) -> dict:
        """Pull; the image record as a dict (name, target)."""
        self.store.ns_ensure(self.ns)
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 24 * 3600))
        self.leases.create(self.ns, self.lease, {"containerd.io/gc.expire": expire})
        try:
            return self._pull()
        except RegistryError as e:
            raise PullError(str(e), e.reason) from None
        except SupervisorError as e:
            raise PullError(f"{self.ref.name}: {e}") from None
        except OSError as e:  # a full disk, most likely: the lease's leftovers are garbage
            raise PullError(f"{self.ref.name}: {e.strerror or e}") from None
        finally:
            self.leases.delete(self.ns, self.lease)

    def _pull(self) -> dict:
        media, body = self.registry.manifest(self.ref.object)
        root = {"media_type": media, "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                "size": len(body), "annotations": {}}
        if self.ref.digest and root["digest"] != self.ref.digest:
            raise PullError(f"{self.ref.name}: digest mismatch: the registry served "
                            f"{root['digest']}")
        manifest_desc, manifest_body = root, body
        root_labels = {}
        if media in INDEX_TYPES:
            manifest_desc = self._pick(json.loads(body))
            _, manifest_body = self.registry.manifest(manifest_desc["digest"])
            if "sha256:" + hashlib.sha256(manifest_body).hexdigest() != manifest_desc["digest"]:
                raise PullError(f"{self.ref.name}: manifest {manifest_desc['digest']}: "
                                "digest mismatch")
            root_labels["containerd.io/gc.ref.content.m.0"] = manifest_desc["digest"]
        manifest = json.loads(manifest_body)
        layers = [l for l in manifest.get("layers", [])]
        for l in layers:
            if not l.get("mediaType", "").startswith(LAYER_TYPES):
                raise PullError(f"{self.ref.name}: unsupported media type {l.get('mediaType')!r}")
        config_desc = manifest["config"]
        blobs = [config_desc] + layers
        with ThreadPoolExecutor(PARALLEL) as pool:
            fetches = [pool.submit(self._fetch, b) for b in blobs]
            try:
                fetches[0].result()
                config = json.loads(self._read(config_desc["digest"]))
                # Unpacking starts with the first layer while later ones still download.
                chain = self._unpack(layers, config.get("rootfs", {}).get("diff_ids", []),
                                     fetches[1:]) if self.unpack else ""
                for f in fetches:
                    f.result()
            except BaseException:
                for f in fetches:
                    f.cancel()
                raise
        m_labels = {"containerd.io/gc.ref.content.config": config_desc["digest"]}
        m_labels.update({f"containerd.io/gc.ref.content.l.{i}": l["digest"]
                         for i, l in enumerate(layers)})
        if manifest_desc is not root:
            self._store_bytes(manifest_body, manifest_desc["digest"], m_labels)
            self._store_bytes(body, root["digest"], root_labels)
        else:
            self._store_bytes(body, root["digest"], m_labels)
        if chain:
            self._label(config_desc["digest"],
                        {f"containerd.io/gc.ref.snapshot.{self.snapshotter}": chain})
        try:
            self.images.create(self.ns, self.ref.name, {}, root)
        except AlreadyExists:
            self.images.update(self.ns, self.ref.name, {}, root)
        return {"name": self.ref.name, "target": root}

    def _pick(self, index: dict) -> dict:
        want_os, _, want_arch = self.platform.partition("/")
        want_arch, _, want_variant = want_arch.partition("/")
        for m in index.get("manifests", []):
            p = m.get("platform") or {}
            if p.get("os") == want_os and p.get("architecture") == want_arch and \
                    (not want_variant or p.get("variant") == want_variant):
                return {"media_type": m.get("mediaType", ""), "digest": m["digest"],
                        "size": m.get("size", 0)}
        raise PullError(f"{self.ref.name}: no such platform {self.platform} in the index")

    # -- content --------------------------------------------------------------------------------
    def _has(self, digest: str) -> bool:
        try:
            self.content.info(self.ns, digest)
            return True
        except NotFound:
            return False

    def _read(self, digest: str) -> bytes:
        with self.content.open_blob(self.ns, digest) as f:
            return f.read(MAX_CONFIG)

    def _label(self, digest: str, labels: dict) -> None:
        info = self.content.info(self.ns, digest)
        self.content.set_labels(self.ns, digest, dict(info.labels, **labels))

    def _store_bytes(self, data: bytes, digest: str, labels: dict) -> None:
        if self._has(digest):
            if labels:
                self._label(digest, labels)
            return
        w = self.content.writer(self.ns, f"pull-{digest}", len(data), digest, self.lease)
        try:
            w.truncate(0)
            w.write(data)
            w.commit(labels)
        finally:
            w.close()

    def _fetch(self, desc: dict) -> None:
        digest, size = desc["digest"], int(desc.get("size", 0))
        if self._has(digest):
            self.progress({"digest": digest, "offset": size, "total": size, "done": True})
            return
        try:
            w = self.content.writer(self.ns, f"pull-{digest}", size, digest, self.lease)
        except AlreadyExists:
            return
        try:
            conn, resp = self.registry.blob(digest, w.offset)
            try:
                if resp.status != 206 and w.offset:
                    w.truncate(0)
                while True:
                    data = resp.read(CHUNK)
                    if not data:
                        break
                    w.write(data)
                    self.progress({"digest": digest, "offset": w.offset, "total": size})
            except OSError as e:
                raise PullError(f"{self.ref.name}: blob {digest}: {e}") from None
            finally:
                conn.close()
            if w.offset != size:
                raise PullError(f"{self.ref.name}: blob {digest}: truncated at {w.offset} of "
                                f"{size} bytes")
            try:
                w.commit({})
            except SupervisorError as e:
                raise PullError(f"{self.ref.name}: blob {digest}: {e}") from None
            self.progress({"digest": digest, "offset": size, "total": size, "done": True})
        finally:
            w.close()

    # -- unpack ---------------------------------------------------------------------------------
    def _unpack(self, layers: list[dict], diff_ids: list[str], fetches) -> str:
        """Apply the layers in order, each as soon as its download is done; the top chain ID."""
        if len(diff_ids) != len(layers):
            raise PullError(f"{self.ref.name}: the config lists {len(diff_ids)} layers, the "
                            f"manifest {len(layers)}")
        parent = ""
        for layer, chain, diff_id, fetch in zip(layers, chain_ids(diff_ids), diff_ids, fetches):
            try:
                self.snapshots.stat(self.ns, chain)
            except NotFound:
                fetch.result()
                self._apply(layer, chain, parent, diff_id)
            parent = chain
        return parent

    def _apply(self, layer: dict, chain: str, parent: str, diff_id: str) -> None:
        key = f"extract-{secrets.token_hex(6)} {chain}"
        self.snapshots.create(self.ns, key, parent, ACTIVE, {}, self.lease)
        try:
            mounts = self.snapshots.mounts(self.ns, key)
            target = _target(mounts)
            self.progress({"unpack": layer["digest"]})
            with self.content.open_blob(self.ns, layer["digest"]) as f:
                got, _ = apply_layer(f, target[0], target[1])  # verified at its commit
            if got != diff_id:
                raise PullError(f"{self.ref.name}: layer {layer['digest']}: diff ID {got}, the "
                                f"config says {diff_id}")
            self.snapshots.commit(self.ns, chain, key, {}, self.lease)
        except LayerError as e:
            self.snapshots.remove(self.ns, key)
            raise PullError(f"{self.ref.name}: layer {layer['digest']}: {e}") from None
        except BaseException:
            try:
                self.snapshots.remove(self.ns, key)
            except NotFound:
                pass
            raise


MAX_CONFIG = 8 << 20


def _target(mounts: list[dict]) -> tuple[str, str]:
    m = mounts[0]
    if m["type"] == "overlay":
        for opt in m["options"]:
            if opt.startswith("upperdir="):
                return opt[len("upperdir="):], "overlay"
    return m["source"], "native"
