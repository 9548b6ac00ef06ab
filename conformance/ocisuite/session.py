"""A Session is one runtime under test: its temp tree, its containers, its cleanup.

Everything a check creates goes through the session (bundles, containers,
namespace holders, host mounts) and is registered for cleanup, which runs after
every check whatever its outcome: `delete --force` for containers, SIGKILL for
helper processes, lazy unmounts, then removal of the bundle directories.

Temp tree (mode 0755 so user-namespaced containers can reach their rootfs):
    <workdir>/root       the runtime's --root
    <workdir>/scratch    captured output of runtime calls
    <workdir>/b-N        bundles
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import host, spec
from .bundle import Bundle, RootfsBuilder, baseline_config
from .registry import Failed, Refused
from .runtime import Result, Runtime


class Session:
    def __init__(self, runtime: str, spec_dir: Path | None = None,
                 tmp_parent: str | None = None, keep: bool = False):
        """runtime: the binary, optionally followed by global options of its own
        ("runc --systemd-cgroup"); a bare name is looked up in PATH."""
        binary, *options = shlex.split(runtime)
        binary = os.path.abspath(binary) if os.sep in binary else (shutil.which(binary) or binary)
        self.runtime_path = shlex.join([binary, *options])
        self.spec = spec.Spec(spec_dir)
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="ocisuite-", dir=tmp_parent))
        os.chmod(self.workdir, 0o755)
        for sub in ("root", "scratch"):
            (self.workdir / sub).mkdir(mode=0o755)
        self.runtime = Runtime(binary, self.workdir / "root", self.workdir / "scratch", options)
        self.rootfs = RootfsBuilder(self.workdir)
        self.token = f"{os.getpid() % 100000}{int(time.time()) % 1000:03d}"
        self._seq = itertools.count(1)
        self._cleanups: list[Callable[[], None]] = []
        self._diags: list[str] = []
        self._cache: dict[str, object] = {}
        self.current = None

    # -- per-check bookkeeping ------------------------------------------------------

    def begin_check(self, chk) -> None:
        self.current = chk
        self._diags = []
        self._cleanups = []
        self.runtime.calls = []

    def end_check(self) -> None:
        """Undo what the check set up; then kill any process still living in the
        session's tree (a container whose runtime was killed on a time-out)."""
        errors = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning; report at the end
                errors.append(f"{type(exc).__name__}: {exc}")
        strays = host.processes_inside(self.workdir)
        for pid in strays:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if strays:
            self.diag(f"cleanup: killed processes left inside the bundles: {strays}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def defer(self, fn: Callable[[], None]) -> None:
        """Run fn when the current check ends (last registered runs first)."""
        self._cleanups.append(fn)

    def diag(self, message: str) -> None:
        self._diags.extend(str(message).splitlines() or [""])

    def take_diags(self, include_calls: bool) -> list[str]:
        lines = list(self._diags)
        if include_calls and self.runtime.calls:
            lines.append("runtime calls:")
            lines.extend("  " + r.summary() for r in self.runtime.calls[-12:])
        self._diags = []
        return lines

    def close(self) -> None:
        self.end_check()
        host.remove_cgroups_named(f"ocisuite-{self.token}-")
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- cache for probes shared by several checks -------------------------------

    def cached(self, key: str, compute: Callable[[], object]):
        """compute() once per session; a failure or refusal is remembered and raised again."""
        if key not in self._cache:
            try:
                self._cache[key] = compute()
            except (Failed, Refused) as exc:
                self._cache[key] = exc
        value = self._cache[key]
        if isinstance(value, (Failed, Refused)):
            raise type(value)(str(value))
        return value

    # -- bundles and containers -----------------------------------------------------

    def new_id(self) -> str:
        return f"ocisuite-{self.token}-{next(self._seq)}"

    def bundle(self, args: list[str] | None = None) -> Bundle:
        path = self.workdir / f"b-{next(self._seq)}"
        path.mkdir(mode=0o755)
        self.rootfs.build(path / "rootfs")
        if not self.keep:
            self.defer(lambda: shutil.rmtree(path, ignore_errors=True))
        return Bundle(path, baseline_config(args))

    def container(self, bundle: Bundle, cid: str | None = None) -> "Container":
        c = Container(self, bundle, cid or self.new_id())
        self.defer(c.force_delete)
        return c

    def base_probe(self):
        """Whether the baseline container runs at all (used to tell a refusal of
        one field apart from a runtime that cannot run anything)."""
        def compute():
            b = self.bundle()
            b.set_script("echo baseline-ok")
            out = self.container(b).run()
            if "baseline-ok" not in out:
                raise Failed(f"baseline container printed {out!r}")
            return True
        return self.cached("base-probe", compute)

    # -- host-side helpers ---------------------------------------------------------------

    def spawn(self, argv: list[str]) -> subprocess.Popen:
        """A helper process on the host, killed when the check ends."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

        def stop():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        self.defer(stop)
        return proc

    def mount(self, *args: str, target: str) -> None:
        """`mount args... target` on the host; lazily unmounted when the check ends."""
        subprocess.run(["mount", *args, target], check=True, capture_output=True, timeout=10)
        self.defer(lambda: subprocess.run(["umount", "-l", target], capture_output=True,
                                          timeout=10))


class Container:
    """One container of the runtime under test; its stdio goes to <bundle>/stdio.log."""

    def __init__(self, session: Session, bundle: Bundle, cid: str):
        self.session = session
        self.rt = session.runtime
        self.bundle = bundle
        self.id = cid
        self.log = bundle.path / "stdio.log"
        self.deleted = False

    # -- operations -----------------------------------------------------------------

    def create(self, write: bool = True, bundle_arg=None, **kw) -> Result:
        """create; the runtime's stdio is the container's (the log), so a failed
        create gets what it printed there as its error text."""
        if write:
            self.bundle.write()
        with open(self.log, "ab") as f:
            before = f.tell()
            res = self.rt.create(self.id, bundle_arg or self.bundle.path, stdout=f, stderr=f, **kw)
        if not res.ok:
            with open(self.log, "rb") as f:
                f.seek(before)
                res.err = f.read().decode("utf-8", "replace")
        return res

    def start(self) -> Result:
        return self.rt.start(self.id)

    def kill(self, sig) -> Result:
        return self.rt.kill(self.id, sig)

    def delete(self, force: bool = False) -> Result:
        res = self.rt.delete(self.id, force=force)
        self.deleted = res.ok
        return res

    def state(self) -> dict | None:
        return self.rt.state(self.id)[1]

    def status(self) -> str | None:
        st = self.state()
        return st.get("status") if st else None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def force_delete(self) -> None:
        """Cleanup: `delete --force`, unless this container was deleted already."""
        if not self.deleted:
            self.rt.run("delete", "--force", self.id, timeout=15)

    # -- compound steps used by many checks ----------------------------------------

    def wait_status(self, wanted: str, timeout: float = 10.0) -> dict | None:
        """Poll `state` until status == wanted; the last state seen otherwise."""
        deadline = time.monotonic() + timeout
        st = None
        while True:
            st = self.state()
            if st and st.get("status") == wanted:
                return st
            if time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def must_create(self, **kw) -> None:
        res = self.create(**kw)
        if not res.ok:
            raise Failed(f"create failed: {_tail(self.output() or res.err)}")

    def must_start(self) -> None:
        res = self.start()
        if not res.ok:
            raise Failed(f"start failed: {_tail(res.err or res.out)}")

    def run(self, timeout: float = 15.0, delete: bool = True, **create_kw) -> str:
        """create, start, wait until stopped, (delete); the container's output."""
        self.must_create(**create_kw)
        self.must_start()
        st = self.wait_status("stopped", timeout)
        if not st or st.get("status") != "stopped":
            raise Failed(f"container did not stop within {timeout:.0f}s (state {st}); "
                         f"output: {_tail(self.output())}")
        if delete:
            self.delete()
        return self.output()


def _tail(text: str, lines: int = 3) -> str:
    parts = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(parts[-lines:])[:400] or "(no output)"
