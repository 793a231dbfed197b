"""The benchmarks' own arithmetic: what turns samples into the docs' numbers and verdicts.

The benchmarks are not run here (they take about an hour, see docs/benchmarks.md),
but every number they report goes through these functions: percentiles, the median's
interval, goal verdicts, the herd's per-waiter counts read from ``MONITOR`` (checked
against a real redis-server) and the import-time buckets (checked on a real
``python -X importtime``). A mistake in any of them would print a wrong ratio or a
wrong "met".
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import bundles, dart_heap, herd_stats, memory, miss
from bench.common import Report, goals_table, median_interval, percentile, summary
from bench.hit import import_buckets
from bench.monitor import Command, Recorder, by_name, kinds, publish_time, script_publish
from compiler_tasks.engines.dart.compiler import VM_FLAGS
from tests.support.redis_server import RedisServer

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


# -- statistics -------------------------------------------------------------------------


@given(st.lists(FINITE, min_size=2, max_size=60))
def test_percentile_is_the_inclusive_quantile(values: list[float]) -> None:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 25, 50, 90, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-6)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


def test_percentile_of_nothing_or_one_value() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([3.5], 99) == 3.5
    assert summary([])["n"] == 0 and math.isnan(summary([])["p99"])
    assert summary([4.0, 1.0, 2.0, 3.0]) == {
        "n": 4,
        "p50": 2.5,
        "p90": pytest.approx(3.7),
        "p99": pytest.approx(3.97),
        "min": 1.0,
        "max": 4.0,
    }


def test_median_interval_needs_ten_values() -> None:
    low, high = median_interval([1.0] * 9)
    assert math.isnan(low) and math.isnan(high)
    assert median_interval([1.0] * 10) == (1.0, 1.0)


@given(st.lists(FINITE, min_size=10, max_size=40))
def test_median_interval_holds_the_median_and_repeats(values: list[float]) -> None:
    low, high = median_interval(values, resamples=300)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)
    assert median_interval(values, resamples=300) == (low, high)


def test_median_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    """30 runs of a skewed distribution (like compile times), 200 times over."""
    rng = random.Random(7)
    true_median = math.exp(0.0)  # lognormal(0, 0.3)
    hits = 0
    for _ in range(200):
        sample = [rng.lognormvariate(0.0, 0.3) for _ in range(30)]
        low, high = median_interval(sample, resamples=500)
        hits += low <= true_median <= high
    assert 0.88 <= hits / 200 <= 0.995


# -- goals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "limit", "kwargs", "met"),
    [
        (1.07, 1.10, {}, True),
        (1.10, 1.10, {}, True),
        (1.11, 1.10, {}, False),
        (0.98, 0.90, {"at_most": False}, True),
        (0.89, 0.90, {"at_most": False}, False),
        (1, 1, {"exactly": True}, True),
        (0, 1, {"exactly": True}, False),
        (2, 1, {"exactly": True}, False),
        (math.nan, 3, {}, False),
        (math.nan, 0.9, {"at_most": False}, False),
    ],
)
def test_goal_verdicts(value: float, limit: float, kwargs: dict[str, Any], met: bool) -> None:
    report = Report("unit", quick=True)
    report.goal("g", value, limit, **kwargs)
    assert report.goals[0].met is met


def test_goals_table_marks_misses() -> None:
    report = Report("unit", quick=True)
    report.goal("miss p50", 1.07, 1.1, note="1.05-1.10")
    report.goal("api local", 3.01, 3)
    report.goal("compiles", 1, 1, exactly=True)
    text = goals_table([g.__dict__ for g in report.goals])
    assert "| miss p50 | 1.07 | 1.10 | met | 1.05-1.10 |" in text
    assert "| api local | 3.01 | 3 | **missed** |" in text
    assert "| compiles | 1 | 1 | met |" in text


# -- counting commands with MONITOR on a real redis-server ------------------------------


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A server of its own: MONITOR must see only this module's commands."""
    server = RedisServer()
    yield server
    server.stop()


