"""process.* (config.md "Process"), asserted from inside the container."""

import pytest

from harness import base_config, status_fields

ALL_CAPS_MASK = None


def cap_mask(*names) -> str:
    from pyrunc.capabilities import NUMBERS
    bits = 0
    for n in names:
        bits |= 1 << NUMBERS[n]
    return f"{bits:016x}"


def run_sh(runtime, script, **process_changes):
    cfg = base_config(["sh", "-c", script])
    cfg["process"].update(process_changes)
    res = runtime.run(cfg)
    assert res.rc == 0, res
    return res.out


def test_args_env_cwd(runtime):
    cfg = base_config(["sh", "-c", 'echo "$0|$1|$FOO|$(pwd)"', "zero", "one"])
    cfg["process"]["env"].append("FOO=bar baz")
    cfg["process"]["cwd"] = "/tmp"
    res = runtime.run(cfg)
    assert res.out == "zero|one|bar baz|/tmp\n"


def test_cwd_created_when_missing(runtime):
    assert run_sh(runtime, "pwd", cwd="/does/not/exist/yet") == "/does/not/exist/yet\n"


def test_env_is_exact_plus_home(runtime):
    out = run_sh(runtime, "env | sort", env=["A=1", "PATH=/bin"])
    assert out.split() == ["A=1", "HOME=/root", "PATH=/bin", "PWD=/", "SHLVL=1"] or \
        {"A=1", "HOME=/root", "PATH=/bin"} <= set(out.split())
    assert not any(v.startswith("PYTHON") or v.startswith("LISTEN") for v in out.split())


def test_user_uid_gid_groups(runtime):
    out = run_sh(runtime, "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups)' /proc/self/status",
                 user={"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]})
    lines = out.splitlines()
    assert lines[0] == "1000" and lines[1] == "1000"
    assert sorted(lines[2].split()) == ["1000", "5", "65534"]
    st = status_fields("\n".join(lines[3:]))
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1000"] * 4
    assert sorted(st["Groups"].split()) == ["5", "65534"]


def test_home_from_passwd(runtime):
    assert run_sh(runtime, 'echo "$HOME"', user={"uid": 1000, "gid": 1000}) == "/home/user\n"


def test_umask(runtime):
    assert run_sh(runtime, "umask", user={"uid": 0, "gid": 0, "umask": 0o077}) == "0077\n"
    assert run_sh(runtime, "umask") == "0022\n"


def test_rlimits(runtime):
    out = run_sh(runtime, "grep -E 'Max open files|Max core file size' /proc/self/limits",
                 rlimits=[{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
                          {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096}])
    lines = {l.split("  ")[0]: l.split()[-3:-1] for l in out.splitlines()}
    assert lines["Max open files"] == ["321", "654"]
    assert lines["Max core file size"] == ["0", "4096"]


def test_rlimit_above_hard_limit_fails(runtime):
    cfg = base_config(["true"])
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10**7, "hard": 10**7}]
    res = runtime.run(cfg)
    assert res.rc != 0 and "RLIMIT_NOFILE" in res.err


def test_unknown_rlimit_is_an_error(runtime):
    cfg = base_config(["true"])
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "RLIMIT_BOGUS" in res.err


def test_capabilities_all_sets_as_root(runtime):
    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETPCAP"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL"]}
    st = status_fields(run_sh(runtime, "cat /proc/self/status", capabilities=caps))
    assert st["CapBnd"] == cap_mask(*caps["bounding"])
    assert st["CapInh"] == cap_mask(*caps["inheritable"])
    assert st["CapAmb"] == cap_mask(*caps["ambient"])


def test_capabilities_non_root_ambient(runtime):
    """A non-root process keeps exactly its ambient set (plus nothing) across exec."""
    caps = {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "effective": ["CAP_NET_BIND_SERVICE"], "permitted": ["CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    st = status_fields(run_sh(runtime, "cat /proc/self/status", capabilities=caps,
                              user={"uid": 1000, "gid": 1000}))
    mask = cap_mask("CAP_NET_BIND_SERVICE")
    assert (st["CapEff"], st["CapPrm"], st["CapInh"], st["CapAmb"]) == (mask,) * 4
    assert st["CapBnd"] == cap_mask("CAP_NET_BIND_SERVICE", "CAP_KILL")


