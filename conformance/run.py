#!/usr/bin/env python3
"""Run the OCI runtime conformance suite against one or more runtimes.

    conformance/run.py --runtime /usr/sbin/runc [--runtime .venv/bin/pyrunc ...]
                       [--tap] [--filter TEXT ...] [--markdown] [--list] [--json FILE]

Each runtime gets its own session (temp tree, --root, containers) and runs every
selected check; --tap prints the TAP stream of each runtime as it runs.  At the
end a table shows every check against every runtime.  The exit status is 1 when
the first runtime fails a MUST check, 0 otherwise (SHOULD failures are reported
but do not fail the run); with several runtimes the checks the first one fails
and another passes are listed last.  Needs root.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ocisuite import checks  # noqa: E402,F401  (registers the checks)
from ocisuite import report  # noqa: E402
from ocisuite.registry import MUST, run_check, select  # noqa: E402
from ocisuite.session import Session  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", action="append", default=[],
                    help="runtime binary, optionally with global options of its own, "
                         "e.g. 'runc --systemd-cgroup' (repeatable); default $RUNTIME")
    ap.add_argument("--tap", action="store_true", help="print the TAP stream of each runtime")
    ap.add_argument("--filter", action="append", default=[],
                    help="run only checks whose id or title contains TEXT (repeatable)")
    ap.add_argument("--verbose", action="store_true",
                    help="with --tap, also print the diagnostics of passing checks")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--json", metavar="FILE",
                    help="also write every outcome to FILE (runtime -> check -> level, status, "
                         "passed, message), for tests that compare runtimes")
    ap.add_argument("--keep", action="store_true", help="keep the temp tree (debugging)")
    ap.add_argument("--spec-dir", help="OCI runtime spec directory (default $OCI_SPEC_DIR)")
    args = ap.parse_args(argv)
    if not args.runtime and os.environ.get("RUNTIME"):
        args.runtime = [os.environ["RUNTIME"]]
    return args


def column_names(runtimes: list[str]) -> list[str]:
    """Base names of the binaries (with their options); full text when two clash."""
    names = []
    for r in runtimes:
        binary, *options = shlex.split(r)
        names.append(" ".join([os.path.basename(binary), *options]))
    return [r if names.count(n) > 1 else n for n, r in zip(names, runtimes)]


def run_runtime(path: str, selected, args) -> tuple[dict, float]:
    started = time.monotonic()
    outcomes = {}
    session = Session(path, spec_dir=args.spec_dir, keep=args.keep)
    try:
        if args.tap:
            print(report.tap_header(len(selected), session.runtime_path), flush=True)
        else:
            print(f"# {session.runtime_path}: {len(selected)} checks", end="", flush=True)
        for n, chk in enumerate(selected, 1):
            outcome = run_check(session, chk)
            outcomes[chk.id] = outcome
            if args.tap:
                print(report.tap_line(n, outcome, args.verbose), flush=True)
            elif not outcome.passed:
                print("x" if chk.level == MUST else "s", end="", flush=True)
            elif n % 10 == 0:
                print(".", end="", flush=True)
    finally:
        session.close()
    seconds = time.monotonic() - started
    if args.tap:
        print(f"# {report.tally(list(outcomes.values()))} in {seconds:.1f}s", flush=True)
    else:
        print(f" {seconds:.1f}s", flush=True)
    return outcomes, seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    selected = select(args.filter)
    if args.list:
        for c in selected:
            print(f"{c.id:40} {c.level:6} {c.title}")
        return 0
    if not args.runtime:
        print("run.py: no runtime given (--runtime PATH or RUNTIME=PATH)", file=sys.stderr)
        return 2
    if os.geteuid() != 0 and not os.environ.get("OCISUITE_ROOTLESS"):
        print("run.py: the conformance suite needs root (rootless: run_rootless.py)",
              file=sys.stderr)
        return 2
    results, seconds = [], []
    for path in args.runtime:
        outcomes, secs = run_runtime(path, selected, args)
        results.append(outcomes)
        seconds.append(secs)
    names = column_names(args.runtime)
    if args.json:
        write_json(args.json, names, results)
    print()
    print(report.table(names, results, selected, markdown=args.markdown, seconds=seconds))
    if not args.tap:  # the TAP stream already has the details
        print_failures(names, results, selected)
    print_comparison(names, results, selected)
    first = results[0]
    must_failed = [c.id for c in selected if c.level == MUST and not first[c.id].passed]
    return 1 if must_failed else 0


def write_json(path: str, names, results) -> None:
    import json
    data = {name: {cid: {"level": o.check.level, "status": o.status, "passed": o.passed,
                         "message": o.message} for cid, o in outcomes.items()}
            for name, outcomes in zip(names, results)}
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def print_failures(names, results, selected) -> None:
    for name, outcomes in zip(names, results):
        failed = [outcomes[c.id] for c in selected if not outcomes[c.id].passed]
        if not failed:
            continue
        print(f"\n# {name}: {len(failed)} failed")
        for o in failed:
            print(f"#  [{o.check.level}] {o.check.id}: {o.message}")


def print_comparison(names, results, selected) -> None:
    """The checks the first runtime fails and another one passes."""
    for name, outcomes in zip(names[1:], results[1:]):
        worse = [c.id for c in selected
                 if not results[0][c.id].passed and outcomes[c.id].passed]
        print(f"\n# {names[0]} fails {len(worse)} checks that {name} passes"
              + (f": {' '.join(worse)}" if worse else ""))


if __name__ == "__main__":
    sys.exit(main())
