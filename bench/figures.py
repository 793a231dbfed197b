"""Draw one PNG per benchmark from the newest results under ``bench/results/``.

``python -m bench.figures`` writes ``bench/results/<benchmark>.png`` for every benchmark
that has results (herd, throughput, miss, hit, memory, dart-heap, engines). Needs matplotlib
(``pip install -e '.[bench]'``); the figures are not committed.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import RESULTS, latest

COLORS = {
    "scssq": "#1f77b4",
    "poll-2s": "#d62728",
    "poll-100ms": "#ff7f0e",
    "raw": "#2ca02c",
    "fleet": "#1f77b4",
    "local": "#7f7f7f",
    "file": "#1f77b4",
    "s3": "#9467bd",
    "new": "#17becf",
}


def _slots(series: int, groups: int) -> tuple[list[list[float]], float]:
    """Grouped bars: the x of each series' bar in each of ``groups`` groups (centred on
    0, 1, ...), and the bars' width."""
    width = 0.8 / series
    return [[g - 0.4 + width * (s + 0.5) for g in range(groups)] for s in range(series)], width


def herd(doc: dict[str, Any], ax_row: Any) -> None:
    rows = doc["data"]["rows"]
    waits = sorted({r["target_wait_s"] for r in rows})
    variants = ["scssq", "poll-2s", "poll-100ms", "raw"]
    wake, cmds = ax_row
    sizes = sorted({r["n"] for r in rows})
    slots, width = _slots(len(variants) * len(waits), len(sizes))
    for vi, v in enumerate(variants):
        for wi, w in enumerate(waits):
            sel = {r["n"]: r for r in rows if r["variant"] == v and r["target_wait_s"] == w}
            xs = slots[vi * len(waits) + wi]
            p99 = [sel[n]["wake_p99"] * 1000 if n in sel else math.nan for n in sizes]
            c = [sel[n]["commands_p50"] if n in sel else math.nan for n in sizes]
            kw = {"color": COLORS[v], "alpha": 1.0 if wi == 0 else 0.55}
            label = f"{v}, {w:g} s compile"
            wake.bar(xs, p99, width, label=label, **kw)
            cmds.bar(xs, c, width, label=label, **kw)
    for ax, title, unit in (
        (wake, "wake-up after completion, p99", "ms (log)"),
        (cmds, "Redis commands per waiter (median)", "commands (log)"),
    ):
        ax.set_xticks(range(len(sizes)), [f"N = {n}" for n in sizes])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(title)
        ax.set_ylabel(unit)
    cmds.legend(fontsize=7, ncol=2)


def throughput(doc: dict[str, Any], ax: Any) -> None:
    data = doc["data"]
    for side in ("raw", "fleet"):
        for i, curve in enumerate(data["curves"][side]):
            ax.step(
                curve,
                range(1, len(curve) + 1),
                where="post",
                color=COLORS[side],
                alpha=0.8,
                label=f"{'raw libsass, 2 processes' if side == 'raw' else 'scssq fleet, 2 workers'}"
                if i == 0
                else None,
            )
    ax.set_xlabel("seconds since the round started")
    ax.set_ylabel("bundles finished")
    ax.set_title(
        f"{doc['params']['bundles']} Bootstrap bundles in {doc['params']['rounds']} rounds: "
        f"fleet ÷ raw = {data['ratio']:.2f}"
    )
    ax.legend()


