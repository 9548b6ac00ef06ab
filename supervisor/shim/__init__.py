"""pyrunc-shim: the per-container process that owns one container for the supervisor.

The daemon starts ``pyrunc-shim --socket PATH``; the shim binds its control socket, forks, and the
short-lived parent exits so that the shim is never the daemon's child (it lives in its own session
and survives the daemon). It makes itself a child subreaper, so the container's init and exec'd
processes, whose parent ``runc`` exits right after creating them, are reparented to it and it can
reap them and record their exit status.

Layout of the package (stdlib-only, imported with ``python -S``: a shim must stay small):
- ``reactor``  a tiny selectors loop with timers (no asyncio: it costs memory in every shim).
- ``stdio``    pumps between the container's pipes/pty and the client's FIFOs or log files.
- ``runtime``  runs the OCI runtime binary (runc's command line) and reaps children.
- ``states``   one object per process state (created, running, paused, stopped, deleted).
- ``task``     the container and its processes: create/start/exec/kill/delete, exit records.
- ``server``   the control socket: requests from the daemon, events back to it.
"""


def main(argv=None):
    from supervisor.shim.server import main as _main
    return _main(argv)
