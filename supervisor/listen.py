"""Claiming a unix socket path before listening on it: the one rule for every socket the daemon
and its shims listen on (the gRPC API socket, the metrics socket, each shim's and the zygote's,
a shim's console socket for the runtime).

A listener cannot bind a path that exists, so a daemon that was killed (kill -9, a crash) leaves
its socket file behind and the next one must remove it. But removing whatever is there would let
a second daemon, started by mistake with the same address, silently take a live daemon's socket
away: the live one keeps serving on an inode nobody can reach any more (grpc and asyncio both
unlink an existing socket file before they bind). So the path is probed first:

- nothing there: free;
- a socket nobody answers on (``ECONNREFUSED``: no listener holds it): stale, removed;
- a socket a server accepts a connection on: in use, refused, left alone;
- anything else (a regular file, a directory, a socket we may not connect to): refused, left
  alone — it is not ours to remove.

Two processes claiming the same stale path at the same instant could still both remove it and
the later bind wins; that needs two daemons started together on one address, which an operator
does not do, and the loser then fails to bind (or serves a path the winner re-created) rather
than taking a live daemon's socket.

Imports only ``os``, ``stat``, ``errno`` and ``_socket`` (not ``socket``): shims use it too.
"""
from __future__ import annotations

import _socket
import errno
import os
import stat

PROBE_TIMEOUT = 5.0

class ListenError(OSError):
    """An address cannot be listened on: ``filename`` the address, ``strerror`` why; printed as
    ``listen ADDRESS: WHY`` (an OSError, so the daemon's start reports it as one clear line)."""

    def __init__(self, address: str, why: str, code: int = errno.EADDRINUSE):
        super().__init__(code, why, address)

    def __str__(self) -> str:
        return f"listen {self.filename}: {self.strerror}"


class SocketInUse(ListenError):
    """The path cannot be listened on: a live server holds it, or it is not a stale socket."""


def claim(path: str) -> None:
    """Make ``path`` free to bind: remove a stale socket there; raise SocketInUse (naming the
    path and why) for a live one or anything that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(path, "the path exists and is not a socket")
    if answers(path):
        raise SocketInUse(path, "another server is listening on this socket "
                                "(a second daemon with the same address?)")
    try:
        os.unlink(path)     # stale: nobody listens there any more
    except FileNotFoundError:
        pass


def answers(path: str) -> bool:
    """True if a server accepts connections on the unix socket at ``path``; False if nobody
    listens there (a stale file); SocketInUse for any other answer (it may be live)."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)     # a live server with a full backlog: EAGAIN, not a hang
    try:
        probe.connect(path)
        return True
    except ConnectionRefusedError:
        return False
    except FileNotFoundError:
        return False
    except OSError as e:
        raise SocketInUse(path, f"cannot tell whether the socket is in use: {e.strerror}") \
            from None
    finally:
        probe.close()
