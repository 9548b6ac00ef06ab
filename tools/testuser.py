"""A throwaway unprivileged user for the rootless tests, removed afterwards — always.

``with test_user() as u:`` (as root) makes a user with a unique name (``pyrl`` + random hex),
subordinate uid and gid ranges in /etc/subuid and /etc/subgid (``usermod --add-subuids``: a
range of its own, so tests running at once never share one), a home directory and an
``$XDG_RUNTIME_DIR`` (mode 0700, owned by it) in a temporary directory.  On the way out, even
after a failure or a ^C, every process still running as the user is killed (found by its real
uid in /proc: only processes of this user, never by name), the user, its group and its subid
ranges are removed, and the temporary directory is deleted (mounts below it detached first).

``u.run(argv)`` runs a command as the user through ``setpriv`` (no PAM session, so no systemd
user manager or logind state is created for it) with a minimal environment: HOME, USER,
LOGNAME, PATH, XDG_RUNTIME_DIR.  Running this file prints the user it would make and removes
it again (a manual check that nothing is left: ``grep pyrl /etc/passwd /etc/subuid``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

PREFIX = "pyrl"
SUBID_COUNT = 65536
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TestUser:
    """An unprivileged user made by :func:`create`."""

    __test__ = False        # (not a pytest test class)

    def __init__(self, name: str, uid: int, gid: int, base: Path,
                 subuid: tuple[int, int], subgid: tuple[int, int]):
        self.name, self.uid, self.gid = name, uid, gid
        self.base = base                        # the temporary directory holding the rest
        self.home = base / "home"
        self.runtime_dir = base / "run"         # $XDG_RUNTIME_DIR
        self.subuid, self.subgid = subuid, subgid   # (start, count)

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": PATH, "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run as the user (real, effective and saved ids; its groups)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--inh-caps=-all", "--", *argv]

    def run(self, argv: list[str], *, env: dict | None = None, timeout: float = 120,
            input: str | None = None, cwd: str | Path | None = None,
            ) -> subprocess.CompletedProcess:
        """Run ``argv`` as the user; its output as text.  ``env`` adds to the user's."""
        full = dict(self.env, **(env or {}))
        # output to files, not pipes: a detached container's processes inherit them, and a
        # pipe would not reach its end while they live
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            res = subprocess.run(self.argv(argv), env=full, stdout=out, stderr=err, text=True,
                                 timeout=timeout, input=input, cwd=str(cwd or self.home),
                                 stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            res.stdout, res.stderr = out.read(), err.read()
        return res

    def mkdir(self, *parts: str) -> Path:
        """A directory below the user's temporary directory, owned by the user."""
        path = self.base.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        return path


def _subid_range(path: str, name: str) -> tuple[int, int]:
    for line in Path(path).read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 3 and fields[0] == name:
            return int(fields[1]), int(fields[2])
    raise RuntimeError(f"{path}: no range for {name}")


def _free_subid_start(count: int) -> int:
    """The start of a range no entry of /etc/subuid or /etc/subgid overlaps."""
    end = 100000
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                end = max(end, int(fields[1]) + int(fields[2]))
    return end + secrets.randbelow(64) * count      # (apart from another run making one now)


def create() -> TestUser:
    """Make the user (see the module's docstring); :func:`remove` undoes everything."""
    name = PREFIX + secrets.token_hex(4)
    base = Path(tempfile.mkdtemp(prefix=f"pyrunc-{name}-"))
    os.chmod(base, 0o755)
    user = None
    try:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(base / "home"),
                        "--shell", "/bin/sh", "--user-group", "--no-log-init", name],
                       check=True, capture_output=True, text=True)
        pw = subprocess.run(["getent", "passwd", name], check=True, capture_output=True,
                            text=True).stdout.split(":")
        uid, gid = int(pw[2]), int(pw[3])
        user = TestUser(name, uid, gid, base, (0, 0), (0, 0))
        try:
            subuid = _subid_range("/etc/subuid", name)
            subgid = _subid_range("/etc/subgid", name)
        except RuntimeError:        # useradd did not allocate ranges (login.defs): add our own
            start = _free_subid_start(SUBID_COUNT)
            last = start + SUBID_COUNT - 1
            subprocess.run(["usermod", "--add-subuids", f"{start}-{last}",
                            "--add-subgids", f"{start}-{last}", name],
                           check=True, capture_output=True, text=True)
            subuid = subgid = (start, SUBID_COUNT)
        user.subuid, user.subgid = subuid, subgid
        for d in (user.home, user.runtime_dir):
            d.mkdir(mode=0o700)
            os.chown(d, uid, gid)
        return user
    except BaseException:
        if user is not None:
            remove(user)
        else:
            subprocess.run(["userdel", name], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)
        raise


def user_pids(uid: int) -> list[int]:
    """Processes whose real or effective uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        real, eff = line.split()[1:3]
                        if uid in (int(real), int(eff)):
                            pids.append(int(entry))
                        break
        except OSError:
            pass
    return pids


def kill_user_processes(uid: int, timeout: float = 30) -> None:
    """SIGKILL every process of ``uid`` until none is left (a fork between rounds is caught
    by the next round)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in user_pids(uid) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of uid {uid} survive SIGKILL: {pids}")
        time.sleep(0.05)


def _unmount_below(root: Path) -> None:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _drop_subid_lines(name: str) -> None:
    """Remove the user's lines from /etc/subuid and /etc/subgid if userdel left them."""
    for path in ("/etc/subuid", "/etc/subgid"):
        p = Path(path)
        lines = p.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.split(":", 1)[0] != name]
        if kept != lines:
            tmp = p.with_name(p.name + ".pyrl")
            tmp.write_text("".join(kept))
            os.chmod(tmp, 0o644)
            os.replace(tmp, p)


def remove(user: TestUser) -> None:
    """Kill the user's processes, delete it (with its group and subid ranges) and its files."""
    try:
        kill_user_processes(user.uid)
    finally:
        subprocess.run(["userdel", "--force", user.name], capture_output=True)
        subprocess.run(["groupdel", user.name], capture_output=True)
        _drop_subid_lines(user.name)
        _unmount_below(user.base)
        shutil.rmtree(user.base, ignore_errors=True)
        if user.base.exists():      # files the user made read-only for its owner (vfs layers)
            subprocess.run(["chmod", "-R", "u+rwx", str(user.base)], capture_output=True)
            shutil.rmtree(user.base, ignore_errors=True)


@contextmanager
def test_user():
    user = create()
    try:
        yield user
    finally:
        remove(user)


test_user.__test__ = False


if __name__ == "__main__":
    with test_user() as u:
        print(u.name, u.uid, u.gid, u.subuid, u.subgid, u.base)
        print(u.run(["id"]).stdout, end="")