def test_no_capabilities_object_keeps_root_caps(runtime):
    cfg = base_config(["cat", "/proc/self/status"])
    del cfg["process"]["capabilities"]
    res = runtime.run(cfg)
    with open("/proc/self/status") as f:
        host = status_fields(f.read())
    assert status_fields(res.out)["CapBnd"] == host["CapBnd"]


def test_unknown_capability_warns_and_runs(runtime):
    cfg = base_config(["true"])
    cfg["process"]["capabilities"]["bounding"].append("CAP_NOT_A_THING")
    res = runtime.run(cfg)
    assert res.rc == 0
    assert "CAP_NOT_A_THING" in res.err and "warning" in res.err


# Runs the rest of its command line with one capability dropped from the bounding set.  A fresh
# interpreter, not a preexec_fn: this test process may hold threads (grpc's, from the supervisor
# tests) that a fork must not carry into arbitrary code.
_DROP_CAP = ("import ctypes, os, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "if libc.prctl(24, int(sys.argv[1]), 0, 0, 0) != 0:   # PR_CAPBSET_DROP\n"
             "    sys.exit(f'prctl: {os.strerror(ctypes.get_errno())}')\n"
             "os.execv(sys.argv[2], sys.argv[2:])\n")


def test_ungrantable_capability_warns_and_runs_without_it(runtime):
    """A runtime without CAP_SYS_RESOURCE in its own bounding set cannot grant it: config.md
    says warn and go on.  The setup child parses config.json on its own; it must drop the
    capability exactly as the parent (which warns) does."""
    import subprocess
    import sys
    from harness import PYRUNC
    from pyrunc.capabilities import NUMBERS
    caps = {s: ["CAP_KILL", "CAP_SYS_RESOURCE"] for s in ("bounding", "effective", "permitted")}
    cfg = base_config(["sh", "-c", "cat /proc/self/status"])
    cfg["process"]["capabilities"] = caps
    bundle = runtime.bundle(cfg)
    res = subprocess.run([sys.executable, "-c", _DROP_CAP, str(NUMBERS["CAP_SYS_RESOURCE"]),
                          PYRUNC, "--root", runtime.root, "run", "--bundle", bundle,
                          runtime.new_id()], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res
    assert "CAP_SYS_RESOURCE cannot be granted" in res.stderr and "warning" in res.stderr
    st = status_fields(res.stdout)
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == cap_mask("CAP_KILL")


@pytest.mark.parametrize("nnp,expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(runtime, nnp, expected):
    st = status_fields(run_sh(runtime, "cat /proc/self/status", noNewPrivileges=nnp))
    assert st["NoNewPrivs"] == expected


def test_oom_score_adj(runtime):
    assert run_sh(runtime, "cat /proc/self/oom_score_adj", oomScoreAdj=500) == "500\n"
    with open("/proc/self/oom_score_adj") as f:
        ours = f.read()
    assert run_sh(runtime, "cat /proc/self/oom_score_adj") == ours


def test_hostname_domainname(runtime):
    cfg = base_config(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"])
    cfg["hostname"] = "box1"
    cfg["domainname"] = "example.test"
    assert runtime.run(cfg).out == "box1\nexample.test\n"


def test_stdio_reaches_container_untouched(runtime, tmp_path):
    import subprocess
    bundle = runtime.bundle(base_config(["sh", "-c", "read line; echo got:$line; "
                                                     "ls -l /proc/self/fd/0 /proc/self/fd/1"]))
    cid = runtime.new_id()
    from harness import PYRUNC
    proc = subprocess.run([PYRUNC, "--root", runtime.root, "run", "--bundle", bundle, cid],
                          input="hello\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[0] == "got:hello"
    assert "pipe:[" in lines[1] and "pipe:[" in lines[2]


def test_session_leader(runtime):
    out = run_sh(runtime, "cut -d' ' -f6 /proc/self/stat; echo $$")
    sid, pid = out.split()
    assert sid == pid == "1"


def test_signals_not_ignored(runtime):
    """Python ignores SIGPIPE; the container's process must not inherit that."""
    res = runtime.run(base_config(["cat", "/proc/self/status"]))   # not via sh: shells ignore some
    st = status_fields(res.out)
    assert int(st["SigIgn"], 16) == 0
    assert int(st["SigBlk"], 16) == 0
