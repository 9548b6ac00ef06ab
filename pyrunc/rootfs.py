"""The container's filesystem: mounts, devices, pivot_root, masks, read-only paths, sysctl.

Runs in the init, inside the container's new mount namespace, in two halves around the hooks
that must see the mounts before pivot_root (prestart/createRuntime/createContainer):

:func:`bind_rootfs`, :func:`open_sources`, then :func:`prepare` —
    1. detach propagation from the host: ``/`` becomes rslave (or rprivate), so nothing mounted
       for the container leaks back to the host;
    2. bind the rootfs onto itself: pivot_root needs a mount point;
    3. refuse a rootfs whose /proc, /sys or /dev is a symlink;
    4. ``mounts`` in order, every destination resolved inside the rootfs and mounted through an
       O_PATH fd (see :mod:`pyrunc.linux.inroot`);
    5. /dev/pts and /dev/shm when the config has none; then the devices and /dev links.

:func:`finish` —
    6. pivot_root into the rootfs (or move + chroot with ``--no-pivot``), dropping the old root;
    7. sysctl, written to the container's own procfs before /proc/sys may become read-only;
    8. maskedPaths, then readonlyPaths;
    9. the root read-only, and its propagation as asked.
"""

import errno
import stat

from pyrunc.linux import os
from pyrunc import devices, mounts
from pyrunc.errors import SetupError
from pyrunc.linux import inroot
from pyrunc.linux import sys as k

_ROOT_PROPAGATION = {
    "": k.MS_SLAVE | k.MS_REC, "slave": k.MS_SLAVE | k.MS_REC, "rslave": k.MS_SLAVE | k.MS_REC,
    "private": k.MS_PRIVATE | k.MS_REC, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE | k.MS_REC, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
    "shared": k.MS_SLAVE | k.MS_REC, "rshared": k.MS_SLAVE | k.MS_REC,
}


_CWD = -100     # AT_FDCWD: after pivot_root the cwd is the container's "/"


class MountError(SetupError):
    pass


# --- first half: before the hooks ---------------------------------------------------------------

def bind_rootfs(spec) -> int:
    """Steps 1-2; returns an O_PATH fd of the rootfs mount.

    Called while the init still has the runtime's identity on the host filesystem (before it
    becomes root inside a new user namespace): the bundle may sit under directories only the
    host's root can search, and this is the last moment paths outside the rootfs are walked.
    """
    rootfs = spec.root_path
    k.mount(None, "/", None, _ROOT_PROPAGATION[spec.linux.rootfs_propagation])
    _make_parent_private(rootfs)
    try:
        k.mount(rootfs, rootfs, None, k.MS_BIND | k.MS_REC)
    except OSError as err:
        raise MountError(f"bind rootfs {rootfs}: {err.strerror}") from None
    return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def idmapped_trees(spec) -> dict[int, int]:
    """Detached, id-mapped copies of the sources of ``idmap``/``ridmap`` mounts (index -> fd).

    Made by the runtime itself (an id-mapped mount needs privilege over the source's filesystem,
    which the init gives up inside a user namespace): open_tree(OPEN_TREE_CLONE) of the source,
    then mount_setattr(MOUNT_ATTR_IDMAP) with a user namespace holding the mount's mappings —
    or the container's own, when the mount has none.  The init attaches them (:func:`_bind`).
    """
    from pyrunc import namespaces
    trees = {}
    userns_cache = {}
    try:
        for i, mount in enumerate(spec.mounts):
            opts = mounts.parse_options(mount.options)
            if not opts.idmap:
                continue
            uid_maps, gid_maps = mount.uid_mappings, mount.gid_mappings
            if not uid_maps:
                if not spec.linux.namespace("user"):
                    raise MountError(f"mounts[{i}]: {opts.idmap} needs uidMappings and "
                                     "gidMappings, or a user namespace to take them from")
                uid_maps, gid_maps = spec.linux.uid_mappings, spec.linux.gid_mappings
            key = (tuple((m.container_id, m.host_id, m.size) for m in uid_maps),
                   tuple((m.container_id, m.host_id, m.size) for m in gid_maps))
            if key not in userns_cache:
                userns_cache[key] = namespaces.userns_fd(uid_maps, gid_maps)
            recursive = opts.idmap == "ridmap" or bool(opts.flags & k.MS_REC)
            try:
                tree = k.open_tree(k.AT_FDCWD, mount.source, k.OPEN_TREE_CLONE |
                                   k.OPEN_TREE_CLOEXEC | (k.AT_RECURSIVE if recursive else 0))
                trees[i] = tree
                k.mount_setattr(tree, "", k.AT_EMPTY_PATH |
                                (k.AT_RECURSIVE if opts.idmap == "ridmap" else 0),
                                attr_set=k.MOUNT_ATTR_IDMAP, userns_fd=userns_cache[key])
            except OSError as err:
                raise MountError(f"mounts[{i}]: id-mapped mount of {mount.source}: "
                                 f"{err.strerror}") from None
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in userns_cache.values():
            os.close(fd)
    return trees


