"""The ``sass`` CLI's habits in ``scssq submit``, each compared with the real ``sass`` CLI:
``-I``, ``-s``, ``-q``, ``-h``, ``--entry in:out``, ``--embed-source-map``,
``--embed-sources``, ``--error-css``, its error messages, and a stylesheet passed where
the commit goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.config import resolve
from cli.errorcss import error_css
from cli.main import main
from compiler_tasks.errors import UsageError
from tests.support.fleet import Fleet
from tests.support.sass_cli import sass_run
from tests.test_fleet import make_src

HASH = "5a55" * 10
#: A user's site: the vendor folder sits beside scss/, not under it.
SITE = {
    "scss/main.scss": '@use "theme";\n@warn "careful";\n.a { color: theme.$c; }\n',
    "vendor/_theme.scss": "$c: #bada55;\n",
    "scss/bad.scss": '@use "theme";\n.b {\n  width: 1px + 1em; content: "ü */";\n}\n',
}
SCSSQ = str(Path(sys.executable).parent / "scssq")


def make_site(tmp: Path) -> Path:
    return make_src(tmp, SITE, "site")


def take(path: Path) -> bytes:
    """The file's bytes; the file is removed (the sass CLI and scssq write the same one)."""
    data = path.read_bytes()
    path.unlink()
    return data


