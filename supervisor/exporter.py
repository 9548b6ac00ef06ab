"""Prometheus metrics: ``GET /metrics`` on a loopback TCP address or a unix socket (config key
``metrics.address``; off by default, and then prometheus_client is never even imported).

What is exported (names and labels follow Prometheus conventions: base units, ``_total`` for
counters, ``namespace``/``container_id`` as containerd's metrics label them):

- per running container, read from its cgroup files at scrape time (cgstats.py, v1 and v2):
  ``pyrunc_container_cpu_usage_seconds_total``, ``pyrunc_container_memory_usage_bytes``,
  ``pyrunc_container_memory_limit_bytes`` (when limited), ``pyrunc_container_pids``,
  ``pyrunc_container_pids_limit`` (when limited), ``pyrunc_container_io_read_bytes_total``,
  ``pyrunc_container_io_write_bytes_total``, ``pyrunc_container_io_reads_total``,
  ``pyrunc_container_io_writes_total``;
- counts: ``pyrunc_containers``, ``pyrunc_images``, ``pyrunc_snapshots``,
  ``pyrunc_content_blobs`` (and ``pyrunc_content_bytes``), ``pyrunc_leases`` by namespace (from
  the metadata database: each table that exists), ``pyrunc_tasks`` by namespace and status,
  ``pyrunc_shims`` by role (container, spare, zygote);
- gRPC, with go-grpc-prometheus's names (what containerd exports, so dashboards work):
  ``grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`` and the
  ``grpc_server_handling_seconds`` histogram;
- ``pyrunc_build_info{version,revision}`` and the daemon's ``process_*`` metrics.

The HTTP server is a few lines on asyncio (one request per connection, GET/HEAD only):
prometheus_client's own server runs in a thread and cannot listen on a unix socket.
"""
from __future__ import annotations

import asyncio
import os

from supervisor import cgstats, log, version

# metadata tables counted by namespace: table -> (metric, help)
COUNTED_TABLES = {
    "containers": ("pyrunc_containers", "Containers by namespace."),
    "images": ("pyrunc_images", "Images by namespace."),
    "snapshots": ("pyrunc_snapshots", "Snapshots (all snapshotters) by namespace."),
    "content": ("pyrunc_content_blobs", "Content blobs by namespace."),
    "leases": ("pyrunc_leases", "Leases by namespace."),
}
MAX_REQUEST = 16384


