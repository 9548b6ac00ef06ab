"""pyrunc-ctl's later features, on real containers through the supervisor: restarting a
container made from an image, --privileged, and the json-file log (timestamps, --since/--until,
--tail with -f, rotation). Facts come from inside the container or its log files.

The image is a busybox OCI layout (sv_registry) loaded with ``pyrunc-ctl load``: no registry.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from sv_harness import wait_for
from sv_layers import Layer
from sv_registry import busybox_image


@pytest.fixture(scope="module")
def image(sv):
    """A busybox image with /data/seed (owned 1000:1000) and a VOLUME /cache holding one file."""
    d = tempfile.mkdtemp(prefix="svt-feat-", dir="/tmp")
    name = "example.com/feat:" + sv.id("t")
    extra = Layer().dir("data", uid=1000, gid=1000).file("data/seed", b"from the image\n")
    extra.dir("cache").file("cache/c", b"cached\n")
    try:
        busybox_image(os.path.join(d, "img"), extra_layers=[(extra, "gzip")],
                      config={"Volumes": {"/cache": {}}})
        with open(os.path.join(d, "img", "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
        with open(os.path.join(d, "img", "index.json"), "w") as f:
            json.dump(index, f)
        subprocess.run(["tar", "-C", os.path.join(d, "img"), "-cf", os.path.join(d, "i.tar"),
                        "."], check=True)
        sv.ctl("load", "-i", os.path.join(d, "i.tar"))
        yield name
    finally:
        sv.ctl("rmi", name, check=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cleanup(sv):
    made: list[str] = []
    yield made
    for name in made:
        sv.ctl("rm", "-f", name, check=False)


def inspect(sv, ref) -> dict:
    return json.loads(sv.ctl("inspect", ref).stdout)[0]


# -- restarting a container made from an image ------------------------------------------------------

def test_image_container_restarts_by_policy_with_its_rootfs(sv, image, cleanup):
    name = sv.id("ri")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, "--restart", "on-failure:2", image, "sh", "-c",
           "echo run >> /data/runs; cat /data/runs | wc -l; exit 1")
    wait_for(lambda: (inspect(sv, name)["RestartCount"], inspect(sv, name)["State"]["Status"])
             == (2, "exited"), timeout=120, what="two restarts, then a stop")
    # each run saw the same copy-on-write rootfs: the file grew by one line per run
    assert sv.ctl("logs", name).stdout.split() == ["1", "2", "3"]
    assert inspect(sv, name)["State"]["ExitCode"] == 1


def test_image_container_stop_and_start(sv, image, cleanup):
    name = sv.id("ri")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, image, "sh", "-c",
           "echo x >> /data/starts; wc -l < /data/starts; exec sleep 300")
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1"], what="first start")
    sv.ctl("stop", "-t", "1", name)
    sv.ctl("start", name)
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1", "2"], what="second start")
    assert inspect(sv, name)["State"]["Status"] == "running"
    sv.ctl("restart", "-t", "1", name)
    wait_for(lambda: sv.ctl("logs", name).stdout.split() == ["1", "2", "3"], what="restart")


# -- --privileged ---------------------------------------------------------------------------------

def test_privileged_sees_host_devices_and_a_writable_sys(sv, sv_rootfs):
    from supervisor.ctlopts import host_devices
    host = sorted(d["path"] for d in host_devices())
    assert host, "the host has device nodes under /dev"
    script = ("find /dev -type c -o -type b | sort; grep ' /sys ' /proc/mounts | cut -d' ' -f4;"
              " head -c 16 /dev/urandom | wc -c; grep CapEff /proc/self/status")
    out = sv.ctl("run", "--rm", "--privileged", sv_rootfs, "sh", "-c", script).stdout.split()
    inside = {p for p in out if p.startswith("/dev/")}
    assert set(host) <= inside  # every host device, numbers and all (checked below)
    assert any(o.startswith("rw,") for o in out)  # /sys writable
    plain = sv.ctl("run", "--rm", sv_rootfs, "sh", "-c", script).stdout.split()
    assert not (set(host) - {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                             "/dev/urandom", "/dev/tty"}) & set(plain)
    assert any(o.startswith("ro,") for o in plain)
    dev = next(d for d in host_devices() if d["path"] not in ("/dev/null", "/dev/zero"))
    stat = sv.ctl("run", "--rm", "--privileged", sv_rootfs, "stat", "-c", "%F %t:%T",
                  dev["path"]).stdout.split()
    kind = "character" if dev["type"] == "c" else "block"
    assert stat[0] == kind and stat[-1] == f"{dev['major']:x}:{dev['minor']:x}"


# -- logs: timestamps, --since/--until, --tail with -f, rotation -----------------------------------

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def test_logs_timestamps_since_and_streams(sv, sv_rootfs, cleanup):
    import re
    import time
    name = sv.id("lg")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, sv_rootfs, "sh", "-c",
           "echo early; echo oops >&2; sleep 2; echo late; exec sleep 300")
    wait_for(lambda: "late" in sv.ctl("logs", name).stdout, what="late line")
    res = sv.ctl("logs", "-t", name)
    lines = res.stdout.splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == ["early", "late"]
    assert all(re.fullmatch(TS + " .*", ln) for ln in lines)
    assert re.fullmatch(TS + " oops\n", res.stderr)  # stderr lines go to stderr, as docker
    early, late = (ln.split(" ", 1)[0] for ln in lines)
    # --since takes a timestamp (the entry at that very time included), --until too
    assert sv.ctl("logs", "--since", late, name).stdout == "late\n"
    assert sv.ctl("logs", "--until", early, name).stdout == "early\n"
    assert sv.ctl("logs", "--since", "10m", name).stdout == "early\nlate\n"
    unix = f"{int(time.time()) - 600}"
    assert sv.ctl("logs", "--since", unix, name).stdout == "early\nlate\n"
    assert sv.ctl("logs", "--since=-5m", name).stdout == ""
    bad = sv.ctl("logs", "--since", "bogus", name, check=False)
    assert bad.returncode == 1 and bad.stderr == (
        'invalid value for "since": failed to parse value as time or duration: "bogus"\n')


def test_logs_tail_and_follow_together(sv, sv_rootfs, cleanup):
    name = sv.id("lg")
    cleanup.append(name)
    sv.ctl("run", "-d", "--name", name, sv_rootfs, "sh", "-c",
           "for i in 1 2 3 4 5; do echo l$i; done; read x < /dev/null; sleep 2; echo l6")
    wait_for(lambda: "l5" in sv.ctl("logs", name).stdout, what="five lines")
    res = sv.ctl("logs", "-f", "--tail", "2", name, timeout=60)  # returns when it exits
    assert res.stdout == "l4\nl5\nl6\n"
    assert sv.ctl("logs", "--tail", "0", name).stdout == ""


def test_log_rotation_keeps_max_file_files_and_reads_across_them(sv, sv_rootfs, cleanup):
    name = sv.id("lg")
    cleanup.append(name)
    # each entry is ~70 bytes: with max-size=200 a file takes three entries, then rotates
    sv.ctl("run", "-d", "--name", name, "--log-opt", "max-size=200", "--log-opt", "max-file=3",
           sv_rootfs, "sh", "-c", "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo line$i; done")
    wait_for(lambda: json.loads(sv.ctl("inspect", name).stdout)[0]["State"]["Status"]
             == "exited", what="exit")
    log = sv.ctl("inspect", "-f", "{{.LogPath}}", name).stdout.strip()
    files = sorted(f for f in os.listdir(os.path.dirname(log))
                   if f.startswith(os.path.basename(log)))
    assert files == [os.path.basename(log) + s for s in ("", ".1", ".2")]
    sizes = [os.path.getsize(os.path.join(os.path.dirname(log), f)) for f in files]
    assert all(s <= 200 + 100 for s in sizes)  # a file passes max-size by one entry at most
    shown = sv.ctl("logs", name).stdout.split()
    assert shown == [f"line{i}" for i in range(20 - len(shown) + 1, 21)]  # newest, in order
    assert 6 <= len(shown) <= 9
    with open(log + ".2") as f:
        first = json.loads(f.readline())
    assert first["stream"] == "stdout" and first["log"] == shown[0] + "\n"
    sv.ctl("rm", name)
    assert not [f for f in os.listdir(os.path.dirname(log))
                if f.startswith(os.path.basename(log))]  # rm removes every file of the log


# -- stdin: attach and start -i ----------------------------------------------------------------------

LOOP = "while read l; do echo got:$l; done; echo eof"


def _attach(sv, name, text):
    env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=sv.sock, PYRUNC_NAMESPACE=sv.ns)
    from sv_harness import PYTHON, ROOT
    p = subprocess.Popen([PYTHON, "-m", "supervisor.ctl", "attach", name], cwd=ROOT, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(text.encode())
    p.stdin.close()
    return p


def test_attach_stdin_of_a_detached_interactive_container(sv, sv_rootfs, cleanup):
    """run -di: each attach's input reaches the process; its end does not close the
    container's stdin (Docker's StdinOnce is false), so a second attach gets through too."""
    name = sv.id("in")
    cleanup.append(name)
    sv.ctl("run", "-di", "--name", name, sv_rootfs, "sh", "-c", LOOP + "; exit 4")
    first = _attach(sv, name, "hello\n")
    wait_for(lambda: "got:hello" in sv.ctl("logs", name).stdout, what="the first input")
    second = _attach(sv, name, "world\n")
    wait_for(lambda: "got:world" in sv.ctl("logs", name).stdout, what="the second input")
    assert "eof" not in sv.ctl("logs", name).stdout
    assert inspect(sv, name)["State"]["Status"] == "running"
    sv.ctl("stop", "-t", "1", name)
    assert [p.wait(timeout=60) for p in (first, second)] == [137, 137]  # the container's code
    assert b"got:world" in first.stdout.read()  # the output from the attach on


def test_create_i_then_start_ai_and_attach_close_stdin_at_eof(sv, sv_rootfs, cleanup):
    name = sv.id("in")
    cleanup.append(name)
    sv.ctl("create", "-i", "--name", name, sv_rootfs, "sh", "-c", LOOP)
    res = sv.ctl("start", "-ai", name, input="world\n")
    assert (res.returncode, res.stdout) == (0, "got:world\neof\n")
    res = sv.ctl("start", "-ai", name, input="again\n")
    assert (res.returncode, res.stdout) == (0, "got:again\neof\n")
    # started detached, then attached: StdinOnce, so the end of input closes its stdin
    sv.ctl("start", name)
    p = _attach(sv, name, "third\n")
    assert p.wait(timeout=60) == 0
    wait_for(lambda: sv.ctl("logs", "--tail", "2", name).stdout == "got:third\neof\n",
             what="the third run's output")


def test_a_restarted_interactive_container_keeps_its_stdin(sv, sv_rootfs, cleanup):
    """The restart monitor gives the new task the same stdin FIFO: attach reaches it again."""
    name = sv.id("in")
    cleanup.append(name)
    sv.ctl("run", "-di", "--restart", "always", "--name", name, sv_rootfs, "sh", "-c",
           "read l; echo got:$l")
    assert _attach(sv, name, "one\n").wait(timeout=60) == 0
    wait_for(lambda: inspect(sv, name)["RestartCount"] >= 1
             and inspect(sv, name)["State"]["Status"] == "running", what="the restart")
    assert _attach(sv, name, "two\n").wait(timeout=60) == 0
    wait_for(lambda: sv.ctl("logs", name).stdout.split()[:2] == ["got:one", "got:two"],
             what="both inputs")
