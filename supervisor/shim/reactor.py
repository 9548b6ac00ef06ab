"""A minimal single-threaded event loop on epoll: fd readiness callbacks plus one-shot timers.

Each fd has at most one read callback and one write callback; the epoll registration is kept in
step with which of them are set. Hang-up and error conditions are delivered to whichever
callbacks are set, which then see EOF or EPIPE from read/write. The shim has a handful of fds and
timers, so this stays tiny (and avoids importing selectors or asyncio into every shim).
"""
from __future__ import annotations

import select
import time

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_FAIL = select.EPOLLHUP | select.EPOLLERR


class Reactor:
    def __init__(self):
        self.ep = select.epoll()
        self.cbs: dict[int, list] = {}
        self.registered: dict[int, int] = {}
        self.timers: list = []

    def _sync(self, fd: int) -> None:
        rcb, wcb = self.cbs.get(fd, (None, None))
        mask = (_IN if rcb else 0) | (_OUT if wcb else 0)
        old = self.registered.get(fd)
        if not mask:
            self.cbs.pop(fd, None)
            if old is not None:
                del self.registered[fd]
                self.ep.unregister(fd)
        elif old is None:
            self.ep.register(fd, mask)
            self.registered[fd] = mask
        elif old != mask:
            self.ep.modify(fd, mask)
            self.registered[fd] = mask

    def on_read(self, fd: int, cb) -> None:
        self.cbs.setdefault(fd, [None, None])[0] = cb
        self._sync(fd)

    def on_write(self, fd: int, cb) -> None:
        self.cbs.setdefault(fd, [None, None])[1] = cb
        self._sync(fd)

    def forget(self, fd: int) -> None:
        """Drop both callbacks of fd (call before closing it)."""
        if fd in self.cbs:
            self.cbs[fd] = [None, None]
            self._sync(fd)

    def call_later(self, delay: float, cb) -> None:
        self.timers.append((time.monotonic() + delay, cb))

    def _run_timers(self) -> float:
        now = time.monotonic()
        due = [t for t in self.timers if t[0] <= now]
        if due:
            self.timers = [t for t in self.timers if t[0] > now]
            for _, cb in sorted(due, key=lambda t: t[0]):
                cb()
        if not self.timers:
            return -1
        return max(0.0, min(t[0] for t in self.timers) - time.monotonic())

    def run_once(self) -> None:
        timeout = self._run_timers()
        for fd, ev in self.ep.poll(timeout):
            if ev & (_IN | _FAIL):
                cb = self.cbs.get(fd, (None, None))[0]
                if cb:
                    cb()
            if ev & (_OUT | _FAIL):
                cb = self.cbs.get(fd, (None, None))[1]
                if cb:
                    cb()

    def run(self, should_stop) -> None:
        while not should_stop():
            self.run_once()
