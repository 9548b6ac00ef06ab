"""The runtime's errors.

Every error the user sees is one line: the operation, the object and the reason, e.g.
``mount /proc: Permission denied`` or ``config.json: process.args: must be a non-empty array``.
Each module raises its own subclass of :class:`PyruncError`; the command line prints ``str(err)``
and exits non-zero.
"""


class PyruncError(Exception):
    """Base of all errors the runtime reports to its caller."""


class ConfigError(PyruncError):
    """config.json (or a process.json) is malformed or asks for something impossible."""


class StateError(PyruncError):
    """The container does not exist, already exists, or is in the wrong state for the operation."""


class SetupError(PyruncError):
    """Container setup failed (in the parent or carried back from the child)."""


class CgroupError(PyruncError):
    """A cgroup could not be created, configured, or removed."""


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP reached ``create`` or ``run`` during set-up (see
    :mod:`pyrunc.halfmade`): the half-made container is torn down, then the command exits
    128 + the signal, as a shell reports a process the signal killed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def describe_oserror(op: str, err: OSError) -> str:
    """``<op> <path>: <strerror>`` — the standard shape of a kernel error in a message."""
    what = f"{op} {err.filename}" if err.filename else op
    return f"{what}: {err.strerror or err}"


def describe(err: BaseException) -> tuple[str, int]:
    """(one-line message, errno) for any exception, for reporting across a process boundary."""
    if isinstance(err, OSError):
        if type(err).__str__ is not OSError.__str__:    # SysError: "mount /x: reason"
            return str(err), err.errno or 0
        msg = f"{err.filename}: {err.strerror}" if err.filename else str(err.strerror or err)
        return msg, err.errno or 0
    return str(err) or type(err).__name__, getattr(err, "errno", 0) or 0
