"""pids controller: ``linux.resources.pids.limit`` → pids.max (``max`` for -1; 0 is a real
limit: no new tasks).  Same file on v1 and v2."""



from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import Pids


F = "linux.resources.pids.limit"


def set_pids(d: str, p: "Pids", update: bool = False) -> None:
    files.write(d, "pids.max", "max" if p.limit == -1 else p.limit, F)


def stats(d: str) -> dict:
    out = {}
    current = files.read_int(d, "pids.current")
    limit = files.read_int(d, "pids.max")      # "max" reads as 0: omitted, like runc
    if current:
        out["current"] = current
    if limit:
        out["limit"] = limit
    return out
