"""Process titles, so ``ps``, ``top`` and ``pgrep`` tell the shims apart.

Every shim is forked from the zygote, so without this they all show the zygote's command line
(``python -S -m supervisor.shim --socket .../zygote-XXXX.sock ... --zygote``). Titles:

- ``pyrunc-shim zygote``                  the process that forks shims (core/shims.py)
- ``pyrunc-shim spare``                   a shim that owns no container yet
- ``pyrunc-shim ns=NAMESPACE id=ID``      the shim of container ID in NAMESPACE

The setproctitle package rewrites the process's argv area (``/proc/PID/cmdline``, what ``ps``
shows) and its name (``/proc/PID/comm``, what ``pgrep`` and ``top`` match: the first 15 bytes,
``pyrunc-shim ns=`` for a shim). Its C module is imported directly: the package's ``__init__``
imports ``logging``, which every shim would carry. Without the module titles are simply not
set. Tools that must find a shim whatever its title use its socket (see
spec-tests/supervisor/sv_harness.py).
"""
from __future__ import annotations

PREFIX = "pyrunc-shim"


def set_title(*words: str) -> None:
    """Title the process ``pyrunc-shim WORDS...``."""
    try:
        import _setproctitle
    except ImportError:
        return
    _setproctitle.setproctitle(" ".join((PREFIX,) + words))


def for_container(namespace: str, cid: str) -> tuple[str, str]:
    return (f"ns={namespace}", f"id={cid}")
