"""bench/capacity.py's figures, and a CI fleet sized from them.

``python -m bench.capacity_model [RESULTS.json]`` prints the tables again from a run's
results (the newest ``capacity-*.json`` by default), e.g. after the model changed.

:func:`figures` reduces a run's samples to medians and ranges (min to max over
repetitions). :func:`model` sizes fleets of :data:`JOBS` CI jobs per minute at
:data:`HIT_RATE`, every job a new commit (a hit maps it with a ``scssq.record``
task), one entry per job, on an S3 store, with the Bootstrap 5.3.3 miss as the
compile. Redis CPU comes as a range: each command at what a replayed hit costs per
command (a busy Redis), and as measured one submit at a time (an idle Redis, which
pays a wake-up per request). What it takes from elsewhere than the run is in
:data:`ESTIMATES`, labelled.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.common import latest, table

JOBS = (1_000, 10_000, 100_000)
HIT_RATE = 0.9
MONTH_S = 30 * 24 * 3600
#: Not measured here: prices and documented limits (labelled **estimate** in the docs).
ESTIMATES = {
    "s3_get_per_1000_usd": 0.0004,  # S3 Standard GET, us-east-1 list price
    "s3_put_per_1000_usd": 0.005,  # S3 Standard PUT/LIST
    "s3_gb_month_usd": 0.023,  # S3 Standard storage, first 50 TB
    "s3_prefix_get_per_s": 5500,  # AWS docs: per partitioned prefix
    "s3_prefix_put_per_s": 3500,
    "result_ttl_days": 7,  # SCSSQ_RESULT_TTL's default; commit mappings live as long
    "short_ttl_days": 1,  # SCSSQ_RESULT_TTL=86400, the first lever on memory
    "worker_utilisation": 0.7,  # target busy share of a worker's core
}


def _med(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _span(values: list[float]) -> tuple[float, float, float]:
    return (_med(values), min(values), max(values)) if values else (math.nan,) * 3


def _kind(account: dict[str, Any], kind: str, field: str) -> float:
    return _med([s[field] for s in account.get(kind, [])])


def _s3(account: dict[str, Any], kind: str, op: str) -> float:
    return _med([s["s3"].get(op, 0.0) for s in account.get(kind, [])])


def figures(data: dict[str, Any]) -> dict[str, Any]:
    """The measured figures the docs quote: medians, with (median, min, max) spans."""
    hits = data["hits"]["samples"]
    bench = data["redis_benchmark"]
    out: dict[str, Any] = {
        "hits_per_s": {
            n: _span([s["per_s"] for s in hits if s["loops"] == n])
            for n in sorted({s["loops"] for s in hits})
        },
        "hit_client_cpu": _med([s["client_cpu"] for s in hits]),
        "hit_wall_p50": _med([s["wall_p50"] for s in hits]),
        "hit_redis_cpu_us": _span([s["redis_cpu_us"] for s in hits]),
        "replay_per_s": _span([r["per_s"] for r in data["hits"]["replays"]]),
        "replay_redis_cpu_us": _span([r["redis_cpu_us"] for r in data["hits"]["replays"]]),
        "get_us": _span([b["redis_cpu_us"] for b in bench if not b["reconnect"]]),
        "get_reconnect_us": _span([b["redis_cpu_us"] for b in bench if b["reconnect"]]),
        "misses": {},
    }
    for sheet, samples in data["misses"].items():
        for n in (1, 2):
            mine = [s for s in samples if s["workers"] == n]
            out["misses"][f"{sheet}/{n}"] = {
                "per_s": _span([s["per_s"] for s in mine]),
                "worker_cpu": _med([s["worker_cpu"] for s in mine]),
                "redis_cpu_us": _med([s["redis_cpu_us"] for s in mine]),
                "memory_per_result": _med([s["memory_per_result"] for s in mine]),
            }
    return out


def _inputs(data: dict[str, Any]) -> dict[str, float]:
    """Per-submit costs the model multiplies: the S3 fleet's, Bootstrap's miss if measured."""
    s3 = data["account"].get("s3") or next(iter(data["account"].values()))
    miss = "miss_bootstrap" if "miss_bootstrap" in s3 else "miss"
    sheet = "bootstrap" if "bootstrap" in data["misses"] else "small"
    per_worker = _med([s["per_s"] for s in data["misses"][sheet] if s["workers"] == 1])
    keys = data["keys"].get("s3") or next(iter(data["keys"].values()))
    return {
        "hit_commands": _kind(s3, "hit_new_commit", "commands"),
        "miss_commands": _kind(s3, miss, "commands"),
        "hit_bytes": _kind(s3, "hit_new_commit", "bytes_in")
        + _kind(s3, "hit_new_commit", "bytes_out"),
        "miss_bytes": _kind(s3, miss, "bytes_in") + _kind(s3, miss, "bytes_out"),
        "command_redis_us": _med([r["redis_cpu_us"] for r in data["hits"]["replays"]])
        / sum(data["hits"]["samples"][0]["by_command"].values()),
        "hit_redis_us": _kind(s3, "hit_new_commit", "redis_cpu_us"),
        "miss_redis_us": _kind(s3, miss, "redis_cpu_us"),
        "hit_worker_cpu": _kind(s3, "hit_new_commit", "worker_cpu"),
        "miss_worker_cpu": _kind(s3, miss, "worker_cpu"),
        "miss_per_s_per_worker": per_worker,
        "miss_wall": _kind(s3, miss, "wall_p50"),
        "css_bytes": _kind(s3, miss, "css_bytes"),
        "hit_gets": _s3(s3, "hit_new_commit", "GET"),
        "miss_gets": _s3(s3, miss, "GET"),
        "miss_puts": _s3(s3, miss, "PUT"),
        "result_bytes": keys.get("result", {}).get("bytes", math.nan),
        "commit_bytes": keys.get("commit", {}).get("bytes", math.nan),
        "waiter_bytes": data["waiters"]["memory_per_waiter"],
    }


def model(data: dict[str, Any]) -> dict[str, Any]:
    """Per fleet size: Redis load and memory, S3 requests and cost, workers."""
    m = _inputs(data)
    e = ESTIMATES
    ttl = e["result_ttl_days"] * 86400
    rows = []
    for jobs in JOBS:
        per_s = jobs / 60
        hits, misses = per_s * HIT_RATE, per_s * (1 - HIT_RATE)
        gets = hits * m["hit_gets"] + misses * m["miss_gets"]
        puts = misses * m["miss_puts"]
        cores = hits * m["hit_worker_cpu"] + misses * m["miss_worker_cpu"]
        rows.append(
            {
                "jobs_per_min": jobs,
                "hits_per_s": hits,
                "misses_per_s": misses,
                "redis_ops_per_s": hits * m["hit_commands"] + misses * m["miss_commands"],
                "redis_core_busy": (hits * m["hit_commands"] + misses * m["miss_commands"])
                * m["command_redis_us"]
                / 1e6,
                "redis_core_idle": (hits * m["hit_redis_us"] + misses * m["miss_redis_us"]) / 1e6,
                "redis_mbit_per_s": (hits * m["hit_bytes"] + misses * m["miss_bytes"]) * 8e-6,
                "results_gb": misses * ttl * m["result_bytes"] / 1e9,
                "mappings_gb": per_s * ttl * m["commit_bytes"] / 1e9,
                "memory_gb_short_ttl": (misses * m["result_bytes"] + per_s * m["commit_bytes"])
                * e["short_ttl_days"]
                * 86400
                / 1e9,
                "waiters": misses * m["miss_wall"],
                "waiters_mb": misses * m["miss_wall"] * m["waiter_bytes"] / 1e6,
                "s3_get_per_s": gets,
                "s3_put_per_s": puts,
                "s3_requests_month_m": (gets + puts) * MONTH_S / 1e6,
                "s3_request_usd_month": (
                    gets * e["s3_get_per_1000_usd"] + puts * e["s3_put_per_1000_usd"]
                )
                * MONTH_S
                / 1000,
                "css_gb_month": misses * m["css_bytes"] * MONTH_S / 1e9,
                "worker_cores": cores,
                "workers_by_cpu": math.ceil(cores / e["worker_utilisation"]),
                "workers_by_rate": math.ceil(
                    misses / m["miss_per_s_per_worker"] / e["worker_utilisation"]
                ),
            }
        )
    return {"inputs": m, "estimates": e, "hit_rate": HIT_RATE, "fleets": rows}


def _n(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _span_text(span: tuple[float, float, float], digits: int = 1) -> str:
    med, low, high = span
    return f"{_n(med, digits)} ({_n(low, digits)} to {_n(high, digits)})"


def _measured(data: dict[str, Any], f: dict[str, Any]) -> list[str]:
    hits = table(
        ["concurrent `scssq submit` loops", "hits/s, median (min to max)"],
        [(n, _span_text(span)) for n, span in f["hits_per_s"].items()],
    )
    redis_cpu = table(
        ["Redis load", "Redis CPU µs per op, median (min to max)", "ops/s reached"],
        [
            (
                "hit, real processes (idle Redis CPU taken off)",
                _span_text(f["hit_redis_cpu_us"]),
                "-",
            ),
            (
                "hit's 4 commands replayed, new connection each, 2 processes",
                _span_text(f["replay_redis_cpu_us"]),
                _span_text(f["replay_per_s"], 0),
            ),
            ("redis-benchmark GET, kept connections", _span_text(f["get_us"]), "-"),
            ("redis-benchmark GET, a connection each", _span_text(f["get_reconnect_us"]), "-"),
        ],
    )
    rows = []
    for name, m in f["misses"].items():
        sheet, n = name.split("/")
        rows.append(
            (
                sheet,
                n,
                _span_text(m["per_s"], 2),
                _n(m["worker_cpu"] * 1000, 1),
                _n(m["redis_cpu_us"], 0),
            )
        )
    misses = table(
        [
            "sheet",
            "workers",
            "misses/s, median (min to max)",
            "worker CPU ms/miss",
            "Redis CPU µs/miss",
        ],
        rows,
    )
    return [
        f"### Cache hits ({data['hits']['sheet']}, warm, file store, workers paused)\n\n{hits}"
        f"\n\nclient CPU per hit process {_n(f['hit_client_cpu'], 3)} s, "
        f"wall p50 {_n(f['hit_wall_p50'] * 1000, 0)} ms",
        f"### Redis CPU per hit\n\n{redis_cpu}",
        f"### Misses (queued while paused, timed from resume to the last done)\n\n{misses}",
    ]


def _per_submit(data: dict[str, Any]) -> list[str]:
    rows = []
    for store, kinds in data["account"].items():
        for kind, samples in kinds.items():
            ops = sorted({op for s in samples for op in s["s3"]})
            s3 = ", ".join(f"{_n(_s3(kinds, kind, op), 2)} {op}" for op in ops) or "-"
            rows.append(
                (
                    "S3" if store == "s3" else "file",
                    kind.replace("_", " "),
                    f"{_n(_kind(kinds, kind, 'commands'), 1)} "
                    f"({_n(min(s['commands'] for s in samples), 1)} to "
                    f"{_n(max(s['commands'] for s in samples), 1)})",
                    _n(_kind(kinds, kind, "bytes_in")),
                    _n(_kind(kinds, kind, "bytes_out")),
                    _n(_kind(kinds, kind, "redis_cpu_us")),
                    _n(_kind(kinds, kind, "worker_cpu") * 1000, 1),
                    s3,
                )
            )
    text = table(
        [
            "store",
            "submit",
            "Redis commands",
            "bytes in",
            "bytes out",
            "Redis CPU µs",
            "worker CPU ms",
            "S3 requests",
        ],
        rows,
    )
    parts = [f"### Per submit (one `scssq submit` process at a time)\n\n{text}"]
    for store, kinds in data["account"].items():
        for kind in ("miss", "hit_new_commit"):
            if kind in kinds:
                by = kinds[kind][0]["by_command"]
                names = ", ".join(f"{k} {v:g}" for k, v in sorted(by.items(), key=lambda x: -x[1]))
                parts.append(f"{store} {kind.replace('_', ' ')}, commands: {names}")
    return parts


def _memory(data: dict[str, Any]) -> str:
    kinds = sorted({k for v in data["keys"].values() for k in v})
    rows = [
        (k, *(_n(data["keys"][f].get(k, {}).get("bytes", math.nan)) for f in data["keys"]))
        for k in kinds
    ]
    text = table(["key kind (MEMORY USAGE)", *(f"fleet {f}, bytes" for f in data["keys"])], rows)
    w = data["waiters"]
    return (
        f"### Redis memory\n\n{text}\n\nper waiting `scssq submit` ({w['waiters']} waiting): "
        f"{_n(w['memory_per_waiter'])} B used_memory, {_n(w['connections_per_waiter'], 1)} "
        f"connections, {_n(w['wake_commands'], 1)} commands and "
        f"{_n(w['wake_redis_cpu_us'])} µs Redis CPU from the wake-up to its exit"
    )


def _model_table(mod: dict[str, Any]) -> str:
    e = mod["estimates"]
    redis_rows = [
        (
            _n(r["jobs_per_min"]),
            _n(r["hits_per_s"]),
            _n(r["misses_per_s"], 1),
            _n(r["redis_ops_per_s"]),
            f"{_n(r['redis_core_busy'], 2)} to {_n(r['redis_core_idle'], 2)}",
            _n(r["redis_mbit_per_s"]),
            f"{_n(r['results_gb'], 1)} + {_n(r['mappings_gb'], 1)}",
            _n(r["memory_gb_short_ttl"], 1),
            _n(r["waiters"], 0),
        )
        for r in mod["fleets"]
    ]
    redis_header = [
        "jobs/min",
        "hits/s",
        "misses/s",
        "Redis commands/s",
        "Redis cores",
        "Redis Mbit/s",
        f"Redis GB, results + mappings, {e['result_ttl_days']} d TTL",
        f"Redis GB, {e['short_ttl_days']} d TTL",
        "waiters at once",
    ]
    rest_rows = [
        (
            _n(r["jobs_per_min"]),
            _n(r["s3_get_per_s"]),
            _n(r["s3_put_per_s"]),
            _n(r["s3_requests_month_m"]),
            _n(r["s3_request_usd_month"]),
            _n(r["css_gb_month"]),
            _n(r["worker_cores"], 1),
            f"{r['workers_by_cpu']} / {r['workers_by_rate']}",
        )
        for r in mod["fleets"]
    ]
    rest_header = [
        "jobs/min",
        "S3 GET/s",
        "S3 PUT/s",
        "S3 requests, M/month",
        "S3 requests, $/month (estimate)",
        "new CSS, GB/month",
        "worker cores busy",
        "workers (by CPU / by rate)",
    ]
    return (
        f"### Model: {mod['hit_rate']:.0%} hits, every job a new commit\n\n"
        + table(redis_header, redis_rows)
        + "\n\n"
        + table(rest_header, rest_rows)
    )


def render(data: dict[str, Any]) -> str:
    f = figures(data)
    mod = data.get("model") or model(data)
    parts = [*_measured(data, f), *_per_submit(data), _memory(data), _model_table(mod)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    doc = json.loads(Path(args[0]).read_text()) if args else latest("capacity")
    if doc is None:
        print("no capacity results: run python -m bench.capacity", file=sys.stderr)
        return 1
    doc["data"]["model"] = model(doc["data"])
    print(render(doc["data"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
