"""Debug only: make ``create`` block at a named stage, so a test can kill it exactly there.

A create killed half-way must leave nothing that a later ``delete`` cannot find
(:mod:`pyrunc.halfmade`).  Hooks that block reach only the hook stages; the narrow windows
between two records of state.json need a way in that does not depend on timing.  With

    PYRUNC_DEBUG_STOP_AT=<stage>   [PYRUNC_DEBUG_STOP_NOTE=<file>]

``create`` (and ``run``) stops at that stage: it appends ``<stage> <pid>`` to the note file, if
one is named, and sleeps until a signal ends it (SIGTERM, SIGINT and SIGHUP raise there, as
anywhere in create, and create tears itself down).  The stages, in order:

* ``claimed``  — the ID is claimed and the first record written (cgroup directories claimed,
  none made yet); the stage-1 child has not been released;
* ``cgroup``   — the container's cgroup directories are made (every hierarchy), the init not yet
  forked into them;
* ``rootfs``   — in the init: the rootfs is mounted, pivot_root not yet done;
* ``init``     — the init's pid is recorded, runtime-namespace hooks not yet run;
* ``ready``    — the init reported READY; the ``creating`` record is not yet dropped.

Nothing else reads these variables; without them each stop is one dictionary lookup.  They are
for tests and debugging only, never for production: a container stopped here is half-made.
"""

import time

from pyrunc.linux import os

STOP_AT = "PYRUNC_DEBUG_STOP_AT"
NOTE = "PYRUNC_DEBUG_STOP_NOTE"
STAGES = ("claimed", "cgroup", "rootfs", "init", "ready")


def stop(stage: str) -> None:
    """Block here forever if ``PYRUNC_DEBUG_STOP_AT`` names ``stage``."""
    if os.getenv(STOP_AT) != stage:
        return
    note = os.getenv(NOTE)
    if note:
        fd = os.open(note, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{stage} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    while True:
        time.sleep(3600)
