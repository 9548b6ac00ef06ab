"""pyrunc/linux/fds.py (pure logic on real descriptors): every descriptor is closed on every
path, including the one the hand-written form leaked — the second open failing."""

import os

import pytest

from pyrunc.linux.fds import Fds, closing


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_closing_closes_on_exit_and_on_error():
    with closing(os.open("/dev/null", os.O_RDONLY)) as fd:
        assert is_open(fd)
    assert not is_open(fd)
    with pytest.raises(RuntimeError):
        with closing(os.open("/dev/null", os.O_RDONLY)) as fd:
            raise RuntimeError("boom")
    assert not is_open(fd)
    with closing(None), closing(-1):
        pass    # nothing to close


def test_first_descriptor_closed_when_the_second_open_fails(tmp_path):
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        with closing(os.open("/dev/null", os.O_RDONLY)), \
                closing(os.open(str(tmp_path / "missing"), os.O_RDONLY)):
            pass
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_fds_closes_what_it_holds_newest_first_and_early_closes():
    with Fds() as fds:
        r, w = fds.pair(os.pipe())
        null = fds.add(os.open("/dev/null", os.O_RDONLY))
        fds.close(w)
        assert not is_open(w) and is_open(r) and is_open(null)
        assert fds.held == [r, null]
    assert not is_open(r) and not is_open(null)
    with pytest.raises(RuntimeError):
        with Fds() as fds:
            fd = fds.add(os.open("/dev/null", os.O_RDONLY))
            raise RuntimeError("boom")
    assert not is_open(fd)
