"""rdma controller: ``linux.resources.rdma`` → rdma.max ``<device> hca_handle=N hca_object=M``
(same file and syntax on v1 and v2; the kernel refuses devices it does not know)."""



from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import Rdma


F = "linux.resources.rdma"


def line(r: "Rdma") -> str:
    parts = [r.device]
    if r.hca_handles is not None:
        parts.append(f"hca_handle={r.hca_handles}")
    if r.hca_objects is not None:
        parts.append(f"hca_object={r.hca_objects}")
    return " ".join(parts)


def set_rdma(d: str, limits: "list[Rdma]", update: bool = False) -> None:
    for r in limits:
        files.write(d, "rdma.max", line(r), f"{F}.{r.device}")
