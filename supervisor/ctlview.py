"""Docker's output for pyrunc-ctl: tables, human times, ``--format`` templates, inspect JSON.

Tables are laid out like Go's text/tabwriter as the docker CLI configures it (minimum cell
width 10, padding 3, the last column unpadded), so a script that cuts Docker's columns cuts
ours. ``--format`` accepts the common subset of Go templates: ``{{.Field}}``, nested
``{{.A.B}}``, ``{{json .X}}``, ``{{index .M "key"}}``, ``{{.Label "key"}}``, ``{{upper .X}}``,
``{{lower .X}}``, a ``table`` prefix (adds the header, aligns columns) and the ``\\t``/``\\n``
escapes; anything else is a clear error (the caller exits 125 like docker with a bad template).
Values print as Go prints them: ``true``, ``map[k:v]``, ``[a b]``, ``<no value>``.
"""
from __future__ import annotations

import json
import re
import time

from supervisor.ctlmeta import ZERO_TIME, Record, user_labels


class TemplateError(Exception):
    pass


# -- time and size ----------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: the words docker uses in CREATED and STATUS."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def rfc3339(ts: float | None) -> str:
    if not ts:
        return ZERO_TIME
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    frac = f"{ts % 1:.9f}"[2:].rstrip("0")
    return f"{whole}.{frac}Z" if frac else whole + "Z"


def go_time(ts: float) -> str:
    """Go's default time.Time format, as ps's {{.CreatedAt}} shows it."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts))


def binary_size(n: float) -> str:
    """go-units' BytesSize (1024 steps, KiB/MiB...), as docker stats shows memory."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def decimal_size(n: float) -> str:
    """go-units' HumanSize (1000 steps, kB/MB...), as docker stats shows I/O."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


# -- container state --------------------------------------------------------------------------

def status_text(rec: Record, now: float | None = None) -> str:
    now = now or time.time()
    if rec.status in ("running", "paused"):
        text = "Up " + human_duration(now - (rec.started or rec.created))
        return text + " (Paused)" if rec.status == "paused" else text
    if rec.status == "exited":
        return f"Exited ({rec.exit_code}) {human_duration(now - (rec.finished or now))} ago"
    if rec.status == "restarting":
        return f"Restarting ({rec.exit_code}) {human_duration(now - (rec.finished or now))} ago"
    return "Created"


def command_text(rec: Record, trunc: bool = True) -> str:
    cmd = " ".join(rec.command)
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "\u2026"
    return json.dumps(cmd, ensure_ascii=False)


class PsContext:
    """The fields ``docker ps --format`` offers, computed from a Record."""

    HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
               "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
               "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
               "LocalVolumes": "LOCAL VOLUMES"}

    def __init__(self, rec: Record, trunc: bool = True, now: float | None = None):
        self.rec, self.trunc, self.now = rec, trunc, now or time.time()

    def field(self, name: str):
        rec = self.rec
        values = {
            "ID": rec.short_id if self.trunc else rec.id,
            "Image": rec.image,
            "Command": command_text(rec, self.trunc),
            "CreatedAt": go_time(rec.created),
            "RunningFor": human_duration(self.now - rec.created) + " ago",
            "Ports": rec.extra.get("ports", ""),
            "State": rec.status,
            "Status": status_text(rec, self.now),
            "Size": "0B",
            "Names": rec.name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(user_labels(rec.labels).items())),
            "Mounts": ",".join(m.get("destination", "") for m in rec.spec.get("mounts", [])
                               if m.get("type") == "bind"),
            "Networks": rec.extra.get("networks", ""),
            "LocalVolumes": "0",
        }
        if name not in values:
            raise TemplateError(f"template: can't evaluate field {name}")
        return values[name]

    def label(self, key: str) -> str:
        return user_labels(self.rec.labels).get(key, "")


PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")


# -- tables -------------------------------------------------------------------------------------

def tabwrite(lines: list[str], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like text/tabwriter (docker's settings); last cell unpadded."""
    rows = [ln.split("\t") for ln in lines]
    ncols = max((len(r) for r in rows), default=0)
    widths = [0] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + padding, minwidth)
    out = []
    for r in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])] + r[-1:]
        out.append("".join(cells))
    return "".join(ln + "\n" for ln in out)


