"""The daemon's heap: glibc malloc tuned so that what a pull or an unpack used goes back.

A pull moves hundreds of MiB through 1 MiB buffers on several threads (downloads, gRPC
messages, decompression). With glibc's defaults each thread may get an arena of its own (8 per
core) and the mmap threshold rises to the size of the largest buffer freed, so those buffers
end up in arenas that never shrink: the daemon's RSS grows with every pull. Here:

- at most two arenas (``M_ARENA_MAX``): the GIL serialises most allocation anyway;
- a fixed mmap threshold of 128 KiB (``M_MMAP_THRESHOLD``, which also stops it from rising):
  big buffers are mapped and unmapped, returned the moment they are freed;
- a trim threshold of 128 KiB (``M_TRIM_THRESHOLD``), and :func:`trim` (``malloc_trim``) after a
  pull or an unpack, which returns the free pages inside the heaps as well.

Only glibc has these (looked up with ctypes); elsewhere both functions do nothing.
"""
from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        import ctypes
        libc = ctypes.CDLL(None)
        _libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
    return _libc


def tune() -> None:
    """Set the arena and threshold limits (call once, early in the daemon)."""
    libc = _glibc()
    if libc:
        libc.mallopt(M_ARENA_MAX, 2)
        libc.mallopt(M_MMAP_THRESHOLD, 128 << 10)
        libc.mallopt(M_TRIM_THRESHOLD, 128 << 10)


def trim() -> None:
    """Give the free memory of the heaps back to the system."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
