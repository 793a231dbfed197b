"""The suite's summary: machine, every benchmark's tables and one table of all goals.

``python -m bench.report`` reads the newest results of each benchmark under
``bench/results/`` and writes ``bench/results/summary.md`` (and prints it): the Markdown
that the goals table of docs/benchmarks.md is made from.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.common import RESULTS, goals_table, latest, table

ORDER = ("herd", "herd-pinned", "throughput", "miss", "hit", "memory", "dart-heap", "engines")


def _engines_text(doc: dict[str, Any]) -> str:
    from bench.engines import table as engines_table

    return "### Engines (bench/engines.py)\n\n" + engines_table(doc)


def machine_text(docs: dict[str, dict[str, Any]]) -> str:
    m: dict[str, Any] = next(
        (d["machine"] for d in docs.values() if "nproc" in d.get("machine", {})), {}
    )
    loads = [
        f"{name} {d['load']['before'][0]:.1f}→{d['load']['after'][0]:.1f}"
        for name, d in docs.items()
        if "load" in d
    ]
    started = sorted(d["started"] for d in docs.values() if "started" in d)
    return "\n".join(
        [
            table(
                ["nproc", "CPU", "RAM", "Python", "Redis", "engine"],
                [
                    (
                        m.get("nproc", "?"),
                        m.get("cpu", "?"),
                        f"{m.get('ram_gib', '?')} GiB",
                        m.get("python", "?"),
                        m.get("redis", "?"),
                        m.get("libsass", "?"),
                    )
                ],
                "llllll",
            ),
            "",
            f"Runs: {started[0]} … {started[-1]}" if started else "",
            "1-minute load average before→after each benchmark: " + ", ".join(loads) + ".",
        ]
    )


def build() -> str:
    docs = {name: doc for name in ORDER if (doc := latest(name)) is not None}
    parts = ["## Benchmark summary", "", machine_text(docs), ""]
    goals: list[dict[str, Any]] = []
    for name, doc in docs.items():
        if doc.get("quick"):
            parts.append(f"*{name}: quick run (small N), not the full suite.*\n")
        text = _engines_text(doc) if name == "engines" else doc.get("tables", "")
        if name == "herd-pinned" and text.startswith("### Herd\n"):
            text = (
                "### Herd, pinned (diagnostic): fleet, Redis and MONITOR on CPU 0, waiters on CPU 1"
                + text[8:]
            )
        parts += [text, ""]
        for goal in doc.get("goals", []):
            if name == "herd-pinned" and not goal["goal"].startswith("herd (pinned)"):
                goal = {**goal, "goal": goal["goal"].replace("herd", "herd (pinned)", 1)}
            goals.append(goal)
    parts += ["### Goals", "", goals_table(goals), ""]
    return "\n".join(parts)


def main() -> int:
    text = build()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(text)
    print(text)
    print(f"written {RESULTS / 'summary.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
