"""Import resolution for the libsass engine: every ``@import`` is resolved inside the bundle.

libsass left alone resolves imports on the worker's filesystem (``@import "/etc/hostname"``
reads that file and prints part of it in its error). The engine child therefore passes a
custom importer to ``sass.compile`` that answers every import itself, using the functions
here. They emulate libsass 3.6 (verified by experiment, see ``tests/test_resolver.py``):

* bases, first match wins: the importing file's directory, then the bundle root (libsass
  always searches its working directory first, and the child runs in the root), then each
  load path;
* candidates for ``@import "a/b"`` in one base: ``a/b``, ``a/_b``, ``a/_b.scss``,
  ``a/_b.sass``, ``a/_b.css``, ``a/b.scss``, ``a/b.sass``, ``a/b.css``; only if none exists
  (and the name does not end with an extension): ``a/b/_index.{scss,sass,css}`` then
  ``a/b/index.{scss,sass,css}``. Two or more hits in one base are an ambiguity error;
* plain CSS imports, which libsass emits as CSS and never reads: a URL ``scheme://``,
  ``//host``, a name ending in ``.css``, any import of a statement with media queries.

Deviations, all on the safe side: paths are normalised lexically (``a/../b`` is ``b`` even
when ``a`` is a symlink); a base whose join leaves the root is skipped, so the result never
depends on the worker's files; absolute paths, ``file:`` URLs, ``..`` escapes and symlinks
resolving outside the root are refused. This module only reads the bundle; it is imported
by the engine child, so it uses the standard library only.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

EXTENSIONS = (".scss", ".sass", ".css")
#: libsass's test for "a protocol": a CSS identifier then ``://``; this is a strict subset.
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*://")
_FILE_SCHEME_RE = re.compile(r"^\s*file:", re.IGNORECASE)
_MODULE_RULE_RE = re.compile(r"^([ \t]*)@(use|forward)\b", re.MULTILINE)
_IMPORT_RE = re.compile(r"@import\b")
_ITEM_RE = re.compile(r"""\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|url\([^)]*\))""")
_COMMA_RE = re.compile(r"\s*,")
_REST_RE = re.compile(r"[^;{}]*")
_COMMENT_RE = re.compile(r"/\*.*?(?:\*/|$)|//[^\n]*", re.DOTALL)
_POSITION_RE = re.compile(
    r"^\s*on line (\d+):(\d+) of (.*?)(?:, in (?:mixin|function) .*)?$", re.MULTILINE
)
_ERROR_HEAD_RE = re.compile(r"^(?:Internal )?Error:\s*")


class ImportRefused(Exception):
    """An import the bundle cannot satisfy; ``message`` is safe to show the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Resolved:
    """A file of the bundle an import resolved to."""

    path: str  # absolute, lexically normalised, inside the root (what libsass is told)
    rel: str  # relative to the root, POSIX

    @property
    def indented(self) -> bool:
        """True for ``.sass`` files, which libsass must read itself to convert them."""
        return self.path.endswith(".sass")


