"""Rootless: pyrunc run by an unprivileged user, as runc and crun serve rootless podman.

Nothing here is imported when pyrunc runs as root (the callers test ``os.geteuid()`` first), so
the root path and its speed are unchanged.  What differs for an unprivileged caller:

* **State root.**  ``$XDG_RUNTIME_DIR/pyrunc`` when ``--root`` is not given (runc's rule: the
  user's runtime directory, private to it); ``/run/pyrunc`` only when that is unset.
* **Cgroups.**  A user can place a container only in a cgroup delegated to it (a directory it
  owns, as systemd delegates a v2 subtree).  Where the container's cgroup would go is checked
  before anything is made: writable → the normal manager, limits applied and enforced; not →
  the container runs without a cgroup of its own, as runc's rootless mode does, provided the
  config asks for no resource limit (device rules are ignored: a user namespace cannot open a
  device node its user could not anyway); a limit is refused with one clear error.  On cgroup v1
  (and hybrid hosts) nothing is delegated to users, so rootless containers there have no cgroup:
  ``pause``, ``resume``, ``update``, ``events --stats`` refuse (``ps`` and ``kill --all`` walk
  the container's pid namespace instead).
* **ID maps.**  A single mapping of the caller's own uid (gid) is written to
  ``/proc/<pid>/uid_map`` directly — for gids after ``deny`` to ``setgroups``, which the kernel
  requires of an unprivileged writer.  Anything more (several IDs, as podman maps its
  ``/etc/subuid`` range) goes through the setuid helpers ``newuidmap``/``newgidmap`` (package
  ``uidmap``), which check the ranges against ``/etc/subuid`` and ``/etc/subgid``; a range
  outside them is refused with the helper's reason.
* **systemd cgroups** are refused by create and run as they are for root (no systemd driver).
"""

from pyrunc.linux import os
from pyrunc.errors import CgroupError, SetupError

DEFAULT_ROOT = "/run/pyrunc"


def is_rootless() -> bool:
    return os.geteuid() != 0


def default_root() -> str:
    """runc's rule: ``$XDG_RUNTIME_DIR/pyrunc`` if that is set and the caller is not the real
    root — an unprivileged user, or uid 0 of a user namespace (rootless podman runs the runtime
    there) whose $USER is not root; otherwise ``/run/pyrunc``."""
    runtime_dir = os.getenv("XDG_RUNTIME_DIR", "")
    if not runtime_dir or not os.path.isabs(runtime_dir):
        return DEFAULT_ROOT
    if os.geteuid() == 0:
        from pyrunc.linux import proc
        if not proc.in_user_namespace() or os.getenv("USER", "") == "root":
            return DEFAULT_ROOT
    return os.path.join(runtime_dir, "pyrunc")


# --- cgroups ------------------------------------------------------------------------------------

def cgroup_manager(cgroups_path, container_id: str, resources):
    """The container's cgroup manager, or None when no cgroup is delegated to this user (then a
    config with resource limits is refused: :class:`CgroupError`)."""
    from pyrunc import cgroups
    limits = resource_limits(resources)
    unified = cgroups.detect_mode() == "unified"
    if not unified and not limits:
        return None         # (v1 is never delegated: no need to resolve the paths)
    try:
        mgr = cgroups.new_manager(cgroups_path, container_id) if unified else None
    except CgroupError:
        mgr = None
    if mgr is not None and _delegated(mgr):
        mgr.skip_devices = True     # (as runc's rootless mode: device rules are not applied)
        return mgr
    if limits:
        if mgr is not None and mgr.__class__.__name__ == "V2Manager":
            why = f"{_existing_ancestor(mgr.path)} is not writable"
        else:
            why = "cgroup v1 hierarchies cannot be delegated to a user"
        raise CgroupError(
            f"linux.resources.{limits[0]}: rootless (uid {os.geteuid()}): no cgroup is "
            f"delegated to this user ({why}), so limits cannot be applied")
    return None


def resource_limits(resources) -> list[str]:
    """The names of the limits ``linux.resources`` sets; device rules are not limits here."""
    if not isinstance(resources, dict):
        return []
    return sorted(key for key, value in resources.items()
                  if key != "devices" and _is_set(value))


def _is_set(value) -> bool:
    if isinstance(value, dict):
        return any(_is_set(v) for v in value.values())
    if isinstance(value, list):
        return len(value) > 0
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return value is not None


def _existing_ancestor(path: str) -> str:
    while path and path != "/" and not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _delegated(mgr) -> bool:
    """Can this user make the container's cgroup?  Only under a cgroup v2 directory it may
    write (the nearest existing ancestor of the target).  v1 managers are never delegated."""
    if mgr.__class__.__name__ != "V2Manager":
        return False
    path = _existing_ancestor(mgr.path)
    return bool(path) and os.access(path, os.W_OK)


# --- ID maps ------------------------------------------------------------------------------------

def write_id_maps(pid: int, uid_maps, gid_maps) -> None:
    """Map the new user namespace of ``pid`` (see the module's docstring)."""
    _write_map(pid, "uid", uid_maps, os.geteuid())
    _write_map(pid, "gid", gid_maps, os.getegid())


def _single_own(maps, own: int) -> bool:
    return len(maps) == 1 and maps[0].host_id == own and maps[0].size == 1


def _write_map(pid: int, kind: str, maps, own: int) -> None:
    if not maps:
        return
    if _single_own(maps, own):
        if kind == "gid":
            _write_proc(pid, "setgroups", "deny")
        _write_proc(pid, f"{kind}_map", "".join(
            f"{m.container_id} {m.host_id} {m.size}\n" for m in maps))
        return
    _run_helper(pid, kind, maps)


def _write_proc(pid: int, name: str, data: str) -> None:
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise SetupError(f"rootless: write /proc/{pid}/{name} ({data.strip()!r}): "
                         f"{err.strerror}") from None


HELPERS = {"uid": "newuidmap", "gid": "newgidmap"}
FIELD = {"uid": "linux.uidMappings", "gid": "linux.gidMappings"}


def find_helper(name: str) -> str | None:
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"):
        path = f"{d}/{name}"
        if os.access(path, os.X_OK):
            return path
    return None


def _run_helper(pid: int, kind: str, maps) -> None:
    """``newuidmap PID ID HOSTID SIZE...``: the setuid helper checks /etc/sub[ug]id."""
    helper = HELPERS[kind]
    path = find_helper(helper)
    if path is None:
        raise SetupError(f"{FIELD[kind]}: rootless with more than one mapped {kind} needs "
                         f"{helper} (Debian package uidmap), which is not installed")
    argv = [path, str(pid)]
    for m in maps:
        argv += [str(m.container_id), str(m.host_id), str(m.size)]
    import subprocess
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SetupError(f"{FIELD[kind]}: {helper}: {err}") from None
    if res.returncode != 0:
        reason = res.stderr.decode(errors="replace").strip().replace("\n", "; ")
        raise SetupError(f"{FIELD[kind]}: {helper} refused the mapping "
                         f"({_describe(maps)}): {reason or f'exit status {res.returncode}'}")


def _describe(maps) -> str:
    return ", ".join(f"{m.container_id}->{m.host_id}+{m.size}" for m in maps)
