"""Unit tests of the import resolution that emulates libsass inside the bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sass

from compiler_tasks.engines import resolver
from compiler_tasks.engines.resolver import ImportRefused


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def resolve(root: Path, target: str, importer: str = "", load: tuple[str, ...] = ()) -> str:
    base = str(root / importer) if importer else str(root)
    found = resolver.resolve(target, base, str(root), tuple(str(root / lp) for lp in load))
    assert found.path == str(root / found.rel)
    return found.rel


def native(root: Path, source: str, load: tuple[str, ...] = ()) -> str:
    """What libsass itself imports (run in the root, as the engine child is)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        (root / "__probe.scss").write_text(source)
        css: str = sass.compile(
            filename=str(root / "__probe.scss"),
            include_paths=[str(root / lp) for lp in load],
            output_style="compressed",
        )
        return css
    finally:
        (root / "__probe.scss").unlink()
        os.chdir(cwd)


def test_candidates_follow_libsass_order() -> None:
    files, index = resolver.candidates("a/b")
    assert files == [
        "a/b",
        "a/_b",
        "a/_b.scss",
        "a/_b.sass",
        "a/_b.css",
        "a/b.scss",
        "a/b.sass",
        "a/b.css",
    ]
    assert index[:3] == ["a/b/_index.scss", "a/b/_index.sass", "a/b/_index.css"]
    assert index[3:] == ["a/b/index.scss", "a/b/index.sass", "a/b/index.css"]
    assert resolver.candidates("b.scss")[1] == []  # an explicit extension never means a folder
    assert resolver.candidates("a/") == ([], [])


@pytest.mark.parametrize(
    ("target", "plain"),
    [
        ("foo.css", True),
        ("a/b.css", True),
        ("http://x/y", True),
        ("https://x/y.css", True),
        ("a1-b_c://x", True),
        ("FILE://x", True),  # libsass compares the protocol with "file" case-sensitively
        ("//cdn/x", True),
        (".css", False),
        ("foo", False),
        ("foo.CSS", False),
        ("svn+ssh://x", False),  # not a libsass protocol: it looks for a file
        ("1a://x", False),
        ("file:///etc/hostname", False),
    ],
)
def test_plain_css_imports(target: str, plain: bool) -> None:
    assert resolver.is_plain_css(target) is plain


def test_refused_schemes() -> None:
    assert resolver.is_refused_scheme("file:///etc/passwd")
    assert resolver.is_refused_scheme("FILE:x")
    assert not resolver.is_refused_scheme("files/x")


def test_resolution_matches_libsass(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a/_b.scss": ".ab{x:1}",
            "idx/_index.scss": ".idx{x:1}",
            "idx2/index.sass": ".idx2\n  x: 1\n",
            "plain.css": ".plain{x:1}",
            "noext": ".noext{x:1}",
            "q.scss": ".q{x:1}",
            "q/_index.scss": ".qidx{x:1}",
            "lp/_where.scss": ".lp{x:1}",
            "_where.scss": ".root{x:1}",
            "sub/_near.scss": ".near{x:1}",
            "sub/_where.scss": ".sub{x:1}",
        },
    )
    cases = {
        "a/b": "a/_b.scss",
        "a/b.scss": "a/_b.scss",
        "a/_b.scss": "a/_b.scss",
        "idx": "idx/_index.scss",
        "idx2": "idx2/index.sass",
        "plain": "plain.css",
        "noext": "noext",
        "./noext": "noext",
        "q": "q.scss",  # index files only when nothing else matched
        "where": "_where.scss",  # the root (libsass's cwd) comes before load paths
    }
    for target, rel in cases.items():
        assert resolve(root, target, load=("lp",)) == rel
    assert resolve(root, "where", importer="sub", load=("lp",)) == "sub/_where.scss"
    assert resolve(root, "near", importer="sub") == "sub/_near.scss"
    assert resolve(root, "../noext", importer="sub") == "noext"
    assert resolve(root, "sub/../noext") == "noext"
    # libsass agrees on the interesting ones
    assert native(root, '@import "q";') == ".q{x:1}\n"
    assert native(root, '@import "where";', ("lp",)) == ".root{x:1}\n"
    assert native(root, '@import "idx2";') == ".idx2{x:1}\n"


def test_load_path_used_when_nothing_nearer(tmp_path: Path) -> None:
    root = write(tmp_path, {"lp/_only.scss": "", "lp2/_two.scss": ""})
    assert resolve(root, "only", load=("lp", "lp2")) == "lp/_only.scss"
    assert resolve(root, "two", load=("lp", "lp2")) == "lp2/_two.scss"


