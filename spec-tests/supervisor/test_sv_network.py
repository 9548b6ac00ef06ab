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


# What of the host's network this module could change, were the daemon not in its namespace:
# interfaces the plugins or the tests make, routes of the subnets used here, CNI's and pyrunc's
# iptables chains and rules. Only these are compared (other engineers' tests may come and go on
# the host meanwhile; CI runs one suite at a time, where nothing else changes either).
OURS = re.compile(r"pyr|veth|broken0|slow0|\b10\.(?:88|89|77|66|55|44|33|34|123)\.|CNI|PYRUNC"
                  r"|pyrunc|svtnet|^d[0-9a-f]{6}$|\bfd[0-9a-f]{2}:|^v[io][0-9a-f]{6}$")


def _host_state() -> dict:
    """The host's interfaces, routes and iptables chains and rules that could be ours."""
    def out(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    links = [line.split(":")[1].strip().split("@")[0]
             for line in out("ip", "-o", "link", "show").splitlines()]
    routes = (out("ip", "route", "show", "table", "all")
              + out("ip", "-6", "route", "show", "table", "all")).splitlines()
    rules = [f"{tool}: " + line.split(" [")[0] for tool in ("iptables-save", "ip6tables-save")
             for line in out(tool).splitlines() if line.startswith((":", "-"))]
    return {what: sorted(x for x in items if OURS.search(x))
            for what, items in (("links", links), ("routes", routes), ("iptables", rules))}


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

    def __init__(self, netns: NetNS, extra=(), **kw):
        super().__init__(**kw)
        self.netns = netns
        self.extra = list(extra)

    def start(self) -> "NetSupervisor":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns.path}", PYTHON, "-m", "supervisor.daemon",
             "--address", self.sock, "--state", self.state, "--root", self.root,
             "--runtime", self.runtime, *self.extra],
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

    def processes_of(self, path: str) -> list[int]:
        from sv_harness import processes_mentioning
        return processes_mentioning(path)

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


def warm_up(netsv, rootfs) -> None:
    """One container with a published port, run and removed: the chains portmap and firewall
    share between containers exist from then on (they are made once, never per container)."""
    cid = netsv.run_container(rootfs, ["true"], {NET: "bridge", PORTS: "80"})
    try:
        assert netsv.client().wait(cid, timeout=120) == 0
    finally:
        netsv.remove(cid)


def test_removal_leaves_nothing(netsv, sv_rootfs, containers):
    warm_up(netsv, sv_rootfs)
    before = netsv.leftovers()
    rules_before = len(netsv.iptables_lines())
    srv = server(netsv, sv_rootfs, containers, "bye", {NET: "bridge", PORTS: "8080"}, port=8080)
    ip = netsv.ip_of(srv)
    code, out = fetch(netsv, sv_rootfs, containers, f"http://{ip}:8080/", {NET: "bridge"})
    assert code == 0 and "bye" in out
    assert netsv.leftovers() != before  # the count sees them while they exist
    assert any(ip in line for line in netsv.iptables_lines())
    assert netsv.conntrack_of(ip)  # the fetch left entries (TIME_WAIT) to be flushed
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
        by_name = {e["Name"]: e for e in inspected["Containers"].values()}  # keyed by ID
        assert by_name[srv]["IPv4Address"] == ip
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
        assert busy.returncode == 1 and "active endpoints" in busy.stderr
    finally:
        for name in list(containers):  # docker names (labels): ctl resolves them
            netsv.ctl("rm", "-f", name, check=False)
        containers.clear()
        netsv.ctl("network", "rm", net, check=False)
    assert net not in netsv.ctl("network", "ls").stdout
    assert "pyr-" + netid[:10] not in netsv.netns.run("ip", "-o", "link")
    assert not [line for line in netsv.iptables_lines()  # its masquerading and isolation rules
                if f"pyrunc network {net}" in line or "pyr-" + netid[:10] in line]


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


