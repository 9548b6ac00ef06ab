"""The daemon's sockets are claimed safely and a daemon that fails to start leaves nothing
(issue 19): supervisor/listen.py for every unix socket (the API, metrics, each shim's), the shim
pool shut down after a late start failure, and the garbage collector's round waited for before
the metadata store closes."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading

import pytest

from sv_harness import PYTHON, ROOT, Supervisor, wait_for
from test_sv_operate import UnixHTTPConnection, http_get


def answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def stale_socket(path: str) -> None:
    """A socket file nobody listens on any more (what a killed daemon leaves)."""
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()


def failed_start(daemon: Supervisor) -> subprocess.CompletedProcess:
    """Run a daemon that must refuse to start; its exit status and output."""
    return subprocess.run(
        [PYTHON, "-m", "supervisor.daemon", "--address", daemon.sock, "--state", daemon.state,
         "--root", daemon.root, *daemon.args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL)


def assert_nothing_left(daemon: Supervisor, own_socket: bool = True) -> None:
    """No shim or zygote of this daemon runs, no shim socket file stays, and (unless the address
    is a live daemon's) no API socket file."""
    wait_for(lambda: not daemon.shim_pids(), 30, what="the failed daemon's shims to exit")
    sock_dir = os.path.join(daemon.state, "s")
    assert not os.path.isdir(sock_dir) or os.listdir(sock_dir) == [], os.listdir(sock_dir)
    if own_socket:
        assert not os.path.exists(daemon.sock)


@pytest.fixture
def daemons(sv_rootfs):
    made = []

    def make(**kw) -> Supervisor:
        d = Supervisor(**kw)
        made.append(d)
        return d
    try:
        yield make
    finally:
        for d in made:
            d.cleanup()


def test_a_second_daemon_on_a_live_api_socket_is_refused_and_leaves_it(daemons):
    live = daemons().start()
    second = daemons()
    second.sock = live.sock
    res = failed_start(second)
    assert res.returncode == 1, res
    assert f"listen {live.sock}: another server is listening on this socket" in res.stderr, res
    assert answers(live.sock)
    assert "Server:" in live.ctr("version").stdout
    assert_nothing_left(second, own_socket=False)


def test_a_refused_start_is_one_error_line_in_the_chosen_log_format(daemons):
    """--log-format json --log-level error: the refusal is one JSON line at level error, and
    nothing else is logged (the info lines of the start are below the level)."""
    import json
    live = daemons().start()
    second = daemons(args=["--log-format", "json", "--log-level", "error"])
    second.sock = live.sock
    res = failed_start(second)
    assert res.returncode == 1, res
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert len(lines) == 1, res.stderr
    assert lines[0]["level"] == "error" and lines[0]["msg"] == (
        f"listen {live.sock}: another server is listening on this socket "
        "(a second daemon with the same address?)"), lines
    assert answers(live.sock)


def test_a_late_start_failure_on_a_live_metrics_socket_leaves_nothing(daemons):
    """The metrics endpoint starts after the shim pool (zygote and spare shim) is up: a failure
    there must take the pool down, and must not take the live daemon's metrics socket."""
    live = daemons()
    metrics = os.path.join(live.base, "metrics.sock")
    live.args = ["--metrics-address", "unix:" + metrics]
    live.start()
    second = daemons(args=["--metrics-address", "unix:" + metrics])
    res = failed_start(second)
    assert res.returncode == 1, res
    assert f"listen {metrics}: another server is listening on this socket" in res.stderr, res
    assert http_get(UnixHTTPConnection(metrics))[0] == 200
    assert_nothing_left(second)
    assert "pyrunc_build_info" in http_get(UnixHTTPConnection(metrics))[2]


def test_a_metrics_address_that_cannot_be_bound_leaves_nothing(daemons):
    """A metrics socket in a directory that does not exist: bind fails after the pool started."""
    second = daemons()
    metrics = os.path.join(second.base, "no-such-dir", "metrics.sock")
    second.args = ["--metrics-address", "unix:" + metrics]
    res = failed_start(second)
    assert res.returncode == 1, res
    assert f"listen unix:{metrics}: No such file or directory" in res.stderr, res
    assert_nothing_left(second)


def test_stale_sockets_are_replaced(daemons):
    d = daemons()
    metrics = os.path.join(d.base, "metrics.sock")
    d.args = ["--metrics-address", "unix:" + metrics]
    os.makedirs(d.base, exist_ok=True)
    stale_socket(d.sock)
    stale_socket(metrics)
    d.start()
    assert http_get(UnixHTTPConnection(metrics))[0] == 200
    assert d.stop() == 0
    assert not os.path.exists(d.sock) and not os.path.exists(metrics)


def test_a_path_that_is_not_a_socket_is_refused_and_kept(daemons, tmp_path):
    d = daemons()
    os.makedirs(d.base, exist_ok=True)
    with open(d.sock, "w") as f:
        f.write("mine")
    res = failed_start(d)
    assert res.returncode == 1, res
    assert f"listen {d.sock}: the path exists and is not a socket" in res.stderr, res
    with open(d.sock) as f:
        assert f.read() == "mine"
    assert_nothing_left(d, own_socket=False)


def test_a_shim_refuses_a_live_socket_and_replaces_a_stale_one(tmp_path):
    """The shims' sockets take the same rule (supervisor.shim binds through listen.claim)."""
    from supervisor.shimclient import SHIM_PYTHONPATH
    def shim(path):
        return subprocess.run([PYTHON, "-S", "-m", "supervisor.shim", "--socket", str(path),
                               "--log", str(tmp_path / "shim.log")], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=SHIM_PYTHONPATH))
    live = tmp_path / "live.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(live))
    server.listen(1)
    try:
        res = shim(live)
        assert res.returncode == 1, res
        assert f"bind {live}: another server is listening on this socket" in res.stderr, res
        assert answers(str(live))
    finally:
        server.close()
    stale = tmp_path / "stale.sock"
    stale_socket(str(stale))
    res = shim(stale)
    assert res.returncode == 0, res
    # the shim listens there now; a connection that closes again is a daemon gone: it exits
    # and removes its socket
    assert answers(str(stale))
    wait_for(lambda: not stale.exists(), 30, what="the idle shim to exit")


