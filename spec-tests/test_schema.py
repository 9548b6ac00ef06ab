"""The project's own JSON Schemas (pyrunc/schema/) judged by the jsonschema library.

The schemas are written from the spec text; here they must reach the spec's own verdicts on
the spec's fixtures (schema/test/{config,state,features}/{good,bad}/*.json), plus verdicts on
configs written in this file, so that coverage remains where the spec reference is absent.
Pure logic: no containers.
"""

import json
import os
from pathlib import Path

import jsonschema
import pytest

from pyrunc.validate import KEYWORDS   # the keywords the runtime's own interpreter knows

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO / "pyrunc" / "schema"
SPEC_DIR = Path(os.environ.get("PYRUNC_SPEC_DIR")
                or REPO.parent / "shared" / "reference" / "runtime-spec-v1.3.0")
FIXTURES = SPEC_DIR / "schema" / "test"

# Bad fixtures that test another platform's section, which our Linux schema only requires to
# be an object (e.g. freebsd-vnet-disable.json: an invalid freebsd.jail.vnet value).
OTHER_PLATFORMS = ("freebsd-", "solaris-", "windows-", "vm-", "zos-")


def schema(name):
    with open(SCHEMA_DIR / f"{name}-schema.json", encoding="utf-8") as f:
        return json.load(f)


def validator(name):
    return jsonschema.Draft202012Validator(schema(name))


def fixture_params(kind):
    """(path, expected_valid) for every fixture of kind, or one param that skips."""
    if not FIXTURES.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason=f"runtime-spec reference not found at {SPEC_DIR} (set PYRUNC_SPEC_DIR)"))]
    params = []
    for verdict in ("good", "bad"):
        for path in sorted((FIXTURES / kind / verdict).glob("*.json")):
            if verdict == "bad" and path.name.startswith(OTHER_PLATFORMS):
                continue
            params.append(pytest.param(path, verdict == "good", id=f"{kind}/{verdict}/{path.name}"))
    return params


