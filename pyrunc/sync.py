"""The setup protocol between ``pyrunc create`` and the container's init.

Three processes take part:

* **parent** — the ``pyrunc create`` (or ``run``) process, in the runtime's namespaces;
* **stage-1 child** — forked by the parent as soon as it has read config.json, *before* the
  config is checked (:mod:`pyrunc.launch`): it loads the init's modules and parses the same
  bytes while the parent validates them, checks the host and claims the ID (two cores, half the
  wait).  When no namespace is joined by path and none is a new user namespace, it creates the
  namespaces (and sets the host name, loopback, ...) then too.  On ``GO`` it joins namespaces
  given by path, unshares the user namespace and waits for the parent to map it, unshares the
  rest (whatever was not done before) and forks the init (a fork is needed: a new pid or time
  namespace applies to children only) — into the container's cgroup v2 directory when ``GO``
  brought one (see :mod:`pyrunc.cgroups.base`: the init is then never *moved* between
  cgroups, which costs the kernel an RCU grace period).  If the parent refuses the config, it
  kills stage 1, which has done nothing visible yet;
* **init** — the container's pid 1; sets up the rootfs and the process, then blocks on exec.fifo
  until ``pyrunc start``.

They talk over one ``SOCK_SEQPACKET`` socketpair (message boundaries for free).  A message is a
compact JSON object ``{"m": NAME, ...}``; descriptors travel with it as ``SCM_RIGHTS``.  In
order::

    parent -> child    GO           {"cgroup": bool, "idmapped": [mount index...]} + fds: the
                                    state directory, the cgroup v2 directory to fork the init
                                    into (if "cgroup"), the id-mapped trees
    child  -> parent   USERNS       (only with a new user namespace) "map my ids"
    parent -> child    PROCEED      (only then) ids mapped: go on
    child  -> parent   PID          {"pid": init's pid as the parent sees it}
    parent -> init     CGROUP       the cgroup is set up, linux.netDevices are in the init's
                                    network namespace; + fds: the cgroup v1 ``tasks`` files
                                    the init joins itself (without them, the parent has moved
                                    it).  The init sets up meanwhile, and waits for this
                                    before it needs the cgroup
    init   -> parent   HOOKS        (only with prestart/createRuntime hooks) "run them now"
    parent -> init     HOOKS_DONE
    init   -> parent   CONSOLE      (only with process.terminal) + the pty master fd
    init   -> parent   READY        setup done; the init now waits on exec.fifo
    parent -> init     COMMITTED    the container is recorded: the init may outlive create
                                    (until then it exits when create's end closes, see
                                    :meth:`Channel.die_with_peer`)

Any side may send ``ERROR`` ``{"msg": ..., "errno": n}`` instead of the next message and exit;
:meth:`Channel.expect` turns it into :class:`ChildError` carrying the errno.  End of file where
a message was due means the peer died: also a :class:`ChildError`.
"""

import _socket
import struct

from pyrunc.linux import os
from pyrunc import jsonio
from pyrunc.errors import SetupError

GO = "go"
USERNS = "userns"
PROCEED = "proceed"
PID = "pid"
CGROUP = "cgroup"
HOOKS = "hooks"
HOOKS_DONE = "hooks-done"
CONSOLE = "console"
READY = "ready"
COMMITTED = "committed"
ERROR = "error"

_MAX = 65536
_CMSG_ROOM = _socket.CMSG_SPACE(4 * 253)    # SCM_MAX_FD descriptors in one message


