"""Validation of config.json, and of the state and features documents the runtime prints.

Design
------
Two layers. Both report problems as ``<path>: <reason>``, where the path names the field the
way a person would write it: ``process.args``, ``linux.namespaces[2].type``,
``linux.sysctl["net.ipv4.ip_forward"]``. ``validate_config`` raises the first one.

1. Shape. The project's own JSON Schemas for runtime-spec v1.3.0 live in ``pyrunc/schema/``
   (draft 2020-12, written from the spec text; the tests check them with the ``jsonschema``
   library against the spec's fixtures). The runtime does not import ``jsonschema``: its import
   costs 50-100 ms and every ``pyrunc create`` would pay it. Instead this module interprets the
   few keywords our schemas use (``KEYWORDS``) directly. A schema is read (with
   :mod:`pyrunc.jsonio`) on first use and kept. The walk follows the schema's order, not the
   document's (type, then value checks, then required members, then members, then items), so
   the first error does not depend on how the document happens to be laid out. The tests hold this interpreter
   equal to ``jsonschema`` on the fixtures and on a few hundred generated mutations.

2. Meaning. Rules a schema cannot express, or expresses badly: the supported ociVersion range,
   duplicate namespaces or rlimits, id mappings without a user namespace, sysctls that are not
   isolated by a namespace of the container (writing them would change the host), ``..`` in
   cgroup paths and cgroup file names, and so on. They run only on a document of the right
   shape, so they may index it freely.

Unknown fields are ignored, as the spec requires: no schema forbids additional properties.

Neither ``json`` nor ``re`` is imported: together they cost ~7 ms here (``re`` pulls in ``enum``),
more than all the rest of validation. Documents are read with :mod:`pyrunc.jsonio`, and each
pattern our schemas use is matched by a small function in ``_PATTERN_MATCHERS`` (the tests check
every one against ``re`` on a corpus); any other pattern falls back to ``re``, imported then.

Two deliberate differences from a generic JSON Schema validator, both in the direction of
strictness: an integer must be written as an integer (``1.0`` is a number but not a uid; Go
runtimes reject it too), and a pattern's final ``$`` means the end of the string, as in
ECMA-262, not "before a final newline" as in Python's ``re``.
"""

from pyrunc.linux import os
from . import SPEC_VERSION, jsonio  # SPEC_VERSION: the runtime-spec version implemented
from .spec import CAPABILITIES, sysctl_relpath  # shared with the runtime (re-exported)
from .errors import ConfigError

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
SCHEMA_FILES = {
    "config": "config-schema.json",
    "state": "state-schema.json",
    "features": "features-schema.json",
}
# The JSON Schema keywords the interpreter below understands. Annotations ($schema, $id,
# title, description, $comment) are not checks; description words some error messages.
KEYWORDS = frozenset({
    "$ref", "$defs", "type", "enum", "const", "pattern", "minLength", "minimum", "maximum",
    "minItems", "required", "dependentRequired", "properties", "additionalProperties",
    "propertyNames", "items", "anyOf", "if", "then", "else",
    "$schema", "$id", "title", "description", "$comment",
})

OCI_VERSION_MIN = "1.0.0"       # the oldest config.json ociVersion it accepts

HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")

# sysctls a namespace of the container isolates (the rest would change the host).
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})
_TIME_CLOCKS = ("monotonic", "boottime")
_MAX_ID_MAPPINGS = 340          # user_namespaces(7): the kernel's limit per map since 4.15
_HOST_NAME_MAX = 64
_IFNAMSIZ = 16



# -- public API --------------------------------------------------------------------------

def validate_config(doc):
    """Check a parsed config.json; raise ConfigError naming the first problem."""
    errors = _errors(doc, "config")
    if errors:
        path, reason = errors[0]
        where = format_path(path)
        raise ConfigError(f"config.json: {where}: {reason}" if where else f"config.json: {reason}")


def validate_process(doc, what):
    """Check an exec's process document (``exec --process FILE``, already parsed by
    :func:`pyrunc.spec.parse_process`, so of the right shape) with the rules of config.json's
    ``process``; raise ConfigError naming the first problem, prefixed with ``what``."""
    errors = []
    _check_process(doc, lambda path, reason: errors.append((path, reason)))
    if errors:
        path, reason = errors[0]
        raise ConfigError(f"{what}: {format_path(path)}: {reason}")