def test_ambiguity_like_libsass(tmp_path: Path) -> None:
    root = write(tmp_path, {"x/_a.scss": "", "x/a.scss": "", "y/_b.scss": "", "y/_b.css": ""})
    for target in ("x/a", "x/a.scss", "y/b"):
        with pytest.raises(ImportRefused, match="It's not clear which file to import"):
            resolve(root, target)
        with pytest.raises(sass.CompileError, match="It's not clear which file to import"):
            native(root, f'@import "{target}";')


def test_not_found(tmp_path: Path) -> None:
    write(tmp_path, {"dir/.keep": ""})
    with pytest.raises(ImportRefused, match=r"^File to import not found or unreadable: nope\.$"):
        resolve(tmp_path, "nope")
    with pytest.raises(ImportRefused, match="not found"):
        resolve(tmp_path, "dir")  # a folder without an index is not a file


def test_refusals(tmp_path: Path) -> None:
    root = write(tmp_path / "root", {"sub/_in.scss": ""})
    write(tmp_path, {"_secret.scss": "", "outside/_x.scss": ""})
    (root / "_link.scss").symlink_to(tmp_path / "_secret.scss")
    (root / "ext").symlink_to(tmp_path / "outside")
    os.mkfifo(root / "_fifo.scss")
    for target in (
        str(tmp_path / "_secret"),
        "/etc/hostname",
        "../_secret",
        "sub/../../_secret",
        "link",
        "ext/x",
        "file:///etc/hostname",
        "file:_secret",
        "a\x00b",
    ):
        with pytest.raises(ImportRefused, match="outside the bundle"):
            resolve(root, target)
    with pytest.raises(ImportRefused, match="not a regular file"):
        resolve(root, "fifo")
    assert resolve(root, "../in", importer="sub/deeper") == "sub/_in.scss"


def test_escaping_base_is_skipped_not_searched(tmp_path: Path) -> None:
    # from the root, "../x" leaves the bundle; from the load path it stays inside
    root = write(tmp_path / "root", {"lp/in/_x.scss": "", "lp/_x.scss": ""})
    write(tmp_path, {"_x.scss": ""})
    assert resolve(root, "../_x", load=("lp/in",)) == "lp/_x.scss"


def test_check_native_lookup(tmp_path: Path) -> None:
    root = write(tmp_path / "root", {"_in.scss": ""})
    write(tmp_path, {"_out.scss": ""})
    (root / "_link.scss").symlink_to(tmp_path / "_out.scss")
    bases = (str(root),)
    resolver.check_native_lookup("in", bases, str(root))
    resolver.check_native_lookup("nothing-here", bases, str(root))
    with pytest.raises(ImportRefused, match="outside the bundle"):
        resolver.check_native_lookup("link", bases, str(root))
    for target in ("/etc/hostname", "../out", "a/../in", "a\\b", "file:x", ""):
        with pytest.raises(ImportRefused, match="must be a URL or a relative path"):
            resolver.check_native_lookup(target, bases, str(root))


def test_import_statements_and_media_queries() -> None:
    source = (
        '@import "a", "b" screen and (min-width: 10px);\n'
        "@import 'c';\n"
        '@import url(d.css), "e" /* comment */;\n'
        '.x { @import "f" }\n'
        '@import "g" print;\n@import "g";\n'
    )
    assert resolver.import_statements(source) == [
        (["a", "b"], True),
        (["c"], False),
        (["e"], False),
        (["f"], False),
        (["g"], True),
        (["g"], False),
    ]
    assert resolver.has_media_queries(source, "a")
    assert not resolver.has_media_queries(source, "c")
    assert not resolver.has_media_queries(source, "g")  # mixed: treated as a plain import
    assert not resolver.has_media_queries(source, "zzz")


def test_find_module_rule() -> None:
    assert resolver.find_module_rule("a { b: c }\n  @use 'sass:math';") == (2, 3, "use")
    assert resolver.find_module_rule("@forward 'x';") == (1, 1, "forward")
    assert resolver.find_module_rule("// @use 'x';\n.a { @used: 1 }") is None


