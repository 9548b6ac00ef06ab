"""The Features structure (features.md, features-linux.md), from `features`.

Providing it is a MAY: a runtime whose `features` command fails gets these
checks skipped with that reason.  When it is provided, it MUST follow the
schema and the runtime MUST accept what it lists.
"""

from __future__ import annotations

import json
import re

from .. import host, probe
from ..registry import MUST, SHOULD, Skipped, check, expect, expect_eq
from ..spec import FEATURES_KEYS
from .common import sleeper
from .hooks import hook_walk


def features(s) -> dict:
    def compute():
        res = s.runtime.features()
        if not res.ok:
            return {"error": res.summary()}
        try:
            return {"doc": json.loads(res.out)}
        except ValueError as exc:
            return {"doc": None, "invalid": f"not JSON ({exc}): {res.out[:200]!r}"}
    got = s.cached("features", compute)
    if "error" in got:
        raise Skipped(f"runtime provides no Features structure (MAY): {got['error']}")
    expect(got["doc"] is not None, got.get("invalid", ""))
    expect(isinstance(got["doc"], dict), f"features printed {got['doc']!r}")
    return got["doc"]


def _semver(v: str) -> tuple:
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$", v or "")
    expect(m is not None, f"{v!r} is not a SemVer version")
    major, minor, patch, pre = m.groups()
    # A pre-release sorts before its release; compare pre-release text naively.
    return (int(major), int(minor), int(patch), pre is None, pre or "")


@check("features.schema", "features.md#features-structure", MUST,
       "the Features structure adheres to schema/features-schema.json")
def schema(s):
    errors = s.spec.validate(features(s), "features-schema.json")
    expect(not errors, "features breaks features-schema.json: " + "; ".join(errors))


@check("features.version-range", "features.md#specification-version", MUST,
       "ociVersionMax MUST NOT be less than ociVersionMin")
def version_range(s):
    doc = features(s)
    expect(_semver(doc.get("ociVersionMax")) >= _semver(doc.get("ociVersionMin")),
           f"ociVersionMax {doc.get('ociVersionMax')} < ociVersionMin {doc.get('ociVersionMin')}")


@check("features.known-properties", "features.md#specification-version", MUST,
       "the Features structure MUST NOT contain properties the spec does not define")
def known_properties(s):
    doc = features(s)
    unknown = sorted(set(doc) - FEATURES_KEYS)
    linux = doc.get("linux") or {}
    unknown += [f"linux.{k}" for k in sorted(set(linux) - s.spec.features_linux_keys)]
    expect(not unknown, f"properties not defined by spec v1.3.0: {unknown}")


def _register_version(which: str) -> None:
    @check(f"features.accepts-{which}", "features.md#specification-version", MUST,
           f"the runtime MUST accept {which} as the ociVersion of config.json")
    def accepts(s):
        version = features(s).get(which)
        b, c = sleeper(s)
        b.config["ociVersion"] = version
        b.set_script("echo ran")
        expect("ran" in c.run(), f"the program did not run with ociVersion {version}")


for _which in ("ociVersionMin", "ociVersionMax"):
    _register_version(_which)


@check("features.hooks-supported", "features.md#hooks", MUST,
       "the runtime MUST support every hook listed in features.hooks (each one is called)")
def hooks_supported(s):
    listed = features(s).get("hooks") or []
    called = {n.split(".")[0] for n in hook_walk(s)["after_delete"]}
    missing = [h for h in listed if h not in called]
    expect(not missing, f"listed but never called: {missing}")


@check("features.namespaces-recognized", "features-linux.md#namespaces", MUST,
       "the runtime MUST recognize every namespace type in linux.namespaces")
def namespaces_recognized(s):
    listed = (features(s).get("linux") or {}).get("namespaces") or []
    usable = [t for t in listed if t in host.NS_FILE and host.kernel_has_ns(t)]
    s.diag(f"listed: {listed}; tried (known to this kernel): {usable}")
    b, c = sleeper(s)
    b.set_namespaces(sorted(set(usable) | {"mount"}))
    if "uts" in usable:
        b.config["hostname"] = "ocisuite"
    if "user" in usable:
        mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        b.linux["uidMappings"] = mapping
        b.linux["gidMappings"] = [dict(m) for m in mapping]
    b.set_script("echo ran")
    expect("ran" in c.run(), "the program did not run")


@check("features.capabilities-recognized", "features-linux.md#capabilities", MUST,
       "the runtime MUST recognize every capability in linux.capabilities (as bounding)")
def capabilities_recognized(s):
    listed = (features(s).get("linux") or {}).get("capabilities") or []
    own = probe.cap_names(probe.parse_status(open("/proc/self/status").read())["CapBnd"])
    b, c = sleeper(s)
    b.process["capabilities"]["bounding"] = list(listed)
    b.set_script("grep CapBnd /proc/$$/status")
    out = c.run()
    m = re.search(r"CapBnd:\s*([0-9a-f]+)", out)
    expect(m is not None, f"no CapBnd in the output: {out!r}")
    expect_eq(sorted(probe.cap_names(m.group(1))), sorted(set(listed) & own),
              "CapBnd (listed capabilities the runtime itself holds)")


@check("features.mount-options-generic", "features.md#mount-options", SHOULD,
       "mountOptions SHOULD NOT contain filesystem-specific options (data such as size=)")
def mount_options_generic(s):
    listed = features(s).get("mountOptions") or []
    specific = [o for o in listed if "=" in o]
    expect(not specific, f"filesystem-specific options listed: {specific}")

