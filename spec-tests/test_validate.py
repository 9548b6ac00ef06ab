"""pyrunc.validate: the runtime's own schema interpreter and its checks of meaning.

- The interpreter agrees with jsonschema (on our schemas) on the spec's fixtures and on a few
  hundred seeded random mutations of a full Linux config: same verdict, same places.
- Error messages name the field: exact messages for a table of bad configs.
- The checks the schema cannot express, one bad config each.
Pure logic: no containers.
"""

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pyrunc import validate as v
from pyrunc.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = Path(os.environ.get("PYRUNC_SPEC_DIR")
                or REPO.parent / "shared" / "reference" / "runtime-spec-v1.3.0")
FIXTURES = SPEC_DIR / "schema" / "test"

# A config like the one `runc spec` writes (written out here by hand).
TYPICAL = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {name: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for name in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "pyrunc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}

# Every section of config.md and config-linux.md, valid in shape and in meaning.
FULL = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": False},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "none", "source": "/srv/data",
         "options": ["rbind", "ridmap", "rw"],
         "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
         "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=64m"]},
    ],
    "process": {
        "terminal": True,
        "consoleSize": {"height": 25, "width": 80},
        "cwd": "/root",
        "env": ["PATH=/bin:/usr/bin", "TERM=xterm", "EMPTY="],
        "args": ["sh", "-c", "echo hi"],
        "user": {"uid": 1, "gid": 1, "umask": 18, "additionalGids": [5, 6]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615}],
        "apparmorProfile": "acme_secure_profile",
        "capabilities": {"bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                         "effective": ["CAP_KILL"], "inheritable": ["CAP_NET_BIND_SERVICE"],
                         "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                         "ambient": ["CAP_NET_BIND_SERVICE"]},
        "noNewPrivileges": True,
        "oomScoreAdj": -500,
        "scheduler": {"policy": "SCHED_BATCH", "nice": 5, "priority": 0,
                      "flags": ["SCHED_FLAG_RESET_ON_FORK"], "runtime": 0, "deadline": 0, "period": 0},
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "execCPUAffinity": {"initial": "0", "final": "0-1,3"},
    },
    "hostname": "box",
    "domainname": "example.test",
    "hooks": {phase: [{"path": "/usr/bin/hook", "args": ["hook", phase], "env": ["A=1"], "timeout": 5}]
              for phase in ("prestart", "createRuntime", "createContainer", "startContainer",
                            "poststart", "poststop")},
    "annotations": {"com.example.key": "value", "org.opencontainers.image.os": "linux"},
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/box"},
                       {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "user"},
                       {"type": "cgroup"}, {"type": "time"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "timeOffsets": {"monotonic": {"secs": 172800, "nanosecs": 0}, "boottime": {"secs": -3}},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                     "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/fifo0", "type": "p"}],
        "netDevices": {"eth0": {"name": "container_eth0"}, "ens4": {}},
        "cgroupsPath": "/pyrunc/box",
        "resources": {
            "devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}],
            "memory": {"limit": 536870912, "reservation": 268435456, "swap": -1, "kernel": -1,
                       "kernelTCP": -1, "swappiness": 0, "disableOOMKiller": False,
                       "useHierarchy": True, "checkBeforeUpdate": False},
            "cpu": {"shares": 1024, "quota": 100000, "burst": 50000, "period": 100000,
                    "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "0-1",
                    "mems": "0", "idle": 0},
            "blockIO": {"weight": 10, "leafWeight": 10,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                                         {"major": 8, "minor": 16, "leafWeight": 200}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 60}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
            "pids": {"limit": 32771},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 1}},
            "unified": {"memory.high": "max", "io.max": "259:0 rbps=2097152"},
        },
        "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f",
                     "memBwSchema": "MB:0=20;1=70", "schemata": ["L2:0=f"], "enableMonitoring": True},
        "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "2-3", "flags": ["MPOL_F_STATIC_NODES"]},
        "sysctl": {"net.ipv4.ip_forward": "1", "net/ipv4/conf/eth0.100/forwarding": "0",
                   "kernel.shmmax": "4096", "fs.mqueue.msg_max": "10"},
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1,
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                    "listenerPath": "/run/seccomp.sock", "listenerMetadata": "meta",
                    "syscalls": [{"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": 1,
                                  "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}]},
        "rootfsPropagation": "slave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
        "personality": {"domain": "LINUX", "flags": []},
    },
}


