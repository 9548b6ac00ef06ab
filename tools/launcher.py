"""Write a fast start-up launcher for the ``pyrunc`` console script into the venv.

pip's generated script runs the venv's interpreter with ``site`` (and Debian's sitecustomize),
which costs ~3 ms on every ``pyrunc`` call.  This launcher runs it isolated and without
``site`` (``-I -S``: no user site, no PYTHON* variables, no .pth processing), in UTF-8 mode,
and puts the two directories pyrunc needs on ``sys.path`` itself.  Isolation also means a
caller's PYTHONPATH can never inject code into the runtime.  It also writes
``VENV/pyrunc.bundle``, pyrunc's modules compiled into one file, which the launcher imports from
(see pyrunc/bundle.py).

Usage: python tools/launcher.py VENV PROJECT_DIR
"""

import os
import sys
import sysconfig


def main() -> None:
    venv, project = (os.path.abspath(p) for p in sys.argv[1:3])
    purelib = sysconfig.get_paths(vars={"base": venv, "platbase": venv})["purelib"]
    platlib = sysconfig.get_paths(vars={"base": venv, "platbase": venv})["platlib"]
    paths = [project, purelib] + ([platlib] if platlib != purelib else [])
    # appended, not prepended: the standard library is found first (fewer lookups on every
    # import, and nothing in the project or site-packages can shadow a stdlib module)
    # The cyclic garbage collector is off from the first line: a pyrunc process lives for
    # milliseconds and makes no cycles worth collecting, while the collections that allocation
    # would trigger during the imports cost about 2 ms (and, after a fork, copy-on-write faults).
    sys.path.insert(0, project)
    from pyrunc import bundle
    bundle_path = os.path.join(venv, "pyrunc.bundle")
    bundle.build(os.path.join(project, "pyrunc"), bundle_path)
    # the loader itself, compiled, for the launcher to run before it can import anything from
    # the bundle; without a usable one (or once pyrunc/bundle.py is edited), the launcher
    # imports pyrunc.bundle the usual way
    boot_path = os.path.join(venv, "pyrunc.boot")
    bundle.build_boot(boot_path)
    # -X utf8 (spelt -ISXutf8: a #! line passes its flags as one argument): paths and output are
    # UTF-8 whatever the caller's locale, as runc's are, and start-up skips the locale's encoding
    # set-up (~0.9 million instructions, 5% of a short command)
    script = (f"#!{venv}/bin/python3 -ISXutf8\n"
              "import gc\n"
              "gc.disable()\n"
              "import marshal, sys\n"
              f"sys.path += {paths!r}\n"
              "try:\n"
              f"    with open({boot_path!r}, 'rb', buffering=0) as f:\n"
              "        exec(marshal.loads(f.read()))\n"
              "except (OSError, ValueError, EOFError, ImportError):\n"
              "    from pyrunc.bundle import install\n"
              f"install({bundle_path!r})\n"
              "from pyrunc.cli import entry\n"
              "entry()\n")
    target = os.path.join(venv, "bin", "pyrunc")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(script)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
