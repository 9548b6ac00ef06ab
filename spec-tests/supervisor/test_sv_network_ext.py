"""Container networks, continued: published port ranges, IPv6 (dual-stack) networks, and 50
containers on one network (supervisor/network/, docs/network.md).

The fixtures are test_sv_network.py's: this module's daemon runs inside a network namespace the
module made (``nsenter --net``), and ``host_unchanged`` checks the host's interfaces, routes and
iptables chains (IPv4 and IPv6) are the same afterwards.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from sv_harness import wait_for
from test_sv_network import (NET, PORTS, containers, host_unchanged, netsv,  # noqa: F401
                             server)


def _published(netsv, cid) -> list[str]:
    return sorted(netsv.ctl("port", cid).stdout.split("\n")[:-1])


def _get(netsv, host: str, port: int) -> str:
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    return wait_for(lambda: netsv.netns.run("timeout", "5", "busybox", "wget", "-q", "-O", "-",
                                            url, check=False), 60, step=0.3, what=url)


MULTI = ("ip -o -4 addr show eth0; for p in 80 81 82; do mkdir -p /tmp/{d}$p && "
         "echo port$p > /tmp/{d}$p/index.html && httpd -p $p -h /tmp/{d}$p; done; exec sleep 600")


def test_published_port_ranges(netsv, sv_rootfs, containers):
    """-p 8000-8002:80-82 maps port by port; a host range with one container port takes the
    first free port of the range; a container range without host ports gets random ones;
    /udp ranges too."""
    base = 30000 + secrets.randbelow(3000) * 10
    d = secrets.token_hex(4)
    srv = netsv.run_container(sv_rootfs, ["sh", "-c", MULTI.format(d=d)],
                              {NET: "bridge", PORTS: f"{base}-{base + 2}:80-82,"
                               f"{base + 5}-{base + 7}:90-92/udp"})
    containers.append(srv)
    netsv.ip_of(srv)
    for i in range(3):
        assert f"port{80 + i}" in _get(netsv, "127.0.0.1", base + i)
    assert _published(netsv, srv) == sorted(
        [f"{80 + i}/tcp -> 0.0.0.0:{base + i}" for i in range(3)]
        + [f"{90 + i}/udp -> 0.0.0.0:{base + 5 + i}" for i in range(3)])
    # a host range for one container port: base..base+2 are taken, so base+3
    res = netsv.ctl("run", "-d", "-p", f"{base}-{base + 3}:80", sv_rootfs, "sleep", "600")
    containers.append(res.stdout.strip())
    assert _published(netsv, containers[-1]) == [f"80/tcp -> 0.0.0.0:{base + 3}"]
    res = netsv.ctl("run", "-d", "-p", "70-71", sv_rootfs, "sleep", "600")
    containers.append(res.stdout.strip())
    got = _published(netsv, containers[-1])
    assert [g.split(" -> ")[0] for g in got] == ["70/tcp", "71/tcp"]
    assert all(49153 <= int(g.rsplit(":", 1)[1]) <= 60999 for g in got), got


def test_bad_port_ranges_one_error_nothing_left(netsv, sv_rootfs, containers):
    before, rules = netsv.leftovers(), len(netsv.iptables_lines())
    ps_before = netsv.ctl("ps", "-a", "-q").stdout
    for bad, why in (("8000-8002:80-81", "differ in length"),
                     ("8002-8000:80", "end is below the start"),
                     ("8000-8002:80-x", "not a port number"),
                     ("0-5:80", "starts at 0"),
                     ("8000-70000:80", "out of range")):
        res = netsv.ctl("run", "--rm", "-p", bad, sv_rootfs, "true", check=False)
        err = [line for line in res.stderr.strip().splitlines()  # docker's hint is no error
               if not line.startswith("See 'pyrunc-ctl run --help'")]
        assert res.returncode == 125 and len(err) == 1, res.stderr
        assert bad in err[0] and why in err[0], err
    # the whole host range published already: one error, nothing made
    port = 40000 + secrets.randbelow(5000)
    res = netsv.ctl("run", "-d", "-p", f"{port}-{port + 1}:80-81", sv_rootfs, "sleep", "600")
    holder = res.stdout.strip()
    try:
        res = netsv.ctl("run", "--rm", "-p", f"{port}-{port + 1}:80", sv_rootfs, "true",
                        check=False)
        assert res.returncode == 125 and f"no free host port in {port}-{port + 1}" in res.stderr
    finally:
        netsv.ctl("rm", "-f", holder)
    assert netsv.ctl("ps", "-a", "-q").stdout == ps_before
    assert netsv.leftovers() == before
    assert len(netsv.iptables_lines()) == rules


def own_rules(netsv) -> list[str]:
    """iptables rules in the daemon's namespace, without the chains shared by all networks (made
    once, on first use, and kept: docs/network.md)."""
    shared = re.compile(r"^(\*|COMMIT|:|-A FORWARD -j PYRUNC-FORWARD$"
                        r"|-A PYRUNC-FORWARD -j PYRUNC-ISOLATION-1$)")
    return [line for line in netsv.iptables_lines() if not shared.match(line)]


# 50 containers at once on one network (the case; bench/network.py measures its time).
MANY = int(os.environ.get("SV_NETWORK_MANY", "50"))


def test_fifty_containers_on_one_network(netsv, sv_rootfs):
    """MANY containers started concurrently on one user-defined network: distinct addresses;
    each reaches the next by name (a ring: every one sends and answers), one more reaches all
    by address; after removal nothing is left: veths, namespace mounts, IPAM leases, records,
    files, iptables rules."""
    net = "many" + secrets.token_hex(3)
    rules = own_rules(netsv)
    netsv.ctl("network", "create", "--subnet", "10.77.200.0/24", net)
    before = netsv.leftovers()
    tag = secrets.token_hex(3)
    names = [f"m{tag}-{i}" for i in range(MANY)]
    ring = ("ip -o -4 addr show eth0; i=0; until ping -c 1 -W 2 {nxt} >/dev/null 2>&1; do "
            "i=$((i+1)); [ $i -gt 120 ] && echo unreached && exit 1; sleep 0.5; done; "
            "echo reached {nxt}; exec sleep 600")

    def start(i):
        script = ring.format(nxt=names[(i + 1) % MANY])
        return netsv.run_container(sv_rootfs, ["sh", "-c", script],
                                   {NET: net, "io.pyrunc.network.aliases": names[i]},
                                   cid=netsv.id("many"))
    made = []
    try:
        with ThreadPoolExecutor(8) as pool:
            made += pool.map(start, range(MANY))
        ips = [netsv.ip_of(cid) for cid in made]
        assert len(set(ips)) == MANY
        for i, cid in enumerate(made):
            wait_for(lambda: "reached" in netsv.output(cid) or "unreached" in netsv.output(cid),
                     120, what=f"{names[i]} pinging its neighbour")
            assert f"reached {names[(i + 1) % MANY]}" in netsv.output(cid), netsv.output(cid)
        script = " && ".join(f"ping -c 1 -W 5 {ip} >/dev/null" for ip in ips) + " && echo all"
        last = netsv.run_container(sv_rootfs, ["sh", "-c", script], {NET: net})
        made.append(last)
        code, out = netsv.finish(last)
        assert code == 0 and "all" in out, out
        assert len(netsv.leftovers()["veths"]) == len(before["veths"]) + MANY + 1
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(netsv.remove, made))
    assert netsv.leftovers() == before  # veths, netns mounts, IPAM leases, records, files
    assert not [line for line in netsv.iptables_lines()
                if any(re.search(rf"\b{re.escape(ip)}\b", line) for ip in ips)]
    netsv.ctl("network", "rm", net)
    assert own_rules(netsv) == rules
