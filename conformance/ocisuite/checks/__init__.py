"""The checks, one module per area of the spec; importing this package registers
them all, in the order they run and are reported."""

from . import lifecycle, state, errors, process, terminal, config  # noqa: F401
from . import mounts, devices, namespaces, linux, cgroups, hooks, features  # noqa: F401
