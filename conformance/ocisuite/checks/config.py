"""config.json as a whole (config.md): root, hostname, domainname, annotations,
extensibility, and the values a runtime MUST refuse ("Runtimes MUST generate an
error when invalid or unsupported values are encountered"; runtime.md#create: a
refused create creates no container)."""

from __future__ import annotations

import json

from .. import probe
from ..registry import MUST, Failed, Skipped, check, expect, expect_eq
from .common import (expect_create_error, expect_error, expect_no_container, expect_nothing_left,
                     field_refused, sleeper)


# -- root ---------------------------------------------------------------------------

@check("config.root-readonly", "config.md#root", MUST,
       "root.readonly true: the root filesystem MUST be read-only inside the container")
def root_readonly(s):
    b = s.bundle()
    b.config["root"]["readonly"] = True
    p = probe.run(s, b, {"touch": "touch /ro-probe && echo writable",
                         "mountinfo": "cat /proc/$$/mountinfo"})
    expect("writable" not in p.out("touch"), "a file could be created in /")
    root = probe.mount_at(probe.parse_mountinfo(p.out("mountinfo")), "/")
    expect("ro" in root.options, f"/ is mounted {sorted(root.options)}")


@check("config.root-absolute", "config.md#root", MUST,
       "root.path may be an absolute path")
def root_absolute(s):
    b, c = sleeper(s)
    b.config["root"]["path"] = str(b.rootfs)
    b.set_script("echo ran")
    expect("ran" in c.run(), "the program did not run")


@check("config.root-missing", "config.md#root", MUST,
       "a directory MUST exist at root.path: create of a missing one MUST generate an error")
def root_missing(s):
    b = s.bundle()
    b.config["root"]["path"] = "no-such-rootfs"
    expect_create_error(s, b, "create with a missing root.path")


# -- hostname, domainname, annotations, extensibility -------------------------------------

def uts_probe(s) -> probe.Probe:
    def compute():
        b = s.bundle()
        b.config["hostname"] = "ocisuite-host"
        b.config["domainname"] = "ocisuite.test"
        try:
            return probe.run(s, b, {"hostname": "hostname",
                                    "domainname": "cat /proc/sys/kernel/domainname"})
        except Failed as exc:
            field_refused(s, exc)
    return s.cached("uts", compute)


@check("config.hostname", "config.md#hostname", MUST,
       "the container's hostname is the configured hostname")
def hostname(s):
    expect_eq(uts_probe(s).out("hostname").strip(), "ocisuite-host", "hostname")


@check("config.domainname", "config.md#domainname", MUST,
       "the container's domainname is the configured domainname")
def domainname(s):
    expect_eq(uts_probe(s).out("domainname").strip(), "ocisuite.test", "domainname")


@check("config.unknown-properties", "config.md#extensibility", MUST,
       "runtimes MUST ignore unknown properties (no error)")
def unknown_properties(s):
    b, c = sleeper(s)
    b.config["org.example.ocisuite"] = {"unknown": True}
    b.process["org.example.ocisuite"] = [1, 2]
    b.linux["org.example.ocisuite"] = "x"
    b.config["mounts"][0]["org.example.ocisuite"] = None
    b.set_script("echo ran")
    expect("ran" in c.run(), "the program did not run")


# -- values a runtime MUST refuse -------------------------------------------------------

@check("config.invalid-json", "config.md#valid-values", MUST,
       "a config.json that is not JSON MUST generate an error")
def invalid_json(s):
    b = s.bundle()
    b.write_raw('{"ociVersion": "1.0.2", "process": ')
    expect_create_error(s, b, "create with truncated JSON", write=False)


@check("config.oci-version-invalid", "config.md#specification-version", MUST,
       "ociVersion MUST be SemVer: any other value MUST generate an error")
def oci_version_invalid(s):
    b = s.bundle()
    b.config["ociVersion"] = "not-a-version"
    expect_create_error(s, b, "create with ociVersion 'not-a-version'")


