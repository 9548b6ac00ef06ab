"""net_cls / net_prio (v1 only): ``linux.resources.network`` → net_cls.classid and
net_prio.ifpriomap ``<interface> <priority>``.  cgroup v2 has no such controllers (use eBPF
socket programs instead): asking for them there is an error raised by the managers."""



from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import Network


F = "linux.resources.network"


def set_classid(d: str, n: "Network") -> None:
    if n.class_id is not None:
        files.write(d, "net_cls.classid", n.class_id, f"{F}.classID")


def set_priorities(d: str, n: "Network") -> None:
    for i, (name, prio) in enumerate(n.priorities):
        files.write(d, "net_prio.ifpriomap", f"{name} {prio}", f"{F}.priorities[{i}]")
