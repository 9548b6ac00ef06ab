"""Container networks through CNI (supervisor/network/, docs/network.md), with Debian's plugins.

Every test here runs its supervisor — and so the CNI plugins it starts — inside a network
namespace this module made (``nsenter --net=/run/netns/...``): the bridges, veths, NAT and
firewall rules, published ports and conntrack entries exist only there, and traffic goes only to
addresses inside it. ``host_unchanged`` checks that the host's interfaces, routes and iptables
chains are the same after the module as before it.

Assertions come from inside the containers (busybox ``httpd`` servers, ``wget`` clients) and from
counting what a container leaves behind in the test namespace: veths, namespace mounts, IPAM
allocations, iptables rules that name it, conntrack entries of its address, records and files.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess

import grpc
import pytest

from sv_harness import PYTHON, ROOT, Supervisor, make_spec, wait_for
from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb

NET = "io.pyrunc.network"
PORTS = "io.pyrunc.network.ports"
DNS = "io.pyrunc.network.dns"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed")
    return path


def _host_state() -> dict:
    """The host's interfaces, routes and iptables/nftables chains (the daemon never touches
    them: it runs in the test's namespace)."""
    def out(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    links = sorted(line.split(":")[1].strip().split("@")[0]
                   for line in out("ip", "-o", "link", "show").splitlines())
    chains = sorted(line for line in out("iptables-save").splitlines() if line.startswith(":"))
    chains = [c.split()[0] for c in chains]
    return {"links": links, "routes": sorted(out("ip", "route", "show", "table", "all")
                                             .splitlines()),
            "iptables chains": chains}


@pytest.fixture(scope="module")
def host_unchanged():
    for tool in ("ip", "iptables-save", "nsenter", "conntrack"):
        _need(tool)
    if not os.path.isdir("/usr/lib/cni") or not os.access("/usr/lib/cni/bridge", os.X_OK):
        pytest.skip("Debian's containernetworking-plugins are not installed (/usr/lib/cni)")
    before = _host_state()
    yield
    after = _host_state()
    assert after == before, "the host's network changed"


class NetNS:
    """A network namespace of the test's (ip netns: /run/netns/NAME), loopback up."""

    def __init__(self):
        self.name = "svtnet-" + secrets.token_hex(4)
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd, check=True, timeout=60):
        res = subprocess.run(["nsenter", f"--net={self.path}", *cmd], capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}: {res.stderr}")
        return res.stdout

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class NetSupervisor(Supervisor):
    """A supervisor started inside the test's network namespace."""

    def __init__(self, netns: NetNS, **kw):
        super().__init__(**kw)
        self.netns = netns

    def start(self) -> "NetSupervisor":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns.path}", PYTHON, "-m", "supervisor.daemon",
             "--address", self.sock, "--state", self.state, "--root", self.root,
             "--runtime", self.runtime],
            cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(self._answers, 60, what=f"daemon socket (log: {self.log_path})")
        return self

    # -- containers -----------------------------------------------------------------------------
    def out_path(self, cid: str) -> str:
        return os.path.join(self.base, f"{cid}.out")

    def run_container(self, rootfs, args, labels, cid=None, start=True) -> str:
        c = self.client()
        cid = cid or self.id()
        c.create_container(cid, make_spec(self, rootfs, cid, args), labels)
        out = "file://" + self.out_path(cid)
        c.tasks.Create(tpb.CreateTaskRequest(container_id=cid, stdout=out, stderr=out))
        if start:
            c.tasks.Start(tpb.StartRequest(container_id=cid))
        return cid

    def output(self, cid: str) -> str:
        try:
            with open(self.out_path(cid)) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def finish(self, cid: str, timeout=120) -> tuple[int, str]:
        code = self.client().wait(cid, timeout=timeout)
        return code, self.output(cid)

    def remove(self, cid: str) -> None:
        c = self.client()
        try:
            c.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9, all=True))
        except grpc.RpcError:
            pass
        try:
            c.wait(cid, timeout=60)
            c.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
        except grpc.RpcError:
            pass
        try:
            c.containers.Delete(cpb.DeleteContainerRequest(id=cid))
        except grpc.RpcError:
            pass

    def ip_of(self, cid: str) -> str:
        """The address a container printed (``ip -o -4 addr show eth0`` first in its output)."""
        m = wait_for(lambda: re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", self.output(cid)), 60,
                     what=f"{cid}'s address")
        return m.group(1)

    # -- what is left -----------------------------------------------------------------------------
    def leftovers(self) -> dict:
        """Everything containers can leave behind, in the test namespace and our state."""
        veths = [line.split(":")[1].strip() for line in
                 self.netns.run("ip", "-o", "link", "show", "type", "veth").splitlines()]
        net = os.path.join(self.state, "network")
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if line.split()[4].startswith(os.path.join(net, "netns") + "/"):
                    mounts.append(line.split()[4])
        ipam = []
        for base, _, names in os.walk(os.path.join(net, "ipam")):
            ipam += [os.path.join(base, n) for n in names
                     if n != "lock" and not n.startswith("last_reserved_ip")]
        records = [os.path.join(b, n) for b, _, ns in os.walk(os.path.join(net, "attachments"))
                   for n in ns]
        files = [os.path.join(b, d) for b, ds, _ in os.walk(os.path.join(net, "files"))
                 for d in ds if b != os.path.join(net, "files")]
        return {"veths": veths, "netns mounts": mounts, "ipam": ipam, "records": records,
                "files": files}

    def iptables_lines(self) -> list[str]:
        return [line for line in self.netns.run("iptables-save").splitlines()
                if line and not line.startswith("#")]

    def conntrack_of(self, ip: str) -> list[str]:
        out = self.netns.run("conntrack", "-L", check=False)
        return [line for line in out.splitlines() if f"={ip} " in line]


