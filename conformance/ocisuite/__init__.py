"""ocisuite — a runtime-agnostic conformance suite for the OCI runtime spec v1.3.0.

The suite drives a runtime only through its runc-compatible command line
(`create --bundle B ID`, `start`, `state`, `kill`, `delete`, `features`, with a
private `--root`), builds its own busybox root filesystem, and checks the
spec's MUST and SHOULD statements from the outside (state JSON, exit codes,
host-side effects) and from the inside (a busybox shell probe that reads
/proc/self/status, mountinfo, limits, ...).

Layout:
    registry  — Check records, the @check decorator, results, failures
    session   — one Session per runtime: temp dirs, bundles, containers, cleanup
    runtime   — the command-line driver (time-outs, captured output)
    bundle    — the baseline config.json and the busybox rootfs
    probe     — scripts run inside a container and parsers for /proc files
    host      — host-side helpers (namespace holders, mounts, cgroups)
    spec      — the spec directory and its JSON schemas
    report    — TAP and the side-by-side table
    checks/   — the checks, one module per area of the spec
"""
