"""The container's terminal (process.terminal).

The init opens the container's own ``/dev/ptmx`` (the devpts instance mounted for it), obtains the
other end with TIOCGPTPEER — from the master fd, so no path lookup that the container could
redirect — checks that it is a pts character device, sets the size, bind-mounts it on
``/dev/console`` and makes it the controlling terminal and stdio of the process.

The master goes to the ``pyrunc`` parent over the setup channel, and from there either to the
``--console-socket`` (a path-based AF_UNIX socket; the fd travels as SCM_RIGHTS with the name
``/dev/ptmx`` as payload, as runc sends it), or, for a foreground ``run`` without a socket, to
:func:`relay`, which copies between our stdio and the pty.
"""

import _socket
import fcntl
import stat
import struct
import termios

from pyrunc.linux import os
from pyrunc.errors import SetupError

TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
_PTS_MAJORS = range(136, 144)


def open_pty(devpts_ptmx: str = "/dev/pts/ptmx") -> tuple[int, int]:
    """(master, slave) of a new pty in the container's devpts instance."""
    try:
        master = os.open(devpts_ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise SetupError(f"open {devpts_ptmx}: {err.strerror} "
                         "(a terminal needs a devpts mount at /dev/pts)") from None
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    st = os.fstat(slave)
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) not in _PTS_MAJORS:
        raise SetupError("console: the pty peer is not a pts device")
    return master, slave


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def make_controlling(slave: int) -> None:
    """The slave becomes stdin/stdout/stderr and the controlling terminal of a new session."""
    try:
        os.setsid()
    except PermissionError:
        pass    # already a session leader
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)


def check_socket_path(path: str) -> None:
    if not path or path.startswith("@") or "\0" in path:
        raise SetupError(f"console socket {path!r}: must be a filesystem path (abstract sockets "
                         "are refused)")


def connect_console_socket(path: str):
    check_socket_path(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise SetupError(f"console socket {path}: {err.strerror}") from None
    return sock


def send_master(sock, master: int) -> None:
    fds = struct.pack("i", master)
    try:
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    except OSError as err:
        raise SetupError(f"console socket: send pty master: {err.strerror}") from None


def relay(master: int, exited) -> None:
    """Copy stdin → pty and pty → stdout until the pty hangs up and ``exited()`` is true.

    With a terminal on our stdin it is put in raw mode for the duration and its size follows to
    the pty (SIGWINCH).
    """
    import _signal
    import select
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        raw = termios.tcgetattr(0)
        raw[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP |
                    termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
        raw[1] &= ~termios.OPOST
        raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        raw[2] = (raw[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        termios.tcsetattr(0, termios.TCSANOW, raw)
        _copy_size(0, master)
        _signal.signal(_signal.SIGWINCH, lambda *_: _copy_size(0, master))
    try:
        poller = select.poll()
        poller.register(master, select.POLLIN)
        stdin_open = True
        poller.register(0, select.POLLIN)
        while True:
            try:
                events = poller.poll(200)
            except InterruptedError:
                continue
            if not events and exited():
                break
            for fd, ev in events:
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    _write_all(1, data)
                elif fd == 0 and stdin_open:
                    data = os.read(0, 65536) if ev & select.POLLIN else b""
                    if data:
                        _write_all(master, data)
                    else:
                        poller.unregister(0)
                        stdin_open = False
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _copy_size(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        data = data[n:]
