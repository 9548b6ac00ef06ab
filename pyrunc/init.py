"""The child side of create: the stage-1 child and the container's init.

Both are forked from ``pyrunc create``; neither ever returns into the parent's code — every path
ends in ``os._exit`` or ``execve``.  Every module the init needs is imported before pivot_root:
afterwards the host's Python library is out of sight.  In debug and test runs (``--debug``, or
``PYRUNC_CHECK_IMPORTS=1`` in the environment) :func:`seal_imports` enforces that rule: an import
after the root changed fails the create, naming the module.  Errors travel back to the parent
over the setup channel (:mod:`pyrunc.sync`) until the init reports READY; after that, over
exec.fifo to ``pyrunc start``.

The init's sequence, and why in this order:

1. non-dumpable (since stage 1), umask 0 — /proc/<pid> of a runtime process must not be
   reachable by the container, and modes of what we create must be exact;
2. (stage 1 already closed every inherited descriptor but stdio, the preserved ones and the
   setup channel — nothing of the runtime may leak into the container — and set the hostname,
   loopback, oom_score_adj and session keyring, which need only the namespaces);
3. (born in the container's cgroup v2 directory, where there is one: see stage1);
4. the rootfs (mounts, devices) — before the hooks, which expect to see the mounts;
5. prestart/createRuntime (run by the parent, in the runtime's namespaces), then
   createContainer (here, in the container's) — both before pivot_root, as the spec says;
6. pivot_root, sysctl, masked and read-only paths, read-only root;
7. in the container's cgroup (the parent sets it up meanwhile; on CGROUP we join its v1
   hierarchies ourselves, or find that the parent moved us; before the hooks when there are
   any, else here), and linux.netDevices moved in;
8. the terminal, then the executable is looked up (so a missing binary fails create, as runc);
9. rlimits, user and capabilities, cwd, no_new_privs, signals (:func:`pyrunc.process.prepare`):
   the init waits for start with nothing more than the program will have, as runc's does;
10. READY; block opening exec.fifo until ``pyrunc start``;
11. startContainer hooks (as the container's user, as runc runs them); then "0" down the fifo
    and execve (the fifo closes on exec: ``start`` sees EOF and knows the program runs).
"""

from pyrunc.linux import os
from pyrunc import SPEC_VERSION, jsonio, log, namespaces, sync
from pyrunc.errors import describe
from pyrunc.linux import sys as k
from pyrunc.record import field, record


@record
class Context:
    """What the children need from the parent (they inherit it by fork)."""

    spec: object
    channel: object                 # the children's end of the setup socketpair
    container_id: str
    bundle: str
    state_dir: int                  # O_PATH fd of the container's state directory
    no_pivot: bool = False
    no_new_keyring: bool = False
    extra_fds: int = 0              # preserved fds after stdio: $LISTEN_FDS + --preserve-fds
    listen_fds: int = 0
    idmapped: dict = field(dict)    # mount index -> fd of its detached id-mapped tree


# --- stage 1 ----------------------------------------------------------------------------------

def setup_child(channel, container_id: str, bundle: str, config: bytes, no_pivot: bool,
                no_new_keyring: bool, extra_fds: int, listen_fds: int) -> None:
    """The stage-1 child from its fork, before the parent has checked anything.  Never returns.

    Everything the parent would otherwise be waited for is done before ``GO``, while the parent
    validates the same bytes and claims the ID: load every module the init needs, parse the
    config, drop what the runtime may not keep (dumpable, inherited descriptors) and, when the
    namespaces need neither a path to join nor id maps from the parent, create them.  None of
    it is visible outside this process, so the parent may simply kill it if it refuses the
    container.  ``GO`` brings the state directory, the cgroup directory to fork the init into
    (see :mod:`pyrunc.cgroups.base`) and the id-mapped trees; then :func:`stage1`.
    """
    try:
        from pyrunc import debugstop, hooks, process, rootfs  # noqa: F401 - used by the init
        import fcntl, select  # noqa: F401,E401 - the init's sync.Channel.die_with_peer
        from pyrunc import spec as speclib
        spec = speclib.parse_config(config, bundle, checked=True)
        if spec.process is not None and spec.process.capabilities is not None:
            # what the parent does to its own copy (and warns about): same host, same answer
            from pyrunc import capabilities
            capabilities.restrict_to_grantable(spec.process.capabilities)
        # Before anything joins or creates a namespace: a non-dumpable process's /proc/<pid>
        # (root, cwd, fd, exe...) is out of reach of other processes, even of one that shares
        # a pid namespace with us or owns a user namespace we enter.  (A process still reaches
        # its own /proc/self/fd, through which the init mounts.)
        k.prctl(k.PR_SET_DUMPABLE, 0)
        close_inherited(3 + extra_fds, keep=(channel.fileno(),))
        flags = namespaces.new_flags(spec.linux.namespaces)
        early = not flags & k.CLONE_NEWUSER and not any(ns.path for ns in spec.linux.namespaces)
        if early:
            # Nothing here needs the parent: make the namespaces and settle what lives in them
            # now, while it works (the init inherits all of it).
            _unshare_rest(spec.linux, flags)
            _identity(spec, container_id, no_new_keyring)
        fields, fds = channel.expect(sync.GO, with_fds=True)
        cgroup_fd = fds.pop(1) if fields["cgroup"] else None
        ctx = Context(spec=spec, channel=channel, container_id=container_id, bundle=bundle,
                      state_dir=fds[0], no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                      extra_fds=extra_fds, listen_fds=listen_fds,
                      idmapped=dict(zip(fields["idmapped"], fds[1:])))
    except BaseException as err:    # noqa: BLE001 - everything goes back to the parent
        channel.send_error(*describe(err))
        os._exit(1)
    stage1(ctx, flags, cgroup_fd, namespaces_done=early)


