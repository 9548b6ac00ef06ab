"""create and run (runtime.md "Operations"); start, kill, delete, state, list are in
:mod:`pyrunc.container`, which the commands engines call most load without this module.

``create`` is the long one:

1. parse and check the bundle — before claiming the ID, so a bad config leaves nothing behind;
2. claim the ID (mkdir, locked) and write a ``creating`` record naming this process, the
   stage-1 child and the cgroup's directories, parents included (claimed before any is made)
   — before ``GO`` lets the child act;
3. make exec.fifo and drive the setup protocol (:mod:`pyrunc.sync`): cgroup, id maps, the
   init's pid (recorded at once), runtime-namespace hooks (each recorded before it is waited
   for), the console;
4. on READY drop the ``creating`` record — the container is ``created``.

If anything fails, :func:`_abort` kills what was started and removes the cgroup and the state
directory, so the failed create leaves no process, mount, namespace, cgroup or state behind;
SIGTERM, SIGINT and SIGHUP are failures too.  A create killed outright (SIGKILL) leaves a
record from which ``delete`` finishes the job (:mod:`pyrunc.halfmade`).
``run`` is create, then :func:`pyrunc.container.start_record`, and in the foreground a wait
and a delete.

``PYRUNC_DEBUG_STOP_AT`` (debug only, :mod:`pyrunc.debugstop`) blocks create at a named stage.
"""

from pyrunc.linux import os
from pyrunc import container, jsonio, log, state
from pyrunc.errors import PyruncError, SetupError
from pyrunc.linux import proc
from pyrunc.record import record


@record
class CreateOptions:
    bundle: str = "."
    console_socket: str = ""
    pid_file: str = ""
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0


# --- create -------------------------------------------------------------------------------------

