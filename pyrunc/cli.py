"""``pyrunc``'s command line: runc's commands, flags and exit codes.

Engines call runc with Go-style flags (``--root X``, ``--root=X``, ``-root X``), global flags before
the command, and the command's flags before its positional arguments (parsing stops at the first
positional, so ``exec ID sh -c ...`` passes ``-c`` through).  A small table-driven parser handles
that without argparse (whose import alone costs a few ms on every call).

Each command's module is imported only when that command runs.  Errors print one line (see
:mod:`pyrunc.log`) and exit with runc's codes: 1, but 3 for an unknown command and 255 for an
``exec`` that fails after its arguments were accepted (runc's ``fatalWithCode(..., 255)``);
``run`` and ``exec`` exit with the process's own code.
"""

import sys

from pyrunc.linux import os
from pyrunc import SPEC_VERSION, log
from pyrunc.errors import Interrupted, PyruncError

VERSION = "0.1.0"

# Flag kinds: bool, str, int, list (repeatable).
GLOBAL_FLAGS = {
    "root": ("str", ""), "log": ("str", ""), "log-format": ("str", "text"),
    "debug": ("bool", False), "systemd-cgroup": ("bool", False), "rootless": ("str", "auto"),
    "criu": ("str", ""), "help": ("bool", False), "h": ("bool", False),
    "version": ("bool", False), "v": ("bool", False),
}
_CREATE_FLAGS = {
    "bundle": ("str", "."), "b": "bundle", "console-socket": ("str", ""),
    "pid-file": ("str", ""), "no-pivot": ("bool", False), "no-new-keyring": ("bool", False),
    "preserve-fds": ("int", 0),
}


# The commands that would make a cgroup through the systemd driver: refused, as runc refuses them
# where systemd does not run ("systemd not running on this host"), before anything is made.  The
# others (list, state, kill, delete, ...) accept the flag and ignore it, as runc does: podman
# configured for systemd passes it on every call.
SYSTEMD_CGROUP_REFUSED = ("create", "run")


class UsageError(PyruncError):
    pass


def parse_flags(args: list[str], table: dict) -> tuple[dict, list[str]]:
    """Go flag package semantics: flags until the first positional or ``--``."""
    values = {}
    for name, spec in table.items():
        if isinstance(spec, tuple):
            values[name] = list(spec[1]) if spec[0] == "list" else spec[1]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return values, args[i + 1:]
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.lstrip("-").partition("=")
        spec = table.get(name)
        if isinstance(spec, str):           # an alias
            name, spec = spec, table[spec]
        if spec is None:
            raise UsageError(f"flag provided but not defined: {arg.split('=')[0]}")
        kind = spec[0]
        if kind == "bool":
            values[name] = inline.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: {arg}")
                inline = args[i]
            if kind == "int":
                try:
                    values[name] = int(inline)
                except ValueError:
                    raise UsageError(f"invalid value {inline!r} for flag {arg}") from None
            elif kind == "list":
                values[name].append(inline)
            else:
                values[name] = inline
        i += 1
    return values, args[i:]


def _need(command: str, args: list[str], exactly: int | None = None, at_least: int = 0):
    if exactly is not None and len(args) != exactly:
        raise UsageError(f'"{command}" requires exactly {exactly} argument(s)')
    if len(args) < at_least:
        raise UsageError(f'"{command}" requires a minimum of {at_least} argument(s)')


def _create_options(flags: dict):
    from pyrunc.create import CreateOptions
    return CreateOptions(bundle=flags["bundle"], console_socket=flags["console-socket"],
                         pid_file=flags["pid-file"], no_pivot=flags["no-pivot"],
                         no_new_keyring=flags["no-new-keyring"],
                         preserve_fds=flags["preserve-fds"])


def _listen_fds() -> int:
    """Descriptors passed by socket activation ($LISTEN_FDS), which go on to the container."""
    listen = os.getenv("LISTEN_FDS", "")
    return int(listen) if listen.isdigit() else 0


def _passed_fds(name: str, flags: dict) -> int:
    """How many descriptors after stdio the caller passes on (``--preserve-fds``, and
    ``$LISTEN_FDS`` for create/run).  Each must be open now, before pyrunc opens anything of its
    own: a descriptor of ours on a free low number would pass for a preserved one and reach the
    container.  (A negative count is left to the command to refuse.)"""
    preserve = max(flags["preserve-fds"], 0)
    count = preserve + (_listen_fds() if name != "exec" else 0)
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise UsageError(f"--preserve-fds {preserve}: fd {fd} is not open") from None
    return count


