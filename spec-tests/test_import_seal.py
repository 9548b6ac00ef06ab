"""The init imports every module it needs before the root changes (pyrunc/init.py,
``seal_imports``): in test runs (``PYRUNC_CHECK_IMPORTS=1``, set for the whole suite by
conftest.py) and with ``--debug``, any import after pivot_root, chroot (``--no-pivot``) or the
setns of ``exec`` fails the command, naming the module.

``PYRUNC_CHECK_IMPORTS=probe`` makes the real init (or exec child) import a module right after
sealing, so these tests see the check fire in a real container; the other tests show that the
init obeys the rule on the paths the suite does not cover otherwise (hooks, ``--debug``).
"""

import os
import subprocess

from harness import base_config


def _env(mode: str) -> dict:
    return dict(os.environ, PYRUNC_CHECK_IMPORTS=mode)


def test_an_import_after_pivot_root_fails_create(runtime):
    res = runtime.run(base_config(["true"]), env=_env("probe"))
    assert res.rc != 0 and "import of colorsys after pivot_root" in res.err, res


def test_an_import_after_chroot_fails_create(runtime):
    bundle = runtime.bundle(base_config(["true"]))
    res = runtime("run", "--no-pivot", "--bundle", bundle, runtime.new_id(),
                  stdin=subprocess.DEVNULL, env=_env("probe"))
    assert res.rc != 0 and "import of colorsys after chroot" in res.err, res


def test_an_import_after_joining_the_container_fails_exec(runtime):
    bundle = runtime.bundle(base_config(["sleep", "60"]))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, env=_env("1"), check=True)
    res = runtime("exec", cid, "true", env=_env("probe"))
    assert res.rc != 0 and "import of colorsys after setns" in res.err, res
    runtime("delete", "--force", cid, check=True)


def test_debug_runs_are_checked_and_pass(runtime):
    """--debug turns the check on by itself; the init then loads nothing late, hooks included."""
    cfg = base_config(["sh", "-c", "echo ran"])
    cfg["hooks"] = {"createContainer": [{"path": "/bin/true"}],
                    "startContainer": [{"path": "/bin/true"}]}
    env = {k: v for k, v in os.environ.items() if k != "PYRUNC_CHECK_IMPORTS"}
    bundle = runtime.bundle(cfg)
    res = runtime("--debug", "run", "--bundle", bundle, runtime.new_id(),
                  stdin=subprocess.DEVNULL, env=env)
    assert res.rc == 0 and res.out.strip() == "ran", res
    env["PYRUNC_CHECK_IMPORTS"] = "probe"    # and the check was on: probing fails
    res = runtime("--debug", "run", "--bundle", runtime.bundle(cfg), runtime.new_id(),
                  stdin=subprocess.DEVNULL, env=env)
    assert res.rc != 0 and "import of colorsys" in res.err, res