def test_scrub_and_bound() -> None:
    text = "/w/root/a.scss:1 DEBUG: in /w/root and /w/rootx"
    assert resolver.scrub(text, ("/w/root",)) == "a.scss:1 DEBUG: in . and .x"
    assert resolver.scrub("/r/real/x /alias/x", ("/r/real", "/alias/")) == "x x"
    assert resolver.bound_text("short", 256) == "short"
    long = resolver.bound_text("é" * 1000, 256, "warnings")
    assert len(long.encode()) <= 256 and long.endswith("(SCSSQ_MAX_MESSAGE_BYTES)]")


def test_format_libsass_error() -> None:
    message = (
        'Error: Undefined variable: "$x".\n'
        "        on line 3:8 of scss/_vars.scss\n"
        "        from line 1:9 of main.scss\n"
        ">> $y: $x;\n   -------^\n"
    )
    assert resolver.format_libsass_error(message, "/w/root", "main.scss") == (
        'scss/_vars.scss:3:8: Undefined variable: "$x".'
    )
    ambiguous = (
        "Error: It's not clear which file to import for '@import \"x\"'.\n"
        "       Candidates:\n         _x.scss\n         x.scss\n"
        "       Please delete or rename all but one of these files.\n"
        "        on line 1:1 of /w/root/a/m.scss, in mixin `m`\n>> @import"
    )
    assert resolver.format_libsass_error(ambiguous, "/w/root", "e.scss") == (
        "a/m.scss:1:1: It's not clear which file to import for '@import \"x\"'. "
        "Candidates: _x.scss x.scss Please delete or rename all but one of these files."
    )
    oom = "Internal Error: Unable to allocate memory: std::bad_alloc\n"
    assert resolver.format_libsass_error(oom, "/w/root", "e.scss") == (
        "e.scss: Unable to allocate memory: std::bad_alloc"
    )
    assert resolver.error_position(message) == (3, 8)
    assert resolver.error_position("Error: x") is None


def test_listings_answer_like_stat_and_realpath(tmp_path: Path) -> None:
    """One scandir per directory must give the answers of a stat and a realpath per path:
    files, directories, links to either, broken links, links out of the root, absences."""
    root = write(tmp_path / "root", {"a/_x.scss": "", "a/b/index.scss": "", "c.css": ""})
    write(tmp_path / "outside", {"secret.scss": ""})
    (root / "a" / "link.scss").symlink_to(root / "a" / "_x.scss")
    (root / "a" / "dirlink").symlink_to(root / "a" / "b")
    (root / "a" / "broken.scss").symlink_to(root / "gone.scss")
    (root / "a" / "out.scss").symlink_to(tmp_path / "outside" / "secret.scss")
    (root / "up").symlink_to(tmp_path / "outside")
    names = ["_x.scss", "link.scss", "dirlink", "broken.scss", "out.scss", "b", "none.scss"]
    paths = [str(root / "a" / n) for n in names]
    paths += [str(root / "a" / "dirlink" / "index.scss"), str(root / "up" / "secret.scss")]
    paths += [str(root / "c.css" / "x.scss"), str(root / "missing" / "x.scss"), str(root)]
    listings = resolver.Listings()
    for path in paths:
        assert listings.is_file(path) == resolver._is_file(path), path
        assert listings.real(path) == os.path.realpath(path), path
    # and resolution through them is unchanged, link refusals included
    for target, importer in (("x", "a"), ("b", "a"), ("out", "a"), ("up/secret", "")):
        base = str(root / importer) if importer else str(root)
        outcomes = []
        for fs in (None, resolver.Listings()):
            try:
                outcomes.append(resolver.resolve(target, base, str(root), (), fs).rel)
            except ImportRefused as e:
                outcomes.append(e.message)
        assert outcomes[0] == outcomes[1], (target, outcomes)


def test_listings_defer_to_stat_for_case_variants_and_unsearchable_folders(
    tmp_path: Path,
) -> None:
    """A name that differs only in case is stat'ed (a case-insensitive filesystem finds it,
    this one does not); a folder that can be listed but not searched is never listed."""
    root = write(tmp_path, {"lib/_colors.scss": "", "locked/_x.scss": ""})
    listings = resolver.Listings()
    upper = str(root / "lib" / "_Colors.scss")
    assert listings.is_file(upper) == resolver._is_file(upper) == os.path.exists(upper)
    os.chmod(root / "locked", 0o600)  # r without x
    try:
        locked = str(root / "locked" / "_x.scss")
        assert listings.is_file(locked) == resolver._is_file(locked)
        assert listings.real(locked) == os.path.realpath(locked)
    finally:
        os.chmod(root / "locked", 0o700)
