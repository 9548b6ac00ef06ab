"""A tiny HTTP proxy in front of the test registry that stalls one blob half-way (used to kill a
daemon in the middle of a pull, deterministically). Run inside the registry's network namespace:

    stallproxy.py LISTEN_PORT UPSTREAM_PORT DIGEST RELEASE_FILE [MODE]

Every request is forwarded to 127.0.0.1:UPSTREAM_PORT. A GET of the blob DIGEST sends its headers
and the first half of its body, then (MODE ``stall``, the default) waits until RELEASE_FILE
exists (checked every 50 ms, for at most 10 minutes) before sending the rest; MODE ``truncate``
closes the connection instead; MODE ``corrupt`` sends the whole body with one byte changed.
The process exits when its parent kills it.
"""
import http.client
import http.server
import os
import sys
import time

LISTEN, UPSTREAM, DIGEST, RELEASE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
MODE = sys.argv[5] if len(sys.argv) > 5 else "stall"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if self.command == "GET" and DIGEST in self.path and resp.status == 200 \
                and MODE == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        elif self.command == "GET" and DIGEST in self.path and resp.status == 200 \
                and MODE == "truncate":
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        elif self.command == "GET" and DIGEST in self.path and resp.status == 200:
            half = len(data) // 2
            self.wfile.write(data[:half])
            self.wfile.flush()
            deadline = time.monotonic() + 600
            while not os.path.exists(RELEASE) and time.monotonic() < deadline:
                time.sleep(0.05)
            data = data[half:]
        self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = _forward


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