def stage1(ctx: Context, flags: int, cgroup_fd: int | None, namespaces_done: bool) -> None:
    """Join and create the namespaces (unless done before GO), then fork the init, into
    ``cgroup_fd`` when the parent sent one.  Never returns."""
    ch = ctx.channel
    try:
        if not namespaces_done:
            namespaces.join(ctx.spec.linux.namespaces)
            # rootless: the parent (and newuidmap) can open our /proc/<pid>/uid_map, and we our
            # own /proc/self/oom_score_adj, only while we are dumpable (runc's stage 1 has the
            # same window); root needs none.  Nothing of the container runs yet.
            rootless = bool(flags & k.CLONE_NEWUSER) and os.geteuid() != 0
            if rootless:
                k.prctl(k.PR_SET_DUMPABLE, 1)
            if flags & k.CLONE_NEWUSER:
                k.unshare(k.CLONE_NEWUSER)
                ch.send(sync.USERNS)
                ch.expect(sync.PROCEED)
            _unshare_rest(ctx.spec.linux, flags)
            _identity(ctx.spec, ctx.container_id, ctx.no_new_keyring)
            if rootless:
                k.prctl(k.PR_SET_DUMPABLE, 0)
        if sync.fork_reporting_pid(ch, cgroup_fd) == 0:
            if cgroup_fd is not None:
                os.close(cgroup_fd)
            container_init(ctx, bool(flags & k.CLONE_NEWCGROUP))
        os._exit(0)
    except BaseException as err:    # noqa: BLE001 - everything goes back to the parent
        ch.send_error(*describe(err))
        os._exit(1)


def _unshare_rest(linux, flags: int) -> None:
    """Every new namespace but the user one (made first, for the parent to map) and the cgroup
    one (the init makes it once it is in its cgroup: see container_init's join_cgroup)."""
    namespaces.unshare_rest(flags & ~(k.CLONE_NEWUSER | k.CLONE_NEWCGROUP))
    if flags & k.CLONE_NEWTIME and linux.time_offsets:
        namespaces.write_time_offsets(linux.time_offsets)


def _become_root() -> None:
    """uid/gid 0 inside the user namespace, so that what the init creates is owned right.

    Until here the init kept the runtime's host identity (its ids are unmapped in a new user
    namespace, but the kernel checks file access with the real ones): the rootfs, bind sources
    and state directory were opened with it, since they may lie under directories only the
    host's root can search.
    """
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass


def _has_cgroup_mount(spec) -> bool:
    return any(m.type in ("cgroup", "cgroup2") for m in spec.mounts)


# --- the init -----------------------------------------------------------------------------------