def create(root: str, container_id: str, opts: CreateOptions, child, attached: bool = False,
           starting: bool = False):
    """Create the container; returns (record, pty master or None).

    ``child``: the stage-1 child :func:`pyrunc.launch.fork_setup_child` forked for it, which
    loads the init's modules meanwhile; it is killed if the container is refused.
    ``attached``: the caller waits for the container (``run`` in the foreground; it made itself
    the init's reaper before the fork): the pty master is kept when there is no console socket.
    ``starting``: the caller starts it at once (``run``): exec.fifo's read end is opened now, so
    the init goes on to exec as soon as it is ready instead of waiting for :func:`_release`.
    """
    from pyrunc import debugstop, foreground, halfmade, sync
    from pyrunc import spec as speclib
    from pyrunc.cgroups import warm
    c = mgr = console = None
    signals = halfmade.TeardownSignals(
        running=lambda: c is not None and halfmade.fifo_written(c.fifo_fd))
    ch = sync.Channel(child.sock)
    bundle = os.path.abspath(opts.bundle)
    log.debug("create: start")
    try:
        state.check_id(container_id)    # (before the config, as runc does: first things first)
        spec = speclib.parse_config(child.config, bundle)
        log.debug("create: config loaded")
        _check_create(spec, opts)
        c = state.create(root, container_id)
        c.bundle, c.rootfs, c.created = bundle, spec.root_path, state.now_rfc3339()
        c.annotations, c.config = spec.annotations, spec.raw
        c.creator = [os.getpid(), proc.start_time(os.getpid())]
        c.setup = {"stage1": halfmade.process_record(child.pid), "hooks": []}
        mgr = _cgroup_manager(c, spec)
        if mgr is not None:     # (none when rootless without a delegated cgroup)
            # every directory it will make, parents too: what delete must find if we die
            # from now on, even between a mkdir and the next record
            mgr.claim()
        c.cgroup = mgr.to_state() if mgr is not None else None
        c.save()
        debugstop.stop("claimed")
        clone_fd = _clone_dir(mgr, spec, child)
        try:
            _go(ch, c, spec, clone_fd)
        finally:
            if clone_fd is not None:
                os.close(clone_fd)
        log.debug("create: child released")
        # the rest of the parent's side runs while the child sets up
        os.mkfifo(c.fifo_path, 0o622)   # the init opens it after READY
        os.chmod(c.fifo_path, 0o622)    # past the umask: a user-namespaced init must open it
        if starting:
            c.fifo_fd = os.open(c.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if opts.console_socket:
            from pyrunc import terminal
            console = terminal.connect_console_socket(opts.console_socket)
        _create_cgroup(c, spec, mgr)
        log.debug("create: cgroup made")
        debugstop.stop("cgroup")
        master = _drive_setup(c, spec, ch, child.pid, mgr)
        debugstop.stop("ready")
        if master is not None:
            if console is not None:
                from pyrunc import terminal
                terminal.send_master(console, master)
                os.close(master)
                master = None
            elif not attached:
                os.close(master)
                raise SetupError("process.terminal is set: --console-socket is required")
        c.creator = c.setup = None
        c.save()
        _commit(ch)
        if opts.pid_file:
            foreground.write_pid_file(opts.pid_file, c.pid)
        return c, master
    except BaseException as err:
        _abort(c, child.pid, mgr, ch)
        if c is None:
            raise       # refused before the ID was claimed: the error speaks for itself
        if _is_hook_failure(err):
            _poststop_after_failure(spec, c)
        if isinstance(err, PyruncError):
            raise PyruncError(f"create {container_id}: {err}") from None
        if isinstance(err, OSError):
            raise PyruncError(f"create {container_id}: {_os_message(err)}") from None
        raise
    finally:
        signals.restore()
        warm.stop()
        ch.close()
        if console is not None:
            console.close()


COMMIT_WAIT_MS = 2000


def _commit(ch) -> None:
    """Tell the init the container is recorded: it may outlive us now (until this, it exits
    when our end of the channel closes), and wait for it to close its end — so that a created
    container's init holds nothing of the runtime's when create returns.  (Under ``run`` it may
    have exec'd already; an init stuck in an uninterruptible call is not waited for long.)"""
    import select
    from pyrunc import sync
    try:
        ch.send(sync.COMMITTED)
    except OSError:
        return
    poller = select.poll()
    poller.register(ch.sock.fileno(), select.POLLIN)
    poller.poll(COMMIT_WAIT_MS)


def _go(ch, c, spec, clone_fd: int | None) -> None:
    """Release the stage-1 child with what it could not know when it was forked: the state
    directory, the cgroup directory to fork the init into (if any) and the id-mapped trees."""
    from pyrunc import sync
    idmapped = _idmapped_trees(spec)
    state_fd = os.open(c.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroup = [] if clone_fd is None else [clone_fd]
    try:
        ch.send_or_explain(sync.GO, fds=[state_fd, *cgroup, *idmapped.values()],
                           cgroup=bool(cgroup), idmapped=list(idmapped))
    finally:
        os.close(state_fd)
        for fd in idmapped.values():
            os.close(fd)


def _idmapped_trees(spec) -> dict[int, int]:
    if not any("idmap" in m.options or "ridmap" in m.options for m in spec.mounts):
        return {}
    from pyrunc import rootfs
    return rootfs.idmapped_trees(spec)


def _is_hook_failure(err: BaseException) -> bool:
    from pyrunc import hooks as hooklib
    return isinstance(err, hooklib.HookError) or getattr(err, "kind", "") == "HookError"


def _poststop_after_failure(spec, c) -> None:
    """runtime.md: a failing create hook stops the container and the lifecycle goes on at step
    12 — the container is destroyed (done) and the poststop hooks run (failures warn)."""
    from pyrunc import hooks as hooklib
    state_json = jsonio.dumps(c.oci_state("stopped"))
    for i, hook in enumerate(spec.hooks.poststop):
        try:
            hooklib.run(hook, state_json, f"hooks.poststop[{i}]")
        except hooklib.HookError as warning:
            log.warn(str(warning))


def _os_message(err: OSError) -> str:
    from pyrunc.linux import sys as k
    if isinstance(err, k.SysError):
        return str(err)
    return f"{err.filename}: {err.strerror}" if err.filename else str(err.strerror or err)


def _check_create(spec, opts: CreateOptions) -> None:
    """The config's warnings, and the checks that need the host, before anything is created."""
    from pyrunc import validate
    for warning in validate.config_warnings(spec.raw):
        log.warn(warning)
    if spec.process is not None:
        # (rlimit names need no check here: the schema enumerates them)
        if spec.process.capabilities is not None:
            from pyrunc import capabilities
            for warning in (capabilities.warnings(spec.process.capabilities) +
                            capabilities.restrict_to_grantable(spec.process.capabilities)):
                log.warn(warning)
    if not spec.linux.namespace("mount"):
        raise SetupError("config.json: linux.namespaces: a mount namespace is required")
    if any(ns.path for ns in spec.linux.namespaces):
        from pyrunc import namespaces
        namespaces.check_paths(spec.linux.namespaces)
    if not os.path.isdir(spec.root_path):
        raise SetupError(f"config.json: root.path: {spec.root_path} is not a directory")
    _check_lsm(spec)
    if spec.linux.intel_rdt is not None:
        raise SetupError("config.json: linux.intelRdt: Intel RDT is not supported by pyrunc")
    if spec.linux.seccomp is not None:
        log.warn("linux.seccomp is set but pyrunc does not implement seccomp; "
                 "the container runs without a seccomp filter")
    if opts.console_socket:
        from pyrunc import terminal
        terminal.check_socket_path(opts.console_socket)


def _check_lsm(spec) -> None:
    """AppArmor/SELinux labels: pyrunc cannot apply them.  On a host where the LSM is off they
    mean nothing (runc skips them there too); where it is on, refusing is the honest answer."""
    proc = spec.process
    if proc is not None and proc.apparmor_profile and _lsm_enabled("apparmor"):
        raise SetupError("config.json: process.apparmorProfile: AppArmor is enabled on this "
                         "host, and pyrunc cannot apply profiles")
    if ((proc is not None and proc.selinux_label) or spec.linux.mount_label) and \
            _lsm_enabled("selinux"):
        raise SetupError("config.json: SELinux labels are not supported by pyrunc")


def _lsm_enabled(name: str) -> bool:
    if name == "apparmor":
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                return f.read().strip() == "Y"
        except OSError:
            return False
    return os.path.exists("/sys/fs/selinux/enforce")


def _cgroup_manager(c, spec):
    """The container's cgroup manager (nothing made yet); rootless without a delegated cgroup,
    None (see :mod:`pyrunc.rootless`)."""
    if os.geteuid() != 0 or proc.in_user_namespace():
        from pyrunc import rootless
        return rootless.cgroup_manager(spec.linux.cgroups_path, c.id, spec.linux.resources)
    from pyrunc import cgroups
    return cgroups.new_manager(spec.linux.cgroups_path, c.id)


def _clone_dir(mgr, spec, child) -> int | None:
    """Make the container's cgroup v2 directory now, before GO, and return an fd on it: stage 1
    forks the init into it (clone3 CLONE_INTO_CGROUP), and on v1 the init joins its hierarchies
    itself later, so the init is never *moved* and nobody waits for the kernel's grace period
    (see :mod:`pyrunc.cgroups.base`).  With a user namespace, stage 1 no longer has the host's
    credentials the placement needs: the parent moves the init after the fact, and the warm-up
    thread (:mod:`pyrunc.cgroups.warm`) pays the kernel's wait meanwhile.  None then, and on
    hosts without cgroup v2."""
    if mgr is None:     # (rootless without a delegated cgroup: nothing to place)
        return None
    if spec.linux.namespace("user") is not None:
        from pyrunc.cgroups import warm
        warm.start(3 + child.extra_fds)
        return None
    return mgr.make_clone_dir()


def _create_cgroup(c, spec, mgr) -> None:
    """Make the rest of the container's cgroup, with its resources set (the init joins it in
    _drive_setup); ``mgr`` is responsible for what it made from now on."""
    # linux.devices nodes are not allowed implicitly: resources.devices decides, in its order
    # (engines list the nodes they add there; runc behaves the same)
    if mgr is None:     # rootless, no cgroup delegated: c.cgroup stays empty
        return
    mgr.create(spec.linux.resources)
    c.cgroup = mgr.to_state()


def _drive_setup(c, spec, ch, child: int, mgr) -> int | None:
    """Without a user namespace the init was forked into the cgroup's v2 directory (if any) and
    joins the v1 hierarchies itself, through the ``tasks`` files CGROUP brings; with one, it is
    moved here (see _clone_dir)."""
    from pyrunc import sync
    userns = spec.linux.namespace("user")
    if userns is not None and not userns.path:
        ch.expect(sync.USERNS)
        if os.geteuid() != 0:
            from pyrunc import rootless as namespaces
        else:
            from pyrunc import namespaces
        namespaces.write_id_maps(child, spec.linux.uid_mappings, spec.linux.gid_mappings)
        ch.send_or_explain(sync.PROCEED)
    fields = ch.expect(sync.PID)
    c.pid = fields["pid"]
    c.start_time = proc.start_time(c.pid)
    log.debug("create: init forked")
    if mgr is None:         # (rootless without a delegated cgroup)
        join = []
    elif userns is None:
        join = _open_for_writing(mgr.self_join_files())
    else:
        from pyrunc.cgroups import warm
        mgr.apply(c.pid)    # the init sets up meanwhile; it waits for CGROUP
        warm.stop()
        join = []
    log.debug("create: init in its cgroup")
    if spec.linux.net_devices:
        # before the init goes on: its hooks and its program must find the devices in place
        from pyrunc import netdev
        netdev.move(spec.linux.net_devices, c.pid)
    try:
        ch.send_or_explain(sync.CGROUP, fds=join)
    finally:
        for fd in join:
            os.close(fd)
    # the init, and the cgroup as made (parents included): what a delete must find if we die
    # from now on (until here the leaves recorded before GO, which hold the init, were enough)
    c.cgroup = mgr.to_state() if mgr is not None else None
    c.save()
    from pyrunc import debugstop, foreground
    debugstop.stop("init")
    foreground.reap_setup_child(child)  # the stage-1 child is done; off the critical path
    if spec.hooks.prestart or spec.hooks.create_runtime:
        from pyrunc import hooks as hooklib
        ch.expect(sync.HOOKS)
        state_json = jsonio.dumps(c.oci_state("creating"))
        def started(pid: int) -> None:
            """Record each hook before waiting for it (a delete after our death finds it,
            and so does _abort if we are interrupted while it runs)."""
            record = halfmade.process_record(pid)
            if record:
                c.setup["hooks"].append(record)
                c.save()

        from pyrunc import halfmade
        hooklib.run_all(spec.hooks, "prestart", state_json, started)
        hooklib.run_all(spec.hooks, "create_runtime", state_json, started)
        ch.send_or_explain(sync.HOOKS_DONE)
    master = None
    if spec.process is not None and spec.process.terminal:
        _fields, fds = ch.expect(sync.CONSOLE, with_fds=True)
        if not fds:
            raise SetupError("console: the init sent no pty")
        master = fds[0]
    ch.expect(sync.READY)
    log.debug("create: init ready")
    return master


def _open_for_writing(paths: list[str]) -> list[int]:
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as err:
        for fd in fds:
            os.close(fd)
        raise SetupError(f"cgroup: open {path}: {err.strerror}") from None
    return fds


def _abort(c, child: int | None, mgr, ch=None) -> None:
    """Undo a failed create: kill its processes, remove its cgroup and state (``c`` is None
    when the ID was not claimed: someone else's state is never touched)."""
    if c is not None and c.setup and c.setup.get("hooks"):
        from pyrunc import halfmade     # runtime-namespace hooks may still run (interrupted)
        try:
            halfmade.kill_setup(c)
        except PyruncError as err:
            log.warn(str(err))
    if child:                   # stage 1 first: then whatever it reported is on the channel
        try:
            os.kill(child, 9)
            os.waitpid(child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if c is not None and c.pid:
        _kill(c.pid, c.start_time)
    elif ch is not None:
        pid = _unread_pid(ch)   # stage 1 may have forked the init before we looked
        if pid:
            _kill(pid, None)
    if mgr is not None:
        try:
            mgr.destroy()
        except PyruncError as err:
            log.warn(f"create {c.id}: cleanup: {err}")
    if c is not None:
        state.remove(c)


def _kill(pid: int, start_time: int | None) -> None:
    fd = proc.open_pidfd(pid, start_time)
    if fd is not None:
        try:
            proc.signal_pidfd(fd, 9)
            proc.wait_exit(fd, 5)
        except OSError:
            pass
        os.close(fd)


def _unread_pid(ch) -> int | None:
    """The init's pid from a PID message still queued on the setup channel, if any."""
    from pyrunc import sync
    ch.sock.setblocking(False)
    try:
        while True:
            name, fields, fds = ch.recv()
            for fd in fds:
                os.close(fd)
            if name is None:
                return None
            if name == sync.PID:
                return fields.get("pid")
    except (BlockingIOError, OSError, ValueError):
        return None


# --- run ----------------------------------------------------------------------------------------

def run(root: str, container_id: str, opts: CreateOptions, child, detach: bool,
        keep: bool) -> int:
    """create + start; in the foreground, wait and return the exit code (128+signal)."""
    if detach:
        c, _ = create(root, container_id, opts, child, starting=True)
        try:
            container.start_record(c)
        finally:
            c.close()
        return 0
    # Signals are caught from now on and kept until the container's program runs (the init may
    # exec before create returns: exec.fifo is opened ahead); then they go to it, in order.
    # Delivered earlier, they would kill the runtime's own init half-way.
    from pyrunc import foreground       # (only create and run load it: not kill, delete...)
    forwarder = foreground.SignalForwarder()
    c, master = create(root, container_id, opts, child, attached=True, starting=True)
    pidfd = proc.open_pidfd(c.pid, c.start_time)
    try:
        container.start_record(c)
        forwarder.target(pidfd)
    except BaseException:
        c.close()
        _delete_after_run(root, container_id)
        raise
    c.close()
    log.debug("run: started")
    status = foreground.wait(c.pid, pidfd, master)
    log.debug("run: exited")
    if not keep:
        _delete_after_run(root, container_id)
        log.debug("run: deleted")
    return status


def _delete_after_run(root: str, container_id: str) -> None:
    try:
        container.delete(root, container_id, force=True)
    except PyruncError as err:
        log.warn(str(err))
