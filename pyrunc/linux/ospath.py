"""``os.path`` for pyrunc's :mod:`pyrunc.linux.os`, without importing ``posixpath`` (which imports
``os``, the very cost that module avoids).

The functions pyrunc calls on its hot path are written here for ``str`` paths, with
``posixpath``'s exact results (the tests hold them equal on generated paths); any other argument
type (bytes, a PathLike) and every other function go to ``posixpath`` itself, imported the first
time they are needed.
"""

from posix import _path_normpath, getcwd, lstat, stat

_DIR, _REG, _LNK, _FMT = 0o040000, 0o100000, 0o120000, 0o170000


def _fallback_to(module_name: str, namespace: dict):
    """A module ``__getattr__``: a name the module does not define is ``module_name``'s,
    imported on first use and kept in ``namespace`` (for :mod:`pyrunc.linux.os` too)."""
    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = namespace[attr] = getattr(__import__(module_name), attr)
        return value
    return __getattr__


__getattr__ = _fallback_to("posixpath", globals())


def _posixpath():
    import posixpath
    return posixpath


def join(a, *parts):
    if type(a) is not str or any(type(p) is not str for p in parts):
        return _posixpath().join(a, *parts)
    path = a
    for part in parts:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def split(p):
    if type(p) is not str:
        return _posixpath().split(p)
    cut = p.rfind("/") + 1
    head, tail = p[:cut], p[cut:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def dirname(p):
    return split(p)[0] if type(p) is str else _posixpath().dirname(p)


def basename(p):
    return p[p.rfind("/") + 1:] if type(p) is str else _posixpath().basename(p)


def isabs(p):
    return p.startswith("/") if type(p) is str else _posixpath().isabs(p)


def normpath(p):
    return (_path_normpath(p) or ".") if type(p) is str else _posixpath().normpath(p)


def abspath(p):
    if type(p) is not str:
        return _posixpath().abspath(p)
    return normpath(p if p.startswith("/") else join(getcwd(), p))


def relpath(p, start=None):
    if type(p) is not str or (start is not None and type(start) is not str):
        return _posixpath().relpath(p, start)
    if not p:
        raise ValueError("no path specified")
    here = [c for c in abspath("." if start is None else start).split("/") if c]
    there = [c for c in abspath(p).split("/") if c]
    common = 0
    for a, b in zip(here, there):
        if a != b:
            break
        common += 1
    rest = [".."] * (len(here) - common) + there[common:]
    return join(*rest) if rest else "."


def _mode(p, follow: bool = True) -> int | None:
    try:
        return (stat if follow else lstat)(p).st_mode & _FMT
    except (OSError, ValueError):
        return None


def exists(p) -> bool:
    return _mode(p) is not None


def lexists(p) -> bool:
    return _mode(p, follow=False) is not None


def isdir(p) -> bool:
    return _mode(p) == _DIR


def isfile(p) -> bool:
    return _mode(p) == _REG


def islink(p) -> bool:
    return _mode(p, follow=False) == _LNK
