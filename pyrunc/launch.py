"""The first step of ``create`` and ``run``: fork the stage-1 child before the runtime loads.

Most of what ``pyrunc create`` costs is Python loading modules: the parent's (the config's
parser and validator, the state, the cgroup drivers) and the init's (mounts, devices, the
process set-up).  They are two disjoint halves on two cores, so the child is forked first, as
soon as the arguments are parsed and config.json is read: it loads the init's half and parses
the same bytes while the parent loads its own half, checks the config and claims the ID (see
:mod:`pyrunc.sync` for what the two say to each other then).  Forking this early is also
cheaper: the process is small, and neither side pays copy-on-write faults for modules only the
other one needs.

Until the parent sends ``GO`` the child has done nothing visible outside itself; a parent that
refuses the container kills it.  This module imports nothing beyond what the interpreter and
:mod:`pyrunc.cli` already hold, plus ``_socket``.
"""

import _socket

from pyrunc.linux import os
from pyrunc.errors import ConfigError


class SetupChild:
    """The forked stage-1 child as the parent holds it."""

    __slots__ = ("pid", "sock", "config", "extra_fds")

    def __init__(self, pid: int, sock, config: bytes, extra_fds: int):
        self.pid = pid          # to kill and reap
        self.sock = sock        # the parent's end of the setup channel
        self.config = config    # config.json's bytes, as the child got them
        self.extra_fds = extra_fds  # descriptors after stdio that go to the container


def read_config(bundle: str) -> bytes:
    """The bytes of ``<bundle>/config.json``, read once: what is checked is what is used."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"config.json: {path}: {err.strerror}") from None


def fork_setup_child(container_id: str, bundle: str, no_pivot: bool, no_new_keyring: bool,
                     extra_fds: int, listen_fds: int, reaper: bool) -> SetupChild:
    """Read config.json and fork the stage-1 child; ``bundle`` must be absolute.
    ``extra_fds``: descriptors after stdio that go to the container (checked open),
    ``listen_fds`` of them for $LISTEN_FDS.  ``reaper``: the caller will wait for the init,
    which is our grandchild (stage 1 may fork it and exit at once): become its reaper first."""
    config = read_config(bundle)
    if reaper:
        from pyrunc.linux import sys as k
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    ours, theirs = _socket.socketpair(_socket.AF_UNIX,
                                      _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        ours.close()
        from pyrunc import init, sync
        init.setup_child(sync.Channel(theirs), container_id, bundle, config, no_pivot,
                         no_new_keyring, extra_fds, listen_fds)      # never returns
    theirs.close()
    return SetupChild(pid, ours, config, extra_fds)
