"""The rest of the linux object (config-linux.md): sysctl, maskedPaths,
readonlyPaths, rootfsPropagation, personality.

runtime.md#create is the general rule behind these field checks: "All of the
properties configured in config.json except for process MUST be applied ... If
the runtime cannot apply a property as specified ... it MUST generate an error".
"""

from __future__ import annotations

import platform
import time

from .. import probe
from ..registry import MUST, Failed, Skipped, check, expect, expect_eq
from .common import expect_create_error, field_refused

SYSCTLS = {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "257", "kernel.msgmax": "12345"}


def _run(s, bundle, commands, key, may_refuse=False):
    def compute():
        try:
            return probe.run(s, bundle, commands)
        except Failed as exc:
            field_refused(s, exc, may_refuse)
    return s.cached(key, compute)


# -- sysctl ---------------------------------------------------------------------------

@check("linux.sysctl", "config-linux.md#sysctl", MUST,
       "the sysctl values are set in the container (net.*, kernel.msgmax)")
def sysctl(s):
    b = s.bundle()
    b.linux["sysctl"] = dict(SYSCTLS)
    commands = {k: f"cat /proc/sys/{k.replace('.', '/')}" for k in SYSCTLS}
    p = _run(s, b, commands, "sysctl", may_refuse=True)
    for key, value in SYSCTLS.items():
        expect_eq(p.out(key).strip(), value, key)


@check("linux.sysctl-unknown", "runtime.md#create", MUST,
       "a sysctl that does not exist cannot be applied: create MUST generate an error")
def sysctl_unknown(s):
    b = s.bundle()
    b.linux["sysctl"] = {"net.ipv4.ocisuite_no_such_key": "1"}
    expect_create_error(s, b, "create with an unknown sysctl")


# -- masked and read-only paths -------------------------------------------------------------

def paths_probe(s) -> probe.Probe:
    b = s.bundle()
    (b.rootfs / "secret-file").write_text("secret\n")
    (b.rootfs / "secret-dir").mkdir()
    (b.rootfs / "secret-dir" / "inner").write_text("secret\n")
    (b.rootfs / "ro-dir").mkdir()
    b.linux["maskedPaths"] = ["/secret-file", "/secret-dir", "/proc/kcore"]  # kcore: if any
    b.linux["readonlyPaths"] = ["/ro-dir", "/proc/sys"]
    return _run(s, b, {
        "secret-file": "cat /secret-file",
        "secret-dir": "ls -A /secret-dir",
        "kcore": "test -e /proc/kcore && head -c 16 /proc/kcore | wc -c || echo 0",
        "ro-dir": "touch /ro-dir/x && echo writable",
        "proc-sys": "echo 1 > /proc/sys/net/ipv4/ip_forward && echo writable",
        "mountinfo": "cat /proc/$$/mountinfo",
    }, "paths")


@check("linux.masked-file", "config-linux.md#masked-paths", MUST,
       "maskedPaths: a masked file cannot be read")
def masked_file(s):
    p = paths_probe(s)
    expect("secret" not in p.out("secret-file"), "/secret-file is readable")
    expect_eq(p.out("kcore").strip().splitlines()[-1:], ["0"], "bytes readable from /proc/kcore")


@check("linux.masked-dir", "config-linux.md#masked-paths", MUST,
       "maskedPaths: a masked directory shows none of its content")
def masked_dir(s):
    expect_eq(paths_probe(s).out("secret-dir").split(), [], "entries of /secret-dir")


@check("linux.readonly-paths", "config-linux.md#readonly-paths", MUST,
       "readonlyPaths: the paths are read-only in the container")
def readonly_paths(s):
    p = paths_probe(s)
    expect("writable" not in p.out("ro-dir"), "a file was created in /ro-dir")
    expect("writable" not in p.out("proc-sys"), "/proc/sys/net/ipv4/ip_forward was written")
    mounts = probe.parse_mountinfo(p.out("mountinfo"))
    for point in ("/ro-dir", "/proc/sys"):
        m = probe.mount_at(mounts, point)
        expect("ro" in m.options, f"{point} is mounted {sorted(m.options)}")


# -- rootfs propagation --------------------------------------------------------------------

def _root_tags(s, value: str) -> list[str]:
    b = s.bundle()
    b.linux["rootfsPropagation"] = value
    p = _run(s, b, {"mountinfo": "cat /proc/$$/mountinfo"}, f"propagation-{value}",
             may_refuse=True)
    return probe.mount_at(probe.parse_mountinfo(p.out("mountinfo")), "/").optional


@check("linux.rootfs-shared", "config-linux.md#rootfs-mount-propagation", MUST,
       "rootfsPropagation shared: the rootfs mount belongs to a peer group")
def rootfs_shared(s):
    tags = _root_tags(s, "shared")
    expect(any(t.startswith("shared:") for t in tags), f"/ has propagation tags {tags}")


@check("linux.rootfs-unbindable", "config-linux.md#rootfs-mount-propagation", MUST,
       "rootfsPropagation unbindable: the rootfs mount is unbindable")
def rootfs_unbindable(s):
    tags = _root_tags(s, "unbindable")
    expect("unbindable" in tags, f"/ has propagation tags {tags}")


def _host_mount_seen(s, value: str) -> bool:
    """Start a container on a shared host mount, mount a tmpfs below its rootfs on
    the host, and report whether the container sees it."""
    b = s.bundle()
    s.mount("--bind", str(b.path), target=str(b.path))
    s.mount("--make-shared", target=str(b.path))
    b.linux["rootfsPropagation"] = value
    b.set_script("echo waiting; while [ ! -e /go ]; do sleep 0.05; done; "
                 "grep -c ' /mnt ' /proc/$$/mountinfo; echo @@done")
    c = s.container(b)
    try:
        c.must_create()
    except Failed as exc:
        field_refused(s, exc, may_refuse=True)
    c.must_start()
    deadline = time.monotonic() + 5
    while "waiting" not in c.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    s.mount("-t", "tmpfs", "-o", "size=1m", "ocisuite", target=str(b.rootfs / "mnt"))
    (b.rootfs / "go").write_text("")
    c.wait_status("stopped")
    out = c.output()
    expect("@@done" in out, f"probe did not finish: {out!r}")
    return out.split("waiting", 1)[1].split()[0] != "0"


@check("linux.rootfs-slave", "config-linux.md#rootfs-mount-propagation", MUST,
       "rootfsPropagation slave: the rootfs receives mount events from the host")
def rootfs_slave(s):
    expect(_host_mount_seen(s, "slave"), "a tmpfs mounted on the host under the rootfs "
           "did not appear in the container")


@check("linux.rootfs-private", "config-linux.md#rootfs-mount-propagation", MUST,
       "rootfsPropagation private: the rootfs receives no mount events from the host")
def rootfs_private(s):
    expect(not _host_mount_seen(s, "private"), "a tmpfs mounted on the host under the "
           "rootfs appeared in the container")


# -- personality ---------------------------------------------------------------------------

@check("linux.personality", "config-linux.md#personality", MUST,
       "personality LINUX32: uname reports a 32-bit machine")
def personality(s):
    if platform.machine() not in ("x86_64", "aarch64"):
        raise Skipped(f"host: no 32-bit personality check for {platform.machine()}")
    b = s.bundle()
    b.linux["personality"] = {"domain": "LINUX32"}
    got = _run(s, b, {"machine": "uname -m"}, "personality", may_refuse=True).out("machine").strip()
    expect(got in ("i686", "i386", "armv7l", "armv8l"), f"uname -m is {got!r}")