def open_sources(spec, trees: dict[int, int]) -> dict[int, int]:
    """O_PATH fds of the bind mounts' sources (mount index -> fd), opened up front like the
    rootfs and for the same reason; an id-mapped mount's source is its detached tree."""
    fds = dict(trees)
    try:
        for i, mount in enumerate(spec.mounts):
            if i not in fds and mounts.parse_options(mount.options).is_bind:
                try:
                    fds[i] = os.open(mount.source, os.O_PATH | os.O_CLOEXEC)
                except OSError as err:
                    raise MountError(f"mounts[{i}]: bind source {mount.source}: "
                                     f"{err.strerror}") from None
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def prepare(rootfd: int, spec, in_userns: bool, cgroup_dirs, sources: dict[int, int]) -> None:
    """Steps 3-5: everything inside the rootfs, resolved under ``rootfd``.

    ``cgroup_dirs()`` gives the init's cgroup directories; it may wait (see init.py), so it is
    called only when a cgroup mount comes.
    """
    _refuse_symlinked_dirs(rootfd)
    for i, mount in enumerate(spec.mounts):
        try:
            mount_one(rootfd, mount, spec, in_userns, cgroup_dirs, sources.get(i))
        except MountError:
            raise
        except OSError as err:
            raise MountError(f"mounts[{i}] {mount.type or 'bind'} {mount.source or ''} on "
                             f"{mount.destination}: {err.strerror}") from None
    _default_dev_mounts(rootfd, spec)
    devices.create_all(rootfd, spec.linux.devices, in_userns)
    devices.create_links(rootfd)