def _default_root() -> str:
    """``/run/pyrunc``; for an unprivileged caller ``$XDG_RUNTIME_DIR/pyrunc``, as runc's."""
    if os.geteuid() == 0 and not os.getenv("XDG_RUNTIME_DIR"):
        return "/run/pyrunc"
    from pyrunc import rootless
    return rootless.default_root()


# --- commands -----------------------------------------------------------------------------------

def _fork_setup_child(container_id: str, flags: dict, reaper: bool = False):
    """create/run: fork the stage-1 child at once (see :mod:`pyrunc.launch`: it works on the
    other core meanwhile; ``create`` checks the ID and kills the child if it is bad)."""
    if flags["preserve-fds"] < 0:
        raise UsageError("--preserve-fds must not be negative")
    from pyrunc import launch
    listen_fds = _listen_fds()
    return launch.fork_setup_child(container_id, os.path.abspath(flags["bundle"]),
                                   flags["no-pivot"], flags["no-new-keyring"],
                                   listen_fds + flags["preserve-fds"], listen_fds, reaper)


def cmd_create(g, flags, args):
    _need("create", args, exactly=1)
    child = _fork_setup_child(args[0], flags)
    from pyrunc import create
    c, _ = create.create(g["root"], args[0], _create_options(flags), child)
    c.close()
    return 0


def cmd_run(g, flags, args):
    _need("run", args, exactly=1)
    child = _fork_setup_child(args[0], flags, reaper=not flags["detach"])
    from pyrunc import create
    return create.run(g["root"], args[0], _create_options(flags), child,
                         detach=flags["detach"], keep=flags["keep"])


def cmd_start(g, flags, args):
    _need("start", args, exactly=1)
    from pyrunc import container
    container.start(g["root"], args[0])
    return 0


def cmd_state(g, flags, args):
    _need("state", args, exactly=1)
    from pyrunc import container
    sys.stdout.write(container.state_json(g["root"], args[0]) + "\n")
    return 0


def cmd_kill(g, flags, args):
    if len(args) not in (1, 2):
        raise UsageError('"kill" requires a minimum of 1 and a maximum of 2 argument(s)')
    sig = parse_signal(args[1] if len(args) == 2 else "SIGTERM")
    from pyrunc import container
    container.kill(g["root"], args[0], sig, flags["all"])
    return 0


def cmd_delete(g, flags, args):
    _need("delete", args, exactly=1)
    from pyrunc import container
    container.delete(g["root"], args[0], flags["force"])
    return 0


def cmd_list(g, flags, args):
    _need("list", args, exactly=0)
    from pyrunc import container, jsonio
    items = container.list_containers(g["root"])
    fmt = flags["format"]
    if flags["quiet"]:
        sys.stdout.write("".join(f"{c['id']}\n" for c in items))
    elif fmt == "json":
        sys.stdout.write((jsonio.dumps(items) if items else "null") + "\n")
    elif fmt == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
                 for c in items]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("".join(v.ljust(w + 3) for v, w in zip(r, widths)).rstrip() + "\n")
    else:
        raise UsageError(f"invalid format option {fmt!r}")
    return 0


def cmd_spec(g, flags, args):
    _need("spec", args, exactly=0)
    from pyrunc import specgen
    specgen.write(flags["bundle"], flags["rootless"])
    return 0


def cmd_features(g, flags, args):
    _need("features", args, exactly=0)
    from pyrunc import features
    sys.stdout.write(features.features_json() + "\n")
    return 0


def cmd_exec(g, flags, args):
    if not args:
        raise UsageError('"exec" requires a minimum of 1 argument(s)')
    from pyrunc import execute
    try:
        return execute.run(g["root"], args[0], _exec_options(execute, flags, args))
    except (PyruncError, OSError) as err:
        _report(err)
        return EXEC_FAILED


EXEC_FAILED = 255   # runc: any failure of exec past its argument checks


def _exec_options(execute, flags, args):
    return execute.ExecOptions(
        process_file=flags["process"], args=args[1:], tty=flags["tty"],
        console_socket=flags["console-socket"], cwd=flags["cwd"], env=flags["env"],
        user=flags["user"], additional_gids=flags["additional-gids"], caps=flags["cap"],
        no_new_privs=flags["no-new-privs"], detach=flags["detach"],
        pid_file=flags["pid-file"], preserve_fds=flags["preserve-fds"],
        ignore_paused=flags["ignore-paused"])


