"""linux.netDevices: move existing interfaces of the runtime's namespace into the container's.

For each entry the parent (``pyrunc create``, in the runtime namespace):

1. finds the interface and notes its permanent, global-scope addresses (a move drops them);
2. moves it into the container's network namespace;
3. in a short-lived child that has joined that namespace: renames it (a ``%d`` template lets the
   kernel choose), refuses a name already taken, puts the addresses back, and sets it up.

pyroute2 does the netlink work; it is imported only when a config asks for this.
"""

from pyrunc.linux import os
from pyrunc.errors import SetupError

IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0


def move(devices: dict[str, str], init_pid: int) -> None:
    from pyroute2 import IPRoute
    netns_path = f"/proc/{init_pid}/ns/net"
    plan = []
    with IPRoute() as ipr:
        for host_name, new_name in devices.items():
            found = ipr.link_lookup(ifname=host_name)
            if not found:
                raise SetupError(f"linux.netDevices.{host_name}: no such network device")
            index = found[0]
            addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                     for a in ipr.get_addr(index=index)
                     if a["scope"] == RT_SCOPE_UNIVERSE and
                     (a.get_attr("IFA_FLAGS") or a["flags"]) & IFA_F_PERMANENT]
            plan.append((host_name, new_name, addrs))
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for host_name, _new, _addrs in plan:
                try:
                    ipr.link("set", index=ipr.link_lookup(ifname=host_name)[0], net_ns_fd=fd)
                except Exception as err:    # noqa: BLE001 - pyroute2's NetlinkError and kin
                    raise SetupError(f"linux.netDevices.{host_name}: move into the container: "
                                     f"{err}") from None
        finally:
            os.close(fd)
    _configure_inside(netns_path, plan)


def _configure_inside(netns_path: str, plan) -> None:
    """Rename, re-address and bring up the moved devices, from inside the container's netns."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            from pyrunc.linux import sys as k
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            k.setns(fd, k.CLONE_NEWNET)
            _configure(plan)
        except BaseException as err:    # noqa: BLE001 - reported to the parent
            os.write(w, str(err).encode() or type(err).__name__.encode())
            os._exit(1)
        os._exit(0)
    os.close(w)
    message = b""
    while chunk := os.read(r, 4096):
        message += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SetupError(message.decode(errors="replace") or "linux.netDevices: failed")


def _configure(plan) -> None:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for host_name, new_name, addrs in plan:
            index = ipr.link_lookup(ifname=host_name)[0]
            if new_name != host_name:
                if "%d" not in new_name and ipr.link_lookup(ifname=new_name):
                    raise SetupError(f"linux.netDevices.{host_name}: a device named {new_name} "
                                     "already exists in the container")
                ipr.link("set", index=index, ifname=new_name)
            for address, prefixlen in addrs:
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
