"""A minimal single-threaded event loop on epoll: fd readiness callbacks plus one-shot timers.

Each fd has at most one read callback and one write callback; the epoll registration is kept in
step with which of them are set. Hang-up and error conditions are delivered to whichever
callbacks are set, which then see EOF or EPIPE from read/write. The shim has a handful of fds and
timers, so this stays tiny (and avoids importing selectors or asyncio into every shim).

Two classes of fd: *control* fds (the shim's sockets and its signal pipe: requests, replies,
reaping) and the rest (the containers' stdio pumps, and a runtime call's own pipes). The loop
serves both; :meth:`Reactor.run_until`, which the shim runs while it waits for the OCI runtime,
serves only the rest, from a second epoll set that never holds a control fd. So a slow runtime
call (a hook that sleeps, a stuck ``runtime ps``) holds back the next request, as a synchronous
call must, but never the output of the container's other processes.
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
        self.ep_io = select.epoll()         # the same minus control fds: for run_until
        self.control: set[int] = set()
        self.cbs: dict[int, list] = {}
        self.registered: dict[int, int] = {}
        self.timers: list = []

    def _sync(self, fd: int) -> None:
        rcb, wcb = self.cbs.get(fd, (None, None))
        mask = (_IN if rcb else 0) | (_OUT if wcb else 0)
        old = self.registered.get(fd)
        eps = (self.ep,) if fd in self.control else (self.ep, self.ep_io)
        if not mask:
            self.cbs.pop(fd, None)
            if old is not None:
                del self.registered[fd]
                for ep in eps:
                    ep.unregister(fd)
        elif old is None:
            for ep in eps:
                ep.register(fd, mask)
            self.registered[fd] = mask
        elif old != mask:
            for ep in eps:
                ep.modify(fd, mask)
            self.registered[fd] = mask

    def mark_control(self, fd: int) -> None:
        """fd is a control fd (call before setting its callbacks): run_until leaves it alone."""
        self.control.add(fd)

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
        self.control.discard(fd)

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
        self._dispatch(self.ep.poll(self._run_timers()))

    def run_until(self, done) -> None:
        """Serve every fd but the control fds (no timers) until done() is true."""
        while not done():
            self._dispatch(self.ep_io.poll())

    def _dispatch(self, events) -> None:
        for fd, ev in events:
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