def miss(doc: dict[str, Any], ax: Any) -> None:
    rows = doc["data"]["rows"]
    parts = [
        ("engine", "engine (this process)"),
        ("worker_engine", "engine in the worker's child"),
        ("worker_task", "worker task"),
        ("submit", "submit, client API"),
        ("cli", "`scssq submit` process"),
    ]
    slots, width = _slots(len(parts), len(rows))
    for xs, (key, label) in zip(slots, parts, strict=True):
        p50 = [r[key]["p50"] * 1000 for r in rows]
        err = [[0] * len(rows), [(r[key]["p99"] - r[key]["p50"]) * 1000 for r in rows]]
        ax.bar(xs, p50, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(
        range(len(rows)),
        [f"{r['bundle']}\nsubmit ÷ engine p50 {r['ratio']['p50']:.2f}" for r in rows],
    )
    ax.set_ylabel("ms (bar p50, whisker p99)")
    ax.set_title("one miss, end to end vs the engine alone")
    ax.legend(fontsize=8)


def hit(doc: dict[str, Any], axes: Any) -> None:
    proc_ax, imp_ax = axes
    rows = doc["data"]["process"]
    series = [
        ("local", "local compile, new process"),
        ("file", "hit, local store"),
        ("s3", "hit, S3"),
        ("new", "hit, new commit (local store)"),
    ]
    series = [(k, label) for k, label in series if k in rows[0]]  # older results lack "new"
    slots, width = _slots(len(series), len(rows))
    for xs, (key, label) in zip(slots, series, strict=True):
        p50 = [r[key]["p50"] * 1000 for r in rows]
        err = [[0] * len(rows), [(r[key]["p90"] - r[key]["p50"]) * 1000 for r in rows]]
        proc_ax.bar(xs, p50, width, yerr=err, capsize=3, label=label, color=COLORS[key])
    proc_ax.set_xticks(range(len(rows)), [r["bundle"] for r in rows])
    proc_ax.set_ylabel("ms (bar p50, whisker p90)")
    proc_ax.set_title("`scssq submit` on a cached bundle vs compiling locally")
    proc_ax.legend(fontsize=8)
    imports = doc["data"]["imports"]
    labels = [k for k in sorted(imports.get("s3", {}), key=lambda k: -imports["s3"][k])]
    labels = [k for k in labels if k != "all imports"]
    left = {store: 0.0 for store in imports}
    for label in labels:
        values = [imports[s].get(label, 0.0) * 1000 for s in imports]
        imp_ax.barh(list(imports), values, left=[left[s] for s in imports], label=label)
        for s, v in zip(imports, values, strict=True):
            left[s] += v
    imp_ax.set_xlabel("ms of imports (own time, by package)")
    imp_ax.set_title("where a hit process's import time goes")
    imp_ax.legend(fontsize=7)


def memory(doc: dict[str, Any], ax: Any) -> None:
    passes = doc["data"]["samples"]
    if isinstance(passes, list):  # before 2026-11-23: one libsass pass, its engine "engine"
        passes = {"libsass": [{**s, "libsass": s["engine"]} for s in passes]}
    for (engine, samples), style in zip(passes.items(), ("-", "--"), strict=False):
        xs = [s["compiles"] for s in samples]
        for role in ("worker", "pool", engine):
            ys = [s[role]["rss_kib"] / 1024 for s in samples]
            name = "engine" if role == engine else role
            ax.plot(xs, ys, style, marker="o", label=f"{name} ({engine} pass)")
    ax.set_xlabel("compiles after the warm-up")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("RSS of the worker, its pool process and its engine process")
    ax.legend(fontsize=8)


def dart_heap(doc: dict[str, Any], axes: Any) -> None:
    rows = doc["data"]["rows"]
    labels = [textwrap.fill(r["flags"] or "no flag", 18) for r in rows]
    readings = ("first", "warm", "settled", "after")
    slots, width = _slots(len(readings), len(rows))
    for xs, key in zip(slots, readings, strict=True):
        axes[0].bar(xs, [r["rss"][key] for r in rows], width, label=key)
    axes[0].set_xticks(range(len(rows)), labels, fontsize=7)
    axes[0].set_ylabel("compiler RSS, MiB")
    axes[0].set_title("small sheets: after 1, the warm-up, settled, the last")
    axes[0].legend(fontsize=8)
    cases = list(rows[0]["frameworks"]["median_ms"])
    slots, width = _slots(len(cases), len(rows))
    for xs, case in zip(slots, cases, strict=True):
        axes[1].bar(xs, [r["frameworks"]["median_ms"][case] for r in rows], width, label=case)
    axes[1].set_xticks(range(len(rows)), labels, fontsize=7)
    axes[1].set_ylabel("ms per compile (median)")
    axes[1].set_title("frameworks, the compilers taking turns")
    axes[1].legend(fontsize=8)


def engines(doc: dict[str, Any], ax: Any) -> None:
    rows = doc["rows"]
    names = [
        ("dart_warm", "dart-sass, warm"),
        ("sass_cli", "sass CLI per compile"),
        ("libsass", "libsass"),
    ]
    slots, width = _slots(len(names), len(rows))
    for xs, (key, label) in zip(slots, names, strict=True):
        ys = [r.get(key, {}).get("median_ms", math.nan) for r in rows]
        ax.bar(xs, ys, width, label=label)
    labels = [textwrap.fill(r["bundle"].replace("`", ""), 22) for r in rows]
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_yscale("log")  # a 1 ms compile beside 1 s ones
    ax.set_ylabel("ms per compile (median, log scale)")
    ax.set_title("engines (bench/engines.py)")
    ax.legend(fontsize=8)


#: benchmark -> (drawing function, subplot columns, figure size)
FIGURES: dict[str, tuple[Callable[[dict[str, Any], Any], None], int, tuple[float, float]]] = {
    "herd": (herd, 2, (13, 5)),
    "herd-pinned": (herd, 2, (13, 5)),
    "throughput": (throughput, 1, (8, 5)),
    "miss": (miss, 1, (9, 5)),
    "hit": (hit, 2, (14, 5)),
    "memory": (memory, 1, (8, 5)),
    "dart-heap": (dart_heap, 2, (13, 5)),
    "engines": (engines, 1, (8, 5)),
}


def draw(name: str) -> Path | None:
    doc = latest(name)
    if doc is None:
        return None
    fn, cols, size = FIGURES[name]
    fig, axes = plt.subplots(1, cols, figsize=size)
    fn(doc, axes)
    when = [doc["started"]] if doc.get("started") else []  # engines JSON before 2026-11-23
    fig.suptitle(f"scssq benchmark: {name} ({', '.join([*when, _machine(doc)])})", fontsize=9)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    cpus = m.get("nproc") or m.get("cpus")
    return f"{cpus} CPUs, {m.get('cpu') or m.get('processor', '?')}"


def main() -> int:
    for name in FIGURES:
        path = draw(name)
        print(f"{name}: {path.relative_to(RESULTS.parent.parent) if path else 'no results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
