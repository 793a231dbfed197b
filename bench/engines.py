"""Benchmark: warm embedded Dart Sass vs a new ``sass`` process per compile vs libsass.

``python bench/engines.py [--runs N]`` compiles Bootstrap 5.3.3 (``scss/bootstrap.scss``),
Bulma 1.0.2 (``bulma.scss``), Foundation 6.8.1 (an entry that loads it with ``pkg:`` and
includes ``foundation-everything``) and a small bundle (``@use`` + ``sass:math``, the shape of
most app stylesheets) N times each (default 15, at least 10) with:

* **dart-sass warm**: scssq's dart-sass engine, one long-lived ``sass --embedded``
  compiler (started and warmed before timing), imports answered by the host;
* **sass CLI per compile**: the same bundled binary started as ``sass IN OUT`` for every
  compile (what a naive service would do);
* **libsass**: scssq's libsass engine child (warm), the fleet's other engine.

All in one run, expanded style, no source map; medians (and min/max) of wall-clock
time per compile. Prints a Markdown table and writes ``bench/results/engines-<time>.json``
(ignored by git). Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bundles  # noqa: E402
from bench.common import cpu_model  # noqa: E402
from bench.corpus import ensure  # noqa: E402
from compiler_tasks.engines.base import EngineRequest  # noqa: E402
from compiler_tasks.engines.dart.compiler import dart_sass_version, locate  # noqa: E402
from compiler_tasks.engines.dart.engine import DartSassEngine  # noqa: E402
from compiler_tasks.engines.libsass.process import EngineProcess  # noqa: E402
from compiler_tasks.engines.registry import engine_version  # noqa: E402
from compiler_tasks.errors import CompileError  # noqa: E402
from compiler_tasks.settings import Settings  # noqa: E402

SMALL = {
    "main.scss": (
        '@use "sass:math";\n@use "theme" as t;\n'
        ".card { padding: math.div(t.$gap, 2); color: t.$brand; }\n"
        "@for $i from 1 through 12 { .col-#{$i} { width: math.percentage(math.div($i, 12)); } }\n"
    ),
    "_theme.scss": "$gap: 16px;\n$brand: #0d6efd;\n",
}
RESULTS = ROOT / "bench" / "results"


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up, not timed
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def _cases(tmp: Path) -> list[tuple[str, Path, str, tuple[str, ...]]]:
    """(label, root, entry, the ``sass`` CLI's extra flags) of each bundle."""
    small = tmp / "small"
    for rel, text in SMALL.items():
        (small / rel).parent.mkdir(parents=True, exist_ok=True)
        (small / rel).write_text(text)
    foundation = bundles.foundation(tmp / "foundation", 0)
    return [
        (bundles.label("bootstrap"), ensure("bootstrap"), "scss/bootstrap.scss", ()),
        (bundles.label("bulma"), ensure("bulma"), "bulma.scss", ()),
        (
            bundles.label("foundation-sites") + " (`pkg:`, `foundation-everything`)",
            foundation,
            bundles.ENTRY,
            ("--pkg-importer=node",),
        ),
        ("small bundle (@use, sass:math)", small, "main.scss", ()),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed compiles per cell (>= 10)")
    args = parser.parse_args()
    runs = max(10, args.runs)
    settings = dataclasses.replace(Settings(), compile_timeout=300.0)
    binary = locate()
    load_before = os.getloadavg()
    started = time.time()
    rows: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="scssq-bench-") as tmp_dir,
        DartSassEngine(settings) as dart,
        EngineProcess(settings) as libsass,
    ):
        tmp = Path(tmp_dir)
        for label, root, entry, cli_flags in _cases(tmp):
            req = EngineRequest(root, entry)
            out = tmp / "cli.css"

            def warm(req: EngineRequest = req) -> object:
                return dart.compile(req, deadline=time.monotonic() + 300)

            def cli(
                root: Path = root,
                entry: str = entry,
                out: Path = out,
                flags: tuple[str, ...] = cli_flags,
            ) -> object:
                return subprocess.run(
                    [binary.dart, binary.snapshot, "--no-source-map", *flags, entry, str(out)],
                    cwd=root,
                    check=True,
                    capture_output=True,
                )

            def lib(req: EngineRequest = req) -> object:
                return libsass.compile(req, deadline=time.monotonic() + 300)

            row: dict[str, object] = {"bundle": label}
            for name, fn in (("dart_warm", warm), ("sass_cli", cli), ("libsass", lib)):
                try:
                    samples = _time(fn, runs)
                except CompileError as e:
                    row[name] = {"error": str(e).split(";")[0]}
                    continue
                row[name] = {
                    "median_ms": round(statistics.median(samples) * 1000, 1),
                    "min_ms": round(min(samples) * 1000, 1),
                    "max_ms": round(max(samples) * 1000, 1),
                    "runs": runs,
                }
            rows.append(row)
            print(f"measured {label}", file=sys.stderr)
    report = {
        "benchmark": "engines",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": cpu_model(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "engines": {"dart-sass": dart_sass_version(), "libsass": engine_version("libsass")},
        "runs": runs,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"engines-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten {path.relative_to(ROOT)}")
    return 0


def _cell(value: object) -> str:
    if not isinstance(value, dict):
        return "?"
    if "error" in value:
        return "does not compile"
    return f"{value['median_ms']:.0f} ms"


def table(report: dict[str, object]) -> str:
    """The Markdown table of a report."""
    lines = [
        "| bundle | dart-sass, warm embedded | `sass` CLI, new process per compile | libsass |",
        "|---|---:|---:|---:|",
    ]
    for row in report["rows"]:  # type: ignore[attr-defined]
        cells = [_cell(row.get(k)) for k in ("dart_warm", "sass_cli", "libsass")]
        lines.append(f"| {row['bundle']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
