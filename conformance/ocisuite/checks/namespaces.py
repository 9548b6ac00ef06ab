"""Namespaces and user namespace mappings (config-linux.md#namespaces,
#user-namespace-mappings, #offset-for-time-namespace).

A namespace is identified by the link /proc/<pid>/ns/<type> ("net:[4026531840]").
The runtime namespace is the suite's own, since the suite starts the runtime.
Joining by path uses a host process the suite starts in fresh namespaces with
unshare(1) and kills afterwards.
"""

from __future__ import annotations

import os
import re

from .. import host, probe
from ..bundle import BASE_NAMESPACES
from ..registry import MUST, SHOULD, Failed, check, expect, expect_eq
from .common import expect_create_error, field_refused, hold_probe, read_proc

NEW_TYPES = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
MAPPING = {"containerID": 0, "hostID": 100000, "size": 65536}


def _ns_commands(types) -> dict[str, str]:
    cmds = {f"ns-{t}": f"readlink /proc/$$/ns/{host.NS_FILE[t]}" for t in types}
    cmds["pid"] = "echo $$"
    return cmds


def all_new_probe(s) -> probe.Probe:
    def compute():
        b = s.bundle()
        b.set_namespaces(NEW_TYPES)
        return probe.run(s, b, _ns_commands(NEW_TYPES))
    return s.cached("ns-all-new", compute)


def inherit_probe(s) -> probe.Probe:
    def compute():
        b = s.bundle()
        b.set_namespaces(["mount"])
        return probe.run(s, b, _ns_commands(NEW_TYPES))
    return s.cached("ns-inherit", compute)


def _register_new(ns_type: str) -> None:
    @check(f"namespaces.new-{ns_type}", "config-linux.md#namespaces", MUST,
           f"a {ns_type} namespace without path: the runtime MUST create a new one")
    def new_namespace(s):
        host.require_ns(ns_type)
        got = all_new_probe(s).out(f"ns-{ns_type}").strip()
        expect(got != host.ns_link("self", ns_type),
               f"the container's {ns_type} namespace {got} is the runtime's")
        if ns_type == "pid":
            expect_eq(all_new_probe(s).out("pid").strip(), "1", "pid of the container process")


for _t in NEW_TYPES:
    _register_new(_t)


@check("namespaces.inherit", "config-linux.md#namespaces", MUST,
       "a namespace type not listed MUST be inherited from the runtime")
def inherit(s):
    p = inherit_probe(s)
    differ = [t for t in NEW_TYPES if t != "mount" and host.kernel_has_ns(t)
              and p.out(f"ns-{t}").strip() != host.ns_link("self", t)]
    expect(not differ, f"not listed, yet not the runtime's: {differ}")


# -- joining by path ---------------------------------------------------------------------

def path_probe(s) -> dict:
    def compute():
        holder = host.namespace_holder(s, ["network", "uts"], hostname="ocisuite-holder")
        b = s.bundle()
        b.set_namespaces([t for t in BASE_NAMESPACES if t not in ("network", "uts")])
        b.linux["namespaces"] += [{"type": "network", "path": f"/proc/{holder}/ns/net"},
                                  {"type": "uts", "path": f"/proc/{holder}/ns/uts"}]
        want = {t: host.ns_link(holder, t) for t in ("network", "uts")}
        try:
            p = probe.run(s, b, {**_ns_commands(["network", "uts"]), "hostname": "hostname"})
        except Failed as exc:
            field_refused(s, exc)
        return {"probe": p, "want": want}
    return s.cached("ns-path", compute)


@check("namespaces.path-network", "config-linux.md#namespaces", MUST,
       "with a path the runtime MUST place the container in that (network) namespace")
def path_network(s):
    r = path_probe(s)
    expect_eq(r["probe"].out("ns-network").strip(), r["want"]["network"], "network namespace")


@check("namespaces.path-uts", "config-linux.md#namespaces", MUST,
       "with a path the runtime MUST place the container in that (uts) namespace")
def path_uts(s):
    r = path_probe(s)
    expect_eq(r["probe"].out("ns-uts").strip(), r["want"]["uts"], "uts namespace")
    expect_eq(r["probe"].out("hostname").strip(), "ocisuite-holder", "hostname")


@check("namespaces.path-wrong-type", "config-linux.md#namespaces", MUST,
       "a path not associated with a namespace of that type MUST generate an error")
def path_wrong_type(s):
    holder = host.namespace_holder(s, ["uts"])
    b = s.bundle()
    b.set_namespaces([t for t in BASE_NAMESPACES if t != "network"])
    b.linux["namespaces"].append({"type": "network", "path": f"/proc/{holder}/ns/uts"})
    expect_create_error(s, b, "network namespace path pointing at a uts namespace")


@check("namespaces.path-not-namespace", "config-linux.md#namespaces", MUST,
       "a path that is no namespace at all MUST generate an error")
def path_not_namespace(s):
    b = s.bundle()
    fake = b.path / "not-a-namespace"
    fake.write_text("")
    b.set_namespaces([t for t in BASE_NAMESPACES if t != "ipc"])
    b.linux["namespaces"].append({"type": "ipc", "path": str(fake)})
    expect_create_error(s, b, "ipc namespace path pointing at a regular file")


