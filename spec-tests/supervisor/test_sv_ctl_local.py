"""pyrunc-ctl on the supervisor's local API (supervisor/localapi/, supervisor/ctllocal.py).

The common commands must not import grpc (nor protobuf): every pyrunc-ctl here runs with
$PYRUNC_CTL_FORBID_IMPORTS, which makes such an import fail the command. The socket's rules:
0600, a live daemon's is never taken, a stale one is replaced; without it ctl falls back to gRPC.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

from sv_harness import PYTHON, ROOT, Supervisor

NO_GRPC = {"PYRUNC_CTL_FORBID_IMPORTS": "grpc,google.protobuf,supervisor.gen,supervisor.client"}


def ctl(sv, *args, check=True, **kw):
    return sv.ctl(*args, check=check, env=NO_GRPC, **kw)


def local_sock(sv) -> str:
    return os.path.join(sv.base, "sv.ctl.sock")


def test_common_commands_without_grpc(sv, sv_rootfs):
    name = sv.id("fast")
    res = ctl(sv, "run", "--rm", sv_rootfs, "/bin/sh", "-c", "echo out; exit 3", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "")
    cid = ctl(sv, "run", "-d", "--name", name, "--restart", "on-failure:2", sv_rootfs,
              "/bin/sh", "-c", "echo hello; exec sleep 600").stdout.strip()
    assert name in ctl(sv, "ps", "--format", "{{.Names}} {{.State}}").stdout
    info = json.loads(ctl(sv, "inspect", name).stdout)[0]
    assert (info["Id"], info["Name"], info["State"]["Status"]) == (cid, "/" + name, "running")
    assert ctl(sv, "exec", name, "cat", "/proc/1/cmdline").stdout == "sleep\x00600\x00"
    ctl(sv, "pause", name)
    assert ctl(sv, "inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "paused"
    ctl(sv, "unpause", name)
    assert "sleep" in ctl(sv, "top", name).stdout
    new = name + "-b"
    ctl(sv, "rename", name, new)
    assert ctl(sv, "logs", new).stdout == "hello\n"
    assert ctl(sv, "stop", "-t", "1", new).stdout == new + "\n"
    assert ctl(sv, "wait", new).stdout.strip() in ("137", "143")
    ctl(sv, "start", new)
    ctl(sv, "restart", "-t", "1", new)
    ctl(sv, "kill", new)
    ctl(sv, "rm", "-f", new)
    assert cid not in ctl(sv, "ps", "-a", "--no-trunc").stdout
    ctl(sv, "create", "--name", name, sv_rootfs, "true")
    ctl(sv, "rm", name)


def test_errors_without_grpc(sv, sv_rootfs):
    """Failures take the error paths (``except grpc.RpcError``) without importing grpc."""
    res = ctl(sv, "inspect", "nope-x", check=False)
    assert (res.returncode, res.stderr) == (1, "Error: No such object: nope-x\n")
    for cmd in (["rm", "nope-x"], ["stop", "nope-x"], ["logs", "nope-x"]):
        res = ctl(sv, *cmd, check=False)
        assert res.returncode == 1 and res.stderr == ("Error response from daemon: No such "
                                                      "container: nope-x\n"), res.stderr
    res = ctl(sv, "run", "--rm", sv_rootfs, "/no/such", check=False)
    assert res.returncode == 127 and "no such file" in res.stderr.lower(), res.stderr
    res = ctl(sv, "run", "--rm", sv_rootfs, "/", check=False)
    assert res.returncode == 126, res.stderr
    assert "Traceback" not in res.stderr


def test_forbidden_import_is_caught(sv):
    """The enforcement itself: a forbidden module a command does import fails it."""
    res = sv.ctl("ps", check=False, env={"PYRUNC_CTL_FORBID_IMPORTS": "supervisor.ctlview"})
    assert res.returncode != 0 and "imported supervisor.ctlview" in res.stderr
    res = sv.ctl("ps", check=False, env={"PYRUNC_CTL_FORBID_IMPORTS": "json"})
    assert res.returncode != 0 and "json, json.decoder" in res.stderr  # loaded before the check


def imported_by_ps(sv) -> list[str]:
    """The modules ``pyrunc-ctl ps`` imports (python -X importtime)."""
    env = dict(os.environ, PYRUNC_SUPERVISOR_ADDRESS=sv.sock, PYRUNC_NAMESPACE=sv.ns)
    res = subprocess.run([PYTHON, "-X", "importtime", "-m", "supervisor.ctl", "ps"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return [ln.rsplit("|", 1)[-1].strip() for ln in res.stderr.splitlines()
            if ln.startswith("import time:")]


def test_ps_importtime_has_no_grpc(sv):
    imported = imported_by_ps(sv)
    assert "supervisor.ctllocal" in imported
    assert not [m for m in imported if m.split(".")[0] in ("grpc", "google")]


def test_socket_mode_and_live_socket_kept(sv):
    path = local_sock(sv)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    # a second daemon on the same address refuses, and leaves both sockets to the live one
    second = Supervisor(base=sv.base)
    second.sock, second.log_path = sv.sock, os.path.join(sv.base, "second.log")
    second.state, second.root = os.path.join(sv.base, "st2"), os.path.join(sv.base, "rt2")
    second.proc = subprocess.Popen(
        [PYTHON, "-m", "supervisor.daemon", "--address", sv.sock, "--state", second.state,
         "--root", second.root, "--runtime", sv.runtime], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    _, err = second.proc.communicate(timeout=60)
    assert second.proc.returncode == 1 and b"another server is listening" in err
    assert os.stat(path).st_ino == st.st_ino
    ctl(sv, "ps")


def test_stale_socket_replaced_and_grpc_fallback(sv_own):
    sv = sv_own
    path = local_sock(sv)
    aside = path + ".aside"
    os.rename(path, aside)  # no local socket: ctl uses gRPC, and says nothing about it
    try:
        assert "grpc" in imported_by_ps(sv)
    finally:
        os.rename(aside, path)
    sv.kill9()  # both sockets stay behind, stale
    stale = socket.socket(socket.AF_UNIX)
    try:
        stale.connect(path)
        raise AssertionError("a killed daemon's socket still answers")
    except ConnectionRefusedError:
        pass
    finally:
        stale.close()
    sv.start()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ctl(sv, "ps")
    sv.stop()
    assert not os.path.exists(path) and not os.path.exists(sv.sock)


def test_local_calls_are_logged_and_counted(sv_rootfs):
    """The local API's calls reach the same observers as gRPC's: Prometheus counters."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families
    sv = Supervisor()
    metrics = os.path.join(sv.base, "metrics.sock")
    sv.args = ["--metrics-address", "unix:" + metrics]
    try:
        sv.start()
        ctl(sv, "ps")
        conn = http.client.HTTPConnection("localhost", timeout=60)
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(metrics)
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
        conn.close()
        found = {(s.name, s.labels.get("grpc_service"), s.labels.get("grpc_method"),
                  s.labels.get("grpc_code")): s.value
                 for fam in text_string_to_metric_families(body) for s in fam.samples}
        for service in ("containerd.services.containers.v1.Containers",
                        "containerd.services.tasks.v1.Tasks"):
            assert found.get(("grpc_server_handled_total", service, "List", "OK")) == 1, \
                [k for k in found if k[0] == "grpc_server_handled_total"]
    finally:
        sv.cleanup()


