"""File descriptors closed on every path, without a ``try/finally`` per descriptor.

``closing(fd)`` owns one descriptor for a ``with`` block::

    with closing(os.open(a, ...)) as src, closing(os.open(b, ...)) as dst:
        copy(src, dst)

closes ``dst`` then ``src`` however the block ends, and ``src`` alone when opening ``b`` fails
(the hand-written form, two opens then one ``try``, leaked ``src`` there).  :class:`Fds` owns a
varying set (pipes made only on some paths, say) and closes what it holds, newest first.

Stdlib-free (``posix`` only): the runtime's hot path and the supervisor's shims use it, and
``contextlib`` would cost both an import.
"""

from posix import close


class closing:  # noqa: N801 - reads like contextlib.closing, which it replaces for fds
    """Close ``fd`` when the ``with`` block ends; ``None`` or a negative fd is ignored."""

    __slots__ = ("fd",)

    def __init__(self, fd: int | None):
        self.fd = fd

    def __enter__(self) -> int | None:
        return self.fd

    def __exit__(self, *exc) -> None:
        if self.fd is not None and self.fd >= 0:
            close(self.fd)


class Fds:
    """Descriptors closed together when the ``with`` block ends (newest first)."""

    __slots__ = ("held",)

    def __init__(self):
        self.held: list[int] = []

    def __enter__(self) -> "Fds":
        return self

    def add(self, fd: int) -> int:
        """Own ``fd`` from now on; returns it."""
        self.held.append(fd)
        return fd

    def pair(self, fds: tuple[int, int]) -> tuple[int, int]:
        """Own both ends of a pipe (``os.pipe2``'s result)."""
        self.held.extend(fds)
        return fds

    def close(self, fd: int) -> None:
        """Close one owned descriptor now (e.g. a pipe's write end once a child has it)."""
        self.held.remove(fd)
        close(fd)

    def __exit__(self, *exc) -> None:
        held, self.held = self.held, []
        for fd in reversed(held):
            try:
                close(fd)
            except OSError:
                pass    # (EINTR/EIO on close: the descriptor is released all the same)
