"""Registry TLS and auth, for real: Debian's docker-registry 2.8 serving HTTPS with a certificate
from a CA the test makes (openssl), with its ``auth: token:`` trusting a token service the test
runs (authsrv.py: JWTs signed RS256 with an x5c certificate in the registry's rootcertbundle),
or with htpasswd; its ``redirect`` storage middleware sends blob downloads to another host
(127.0.0.2), a file server that logs the headers it got.

What the daemon must do: trust the registry's CA only when told (the certs directory, read at
each pull, or the hosts file's ``ca``); follow the Bearer challenge (realm, service, scope) with
its Basic credentials; never send credentials to the redirect's host; and for missing or wrong
credentials fail once, UNAUTHENTICATED, naming the image, with no blob, ingest, snapshot or
lease left behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc
import pytest

from sv_harness import code_of, wait_for
from sv_registry import Registry, busybox_image
from test_sv_pull import NetSupervisor, on_disk, pull

HERE = os.path.dirname(os.path.abspath(__file__))
USER, PASSWORD = "svtuser", "t0ken-pw"
SERVICE, ISSUER = "svt-registry", "svt-issuer"


def openssl(*args) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d: str) -> dict:
    """A CA, a server certificate for 127.0.0.1 it signed, and a self-signed token signer."""
    p = {n: os.path.join(d, n) for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt",
                                         "srv.ext", "tok.key", "tok.crt")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca.key"], "-out",
            p["ca.crt"], "-days", "2", "-subj", "/CN=svt test CA", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p["srv.key"], "-out", p["srv.csr"],
            "-subj", "/CN=127.0.0.1")
    with open(p["srv.ext"], "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", p["srv.csr"], "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
            "-CAcreateserial", "-out", p["srv.crt"], "-days", "2", "-extfile", p["srv.ext"])
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["tok.key"], "-out",
            p["tok.crt"], "-days", "2", "-subj", "/CN=svt token signer")
    return p


def helper(reg: Registry, argv: list[str], host: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(reg.nsenter([sys.executable, os.path.join(HERE, "authsrv.py")]
                                        + argv), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    probe = [sys.executable, "-c", f"import socket; socket.create_connection(('{host}', {port}),"
             " 5)"]
    wait_for(lambda: proc.poll() is None and subprocess.run(
        reg.nsenter(probe), capture_output=True).returncode == 0, 60, step=0.1,
        what=f"authsrv.py {argv[0]}")
    return proc


def read_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def hosts_file(d: str, name: str, entry: dict) -> str:
    path = os.path.join(d, name)
    with open(path, "w") as f:
        json.dump({"hosts": {"127.0.0.1:5443": entry}}, f)
    return path


def nothing_left(sv) -> None:
    assert on_disk(sv) == {"blobs": [], "ingests": [], "snapshots": []}
    assert sv.ctr("leases", "ls", "-q").stdout.split() == []
    assert sv.ctl("images", "-q").stdout.split() == []


@pytest.fixture(scope="module")
def secure(sv_rootfs):
    """A TLS registry with token auth and blob downloads redirected to 127.0.0.2:5445."""
    d = tempfile.mkdtemp(prefix="svt-auth-", dir="/tmp")
    pki = make_pki(d)
    reg = Registry(port=5443, tls=(pki["srv.crt"], pki["srv.key"]), extra={
        "auth": {"token": {"realm": "http://127.0.0.1:5444/token", "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": pki["tok.crt"]}},
        "middleware": {"storage": [{"name": "redirect",
                                    "options": {"baseurl": "http://127.0.0.2:5445"}}]}})
    reg.auth = (USER, PASSWORD)  # skopeo's push credentials (the token service checks them)
    helpers = []
    try:
        reg.start()
        logs = {"token": os.path.join(d, "token.log"), "files": os.path.join(d, "files.log")}
        helpers.append(helper(reg, ["token", "127.0.0.1", "5444", logs["token"],
                                    f"{USER}:{PASSWORD}", ISSUER, SERVICE, pki["tok.key"],
                                    pki["tok.crt"]], "127.0.0.1", 5444))
        helpers.append(helper(reg, ["files", "127.0.0.2", "5445", logs["files"], reg.data],
                              "127.0.0.2", 5445))
        busybox_image(os.path.join(d, "img"))
        ref = reg.push(os.path.join(d, "img"), "secure/app:1")
        yield reg, ref, pki, logs, d
    finally:
        for proc in helpers:
            proc.kill()
            proc.wait()
        reg.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_tls_ca_from_the_certs_dir_then_the_token_flow_wants_credentials(secure):
    """No CA configured: the pull fails naming the untrusted certificate. The CA dropped into
    the certs directory is used by the next pull (no restart), which then meets the Bearer
    challenge: without credentials the token service refuses, UNAUTHENTICATED."""
    reg, ref, pki, logs, d = secure
    certs = os.path.join(d, "certs.d")
    os.makedirs(certs, exist_ok=True)
    sv = NetSupervisor(reg, ["--registry-certs-dir", certs]).start()
    try:
        code, details = code_of(pull, sv, ref)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert ref in details and "TLS certificate not trusted" in details
        os.makedirs(os.path.join(certs, reg.host))
        shutil.copy(pki["ca.crt"], os.path.join(certs, reg.host, "ca.crt"))
        code, details = code_of(pull, sv, ref)
        assert code == grpc.StatusCode.UNAUTHENTICATED, details
        assert ref in details and "unauthorized" in details
        assert details.count("unauthorized") == 1
        nothing_left(sv)
    finally:
        sv.cleanup()


def test_bearer_token_pull_over_tls_keeps_credentials_off_the_redirect(secure):
    """With the hosts file's CA and credentials: the daemon asks the realm for a token (service
    and scope from the challenge, its credentials as Basic), pulls with it, and follows the blob
    redirects to 127.0.0.2 without any Authorization header; ctr runs the image."""
    reg, ref, pki, logs, d = secure
    cfg = hosts_file(d, "good.json", {"ca": pki["ca.crt"], "username": USER,
                                      "password": PASSWORD})
    before = len(read_log(logs["files"]))
    sv = NetSupervisor(reg, ["--registry-config", cfg]).start()
    try:
        assert pull(sv, ref)[-1].image == ref
        asked = [e for e in read_log(logs["token"]) if e["auth"] == "Basic"]
        assert any(e["query"].get("scope") == ["repository:secure/app:pull"]
                   and e["query"].get("service") == [SERVICE] for e in asked)
        downloads = [e for e in read_log(logs["files"])[before:] if e["method"] == "GET"]
        assert len(downloads) >= 2  # the config and the layer came through the redirect
        assert all("/blobs/sha256/" in e["path"] and e["auth"] == "" for e in downloads)
        res = sv.ctr("run", "--rm", ref, sv.id("tok"), "echo", "over-tls")
        assert res.stdout.strip() == "over-tls"
    finally:
        sv.cleanup()


def test_bad_password_for_the_token_service_leaves_nothing(secure):
    reg, ref, pki, logs, d = secure
    cfg = hosts_file(d, "bad.json", {"ca": [pki["ca.crt"]], "username": USER,
                                     "password": "wrong"})
    sv = NetSupervisor(reg, ["--registry-config", cfg]).start()
    try:
        code, details = code_of(pull, sv, ref)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert ref in details and "unauthorized" in details and "401" in details
        res = sv.ctl("pull", ref, check=False)
        assert res.returncode != 0 and res.stderr.count("unauthorized") == 1
        nothing_left(sv)
    finally:
        sv.cleanup()


def test_basic_auth_redirect_and_bad_password(sv_rootfs):
    """htpasswd auth with blob redirects to another host: the configured credentials pull (and
    the redirect's host never sees them); a wrong password fails once, UNAUTHENTICATED, and
    leaves nothing."""
    reg = Registry(port=5446, auth=("svtuser", "s3cret-pw"), extra={
        "middleware": {"storage": [{"name": "redirect",
                                    "options": {"baseurl": "http://127.0.0.2:5447"}}]}})
    d = tempfile.mkdtemp(prefix="svt-auth-", dir="/tmp")
    procs, daemons = [], []
    try:
        reg.start()
        log = os.path.join(d, "files.log")
        procs.append(helper(reg, ["files", "127.0.0.2", "5447", log, reg.data], "127.0.0.2",
                            5447))
        busybox_image(os.path.join(d, "img"))
        ref = reg.push(os.path.join(d, "img"), "basic:latest")
        entry = {"username": "svtuser", "password": "s3cret-pw"}
        for name, password in (("good", "s3cret-pw"), ("bad", "not-it")):
            with open(os.path.join(d, name), "w") as f:
                json.dump({"hosts": {reg.host: dict(entry, password=password)}}, f)
        good = NetSupervisor(reg, ["--registry-config", os.path.join(d, "good")]).start()
        daemons.append(good)
        start = len(read_log(log))
        assert pull(good, ref, plain_http=True)[-1].image == ref
        downloads = [e for e in read_log(log)[start:] if e["method"] == "GET"]
        assert len(downloads) >= 2 and all(e["auth"] == "" for e in downloads)
        bad = NetSupervisor(reg, ["--registry-config", os.path.join(d, "bad")]).start()
        daemons.append(bad)
        code, details = code_of(pull, bad, ref, plain_http=True)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert ref in details and details.count("unauthorized") == 1
        nothing_left(bad)
    finally:
        for daemon in daemons:
            daemon.cleanup()
        for proc in procs:
            proc.kill()
            proc.wait()
        reg.stop()
        shutil.rmtree(d, ignore_errors=True)
