"""The runtime's command line, and nothing else.

Every call goes through Runtime.run: `RUNTIME --root ROOT <args>` with a time
limit, stdout/stderr captured into files (never pipes: a container or a hook
may keep a pipe open long after the runtime exits, and reading it would hang).
The root directory is private to the suite, so nothing collides with other
users of the runtime on this machine.

Only the runc-compatible commands the OCI operations map to are used:
    create --bundle B [--console-socket S] [--pid-file F] ID
    start ID | state ID | kill ID SIGNAL | delete [--force] ID | features
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 20.0


@dataclass
class Result:
    argv: list[str]
    rc: int
    out: str
    err: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def summary(self) -> str:
        """One line for diagnostics: the command, its exit status, its first error line."""
        cmd = " ".join(self.argv[self.argv.index("--root") + 2:])  # after "RUNTIME --root ROOT"
        status = "timed out" if self.timed_out else f"rc={self.rc}"
        text = [] if self.ok else (self.err.strip() or self.out.strip()).splitlines()
        first = f": {text[-1][:200]}" if text else ""
        return f"`{cmd}` {status}{first}"


class Runtime:
    def __init__(self, path: str, root: Path, scratch: Path, options: list[str] = ()):
        self.path = path
        self.options = list(options)  # global options placed before --root
        self.root = root
        self.scratch = scratch  # where captured output lands
        self.calls: list[Result] = []  # every call of the current check, for diagnostics

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    # -- the single entry point ---------------------------------------------------

    def run(self, *args: str, timeout: float = DEFAULT_TIMEOUT, cwd: str | None = None,
            stdout=None, stderr=None, pass_fds=(), preexec_fn=None, env=None) -> Result:
        """Run `RUNTIME --root ROOT args...`; stdout/stderr may be given as open files."""
        argv = [self.path, *self.options, "--root", str(self.root), *args]
        own_out = stdout is None
        own_err = stderr is None
        out_f = tempfile.TemporaryFile(dir=self.scratch) if own_out else stdout
        err_f = tempfile.TemporaryFile(dir=self.scratch) if own_err else stderr
        started = time.monotonic()
        timed_out = False
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                                    cwd=cwd, pass_fds=pass_fds, preexec_fn=preexec_fn,
                                    env=env, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                rc = proc.wait()
            except BaseException:  # the check's own time limit: never leave the runtime running
                _kill_group(proc.pid)
                proc.wait()
                raise
            out = _read(out_f) if own_out else ""
            err = _read(err_f) if own_err else ""
        finally:
            if own_out:
                out_f.close()
            if own_err:
                err_f.close()
        result = Result(argv, rc, out, err, time.monotonic() - started, timed_out)
        self.calls.append(result)
        return result

    # -- the operations -----------------------------------------------------------

    def create(self, cid: str, bundle, *, console_socket: str | None = None,
               pid_file: str | None = None, stdout=None, stderr=None, cwd: str | None = None,
               pass_fds=(), preexec_fn=None, env=None, timeout: float = DEFAULT_TIMEOUT) -> Result:
        args = ["create", "--bundle", str(bundle)]
        if console_socket:
            args += ["--console-socket", console_socket]
        if pid_file:
            args += ["--pid-file", pid_file]
        args.append(cid)
        return self.run(*args, stdout=stdout, stderr=stderr, cwd=cwd, pass_fds=pass_fds,
                        preexec_fn=preexec_fn, env=env, timeout=timeout)

    def start(self, cid: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        return self.run("start", cid, timeout=timeout)

    def state(self, cid: str) -> tuple[Result, dict | None]:
        """The state JSON, or None when the call fails or prints no JSON object."""
        res = self.run("state", cid)
        if not res.ok:
            return res, None
        try:
            data = json.loads(res.out)
        except ValueError:
            return res, None
        return res, data if isinstance(data, dict) else None

    def kill(self, cid: str, signal: int | str) -> Result:
        return self.run("kill", cid, str(signal))

    def delete(self, cid: str, force: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Result:
        args = ["delete", "--force", cid] if force else ["delete", cid]
        return self.run(*args, timeout=timeout)

    def features(self) -> Result:
        return self.run("features")


def _read(f) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