def cmd_pause(g, flags, args):
    _need("pause", args, exactly=1)
    from pyrunc import control
    control.pause(g["root"], args[0])
    return 0


def cmd_resume(g, flags, args):
    _need("resume", args, exactly=1)
    from pyrunc import control
    control.resume(g["root"], args[0])
    return 0


def cmd_ps(g, flags, args):
    _need("ps", args, at_least=1)
    from pyrunc import control
    sys.stdout.write(control.ps(g["root"], args[0], flags["format"], args[1:]) + "\n")
    return 0


def cmd_events(g, flags, args):
    _need("events", args, exactly=1)
    from pyrunc import control
    control.events(g["root"], args[0], flags["stats"], control.parse_duration(flags["interval"]))
    return 0


def cmd_update(g, flags, args):
    _need("update", args, exactly=1)
    from pyrunc import control, state
    state.load(g["root"], args[0]).close()  # (as runc: an unknown container first)
    control.update(g["root"], args[0], control.resources_from_flags(flags, flags["resources"]))
    return 0


_UPDATE_FLAGS = {"resources": ("str", ""), "r": "resources",
                 **{name: ("str", "") for name in (
                     "memory", "memory-reservation", "memory-swap", "kernel-memory",
                     "kernel-memory-tcp", "cpu-shares", "cpu-share", "cpu-quota", "cpu-period",
                     "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems",
                     "pids-limit", "blkio-weight", "l3-cache-schema", "mem-bw-schema")}}

COMMANDS = {
    "create": (cmd_create, _CREATE_FLAGS, "create a container"),
    "run": (cmd_run, dict(_CREATE_FLAGS, detach=("bool", False), d="detach",
                          keep=("bool", False), **{"no-subreaper": ("bool", False)}),
            "create and run a container"),
    "start": (cmd_start, {}, "execute the user defined process in a created container"),
    "state": (cmd_state, {}, "output the state of a container"),
    "exec": (cmd_exec, {"process": ("str", ""), "p": "process", "tty": ("bool", False),
                        "t": "tty", "console-socket": ("str", ""), "cwd": ("str", ""),
                        "env": ("list", []), "e": "env", "user": ("str", ""), "u": "user",
                        "additional-gids": ("list", []), "g": "additional-gids",
                        "cap": ("list", []), "c": "cap", "no-new-privs": ("bool", False),
                        "detach": ("bool", False), "d": "detach", "pid-file": ("str", ""),
                        "preserve-fds": ("int", 0), "apparmor": ("str", ""),
                        "process-label": ("str", ""), "cgroup": ("list", []),
                        "ignore-paused": ("bool", False)},
             "execute a new process inside the container"),
    "kill": (cmd_kill, {"all": ("bool", False), "a": "all"},
             "send a signal (default SIGTERM) to the container's init process"),
    "delete": (cmd_delete, {"force": ("bool", False), "f": "force"},
               "delete resources held by the container"),
    "list": (cmd_list, {"format": ("str", "table"), "f": "format", "quiet": ("bool", False),
                        "q": "quiet"}, "list containers started with the given root"),
    "pause": (cmd_pause, {}, "suspend all processes of the container (cgroup freezer)"),
    "resume": (cmd_resume, {}, "resume a paused container"),
    "ps": (cmd_ps, {"format": ("str", "table"), "f": "format"},
           "list the container's processes (ps options may follow the id)"),
    "events": (cmd_events, {"stats": ("bool", False), "interval": ("str", "5s")},
               "print stats and OOM events as JSON lines"),
    "update": (cmd_update, _UPDATE_FLAGS, "change the container's resource limits"),
    "spec": (cmd_spec, {"bundle": ("str", "."), "b": "bundle", "rootless": ("bool", False)},
             "create a new specification file"),
    "features": (cmd_features, {}, "show the enabled features"),
}