def validate(doc, schema_name):
    """The problems of a document ("config", "state" or "features") as ``path: reason``.

    Shape problems if there are any, else problems of meaning (which assume a good shape).
    """
    return [f"{format_path(p) or '(document)'}: {r}" for p, r in _errors(doc, schema_name)]


def config_warnings(doc):
    """Things in a valid config.json the spec says to log rather than refuse."""
    warnings = []
    caps = (doc.get("process") or {}).get("capabilities") or {}
    known = frozenset(CAPABILITIES)
    for field in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        for i, name in enumerate(caps.get(field) or ()):
            if name not in known:
                warnings.append(f"process.capabilities.{field}[{i}]: unknown capability "
                                f"{name}, ignored")
    for i, mount in enumerate(doc.get("mounts") or ()):
        if not mount["destination"].startswith("/"):
            warnings.append(f"mounts[{i}].destination: relative path {_show(mount['destination'])} "
                            f"is deprecated; taken relative to /")
    return warnings


def schema_errors(doc, schema_name):
    """Shape errors only, as ``(path tuple, reason, keyword)``; for tests and tools."""
    checker = _Checker(load_schema(schema_name))
    checker.check(doc, checker.root, ())
    return checker.errors


def load_schema(schema_name):
    """The parsed schema (read once)."""
    schema = _SCHEMAS.get(schema_name)
    if schema is None:
        with open(os.path.join(SCHEMA_DIR, SCHEMA_FILES[schema_name]), encoding="utf-8") as f:
            schema = _SCHEMAS[schema_name] = jsonio.loads(f.read(), trusted=True)
    return schema


def format_path(path):
    """``("linux", "namespaces", 2, "type")`` -> ``linux.namespaces[2].type``."""
    out = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _is_identifier(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{jsonio.dumps(part)}]")
    return "".join(out)


def version_key(version):
    """A sort key for a SemVer string (a pre-release sorts before its release), or None."""
    core, _, pre = version.partition("+")[0].partition("-")
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2]), not pre, pre)


# -- the schema interpreter --------------------------------------------------------------

_SCHEMAS = {}
_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "a boolean",
               "null": "null"}


def _is_type(value, name):
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return type(value) is int
    if name == "number":
        return type(value) in (int, float)
    if name == "boolean":
        return type(value) is bool
    return value is None if name == "null" else False


# -- patterns without re: one matcher per pattern our schemas use --------------------------

_DIGITS = frozenset("0123456789")
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_WORD_CHARS = (_IDENT_CHARS - {"-"}) | {"_"}


def _is_number(s):
    return s != "" and set(s) <= _DIGITS


def _is_dotted_identifiers(s):
    return all(part != "" and set(part) <= _IDENT_CHARS for part in s.split("."))


def _is_semver(s):
    rest, plus, build = s.partition("+")
    core, dash, pre = rest.partition("-")
    parts = core.split(".")
    return (len(parts) == 3 and all(_is_number(p) and (p == "0" or p[0] != "0") for p in parts)
            and (not dash or _is_dotted_identifiers(pre))
            and (not plus or _is_dotted_identifiers(build)))


def _is_number_list(s):
    if s == "":
        return True
    for item in s.split(","):
        low, dash, high = item.partition("-")
        if not _is_number(low) or (dash and not _is_number(high)):
            return False
    return True


def _is_page_size(s):
    return (len(s) >= 3 and s[-1] == "B" and s[-2] in "KMG" and s[0] != "0"
            and _is_number(s[:-2]))


def _is_identifier(s):
    return s != "" and not s[0].isdigit() and set(s) <= _WORD_CHARS


_PATTERN_MATCHERS = {
    "^/": lambda s: s.startswith("/"),
    "^MB:": lambda s: s.startswith("MB:"),
    "^[rwm]*$": lambda s: set(s) <= {"r", "w", "m"},
    "^[1-9][0-9]*[KMG]B$": _is_page_size,
    "^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?$": _is_number_list,
    "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?"
    "(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$": _is_semver,
    "^[A-Za-z_][A-Za-z0-9_]*$": _is_identifier,    # format_path's test for .key
}


