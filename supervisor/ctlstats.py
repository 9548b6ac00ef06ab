"""``stats``: Docker's resource table (CPU %, memory usage/limit/%, net and block I/O, pids).

CPU % is Docker's: the container's CPU time over the host's CPU time between two samples, times
the number of CPUs. Memory "usage" is Docker's on cgroup v1: usage minus inactive file cache.
``--no-stream`` takes two samples a short interval apart and prints once; otherwise the table is
redrawn about once a second until interrupted.
"""
from __future__ import annotations

import os
import sys
import time

from supervisor import ctlview

HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
           "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
           "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
           "{{.BlockIO}}\t{{.PIDs}}")
UNLIMITED = 1 << 62


def _host_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return int(sum(int(x) for x in fields) * 1e9 / os.sysconf("SC_CLK_TCK"))


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _sample(ctl, ids):
    from supervisor.gen.containerd.cgroups.v1 import metrics_pb2
    resp = ctl.client.tasks.Metrics(ctl.tpb.MetricsRequest(filters=[f"id=={i}" for i in ids]))
    out = {}
    for m in resp.metrics:
        data = metrics_pb2.Metrics()
        data.ParseFromString(m.data.value)
        out[m.id] = data
    return out, _host_cpu_ns()


def _row(rec, prev, cur, host_delta: int, host_mem: int) -> dict:
    cpu = 0.0
    if prev is not None and host_delta > 0:
        delta = cur.cpu.usage.total - prev.cpu.usage.total
        cpu = delta / host_delta * (os.cpu_count() or 1) * 100.0
    mem = cur.memory
    usage = max(mem.usage.usage - mem.inactive_file, 0)
    limit = mem.usage.limit if 0 < mem.usage.limit < UNLIMITED else host_mem
    net_rx = net_tx = 0  # the cgroup v1 metrics carry no network counters
    blk_r = sum(e.value for e in cur.blkio.io_service_bytes_recursive if e.op.lower() == "read")
    blk_w = sum(e.value for e in cur.blkio.io_service_bytes_recursive if e.op.lower() == "write")
    return {
        "Container": rec.short_id, "ID": rec.short_id, "Name": rec.name,
        "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{ctlview.binary_size(usage)} / {ctlview.binary_size(limit)}",
        "MemPerc": f"{(usage / limit * 100 if limit else 0):.2f}%",
        "NetIO": f"{ctlview.decimal_size(net_rx)} / {ctlview.decimal_size(net_tx)}",
        "BlockIO": f"{ctlview.decimal_size(blk_r)} / {ctlview.decimal_size(blk_w)}",
        "PIDs": str(cur.pids.current),
    }


def stats(ctl, a) -> int:
    from supervisor.ctlbase import CtlError
    if a.containers:
        recs = [ctl.record(r) for r in a.containers]
    else:
        recs = [r for r in ctl.records() if a.all or r.running]
    running = [r for r in recs if r.running]
    fmt = a.format or DEFAULT
    host_mem = _host_memory()
    prev, prev_host = _sample(ctl, [r.id for r in running]) if running else ({}, 0)
    interval = 0.5 if a.no_stream else 1.0
    while True:
        time.sleep(interval)
        cur, host = _sample(ctl, [r.id for r in running]) if running else ({}, 0)
        rows = []
        for r in recs:
            if r.id in cur:
                rows.append(_row(r, prev.get(r.id), cur[r.id], host - prev_host, host_mem))
            else:
                rows.append({"Container": r.short_id, "ID": r.short_id, "Name": r.name,
                             "CPUPerc": "0.00%", "MemUsage": "0B / 0B", "MemPerc": "0.00%",
                             "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "0"})
        try:
            text = ctlview.render_all(fmt, rows, HEADERS)
        except ctlview.TemplateError as e:
            raise CtlError(f"failed to execute template: {e}") from None
        if a.no_stream:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\033[2J\033[H" + text)
        sys.stdout.flush()
        prev, prev_host = cur, host
