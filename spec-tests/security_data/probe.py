"""The attacker inside a container: it looks for a way out through every process it can see.

Run by the container's own Python (a copy of the host's interpreter placed in the rootfs, with
just enough of the standard library to start) as ``python3 -S probe.py CTL``, where CTL is a
directory shared with the test.  Until ``CTL/stop`` appears it loops over ``/proc/<pid>`` of
every other visible process and tries:

* ``exe`` opened for writing (O_WRONLY, O_RDWR) — the CVE-2019-5736 overwrite;
* every ``map_files/*`` entry opened O_RDWR — the libraries the process maps;
* every ``fd/*`` entry opened O_RDWR, and for directories whether walking ``..`` from them
  leaves the container's root — the CVE-2024-21626 class of leaked descriptors;
* ``cwd`` and ``root`` — the same walk.

Every ``exe`` it can open read-only that is not one of the container's own binaries is held
open; after ``stop`` it tries to reopen each through ``/proc/self/fd`` for writing, which is
how the classic exploit waits for the runtime to exit before writing.

Nothing is ever written: a successful open is closed at once and recorded.  The result, a
Python literal, goes to ``CTL/result``.
"""

import errno
import fcntl
import os
import sys
import time

CTL = sys.argv[1]
DEADLINE = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 90)
FS_IOC_GETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x10
SAFE = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC   # never block on a fifo, never take a tty

ME = os.getpid()
OWN = set()
for own in ("/bin/busybox", "/bin/python3"):
    st = os.stat(own)
    OWN.add((st.st_dev, st.st_ino))
st = os.stat("/")
ROOT = (st.st_dev, st.st_ino)

found = {}      # (kind, outcome, target) -> count
held = {}       # (dev, ino, on a read-only mount) -> fd
seen_pids = set()


def name(err: OSError) -> str:
    return errno.errorcode.get(err.errno, str(err.errno))


def note(kind: str, outcome: str, target) -> None:
    key = (kind, outcome, target)
    found[key] = found.get(key, 0) + 1


def ident(fd: int, path: str):
    st = os.fstat(fd)
    try:
        link = os.readlink(path)
    except OSError as err:
        link = name(err)
    return (st.st_dev, st.st_ino, oct(st.st_mode), link)


def try_write_open(kind: str, path: str) -> None:
    for flags, label in ((os.O_WRONLY, "w"), (os.O_RDWR, "rw")):
        try:
            fd = os.open(path, flags | SAFE)
        except OSError as err:
            note(f"{kind}:{label}", name(err), None)
            continue
        try:
            note(f"{kind}:{label}", "OPENED", ident(fd, path))
        finally:
            os.close(fd)


def escapes(fd: int) -> bool:
    """Walk up from a directory: True if the top is not our root (a host directory)."""
    cur = os.dup(fd)
    try:
        for _ in range(256):
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)
            a, b = os.fstat(cur), os.fstat(up)
            os.close(cur)
            cur = up
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return (b.st_dev, b.st_ino) != ROOT
        return True
    finally:
        os.close(cur)


def try_dir(kind: str, path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | SAFE)
    except OSError as err:
        if err.errno != errno.ENOTDIR:
            note(kind, name(err), None)
        return
    try:
        if escapes(fd):
            note(kind, "ESCAPE", ident(fd, path))
        else:
            note(kind, "inside", None)
    finally:
        os.close(fd)


def hold_exe(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        note("exe:r", name(err), None)
        return
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY))
    if (st.st_dev, st.st_ino) in OWN or key in held:
        os.close(fd)
        return
    held[key] = fd
    note("exe:r", "held", key)


def scan() -> None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == ME:
            continue
        base = f"/proc/{entry}"
        seen_pids.add(int(entry))
        hold_exe(f"{base}/exe")
        try_write_open("exe", f"{base}/exe")
        for sub, kind in (("map_files", "map"), ("fd", "fd")):
            try:
                names = os.listdir(f"{base}/{sub}")
            except OSError as err:
                note(f"{kind}:list", name(err), None)
                continue
            for n in names:
                path = f"{base}/{sub}/{n}"
                try_write_open(kind, path)
                if kind == "fd":
                    try_dir("fd:dir", path)
        try_dir("cwd", f"{base}/cwd")
        try_dir("root", f"{base}/root")


def finish() -> dict:
    """The classic exploit's second step: reopen each held exe for writing."""
    out = []
    for key, fd in held.items():
        res = {"exe": key}
        for flags, label in ((os.O_WRONLY, "w"), (os.O_RDWR, "rw")):
            try:
                again = os.open(f"/proc/self/fd/{fd}", flags | SAFE)
            except OSError as err:
                res[label] = name(err)
            else:
                os.close(again)
                res[label] = "OPENED"
        res["ro_mount"] = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
        try:
            flags = int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8), "little")
            res["immutable"] = bool(flags & FS_IMMUTABLE_FL)
        except OSError as err:
            res["immutable"] = name(err)
        out.append(res)
    return out


def main() -> None:
    rounds = 0
    with open(f"{CTL}/ready", "w") as f:
        f.write(str(ME))
    while not os.path.exists(f"{CTL}/stop") and time.monotonic() < DEADLINE:
        scan()
        rounds += 1
    result = {"rounds": rounds, "pids": len(seen_pids), "found": found, "held": finish()}
    with open(f"{CTL}/result.tmp", "w") as f:
        f.write(repr(result))
    os.rename(f"{CTL}/result.tmp", f"{CTL}/result")


main()