def _matches(pattern, text):
    """re.search semantics, except that a final $ means the very end (as in ECMA-262)."""
    matcher = _PATTERN_MATCHERS.get(pattern)
    if matcher is None:
        import re                                     # only for a pattern without a matcher
        if pattern.endswith("$") and not pattern.endswith("\\$"):
            source = pattern[:-1] + r"\Z"
        else:
            source = pattern
        compiled = re.compile(source)
        matcher = _PATTERN_MATCHERS[pattern] = lambda s: compiled.search(s) is not None
    return matcher(text)


def _show(value):
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = jsonio.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """One walk of one document against one schema; collects ``(path, reason, keyword)``."""

    def __init__(self, root):
        self.root = root
        self.defs = root.get("$defs", {})
        self.errors = []

    def fail(self, path, reason, keyword):
        self.errors.append((path, reason, keyword))

    def valid(self, value, schema):
        """Whether value satisfies schema (for if/anyOf), without recording errors."""
        saved, self.errors = self.errors, []
        try:
            self.check(value, schema, ())
            return not self.errors
        finally:
            self.errors = saved

    def check(self, value, schema, path):
        ref = schema.get("$ref")
        if ref is not None:
            self.check(value, self.defs[ref.rpartition("/")[2]], path)

        types = schema.get("type")
        if types is not None:
            names = (types,) if isinstance(types, str) else types
            if not any(_is_type(value, t) for t in names):
                words = " or ".join(_TYPE_WORDS[t] for t in names)
                self.fail(path, f"must be {words}, got {_show(value)}", "type")
                return

        if "enum" in schema and value not in schema["enum"]:
            choices = ", ".join(str(c) for c in schema["enum"])
            self.fail(path, f"{_show(value)} is not one of {choices}", "enum")
        if "const" in schema and value != schema["const"]:
            self.fail(path, f"must be {_show(schema['const'])}", "const")

        if isinstance(value, str):
            self._check_string(value, schema, path)
        elif type(value) in (int, float):
            self._check_number(value, schema, path)
        elif isinstance(value, dict):
            self._check_object(value, schema, path)
        elif isinstance(value, list):
            self._check_array(value, schema, path)

        any_of = schema.get("anyOf")
        if any_of is not None and not any(self.valid(value, s) for s in any_of):
            what = schema.get("description", "one of the allowed forms")
            self.fail(path, f"must be {what}", "anyOf")

        condition = schema.get("if")
        if condition is not None:
            branch = schema.get("then" if self.valid(value, condition) else "else")
            if branch is not None:
                self.check(value, branch, path)

    def _check_string(self, value, schema, path):
        min_length = schema.get("minLength")
        if min_length is not None and len(value) < min_length:
            self.fail(path, "must not be empty" if min_length == 1
                      else f"must be at least {min_length} characters long", "minLength")
        pattern = schema.get("pattern")
        if pattern is not None and not _matches(pattern, value):
            what = schema.get("description")
            self.fail(path, f"{_show(value)} is not {what}" if what
                      else f"{_show(value)} does not match {pattern}", "pattern")

    def _check_number(self, value, schema, path):
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                reason = f"{value} is out of range {low}..{high}"
            elif low is not None:
                reason = f"must be at least {low}, got {value}"
            else:
                reason = f"must be at most {high}, got {value}"
            self.fail(path, reason, "minimum" if low is not None and value < low else "maximum")

    def _check_object(self, value, schema, path):
        for name in schema.get("required", ()):
            if name not in value:
                self.fail(path + (name,), "required", "required")
        for name, needs in schema.get("dependentRequired", {}).items():
            if name in value:
                for other in needs:
                    if other not in value:
                        self.fail(path + (other,), f"required with {name}", "dependentRequired")
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in value:
                self.check(value[name], sub, path + (name,))
        key_schema = schema.get("propertyNames")
        if key_schema is not None:
            for key in value:
                probe = _Checker(self.root)
                probe.check(key, key_schema, ())
                if probe.errors:
                    self.fail(path + (key,), f"key {probe.errors[0][1]}", "propertyNames")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, member in value.items():
                if key not in properties:
                    self.check(member, extra, path + (key,))

    def _check_array(self, value, schema, path):
        min_items = schema.get("minItems")
        if min_items is not None and len(value) < min_items:
            self.fail(path, "must not be empty" if min_items == 1
                      else f"must have at least {min_items} items", "minItems")
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                self.check(item, items, path + (i,))


