"""The command line: runc's flag syntax, spec, features, version; unit tests of the parser."""

import json
import os
import signal
import subprocess

import pytest

from harness import PYRUNC
from pyrunc import cli


def pyrunc(*args, cwd=None):
    return subprocess.run([PYRUNC, *args], capture_output=True, text=True, timeout=30, cwd=cwd)


@pytest.mark.parametrize("argv,expected", [
    (["--root", "/x", "list"], ({"root": "/x"}, ["list"])),
    (["--root=/x", "list"], ({"root": "/x"}, ["list"])),
    (["-root", "/x", "list"], ({"root": "/x"}, ["list"])),
    (["--debug", "state", "--root", "y"], ({"debug": True}, ["state", "--root", "y"])),
    (["--debug=false", "x"], ({"debug": False}, ["x"])),
])
def test_go_style_flags(argv, expected):
    values, rest = cli.parse_flags(argv, cli.GLOBAL_FLAGS)
    want_values, want_rest = expected
    assert {k: values[k] for k in want_values} == want_values
    assert rest == want_rest


def test_flags_stop_at_first_positional_and_aliases():
    table = cli.COMMANDS["create"][1]
    values, rest = cli.parse_flags(["-b", "/bun", "--preserve-fds=2", "id", "--pid-file", "p"],
                                   table)
    assert values["bundle"] == "/bun" and values["preserve-fds"] == 2
    assert rest == ["id", "--pid-file", "p"]
    with pytest.raises(cli.UsageError, match="invalid value"):
        cli.parse_flags(["--preserve-fds", "two", "id"], table)
    with pytest.raises(cli.UsageError, match="needs an argument"):
        cli.parse_flags(["--bundle"], table)


@pytest.mark.parametrize("text,num", [("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("9", 9),
                                      ("TERM", 15), ("SIGRTMIN+2", signal.SIGRTMIN + 2),
                                      ("RTMAX-1", signal.SIGRTMAX - 1)])
def test_parse_signal(text, num):
    assert cli.parse_signal(text) == num


@pytest.mark.parametrize("text", ["NOPE", "65", "999", "SIG_DFL", "-9"])
def test_parse_bad_signal(text):
    with pytest.raises(cli.UsageError):
        cli.parse_signal(text)


def test_version_and_help():
    res = pyrunc("--version")
    assert res.returncode == 0 and res.stdout.startswith("pyrunc version ")
    assert "spec: 1.3.0" in res.stdout
    res = pyrunc("--help")
    assert res.returncode == 0
    for name in ("create", "start", "run", "state", "kill", "delete", "list", "spec",
                 "features"):
        assert f"   {name}" in res.stdout


def test_features_matches_schema():
    res = pyrunc("features")
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    jsonschema = pytest.importorskip("jsonschema")
    from pyrunc import validate
    jsonschema.validate(doc, validate.load_schema("features"))
    assert doc["ociVersionMax"] == "1.3.0"
    assert doc["linux"]["seccomp"]["enabled"] is False
    assert "time" in doc["linux"]["namespaces"]
    assert "rro" in doc["mountOptions"] and "CAP_CHECKPOINT_RESTORE" in doc["linux"][
        "capabilities"]


def test_spec_writes_valid_config(tmp_path):
    res = pyrunc("spec", "--bundle", str(tmp_path))
    assert res.returncode == 0, res
    with open(tmp_path / "config.json") as f:
        doc = json.load(f)
    from pyrunc import validate
    assert validate.validate(doc, "config") == []
    assert doc["process"]["terminal"] is True and doc["root"]["path"] == "rootfs"
    res = pyrunc("spec", "--bundle", str(tmp_path))
    assert res.returncode == 1 and "exists" in res.stderr


def test_spec_rootless(tmp_path):
    res = pyrunc("spec", "--rootless", cwd=str(tmp_path))
    assert res.returncode == 0, res
    with open(tmp_path / "config.json") as f:
        doc = json.load(f)
    types = [ns["type"] for ns in doc["linux"]["namespaces"]]
    assert "user" in types and "network" not in types
    assert doc["linux"]["uidMappings"][0]["hostID"] == os.geteuid()


def test_spec_config_runs(runtime, tmp_path):
    """What ``spec`` writes runs as is (once the terminal is turned off)."""
    bundle = runtime.bundle()
    os.unlink(os.path.join(bundle, "config.json"))
    assert pyrunc("spec", "--bundle", bundle).returncode == 0
    with open(os.path.join(bundle, "config.json")) as f:
        doc = json.load(f)
    doc["process"]["terminal"] = False
    doc["process"]["args"] = ["sh", "-c", "echo ok"]
    runtime.write_config(bundle, doc)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert (res.rc, res.out) == (0, "ok\n"), res
