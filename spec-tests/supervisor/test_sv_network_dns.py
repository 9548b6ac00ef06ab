"""The containers' DNS resolver (supervisor/network/resolver.py, docs/network.md).

Containers on a user-defined network resolve each other by name (ID, host name, docker name)
through a resolver the supervisor serves at 127.0.0.11 inside each container's namespace; other
names go to upstream resolvers. The daemon runs inside a network namespace this module made
(test_sv_network.py's fixtures), the upstream is a small DNS server of the test's on an address of
that namespace (10.123.53.1), and ``host_unchanged`` checks the host's network is untouched.

Queries come from inside the containers: busybox ``nslookup`` (UDP, the resolver of its
resolv.conf), and for what busybox cannot do (TCP, floods) a Python client entered into the
container's network namespace (``nsenter --net=`` its namespace file).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time

import pytest

from sv_harness import PYTHON, wait_for
from test_sv_network import (DNS, NET, NetSupervisor, NetNS, containers,  # noqa: F401
                             host_unchanged, netsv)

UPSTREAM = "10.123.53.1"

# The test's upstream: A 192.0.2.7 for outside.test (no other type: NOERROR), over UDP and TCP; no
# answer ever for hole*.test
# (each such query is logged as a line of LOG), NXDOMAIN for anything else.
UPSTREAM_SERVER = r"""
import socket, struct, sys, threading
addr, log = sys.argv[1], sys.argv[2]
lock = threading.Lock()
def reply(q):
    qid, flags = struct.unpack_from("!HH", q)
    pos, labels = 12, []
    while q[pos]:
        labels.append(q[pos + 1:pos + 1 + q[pos]].decode().lower()); pos += 1 + q[pos]
    name, qtype = ".".join(labels), struct.unpack_from("!H", q, pos + 1)[0]
    question = q[12:pos + 5]
    if name.startswith("hole"):
        with lock, open(log, "a") as f:
            f.write(name + "\n")
        return None
    if name == "outside.test" and qtype == 1:
        return (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question
                + struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 7]))
    if name == "outside.test":
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question
    return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, 53))
    while True:
        q, peer = s.recvfrom(4096); r = reply(q)
        if r: s.sendto(r, peer)
def tcp_client(c):
    with c:
        while True:
            n = c.recv(2)
            if len(n) < 2: return
            q = b""
            while len(q) < struct.unpack("!H", n)[0]:
                q += c.recv(65535)
            r = reply(q)
            if r: c.sendall(struct.pack("!H", len(r)) + r)
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 53)); s.listen(64)
    while True:
        threading.Thread(target=tcp_client, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
print("ok", flush=True)
sys.stdin.read()
"""

# A client in a container's namespace. Commands (argv): udp NAME [TYPE] | tcp NAME [TYPE] |
# udpflood N | tcpflood N NAME. Prints JSON.
CLIENT = r"""
import json, socket, struct, sys, time
def query(name, qtype=1, qid=1):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)
def decode(r):
    qid, flags, qd, an = struct.unpack_from("!HHHH", r)
    pos = 12
    while r[pos]: pos += 1 + r[pos]
    pos += 5
    out = []
    for _ in range(an):
        rtype, _, _, size = struct.unpack_from("!HHIH", r, pos + 2)
        data = r[pos + 12:pos + 12 + size]
        out.append(socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, data)
                   if rtype in (1, 28) else data.hex())
        pos += 12 + size
    return {"rcode": flags & 0xF, "answers": out}
def recv_tcp(c):
    n = c.recv(2)
    if len(n) < 2: return None
    r = b""
    while len(r) < struct.unpack("!H", n)[0]:
        chunk = c.recv(65535)
        if not chunk: return None
        r += chunk
    return r
cmd = sys.argv[1]
if cmd == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)
    s.sendto(query(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1), ("127.0.0.11", 53))
    print(json.dumps(decode(s.recv(65535))))
