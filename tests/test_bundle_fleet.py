"""The bundle rule through a real fleet: what no compile loads never costs a cache hit,
and what a compile loads (a ``.css`` file through ``meta.load-css``) always arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.sass_cli import sass_cli

pytestmark = pytest.mark.integration

CONFIG = """project = "rule"
entries = ["scss/main.scss"]
engine = "dart-sass"
exclude = ["tests/fixtures"]
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_unrelated_stylesheets_keep_the_hit_and_load_css_finds_plain_css(
    make_fleet: Any, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = tmp_path / "site"
    _write(
        src,
        {
            "scssq.toml": CONFIG,
            "scss/main.scss": '@use "sass:meta";\n@include meta.load-css("plain");\n',
            "scss/plain.css": ".plain { a: b; }\n",
        },
    )
    first = fleet.scssq("submit", "a" * 40, cwd=src)
    assert first.returncode == 0, first.stderr + fleet.logs()
    assert first.stdout.startswith("compiled")
    assert (src / "out/scss/main.css").read_bytes() == sass_cli(src, "scss/main.scss").css

    _write(
        src,
        {
            "tests/fixtures/x.scss": "@error 'a fixture';\n",  # excluded in scssq.toml
            "node_modules/kit/_kit.scss": ".kit { a: b; }\n",  # not a load path, not named
            ".cache/y.scss": ".y { a: b; }\n",  # hidden folder
            "legacy/old.scss": ".old { a: b; }\n",  # excluded by --exclude below
        },
    )
    again = fleet.scssq(
        "submit", "b" * 40, "--exclude", "tests/fixtures", "--exclude", "legacy/*", cwd=src
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("cached"), again.stdout
    assert len(fleet.engine_runs()) == 1

    bad = fleet.scssq("submit", "b" * 40, "--exclude", "/etc", cwd=src)
    assert bad.returncode == 2
    assert "--exclude '/etc' is absolute; write it relative to --src" in bad.stderr
    (src / "scssq.toml").write_text(CONFIG.replace('"tests/fixtures"', '"../up"'))
    bad = fleet.scssq("submit", "b" * 40, cwd=src)
    assert bad.returncode == 2
    assert "scssq.toml: exclude '../up' leaves --src" in bad.stderr
