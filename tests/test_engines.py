"""The libsass engine in its child process: output, errors, limits, the import guard.

Fast (no Redis): every test runs real child processes on small bundles in tmp_path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sass

from compiler_tasks.engines.base import EngineAborted, EngineOutput, EngineRequest
from compiler_tasks.engines.libsass.process import EngineProcess
from compiler_tasks.engines.registry import engine_version, open_engine
from compiler_tasks.errors import CompileError, CompileTimeout, EngineCrash, InvalidInput
from compiler_tasks.settings import Settings

TOKEN = "SECRET-TOKEN-7f3a9c1e"
ENDLESS = "$i: 1;\n@while $i > 0 { $i: $i + 1; }\n.a { b: $i; }\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(
        Settings(), compile_timeout=5.0, max_message_bytes=4096, engine_max_compiles=50
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[EngineProcess]:
    with EngineProcess(settings) as ep:
        yield ep


def make_engine(settings: Settings, **changes: Any) -> EngineProcess:
    return EngineProcess(dataclasses.replace(settings, **changes))


def run(engine: EngineProcess, req: EngineRequest, seconds: float = 5.0) -> EngineOutput:
    return engine.compile(req, deadline=time.monotonic() + seconds)


EXAMPLE = {
    "scss/main.scss": (
        '@import "vars";\n'
        '@import "parts/buttons";\n'
        '@import "grid";\n'
        '@import "components";\n'
        '@import "indented";\n'
        '@import "legacy";\n'
        '@import "foo.css";\n'
        "@import url(bar.css);\n"
        '@import "https://fonts.example.com/x.css";\n'
        '@import "print-only" print;\n'
        ".main { color: $brand; .inner { margin: $gap * 2; } }\n"
    ),
    "scss/_vars.scss": "$brand: #c0ffee;\n$gap: 4px;\n",
    "scss/parts/_buttons.scss": '@import "../mixins";\n.btn { @include round(3px); }\n',
    "scss/_mixins.scss": "@mixin round($r) { border-radius: $r; }\n",
    "vendor/grid/_grid.scss": ".row { display: flex; }\n",
    "scss/components/_index.scss": ".card { padding: $gap; }\n",
    "scss/_indented.sass": ".sassy\n  color: $brand\n  &:hover\n    color: red\n",
    "scss/legacy.css": ".legacy { float: left; }\n",
    "scss/foo.css": f".never-read {{ x: {TOKEN}; }}\n",
}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write(tmp_path / "bundle", EXAMPLE)


def direct(root: Path, entry: str, load_paths: tuple[str, ...], **options: Any) -> Any:
    """sass.compile run directly in the bundle root (libsass searches its cwd first)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return sass.compile(
            filename=str(root / entry),
            include_paths=[str(root / lp) for lp in load_paths],
            **options,
        )
    finally:
        os.chdir(cwd)


def test_engine_version() -> None:
    assert engine_version() == f"libsass-python {sass.__version__} / libsass {sass.libsass_version}"
    assert engine_version("dart-sass").startswith("dart-sass 1.99.0")
    with pytest.raises(InvalidInput):
        engine_version("ruby-sass")
    with pytest.raises(InvalidInput, match="open_engine"):
        EngineProcess(Settings(), "dart-sass")


@pytest.mark.parametrize("style", ["expanded", "compressed"])
def test_output_is_byte_identical_to_direct_libsass(
    engine: EngineProcess, bundle: Path, style: str
) -> None:
    req = EngineRequest(bundle, "scss/main.scss", ("vendor/grid",), style)
    out = run(engine, req)
    expected = direct(bundle, "scss/main.scss", ("vendor/grid",), output_style=style)
    assert isinstance(expected, str)
    assert out.css == expected.encode("utf-8")
    assert out.source_map is None
    css = out.css.decode()
    assert ".sassy" in css and ".card" in css and ".row" in css and "border-radius" in css
    assert "url(foo.css)" in css and "url(bar.css)" in css and TOKEN not in css
    assert "https://fonts.example.com/x.css" in css and '@import "print-only" print' in css
    assert ".legacy" in css  # an extension-less import of a .css file is inlined


