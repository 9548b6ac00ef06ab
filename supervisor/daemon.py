"""pyrunc-supervisor: the daemon.

An asyncio gRPC server (grpcio) on a unix socket (mode 0600 in a 0700 directory) serving the part
of containerd's v1 API listed in proto/README.md. Metadata (namespaces, containers, leases) is in
sqlite under the persistent root; running containers are tasks, each owned by a pyrunc-shim
process, with their state under the state directory (see core/).

SIGTERM / SIGINT stop the daemon cleanly: the server stops accepting calls, connections to shims
are dropped, and every container keeps running; a later daemon finds them again. The daemon can
also be killed outright (kill -9): the same recovery happens on the next start.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass

DEFAULT_ADDRESS = "/run/pyrunc/supervisor.sock"
DEFAULT_STATE = "/run/pyrunc/supervisor"
DEFAULT_ROOT = "/var/lib/pyrunc"
DEFAULT_RUNTIME = "pyrunc"


@dataclass
class Config:
    address: str = DEFAULT_ADDRESS
    state: str = DEFAULT_STATE
    root: str = DEFAULT_ROOT
    runtime: str = DEFAULT_RUNTIME
    runtime_root: str = ""

    def __post_init__(self):
        self.runtime_root = self.runtime_root or os.path.join(self.state, "runtime")


class DaemonError(Exception):
    pass


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _claim_socket(path: str) -> None:
    """Remove a stale socket file; refuse if a live server answers on it."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise DaemonError(f"listen {path}: a server is already running there")


def _load_uuid(root: str) -> str:
    path = os.path.join(root, "uuid")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        with open(path, "w") as f:
            f.write(value)
        return value


class Daemon:
    def __init__(self, config: Config):
        from supervisor.core.tasks import TaskManager
        from supervisor.events import Exchange
        from supervisor.metadata.leases import Leases
        from supervisor.metadata.store import Store
        from supervisor.services import Registry
        self.config = config
        for d in (os.path.dirname(config.address), config.state, config.root):
            _private_dir(d)
        store = Store(os.path.join(config.root, "meta.db"))
        events = Exchange()
        self.services = Registry(
            config=config, uuid=_load_uuid(config.root), store=store, leases=Leases(store),
            events=events,
            tasks=TaskManager(config.state, config.runtime, config.runtime_root, events))
        self.server = None
        self.collector = None
        self.restarts = None

    async def start(self) -> None:
        import grpc
        import prctl
        from supervisor import api
        from supervisor.shimclient import REAPER
        _claim_socket(self.config.address)
        prctl.set_child_subreaper(True)
        REAPER.install(asyncio.get_running_loop())
        await self.services.get("tasks").open()
        from supervisor.core.restart import RestartMonitor
        self.restarts = RestartMonitor(self.services.get("store"), self.services.get("tasks"),
                                       self.services.get("events"))
        self.restarts.start()  # restart policies (after recovery: it knows the tasks)
        self.collector = asyncio.get_running_loop().create_task(self._collect_leases())
        self.server = grpc.aio.server()
        api.register(self.server, self.services)
        old = os.umask(0o177)  # the socket is created 0600
        try:
            self.server.add_insecure_port("unix://" + self.config.address)
            await self.server.start()
        finally:
            os.umask(old)
        os.chmod(self.config.address, 0o600)

    async def _collect_leases(self) -> None:
        """Expired leases go at their expiry (and at the latest a minute after one is added)."""
        leases = self.services.get("leases")
        while True:
            leases.collect()
            nxt = leases.next_expiry()
            await asyncio.sleep(60 if nxt is None else min(60, max(0.0, nxt - time.time())))

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1)
        if self.collector is not None:
            self.collector.cancel()
        if self.restarts is not None:
            await self.restarts.stop()
        await self.services.get("tasks").close()
        self.services.get("store").close()
        try:
            os.unlink(self.config.address)
        except FileNotFoundError:
            pass


async def serve(config: Config, ready=None) -> None:
    daemon = Daemon(config)
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    await stop.wait()
    await daemon.stop()
    # Drop our signal handlers while the loop can still take them: asyncio closes its wakeup
    # pipe before it removes them, and a late SIGCHLD (a spare shim exiting) would hit it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        loop.remove_signal_handler(sig)


def resolve_runtime(name: str) -> str:
    """A bare runtime name is looked up on PATH, then next to this interpreter (the venv's bin,
    where ``pyrunc`` is installed); paths are taken as given."""
    if "/" in name:
        return os.path.abspath(name)
    import shutil
    found = shutil.which(name)
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else name


def parse_args(argv=None) -> Config:
    ap = argparse.ArgumentParser(prog="pyrunc-supervisor",
                                 description="containerd-compatible container supervisor")
    ap.add_argument("--address", "-a", default=os.environ.get("PYRUNC_SUPERVISOR_ADDRESS",
                                                              DEFAULT_ADDRESS),
                    help="gRPC unix socket (default %(default)s)")
    ap.add_argument("--state", default=DEFAULT_STATE,
                    help="runtime state: task bundles, shim sockets (default %(default)s)")
    ap.add_argument("--root", default=DEFAULT_ROOT,
                    help="persistent data: metadata database (default %(default)s)")
    ap.add_argument("--runtime", default=os.environ.get("PYRUNC_SUPERVISOR_RUNTIME",
                                                        DEFAULT_RUNTIME),
                    help="default OCI runtime binary, runc-compatible (default %(default)s)")
    ap.add_argument("--runtime-root", default="",
                    help="the runtime's --root, per namespace below it (default STATE/runtime)")
    args = ap.parse_args(argv)
    paths = [os.path.abspath(p) for p in (args.address, args.state, args.root)]
    runtime_root = os.path.abspath(args.runtime_root) if args.runtime_root else ""
    return Config(paths[0], paths[1], paths[2], resolve_runtime(args.runtime), runtime_root)


def main(argv=None) -> int:
    config = parse_args(argv)
    if len(config.address.encode()) > 107:
        print(f"pyrunc-supervisor: socket path too long: {config.address}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, ready=lambda: print(
            f"pyrunc-supervisor: serving on {config.address}", file=sys.stderr, flush=True)))
    except (DaemonError, OSError) as e:
        print(f"pyrunc-supervisor: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