class StateCollector:
    """Collects, at scrape time, everything that is state rather than an event count."""

    def __init__(self, services):
        self.services = services

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        yield from self._containers()
        yield from self._counts()
        tasks = self.services.get("tasks")
        by_status = GaugeMetricFamily("pyrunc_tasks", "Tasks by namespace and status.",
                                      labels=["namespace", "status"])
        counts: dict[tuple[str, str], int] = {}
        for task in list(tasks.tasks.values()):
            if task.ready and "" in task.procs:
                key = (task.ns, task.init.status)
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            by_status.add_metric(list(key), n)
        yield by_status
        shims = GaugeMetricFamily("pyrunc_shims", "Shim processes by role.", labels=["role"])
        for role, n in self._shims(tasks).items():
            shims.add_metric([role], n)
        yield shims

    @staticmethod
    def _shims(tasks) -> dict[str, int]:
        pool = tasks.shims
        spare = pool.spare
        spare_up = bool(spare is not None and spare.done() and not spare.cancelled()
                        and spare.exception() is None and not spare.result().closed)
        return {"container": sum(1 for t in list(tasks.tasks.values())
                                 if t.shim is not None and not t.shim.closed and not t.dead),
                "spare": int(spare_up),
                "zygote": int(pool.zygote is not None and not pool.zygote.closed)}

    def _counts(self):
        from prometheus_client.core import GaugeMetricFamily
        store = self.services.get("store")
        with store.lock:
            tables = {row[0] for row in store.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            for table, (name, text) in COUNTED_TABLES.items():
                if table not in tables:
                    continue
                family = GaugeMetricFamily(name, text, labels=["namespace"])
                for ns, n in store.db.execute(
                        f"SELECT ns, COUNT(*) FROM {table} GROUP BY ns ORDER BY ns"):
                    family.add_metric([ns], n)
                yield family
            if "content" in tables:
                size = GaugeMetricFamily("pyrunc_content_bytes", "Bytes of content blobs by "
                                         "namespace (a blob shared by namespaces counts in each).",
                                         labels=["namespace"])
                for ns, n in store.db.execute(
                        "SELECT ns, SUM(size) FROM content GROUP BY ns ORDER BY ns"):
                    size.add_metric([ns], n or 0)
                yield size

    def _containers(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        labels = ["namespace", "container_id"]
        fams = {
            "cpu_seconds": CounterMetricFamily(
                "pyrunc_container_cpu_usage_seconds", "CPU time used by the container's "
                "processes (user and system).", labels=labels),
            "memory_bytes": GaugeMetricFamily(
                "pyrunc_container_memory_usage_bytes", "Memory the container's cgroup uses "
                "(page cache included).", labels=labels),
            "memory_limit_bytes": GaugeMetricFamily(
                "pyrunc_container_memory_limit_bytes", "The container's memory limit (absent "
                "when unlimited).", labels=labels),
            "pids": GaugeMetricFamily(
                "pyrunc_container_pids", "Processes and threads in the container.",
                labels=labels),
            "pids_limit": GaugeMetricFamily(
                "pyrunc_container_pids_limit", "The container's pids limit (absent when "
                "unlimited).", labels=labels),
        }
        io = {
            "read_bytes": CounterMetricFamily("pyrunc_container_io_read_bytes", "Bytes read "
                                              "from block devices.", labels=labels),
            "write_bytes": CounterMetricFamily("pyrunc_container_io_write_bytes", "Bytes "
                                               "written to block devices.", labels=labels),
            "reads": CounterMetricFamily("pyrunc_container_io_reads", "Block device read "
                                         "operations.", labels=labels),
            "writes": CounterMetricFamily("pyrunc_container_io_writes", "Block device write "
                                          "operations.", labels=labels),
        }
        for task in list(self.services.get("tasks").tasks.values()):
            if not task.ready or "" not in task.procs:
                continue
            init = task.init
            if init.status not in ("running", "paused") or not init.pid:
                continue
            stats = cgstats.for_pid(init.pid)
            if stats is None:
                continue
            values = [task.ns, task.id]
            for attr, fam in fams.items():
                value = getattr(stats, attr)
                if value is not None:
                    fam.add_metric(values, value)
            for key, fam in io.items():
                if key in stats.io:
                    fam.add_metric(values, stats.io[key])
        yield from fams.values()
        yield from io.values()


class Exporter:
    def __init__(self, address: str, services):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client import ProcessCollector, disable_created_metrics
        disable_created_metrics()   # no *_created series: Prometheus does not use them
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        Gauge("pyrunc_build_info", "The supervisor's version and source revision.",
              ["version", "revision"], registry=self.registry).labels(
            version.VERSION, version.revision()).set(1)
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.handled = Counter("grpc_server_handled", "RPCs completed on the server, "
                               "regardless of success or failure.",
                               grpc_labels + ["grpc_code"], registry=self.registry)
        self.latency = Histogram("grpc_server_handling_seconds", "Response latency of RPCs "
                                 "handled by the server.", grpc_labels, registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))
        self.registry.register(StateCollector(services))
        self.server: asyncio.AbstractServer | None = None

    def observe(self, call) -> None:
        """A grpcobserve observer: count and time every finished call."""
        labels = (call.kind, call.service, call.method)
        self.handled.labels(*labels, call.code).inc()
        self.latency.labels(*labels).observe(call.seconds)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        from prometheus_client.exposition import choose_encoder
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def start(self) -> None:
        from supervisor.listen import ListenError
        try:
            await self._listen()
        except ListenError:
            raise
        except OSError as e:    # one line naming the address, as for the API socket
            raise ListenError(self.address, e.strerror or str(e), e.errno or 0) from None
        log.info("metrics", address=self.address)

    async def _listen(self) -> None:
        if self.address.startswith("unix:"):
            path = self.address[len("unix:"):]
            from supervisor.listen import claim
            claim(path)                 # a live daemon's metrics socket is refused, not removed
            old = os.umask(0o177)       # the socket is created 0600, as the gRPC one
            try:
                self.server = await asyncio.start_unix_server(self._serve, path,
                                                              limit=MAX_REQUEST)
            finally:
                os.umask(old)
        else:
            host, _, port = self.address.rpartition(":")
            self.server = await asyncio.start_server(self._serve, host.strip("[]"), int(port),
                                                     limit=MAX_REQUEST)

    async def stop(self) -> None:
        if self.server is None:
            return          # never listened (a failed start): the path is not ours
        self.server.close()
        await self.server.wait_closed()
        if self.address.startswith("unix:"):
            try:
                os.unlink(self.address[len("unix:"):])
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status, body, ctype = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            writer.close()
            return
        try:
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode())
            if not head.startswith(b"HEAD "):
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, bytes, str]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET\n", "text/plain"
        if target.split("?", 1)[0] != "/metrics":
            return "404 Not Found", b"see /metrics\n", "text/plain"
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        try:
            body, ctype = self.render(accept)
        except Exception:
            log.error("metrics collection failed", exc_info=True)
            return "500 Internal Server Error", b"collection failed\n", "text/plain"
        return "200 OK", body, ctype