_JS = {}


def js(name):
    """jsonschema's validator for our schema (built once)."""
    if name not in _JS:
        _JS[name] = jsonschema.Draft202012Validator(v.load_schema(name))
    return _JS[name]


def error_of(doc):
    with pytest.raises(ConfigError) as info:
        v.validate_config(doc)
    return str(info.value)


def changed(base, edit):
    doc = copy.deepcopy(base)
    edit(doc)
    return doc


# -- valid configs ------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [TYPICAL, FULL], ids=["typical", "full"])
def test_valid_configs_pass(doc):
    assert js("config").is_valid(doc)
    v.validate_config(doc)
    assert v.validate(doc, "config") == []
    assert v.config_warnings(doc) == []


def test_unknown_fields_are_ignored():
    doc = changed(FULL, lambda d: (d.update({"x-new": {"any": [1]}}),
                                   d["process"].update({"futureField": 3}),
                                   d["linux"]["resources"]["memory"].update({"newKnob": "?"}),
                                   d["mounts"][0].update({"mystery": None})))
    v.validate_config(doc)


def test_hot_path_imports_neither_jsonschema_nor_json_nor_re():
    code = ("import sys\n"
            "from pyrunc import validate\n"
            f"validate.validate_config({FULL!r})\n"
            "validate.validate({'ociVersionMin': '1.0.0', 'ociVersionMax': '1.3.0'}, 'features')\n"
            "validate.validate({'ociVersion': '1.3.0', 'id': 'a', 'status': 'stopped',"
            " 'bundle': '/b'}, 'state')\n"
            "print(sorted({'jsonschema', 'json', 're'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def schema_patterns():
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            for key, sub in node.items():
                if key not in ("enum", "const"):
                    walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    for name in ("config", "state", "features"):
        walk(v.load_schema(name))
    return sorted(found)


def test_every_schema_pattern_has_a_matcher():
    assert set(schema_patterns()) <= set(v._PATTERN_MATCHERS)


PATTERN_CORPUS = [
    "", "/", "//", "a", "/a", "a/", " /a", "MB:", "MB", "mb:0=1", "MB:0=20;1=70", "rwm", "r", "mwr",
    "rwx", "R", "2MB", "64KB", "1GB", "64kB", "02MB", "0MB", "MB", "2TB", "2M", "12MBB", "0", "0-3",
    "0-3,7", "0-3,", ",0", "0--3", "1-2-3", "a-b", "0,1,2", "00", "1.0.0", "1.0", "1.0.0.0",
    "01.0.0", "1.00.0", "1.0.0-rc.1", "1.0.0-", "1.0.0-rc..1", "1.0.0+b", "1.0.0+", "1.0.0-rc+b.2",
    "1.0.0-0-0", "1.0.0-a_b", "1.0.0+a+b", "v1.0.0", "1.0.0 ", "1.0.0\n", "x", "_", "_x1", "1x",
    "a-b", "a.b", "ab\n", "é", "１.0.0", "٣", "0-٣",
]


@pytest.mark.parametrize("pattern", sorted(v._PATTERN_MATCHERS))
def test_pattern_matchers_agree_with_re(pattern):
    import re
    ecma = re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)
    rng = random.Random(pattern)
    # Random strings of characters, and of tokens (which often come close to a match).
    alphabet = list("0123456789.-+,/:_ BKMGrwmaxé\n")
    tokens = ["0", "1", "7", "01", "12", ".", ".", "-", "+", ",", "rc", "MB", "KB", "B", "/", "rw",
              "m", "_a", "\n", "é"]
    corpus = PATTERN_CORPUS + ["".join(rng.choice(pool) for _ in range(rng.randrange(10)))
                               for pool in (alphabet, tokens) for _ in range(3000)]
    # And near misses: the hand-written strings with one token inserted or replaced.
    for text in PATTERN_CORPUS:
        for _ in range(40):
            i = rng.randrange(len(text) + 1)
            corpus.append(text[:i] + rng.choice(tokens) + text[i + rng.randrange(2):])
    wrong = [s for s in corpus if v._PATTERN_MATCHERS[pattern](s) != bool(ecma.search(s))]
    assert wrong == []


