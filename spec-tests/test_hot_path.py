"""What every ``pyrunc`` call pays for: the commands engines call never import ``os``.

Importing ``os`` costs about 2 ms of every call (see pyrunc/linux/os.py).  These tests run
pyrunc's real commands on real containers under the interpreter's own import log
(``-X importtime``, which every process of a command writes to its stderr) and check that
none of their processes — the command, the stage-1 child, the container's init — imported
``os``, ``posixpath`` or ``_collections_abc``.  (The benchmark in bench/ measures the time.)
"""

import os
import subprocess
import tempfile

from harness import PYRUNC, base_config

HEAVY = {"os", "posixpath", "_collections_abc"}


def interpreter() -> list[str]:
    """The launcher's interpreter and flags, from its ``#!`` line."""
    with open(PYRUNC) as f:
        return f.readline()[2:].split()


def imports(rt, *args, check_rc: bool = True) -> set[str]:
    """Run ``pyrunc --root <rt.root> args`` with the import log on; the modules imported.
    (The root is made first: the first create under a new root makes it with os.makedirs,
    once per root, off the hot path.)"""
    os.makedirs(rt.root, exist_ok=True)
    cmd = [*interpreter(), "-X", "importtime", PYRUNC, "--root", rt.root, *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            timeout=60).returncode
        err.seek(0)
        log = err.read()
    lines = log.splitlines()
    if check_rc:
        assert rc == 0, f"{args}: rc {rc}: {[x for x in lines if 'import time' not in x]}"
    modules = {line.split("|")[2].strip() for line in lines
               if line.startswith("import time:") and line.count("|") == 2}
    assert "pyrunc.cli" in modules, log[-2000:]     # the log is there and is read right
    return modules - {"imported package"}


# what only create, run and exec need: the config's parser and checker, the setup
CREATING = {"pyrunc.create", "pyrunc.spec", "pyrunc.validate", "pyrunc.sync", "pyrunc.init"}


def test_the_lifecycle_commands_never_import_os(runtime):
    """... nor do the short commands load the code that creates containers."""
    bundle = runtime.bundle(base_config(["sleep", "60"]))
    cid = runtime.new_id()
    seen = {}
    for args in (["create", "--bundle", bundle, cid], ["start", cid], ["state", cid],
                 ["list"], ["exec", cid, "true"], ["pause", cid], ["resume", cid],
                 ["kill", cid, "KILL"], ["delete", "--force", cid]):
        modules = imports(runtime, *args)
        seen[args[0]] = modules & (HEAVY if args[0] in ("create", "exec") else HEAVY | CREATING)
    assert seen == {name: set() for name in seen}


def test_run_never_imports_os(runtime):
    bundle = runtime.bundle(base_config(["true"]))
    modules = imports(runtime, "run", "--bundle", bundle, runtime.new_id())
    assert {"pyrunc.init", "pyrunc.container"} <= modules   # the init's imports are logged too
    assert not modules & HEAVY


def test_a_command_that_needs_os_still_gets_it(runtime, tmp_path):
    """Off the hot path pyrunc uses os's Python layer where it helps (``spec`` writes through
    os.fdopen), and os is imported then: the stand-in is not a subset that breaks code."""
    assert "os" in imports(runtime, "spec", "--bundle", str(tmp_path))
    with open(tmp_path / "config.json") as f:
        assert '"ociVersion"' in f.read()
