"""The table, the goals and the client's time split of :mod:`bench.peers`."""

from __future__ import annotations

import math
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Report, median, table
from bench.fleet import BenchFleet
from bench.hit import import_buckets
from bench.miss import task_lines
from bench.peers_tools import clean, scssq_job

#: The import bucket that ``python -c pass`` pays too.
STARTUP = "interpreter start-up (site, encodings, …)"
Samples = dict[str, dict[str, list[dict[str, Any]]]]


def _med(samples: Samples, scenario: str, tool: str, key: str) -> float:
    return median([s[key] for s in samples[scenario][tool]])


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if unit == "n" else f"{value:.2f} {unit}"


#: (row label, scenario, sample key, unit)
ROWS = (
    ("one job, warm cache hit: wall", "hit", "wall", "s"),
    ("one job, new commit with unchanged styles: wall", "new_commit", "wall", "s"),
    ("one job, cold (miss): wall", "cold", "wall", "s"),
    ("one job, warm cache hit: CPU of all processes", "hit", "cpu", "CPU-s"),
    ("one job, cold (miss): CPU of all processes", "cold", "cpu", "CPU-s"),
    ("10 cold jobs together: sass compiles", "herd", "compiles", "n"),
    ("10 cold jobs together: total CPU, all processes", "herd", "cpu", "CPU-s"),
    ("10 cold jobs together: CPU of the job processes alone", "herd", "client_cpu", "CPU-s"),
    ("10 cold jobs together: wall to the last job", "herd", "wall", "s"),
    ("20 concurrent hits: wall", "hits20", "wall", "s"),
    ("small app (3 partials), 10 cold jobs: total CPU", "small_herd", "cpu", "CPU-s"),
)


def results_table(samples: Samples, worker_side: dict[str, float]) -> str:
    rows = []
    for label, scenario, key, unit in ROWS:
        s, t, n = (_med(samples, scenario, tool, key) for tool in ("scssq", "turbo", "native"))
        ratios = ("-", "-") if unit == "n" else (f"{_div(s, t):.2f}", f"{_div(s, n):.2f}")
        rows.append((label, _fmt(s, unit), _fmt(t, unit), _fmt(n, unit), *ratios))
    worker, native = worker_side["worker_cpu"], worker_side["native_cpu"]
    rows.append(
        (
            f"worker side of one miss: CPU, mean of {worker_side['pairs']:.0f} "
            "(native: the compile itself)",
            _fmt(worker, "CPU-s"),
            "-",
            _fmt(native, "CPU-s"),
            "-",
            f"{_div(worker, native):.2f}",
        )
    )
    header = ["scenario (medians)", "scssq", "Turborepo", "native `sass`", "÷ Turbo", "÷ native"]
    return table(header, rows)


def goals(report: Report, samples: Samples, worker_side: dict[str, float]) -> None:
    def ratio(scenario: str, key: str, peer: str, peer_key: str | None = None) -> float:
        mine = _med(samples, scenario, "scssq", key)
        return _div(mine, _med(samples, scenario, peer, peer_key or key))

    report.goal("warm hit wall ÷ Turborepo's", ratio("hit", "wall", "turbo"), 1.0)
    report.goal("cold single job wall ÷ native CLI's", ratio("cold", "wall", "native"), 1.2)
    report.goal("herd of 10 cold: total CPU ÷ native CLI's", ratio("herd", "cpu", "native"), 0.4)
    report.goal("herd of 10 cold: wall ÷ native CLI's", ratio("herd", "wall", "native"), 1.0)
    report.goal("20 concurrent hits wall ÷ Turborepo's", ratio("hits20", "wall", "turbo"), 0.5)
    report.goal("small-app herd total CPU ÷ Turborepo's", ratio("small_herd", "cpu", "turbo"), 0.5)
    report.goal(
        "worker CPU of one miss ÷ native CLI's compile",
        _div(worker_side["worker_cpu"], worker_side["native_cpu"]),
        1.2,
    )


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stdout}{proc.stderr[-3000:]}")
    return took, proc.stderr


def client_split(
    client: Path, checkout: Path, fleet: BenchFleet, commit: str, miss: Callable[[], Path]
) -> dict[str, Any]:
    """Where a ``scssq submit`` process's wall time goes, on a hit and on a miss (and, for
    the miss, the worker's task line: the whole task and its compile); ``client`` is the
    venv the client is installed in."""
    python, scssq = [str(client / "bin" / "python")], str(client / "bin" / "scssq")
    start = min(_run([*python, "-c", "pass"], checkout, fleet.env)[0] for _ in range(5))
    split: dict[str, Any] = {"interpreter_start": start}
    for kind in ("hit", "miss"):
        where = checkout if kind == "hit" else miss()
        clean(where)
        job = scssq_job(scssq, where, commit if kind == "hit" else secrets.token_hex(20), fleet.env)
        tasks = task_lines(fleet)
        wall, stderr = _run([*python, "-X", "importtime", scssq, *job.argv[1:]], job.cwd, job.env)
        split[kind] = {"wall": wall, "imports": import_buckets(stderr)}
        fleet.wait_idle(settle=0.3)
        new = [rec for key, rec in task_lines(fleet).items() if key not in tasks]
        if new:
            split[kind]["task_s"] = new[0].get("total_s")
            split[kind]["compile_s"] = new[0].get("compile_s")
    return split


def split_line(split: dict[str, Any]) -> str:
    parts = []
    start = split["interpreter_start"]
    for kind in ("hit", "miss"):
        s = split[kind]
        groups = dict(s["imports"])
        total = groups.pop("all imports", 0.0)
        total -= groups.pop(STARTUP, 0.0)  # in `python -c pass` already
        rest = s["wall"] - start - total
        top = sorted(groups.items(), key=lambda kv: -kv[1])
        named = ", ".join(f"{k} {v * 1000:.0f}" for k, v in top if v >= 0.001)
        text = (
            f"**{kind}** {s['wall'] * 1000:.0f} ms = `python -c pass` {start * 1000:.0f}"
            f" + imports {total * 1000:.0f} ({named}) + the rest {rest * 1000:.0f}"
        )
        if s.get("task_s") is not None:
            text += (
                f", of which the worker's task {s['task_s'] * 1000:.0f}"
                f" (its compile {(s.get('compile_s') or 0) * 1000:.0f})"
            )
        parts.append(text)
    return "; ".join(parts) + " (ms, one process each under `-X importtime`)."


def render(report: Report, samples: Samples) -> str:
    goals(report, samples, report.data["worker_side"])
    text = results_table(samples, report.data["worker_side"])
    if "client" in report.data:
        text += "\n\nWhere a `scssq submit` process's time goes: "
        text += split_line(report.data["client"])
    return text
