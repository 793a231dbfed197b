"""Benchmark: CPU of one warm dart-sass compile, host and compiler, against the ``sass`` CLI.

``python -m bench.dart_host [--runs 30] [--baseline REV] [--bundle bootstrap|bulma]``

The dart-sass engine answers every load of a compile from the host (a canonicalize and
an import request per load: see :mod:`compiler_tasks.engines.dart.importer`), so its CPU
is the compiler's plus this host's. Each variant runs in a child process of its own with
a warm engine (three untimed compiles first); every round compiles the same bundle once
per variant and once with the native ``sass`` CLI (the very binary the engine drives, a
new process, its warnings dropped), in a rotating order, so load spikes hit all alike.

Per compile: wall time, the host's CPU (user and system time of the child process, which
runs the engine's loop), the compiler's CPU (``/proc/<pid>/stat``: clock ticks, so means
over the runs, not medians), the requests the compiler sent by type, and a digest of the
CSS, which must equal the CLI's. ``--baseline REV`` adds the engine of a git revision
(``git archive`` of its ``compiler_tasks`` into a temporary folder) for a before/after
ratio in one run. Writes ``bench/results/dart-host-<time>.json``; not a test.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")
#: Untimed compiles each variant's engine runs before the rounds.
WARM_UP = 3


# -- the child: one warm engine, compiling on request ---------------------------------------


def serve(code: str, root: str, entry: str) -> None:
    """Compile ``entry`` of ``root`` once per line on stdin, one JSON line out per compile,
    with the engine of the checkout (or export) ``code``."""
    sys.path.insert(0, code)
    from compiler_tasks.engines.base import EngineRequest
    from compiler_tasks.engines.dart import loop
    from compiler_tasks.engines.dart.engine import DartSassEngine
    from compiler_tasks.settings import Settings

    tally: collections.Counter[str] = collections.Counter()
    packets = loop.Loop.packets

    def counted(self: Any) -> list[Any]:
        got = packets(self)
        tally.update(p.message.WhichOneof("message") for p in got)
        return got

    loop.Loop.packets = counted  # type: ignore[method-assign]
    os.environ.setdefault("SCSSQ_COMPILE_TIMEOUT", "300")
    req = EngineRequest(Path(root), entry)
    with DartSassEngine(Settings()) as engine:
        for _ in range(WARM_UP):
            engine.compile(req, deadline=time.monotonic() + 300)
        for _ in sys.stdin:
            tally.clear()
            pid = engine.pid
            before, cpu, wall = os.times(), _ticks(pid), time.perf_counter()
            out = engine.compile(req, deadline=time.monotonic() + 300)
            wall, after = time.perf_counter() - wall, os.times()
            sample = {
                "wall": wall,
                "host_user": after.user - before.user,
                "host_sys": after.system - before.system,
                "compiler": _ticks(pid) - cpu,
                "requests": dict(tally),
                "css": hashlib.sha256(out.css).hexdigest(),
            }
            print(json.dumps(sample), flush=True)


def _ticks(pid: int | None) -> float:
    """CPU seconds a process used so far (user + system, all threads)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


# -- the parent: variants, rounds, report ----------------------------------------------------


class Variant:
    """A child process serving one engine version."""

    def __init__(self, name: str, code: Path, root: Path, entry: str) -> None:
        self.name = name
        self.samples: list[dict[str, Any]] = []
        args = [sys.executable, "-P", str(Path(__file__).resolve()), "--serve", str(code)]
        self.proc = subprocess.Popen(
            [*args, str(root), entry],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=code,
        )

    def run(self) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write("compile\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: the engine's process ended (exit {self.proc.wait()})")
        self.samples.append(json.loads(line))
        return self.samples[-1]

    def close(self) -> None:
        pipe: IO[str] | None = self.proc.stdin
        if pipe is not None:
            pipe.close()
        self.proc.wait(timeout=60)


