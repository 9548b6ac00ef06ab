"""process.terminal: the pty, --console-socket (SCM_RIGHTS, as runc sends it), consoleSize."""

import array
import os
import pty
import select
import socket
import subprocess
import threading
import time

from harness import PYRUNC, base_config


class ConsoleSocket:
    """A listening unix socket that receives one pty master, as containerd's shim does."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.master = None
        self.name = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        conn, _ = self.sock.accept()
        fds = array.array("i")
        msg, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
        self.name = msg
        self.master = fds[0] if fds else None
        conn.close()

    def read_until(self, needle: bytes, timeout=10.0) -> bytes:
        self.thread.join(timeout)
        assert self.master is not None, "no pty master received"
        data = b""
        deadline = time.monotonic() + timeout
        while needle not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        return data

    def close(self):
        if self.master is not None:
            os.close(self.master)
        self.sock.close()


def tty_config(script, size=None):
    cfg = base_config(["sh", "-c", script])
    cfg["process"]["terminal"] = True
    if size:
        cfg["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
    return cfg


def test_console_socket_receives_pty(runtime, tmp_path):
    console = ConsoleSocket(tmp_path / "console.sock")
    try:
        cfg = tty_config("tty; stty size; stat -L -c '%F %t:%T' /proc/self/fd/0; "
                         "stat -c '%F %t:%T' /dev/console; "
                         "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; "
                         "ps -o pid,tty | tail -n1; echo done", size=(33, 101))
        bundle = runtime.bundle(cfg)
        cid = runtime.new_id()
        runtime("create", "--console-socket", console.path, "--bundle", bundle, cid,
                check=True, stdin=subprocess.DEVNULL)
        runtime("start", cid, check=True)
        out = console.read_until(b"done").decode().replace("\r", "")
        assert console.name == b"/dev/ptmx"
        lines = out.splitlines()
        assert lines[0].startswith("/dev/pts/")
        assert lines[1] == "33 101"
        assert "all-ttys" in lines
        # /dev/console is the same pts device as stdin
        assert lines[2] == lines[3] and lines[2].startswith("character special file 88:")
    finally:
        console.close()


def test_terminal_without_console_socket_is_an_error(runtime):
    bundle = runtime.bundle(tty_config("true"))
    cid = runtime.new_id()
    res = runtime("create", "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 1 and "--console-socket" in res.err
    assert runtime("state", cid).rc == 1


def test_missing_console_socket(runtime, tmp_path):
    bundle = runtime.bundle(tty_config("true"))
    cid = runtime.new_id()
    res = runtime("create", "--console-socket", str(tmp_path / "nope.sock"),
                  "--bundle", bundle, cid, stdin=subprocess.DEVNULL)
    assert res.rc == 1 and "console socket" in res.err and "nope.sock" in res.err
    assert runtime("state", cid).rc == 1


def test_abstract_console_socket_refused(runtime):
    bundle = runtime.bundle(tty_config("true"))
    res = runtime("create", "--console-socket", "@abstract", "--bundle", bundle,
                  runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 1 and "abstract" in res.err


def test_run_foreground_with_terminal(runtime):
    """``run`` with a terminal and no socket relays our own terminal to the container's pty."""
    bundle = runtime.bundle(tty_config('read -r line; echo "got:$line"; stty size; exit 4'))
    cid = runtime.new_id()
    pid, master = pty.fork()
    if pid == 0:
        os.execv(PYRUNC, [PYRUNC, "--root", runtime.root, "run", "--bundle", bundle, cid])
    try:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 70, 0, 0))
        time.sleep(0.5)
        os.write(master, b"hello\r")
        data = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            if b"20 70" in data:
                break
        _, status = os.waitpid(pid, 0)
        text = data.decode(errors="replace").replace("\r", "")
        assert "got:hello" in text
        assert "20 70" in text
        assert os.waitstatus_to_exitcode(status) == 4
    finally:
        os.close(master)


def test_create_with_terminal_releases_the_callers_pipes(runtime, tmp_path):
    """containerd's shim reads create's stdout/stderr to end of file: with a terminal the init
    must not keep them (its stdio is the pty from create on)."""
    console = ConsoleSocket(tmp_path / "c.sock")
    try:
        bundle = runtime.bundle(tty_config("true"))
        cid = runtime.new_id()
        proc = subprocess.Popen([PYRUNC, "--root", runtime.root, "create", "--console-socket",
                                 console.path, "--bundle", bundle, cid],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=20)      # hangs if the init held the pipes
        assert proc.returncode == 0, err
        assert runtime.state(cid)["status"] == "created"
    finally:
        console.close()
