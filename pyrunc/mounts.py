"""Mount options (config.md "Linux mount options") → what the kernel calls take.

Pure logic, no syscalls: :func:`parse_options` turns a mount's ``options`` array into

* ``flags`` / ``clear`` — mount(2) flags the options set or explicitly clear (``ro`` / ``rw``...);
* ``propagation`` — MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (``|MS_REC``), applied one by one
  after the mount, since mount(2) takes a propagation change only on its own;
* ``rec_set`` / ``rec_clr`` — ``MOUNT_ATTR_*`` for the recursive ``r*`` options, applied with
  mount_setattr(2) and AT_RECURSIVE;
* ``data`` — every option the table does not know, passed to the filesystem as mount(2)'s data;
* ``idmap`` (``"idmap"``/``"ridmap"``) and ``tmpcopyup``.

:func:`bind_attrs` gives the MOUNT_ATTR_* form of the per-mount flags of a bind mount, which are
applied with mount_setattr so that flags the kernel locked (in a user namespace) are left alone.
"""

from pyrunc.linux import sys as k
from pyrunc.record import field, record

# option -> (flags to set, flags to clear)
_FLAGS = {
    "async": (0, k.MS_SYNCHRONOUS), "atime": (0, k.MS_NOATIME), "defaults": (0, 0),
    "dev": (0, k.MS_NODEV), "diratime": (0, k.MS_NODIRATIME), "dirsync": (k.MS_DIRSYNC, 0),
    "exec": (0, k.MS_NOEXEC), "iversion": (k.MS_I_VERSION, 0), "lazytime": (k.MS_LAZYTIME, 0),
    "loud": (0, k.MS_SILENT), "mand": (k.MS_MANDLOCK, 0), "noatime": (k.MS_NOATIME, 0),
    "nodev": (k.MS_NODEV, 0), "nodiratime": (k.MS_NODIRATIME, 0), "noexec": (k.MS_NOEXEC, 0),
    "noiversion": (0, k.MS_I_VERSION), "nolazytime": (0, k.MS_LAZYTIME),
    "nomand": (0, k.MS_MANDLOCK), "norelatime": (0, k.MS_RELATIME),
    "nostrictatime": (0, k.MS_STRICTATIME), "nosuid": (k.MS_NOSUID, 0),
    "nosymfollow": (k.MS_NOSYMFOLLOW, 0), "relatime": (k.MS_RELATIME, 0),
    "remount": (k.MS_REMOUNT, 0), "ro": (k.MS_RDONLY, 0), "rw": (0, k.MS_RDONLY),
    "silent": (k.MS_SILENT, 0), "strictatime": (k.MS_STRICTATIME, 0), "suid": (0, k.MS_NOSUID),
    "symfollow": (0, k.MS_NOSYMFOLLOW), "sync": (k.MS_SYNCHRONOUS, 0),
    "bind": (k.MS_BIND, 0), "rbind": (k.MS_BIND | k.MS_REC, 0),
}

_PROPAGATION = {
    "private": k.MS_PRIVATE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED, "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE, "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}

ATTR_RDONLY = 0x1
ATTR_NOSUID = 0x2
ATTR_NODEV = 0x4
ATTR_NOEXEC = 0x8
ATTR__ATIME = 0x70
ATTR_RELATIME = 0x0
ATTR_NOATIME = 0x10
ATTR_STRICTATIME = 0x20
ATTR_NODIRATIME = 0x80
ATTR_NOSYMFOLLOW = 0x200000

