"""Container lifecycle: start, kill, delete, state, list (runtime.md "Operations"); create and
run are in :mod:`pyrunc.create`.

Each operation loads the container's record (:mod:`pyrunc.state`), asks it whether the move is
allowed in the current status, and acts.
"""

from pyrunc.linux import os
from pyrunc import jsonio, log, state
from pyrunc.errors import PyruncError, SetupError, StateError
from pyrunc.linux import proc


# --- start --------------------------------------------------------------------------------------

def start(root: str, container_id: str) -> None:
    c = state.load(root, container_id, lock=True)
    try:
        c.require("start")
        start_record(c)
    finally:
        c.close()


def start_record(c) -> None:
    """Start the container whose record (locked) the caller holds."""
    if not c.config.get("process"):
        raise StateError(f"cannot start container \"{c.id}\": process is not set in "
                         "its config.json")
    _release(c)
    _poststart(c)


def _release(c) -> None:
    """Open exec.fifo: the init runs the startContainer hooks and execs; wait to hear how it went."""
    import select
    pidfd = proc.open_pidfd(c.pid, c.start_time)
    if pidfd is None:
        raise StateError(f'cannot start container "{c.id}": its init has exited')
    fifo, c.fifo_fd = c.fifo_fd, None
    try:
        if fifo is None:
            fifo = os.open(c.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        os.close(pidfd)
        raise StateError(f'cannot start container "{c.id}": it was already started') from None
    data = b""
    try:
        poller = select.poll()
        poller.register(fifo, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        done = False
        while not done:
            for fd, _ev in poller.poll():
                if fd == fifo:
                    chunk = os.read(fifo, 65536)
                    data += chunk
                    done = not chunk
                elif not data:
                    done = True     # the init died before it opened the fifo
            if not done and data.startswith(b"E") and _gone(pidfd):
                done = True
    finally:
        os.close(fifo)
        os.close(pidfd)
        try:
            os.unlink(c.fifo_path)
        except FileNotFoundError:
            pass
    if data.startswith(b"0"):
        return
    if data.startswith(b"E"):
        raise SetupError(f"start {c.id}: {data[1:].decode(errors='replace')}")
    raise SetupError(f"start {c.id}: the container's init exited before running the process")


def _gone(pidfd: int) -> bool:
    return proc.wait_exit(pidfd, 0)


def _poststart(c) -> None:
    hooks = _stored_hooks(c, "poststart")
    if hooks is None:
        return
    from pyrunc import hooks as hooklib
    try:
        hooklib.run_all(hooks, "poststart", jsonio.dumps(c.oci_state("running")))
    except hooklib.HookError as err:
        # runtime.md: a failing poststart hook stops the container (lifecycle step 9).
        _kill_everything(c)
        raise SetupError(f"start {c.id}: {err}; the container was stopped") from None


def _stored_hooks(c, key: str):
    """The container's saved config's hooks when it has ``hooks.<key>`` ones, else None — the
    config parser loads only for containers that have hooks to run."""
    section = c.config.get("hooks") if isinstance(c.config, dict) else None
    if not isinstance(section, dict) or not section.get(key):
        return None
    from pyrunc import spec as speclib
    return speclib.parse_hooks(c.config)


# --- kill / delete ------------------------------------------------------------------------------

def kill(root: str, container_id: str, sig: int, all_processes: bool) -> None:
    c = state.load(root, container_id)
    try:
        if all_processes:
            # Whatever is left in the container, its init gone or not: engines send this after
            # the init has exited (containerd's shim does), and runc takes it without error.
            if c.status(tell_paused=False) == "creating":
                c.require("kill")
            _signal_all(c, sig)
            return
        c.require("kill")
        fd = proc.open_pidfd(c.pid, c.start_time)
        if fd is None:
            raise StateError(f'cannot kill container "{container_id}": it is not running')
        try:
            proc.signal_pidfd(fd, sig)
        finally:
            os.close(fd)
    finally:
        c.close()


def _signal_all(c, sig: int) -> None:
    if c.cgroup:
        c.cgroup_manager().kill_all(sig)
        return
    for pid in _pids_in_pidns(c):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _pids_in_pidns(c) -> list[int]:
    """Without a cgroup: every process in the container's own pid namespace."""
    try:
        target = os.readlink(f"/proc/{c.pid}/ns/pid")
    except OSError:
        return []
    if target == os.readlink("/proc/self/ns/pid"):
        return [c.pid]      # shares our pid namespace: only the init is known to be its
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == target:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def _kill_everything(c) -> None:
    """SIGKILL the container's processes and wait for the init to be gone."""
    fd = proc.open_pidfd(c.pid, c.start_time)
    try:
        _signal_all(c, 9)
    except PyruncError:
        pass
    if fd is not None:
        try:
            proc.signal_pidfd(fd, 9)
        except OSError:
            pass
        proc.wait_exit(fd, 10)
        os.close(fd)


def delete(root: str, container_id: str, force: bool) -> None:
    try:
        c = state.load(root, container_id, lock=True)
    except StateError:
        from pyrunc import halfmade     # a create killed before its first record?
        if halfmade.remove_stateless(root, container_id):
            return
        raise
    try:
        if c.creator is not None and not proc.is_alive(*c.creator):
            from pyrunc import halfmade     # a create that died half-way: finish it
            halfmade.finish(c)
            status = "stopped"
        else:
            status = c.status()
        if status != "stopped":
            if not force:
                c.require("delete")
            _kill_everything(c)
        if c.cgroup:
            c.cgroup_manager().destroy()
        hooks = _stored_hooks(c, "poststop")
        final_state = jsonio.dumps(c.oci_state("stopped"))
        state.remove(c)
    finally:
        c.close()
    if hooks is None:
        return
    from pyrunc import hooks as hooklib
    for i, hook in enumerate(hooks.poststop):
        try:
            hooklib.run(hook, final_state, f"hooks.poststop[{i}]")
        except hooklib.HookError as err:
            log.warn(str(err))


# --- state / list -------------------------------------------------------------------------------

def state_json(root: str, container_id: str) -> str:
    c = state.load(root, container_id)
    try:
        return jsonio.dumps(c.oci_state(), indent=2)
    finally:
        c.close()


def list_containers(root: str) -> list[dict]:
    out = []
    for cid in state.list_ids(root):
        try:
            c = state.load(root, cid)
        except StateError:
            continue
        try:
            doc = c.oci_state()
            doc["owner"] = _owner(c.dir)
            out.append(doc)
        finally:
            c.close()
    return out


def _owner(path: str) -> str:
    import pwd
    uid = os.stat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"

