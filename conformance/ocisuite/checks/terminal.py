"""process.terminal and consoleSize (config.md#process), /dev/console
(config-linux.md#default-devices): the runtime sends the pty master over
--console-socket and the program's stdio is the pty slave."""

from __future__ import annotations

from .. import probe
from ..console import ConsoleSocket
from ..registry import Failed, MUST, check, expect, expect_eq
from .common import field_refused, sleeper

TERMINAL_COMMANDS = {
    "tty": "test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; "
           "test -t 2 && echo stderr-tty",
    "console": "stat -c '%F %t:%T' /dev/console",
    "stdin-dev": "stat -L -c '%t:%T' /proc/self/fd/0",
    "size": "stty size",
}


def terminal_probe(s) -> probe.Probe:
    def compute():
        b = s.bundle()
        b.process["terminal"] = True
        b.process["consoleSize"] = {"height": 25, "width": 80}
        b.set_script(probe.script(TERMINAL_COMMANDS))
        c = s.container(b)
        console = ConsoleSocket(str(b.path / "console.sock"))
        s.defer(console.close)
        try:
            c.must_create(console_socket=console.path)
        except Failed as exc:
            field_refused(s, exc)
        expect(console.error is None, console.error or "")
        c.must_start()
        st = c.wait_status("stopped")
        output = console.output()
        expect(st is not None and st.get("status") == "stopped",
               f"terminal container did not stop (state {st}); output {output[-200:]!r}")
        c.delete()
        expect(console.error is None, console.error or "")
        return probe.Probe.parse(output)
    return s.cached("terminal", compute)


@check("terminal.stdio", "config.md#process", MUST,
       "terminal true: a pseudoterminal is the program's stdin, stdout and stderr")
def stdio(s):
    got = terminal_probe(s).out("tty").split()
    expect_eq(got, ["stdin-tty", "stdout-tty", "stderr-tty"], "which of fd 0/1/2 are ttys")


@check("terminal.dev-console", "config-linux.md#default-devices", MUST,
       "terminal true: /dev/console is the pseudoterminal (bind mount of the pty)")
def dev_console(s):
    p = terminal_probe(s)
    console = p.out("console").strip()
    expect(console.startswith("character special file"), f"/dev/console is {console!r}")
    expect_eq(console.split()[-1], p.out("stdin-dev").strip(),
              "/dev/console major:minor (= the program's terminal)")


@check("terminal.console-size", "config.md#process", MUST,
       "terminal true: the terminal has consoleSize (rows columns)")
def console_size(s):
    expect_eq(terminal_probe(s).out("size").strip(), "25 80", "stty size")


@check("terminal.size-ignored", "config.md#process", MUST,
       "runtimes MUST ignore consoleSize when terminal is false")
def size_ignored(s):
    b, c = sleeper(s)
    b.process["consoleSize"] = {"height": 25, "width": 80}
    b.set_script("test -t 1 && echo tty || echo no-tty")
    expect_eq(c.run().strip(), "no-tty", "stdout of a terminal-less container")