def test_pattern_without_matcher_falls_back_to_re():
    assert v._matches("^x[0-9]+$", "x12")
    assert not v._matches("^x[0-9]+$", "x12\n")          # ECMA-262: $ is the very end
    assert not v._matches("^x[0-9]+$", "y1")


# -- the interpreter agrees with jsonschema -----------------------------------------------

KEYWORDS_AT_PARENT = ("required", "dependentRequired", "propertyNames")


def places(errors):
    """Where errors are, as jsonschema reports them (required: at the object)."""
    return {p[:-1] if kw in KEYWORDS_AT_PARENT else p for p, _, kw in errors}


def assert_agree(doc, name="config"):
    ours = v.schema_errors(doc, name)
    theirs = list(js(name).iter_errors(doc))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])
    assert places(ours) == {tuple(e.absolute_path) for e in theirs}, (ours, [e.message for e in theirs])
    return bool(ours)


def fixture_docs(kind):
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"runtime-spec reference not found at {SPEC_DIR} (set PYRUNC_SPEC_DIR)"))]
    params = []
    for path in sorted((FIXTURES / kind).glob("*/*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue                                   # invalid-json.json: nothing to validate
        params.append(pytest.param(doc, id=f"{kind}/{path.parent.name}/{path.name}"))
    return params


@pytest.mark.parametrize("doc", fixture_docs("config"))
def test_agrees_with_jsonschema_on_config_fixtures(doc):
    assert_agree(doc, "config")


@pytest.mark.parametrize("doc", fixture_docs("state"))
def test_agrees_with_jsonschema_on_state_fixtures(doc):
    assert_agree(doc, "state")


@pytest.mark.parametrize("doc", fixture_docs("features"))
def test_agrees_with_jsonschema_on_features_fixtures(doc):
    assert_agree(doc, "features")


# Replacement values: every JSON type, edge integers, strings that break patterns and enums.
# No integral floats (1.0) and no trailing newlines: there the two differ on purpose (below).
OTHER_VALUES = ["text", "", "foo", "rel/path", "/abs", "64kB", "2MB", "1-3", "MB:x", "1.2.3",
                0, 1, -1, 7, 1000, 2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64, -2 ** 63 - 1, 1.5,
                True, False, None, [], ["x"], [1], [{}], {}, {"k": "v"}, {"type": "p"}]


def nodes(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for key, member in doc.items():
            yield from nodes(member, path + (key,))
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from nodes(item, path + (i,))


EMPTY = {str: "", list: [], dict: {}}


def mutate(doc, rng):
    path = rng.choice([p for p in nodes(doc) if p])
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    key, action = path[-1], rng.random()
    value = parent[key]
    if action < 0.2:
        del parent[key]                                       # missing member / dropped item
    elif action < 0.3 and type(value) in EMPTY:
        parent[key] = copy.deepcopy(EMPTY[type(value)])       # "", [] or {}
    elif action < 0.4 and isinstance(value, dict):
        value[rng.choice(("x-unknown", ""))] = rng.choice(OTHER_VALUES)  # unknown member
    elif action < 0.5 and isinstance(value, list):
        value.append(copy.deepcopy(rng.choice(OTHER_VALUES)))
    else:
        parent[key] = copy.deepcopy(rng.choice(OTHER_VALUES))


def test_agrees_with_jsonschema_on_mutations():
    rng = random.Random(20240601)
    invalid = valid = 0
    for _ in range(600):
        doc = copy.deepcopy(FULL)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutate(doc, rng)
        if assert_agree(doc):
            invalid += 1
        else:
            valid += 1
    # Both verdicts must be well represented, or the comparison proves little.
    assert invalid > 300 and valid > 50, (invalid, valid)


def test_deliberate_differences_from_jsonschema():
    # 1.0 is an integer to JSON Schema, but not a uid to a runtime (nor to Go's runc).
    doc = changed(TYPICAL, lambda d: d["process"]["user"].update(uid=1.0))
    assert js("config").is_valid(doc)
    assert error_of(doc) == "config.json: process.user.uid: must be an integer, got 1.0"
    # A final $ in a pattern is the end of the string (ECMA-262), not "before a final newline".
    doc = changed(TYPICAL, lambda d: d.update(ociVersion="1.0.0\n"))
    assert js("config").is_valid(doc)
    assert error_of(doc) == ('config.json: ociVersion: "1.0.0\\n" is not a SemVer 2.0.0 '
                             'version such as 1.2.0')


# -- error messages name the field --------------------------------------------------------

NAMESPACE_TYPES = "pid, network, mount, ipc, uts, user, cgroup, time"
RLIMITS = ("RLIMIT_AS, RLIMIT_CORE, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE, RLIMIT_LOCKS, "
           "RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_NOFILE, RLIMIT_NPROC, "
           "RLIMIT_RSS, RLIMIT_RTPRIO, RLIMIT_RTTIME, RLIMIT_SIGPENDING, RLIMIT_STACK")

SHAPE_ERRORS = [
    (lambda d: d.pop("ociVersion"), "ociVersion: required"),
    (lambda d: d.pop("root"), "root: required"),
    (lambda d: d["root"].pop("path"), "root.path: required"),
    (lambda d: d["root"].update(path=""), "root.path: must not be empty"),
    (lambda d: d.update(ociVersion="1.0"), 'ociVersion: "1.0" is not a SemVer 2.0.0 version such as 1.2.0'),
    (lambda d: d.update(ociVersion=1), "ociVersion: must be a string, got 1"),
    (lambda d: d["process"].pop("args"), "process.args: required"),
    (lambda d: d["process"].update(args=[]), "process.args: must not be empty"),
    (lambda d: d["process"].update(args="sh"), 'process.args: must be an array, got "sh"'),
    (lambda d: d["process"].update(args=["sh", 3]), "process.args[1]: must be a string, got 3"),
    (lambda d: d["process"].update(cwd="tmp"), 'process.cwd: "tmp" is not an absolute path'),
    (lambda d: d["process"].update(terminal="yes"), 'process.terminal: must be a boolean, got "yes"'),
    (lambda d: d["process"]["user"].update(uid=-1), "process.user.uid: -1 is out of range 0..4294967295"),
    (lambda d: d["process"]["user"].update(gid=None), "process.user.gid: must be an integer, got null"),
    (lambda d: d["process"]["user"].pop("gid"), "process.user.gid: required"),
    (lambda d: d["process"]["rlimits"][0].update(type="RLIMIT_FOO"),
     f'process.rlimits[0].type: "RLIMIT_FOO" is not one of {RLIMITS}'),
    (lambda d: d["process"]["rlimits"][0].update(soft=-5),
     "process.rlimits[0].soft: -5 is out of range 0..18446744073709551615"),
    (lambda d: d["process"]["capabilities"].update(bounding="CAP_KILL"),
     'process.capabilities.bounding: must be an array, got "CAP_KILL"'),
    (lambda d: d["mounts"][0].pop("destination"), "mounts[0].destination: required"),
    (lambda d: d["mounts"][2].update(options="ro"), 'mounts[2].options: must be an array, got "ro"'),
    (lambda d: d["mounts"].append({"destination": "/x", "gidMappings": []}),
     "mounts[7].uidMappings: required with gidMappings"),
    (lambda d: d["linux"]["namespaces"][2].update(type="foo"),
     f'linux.namespaces[2].type: "foo" is not one of {NAMESPACE_TYPES}'),
    (lambda d: d["linux"]["namespaces"].append({"type": "cgroup", "path": "proc/1/ns/cgroup"}),
     'linux.namespaces[5].path: "proc/1/ns/cgroup" is not an absolute path'),
    (lambda d: d["linux"].update(devices=[{"type": "c", "path": "/dev/x", "major": 1}]),
     "linux.devices[0].minor: required"),
    (lambda d: d["linux"].update(devices=[{"type": "x", "path": "/dev/x"}]),
     'linux.devices[0].type: "x" is not one of c, b, u, p'),
    (lambda d: d["linux"]["resources"]["devices"][0].update(access="rwx"),
     'linux.resources.devices[0].access: "rwx" is not a combination of r, w and m'),
    (lambda d: d["linux"]["resources"].update(hugepageLimits=[{"pageSize": "64kB", "limit": 1}]),
     'linux.resources.hugepageLimits[0].pageSize: "64kB" is not a page size such as 64KB, 2MB or 1GB'),
    (lambda d: d["linux"]["resources"].update(blockIO={"weightDevice": [{"major": 8, "minor": 0}]}),
     "linux.resources.blockIO.weightDevice[0]: must be an entry with weight or leafWeight (or both)"),
    (lambda d: d["linux"]["resources"].update(rdma={"mlx5_1": {"hcaHandles": "many"}}),
     'linux.resources.rdma.mlx5_1.hcaHandles: must be an integer, got "many"'),
    (lambda d: d["linux"]["resources"].update(memory={"swappiness": 101}),
     "linux.resources.memory.swappiness: 101 is out of range 0..100"),
    (lambda d: d["linux"].update(sysctl={"net.core.somaxconn": 256}),
     'linux.sysctl["net.core.somaxconn"]: must be a string, got 256'),
    (lambda d: d["linux"].update(rootfsPropagation="rshared-ish"),
     'linux.rootfsPropagation: "rshared-ish" is not one of shared, slave, private, unbindable, '
     'rshared, rslave, rprivate, runbindable'),
    (lambda d: d["linux"].update(maskedPaths=["proc/kcore"]),
     'linux.maskedPaths[0]: "proc/kcore" is not an absolute path'),
    (lambda d: d.update(hooks={"poststart": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststart[0].timeout: must be at least 1, got 0"),
    (lambda d: d.update(hooks={"prestart": [{"args": ["x"]}]}), "hooks.prestart[0].path: required"),
    (lambda d: d.update(annotations={"": "x"}), 'annotations[""]: key must not be empty'),
    (lambda d: d.update(annotations={"com.example/a b": 1}),
     'annotations["com.example/a b"]: must be a string, got 1'),
    (lambda d: d["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
     "linux.seccomp.listenerPath: required with listenerMetadata"),
    (lambda d: d.update(windows="yes"), 'windows: must be an object, got "yes"'),
    (lambda d: d["process"].update(consoleSize={"height": 25, "width": 70000}),
     "process.consoleSize.width: 70000 is out of range 0..65535"),
]


@pytest.mark.parametrize("edit,message", SHAPE_ERRORS, ids=[m.split(":")[0] for _, m in SHAPE_ERRORS])
def test_shape_error_messages(edit, message):
    doc = changed(TYPICAL, edit)
    assert assert_agree(doc)                               # jsonschema agrees, same place
    assert error_of(doc) == f"config.json: {message}"


def test_document_not_an_object():
    assert error_of([]) == "config.json: must be an object, got an array"
    assert v.validate("x", "state") == ['(document): must be an object, got "x"']


def test_first_error_does_not_depend_on_key_order():
    doc = changed(TYPICAL, lambda d: (d.pop("root"), d["process"].update(cwd="rel")))
    reordered = dict(reversed(list(doc.items())))
    assert error_of(doc) == error_of(reordered) == "config.json: root: required"
    assert v.validate(doc, "config") == ["root: required", 'process.cwd: "rel" is not an absolute path']


# -- checks the schema cannot express -----------------------------------------------------

SEMANTIC_ERRORS = [
    (TYPICAL, lambda d: d.update(ociVersion="2.0.0"),
     "ociVersion: 2.0.0 is not supported: this runtime implements runtime-spec 1.3.0 and accepts 1.0.0 up to 1.3.x"),
    (TYPICAL, lambda d: d.update(ociVersion="1.4.0-rc.1"),
     "ociVersion: 1.4.0-rc.1 is not supported: this runtime implements runtime-spec 1.3.0 and accepts 1.0.0 up to 1.3.x"),
    (TYPICAL, lambda d: d.update(ociVersion="0.5.0-dev"),
     "ociVersion: 0.5.0-dev is not supported: this runtime implements runtime-spec 1.3.0 and accepts 1.0.0 up to 1.3.x"),
    (TYPICAL, lambda d: d["linux"]["namespaces"].append({"type": "pid", "path": "/proc/1/ns/pid"}),
     "linux.namespaces[5].type: duplicate namespace type pid"),
    (TYPICAL, lambda d: d["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.uidMappings: needs a user namespace (linux.namespaces has no user entry)"),
    (TYPICAL, lambda d: d["linux"]["namespaces"].append({"type": "user"}),
     "linux.uidMappings: required with a new user namespace"),
    (FULL, lambda d: d["linux"]["uidMappings"].append({"containerID": 10, "hostID": 1, "size": 1}),
     "linux.uidMappings[1].containerID: range overlaps another entry"),
    (FULL, lambda d: d["linux"]["gidMappings"][0].update(size=0), "linux.gidMappings[0].size: must be at least 1"),
    (TYPICAL, lambda d: d["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}),
     "process.rlimits[1].type: duplicate rlimit RLIMIT_NOFILE (also process.rlimits[0])"),
    (TYPICAL, lambda d: d["process"]["rlimits"][0].update(soft=2048),
     "process.rlimits[0]: soft limit 2048 is above hard limit 1024"),
    (TYPICAL, lambda d: d["process"].update(oomScoreAdj=1001), "process.oomScoreAdj: 1001 is out of range -1000..1000"),
    (TYPICAL, lambda d: d["process"]["env"].append("NOEQUALS"),
     'process.env[2]: "NOEQUALS" is not of the form NAME=value'),
    (TYPICAL, lambda d: d["process"]["env"].append("=value"),
     'process.env[2]: "=value" is not of the form NAME=value'),
    (TYPICAL, lambda d: d["process"]["args"].append("a\0b"), "process.args[1]: must not contain a NUL character"),
    (TYPICAL, lambda d: d.update(hooks={"createRuntime": [{"path": "/bin/hook", "env": ["X"]}]}),
     'hooks.createRuntime[0].env[0]: "X" is not of the form NAME=value'),
    (TYPICAL, lambda d: d["mounts"].append({"destination": "/data", "type": "none", "options": ["rbind"]}),
     "mounts[7].source: required for a bind mount"),
    (TYPICAL, lambda d: d["mounts"].append({"destination": "/d", "source": "/s", "options": ["bind", "idmap"]}),
     "mounts[7].options: idmap needs uidMappings and gidMappings on the mount or a user namespace"),
    (TYPICAL, lambda d: d["linux"]["namespaces"].pop(3),
     "hostname: needs a uts namespace (linux.namespaces has no uts entry); setting it would change the host's"),
    (TYPICAL, lambda d: d.update(hostname="h" * 65), "hostname: is longer than 64 bytes"),
    (TYPICAL, lambda d: d["linux"].update(sysctl={"vm.swappiness": "10"}),
     'linux.sysctl["vm.swappiness"]: is not isolated by a namespace of the container; setting it would change the host'),
    (TYPICAL, lambda d: d["linux"].update(sysctl={"net/../../etc/x": "1"}),
     'linux.sysctl["net/../../etc/x"]: is not a sysctl name'),
    (TYPICAL, lambda d: d["linux"].update(sysctl={"net..ipv4": "1"}), 'linux.sysctl["net..ipv4"]: is not a sysctl name'),
    (TYPICAL, lambda d: (d["linux"]["namespaces"].pop(1), d["linux"].update(sysctl={"net.ipv4.ip_forward": "1"})),
     'linux.sysctl["net.ipv4.ip_forward"]: needs a network namespace (linux.namespaces has no network entry)'),
    (TYPICAL, lambda d: (d["linux"]["namespaces"].pop(2), d["linux"].update(sysctl={"kernel.shmmax": "1"})),
     'linux.sysctl["kernel.shmmax"]: needs an ipc namespace (linux.namespaces has no ipc entry)'),
    (TYPICAL, lambda d: d["linux"].update(timeOffsets={"monotonic": {"secs": 1}}),
     "linux.timeOffsets: needs a new time namespace (a time entry without path in linux.namespaces)"),
    (FULL, lambda d: d["linux"]["timeOffsets"].update(realtime={"secs": 1}),
     "linux.timeOffsets.realtime: unknown clock; one of monotonic, boottime"),
    (FULL, lambda d: d["linux"]["timeOffsets"]["boottime"].update(nanosecs=1_000_000_000),
     "linux.timeOffsets.boottime.nanosecs: must be below 1000000000"),
    (FULL, lambda d: d["linux"]["devices"].append({"path": "/dev//fuse", "type": "p"}),
     "linux.devices[2].path: duplicate device path /dev//fuse (also linux.devices[0])"),
    (FULL, lambda d: d["linux"]["devices"][0].update(fileMode=0o100666),
     "linux.devices[0].fileMode: 33206 has bits beyond the permission bits 07777"),
    (TYPICAL, lambda d: d["linux"].update(netDevices={"eth0": {}}) or d["linux"]["namespaces"].pop(1),
     "linux.netDevices: needs a network namespace (linux.namespaces has no network entry)"),
    (FULL, lambda d: d["linux"]["netDevices"].update({"eth0": {"name": "a-very-long-name0"}}),
     "linux.netDevices.eth0.name: is not an interface name (at most 15 bytes, no ':' or spaces)"),
    (FULL, lambda d: d["linux"]["netDevices"].update({"../x": {}}), 'linux.netDevices["../x"]: must not contain / or NUL'),
    (TYPICAL, lambda d: d["linux"].update(cgroupsPath="/pyrunc/../../escape"),
     "linux.cgroupsPath: must not contain a .. component"),
    (TYPICAL, lambda d: d["linux"]["resources"].update(unified={"../cgroup.procs": "1"}),
     'linux.resources.unified["../cgroup.procs"]: not a cgroup file name: must not contain / or NUL'),
    (TYPICAL, lambda d: d["linux"]["resources"].update(unified={"..": "1"}),
     'linux.resources.unified[".."]: not a cgroup file name: is not a name'),
    (TYPICAL, lambda d: d["linux"]["resources"].update(cpu={"quota": 1000, "burst": 2000}),
     "linux.resources.cpu.burst: 2000 is larger than quota 1000"),
    (TYPICAL, lambda d: d["linux"].update(intelRdt={"closID": "../evil"}),
     'linux.intelRdt.closID: "../evil" is not / or a directory name'),
    (TYPICAL, lambda d: d["linux"].update(intelRdt={"schemata": ["L3:0=1\nMB:0=1"]}),
     "linux.intelRdt.schemata[0]: must not contain a newline"),
    (TYPICAL, lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_BIND"}),
     "linux.memoryPolicy.nodes: required with MPOL_BIND"),
    (TYPICAL, lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_LOCAL", "nodes": "0"}),
     "linux.memoryPolicy.nodes: must be empty with MPOL_LOCAL"),
    (TYPICAL, lambda d: d["linux"].update(personality={"domain": "LINUX", "flags": ["X"]}),
     "linux.personality.flags: no personality flags are supported"),
]


@pytest.mark.parametrize("base,edit,message", SEMANTIC_ERRORS,
                         ids=[f"{i}-{m.split(':')[0]}" for i, (_, _, m) in enumerate(SEMANTIC_ERRORS)])
def test_semantic_error_messages(base, edit, message):
    doc = changed(base, edit)
    assert js("config").is_valid(doc)                      # the schema alone cannot see it
    assert error_of(doc) == f"config.json: {message}"


def test_accepted_versions():
    for version in ("1.0.0", "1.0.2-dev", "1.1.0-rc.2", "1.2.1", "1.3.0", "1.3.7+meta"):
        v.validate_config(changed(TYPICAL, lambda d: d.update(ociVersion=version)))


def test_joined_user_namespace_needs_no_mappings():
    doc = changed(TYPICAL, lambda d: d["linux"]["namespaces"].append(
        {"type": "user", "path": "/proc/42/ns/user"}))
    v.validate_config(doc)


def test_namespaced_sysctls_pass():
    doc = changed(TYPICAL, lambda d: d["linux"].update(sysctl={
        "net.ipv4.ping_group_range": "0 0", "kernel.msgmax": "8192", "fs.mqueue.queues_max": "5",
        "kernel.domainname": "x"}))
    v.validate_config(doc)


def test_warnings():
    doc = changed(TYPICAL, lambda d: (d["process"]["capabilities"]["bounding"].append("CAP_FLY"),
                                      d["mounts"].append({"destination": "data", "source": "/s",
                                                          "options": ["bind"]})))
    v.validate_config(doc)                                  # warnings, not errors (config.md)
    assert v.config_warnings(doc) == [
        "process.capabilities.bounding[3]: unknown capability CAP_FLY, ignored",
        'mounts[7].destination: relative path "data" is deprecated; taken relative to /',
    ]


# -- state and features -------------------------------------------------------------------

def test_state_validation():
    good = {"ociVersion": "1.3.0", "id": "c1", "status": "created", "pid": 7, "bundle": "/b",
            "annotations": {"a": "b"}}
    assert v.validate(good, "state") == []
    bad = dict(good, bundle="b")
    del bad["pid"]
    assert v.validate(bad, "state") == ['bundle: "b" is not an absolute path', "pid: required"]
    assert_agree(bad, "state")


def test_features_validation():
    good = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": list(v.HOOKS),
            "linux": {"capabilities": list(v.CAPABILITIES), "seccomp": {"enabled": False}}}
    assert v.validate(good, "features") == []
    assert v.validate(dict(good, ociVersionMin="1.3.0", ociVersionMax="1.3.0-rc.1"), "features") == [
        "ociVersionMax: 1.3.0-rc.1 is less than ociVersionMin 1.3.0"]
    assert v.validate({"ociVersionMin": "1.0.0"}, "features") == ["ociVersionMax: required"]
    assert v.validate(dict(good, linux={"cgroup": {"v2": "yes"}}), "features") == [
        'linux.cgroup.v2: must be a boolean or null, got "yes"']


# -- helpers ------------------------------------------------------------------------------

def test_format_path():
    assert v.format_path(()) == ""
    assert v.format_path(("linux", "namespaces", 2, "type")) == "linux.namespaces[2].type"
    assert v.format_path(("linux", "sysctl", "net.ipv4.ip_forward")) == 'linux.sysctl["net.ipv4.ip_forward"]'
    assert v.format_path(("mounts", 0)) == "mounts[0]"


def test_sysctl_relpath():
    assert v.sysctl_relpath("net.ipv4.ip_forward") == "net/ipv4/ip_forward"
    assert v.sysctl_relpath("net/ipv4/conf/eth0.100/forwarding") == "net/ipv4/conf/eth0.100/forwarding"
    for bad in ("", "net..x", ".net", "net/../x", "net/./x", "/net/x"):
        assert v.sysctl_relpath(bad) is None, bad


def test_version_key_orders_prereleases_first():
    assert v.version_key("1.3.0-rc.1") < v.version_key("1.3.0") < v.version_key("1.3.1")
    assert v.version_key("1.2") is None
