"""The version every pyrunc command prints (``--version``) and the Version service answers.

Like containerd's ``containerd --version`` (``containerd github.com/containerd/containerd v1.7.0
1677a17964311325ed1c31e2c0a3589ce6d5c30d``): the program's name, the package version and the
revision, which is the git commit of the source tree when the package runs from a git checkout
(or worktree) and ``unknown`` otherwise.  The commit is read from the repository's files, not by
running git, so ``--version`` costs no process and works where git is not installed; it is read
only when asked for (start-up never pays for it).

Stdlib only (``os``): the shim imports this module under ``python -S``.
"""
from __future__ import annotations

import os

from supervisor import __version__

VERSION = __version__
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HEX = frozenset("0123456789abcdef")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _git_dirs(top: str) -> tuple[str, str]:
    """(the checkout's git dir, the common git dir); a worktree's ``.git`` is a file naming its
    own git dir, whose ``commondir`` names the shared one (refs, packed-refs)."""
    dotgit = os.path.join(top, ".git")
    if os.path.isdir(dotgit):
        return dotgit, dotgit
    line = _read(dotgit)
    if not line.startswith("gitdir:"):
        return "", ""
    gitdir = os.path.join(top, line[len("gitdir:"):].strip())
    common = _read(os.path.join(gitdir, "commondir"))
    return gitdir, os.path.normpath(os.path.join(gitdir, common)) if common else gitdir


def _is_sha(value: str) -> bool:
    return len(value) in (40, 64) and set(value) <= _HEX


def _resolve(ref: str, gitdir: str, common: str) -> str:
    for base in dict.fromkeys((gitdir, common)):
        value = _read(os.path.join(base, ref))
        if _is_sha(value):
            return value
    for line in _read(os.path.join(common, "packed-refs")).splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _is_sha(sha):
            return sha
    return ""


def commit(top: str = PKG_ROOT) -> str:
    """The commit checked out at ``top`` ('' when it is not a git checkout)."""
    gitdir, common = _git_dirs(top)
    if not gitdir:
        return ""
    head = _read(os.path.join(gitdir, "HEAD"))
    if head.startswith("ref:"):
        return _resolve(head[4:].strip(), gitdir, common)
    return head if _is_sha(head) else ""


def revision() -> str:
    """What the Version service answers as ``revision``: the commit, or ``unknown``."""
    return commit() or "unknown"


def line(program: str) -> str:
    """The ``--version`` line of ``program``: ``pyrunc-supervisor 0.1.0 <commit>``."""
    return f"{program} {VERSION} {revision()}"


def add_flag(parser, *names: str) -> None:
    """Give an argparse parser ``--version`` (and ``names``), printing :func:`line` of its prog;
    the commit is read only when the flag is used."""
    import argparse

    class Version(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(line(parser.prog))
            parser.exit()

    parser.add_argument("--version", *names, action=Version, nargs=0,
                        help="print the version and exit")
