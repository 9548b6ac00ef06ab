"""The daemon's configuration: one table of keys, read from a TOML file, overridden by flags.

Like containerd's ``/etc/containerd/config.toml`` (``containerd config default``, ``containerd
config dump``), the file is ``/etc/pyrunc/supervisor.toml`` unless ``--config`` names another;
without it the built-in defaults apply, so a daemon with no file runs as it always did. The
file's sections and keys are :data:`KEYS`, each with its type, default, help text, and (for
some) the command-line flag and environment variable that override it: flags beat the
environment, which beats the file, which beats the defaults.

An unknown key, a value of the wrong type, a bad choice or address: :class:`ConfigError` with
one line naming the file and the key, and the daemon does not start (exit status 2).

Sections the daemon's helpers read (images, networks, GC) are declared here too, so one file
configures everything and ``config default`` documents it all: ``[registry]`` (mirrors and
hosts reached over plain HTTP), ``[cni]`` (plugin and network-config directories, timeout),
``[network]`` (the default network), ``[gc]`` (how often garbage is collected). A service reads
them through :class:`Settings` (the ``settings`` service of the daemon's registry).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from supervisor.daemon import DEFAULT_ADDRESS, DEFAULT_ROOT, DEFAULT_RUNTIME, DEFAULT_STATE

DEFAULT_PATH = "/etc/pyrunc/supervisor.toml"
FORMAT_VERSION = 1
LEVELS = ("debug", "info", "warn", "error")


class ConfigError(Exception):
    """A configuration the daemon refuses to start with; the message names the key."""


@dataclass(frozen=True)
class Key:
    name: str               # dotted: section.key ("grpc.address"); top-level keys have no dot
    kind: str               # see _CHECKS
    default: object
    help: str
    flag: str = ""          # the command-line flag that overrides it ("--address")
    short: str = ""         # its one-letter form ("-a")
    env: str = ""           # the environment variable that overrides it
    choices: tuple = ()

    @property
    def section(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition(".")[2]


KEYS: tuple[Key, ...] = (
    Key("version", "version", FORMAT_VERSION, "the format of this file"),
    Key("root", "path", DEFAULT_ROOT,
        "persistent data: the metadata database (and images, snapshots)", flag="--root"),
    Key("state", "path", DEFAULT_STATE,
        "runtime state: task bundles, shim sockets (a tmpfs: gone at reboot)", flag="--state"),
    Key("grpc.address", "socket", DEFAULT_ADDRESS,
        "the gRPC API's unix socket (mode 0600, its directory 0700)", flag="--address",
        short="-a", env="PYRUNC_SUPERVISOR_ADDRESS"),
    Key("runtime.binary", "str", DEFAULT_RUNTIME,
        "the default OCI runtime (runc-compatible): a name on PATH or a path",
        flag="--runtime", env="PYRUNC_SUPERVISOR_RUNTIME"),
    Key("runtime.root", "optpath", "",
        "the runtime's --root, one directory per namespace below it (empty: STATE/runtime)",
        flag="--runtime-root"),
    Key("debug.level", "choice", "info", "log level: debug logs every gRPC request",
        flag="--log-level", choices=LEVELS),
    Key("debug.format", "choice", "text", "log format: text (key=value) or json, one line each",
        flag="--log-format", choices=("text", "json")),
    Key("metrics.address", "listen", "",
        "Prometheus metrics at http://ADDRESS/metrics: a loopback HOST:PORT or unix:PATH "
        "(empty: off)", flag="--metrics-address"),
    Key("registry.mirrors", "mirrors", {},
        "registry host -> mirror endpoints tried first, e.g. \"docker.io\" = "
        "[\"http://127.0.0.1:5000\"] (reserved: for pulls made by the daemon; ctr pulls itself)"),
    Key("registry.insecure", "strlist", [],
        "registry hosts (HOST or HOST:PORT) reached over plain HTTP; localhost always is "
        "(reserved: for pulls made by the daemon)"),
    Key("pull.certs_dir", "optpath", "",
        "per-host TLS files, as containerd's certs.d: DIR/HOST[:PORT]/*.crt (CAs trusted for "
        "that host), NAME.cert + NAME.key (a client certificate); read at each pull",
        flag="--registry-certs-dir"),
    Key("pull.hosts_file", "optpath", "",
        "JSON file of per-host registry settings: {\"hosts\": {\"HOST[:PORT]\": {\"username\", "
        "\"password\", \"timeout\", \"insecure\", \"mirrors\", \"ca\", \"client_cert\", "
        "\"client_key\"}}} (credentials stay out of this "
        "file)", flag="--registry-config"),
    Key("cni.path", "pathlist", ["/usr/lib/cni", "/opt/cni/bin"],
        "directories searched for CNI plugins, in order (a flag gives them as DIR:DIR)",
        flag="--cni-path"),
    Key("cni.conf_dir", "optpath", "",
        "the networks' CNI conflists, created networks written here (empty: ROOT/net.d)",
        flag="--cni-conf-dir"),
    Key("cni.timeout", "seconds", 60.0, "seconds a CNI plugin may take", flag="--cni-timeout"),
    Key("network.default", "str", "bridge",
        "the network containers join when none is named (reserved: the network manager's "
        "default is bridge, 10.88.0.0/16)"),
    Key("network.default_subnet", "cidr", "10.88.0.0/16", "the default network's subnet "
        "(reserved, as network.default)"),
    Key("gc.interval", "seconds", 60.0,
        "at most this many seconds between looks for expired leases"),
    Key("gc.collect_interval", "seconds", 600.0,
        "seconds between background garbage collections (unreferenced content, snapshots); "
        "deletes and lease expiry collect too"),
)
BY_NAME = {k.name: k for k in KEYS}
SECTIONS = {k.section for k in KEYS if k.section}


# -- values ---------------------------------------------------------------------------------------

def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _want(key: Key, value, what: str):
    return ConfigError(f"{key.name}: expected {what}, got {_type_name(value)} {value!r}")


def _str(key: Key, value) -> str:
    if not isinstance(value, str):
        raise _want(key, value, "a string")
    if "\0" in value:
        raise ConfigError(f"{key.name}: contains a NUL byte")
    return value


def _path(key: Key, value) -> str:
    value = _str(key, value)
    if not value:
        raise ConfigError(f"{key.name}: must not be empty")
    return os.path.abspath(value)


def _optpath(key: Key, value) -> str:
    return _path(key, value) if _str(key, value) else ""


# sun_path holds 107 bytes, but grpc's unix: addresses bind at most 105 (it refuses 106 and 107
# with "Failed to bind"): one limit for every socket the daemon listens on.
MAX_SOCKET_PATH = 105


def _socket(key: Key, value) -> str:
    path = _path(key, value)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"{key.name}: socket path too long ({len(path.encode())} bytes, "
                          f"at most {MAX_SOCKET_PATH}): {path}")
    return path


def _choice(key: Key, value) -> str:
    value = _str(key, value)
    if value not in key.choices:
        raise ConfigError(f"{key.name}: {value!r} is not one of {', '.join(key.choices)}")
    return value


def _seconds(key: Key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _want(key, value, "a number of seconds")
    if not 0 < value < 10 ** 7:
        raise ConfigError(f"{key.name}: {value} seconds is out of range (above 0, below 1e7)")
    return float(value)


def _version(key: Key, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _want(key, value, "an integer")
    if value != FORMAT_VERSION:
        raise ConfigError(f"{key.name}: format version {value} is not supported "
                          f"(this supervisor reads version {FORMAT_VERSION})")
    return value


def _strlist(key: Key, value) -> list[str]:
    if not isinstance(value, list):
        raise _want(key, value, "an array of strings")
    return [_str(Key(f"{key.name}[{i}]", "str", "", ""), v) for i, v in enumerate(value)]


def _pathlist(key: Key, value) -> list[str]:
    return [_path(Key(f"{key.name}[{i}]", "path", "", ""), v)
            for i, v in enumerate(_strlist(key, value))]


def _listen(key: Key, value) -> str:
    """``HOST:PORT`` with a loopback HOST (the metrics are not authenticated), or ``unix:PATH``
    (a socket file, mode 0600); '' is off."""
    value = _str(key, value)
    if not value:
        return ""
    if value.startswith("unix:"):
        path = _socket(key, value[len("unix:"):])
        return "unix:" + path
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key.name}: {value!r} is not HOST:PORT (a port 1-65535) or unix:PATH")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    import ipaddress
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{key.name}: {host!r} is not a loopback address (127.0.0.1, ::1, "
                          "localhost): the metrics have no authentication")
    return value


def _cidr(key: Key, value) -> str:
    import ipaddress
    value = _str(key, value)
    try:
        return str(ipaddress.ip_network(value))
    except ValueError as e:
        raise ConfigError(f"{key.name}: {e}") from None


def _mirrors(key: Key, value) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise _want(key, value, "a table of host = [endpoints]")
    out = {}
    for host, endpoints in value.items():
        sub = Key(f"{key.name}.{host!r}" if "." in host else f"{key.name}.{host}", "", "", "")
        urls = _strlist(sub, endpoints)
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{sub.name}: {url!r} is not an http:// or https:// URL")
        out[host] = urls
    return out


_CHECKS = {"str": _str, "path": _path, "optpath": _optpath, "socket": _socket,
           "choice": _choice, "seconds": _seconds, "version": _version, "strlist": _strlist,
           "pathlist": _pathlist, "listen": _listen, "cidr": _cidr, "mirrors": _mirrors}


def check(key: Key, value):
    """``value`` for ``key``, normalised (paths absolute), or ConfigError."""
    return _CHECKS[key.kind](key, value)


# -- the settings in force ------------------------------------------------------------------------

class Settings:
    """The configuration in force: every key of :data:`KEYS` with its value, and where the file
    it came from is ('' for the defaults alone)."""

    def __init__(self, values: dict | None = None, source: str = ""):
        self.values = {k.name: _copy(k.default) for k in KEYS}
        self.values.update(values or {})
        self.source = source
        self.reload = None      # re-reads file, environment and flags (set by command.py)

    def __getitem__(self, name: str):
        return self.values[name]

    def get(self, name: str, default=None):
        return self.values.get(name, default)

    def section(self, name: str) -> dict:
        """A section's keys and values: ``section("registry")`` -> {"mirrors": ..., ...}."""
        return {k.leaf: self.values[k.name] for k in KEYS if k.section == name}


