"""``pyrunc COMMAND --help``: what the command does, its arguments, and one line per flag.

Only loaded when help is asked for (the flag tables themselves stay in :mod:`pyrunc.cli`, so
that what is listed here is checked against what is parsed: a flag the parser takes without a
line here is a test failure, see spec-tests/test_runc_cli.py).  The layout is runc's: NAME,
USAGE, OPTIONS with ``--flag value, -f value`` on the left.
"""

USAGE = {
    "create": "<container-id>",
    "run": "<container-id>",
    "start": "<container-id>",
    "state": "<container-id>",
    "exec": "<container-id> <command> [command options]  ||  -p process.json <container-id>",
    "kill": "<container-id> [signal]",
    "delete": "<container-id>",
    "list": "",
    "pause": "<container-id>",
    "resume": "<container-id>",
    "ps": "<container-id> [ps options]",
    "events": "<container-id>",
    "update": "<container-id>",
    "spec": "",
    "features": "",
}

_CREATE = {
    "bundle": "the bundle directory (config.json and the root), default: the current directory",
    "console-socket": "AF_UNIX socket that is sent the master end of the container's terminal",
    "pid-file": "write the container's init pid to this file",
    "no-pivot": "do not use pivot_root to enter the root (for a rootfs on a ramdisk)",
    "no-new-keyring": "keep the caller's session keyring instead of a new one",
    "preserve-fds": "pass N more descriptors after stdio (and $LISTEN_FDS) to the container",
}

FLAGS = {
    "create": _CREATE,
    "run": dict(_CREATE, **{
        "detach": "return once the process runs, instead of waiting for it",
        "keep": "keep the stopped container instead of deleting it when it exits",
        "no-subreaper": "accepted for runc's sake; pyrunc always reaps what it started",
    }),
    "exec": {
        "process": "path to a process.json describing the whole process",
        "tty": "give the process a pseudo-terminal",
        "console-socket": "AF_UNIX socket that is sent the master end of the process's terminal",
        "cwd": "working directory in the container",
        "env": "set an environment variable (NAME=value; repeatable)",
        "user": "run as UID[:GID] or a name from the container's /etc/passwd",
        "additional-gids": "add a supplementary group (repeatable)",
        "cap": "add a capability (repeatable)",
        "no-new-privs": "set no_new_privs for the process",
        "detach": "return once the process runs, instead of waiting for it",
        "pid-file": "write the process's pid to this file",
        "preserve-fds": "pass N more descriptors after stdio to the process",
        "apparmor": "AppArmor profile (refused where AppArmor is on)",
        "process-label": "SELinux label (refused where SELinux is on)",
        "cgroup": "accepted for runc's sake (sub-cgroups are not supported)",
        "ignore-paused": "allow exec in a paused container (the process runs once it is resumed)",
    },
    "kill": {"all": "signal every process of the container, not only its init"},
    "delete": {"force": "kill the container first if it is not stopped (SIGKILL)"},
    "list": {"format": "table or json (default: table)", "quiet": "print only the IDs"},
    "ps": {"format": "table or json (default: table)"},
    "events": {"stats": "print the container's statistics once and exit",
               "interval": "how often to print statistics (default: 5s)"},
    "update": {
        "resources": "a linux.resources JSON file ('-' for stdin); the other flags are ignored",
        "memory": "memory limit in bytes", "memory-reservation": "memory soft limit in bytes",
        "memory-swap": "memory + swap limit in bytes (-1: unlimited)",
        "kernel-memory": "kernel memory limit in bytes (cgroup v1)",
        "kernel-memory-tcp": "kernel TCP buffer limit in bytes (cgroup v1)",
        "cpu-shares": "CPU shares (relative weight)", "cpu-share": "the same as --cpu-shares",
        "cpu-quota": "CFS quota in microseconds per period",
        "cpu-period": "CFS period in microseconds",
        "cpu-rt-period": "realtime period in microseconds",
        "cpu-rt-runtime": "realtime runtime in microseconds per period",
        "cpuset-cpus": "CPUs to run on (e.g. 0-1)", "cpuset-mems": "memory nodes to use",
        "pids-limit": "most processes the container may have",
        "blkio-weight": "block IO weight (10 to 1000)",
        "l3-cache-schema": "Intel RDT L3 schema (not supported)",
        "mem-bw-schema": "Intel RDT memory bandwidth schema (not supported)",
    },
    "spec": {"bundle": "where to write config.json (default: the current directory)",
             "rootless": "a config for a container started without root"},
}


def render(name: str, summary: str, table: dict) -> str:
    """The help text of command ``name``, whose flag table (cli's) is ``table``."""
    aliases: dict[str, list[str]] = {}
    for flag, spec in table.items():
        if isinstance(spec, str):
            aliases.setdefault(spec, []).append(flag)
    described = FLAGS.get(name, {})
    rows = []
    for flag, spec in table.items():
        if isinstance(spec, str):
            continue
        value = "" if spec[0] == "bool" else " value"
        names = ", ".join(f"--{f}{value}" if len(f) > 1 else f"-{f}{value}"
                          for f in [flag, *aliases.get(flag, [])])
        rows.append((names, described.get(flag, "")))
    width = max((len(r[0]) for r in rows), default=0)
    usage = USAGE.get(name, "")
    lines = ["NAME:", f"   pyrunc {name} - {summary}", "", "USAGE:",
             f"   pyrunc {name}{' [command options]' if rows else ''}"
             f"{' ' + usage if usage else ''}"]
    if rows:
        lines += ["", "OPTIONS:"]
        lines += [f"   {names.ljust(width)}  {text}".rstrip() for names, text in rows]
    return "\n".join(lines) + "\n"