def verdict(name, path):
    """True if the file parses and our schema accepts it."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return validator(name).is_valid(doc)


@pytest.mark.parametrize("name", ["config", "state", "features"])
def test_schema_is_valid_draft_2020_12(name):
    jsonschema.Draft202012Validator.check_schema(schema(name))


@pytest.mark.parametrize("name", ["config", "state", "features"])
def test_schema_uses_only_keywords_the_fast_validator_knows(name):
    unknown = set()

    def walk(node):
        if isinstance(node, dict):
            unknown.update(k for k in node if k not in KEYWORDS)
            for key, sub in node.items():
                if key in ("properties", "$defs", "dependentRequired"):
                    for member in sub.values():
                        walk(member)
                elif key not in ("enum", "const", "required"):
                    walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(schema(name))
    assert not unknown


@pytest.mark.parametrize("path,expected", fixture_params("config"))
def test_config_fixtures(path, expected):
    assert verdict("config", path) is expected


@pytest.mark.parametrize("path,expected", fixture_params("state"))
def test_state_fixtures(path, expected):
    assert verdict("state", path) is expected


@pytest.mark.parametrize("path,expected", fixture_params("features"))
def test_features_fixtures(path, expected):
    assert verdict("features", path) is expected


def test_other_platform_fixtures_are_the_only_ones_left_out():
    if not FIXTURES.is_dir():
        pytest.skip(f"runtime-spec reference not found at {SPEC_DIR} (set PYRUNC_SPEC_DIR)")
    left_out = sorted(p.name for p in (FIXTURES / "config" / "bad").glob("*.json")
                      if p.name.startswith(OTHER_PLATFORMS))
    assert left_out == ["freebsd-vnet-disable.json"]


# -- self-contained verdicts --------------------------------------------------------------

MINIMAL = {"ociVersion": "1.0.0", "root": {"path": "rootfs"}}

GOOD_CONFIGS = {
    "minimal": MINIMAL,
    "unknown fields everywhere": {
        "ociVersion": "1.3.0", "root": {"path": "rootfs", "x-extra": 1}, "x-top": [1, 2],
        "process": {"cwd": "/", "args": ["sh"], "x-proc": {"a": None}},
        "linux": {"x-linux": True, "namespaces": [{"type": "pid", "x-ns": "?"}]},
    },
    "other platform sections as objects": dict(MINIMAL, windows={"layerFolders": []},
                                               solaris={}, vm={"hypervisor": {}}, zos={},
                                               freebsd={"jail": {"vnet": "whatever"}}),
    "pipe device without major/minor": dict(MINIMAL, linux={"devices": [{"type": "p", "path": "/dev/fifo"}]}),
    "pre-release version": dict(MINIMAL, ociVersion="1.1.0-rc.2+build.5"),
    "relative mount destination (deprecated, allowed)": dict(
        MINIMAL, mounts=[{"destination": "data", "source": "/srv", "options": ["bind"]}]),
    "idmapped mount": dict(MINIMAL, mounts=[{
        "destination": "/data", "source": "/srv", "type": "none", "options": ["rbind", "ridmap"],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}]),
    "rdma entry with one limit": dict(MINIMAL, linux={"resources": {"rdma": {"mlx4_0": {"hcaObjects": 1}}}}),
    "hugepage sizes": dict(MINIMAL, linux={"resources": {"hugepageLimits": [
        {"pageSize": "64KB", "limit": 1}, {"pageSize": "2MB", "limit": 0},
        {"pageSize": "1GB", "limit": 18446744073709551615}]}}),
}

BAD_CONFIGS = {
    "not an object": [],
    "no ociVersion": {"root": {"path": "rootfs"}},
    "no root": {"ociVersion": "1.0.0"},
    "root without path": {"ociVersion": "1.0.0", "root": {}},
    "version not semver": dict(MINIMAL, ociVersion="1.0"),
    "process without args": dict(MINIMAL, process={"cwd": "/"}),
    "process with empty args": dict(MINIMAL, process={"cwd": "/", "args": []}),
    "relative cwd": dict(MINIMAL, process={"cwd": "tmp", "args": ["sh"]}),
    "negative uid": dict(MINIMAL, process={"cwd": "/", "args": ["sh"], "user": {"uid": -1, "gid": 0}}),
    "boolean uid": dict(MINIMAL, process={"cwd": "/", "args": ["sh"], "user": {"uid": True, "gid": 0}}),
    "unknown rlimit": dict(MINIMAL, process={"cwd": "/", "args": ["sh"], "rlimits": [
        {"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]}),
    "unknown namespace": dict(MINIMAL, linux={"namespaces": [{"type": "foo"}]}),
    "relative namespace path": dict(MINIMAL, linux={"namespaces": [{"type": "network", "path": "x"}]}),
    "device without major": dict(MINIMAL, linux={"devices": [{"type": "c", "path": "/dev/x", "minor": 1}]}),
    "mount without destination": dict(MINIMAL, mounts=[{"source": "tmpfs", "type": "tmpfs"}]),
    "uidMappings without gidMappings": dict(MINIMAL, mounts=[{
        "destination": "/d", "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]),
    "hook with relative path": dict(MINIMAL, hooks={"poststop": [{"path": "bin/true"}]}),
    "hook with zero timeout": dict(MINIMAL, hooks={"prestart": [{"path": "/bin/true", "timeout": 0}]}),
    "weightDevice without weights": dict(MINIMAL, linux={"resources": {"blockIO": {
        "weightDevice": [{"major": 8, "minor": 0}]}}}),
    "rdma entry without limits": dict(MINIMAL, linux={"resources": {"rdma": {"mlx4_0": {}}}}),
    "lower-case hugepage unit": dict(MINIMAL, linux={"resources": {"hugepageLimits": [
        {"pageSize": "64kB", "limit": 1}]}}),
    "empty annotation key": dict(MINIMAL, annotations={"": "x"}),
    "annotation value not a string": dict(MINIMAL, annotations={"a": 1}),
    "bad rootfsPropagation": dict(MINIMAL, linux={"rootfsPropagation": "rshared-ish"}),
    "listenerMetadata without listenerPath": dict(MINIMAL, linux={"seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}}),
    "seccomp syscall without names": dict(MINIMAL, linux={"seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]}}),
    "platform section not an object": dict(MINIMAL, windows=[]),
}


@pytest.mark.parametrize("doc", GOOD_CONFIGS.values(), ids=GOOD_CONFIGS.keys())
def test_own_good_configs(doc):
    assert list(validator("config").iter_errors(doc)) == []


@pytest.mark.parametrize("doc", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_own_bad_configs(doc):
    assert not validator("config").is_valid(doc)


def test_state_schema_self_contained():
    v = validator("state")
    good = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 42, "bundle": "/b"}
    assert v.is_valid(good)
    assert v.is_valid(dict(good, status="stopped", pid=0))
    assert v.is_valid({k: good[k] for k in ("ociVersion", "id", "bundle")} | {"status": "stopped"})
    assert v.is_valid(dict(good, status="paused"))                  # runtimes may add states
    assert not v.is_valid({k: good[k] for k in ("ociVersion", "id", "bundle")} | {"status": "created"})
    assert not v.is_valid(dict(good, bundle="relative/bundle"))
    assert not v.is_valid(dict(good, pid=-1))


def test_features_schema_self_contained():
    v = validator("features")
    assert v.is_valid({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": None,
                       "linux": {"cgroup": None, "seccomp": {"enabled": False},
                                 "mountExtensions": {"idmap": {"enabled": None}}}})
    assert not v.is_valid({"ociVersionMax": "1.3.0"})
    assert not v.is_valid({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                           "linux": {"seccomp": {"enabled": "yes"}}})