def test_monitor_counts_each_named_connection_and_the_scripts_publish(
    private_redis: RedisServer,
) -> None:
    recorder = Recorder(private_redis.url).start()
    first = private_redis.client(client_name="h1-a")
    second = private_redis.client(client_name="h1-b")
    other = private_redis.client(client_name="someone-else")
    first.set("k", "1")
    first.get("k")
    second.get("k")
    other.get("k")
    before = time.time()
    first.eval("return redis.call('PUBLISH', KEYS[1], 'done')", 1, "h1:done")
    other.publish("raw:done", "x")
    after = time.time()
    for conn in (first, second, other):
        conn.close()
    commands = recorder.stop()

    per_waiter = by_name(commands, "h1-")
    assert sorted(per_waiter) == ["h1-a", "h1-b"]
    work = {name: [c for c in cmds if c.args[0] != "CLIENT"] for name, cmds in per_waiter.items()}
    assert [c.args[:2] for c in work["h1-a"]] == [
        ["SET", "k"],
        ["GET", "k"],
        ["EVAL", "return redis.call('PUBLISH', KEYS[1], 'done')"],
    ]
    assert [c.args[:2] for c in work["h1-b"]] == [["GET", "k"]]
    assert kinds(per_waiter["h1-b"])["CLIENT"] >= 1  # its SETNAME counts for it
    published = script_publish(commands, "h1:done")
    assert published is not None and before - 0.01 <= published <= after + 0.01
    assert script_publish(commands, "raw:done") is None  # not from a script
    raw = publish_time(commands, "raw:done")
    assert raw is not None and published <= raw <= after + 0.01


def test_a_reused_address_starts_unnamed() -> None:
    """A connection that closed and whose port a new one reused keeps no name."""

    def cmd(t: float, addr: str, *args: str) -> Command:
        return Command(t, addr, list(args))

    commands = [
        cmd(1.0, "127.0.0.1:5000", "CLIENT", "SETNAME", "h1-a"),
        cmd(1.1, "127.0.0.1:5000", "GET", "k"),
        cmd(2.0, "127.0.0.1:5000", "HELLO", "3"),  # a new connection on that port
        cmd(2.1, "127.0.0.1:5000", "GET", "k"),
        cmd(3.0, "127.0.0.1:5001", "CLIENT", "SETNAME", "h1-b"),
        cmd(3.1, "127.0.0.1:5001", "CLIENT", "SETNAME", "renamed"),
        cmd(3.2, "127.0.0.1:5001", "GET", "k"),
    ]
    assert {name: len(cmds) for name, cmds in by_name(commands, "h1-").items()} == {
        "h1-a": 2,
        "h1-b": 1,
    }


# -- the herd's numbers -----------------------------------------------------------------


def _waiter(name: str, wait: float | None, wake: float | None, **extra: Any) -> dict[str, Any]:
    record = {"name": name, "start": 100.0, "done": (wake or 100.0) + 0.01, **extra}
    if wait is not None:
        record["wait"] = wait
    if wake is not None:
        record["wake"] = wake
    return record


def test_round_measures_wake_ups_late_arrivals_and_commands() -> None:
    completed = 102.0
    records = [
        _waiter("t-0", 100.5, 102.003, outcome="compiled"),
        _waiter("t-1", 100.6, 102.001, outcome="waited"),
        _waiter("t-2", 102.5, 102.5, outcome="waited"),  # reached its wait after completion
        _waiter("t-3", None, None, error="TimeoutError: no result"),
    ]
    commands = [Command(100.1, "a0", ["CLIENT", "SETNAME", "t-0"])]
    commands += [Command(100.2, "a0", ["GET", "r"]), Command(101.0, "a0", ["GET", "r"])]
    commands += [Command(100.1, "a1", ["CLIENT", "SETNAME", "t-1"])]
    commands += [Command(102.1, "a1", ["INCR", "s"]), Command(102.2, "a0", ["INCR", "s"])]
    measured = herd_stats.round_measures(records, commands, completed, 100.0, "t")

    assert measured["wakes"] == [pytest.approx(0.003), pytest.approx(0.001)]
    assert measured["late_arrivals"] == 1
    assert measured["wait_s"] == pytest.approx(2.0)
    assert measured["error_count"] == 1
    assert measured["outcomes"] == {"compiled": 1, "waited": 2}
    assert measured["commands"]["max"] == 4 and measured["commands"]["min"] == 0
    # t-0's GET at 101.0 was sent while it waited (100.5-102.003); its INCR after, and
    # t-1 sent nothing then
    assert measured["commands_during_wait"]["max"] == 1
    assert measured["commands_during_wait"]["min"] == 0
    assert measured["command_kinds"] == {"CLIENT": 2, "GET": 2, "INCR": 2}
    assert measured["last_css_after_completion_s"] == pytest.approx(0.51)


