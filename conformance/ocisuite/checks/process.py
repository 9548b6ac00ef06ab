"""The process object (config.md#process, #posix-process, #linux-process, #user),
read from inside the container.

Two probes carry most checks: one as root with the baseline capabilities, one as
an unprivileged user with groups, umask, rlimits, oomScoreAdj, noNewPrivileges
and all five capability sets.  What the container sees is the state after the
runtime's execve(2) of the user program, so capability expectations follow the
kernel's rules (capabilities(7)): for a non-root program without file
capabilities, permitted and effective become the ambient set; for root they
become bounding | inheritable.  Bounding, inheritable and ambient pass through
execve unchanged.
"""

from __future__ import annotations

import os

from .. import probe
from ..bundle import BASE_CAPS
from ..registry import MUST, SHOULD, Failed, Skipped, check, expect, expect_eq
from .common import expect_error, field_refused, own_oom_score_adj, raise_oom_score_adj, sleeper

PROC_COMMANDS = {
    "status": "cat /proc/$$/status",
    "limits": "cat /proc/$$/limits",
    "environ": "tr '\\0' '\\n' < /proc/$$/environ",
    "cwd": "pwd",
    "umask": "umask",
    "oom": "cat /proc/$$/oom_score_adj",
    "fds": "ls /proc/$$/fd",
    "write-root": "touch /rw-probe && echo writable",
}

ENV = ["PATH=/bin", "HOME=/root", "OCISUITE_ENV=a b=c", "OCISUITE_EMPTY="]
LEAK_VAR = "OCISUITE_RUNTIME_ONLY"