@check("config.cwd-relative", "config.md#process", MUST,
       "process.cwd MUST be absolute: a relative one MUST generate an error")
def cwd_relative(s):
    b, c = sleeper(s)
    b.process["cwd"] = "tmp"
    res = c.create()
    if res.ok:  # process properties may be applied by start instead
        s.diag(f"create accepted cwd 'tmp'; state {c.state()}")
        expect_error(c.start(), "start with a relative cwd")


@check("config.rlimit-duplicate", "config.md#posix-process", MUST,
       "rlimits with a duplicated type MUST generate an error")
def rlimit_duplicate(s):
    b, c = sleeper(s)
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                            {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]
    _create_or_start_error(s, c, "duplicated RLIMIT_NOFILE")


@check("config.rlimit-unknown", "config.md#posix-process", MUST,
       "an rlimit type that maps to no kernel interface MUST generate an error")
def rlimit_unknown(s):
    b, c = sleeper(s)
    b.process["rlimits"] = [{"type": "RLIMIT_OCISUITE", "soft": 1, "hard": 1}]
    _create_or_start_error(s, c, "rlimit RLIMIT_OCISUITE")


@check("config.rlimit-unappliable", "runtime.md#create", MUST,
       "an rlimit the runtime cannot apply (hard above its own ceiling) MUST generate an error")
def rlimit_unappliable(s):
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    can_raise = "CAP_SYS_RESOURCE" in probe.cap_names(
        probe.parse_status(open("/proc/self/status").read())["CapEff"])
    if can_raise or hard == resource.RLIM_INFINITY:
        raise Skipped("host: the suite may raise its nofile limit, nothing is unappliable")
    b, c = sleeper(s)
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    _create_or_start_error(s, c, f"RLIMIT_NOFILE hard {hard + 1} > the runtime's {hard}")


@check("config.annotation-empty-key", "config.md#annotations", MUST,
       "annotation keys MUST NOT be empty: an empty key MUST generate an error")
def annotation_empty_key(s):
    b = s.bundle()
    b.config["annotations"] = {"": "value"}
    expect_create_error(s, b, "create with an empty annotation key")


def _create_or_start_error(s, c, what: str) -> None:
    """Process properties may be applied at create or at start: one of them MUST fail,
    and the program MUST NOT run."""
    res = c.create()
    if not res.ok:
        expect_no_container(s, c.id, what)
        expect_nothing_left(s, c.bundle, what)
        return
    s.diag(f"create accepted {what}")
    expect_error(c.start(), f"start with {what}")
    expect(not (c.bundle.rootfs / "started").exists(), f"the program ran with {what}")


# -- the JSON itself (glossary.md#json) ------------------------------------------------------

@check("config.json-duplicate-names", "glossary.md#json", MUST,
       "JSON objects MUST NOT include duplicate names: such a config MUST generate an error")
def json_duplicate_names(s):
    b = s.bundle()
    text = json.dumps(b.config, indent=1)
    # "hostname" twice in the top-level object.
    text = text.replace('"hostname": "ocisuite"', '"hostname": "ocisuite", "hostname": "twice"', 1)
    expect('"twice"' in text, "could not build the duplicate-name config")
    b.write_raw(text)
    expect_create_error(s, b, "create with a duplicated object name", write=False)


@check("config.json-utf8", "glossary.md#json", MUST,
       "configuration JSON MUST be UTF-8: a config with invalid UTF-8 MUST generate an error")
def json_utf8(s):
    b = s.bundle()
    b.config["annotations"] = {"org.example.ocisuite": "MARK"}
    raw = json.dumps(b.config).encode().replace(b"MARK", b"\xff\xfe")
    (b.path / "config.json").write_bytes(raw)
    expect_create_error(s, b, "create with invalid UTF-8 in config.json", write=False)
