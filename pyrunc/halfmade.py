"""A container whose ``create`` never finished: what it left, how ``state`` sees it, how
``delete`` finishes it, and how ``create`` tears itself down on SIGTERM, SIGINT and SIGHUP.

``create`` may die at any point — SIGKILL from an engine's time-out, an OOM kill, a crash — and
nothing it started may outlive a later ``delete``.  So ``create`` writes down where everything
it starts can be found *before* starting it (state.json, written atomically, see
:mod:`pyrunc.create`):

* before ``GO`` lets the stage-1 child do anything visible: the creating process and the
  stage-1 child (pid + start time each, under ``creator`` and ``setup.stage1``), and the
  cgroup's directories (``cgroup``: every hierarchy's leaf, which ``destroy`` removes whether
  or not its own ``create`` ran);
* when the init reports its pid: the init (pid + start time) and the cgroup as made (with the
  parents it created);
* before each runtime-namespace hook (prestart, createRuntime) is waited for: its pid and start
  time (``setup.hooks``).  A hook runs in a session of its own (setsid), so its children are
  found by their session id.

The init and everything it starts (createContainer hooks) are in the container's cgroup — on
cgroup v2 from their birth — and in its pid namespace when it has one, so the cgroup's
``destroy`` reaches them even where the init's pid was never recorded.  A stage-1 child whose
parent died reads end-of-file on the setup channel and exits by itself; so does an init, even
blocked elsewhere (a slow mount, a createContainer hook, exec.fifo), until create tells it the
container is recorded (``COMMITTED``, see :meth:`pyrunc.sync.Channel.die_with_peer`) — its pid
namespace takes its hooks with it, and no engine waits on the pipes it held.

The finished ``create`` drops ``creator`` (and ``setup``).  A record that still has them,
whose creating process is gone, is *half-made*: ``state`` reports it ``creating`` while any
process of its setup lives (runtime.md: the container is being created), ``stopped`` once none
does; ``delete``, with or without ``--force``, kills what lives, removes the cgroup and the
state, and fails — keeping the record for another try — if anything survives.  A directory
without state.json (create killed between its ``mkdir`` and its first record, before anything
was started) is removed by ``delete`` too.

This module loads only for half-made containers and for ``create``'s signal handling: the
short commands on healthy containers never import it.
"""

import _signal

from pyrunc.linux import os
from pyrunc.errors import Interrupted, PyruncError, StateError
from pyrunc.linux import proc

TEARDOWN_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
WAIT_SECONDS = 10.0


# --- create's side ----------------------------------------------------------------------------

class TeardownSignals:
    """While ``create`` sets up: the first SIGTERM/SIGINT/SIGHUP raises :class:`Interrupted`
    where the runtime is (a blocking wait returns EINTR, then the handler raises), so the
    ``except`` of create undoes everything; later ones are ignored until the teardown is done.
    :meth:`restore` puts the previous handlers back (``run``'s forwarder, or the defaults).

    ``running()``: has the container's program started already?  ``run`` opens exec.fifo
    ahead, so the init may exec before create has returned; a signal then belongs to the
    program, and goes to the previous handler (``run``'s forwarder keeps it for the program)."""

    def __init__(self, running=None):
        self.running = running
        self.previous = {}
        for sig in TEARDOWN_SIGNALS:
            self.previous[sig] = _signal.signal(sig, self._caught)

    def _caught(self, signum, frame):
        previous = self.previous.get(signum)
        if self.running is not None and callable(previous) and self.running():
            previous(signum, frame)
            return
        for sig in TEARDOWN_SIGNALS:
            _signal.signal(sig, _signal.SIG_IGN)
        raise Interrupted(signum)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)


def fifo_written(fd: int | None) -> bool:
    """Has the init written its word to exec.fifo (whose read end ``run`` holds), i.e. is the
    program about to run or running?  (Nothing is read: start still reads it.)"""
    if fd is None:
        return False
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(ev & select.POLLIN for _fd, ev in poller.poll(0))


