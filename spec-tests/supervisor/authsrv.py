"""Helper servers for the registry auth tests, run inside the registry's network namespace
(stdlib only; each request is logged as one JSON line to LOG, with whether it carried an
Authorization header and which scheme):

    authsrv.py token HOST PORT LOG USER:PASSWORD ISSUER SERVICE KEY CERT
        A token service for docker-registry's ``auth: token:``: GET /token?service=..&scope=..
        with Basic USER:PASSWORD answers {"token": JWT}; the JWT (RS256, signed with KEY by
        ``openssl dgst``, CERT in its x5c header) grants exactly the scopes asked for. Other or
        missing credentials: 401.
    authsrv.py files HOST PORT LOG ROOT
        A static file server of ROOT (what the registry's ``redirect`` storage middleware sends
        blob downloads to).

The process exits when its parent kills it.
"""
import base64
import http.server
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse

MODE, HOST, PORT, LOG = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def log(handler, **extra):
    auth = handler.headers.get("Authorization") or ""
    with open(LOG, "a") as f:
        f.write(json.dumps(dict({"method": handler.command, "path": handler.path,
                                 "auth": auth.split(" ")[0]}, **extra)) + "\n")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict, key: str, cert: str) -> str:
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(),
                         check=True, capture_output=True).stdout
    return signing + "." + b64url(sig)


class Token(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        _, user_pass, issuer, service, key, cert = sys.argv[4:10]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        log(self, query=query)
        want = "Basic " + base64.b64encode(user_pass.encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            for one in scope.split(" "):
                kind, rest = one.split(":", 1)
                name, actions = rest.rsplit(":", 1)
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": issuer, "sub": user_pass.split(":")[0], "aud": service,
                  "exp": now + 600, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                  "access": access}
        body = json.dumps({"token": sign(claims, key, cert), "expires_in": 600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Files(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kw):
        super().__init__(*args, directory=sys.argv[5], **kw)

    def log_message(self, *args):
        pass

    def send_head(self):
        log(self)
        return super().send_head()


if __name__ == "__main__":
    handler = {"token": Token, "files": Files}[MODE]
    os.umask(0o022)
    http.server.ThreadingHTTPServer((HOST, PORT), handler).serve_forever()
