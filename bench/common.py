"""Shared helpers of the benchmarks: statistics, Markdown tables, machine facts, results.

Every benchmark writes one JSON document to ``bench/results/<name>-<time>.json``
(ignored by git) with the same top-level shape, so :mod:`bench.figures` and
:mod:`bench.report` can read any of them::

    {"benchmark": "herd", "started": "...", "seconds": 123.4, "quick": false,
     "machine": {...}, "load": {"before": [...], "after": [...]},
     "params": {...}, "data": {...}, "goals": [{"goal": ..., "value": ..., "limit": ...,
     "met": true, "note": ...}]}
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN when empty."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (pos - low))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def median_interval(
    values: Sequence[float], level: float = 0.95, resamples: int = 4000
) -> tuple[float, float]:
    """A bootstrap ``level`` confidence interval of the median of ``values``.

    How far a p50 of a few dozen noisy samples may be from the machine's true median:
    the spread of medians of ``resamples`` resamplings (fixed seed: the same values give
    the same interval). NaN below 10 values, where a resampled median cannot reach 95 %
    coverage (with 4, even the minimum to the maximum covers only 87.5 %).
    """
    if len(values) < 10:
        return math.nan, math.nan
    import random

    rng = random.Random(0)
    data = list(values)
    medians = sorted(statistics.median(rng.choices(data, k=len(data))) for _ in range(resamples))
    tail = (1 - level) / 2
    return percentile(medians, 100 * tail), percentile(medians, 100 * (1 - tail))


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, min, max and count of ``values``."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds, with a precision that suits the size."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    value = seconds * 1000
    if value < 10:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:.0f} ms"


def ratio(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` holds one of ``l``/``r`` per column (default: right
    except the first)."""
    header = list(header)
    align = align or "l" + "r" * (len(header) - 1)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return math.nan


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.split()[2]
    except (OSError, IndexError, subprocess.SubprocessError):
        redis_version = "?"
    import sass

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "ram_gib": ram_gib(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "redis": redis_version.removeprefix("v="),
        "libsass": f"libsass-python {sass.__version__} / libsass {sass.libsass_version}",
        "worker_work_dir": f"tmpfs ({TMPFS})" if work_on_tmpfs() else "disk",
    }


#: Where bench workers unpack bundles: a tmpfs, as deploy/'s workers do.
TMPFS = "/dev/shm"


def work_on_tmpfs() -> bool:
    """Whether bench workers get a tmpfs SCSSQ_WORK_DIR (``SCSSQ_BENCH_WORK_DIR=disk``: no)."""
    return os.environ.get("SCSSQ_BENCH_WORK_DIR") != "disk" and os.path.isdir(TMPFS)


@dataclass
class Goal:
    """One goal of the issue, checked against a measured value."""

    goal: str
    value: float
    limit: float
    met: bool
    note: str = ""


@dataclass
class Report:
    """The results document of one benchmark run; :meth:`write` saves it."""

    benchmark: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def goal(
        self,
        goal: str,
        value: float,
        limit: float,
        *,
        at_most: bool = True,
        exactly: bool = False,
        note: str = "",
    ) -> None:
        """Record a goal: met when ``value`` is at most ``limit`` (at least, with
        ``at_most=False``; equal to it, with ``exactly``); a NaN value is never met."""
        if exactly:
            met = value == limit
        elif at_most:
            met = value <= limit
        else:
            met = value >= limit
        self.goals.append(Goal(goal, value, limit, bool(met and not math.isnan(value)), note))

    def write(self, text: str, results: Path = RESULTS) -> Path:
        """Save the JSON (the tables in it) in ``results``; print the tables and the goals."""
        results.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
        path = results / f"{self.benchmark}-{stamp}.json"
        doc: dict[str, Any] = {
            "benchmark": self.benchmark,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "quick": self.quick,
            "machine": machine(),
            "load": {
                "before": [round(x, 2) for x in self.load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "params": self.params,
            "data": self.data,
            "goals": [g.__dict__ for g in self.goals],
            "tables": text,
        }
        path.write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
        print(text)
        if self.goals:
            print()
            print(goals_table([g.__dict__ for g in self.goals]))
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"\nwritten {shown} (load average {doc['load']})")
        return path


def goals_table(goals: list[dict[str, Any]]) -> str:
    rows = [
        (
            g["goal"],
            _num(g["value"]),
            _num(g["limit"]),
            "met" if g["met"] else "**missed**",
            g.get("note", ""),
        )
        for g in goals
    ]
    return table(["goal", "measured", "limit", "", "note"], rows, "lrrll")


def _num(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def latest(benchmark: str) -> dict[str, Any] | None:
    """The newest results document of ``benchmark``, or None."""
    paths = sorted(RESULTS.glob(f"{benchmark}-[0-9]*-[0-9]*.json"))
    return json.loads(paths[-1].read_text()) if paths else None


def wait_for_quiet(max_load: float, timeout: float) -> float:
    """Sleep until the 1-minute load average is at most ``max_load`` (or ``timeout`` s pass);
    returns the load average then."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]