def process_record(pid: int) -> list | None:
    """[pid, start time] of a live process, for state.json."""
    started = proc.start_time(pid)
    return None if started is None else [pid, started]


# --- what a half-made container left ----------------------------------------------------------

def is_half_made(c) -> bool:
    """``c`` (a loaded record) was being created by a process that is gone."""
    return c.creator is not None and not proc.is_alive(*c.creator)


def live_processes(c) -> list[int]:
    """The pids of the half-made container's set-up that still live."""
    pids = [p for p, started in _recorded(c) if proc.is_alive(p, started)]
    for leader, started in _hooks(c):
        pids += _session_members(leader, started)
    if c.cgroup:
        try:
            pids += c.cgroup_manager().pids()
        except PyruncError:
            pass
    return sorted(set(pids))


def status(c) -> str:
    return "creating" if live_processes(c) else "stopped"


def _recorded(c) -> list[tuple[int, int | None]]:
    out = []
    stage1 = (c.setup or {}).get("stage1")
    if stage1:
        out.append((stage1[0], stage1[1]))
    if c.pid:
        out.append((c.pid, c.start_time))
    return out


def _hooks(c) -> list[tuple[int, int]]:
    return [(h[0], h[1]) for h in (c.setup or {}).get("hooks", [])]


def _session_members(leader: int, started: int) -> list[int]:
    """Processes in the session a hook made (its sid is the hook's pid).  A sid is not reused
    while any process holds it, so members of a session whose leader is gone are still the
    hook's; a live process with that pid and another start time means the session ended and
    the number went to someone else.  Members must have started after the hook."""
    other = proc.start_time(leader)
    if other is not None and other != started:
        return []
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = proc.stat_fields(int(name))
        # fields[3] is the session id (stat field 6), fields[19] the start time (field 22)
        if fields and fields[0] not in ("Z", "X") and int(fields[3]) == leader and \
                int(fields[19]) >= started:
            members.append(int(name))
    return members


# --- finishing it -------------------------------------------------------------------------------

def kill_setup(c) -> None:
    """SIGKILL every recorded set-up process and hook session and wait for them to go; the
    cgroup (whose ``destroy`` kills what is in it) is the caller's."""
    pidfds = []
    for pid, started in _recorded(c):
        fd = proc.open_pidfd(pid, started)
        if fd is not None:
            pidfds.append(fd)
    for leader, started in _hooks(c):
        fd = proc.open_pidfd(leader, started)   # (perhaps not yet in its own session)
        if fd is not None:
            pidfds.append(fd)
        for pid in _session_members(leader, started):
            fd = proc.open_pidfd(pid, None)
            if fd is not None:
                pidfds.append(fd)
    for fd in pidfds:
        try:
            proc.signal_pidfd(fd, 9)
        except OSError:
            pass
    survivors = 0
    for fd in pidfds:
        if not proc.wait_exit(fd, WAIT_SECONDS):
            survivors += 1
        os.close(fd)
    if survivors:
        raise StateError(f"{c.id}: {survivors} set-up process(es) survive SIGKILL")


def finish(c) -> None:
    """``delete`` of a half-made container (its directory locked): everything goes or an error
    says what stayed, and the record stays for another try."""
    kill_setup(c)
    if c.cgroup:
        c.cgroup_manager().destroy()
    left = live_processes(c)
    if left:
        raise StateError(f"delete {c.id}: processes of its set-up are still alive: {left}")


def remove_stateless(root: str, container_id: str) -> bool:
    """A container directory without state.json whose lock is free: a create died before its
    first record (it had started nothing).  Remove it; False if there is no such directory."""
    import fcntl
    path = os.path.join(root, container_id)
    try:
        dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(dirfd, fcntl.LOCK_EX)
        names = os.listdir(dirfd)
        if "state.json" in names:
            return False
        for name in names:
            try:
                os.unlink(name, dir_fd=dirfd)
            except (FileNotFoundError, IsADirectoryError):
                pass
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise StateError(f"remove state directory {path}: {err.strerror}") from None
        return True
    finally:
        os.close(dirfd)
