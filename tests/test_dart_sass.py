"""The dart-sass engine: output equal to the ``sass`` CLI, the import guard, failures.

Fast (no Redis): real ``sass --embedded`` compiler processes on small bundles in tmp_path.
The reference for every byte is the same bundled binary run as the CLI
(:mod:`tests.support.sass_cli`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import bundles
from bench.memory import status_kib
from compiler_tasks.engines.base import EngineAborted, EngineOutput, EngineRequest
from compiler_tasks.engines.dart.compiler import dart_sass_version, locate
from compiler_tasks.engines.dart.engine import DartSassEngine
from compiler_tasks.engines.registry import engine_version, open_engine
from compiler_tasks.errors import (
    CompileError,
    CompileTimeout,
    ConfigError,
    EngineCrash,
    InvalidInput,
    LimitExceeded,
)
from compiler_tasks.settings import Settings
from tests.support.sass_cli import sass_cli, sass_cli_error

TOKEN = "SECRET-TOKEN-5d1e"
ENDLESS = "$i: 1;\n@while $i > 0 { $i: $i + 1; }\n.a { b: $i; }\n"


def slow(seconds: float) -> str:
    """A stylesheet Dart Sass needs roughly ``seconds`` for (3 million loops a second)."""
    n = int(seconds * 3_000_000)
    return f"$n: 0;\n@for $i from 1 through {n} {{ $n: $n + 1; }}\n.slow {{ n: $n; }}\n"


def headlines(text: str) -> list[str]:
    """The first line of each warning or debug message, and the code lines they show.

    Stack-trace frames of stylesheets found through a load path differ from the CLI's
    (``_dep.scss`` as written, where the CLI prints ``lp/_dep.scss``); the rest is equal.
    """
    return [line for line in text.splitlines() if not line.startswith("    ")]


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def settings() -> Settings:
    return dataclasses.replace(
        Settings(), compile_timeout=10.0, max_message_bytes=65536, dart_max_compiles=1000
    )


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[DartSassEngine]:
    with DartSassEngine(settings) as shared:
        yield shared


def run(engine: Any, req: EngineRequest, seconds: float = 10.0, **kw: Any) -> EngineOutput:
    return engine.compile(req, deadline=time.monotonic() + seconds, **kw)


EXAMPLE: dict[str, str | bytes] = {
    "scss/main.scss": (
        '@use "sass:math";\n'
        '@use "sass:map";\n'
        '@use "theme" as t;\n'
        '@use "parts/buttons";\n'
        '@use "grid";\n'
        '@use "components";\n'
        '@use "indented";\n'
        '@import "plain.css";\n'
        '@import url("https://fonts.example.com/x.css");\n'
        '.main { width: math.div(100%, 3); color: t.$brand; content: "naïve — ✓";\n'
        "  .inner { margin: map.get(t.$gaps, md) * 2; } }\n"
    ),
    "scss/_theme.scss": "$brand: #c0ffee !default;\n$gaps: (sm: 2px, md: 4px);\n",
    "scss/parts/_buttons.scss": '@use "../theme";\n.btn { color: theme.$brand; }\n',
    "vendor/grid/_grid.scss": "@mixin row { display: flex; }\n.row { @include row; }\n",
    "scss/components/_index.scss": '@forward "card";\n',
    "scss/components/_card.scss": ".card { padding: 1rem; }\n",
    "scss/_indented.sass": ".sassy\n  color: red\n  &:hover\n    color: blue\n",
    "scss/plain.css": f".never-read {{ x: {TOKEN}; }}\n",
}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write(tmp_path / "bundle", EXAMPLE)


def test_version_is_the_bundled_binary() -> None:
    version = dart_sass_version()
    assert version.startswith("dart-sass 1.99.0 ")
    assert "embedded protocol 3." in version
    assert engine_version("dart-sass") == version


def test_a_platform_without_a_bundled_binary_fails_clearly() -> None:
    assert locate().platform == "linux-x64"
    with pytest.raises(ConfigError) as err:
        locate(system="Linux", machine="aarch64")
    message = str(err.value)
    assert "linux-arm64" in message and "linux-x64" in message
    assert "never downloads" in message


@pytest.mark.parametrize("style", ["expanded", "compressed"])
@pytest.mark.parametrize("source_map", [False, True])
def test_output_equals_the_sass_cli(
    engine: DartSassEngine, bundle: Path, style: str, source_map: bool
) -> None:
    req = EngineRequest(bundle, "scss/main.scss", ("vendor/grid",), style, source_map)
    out = run(engine, req)
    cli = sass_cli(
        bundle, "scss/main.scss", style=style, source_map=source_map, load_paths=("vendor/grid",)
    )
    assert out.css == cli.css
    assert out.source_map == cli.source_map
    assert out.warnings == cli.stderr
    css = out.css.decode("utf-8")
    if style == "compressed":
        assert out.css.startswith(b"\xef\xbb\xbf")  # non-ASCII output: a BOM, as the CLI
    else:
        assert css.startswith('@charset "UTF-8";\n')
    assert "33.3333333333%" in css and ".sassy" in css and ".card" in css and ".row" in css
    assert TOKEN not in css and "plain.css" in css
    if source_map:
        assert css.rstrip().endswith("/*# sourceMappingURL=main.css.map */")
        assert out.source_map is not None
        data = json.loads(out.source_map)
        assert data["file"] == "main.css"
        assert "main.scss" in data["sources"] and "../vendor/grid/_grid.scss" in data["sources"]
        assert str(bundle) not in out.source_map.decode() and "scssq-dart" not in css


def test_ascii_output_has_no_charset(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(tmp_path, {"a.scss": ".a { b: c; }\n"})
    for style in ("expanded", "compressed"):
        out = run(engine, EngineRequest(root, "a.scss", style=style))
        assert out.css == sass_cli(root, "a.scss", style=style).css
        assert b"charset" not in out.css and not out.css.startswith(b"\xef")


def test_warnings_and_debug_reach_the_submitter(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "main.scss": '@use "lib";\n@debug "hello";\n@warn "careful";\n.a { b: lib.$c; }\n',
            "_lib.scss": "$c: 1;\n@warn 'from the library';\n@import 'old';\n",
            "_old.scss": ".old { x: y; }\n",
        },
    )
    out = run(engine, EngineRequest(root, "main.scss"))
    assert out.warnings == sass_cli(root, "main.scss").stderr
    assert "main.scss:2 DEBUG: hello" in out.warnings
    assert "WARNING: careful" in out.warnings and "from the library" in out.warnings
    assert "DEPRECATION WARNING [import]" in out.warnings
    assert str(root) not in out.warnings and "scssq-dart" not in out.warnings


def test_silence_deprecations_and_quiet_deps_match_the_cli(
    engine: DartSassEngine, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "main.scss": '@use "local";\n@use "dep";\n@import "old";\n.a { b: c; }\n',
            "_local.scss": ".l { c: red(#102030); }\n",
            "lp/_dep.scss": ".d { c: green(#102030); }\n",
            "_old.scss": ".o { x: y; }\n",
        },
    )
    quiet = EngineRequest(root, "main.scss", ("lp",), quiet_deps=True)
    silenced = EngineRequest(root, "main.scss", ("lp",), silence_deprecations=("import",))
    loud = run(engine, EngineRequest(root, "main.scss", ("lp",)))
    assert headlines(loud.warnings) == headlines(
        sass_cli(root, "main.scss", load_paths=("lp",)).stderr
    )
    assert "_dep.scss" in loud.warnings and "[import]" in loud.warnings
    out = run(engine, quiet)
    cli = sass_cli(root, "main.scss", load_paths=("lp",), extra=("--quiet-deps",))
    assert out.warnings == cli.stderr
    assert "_dep.scss" not in out.warnings and "_local.scss" in out.warnings
    out = run(engine, silenced)
    cli = sass_cli(root, "main.scss", load_paths=("lp",), extra=("--silence-deprecation=import",))
    assert headlines(out.warnings) == headlines(cli.stderr) and "[import]" not in out.warnings
    assert out.css == cli.css


def test_pkg_urls_resolve_in_the_bundles_node_modules(
    engine: DartSassEngine, tmp_path: Path
) -> None:
    root = write(
        tmp_path,
        {
            "app/main.scss": (
                '@use "pkg:lib";\n@use "pkg:lib/extra";\n@use "pkg:@scope/kit/sub/thing";\n'
                '@use "pkg:bare/scss/tool";\n'
            ),
            "node_modules/lib/package.json": json.dumps(
                {"sass": "scss/lib.scss", "exports": {"./extra": {"sass": "./scss/_x.scss"}}}
            ),
            "node_modules/lib/scss/lib.scss": ".lib { a: b; }\n",
            "node_modules/lib/scss/_x.scss": ".extra { a: b; }\n",
            "node_modules/@scope/kit/package.json": "{}",
            "node_modules/@scope/kit/sub/_thing.scss": ".thing { a: b; }\n",
            "node_modules/bare/package.json": "{}",
            "node_modules/bare/scss/_tool.scss": ".tool { a: b; }\n",
        },
    )
    out = run(engine, EngineRequest(root, "app/main.scss"))
    assert out.css == sass_cli(root, "app/main.scss", extra=("--pkg-importer=node",)).css
    assert b".lib" in out.css and b".extra" in out.css and b".thing" in out.css
    # scssq bundles carry no package.json: a subpath still resolves without one
    os.unlink(root / "node_modules/bare/package.json")
    assert b".tool" in run(engine, EngineRequest(root, "app/main.scss")).css


def test_compile_errors_are_path_line_col_relative(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "main.scss": '@use "sub/part";\n.a { b: c; }\n',
            "sub/_part.scss": ".x {\n  width: 1px + 1em;\n}\n",
            "missing.scss": '\n@use "nope";\n',
            "ambiguous.scss": '@use "twin";\n',
            "_twin.scss": "",
            "twin.scss": "",
            "bad.scss": b".a { b: \xff; }\n",
        },
    )
    with pytest.raises(CompileError) as err:
        run(engine, EngineRequest(root, "main.scss"))
    # the first line says where; then the snippet and the stack, as the sass CLI prints
    cli = sass_cli_error(root, "main.scss").rstrip("\n")
    assert cli.startswith("Error: 1px and 1em have incompatible units.\n  ╷\n2 │")
    assert "sub/_part.scss 2:10  @use" in cli
    assert str(err.value) == "sub/_part.scss:2:10: " + cli.removeprefix("Error: ")
    with pytest.raises(CompileError, match=r"^missing\.scss:2:1: Can't find stylesheet"):
        run(engine, EngineRequest(root, "missing.scss"))
    with pytest.raises(CompileError, match="It's not clear which file to import") as err:
        run(engine, EngineRequest(root, "ambiguous.scss"))
    assert "_twin.scss" in str(err.value) and str(root) not in str(err.value)
    with pytest.raises(CompileError, match=r"^bad\.scss: Invalid UTF-8"):
        run(engine, EngineRequest(root, "bad.scss"))


@pytest.mark.parametrize(
    "line",
    [
        '@import "../outside";',
        '@use "../outside";',
        '@use "../../../../../../../../outside";',
        '@use "/ABS/outside";',
        '@use "file:///ABS/outside";',
        '@use "link";',
        '@use "sass:meta";\n@include meta.load-css("../outside");',
    ],
)
def test_imports_outside_the_bundle_are_refused(
    engine: DartSassEngine, tmp_path: Path, line: str
) -> None:
    (tmp_path / "_outside.scss").write_text(f".leak {{ x: {TOKEN}; }}\n")
    root = write(
        tmp_path / "bundle",
        {"main.scss": line.replace("/ABS", str(tmp_path)) + "\n", "lp/_keep.scss": ""},
    )
    (root / "_link.scss").symlink_to(tmp_path / "_outside.scss")
    with pytest.raises(CompileError) as err:
        run(engine, EngineRequest(root, "main.scss", ("lp",)))
    message = str(err.value)
    assert message.startswith("main.scss:")
    assert TOKEN not in message and str(root) not in message and "scssq-dart" not in message
    assert any(
        hint in message for hint in ("outside the bundle", "stay inside the bundle", "never read")
    ), message


def test_dotdot_inside_the_bundle_is_fine(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a/b/main.scss": '@use "../../shared/x";\n@import "../c/y";\n',
            "shared/_x.scss": ".x { a: b; }\n",
            "a/c/_y.scss": ".y { a: b; }\n",
        },
    )
    out = run(engine, EngineRequest(root, "a/b/main.scss"))
    assert out.css == sass_cli(root, "a/b/main.scss").css and b".y" in out.css


def test_each_compile_sees_its_own_bundle(engine: DartSassEngine, tmp_path: Path) -> None:
    for tag in ("first", "second"):
        root = write(tmp_path / tag, {"main.scss": '@use "v";\n', "_v.scss": f".{tag} {{}}\n"})
        root.joinpath("_v.scss").write_text(f".{tag} {{ a: b; }}\n")
        assert (
            run(engine, EngineRequest(root, "main.scss")).css
            == f".{tag} {{\n  a: b;\n}}\n".encode()
        )


def test_invalid_requests(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(tmp_path, {"main.scss": ".a { b: c; }\n"})
    for req in (
        EngineRequest(root, "../main.scss"),
        EngineRequest(root, "nope.scss"),
        EngineRequest(root, "main.css"),
        EngineRequest(root, "main.scss", ("../x",)),
        EngineRequest(root, "main.scss", style="nested"),
    ):
        with pytest.raises(InvalidInput):
            run(engine, req)


def test_output_limit(settings: Settings, tmp_path: Path) -> None:
    root = write(tmp_path, {"main.scss": "@for $i from 1 through 2000 { .a#{$i} { b: c; } }\n"})
    small = dataclasses.replace(settings, max_output_bytes=1024)
    with DartSassEngine(small) as eng, pytest.raises(CompileError, match="exceeds 1024 bytes"):
        run(eng, EngineRequest(root, "main.scss"))


# -- the compiler process: limits, time, failures ------------------------------------


def test_one_process_serves_many_compiles_then_is_replaced(
    settings: Settings, tmp_path: Path
) -> None:
    root = write(tmp_path, {"main.scss": ".a { b: c; }\n"})
    with DartSassEngine(dataclasses.replace(settings, dart_max_compiles=3)) as eng:
        pids = []
        for _ in range(4):
            run(eng, EngineRequest(root, "main.scss"))
            pids.append(eng.pid)
        assert pids[0] is None or len(set(pids[:2])) == 1
        assert eng.starts == 2 and eng.compiles_run == 4


def _rss_kib(pid: int | None) -> int:
    kib = status_kib(pid or 0, "VmRSS")
    assert kib is not None, f"no VmRSS for process {pid}"
    return kib


def test_a_new_compiler_is_at_its_working_size_from_its_first_compile(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up runs the VM's young generation through before the first compile: the
    memory benchmark's small sheets then grow the compiler's RSS by under 5 % over 80
    compiles (without it: by about 60 %, 13 to 22 MiB). It is neither counted nor traced."""
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("SCSSQ_ENGINE_TRACE", str(trace))
    sheets = [bundles.small_modules(tmp_path / f"s{i}", i) for i in range(81)]
    with DartSassEngine(settings) as eng:
        run(eng, EngineRequest(sheets[0], bundles.ENTRY))
        first = _rss_kib(eng.pid)
        for sheet in sheets[1:]:
            run(eng, EngineRequest(sheet, bundles.ENTRY))
        after = _rss_kib(eng.pid)
        assert after <= first * 1.05, f"{first} -> {after} KiB"
        assert eng.starts == 1 and eng.compiles_run == 81
    assert len(trace.read_text().splitlines()) == 81


