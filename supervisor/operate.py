"""What an operator sees of a running daemon, wired in one place: the request log and metrics
(a gRPC interceptor), the metrics endpoint, the event log, and SIGHUP.

- Every gRPC call goes through grpcobserve.Interceptor: logged at debug, counted and timed for
  Prometheus when ``metrics.address`` is set (exporter.py, imported only then).
- Every event of the exchange (container and task life: create, start, exit, OOM, delete, ...)
  is one info line with its topic, namespace and container ID (a tap on the exchange, not a
  subscriber: exits held for the first subscriber after a restart stay held for it).
- The shims' log (``<state>/shim.log``, lines written by shim/shimlog.py) is followed and each
  line copied into the daemon's log with its level, namespace, container ID and the shim's pid
  (``source=shim``). The file is polled (a stat every half second): shims outlive the daemon,
  so they cannot log through it, and a pipe would not survive a daemon restart.
- SIGHUP re-reads the configuration (file, environment, the original flags) and applies the log
  level and format at once; other changed keys are named in a warning (they need a restart). A
  configuration that no longer parses is logged and the running one kept.

The daemon calls :meth:`Operations.interceptors` when it builds its server, then
:meth:`Operations.start` / :meth:`Operations.stop` around serving.
"""
from __future__ import annotations

import asyncio
import os
import signal

from supervisor import config as configmod, log

SHIM_LOG_POLL = 0.5     # seconds between looks at the shims' log
SHIM_LOG_CHUNK = 1 << 20


class Operations:
    def __init__(self, settings, services):
        self.settings = settings if settings is not None else configmod.Settings()
        self.services = services
        self.exporter = None
        if self.settings["metrics.address"]:
            from supervisor.exporter import Exporter
            self.exporter = Exporter(self.settings["metrics.address"], services)
        self.shim_log: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def interceptors(self) -> list:
        from supervisor.grpcobserve import Interceptor
        return [Interceptor(self.observers())]

    def observers(self) -> list:
        """Who hears of each finished API call (gRPC's, and the local API's for pyrunc-ctl)."""
        from supervisor.grpcobserve import log_call
        return [log_call] + ([self.exporter.observe] if self.exporter else [])

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.exporter is not None:
            await self.exporter.start()
        self.services.get("events").tap(self._log_event)
        self.shim_log = self.loop.create_task(self._follow_shim_log(
            os.path.join(self.services.get("config").state, "shim.log")))
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def stop(self) -> None:
        if self.loop is not None:
            self.loop.remove_signal_handler(signal.SIGHUP)
        if self.shim_log is not None:
            self.shim_log.cancel()
        if self.exporter is not None:
            await self.exporter.stop()

    # -- the event log ----------------------------------------------------------------------------
    @staticmethod
    def _log_event(env) -> None:
        if log.enabled("info"):
            try:
                log.info("event", topic=env.topic, ns=env.namespace, **_event_fields(env))
            except Exception:  # the log must never fail a publisher
                log.error("event log failed", topic=env.topic, exc_info=True)

    # -- the shims' log ---------------------------------------------------------------------------
    async def _follow_shim_log(self, path: str) -> None:
        """Copy lines appended to the shims' log from now on (what came before, while no daemon
        ran, stays in the file)."""
        try:
            pos = os.stat(path).st_size
        except OSError:
            pos = 0
        partial = b""
        while True:
            await asyncio.sleep(SHIM_LOG_POLL)
            try:
                size = os.stat(path).st_size
                if size < pos:      # truncated by an operator: start again at the top
                    pos, partial = 0, b""
                if size == pos:
                    continue
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read(SHIM_LOG_CHUNK)
            except OSError:
                continue
            pos += len(data)
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            for raw in lines:
                copy_shim_line(raw.decode("utf-8", "replace"))

    # -- SIGHUP -----------------------------------------------------------------------------------
    def reload(self) -> None:
        reader = getattr(self.settings, "reload", None)
        if reader is None:
            log.warn("reload: no configuration to re-read")
            return
        try:
            fresh = reader()
        except configmod.ConfigError as e:
            log.error("reload: configuration refused, the running one is kept", error=str(e))
            return
        log.setup(fresh["debug.level"], fresh["debug.format"])
        changed = [k.name for k in configmod.KEYS if k.name not in ("debug.level",
                   "debug.format") and fresh[k.name] != self.settings[k.name]]
        self.settings.values["debug.level"] = fresh["debug.level"]
        self.settings.values["debug.format"] = fresh["debug.format"]
        log.info("reloaded", log_level=fresh["debug.level"], log_format=fresh["debug.format"])
        if changed:
            log.warn("reload: these keys take effect at the next start", keys=",".join(changed))


def copy_shim_line(line: str) -> None:
    from supervisor.shim.shimlog import parse
    if not line.strip():
        return
    rec = parse(line)
    if rec is None:         # not written by shimlog: an interpreter's own output
        log.warn(line, source="shim")
        return
    level = rec["level"] if rec["level"] in log.LEVELS else "info"
    log.log(level, rec["msg"], source="shim", ns=rec["ns"] or None, id=rec["id"] or None,
            shim_pid=rec["pid"])


def _event_fields(env) -> dict:
    """The container, process and exit of an event, decoded from its payload."""
    from supervisor.events import EVENT_TYPES
    cls = EVENT_TYPES.get(env.event.type_url.rsplit("/", 1)[-1])
    if cls is None:
        return {}
    msg = cls()
    try:
        msg.ParseFromString(env.event.value)
    except Exception:  # a payload we cannot read still gets its line
        return {}
    cid = getattr(msg, "container_id", "") or (
        getattr(msg, "id", "") if env.topic.startswith("/containers/") else "")
    fields = {"id": cid or None}
    for name in ("exec_id", "pid", "exit_status"):
        value = getattr(msg, name, None)
        if value not in (None, "", 0) or (name == "exit_status" and env.topic.endswith("/exit")):
            fields[name] = value
    return fields