def cli_compile(sass: str, root: Path, entry: str, out: Path) -> dict[str, Any]:
    """One ``sass`` CLI process: wall time, its CPU (from its rusage) and the CSS digest."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(
        [sass, "--style=expanded", "--no-source-map", entry, str(out)],
        cwd=root,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall": wall, "cpu": cpu, "css": hashlib.sha256(out.read_bytes()).hexdigest()}


def export(rev: str, dest: Path) -> Path:
    """``compiler_tasks`` of git revision ``rev`` in ``dest`` (a code root for a child)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev, "compiler_tasks"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(variant: Variant, cli_cpu: float) -> dict[str, Any]:
    from bench.common import median

    s = variant.samples
    host = [x["host_user"] + x["host_sys"] for x in s]
    total = _mean(host) + _mean([x["compiler"] for x in s])
    requests: collections.Counter[str] = collections.Counter()
    for x in s:
        requests.update(x["requests"])
    return {
        "wall_p50": median([x["wall"] for x in s]),
        "host_user": _mean([x["host_user"] for x in s]),
        "host_sys": _mean([x["host_sys"] for x in s]),
        "host": _mean(host),
        "compiler": _mean([x["compiler"] for x in s]),
        "cpu": total,
        "cpu_vs_cli": total / cli_cpu,
        "requests": {k: v / len(s) for k, v in sorted(requests.items())},
    }


def tables(rows: dict[str, dict[str, Any]], cli: dict[str, float]) -> str:
    from bench.common import ms, ratio, table

    body = [
        (
            name,
            ms(r["wall_p50"]),
            f"{ms(r['host'])} ({ms(r['host_user'])} + {ms(r['host_sys'])})",
            ms(r["compiler"]),
            ms(r["cpu"]),
            ratio(r["cpu_vs_cli"]),
            ", ".join(f"{k} {v:g}" for k, v in r["requests"].items()),
        )
        for name, r in rows.items()
    ]
    body.append(("`sass` CLI", ms(cli["wall_p50"]), "-", "-", ms(cli["cpu"]), "1.00", "-"))
    header = [
        "engine",
        "wall p50",
        "host CPU (user + sys)",
        "compiler CPU",
        "CPU",
        "CPU ÷ CLI",
        "messages from the compiler per compile",
    ]
    text = table(header, body, "lrrrrrl")
    if "before" in rows and "after" in rows:
        a, b = rows["after"], rows["before"]
        text += (
            f"\n\nafter ÷ before: CPU {ratio(a['cpu'] / b['cpu'])}, host CPU "
            f"{ratio(a['host'] / b['host'])}, wall p50 {ratio(a['wall_p50'] / b['wall_p50'])}"
        )
    return text


def rounds(variants: list[Variant], sass: str, root: Path, entry: str, runs: int) -> list[Any]:
    """``runs`` rounds, each variant and the CLI once, in a rotating order."""
    cli: list[dict[str, Any]] = []
    out = Path(tempfile.mkdtemp(prefix="scssq-dart-host-")) / "cli.css"
    steps: list[Any] = [*variants, None]
    for i in range(runs):
        k = i % len(steps)
        for step in steps[k:] + steps[:k]:
            if step is None:
                cli.append(cli_compile(sass, root, entry, out))
            else:
                step.run()
    digests = {cli[0]["css"]} | {x["css"] for v in variants for x in v.samples}
    if len(digests) != 1:
        raise SystemExit("the engines' CSS differs from the sass CLI's")
    return cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (each engine once)")
    parser.add_argument("--baseline", help="also time the engine of this git revision")
    parser.add_argument("--bundle", default="bootstrap", choices=("bootstrap", "bulma"))
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    sys.path.insert(0, str(ROOT))
    from bench import bundles
    from bench.common import Report, median
    from bench.peers_tools import sass_bin

    report = Report("dart-host", False, params={"runs": args.runs, "bundle": args.bundle})
    tmp = Path(tempfile.mkdtemp(prefix="scssq-dart-host-"))
    build = bundles.bootstrap if args.bundle == "bootstrap" else bundles.bulma
    root = build(tmp / "bundle", 1)
    codes = {"after": ROOT}
    if args.baseline:
        codes["before"] = export(args.baseline, tmp / "baseline")
        report.params["baseline"] = args.baseline
    variants = [Variant(name, code, root, bundles.ENTRY) for name, code in codes.items()]
    try:
        cli = rounds(variants, sass_bin(), root, bundles.ENTRY, max(1, args.runs))
    finally:
        for variant in variants:
            variant.close()
    cli_row = {"wall_p50": median([c["wall"] for c in cli]), "cpu": _mean([c["cpu"] for c in cli])}
    rows = {v.name: summarize(v, cli_row["cpu"]) for v in variants}
    report.data = {"engines": rows, "cli": cli_row}
    title = f"{bundles.label(args.bundle)}, expanded, no source map"
    report.write(f"{title}\n\n{tables(rows, cli_row)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