def _policies(pid: int) -> set[int]:
    """The scheduling policies of a process's threads (an idle VM thread may just exit)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:
            pass
    return found


def test_compiler_runs_limited_and_without_credentials(
    engine: DartSassEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, {"main.scss": ".a { b: c; }\n"})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TOKEN)
    with DartSassEngine(dataclasses.replace(engine.settings, engine_memory_mb=1024)) as eng:
        run(eng, EngineRequest(root, "main.scss"))
        assert eng.pid is not None
        environ = Path(f"/proc/{eng.pid}/environ").read_bytes()
        limits = Path(f"/proc/{eng.pid}/limits").read_text()
        exe = os.readlink(f"/proc/{eng.pid}/exe")
        cwd = Path(os.readlink(f"/proc/{eng.pid}/cwd"))
        policies = _policies(eng.pid)
    assert policies == {os.SCHED_BATCH}  # every VM thread: no preempting the host
    assert TOKEN.encode() not in environ
    assert exe == locate().dart
    assert str(1024 << 20) in next(li for li in limits.splitlines() if "address space" in li)
    assert cwd.is_dir() and not any(cwd.iterdir())  # empty, private, never written
    assert cwd.stat().st_mode & 0o777 == 0o700


def test_endless_loop_hits_the_deadline_then_a_new_compiler_serves(
    settings: Settings, tmp_path: Path
) -> None:
    root = write(tmp_path, {"loop.scss": ENDLESS, "ok.scss": ".a { b: c; }\n"})
    with DartSassEngine(settings) as eng:
        run(eng, EngineRequest(root, "ok.scss"))
        first = eng.pid
        started = time.monotonic()
        with pytest.raises(CompileTimeout, match="compile exceeded 10 s"):
            run(eng, EngineRequest(root, "loop.scss"), seconds=1.5)
        assert time.monotonic() - started < 4
        assert eng.pid is None and first is not None
        assert not Path(f"/proc/{first}").exists()
        assert run(eng, EngineRequest(root, "ok.scss")).css.startswith(b".a")


def test_tick_runs_while_waiting_and_false_aborts(settings: Settings, tmp_path: Path) -> None:
    root = write(tmp_path, {"slow.scss": slow(3)})
    ticks: list[float] = []

    def tick() -> bool:
        ticks.append(time.monotonic())
        return len(ticks) < 3

    with DartSassEngine(settings) as eng:
        with pytest.raises(EngineAborted, match="lock was lost"):
            run(eng, EngineRequest(root, "slow.scss"), tick=tick, tick_interval=0.2)
        assert eng.pid is None
    assert len(ticks) == 3 and ticks[-1] - ticks[0] < 1.5


def _kill_when_compiling(eng: DartSassEngine, sig: int, times: int, delay: float) -> None:
    """Send ``sig`` to each of the next ``times`` compilers, ``delay`` s after it starts."""

    def loop() -> None:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while len(seen) < times and time.monotonic() < deadline:
            pid = eng.pid
            if pid is not None and pid not in seen:
                seen.add(pid)
                time.sleep(delay)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    threading.Thread(target=loop, daemon=True).start()


def test_compiler_killed_mid_compile_is_restarted_and_retried(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("SCSSQ_ENGINE_TRACE", str(trace))
    root = write(tmp_path / "b", {"slow.scss": slow(1.0)})
    with DartSassEngine(settings) as eng:
        _kill_when_compiling(eng, signal.SIGKILL, 1, 0.4)
        out = run(eng, EngineRequest(root, "slow.scss"), seconds=20)
        assert out.css == sass_cli(root, "slow.scss").css
        assert eng.starts == 2
    assert len(trace.read_text().splitlines()) == 2  # the compile ran twice


def test_hung_compiler_is_detected_killed_and_retried(settings: Settings, tmp_path: Path) -> None:
    root = write(tmp_path, {"slow.scss": slow(0.8)})
    with DartSassEngine(settings, ping_interval=0.2, ping_timeout=0.5) as eng:
        _kill_when_compiling(eng, signal.SIGSTOP, 1, 0.3)
        started = time.monotonic()
        out = run(eng, EngineRequest(root, "slow.scss"), seconds=20)
        assert b"n: 2400000" in out.css and eng.starts == 2
        assert time.monotonic() - started < 8


def test_a_busy_compiler_missing_probes_is_not_taken_for_hung(
    settings: Settings, tmp_path: Path
) -> None:
    """Issue #22 item 6: a hang is judged by lack of progress, not by a missed probe."""
    rules = "".join(f".r{i} {{ a: {i}px; b: {i}px; }}\n" for i in range(80_000))
    root = write(tmp_path, {"big.scss": rules})
    big = dataclasses.replace(settings, compile_timeout=60.0, max_output_bytes=1 << 26)
    with DartSassEngine(big, ping_interval=0.03, ping_timeout=0.08) as eng:
        out = run(eng, EngineRequest(root, "big.scss"), seconds=60)
        assert out.css.count(b"a: ") == 80_000
        assert eng.starts == 1  # never killed as hung


