"""pytest wiring of the engine scenarios: one workspace, one containerd daemon, one podman store
and one image build per session; every scenario parametrized over the runtime (pyrunc, runc).

The scenarios run only when asked for (a path inside conformance/engines/ on the command line,
or ENGINE_TESTS=1), so ``pytest conformance`` stays the runtime-only conformance suite.

At the end a table prints one row per scenario and one column per runtime.  A failing test
shows the runtime calls the engine made while it ran (from the tracing wrappers, see
enginelib).  ENGINES_TABLE=FILE also writes the table as markdown.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import enginelib as el  # noqa: E402

RUNTIMES = ["pyrunc", "runc"]
ENGINE_OF = {"test_podman": "podman", "test_containerd": "containerd (ctr)",
             "test_cri": "containerd (CRI, BinaryName)",
             "test_podman_rootless": "podman (rootless)"}


def _asked_for(config) -> bool:
    if os.environ.get("ENGINE_TESTS") == "1":
        return True
    for arg in config.args:
        p = Path(arg.split("::")[0]).resolve()
        if p == HERE or HERE in p.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    p = Path(collection_path)
    if (p.parent == HERE and p.name.startswith("test_") and p.suffix == ".py"
            and not _asked_for(config)):
        return True
    return None


# ---------------------------------------------------------------- session resources

@pytest.fixture(scope="session")
def ws():
    if os.geteuid() != 0:
        pytest.skip("host: the engine scenarios need root")
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):             # CI's time-out: still clean up
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_term)
    w = el.Workspace()
    try:
        yield w
    finally:
        w.cleanup()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def podman(ws):
    p = el.Podman(ws)
    try:
        p.import_images(el.build_rootfs_tar(ws))
        yield p
    finally:
        p.cleanup()


@pytest.fixture(scope="session")
def oci_archives(ws, podman) -> dict[str, Path]:
    out = {}
    for image in (el.IMAGE, el.PAUSE_IMAGE):
        dest = ws.path / "image" / (image.split("/")[-1].replace(":", "-") + ".oci.tar")
        podman.save_oci(image, dest)
        out[image] = dest
    return out


@pytest.fixture(scope="session")
def containerd(ws, oci_archives):
    c = el.Containerd(ws)
    ws.cleanups.append(c.remove_shim_sockets)       # once the shims are surely gone
    try:
        c.start()
        c.import_image(oci_archives[el.IMAGE])
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cri(ws, containerd, oci_archives):
    import crilib
    pb = crilib.compile_proto(ws)
    for archive in oci_archives.values():
        containerd.import_image(archive, ns=crilib.CRI_NS)
    client = crilib.Cri(containerd, pb, el.IMAGE)
    try:
        client.wait_ready()
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session", params=RUNTIMES)
def runtime(request, ws) -> el.Runtime:
    return ws.runtimes[request.param]


@pytest.fixture
def pm(podman, runtime):
    client = el.PodmanClient(podman, runtime)
    try:
        yield client
    finally:
        client.cleanup()


@pytest.fixture
def ctr(containerd, runtime):
    client = el.CtrClient(containerd, runtime)
    try:
        yield client
    finally:
        client.cleanup()


# ---------------------------------------------------------------- reporting

@pytest.fixture(autouse=True)
def _trace_calls(request, ws):
    request.node._trace_offset = ws.trace_offset()
    request.node._ws = ws
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    ws = getattr(item, "_ws", None)
    if report.failed and ws is not None and hasattr(item, "_trace_offset"):
        calls = ws.trace_since(item._trace_offset).strip()
        report.sections.append(("runtime calls made by the engine", calls or "(none)"))


_results: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)


def _row_of(nodeid: str) -> tuple[str, str, str] | None:
    path, _, rest = nodeid.partition("::")
    name, _, param = rest.partition("[")
    param = param.rstrip("]")
    if param not in RUNTIMES:
        return None
    engine = ENGINE_OF.get(Path(path).stem, Path(path).stem)
    scenario = name.removeprefix("test_").replace("_", " ")
    return engine, scenario, param


def pytest_runtest_logreport(report):
    row = _row_of(report.nodeid)
    if row is None:
        return
    engine, scenario, rt = row
    cell = _results[(engine, scenario)]
    if report.when == "call":
        cell[rt] = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}[report.outcome]
    elif report.failed and cell.get(rt) != "FAIL":
        cell[rt] = "ERROR"
    elif report.skipped and rt not in cell:
        cell[rt] = "skip"


def results_table(markdown: bool = False) -> str:
    rows = [(e, s, c) for (e, s), c in _results.items()]
    if not rows:
        return ""
    head = ["engine", "scenario", *RUNTIMES]
    body = [[e, s, *(c.get(r, "-") for r in RUNTIMES)] for e, s, c in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in body]
    totals = [sum(1 for _, _, c in rows if c.get(r) == "pass") for r in RUNTIMES]
    lines.append(fmt.format("", "passed", *(f"{t}/{len(rows)}" for t in totals)))
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    table = results_table()
    if not table:
        return
    terminalreporter.section("engine scenarios: pyrunc vs runc")
    terminalreporter.write_line(table)
    dest = os.environ.get("ENGINES_TABLE")
    if dest:
        Path(dest).write_text(results_table(markdown=True))
