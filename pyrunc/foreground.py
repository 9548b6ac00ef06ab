"""A container's process seen from the runtime that started it.

Shared by ``create``/``run`` (the container's init) and ``exec`` (an exec'd process): the pid
file engines read, reaping the short-lived setup child, and — for a foreground ``run`` or
``exec`` — forwarding our signals to the process, relaying a terminal, and returning its exit
status the way a shell reports it (128+signal when killed).
"""

from pyrunc.linux import os
from pyrunc.errors import SetupError
from pyrunc.linux import proc


def reap_setup_child(child: int) -> None:
    """Wait for the short-lived setup child (stage 1, or exec's joining child)."""
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SetupError("container setup: the setup child failed")


def write_pid_file(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically (engines poll for it)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as err:
        raise SetupError(f"pid file {path}: {err.strerror}") from None


class SignalForwarder:
    """Every signal we can catch goes on to the process behind a pidfd.

    Installed before the process exists: until :meth:`target` names it, signals are kept, and
    delivered in order then.  None is lost, and none kills us while the container lives.
    """

    def __init__(self):
        import _signal
        self.pidfd = None
        self.pending: list[int] = []
        skip = {_signal.SIGCHLD, _signal.SIGWINCH, _signal.SIGKILL, _signal.SIGSTOP,
                _signal.SIGURG, _signal.SIGPIPE}
        for sig in range(1, _signal.NSIG):
            if sig in skip:
                continue
            try:
                _signal.signal(sig, self._caught)
            except (OSError, ValueError, RuntimeError):
                pass

    def _caught(self, sig, _frame) -> None:
        if self.pidfd is None:
            self.pending.append(sig)
        else:
            self._send(sig)

    def _send(self, sig: int) -> None:
        if self.pidfd is None:
            return
        try:
            proc.signal_pidfd(self.pidfd, sig)
        except OSError:
            pass

    def target(self, pidfd: int | None) -> None:
        """Forward to the process behind ``pidfd`` from now on, the kept signals first (None:
        the process is gone, there is nobody to tell)."""
        self.pidfd = pidfd
        self.pending, pending = [], self.pending
        for sig in pending:
            self._send(sig)


def forward_signals(pidfd: int) -> SignalForwarder:
    """Forward every signal we can catch to the process behind ``pidfd``."""
    forwarder = SignalForwarder()
    forwarder.target(pidfd)
    return forwarder


def wait(pid: int, pidfd: int, master: int | None) -> int:
    """Relay the terminal and reap until ``pid`` exits; its exit code (128+signal if killed)."""
    result = {}

    def exited() -> bool:
        return _reap_until(pid, result, block=False)

    if master is not None:
        from pyrunc import terminal
        terminal.relay(master, exited)
        os.close(master)
    _reap_until(pid, result, block=True)
    os.close(pidfd)
    return result["status"]


def _reap_until(pid: int, result: dict, block: bool) -> bool:
    """Reap children (we are a subreaper) until ``pid`` is among them; True once it is."""
    while "status" not in result:
        try:
            got, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            result.setdefault("status", 255)
            break
        if got == 0:
            return False
        if got == pid:
            if os.WIFSIGNALED(status):
                result["status"] = 128 + os.WTERMSIG(status)
            else:
                result["status"] = os.WEXITSTATUS(status)
    return True
