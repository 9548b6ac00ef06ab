"""The container process: rlimits, user and groups, capabilities, environment, exec.

These are the last steps of an exec'd process, and of the container's init before it reports
READY — the init waits for ``start`` already as the container's user with its final
capabilities (runc's does too), so what ``start`` waits for is the exec alone.  In this order:

1. rlimits — while still root, so a hard limit may be lowered freely;
2. bounding set — needs CAP_SETPCAP, so before the uid changes;
3. groups, gid, uid — with PR_SET_KEEPCAPS so the permitted set survives setresuid;
4. effective/permitted/inheritable, then ambient — now that the uid is final; non-dumpable
   again (a change of credentials resets it);
5. umask, cwd (checked to be inside the root), no_new_privs, signal dispositions — then execve.
"""

from pyrunc.linux import os
from pyrunc import capabilities
from pyrunc.errors import SetupError
from pyrunc.linux import sys as k

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apply_rlimits(rlimits) -> None:
    for rl in rlimits:
        soft = k.RLIM_INFINITY if rl.soft >= 2**63 else rl.soft
        hard = k.RLIM_INFINITY if rl.hard >= 2**63 else rl.hard
        try:
            k.setrlimit(RLIMITS[rl.type], soft, hard)
        except OSError as err:
            why = err.strerror
            if err.errno == 1:      # EPERM: above the hard limit the runtime itself has
                why += " (a hard limit above the runtime's own needs CAP_SYS_RESOURCE on the " \
                       "host: not for a rootless runtime)"
            raise SetupError(f"process.rlimits: setrlimit {rl.type} ({rl.soft}, {rl.hard}): "
                             f"{why}") from None


def write_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as err:
        raise SetupError(f"set oom_score_adj to {value}: {err.strerror}") from None


