"""pyrunc/linux/os.py and ospath.py: the ``os`` API without importing ``os``.

The path functions written there are held equal to ``posixpath`` on generated paths; the rest
must be the standard library's very objects, fetched lazily.  (That pyrunc's commands really do
without ``os`` is checked on real containers in test_hot_path.py.)"""

import os as real_os
import posix
import posixpath
import random
import subprocess
import sys

import pytest

from pyrunc.linux import os, ospath

REPO = real_os.path.dirname(real_os.path.dirname(real_os.path.abspath(__file__)))

PARTS = ["", ".", "..", "a", "b", "c.d", "/", "//", "///", "a/", "/a", "..a", "a..", " ", "é"]


def paths(seed: int, count: int = 3000):
    rnd = random.Random(seed)
    for _ in range(count):
        yield "".join(rnd.choice(PARTS) + rnd.choice(["", "/", "//"])
                      for _ in range(rnd.randint(0, 5)))


def test_the_path_functions_equal_posixpath():
    for p in paths(1):
        for name in ("split", "dirname", "basename", "normpath", "abspath", "isabs"):
            assert getattr(ospath, name)(p) == getattr(posixpath, name)(p), (name, p)


def test_join_equals_posixpath():
    rnd = random.Random(2)
    generated = list(paths(3, 600))
    for _ in range(3000):
        parts = rnd.sample(generated, rnd.randint(1, 4))
        assert ospath.join(*parts) == posixpath.join(*parts), parts


def test_relpath_equals_posixpath():
    generated = [p for p in paths(4, 400) if p]
    rnd = random.Random(5)
    for _ in range(3000):
        p, start = rnd.choice(generated), rnd.choice(generated + [None])
        assert ospath.relpath(p, start) == posixpath.relpath(p, start), (p, start)
    with pytest.raises(ValueError, match="no path specified"):
        ospath.relpath("")


def test_other_argument_types_go_to_posixpath():
    assert ospath.join(b"/a", b"b") == b"/a/b"
    assert ospath.normpath(b"/a/../b") == b"/b"
    assert ospath.dirname(real_os.fsencode("/x/y")) == b"/x"
    with pytest.raises(TypeError):
        ospath.join("/a", b"b")


def test_file_type_tests(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    cases = [str(tmp_path / n) for n in ("file", "dir", "link", "dangling", "missing")]
    cases += ["", "/", "bad\0path", str(tmp_path / "file" / "under-a-file")]
    for p in cases:
        for name in ("exists", "lexists", "isdir", "isfile", "islink"):
            assert getattr(ospath, name)(p) == getattr(posixpath, name)(p), (name, p)
    fd = real_os.open(tmp_path, real_os.O_RDONLY)
    try:
        assert ospath.isdir(fd) and ospath.exists(fd)
    finally:
        real_os.close(fd)


def test_functions_are_the_standard_librarys_own():
    assert os.open is posix.open and os.name == "posix"
    for name in ("open", "close", "read", "write", "stat", "fork", "waitpid", "kill", "scandir",
                 "pidfd_open", "closerange", "_exit", "strerror", "O_CLOEXEC", "WNOHANG"):
        assert getattr(os, name) is getattr(real_os, name), name
    assert (os.sep, os.devnull, os.SEEK_END, os.error) == \
        (real_os.sep, real_os.devnull, real_os.SEEK_END, real_os.error)
    # what is only in os's Python layer comes from os itself, on first use
    assert os.walk is real_os.walk and os.environ is real_os.environ
    assert ospath.realpath is posixpath.realpath
    with pytest.raises(AttributeError):
        os.no_such_function


def test_fsencode_and_fsdecode_equal_os():
    for value in ["/a/é", "\udcff", b"/a/\xff", real_os.fsencode("/x")]:
        assert os.fsencode(value) == real_os.fsencode(value)
        assert os.fsdecode(value) == real_os.fsdecode(value)
    with pytest.raises(TypeError):
        os.fsencode(3)


def test_getenv_and_unsetenv_without_os():
    """In a fresh interpreter that never imports os before the end: getenv reads the process's
    environment; unsetenv removes a variable for children and for os.environ alike."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from pyrunc.linux import os\n"
        "assert 'os' not in sys.modules, 'imported os'\n"
        "print(os.getenv('PYRUNC_T1'), os.getenv('PYRUNC_MISSING', 'dflt'))\n"
        "os.unsetenv('PYRUNC_T1')\n"
        "print(os.getenv('PYRUNC_T1'))\n"
        "assert 'os' not in sys.modules, 'imported os'\n"
        "import os as real, subprocess\n"
        "print('PYRUNC_T1' in real.environ)\n"
        "print(subprocess.run(['/bin/sh', '-c', 'echo ${PYRUNC_T1-unset}'],"
        " capture_output=True, text=True).stdout.strip())\n")
    env = {"PATH": "/usr/bin:/bin", "PYRUNC_T1": "é1"}
    out = subprocess.run([sys.executable, "-S", "-E", "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["é1", "dflt", "None", "False", "unset"]