def _create_fails(netsv, rootfs, labels, containers) -> tuple:
    cid = netsv.id("bad")
    containers.append(cid)
    with pytest.raises(grpc.RpcError) as exc:
        netsv.run_container(rootfs, ["true"], labels, cid=cid)
    assert cid not in netsv.task_dirs()
    return exc.value.code(), exc.value.details()


def test_bad_input_one_clear_error_and_nothing_left(netsv, sv_rootfs, containers):
    before = netsv.leftovers()
    code, msg = _create_fails(netsv, sv_rootfs, {NET: "nosuchnet"}, containers)
    assert code == grpc.StatusCode.NOT_FOUND and "network nosuchnet not found" in msg
    for bad in ("80:abc", "99999", "1.2.3:80:80", "80/sctp"):
        code, msg = _create_fails(netsv, sv_rootfs, {NET: "bridge", PORTS: bad}, containers)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and bad in msg, msg
    code, msg = _create_fails(netsv, sv_rootfs, {NET: "bridge", DNS: "not-an-ip"}, containers)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not-an-ip" in msg
    # a CNI plugin that does not exist (an administrator's conflist)
    conf = os.path.join(netsv.root, "net.d", "broken.conflist")
    with open(conf, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "broken",
                   "plugins": [{"type": "nosuchplugin"}]}, f)
    try:
        code, msg = _create_fails(netsv, sv_rootfs, {NET: "broken"}, containers)
        assert "nosuchplugin" in msg and "not found" in msg, msg
    finally:
        os.unlink(conf)
    # a plugin that fails (host-local refuses its range): its own error, everything undone
    with open(conf, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "broken", "plugins": [
            {"type": "bridge", "bridge": "broken0", "ipam": {
                "type": "host-local", "ranges": [[{"subnet": "10.33.0.0/24",
                                                   "rangeStart": "10.34.0.5"}]]}}]}, f)
    try:
        code, msg = _create_fails(netsv, sv_rootfs, {NET: "broken"}, containers)
        assert "CNI plugin bridge (ADD) failed" in msg and "10.34.0.5" in msg, msg
    finally:
        os.unlink(conf)
        netsv.netns.run("ip", "link", "del", "broken0", check=False)  # an admin's bridge
    # a port published twice, and a port something listens on
    port = 25000 + secrets.randbelow(5000)
    first = server(netsv, sv_rootfs, containers, "first", {NET: "bridge", PORTS: f"{port}:80"})
    netsv.ip_of(first)
    code, msg = _create_fails(netsv, sv_rootfs, {NET: "bridge", PORTS: f"{port}:81"},
                              containers)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already published" in msg
    listener = subprocess.Popen(
        ["nsenter", f"--net={netsv.netns.path}", PYTHON, "-c",
         "import socket,sys; s=socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); "
         "s.listen(); print('ok', flush=True); sys.stdin.read()", str(port + 1)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ok"
        code, msg = _create_fails(netsv, sv_rootfs, {NET: "bridge", PORTS: f"{port + 1}:80"},
                                  containers)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "in use" in msg, msg
    finally:
        listener.kill()
        listener.wait()
    netsv.remove(first)
    assert netsv.leftovers() == before
    # networks: overlapping subnets, reserved and invalid names, bad gateways
    net = "o" + secrets.token_hex(3)
    netsv.ctl("network", "create", "--subnet", "10.66.0.0/16", net)
    dummy = "d" + secrets.token_hex(3)  # a route of the daemon's namespace
    netsv.netns.run("ip", "link", "add", dummy, "type", "bridge")
    netsv.netns.run("ip", "addr", "add", "10.123.4.1/24", "dev", dummy)
    netsv.netns.run("ip", "link", "set", dummy, "up")
    try:
        res = netsv.ctl("network", "create", "--subnet", "10.123.0.0/16", "r" + net,
                        check=False)
        assert res.returncode == 1 and "overlaps 10.123.4.0/24 of a route" in res.stderr
        for args, text in ((["--subnet", "10.66.5.0/24", "x" + net], "overlaps"),
                           (["--subnet", "10.0.0.0/8", "y" + net], "overlaps"),
                           ([net], "already exists"), (["host"], "reserved"),
                           (["bad/name"], "network name"),
                           (["--subnet", "10.55.0.0/24", "--gateway", "10.56.0.1", "z" + net],
                            "gateway"), (["--subnet", "10.55.0.1/24", "w" + net], "subnet")):
            res = netsv.ctl("network", "create", *args, check=False)
            assert res.returncode == 1 and text in res.stderr, (args, res.stderr)
        res = netsv.ctl("run", "--rm", "--network", "bridge", "-p", "70000", sv_rootfs, "true",
                        check=False)
        assert res.returncode == 125 and "70000" in res.stderr
    finally:
        netsv.netns.run("ip", "link", "del", dummy)
        netsv.ctl("network", "rm", net)


# -- crashes: daemons of the test's own ---------------------------------------------------------

@pytest.fixture
def own_netsv(host_unchanged, sv_rootfs):
    """Make daemons (each in a namespace of its own) that a test may kill and restart."""
    made: list[NetSupervisor] = []

    def make(extra=()) -> NetSupervisor:
        d = NetSupervisor(NetNS(), extra=extra)
        made.append(d)
        return d.start()
    yield make
    for d in made:
        try:
            d.cleanup()
        finally:
            d.netns.delete()


def _mentions(leftover_lines, ip):
    return [line for line in leftover_lines if re.search(rf"\b{re.escape(ip)}\b", line)]


def test_kill9_of_daemon_and_shim_leaves_nothing(own_netsv, sv_rootfs):
    d = own_netsv()
    before = d.leftovers()
    made = []
    srv = server(d, sv_rootfs, made, "survives", {NET: "bridge", PORTS: "8080:80"})
    ip = d.ip_of(srv)
    d.kill9()
    d.start()  # the container kept running; the new daemon knows its network
    code, out = fetch(d, sv_rootfs, made, f"http://{ip}/", {NET: "bridge"})
    assert code == 0 and "survives" in out
    att = json.loads(d.ctl("inspect", srv).stdout)[0]["NetworkSettings"]
    assert att["IPAddress"] == ip and att["Ports"]["80/tcp"][0]["HostPort"] == "8080"
    # the shim of another container is killed: its task stops, rm cleans its network up
    victim = d.run_container(sv_rootfs, ["sh", "-c", "ip -o -4 addr show eth0; sleep 600"],
                             {NET: "bridge"})
    made.append(victim)
    vip = d.ip_of(victim)
    with open(os.path.join(d.state, "tasks", d.ns, victim, "task.json")) as f:
        os.kill(json.load(f)["shim_pid"], 9)
    assert d.client().wait(victim, timeout=60) == 137
    for cid in made:
        d.remove(cid)
    assert d.leftovers() == before
    rules = d.iptables_lines()
    assert not _mentions(rules, ip) and not _mentions(rules, vip)
    assert d.conntrack_of(ip) == [] and d.conntrack_of(vip) == []


SLOW_PLUGIN = """#!/usr/bin/python3
# A CNI plugin that hangs on ADD (the test kills it, or the daemon's timeout does).
import json, os, sys, time
conf = json.load(sys.stdin)
if os.environ.get("CNI_COMMAND") == "ADD":
    time.sleep(600)
if os.environ.get("CNI_COMMAND") == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}))
"""


def test_kill9_during_cni_add_and_a_hanging_plugin(own_netsv, sv_rootfs):
    """The daemon dies while a plugin of the chain hangs (the bridge plugin's veth and address
    already made): the next daemon finishes the job with DEL. Then a plugin that hangs is
    killed at the timeout, with one error naming it and nothing left."""
    import threading
    plugins = os.path.join("/tmp", "svt-plugins-" + secrets.token_hex(4))
    os.makedirs(plugins)
    slow = os.path.join(plugins, "slowpoke")
    with open(slow, "w") as f:
        f.write(SLOW_PLUGIN)
    os.chmod(slow, 0o755)
    try:
        d = own_netsv(["--cni-path", f"{plugins}:/usr/lib/cni", "--cni-timeout", "600"])
        os.makedirs(os.path.join(d.root, "net.d"), exist_ok=True)
        with open(os.path.join(d.root, "net.d", "slow.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "slow", "plugins": [
                {"type": "bridge", "bridge": "slow0", "isGateway": True, "ipMasq": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.44.0.0/24"}]]}},
                {"type": "slowpoke"}]}, f)
        before = d.leftovers()
        errors = []

        def create():
            try:
                d.run_container(sv_rootfs, ["true"], {NET: "slow"}, start=False)
            except grpc.RpcError as e:
                errors.append(e)
        t = threading.Thread(target=create, daemon=True)
        t.start()
        wait_for(lambda: d.processes_of(slow), 60, what="the hanging plugin")
        assert d.leftovers()["veths"] and d.leftovers()["records"]  # half-made: ADD runs
        d.kill9()
        for pid in d.processes_of(slow):
            os.kill(pid, 9)
        t.join(60)
        assert errors  # the client saw the daemon go
        d.extra[-1] = "3"  # the next daemon gives plugins 3 s
        d.start()
        wait_for(lambda: d.leftovers() == before, 60, what="the half-made network undone")
        assert not [line for line in d.iptables_lines() if "10.44.0." in line]
        cid = d.id("hang")
        with pytest.raises(grpc.RpcError) as exc:
            d.run_container(sv_rootfs, ["true"], {NET: "slow"}, cid=cid)
        assert "slowpoke" in exc.value.details() and "timed out" in exc.value.details()
        assert d.leftovers() == before and not d.processes_of(slow)
        assert cid not in d.task_dirs()
    finally:
        shutil.rmtree(plugins, ignore_errors=True)


# 100 cycles take ~70 s here (three plugins, each calling iptables, on ADD and on DEL): make
# test runs 30; SV_NETWORK_LOOPS=100 runs the full count.
LOOPS = int(os.environ.get("SV_NETWORK_LOOPS", "30"))


def test_rapid_run_rm_loops_leak_nothing(netsv, sv_rootfs):
    """LOOPS run/rm cycles of a container with a published port: the counts are where they
    were after the first cycle (the shared chains portmap and firewall make once stay), and
    the IPAM store holds no allocation."""
    c = netsv.client()

    def cycle(i):
        cid = netsv.id("loop")
        try:
            netsv.run_container(sv_rootfs, ["true"], {NET: "bridge", PORTS: "80"}, cid=cid)
            assert c.wait(cid, timeout=120) == 0
        finally:
            netsv.remove(cid)
    cycle(0)
    before, rules = netsv.leftovers(), len(netsv.iptables_lines())
    for i in range(LOOPS - 1):
        cycle(i + 1)
    assert netsv.leftovers() == before
    assert len(netsv.iptables_lines()) == rules


def test_modes_none_host_container_and_no_label(netsv, sv_rootfs, containers):
    def links_of(cid):
        code, out = netsv.finish(cid)
        assert code == 0, out
        return sorted(re.findall(r"^\d+: ([^:@]+)", out, re.M))
    show = ["ip", "-o", "link", "show"]
    for labels in ({NET: "none"}, {}):  # no label: the spec's own namespace, untouched
        cid = netsv.run_container(sv_rootfs, show, labels)
        containers.append(cid)
        assert links_of(cid) == ["lo"]
    settings = json.loads(netsv.ctl("inspect", cid).stdout)[0]["NetworkSettings"]
    assert (settings["Networks"], settings["IPAddress"], settings["Ports"]) == ({}, "", {})
    cid = netsv.run_container(sv_rootfs, show, {NET: "host"})
    containers.append(cid)
    assert links_of(cid) == sorted(re.findall(r"^\d+: ([^:@]+)", netsv.netns.run(*show), re.M))
    srv = server(netsv, sv_rootfs, containers, "shared-loopback", {NET: "bridge"})
    ip = netsv.ip_of(srv)
    code, out = fetch(netsv, sv_rootfs, containers, "http://127.0.0.1/",
                      {NET: f"container:{srv}"})
    assert code == 0 and "shared-loopback" in out
    joined = netsv.run_container(sv_rootfs, ["sh", "-c", "ip -o -4 addr show eth0; hostname"],
                                 {NET: f"container:{srv}"})
    containers.append(joined)
    code, out = netsv.finish(joined)
    assert code == 0 and f"inet {ip}/" in out
    code, msg = _create_fails(netsv, sv_rootfs, {NET: "container:nosuch"}, containers)
    assert code == grpc.StatusCode.NOT_FOUND and "nosuch" in msg


def test_random_host_ports_are_distinct_and_p_means_bridge(netsv, sv_rootfs, containers):
    """-p without a host port takes a random free one, never one another container has; -p
    without --network puts the container on the default bridge."""
    for _ in range(4):
        res = netsv.ctl("run", "-d", "-p", "80", "-p", "53/udp", sv_rootfs, "sleep", "600")
        containers.append(res.stdout.strip())
    seen = []
    for cid in containers:
        info = _json(netsv.ctl("inspect", cid).stdout)[0]["NetworkSettings"]
        assert info["NetworkMode"] == "bridge" and info["IPAddress"].startswith("10.88.")
        seen += [(proto, int(m["HostPort"])) for proto in ("80/tcp", "53/udp")
                 for m in info["Ports"][proto]]
    assert len(set(seen)) == len(seen) == 8
    assert all(49153 <= port <= 60999 for _, port in seen)


def test_ctr_run_with_a_label_and_cni_check(netsv, sv_rootfs):
    """Unmodified ctr asks for a network with --label; Check runs CNI CHECK on demand and fails
    once the container's veth is gone."""
    from supervisor.gen.pyrunc.network.v1 import network_pb2 as npb, network_pb2_grpc
    cid = netsv.id("ctr")
    netsv.ctr("run", "-d", "--label", f"{NET}=bridge", "--rootfs", sv_rootfs, cid, "sh", "-c",
              "ip -o -4 addr show eth0 > /tmp/" + cid + "; exec sleep 600")
    try:
        stub = network_pb2_grpc.NetworksStub(netsv.client().channel)
        md = [("containerd-namespace", netsv.ns)]
        att = wait_for(lambda: _attachment(stub, npb, cid, md), 60, what="attachment")
        assert att.network == "bridge" and att.ips
        out = wait_for(lambda: _read(os.path.join(sv_rootfs, "tmp", cid)), 60,
                       what="the container's address")
        assert f"inet {att.ips[0]}/" in out
        stub.Check(npb.AttachmentRequest(container_id=cid), metadata=md)
        # the container's eth0 goes (and with it the veth's host end)
        subprocess.run(["nsenter", f"--net={att.netns}", "ip", "link", "del", "eth0"],
                       check=True)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Check(npb.AttachmentRequest(container_id=cid), metadata=md)
        assert "CNI plugin" in exc.value.details()
    finally:
        netsv.remove(cid)
        try:
            os.unlink(os.path.join(sv_rootfs, "tmp", cid))
        except FileNotFoundError:
            pass


def _attachment(stub, npb, cid, md):
    try:
        return stub.Attachment(npb.AttachmentRequest(container_id=cid), metadata=md)
    except grpc.RpcError:
        return None


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""
