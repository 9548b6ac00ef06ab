"""Terminal sessions through tmux, as a person would type them: ``run -it``, ``exec -it``, a
window resize reaching the container's terminal, and the exit code coming back. tmux runs on a
private socket; the server and the containers go at the end whatever happens."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from sv_harness import PYTHON, ROOT, wait_for

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class Tmux:
    def __init__(self, sv):
        self.sock = os.path.join(sv.base, f"tmux-{sv.id()}")
        self.env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=sv.sock, PYRUNC_NAMESPACE=sv.ns,
                        PYTHONPATH=ROOT)

    def __call__(self, *args) -> str:
        return subprocess.run([TMUX, "-S", self.sock, *args], capture_output=True, text=True,
                              env=self.env, check=True, timeout=60).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-t", "t")

    def type(self, text: str) -> None:
        self("send-keys", "-t", "t", "-l", text)
        self("send-keys", "-t", "t", "Enter")

    def wait_screen(self, text: str, what: str) -> str:
        return wait_for(lambda: text in self.screen() and self.screen(), timeout=60,
                        step=0.1, what=f"{what} (screen: {self.screen()!r})")

    def kill(self) -> None:
        subprocess.run([TMUX, "-S", self.sock, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(sv):
    if not os.access(TMUX, os.X_OK):
        pytest.skip("tmux is not installed")
    t = Tmux(sv)
    try:
        yield t
    finally:
        t.kill()


def test_run_it_exec_it_and_resize(sv, sv_rootfs, tmux):
    name = sv.id("tty")
    ctl = f"{PYTHON} -m supervisor.ctl"
    tmux("new-session", "-d", "-s", "t", "-x", "90", "-y", "25",
         f"{ctl} run -it --name {name} {sv_rootfs} /bin/sh; echo EXIT=$?; sleep 600")
    try:
        tmux.type("echo in-$((6*7)); stty size")
        tmux.wait_screen("25 90", "the first size")
        assert "in-42" in tmux.screen()
        tmux("resize-window", "-t", "t", "-x", "120", "-y", "40")
        tmux.type("stty size")
        tmux.wait_screen("40 120", "the new size")
        # a second window: exec -it into the same container
        tmux("new-window", "-t", "t", "-n", "ex",
             f"{ctl} exec -it {name} /bin/sh -c 'tty; stty size; read x; exit 5'; "
             "echo EXEC=$?; sleep 600")
        wait_for(lambda: "/dev/pts/" in tmux("capture-pane", "-p", "-t", "t:ex"), timeout=60,
                 what="exec's terminal")
        tmux("send-keys", "-t", "t:ex", "go", "Enter")
        wait_for(lambda: "EXEC=5" in tmux("capture-pane", "-p", "-t", "t:ex"), timeout=60,
                 what="exec's exit code")
        tmux("select-window", "-t", "t:0")
        tmux.type("exit 3")
        tmux.wait_screen("EXIT=3", "run's exit code")
    finally:
        sv.ctl("rm", "-f", name, check=False)
