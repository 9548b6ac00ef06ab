"""pyrunc/bundle.py: modules compiled into one file, imported from memory while their sources
are unchanged.  Each case runs in a fresh interpreter on a small package of its own."""

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tmp!r}]
    from pyrunc import bundle
    bundle.install({path!r})
    import pkg.sub.leaf, pkg.plain
    for name in ("pkg", "pkg.sub", "pkg.sub.leaf", "pkg.plain"):
        module = sys.modules[name]
        served = type(module.__spec__.loader).__name__ == "Finder"
        print(name, "bundle" if served else "files", module.__file__, module.VALUE,
              module.__doc__)
""")


def make_package(tmp) -> None:
    for rel, value in (("pkg/__init__.py", "1"), ("pkg/sub/__init__.py", "2"),
                       ("pkg/sub/leaf.py", "3"), ("pkg/plain.py", "4")):
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""doc of {rel}"""\nVALUE = {value}\n')


def probe(tmp, path) -> dict[str, list[str]]:
    code = PROBE.format(repo=REPO, tmp=str(tmp), path=str(path))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()}


def build(tmp):
    from pyrunc import bundle
    path = tmp / "pkg.bundle"
    assert bundle.build(str(tmp / "pkg"), str(path)) == 4
    return path


def test_modules_come_from_the_bundle_with_their_files_and_without_docstrings(tmp_path):
    make_package(tmp_path)
    seen = probe(tmp_path, build(tmp_path))
    assert seen["pkg"] == ["bundle", str(tmp_path / "pkg/__init__.py"), "1", "None"]
    assert seen["pkg.sub"][0] == "bundle" and seen["pkg.sub"][2] == "2"
    assert seen["pkg.sub.leaf"] == ["bundle", str(tmp_path / "pkg/sub/leaf.py"), "3", "None"]
    assert seen["pkg.plain"][:3] == ["bundle", str(tmp_path / "pkg/plain.py"), "4"]


def test_an_edited_module_is_loaded_from_its_source(tmp_path):
    make_package(tmp_path)
    path = build(tmp_path)
    leaf = tmp_path / "pkg/sub/leaf.py"
    mtime = leaf.stat().st_mtime_ns
    leaf.write_text('"""edited"""\nVALUE = 33\n')
    os.utime(leaf, ns=(mtime, mtime))   # an edit that even kept the mtime: the size tells
    seen = probe(tmp_path, path)
    assert seen["pkg.sub.leaf"] == ["files", str(leaf), "33", "edited"]
    assert seen["pkg.plain"][0] == "bundle"     # the others are still served


def test_a_bundle_from_another_python_or_a_missing_one_changes_nothing(tmp_path):
    make_package(tmp_path)
    path = build(tmp_path)
    data = path.read_bytes()
    path.write_bytes(b"\0\0\0\0" + data[4:])       # another magic number
    assert {v[0] for v in probe(tmp_path, path).values()} == {"files"}
    assert {v[0] for v in probe(tmp_path, tmp_path / "absent").values()} == {"files"}


def test_a_bundle_rebuilt_after_start_is_not_read(tmp_path):
    """A process keeps the index it read; a bundle replaced since (``make setup`` while a
    ``pyrunc`` runs) has other offsets: the process loads from the sources instead."""
    make_package(tmp_path)
    path = build(tmp_path)
    code = PROBE.format(repo=REPO, tmp=str(tmp_path), path=str(path)).replace(
        "import pkg.sub.leaf, pkg.plain",
        f"import os; os.replace({str(build_copy(tmp_path))!r}, {str(path)!r})\n"
        "import pkg.sub.leaf, pkg.plain")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert {line.split()[1] for line in out.splitlines()} == {"files"}, out


def build_copy(tmp):
    from pyrunc import bundle
    other = tmp / "other.bundle"
    bundle.build(str(tmp / "pkg"), str(other))
    return other


LAUNCHER = os.path.join(REPO, ".venv", "bin", "pyrunc")


def launcher_imports(launcher: str = LAUNCHER) -> set[str]:
    """The modules ``launcher --version`` imports, from the interpreter's import log."""
    with open(launcher) as f:
        interpreter = f.readline()[2:].split()
    proc = subprocess.run([*interpreter, "-X", "importtime", launcher, "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("pyrunc version"), proc
    return {line.split("|")[2].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_the_launcher_runs_the_boot_copy_and_imports_pyrunc_through_the_bundle():
    with open(LAUNCHER) as f:
        script = f.read()
    assert "pyrunc.boot" in script and "install(" in script
    bundle_path = script.split("install(")[1].split(")")[0].strip("'\"")
    assert os.path.isfile(bundle_path)
    modules = launcher_imports()
    assert "pyrunc.cli" in modules and "pyrunc.bundle" not in modules, modules


def test_a_launcher_without_its_boot_copy_imports_the_loader_from_its_file(tmp_path):
    with open(LAUNCHER) as f:
        script = f.read()
    (tmp_path / "garbage.boot").write_bytes(b"\xff not marshal data")
    for boot in (tmp_path / "missing.boot", tmp_path / "garbage.boot"):
        copy = tmp_path / "pyrunc"
        copy.write_text(script.replace(os.path.join(REPO, ".venv", "pyrunc.boot"), str(boot)))
        copy.chmod(0o755)
        assert "pyrunc.bundle" in launcher_imports(str(copy)), boot


def test_a_boot_copy_of_an_edited_loader_steps_aside(tmp_path):
    from pyrunc import bundle
    source = tmp_path / "bundle.py"
    source.write_text("x = 1\n")
    st = source.stat()
    bundle._check_boot(str(source), st.st_mtime_ns, st.st_size)     # unchanged: goes on
    source.write_text("x = 22\n")
    with pytest.raises(ImportError, match="changed since its boot copy was built"):
        bundle._check_boot(str(source), st.st_mtime_ns, st.st_size)
