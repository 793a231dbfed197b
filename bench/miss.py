"""Benchmark 3, miss latency: one submit end to end ÷ the engine's own time, same bundle.

``python -m bench.miss [--quick] [--runs 30] [--only bulma,foundation-sites] [--name miss]``

For each run a fresh variant of the bundle (a distinct ``$primary``, so a miss) is
compiled twice, in alternating order:

* **engine**: the engine alone, warm in this process, writing the CSS: libsass itself
  (``sass.compile(filename=...)``), or scssq's Dart Sass engine (the embedded compiler
  the workers run, started by the first run, which like every bundle's first two runs
  is a warm-up and not counted);
* **submit**: the client API, ``cli.client.submit()`` with a warm ``Client`` (a CI runner
  that already imported scssq) against an idle fleet of 2 workers (``--concurrency=1``):
  bundle, key, subscribe, enqueue, the worker's pipeline (unpack, lock, engine child,
  upload, complete), wake-up, download.

Workers unpack bundles into a tmpfs (``SCSSQ_WORK_DIR`` under ``/dev/shm``), as in
``deploy/``; ``SCSSQ_BENCH_WORK_DIR=disk`` measures the system temp folder instead.

A third column times the whole ``scssq submit`` process of the client installed as a
runner installs it (the wheel in a venv of its own; interpreter start and imports
included) on another fresh variant. The worker's own task line gives the split: engine
time in the worker's child process vs the rest of the pipeline.
Bootstrap 5.3.3 (the goal) and Bootstrap 4.6.2 with libsass; Bulma 1.0.2 and Foundation
6.8.1 (``@use ... with``, ``pkg:``) with Dart Sass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import bundles
from bench.common import Report, median_interval, ms, ratio, summary, table
from bench.fleet import BenchFleet, redis_server
from cli.client import submit
from compiler_tasks.engines.base import EngineRequest
from compiler_tasks.engines.dart.engine import DartSassEngine
from compiler_tasks.settings import Settings
from tests.support.client_install import client_venv


@dataclasses.dataclass(frozen=True)
class Case:
    """One bundle of the benchmark: a corpus package, its engine, and its variant builder."""

    name: str
    engine: str
    build: Callable[[Path, int], Path]

    @property
    def label(self) -> str:
        return f"{bundles.label(self.name)} ({self.engine})"


CASES = (
    Case("bootstrap", "libsass", lambda dest, i: bundles.bootstrap(dest, i, "bootstrap")),
    Case("bootstrap4", "libsass", lambda dest, i: bundles.bootstrap(dest, i, "bootstrap4")),
    Case("bulma", "dart-sass", bundles.bulma),
    Case("foundation-sites", "dart-sass", bundles.foundation),
)
#: Runs per bundle. One compile here varies by up to 30 % from one second to the next,
#: so a pair's ratio does too; with 30 pairs the p50's 95 % interval is about ±0.03-0.06.
RUNS = 30


def task_lines(fleet: BenchFleet) -> dict[str, dict[str, Any]]:
    """The workers' task lines (``{"event": "scssq.task", ...}``) of compiles, by key."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(fleet.tmp.glob("worker*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith('{"event": "scssq.task"'):
                rec = json.loads(line)
                if rec.get("outcome") == "compiled":
                    out[rec["key"]] = rec
    return out


class Engines:
    """The engines alone, warm in this process, on the files a submit sends."""

    def __init__(self) -> None:
        self._dart: DartSassEngine | None = None

    def compile(self, engine: str, src: Path, out: Path) -> None:
        if engine == "libsass":
            bundles.raw_compile(src, out)
            return
        if self._dart is None:  # started in the first run: a warm-up, not counted
            settings = dataclasses.replace(Settings.from_env(), compile_timeout=300.0)
            self._dart = DartSassEngine(settings)
        request = EngineRequest(src, bundles.ENTRY, style=bundles.STYLE)
        output = self._dart.compile(request, deadline=time.monotonic() + 300)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(output.css)

    def close(self) -> None:
        if self._dart is not None:
            self._dart.close()


def cli_submit(fleet: BenchFleet, client: Path, src: Path, out: Path, engine: str) -> float:
    """Wall time of one ``scssq submit`` process, from the venv ``client`` the client is
    installed in as a runner installs it."""
    cmd = bundles.submit_argv(client / "bin" / "scssq", bundles.commit(), src, out)
    cmd += ["--engine", engine]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, env={**os.environ, **fleet.env}, capture_output=True, text=True, timeout=300
    )
    took = time.perf_counter() - started
    if proc.returncode != 0 or not proc.stdout.startswith("compiled"):
        raise RuntimeError(f"scssq submit failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return took


def measure(
    fleet: BenchFleet, engines: Engines, case: Case, runs: int, tmp: Path, client_env: Path
) -> dict[str, Any]:
    client = fleet.client()
    samples: list[dict[str, Any]] = []
    for i in range(runs + 2):  # the first two warm both workers' engine processes
        src = case.build(tmp / f"{case.name}-{i}", 1000 + i)
        cli_src = case.build(tmp / f"{case.name}-{i}-cli", 5000 + i)
        out = tmp / "out" / f"{case.name}-{i}"
        config = bundles.config(src, out, engine=case.engine)
        fleet.wait_idle()
        sample: dict[str, Any] = {}
        for step in ("engine", "submit") if i % 2 == 0 else ("submit", "engine"):
            started = time.perf_counter()
            if step == "engine":
                engines.compile(case.engine, src, out / "raw.css")
            else:
                res = submit(client, config, bundles.commit(), timeout=300)
                if res.outcome != "compiled":
                    raise RuntimeError(f"expected a miss, got {res.outcome}")
                sample["key"] = res.key
            sample[step] = time.perf_counter() - started
        fleet.wait_idle()
        sample["cli"] = cli_submit(fleet, client_env, cli_src, out / "cli", case.engine)
        if i >= 2:
            samples.append(sample)
    client.close()
    lines = task_lines(fleet)
    for s in samples:
        line = lines.get(s.pop("key"), {})
        s["worker_engine"] = line.get("compile_s")
        s["worker_task"] = line.get("total_s")
    ratios = [s["submit"] / s["engine"] for s in samples]
    cli_ratios = [s["cli"] / s["engine"] for s in samples]
    return {
        "ratio_p50_interval": median_interval(ratios),
        "bundle": case.label,
        "compiler": case.engine,
        "samples": samples,
        "engine": summary([s["engine"] for s in samples]),
        "submit": summary([s["submit"] for s in samples]),
        "cli": summary([s["cli"] for s in samples]),
        "worker_engine": summary([s["worker_engine"] for s in samples if s["worker_engine"]]),
        "worker_task": summary([s["worker_task"] for s in samples if s["worker_task"]]),
        "ratio": summary(ratios),
        "cli_ratio": summary(cli_ratios),
    }


def _interval(row: dict[str, Any]) -> str:
    low, high = row["ratio_p50_interval"]
    return "too few runs" if math.isnan(low) else f"{low:.2f} to {high:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 runs per bundle")
    parser.add_argument("--runs", type=int, default=None, help=f"runs per bundle (default {RUNS})")
    parser.add_argument(
        "--only", default=None, help="comma-separated corpus names (default: every bundle)"
    )
    parser.add_argument(
        "--name", default=None, help="results name (default miss; miss-only with --only)"
    )
    args = parser.parse_args()
    runs = args.runs or (4 if args.quick else RUNS)
    cases = list(CASES)
    if args.only is not None:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {c.name for c in CASES}
        if unknown or not wanted:
            what = f"{', '.join(sorted(unknown))} is not a bundle here" if unknown else "no name"
            names = ", ".join(c.name for c in CASES)
            parser.error(f"--only {args.only!r}: {what}; choose from {names}")
        cases = [c for c in CASES if c.name in wanted]
    report = Report(
        # a partial run must not stand in for the suite's (bench.report reads the newest)
        args.name or ("miss" if args.only is None else "miss-only"),
        args.quick,
        params={
            "runs": runs,
            "bundles": [c.label for c in cases],
            "fleet": "2 celery workers x --concurrency=1, local store, idle between runs",
            "client": "cli.client.submit() with a warm Client; `scssq submit` process",
        },
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="scssq-bench-miss-") as tmp_dir, redis_server() as rs:
        tmp = Path(tmp_dir)
        client_env = client_venv(tmp / "client")
        with BenchFleet(tmp / "fleet", redis=rs, workers=2, concurrency=1) as fleet:
            fleet.export()
            import compiler_tasks.app  # noqa: F401  (a warm client: Celery imported once)

            engines = Engines()
            try:
                for case in cases:
                    rows.append(measure(fleet, engines, case, runs, tmp, client_env))
                    r = rows[-1]
                    print(
                        f"{r['bundle']}: p50 submit {ms(r['submit']['p50'])} "
                        f"engine {ms(r['engine']['p50'])} ratio {r['ratio']['p50']:.2f}",
                        flush=True,
                    )
            finally:
                engines.close()
    report.data = {"rows": rows}
    if cases[0] is CASES[0]:  # the goal: Bootstrap 5 with libsass
        main_row = rows[0]
        report.goal(
            f"miss: submit ÷ engine, p50 ({bundles.label(CASES[0].name)})",
            main_row["ratio"]["p50"],
            1.10,
            note=f"95 % interval of the p50 {_interval(main_row)}; "
            f"p99 {main_row['ratio']['p99']:.2f}; "
            f"scssq process p50 {main_row['cli_ratio']['p50']:.2f}",
        )
    body = [
        (
            r["bundle"],
            ms(r["engine"]["p50"]),
            ms(r["worker_engine"]["p50"]),
            ms(r["worker_task"]["p50"]),
            ms(r["submit"]["p50"]),
            ms(r["submit"]["p99"]),
            f"**{ratio(r['ratio']['p50'])}** ({_interval(r)}) / {ratio(r['ratio']['p99'])}",
            ms(r["cli"]["p50"]),
            f"{ratio(r['cli_ratio']['p50'])} / {ratio(r['cli_ratio']['p99'])}",
        )
        for r in rows
    ]
    text = "### Miss latency\n\n" + table(
        [
            "bundle",
            "engine p50",
            "engine in worker p50",
            "worker task p50",
            "submit p50",
            "submit p99",
            "submit ÷ engine p50 (95 % interval) / p99",
            "`scssq submit` p50",
            "process ÷ engine p50 / p99",
        ],
        body,
    )
    report.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
