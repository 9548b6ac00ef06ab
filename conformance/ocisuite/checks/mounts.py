"""Mounts (config.md#mounts, #linux-mount-options), read from the container's
mountinfo.

Mount options are tested in groups: one container carries one tmpfs (or bind)
mount per option, at /m/<case>.  If a group container cannot be created, each
case of the group gets its own container, so a refused option fails only its
own check.  The "no"-less options are given after their opposite (["nosuid",
"suid"]) and must clear it, as they do in mount(8).  (strictatime and relatime
are not such a pair: mount(8) passes both flags and the kernel keeps strictatime.)

Bind sources live on the host: a plain directory with a file, a directory with
a tmpfs submount (for bind vs rbind and the recursive options), and a tmpfs
made shared on the host.  Propagation options are tested against the source
whose default would hide them: shared and unbindable on private sources (the
suite's directories), slave and private on the shared tmpfs, with the
container's rootfsPropagation fixed to slave so that the copy of a shared host
mount is a slave whatever the runtime's default.  The r* variants are examined
on the submount.  The host mounts are unmounted when the check ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import probe
from ..registry import MUST, SHOULD, Failed, check, expect, expect_eq
from .common import expect_create_error, field_refused


@dataclass(frozen=True)
class Case:
    name: str
    options: tuple[str, ...]
    want: tuple[tuple[str, str, bool], ...] = ()  # (where: opt|super|tag, flag, present?)
    source: str = "tmpfs"   # tmpfs | plain | nested | nested-restricted | shared
    check_path: str = ""    # sub-path whose mount is examined ("sub" for submounts)


def _opt(flag, present=True):
    return ("opt", flag, present)


def _super(flag, present=True):
    return ("super", flag, present)


def _tag(prefix, present=True):
    return ("tag", prefix, present)


FLAG_CASES = [
    Case("ro", ("ro",), (_opt("ro"),)),
    Case("rw", ("ro", "rw"), (_opt("rw"),)),
    Case("nosuid", ("nosuid",), (_opt("nosuid"),)),
    Case("suid", ("nosuid", "suid"), (_opt("nosuid", False),)),
    Case("nodev", ("nodev",), (_opt("nodev"),)),
    Case("dev", ("nodev", "dev"), (_opt("nodev", False),)),
    Case("noexec", ("noexec",), (_opt("noexec"),)),
    Case("exec", ("noexec", "exec"), (_opt("noexec", False),)),
    Case("noatime", ("noatime",), (_opt("noatime"),)),
    Case("atime", ("noatime", "atime"), (_opt("noatime", False),)),
    Case("strictatime", ("strictatime",), (_opt("relatime", False), _opt("noatime", False))),
    Case("nostrictatime", ("strictatime", "nostrictatime"), (_opt("relatime"),)),
    Case("relatime", ("relatime",), (_opt("relatime"),)),
    Case("norelatime", ("relatime", "norelatime")),
    Case("nodiratime", ("nodiratime",), (_opt("nodiratime"),)),
    Case("diratime", ("nodiratime", "diratime"), (_opt("nodiratime", False),)),
    Case("sync", ("sync",), (_super("sync"),)),
    Case("async", ("sync", "async"), (_super("sync", False),)),
    Case("dirsync", ("dirsync",), (_super("dirsync"),)),
    Case("lazytime", ("lazytime",), (_super("lazytime"),)),
    Case("nolazytime", ("lazytime", "nolazytime"), (_super("lazytime", False),)),
    Case("iversion", ("iversion",)),
    Case("noiversion", ("noiversion",)),
    Case("loud", ("loud",)),
    Case("silent", ("silent",)),
    Case("defaults", ("defaults",), (_opt("rw"),)),
]

SHOULD_FLAG_CASES = [
    Case("nosymfollow", ("nosymfollow",), (_opt("nosymfollow"),)),
    Case("symfollow", ("nosymfollow", "symfollow"), (_opt("nosymfollow", False),)),
    Case("fs-data", ("size=1m", "mode=700", "nr_inodes=100"),
         (_super("size=1024k"), _super("mode=700"), _super("nr_inodes=100"))),
]

BIND_CASES = [
    Case("bind", ("bind",), source="plain"),
    Case("bind-ro", ("bind", "ro"), (_opt("ro"),), source="plain"),
    Case("bind-nosuid-nodev-noexec", ("bind", "nosuid", "nodev", "noexec"),
         (_opt("nosuid"), _opt("nodev"), _opt("noexec")), source="plain"),
    Case("bind-nonrecursive", ("bind",), source="nested"),
    Case("rbind", ("rbind",), source="nested", check_path="sub"),
    Case("shared", ("bind", "shared"), (_tag("shared:"),), source="plain"),
    Case("rshared", ("rbind", "rshared"), (_tag("shared:"),), "nested", "sub"),
    Case("slave", ("bind", "slave"), (_tag("master:"), _tag("shared:", False)), source="shared"),
    Case("rslave", ("rbind", "rslave"), (_tag("master:"), _tag("shared:", False)), source="shared"),
    Case("private", ("bind", "private"), (_tag("master:", False), _tag("shared:", False)),
         source="shared"),
    Case("rprivate", ("rbind", "rprivate"), (_tag("master:", False), _tag("shared:", False)),
         source="shared"),
    Case("unbindable", ("bind", "unbindable"), (_tag("unbindable"),), source="plain"),
    Case("runbindable", ("rbind", "runbindable"), (_tag("unbindable"),), "nested", "sub"),
]

RECURSIVE_CASES = [
    Case("rro", ("rbind", "rro"), (_opt("ro"),), "nested", "sub"),
    Case("rnosuid", ("rbind", "rnosuid"), (_opt("nosuid"),), "nested", "sub"),
    Case("rnodev", ("rbind", "rnodev"), (_opt("nodev"),), "nested", "sub"),
    Case("rnoexec", ("rbind", "rnoexec"), (_opt("noexec"),), "nested", "sub"),
    Case("rnoatime", ("rbind", "rnoatime"), (_opt("noatime"),), "nested", "sub"),
    Case("rnodiratime", ("rbind", "rnodiratime"), (_opt("nodiratime"),), "nested", "sub"),
    Case("rnosymfollow", ("rbind", "rnosymfollow"), (_opt("nosymfollow"),), "nested", "sub"),
    Case("rstrictatime", ("rbind", "rstrictatime"), (_opt("relatime", False),), "nested", "sub"),
    Case("rsuid", ("rbind", "rsuid"), (_opt("nosuid", False),), "nested-restricted", "sub"),
    Case("rdev", ("rbind", "rdev"), (_opt("nodev", False),), "nested-restricted", "sub"),
    Case("rexec", ("rbind", "rexec"), (_opt("noexec", False),), "nested-restricted", "sub"),
]

GROUPS = {"flags": FLAG_CASES, "flags-should": SHOULD_FLAG_CASES, "bind": BIND_CASES,
          "recursive": RECURSIVE_CASES}


# -- building and running a group -----------------------------------------------------

def _sources(s, bundle, kinds: set[str]) -> dict[str, str]:
    """Create the host-side bind sources a group needs; kind -> path."""
    paths = {}
    if "plain" in kinds:
        plain = bundle.path / "src-plain"
        plain.mkdir()
        (plain / "hello").write_text("hello\n")
        paths["plain"] = str(plain)
    for kind, opts in (("nested", "rw"), ("nested-restricted", "nosuid,nodev,noexec")):
        if kind in kinds:
            top = bundle.path / f"src-{kind}"
            (top / "sub").mkdir(parents=True)
            s.mount("-t", "tmpfs", "-o", f"size=1m,{opts}", "ocisuite", target=str(top / "sub"))
            (top / "sub" / "inner").write_text("inner\n")
            paths[kind] = str(top)
    if "shared" in kinds:
        shared = bundle.path / "src-shared"
        shared.mkdir()
        s.mount("-t", "tmpfs", "-o", "size=1m", "ocisuite", target=str(shared))
        s.mount("--make-shared", target=str(shared))
        paths["shared"] = str(shared)
    return paths


def _run_cases(s, cases: list[Case]) -> dict[str, list[probe.Mount]]:
    b = s.bundle()
    sources = _sources(s, b, {c.source for c in cases if c.source != "tmpfs"})
    if any(c.source == "shared" for c in cases):
        # The copy of a shared host mount is only a slave in the container when the
        # container's root propagation is slave; fix it so "slave" is observable.
        b.linux["rootfsPropagation"] = "slave"
    for c in cases:
        (b.rootfs / "m" / c.name).mkdir(parents=True)
        if c.source == "tmpfs":
            b.add_mount(f"/m/{c.name}", "tmpfs", "tmpfs", list(c.options))
        else:
            b.add_mount(f"/m/{c.name}", "none", sources[c.source], list(c.options))
    p = probe.run(s, b, {"mountinfo": "cat /proc/$$/mountinfo",
                         "files": "cat /m/bind/hello /m/rbind/sub/inner 2>/dev/null; true"})
    mounts = probe.parse_mountinfo(p.out("mountinfo"))
    s.diag(f"files read through bind mounts: {p.out('files').split()}")
    return {"mounts": mounts, "files": p.out("files").split()}


def group_result(s, group: str, case: Case) -> dict:
    """The group's container, or when it fails, one container for this case alone."""
    try:
        return s.cached(f"mounts-{group}", lambda: _run_cases(s, GROUPS[group]))
    except Failed as exc:
        s.diag(f"the {group} group container failed ({exc}); trying {case.name} alone")
    try:
        return s.cached(f"mount-{group}-{case.name}", lambda: _run_cases(s, [case]))
    except Failed as exc:
        field_refused(s, exc)