USER_CAPS = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_AUDIT_WRITE"],
    "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
    "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
    "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
    "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
}
RLIMITS = [
    {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
    {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
    {"type": "RLIMIT_NPROC", "soft": 4000, "hard": 5000},
]
LIMIT_NAMES = {"RLIMIT_NOFILE": "Max open files", "RLIMIT_CORE": "Max core file size",
               "RLIMIT_NPROC": "Max processes"}


def root_probe(s) -> dict:
    """Root, cwd /tmp, extra env; the runtime gets an extra env var, an extra open
    fd and a raised oom_score_adj that the container must (not) inherit."""
    def compute():
        b = s.bundle()
        b.process.update(cwd="/tmp", env=list(ENV))
        canary = os.open(s.workdir / "scratch", os.O_RDONLY | os.O_DIRECTORY)
        oom = min(1000, own_oom_score_adj() + 7)
        env = dict(os.environ, **{LEAK_VAR: "leaked"})
        try:
            p = probe.run(s, b, PROC_COMMANDS, pass_fds=(canary,), env=env,
                          preexec_fn=raise_oom_score_adj(oom))
        finally:
            os.close(canary)
        return {"probe": p, "oom": oom, "canary": canary}
    return s.cached("process-root", compute)


def user_probe(s) -> dict:
    def compute():
        b = s.bundle()
        oom = max(500, own_oom_score_adj())
        b.process.update(
            user={"uid": 1000, "gid": 1000, "additionalGids": [1001, 2000], "umask": 0o027},
            capabilities={k: list(v) for k, v in USER_CAPS.items()},
            rlimits=[dict(r) for r in RLIMITS], oomScoreAdj=oom, noNewPrivileges=True,
            cwd="/home/user")
        try:
            return {"probe": probe.run(s, b, PROC_COMMANDS), "oom": oom}
        except Failed as exc:
            field_refused(s, exc)
    return s.cached("process-user", compute)


def _status(s, which) -> dict:
    return probe.parse_status(which(s)["probe"].out("status"))


def _caps(s, which, field: str) -> set[str]:
    return probe.cap_names(_status(s, which)[field])


# -- root probe -----------------------------------------------------------------------

@check("process.cwd", "config.md#process", MUST,
       "the program runs in process.cwd")
def cwd(s):
    expect_eq(root_probe(s)["probe"].out("cwd").strip(), "/tmp", "working directory")


@check("process.env", "config.md#process", MUST,
       "the program's environment holds every process.env entry")
def env(s):
    environ = root_probe(s)["probe"].out("environ").splitlines()
    missing = [e for e in ENV if e not in environ]
    expect(not missing, f"missing from the environment: {missing} (got {environ})")


@check("process.env-no-leak", "config.md#process", MUST,
       "the environment is process.env: the runtime's own variables are not passed on")
def env_no_leak(s):
    environ = root_probe(s)["probe"].out("environ").splitlines()
    leaked = [e for e in environ if e.startswith(LEAK_VAR + "=")]
    expect(not leaked, f"the runtime's environment leaked into the container: {leaked}")


@check("process.fds", "runtime-linux.md#file-descriptors", MUST,
       "by default only stdin, stdout and stderr are open (no fd the runtime inherited)")
def fds(s):
    listing = root_probe(s)["probe"].out("fds").split()
    expect_eq(sorted(listing, key=lambda x: (len(x), x)), ["0", "1", "2"],
              "open fds of the container process")


@check("process.oom-unset", "config.md#linux-process", MUST,
       "without oomScoreAdj the runtime MUST NOT change oom_score_adj")
def oom_unset(s):
    r = root_probe(s)
    expect_eq(r["probe"].out("oom").strip(), str(r["oom"]),
              "oom_score_adj (the value the runtime was started with)")


@check("process.nnp-false", "config.md#linux-process", MUST,
       "with noNewPrivileges false the no_new_privs bit is not set")
def nnp_false(s):
    expect_eq(_status(s, root_probe).get("NoNewPrivs"), "0", "NoNewPrivs")


@check("process.caps-root", "config.md#linux-process", MUST,
       "root's capabilities: bounding as configured; permitted/effective per execve rules")
def caps_root(s):
    bnd = _caps(s, root_probe, "CapBnd")
    expect_eq(sorted(bnd), sorted(BASE_CAPS), "CapBnd")
    expect_eq(sorted(_caps(s, root_probe, "CapPrm")), sorted(BASE_CAPS), "CapPrm")
    expect_eq(sorted(_caps(s, root_probe, "CapEff")), sorted(BASE_CAPS), "CapEff")


@check("config.root-writable", "config.md#root", MUST,
       "root.readonly false: the root filesystem is writable")
def root_writable(s):
    expect_eq(root_probe(s)["probe"].out("write-root").strip(), "writable", "touch /rw-probe")


# -- user probe -----------------------------------------------------------------------

@check("process.user-uid", "config.md#posix-platform-user", MUST,
       "the program runs as user.uid (real, effective, saved, fs)")
def user_uid(s):
    expect_eq(_status(s, user_probe).get("Uid", "").split(), ["1000"] * 4, "Uid")


@check("process.user-gid", "config.md#posix-platform-user", MUST,
       "the program runs as user.gid (real, effective, saved, fs)")
def user_gid(s):
    expect_eq(_status(s, user_probe).get("Gid", "").split(), ["1000"] * 4, "Gid")


@check("process.user-groups", "config.md#posix-platform-user", MUST,
       "the supplementary groups are user.additionalGids")
def user_groups(s):
    groups = sorted(int(g) for g in _status(s, user_probe).get("Groups", "").split())
    expect_eq(groups, [1001, 2000], "Groups")


@check("process.umask", "config.md#posix-platform-user", MUST,
       "the program's umask is user.umask")
def umask(s):
    expect_eq(user_probe(s)["probe"].out("umask").strip(), "0027", "umask")


@check("process.nnp-true", "config.md#linux-process", MUST,
       "noNewPrivileges true sets the no_new_privs bit")
def nnp_true(s):
    expect_eq(_status(s, user_probe).get("NoNewPrivs"), "1", "NoNewPrivs")


@check("process.oom-set", "config.md#linux-process", MUST,
       "oomScoreAdj set: the runtime MUST set oom_score_adj to the given value")
def oom_set(s):
    r = user_probe(s)
    expect_eq(r["probe"].out("oom").strip(), str(r["oom"]), "oom_score_adj")


@check("process.rlimits", "config.md#posix-process", MUST,
       "for each rlimit, rlim_cur MUST match soft and rlim_max MUST match hard")
def rlimits(s):
    limits = probe.parse_limits(user_probe(s)["probe"].out("limits"))
    for r in RLIMITS:
        got = limits.get(LIMIT_NAMES[r["type"]])
        expect_eq(got, (str(r["soft"]), str(r["hard"])), f"{r['type']} (soft, hard)")


@check("process.caps-bounding", "config.md#linux-process", MUST,
       "the bounding set is capabilities.bounding")
def caps_bounding(s):
    expect_eq(sorted(_caps(s, user_probe, "CapBnd")), sorted(USER_CAPS["bounding"]), "CapBnd")


@check("process.caps-inheritable", "config.md#linux-process", MUST,
       "the inheritable set is capabilities.inheritable")
def caps_inheritable(s):
    expect_eq(sorted(_caps(s, user_probe, "CapInh")), sorted(USER_CAPS["inheritable"]), "CapInh")


@check("process.caps-ambient", "config.md#linux-process", MUST,
       "the ambient set is capabilities.ambient")
def caps_ambient(s):
    expect_eq(sorted(_caps(s, user_probe, "CapAmb")), sorted(USER_CAPS["ambient"]), "CapAmb")


@check("process.caps-effective", "config.md#linux-process", MUST,
       "a non-root program keeps its ambient capabilities permitted and effective")
def caps_effective(s):
    want = sorted(USER_CAPS["ambient"])
    expect_eq(sorted(_caps(s, user_probe, "CapPrm")), want, "CapPrm (= ambient after execve)")
    expect_eq(sorted(_caps(s, user_probe, "CapEff")), want, "CapEff (= ambient after execve)")


# -- separate containers ------------------------------------------------------------

@check("process.args", "config.md#process", MUST,
       "the program gets process.args as its argv, byte for byte")
def args(s):
    b, c = sleeper(s)
    b.set_args("sh", "-c", 'printf "[%s]" "$0" "$@"', "zero", "a b", "", "*", "x'y")
    out = c.run()
    expect_eq(out.strip(), "[zero][a b][][*][x'y]", "argv as printed by the program")


@check("process.args-path", "config.md#process", MUST,
       "args[0] is looked up like execvp's file, in the PATH of process.env")
def args_path(s):
    b, c = sleeper(s)
    (b.rootfs / "opt" / "bin").mkdir()
    prog = b.rootfs / "opt" / "bin" / "ocisuite-prog"
    prog.write_text("#!/bin/sh\necho from-opt-bin\n")
    prog.chmod(0o755)
    b.process["env"] = ["PATH=/opt/bin:/bin"]
    b.set_args("ocisuite-prog")
    expect_eq(c.run().strip(), "from-opt-bin", "output of args[0] found through PATH")


@check("process.args-missing", "runtime.md#start", MUST,
       "args[0] that cannot be executed: create or start MUST generate an error")
def args_missing(s):
    b, c = sleeper(s)
    b.set_args("/no/such/program")
    res = c.create()
    if res.ok:
        expect_error(c.start(), "start of a program that does not exist")
    s.diag(f"create: {res.summary()}")


@check("process.caps-unknown", "config.md#linux-process", MUST,
       "a capability that cannot be mapped MUST be logged as a warning: create goes on")
def caps_unknown(s):
    b, c = sleeper(s)
    for field in ("bounding", "effective", "permitted"):
        b.process["capabilities"][field].append("CAP_OCISUITE_UNKNOWN")
    b.set_script("echo ran")
    expect("ran" in c.run(), "the program did not run")


@check("process.caps-ungrantable", "config.md#linux-process", SHOULD,
       "runtimes SHOULD NOT fail for capabilities that cannot be granted")
def caps_ungrantable(s):
    own = probe.cap_names(probe.parse_status(open("/proc/self/status").read())["CapBnd"])
    missing = [c for c in probe.CAPS if c not in own]
    if not missing:
        raise Skipped("host: the suite holds every capability, none is ungrantable")
    b, c = sleeper(s)
    for field in ("bounding", "effective", "permitted"):
        b.process["capabilities"][field].extend(missing)
    s.diag(f"capabilities the suite itself lacks: {missing}")
    b.set_script("echo ran")
    expect("ran" in c.run(), "the program did not run")