def raw_call(sv, line: bytes) -> dict:
    """One exchange on the local API's socket, as bytes on the wire."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    try:
        s.connect(local_sock(sv))
        s.sendall(line)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, f"no reply to {line!r}"
            reply += chunk
        return json.loads(reply)
    finally:
        s.close()


def test_protocol_errors_are_grpc_status_codes(sv, sv_rootfs):
    def err(line: bytes) -> tuple[str, str]:
        e = raw_call(sv, line)["err"]
        return e["code"], e["details"]
    assert err(b"not json\n") == ("INVALID_ARGUMENT", "malformed request")
    assert err(b'{"m": 3}\n') == ("INVALID_ARGUMENT", "malformed request")
    assert err(b'{"m": "containers.Nope", "ns": "x"}\n') == (
        "UNIMPLEMENTED", "unknown method containers.Nope")
    assert err(b'{"m": "containers.ListStream", "ns": "x"}\n')[0] == "UNIMPLEMENTED"
    code, details = err(b'{"m": "containers.Get", "ns": "x", "req": {"idd": "a"}}\n')
    assert code == "INVALID_ARGUMENT" and "no field 'idd'" in details
    code, details = err(b'{"m": "containers.Get", "ns": "bad ns!", "req": {"id": "a"}}\n')
    assert code == "INVALID_ARGUMENT" and "namespace" in details
    code, _ = err(b'{"m": "containers.Get", "req": {"id": "a"}}\n')
    assert code == "FAILED_PRECONDITION"  # no namespace, as gRPC without the metadata
    assert err(b'{"m": "containers.Get", "ns": "%s", "req": {"id": "nope"}}\n'
               % sv.ns.encode())[0] == "NOT_FOUND"


def test_wait_deadline_and_hangup(sv, sv_rootfs):
    name = sv.id("wait")
    cid = ctl(sv, "run", "-d", "--name", name, sv_rootfs, "sleep", "600").stdout.strip()
    try:
        wait = b'{"m": "tasks.Wait", "ns": "%s", "req": {"container_id": "%s"}%s}\n'
        code = raw_call(sv, wait % (sv.ns.encode(), cid.encode(), b', "timeout": 0.2'))
        assert code["err"]["code"] == "DEADLINE_EXCEEDED"
        for _ in range(5):  # a client that hangs up mid-Wait: its call is cancelled
            s = socket.socket(socket.AF_UNIX)
            s.connect(local_sock(sv))
            s.sendall(wait % (sv.ns.encode(), cid.encode(), b""))
            s.close()
        assert ctl(sv, "inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    finally:
        ctl(sv, "rm", "-f", name)


def test_socket_path_too_long_falls_back_to_grpc(sv_rootfs):
    """gRPC's path fits (grpcio binds up to 105 bytes) but the local API's does not (a unix
    address holds 107): the daemon says so in its log and serves gRPC only; ctl uses that."""
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="svt-long-", dir="/tmp")
    base = os.path.join(top, "x" * (105 - len("/sv.sock") - len(top) - 1))
    os.makedirs(base)
    sv = Supervisor(base=base)
    sv.state, sv.root = os.path.join(top, "st"), os.path.join(top, "rt")  # shims' sockets fit
    try:
        sv.start()
        assert len(sv.sock) == 105 and not os.path.exists(local_sock(sv))
        assert "no local API for pyrunc-ctl" in sv.log()
        assert sv.ctl("ps", "-q").stdout == ""
        assert "grpc" in imported_by_ps(sv)
    finally:
        sv.cleanup()
        shutil.rmtree(top, ignore_errors=True)
