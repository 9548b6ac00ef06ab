"""The CNI execution protocol (spec 1.0, /work/shared/reference/cni-spec-v1.0.1): running a
network configuration list (a *conflist*) for one attachment.

A plugin is an executable found by its ``type`` in the plugin path. It gets the operation and the
attachment's parameters in ``CNI_*`` environment variables, its configuration on stdin, and
answers with a result (ADD) or an error object on stdout. Per the spec:

- ADD runs the plugins in order, each given the previous plugin's result as ``prevResult``; the
  last result is what the caller must keep (for CHECK and DEL);
- DEL runs them in reverse, each given the kept ADD result (none if ADD never finished);
- CHECK runs them in order with the kept result, unless the list sets ``disableCheck``;
- ``runtimeConfig`` holds the capability arguments a plugin declares in ``capabilities`` (e.g.
  ``portMappings`` for portmap); ``capabilities`` itself is removed from what the plugin sees.

Plugins run with posix_spawn and are reaped by the daemon's reaper (the daemon is a subreaper and
reaps every child itself), their pipes read by the event loop. Every call is bounded by a
timeout: a plugin that hangs is killed and the call fails naming it.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass, field

from supervisor.errors import SupervisorError

CNI_VERSION = "1.0.0"
DEFAULT_PATH = ("/usr/lib/cni", "/opt/cni/bin")
TIMEOUT = 60.0
# Plugins shell out to iptables, ip6tables, sysctl...: they need a PATH.
PLUGIN_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CniError(SupervisorError):
    """A plugin failed, hung, or could not be found; the message names it."""


@dataclass
class Attachment:
    """The parameters of one attachment: (container id, interface) into a namespace."""
    container_id: str
    netns: str
    ifname: str = "eth0"
    args: dict = field(default_factory=dict)          # CNI_ARGS
    capabilities: dict = field(default_factory=dict)  # capability arguments (runtimeConfig)


def find_plugin(kind: str, path: tuple[str, ...] | list[str]) -> str:
    if not kind or "/" in kind or kind in (".", ".."):
        raise CniError(f"plugin type {kind!r}: not a plugin name")
    for d in path:
        candidate = os.path.join(d, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(f"CNI plugin {kind!r} not found in {':'.join(path)}")


def plugin_config(conflist: dict, plugin: dict, att: Attachment, prev: dict | None) -> dict:
    """What one plugin gets on stdin (spec section 3, "Deriving execution configuration")."""
    conf = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["cniVersion"] = conflist.get("cniVersion", CNI_VERSION)
    conf["name"] = conflist["name"]
    caps = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in att.capabilities.items() if caps.get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    else:
        conf.pop("runtimeConfig", None)
    if prev is not None:
        conf["prevResult"] = prev
    else:
        conf.pop("prevResult", None)
    return conf


def environment(command: str, att: Attachment, path) -> dict:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id,
           "CNI_NETNS": att.netns, "CNI_IFNAME": att.ifname, "CNI_PATH": ":".join(path),
           "PATH": PLUGIN_PATH_ENV}
    if att.args:
        env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in att.args.items())
    return env


class Runner:
    """Runs conflists for attachments with one plugin path and timeout."""

    def __init__(self, path=DEFAULT_PATH, timeout: float = TIMEOUT):
        self.path = tuple(path)
        self.timeout = timeout

    def check_plugins(self, conflist: dict) -> None:
        """Every plugin of the list exists (before anything is run)."""
        for plugin in conflist.get("plugins") or []:
            find_plugin(plugin.get("type", ""), self.path)

    async def add(self, conflist: dict, att: Attachment) -> dict:
        prev = None
        for plugin in conflist["plugins"]:
            prev = await self.run("ADD", conflist, plugin, att, prev)
        return prev or {}

    async def delete(self, conflist: dict, att: Attachment, result: dict | None) -> None:
        for plugin in reversed(conflist["plugins"]):
            await self.run("DEL", conflist, plugin, att, result or None)

    async def check(self, conflist: dict, att: Attachment, result: dict) -> None:
        if conflist.get("disableCheck"):
            return
        for plugin in conflist["plugins"]:
            await self.run("CHECK", conflist, plugin, att, result)

    async def run(self, command: str, conflist: dict, plugin: dict, att: Attachment,
                  prev: dict | None) -> dict:
        kind = plugin.get("type", "")
        binary = find_plugin(kind, self.path)
        stdin = json.dumps(plugin_config(conflist, plugin, att, prev)).encode()
        code, out, err = await execute(binary, environment(command, att, self.path), stdin,
                                       self.timeout, f"CNI plugin {kind} ({command})")
        if code != 0:
            raise CniError(f"CNI plugin {kind} ({command}) failed: {_error_text(out, err, code)}")
        if command != "ADD":
            return {}
        try:
            result = json.loads(out or b"{}")
        except ValueError:
            raise CniError(f"CNI plugin {kind} (ADD): invalid JSON result") from None
        if not isinstance(result, dict):
            raise CniError(f"CNI plugin {kind} (ADD): the result is not an object")
        return result


def _error_text(out: bytes, err: bytes, code: int) -> str:
    """The plugin's error object (msg: details), else its stderr, else its exit status."""
    try:
        obj = json.loads(out)
        msg = str(obj.get("msg") or "")
        details = str(obj.get("details") or "")
        if msg:
            return f"{msg}: {details}" if details and details != msg else msg
    except (ValueError, AttributeError):
        pass
    text = err.decode(errors="replace").strip().splitlines()
    return text[-1] if text else f"exit status {code}"


async def execute(binary: str, env: dict, stdin: bytes, timeout: float, what: str,
                  argv: list[str] | None = None):
    """Run ``binary`` (arguments ``argv``, default none) with ``stdin``; (exit code, stdout,
    stderr). Killed after ``timeout``."""
    from supervisor.shimclient import wait_process
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(binary, argv or [binary], env, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except OSError as e:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise CniError(f"{what}: cannot run {binary}: {e.strerror}") from None
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    loop = asyncio.get_running_loop()
    readers = [_Collector(loop, out_r), _Collector(loop, err_r)]
    writer = loop.run_in_executor(None, _write_all, in_w, stdin)
    status = asyncio.ensure_future(wait_process(pid))
    try:
        await asyncio.wait_for(asyncio.shield(status), timeout)
        # a plugin's own children may still hold the pipes: give them the same bound
        await asyncio.wait_for(asyncio.gather(*(r.done for r in readers)), timeout)
    except asyncio.TimeoutError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise CniError(f"{what}: timed out after {timeout:g} s (killed)") from None
    finally:
        for r in readers:
            r.close()
        await writer
    return status.result(), readers[0].data(), readers[1].data()


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the plugin exited without reading: its status tells
    finally:
        os.close(fd)


class _Collector:
    """Reads a pipe on the event loop until EOF."""

    def __init__(self, loop, fd: int):
        self.loop, self.fd = loop, fd
        self.chunks: list[bytes] = []
        self.done = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.chunks.append(chunk)
            return
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result(None)

    def data(self) -> bytes:
        return b"".join(self.chunks)