def test_source_map_is_relative_and_identical(engine: EngineProcess, bundle: Path) -> None:
    req = EngineRequest(bundle, "scss/main.scss", ("vendor/grid",), source_map=True)
    out = run(engine, req)
    assert out.source_map is not None
    css_path, map_path = str(bundle / "scss/main.css"), str(bundle / "scss/main.css.map")
    expected = direct(
        bundle,
        "scss/main.scss",
        ("vendor/grid",),
        output_style="expanded",
        source_map_filename=map_path,
        output_filename_hint=css_path,
        source_map_contents=True,
    )
    assert isinstance(expected, tuple)
    assert out.css == expected[0].encode() and out.source_map == expected[1].encode()
    assert out.css.rstrip().endswith(b"/*# sourceMappingURL=main.css.map */")
    smap = json.loads(out.source_map)
    assert smap["file"] == "main.css"
    assert "main.scss" in smap["sources"] and "../vendor/grid/_grid.scss" in smap["sources"]
    assert len(smap["sourcesContent"]) == len(smap["sources"])
    for path in smap["sources"]:
        assert not path.startswith("/")
    assert str(bundle).encode() not in out.source_map


def test_sass_entry(engine: EngineProcess, tmp_path: Path) -> None:
    root = write(tmp_path, {"main.sass": '@import "part"\n.a\n  b: $x\n', "_part.scss": "$x: 1;"})
    out = run(engine, EngineRequest(tmp_path, "main.sass"))
    expected = direct(root, "main.sass", (), output_style="expanded")
    assert out.css == expected.encode()


def test_compile_error_is_path_line_col_relative(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"main.scss": '@import "scss/vars";\n', "scss/_vars.scss": "\n\n$y:   $x;\n"})
    with pytest.raises(CompileError) as info:
        run(engine, EngineRequest(tmp_path, "main.scss"))
    assert str(info.value) == 'scss/_vars.scss:3:7: Undefined variable: "$x".'
    assert type(info.value) is CompileError


def test_missing_and_ambiguous_imports(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"main.scss": '\n  @import "nope";\n', "b.scss": '@import "x";'})
    write(tmp_path, {"_x.scss": "", "x.scss": ""})
    with pytest.raises(CompileError, match=r"^main.scss:2:11: File to import not found"):
        run(engine, EngineRequest(tmp_path, "main.scss"))
    with pytest.raises(CompileError, match=r"^b.scss:1:9: It's not clear which file") as info:
        run(engine, EngineRequest(tmp_path, "b.scss"))
    assert "_x.scss, x.scss" in str(info.value)


def test_dotdot_inside_the_bundle_is_fine(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"a/b/main.scss": '@import "../../c/d";', "c/_d.scss": ".d { e: f }"})
    assert b".d" in run(engine, EngineRequest(tmp_path, "a/b/main.scss")).css


def test_use_rule_is_reported(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"main.scss": '@import "p";\n', "_p.scss": "// x\n  @use 'sass:math';\n"})
    write(tmp_path, {"entry.scss": "@forward 'p';\n"})
    with pytest.raises(CompileError) as info:
        run(engine, EngineRequest(tmp_path, "main.scss"))
    assert str(info.value) == (
        "_p.scss:2:3: @use is not supported by libsass; compile with --engine dart-sass"
    )
    with pytest.raises(CompileError, match=r"^entry.scss:1:1: @forward is not supported"):
        run(engine, EngineRequest(tmp_path, "entry.scss"))


def test_warn_and_debug_come_back_with_relative_paths(
    engine: EngineProcess, tmp_path: Path
) -> None:
    write(tmp_path, {"main.scss": '@import "sub/w";\n@debug "top";', "sub/_w.scss": '@warn "hm";'})
    out = run(engine, EngineRequest(tmp_path, "main.scss"))
    assert "WARNING: hm" in out.warnings and "of sub/_w.scss" in out.warnings
    assert "main.scss:2 DEBUG: top" in out.warnings
    assert str(tmp_path) not in out.warnings
    again = run(engine, EngineRequest(tmp_path, "main.scss"))  # captured per compile
    assert again.warnings == out.warnings


