"""config.json → typed records (``@record``, :mod:`pyrunc.record`), parsed once.

``parse_config(data, bundle)`` takes the bytes of ``<bundle>/config.json`` (read once, by
:mod:`pyrunc.launch`), checks them against the project's schema and semantic rules
(:mod:`pyrunc.validate`), and returns a :class:`Spec`.  The rest of the runtime reads
attributes, never dictionary keys.  Anything the runtime does not interpret itself is kept raw:
``linux.resources`` goes as a dict to the cgroup layer (which parses it into its own types), and
``Spec.raw`` keeps the whole document for the state file, so nothing later depends on the bundle's
config.json (which the caller may change after create).

Unknown fields are ignored, as the spec requires.  Every error names the field's path:
``config.json: process.args: must be a non-empty array of strings``.

One rule, one place: the parser checks only what it needs to build the records (types, for an
exec's process file that no schema has seen); rules of meaning — duplicate namespaces or
rlimits, id mappings without a user namespace, time offsets without a time namespace or with
an unknown clock, the oomScoreAdj range — are :mod:`pyrunc.validate`'s alone, which every
document passes before it is parsed (``exec --process`` files through
``validate.validate_process``).
"""

from pyrunc.linux import os
from pyrunc.record import field, record

from pyrunc.errors import ConfigError

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# capabilities(7) as of Linux 6.x, in bit order: CAPABILITIES.index(name) is the bit.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def sysctl_relpath(key):
    """The file under /proc/sys for a sysctl key (``net.ipv4.ip_forward`` or ``net/ipv4/...``).

    With a ``/`` in the key, ``/`` separates components and dots are literal (as in sysctl(8),
    for names like ``net/ipv4/conf/eth0.100/forwarding``). Returns None for a key with an
    empty, ``.`` or ``..`` component.
    """
    parts = key.split("/") if "/" in key else key.split(".")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        return None
    return "/".join(parts)


# --- the types --------------------------------------------------------------------------------

@record
class IDMap:
    container_id: int
    host_id: int
    size: int


@record
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: list[int] = field(list)


@record
class Rlimit:
    type: str
    soft: int
    hard: int


@record
class Capabilities:
    bounding: list[str] = field(list)
    effective: list[str] = field(list)
    permitted: list[str] = field(list)
    inheritable: list[str] = field(list)
    ambient: list[str] = field(list)


@record
class Process:
    args: list[str]
    cwd: str = "/"
    env: list[str] = field(list)
    terminal: bool = False
    console_size: tuple[int, int] | None = None        # (height, width)
    user: User = field(User)
    capabilities: Capabilities | None = None            # None: keep the runtime's own set
    rlimits: list[Rlimit] = field(list)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str = ""
    selinux_label: str = ""
    scheduler: dict | None = None
    io_priority: dict | None = None
    exec_cpu_affinity: dict | None = None


@record
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: list[str] = field(list)
    uid_mappings: list[IDMap] = field(list)
    gid_mappings: list[IDMap] = field(list)


@record
class Namespace:
    type: str
    path: str = ""


@record
class Device:
    type: str
    path: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class Hook:
    path: str
    args: list[str] = field(list)
    env: list[str] = field(list)
    timeout: int | None = None


@record
class Hooks:
    prestart: list[Hook] = field(list)
    create_runtime: list[Hook] = field(list)
    create_container: list[Hook] = field(list)
    start_container: list[Hook] = field(list)
    poststart: list[Hook] = field(list)
    poststop: list[Hook] = field(list)


