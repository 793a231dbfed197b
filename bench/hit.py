"""Benchmark 4, cache hits: what a CI job pays when the CSS already exists.

``python -m bench.hit [--quick] [--runs 15]``

* **Process**: the whole ``scssq submit HASH`` process for a cached bundle (interpreter
  start, imports, bundling, key, Redis, artifact download, writing the CSS), from the
  client installed as a runner installs it (the wheel and ``requirements/client.lock``
  in a venv of its own, :mod:`tests.support.client_install`) ÷ compiling
  that bundle locally in a fresh process with the same engine (``python -c "import sass;
  sass.compile(filename=...)"``, writing the CSS). With the local store and with the S3
  store (moto's server on loopback). Runs interleave. A fourth column submits the cached
  bundle under a new commit each time (a CI push that left the styles alone), so the hit
  also asks a worker to map the commit. ``python -X importtime`` of one hit
  per store shows where the import time goes.
* **API**: ``cli.client.submit()`` with a warm ``Client`` on a cached bundle ÷ the floor:
  one Redis ``GET`` of the result plus one read of the artifact from the store (warm
  connection, warm store object). The warm ``Client`` has collected the bundle before and
  nothing in it changed since, so on a local filesystem it ``stat``s each folder and file
  instead of listing, reading and hashing them (``compiler_tasks/bundle/sources.py``); its
  lookup is two round trips on a connection it keeps (``cli/client.py``). It still
  computes nothing from stale bytes: it reads the artifact,
  checks it (once per artifact signature for the local store) and compares it with the
  file under ``--out``, none of which the floor does.

Bundles: Bootstrap 5.3.3 (the goal), Bootstrap 4.6.2 and a small sheet. Each bundle is
compiled once (and its commit mapped) before the timed hits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from bench import bundles
from bench.common import Report, ms, ratio, summary, table
from bench.fleet import BenchFleet, redis_server, s3_server
from cli.client import submit
from compiler_tasks.keys import RedisKeys
from compiler_tasks.store import open_store
from tests.support.client_install import client_venv

STORES = ("file", "s3")
#: Import-time buckets: (label, pattern on the top-level package name).
BUCKETS = (
    ("redis-py (with asyncio, which it imports)", r"redis"),
    ("boto3/botocore/s3transfer", r"boto3|botocore|s3transfer|jmespath|urllib3|dateutil"),
    ("celery/kombu", r"celery|kombu|billiard|vine|amqp"),
    ("click", r"click"),
    ("scssq (cli, compiler_tasks)", r"cli|compiler_tasks|celeryconfig"),
    ("sentry_sdk", r"sentry_sdk"),
)


def local_compile(src: Path, out: Path) -> float:
    entry = str(src / bundles.ENTRY)
    code = (
        f"import sass; open({str(out)!r}, 'w').write("
        f"sass.compile(filename={entry!r}, output_style={bundles.STYLE!r}))"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    return time.perf_counter() - started


def hit_process(
    fleet: BenchFleet, client: Path, src: Path, commit: str, out: Path, importtime: bool = False
) -> tuple[float, str]:
    """Wall time of one ``scssq submit`` that must be a hit, from the venv ``client`` the
    client is installed in as a runner installs it; with ``importtime`` its stderr."""
    cmd = bundles.submit_argv(client / "bin" / "scssq", commit, src, out)
    if importtime:
        cmd = [str(client / "bin" / "python"), "-X", "importtime", *cmd]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, env={**os.environ, **fleet.env}, capture_output=True, text=True, timeout=120
    )
    took = time.perf_counter() - started
    if proc.returncode != 0 or not proc.stdout.startswith("cached"):
        raise RuntimeError(f"expected a hit ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return took, proc.stderr


def import_buckets(stderr: str) -> dict[str, float]:
    """Seconds of imports per package, from ``-X importtime``: each module's own time goes
    to the nearest package of :data:`BUCKETS` among itself and the modules that imported
    it (so the standard library that redis-py pulls in counts for redis-py)."""
    lines = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \| (\s*)(\S+)", line)
        if m:
            lines.append((int(m.group(1)) / 1e6, len(m.group(2)) // 2, m.group(3)))
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str]] = []  # (depth, bucket): the chain of importers
    for own, depth, name in reversed(lines):  # post-order reversed: importers first
        while stack and stack[-1][0] >= depth:
            stack.pop()
        top = name.split(".")[0]
        bucket = next((label for label, pat in BUCKETS if re.fullmatch(pat, top)), None)
        if bucket is None:
            bucket = stack[-1][1] if stack else "interpreter start-up (site, encodings, …)"
        stack.append((depth, bucket))
        totals[bucket] += own
        totals["all imports"] += own
    return dict(totals)


S3_READ = {
    "python, no imports": "pass",
    "boto3: import, client, GetObject": (
        "import boto3; c = boto3.session.Session().client('s3'); "
        "c.get_object(Bucket={bucket!r}, Key={key!r})['Body'].read()"
    ),
    "urllib: a presigned URL": "import urllib.request; urllib.request.urlopen({url!r}).read()",
    "http.client: a presigned URL": (
        "import http.client, urllib.parse; u = urllib.parse.urlsplit({url!r}); "
        "c = http.client.HTTPConnection(u.netloc); c.request('GET', u.path + '?' + u.query); "
        "r = c.getresponse(); assert r.status == 200; r.read()"
    ),
}


def s3_read_costs(fleet: BenchFleet, css_path: str, runs: int) -> dict[str, dict[str, float]]:
    """One artifact read from S3 in a fresh process: with boto3 (what a hit pays today) vs
    a presigned URL fetched with the standard library (a proposed hit path)."""
    import boto3

    bucket, _, prefix = fleet.env["SCSSQ_STORE"].removeprefix("s3://").partition("/")
    key = f"{prefix}/{css_path}" if prefix else css_path
    env = {**os.environ, **fleet.env}
    client = boto3.session.Session().client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )
    times: dict[str, list[float]] = {label: [] for label in S3_READ}
    for i in range(runs + 1):
        for label, code in S3_READ.items():
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", code.format(bucket=bucket, key=key, url=url)],
                env=env,
                check=True,
                timeout=60,
            )
            if i:
                times[label].append(time.perf_counter() - started)
    return {label: summary(values) for label, values in times.items()}


def api_vs_floor(fleet: BenchFleet, src: Path, commit: str, out: Path, runs: int) -> dict:
    """Warm client API hit vs one GET of the result plus one artifact read."""
    client = fleet.client()
    settings = fleet.settings()
    config = bundles.config(src, out)
    conn = redis.Redis.from_url(settings.redis_url)
    store = open_store(settings.store_url)
    key = submit(client, config, commit, timeout=60).key
    result_key = RedisKeys(settings.prefix).result(key)
    css = json.loads(conn.get(result_key) or b"{}")["outputs"][bundles.ENTRY]["css"]
    api: list[float] = []
    floor: list[float] = []
    for i in range(runs + 3):
        for step in ("api", "floor") if i % 2 else ("floor", "api"):
            started = time.perf_counter()
            if step == "api":
                res = submit(client, config, commit, timeout=60)
                assert res.outcome == "cached", res.outcome
            else:
                json.loads(conn.get(result_key) or b"{}")
                store.get(css)
            took = time.perf_counter() - started
            if i >= 3:
                (api if step == "api" else floor).append(took)
    client.close()
    conn.close()
    return {"api": summary(api), "floor": summary(floor)}


def _css_path(fleet: BenchFleet, src: Path) -> str:
    """The store path of the CSS of ``src``'s (cached) result."""
    from compiler_tasks.bundle.collect import collect
    from compiler_tasks.keys import compile_key

    settings = fleet.settings()
    client = fleet.client()
    try:
        version = client.engine_version("libsass")
        (raw,) = client.redis.call(
            (
                "GET",
                RedisKeys(settings.prefix).result(
                    compile_key(
                        collect(src, exclude=[], max_bytes=1 << 26, max_files=20000).digest,
                        bundles.config(src, src).options,
                        version,
                    )
                ),
            )
        )
    finally:
        client.close()
    return str(json.loads(raw or b"{}")["outputs"][bundles.ENTRY]["css"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 runs")
    parser.add_argument("--runs", type=int, default=None, help="runs per cell (default 15)")
    args = parser.parse_args()
    runs = args.runs or (4 if args.quick else 15)
    report = Report(
        "hit",
        args.quick,
        params={
            "runs": runs,
            "stores": {"file": "local folder", "s3": "moto server on loopback (boto3 over HTTP)"},
            "local": "python -c 'import sass; sass.compile(filename=...)' writing the CSS",
        },
    )
    cases = [
        ("bootstrap", bundles.label("bootstrap")),
        ("bootstrap4", bundles.label("bootstrap4")),
        ("small", "small sheet"),
    ]
    proc_rows: list[dict[str, Any]] = []
    s3_reads: dict[str, dict[str, float]] = {}
    api_rows: list[dict[str, Any]] = []
    imports: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="scssq-bench-hit-") as tmp_dir,
        redis_server() as rs,
        s3_server() as endpoint,
    ):
        tmp = Path(tmp_dir)
        client_env = client_venv(tmp / "client")
        fleets = {
            kind: BenchFleet(
                tmp / f"fleet-{kind}", redis=rs, workers=1, store=kind, s3_endpoint=endpoint
            ).start()
            for kind in STORES
        }
        try:
            fleets["file"].export()
            # in-process S3 clients: boto3 reads the endpoint and credentials from os.environ
            os.environ.update({k: v for k, v in fleets["s3"].env.items() if k.startswith("AWS_")})
            for case, label in cases:
                src = (
                    bundles.small(tmp / case, 7)
                    if case == "small"
                    else bundles.bootstrap(tmp / case, 7, case)
                )
                commit = bundles.commit()
                for fleet in fleets.values():
                    client = fleet.client()
                    submit(client, bundles.config(src, tmp / "first"), commit, timeout=120)
                    client.close()
                    fleet.wait_idle()
                times: dict[str, list[float]] = {"local": [], "file": [], "s3": [], "new": []}
                for i in range(runs + 1):
                    order = ["local", *STORES, "new"]
                    order = order[i % 4 :] + order[: i % 4]
                    for step in order:
                        out = tmp / "out" / f"{case}-{step}-{i}"
                        if step == "local":
                            took = local_compile(src, out.with_suffix(".css"))
                        elif step == "new":  # a commit never seen: the hit maps it too
                            took = hit_process(
                                fleets["file"], client_env, src, bundles.commit(), out
                            )[0]
                        else:
                            took = hit_process(fleets[step], client_env, src, commit, out)[0]
                        if i:  # the first round warms the page cache
                            times[step].append(took)
                row: dict[str, Any] = {"bundle": label}
                for step, values in times.items():
                    row[step] = summary(values)
                for kind in (*STORES, "new"):
                    row[f"{kind}_ratio"] = row[kind]["p50"] / row["local"]["p50"]
                proc_rows.append(row)
                print(
                    f"{label}: local {ms(row['local']['p50'])} file {ms(row['file']['p50'])} "
                    f"s3 {ms(row['s3']['p50'])}",
                    flush=True,
                )
                if case == "bootstrap":
                    for kind in STORES:
                        imports[kind] = import_buckets(
                            hit_process(fleets[kind], client_env, src, commit, tmp / "it", True)[1]
                        )
                    s3_reads = s3_read_costs(fleets["s3"], _css_path(fleets["s3"], src), runs)
                for kind in STORES:
                    res = api_vs_floor(fleets[kind], src, commit, tmp / f"api-{kind}", runs * 2)
                    api_rows.append(
                        {
                            "bundle": label,
                            "store": kind,
                            **res,
                            "ratio": res["api"]["p50"] / res["floor"]["p50"],
                        }
                    )
        finally:
            for fleet in fleets.values():
                fleet.stop()
    report.data = {
        "process": proc_rows,
        "api": api_rows,
        "imports": imports,
        "s3_reads": s3_reads,
    }
    main_row = proc_rows[0]
    for kind in STORES:
        report.goal(
            f"hit ({kind} store): `scssq submit` process ÷ local compile, p50 "
            f"({main_row['bundle']})",
            main_row[f"{kind}_ratio"],
            0.5,
            note=f"{ms(main_row[kind]['p50'])} vs {ms(main_row['local']['p50'])}",
        )
    for row in api_rows:
        if row["bundle"] == main_row["bundle"]:
            report.goal(
                f"hit ({row['store']} store): client API ÷ (GET + artifact read), p50",
                row["ratio"],
                3.0,
                note=f"{ms(row['api']['p50'])} vs {ms(row['floor']['p50'])}",
            )
    text = "### Cache hit\n\n" + table(
        [
            "bundle",
            "local compile (new process)",
            "`scssq submit` hit, local store",
            "÷ local",
            "`scssq submit` hit, S3 store",
            "÷ local",
            "hit of a new commit, local store",
            "÷ local",
        ],
        [
            (
                r["bundle"],
                ms(r["local"]["p50"]),
                ms(r["file"]["p50"]),
                f"**{ratio(r['file_ratio'])}**",
                ms(r["s3"]["p50"]),
                f"**{ratio(r['s3_ratio'])}**",
                ms(r["new"]["p50"]),
                ratio(r["new_ratio"]),
            )
            for r in proc_rows
        ],
    )
    text += "\n\n" + table(
        ["bundle", "store", "client API hit p50", "floor: GET + artifact read p50", "÷ floor"],
        [
            (
                r["bundle"],
                r["store"],
                ms(r["api"]["p50"]),
                ms(r["floor"]["p50"]),
                f"**{ratio(r['ratio'])}**",
            )
            for r in api_rows
        ],
    )
    labels = sorted(
        {k for v in imports.values() for k in v}, key=lambda k: -imports["s3"].get(k, 0)
    )
    text += "\n\nImport time of one hit process (`python -X importtime`), top-level packages:\n\n"
    text += table(
        ["imports", *(f"{k} store" for k in STORES)],
        [(label, *(ms(imports[k].get(label, 0.0)) for k in STORES)) for label in labels],
    )
    text += (
        "\n\nOne S3 read of the Bootstrap CSS in a fresh process (moto on loopback): what the "
        "hit pays for boto3 vs a presigned URL read with the standard library:\n\n"
    )
    text += table(
        ["fresh process", "p50", "p90"],
        [(label, ms(v["p50"]), ms(v["p90"])) for label, v in s3_reads.items()],
    )
    report.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