def _errors(doc, schema_name):
    """Shape errors, or (for a well-shaped document) meaning errors, as ``(path, reason)``."""
    found = [(p, r) for p, r, _ in schema_errors(doc, schema_name)]
    if found:
        return found
    semantic = _SEMANTIC.get(schema_name)
    if semantic is None:
        return []
    errors = []
    semantic(doc, errors)
    return errors


# -- meaning: config.json ----------------------------------------------------------------

def _config_semantics(doc, errors):
    """Checks in the order of config.md, then config-linux.md."""
    add = lambda path, reason: errors.append((path, reason))   # noqa: E731
    linux = doc.get("linux") or {}
    namespaces = {}                                 # type -> first entry of that type
    for entry in linux.get("namespaces") or ():
        namespaces.setdefault(entry["type"], entry)

    _check_version(doc["ociVersion"], add)
    _check_no_nul(("root", "path"), doc["root"]["path"], add)
    _check_mounts(doc.get("mounts") or (), namespaces, add)
    process = doc.get("process")
    if process is not None:
        _check_process(process, add)
    for field in ("hostname", "domainname"):
        _check_uts_name(doc, field, namespaces, add)
    hooks = doc.get("hooks") or {}
    for phase in HOOKS:
        for i, hook in enumerate(hooks.get(phase) or ()):
            _check_exec(("hooks", phase, i), hook, add)
    if linux:
        _check_linux(linux, namespaces, add)


def _check_version(version, add):
    """Same major version, and no newer minor version than ours (config.md)."""
    major, minor = version_key(version)[:2]
    our_major, our_minor = version_key(SPEC_VERSION)[:2]
    if major != our_major or minor > our_minor:
        add(("ociVersion",), f"{version} is not supported: this runtime implements runtime-spec "
                             f"{SPEC_VERSION} and accepts {OCI_VERSION_MIN} up to "
                             f"{our_major}.{our_minor}.x")


def _check_no_nul(path, text, add):
    if "\0" in text:
        add(path, "must not contain a NUL character")


def _check_env(path, env, add):
    for i, entry in enumerate(env):
        name, eq, _ = entry.partition("=")
        if not eq or not name:
            add(path + (i,), f"{_show(entry)} is not of the form NAME=value")
        _check_no_nul(path + (i,), entry, add)


def _check_exec(path, what, add):
    """The path/cwd, args and env of a process or a hook."""
    for field in ("path", "cwd"):
        if field in what:
            _check_no_nul(path + (field,), what[field], add)
    for i, arg in enumerate(what.get("args") or ()):
        _check_no_nul(path + ("args", i), arg, add)
    _check_env(path + ("env",), what.get("env") or (), add)


def _check_mounts(mounts, namespaces, add):
    for i, mount in enumerate(mounts):
        _check_no_nul(("mounts", i, "destination"), mount["destination"], add)
        options = mount.get("options") or ()
        if ("bind" in options or "rbind" in options) and not mount.get("source"):
            add(("mounts", i, "source"), "required for a bind mount")
        if "source" in mount:
            _check_no_nul(("mounts", i, "source"), mount["source"], add)
        idmap = next((o for o in options if o in ("idmap", "ridmap")), None)
        if idmap and "uidMappings" not in mount and "user" not in namespaces:
            add(("mounts", i, "options"), f"{idmap} needs uidMappings and gidMappings on the "
                                          f"mount or a user namespace")
        for field in ("uidMappings", "gidMappings"):
            if field in mount:
                _check_id_mappings(("mounts", i, field), mount[field], add)


