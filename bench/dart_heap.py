"""Diagnostic: the Dart VM's young generation vs the compiler's RSS growth and speed.

``python -m bench.dart_heap [--quick] [--compiles 500] [--rounds 12]``

The memory benchmark found the Dart Sass compiler's RSS growing by about a quarter over
its first 50 compiles, then staying flat. This measures why, and what the VM's heap
flags would trade for it. Since the compiler runs a warm-up sheet at start
(``compiler_tasks/engines/dart/engine.py``), every setting's first reading is taken after it.
One compiler per setting of :data:`SETTINGS` (scssq's own
dart-sass engine, its ``dart`` started through a ``sh`` wrapper that adds the flags),
all in one process and one run:

1. each compiles the memory benchmark's small sheets (:func:`bench.bundles.small_modules`):
   ``VmRSS`` after 1 compile, after the same 20 warm-up compiles, 50 later and after
   ``--compiles`` more;
2. then the compilers take turns on Bulma 1.0.2, Foundation 6.8.1 and Bootstrap 5.3.3
   for ``--rounds`` rounds (the first two not timed): median ms per compile, and each
   compiler's RSS afterwards and its peak (``VmHWM``). One reading after a run of big
   compiles depends on when the VM last collected its old generation: the peak is the
   steadier figure.

Not a test and no goal of its own: it explains the memory benchmark's missed goal.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bundles
from bench.common import Report, table
from bench.corpus import ensure
from bench.memory import WARMUP, status_kib
from compiler_tasks.engines.base import EngineRequest
from compiler_tasks.engines.dart.compiler import locate
from compiler_tasks.engines.dart.engine import DartSassEngine
from compiler_tasks.settings import Settings

#: Dart VM flags -> why each is measured. The VM's defaults (``dart --print_flags``,
#: Dart Sass 1.99): a young-generation semi-space of 2 MiB at first, grown 4-fold while
#: under 90 % of it is garbage, up to 32 MiB.
SETTINGS = {
    "": "none (as shipped)",
    "--new_gen_semi_max_size=4": "young generation capped at 4 MiB",
    "--new_gen_semi_initial_size=8": "young generation at 8 MiB from the start",
    "--new_gen_semi_initial_size=32": "young generation at 32 MiB from the start",
}
#: Compiles after the warm-up at which RSS is read for the "settled" column.
SETTLED = 50
#: Framework rounds not timed (each compiler's first compiles of each framework).
UNTIMED = 2
DEADLINE = 300.0


def _rss_mib(pid: int | None, field: str = "VmRSS") -> float:
    """``field`` of ``/proc/PID/status`` in MiB: VmRSS now, or VmHWM (its peak so far)."""
    kib = status_kib(pid or 0, field)
    if kib is None:
        raise RuntimeError(f"no {field} for process {pid}")
    return kib / 1024


def _engine(flags: str, tmp: Path) -> DartSassEngine:
    """scssq's dart-sass engine whose compiler runs with the VM ``flags``."""
    real = locate()
    wrapper = tmp / f"dart-{len(list(tmp.glob('dart-*')))}"
    wrapper.write_text(f'#!/bin/sh\nexec "{real.dart}" {flags} "$@"\n')
    wrapper.chmod(0o755)
    settings = dataclasses.replace(Settings(), compile_timeout=DEADLINE, dart_max_compiles=10**6)
    engine = DartSassEngine(settings)
    engine._binary = dataclasses.replace(real, dart=str(wrapper))  # the engine's own lookup
    return engine


def _compile(engine: DartSassEngine, root: Path, entry: str) -> float:
    started = time.perf_counter()
    engine.compile(EngineRequest(root, entry), deadline=time.monotonic() + DEADLINE)
    return (time.perf_counter() - started) * 1000


def small_sheets(engine: DartSassEngine, sheets: list[Path]) -> dict[str, float]:
    """RSS (MiB) after 1 compile, the warm-up, SETTLED more and all of ``sheets``."""
    marks = {1: "first", WARMUP: "warm", WARMUP + SETTLED: "settled", len(sheets): "after"}
    rss: dict[str, float] = {}
    for i, sheet in enumerate(sheets, 1):
        _compile(engine, sheet, bundles.ENTRY)
        if i in marks:
            rss[marks[i]] = round(_rss_mib(engine.pid), 1)
    return rss