def examine(s, group: str, case: Case) -> probe.Mount:
    mounts = group_result(s, group, case)["mounts"]
    point = f"/m/{case.name}" + (f"/{case.check_path}" if case.check_path else "")
    m = probe.mount_at(mounts, point)
    for where, flag, present in case.want:
        have = {"opt": lambda: flag in m.options, "super": lambda: flag in m.super_options,
                "tag": lambda: m.tagged(flag)}[where]()
        shown = {"opt": sorted(m.options), "super": sorted(m.super_options),
                 "tag": m.optional}[where]
        expect(have == present, f"{point}: {flag!r} {'missing from' if present else 'in'} "
               f"the {'propagation tags' if where == 'tag' else where + ' options'} {shown}")
    return m


def _register(group: str, level: str, case: Case) -> None:
    opts = ",".join(case.options)
    what = "on the submount of an rbind" if case.check_path else ""
    text = f"mount option {case.name} ({opts}) takes effect{' ' + what if what else ''}"
    if case.name.startswith("fs-data"):
        text = ("unknown options are passed to mount(2) as filesystem data "
                "(size=, mode=, nr_inodes=)")
    if level == MUST and group == "flags":
        text = f"runtimes MUST implement mount option {case.name} ({opts})"
    check(f"mounts.{case.name}", "config.md#linux-mount-options", level, text)(
        lambda s, g=group, c=case: examine(s, g, c))


