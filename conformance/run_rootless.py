"""The conformance suite as an unprivileged user: the runtimes as rootless podman calls them.

As root: makes a throwaway user (tools/testuser.py: its own /etc/subuid and /etc/subgid range,
removed afterwards with every process it left), then runs ``run.py`` as that user with
``OCISUITE_ROOTLESS`` set, so that every bundle's baseline maps the user to root and its
subordinate range after it, without a network namespace of its own (ocisuite/bundle.py).
Options are run.py's (``--runtime`` repeatable, ``--filter``, ``--markdown``, ``--tap``...).

    .venv/bin/python conformance/run_rootless.py --runtime .venv/bin/pyrunc --runtime /usr/sbin/runc

Checks that need what an unprivileged user cannot have (cgroups on a host that delegates none,
device nodes, host namespaces made by root) fail for every runtime alike: the comparison
between the columns is what this run is for.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import testuser  # noqa: E402


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("run_rootless.py: needs root (to make the test user)", file=sys.stderr)
        return 2
    with testuser.test_user() as user:
        ids = f"{user.uid}:{user.gid}:{user.subuid[0]}:{user.subgid[0]}:" \
              f"{min(user.subuid[1], user.subgid[1])}"
        tmp = user.mkdir("suite")
        argv, json_out = _take_json(argv)
        argv = [os.path.abspath(a) if os.path.exists(a) else a for a in argv]
        if json_out:    # written by the user in its own directory, copied out before it goes
            argv += ["--json", os.path.join(str(tmp), "outcomes.json")]
        env = dict(user.env, OCISUITE_ROOTLESS=ids, TMPDIR=str(tmp),
                   OCI_SPEC_DIR=os.environ.get("OCI_SPEC_DIR", ""))
        if not env["OCI_SPEC_DIR"]:
            del env["OCI_SPEC_DIR"]
        cmd = user.argv([sys.executable, os.path.join(HERE, "run.py"), *argv])
        code = subprocess.run(cmd, env=env, cwd=str(tmp), stdin=subprocess.DEVNULL).returncode
        if json_out:
            shutil.copyfile(os.path.join(str(tmp), "outcomes.json"), json_out)
        return code


def _take_json(argv: list[str]) -> tuple[list[str], str]:
    """Remove ``--json FILE`` from run.py's options: FILE is written here, as root."""
    out, path, it = [], "", iter(argv)
    for a in it:
        if a == "--json":
            path = os.path.abspath(next(it, ""))
        elif a.startswith("--json="):
            path = os.path.abspath(a[len("--json="):])
        else:
            out.append(a)
    return out, path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