def switch_user(user, caps) -> None:
    """Become ``user`` with exactly the capabilities ``caps`` (None: leave them as they are)."""
    if caps is not None:
        capabilities.drop_bounding(caps)
        k.prctl(k.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(user.additional_gids)
    except PermissionError:
        # setgroups is refused in a user namespace whose setgroups file says deny; that is only
        # fine when nothing is asked for.
        if user.additional_gids:
            raise SetupError("setgroups: not permitted in this user namespace") from None
    try:
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as err:
        raise SetupError(f"set uid {user.uid} gid {user.gid}: {err.strerror}") from None
    if caps is not None:
        k.prctl(k.PR_SET_KEEPCAPS, 0)
        capabilities.apply_sets(caps)


def env_with_defaults(env: list[str], home: str | None) -> list[str]:
    """The process environment; HOME added from /etc/passwd when absent (as runc does)."""
    names = {e.split("=", 1)[0] for e in env}
    out = list(env)
    if "HOME" not in names:
        out.append(f"HOME={home or '/'}")
    return out


def passwd_home(uid: int, passwd: str = "/etc/passwd") -> str | None:
    try:
        with open(passwd, "rb") as f:
            for line in f:
                parts = line.decode(errors="replace").rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or None
    except OSError:
        pass
    return None


def lookup(arg0: str, env: list[str]) -> str:
    """execvp's search for ``arg0`` along PATH from ``env``; SetupError if nothing fits."""
    if "/" in arg0:
        if not os.access(arg0, os.X_OK) or os.path.isdir(arg0):
            raise SetupError(f'exec: "{arg0}": {_why(arg0)}')
        return arg0
    path = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            path = entry[5:]
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", arg0)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{arg0}": executable file not found in $PATH')


def _why(path: str) -> str:
    if not os.path.exists(path):
        return "no such file or directory"
    if os.path.isdir(path):
        return "is a directory"
    return "permission denied"


def enter_cwd(cwd: str) -> None:
    """chdir to ``cwd`` and make sure the result is inside the container's root."""
    try:
        os.chdir(cwd)
    except OSError as err:
        raise SetupError(f"chdir to cwd ({cwd!r}) set in config.json failed: "
                         f"{err.strerror}") from None
    # getcwd() marks a directory outside the process's root with "(unreachable)"; a cwd that
    # escaped through a leaked fd or a racing symlink would show here.
    try:
        here = os.getcwd()
    except OSError:     # the kernel cannot name it from our root: it is outside
        here = ""
    if not here.startswith("/"):
        raise SetupError(f"cwd {cwd!r} is outside the container's root")


def become(proc, exe: str, env: list[str], slave: int | None, about_to_exec) -> None:
    """Turn this process into ``proc`` and execve ``exe``; only returns by raising.

    For an exec'd process (the container's init splits the two: :func:`prepare` before it
    reports READY, the exec after ``start``).  ``slave`` is the terminal to make controlling,
    if any; ``about_to_exec()`` reports success just before the execve (its channel closes on
    exec, which tells the waiting side the program runs).
    """
    env = prepare(proc, env, slave)
    about_to_exec()
    execute(proc, exe, env)


def prepare(proc, env: list[str], slave: int | None) -> list[str]:
    """Everything short of the execve: limits, session, user and capabilities, umask, cwd,
    no_new_privs, signals.  Returns the final environment.  The process stays non-dumpable:
    a change of credentials resets that flag, and it is set again here."""
    apply_rlimits(proc.rlimits)
    if proc.scheduler:
        apply_scheduler(proc.scheduler)
    if proc.io_priority:
        apply_io_priority(proc.io_priority)
    if slave is not None:
        from pyrunc import terminal     # already loaded by the caller, before pivot_root/setns
        terminal.make_controlling(slave)
        os.close(slave)
    else:
        try:
            os.setsid()
        except PermissionError:
            pass    # already a session leader
    home = passwd_home(proc.user.uid)
    switch_user(proc.user, proc.capabilities)
    k.prctl(k.PR_SET_DUMPABLE, 0)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    enter_cwd(proc.cwd)
    if proc.no_new_privileges:
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
    reset_signals()
    return env_with_defaults(env, home)


def execute(proc, exe: str, env: list[str]) -> None:
    os.execve(exe, proc.args, dict(e.split("=", 1) if "=" in e else (e, "") for e in env))


def reset_signals() -> None:
    """Every signal back to its default, none blocked: an ignored signal stays ignored across
    exec, and both Python (SIGPIPE, SIGXFSZ) and our callers (a shell's background job ignores
    SIGINT and SIGQUIT) leave some ignored."""
    import _signal
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            k.signal_default(sig)   # the ones the C library reserves (32, 33)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


# --- scheduler, I/O priority, NUMA memory policy, personality ---------------------------------

SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
              "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14,
              "MPOL_F_NUMA_BALANCING": 1 << 13}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,7`` → [0, 1, 2, 3, 7]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def apply_scheduler(sched: dict) -> None:
    flags = 0
    for name in sched.get("flags") or ():
        flags |= SCHED_FLAGS[name]
    try:
        k.sched_setattr(SCHED_POLICIES[sched["policy"]], flags, sched.get("nice", 0),
                        sched.get("priority", 0), sched.get("runtime", 0),
                        sched.get("deadline", 0), sched.get("period", 0))
    except OSError as err:
        raise SetupError(f"process.scheduler ({sched['policy']}): {err.strerror}") from None


def apply_io_priority(prio: dict) -> None:
    try:
        k.ioprio_set((IOPRIO_CLASSES[prio["class"]] << 13) | prio["priority"])
    except OSError as err:
        raise SetupError(f"process.ioPriority: {err.strerror}") from None


def apply_memory_policy(policy: dict) -> None:
    mode = MPOL_MODES[policy["mode"]]
    for name in policy.get("flags") or ():
        mode |= MPOL_FLAGS[name]
    try:
        k.set_mempolicy(mode, parse_cpu_list(policy.get("nodes", "")))
    except OSError as err:
        raise SetupError(f"linux.memoryPolicy ({policy['mode']}): {err.strerror}") from None


def apply_personality(pers: dict) -> None:
    try:
        k.personality(PERSONALITY_DOMAINS[pers["domain"]])
    except OSError as err:
        raise SetupError(f"linux.personality: {err.strerror}") from None