def test_a_compiler_failing_twice_is_an_engine_crash(settings: Settings, tmp_path: Path) -> None:
    root = write(tmp_path, {"slow.scss": slow(2), "ok.scss": ".a { b: c; }\n"})
    with DartSassEngine(settings) as eng:
        _kill_when_compiling(eng, signal.SIGKILL, 2, 0.3)
        with pytest.raises(EngineCrash) as err:
            run(eng, EngineRequest(root, "slow.scss"), seconds=20)
        assert "SIGKILL" in str(err.value) and "retried once" in str(err.value)
        assert run(eng, EngineRequest(root, "ok.scss")).css.startswith(b".a")


def test_memory_limit_is_a_limit_hit_without_retry(settings: Settings, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "oom.scss": '$s: "x";\n@for $i from 1 through 40 { $s: $s + $s; }\n'
            ".a { b: str-length($s); }\n"
        },
    )
    with DartSassEngine(dataclasses.replace(settings, engine_memory_mb=512)) as eng:
        with pytest.raises(LimitExceeded, match=r"out of memory.*SCSSQ_ENGINE_MEMORY_MB=512"):
            run(eng, EngineRequest(root, "oom.scss"), seconds=30)
        assert eng.starts == 1


def test_compiler_that_died_while_idle_is_replaced(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(tmp_path, {"main.scss": ".a { b: c; }\n"})
    run(engine, EngineRequest(root, "main.scss"))
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    time.sleep(0.1)
    assert run(engine, EngineRequest(root, "main.scss")).css.startswith(b".a")


def test_open_engine_picks_the_implementation(settings: Settings) -> None:
    with open_engine(settings, "dart-sass") as eng:
        assert isinstance(eng, DartSassEngine) and eng.name == "dart-sass"
    with open_engine(settings, "libsass") as eng:
        assert eng.name == "libsass"


def test_lookup_rules_equal_the_cli(engine: DartSassEngine, tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "main.scss": (
                '@use "only-import";\n@use "dir";\n@use "sassdir";\n@use "plain";\n'
                '@use "explicit.scss";\n@import "only-import";\n@import "dir";\n'
            ),
            "_only-import.scss": ".module { a: b; }\n",
            "_only-import.import.scss": ".import-only { a: b; }\n",
            "dir/_index.scss": ".dir-index { a: b; }\n",
            "dir/index.import.scss": ".dir-import-only { a: b; }\n",
            "sassdir/_index.sass": ".sass-index\n  a: b\n",
            "plain.css": ".plain { a: b; }\n",
            "_explicit.scss": ".explicit { a: b; }\n",
        },
    )
    out = run(engine, EngineRequest(root, "main.scss"))
    assert out.css == sass_cli(root, "main.scss").css
    for name in (".module", ".import-only", ".dir-index", ".dir-import-only", ".sass-index"):
        assert name.encode() in out.css
    assert b".plain" in out.css and b".explicit" in out.css


