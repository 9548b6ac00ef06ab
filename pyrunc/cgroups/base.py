"""What the v1 and v2 managers share: the interface, directory creation and removal, waiting.

A manager owns a set of cgroup directories (one on v2; one per mounted hierarchy on v1, plus
one in the unified hierarchy on hybrid hosts).  ``create`` records every directory it makes,
including parents, so that both a failed ``create`` and ``destroy`` remove exactly what this
container added: parents it made are removed when they are empty, directories that existed
before are never touched.
"""

import errno
from _signal import SIGKILL
import time

from ..linux import os
from ..errors import CgroupError
from . import files

# How long to wait for the kernel: tasks to die after SIGKILL, a freeze to complete.
SETTLE_TIMEOUT = 10.0


class Manager:
    """The cgroup(s) of one container; :mod:`.v2` and :mod:`.v1` implement it."""

    driver = ""

    def to_state(self) -> dict:
        """A JSON-able description for state.json; :func:`pyrunc.cgroups.load_manager` takes it."""
        raise NotImplementedError

    def leaf_dirs(self) -> list[str]:
        """The container's own directories, one per hierarchy."""
        raise NotImplementedError

    def claim(self) -> None:
        """Before anything is made: add to ``created`` every directory that ``make_clone_dir``
        and ``create`` will make (each leaf and its missing parents, top first).

        The caller records :meth:`to_state` (state.json, written atomically) before the first
        mkdir, so a create killed between a mkdir and its next record leaves nothing that a
        later ``destroy`` does not know of.  A claimed directory that is never made costs
        ``destroy`` an ENOENT; one another container made meanwhile is removed only if empty,
        as any parent ``create`` made (:func:`remove_created_parents`)."""
        for leaf in self.leaf_dirs():
            for d in missing_dirs(leaf):
                if d not in self.created:
                    self.created.append(d)

    def create(self, resources: dict | None, devices: list | None = None) -> None:
        """Make the cgroup(s) and apply ``linux.resources`` (raw dict) and the device rules
        (default deny, the config's rules, an allow rule per node of ``devices`` — raw
        ``linux.devices`` entries; the runtime passes none, see devices.py — then the standard
        devices).  On failure nothing is left and a CgroupError names the field."""
        raise NotImplementedError

    def apply(self, pid: int) -> None:
        """Move process ``pid`` (its whole thread group) into the cgroup(s)."""
        raise NotImplementedError

    # Placing a new container's init without moving it.  Every write of a pid to a cgroup.procs
    # file takes the kernel's cgroup_threadgroup_rwsem for writing, and the first writer after
    # a quiet spell waits for an RCU grace period: 5-25 ms on this project's machines, holding
    # the global cgroup mutex (which every mkdir waits for) all along.  Two ways avoid it:
    #   * cgroup v2: the init is born in its cgroup, clone3(CLONE_INTO_CGROUP) on an fd of the
    #     directory (:meth:`make_clone_dir`, made before the rest of the cgroup);
    #   * cgroup v1: a single-threaded process that moves *itself*, writing "0" to the
    #     hierarchy's ``tasks`` file, skips that lock (:meth:`self_join_files`).

    def clone_dir(self) -> str | None:
        """The cgroup v2 directory a new process can be created in, or None (legacy v1)."""
        return None

    def self_join_files(self) -> list[str]:
        """The v1 ``tasks`` files the init writes "0" to once the cgroup is set up."""
        return []

    def make_clone_dir(self) -> int | None:
        """Make :meth:`clone_dir` ahead of :meth:`create` (which then takes it as its own: a
        failed create or destroy removes it) and return an O_RDONLY fd on it for clone3, or
        None when there is no v2 directory.  A busy or frozen cgroup is refused here: the init
        would start in it."""
        d = self.clone_dir()
        if d is None:
            return None
        if os.path.isdir(d):
            if all_pids(d):
                raise CgroupError(f"cgroup: {d} already has processes in it")
            if files.read_or(d, "cgroup.freeze", "0").strip() == "1":
                raise CgroupError(f"cgroup: {d} is frozen")
        created = list(self.created)    # (what claim() recorded, and what is made now)
        make_dirs(d, created)
        self.created = created
        self.cloning = True
        try:
            return os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise CgroupError(f"cgroup: open {d}: {err.strerror}") from None

    cloning = False         # make_clone_dir ran: create() must not take the init for a squatter

    def update(self, resources: dict) -> None:
        """Change limits of a live container; absent fields keep their values."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Freeze every task and wait until they are frozen (thaw again and fail if not)."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup and its sub-cgroups."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups, sorted."""
        raise NotImplementedError

    def stats(self) -> dict:
        """The ``data`` object of runc's ``events --stats``."""
        raise NotImplementedError

    def oom_kill_count(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""
        raise NotImplementedError

    def destroy(self) -> None:
        """SIGKILL whatever is left, remove the cgroup(s) everywhere and the parents ``create``
        made if now empty.  Idempotent; fine if ``create`` never ran."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Is the container's cgroup there (in its main hierarchy)?"""
        raise NotImplementedError

    def signal_frozen(self, directory: str, sig: int) -> None:
        """Signal every task, frozen meanwhile so that nothing forks between listing the tasks
        and signalling them (for SIGKILL where there is no cgroup.kill)."""
        was_frozen = self.frozen()
        self.freeze()
        try:
            signal_all(directory, sig)
        finally:
            if not was_frozen:
                self.thaw()


# --- helpers ----------------------------------------------------------------------------------

def missing_dirs(path: str) -> list[str]:
    """``path`` and its ancestors that do not exist yet, top first."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    return missing[::-1]


def make_dirs(path: str, created: list[str]) -> None:
    """``mkdir -p path``, appending each directory it made (top first) to ``created`` unless it
    is there already (claimed, see :meth:`Manager.claim`).

    A parent another container is removing at the same moment can vanish between our mkdirs:
    ENOENT is retried a few times."""
    for _ in range(5):
        try:
            for d in missing_dirs(path):
                try:
                    os.mkdir(d, 0o755)
                    if d not in created:
                        created.append(d)
                except FileExistsError:
                    pass
            return
        except FileNotFoundError:
            continue
        except OSError as err:
            raise CgroupError(f"cgroup: mkdir {err.filename or path}: {err.strerror}") from None
    raise CgroupError(f"cgroup: mkdir {path}: parent keeps disappearing")


def all_pids(directory: str) -> list[int]:
    """Processes in ``directory`` and every cgroup below it."""
    if not os.path.isdir(directory):
        return []
    out = files.procs(directory)
    for sub in files.subdirs(directory):
        out.extend(files.procs(sub))
    return sorted(set(out))


def signal_all(directory: str, sig: int) -> None:
    for pid in all_pids(directory):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except OSError as err:
            raise CgroupError(f"cgroup: kill {pid}: {err.strerror}") from None


def wait_empty(directory: str, timeout: float = SETTLE_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while all_pids(directory):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def remove_tree(directory: str, timeout: float = SETTLE_TIMEOUT, on_busy=None) -> None:
    """rmdir ``directory`` and the cgroups below it, deepest first.

    rmdir fails with EBUSY while a dying task is still being torn down: retry until
    ``timeout``.  A directory that is already gone is fine.  ``on_busy()`` runs once if the
    first rmdir finds the directory busy, before the retries."""
    try:
        os.rmdir(directory)     # the usual case: no child cgroups, no task left
        return
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise CgroupError(f"cgroup: rmdir {directory}: {err.strerror}") from None
    if on_busy is not None:
        on_busy()
    deadline = time.monotonic() + timeout
    for d in [*files.subdirs(directory), directory]:
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(f"cgroup: rmdir {d}: {err.strerror}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


def remove_created_parents(created: list[str], keep: set[str]) -> None:
    """Remove the parent directories ``create`` made, deepest first, if nothing else uses them
    (another container's cgroup under the same parent keeps it: EBUSY/ENOTEMPTY)."""
    for d in reversed(created):
        if d in keep:
            continue
        try:
            os.rmdir(d)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                raise CgroupError(f"cgroup: rmdir {d}: {err.strerror}") from None


def kill_and_remove(mgr: Manager, dirs: list[str], main: str) -> None:
    """The body of ``destroy``: nothing may survive in the cgroup, then remove it everywhere.

    A container's processes are in every directory, so ``main`` tells whether any are left —
    except after a create that failed half-way, whose init may be in some directories only
    (born in the v2 one, not yet joined to the v1 ones).  So a directory that will not go
    because something is still in it gets that killed too; a normal delete pays nothing."""
    if any(os.path.isdir(d) for d in dirs):
        if os.path.isdir(main) and all_pids(main):
            _kill_everything(mgr, main)
        for d in dirs:
            remove_tree(d, on_busy=lambda d=d: _kill_stragglers(mgr, d))


def _kill_stragglers(mgr: Manager, directory: str) -> None:
    if all_pids(directory):
        _kill_everything(mgr, directory, directly=True)


def _kill_everything(mgr: Manager, directory: str, directly: bool = False) -> None:
    """SIGKILL the container's processes and wait for ``directory`` to be empty; ``directly``:
    also those in it that the hierarchy the manager signals does not hold."""
    if mgr.frozen():
        mgr.thaw()     # v1 frozen tasks do not die until thawed
    mgr.kill_all(SIGKILL)
    if directly:
        signal_all(directory, SIGKILL)
    if not wait_empty(directory):
        raise CgroupError(f"cgroup: {directory}: processes survive SIGKILL: "
                          f"{all_pids(directory)}")