@pytest.fixture(scope="module")
def netsv(host_unchanged, sv_rootfs):
    ns = NetNS()
    daemon = NetSupervisor(ns)
    try:
        daemon.start()
        yield daemon
    finally:
        try:
            daemon.cleanup()
        finally:
            ns.delete()


@pytest.fixture
def containers(netsv):
    """Container ids a test made; removed afterwards whatever happened."""
    made: list[str] = []
    yield made
    for cid in made:
        netsv.remove(cid)


SERVE = "ip -o -4 addr show eth0; mkdir -p /tmp/{d} && echo {text} > /tmp/{d}/index.html && " \
        "exec httpd -f -p {port} -h /tmp/{d}"


def server(netsv, rootfs, containers, text, labels, port=80) -> str:
    d = secrets.token_hex(4)
    cid = netsv.run_container(rootfs, ["sh", "-c", SERVE.format(d=d, text=text, port=port)],
                              labels)
    containers.append(cid)
    return cid


def fetch(netsv, rootfs, containers, url, labels, tries=60) -> tuple[int, str]:
    """wget from a new container (retrying while the server starts), its status and output."""
    script = (f"for i in $(seq {tries}); do timeout 5 wget -q -O - {url} && exit 0; sleep 0.5; "
              "done; exit 1")
    cid = netsv.run_container(rootfs, ["sh", "-c", script], labels)
    containers.append(cid)
    return netsv.finish(cid)


# -- tests ---------------------------------------------------------------------------------------

def test_container_gets_an_address_hosts_resolv_and_hostname(netsv, sv_rootfs, containers):
    cid = netsv.run_container(sv_rootfs, [
        "sh", "-c", "ip -o -4 addr show eth0; cat /etc/hosts; echo ==; cat /etc/resolv.conf; "
        "echo ==; hostname; ip route"], {NET: "bridge", DNS: "192.0.2.53"})
    containers.append(cid)
    code, out = netsv.finish(cid)
    assert code == 0, out
    ip = netsv.ip_of(cid)
    hosts, resolv, rest = out.split("==\n")
    assert re.search(rf"^{re.escape(ip)}\s.*\b{cid}\b", hosts, re.M), hosts
    assert "127.0.0.1\tlocalhost" in hosts
    assert resolv.strip() == "nameserver 192.0.2.53"
    assert rest.splitlines()[0] == cid[:12]
    assert "default via 10.88.0.1" in rest


def test_containers_on_the_bridge_reach_each_other_by_ip(netsv, sv_rootfs, containers):
    srv = server(netsv, sv_rootfs, containers, "hello-bridge", {NET: "bridge"})
    ip = netsv.ip_of(srv)
    code, out = fetch(netsv, sv_rootfs, containers, f"http://{ip}/", {NET: "bridge"})
    assert code == 0 and "hello-bridge" in out, out


def test_published_port_reachable_from_the_namespace_loopback(netsv, sv_rootfs, containers):
    port = 20000 + secrets.randbelow(5000)
    srv = server(netsv, sv_rootfs, containers, "hello-port", {NET: "bridge",
                                                               PORTS: f"{port}:8080"}, port=8080)
    netsv.ip_of(srv)
    for host in ("127.0.0.1", "10.88.0.1"):
        body = wait_for(lambda: netsv.netns.run(
            "timeout", "5", "busybox", "wget", "-q", "-O", "-", f"http://{host}:{port}/",
            check=False), 60, step=0.3, what=f"{host}:{port}")
        assert "hello-port" in body
    # and from another container, through the host's address (hairpin)
    code, out = fetch(netsv, sv_rootfs, containers, f"http://10.88.0.1:{port}/", {NET: "bridge"})
    assert code == 0 and "hello-port" in out, out


