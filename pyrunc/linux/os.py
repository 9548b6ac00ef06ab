"""The ``os`` module's API for pyrunc, without importing ``os``.

Importing ``os`` costs about four million instructions, some 2 ms on this project's machines: a
sixth of a whole ``pyrunc kill``.  Most of it is ``_collections_abc``, which ``os`` imports (for
``os.environ``'s ``MutableMapping``) and which defines two dozen abstract base classes; the rest
is ``os``'s own body, ``posixpath``, ``genericpath`` and ``stat``.  Every function ``os`` exports
on Linux comes from the built-in ``posix`` module, which costs nothing to import.  pyrunc's
modules therefore ``from pyrunc.linux import os``: this module re-exports ``posix``, and adds what
the runtime uses of ``os``'s own Python layer — a few constants, ``fsencode``/``fsdecode``,
``getenv`` and ``path`` (:mod:`pyrunc.linux.ospath`).

Anything else (``os.environ``, ``os.walk``, ``os.fdopen``, ...) is the real ``os``'s, fetched on
first use: the module ``__getattr__`` imports ``os`` then, so what is not on the hot path keeps
the standard library's exact behaviour and pays for it only when it runs.  The functions here
are the same objects ``os`` exports (``os.open is posix.open``), so the two can be mixed freely.
"""

import sys

from posix import *         # noqa: F401,F403 - what os itself re-exports
from posix import _exit    # noqa: F401 - (a private name: not in the * import)
from posix import environ as _environb, unsetenv as _posix_unsetenv

from pyrunc.linux import ospath as path

del environ                 # noqa: F821 - posix's is the bytes one; os.environ is str (lazy)

name = "posix"
sep = "/"
curdir, pardir, extsep = ".", "..", "."
devnull = "/dev/null"
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
error = OSError

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def fsencode(filename) -> bytes:
    """As ``os.fsencode``."""
    if isinstance(filename, str):
        return filename.encode(_FS_ENCODING, _FS_ERRORS)
    if isinstance(filename, bytes):
        return filename
    return _real().fsencode(filename)


def fsdecode(filename) -> str:
    """As ``os.fsdecode``."""
    if isinstance(filename, bytes):
        return filename.decode(_FS_ENCODING, _FS_ERRORS)
    if isinstance(filename, str):
        return filename
    return _real().fsdecode(filename)


def getenv(key: str, default=None):
    """As ``os.getenv`` (read from the environment the process started with, as os.environ)."""
    value = _environb.get(fsencode(key))
    return default if value is None else fsdecode(value)


def unsetenv(key: str) -> None:
    """As ``del os.environ[key]`` without the KeyError: gone for children and for os.environ."""
    encoded = fsencode(key)
    _environb.pop(encoded, None)    # (os.environ wraps this very dict)
    _posix_unsetenv(encoded)


def _real():
    import os as real
    return real


# the rest of os (its Python-level helpers), imported the first time one is used
__getattr__ = path._fallback_to("os", globals())