def container_init(ctx: Context, new_cgroupns: bool) -> None:
    """Set up the container and wait for start.  Never returns."""
    # loaded by setup_child already; all of them must be before pivot_root hides the host's files
    from pyrunc import debugstop, hooks, process, rootfs
    ch = ctx.channel
    spec = ctx.spec
    cgroup = {}

    def join_cgroup() -> dict:
        """The parent sets up the container's cgroup while we set up; wait for it before
        anything needs the cgroup — the first cgroup mount, the hooks, at the latest the READY
        that lets the program start — and join its v1 hierarchies then."""
        if not cgroup:
            _fields, fds = ch.expect(sync.CGROUP, with_fds=True)
            _join_v1_hierarchies(fds)
            cgroup["dirs"] = rootfs.cgroup_dirs() if _has_cgroup_mount(spec) else {}
            if new_cgroupns:    # unshared only now, so that its root is the container's cgroup
                k.unshare(k.CLONE_NEWCGROUP)
        return cgroup["dirs"]

    try:
        ch.die_with_peer()      # create gone before READY: nobody will ever start us
        new_userns = spec.linux.namespace("user") is not None
        # (a runtime that itself runs in a user namespace, as under rootless podman, cannot
        # mknod devices or mount sysfs either)
        if not new_userns:
            from pyrunc.linux import proc
        in_userns = new_userns or proc.in_user_namespace()
        os.umask(0)
        if spec.process is not None and spec.process.terminal:
            from pyrunc import terminal  # noqa: F401 - no module can be loaded after pivot_root
        rootfd = rootfs.bind_rootfs(spec)
        sources = rootfs.open_sources(spec, ctx.idmapped)
        if new_userns:
            _become_root()
        log.debug("init: mounting")
        rootfs.prepare(rootfd, spec, in_userns, join_cgroup, sources)
        log.debug("init: mounted")
        debugstop.stop("rootfs")
        for fd in sources.values():
            os.close(fd)
        _ensure_cwd(rootfd, spec)
        if spec.hooks.prestart or spec.hooks.create_runtime or spec.hooks.create_container:
            join_cgroup()       # the hooks find the container in its cgroup
            if spec.hooks.prestart or spec.hooks.create_runtime:
                ch.send(sync.HOOKS)
                ch.expect(sync.HOOKS_DONE)
            hooks.run_all(spec.hooks, "create_container", _state(ctx, "creating"))
        # (without hooks, pivot_root and the masked and read-only paths need no cgroup: they
        # go on while the parent's move into it may still wait for the kernel)
        rootfs.enter(rootfd, ctx.no_pivot)
        seal_imports("chroot" if ctx.no_pivot else "pivot_root")
        log.debug("init: pivoted")
        os.close(rootfd)
        rootfs.finish(spec)
        join_cgroup()           # before the program: it starts in its cgroup, its devices in place
        log.debug("init: in its cgroup")
        env = exe = None
        if spec.process is not None:   # optional until start, which refuses to go without it
            _terminal(spec, ch)
            env = _environment(spec.process, ctx)
            exe = process.lookup(spec.process.args[0], env)
            # the process's identity now, not after start: start then waits for the exec
            # alone, and the init waits with no more privilege than the program will have
            env = process.prepare(spec.process, env, None)
        ch.await_commit()       # (exits if create dies before it has recorded us)
        ch.send(sync.READY)
    except BaseException as err:    # noqa: BLE001
        ch.send_error(*describe(err), type(err).__name__)
        os._exit(1)
    # Blocks until ``pyrunc start`` opens the fifo for reading.
    try:
        fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=ctx.state_dir)
    except BaseException:           # noqa: BLE001 - killed or the state removed: nothing to say
        os._exit(1)
    os.close(ctx.state_dir)
    exec_process(ctx, fifo, exe, env)


CHECK_IMPORTS = "PYRUNC_CHECK_IMPORTS"


def seal_imports(where: str) -> None:
    """From now on, any import that would load a module fails (debug and test runs only).

    After pivot_root (or chroot, or joining a container's mount namespace) the host's Python
    library is out of sight: a module not loaded by then cannot be loaded, or worse, would be
    loaded from the container's files.  An audit hook sees each ``import`` event, which the
    interpreter raises only when a module is not in ``sys.modules`` yet, and turns it into an
    ImportError naming the module; the init reports it like any other failure.  Off (one
    environment lookup) in normal runs: the hot path pays nothing.  ``PYRUNC_CHECK_IMPORTS=probe``
    also imports a module right away, so that a test can see the check fire in a real init.
    """
    mode = os.getenv(CHECK_IMPORTS, "")
    if not mode and not log.debugging():
        return
    import sys

    def hook(event: str, args: tuple) -> None:
        if event == "import":
            raise ImportError(f"import of {args[0]} after {where}: every module the container's "
                              "process needs must be imported before the root changes")
    sys.addaudithook(hook)
    if mode == "probe":
        import colorsys  # noqa: F401 - never loaded by pyrunc: the check must refuse it


