"""Does the test suite leave the host's network as it found it?  (issue 12)

    python tools/hostnet.py save FILE     # before `make test`
    python tools/hostnet.py check FILE    # after it: exit 1, naming what changed

Tests run their daemons inside network namespaces they made and must never touch the host's
network; an engine may still leave something of its own behind (podman's ``cni-podman0``
bridge, an iptables chain, a named netns).  This compares, in the network namespace it runs in,
what can be left: the links (by name and kind), the routes of every table (IPv4, IPv6), the
named network namespaces (/run/netns) and the iptables/ip6tables rules and chains
(``iptables-save`` without its counters and comments).  It only reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys


def _lines(cmd: list[str]) -> list[str]:
    if shutil.which(cmd[0]) is None:
        return []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return [line.rstrip() for line in res.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    """``name kind`` of each link (``ip -d -o link``: the kind follows the link's flags)."""
    out = []
    for line in _lines(["ip", "-d", "-o", "link", "show"]):
        fields = line.split()
        name = fields[1].rstrip(":").split("@")[0]
        kinds = [k for k in ("bridge", "veth", "vxlan", "dummy", "macvlan", "ipvlan", "tun",
                             "wireguard") if f" {k} " in f" {line} "]
        out.append(f"{name} {kinds[0] if kinds else 'other'}")
    return sorted(out)


def _iptables(tool: str) -> list[str]:
    """Rules and chains, without counters (``[pkts:bytes]``), comments and table ends."""
    out = []
    for line in _lines([tool]):
        if line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        out.append(line)
    return sorted(out)


def _netns() -> list[str]:
    names = set()
    for d in ("/run/netns", "/var/run/netns"):
        try:
            names.update(os.listdir(d))
        except OSError:
            pass
    return sorted(names)


def snapshot() -> dict[str, list[str]]:
    return {
        "links": _links(),
        "routes": sorted(_lines(["ip", "route", "show", "table", "all"])),
        "routes6": sorted(_lines(["ip", "-6", "route", "show", "table", "all"])),
        "netns": _netns(),
        "iptables": _iptables("iptables-save"),
        "ip6tables": _iptables("ip6tables-save"),
    }


def differences(before: dict, after: dict) -> list[str]:
    """One line per item added or gone, ``+ kind: item`` / ``- kind: item``."""
    out = []
    for kind in sorted(set(before) | set(after)):
        old, new = set(before.get(kind, [])), set(after.get(kind, []))
        out += [f"+ {kind}: {item}" for item in sorted(new - old)]
        out += [f"- {kind}: {item}" for item in sorted(old - new)]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("save", "check"):
        print(__doc__.strip().splitlines()[2:4], file=sys.stderr)
        return 2
    action, path = argv
    if action == "save":
        with open(path, "w") as f:
            json.dump(snapshot(), f, indent=1)
        return 0
    with open(path) as f:
        before = json.load(f)
    diff = differences(before, snapshot())
    if diff:
        print("the host's network changed during the tests:", file=sys.stderr)
        for line in diff:
            print("  " + line, file=sys.stderr)
        return 1
    print("the host's network is as the tests found it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