# recursive option -> (MOUNT_ATTR to set, MOUNT_ATTR to clear)
_RECURSIVE = {
    "rro": (ATTR_RDONLY, 0), "rrw": (0, ATTR_RDONLY),
    "rnosuid": (ATTR_NOSUID, 0), "rsuid": (0, ATTR_NOSUID),
    "rnodev": (ATTR_NODEV, 0), "rdev": (0, ATTR_NODEV),
    "rnoexec": (ATTR_NOEXEC, 0), "rexec": (0, ATTR_NOEXEC),
    "rnodiratime": (ATTR_NODIRATIME, 0), "rdiratime": (0, ATTR_NODIRATIME),
    "rrelatime": (ATTR_RELATIME, ATTR__ATIME), "rnorelatime": (ATTR_STRICTATIME, ATTR__ATIME),
    "rnoatime": (ATTR_NOATIME, ATTR__ATIME), "ratime": (ATTR_RELATIME, ATTR__ATIME),
    "rstrictatime": (ATTR_STRICTATIME, ATTR__ATIME),
    "rnostrictatime": (ATTR_RELATIME, ATTR__ATIME),
    "rnosymfollow": (ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, ATTR_NOSYMFOLLOW),
}

# Every option name the runtime recognises (``features`` reports these).
KNOWN = sorted(set(_FLAGS) | set(_PROPAGATION) | set(_RECURSIVE) | {"tmpcopyup", "idmap", "ridmap"})


@record
class MountOptions:
    flags: int = 0
    clear: int = 0
    propagation: list = field(list)
    rec_set: int = 0
    rec_clr: int = 0
    data: str = ""
    idmap: str = ""
    tmpcopyup: bool = False

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & k.MS_BIND)


def parse_options(options: list[str]) -> MountOptions:
    opts = MountOptions()
    data = []
    for opt in options:
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            opts.flags = (opts.flags | on) & ~off
            opts.clear = (opts.clear | off) & ~on
        elif opt in _PROPAGATION:
            opts.propagation.append(_PROPAGATION[opt])
        elif opt in _RECURSIVE:
            on, off = _RECURSIVE[opt]
            if off == ATTR__ATIME:      # the kernel takes the atime mode as one field
                opts.rec_clr |= ATTR__ATIME
                opts.rec_set = (opts.rec_set & ~ATTR__ATIME) | on
            else:
                opts.rec_clr = (opts.rec_clr | off) & ~on
                opts.rec_set = (opts.rec_set & ~off) | on
        elif opt in ("idmap", "ridmap"):
            opts.idmap = opt
        elif opt == "tmpcopyup":
            opts.tmpcopyup = True
        else:
            data.append(opt)
    opts.data = ",".join(data)
    return opts


_ATIME_FLAGS = ((k.MS_NOATIME, ATTR_NOATIME), (k.MS_STRICTATIME, ATTR_STRICTATIME),
                (k.MS_RELATIME, ATTR_RELATIME))


def bind_attrs(opts: MountOptions) -> tuple[int, int]:
    """(attr_set, attr_clr) for the top mount of a bind mount, from its per-mount flags."""
    attr_set = attr_clr = 0
    for flag, attr in ((k.MS_RDONLY, ATTR_RDONLY), (k.MS_NOSUID, ATTR_NOSUID),
                       (k.MS_NODEV, ATTR_NODEV), (k.MS_NOEXEC, ATTR_NOEXEC),
                       (k.MS_NODIRATIME, ATTR_NODIRATIME), (k.MS_NOSYMFOLLOW, ATTR_NOSYMFOLLOW)):
        if opts.flags & flag:
            attr_set |= attr
        elif opts.clear & flag:
            attr_clr |= attr
    for flag, attr in _ATIME_FLAGS:
        if opts.flags & flag:
            attr_set = (attr_set & ~ATTR__ATIME) | attr
            attr_clr |= ATTR__ATIME
            break
    else:
        if opts.clear & (k.MS_NOATIME | k.MS_STRICTATIME):
            attr_clr |= ATTR__ATIME      # back to the default, relatime
    return attr_set, attr_clr


# Flags that mount(2) takes for a new filesystem mount (not the bind/propagation ones).
FS_FLAG_MASK = ~(k.MS_BIND | k.MS_REC | k.MS_SHARED | k.MS_SLAVE | k.MS_PRIVATE | k.MS_UNBINDABLE)