for _case in FLAG_CASES:
    _register("flags", MUST, _case)
for _case in SHOULD_FLAG_CASES:
    _register("flags-should", SHOULD, _case)
for _case in BIND_CASES[5:]:  # the propagation options
    _register("bind", MUST, _case)
for _case in RECURSIVE_CASES:
    _register("recursive", SHOULD, _case)


# -- bind mounts: content, recursion, files ----------------------------------------------

@check("mounts.bind", "config.md#mounts", MUST,
       "a bind mount shows the source directory's content")
def bind(s):
    examine(s, "bind", BIND_CASES[0])
    expect("hello" in group_result(s, "bind", BIND_CASES[0])["files"],
           "/m/bind/hello (from the source directory) is not readable")


@check("mounts.bind-ro", "config.md#linux-mount-options", MUST,
       "bind with ro: the bind mount is read-only")
def bind_ro(s):
    examine(s, "bind", BIND_CASES[1])


@check("mounts.bind-flags", "config.md#linux-mount-options", MUST,
       "bind with nosuid,nodev,noexec: the bind mount has those flags")
def bind_flags(s):
    examine(s, "bind", BIND_CASES[2])


@check("mounts.bind-nonrecursive", "config.md#linux-mount-options", MUST,
       "bind (not rbind) does not bring the source's submounts")
def bind_nonrecursive(s):
    mounts = group_result(s, "bind", BIND_CASES[3])["mounts"]
    probe.mount_at(mounts, "/m/bind-nonrecursive")
    subs = [m for m in mounts if m.point == "/m/bind-nonrecursive/sub"]
    expect(not subs, "the source's submount appeared under a non-recursive bind")


@check("mounts.rbind-content", "config.md#linux-mount-options", MUST,
       "rbind brings the source's submounts with their content")