def scssq(fleet: Fleet, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = ("submit", HASH, "--project", "habits", "--engine", "dart-sass", "-I", "vendor")
    return fleet.scssq(*base, *args, cwd=site)


@pytest.mark.integration
def test_in_out_maps_and_flags_through_the_fleet_equal_the_sass_cli(
    make_fleet: Any, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    site, dist = make_site(tmp_path), tmp_path / "site" / "dist"
    flags = ("-s", "compressed", "--source-map", "--no-embed-sources")
    sass = sass_run(
        site, "-I", "vendor", *flags[:2], "--no-embed-sources", "scss/main.scss:dist/main.css"
    )
    ref_css, ref_map = take(dist / "main.css"), take(dist / "main.css.map")
    done = scssq(fleet, site, *flags, "--entry", "scss/main.scss:dist/main.css")
    assert done.returncode == 0, done.stderr + fleet.logs()
    assert (dist / "main.css").read_bytes() == ref_css
    assert (dist / "main.css.map").read_bytes() == ref_map  # sources ../scss, ../vendor
    assert "careful" in done.stderr and "careful" in sass.stderr
    assert not (site / "out").exists()  # --out is for entries without :out
    # -q: no warning, as sass -q; the embedded map, as sass --embed-source-map
    embed = ("--embed-source-map", "--embed-sources")
    sass = sass_run(site, "-q", "-I", "vendor", *embed, "scss/main.scss:dist/e.css")
    ref_css = take(dist / "e.css")
    done = scssq(fleet, site, "-q", *embed, "--entry", "scss/main.scss:dist/e.css")
    assert done.returncode == 0, done.stderr
    assert (dist / "e.css").read_bytes() == ref_css and not (dist / "e.css.map").exists()
    assert sass.stderr == "" and "careful" not in done.stderr
    # no source map: where the CSS goes is the client's business, one compile serves both
    first = scssq(fleet, site, "--entry", "scss/main.scss:dist/a.css", "--json")
    second = scssq(fleet, site, "--entry", "scss/main.scss:public/b.css", "--json")
    assert [json.loads(p.stdout)["outcome"] for p in (first, second)] == ["compiled", "cached"]
    assert (dist / "a.css").read_bytes() == (site / "public" / "b.css").read_bytes()
    assert len(fleet.engine_runs()) == 3
    # fetch writes where the same --entry in:out says, as submit did
    fetched = fleet.scssq(
        "fetch", HASH, "--project", "habits", "--engine", "dart-sass", "-I", "vendor",
        "--entry", "scss/main.scss:public/c.css", cwd=site,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert (site / "public" / "c.css").read_bytes() == (dist / "a.css").read_bytes()


@pytest.mark.integration
def test_a_compile_error_reads_and_writes_as_the_sass_cli(make_fleet: Any, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    site = make_site(tmp_path)
    sass = sass_run(site, "-I", "vendor", "--error-css", "scss/bad.scss:dist/bad.css", check=False)
    assert sass.returncode == 65
    ref = take(site / "dist" / "bad.css")
    done = scssq(fleet, site, "--error-css", "--entry", "scss/bad.scss:dist/bad.css")
    assert done.returncode == 1, done.stderr
    # the first line says where, then the snippet and the stack the sass CLI prints
    cli_text = sass.stderr.rstrip("\n").removeprefix("Error: ")
    assert f"scssq: compile error: scss/bad.scss:3:10: {cli_text}" in done.stderr
    assert "│   width: 1px + 1em;" in done.stderr
    assert (site / "dist" / "bad.css").read_bytes() == ref
    assert b"body::before" in ref and "ü *\u2215".encode() in ref  # */ cannot close the comment
    without = scssq(fleet, site, "--entry", "scss/bad.scss:dist/other.css")
    assert without.returncode == 1 and not (site / "dist" / "other.css").exists()


def test_error_css_of_a_libsass_message_shows_it_whole() -> None:
    css = error_css('main.scss:2:9: Undefined variable: "$nope".').decode()
    assert css.startswith('/* Error: main.scss:2:9: Undefined variable: "$nope". */\n')
    assert "content: 'Error: main.scss:2:9: Undefined variable: \"$nope\".';" in css


@pytest.mark.parametrize("value", ["scss/main.scss", "main.scss", "theme.sass"])
def test_a_stylesheet_where_the_commit_goes_is_a_usage_error(tmp_path: Path, value: str) -> None:
    env = {**os.environ, "SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens
    done = subprocess.run(
        [SCSSQ, "submit", value], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"{value!r} looks like a stylesheet; pass it with --entry {value}" in done.stderr
    assert "hexadecimal" not in done.stderr


def test_short_flags_as_the_sass_cli() -> None:
    runner = CliRunner()
    for args in ([], ["submit"], ["status"], ["fetch"], ["health"]):
        short, long = runner.invoke(main, [*args, "-h"]), runner.invoke(main, [*args, "--help"])
        assert short.exit_code == 0 and short.output == long.output
    text = runner.invoke(main, ["submit", "-h"]).output
    for flag in ("-I, --load-path", "-s, --style", "-q, --quiet", "--embed-source-map",
                 "--embed-sources", "--error-css"):  # fmt: skip
        assert flag in text, flag
    usage = sass_run(Path.cwd(), "--help", check=False).stdout
    for flag in ("-I, --load-path", "-s, --style", "-q, --[no-]quiet", "--[no-]error-css"):
        assert flag in usage, flag  # the sass CLI's own spelling


def test_scssq_toml_keys_and_in_out_entries(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / "scssq.toml").write_text(
        'project = "p"\nentries = ["scss/main.scss:dist/main.css", "scss/bad.scss"]\n'
        'load_paths = ["vendor"]\nembed_source_map = true\nembed_sources = false\n'
        "error_css = true\nquiet = true\n"
    )
    conf = resolve(site)
    assert conf.error_css and conf.quiet
    assert conf.options.source_map and conf.options.embed_source_map
    assert not conf.options.embed_sources
    assert conf.targets == {
        "scss/main.scss": site.resolve() / "dist" / "main.css",
        "scss/bad.scss": site.resolve() / "out" / "scss" / "bad.css",
    }
    assert ("scss/main.scss", "main.css", "dist", ".") in conf.options.places
    (site / "scssq.toml").write_text('project = "p"\nentries = ["scss/main.scss"]\nquiet = "yes"\n')
    with pytest.raises(UsageError, match='quiet = "yes" is not a boolean'):
        resolve(site)


@pytest.mark.parametrize(
    ("entries", "flags", "message"),
    [
        (("a.scss:x.css", "b.scss:x.css"), {}, "would both be written to"),
        (("a.scss:x.css", "a.scss:y.css"), {}, "given twice with different outputs"),
        (("a.scss:",), {}, "name the CSS file after ':'"),
        (("a.scss:a.scss",), {}, "overwritten by its own CSS"),
        (("a.scss",), {"embed_sources": True}, "add --source-map or --embed-source-map"),
        (("a.scss",), {"embed_source_map": True, "source_map": False}, "--no-source-map"),
    ],
)
def test_outputs_and_map_flags_are_checked(
    tmp_path: Path, entries: tuple[str, ...], flags: dict[str, Any], message: str
) -> None:
    for name in ("a.scss", "b.scss"):
        (tmp_path / name).write_text(".a { b: c; }\n")
    with pytest.raises(UsageError, match=message):
        resolve(tmp_path, {"entries": entries, "project": "p", **flags})
