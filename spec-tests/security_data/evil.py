#!/proc/self/exe -S
"""The CVE-2019-5736 trick: a container program whose interpreter is ``/proc/self/exe``.

When a runtime process (the init before it execs, the process ``pyrunc exec`` starts) executes
this file, the kernel resolves ``/proc/self/exe`` against that runtime process and runs the
*runtime's own interpreter* inside the container, with this file as its script.  It then reports
what it could do to that interpreter file, as a Python literal on stdout.  It never writes: an
open that succeeds is closed at once and reported.
"""
import errno
import fcntl
import os

FS_IOC_GETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x10


def attempt(path, flags):
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        return errno.errorcode.get(err.errno, str(err.errno))
    os.close(fd)
    return "OPENED"


report = {"pid": os.getpid(),
          "exe_w": attempt("/proc/self/exe", os.O_WRONLY),
          "exe_rw": attempt("/proc/self/exe", os.O_RDWR)}
fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
st = os.fstat(fd)
report["exe_id"] = (st.st_dev, st.st_ino)
report["ro_mount"] = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
try:
    flags = int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8), "little")
    report["immutable"] = bool(flags & FS_IMMUTABLE_FL)
except OSError as err:
    report["immutable"] = errno.errorcode.get(err.errno, str(err.errno))
# the exploit's second step, normally done once the runtime has exited: reopen the held handle
report["reopen_w"] = attempt(f"/proc/self/fd/{fd}", os.O_WRONLY)
report["reopen_rw"] = attempt(f"/proc/self/fd/{fd}", os.O_RDWR)
try:
    maps = os.listdir("/proc/self/map_files")
except OSError as err:
    report["map_files"] = errno.errorcode.get(err.errno, str(err.errno))
else:
    # only the mappings of the interpreter itself: the libraries are the container's own
    outcomes = set()
    for entry in maps:
        path = f"/proc/self/map_files/{entry}"
        try:
            mapped = os.stat(path)
        except OSError as err:
            outcomes.add(errno.errorcode.get(err.errno, str(err.errno)))
            continue
        if (mapped.st_dev, mapped.st_ino) == (st.st_dev, st.st_ino):
            outcomes.add(attempt(path, os.O_RDWR))
    report["map_files"] = sorted(outcomes)
print(repr(report))