@record
class Linux:
    namespaces: list[Namespace] = field(list)
    uid_mappings: list[IDMap] = field(list)
    gid_mappings: list[IDMap] = field(list)
    time_offsets: dict[str, tuple[int, int]] = field(dict)
    devices: list[Device] = field(list)
    net_devices: dict[str, str] = field(dict)   # host name -> name inside
    cgroups_path: str | None = None
    resources: dict | None = None
    rootfs_propagation: str = ""
    masked_paths: list[str] = field(list)
    readonly_paths: list[str] = field(list)
    sysctl: dict[str, str] = field(dict)
    seccomp: dict | None = None
    personality: dict | None = None
    memory_policy: dict | None = None
    intel_rdt: dict | None = None
    mount_label: str = ""

    def namespace(self, ns_type: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


@record
class Spec:
    oci_version: str
    root_path: str                  # absolute
    root_readonly: bool
    mounts: list[Mount]
    process: Process | None
    hostname: str | None
    domainname: str | None
    hooks: Hooks
    annotations: dict[str, str]
    linux: Linux
    raw: dict


# --- reading helpers: each checks one type and names the path on failure ----------------------

def _fail(path: str, msg: str):
    raise ConfigError(f"config.json: {path}: {msg}")


def _obj(doc, key: str, path: str) -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(path, "must be an object")
    return value


def _str(doc: dict, key: str, path: str, default: str = "") -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        _fail(path, "must be a string")
    return value


def _bool(doc: dict, key: str, path: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        _fail(path, "must be a boolean")
    return value


def _int(doc: dict, key: str, path: str, default=None, lo=None, hi=None):
    value = doc.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(path, "must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(path, f"{value} is out of range")
    return value


def _list(doc: dict, key: str, path: str) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, "must be an array")
    return value


def _strings(doc: dict, key: str, path: str) -> list[str]:
    items = _list(doc, key, path)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            _fail(f"{path}[{i}]", "must be a string")
    return items


def _objects(doc: dict, key: str, path: str):
    for i, item in enumerate(_list(doc, key, path)):
        if not isinstance(item, dict):
            _fail(f"{path}[{i}]", "must be an object")
        yield i, item


_U32 = (0, 2**32 - 1)


# --- the parsers ------------------------------------------------------------------------------

def _idmaps(doc: dict, key: str, path: str) -> list[IDMap]:
    return [IDMap(_req_int(m, "containerID", f"{path}[{i}].containerID", *_U32),
                  _req_int(m, "hostID", f"{path}[{i}].hostID", *_U32),
                  _req_int(m, "size", f"{path}[{i}].size", *_U32))
            for i, m in _objects(doc, key, path)]


def _req(doc: dict, key: str, path: str):
    if key not in doc:
        _fail(path, "required")
    return doc[key]


def _req_int(doc: dict, key: str, path: str, lo=None, hi=None) -> int:
    _req(doc, key, path)
    return _int(doc, key, path, lo=lo, hi=hi)


def parse_process(doc: dict, path: str = "process") -> Process:
    """Parse a process object (config.json's ``process`` or an exec ``--process`` file)."""
    args = _strings(doc, "args", f"{path}.args")
    if not args:
        _fail(f"{path}.args", "must be a non-empty array of strings")
    cwd = _str(doc, "cwd", f"{path}.cwd", "/")
    if not cwd.startswith("/"):
        _fail(f"{path}.cwd", f"{cwd!r} is not an absolute path")
    proc = Process(args=args, cwd=cwd, env=_strings(doc, "env", f"{path}.env"),
                   terminal=_bool(doc, "terminal", f"{path}.terminal"))
    if proc.terminal and "consoleSize" in doc:
        size = _obj(doc, "consoleSize", f"{path}.consoleSize")
        proc.console_size = (_req_int(size, "height", f"{path}.consoleSize.height", 0, 65535),
                             _req_int(size, "width", f"{path}.consoleSize.width", 0, 65535))
    user = _obj(doc, "user", f"{path}.user")
    proc.user = User(uid=_int(user, "uid", f"{path}.user.uid", 0, *_U32),
                     gid=_int(user, "gid", f"{path}.user.gid", 0, *_U32),
                     umask=_int(user, "umask", f"{path}.user.umask", None, 0, 0o7777),
                     additional_gids=[_int({"g": g}, "g", f"{path}.user.additionalGids[{i}]",
                                           lo=0, hi=_U32[1])
                                      for i, g in enumerate(_list(user, "additionalGids",
                                                                  f"{path}.user.additionalGids"))])
    if "capabilities" in doc and doc["capabilities"] is not None:
        caps = _obj(doc, "capabilities", f"{path}.capabilities")
        proc.capabilities = Capabilities(
            **{name: _strings(caps, name, f"{path}.capabilities.{name}")
               for name in ("bounding", "effective", "permitted", "inheritable", "ambient")})
    for i, rl in _objects(doc, "rlimits", f"{path}.rlimits"):
        where = f"{path}.rlimits[{i}]"
        rtype = _str(rl, "type", f"{where}.type")
        proc.rlimits.append(Rlimit(rtype, _req_int(rl, "soft", f"{where}.soft", 0, 2**64 - 1),
                                   _req_int(rl, "hard", f"{where}.hard", 0, 2**64 - 1)))
    proc.no_new_privileges = _bool(doc, "noNewPrivileges", f"{path}.noNewPrivileges")
    proc.oom_score_adj = _int(doc, "oomScoreAdj", f"{path}.oomScoreAdj")
    proc.apparmor_profile = _str(doc, "apparmorProfile", f"{path}.apparmorProfile")
    proc.selinux_label = _str(doc, "selinuxLabel", f"{path}.selinuxLabel")
    proc.scheduler = doc.get("scheduler")
    proc.io_priority = doc.get("ioPriority")
    proc.exec_cpu_affinity = doc.get("execCPUAffinity")
    return proc


def _mounts(doc: dict, bundle: str) -> list[Mount]:
    mounts = []
    for i, m in _objects(doc, "mounts", "mounts"):
        where = f"mounts[{i}]"
        dest = _str(m, "destination", f"{where}.destination")
        if not dest:
            _fail(f"{where}.destination", "required")
        if not dest.startswith("/"):        # relative destinations are deprecated: relative to /
            dest = "/" + dest
        if ".." in dest.split("/"):
            _fail(f"{where}.destination", f"{dest!r} must not contain '..'")
        mount = Mount(destination=dest, type=_str(m, "type", f"{where}.type"),
                      source=_str(m, "source", f"{where}.source"),
                      options=_strings(m, "options", f"{where}.options"),
                      uid_mappings=_idmaps(m, "uidMappings", f"{where}.uidMappings"),
                      gid_mappings=_idmaps(m, "gidMappings", f"{where}.gidMappings"))
        is_bind = "bind" in mount.options or "rbind" in mount.options
        if is_bind and mount.source and not mount.source.startswith("/"):
            mount.source = os.path.join(bundle, mount.source)
        mounts.append(mount)
    return mounts


def parse_hooks(doc: dict) -> Hooks:
    """The ``hooks`` section (also read back from a container's saved config)."""
    hooks = Hooks()
    section = _obj(doc, "hooks", "hooks")
    for attr, key in (("prestart", "prestart"), ("create_runtime", "createRuntime"),
                      ("create_container", "createContainer"),
                      ("start_container", "startContainer"), ("poststart", "poststart"),
                      ("poststop", "poststop")):
        for i, h in _objects(section, key, f"hooks.{key}"):
            where = f"hooks.{key}[{i}]"
            hpath = _str(h, "path", f"{where}.path")
            if not hpath.startswith("/"):
                _fail(f"{where}.path", f"{hpath!r} is not an absolute path")
            timeout = _int(h, "timeout", f"{where}.timeout")
            if timeout is not None and timeout <= 0:
                _fail(f"{where}.timeout", "must be greater than zero")
            getattr(hooks, attr).append(Hook(hpath, _strings(h, "args", f"{where}.args"),
                                             _strings(h, "env", f"{where}.env"), timeout))
    return hooks


def _linux(doc: dict) -> Linux:
    lx = _obj(doc, "linux", "linux")
    linux = Linux()
    for i, ns in _objects(lx, "namespaces", "linux.namespaces"):
        where = f"linux.namespaces[{i}]"
        ns_type = _str(ns, "type", f"{where}.type")
        if ns_type not in NAMESPACE_TYPES:
            _fail(f"{where}.type", f"unknown namespace type {ns_type!r}")
        ns_path = _str(ns, "path", f"{where}.path")
        if ns_path and not ns_path.startswith("/"):
            _fail(f"{where}.path", f"{ns_path!r} is not an absolute path")
        linux.namespaces.append(Namespace(ns_type, ns_path))
    linux.uid_mappings = _idmaps(lx, "uidMappings", "linux.uidMappings")
    linux.gid_mappings = _idmaps(lx, "gidMappings", "linux.gidMappings")
    for clock, off in _obj(lx, "timeOffsets", "linux.timeOffsets").items():
        where = f"linux.timeOffsets.{clock}"
        if not isinstance(off, dict):
            _fail(where, "must be an object")
        linux.time_offsets[clock] = (_int(off, "secs", f"{where}.secs", 0, -2**63, 2**63 - 1),
                                     _int(off, "nanosecs", f"{where}.nanosecs", 0, 0, 999999999))
    for i, d in _objects(lx, "devices", "linux.devices"):
        where = f"linux.devices[{i}]"
        dtype = _str(d, "type", f"{where}.type")
        if dtype not in ("c", "b", "u", "p"):
            _fail(f"{where}.type", f"unknown device type {dtype!r}")
        dpath = _str(d, "path", f"{where}.path")
        if not dpath.startswith("/"):
            _fail(f"{where}.path", f"{dpath!r} is not an absolute path")
        dev = Device(dtype, dpath)
        if dtype != "p":
            dev.major = _req_int(d, "major", f"{where}.major", 0, 2**32 - 1)
            dev.minor = _req_int(d, "minor", f"{where}.minor", 0, 2**32 - 1)
        dev.file_mode = _int(d, "fileMode", f"{where}.fileMode", None, 0, 0o7777)
        dev.uid = _int(d, "uid", f"{where}.uid", None, *_U32)
        dev.gid = _int(d, "gid", f"{where}.gid", None, *_U32)
        linux.devices.append(dev)
    for host_name, nd in _obj(lx, "netDevices", "linux.netDevices").items():
        if not isinstance(nd, dict):
            _fail(f"linux.netDevices.{host_name}", "must be an object")
        linux.net_devices[host_name] = _str(nd, "name", f"linux.netDevices.{host_name}.name",
                                            host_name) or host_name
    if "cgroupsPath" in lx:
        linux.cgroups_path = _str(lx, "cgroupsPath", "linux.cgroupsPath") or None
    if lx.get("resources") is not None:
        linux.resources = _obj(lx, "resources", "linux.resources")
    linux.rootfs_propagation = _str(lx, "rootfsPropagation", "linux.rootfsPropagation")
    if linux.rootfs_propagation not in ("", "shared", "slave", "private", "unbindable",
                                        "rshared", "rslave", "rprivate", "runbindable"):
        _fail("linux.rootfsPropagation", f"unknown propagation {linux.rootfs_propagation!r}")
    linux.masked_paths = _strings(lx, "maskedPaths", "linux.maskedPaths")
    linux.readonly_paths = _strings(lx, "readonlyPaths", "linux.readonlyPaths")
    for key, where in ((linux.masked_paths, "maskedPaths"), (linux.readonly_paths, "readonlyPaths")):
        for i, p in enumerate(key):
            if not p.startswith("/"):
                _fail(f"linux.{where}[{i}]", f"{p!r} is not an absolute path")
    sysctl = _obj(lx, "sysctl", "linux.sysctl")
    for key, value in sysctl.items():
        if not isinstance(value, str):
            _fail(f"linux.sysctl.{key}", "must be a string")
    linux.sysctl = sysctl
    linux.seccomp = lx.get("seccomp")
    linux.personality = lx.get("personality")
    linux.memory_policy = lx.get("memoryPolicy")
    linux.intel_rdt = lx.get("intelRdt")
    linux.mount_label = _str(lx, "mountLabel", "linux.mountLabel")
    return linux


def parse(doc, bundle: str, checked: bool = False) -> Spec:
    """Build a :class:`Spec` from a parsed config.json document of the bundle at ``bundle``.

    ``checked``: the document already passed :func:`pyrunc.validate.validate_config` (in the
    parent, when the setup child parses the same bytes), so the schema is not checked again.
    """
    if not isinstance(doc, dict):
        raise ConfigError("config.json: the document must be a JSON object")
    if not checked:
        from pyrunc import validate
        validate.validate_config(doc)
    root = _obj(doc, "root", "root")
    root_path = _str(root, "path", "root.path")
    if not root_path:
        _fail("root.path", "required")
    process = None
    if doc.get("process") is not None:
        process = parse_process(_obj(doc, "process", "process"))
    annotations = _obj(doc, "annotations", "annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            _fail(f"annotations.{key}", "must be a string")
    hostname = doc.get("hostname")
    domainname = doc.get("domainname")
    for key, value in (("hostname", hostname), ("domainname", domainname)):
        if value is not None and not isinstance(value, str):
            _fail(key, "must be a string")
    return Spec(oci_version=doc["ociVersion"],
                root_path=os.path.normpath(os.path.join(bundle, root_path)),
                root_readonly=_bool(root, "readonly", "root.readonly"),
                mounts=_mounts(doc, bundle), process=process,
                hostname=hostname, domainname=domainname,
                hooks=parse_hooks(doc), annotations=annotations, linux=_linux(doc), raw=doc)


def parse_config(data: bytes, bundle: str, checked: bool = False) -> Spec:
    """Parse config.json's bytes (see :func:`parse`); ``bundle`` must be absolute."""
    from pyrunc import jsonio
    try:
        doc = jsonio.loads(data)
    except ValueError as err:
        raise ConfigError(f"config.json: {os.path.join(bundle, 'config.json')}: "
                          f"invalid JSON: {err}") from None
    return parse(doc, bundle, checked)