def test_warnings_are_bounded(settings: Settings, tmp_path: Path) -> None:
    write(tmp_path, {"loud.scss": '@for $i from 1 through 20000 { @debug "line #{$i}"; }'})
    write(tmp_path, {"quiet.scss": '@warn "once";'})
    with make_engine(settings, max_message_bytes=1024) as engine:
        out = run(engine, EngineRequest(tmp_path, "loud.scss"))
        assert len(out.warnings.encode()) <= 1024 and "truncated" in out.warnings
        assert "WARNING: once" in run(engine, EngineRequest(tmp_path, "quiet.scss")).warnings


def test_output_limit(settings: Settings, tmp_path: Path) -> None:
    write(tmp_path, {"main.scss": "@for $i from 1 through 200 { .c#{$i} { w: $i; } }"})
    with make_engine(settings, max_output_bytes=1024) as engine:
        with pytest.raises(CompileError) as info:
            run(engine, EngineRequest(tmp_path, "main.scss"))
        assert str(info.value) == (
            "main.scss: output exceeds 1024 bytes (the limit is SCSSQ_MAX_OUTPUT_BYTES)"
        )
        write(tmp_path, {"small.scss": ".a { b: c }"})
        assert run(engine, EngineRequest(tmp_path, "small.scss")).css


def test_endless_loop_times_out_then_recovers(settings: Settings, tmp_path: Path) -> None:
    write(tmp_path, {"loop.scss": ENDLESS, "ok.scss": ".ok { a: b }"})
    ticks: list[float] = []

    def tick() -> bool:
        ticks.append(time.monotonic())
        return True

    with make_engine(settings, compile_timeout=1.0) as engine:
        start = time.monotonic()
        with pytest.raises(CompileTimeout, match=r"compile exceeded 1 s") as info:
            engine.compile(
                EngineRequest(tmp_path, "loop.scss"),
                deadline=start + 1.0,
                tick=tick,
                tick_interval=0.2,
            )
        assert 0.9 < time.monotonic() - start < 2.5
        assert len(ticks) >= 3  # the parent stayed free while libsass spun
        assert "loop.scss" in str(info.value) and engine.pid is None
        assert run(engine, EngineRequest(tmp_path, "ok.scss")).css.startswith(b".ok")


def test_deadline_already_passed(engine: EngineProcess, bundle: Path) -> None:
    with pytest.raises(CompileTimeout):
        engine.compile(EngineRequest(bundle, "scss/main.scss"), deadline=time.monotonic() - 1)
    assert engine.pid is None and engine.compiles_run == 0


def test_tick_false_kills_and_aborts(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"loop.scss": ENDLESS, "ok.scss": ".ok { a: b }"})
    answers = iter([True, True, False])
    start = time.monotonic()
    with pytest.raises(EngineAborted, match="lock was lost"):
        engine.compile(
            EngineRequest(tmp_path, "loop.scss"),
            deadline=start + 10,
            tick=lambda: next(answers),
            tick_interval=0.1,
        )
    assert time.monotonic() - start < 2 and engine.pid is None
    assert run(engine, EngineRequest(tmp_path, "ok.scss")).css


def test_child_killed_externally_is_a_crash(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"loop.scss": ENDLESS, "ok.scss": ".ok { a: b }"})
    run(engine, EngineRequest(tmp_path, "ok.scss"))
    victim = engine.pid
    assert victim is not None

    def tick() -> bool:
        os.kill(victim, signal.SIGKILL)
        return True

    with pytest.raises(EngineCrash, match=r"died \(signal 9, SIGKILL\) while compiling loop.scss"):
        engine.compile(
            EngineRequest(tmp_path, "loop.scss"),
            deadline=time.monotonic() + 10,
            tick=tick,
            tick_interval=0.2,
        )
    assert run(engine, EngineRequest(tmp_path, "ok.scss")).css
    assert engine.pid not in (None, victim)


def test_child_that_died_while_idle_is_replaced(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"ok.scss": ".ok { a: b }"})
    run(engine, EngineRequest(tmp_path, "ok.scss"))
    first = engine.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    time.sleep(0.1)
    assert run(engine, EngineRequest(tmp_path, "ok.scss")).css
    assert engine.pid != first


