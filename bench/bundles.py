"""Bundles the benchmarks compile: real Bootstrap variants, CPU-bound loops, small sheets.

Each builder writes a directory that is both a bundle for ``scssq submit --src DIR``
and a plain folder for the raw engine (``sass.compile(filename=DIR/main.scss)``), so the
fleet and libsass compile the very same files. Distinct arguments give distinct
contents, hence distinct compile keys.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import sass

from bench.corpus import PACKAGES, ensure
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions

ENTRY = "main.scss"
#: Options of every benchmark compile, for the fleet and for the raw engine alike.
STYLE = "expanded"


def submit_argv(scssq: str | Path, commit: str, src: str | Path, out: str | Path) -> list[str]:
    """The ``scssq submit`` of a benchmark job: the executable ``scssq`` (the client as
    a runner installs it, :mod:`tests.support.client_install`), ``ENTRY`` of ``src``
    in ``STYLE`` into ``out``, under project ``bench``; add ``--engine`` to taste."""
    argv = [str(scssq), "submit", commit, "--src", str(src), "--entry", ENTRY]
    return [*argv, "--out", str(out), "--project", "bench", "--style", STYLE]


#: How each corpus package is called in tables.
TITLES = {
    "bootstrap": "Bootstrap",
    "bootstrap4": "Bootstrap",
    "bulma": "Bulma",
    "foundation-sites": "Foundation",
}


def label(name: str = "bootstrap") -> str:
    """``Bootstrap 5.3.3``: a corpus package's title and pinned version."""
    return f"{TITLES.get(name, name)} {PACKAGES[name][0]}"


def primary(i: int) -> str:
    """A distinct colour per ``i`` (hex ``#rrggbb``)."""
    value = (i * 2654435761) & 0xFFFFFF
    return f"#{value:06x}"


def bootstrap(dest: Path, i: int, name: str = "bootstrap") -> Path:
    """Bootstrap's ``scss/`` (hard links into the corpus) and ``main.scss`` that sets
    ``$primary`` to :func:`primary` ``(i)`` and imports Bootstrap."""
    package = ensure(name)
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "scss").exists():
        shutil.copytree(package / "scss", dest / "scss", copy_function=_link_or_copy)
    (dest / ENTRY).write_text(f'$primary: {primary(i)};\n@import "scss/bootstrap";\n')
    return dest


def bulma(dest: Path, i: int) -> Path:
    """Bulma's ``sass/`` under ``bulma/`` (hard links) and ``main.scss`` that configures
    ``$primary`` with :func:`primary` ``(i)`` (Dart Sass only: ``@use ... with``)."""
    package = ensure("bulma")
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "bulma").exists():
        shutil.copytree(package / "sass", dest / "bulma" / "sass", copy_function=_link_or_copy)
    (dest / ENTRY).write_text(f'@use "bulma/sass" with ($primary: {primary(i)});\n')
    return dest


#: Foundation's palette (its defaults but the primary colour) for :func:`foundation`.
FOUNDATION = (
    '@use "pkg:foundation-sites/scss/foundation" as * with (\n'
    "  $foundation-palette: (primary: {primary}, secondary: #767676, success: #3adb76,\n"
    "    warning: #ffae00, alert: #cc4b37)\n"
    ");\n"
    "@include foundation-everything;\n"
)


def foundation(dest: Path, i: int) -> Path:
    """Foundation's stylesheets and manifests under ``node_modules/foundation-sites`` (hard
    links) and ``main.scss`` that loads it with ``pkg:`` and sets its primary colour to
    :func:`primary` ``(i)`` (Dart Sass only)."""
    package = ensure("foundation-sites")
    target = dest / "node_modules" / "foundation-sites"
    if not target.exists():

        def others(folder: str, names: list[str]) -> list[str]:
            return [
                n
                for n in names
                if not os.path.isdir(os.path.join(folder, n))
                and not n.endswith((".scss", "package.json"))
            ]

        shutil.copytree(package, target, ignore=others, copy_function=_link_or_copy)
    (dest / ENTRY).write_text(FOUNDATION.format(primary=primary(i)))
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


LOOP = """// {salt}
$acc: 0;
@for $i from 1 through {iterations} {{
  $acc: ($acc * 31 + $i) % 1000003;
}}
.herd {{ value: $acc; salt: "{salt}"; }}
"""


def loop(dest: Path, iterations: int, salt: str | None = None) -> Path:
    """A CPU-bound sheet with a tiny output: ``iterations`` steps of integer arithmetic."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ENTRY).write_text(LOOP.format(iterations=iterations, salt=salt or secrets.token_hex(8)))
    return dest


def calibrate_loop(seconds: float, tmp: Path) -> int:
    """Iterations of :func:`loop` that libsass runs in about ``seconds`` here and now."""
    iterations = 20_000
    while True:
        path = loop(tmp / "calibrate", iterations, "calibrate") / ENTRY
        started = time.perf_counter()
        sass.compile(filename=str(path), output_style=STYLE)
        took = time.perf_counter() - started
        if took >= 0.2:
            return max(1000, int(iterations * seconds / took))
        iterations *= 4


SMALL = """$brand: {colour};
$gap: {gap}px;
@mixin card($pad) {{ padding: $pad; border: 1px solid darken($brand, 10%); }}
.card-{i} {{ @include card($gap); color: $brand; }}
@for $n from 1 through 12 {{ .col-{i}-#{{$n}} {{ width: percentage($n / 12); }} }}
"""


def small(dest: Path, i: int) -> Path:
    """A small, distinct stylesheet (a mixin, a loop, colour functions)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ENTRY).write_text(SMALL.format(colour=primary(i), gap=4 + i % 29, i=i))
    return dest


#: :data:`SMALL` in the module system (no deprecated global functions or ``/`` division).
SMALL_MODULES = """@use "sass:color";
@use "sass:math";
$brand: {colour};
$gap: {gap}px;
@mixin card($pad) {{ padding: $pad; border: 1px solid color.adjust($brand, $lightness: -10%); }}
.card-{i} {{ @include card($gap); color: $brand; }}
@for $n from 1 through 12 {{ .col-{i}-#{{$n}} {{ width: math.percentage(math.div($n, 12)); }} }}
"""


def small_modules(dest: Path, i: int) -> Path:
    """:func:`small` written for Dart Sass's module system (``@use "sass:math"``)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ENTRY).write_text(SMALL_MODULES.format(colour=primary(i), gap=4 + i % 29, i=i))
    return dest


def config(src: Path, out: Path, project: str = "bench", engine: str = "libsass") -> SubmitConfig:
    """What ``scssq submit --src SRC --entry main.scss --out OUT --engine E`` asks for."""
    return SubmitConfig(
        project=project,
        src=src,
        out=out,
        options=CompileOptions(entries=(ENTRY,), style=STYLE, engine=engine),
    )


def commit() -> str:
    """A fresh commit hash (each benchmark bundle gets its own commit mapping)."""
    return secrets.token_hex(20)


def raw_compile(src: Path, out: Path | None = None) -> int:
    """libsass directly on the same files; writes the CSS like the client does."""
    css = sass.compile(filename=str(src / ENTRY), output_style=STYLE)
    data = css.encode()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    return len(data)