elif cmd == "tcp":
    c = socket.create_connection(("127.0.0.11", 53), timeout=10)
    q = query(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    c.sendall(struct.pack("!H", len(q)) + q)
    print(json.dumps(decode(recv_tcp(c))))
elif cmd == "udpflood":
    n = int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for i in range(n):  # in bursts of 25 (the kernel drops what overflows a socket's buffer)
        s.sendto(query(f"hole{i}.test", 1, i), ("127.0.0.11", 53))
        if i % 25 == 24:
            time.sleep(0.02)
    servfail = set()
    try:
        while True:
            r = s.recv(65535)
            qid, flags = struct.unpack_from("!HH", r)
            if flags & 0xF == 2: servfail.add(qid)
    except socket.timeout:
        pass
    print(json.dumps({"servfail_at_once": len(servfail)}))
elif cmd == "tcpflood":
    n, name = int(sys.argv[2]), sys.argv[3]
    conns = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.11", 53), timeout=3)
        conns.append(c)
    time.sleep(0.5)
    answered = closed = 0
    for i, c in enumerate(conns):
        q = query(name, 1, i)
        try:
            c.sendall(struct.pack("!H", len(q)) + q)
            r = recv_tcp(c)
        except OSError:
            r = None
        if r and decode(r)["answers"]:
            answered += 1
        else:
            closed += 1
    for c in conns:
        c.close()
    print(json.dumps({"answered": answered, "closed": closed}))
"""


@pytest.fixture(scope="module")
def upstream(netsv, tmp_path_factory):
    """The test's DNS server on 10.123.53.1 (an address of the daemon's namespace)."""
    log = str(tmp_path_factory.mktemp("dns") / "holes")
    open(log, "w").close()
    netsv.netns.run("ip", "addr", "add", f"{UPSTREAM}/32", "dev", "lo")
    proc = subprocess.Popen(["nsenter", f"--net={netsv.netns.path}", sys.executable, "-c",
                             UPSTREAM_SERVER, UPSTREAM, log],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        yield log
    finally:
        proc.kill()
        proc.wait()


def netns_of(netsv, cid: str) -> str:
    return os.path.join(netsv.state, "network", "netns", netsv.ns, cid)


def client(netsv, cid: str, *args, timeout=60) -> dict:
    res = subprocess.run(["nsenter", f"--net={netns_of(netsv, cid)}", PYTHON, "-c", CLIENT,
                          *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def run_d(d, net, name, *cmd, extra=()) -> str:
    """``pyrunc-ctl run -d --name NAME --network NET``; the container is removed by ``net``."""
    cid = d.ctl("run", "-d", "--name", name, "--network", net, *extra, d.rootfs_path,
                *cmd).stdout.strip()
    d.made.append(cid)
    return cid


@pytest.fixture
def net(netsv, sv_rootfs):
    """A user-defined network; containers made with ``run_d`` are removed before it."""
    netsv.rootfs_path, netsv.made = sv_rootfs, []
    name = "dns" + secrets.token_hex(3)
    netsv.ctl("network", "create", name)
    yield name
    for cid in netsv.made:
        netsv.ctl("rm", "-f", cid, check=False)
    netsv.ctl("network", "rm", name, check=False)


def test_containers_resolve_each_other_by_name(netsv, net, upstream):
    srv = run_d(netsv, net, "web", "sleep", "600", extra=("--hostname", "webhost"))
    ip = json.loads(netsv.ctl("inspect", srv).stdout)[0]["NetworkSettings"]["IPAddress"]
    res = netsv.ctl("run", "--rm", "--network", net, netsv.rootfs_path, "sh", "-c",
                    "cat /etc/resolv.conf; echo ==; cat /etc/hosts; echo ==; "
                    "for n in web webhost %s WEB; do nslookup $n || exit 1; done; "
                    "ping -c 1 -W 5 web" % srv[:12])
    resolv, hosts, out = res.stdout.split("==\n")
    assert re.search(r"^nameserver 127\.0\.0\.11$", resolv, re.M), resolv
    assert resolv.count("nameserver") == 1 and "ndots:0" in resolv
    assert ip not in hosts  # peers come from the resolver only
    assert out.count(f"Address: {ip}") == 4, out
    assert "1 packets received" in out
    # UDP and TCP, A, AAAA (known name, no v6 address: no record) and PTR
    cli = run_d(netsv, net, "cli", "sleep", "600", extra=("--dns", UPSTREAM))
    assert client(netsv, cli, "udp", "web") == {"rcode": 0, "answers": [ip]}
    assert client(netsv, cli, "tcp", "web") == {"rcode": 0, "answers": [ip]}
    assert client(netsv, cli, "udp", "web", 28) == {"rcode": 0, "answers": []}
    ptr = client(netsv, cli, "tcp", ".".join(reversed(ip.split("."))) + ".in-addr.arpa", 12)
    assert ptr["rcode"] == 0 and bytes.fromhex(ptr["answers"][0]) == b"\x03web\x00"
    # a container that joins later is known at once (no file to rewrite, no cache)
    late = run_d(netsv, net, "late", "sleep", "600")
    late_ip = json.loads(netsv.ctl("inspect", late).stdout)[0]["NetworkSettings"]["IPAddress"]
    assert client(netsv, cli, "udp", "late")["answers"] == [late_ip]
    netsv.ctl("rm", "-f", late)
    assert client(netsv, cli, "udp", "late")["rcode"] == 3  # gone: the upstream's NXDOMAIN


def test_unknown_names_are_forwarded_and_networks_do_not_resolve_each_other(netsv, net,
                                                                            upstream):
    run_d(netsv, net, "alpha", "sleep", "600")
    other = "dnsb" + secrets.token_hex(3)
    netsv.ctl("network", "create", other)
    try:
        cli = run_d(netsv, other, "beta", "sleep", "600", extra=("--dns", UPSTREAM))
        for proto in ("udp", "tcp"):
            assert client(netsv, cli, proto, "outside.test") == {"rcode": 0,
                                                                 "answers": ["192.0.2.7"]}
            # alpha is on the other network: the name is not known here
            assert client(netsv, cli, proto, "alpha") == {"rcode": 3, "answers": []}
        res = netsv.ctl("run", "--rm", "--network", other, "--dns", UPSTREAM,
                        netsv.rootfs_path, "nslookup", "outside.test", check=False)
        assert res.returncode == 0 and "192.0.2.7" in res.stdout, res.stdout + res.stderr
        netsv.ctl("rm", "-f", cli)
    finally:
        netsv.ctl("network", "rm", other, check=False)


def test_resolver_bounds_hold_against_a_flood(netsv, net, upstream):
    """300 queries the upstream never answers: at most 64 reach it, the rest get SERVFAIL at
    once; 40 TCP clients: 16 are served, the others closed. Afterwards the resolver serves
    again."""
    run_d(netsv, net, "target", "sleep", "600")
    cli = run_d(netsv, net, "flooder", "sleep", "600", extra=("--dns", UPSTREAM))
    before = os.path.getsize(upstream)
    got = client(netsv, cli, "udpflood", 300)
    wait_for(lambda: os.path.getsize(upstream) > before, 10, what="the upstream's log")
    time.sleep(0.5)
    with open(upstream) as f:
        f.seek(before)
        reached = len(f.read().splitlines())
    assert 0 < reached <= 64, reached
    assert got["servfail_at_once"] >= 200, got  # ~236, less what the kernel may drop
    got = client(netsv, cli, "tcpflood", 40, "target")
    assert got == {"answered": 16, "closed": 24}, got
    # the bounds were counted back: forwards timed out (2 s), connections closed
    wait_for(lambda: client(netsv, cli, "udp", "outside.test")["answers"] == ["192.0.2.7"],
             20, what="the resolver after the flood")
    got = client(netsv, cli, "tcpflood", 16, "target")
    assert got == {"answered": 16, "closed": 0}, got


def listeners(netns_path: str) -> list[str]:
    """The sockets bound in a network namespace (whoever holds them), as ``ss`` lists them."""
    out = subprocess.run(["nsenter", f"--net={netns_path}", "ss", "-Haun", "state", "all"],
                         capture_output=True, text=True, check=True).stdout
    out += subprocess.run(["nsenter", f"--net={netns_path}", "ss", "-Hltn"],
                          capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[-2] if "UNCONN" in line or "LISTEN" in line else line
                  for line in out.splitlines())


def test_resolver_goes_with_the_network_and_comes_back_after_kill9(host_unchanged, sv_rootfs):
    """The resolver's sockets exist while the container's network does, are bound again by a
    daemon restarted after kill -9, and are gone with the container (its namespace, held open
    by the test, has no socket left)."""
    ns = NetNS()
    d = NetSupervisor(ns)
    held = []
    try:
        d.start()
        d.rootfs_path, d.made = sv_rootfs, []
        netname = "dnsk" + secrets.token_hex(3)
        d.ctl("network", "create", netname)
        before = d.leftovers()
        srv = run_d(d, netname, "srv", "sleep", "600")
        cli = run_d(d, netname, "cli", "sleep", "600")
        ip = json.loads(d.ctl("inspect", srv).stdout)[0]["NetworkSettings"]["IPAddress"]
        for cid in (srv, cli):
            assert listeners(netns_of(d, cid)) == ["127.0.0.11:53", "127.0.0.11:53"]
            held.append(os.open(netns_of(d, cid), os.O_RDONLY))
        d.kill9()
        d.start()
        assert client(d, cli, "udp", "srv")["answers"] == [ip]
        assert client(d, cli, "tcp", "srv")["answers"] == [ip]
        d.ctl("rm", "-f", srv, cli)
        for fd in held:
            assert listeners(f"/proc/{os.getpid()}/fd/{fd}") == []
        assert d.leftovers() == before
        d.ctl("network", "rm", netname)
    finally:
        for fd in held:
            os.close(fd)
        try:
            d.cleanup()
        finally:
            ns.delete()
