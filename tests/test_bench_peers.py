"""bench/peers.py's own parts: process-tree CPU, the small app, the goals' ratios.

The benchmark itself is not run here (it installs Turborepo from npm and takes minutes);
what turns its processes into numbers is.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import Report
from bench.peers_report import goals, results_table
from bench.peers_tools import native_job, run_together, small_checkout, tree_cpu

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_tree_cpu_counts_a_grandchild_and_keeps_it_once_reaped() -> None:
    # a shell (the root) whose child burns 0.3 CPU-s, then the shell waits in sleep
    script = f"{sys.executable} -c '{BUSY}'; sleep 30"
    root = subprocess.Popen(["sh", "-c", script])
    try:
        before = tree_cpu([root.pid])
        time.sleep(1.0)  # the child has finished and been reaped by the shell
        spent = tree_cpu([root.pid]) - before
        assert 0.25 <= spent <= 1.0, spent
    finally:
        root.kill()
        root.wait()


def test_run_together_counts_every_jobs_cpu(tmp_path: Path) -> None:
    from bench.peers_tools import Job

    jobs = [Job([sys.executable, "-c", BUSY], tmp_path, {}) for _ in range(2)]
    batch = run_together(jobs)
    assert 0.55 <= batch.cpu <= 2.0, batch.cpu
    assert batch.wall >= 0.15


def test_the_small_app_compiles_with_the_shipped_sass(tmp_path: Path) -> None:
    checkout = small_checkout(tmp_path / "c", 3)
    run_together([native_job(checkout)])
    css = (checkout / "app" / "dist" / "main.css").read_text()
    assert ".card" in css and ".col-12" in css


def _samples(scssq: float, turbo: float, native: float) -> dict[str, dict[str, list[dict]]]:
    def one(value: float) -> dict[str, float]:
        keys = ("wall", "cpu", "client_cpu", "worker_cpu", "compiles")
        return dict.fromkeys(keys, value)

    scenarios = ("hit", "new_commit", "cold", "herd", "hits20", "small_herd")
    tools = {"scssq": scssq, "turbo": turbo, "native": native}
    return {s: {t: [one(v), one(v), one(v * 3)] for t, v in tools.items()} for s in scenarios}


def test_goals_are_ratios_of_medians() -> None:
    report = Report("peers", quick=True)
    goals(report, _samples(1.0, 2.0, 4.0), {"pairs": 8, "worker_cpu": 0.3, "native_cpu": 0.25})
    by_goal = {g.goal: (g.value, g.met) for g in report.goals}
    assert by_goal["worker CPU of one miss ÷ native CLI's compile"] == (1.2, True)
    assert by_goal["warm hit wall ÷ Turborepo's"] == (0.5, True)
    assert by_goal["20 concurrent hits wall ÷ Turborepo's"] == (0.5, True)
    assert by_goal["cold single job wall ÷ native CLI's"] == (0.25, True)
    assert by_goal["herd of 10 cold: total CPU ÷ native CLI's"] == (0.25, True)
    worker = {"pairs": 8, "worker_cpu": 0.31, "native_cpu": 0.25}
    report = Report("peers", quick=True)
    goals(report, _samples(3.0, 2.0, 1.0), worker)
    assert not any(g.met for g in report.goals)
    text = results_table(_samples(3.0, 2.0, 1.0), worker)
    assert "| 1.50 | 3.00 |" in text
    assert "worker side of one miss: CPU, mean of 8" in text and "| 1.24 |" in text