def test_listen_claim(tmp_path):
    from supervisor.listen import SocketInUse, claim
    path = str(tmp_path / "s.sock")
    claim(path)                         # nothing there: free
    stale_socket(path)
    claim(path)
    assert not os.path.exists(path)     # stale: removed
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    try:
        with pytest.raises(SocketInUse) as e:
            claim(path)
        assert str(e.value) == (f"listen {path}: another server is listening on this socket "
                                "(a second daemon with the same address?)")
        assert answers(path)
    finally:
        server.close()
    os.unlink(path)
    os.mkdir(path)
    with pytest.raises(SocketInUse, match="not a socket"):
        claim(path)
    assert os.path.isdir(path)


# -- the garbage collector and the store -------------------------------------------------------

def test_gc_close_waits_for_a_running_round_and_refuses_new_ones(tmp_path):
    """A round on a worker thread holds the store; close() returns only after it finished, and
    a round asked for afterwards does nothing (the daemon then closes the store)."""
    from supervisor.metadata.gc import Collector
    from supervisor.metadata.leases import Leases
    from supervisor.metadata.store import Store
    store = Store(str(tmp_path / "meta.db"))
    inside, release, finished = threading.Event(), threading.Event(), threading.Event()

    def mark():                         # the round's reading of the store, held open
        inside.set()
        release.wait(30)
        store.db.execute("SELECT COUNT(*) FROM containers").fetchone()  # store still open
        finished.set()
        return set(), set()

    gc = Collector(store, Leases(store), None, {}, None)
    gc._mark = mark
    gc._sweep_blobs = gc._sweep_ingests = lambda: 0
    gc._sweep_rows = lambda content, snaps: {}
    round_ = threading.Thread(target=gc.collect)
    round_.start()
    assert inside.wait(30)
    closer = threading.Thread(target=gc.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()            # waits for the round...
    release.set()
    closer.join(30)
    round_.join(30)
    assert not closer.is_alive() and finished.is_set()
    inside.clear()
    assert gc.collect() == {} and not inside.is_set()   # ...and refuses later ones

    async def schedule():
        gc.schedule()
        assert gc._pending is None
    asyncio.run(schedule())
    store.close()


def test_daemon_stop_closes_the_collector_before_the_store(tmp_path):
    """Daemon.stop() with a collection round in a worker thread: the round ends before the
    store closes (a round reading a closed sqlite store once crashed the daemon with SIGSEGV)."""
    from supervisor.daemon import Config, Daemon
    base = str(tmp_path)
    daemon = Daemon(Config(address=os.path.join(base, "sv.sock"),
                           state=os.path.join(base, "state"), root=os.path.join(base, "root")))
    gc, store = daemon.services.get("gc"), daemon.services.get("store")
    inside, order = threading.Event(), []
    real_mark, real_close = gc._mark, store.close

    def slow_mark():
        inside.set()
        threading.Event().wait(0.5)     # a round that takes a while
        return real_mark()

    class LastStep:                     # the round's last step, still under its lock
        def cleanup(self):
            order.append("round done")
            return []

    def close():
        order.append("store closed")
        real_close()
    gc._mark, store.close = slow_mark, close
    gc.snapshotters = dict(gc.snapshotters, last=LastStep())

    async def main():
        worker = asyncio.get_running_loop().create_task(asyncio.to_thread(gc.collect))
        await asyncio.to_thread(inside.wait, 30)
        worker.cancel()                 # what stop() does to the daemon's own gc task
        await daemon.stop()
    asyncio.run(main())
    assert order == ["round done", "store closed"], order
