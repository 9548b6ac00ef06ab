"""Container networks, continued: published port ranges, IPv6 (dual-stack) networks, and 50
containers on one network (supervisor/network/, docs/network.md).

The fixtures are test_sv_network.py's: this module's daemon runs inside a network namespace the
module made (``nsenter --net``), and ``host_unchanged`` checks the host's interfaces, routes and
iptables chains (IPv4 and IPv6) are the same afterwards.
"""
from __future__ import annotations

import ipaddress
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


def own_rules(netsv, tool: str = "iptables-save") -> list[str]:
    """iptables (or ip6tables) rules in the daemon's namespace, without the chains shared by all
    networks and containers (ours and portmap's: made once, on first use, and kept)."""
    shared = re.compile(r"^(\*|COMMIT|:|-A FORWARD -j PYRUNC-FORWARD$"
                        r"|-A PYRUNC-FORWARD -j PYRUNC-ISOLATION-1$"
                        r"|-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-(DNAT|MASQ)$"
                        r"|-A CNI-HOSTPORT-(MASQ|SETMARK) )")
    return [line for line in netsv.netns.run(tool).splitlines()
            if line and not line.startswith("#") and not shared.match(line)]


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


# -- IPv6 ----------------------------------------------------------------------------------------

# A server in the "outside" namespace: answers every HTTP request with the peer's address (what
# the outside world sees of a container: masqueraded, the daemon namespace's address).
PEER_SERVER = r"""
import socket, sys, threading
def serve(family, addr):
    s = socket.socket(family); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, 8080)); s.listen(16)
    while True:
        c, peer = s.accept()
        with c:
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npeer=" +
                      peer[0].encode() + b"\n")
threading.Thread(target=serve, args=(socket.AF_INET6, "fd99::2"), daemon=True).start()
threading.Thread(target=serve, args=(socket.AF_INET, "10.123.99.2"), daemon=True).start()
print("ok", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def outside(netsv):
    """Another namespace, linked to the daemon's by a veth pair (fd99::1 / 10.123.99.1 on the
    daemon's side, fd99::2 / 10.123.99.2 outside), with PEER_SERVER on port 8080: the world
    beyond the daemon's namespace, as the containers' masqueraded traffic reaches it."""
    from test_sv_network import NetNS
    out = NetNS()
    tag = secrets.token_hex(3)
    inner, outer = "vi" + tag, "vo" + tag
    proc = None
    try:
        netsv.netns.run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        netsv.netns.run("ip", "link", "set", outer, "netns", out.name)
        for ns, dev, six, four in ((netsv.netns, inner, "fd99::1", "10.123.99.1"),
                                   (out, outer, "fd99::2", "10.123.99.2")):
            ns.run("ip", "addr", "add", f"{six}/64", "dev", dev, "nodad")
            ns.run("ip", "addr", "add", f"{four}/24", "dev", dev)
            ns.run("ip", "link", "set", dev, "up")
        proc = subprocess.Popen(["nsenter", f"--net={out.path}", "python3", "-c", PEER_SERVER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ok"
        yield out
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        netsv.netns.run("ip", "link", "del", inner, check=False)
        out.delete()


def _ips(netsv, cid) -> tuple[str, str]:
    info = json.loads(netsv.ctl("inspect", cid).stdout)[0]["NetworkSettings"]
    return info["IPAddress"], info["GlobalIPv6Address"]


def _wget(netsv, net, url, tries=30) -> tuple[int, str]:
    res = netsv.ctl("run", "--rm", "--network", net, netsv_rootfs(netsv), "sh", "-c",
                    f"for i in $(seq {tries}); do timeout 5 wget -q -O - '{url}' && exit 0; "
                    "sleep 0.5; done; exit 1", check=False, timeout=120)
    return res.returncode, res.stdout + res.stderr


def netsv_rootfs(netsv):
    return netsv.rootfs_path


def test_ipv6_dual_stack_network(netsv, sv_rootfs, outside):
    """network create --ipv6: containers get an IPv4 and an IPv6 address, reach each other
    over IPv6 (and by name: AAAA), reach the outside masqueraded in both families, are isolated
    from another network over IPv6 too, and publish ports over IPv6 (from the daemon's
    namespace's IPv6 addresses); after removal no IPv6 rule is left."""
    netsv.rootfs_path = sv_rootfs
    v4_rules, v6_rules = own_rules(netsv), own_rules(netsv, "ip6tables-save")
    a, b = "six" + secrets.token_hex(3), "sixb" + secrets.token_hex(3)
    sub_a = f"fd77:{secrets.randbelow(0xffff):x}::/64"
    netsv.ctl("network", "create", "--ipv6", "--subnet", sub_a, a)
    netsv.ctl("network", "create", "--ipv6", b)   # a unique local /64 of its own
    made = []
    try:
        info = json.loads(netsv.ctl("network", "inspect", a).stdout)[0]
        assert info["EnableIPv6"] is True
        subnets = [c["Subnet"] for c in info["IPAM"]["Config"]]
        assert sub_a in subnets and any("." in s for s in subnets), subnets
        port = 31000 + secrets.randbelow(3000)
        d = secrets.token_hex(4)
        srv = netsv.ctl("run", "-d", "--name", "six" + d, "--network", a, "-p", f"{port}:80",
                        sv_rootfs, "sh", "-c", f"mkdir -p /tmp/{d} && echo v6-ok > "
                        f"/tmp/{d}/index.html && exec httpd -f -p 80 -h /tmp/{d}").stdout.strip()
        made.append(srv)
        ip4, ip6 = _ips(netsv, srv)
        assert ipaddress.ip_address(ip6) in ipaddress.ip_network(sub_a) and ip4
        code, out = _wget(netsv, a, f"http://[{ip6}]/")
        assert code == 0 and "v6-ok" in out, out
        res = netsv.ctl("run", "--rm", "--network", a, sv_rootfs, "nslookup", "-type=aaaa",
                        "six" + d, check=False)
        assert ip6 in res.stdout, res.stdout + res.stderr
        # another network, IPv6 too: isolated
        code, out = _wget(netsv, b, f"http://[{ip6}]/", tries=2)
        assert code != 0 and "v6-ok" not in out, out
        # the outside sees the daemon namespace's addresses (masquerade), in both families
        code, out = _wget(netsv, a, "http://[fd99::2]:8080/")
        assert code == 0 and "peer=fd99::1" in out, out
        code, out = _wget(netsv, a, "http://10.123.99.2:8080/")
        assert code == 0 and "peer=10.123.99.1" in out, out
        # published over IPv6: from the daemon's namespace (its address on the outside link)
        # and from the outside namespace (DNAT in PREROUTING)
        assert "v6-ok" in _get(netsv, "fd99::1", port)
        body = wait_for(lambda: outside.run("timeout", "5", "busybox", "wget", "-q", "-O", "-",
                                            f"http://[fd99::1]:{port}/", check=False),
                        60, step=0.3, what="the published port from outside over IPv6")
        assert "v6-ok" in body
        assert any(ip6 in line for line in own_rules(netsv, "ip6tables-save"))
    finally:
        for cid in made:
            netsv.ctl("rm", "-f", cid, check=False)
        netsv.ctl("network", "rm", a, b, check=False)
    assert own_rules(netsv) == v4_rules
    assert own_rules(netsv, "ip6tables-save") == v6_rules


def test_ipv6_bad_input_one_error_nothing_made(netsv):
    name = "sixbad" + secrets.token_hex(3)
    sub = f"fd66:{secrets.randbelow(0xffff):x}::/64"
    netsv.ctl("network", "create", "--ipv6", "--subnet", sub, name)
    made = [name]
    try:
        for args, text in (
                (["--subnet", "fd55::/64"], "needs --ipv6"),
                (["--ipv6", "--subnet", "fd55::/64", "--subnet", "fd56::/64"],
                 "at most one IPv4 and one IPv6"),
                (["--ipv6", "--subnet", sub.replace("::/64", "::1:0:0:0/80")], "overlaps"),
                (["--ipv6", "--subnet", "fd55::1/64"], "subnet"),
                (["--ipv6", "--subnet", "fd55::/64", "--gateway", "fd56::1"], "gateway"),
                (["--ipv6", "--gateway", "fd56::1"], "IPv6 --gateway needs an IPv6 --subnet")):
            other = "x" + secrets.token_hex(3)
            made.append(other)
            res = netsv.ctl("network", "create", *args, other, check=False)
            assert res.returncode == 1 and text in res.stderr, (args, res.stderr)
            assert other not in netsv.ctl("network", "ls").stdout
    finally:
        netsv.ctl("network", "rm", *made, check=False)