def _round(variant: str, n: int, wait: float, wakes: list[float], **over: Any) -> dict[str, Any]:
    round_ = {
        "variant": variant,
        "n": n,
        "target_wait_s": wait,
        "wait_s": wait,
        "compiles": 1,
        "error_count": 0,
        "last_css_s": wait + 0.1,
        "last_css_after_completion_s": 0.1,
        "late_arrivals": 0,
        "wakes": wakes,
        "commands": {"p50": 11, "max": 11},
        "commands_during_wait": {"n": n, "max": 0},
        "tasks_sent": 1,
    }
    return {**round_, **over}


def test_rows_pool_the_wake_ups_of_every_repetition() -> None:
    rounds = [
        _round("raw", 10, 1.0, [0.001] * 10),
        _round("scssq", 10, 1.0, [0.001] * 9 + [0.005]),
        _round("scssq", 10, 1.0, [0.001] * 10, commands={"p50": 11, "max": 12}),
    ]
    rows = herd_stats.rows(rounds)
    assert [r["variant"] for r in rows] == ["scssq", "raw"]  # VARIANTS' order
    scssq = rows[0]
    assert scssq["reps"] == 2
    assert scssq["wake_p99"] == pytest.approx(percentile([0.001] * 19 + [0.005], 99))
    assert scssq["commands_max"] == 12
    assert "| 10 | 1.0 s | raw floor |" in herd_stats.tables(rows)


def _verdicts(rounds: list[dict[str, Any]], sizes: list[int]) -> dict[str, bool]:
    report = Report("unit", quick=True)
    herd_stats.goals(report, herd_stats.rows(rounds), sizes, "herd")
    return {g.goal: g.met for g in report.goals}


COMPILES = "herd: compiles per key (every N, every wait)"
COMMANDS = "herd N=10: commands per waiter, |longest wait - shortest| (max)"


def test_herd_goals() -> None:
    fast, slow = [0.001] * 10, [0.0013] * 10
    met = _verdicts(
        [
            _round("scssq", 10, 1.0, fast),
            _round("raw", 10, 1.0, fast),
            _round("scssq", 10, 5.0, slow, commands={"p50": 11, "max": 11}),
            _round("raw", 10, 5.0, fast),
        ],
        [10],
    )
    assert met == {
        COMPILES: True,
        "herd N=10, wait 1.0 s: p99 wake-up ÷ raw floor p99": True,
        "herd N=10, wait 5.0 s: p99 wake-up ÷ raw floor p99": False,  # 1.3 x the floor
        COMMANDS: True,
    }
    # no compile at all, or two, misses, in any repetition; so does a wait whose commands
    # differ either way
    for compiles in (0, 2):
        rounds = [_round("scssq", 10, 1.0, fast, compiles=compiles), _round("raw", 10, 1.0, fast)]
        assert _verdicts(rounds, [10])[COMPILES] is False
        rounds.append(_round("scssq", 10, 1.0, fast))  # another repetition: one compile
        assert _verdicts(rounds, [10])[COMPILES] is False
    fewer = [
        _round("scssq", 10, 1.0, fast, commands={"p50": 12, "max": 12}),
        _round("scssq", 10, 5.0, fast),
    ]
    assert _verdicts(fewer, [10])[COMMANDS] is False