# -- templates --------------------------------------------------------------------------------

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def go_value(v) -> str:
    """How text/template prints a value."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    return str(v)


class Template:
    """A parsed ``--format`` string; ``render(obj)`` gives one line (or block) of output."""

    def __init__(self, text: str):
        self.table = text.startswith("table")
        if self.table:
            text = text[len("table"):].lstrip()
        self.text = text.replace("\\t", "\t").replace("\\n", "\n")
        self.parts: list = []
        pos = 0
        for m in _ACTION.finditer(self.text):
            self.parts.append(self.text[pos:m.start()])
            self.parts.append(self._parse(m.group(1)))
            pos = m.end()
        tail = self.text[pos:]
        if "{{" in tail or "}}" in tail:
            raise TemplateError(f"template: unclosed action in {text!r}")
        self.parts.append(tail)

    @staticmethod
    def _parse(action: str) -> list[str]:
        tokens = _TOKEN.findall(action)
        if not tokens:
            raise TemplateError("template: missing value for command")
        head = tokens[0]
        if head.startswith("."):
            if len(tokens) > 1 and head != ".Label":
                raise TemplateError(f"template: unexpected {tokens[1]!r} after {head}")
        elif head not in ("json", "index", "upper", "lower", "join", "title", "len"):
            raise TemplateError(f'template: function "{head}" not defined')
        return tokens

    def fields(self) -> list[str]:
        return [p[0][1:] for p in self.parts if isinstance(p, list) and p[0].startswith(".")]

    def header(self, names: dict) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, list):
                key = p[-1][1:] if p[0] in ("json", "upper", "lower") else p[0][1:]
                out.append(names.get(key, key.upper()))
            else:
                out.append(p)
        return "".join(out)

    def render(self, obj) -> str:
        out = []
        for p in self.parts:
            out.append(p if isinstance(p, str) else self._eval(p, obj))
        return "".join(out)

    def _eval(self, tokens: list[str], obj) -> str:
        head = tokens[0]
        if head == ".Label":
            return obj.label(_unquote(tokens[1])) if len(tokens) > 1 else ""
        if head.startswith("."):
            return go_value(_path(obj, head))
        args = [_arg(t, obj) for t in tokens[1:]]
        if head == "json":
            return json.dumps(args[0] if args else None, separators=(",", ":"))
        if head == "index":
            if len(args) < 2:
                raise TemplateError("template: index needs a value and a key")
            cur = args[0]
            for key in args[1:]:
                try:
                    cur = cur[key] if not isinstance(cur, list) else cur[int(key)]
                except (KeyError, IndexError, TypeError, ValueError):
                    return "<no value>"
            return go_value(cur)
        if head in ("upper", "lower", "title"):
            return getattr(go_value(args[0] if args else ""), head)()
        if head == "len":
            return str(len(args[0] or ()))
        if head == "join":
            return args[1].join(str(x) for x in args[0] or ())
        raise TemplateError(f'template: function "{head}" not defined')


def _unquote(tok: str) -> str:
    return json.loads(tok) if tok.startswith('"') else tok


def _arg(tok: str, obj):
    if tok.startswith("."):
        return _path(obj, tok)
    return _unquote(tok)


def _path(obj, dotted: str):
    cur = obj
    for name in [n for n in dotted.split(".") if n]:
        if isinstance(cur, PsContext):
            cur = cur.field(name)
        elif isinstance(cur, dict):
            if name not in cur:
                raise TemplateError(f"template: can't evaluate field {name}")
            cur = cur[name]
        else:
            raise TemplateError(f"template: can't evaluate field {name} in {type(cur).__name__}")
    return cur


def render_all(fmt: str, objs: list, headers: dict | None = None) -> str:
    tpl = Template(fmt)
    lines = [tpl.render(o) for o in objs]
    if tpl.table:
        return tabwrite([tpl.header(headers or {})] + lines)
    return "".join(ln + "\n" for ln in lines)


# -- inspect ------------------------------------------------------------------------------------

def inspect(rec: Record) -> dict:
    """A container the way ``docker inspect`` shows it (the fields pyrunc can answer)."""
    spec, cfg = rec.spec, rec.config
    proc = spec.get("process") or {}
    user = proc.get("user") or {}
    binds = [f"{m['source']}:{m['destination']}" + (":ro" if "ro" in m.get("options", []) else "")
             for m in spec.get("mounts", []) if m.get("type") == "bind"]
    res = (spec.get("linux") or {}).get("resources") or {}
    mounts = []
    for m in spec.get("mounts", []):
        if m.get("type") == "bind" and re.search(r"/ctl/volumes/[^/]+/_data$", m["source"]):
            mounts.append({"Type": "volume", "Name": m["source"].split("/")[-2],
                           "Source": m["source"], "Destination": m["destination"],
                           "Driver": "local", "Mode": "z", "RW": "ro" not in m.get("options", []),
                           "Propagation": ""})
        elif m.get("type") == "bind":
            mounts.append({"Type": "bind", "Source": m["source"], "Destination": m["destination"],
                           "Mode": "", "RW": "ro" not in m.get("options", []),
                           "Propagation": "rprivate"})
        elif m.get("type") == "tmpfs" and m["destination"] in cfg.get("tmpfs", []):
            mounts.append({"Type": "tmpfs", "Source": "", "Destination": m["destination"],
                           "Mode": "", "RW": "ro" not in m.get("options", []),
                           "Propagation": ""})
    args = rec.command
    return {
        "Id": rec.id,
        "Created": rfc3339(rec.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": rec.status, "Running": rec.running, "Paused": rec.status == "paused",
            "Restarting": rec.status == "restarting", "OOMKilled": False, "Dead": False,
            "Pid": rec.pid if rec.running else 0, "ExitCode": rec.exit_code, "Error": "",
            "StartedAt": rfc3339(rec.started), "FinishedAt": rfc3339(rec.finished),
        },
        "Image": rec.image,
        "LogPath": rec.labels.get("io.pyrunc.ctl/log", ""),
        "Name": "/" + rec.name,
        "RestartCount": int(rec.labels.get("io.pyrunc/restart.count") or 0),
        "Driver": "",
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds or None,
            "NetworkMode": cfg.get("network", "default"),
            "RestartPolicy": cfg.get("restart", {"Name": "no", "MaximumRetryCount": 0}),
            "AutoRemove": bool(cfg.get("rm")),
            "Privileged": bool(cfg.get("privileged")),
            "ReadonlyRootfs": bool((spec.get("root") or {}).get("readonly")),
            "CapAdd": cfg.get("cap_add") or None,
            "CapDrop": cfg.get("cap_drop") or None,
            "Memory": int((res.get("memory") or {}).get("limit") or 0),
            "NanoCpus": int(cfg.get("nano_cpus", 0)),
            "PidsLimit": (res.get("pids") or {}).get("limit"),
            "Init": cfg.get("init"),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.get("hostname", ""),
            "Domainname": "",
            "User": "" if not user.get("uid") and not user.get("gid")
            else f"{user.get('uid', 0)}:{user.get('gid', 0)}",
            "AttachStdin": bool(cfg.get("interactive")),
            "AttachStdout": not cfg.get("detach"), "AttachStderr": not cfg.get("detach"),
            "Tty": bool(proc.get("terminal")),
            "OpenStdin": bool(cfg.get("interactive")),
            "StdinOnce": bool(cfg.get("interactive")) and not cfg.get("detach"),
            "Env": proc.get("env") or [],
            "Cmd": cfg.get("cmd", args) or None,
            "Image": rec.image,
            "Volumes": None,
            "WorkingDir": proc.get("cwd", "") if proc.get("cwd") != "/" else "",
            "Entrypoint": cfg.get("entrypoint") or None,
            "OnBuild": None,
            "Labels": user_labels(rec.labels),
        },
        "NetworkSettings": rec.extra.get("network_settings") or {
            "Bridge": "", "SandboxID": "", "Ports": {}, "IPAddress": "", "Gateway": "",
            "MacAddress": "", "Networks": {}},
    }