@check("namespaces.duplicate", "config-linux.md#namespaces", MUST,
       "namespaces with a duplicated type MUST generate an error")
def duplicate(s):
    b = s.bundle()
    b.linux["namespaces"].append({"type": "ipc"})
    expect_create_error(s, b, "two ipc namespaces")


# -- user namespace -----------------------------------------------------------------------

def user_probe(s) -> dict:
    def compute():
        host.require_ns("user")
        b = s.bundle()
        b.set_namespaces(BASE_NAMESPACES + ["user"])
        b.config["hostname"] = "ocisuite"
        b.linux["uidMappings"] = [dict(MAPPING)]
        b.linux["gidMappings"] = [dict(MAPPING)]
        commands = {**_ns_commands(["user"]), "uid_map": "cat /proc/$$/uid_map",
                    "gid_map": "cat /proc/$$/gid_map", "id": "id -u; id -g"}
        before = _owners(b)

        def observe(pid, c):
            return probe.parse_status(read_proc(pid, "status"))
        try:
            p, status = hold_probe(s, b, commands, observe)
        except Failed as exc:
            field_refused(s, exc)
        return {"probe": p, "host_status": status, "owners": (before, _owners(b))}
    return s.cached("ns-user", compute)


def _owners(bundle) -> dict[str, tuple[int, int]]:
    paths = [bundle.rootfs, bundle.rootfs / "bin" / "busybox", bundle.rootfs / "etc" / "passwd"]
    return {str(p): (os.lstat(p).st_uid, os.lstat(p).st_gid) for p in paths}


def _map_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@check("namespaces.new-user", "config-linux.md#namespaces", MUST,
       "a user namespace without path: the runtime MUST create a new one")
def new_user(s):
    got = user_probe(s)["probe"].out("ns-user").strip()
    expect(got != host.ns_link("self", "user"),
           f"the container's user namespace {got} is the runtime's")


@check("namespaces.uid-mappings", "config-linux.md#user-namespace-mappings", MUST,
       "uid_map of the container is uidMappings")
def uid_mappings(s):
    want = [[str(MAPPING["containerID"]), str(MAPPING["hostID"]), str(MAPPING["size"])]]
    expect_eq(_map_lines(user_probe(s)["probe"].out("uid_map")), want, "uid_map")


@check("namespaces.gid-mappings", "config-linux.md#user-namespace-mappings", MUST,
       "gid_map of the container is gidMappings")
def gid_mappings(s):
    want = [[str(MAPPING["containerID"]), str(MAPPING["hostID"]), str(MAPPING["size"])]]
    expect_eq(_map_lines(user_probe(s)["probe"].out("gid_map")), want, "gid_map")


@check("namespaces.user-host-ids", "config-linux.md#user-namespace-mappings", MUST,
       "container uid/gid 0 is hostID on the host (seen from the host)")
def user_host_ids(s):
    r = user_probe(s)
    expect_eq(r["probe"].out("id").split(), ["0", "0"], "uid and gid inside")
    status = r["host_status"]
    expect_eq(status.get("Uid", "").split()[:1], [str(MAPPING["hostID"])], "host view of Uid")
    expect_eq(status.get("Gid", "").split()[:1], [str(MAPPING["hostID"])], "host view of Gid")


@check("namespaces.user-no-chown", "config-linux.md#user-namespace-mappings", SHOULD,
       "the runtime SHOULD NOT modify the ownership of the rootfs to realize the mapping")
def user_no_chown(s):
    before, after = user_probe(s)["owners"]
    expect_eq(after, before, "owners of rootfs files (before, after)")


# -- time namespace -----------------------------------------------------------------------

def time_probe(s) -> probe.Probe:
    def compute():
        host.require_ns("time")
        b = s.bundle()
        b.set_namespaces(BASE_NAMESPACES + ["time"])
        b.config["hostname"] = "ocisuite"
        b.linux["timeOffsets"] = {"monotonic": {"secs": 172800, "nanosecs": 0},
                                  "boottime": {"secs": 604800, "nanosecs": 0}}
        return probe.run(s, b, {**_ns_commands(["time"]),
                                 "offsets": "cat /proc/$$/timens_offsets"})
    return s.cached("ns-time", compute)


@check("namespaces.new-time", "config-linux.md#namespaces", SHOULD,
       "the time namespace SHOULD be supported (a new one is created)")
def new_time(s):
    got = time_probe(s).out("ns-time").strip()
    expect(got != host.ns_link("self", "time"),
           f"the container's time namespace {got} is the runtime's")


@check("namespaces.time-offsets", "config-linux.md#offset-for-time-namespace", SHOULD,
       "timeOffsets set the clock offsets of the time namespace")
def time_offsets(s):
    text = time_probe(s).out("offsets")
    offsets = {m.group(1): (m.group(2), m.group(3))
               for m in re.finditer(r"^(\w+)\s+(-?\d+)\s+(\d+)", text, re.M)}
    expect_eq(offsets.get("monotonic"), ("172800", "0"), "monotonic offset")
    expect_eq(offsets.get("boottime"), ("604800", "0"), "boottime offset")
