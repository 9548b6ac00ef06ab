"""What every pyrunc-ctl module shares: the error type, Docker's exit codes and how a failed
start maps to them, task status names, and grpc imported lazily (or not at all: ctllocal).

It lives apart from ctl.py because ``python -m supervisor.ctl`` runs ctl.py as ``__main__``: a
command module importing ``supervisor.ctl`` would get a second copy, whose CtlError the main
loop would not catch.
"""
from __future__ import annotations

import importlib
import sys


class _Grpc:
    """grpc, imported on first attribute use (it costs more than ``docker ps`` to import).

    ``RpcError`` and ``StatusCode`` are answered without importing it: errors of the local API's
    client (supervisor.ctllocal) are caught as ``grpc.RpcError`` is and their codes compare
    equal to grpc's, so ``except grpc.RpcError`` and ``e.code() == grpc.StatusCode.NOT_FOUND``
    hold for either client, and a command on the local API never imports grpc."""

    @property
    def RpcError(self):
        from supervisor.ctllocal import LocalRpcError
        real = sys.modules.get("grpc")
        return (LocalRpcError, real.RpcError) if real is not None else LocalRpcError

    @property
    def StatusCode(self):
        real = sys.modules.get("grpc")
        if real is not None:
            return real.StatusCode
        from supervisor.ctllocal import StatusCodes
        return StatusCodes()

    def __getattr__(self, attr):
        return getattr(importlib.import_module("grpc"), attr)


grpc = _Grpc()
PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

EXIT_ERROR = 125          # docker: the client or daemon failed (run/create), or a bad flag
EXIT_CANNOT_INVOKE = 126  # the command exists but cannot be executed
EXIT_NOT_FOUND = 127      # the command does not exist
EXIT_FAILED = 1           # other commands: the daemon refused


class CtlError(Exception):
    """One error line for the user; ``code`` overrides the command's own error exit code."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


def no_such_container(ref: str) -> CtlError:
    return CtlError(f"Error response from daemon: No such container: {ref}")


def start_failure_code(message: str) -> int:
    """Docker's reading of a failed start: 127 not found, 126 cannot execute, else 125."""
    if "executable file not found" in message or "no such file or directory" in message:
        return EXIT_NOT_FOUND
    if "permission denied" in message or "is a directory" in message:
        return EXIT_CANNOT_INVOKE
    return EXIT_ERROR


def exec_failure_code(message: str) -> int:
    """docker exec: a process that could not be started is 126 unless it was not found (127)."""
    code = start_failure_code(message)
    return EXIT_CANNOT_INVOKE if code == EXIT_ERROR else code


def status_name(code) -> str:
    """containerd's task status number as a word (PAUSING counts as paused)."""
    return {1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "paused"}.get(code,
                                                                                     "unknown")


def print_table(header, rows) -> None:
    """Columns padded to their widest cell, three spaces apart (docker's plain tables)."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("   ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