def test_removal_leaves_nothing(netsv, sv_rootfs, containers):
    before = netsv.leftovers()
    rules_before = len(netsv.iptables_lines())
    srv = server(netsv, sv_rootfs, containers, "bye", {NET: "bridge", PORTS: "8080"}, port=8080)
    ip = netsv.ip_of(srv)
    code, out = fetch(netsv, sv_rootfs, containers, f"http://{ip}:8080/", {NET: "bridge"})
    assert code == 0 and "bye" in out
    assert netsv.leftovers() != before  # the count sees them while they exist
    assert any(ip in line for line in netsv.iptables_lines())
    for cid in list(containers):
        netsv.remove(cid)
    containers.clear()
    assert netsv.leftovers() == before
    assert not [line for line in netsv.iptables_lines() if ip + "/" in line or f"{ip}:" in line
                or f" {ip} " in line]
    assert len(netsv.iptables_lines()) == rules_before
    assert netsv.conntrack_of(ip) == []


def _json(text: str):
    return json.loads(text)


def test_ctl_networks_names_and_ports(netsv, sv_rootfs, containers):
    """network create/ls/inspect/rm, run --network -p --hostname, inspect, port; two containers
    on a user-defined network reach each other by name."""
    net = "n" + secrets.token_hex(3)
    subnet = f"10.77.{secrets.randbelow(200)}.0/24"
    netid = netsv.ctl("network", "create", "--subnet", subnet, net).stdout.strip()
    try:
        assert re.fullmatch(r"[0-9a-f]{12}", netid)
        assert net in netsv.ctl("network", "ls").stdout
        srv, cli = netsv.id("srv"), netsv.id("cli")
        containers.extend([srv, cli])
        d = secrets.token_hex(4)
        netsv.ctl("run", "-d", "--name", srv, "--network", net, "-p", "8080", "--hostname",
                  "websrv", sv_rootfs, "sh", "-c",
                  f"mkdir -p /tmp/{d} && echo by-name > /tmp/{d}/index.html && "
                  f"exec httpd -f -p 8080 -h /tmp/{d}")
        info = _json(netsv.ctl("inspect", srv).stdout)[0]["NetworkSettings"]
        ip = info["IPAddress"]
        assert ipaddress_in(ip, subnet) and info["Networks"][net]["IPAddress"] == ip
        host_port = info["Ports"]["8080/tcp"][0]["HostPort"]
        assert netsv.ctl("port", srv).stdout.strip() == f"8080/tcp -> 0.0.0.0:{host_port}"
        inspected = _json(netsv.ctl("network", "inspect", net).stdout)[0]
        assert inspected["IPAM"]["Config"][0]["Subnet"] == subnet
        assert inspected["Containers"][srv]["IPv4Address"] == ip
        res = netsv.ctl("run", "--rm", "--name", cli, "--network", net, sv_rootfs, "sh", "-c",
                        f"for i in $(seq 60); do timeout 5 wget -q -O - http://{srv}:8080/ "
                        "&& exit 0; sleep 0.5; done; exit 1", check=False, timeout=120)
        assert res.returncode == 0 and "by-name" in res.stdout, res.stdout + res.stderr
        res = netsv.ctl("run", "--rm", "--network", net, sv_rootfs, "sh", "-c",
                        "timeout 5 wget -q -O - http://websrv:8080/", check=False)
        assert "by-name" in res.stdout, res.stdout + res.stderr
        body = wait_for(lambda: netsv.netns.run(
            "timeout", "5", "busybox", "wget", "-q", "-O", "-",
            f"http://127.0.0.1:{host_port}/", check=False), 60, step=0.3, what="published")
        assert "by-name" in body
        busy = netsv.ctl("network", "rm", net, check=False)
        assert busy.returncode == 125 and "active endpoints" in busy.stderr
    finally:
        for cid in list(containers):
            netsv.remove(cid)
        containers.clear()
        netsv.ctl("network", "rm", net, check=False)
    assert net not in netsv.ctl("network", "ls").stdout
    assert "pyr-" + netid[:10] not in netsv.netns.run("ip", "-o", "link")


def ipaddress_in(ip: str, subnet: str) -> bool:
    import ipaddress
    return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)


def test_two_networks_are_isolated(netsv, sv_rootfs, containers):
    a, b = "a" + secrets.token_hex(3), "b" + secrets.token_hex(3)
    netsv.ctl("network", "create", a)
    netsv.ctl("network", "create", b)
    try:
        srv = server(netsv, sv_rootfs, containers, "only-a", {NET: a})
        ip = netsv.ip_of(srv)
        code, out = fetch(netsv, sv_rootfs, containers, f"http://{ip}/", {NET: a})
        assert code == 0 and "only-a" in out
        for other in (b, "bridge"):
            code, out = fetch(netsv, sv_rootfs, containers, f"http://{ip}/", {NET: other},
                              tries=2)
            assert code != 0 and "only-a" not in out, (other, out)
    finally:
        for cid in list(containers):
            netsv.remove(cid)
        containers.clear()
        netsv.ctl("network", "rm", a, b, check=False)