@pytest.mark.parametrize(
    "source",
    [
        '$s: "x";\n@for $i from 1 through 40 { $s: $s + $s; }\n.a { b: $s; }\n',
        "$l: (1,);\n@for $i from 1 through 40 { $l: join($l, $l); }\n.a { b: length($l); }",
        "@for $i from 1 through 3000000 { .a#{$i} { b: $i; } }",
    ],
)
def test_memory_blowup_is_contained(settings: Settings, tmp_path: Path, source: str) -> None:
    write(tmp_path, {"big.scss": source, "ok.scss": ".ok { a: b }"})
    with make_engine(settings, engine_memory_mb=128) as engine:
        start = time.monotonic()
        with pytest.raises((EngineCrash, CompileError)) as info:
            engine.compile(EngineRequest(tmp_path, "big.scss"), deadline=start + 8)
        assert time.monotonic() - start < 9
        if isinstance(info.value, EngineCrash):
            assert "memory" in str(info.value) or "signal" in str(info.value)
        assert run(engine, EngineRequest(tmp_path, "ok.scss")).css.startswith(b".ok")


def test_recycled_after_max_compiles(settings: Settings, tmp_path: Path) -> None:
    write(tmp_path, {"ok.scss": ".ok { a: b }"})
    with make_engine(settings, engine_max_compiles=2) as engine:
        run(engine, EngineRequest(tmp_path, "ok.scss"))
        first = engine.pid
        run(engine, EngineRequest(tmp_path, "ok.scss"))
        assert engine.pid is None  # retired after its second compile
        run(engine, EngineRequest(tmp_path, "ok.scss"))
        assert engine.pid not in (None, first) and engine.compiles_run == 3


def test_invalid_requests(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path / "root", {"main.scss": ""})
    write(tmp_path, {"outside.scss": ""})
    (tmp_path / "root/link.scss").symlink_to(tmp_path / "outside.scss")
    (tmp_path / "root/lp").symlink_to(tmp_path)
    root = tmp_path / "root"
    for req in [
        EngineRequest(root, "../outside.scss"),
        EngineRequest(root, "/etc/passwd.scss"),
        EngineRequest(root, "link.scss"),
        EngineRequest(root, "missing.scss"),
        EngineRequest(root, "main.css"),
        EngineRequest(root, "main.scss", ("lp",)),
        EngineRequest(root, "main.scss", style="nested"),
        EngineRequest(tmp_path / "nowhere", "main.scss"),
    ]:
        with pytest.raises(InvalidInput) as info:
            run(engine, req)
        assert str(tmp_path) not in str(info.value)
    assert engine.compiles_run == 0