def _copy(value):
    if isinstance(value, dict):
        return {k: list(v) for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


def parse(doc: dict) -> dict:
    """The values of a parsed TOML document, checked; ConfigError for the first bad key."""
    values = {}

    def walk(table: dict, prefix: str) -> None:
        for name, value in table.items():
            dotted = f"{prefix}{name}"
            if dotted in BY_NAME:
                values[dotted] = check(BY_NAME[dotted], value)
            elif dotted in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"{dotted}: expected a section ([{dotted}]), got "
                                      f"{_type_name(value)} {value!r}")
                walk(value, dotted + ".")
            else:
                raise ConfigError(f"{dotted}: unknown key{_suggest(dotted)}")
    walk(doc, "")
    return values


def _suggest(name: str) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(BY_NAME) + sorted(SECTIONS), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def load(path: str, required: bool) -> Settings:
    """The settings of the file at ``path``; the defaults if it does not exist and is not
    ``required`` (the default path)."""
    try:
        with open(path, "rb") as f:
            import tomllib
            doc = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config {path}: no such file") from None
        return Settings()
    except OSError as e:
        raise ConfigError(f"config {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:   # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"config {path}: not valid TOML: {e}") from None
    try:
        return Settings(parse(doc), os.path.abspath(path))
    except ConfigError as e:
        raise ConfigError(f"config {path}: {e}") from None


def from_string(key: Key, raw: str):
    """A flag's or environment variable's text as the key's type: numbers parsed, lists split
    on ':' (paths, as PATH) or ',' (other strings)."""
    if key.kind in ("seconds", "version"):
        try:
            return float(raw) if key.kind == "seconds" else int(raw)
        except ValueError:
            raise ConfigError(f"{key.name}: {raw!r} is not a number") from None
    if key.kind in ("pathlist", "strlist"):
        return [part for part in raw.split(":" if key.kind == "pathlist" else ",") if part]
    return raw


def override(settings: Settings, given: dict, origin: str) -> None:
    """Apply values from flags or the environment (``{key name: raw string}``), checked."""
    for name, raw in given.items():
        key = BY_NAME[name]
        try:
            settings.values[name] = check(key, from_string(key, raw))
        except ConfigError as e:
            raise ConfigError(f"{origin} {e}") from None


def from_environment(environ=os.environ) -> dict:
    return {k.name: environ[k.env] for k in KEYS if k.env and environ.get(k.env)}


# -- TOML out -------------------------------------------------------------------------------------

def _toml(value) -> str:
    """A value as TOML (the kinds of KEYS: strings, numbers, arrays of strings, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        out = value.replace("\\", "\\\\").replace('"', '\\"')
        for ch in sorted({c for c in out if ord(c) < 0x20 or ord(c) == 0x7f}):
            out = out.replace(ch, f"\\u{ord(ch):04x}")
        return f'"{out}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def render(settings: Settings | None = None, comments: bool = True) -> str:
    """The configuration as a TOML file: ``config default`` (the defaults, each key with its help
    and flag) or ``config dump`` (the settings in force)."""
    settings = settings or Settings()
    lines = []
    if comments:
        lines += ["# pyrunc-supervisor configuration (pyrunc-supervisor --config FILE; default "
                  f"{DEFAULT_PATH}).",
                  "# Flags and their environment variables override it; "
                  "`pyrunc-supervisor config dump` shows what is in force.", ""]
    section = ""                # top-level keys come first, before any [section]
    for key in KEYS:
        if key.section != section:
            section = key.section
            lines += ["", f"[{section}]"]
        if comments:
            where = ", ".join(x for x in (key.flag, key.env and f"${key.env}") if x)
            lines.append(f"# {key.help}" + (f" ({where})" if where else ""))
        lines.append(f"{key.leaf} = {_toml(settings[key.name])}")
    return "\n".join(lines).lstrip("\n") + "\n"
