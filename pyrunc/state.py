"""Container state on disk, and the state machine over it.

Layout under ``--root`` (default ``/run/pyrunc``)::

    <root>/                 0700
    <root>/<id>/            0711, created by mkdir: the atomic claim on the ID
    <root>/<id>/state.json  written atomically (temp file + rename)
    <root>/<id>/exec.fifo   exists from create until start: the init blocks opening it

The status is derived, never stored, so it cannot go stale:

* ``creating`` — state.json still names the creating ``pyrunc`` process and that process lives;
* ``created``  — the init lives and exec.fifo exists (it has not run the user's program yet);
* ``running``  — the init lives and exec.fifo is gone;
* ``paused``   — running, and its cgroup is frozen;
* ``stopped``  — the init (pid + start time) is gone, or a create died half way and nothing of
  its set-up lives (while something does, ``creating``: see :mod:`pyrunc.halfmade`).

Commands that change a container serialise on ``flock`` of its directory; ``state`` and ``list``
only read (rename makes every read see a whole file).  The allowed moves are in ``ALLOWED``:
an operation asks :meth:`Container.require` before it acts, so an illegal move is refused with
one clear line and changes nothing.
"""

import errno
import fcntl
import time
from pyrunc.linux import os
from pyrunc.record import field, record

from pyrunc import SPEC_VERSION, jsonio
from pyrunc.errors import StateError
from pyrunc.linux import proc

DEFAULT_ROOT = "/run/pyrunc"
STATE_FILE = "state.json"
FIFO = "exec.fifo"

# operation -> statuses it may act on
ALLOWED = {
    "start": ("created",),
    "kill": ("created", "running", "paused"),
    "delete": ("stopped",),
    "pause": ("running",),
    "resume": ("paused",),
    "exec": ("created", "running"),
    "update": ("created", "running", "paused"),
}

NAME_MAX = 255      # a file name's limit on Linux's filesystems (the state dir is named by the ID)
_VALID_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if not container_id:
        raise StateError("container id cannot be empty")
    if container_id in (".", "..") or not set(container_id) <= _VALID_ID_CHARS:
        raise StateError(f"invalid container id {container_id!r}: only [A-Za-z0-9_+.-] "
                         "are allowed, and not '.' or '..'")
    if len(container_id) > NAME_MAX:
        # the ID names the state directory: refused here, not by mkdir half-way through create
        raise StateError(f"invalid container id: {len(container_id)} bytes long, more than "
                         f"the {NAME_MAX} a directory name may have")


def now_rfc3339() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