@pytest.mark.parametrize(
    "exports",
    [
        {".": {"sass": "./scss/main.scss"}, "./*": {"style": "./scss/*.scss"}},
        {"sass": "./scss/main.scss", "default": "./index.js"},
        {".": [{"import": "./x.mjs"}, "./scss/main.scss"], "./sub": "./scss/_sub.scss"},
        "./scss/main.scss",
    ],
)
def test_pkg_exports_equal_the_cli(engine: DartSassEngine, tmp_path: Path, exports: Any) -> None:
    root = write(
        tmp_path,
        {
            "main.scss": '@use "pkg:lib";\n',
            "node_modules/lib/package.json": json.dumps({"exports": exports}),
            "node_modules/lib/scss/main.scss": ".lib-main { a: b; }\n",
            "node_modules/lib/scss/_sub.scss": ".lib-sub { a: b; }\n",
        },
    )
    out = run(engine, EngineRequest(root, "main.scss"))
    assert out.css == sass_cli(root, "main.scss", extra=("--pkg-importer=node",)).css
    assert b".lib-main" in out.css


def test_pkg_refuses_packages_and_exports_leaving_the_bundle(
    engine: DartSassEngine, tmp_path: Path
) -> None:
    (tmp_path / "node_modules" / "up").mkdir(parents=True)  # above the bundle root: unseen
    (tmp_path / "node_modules" / "up" / "_index.scss").write_text(f".x {{ t: {TOKEN}; }}")
    root = write(
        tmp_path / "bundle",
        {
            "up.scss": '@use "pkg:up";\n',
            "esc.scss": '@use "pkg:esc";\n',
            "node_modules/esc/package.json": json.dumps({"sass": "../../../_secret.scss"}),
        },
    )
    (tmp_path / "_secret.scss").write_text(f".y {{ t: {TOKEN}; }}")
    with pytest.raises(CompileError, match=r"^up\.scss:1:1: Can't find stylesheet"):
        run(engine, EngineRequest(root, "up.scss"))
    with pytest.raises(CompileError, match="resolves outside the bundle") as err:
        run(engine, EngineRequest(root, "esc.scss"))
    assert TOKEN not in str(err.value)
