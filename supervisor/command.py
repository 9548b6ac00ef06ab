"""pyrunc-supervisor's command line: the flags of the config table, ``config default|dump``,
``--version``, and starting the daemon with the settings in force.

    pyrunc-supervisor [--config FILE] [--address SOCK] [--log-level LEVEL] ...
    pyrunc-supervisor [--config FILE] [flags] config default|dump
    pyrunc-supervisor --version

Every flag is a key of supervisor/config.py's table (the help shows which), so a flag, its
environment variable and the file's key are one setting with one check. A bad setting, wherever
it comes from, is one line on stderr naming the key, and exit status 2; the daemon does not start.
"""
from __future__ import annotations

import argparse
import os
import sys

from supervisor import config, version
from supervisor.config import KEYS, ConfigError

PROG = "pyrunc-supervisor"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="containerd-compatible container "
                                 "supervisor")
    ap.add_argument("--config", "-c", metavar="FILE",
                    help=f"configuration file (default {config.DEFAULT_PATH}, if it exists)")
    for key in KEYS:
        if key.flag:
            names = (key.flag, key.short) if key.short else (key.flag,)
            env = f", ${key.env}" if key.env else ""
            ap.add_argument(*names, dest=key.name, metavar=key.leaf.upper(),
                            help=f"{key.help} [{key.name}{env}; default {key.default!r}]")
    version.add_flag(ap, "-v")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    cfg = sub.add_parser("config", help="print a configuration file",
                         description="print a configuration file")
    which = cfg.add_subparsers(dest="config_command", metavar="default|dump", required=True)
    which.add_parser("default", help="the defaults, every key with its help")
    which.add_parser("dump", help="the configuration in force: file, environment and flags")
    return ap


def settings_from(args: argparse.Namespace, environ=os.environ) -> config.Settings:
    """The file (the default path only if it exists), then the environment, then the flags."""
    path = args.config or config.DEFAULT_PATH
    settings = config.load(path, required=args.config is not None)
    for name, raw in config.from_environment(environ).items():
        config.override(settings, {name: raw}, f"${config.BY_NAME[name].env}:")
    for key in KEYS:
        raw = getattr(args, key.name, None) if key.flag else None
        if raw is not None:
            config.override(settings, {key.name: raw}, f"{key.flag}:")
    return settings


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if args.command == "config":
        text = config.render() if args.config_command == "default" else \
            config.render(settings, comments=False)
        sys.stdout.write(text)
        return 0
    from supervisor import daemon, log
    log.setup(settings["debug.level"], settings["debug.format"])
    settings.reload = lambda: settings_from(args)   # SIGHUP (operate.py)
    return daemon.run(daemon_config(settings))


# daemon.Config's fields and the keys that fill them (a field the Config does not have is
# skipped: the services read the rest from the ``settings`` service)
CONFIG_FIELDS = {"address": "grpc.address", "state": "state", "root": "root",
                 "runtime": "runtime.binary", "runtime_root": "runtime.root",
                 "cni_conf_dir": "cni.conf_dir", "cni_path": "cni.path",
                 "cni_timeout": "cni.timeout"}


def daemon_config(settings: config.Settings):
    import dataclasses
    from supervisor import daemon
    have = {f.name for f in dataclasses.fields(daemon.Config)}
    kw = {name: settings[key] for name, key in CONFIG_FIELDS.items() if name in have}
    kw["runtime"] = daemon.resolve_runtime(kw["runtime"])
    if "cni_path" in kw:
        kw["cni_path"] = ":".join(kw["cni_path"])
    return daemon.Config(**kw, settings=settings)