def _has_mount(spec, dest: str) -> bool:
    return any(os.path.normpath(m.destination) == dest for m in spec.mounts)


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared; make that one private."""
    parent = _mount_point_of(os.path.dirname(rootfs))
    if parent and parent[1]:
        k.mount(None, parent[0], None, k.MS_PRIVATE)


def _mount_point_of(path: str) -> tuple[str, bool] | None:
    """(mount point containing ``path``, whether it is shared) from /proc/self/mountinfo."""
    best = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = _unescape(fields[4].decode())
            if path == point or path.startswith(point.rstrip("/") + "/"):
                if best is None or len(point) >= len(best[0]):
                    sep = fields.index(b"-")
                    shared = any(opt.startswith(b"shared:") for opt in fields[6:sep])
                    best = (point, shared)
    return best


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
               .replace("\\134", "\\")


def _refuse_symlinked_dirs(rootfd: int) -> None:
    for name in ("proc", "sys", "dev"):
        try:
            st = os.stat(name, dir_fd=rootfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise MountError(f"rootfs: /{name} is a symlink; refusing to mount over it")


def mount_one(rootfd: int, mount, spec, in_userns: bool, cgroup_dirs,
              source_fd: int | None = None) -> None:
    opts = mounts.parse_options(mount.options)
    dest = os.path.normpath(mount.destination)
    if mount.type == "cgroup" or mount.type == "cgroup2":
        return _mount_cgroup(rootfd, mount, opts, cgroup_dirs())
    if opts.idmap and not opts.is_bind:
        raise MountError(f"mount on {dest}: {opts.idmap} needs a bind mount")
    if opts.is_bind:
        _bind(rootfd, mount, dest, opts, source_fd, detached=bool(opts.idmap))
    else:
        _fs_mount(rootfd, mount, dest, opts, in_userns)
    _after_mount(rootfd, dest, opts)


def _target(rootfd: int, dest: str, want_dir: bool, mount_type: str = "") -> int:
    """The mount point, created if missing; never the rootfs's /proc unless mounting procfs.

    The check is on the object, not the string: an image's ``/evil -> /proc`` would otherwise
    let a tmpfs or a bind become the container's /proc.
    """
    fd = inroot.mkdir_all(rootfd, dest) if want_dir else inroot.create_file(rootfd, dest)
    if mount_type != "proc" and _is_proc_dir(rootfd, fd):
        os.close(fd)
        raise MountError(f"mount on {dest}: that is /proc, where only procfs may be mounted")
    return fd


def _is_proc_dir(rootfd: int, fd: int) -> bool:
    try:
        proc = inroot.open_in_root(rootfd, "/proc")
    except FileNotFoundError:
        return False
    try:
        a, b = os.fstat(proc), os.fstat(fd)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    finally:
        os.close(proc)


def _bind(rootfd: int, mount, dest: str, opts, src: int, detached: bool = False) -> None:
    """Bind the source (opened up front, see :func:`open_sources`) onto ``dest``; a detached
    tree (an id-mapped mount) is attached with move_mount instead."""
    target = _target(rootfd, dest, inroot.is_dir(src))
    try:
        if detached:
            k.move_mount(src, "", target, "",
                         k.MOVE_MOUNT_F_EMPTY_PATH | k.MOVE_MOUNT_T_EMPTY_PATH)
        else:
            k.mount(inroot.fd_path(src), inroot.fd_path(target), None,
                    k.MS_BIND | (opts.flags & k.MS_REC))
    finally:
        os.close(target)
    attr_set, attr_clr = mounts.bind_attrs(opts)
    if attr_set or attr_clr:
        fd = inroot.open_in_root(rootfd, dest)
        try:
            k.mount_setattr(fd, "", k.AT_EMPTY_PATH, attr_set, attr_clr)
        finally:
            os.close(fd)


def _fs_mount(rootfd: int, mount, dest: str, opts, in_userns: bool) -> None:
    target = _target(rootfd, dest, True, mount.type)
    try:
        if mount.type == "proc":
            _check_plain_dir(target, dest)
        underneath = _open_under(target) if opts.tmpcopyup else None
        flags = opts.flags & mounts.FS_FLAG_MASK
        try:
            k.mount(mount.source or mount.type, inroot.fd_path(target), mount.type, flags,
                    opts.data or None)
        except OSError as err:
            if mount.type == "sysfs" and err.errno == errno.EPERM and in_userns:
                # sysfs of the host network namespace cannot be mounted from a user namespace;
                # a recursive read-only bind of the host's /sys is the usual answer.
                k.mount("/sys", inroot.fd_path(target), None, k.MS_BIND | k.MS_REC)
                fd = inroot.open_in_root(rootfd, dest)
                try:
                    k.mount_setattr(fd, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE,
                                    mounts.ATTR_RDONLY | mounts.ATTR_NOSUID | mounts.ATTR_NODEV
                                    | mounts.ATTR_NOEXEC)
                finally:
                    os.close(fd)
            else:
                raise
        if underneath is not None:
            _copy_up(underneath, rootfd, dest)
    finally:
        os.close(target)


def _check_plain_dir(fd: int, dest: str) -> None:
    if not inroot.is_dir(fd):
        raise MountError(f"mount on {dest}: not a directory")


def _open_under(target: int) -> int:
    return os.open(inroot.fd_path(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _copy_up(src_dirfd: int, rootfd: int, dest: str) -> None:
    """tmpcopyup: copy what the new tmpfs covers into it (regular files, dirs, links)."""
    dst = inroot.open_in_root(rootfd, dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _copy_tree(src_dirfd, dst)
    finally:
        os.close(dst)
        os.close(src_dirfd)


def _copy_tree(src: int, dst: int) -> None:
    for entry in os.scandir(src):
        st = entry.stat(follow_symlinks=False)
        name = entry.name
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, stat.S_IMODE(st.st_mode), dir_fd=dst)
            s = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=src)
            d = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=dst)
            try:
                _copy_tree(s, d)
            finally:
                os.close(s)
                os.close(d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISREG(st.st_mode):
            s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        stat.S_IMODE(st.st_mode), dir_fd=dst)
            try:
                while os.sendfile(d, s, None, 1 << 20):
                    pass
            finally:
                os.close(s)
                os.close(d)
        else:
            continue
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)


def _after_mount(rootfd: int, dest: str, opts) -> None:
    """Propagation changes and recursive attributes, on the mount just made at ``dest``."""
    if not opts.propagation and not (opts.rec_set or opts.rec_clr):
        return
    fd = inroot.open_in_root(rootfd, dest)
    try:
        for flag in opts.propagation:
            k.mount(None, inroot.fd_path(fd), None, flag)
        if opts.rec_set or opts.rec_clr:
            k.mount_setattr(fd, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE, opts.rec_set, opts.rec_clr)
    finally:
        os.close(fd)


def _mount_cgroup(rootfd: int, mount, opts, cgroup_dirs: dict[str, str]) -> None:
    """/sys/fs/cgroup: bind the container's own cgroup directories, read-only if asked.

    ``cgroup_dirs`` maps each cgroup hierarchy's mount point on the host to the init's cgroup
    directory in it (see :func:`cgroup_dirs`).  On a pure v2 host the destination gets the
    container's cgroup directory itself; on v1 and hybrid hosts a tmpfs holds one directory per
    hierarchy, named as on the host (memory, cpu, ..., unified).
    """
    dest = os.path.normpath(mount.destination)
    ro = bool(opts.flags & k.MS_RDONLY)
    if list(cgroup_dirs) == ["/sys/fs/cgroup"]:
        _bind_cgroup(rootfd, cgroup_dirs["/sys/fs/cgroup"], dest, ro)
        return
    target = _target(rootfd, dest, True)
    try:
        k.mount("tmpfs", inroot.fd_path(target), "tmpfs", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC,
                "mode=755")
    finally:
        os.close(target)
    for point, source in sorted(cgroup_dirs.items()):
        _bind_cgroup(rootfd, source, os.path.join(dest, os.path.basename(point)), ro)
    if ro:
        fd = inroot.open_in_root(rootfd, dest)
        try:
            k.mount_setattr(fd, "", k.AT_EMPTY_PATH, mounts.ATTR_RDONLY)
        finally:
            os.close(fd)


def cgroup_dirs() -> dict[str, str]:
    """{hierarchy mount point: this process's cgroup directory in it}, from /proc/self.

    Read before the cgroup namespace is unshared, while /proc/self/cgroup still shows full paths.
    """
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[frozenset(c for c in controllers.split(",") if c)] = path
    dirs: dict[str, str] = {}
    seen = set()    # hierarchies: only the first mount of each (the host's own, listed before
    # copies made since, e.g. a recursive bind of the host's /sys into the rootfs)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.decode().split()
            sep = fields.index("-")
            fstype, super_opts = fields[sep + 1], fields[sep + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            root, point = _unescape(fields[3]), _unescape(fields[4])
            if fstype == "cgroup2":
                key = frozenset()
            else:       # the hierarchy whose controllers are all among the mount's options
                options = set(super_opts.split(","))
                key = next((key for key in own if key and key <= options), None)
            path = own.get(key) if key is not None else None
            if path is None or point in dirs or key in seen:
                continue
            seen.add(key)
            rel = os.path.relpath(path, root)
            dirs[point] = point if rel == "." else os.path.join(point, rel)
    return dirs


def _bind_cgroup(rootfd: int, source: str, dest: str, ro: bool) -> None:
    src = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        target = inroot.mkdir_all(rootfd, dest)
        try:
            k.mount(inroot.fd_path(src), inroot.fd_path(target), None, k.MS_BIND | k.MS_REC)
        finally:
            os.close(target)
    finally:
        os.close(src)
    fd = inroot.open_in_root(rootfd, dest)
    try:
        k.mount_setattr(fd, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE,
                        mounts.ATTR_NOSUID | mounts.ATTR_NODEV | mounts.ATTR_NOEXEC
                        | (mounts.ATTR_RDONLY if ro else 0))
    finally:
        os.close(fd)


def _default_dev_mounts(rootfd: int, spec) -> None:
    """/dev/pts and /dev/shm, when the config mounts none there (config-linux.md asks for them)."""
    if not _has_mount(spec, "/dev/pts"):
        target = inroot.mkdir_all(rootfd, "/dev/pts")
        try:
            k.mount("devpts", inroot.fd_path(target), "devpts", k.MS_NOSUID | k.MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620")
        finally:
            os.close(target)
    if not _has_mount(spec, "/dev/shm"):
        target = inroot.mkdir_all(rootfd, "/dev/shm")
        try:
            k.mount("shm", inroot.fd_path(target), "tmpfs",
                    k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, "mode=1777,size=65536k")
        finally:
            os.close(target)


# --- second half: after the hooks -----------------------------------------------------------

def enter(rootfd: int, no_pivot: bool) -> None:
    """Make the rootfs the process's ``/``."""
    if no_pivot:
        os.fchdir(rootfd)
        k.mount(".", "/", None, k.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it right after
    # leaves only the rootfs, with no directory needed for the old root.
    oldroot = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(rootfd)
        k.pivot_root(".", ".")
        os.fchdir(oldroot)
        k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
        k.umount2(".", k.MNT_DETACH)
    finally:
        os.close(oldroot)
    os.chdir("/")


def finish(spec) -> None:
    """After pivot_root: sysctl, masked and read-only paths, the root's flags."""
    if spec.linux.masked_paths or spec.linux.readonly_paths or (
            spec.process is not None and spec.process.terminal):
        # from here on mounts go through /proc/self/fd of the container's own /proc: it has to
        # be the procfs we mounted, not a directory of the image
        os.close(_open_proc())
    write_sysctls(spec.linux.sysctl)
    if spec.linux.masked_paths:
        null_fd = devices.dev_null_fd()
        try:
            for path in spec.linux.masked_paths:
                mask_path(path, null_fd)
        finally:
            os.close(null_fd)
    for path in spec.linux.readonly_paths:
        readonly_path(path)
    if spec.root_readonly:
        fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
        try:
            k.mount_setattr(fd, "", k.AT_EMPTY_PATH, mounts.ATTR_RDONLY)
        finally:
            os.close(fd)
    if spec.linux.rootfs_propagation in ("shared", "rshared"):
        k.mount(None, "/", None, k.MS_SHARED | (k.MS_REC if spec.linux.rootfs_propagation ==
                                                 "rshared" else 0))


def _open_proc() -> int:
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if k.fstatfs_type(fd) != k.PROC_SUPER_MAGIC:
        os.close(fd)
        raise SetupError("/proc in the container is not procfs")
    return fd


def write_sysctls(sysctl: dict[str, str]) -> None:
    if not sysctl:
        return
    procfd = _open_proc()
    try:
        from pyrunc.spec import sysctl_relpath     # loaded before pivot_root (by the parse)
        for key, value in sysctl.items():
            rel = "sys/" + sysctl_relpath(key)      # validated: never None here
            try:
                fd = k.openat2(procfd, rel, os.O_WRONLY | os.O_TRUNC, 0,
                               k.RESOLVE_NO_SYMLINKS | k.RESOLVE_BENEATH | k.RESOLVE_NO_XDEV)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
            except OSError as err:
                raise SetupError(f"linux.sysctl.{key}: write /proc/{rel}: {err.strerror}") \
                    from None
    finally:
        os.close(procfd)


def mask_path(path: str, null_fd: int) -> None:
    try:
        fd = inroot.open_in_root(_CWD, path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise SetupError(f"maskedPaths {path}: {err.strerror}") from None
    try:
        if inroot.is_dir(fd):
            k.mount("tmpfs", inroot.fd_path(fd), "tmpfs", k.MS_RDONLY)
        else:
            k.mount(inroot.fd_path(null_fd), inroot.fd_path(fd), None, k.MS_BIND)
    except OSError as err:
        raise SetupError(f"maskedPaths {path}: mount: {err.strerror}") from None
    finally:
        os.close(fd)


def readonly_path(path: str) -> None:
    try:
        fd = inroot.open_in_root(_CWD, path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise SetupError(f"readonlyPaths {path}: {err.strerror}") from None
    try:
        k.mount(inroot.fd_path(fd), inroot.fd_path(fd), None, k.MS_BIND | k.MS_REC)
    except OSError as err:
        os.close(fd)
        raise SetupError(f"readonlyPaths {path}: bind: {err.strerror}") from None
    os.close(fd)
    fd = inroot.open_in_root(_CWD, path)
    try:
        k.mount_setattr(fd, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE,
                        mounts.ATTR_RDONLY | mounts.ATTR_NOSUID | mounts.ATTR_NODEV
                        | mounts.ATTR_NOEXEC)
    except OSError as err:
        raise SetupError(f"readonlyPaths {path}: remount read-only: {err.strerror}") from None
    finally:
        os.close(fd)
