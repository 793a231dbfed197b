"""Real-world frameworks through a real fleet, byte-identical to the reference compilers.

The corpus (Bootstrap 5.3.3, Bulma 1.0.2, Foundation 6.8.1 from npm) is fetched once into
the ignored ``bench/.corpus`` cache by :mod:`bench.corpus`; a fetch failure fails these
tests (it never skips them). One fleet serves the whole module and each framework is
compiled once. The references are the same bundled Dart Sass binary run as the ``sass``
CLI, and libsass called directly.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sass

from bench.corpus import PACKAGES, ensure_all
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer
from tests.support.sass_cli import sass_cli

pytestmark = pytest.mark.integration

HASH = "f" * 40
FOUNDATION_ENTRY = (
    '@use "pkg:foundation-sites/scss/foundation" as *;\n@include foundation-everything;\n'
)
_STYLE_FILES = (".scss", ".sass", ".css", "package.json")


@pytest.fixture(scope="module")
def corpus() -> dict[str, Path]:
    return ensure_all()  # CorpusError fails the tests that need it


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("frameworks")
    shared = Fleet(redis_server.url, tmp, compile_timeout=120, visibility_timeout=600)
    shared.start_worker(concurrency=1)
    yield shared
    shared.stop()


def submit(fleet: Fleet, src: Path, entry: str, out: Path, engine: str) -> dict:
    proc = fleet.scssq(
        "submit", HASH, "--src", str(src), "--entry", entry, "--out", str(out),
        "--project", "frameworks", "--engine", engine, "--json", cwd=out.parent, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}\n{fleet.logs()}"
    report: dict = json.loads(proc.stdout)
    assert report["outcome"] == "compiled"
    return report


def _copy_styles(package: Path, target: Path) -> None:
    """The package's stylesheets and manifests only (docs, JS and images stay behind)."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if not os.path.isdir(os.path.join(directory, n)) and not n.endswith(_STYLE_FILES)
        ]

    shutil.copytree(package, target, ignore=ignore)


@pytest.mark.parametrize(
    ("name", "entry"), [("bootstrap", "scss/bootstrap.scss"), ("bulma", "bulma.scss")]
)
def test_framework_with_dart_sass_equals_the_cli(
    fleet: Fleet, corpus: dict[str, Path], tmp_path: Path, name: str, entry: str
) -> None:
    package = corpus[name]
    out = tmp_path / "out"
    report = submit(fleet, package, entry, out, "dart-sass")
    css = (out / entry).with_suffix(".css").read_bytes()
    expected = sass_cli(package, entry, out_dir=tmp_path).css
    assert css == expected, f"{name} {PACKAGES[name][0]} differs from the sass CLI"
    assert len(css) > 100_000 and report["entries"][0]["size"] == len(css)


def test_foundation_used_as_a_module_equals_the_cli(
    fleet: Fleet, corpus: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "site"
    _copy_styles(corpus["foundation-sites"], src / "node_modules" / "foundation-sites")
    (src / "main.scss").write_text(FOUNDATION_ENTRY)
    report = submit(fleet, src, "main.scss", tmp_path / "out", "dart-sass")
    css = (tmp_path / "out" / "main.css").read_bytes()
    expected = sass_cli(src, "main.scss", extra=("--pkg-importer=node",), out_dir=tmp_path).css
    assert css == expected
    assert b".callout" in css and b".grid-x" in css and len(css) > 100_000
    assert "DEPRECATION WARNING" in report["warnings"]  # warnings reach the submitter


def test_bootstrap_with_libsass_equals_libsass_direct(
    fleet: Fleet, corpus: dict[str, Path], tmp_path: Path
) -> None:
    package = corpus["bootstrap"]
    submit(fleet, package, "scss/bootstrap.scss", tmp_path / "out", "libsass")
    css = (tmp_path / "out" / "scss" / "bootstrap.css").read_bytes()
    cwd = os.getcwd()
    os.chdir(package)  # libsass searches its working directory first, as the engine child
    try:
        direct = sass.compile(filename="scss/bootstrap.scss", output_style="expanded")
    finally:
        os.chdir(cwd)
    assert css == direct.encode("utf-8") and len(css) > 100_000