def rbind_content(s):
    examine(s, "bind", BIND_CASES[4])
    expect("inner" in group_result(s, "bind", BIND_CASES[4])["files"],
           "/m/rbind/sub/inner (in the source's submount) is not readable")


@check("mounts.bind-relative-source", "config.md#mounts", MUST,
       "a bind source relative to the bundle is resolved against the bundle")
def bind_relative_source(s):
    b = s.bundle()
    (b.path / "relsrc").mkdir()
    (b.path / "relsrc" / "hello").write_text("relative\n")
    (b.rootfs / "m" / "rel").mkdir(parents=True)
    b.add_mount("/m/rel", "none", "relsrc", ["bind"])
    try:
        p = probe.run(s, b, {"cat": "cat /m/rel/hello"})
    except Failed as exc:
        field_refused(s, exc)
    expect_eq(p.out("cat").strip(), "relative", "content of /m/rel/hello")


@check("mounts.bind-file", "config.md#mounts", MUST,
       "a bind mount source can be a file")
def bind_file(s):
    b = s.bundle()
    (b.path / "file-src").write_text("a file\n")
    (b.rootfs / "etc" / "bound").write_text("")
    b.add_mount("/etc/bound", "none", str(b.path / "file-src"), ["bind"])
    p = probe.run(s, b, {"cat": "cat /etc/bound"})
    expect_eq(p.out("cat").strip(), "a file", "content of /etc/bound")


# -- order, relative destinations, idmap ---------------------------------------------------

@check("mounts.order", "config.md#mounts", MUST,
       "the runtime MUST mount entries in the listed order")
def order(s):
    b = s.bundle()
    (b.rootfs / "order").mkdir()
    b.add_mount("/order", "tmpfs", "tmpfs", ["size=1m"])
    b.add_mount("/order", "tmpfs", "tmpfs", ["size=2m"])
    p = probe.run(s, b, {"mountinfo": "cat /proc/$$/mountinfo"})
    stack = [m for m in probe.parse_mountinfo(p.out("mountinfo")) if m.point == "/order"]
    expect_eq(len(stack), 2, "mounts at /order")
    first, second = stack
    expect("size=1024k" in first.super_options and "size=2048k" in second.super_options,
           f"/order: lower mount {sorted(first.super_options)}, upper "
           f"{sorted(second.super_options)} (the second entry must be on top)")
    expect_eq(second.parent_id, first.mount_id, "parent of the upper /order mount")


@check("mounts.relative-destination", "config.md#mounts", MUST,
       "a relative destination MUST be interpreted as relative to /")
def relative_destination(s):
    b = s.bundle()
    (b.rootfs / "relmnt").mkdir()
    b.add_mount("relmnt", "tmpfs", "tmpfs", ["size=1m"])
    try:
        p = probe.run(s, b, {"mountinfo": "cat /proc/$$/mountinfo"})
    except Failed as exc:
        field_refused(s, exc)
    m = probe.mount_at(probe.parse_mountinfo(p.out("mountinfo")), "/relmnt")
    expect_eq(m.fstype, "tmpfs", "filesystem at /relmnt")


@check("mounts.idmap-without-mapping", "config.md#linux-mount-options", SHOULD,
       "idmap without mappings and without a user namespace: an error MUST be returned")
def idmap_without_mapping(s):
    b = s.bundle()
    src = b.path / "idmap-src"
    src.mkdir()
    (b.rootfs / "m" / "idmap").mkdir(parents=True)
    b.add_mount("/m/idmap", "none", str(src), ["bind", "idmap"])
    expect_create_error(s, b, "bind with idmap, no mappings, no user namespace")


@check("mounts.default-filesystems", "config-linux.md#default-filesystems", SHOULD,
       "/proc (proc), /sys (sysfs), /dev/pts (devpts) and /dev/shm (tmpfs) are available")
def default_filesystems(s):
    def compute():
        return probe.run(s, s.bundle(), {"mountinfo": "cat /proc/$$/mountinfo"})
    mounts = probe.parse_mountinfo(s.cached("base-mountinfo", compute).out("mountinfo"))
    for point, fstype in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"),
                          ("/dev/shm", "tmpfs")):
        expect_eq(probe.mount_at(mounts, point).fstype, fstype, f"filesystem at {point}")