@record
class Container:
    """One container's record; ``dirfd`` is set while the directory is open (and locked)."""

    id: str
    root: str
    bundle: str = ""
    rootfs: str = ""
    pid: int = 0
    start_time: int | None = None
    created: str = ""
    owner: str = ""
    annotations: dict = field(dict)
    config: dict = field(dict)      # the config.json document, frozen at create
    cgroup: dict | None = None                      # the cgroup manager's saved state
    creator: list | None = None                     # [pid, start time] while creating
    setup: dict | None = None       # while creating: set-up processes (see pyrunc.halfmade)
    extra: dict = field(dict)       # room for later features (exec, ...)
    dirfd: int | None = None
    fifo_fd: int | None = None      # exec.fifo's read end, when ``run`` opened it ahead (not saved)

    # --- paths ------------------------------------------------------------------------------

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.dir, FIFO)

    # --- status -----------------------------------------------------------------------------

    def status(self, tell_paused: bool = True) -> str:
        """The status; without ``tell_paused`` a paused container reads ``running`` (saves a
        look at its cgroup where the difference does not matter)."""
        if self.creator is not None:
            if proc.is_alive(*self.creator):
                return "creating"
            from pyrunc import halfmade     # create died half-way: what is left of it?
            return halfmade.status(self)
        if not proc.is_alive(self.pid, self.start_time):
            return "stopped"
        if os.path.exists(self.fifo_path):
            return "created"
        if tell_paused and self.cgroup:
            from pyrunc import cgroups
            if cgroups.frozen(self.cgroup):
                return "paused"
        return "running"

    def require(self, operation: str) -> str:
        """The current status, if ``operation`` is allowed in it; else a StateError."""
        allowed = ALLOWED[operation]
        status = self.status(tell_paused=("running" in allowed) != ("paused" in allowed))
        if status not in allowed:
            raise StateError(_refusal(operation, self.id, status))
        return status

    def cgroup_manager(self):
        from pyrunc import cgroups
        return cgroups.load_manager(self.cgroup)

    def oci_state(self, status: str | None = None) -> dict:
        """The state object of runtime.md (plus runc's extra fields)."""
        status = status or self.status()
        state = {"ociVersion": SPEC_VERSION, "id": self.id,
                 "pid": self.pid if status in ("creating", "created", "running", "paused")
                 else 0,
                 "status": status, "bundle": self.bundle, "rootfs": self.rootfs,
                 "created": self.created, "owner": self.owner}
        if self.annotations:
            state["annotations"] = self.annotations
        return state

    # --- persistence ------------------------------------------------------------------------

    def to_json(self) -> str:
        doc = {"id": self.id, "bundle": self.bundle, "rootfs": self.rootfs, "pid": self.pid,
               "start_time": self.start_time, "created": self.created, "owner": self.owner,
               "annotations": self.annotations, "config": self.config}
        for key in ("cgroup", "creator", "setup"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if self.extra:
            doc["extra"] = self.extra
        return jsonio.dumps(doc)

    def save(self) -> None:
        """Write state.json atomically: a reader sees the old file or the new one, never half."""
        tmp = f"{STATE_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600,
                     dir_fd=self.dirfd)
        try:
            os.write(fd, self.to_json().encode())
        finally:
            os.close(fd)
        os.rename(tmp, STATE_FILE, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)

    def close(self) -> None:
        for name in ("dirfd", "fifo_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


def _refusal(operation: str, container_id: str, status: str) -> str:
    if operation == "delete":
        return (f'cannot delete container "{container_id}": it is {status} '
                "(stop it first or use --force)")
    if operation == "kill" and status == "stopped":
        return f'cannot kill container "{container_id}": it is not running'
    return f'cannot {operation} container "{container_id}": it is {status}'


def _open_root(root: str, create: bool) -> None:
    if create and not os.path.isdir(root):    # (there already, but for the first create)
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
        except OSError as err:
            raise StateError(f"root {root}: {err.strerror}") from None


def _check_name_max(root: str, container_id: str) -> None:
    import posix
    try:
        limit = posix.pathconf(root, "PC_NAME_MAX")
    except OSError:
        return
    if 0 < limit < len(container_id):
        raise StateError(f"invalid container id: {len(container_id)} bytes long, more than "
                         f"the {limit} a file name may have under {root}")


def create(root: str, container_id: str) -> Container:
    """Claim ``container_id``: mkdir its directory (atomic), lock it, return the record."""
    check_id(container_id)
    _open_root(root, create=True)
    if len(container_id) > 143:     # (the smallest NAME_MAX in use, eCryptfs's): ask the fs
        _check_name_max(root, container_id)
    path = os.path.join(root, container_id)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        raise StateError(f'container "{container_id}" already exists') from None
    except OSError as err:
        raise StateError(f"create state directory {path}: {err.strerror}") from None
    dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(dirfd, fcntl.LOCK_EX)
    return Container(id=container_id, root=root, dirfd=dirfd)


def load(root: str, container_id: str, lock: bool = False) -> Container:
    """Read a container's record; with ``lock``, hold its directory's lock until ``close()``."""
    check_id(container_id)
    path = os.path.join(root, container_id)
    try:
        dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StateError(f'container "{container_id}" does not exist') from None
    except OSError as err:
        raise StateError(f"open state directory {path}: {err.strerror}") from None
    try:
        if lock:
            fcntl.flock(dirfd, fcntl.LOCK_EX)
        return _read(root, container_id, dirfd)
    except BaseException:
        os.close(dirfd)
        raise


def _read(root: str, container_id: str, dirfd: int) -> Container:
    try:
        fd = os.open(STATE_FILE, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
    except FileNotFoundError:
        # The directory exists but has no state: a delete removed it while we waited for the
        # lock, or a create is between mkdir and its first write.
        raise StateError(f'container "{container_id}" does not exist') from None
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    try:
        doc = jsonio.loads(data, trusted=True)
    except ValueError as err:
        raise StateError(f'container "{container_id}": corrupt state file: {err}') from None
    return Container(id=container_id, root=root, bundle=doc.get("bundle", ""),
                     rootfs=doc.get("rootfs", ""), pid=doc.get("pid", 0),
                     start_time=doc.get("start_time"), created=doc.get("created", ""),
                     owner=doc.get("owner", ""), annotations=doc.get("annotations") or {},
                     config=doc.get("config") or {}, cgroup=doc.get("cgroup"),
                     creator=doc.get("creator"), setup=doc.get("setup"), extra=doc.get("extra") or {}, dirfd=dirfd)


def remove(container: Container) -> None:
    """Remove the container's directory and everything in it (the caller holds the lock)."""
    path = container.dir
    for name in os.listdir(container.dirfd):
        try:
            os.unlink(name, dir_fd=container.dirfd)
        except IsADirectoryError:
            pass
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise StateError(f"remove state directory {path}: {err.strerror}") from None
    container.close()


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))