# --- the import guard: no file outside the bundle is ever read ---------------------------


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A bundle next to a secret: outside/secret(.scss) and links from the bundle to it."""
    outside = write(
        tmp_path / "outside",
        {"secret": f"{TOKEN} {{", "secret.scss": f".leak {{ t: {TOKEN}; }}", "_p.scss": "x{"},
    )
    root = tmp_path / "work" / "bundle"
    write(root, {"ok.scss": ".ok { a: b }"})
    (root / "_link.scss").symlink_to(outside / "secret.scss")
    (root / "vendor").symlink_to(outside)
    return root


HOSTILE_IMPORTS = [
    '@import "{outside}/secret";',
    '@import "{outside}/secret.scss";',
    '@import "../../outside/secret";',
    '@import "../../outside/secret.scss";',
    '@import "link";',
    '@import "vendor/secret";',
    '@import "vendor/p";',
    '@import "file://{outside}/secret.scss";',
    '@import "file:{outside}/secret";',
    '@import "/etc/hostname";',
    '@import "{outside}/secret" screen;',
    '@import "../../outside/secret" print;',
    '@import "vendor/secret" print;',
    '@import "ok", "{outside}/secret";',
]


@pytest.mark.parametrize("line", HOSTILE_IMPORTS)
def test_imports_outside_the_bundle_are_refused(
    engine: EngineProcess, hostile: Path, line: str
) -> None:
    outside = hostile.parent.parent / "outside"
    write(hostile, {"scss/main.scss": "\n" + line.format(outside=outside) + "\n"})
    with pytest.raises(CompileError) as info:
        run(engine, EngineRequest(hostile, "scss/main.scss"))
    message = str(info.value)
    assert message.startswith("scss/main.scss:2:")
    assert "outside the bundle" in message or "relative path inside the bundle" in message
    assert TOKEN not in message and str(hostile) not in message
    assert type(info.value) is CompileError


@pytest.mark.parametrize("name", ["libsass", "dart-sass"])
@pytest.mark.parametrize(
    "line", ['@import "../../outside/secret";', '@import "vendor/secret";', '@import "link";']
)
def test_both_engines_refuse_imports_outside_the_bundle(
    settings: Settings, hostile: Path, name: str, line: str
) -> None:
    write(hostile, {"main.scss": line + "\n"})
    with open_engine(settings, name) as engine, pytest.raises(CompileError) as info:
        run(engine, EngineRequest(hostile, "main.scss"))
    message = str(info.value)
    assert message.startswith("main.scss:") and "outside the bundle" in message
    assert TOKEN not in message and str(hostile) not in message


def test_libsass_module_system_suggests_dart_sass(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"main.scss": '@use "sass:math";\n.a { width: math.div(10px, 3); }\n'})
    with pytest.raises(CompileError) as info:
        run(engine, EngineRequest(tmp_path, "main.scss"))
    assert str(info.value) == (
        "main.scss:1:1: @use is not supported by libsass; compile with --engine dart-sass"
    )
    with open_engine(engine.settings, "dart-sass") as dart:
        assert b"3.3333333333px" in run(dart, EngineRequest(tmp_path, "main.scss")).css


def test_absolute_import_inside_root_is_refused_too(engine: EngineProcess, hostile: Path) -> None:
    write(hostile, {"main.scss": f'@import "{hostile}/ok";'})
    with pytest.raises(CompileError, match="outside the bundle") as info:
        run(engine, EngineRequest(hostile, "main.scss"))
    assert str(hostile) not in str(info.value)


def test_symlinked_root_and_warnings_never_show_worker_paths(
    engine: EngineProcess, tmp_path: Path
) -> None:
    real = write(tmp_path / "real", {"main.scss": '@import "p";', "_p.scss": '@debug "d";'})
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    out = run(engine, EngineRequest(alias, "main.scss", source_map=True))
    for blob in (out.css, out.source_map or b"", out.warnings.encode()):
        assert str(tmp_path).encode() not in blob
    assert "_p.scss:1 DEBUG: d" in out.warnings


def test_plain_css_imports_are_not_read(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"a.css": TOKEN, "main.scss": '@import "a.css";\n@import "//cdn/a";'})
    out = run(engine, EngineRequest(tmp_path, "main.scss"))
    assert out.css == b'@import url(a.css);\n@import "//cdn/a";\n'


def test_tick_exception_kills_the_child(engine: EngineProcess, tmp_path: Path) -> None:
    write(tmp_path, {"loop.scss": ENDLESS})

    def tick() -> bool:
        raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        engine.compile(
            EngineRequest(tmp_path, "loop.scss"),
            deadline=time.monotonic() + 10,
            tick=tick,
            tick_interval=0.1,
        )
    assert engine.pid is None


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_child_dies_with_its_parent(tmp_path: Path) -> None:
    write(tmp_path, {"loop.scss": ENDLESS})
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from compiler_tasks.engines.base import EngineRequest\n"
        "from compiler_tasks.engines.libsass.process import EngineProcess\n"
        "from compiler_tasks.settings import Settings\n"
        "ep = EngineProcess(Settings())\n"
        "def tick():\n"
        "    print(ep.pid, flush=True)\n"
        "    return True\n"
        "ep.compile(EngineRequest(Path(sys.argv[1]), 'loop.scss'),\n"
        "           deadline=time.monotonic() + 60, tick=tick, tick_interval=0.1)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    assert worker.stdout is not None
    child = int(worker.stdout.readline())
    worker.kill()  # the task's process dies mid-compile (kill -9)
    worker.wait()
    worker.stdout.close()
    deadline = time.monotonic() + 3
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_child_gets_no_credentials(
    engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TOKEN)
    write(tmp_path, {"ok.scss": ".ok { a: b }"})
    run(engine, EngineRequest(tmp_path, "ok.scss"))
    assert engine.pid is not None
    environ = Path(f"/proc/{engine.pid}/environ").read_bytes()
    assert TOKEN.encode() not in environ and b"PYTHONPATH=" in environ