def _join_v1_hierarchies(tasks_fds: list[int]) -> None:
    """Move ourselves into the container's cgroup v1 hierarchies: "0" written to a ``tasks``
    file moves the writing thread (our only one) without the lock a move by pid takes."""
    try:
        for fd in tasks_fds:
            os.write(fd, b"0")
    except OSError as err:
        raise OSError(err.errno, f"cgroup: join the container's cgroup: {err.strerror}") \
            from None
    finally:
        for fd in tasks_fds:
            os.close(fd)


def _identity(spec, container_id: str, no_new_keyring: bool) -> None:
    """What lives in the new namespaces, or is inherited by the init: host and domain name,
    loopback up, oom_score_adj, the session keyring."""
    from pyrunc import process
    if spec.hostname is not None and spec.linux.namespace("uts"):
        k.sethostname(spec.hostname)
    if spec.domainname is not None and spec.linux.namespace("uts"):
        k.setdomainname(spec.domainname)
    net = spec.linux.namespace("network")
    if net is not None and not net.path:
        namespaces.loopback_up()
    if spec.process is not None and spec.process.oom_score_adj is not None:
        process.write_oom_score_adj(spec.process.oom_score_adj)
    if not no_new_keyring:
        try:
            k.join_session_keyring(f"_ses.{container_id}")
        except OSError:
            pass    # keyrings may be unavailable (e.g. disabled in this kernel); runc goes on too


def close_inherited(first: int, keep: tuple[int, ...]) -> None:
    """Close every fd from ``first`` on but ``keep``; the preserved ones below stay inheritable.

    What the parent had open (its locked state directory, the console socket, whatever its own
    caller leaked to it) must not reach the container, nor hold locks for as long as it lives.
    ``os.closerange`` is close_range(2): one syscall per gap between the descriptors we keep.
    """
    for fd in range(3, first):
        os.set_inheritable(fd, True)
    low = first
    for fd in sorted(n for n in set(keep) if n >= first):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 0x7FFFFFFF)


def _ensure_cwd(rootfd: int, spec) -> None:
    from pyrunc.linux import inroot
    if spec.process is None:
        return
    try:
        os.close(inroot.mkdir_all(rootfd, spec.process.cwd))
    except OSError:
        pass        # a read-only rootfs: chdir will report a missing cwd clearly


def _terminal(spec, ch) -> None:
    """The container's pty: master to the parent, slave as our controlling terminal and stdio."""
    if not spec.process.terminal:
        return
    from pyrunc import terminal
    from pyrunc.linux import inroot
    master, slave = terminal.open_pty()
    if spec.process.console_size:
        terminal.set_size(master, *spec.process.console_size)
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        console = inroot.replace_with_file(root, "/dev/console", 0o600)
    finally:
        os.close(root)
    try:
        k.mount(inroot.fd_path(slave), inroot.fd_path(console), None, k.MS_BIND)
    finally:
        os.close(console)
    ch.send(sync.CONSOLE, fds=[master])
    os.close(master)
    # stdio on the pty now, not when start comes: the caller's pipes must close when create
    # returns (containerd's shim reads create's output to its end)
    terminal.make_controlling(slave)
    os.close(slave)


def _environment(proc, ctx: Context) -> list[str]:
    env = list(proc.env)
    if ctx.listen_fds:
        env += [f"LISTEN_FDS={ctx.listen_fds}", f"LISTEN_PID={os.getpid()}"]
    return env


def _state(ctx: Context, status: str) -> str:
    state = {"ociVersion": SPEC_VERSION, "id": ctx.container_id, "status": status,
             "pid": os.getpid(), "bundle": ctx.bundle}
    if ctx.spec.annotations:
        state["annotations"] = ctx.spec.annotations
    return jsonio.dumps(state)


# --- after start --------------------------------------------------------------------------------

def exec_process(ctx: Context, fifo: int, exe: str, env: list[str]) -> None:
    """Run the startContainer hooks, report, execve (the init is the configured process already:
    see :func:`pyrunc.process.prepare`).  No return."""
    from pyrunc import hooks, process     # loaded before pivot_root (container_init)
    spec = ctx.spec
    ctx.channel.stop_watching()     # (nothing of create's may reach the program)
    try:
        if spec.process is None:
            raise RuntimeError("process is not set in config.json")
        hooks.run_all(spec.hooks, "start_container", _state(ctx, "created"))
        if spec.linux.personality:
            process.apply_personality(spec.linux.personality)
        if spec.linux.memory_policy:
            process.apply_memory_policy(spec.linux.memory_policy)
        os.write(fifo, b"0")
        process.execute(spec.process, exe, env)
    except BaseException as err:    # noqa: BLE001
        msg, _ = describe(err)
        try:
            os.write(fifo, b"E" + msg.encode())
        finally:
            os._exit(1)
