"""Running OCI hooks (config.md "POSIX-platform Hooks").

A hook is ``path`` executed with ``args`` (argv[0] included; just ``[path]`` when absent) and
exactly ``env``, the container's state JSON on its stdin, and its stdout/stderr captured so a
failure can quote them.  ``timeout`` (seconds) kills it.  Which namespace a hook runs in is decided
by who calls :func:`run`: the ``pyrunc`` process for runtime-namespace hooks, the container's
init for createContainer and startContainer.

A failing hook raises :class:`HookError` naming the hook (``hooks.createRuntime[1] /bin/x``) and
why (exit status, signal, time-out, exec failure) with the tail of what it printed.
"""

import select
import time

from pyrunc.linux import os
from pyrunc.errors import PyruncError

CONFIG_KEYS = {"prestart": "prestart", "create_runtime": "createRuntime",
               "create_container": "createContainer", "start_container": "startContainer",
               "poststart": "poststart", "poststop": "poststop"}
_OUTPUT_LIMIT = 4096


class HookError(PyruncError):
    pass


def run_all(hooks, kind: str, state_json: str, started=None) -> None:
    """Run every hook of ``kind`` (a spec.Hooks attribute) in order; stop at the first failure.
    ``started(pid)``, if given, is told each hook's pid before the hook is waited for."""
    for i, hook in enumerate(getattr(hooks, kind)):
        run(hook, state_json, f"hooks.{CONFIG_KEYS[kind]}[{i}]", started)


def run(hook, state_json: str, name: str, started=None) -> None:
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    argv = hook.args or [hook.path]
    pid = os.fork()
    if pid == 0:
        _child(hook.path, argv, hook.env, stdin_r, out_w)
    os.close(stdin_r)
    os.close(out_w)
    try:
        if started is not None:
            started(pid)
        _feed(stdin_w, state_json.encode())
        output, status = _collect(pid, out_r, hook.timeout)
    finally:
        os.close(out_r)
    if status is None:
        raise HookError(f"{name} {hook.path}: timed out after {hook.timeout}s")
    if os.WIFSIGNALED(status):
        why = f"killed by signal {os.WTERMSIG(status)}"
    elif os.WEXITSTATUS(status) == 127 and output.startswith(b"pyrunc-exec:"):
        why = output.decode(errors="replace")[len("pyrunc-exec: "):].strip()
        output = b""
    elif os.WEXITSTATUS(status):
        why = f"exit status {os.WEXITSTATUS(status)}"
    else:
        return
    tail = output[-_OUTPUT_LIMIT:].decode(errors="replace").strip()
    raise HookError(f"{name} {hook.path}: {why}" + (f": {tail}" if tail else ""))


def _child(path: str, argv: list[str], env: list[str], stdin_fd: int, out_fd: int) -> None:
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.setsid()
        env_map = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        os.execve(path, argv, env_map)
    except OSError as err:
        os.write(2, f"pyrunc-exec: exec {path}: {err.strerror}\n".encode())
    finally:
        os._exit(127)


def _feed(fd: int, data: bytes) -> None:
    """Write the state to the hook's stdin; a hook that does not read it is not an error."""
    try:
        os.set_blocking(fd, False)
        os.write(fd, data)
    except (BlockingIOError, BrokenPipeError):
        pass
    finally:
        os.close(fd)


def _collect(pid: int, out_fd: int, timeout: int | None) -> tuple[bytes, int | None]:
    """Read the hook's output until it exits; (output, wait status) or (output, None) on time-out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    output = bytearray()
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(out_fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        open_out = True
        while True:
            left = None if deadline is None else max(0, deadline - time.monotonic())
            if left == 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return bytes(output), None
            events = poller.poll(None if left is None else int(left * 1000) + 1)
            for fd, _ev in events:
                if fd == out_fd and open_out:
                    chunk = os.read(out_fd, 65536)
                    if chunk:
                        output += chunk
                        del output[:-_OUTPUT_LIMIT * 2]
                    else:
                        poller.unregister(out_fd)
                        open_out = False
            if any(fd == pidfd for fd, _ in events):
                _, status = os.waitpid(pid, 0)
                while open_out:     # drain what it wrote before exiting
                    chunk = _read_nonblocking(out_fd)
                    if not chunk:
                        break
                    output += chunk
                return bytes(output), status
    finally:
        os.close(pidfd)


def _read_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""
