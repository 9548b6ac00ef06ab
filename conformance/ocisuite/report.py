"""TAP output per check and the side-by-side table (check x runtime).

TAP: `ok N - <spec ref>: <requirement>`; a failed SHOULD reads
`not ok N - ... # SHOULD`, a skip `ok N - ... # SKIP <host limit>`, an allowed
refusal `ok N - ... # refused (allowed): <error>`, and the reason and the
runtime calls of a failure follow as `#` lines.

Table cells: pass, FAIL (MUST failed), fail (SHOULD failed), skip, refused (the
runtime declined a value it may decline), ERROR (the check itself broke),
TIMEOUT.
"""

from __future__ import annotations

from .registry import ERROR, FAIL, MUST, PASS, REFUSED, SKIP, SHOULD, TIMEOUT, Outcome


def tap_header(total: int, runtime: str) -> str:
    return f"TAP version 13\n# runtime: {runtime}\n1..{total}"


def tap_line(n: int, o: Outcome, verbose: bool = False) -> str:
    title = o.check.title
    if o.status == PASS:
        return "\n".join([f"ok {n} - {title}", *(f"#   {d}" for d in o.diags if verbose)])
    if o.status == SKIP:
        return f"ok {n} - {title} # SKIP {o.message}"
    if o.status == REFUSED:
        return f"ok {n} - {title} # refused (allowed): {o.message}"
    mark = " # SHOULD" if o.check.level == SHOULD else ""
    lines = [f"not ok {n} - {title}{mark}"]
    lines.append(f"#   [{o.check.id}] {o.status}: {o.message}")
    lines.extend(f"#   {d}" for d in o.diags)
    return "\n".join(lines)


def cell(o: Outcome | None) -> str:
    if o is None:
        return "-"
    if o.status == PASS:
        return "pass"
    if o.status in (SKIP, REFUSED):
        return o.status
    if o.status == FAIL:
        return "FAIL" if o.check.level == MUST else "fail"
    return {ERROR: "ERROR", TIMEOUT: "TIMEOUT"}.get(o.status, o.status)


def tally(outcomes: list[Outcome]) -> str:
    def count(level, ok):
        return sum(1 for o in outcomes if o.check.level == level and (o.passed if ok else True))
    return (f"MUST {count(MUST, True)}/{count(MUST, False)}  "
            f"SHOULD {count(SHOULD, True)}/{count(SHOULD, False)}")


def table(names: list[str], results: list[dict[str, Outcome]], checks, markdown=False,
          seconds: list[float] | None = None) -> str:
    """One row per check, one column per runtime, then pass counts per level."""
    head = ["check", "level", *names]
    rows = [[c.id, c.level, *(cell(r.get(c.id)) for r in results)] for c in checks]
    totals = ["passed (pass/skip/refused)", "", *(tally(list(r.values())) for r in results)]
    rows.append(totals)
    if seconds:
        rows.append(["time", "", *(f"{s:.1f}s" for s in seconds)])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    body = [fmt.format(*r) for r in rows[:len(checks)]]
    tail = [fmt.format(*r) for r in rows[len(checks):]]
    return "\n".join([fmt.format(*head), rule, *body, rule, *tail])
