"""The bundle rule: every file a compile can load is bundled, and what it cannot is not.

Each way libsass and Dart Sass load a file is compiled twice with the real engine, from
the whole tree and from the bundle alone, and for Dart Sass also with the ``sass`` CLI
on the whole tree: the three agree only if the bundle misses nothing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from compiler_tasks.bundle.collect import collect, write_tree
from compiler_tasks.bundle.rule import Rule, check_patterns
from compiler_tasks.engines.base import EngineRequest
from compiler_tasks.engines.registry import open_engine
from compiler_tasks.errors import UsageError
from compiler_tasks.settings import Settings
from tests.support.sass_cli import sass_cli

LIMITS = {"max_bytes": 1 << 20, "max_files": 100}

#: Every way both engines load a file, plus a load path and a link up through a name.
COMMON = {
    "scss/_partial.scss": ".partial { a: b; }\n",
    "scss/dir/_index.scss": ".index { a: b; }\n",
    "scss/_indented.sass": ".indented\n  a: b\n",
    "scss/imported.css": ".imported-css { a: b; }\n",
    "vendor/_lib.scss": ".lib { a: b; }\n",
    "node_modules/kit/_kit.scss": ".kit { a: b; }\n",
    ".styles/_hidden.scss": ".hidden { a: b; }\n",
}
LOADS = (
    '@import "partial";\n@import "dir";\n@import "indented";\n@import "imported";\n'
    '@import "lib";\n@import "../node_modules/kit/kit";\n@import "../.styles/hidden";\n'
)
#: Only Dart Sass: the module system and meta.load-css of a plain .css file.
DART = {
    "scss/_used.scss": '@forward "forwarded";\n',
    "scss/_forwarded.scss": "$c: red;\n",
    "scss/plain.css": ".plain { a: b; }\n",
    "scss/themes/dark.css": ".dark { a: b; }\n",
}
DART_MAIN = (
    '@use "sass:meta";\n@use "used";\n'
    + LOADS
    + '.used { c: used.$c; }\n@include meta.load-css("plain");\n'
    + '$theme: "dark";\n.t { @include meta.load-css("themes/#{$theme}"); }\n'
)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _compile(engine_name: str, root: Path, load_paths: tuple[str, ...]) -> bytes:
    settings = dataclasses.replace(Settings(), compile_timeout=30.0)
    engine = open_engine(settings, engine_name)
    try:
        request = EngineRequest(root=root, entry="scss/main.scss", load_paths=load_paths)
        return engine.compile(request, deadline=time.monotonic() + 30).css
    finally:
        engine.close()


@pytest.mark.parametrize("engine", ["libsass", "dart-sass"])
def test_every_way_of_loading_a_file_is_bundled(engine: str, tmp_path: Path) -> None:
    files = {**COMMON, "scss/main.scss": LOADS}
    if engine == "dart-sass":
        files = {**files, **DART, "scss/main.scss": DART_MAIN}
    src = _tree(tmp_path / "src", {**files, "scss/unrelated.css": ".no { a: b; }\n"})
    rule = Rule(entries=("scss/main.scss",), load_paths=("vendor",))
    bundle = collect(src, exclude=[], rule=rule, **LIMITS)
    # Named by nothing; but a computed load-css URL (the Dart Sass case) may name any .css.
    assert ("scss/unrelated.css" in bundle.files) == (engine == "dart-sass")
    write_tree(bundle, tmp_path / "bundle")
    css = _compile(engine, tmp_path / "bundle", ("vendor",))
    assert css == _compile(engine, src, ("vendor",))
    for name in ("partial", "index", "indented", "imported-css", "lib", "kit", "hidden"):
        assert f".{name} {{".encode() in css
    if engine == "dart-sass":
        assert b".plain {" in css and b".t .dark {" in css
        assert css == sass_cli(src, "scss/main.scss", load_paths=("vendor",)).css


def test_default_excludes_and_patterns(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "scss/main.scss": '@import "a";\n',
            "scss/_a.scss": "",
            "node_modules/x/_x.scss": "",
            "scss/node_modules/y.scss": "",
            ".cache/c.scss": "",
            "tests/fixtures/f.scss": "",
            "legacy/old.min.scss": "",
            "legacy/keep.scss": "",
            "vendor/node_modules/z/_z.scss": "",
        },
    )
    rule = Rule(("tests", "*.min.scss"), ("scss/main.scss",), ("vendor/node_modules",))
    bundle = collect(src, exclude=[], rule=rule, **LIMITS)
    assert sorted(bundle.files) == [
        "legacy/keep.scss",
        "scss/_a.scss",
        "scss/main.scss",
        "vendor/node_modules/z/_z.scss",
    ]
    with pytest.raises(UsageError, match=r"entry 'scss/main\.scss' is excluded by .* 'scss'"):
        collect(src, exclude=[], rule=Rule(("scss",), ("scss/main.scss",)), **LIMITS)


def test_pkg_urls_keep_node_modules(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"main.scss": '@use "pkg:kit";\n', "node_modules/kit/_index.scss": ""})
    assert "node_modules/kit/_index.scss" in collect(src, exclude=[], **LIMITS).files


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/abs/dir", "is absolute"),
        ("../up", "leaves --src"),
        ("a\\b", "holds a backslash"),
        ("./", "is empty"),
        (7, "is not a string"),
    ],
)
def test_bad_patterns_name_the_value_and_where_it_came_from(value: object, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_patterns([value], "scssq.toml: exclude")
    assert str(caught.value).startswith(f"scssq.toml: exclude {value!r} {problem}")
    assert check_patterns(["./tests//fixtures/"], "--exclude") == ("tests/fixtures",)