def _asks_help(args: list[str], table: dict) -> bool:
    """``--help``/``-h`` among the command's flags (before its first positional argument)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--help", "-help", "-h", "--h"):
            return True
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return False
        spec = table.get(arg.lstrip("-").partition("=")[0])
        spec = table.get(spec) if isinstance(spec, str) else spec
        if spec is not None and spec[0] != "bool" and "=" not in arg:
            i += 1      # (its value)
        i += 1
    return False


def parse_signal(text: str) -> int:
    import _signal
    if text.isdigit():
        num = int(text)
        if 0 <= num < _signal.NSIG:     # 0 checks that the container's init exists
            return num
        raise UsageError(f"invalid signal {text!r}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base = _signal.SIGRTMIN if name.startswith("SIGRTMIN") else _signal.SIGRTMAX
        try:
            off = int(name[9:])
        except ValueError:
            raise UsageError(f"invalid signal {text!r}") from None
        return base + off if name.startswith("SIGRTMIN") else base - off
    num = getattr(_signal, name, None)
    if not isinstance(num, int) or name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK", "SIG_UNBLOCK",
                                            "SIG_SETMASK"):
        raise UsageError(f"invalid signal {text!r}")
    return num


def usage() -> str:
    lines = ["usage: pyrunc [global options] command [command options] [arguments...]", "",
             "commands:"]
    lines += [f"   {name:<10} {info[2]}" for name, info in COMMANDS.items()]
    lines += ["", "global options:",
              "   --root DIR          state directory (default /run/pyrunc; rootless:"
              " $XDG_RUNTIME_DIR/pyrunc)",
              "   --log FILE          log file (default: stderr)",
              "   --log-format F      text or json",
              "   --debug             debug logging",
              "   --systemd-cgroup    refused by create and run (no systemd cgroup driver)",
              "   --version, -v       print the version"]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    """The git commit of the source tree, as runc's ``commit:`` line: read from the repository's
    files by the supervisor's version module (both ship in this package), 'unknown' without."""
    try:
        from supervisor.version import revision
    except ImportError:
        return "unknown"
    return revision()


def entry() -> None:
    """The console script: run :func:`main` and leave at once.

    Interpreter finalization (tearing down every module, a garbage collection) costs about
    5 ms on every call and achieves nothing for a process that is done: output is flushed and
    the process exits with ``os._exit``.  Every file pyrunc writes is closed or written with
    ``os.write`` before this point (state files are renamed into place, the log is unbuffered).
    """
    import gc
    gc.disable()    # a no-op under the launcher, which does it before any import (tools/launcher.py)
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1    # stdout closed early (``pyrunc list | head``): as Python would
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g, rest = parse_flags(argv, GLOBAL_FLAGS)
        log.configure(g["log"], g["log-format"], g["debug"])
        if g["version"] or g["v"]:
            sys.stdout.write(f"pyrunc version {VERSION}\ncommit: {_commit()}\n"
                             f"spec: {SPEC_VERSION}\n")
            return 0
        if g["help"] or g["h"] or not rest or rest[0] in ("help", "h"):
            sys.stdout.write(usage())
            return 0
        if g["log-format"] not in ("text", "json"):
            raise UsageError(f"unknown log-format {g['log-format']!r}")
        g["root"] = os.path.abspath(g["root"] or _default_root())
        name, args = rest[0], rest[1:]
        entry = COMMANDS.get(name)
        if entry is None:
            log.error(f"no such command: {name}")
            return UNKNOWN_COMMAND
        handler, table, _ = entry
        if g["systemd-cgroup"] and name in SYSTEMD_CGROUP_REFUSED:
            raise UsageError("--systemd-cgroup: pyrunc has no systemd cgroup driver (leave the "
                             "flag out to use cgroupfs)")
        if name in ("create", "run", "exec"):
            from pyrunc import sealed    # these enter containers: run from a read-only exe
            sealed.ensure_sealed()
        if _asks_help(args, table):
            from pyrunc import clihelp
            sys.stdout.write(clihelp.render(name, entry[2], table))
            return 0
        flags, args = parse_flags(args, table)
        if name in ("create", "run", "exec"):
            passed = _passed_fds(name, flags)
        if name == "exec":
            from pyrunc.cgroups import warm  # pay the cgroup move's kernel wait in parallel
            warm.start(3 + passed)
        return handler(g, flags, args)
    except PyruncError as err:
        _report(err)
        return 1
    except KeyboardInterrupt:
        return 130
    except Interrupted as sig:     # create/run torn down on SIGTERM, SIGINT or SIGHUP
        return 128 + sig.signum
    except OSError as err:
        _report(err)
        return 1


UNKNOWN_COMMAND = 3     # runc (urfave/cli): "No help topic for ..."


def _report(err: Exception) -> None:
    if isinstance(err, OSError):
        log.error(str(err) if err.strerror is None else
                  f"{err.filename + ': ' if err.filename else ''}{err.strerror}")
    else:
        log.error(str(err))