def fork_reporting_pid(ch: "Channel", cgroup_fd: int | None = None) -> int:
    """fork(); the parent sends PID {"pid": child}, and the child's first message waits for
    that.  With ``cgroup_fd`` the child is born in that cgroup v2 directory (clone3).

    Parent and child share the channel: without the wait, the child's first message could
    arrive before the parent's PID and break the protocol's order.  The child sets up meanwhile.
    A child whose parent died before reporting it exits when it would first speak: the runtime
    could neither wait for it nor kill it.  Returns 0 in the child.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    if cgroup_fd is None:
        pid = os.fork()
    else:
        from pyrunc.linux import sys as k
        pid = k.fork_into_cgroup(cgroup_fd)
    if pid == 0:
        os.close(w)
        ch.reported = r
        return 0
    os.close(r)
    try:
        ch.send(PID, pid=pid)
        os.write(w, b"1")
    finally:
        os.close(w)
    return pid


class ChildError(SetupError):
    """An error carried back from the other side of the channel."""

    def __init__(self, msg: str, errno: int = 0, kind: str = ""):
        super().__init__(msg)
        self.errno = errno
        self.kind = kind        # the exception's class name on the other side


class Channel:
    """One end of the setup socketpair."""

    def __init__(self, sock):
        self.sock = sock
        self.reported: int | None = None  # see fork_reporting_pid

    def _wait_reported(self) -> None:
        r, self.reported = self.reported, None
        sent = os.read(r, 1)
        os.close(r)
        if sent != b"1":    # the parent died before it could report us: nobody knows we exist
            os._exit(1)

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def die_with_peer(self) -> None:
        """The init during setup: exit at once when the runtime's end closes — ``create`` died
        (SIGKILL, an engine's time-out) — even while blocked elsewhere than on this channel (a
        slow mount, a createContainer hook, exec.fifo).  An init left waiting would hold the
        engine's pipes (conmon reads them to their end) long after its runtime is gone.

        The socket is made O_ASYNC: the kernel signals SIGIO on every change, the peer's close
        included (POLL_HUP).  Before READY the handler only looks (poll) for the hang-up, and
        messages arrive as usual; after it (:meth:`await_commit`) it reads: ``COMMITTED`` ends
        the watch, end of file ends the init."""
        import _signal
        import fcntl
        self._committing = False
        fd = self.sock.fileno()
        _signal.signal(_signal.SIGIO, self._on_io)
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
        self._on_io()       # (gone already?)

    def await_commit(self) -> None:
        """READY is about to go: from now on the next message (COMMITTED) is read by the
        handler, wherever the init is blocked."""
        import _signal
        self._committing = True
        # (again: the process's preparation reset every disposition to its default)
        _signal.signal(_signal.SIGIO, self._on_io)
        self._on_io()

    def _on_io(self, signum=None, frame=None) -> None:
        import select
        if self.sock.fileno() < 0:
            return          # (a signal caught before stop_watching, run after it)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        events = poller.poll(0)
        ev = events[0][1] if events else 0
        if self._committing and ev & select.POLLIN:
            name, _fields, fds = self.recv()
            for fd in fds:
                os.close(fd)
            if name == COMMITTED:
                self.stop_watching()
                return
            os._exit(1)
        if ev & (select.POLLHUP | select.POLLERR):
            os._exit(1)

    def stop_watching(self) -> None:
        """End :meth:`die_with_peer` and close the channel; idempotent.  Before the init
        execs the program, too (``run`` opens exec.fifo ahead, so COMMITTED may not have come
        yet): no SIGIO may reach the program, whose disposition exec resets to "terminate" —
        O_ASYNC goes first, then a SIGIO already pending is discarded (SIG_IGN drops it)."""
        import _signal
        import fcntl
        fd = self.sock.fileno()
        if fd < 0:
            return
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)
        _signal.signal(_signal.SIGIO, _signal.SIG_IGN)
        _signal.signal(_signal.SIGIO, _signal.SIG_DFL)
        self.sock.close()

    def send(self, name: str, fds: list[int] | None = None, **fields) -> None:
        if self.reported is not None:
            self._wait_reported()
        fields["m"] = name
        data = jsonio.dumps(fields).encode()
        if fds:
            cmsg = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
            self.sock.sendmsg([data], cmsg)
        else:
            self.sock.send(data)

    def send_or_explain(self, name: str, **fields) -> None:
        """Send; if the peer is gone, raise the error it left behind instead of EPIPE."""
        try:
            self.send(name, **fields)
        except (BrokenPipeError, ConnectionResetError):
            got, reply, _ = self.recv()
            if got == ERROR:
                raise ChildError(reply.get("msg", "unknown error"), reply.get("errno", 0),
                                 reply.get("kind", "")) from None
            raise ChildError("container init exited during setup") from None

    def send_error(self, msg: str, errno: int = 0, kind: str = "") -> None:
        try:
            self.send(ERROR, msg=msg, errno=errno, kind=kind)
        except OSError:
            pass    # the parent is gone; nobody to tell

    def recv(self) -> tuple[str | None, dict, list[int]]:
        """The next message: (name, fields, fds); name None at end of file."""
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(_MAX, _CMSG_ROOM)
        except ConnectionResetError:
            # The peer exited with a message of ours unread (it failed before it got there).
            # The kernel reports that once; what the peer sent before it closed — its ERROR —
            # is still queued behind the report.
            data, ancdata, _flags, _addr = self.sock.recvmsg(_MAX, _CMSG_ROOM)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]))
        for fd in fds:
            os.set_inheritable(fd, False)
        if not data:
            return None, {}, fds
        fields = jsonio.loads(data, trusted=True)
        return fields.pop("m"), fields, fds

    def expect(self, name: str, with_fds: bool = False):
        """Wait for message ``name``; return its fields (and fds with ``with_fds``)."""
        got, fields, fds = self.recv()
        if got == name:
            return (fields, fds) if with_fds else fields
        for fd in fds:
            os.close(fd)
        if got == ERROR:
            raise ChildError(fields.get("msg", "unknown error"), fields.get("errno", 0),
                             fields.get("kind", ""))
        if got is None:
            raise ChildError("container init exited during setup")
        raise ChildError(f"setup protocol: expected {name!r}, got {got!r}")
