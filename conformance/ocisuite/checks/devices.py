"""Devices (config-linux.md#devices, #default-devices) and the /dev symlinks
(runtime-linux.md#dev-symbolic-links), stat'ed from inside the container.

busybox `stat -c '%F %t:%T %a %u:%g'` prints the type, major:minor in hex, the
octal mode and the owner.
"""

from __future__ import annotations

from .. import probe
from ..registry import MUST, Failed, check, expect, expect_eq
from .common import expect_create_error, field_refused

DEFAULT_DEVICES = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8",
                   "urandom": "1:9", "tty": "5:0"}
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2"}

CONFIG_DEVICES = [
    {"path": "/dev/ocisuite-null", "type": "c", "major": 1, "minor": 3,
     "fileMode": 0o640, "uid": 1000, "gid": 1001},
    {"path": "/opt/ocisuite-zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/ocisuite-fifo", "type": "p"},
]


def _hex_pair(pair: str) -> str:
    major, minor = pair.split(":")
    return f"{int(major):x}:{int(minor):x}"


def devices_probe(s) -> probe.Probe:
    def compute():
        b = s.bundle()
        b.linux["devices"] = [dict(d) for d in CONFIG_DEVICES]
        commands = {f"dev-{n}": f"stat -c '%F %t:%T' /dev/{n}" for n in DEFAULT_DEVICES}
        commands["ptmx"] = "stat -L -c '%d:%i' /dev/ptmx /dev/pts/ptmx"
        commands.update({f"link-{n}": f"readlink /dev/{n}" for n in LINKS})
        for d in CONFIG_DEVICES:
            commands[d["path"]] = f"stat -c '%F %t:%T %a %u:%g' {d['path']}"
        commands["null-works"] = "echo x > /dev/null && head -c 3 /dev/zero | wc -c"
        try:
            return probe.run(s, b, commands)
        except Failed as exc:
            field_refused(s, exc)
    return s.cached("devices", compute)


def _register_default(name: str, pair: str) -> None:
    @check(f"devices.default-{name}", "config-linux.md#default-devices", MUST,
           f"the runtime MUST supply /dev/{name} (character device {pair})")
    def default_device(s):
        got = devices_probe(s).out(f"dev-{name}").strip()
        expect_eq(got, f"character special file {_hex_pair(pair)}", f"/dev/{name}")


for _name, _pair in DEFAULT_DEVICES.items():
    _register_default(_name, _pair)


@check("devices.default-ptmx", "config-linux.md#default-devices", MUST,
       "the runtime MUST supply /dev/ptmx as a bind mount or symlink of /dev/pts/ptmx")
def default_ptmx(s):
    ids = devices_probe(s).out("ptmx").split()
    expect(len(ids) == 2 and ids[0] == ids[1],
           f"/dev/ptmx and /dev/pts/ptmx are different files (dev:inode {ids})")


@check("devices.default-usable", "config-linux.md#default-devices", MUST,
       "the default devices work: /dev/null takes writes, /dev/zero gives zeros")
def default_usable(s):
    expect_eq(devices_probe(s).out("null-works").strip(), "3", "bytes read from /dev/zero")


def _register_link(name: str, target: str) -> None:
    @check(f"devices.link-{name}", "runtime-linux.md#dev-symbolic-links", MUST,
           f"runtimes MUST create the symlink /dev/{name} -> {target}")
    def link(s):
        expect_eq(devices_probe(s).out(f"link-{name}").strip(), target, f"readlink /dev/{name}")


for _name, _target in LINKS.items():
    _register_link(_name, _target)


def _device(s, path: str) -> list[str]:
    """[type, major:minor, mode, uid:gid] ('character special file' is one item)."""
    got = devices_probe(s).out(path).strip().rsplit(" ", 3)
    expect(len(got) == 4, f"stat {path}: {' '.join(got)!r}")
    return got


@check("devices.config-node", "config-linux.md#devices", MUST,
       "a configured char device exists with its type, major and minor")
def config_node(s):
    got = _device(s, "/dev/ocisuite-null")
    expect_eq(got[:2], ["character special file", "1:3"], "/dev/ocisuite-null")


@check("devices.config-mode", "config-linux.md#devices", MUST,
       "a configured device has fileMode as its permission bits")
def config_mode(s):
    got = _device(s, "/dev/ocisuite-null")
    expect_eq(got[2], "640", "mode of /dev/ocisuite-null")


@check("devices.config-owner", "config-linux.md#devices", MUST,
       "a configured device is owned by its uid and gid")
def config_owner(s):
    got = _device(s, "/dev/ocisuite-null")
    expect_eq(got[3], "1000:1001", "owner of /dev/ocisuite-null")


@check("devices.config-outside-dev", "config-linux.md#devices", MUST,
       "a device path MAY be outside /dev: /opt/ocisuite-zero is created there")
def config_outside_dev(s):
    expect_eq(_device(s, "/opt/ocisuite-zero")[:2], ["character special file", "1:5"],
              "/opt/ocisuite-zero")


@check("devices.config-fifo", "config-linux.md#devices", MUST,
       "a device of type p is a FIFO")
def config_fifo(s):
    got = _device(s, "/dev/ocisuite-fifo")[0]
    expect(got == "fifo", f"/dev/ocisuite-fifo is a {got!r}")


@check("devices.existing-mismatch", "config-linux.md#devices", MUST,
       "a file at the device path that does not match the device MUST generate an error")
def existing_mismatch(s):
    b = s.bundle()
    (b.rootfs / "opt" / "ocisuite-file").write_text("a regular file\n")
    b.linux["devices"] = [{"path": "/opt/ocisuite-file", "type": "c", "major": 1, "minor": 3}]
    expect_create_error(s, b, "a char device over an existing regular file")
    expect_eq((b.rootfs / "opt" / "ocisuite-file").read_text(), "a regular file\n",
              "content of the existing file")
