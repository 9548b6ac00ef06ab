"""The runtime's own modules, compiled into one file and imported from memory.

A ``pyrunc run`` imports some 45 of pyrunc's modules across its processes, and Python's import
system spends about 75 µs on each before running a line of it: it asks every finder, looks the
name up in the package's directory, stats the source and the ``.pyc``, opens and reads the
``.pyc`` and checks it.  That is 2-3 ms of every call, as much as a tenth of it.

``make setup`` therefore writes a *bundle* next to the launcher (:func:`build`, called by
tools/launcher.py): the marshalled code of every module of the package, compiled without
docstrings, behind an index::

    magic (4 bytes) | index size (4 bytes, little-endian) | marshal(index) | code | code | ...
    index: module name -> (offset, size, is a package, source path, source mtime_ns, source size)

The launcher runs this module itself from ``VENV/pyrunc.boot``, its code compiled by
:func:`build_boot` (importing it from pyrunc/ would cost two directory listings and two
``.pyc`` reads on every call), reads the index and puts :class:`Finder` first on
``sys.meta_path``.  A module is served from the bundle only while its source file is the one
that was compiled (same mtime and size: one ``stat``, the check a ``.pyc`` gets too), read with
one ``pread`` (a call reads only what it imports); otherwise, and for any module the bundle
does not hold, the finder steps aside and the normal import system loads the source.  An edited checkout therefore never
runs stale code, and a bundle from another Python version (another magic number) is not used at
all.

Forked children (the stage-1 child, the init) inherit the finder.  Like every import, it needs
the host's filesystem: the init imports what it needs before pivot_root, as it must without the
bundle too.
"""

import marshal
import posix     # (not os: the launcher imports this module first, before anything else)

from _frozen_importlib import ModuleSpec        # importlib.machinery's, without its import
from _frozen_importlib_external import MAGIC_NUMBER

__all__ = ["build", "install", "Finder"]


class Finder:
    """A meta path finder and loader for the modules one bundle holds."""

    def __init__(self, path: str, inode: int, index: dict, base: int):
        self.path = path        # the bundle, opened again for each module: no descriptor of
        self.inode = inode      # ours stays open to be inherited or to take a number a
        self.index = index      # caller's --preserve-fds means; a bundle rebuilt since (another
        self.base = base        # inode) is not read; code starts at ``base``

    def find_spec(self, name, path=None, target=None):
        entry = self.index.get(name)
        if entry is None:
            return None
        off, size, is_pkg, source, mtime_ns, length = entry
        try:
            st = posix.stat(source)
            if st.st_mtime_ns != mtime_ns or st.st_size != length:
                return None                     # edited since the bundle was built
            code, _ = _pread(self.path, size, self.base + off, self.inode)
        except OSError:
            return None
        spec = ModuleSpec(name, self, origin=source, is_package=is_pkg, loader_state=code)
        if is_pkg:
            spec.submodule_search_locations = [source.rpartition("/")[0]]
        return spec

    def create_module(self, spec):
        return None                             # the default module object

    def exec_module(self, module):
        spec = module.__spec__
        code, spec.loader_state = spec.loader_state, None
        module.__file__ = spec.origin       # (not spec.has_location: that works out __cached__)
        exec(marshal.loads(code), module.__dict__)


def _pread(path: str, size: int, offset: int, inode: int | None = None) -> tuple[bytes, int]:
    """``size`` bytes at ``offset`` of the file, and its inode; OSError if the file is not the
    one with ``inode`` (when given) or is short."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        found = posix.fstat(fd).st_ino
        if inode is not None and found != inode:
            raise OSError(0, "bundle: rebuilt since this process started", path)
        data = posix.pread(fd, size, offset)
    finally:
        posix.close(fd)
    if len(data) != size:
        raise OSError(0, "bundle: short read", path)
    return data, found


def install(path: str) -> None:
    """Serve imports from the bundle at ``path`` first; without a usable one, change nothing."""
    try:
        head, inode = _pread(path, 8, 0)
        if head[:4] != MAGIC_NUMBER:
            return                              # written by another Python version
        size = int.from_bytes(head[4:8], "little")
        index, _ = _pread(path, size, 8, inode)
        index = marshal.loads(index)
    except (OSError, ValueError, EOFError):
        return
    import sys
    sys.meta_path.insert(0, Finder(path, inode, index, 8 + size))


def build_boot(path: str) -> None:
    """Write this module's own code, compiled, to ``path``, for the launcher to run (and call
    :func:`install`) before anything can be imported from a bundle.  The copy checks, when it
    runs, that this file is still the one it was compiled from (:func:`_check_boot`)."""
    st = posix.stat(__file__)
    check = f"\n_check_boot({__file__!r}, {st.st_mtime_ns}, {st.st_size})\n"
    with open(__file__, "rb") as f:
        source = f.read() + check.encode()
    _write(path, marshal.dumps(compile(source, __file__, "exec", dont_inherit=True, optimize=2)))


def _check_boot(source: str, mtime_ns: int, size: int) -> None:
    """The last line of the launcher's copy: a copy older than its source steps aside (the
    launcher then imports this module from its file)."""
    st = posix.stat(source)
    if st.st_mtime_ns != mtime_ns or st.st_size != size:
        raise ImportError(f"{source} changed since its boot copy was built")


def _write(path: str, data: bytes) -> None:
    import os
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build(package_dir: str, path: str) -> int:
    """Compile every module under ``package_dir`` (a package) into a bundle at ``path``,
    replaced atomically; returns how many modules it holds."""
    import os
    package_dir = os.path.abspath(package_dir)
    top = os.path.basename(package_dir)
    index, chunks, offset = {}, [], 0
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and
                             os.path.exists(os.path.join(dirpath, d, "__init__.py")))
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            source = os.path.join(dirpath, filename)
            parts = [top, *os.path.relpath(source, package_dir)[:-3].split(os.sep)]
            is_pkg = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_pkg else parts)
            st = os.stat(source)             # before reading: an edit after it shows as stale
            with open(source, "rb") as f:
                text = f.read()
            code = marshal.dumps(compile(text, source, "exec", dont_inherit=True, optimize=2))
            index[name] = (offset, len(code), is_pkg, source, st.st_mtime_ns, st.st_size)
            chunks.append(code)
            offset += len(code)
    head = marshal.dumps(index)
    _write(path, b"".join([MAGIC_NUMBER, len(head).to_bytes(4, "little"), head, *chunks]))
    return len(index)
