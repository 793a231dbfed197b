"""Source maps where the CSS goes (``--entry in:out``) and Dart Sass's embedding flags,
compared byte for byte with the ``sass`` CLI writing the same output; the compile key
holds where the CSS goes only when a source map depends on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.targets import places
from compiler_tasks.engines.base import EngineOutput, request_for
from compiler_tasks.engines.dart.engine import DartSassEngine
from compiler_tasks.engines.libsass.process import EngineProcess
from compiler_tasks.errors import InvalidInput
from compiler_tasks.keys import CompileOptions, compile_key
from compiler_tasks.settings import Settings
from tests.support.sass_cli import sass_run
from tests.test_fleet import make_src

ENTRY = "scss/main.scss"
FILES = {
    ENTRY: '@use "theme";\n.a { color: theme.$c; content: "ü"; }\n',
    "vendor/_theme.scss": "$c: red;\n",
}
#: (where the CSS goes, relative to the working directory, sass flags, scssq options)
CASES = [
    ("dist/main.css", ("--embed-sources",), {}),
    ("dist/main.css", ("--no-embed-sources",), {"embed_sources": False}),
    ("dist/a/b/site.css", ("--embed-sources",), {}),
    ("../public/main.css", ("--no-embed-sources",), {"embed_sources": False}),
    ("dist/x.css", ("--embed-source-map", "--no-embed-sources"), {"embed_source_map": True,
                                                                 "embed_sources": False}),
    ("dist/x.css", ("--embed-source-map", "--embed-sources", "-s", "compressed"),
     {"embed_source_map": True, "style": "compressed"}),
    ("scss/main.css", ("--embed-sources",), {}),  # beside the entry: what engines write
]  # fmt: skip


@pytest.fixture(scope="module")
def dart() -> Iterator[DartSassEngine]:
    with DartSassEngine(Settings()) as engine:
        yield engine


def make_root(tmp: Path) -> Path:
    return make_src(tmp, FILES, "proj")


def compile_at(runner: object, root: Path, target: str, **options: object) -> EngineOutput:
    where = (root / target).resolve()
    opts = CompileOptions(
        entries=(ENTRY,),
        load_paths=("vendor",),
        source_map=True,
        places=places({ENTRY: where}, root),
        **options,  # type: ignore[arg-type]
    )
    request = request_for(root, ENTRY, opts)
    return runner.compile(request, deadline=time.monotonic() + 30)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("target", "flags", "options"), CASES)
def test_dart_sass_output_equals_the_cli_writing_there(
    dart: DartSassEngine, tmp_path: Path, target: str, flags: tuple[str, ...], options: dict
) -> None:
    root = make_root(tmp_path)
    sass_run(root, "-I", "vendor", *flags, f"{ENTRY}:{target}")
    css_file = (root / target).resolve()
    map_file = css_file.with_name(css_file.name + ".map")
    out = compile_at(dart, root, target, engine="dart-sass", **options)
    assert out.css == css_file.read_bytes()
    if options.get("embed_source_map"):
        assert out.source_map is None and not map_file.exists()
        assert b"sourceMappingURL=data:application/json;charset=utf-8," in out.css
    else:
        assert out.source_map == map_file.read_bytes()
        sources = json.loads(out.source_map)["sources"]
        assert all((css_file.parent / s).resolve().is_file() for s in sources), sources


def test_libsass_maps_name_the_css_and_sources_where_it_goes(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / ENTRY).write_text('@import "theme";\n.a { color: $c; }\n')
    with EngineProcess(Settings()) as engine:
        out = compile_at(engine, root, "../public/site.css", embed_sources=False)
        embedded = compile_at(engine, root, "dist/x.css", embed_source_map=True)
    assert out.css.rstrip().endswith(b"/*# sourceMappingURL=site.css.map */")
    assert out.source_map is not None
    smap = json.loads(out.source_map)
    assert smap["file"] == "site.css" and "sourcesContent" not in smap
    assert smap["sources"] == ["../proj/scss/main.scss", "../proj/vendor/_theme.scss"]
    assert embedded.source_map is None
    assert b"/*# sourceMappingURL=data:application/json;charset=utf-8,%7B" in embedded.css


def test_the_key_holds_where_the_css_goes_only_with_a_source_map(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    dist = places({ENTRY: root / "dist" / "main.css"}, root)
    public = places({ENTRY: root / "public" / "main.css"}, root)
    beside = places({ENTRY: root / "scss" / "main.css"}, root)

    def key(**kw: object) -> str:
        return compile_key("d" * 64, CompileOptions(entries=(ENTRY,), **kw), "v")  # type: ignore[arg-type]

    assert key(places=dist) == key(places=public) == key()  # the CSS is the same
    assert key(source_map=True, places=dist) != key(source_map=True, places=public)
    assert key(source_map=True, places=beside) == key(source_map=True)  # keys from before
    assert key(source_map=True, embed_sources=False) != key(source_map=True)
    assert key(source_map=True, embed_source_map=True) != key(source_map=True)
    opts = CompileOptions(entries=(ENTRY,), source_map=True, places=dist, embed_sources=False)
    assert CompileOptions.from_dict(opts.as_dict()) == opts
    with pytest.raises(InvalidInput, match="turn source maps on"):
        CompileOptions(entries=(ENTRY,), embed_source_map=True)