def _check_process(process, add):
    _check_exec(("process",), process, add)
    seen = {}
    for i, rlimit in enumerate(process.get("rlimits") or ()):
        kind = rlimit["type"]
        if kind in seen:
            add(("process", "rlimits", i, "type"), f"duplicate rlimit {kind} "
                                                   f"(also process.rlimits[{seen[kind]}])")
        seen.setdefault(kind, i)
        if rlimit["soft"] > rlimit["hard"]:
            add(("process", "rlimits", i), f"soft limit {rlimit['soft']} is above hard limit "
                                           f"{rlimit['hard']}")
    adj = process.get("oomScoreAdj")
    if adj is not None and not -1000 <= adj <= 1000:
        add(("process", "oomScoreAdj"), f"{adj} is out of range -1000..1000")


def _check_uts_name(doc, field, namespaces, add):
    name = doc.get(field)
    if not name:
        return
    if "uts" not in namespaces:
        add((field,), "needs a uts namespace (linux.namespaces has no uts entry); "
                      "setting it would change the host's")
    elif len(name.encode()) > _HOST_NAME_MAX:
        add((field,), f"is longer than {_HOST_NAME_MAX} bytes")
    _check_no_nul((field,), name, add)


def _check_linux(linux, namespaces, add):
    seen = set()
    for i, entry in enumerate(linux.get("namespaces") or ()):
        if entry["type"] in seen:
            add(("linux", "namespaces", i, "type"), f"duplicate namespace type {entry['type']}")
        seen.add(entry["type"])
    _check_user_namespace(linux, namespaces, add)
    _check_time_offsets(linux.get("timeOffsets"), namespaces, add)
    _check_devices(linux.get("devices") or (), add)
    _check_net_devices(linux.get("netDevices"), namespaces, add)
    _check_cgroups(linux, add)
    _check_intel_rdt(linux.get("intelRdt"), add)
    _check_memory_policy(linux.get("memoryPolicy"), add)
    _check_sysctl(linux.get("sysctl") or {}, namespaces, add)
    for field in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(linux.get(field) or ()):
            _check_no_nul(("linux", field, i), path, add)
    personality = linux.get("personality")
    if personality and personality.get("flags"):
        add(("linux", "personality", "flags"), "no personality flags are supported")


def _check_user_namespace(linux, namespaces, add):
    user = namespaces.get("user")
    for field in ("uidMappings", "gidMappings"):
        mappings = linux.get(field)
        if mappings and user is None:
            add(("linux", field), "needs a user namespace (linux.namespaces has no user entry)")
        elif not mappings and user is not None and "path" not in user:
            add(("linux", field), "required with a new user namespace")
        if mappings:
            _check_id_mappings(("linux", field), mappings, add)


def _check_id_mappings(path, mappings, add):
    if len(mappings) > _MAX_ID_MAPPINGS:
        add(path, f"has {len(mappings)} entries; the kernel takes at most {_MAX_ID_MAPPINGS}")
    for i, m in enumerate(mappings):
        if m["size"] == 0:
            add(path + (i, "size"), "must be at least 1")
    for side in ("containerID", "hostID"):
        ranges = sorted((m[side], m[side] + m["size"], i) for i, m in enumerate(mappings))
        for (_, end, _), (start, _, i) in zip(ranges, ranges[1:]):
            if start < end:
                add(path + (i, side), "range overlaps another entry")


def _check_time_offsets(offsets, namespaces, add):
    if not offsets:
        return
    time_ns = namespaces.get("time")
    if time_ns is None or "path" in time_ns:
        add(("linux", "timeOffsets"), "needs a new time namespace (a time entry without path "
                                      "in linux.namespaces)")
    for clock, offset in offsets.items():
        if clock not in _TIME_CLOCKS:
            add(("linux", "timeOffsets", clock), f"unknown clock; one of {', '.join(_TIME_CLOCKS)}")
        if offset.get("nanosecs", 0) >= 1_000_000_000:
            add(("linux", "timeOffsets", clock, "nanosecs"), "must be below 1000000000")


def _check_devices(devices, add):
    seen = {}
    for i, device in enumerate(devices):
        path, where = device["path"], ("linux", "devices", i, "path")
        _check_no_nul(where, path, add)
        first = seen.setdefault(os.path.normpath(path), i)
        if first != i:
            add(where, f"duplicate device path {path} (also linux.devices[{first}])")
        if device.get("fileMode", 0) > 0o7777:
            add(("linux", "devices", i, "fileMode"), f"{device['fileMode']} has bits beyond "
                                                     f"the permission bits 07777")