# -- where a hit process's start-up goes --------------------------------------------------

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:        50 |         50 |     selectors
import time:       300 |        350 |   asyncio
import time:       100 |        450 | redis
import time:        20 |         20 |   json.decoder
import time:        40 |         60 | json
import time:        70 |         70 |   hashlib
import time:        30 |        100 | compiler_tasks.keys
"""


def test_import_buckets_charge_each_module_to_the_package_that_imported_it() -> None:
    buckets = import_buckets(IMPORTTIME)
    assert buckets["redis-py (with asyncio, which it imports)"] == pytest.approx(450e-6)
    assert buckets["scssq (cli, compiler_tasks)"] == pytest.approx(100e-6)
    assert buckets["interpreter start-up (site, encodings, …)"] == pytest.approx(60e-6)
    assert buckets["all imports"] == pytest.approx(610e-6)


def test_import_buckets_on_a_real_interpreter() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import redis"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    buckets = import_buckets(proc.stderr)
    own: dict[str, float] = {}  # each top-level package's own import time, in seconds
    for line in proc.stderr.splitlines()[1:]:
        micros, _cumulative, name = line.removeprefix("import time:").split("|")
        top = name.strip().split(".")[0]
        own[top] = own.get(top, 0.0) + int(micros) / 1e6
    assert own["asyncio"] > 0  # redis-py imports asyncio, and asyncio is charged to it
    redis_py = buckets["redis-py (with asyncio, which it imports)"]
    assert redis_py >= own["redis"] + own["asyncio"] - 1e-9
    assert buckets["all imports"] == pytest.approx(sum(own.values()))


# -- the miss benchmark's framework variants ----------------------------------------------


@pytest.mark.parametrize(
    "case", [c for c in miss.CASES if c.engine == "dart-sass"], ids=lambda c: c.name
)
def test_dart_sass_variants_compile_to_different_css(case: miss.Case, tmp_path: Path) -> None:
    """Each run of bench.miss compiles a variant of its own (a miss), and the variant is
    real: its colour reaches the CSS, through ``@use ... with`` and, for Foundation,
    ``pkg:``."""
    engines = miss.Engines()
    try:
        css = []
        for i in (1, 2):
            src = case.build(tmp_path / f"v{i}", i)
            engines.compile(case.engine, src, tmp_path / f"v{i}.css")
            css.append((tmp_path / f"v{i}.css").read_bytes())
    finally:
        engines.close()
    assert len(css[0]) > 100_000 and css[0] != css[1]
    if case.name == "foundation-sites":  # (Bulma turns the colour into hsl() parts)
        assert bundles.primary(1).encode() in css[0]


# -- memory growth ----------------------------------------------------------------------


def _rss(compiles: int, engine_kib: int, pid: int = 7) -> dict[str, Any]:
    return {
        "compiles": compiles,
        "worker": {"pid": 1, "rss_kib": 1000},
        "pool": {"pid": 2, "rss_kib": 2000},
        "dart-sass": {"pid": pid, "rss_kib": engine_kib},
    }


def test_memory_growth_from_the_warm_up_and_after_the_first_100() -> None:
    samples = [_rss(0, 1000), _rss(50, 1250), _rss(100, 1250), _rss(500, 1300, pid=8)]
    engine = memory._rows("dart-sass", samples)[2]
    assert engine["growth"] == pytest.approx(0.30)
    assert engine["growth_after_settled"] == pytest.approx(0.04)
    assert engine["same_pid"] is False  # a replaced process is flagged
    # a run that ends at 100 compiles has no growth after them
    assert memory._rows("dart-sass", samples[:3])[2]["growth_after_settled"] is None


# -- the Dart VM heap diagnostic ----------------------------------------------------------


def test_dart_heap_runs_the_compiler_with_each_settings_vm_flags(tmp_path: Path) -> None:
    sheet = bundles.small_modules(tmp_path / "sheet", 3)
    for flags in dart_heap.SETTINGS:
        engine = dart_heap._engine(flags, tmp_path)
        try:
            rss = dart_heap.small_sheets(engine, [sheet] * (dart_heap.WARMUP + 51))
            command = Path(f"/proc/{engine.pid}/cmdline").read_bytes().split(b"\0")
        finally:
            engine.close()
        assert flags.encode() in command if flags else b"--embedded" in command
        # dart FLAGS VM_FLAGS snapshot --embedded
        assert command.index(b"--embedded") == 1 + len(flags.split()) + len(VM_FLAGS) + 1
        assert list(rss) == ["first", "warm", "settled", "after"]
        assert all(5 < mib < 500 for mib in rss.values())


def test_dart_heap_table_reads_growth_from_the_warm_up_and_from_settled() -> None:
    row = {
        "flags": "--new_gen_semi_max_size=4",
        "rss": {"first": 10.0, "warm": 16.0, "settled": 20.0, "after": 21.0},
        "frameworks": {"median_ms": {"bulma": 612.4}, "rss_after_mib": 30.0, "peak_mib": 80.4},
    }
    text = dart_heap.tables([row, {**row, "flags": ""}], 500)
    lines = text.splitlines()
    assert "RSS after 1 → 20 → 70 → 520 small" in lines[2]
    assert lines[4].split(" | ")[1:] == [
        "10.0 → 16.0 → 20.0 → 21.0 MiB",
        "+31.2 %",
        "+5.0 %",
        "612 ms",
        "30.0 MiB (80) |",
    ]
    assert lines[4].startswith("| `--new_gen_semi_max_size=4` |")
    assert lines[5].startswith("| none (as shipped) |")
