"""The receiving end of `--console-socket`: a unix socket on which the runtime
sends the pseudoterminal master (SCM_RIGHTS), and a reader that collects what
the container writes to its terminal until the slave side closes."""

from __future__ import annotations

import os
import socket
import threading
import time


class ConsoleSocket:
    def __init__(self, path: str, timeout: float = 15.0):
        self.path = path
        self.timeout = timeout
        self.master: int | None = None
        self.error: str | None = None
        self._chunks: list[bytes] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(1)
        self._sock.settimeout(timeout)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
            with conn:
                conn.settimeout(self.timeout)
                _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            if not fds:
                self.error = "the runtime connected but sent no file descriptor"
                return
            self.master = fds[0]
            for extra in fds[1:]:
                os.close(extra)
            self._read_until_hangup()
        except OSError as exc:
            self.error = f"console socket: {exc}"

    def _read_until_hangup(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every slave fd is closed
                return
            if not data:
                return
            self._chunks.append(data)

    def output(self, wait: float = 5.0) -> str:
        """What the container wrote so far (waits up to `wait`s for the hang-up)."""
        self._thread.join(wait)
        return b"".join(self._chunks).decode("utf-8", "replace").replace("\r\n", "\n")

    def close(self) -> None:
        self._sock.close()
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
