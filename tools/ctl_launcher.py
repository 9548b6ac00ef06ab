"""Write a fast start-up launcher for the ``pyrunc-ctl`` console script into the venv.

As tools/launcher.py does for ``pyrunc``: pip's script runs the interpreter with ``site`` (every
.pth file of the venv, Debian's sitecustomize) and honours PYTHON* variables, such as
PYTHONDONTWRITEBYTECODE, which would make every call compile pyrunc-ctl's modules again. This
launcher runs isolated and without ``site`` (``-I -S``), in UTF-8 mode, with the project and the
venv's site-packages appended to ``sys.path`` (the standard library is found first), and it
ends the process without the interpreter's teardown (``supervisor.ctl.exit_now``). The
modules' bytecode is compiled by ``make launcher`` (compileall).

Usage: python tools/ctl_launcher.py VENV PROJECT_DIR
"""

import os
import sys
import sysconfig


def main() -> None:
    venv, project = (os.path.abspath(p) for p in sys.argv[1:3])
    paths = [project]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths(vars={"base": venv, "platbase": venv})[key]
        if path not in paths:
            paths.append(path)
    script = (f"#!{venv}/bin/python3 -ISXutf8\n"
              "import sys\n"
              f"sys.path += {paths!r}\n"
              "from supervisor.ctl import exit_now, main\n"
              "exit_now(main())\n")
    target = os.path.join(venv, "bin", "pyrunc-ctl")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(script)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
