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

import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass

from supervisor import __version__

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
    settings: object = None     # supervisor.config.Settings: every key of the config file

    def __post_init__(self):
        self.runtime_root = self.runtime_root or os.path.join(self.state, "runtime")


class DaemonError(Exception):
    pass


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


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
        from supervisor.config import Settings
        from supervisor.services import Registry
        self.config = config
        for d in (os.path.dirname(config.address), config.state, config.root):
            _private_dir(d)
        store = Store(os.path.join(config.root, "meta.db"))
        events = Exchange()
        leases = Leases(store)
        self.services = Registry(
            config=config, uuid=_load_uuid(config.root), store=store, leases=leases,
            events=events,
            tasks=TaskManager(config.state, config.runtime, config.runtime_root, events))
        self.services.add("settings", config.settings or Settings())
        self._add_image_services(store, leases)
        self._add_networks()
        self.server = None
        self.collector = None
        self.restarts = None
        self.operations = None
        self.gc_task = None
        self.listening = False

    def _add_image_services(self, store, leases) -> None:
        """The image half: content store (and, as they land, snapshots, diff, images, gc)."""
        from supervisor.content.store import ContentStore
        from supervisor.snapshots import native, overlay
        from supervisor.snapshots.store import Snapshots
        self.services.add("content", ContentStore(self.config.root, store, leases))
        snapshotters = {layout.name: Snapshots(self.config.root, store, layout, leases)
                        for layout in (overlay.Layout(), native.Layout())}
        for sn in snapshotters.values():
            sn.cleanup()  # what a crash left: directories without a row
        self.services.add("snapshotters", snapshotters)
        from supervisor.images.store import Images
        from supervisor.metadata.gc import Collector
        self.services.add("images", Images(store))
        self.services.add("gc", Collector(store, leases, self.services.get("content"),
                                          snapshotters, self.services.get("images")))
        from supervisor.images.remote import hosts_from_settings
        self.services.add("registry_hosts", hosts_from_settings(self.services.get("settings")))

    def _add_networks(self) -> None:
        from supervisor.network.manager import NetworkManager
        settings = self.services.get("settings")
        networks = NetworkManager(self.config.state,
                                  settings["cni.conf_dir"] or os.path.join(self.config.root,
                                                                           "net.d"),
                                  settings["cni.path"], settings["cni.timeout"])
        self.services.add("networks", networks)
        self.services.get("tasks").network = networks

    async def start(self) -> None:
        import grpc
        import prctl
        from supervisor import api
        from supervisor.operate import Operations
        from supervisor.shimclient import REAPER
        from supervisor.listen import claim
        claim(self.config.address)  # a live daemon's socket is refused, a stale one removed
        prctl.set_child_subreaper(True)
        REAPER.install(asyncio.get_running_loop())
        await self.services.get("tasks").open()
        from supervisor.core.restart import RestartMonitor
        self.restarts = RestartMonitor(self.services.get("store"), self.services.get("tasks"),
                                       self.services.get("events"),
                                       self.services.get("snapshotters"))
        self.restarts.start()  # restart policies (after recovery: it knows the tasks)
        self.collector = asyncio.get_running_loop().create_task(self._collect_leases())
        self.gc_task = asyncio.get_running_loop().create_task(self._collect_garbage())
        self.operations = Operations(self.services.get("settings"), self.services)
        await self.operations.start()  # metrics answer once the API does
        await self._start_local_api()
        self.server = grpc.aio.server(interceptors=self.operations.interceptors())
        api.register(self.server, self.services)
        old = os.umask(0o177)  # the socket is created 0600
        try:
            self.server.add_insecure_port("unix://" + self.config.address)
            self.listening = True   # the socket file is ours from here: stop() removes it
            await self.server.start()
        finally:
            os.umask(old)
        os.chmod(self.config.address, 0o600)

    async def _start_local_api(self) -> None:
        """pyrunc-ctl's socket next to the gRPC one (supervisor/localapi/): a live server's is
        never taken (refuse to start); a path too long for a unix socket only loses the fast path."""
        from supervisor import log
        from supervisor.localapi import local_address
        from supervisor.listen import SocketInUse
        from supervisor.localapi.server import LocalServer
        self.local_api = LocalServer(local_address(self.config.address), self.services,
                                     self.operations.observers())
        try:
            await self.local_api.start()
        except SocketInUse as e:
            raise DaemonError(str(e)) from None
        except OSError as e:
            log.warn("no local API for pyrunc-ctl", address=self.local_api.path, error=str(e))
            self.local_api = None

    async def _collect_leases(self) -> None:
        """Expired leases go at their expiry (and at the latest gc.interval seconds, a minute by
        default, after one is added)."""
        leases = self.services.get("leases")
        every = self.services.get("settings")["gc.interval"]
        while True:
            leases.collect()
            nxt = leases.next_expiry()
            await asyncio.sleep(every if nxt is None else min(every, max(0.0, nxt - time.time())))

    async def _collect_garbage(self) -> None:
        """A full garbage collection at start (what a crash left) and every gc.collect_interval
        seconds (ten minutes by default)."""
        import logging
        gc = self.services.get("gc")
        every = self.services.get("settings")["gc.collect_interval"]
        while True:
            try:
                await asyncio.to_thread(gc.collect)
            except Exception:  # a failed round is retried at the next one
                logging.getLogger("pyrunc.supervisor").exception("garbage collection")
            await asyncio.sleep(every)

    async def stop(self) -> None:
        """Stop serving; also undoes a start() that failed half-way (each part checks whether it
        was started)."""
        if self.operations is not None:
            await self.operations.stop()
        if getattr(self, "local_api", None) is not None:
            await self.local_api.stop()
        if self.server is not None:
            await self.server.stop(grace=1)
        if self.collector is not None:
            self.collector.cancel()
        if self.gc_task is not None:
            self.gc_task.cancel()
        if self.restarts is not None:
            await self.restarts.stop()
        await self.services.get("tasks").close()
        # A collection round runs in a worker thread, which cancelling its task does not stop:
        # wait for it (and refuse new ones) before the store it reads goes away.
        await asyncio.to_thread(self.services.get("gc").close)
        self.services.get("store").close()
        if self.listening:  # never a live daemon's socket that start() refused to take
            try:
                os.unlink(self.config.address)
            except FileNotFoundError:
                pass


async def serve(config: Config, ready=None) -> None:
    daemon = Daemon(config)
    try:
        await daemon.start()
    except BaseException:
        # A late failure (the metrics address, the API socket) after the shim pool started:
        # undo what was started — the zygote and the spare shim must not outlive the daemon.
        await daemon.stop()
        raise
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


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; the exit status."""
    from supervisor import log, memory
    memory.tune()
    try:
        asyncio.run(serve(config, ready=lambda: log.info(
            "serving", address=config.address, version=__version__, pid=os.getpid())))
    except (DaemonError, OSError) as e:     # OSError includes listen.SocketInUse
        log.error(str(e))
        return 1
    log.info("stopped")
    return 0


def main(argv=None) -> int:
    """The command line (flags, the config file, ``config default|dump``): supervisor/command.py."""
    from supervisor.command import main as command_main
    return command_main(argv)


if __name__ == "__main__":
    sys.exit(main())
