"""``pyrunc exec``: run another process in a running container.

The process is built from the container's own ``process`` (frozen in its state at create) with the
command line's overrides, or read whole from ``--process`` (config.md's process object).

Three processes again (compare :mod:`pyrunc.init`):

* the **parent** (``pyrunc exec``) opens a pidfd of the container's init — checked against its
  start time, so a recycled pid is never joined — and moves the process into the container's
  cgroup while the process gets ready (it waits for that before it execs);
* the **joining child** becomes non-dumpable, closes everything it inherited, and enters all the
  container's namespaces at once with setns(pidfd) — which fails cleanly if the init has just
  exited, so an exec racing the container's end errors out instead of hanging; it forks, since
  a pid namespace applies to children only;
* the **process** (in every namespace) opens its terminal in the container's devpts if asked,
  becomes the configured user with its capabilities (:func:`pyrunc.process.become`), reports
  EXEC and execs.  The channel closes on exec, so the parent knows the program runs.

In the foreground the parent is a subreaper: the process is re-parented to it, and it forwards
signals, relays a terminal, and returns the exit code (128+signal if killed).
"""

from pyrunc.linux import os
from pyrunc import foreground, state, sync
from pyrunc.errors import ConfigError, PyruncError, SetupError, StateError, describe
from pyrunc.linux import proc as procfs
from pyrunc.record import record

EXEC = "exec"   # process -> parent: about to execve (then the channel closes)


@record
class ExecOptions:
    process_file: str = ""
    args: list = None
    tty: bool = False
    console_socket: str = ""
    cwd: str = ""
    env: list = None
    user: str = ""
    additional_gids: list = None
    caps: list = None
    no_new_privs: bool = False
    detach: bool = False
    pid_file: str = ""
    preserve_fds: int = 0
    ignore_paused: bool = False


def run(root: str, container_id: str, opts: ExecOptions) -> int:
    c = state.load(root, container_id)
    try:
        status = c.status()
        if status not in state.ALLOWED["exec"] and not (status == "paused" and
                                                         opts.ignore_paused):
            raise StateError(_refusal(status))
        proc = build_process(c, opts)
        pidfd = procfs.open_pidfd(c.pid, c.start_time)
        if pidfd is None:
            raise StateError(_refusal("stopped"))
    finally:
        c.close()
    return _launch(c, proc, pidfd, opts)


def _refusal(status: str) -> str:
    """runc 1.1.5's words (engines and people compare them).  With ``--ignore-paused`` a paused
    container is joined as runc joins it: the process is placed in the frozen cgroup and
    freezes before it runs, and exec waits — detached too — until the container is resumed."""
    if status == "paused":
        return "exec failed: cannot exec in a paused container (use --ignore-paused to override)"
    return f"exec failed: cannot exec in a {status} container"


# --- the process description ---------------------------------------------------------------------

def build_process(c, opts: ExecOptions):
    from pyrunc import capabilities
    from pyrunc import spec as speclib
    if opts.process_file:
        doc = _read_process_file(opts.process_file)
        try:
            proc = speclib.parse_process(doc, "process")
        except ConfigError as err:
            raise ConfigError(in_process_file(str(err), opts.process_file)) from None
        from pyrunc import validate
        validate.validate_process(doc, f"exec: --process {opts.process_file}")
    else:
        if not opts.args:
            raise ConfigError("exec: the command to run is required (or --process FILE)")
        base = dict(c.config.get("process") or {})
        base["args"] = list(opts.args)
        base["terminal"] = opts.tty
        base.pop("consoleSize", None)
        proc = speclib.parse_process(base, "process")
        proc.env = _merge_env(proc.env, opts.env or [])
        if opts.cwd:
            if not opts.cwd.startswith("/"):
                raise ConfigError(f"exec: --cwd {opts.cwd!r} is not an absolute path")
            proc.cwd = opts.cwd
        if opts.user:
            proc.user.uid, proc.user.gid = _resolve_user(c, opts.user)
        if opts.additional_gids:
            proc.user.additional_gids = [_int_arg("--additional-gids", g)
                                         for g in opts.additional_gids]
        if opts.no_new_privs:
            proc.no_new_privileges = True
        if opts.caps:
            _add_caps(proc, opts.caps)
    if proc.capabilities is not None:
        for name in _all_cap_names(proc.capabilities):
            if name not in capabilities.NUMBERS:
                raise ConfigError(f"exec: unknown capability {name!r}")
        from pyrunc import log
        for warning in capabilities.restrict_to_grantable(proc.capabilities):
            log.warn(warning)
    _check_cwd(proc.cwd)
    return proc