def frameworks(engines: dict[str, DartSassEngine], rounds: int, tmp: Path) -> dict[str, Any]:
    """Median ms of each framework per setting, the compilers taking turns; RSS after."""
    cases = {
        "bulma": (ensure("bulma"), "bulma.scss"),
        "foundation": (bundles.foundation(tmp / "foundation", 0), bundles.ENTRY),
        "bootstrap": (ensure("bootstrap"), "scss/bootstrap.scss"),
    }
    times: dict[str, dict[str, list[float]]] = {f: {c: [] for c in cases} for f in engines}
    for rnd in range(rounds):
        for case, (root, entry) in cases.items():
            for flags, engine in engines.items():
                ms = _compile(engine, root, entry)
                if rnd >= UNTIMED:
                    times[flags][case].append(ms)
    return {
        flags: {
            "median_ms": {c: round(statistics.median(v), 1) for c, v in by_case.items()},
            "rss_after_mib": round(_rss_mib(engines[flags].pid), 1),
            "peak_mib": round(_rss_mib(engines[flags].pid, "VmHWM"), 1),
        }
        for flags, by_case in times.items()
    }


def growth(rss: dict[str, float], since: str) -> float:
    """Growth from the ``since`` reading to the last one, as a fraction."""
    return rss["after"] / rss[since] - 1


def tables(rows: list[dict[str, Any]], compiles: int) -> str:
    """The Markdown table of the rows of one run."""
    cases = list(rows[0]["frameworks"]["median_ms"]) if rows else []
    return "### The Dart VM's young generation (diagnostic)\n\n" + table(
        [
            "Dart VM flag",
            f"RSS after 1 → {WARMUP} → {WARMUP + SETTLED} → {WARMUP + compiles} small",
            f"growth from {WARMUP}",
            f"growth from {WARMUP + SETTLED}",
            *[f"{c}, median" for c in cases],
            "RSS after the frameworks (peak)",
        ],
        [
            (
                f"`{r['flags']}`" if r["flags"] else SETTINGS[""],
                " → ".join(f"{r['rss'][k]:.1f}" for k in ("first", "warm", "settled", "after"))
                + " MiB",
                f"{growth(r['rss'], 'warm') * 100:+.1f} %",
                f"{growth(r['rss'], 'settled') * 100:+.1f} %",
                *[f"{r['frameworks']['median_ms'][c]:.0f} ms" for c in cases],
                f"{r['frameworks']['rss_after_mib']:.1f} MiB ({r['frameworks']['peak_mib']:.0f})",
            )
            for r in rows
        ],
        "ll" + "r" * (3 + len(cases)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 compiles, 4 rounds")
    parser.add_argument("--compiles", type=int, default=None, help="default 500")
    parser.add_argument("--rounds", type=int, default=None, help="default 12 (2 untimed)")
    args = parser.parse_args()
    compiles = args.compiles or (100 if args.quick else 500)
    if compiles <= SETTLED:
        parser.error(f"--compiles {compiles}: give more than {SETTLED} (the settled reading)")
    rounds = max(UNTIMED + 1, args.rounds or (4 if args.quick else 12))
    report = Report(
        "dart-heap",
        args.quick,
        params={"compiles": compiles, "warmup": WARMUP, "rounds": rounds, "untimed": UNTIMED},
    )
    with tempfile.TemporaryDirectory(prefix="scssq-bench-heap-") as tmp_dir:
        tmp = Path(tmp_dir)
        sheets = [
            bundles.small_modules(tmp / "small" / str(i), i) for i in range(WARMUP + compiles)
        ]
        engines = {flags: _engine(flags, tmp) for flags in SETTINGS}
        try:
            rss = {}
            for flags, engine in engines.items():
                rss[flags] = small_sheets(engine, sheets)
                print(f"{flags or 'no flag'}: {rss[flags]}", flush=True)
            timed = frameworks(engines, rounds, tmp)
        finally:
            for engine in engines.values():
                engine.close()
    rows = [
        {"flags": f, "why": SETTINGS[f], "rss": rss[f], "frameworks": timed[f]} for f in SETTINGS
    ]
    report.data = {"rows": rows}
    report.write(tables(rows, compiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