def is_inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` when inside it, else its base name (never a worker path)."""
    if is_inside(path, root):  # both normalised: a prefix cut is relpath
        return "." if path == root else path[len(root.rstrip("/")) + 1 :]
    return posixpath.basename(path) or "?"


def is_plain_css(target: str) -> bool:
    """True when libsass turns ``@import "target"`` into a CSS ``@import`` without file access."""
    if target.startswith("//"):
        return True
    match = _SCHEME_RE.match(target)
    if match and target[: match.end() - 3] != "file":
        return True
    return len(target) > 4 and target.endswith(".css")


def is_refused_scheme(target: str) -> bool:
    """``file:`` URLs name the worker's files: always refused."""
    return bool(_FILE_SCHEME_RE.match(target))


def candidates(target: str) -> tuple[list[str], list[str]]:
    """Relative paths libsass tries for ``target`` in one base: (files, index files)."""
    directory, name = posixpath.split(target)
    if not name:
        return [], []
    names = [name, "_" + name]
    names += ["_" + name + ext for ext in EXTENSIONS]
    names += [name + ext for ext in EXTENSIONS]
    files = [_join(directory, n) for n in names]
    index: list[str] = []
    if not name.endswith(EXTENSIONS):
        folder = _join(directory, name)
        for prefix in ("_index", "index"):
            index += [_join(folder, prefix + ext) for ext in EXTENSIONS]
    return files, index


def _join(directory: str, name: str) -> str:
    """``posixpath.join(directory, name)`` for a ``name`` with no leading slash, without its
    generic checks: it runs for each of the up to 14 candidates of every import."""
    return directory + name if not directory or directory.endswith("/") else f"{directory}/{name}"


def _is_file(path: str) -> bool:
    """libsass's ``file_exists``: stat succeeds (following links) and it is no directory."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class _Listing:
    """One directory's entries: name -> True for a non-directory, False for a directory,
    None for a link (answered by stat); and the case-folded names."""

    kinds: dict[str, bool | None]
    folded: frozenset[str]


class Listings:
    """libsass's ``file_exists`` for one compile, from one ``scandir`` per directory.

    A candidate lookup stats up to 14 paths per base; Bootstrap's 87 imports make ~800
    stats per compile. The bundle does not change during a compile, so each directory
    is listed once. Symlinks, and directories that cannot be listed, are answered
    with a stat, as before.
    """

    def __init__(self) -> None:
        #: Directory -> its listing; None when it could not be listed (stat decides).
        self._dirs: dict[str, _Listing | None] = {}
        self._real_dirs: dict[str, str] = {}

    def real(self, path: str) -> str:
        """``os.path.realpath(path)``, resolving each directory once per compile."""
        directory, name = posixpath.split(path)
        listing = self._dirs.get(directory)
        if not name or listing is None or listing.kinds.get(name) is None:
            return os.path.realpath(path)  # a link, or not listed: resolved in full
        if directory not in self._real_dirs:
            self._real_dirs[directory] = os.path.realpath(directory)
        return posixpath.join(self._real_dirs[directory], name)

    def is_file(self, path: str) -> bool:
        cut = path.rfind("/") + 1  # posixpath.split, inline: this runs ~14 times an import
        directory, name = path[:cut], path[cut:]
        if directory and directory != "/" * len(directory):
            directory = directory.rstrip("/")
        if directory not in self._dirs:
            self._dirs[directory] = self._list(directory)
        listing = self._dirs[directory]
        if listing is None:
            return _is_file(path)
        if name not in listing.kinds:
            # Absent, unless the filesystem ignores case (macOS): then stat decides.
            return name.casefold() in listing.folded and _is_file(path)
        kind = listing.kinds[name]
        return _is_file(path) if kind is None else kind

    @staticmethod
    def _list(directory: str) -> _Listing | None:
        try:
            with os.scandir(directory) as it:
                kinds = {
                    e.name: None if e.is_symlink() else not e.is_dir(follow_symlinks=False)
                    for e in it
                }
        except FileNotFoundError:
            return _Listing({}, frozenset())  # nothing below it exists (stat agrees)
        except (OSError, ValueError):
            return None
        if not os.access(directory, os.X_OK):
            return None  # listable but not searchable: stat fails where a listing would not
        return _Listing(kinds, frozenset(name.casefold() for name in kinds))


def _pick(found: list[str], target: str, root: str, real: Callable[[str], str]) -> str:
    for path in found:
        if not is_inside(real(path), root):
            raise ImportRefused(f'import "{target}" is outside the bundle')
    if len(found) > 1:
        shown = ", ".join(relative(p, root) for p in found)
        raise ImportRefused(
            f"It's not clear which file to import for '@import \"{target}\"'. "
            f"Candidates: {shown}. Please delete or rename all but one of these files."
        )
    if not stat.S_ISREG(os.stat(found[0]).st_mode):
        raise ImportRefused(f'import "{target}" is not a regular file')
    return found[0]


def resolve(
    target: str,
    importer_dir: str,
    root: str,
    load_dirs: tuple[str, ...],
    listings: Listings | None = None,
) -> Resolved:
    """The bundle file ``@import "target"`` names, or ImportRefused with a safe message.

    ``root`` is the real path of the bundle root; ``importer_dir`` and ``load_dirs`` are
    absolute paths below it. A compile passes its :class:`Listings`, which answer
    libsass's ``file_exists`` and resolve links with fewer system calls.
    """
    is_file = _is_file if listings is None else listings.is_file
    real = os.path.realpath if listings is None else listings.real
    if "\x00" in target or target.startswith("/") or is_refused_scheme(target):
        raise ImportRefused(f'import "{target}" is outside the bundle')
    files, index = candidates(target)
    escaped = False
    bases: list[str] = []
    for base in (importer_dir, root, *load_dirs):
        if base not in bases:
            bases.append(base)
    # A target of plain name parts joins a normalised base by concatenation.
    tame = all(part not in ("", ".", "..") for part in target.split("/"))
    for base in bases:
        if not is_inside(posixpath.normpath(posixpath.join(base, target)), root):
            escaped = True
            continue
        plain = tame and base != "/" and posixpath.normpath(base) == base
        for group in (files, index):
            found = [
                p
                for p in (
                    f"{base}/{c}" if plain else posixpath.normpath(posixpath.join(base, c))
                    for c in group
                )
                if is_file(p)
            ]
            if found:
                path = _pick(found, target, root, real)
                return Resolved(path, relative(path, root))
    if escaped:
        raise ImportRefused(f'import "{target}" is outside the bundle')
    raise ImportRefused(f"File to import not found or unreadable: {target}.")


def check_native_lookup(target: str, bases: tuple[str, ...], root: str) -> None:
    """Raise ImportRefused unless libsass's own lookup of ``target`` can only meet bundle files.

    Used where the importer must decline (a media-query import, which libsass emits as CSS
    without any lookup) as a second line of defence: the target must be a tame relative
    path, and every file libsass could stat for it must resolve inside the root.
    """
    parts = target.split("/")
    if (
        not target
        or target.startswith("/")
        or "\\" in target
        or "\x00" in target
        or ".." in parts
        or is_refused_scheme(target)
    ):
        raise ImportRefused(
            f'import "{target}" with media queries must be a URL or a relative path '
            "inside the bundle"
        )
    files, index = candidates(target)
    for base in bases:
        for cand in files + index:
            path = posixpath.join(base, cand)
            if os.path.exists(path) and not is_inside(os.path.realpath(path), root):
                raise ImportRefused(f'import "{target}" is outside the bundle')


def import_statements(source: str) -> list[tuple[list[str], bool]]:
    """The ``@import`` statements of an SCSS source: (quoted targets, has media queries).

    A heuristic scan (comments are not parsed); it only decides whether an import is a
    plain CSS import with media queries, and :func:`check_native_lookup` guards that path.
    """
    statements: list[tuple[list[str], bool]] = []
    for match in _IMPORT_RE.finditer(source):
        pos = match.end()
        targets: list[str] = []
        while True:
            item = _ITEM_RE.match(source, pos)
            if item is None:
                break
            token = item.group(1)
            if token[0] in "\"'":
                targets.append(token[1:-1])
            pos = item.end()
            comma = _COMMA_RE.match(source, pos)
            if comma is None:
                break
            pos = comma.end()
        rest = _REST_RE.match(source, pos)
        queries = _COMMENT_RE.sub("", rest.group(0) if rest else "").strip()
        statements.append((targets, bool(queries)))
    return statements


def has_media_queries(source: str, target: str) -> bool:
    """True when every statement importing ``target`` in ``source`` carries media queries."""
    return media_queries_only(import_statements(source), target)


def media_queries_only(statements: list[tuple[list[str], bool]], target: str) -> bool:
    """:func:`has_media_queries` on a source's :func:`import_statements`, parsed once."""
    flags = [queries for targets, queries in statements if target in targets]
    return bool(flags) and all(flags)


def find_module_rule(source: str) -> tuple[int, int, str] | None:
    """(line, column, rule) of the first line-leading ``@use``/``@forward``, else None."""
    if "@use" not in source and "@forward" not in source:  # the common case, at C speed
        return None
    match = _MODULE_RULE_RE.search(source)
    if match is None:
        return None
    line = source.count("\n", 0, match.start()) + 1
    return line, len(match.group(1)) + 1, match.group(2)


def scrub(text: str, roots: tuple[str, ...]) -> str:
    """``text`` with every given root path removed (paths below it become relative)."""
    for root in sorted({r.rstrip("/") for r in roots if r.rstrip("/")}, key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root, ".")
    return text


def bound_text(text: str, limit: int, what: str = "text") -> str:
    """``text`` cut so that its UTF-8 form, with a note when cut, is at most ``limit`` bytes."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    note = f"\n[{what} truncated at {limit} bytes (SCSSQ_MAX_MESSAGE_BYTES)]"
    keep = max(0, limit - len(note.encode("utf-8")))
    return data[:keep].decode("utf-8", "ignore") + note


def format_libsass_error(message: str, root: str, fallback_file: str) -> str:
    """A libsass error as ``path:line:col: message``, the path relative to ``root``."""
    position = _POSITION_RE.search(message)
    head = message[: position.start()] if position else message.split("\n>>", 1)[0]
    text = " ".join(part.strip() for part in _ERROR_HEAD_RE.sub("", head.strip()).splitlines())
    text = " ".join(text.split()) or "compile failed"
    if position is None:
        return f"{fallback_file}: {text}"
    line, col, path = position.group(1), position.group(2), position.group(3).strip()
    if path.startswith("/"):
        path = relative(posixpath.normpath(path), root)
    elif path.startswith("../"):
        path = relative(posixpath.normpath(posixpath.join(root, path)), root)
    return f"{path}:{line}:{col}: {text}"


def error_position(message: str) -> tuple[int, int] | None:
    """(line, column) of the first ``on line L:C of FILE`` in a libsass error."""
    position = _POSITION_RE.search(message)
    if position is None:
        return None
    return int(position.group(1)), int(position.group(2))