def in_process_file(message: str, path: str) -> str:
    """A parser error about config.json's ``process`` retold for the file it came from:
    ``config.json: process.args: ...`` → ``process.json: args: ...``."""
    for prefix in ("config.json: process.", "config.json: process: "):
        if message.startswith(prefix):
            return f"{path}: {message[len(prefix):]}"
    return message


def _read_process_file(path: str) -> dict:
    from pyrunc import jsonio
    try:
        with open(path, "rb") as f:
            doc = jsonio.loads(f.read())
    except OSError as err:
        raise ConfigError(f"exec: --process {path}: {err.strerror}") from None
    except ValueError as err:
        raise ConfigError(f"exec: --process {path}: invalid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"exec: --process {path}: must be a JSON object")
    return doc


def _merge_env(env: list[str], extra: list[str]) -> list[str]:
    """``-e NAME=value`` replaces NAME; the rest of the container's environment stays."""
    names = {e.split("=", 1)[0] for e in extra}
    return [e for e in env if e.split("=", 1)[0] not in names] + list(extra)


def _int_arg(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"exec: {flag} {text!r} is not a number") from None
    if not 0 <= value < 2**32:
        raise ConfigError(f"exec: {flag} {text!r} is out of range")
    return value


def _resolve_user(c, spec: str) -> tuple[int, int]:
    """``uid[:gid]`` or ``name[:group]``, names looked up in the container's own files."""
    user, _, group = spec.partition(":")
    uid = gid = None
    if user.isdigit():
        uid = int(user)
    if group and group.isdigit():
        gid = int(group)
    if uid is None or (gid is None and not group):
        entry = _lookup(c, "etc/passwd", user, by_name=uid is None)
        if entry is None:
            raise ConfigError(f"exec: unknown user {user!r} in the container's /etc/passwd")
        uid = int(entry[2])
        gid = int(entry[3]) if gid is None and not group else gid
    if gid is None:
        entry = _lookup(c, "etc/group", group, by_name=True)
        if entry is None:
            raise ConfigError(f"exec: unknown group {group!r} in the container's /etc/group")
        gid = int(entry[2])
    return uid, gid


def _lookup(c, relpath: str, key: str, by_name: bool) -> list[str] | None:
    """A line of the container's passwd/group file, read inside its root (no symlink escapes)."""
    from pyrunc.linux import inroot
    try:
        rootfd = os.open(f"/proc/{c.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = inroot.open_in_root(rootfd, relpath, os.O_RDONLY)
    except OSError:
        return None
    finally:
        os.close(rootfd)
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            fields = raw.decode(errors="replace").rstrip("\n").split(":")
            if len(fields) >= 4 and fields[0 if by_name else 2] == key:
                return fields
    return None


def _add_caps(proc, names: list[str]) -> None:
    from pyrunc.spec import Capabilities
    if proc.capabilities is None:
        proc.capabilities = Capabilities()
    caps = proc.capabilities
    for name in names:
        name = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        for cap_set in (caps.bounding, caps.effective, caps.permitted):
            if name not in cap_set:
                cap_set.append(name)
        # ambient needs the capability inheritable too: only where the config made it so
        if name in caps.inheritable and name not in caps.ambient:
            caps.ambient.append(name)


def _all_cap_names(caps) -> set[str]:
    return set(caps.bounding + caps.effective + caps.permitted + caps.inheritable + caps.ambient)


def _check_cwd(cwd: str) -> None:
    """A cwd through /proc/self/fd (or any /proc path) could point at a runtime descriptor."""
    parts = [p for p in cwd.split("/") if p]
    if ".." in parts:
        raise ConfigError(f"exec: cwd {cwd!r} must not contain '..'")
    if parts[:1] == ["proc"]:
        raise ConfigError(f"exec: cwd {cwd!r} inside /proc is refused")


# --- parent -------------------------------------------------------------------------------------

def _launch(c, proc, pidfd: int, opts: ExecOptions) -> int:
    from pyrunc.cgroups import warm
    from pyrunc.linux import sys as k
    extra_fds = _check_fds(opts.preserve_fds)
    console = None
    if opts.console_socket:
        from pyrunc import terminal
        console = terminal.connect_console_socket(opts.console_socket)
    elif proc.terminal and opts.detach:
        raise SetupError("exec: a terminal needs --console-socket when detached")
    # The process becomes our child when the joining child exits: in the foreground to be
    # waited for, and detached too, so that a failed exec can reap what it killed (a zombie
    # left in the container's pid namespace would stop its init from dying: the kernel makes a
    # dying namespace init wait for every process in it, zombies whose parent is outside
    # included).
    k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    ch, child_end = sync.Channel.pair()
    child = os.fork()
    if child == 0:
        ch.close()
        _join(c, proc, pidfd, child_end, extra_fds)     # never returns
    child_end.close()
    pid = None
    try:
        pid = ch.expect(sync.PID)["pid"]
        foreground.reap_setup_child(child)
        if c.cgroup:        # while the process gets ready (see _process)
            c.cgroup_manager().apply(pid)
        warm.stop()
        ch.send_or_explain(sync.CGROUP)
        master = None
        if proc.terminal:
            _fields, fds = ch.expect(sync.CONSOLE, with_fds=True)
            master = fds[0]
            if console is not None:
                from pyrunc import terminal
                terminal.send_master(console, master)
                os.close(master)
                master = None
        ch.expect(EXEC)
        got, fields, _ = ch.recv()      # end of file: the exec happened
        if got == sync.ERROR:
            raise SetupError(fields.get("msg", "exec failed"))
    except BaseException as err:
        _abort(child, pid)
        if isinstance(err, PyruncError):
            raise PyruncError(f"exec {c.id}: {err}") from None
        raise
    finally:
        warm.stop()
        ch.close()
        if console is not None:
            console.close()
        os.close(pidfd)
    if opts.pid_file:
        foreground.write_pid_file(opts.pid_file, pid)
    if opts.detach:
        return 0
    exec_pidfd = procfs.open_pidfd(pid, None)
    foreground.forward_signals(exec_pidfd)
    return foreground.wait(pid, exec_pidfd, master)


def _check_fds(preserve: int) -> int:
    """(That each one is open, ``cli`` checked before pyrunc opened anything.)"""
    if preserve < 0:
        raise ConfigError("exec: --preserve-fds must not be negative")
    return preserve


def _abort(child: int, pid: int | None) -> None:
    for target in (pid, child):
        if target:
            try:
                os.kill(target, 9)
            except ProcessLookupError:
                pass
    for target in (child, pid):
        if target:
            try:
                os.waitpid(target, 0)
            except ChildProcessError:
                pass


# --- joining child and the process --------------------------------------------------------------

def _join(c, proc, pidfd: int, ch, extra_fds: int) -> None:
    """Enter the container and fork the process.  Never returns."""
    from pyrunc.init import close_inherited, seal_imports
    from pyrunc.linux import sys as k
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        close_inherited(3 + extra_fds, keep=(ch.fileno(), pidfd))
        affinity = proc.exec_cpu_affinity or {}
        if affinity.get("initial"):
            from pyrunc.process import parse_cpu_list
            os.sched_setaffinity(0, parse_cpu_list(affinity["initial"]))
        # every module the process needs, loaded now: inside the container the host's files
        # are out of reach
        from pyrunc import process  # noqa: F401
        if proc.terminal:
            from pyrunc import terminal  # noqa: F401
        flags = _namespace_flags(c.config)
        try:
            k.setns(pidfd, flags)
        except OSError as err:
            raise SetupError(f"join the container's namespaces: {err.strerror} "
                             "(has it just exited?)") from None
        os.close(pidfd)
        seal_imports("setns")
        if sync.fork_reporting_pid(ch) == 0:
            _process(proc, ch, affinity)
        os._exit(0)
    except BaseException as err:    # noqa: BLE001
        ch.send_error(*describe(err))
        os._exit(1)


def _namespace_flags(config: dict) -> int:
    from pyrunc import namespaces
    flags = 0
    for ns in (config.get("linux") or {}).get("namespaces") or ():
        flags |= namespaces.FLAGS[ns["type"]]
    return flags


def _process(proc, ch, affinity: dict) -> None:
    from pyrunc import process
    try:
        if affinity.get("final"):
            os.sched_setaffinity(0, process.parse_cpu_list(affinity["final"]))
        slave = None
        if proc.terminal:
            from pyrunc import terminal
            master, slave = terminal.open_pty()
            ch.send(sync.CONSOLE, fds=[master])
            os.close(master)
        ch.expect(sync.CGROUP)      # in the container's cgroup before anything runs
        # Looked up only now: a failed lookup ends this process, which must not happen before
        # the parent has moved it into the cgroup (it would report ESRCH instead of the cause).
        exe = process.lookup(proc.args[0], proc.env)
        process.become(proc, exe, proc.env, slave, lambda: ch.send(EXEC))
    except BaseException as err:    # noqa: BLE001
        ch.send_error(*describe(err))
        os._exit(127)
