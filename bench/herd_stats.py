"""What a herd round measured, and the herd's tables and goals: pure functions.

:func:`round_measures` turns one round's waiter records (from :mod:`bench.herd_runner`)
and its ``MONITOR`` feed (:mod:`bench.monitor`) into the round's numbers; :func:`rows`
pools the rounds of each (N, wait, variant); :func:`tables` and :func:`goals` present
them. :mod:`bench.herd` runs the rounds; the tests feed these functions by hand.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from bench.common import Report, ms, percentile, summary, table
from bench.monitor import Command, by_name, kinds

VARIANTS = ("scssq", "poll-2s", "poll-100ms", "raw")
LABELS = {"scssq": "scssq", "poll-2s": "poll 2 s", "poll-100ms": "poll 100 ms", "raw": "raw floor"}
#: Waiter record fields kept in the results, as seconds after the round's start.
RECORD_FIELDS = ("start", "wait", "wake", "done", "outcome", "polls", "error")


def round_measures(
    records: list[dict[str, Any]],
    commands: list[Command],
    completed: float | None,
    start_at: float,
    tag: str,
) -> dict[str, Any]:
    """One round's numbers from its waiters' records and the ``MONITOR`` feed.

    ``completed`` is the server's time of the completing ``PUBLISH`` (None if none was
    seen); the waiters' connections are named ``<tag>-...``. Wake-ups count only the
    waiters already waiting at the completion: one that reached its wait later (held
    back by the herd's own CPU load) found the message buffered on its subscription,
    and is counted apart as a late arrival.
    """
    errors = [r["error"] for r in records if "error" in r]
    per_waiter = by_name(commands, tag + "-")
    counts = [len(per_waiter.get(r["name"], [])) for r in records]
    woken = [r for r in records if r.get("wait") and r.get("wake")]
    during = [
        sum(1 for c in per_waiter.get(r["name"], []) if r["wait"] < c.time < r["wake"])
        for r in woken
    ]
    wakes = [r["wake"] - completed for r in woken if completed and r["wait"] <= completed]
    late = sum(1 for r in woken if completed and r["wait"] > completed)
    done = [r["done"] for r in records if "done" in r]
    return {
        "wait_s": (completed - start_at) if completed else None,
        "errors": errors[:5],
        "error_count": len(errors),
        "outcomes": dict(Counter(r["outcome"] for r in records if r.get("outcome"))),
        "tasks_sent": sum(r.get("sends", 0) for r in records),
        "last_css_s": (max(done) - start_at) if done else None,
        "last_css_after_completion_s": (max(done) - completed) if done and completed else None,
        "late_arrivals": late,
        "records": [
            {
                k: round(r[k] - start_at, 4) if isinstance(r.get(k), float) else r.get(k)
                for k in RECORD_FIELDS
                if r.get(k) is not None
            }
            for r in records
        ],
        "wake_s": summary(wakes),
        "wakes": [round(w, 6) for w in wakes],
        "commands": summary(counts),
        "commands_during_wait": summary(during),
        "command_kinds": dict(kinds([c for cmds in per_waiter.values() for c in cmds])),
        "polls": summary([r["polls"] for r in records if "polls" in r]),
    }


def rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over the repetitions of each (N, wait, variant)."""
    out = []
    keyfn = lambda r: (r["n"], r["target_wait_s"], VARIANTS.index(r["variant"]))  # noqa: E731
    for (n, wait, v), group in itertools.groupby(sorted(rounds, key=keyfn), key=keyfn):
        g = list(group)
        wakes = [w for r in g for w in r["wakes"]]
        out.append(
            {
                "n": n,
                "target_wait_s": wait,
                "variant": VARIANTS[v],
                "reps": len(g),
                "wait_s": percentile([r["wait_s"] or 0 for r in g], 50),
                "compiles_max": max(r["compiles"] for r in g),
                "compiles": [r["compiles"] for r in g],
                "errors": sum(r["error_count"] for r in g),
                "last_css_s": percentile([r["last_css_s"] or 0 for r in g], 50),
                "tail_s": percentile([r["last_css_after_completion_s"] or 0 for r in g], 50),
                "late": sum(r["late_arrivals"] for r in g),
                "wake_p50": percentile(wakes, 50),
                "wake_p99": percentile(wakes, 99),
                "commands_p50": percentile([r["commands"]["p50"] for r in g], 50),
                "commands_max": max(r["commands"]["max"] for r in g),
                "during_wait_max": max(
                    (r["commands_during_wait"]["max"] for r in g if r["commands_during_wait"]["n"]),
                    default=0,
                ),
                "tasks_sent": percentile([r["tasks_sent"] for r in g], 50),
            }
        )
    return out


def tables(rows: list[dict[str, Any]]) -> str:
    """The herd's Markdown table: one line per (N, wait, variant)."""
    body = []
    for r in rows:
        body.append(
            (
                r["n"],
                f"{r['wait_s']:.1f} s",
                LABELS[r["variant"]],
                "-" if r["variant"] == "raw" else f"{r['compiles_max']}",
                "-" if r["variant"] == "raw" else f"{r['last_css_s']:.2f} s (+{r['tail_s']:.2f})",
                ms(r["wake_p50"]),
                ms(r["wake_p99"]),
                f"{r['commands_p50']:.0f} (max {r['commands_max']:.0f})",
                f"{r['during_wait_max']:.0f}" if r["variant"] == "scssq" else "-",
                r["late"] if r["variant"] == "scssq" else "-",
                r["errors"],
            )
        )
    return table(
        [
            "N",
            "wait",
            "variant",
            "compiles",
            "last has the CSS (after completion)",
            "wake p50",
            "wake p99",
            "cmds/waiter",
            "cmds in wait",
            "late",
            "errors",
        ],
        body,
    )


def goals(report: Report, rows: list[dict[str, Any]], sizes: list[int], label: str) -> None:
    """The issue's herd goals: one compile per key in every scssq round, p99 wake-up
    within 1.2 x the raw floor's at the same N and wait, and the same number of commands
    per waiter whatever the wait's length."""
    find = {(r["n"], r["target_wait_s"], r["variant"]): r for r in rows}
    scssq = [r for r in rows if r["variant"] == "scssq"]
    counts = [c for r in scssq for c in r["compiles"]]
    report.goal(
        f"{label}: compiles per key (every N, every wait)",
        max(counts, key=lambda c: abs(c - 1)),  # the round furthest from one compile
        1,
        exactly=True,
        note=f"N = {', '.join(map(str, sizes))}",
    )
    for r in scssq:
        raw = find.get((r["n"], r["target_wait_s"], "raw"))
        if raw is None:
            continue
        report.goal(
            f"{label} N={r['n']}, wait {r['wait_s']:.1f} s: p99 wake-up ÷ raw floor p99",
            r["wake_p99"] / raw["wake_p99"],
            1.2,
            note=f"{ms(r['wake_p99'])} vs {ms(raw['wake_p99'])}",
        )
    for n in sizes:
        cmds = [r["commands_max"] for r in scssq if r["n"] == n]
        if len(cmds) > 1:
            report.goal(
                f"{label} N={n}: commands per waiter, |longest wait - shortest| (max)",
                abs(cmds[-1] - cmds[0]),
                0,
                note="independent of the wait: " + " vs ".join(f"{c:.0f}" for c in cmds),
            )