def _bad_name(name, limit=None):
    """Why name cannot be a single file or interface name, or None."""
    if name in ("", ".", ".."):
        return "is not a name"
    if "/" in name or "\0" in name:
        return "must not contain / or NUL"
    if limit is not None and (len(name.encode()) > limit or any(c in name for c in ": \t\n")):
        return f"is not an interface name (at most {limit} bytes, no ':' or spaces)"
    return None


def _check_net_devices(devices, namespaces, add):
    if not devices:
        return
    if "network" not in namespaces:
        add(("linux", "netDevices"), "needs a network namespace (linux.namespaces has no "
                                     "network entry)")
    for host_name, device in devices.items():
        why = _bad_name(host_name, _IFNAMSIZ - 1)
        if why:
            add(("linux", "netDevices", host_name), why)
        if "name" in device:
            why = _bad_name(device["name"], _IFNAMSIZ - 1)
            if why:
                add(("linux", "netDevices", host_name, "name"), why)


def _check_cgroups(linux, add):
    cgroups_path = linux.get("cgroupsPath")
    if cgroups_path is not None and (".." in cgroups_path.split("/") or "\0" in cgroups_path):
        add(("linux", "cgroupsPath"), "must not contain a .. component")
    resources = linux.get("resources") or {}
    for key in resources.get("unified") or {}:
        why = _bad_name(key)
        if why:
            add(("linux", "resources", "unified", key), f"not a cgroup file name: {why}")
    cpu = resources.get("cpu") or {}
    quota, burst = cpu.get("quota"), cpu.get("burst")
    if quota is not None and burst is not None and quota > 0 and burst > quota:
        add(("linux", "resources", "cpu", "burst"), f"{burst} is larger than quota {quota}")


def _check_intel_rdt(rdt, add):
    if not rdt:
        return
    clos = rdt.get("closID")
    if clos is not None and clos != "/" and _bad_name(clos):
        add(("linux", "intelRdt", "closID"), f"{_show(clos)} is not / or a directory name")
    for field in ("l3CacheSchema", "memBwSchema"):
        if "\n" in rdt.get(field, ""):
            add(("linux", "intelRdt", field), "must not contain a newline")
    for i, line in enumerate(rdt.get("schemata") or ()):
        if "\n" in line:
            add(("linux", "intelRdt", "schemata", i), "must not contain a newline")


def _check_memory_policy(policy, add):
    if not policy:
        return
    mode, nodes = policy["mode"], policy.get("nodes", "")
    if mode in ("MPOL_DEFAULT", "MPOL_LOCAL") and nodes:
        add(("linux", "memoryPolicy", "nodes"), f"must be empty with {mode}")
    if mode in ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                "MPOL_PREFERRED_MANY") and not nodes:
        add(("linux", "memoryPolicy", "nodes"), f"required with {mode}")


def _check_sysctl(sysctl, namespaces, add):
    for key in sysctl:
        path = ("linux", "sysctl", key)
        relpath = sysctl_relpath(key)
        if relpath is None:
            add(path, "is not a sysctl name")
            continue
        dotted = relpath.replace("/", ".")
        if dotted.startswith("net."):
            needed = "network"
        elif dotted in _IPC_SYSCTLS or dotted.startswith("fs.mqueue."):
            needed = "ipc"
        elif dotted in _UTS_SYSCTLS:
            needed = "uts"
        else:
            add(path, "is not isolated by a namespace of the container; setting it would "
                      "change the host")
            continue
        if needed not in namespaces:
            article = "an" if needed == "ipc" else "a"
            add(path, f"needs {article} {needed} namespace "
                      f"(linux.namespaces has no {needed} entry)")


# -- meaning: features -------------------------------------------------------------------

def _features_semantics(doc, errors):
    low, high = version_key(doc["ociVersionMin"]), version_key(doc["ociVersionMax"])
    if high < low:
        errors.append((("ociVersionMax",), f"{doc['ociVersionMax']} is less than "
                                           f"ociVersionMin {doc['ociVersionMin']}"))


_SEMANTIC = {"config": _config_semantics, "features": _features_semantics}
