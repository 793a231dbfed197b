"""Which files under ``--src`` a bundle holds: the rule (:mod:`.collect` walks and reads).

The bundle is every ``.scss``/``.sass`` file under ``--src``, and every ``.css`` file a
stylesheet may load, minus what is excluded:

* never: ``.git``/``.hg``/``.svn``, the ``--out`` folder, and what an ``exclude``
  pattern (``--exclude``, ``scssq.toml``'s ``exclude``) matches;
* by default: folders named ``node_modules`` and hidden folders (``.cache``). Such a
  folder is bundled after all when an entry or a load path lies in it, or when a
  bundled stylesheet names it (``@import "../node_modules/x"``; for ``node_modules``
  also any ``pkg:`` URL): a compile can load its files then.
* a ``.css`` file is bundled when a bundled stylesheet names its base name in any
  word (``@use "plain"``, ``meta.load-css("dir/plain.css")``, ``$f: "plain"``), and
  every ``.css`` file is when a stylesheet calls ``load-css`` with anything but a
  quoted literal (a computed URL may name any file).

Why a rule on names and not each entry's import closure: a closure exact for both
engines would have to evaluate ``meta.load-css()`` (its URL is computed at run time)
and follow both engines' resolution orders; one missed file fails the compile in the
fleet while it succeeds on the user's machine. A word match can only bundle more than
a compile loads, never less.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..errors import UsageError

#: Folders never bundled: version control metadata.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
NODE_MODULES = "node_modules"
#: Maximal runs of characters a file or folder name is made of, in a stylesheet's text.
_WORD_RE = re.compile(rb"[A-Za-z0-9_.@~+-]+")
#: ``load-css(`` whose first argument is not one quoted literal without interpolation.
_DYNAMIC_LOAD_RE = re.compile(rb"load-css\(\s*(?!([\"'])[^\"'#\n]*\1\s*[,)])")


def check_patterns(values: object, source: str) -> tuple[str, ...]:
    """``exclude`` patterns as given in ``source`` (``--exclude`` or ``scssq.toml:
    exclude``): relative to --src, normalized; UsageError naming a bad one and the fix."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        raise UsageError(f"{source} must be a list of glob patterns, got {values!r}")
    patterns = []
    for value in values:
        if not isinstance(value, str):
            raise UsageError(f"{source} {value!r} is not a string; write it as a quoted glob")
        parts = [p for p in value.split("/") if p not in ("", ".")]
        problem = None
        if value.startswith("/") or (value[1:3] == ":\\"):
            problem = "is absolute; write it relative to --src, e.g. 'tests/fixtures'"
        elif "\\" in value or "\x00" in value:
            problem = "holds a backslash or NUL; separate folders with '/'"
        elif ".." in parts:
            problem = "leaves --src ('..'); exclude only what lies under --src"
        elif not parts:
            problem = "is empty; name a file or folder relative to --src, or drop it"
        if problem:
            raise UsageError(f"{source} {value!r} {problem}")
        patterns.append("/".join(parts))
    return tuple(dict.fromkeys(patterns))


@dataclass(frozen=True)
class Rule:
    """What a submit's options say about its bundle."""

    #: Glob patterns relative to --src; ``*`` also matches ``/``.
    patterns: tuple[str, ...] = ()
    #: Entries and load paths (relative to --src): a default-excluded folder holding
    #: one is bundled, and no pattern may exclude an entry.
    entries: tuple[str, ...] = ()
    load_paths: tuple[str, ...] = ()

    def excluded_by(self, rel: str) -> str | None:
        """The pattern that excludes ``rel`` (a file or folder), or None."""
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(rel, pattern):
                return pattern
        return None

    def deferred(self, rel: str, name: str) -> bool:
        """A folder left out unless a stylesheet names it (node_modules, hidden)."""
        if name != NODE_MODULES and not name.startswith("."):
            return False
        anchors = (*self.entries, *self.load_paths)
        return not any(a == rel or a.startswith(rel + "/") for a in anchors)

    def check_entries(self) -> None:
        """UsageError when an exclude pattern matches an entry or one of its folders."""
        for entry in self.entries:
            parts = entry.split("/")
            for depth in range(1, len(parts) + 1):
                pattern = self.excluded_by("/".join(parts[:depth]))
                if pattern is not None:
                    raise UsageError(
                        f"entry {entry!r} is excluded by the exclude pattern {pattern!r} "
                        "(--exclude or scssq.toml exclude); narrow the pattern"
                    )


class Names:
    """What bundled stylesheets name: words, ``pkg:`` URLs, computed ``load-css`` URLs.

    Lazy: a folder is looked up as a substring of the texts (cheap, and a superset of a
    word match); the word set is made only for ``.css`` files.
    """

    def __init__(self) -> None:
        self._texts: list[bytes] = []
        self._blob: bytes | None = None
        self._words: set[bytes] | None = None
        self._dynamic: bool | None = None

    def add(self, data: bytes) -> None:
        self._texts.append(data)
        self._blob = self._words = self._dynamic = None

    @property
    def blob(self) -> bytes:
        if self._blob is None:
            self._blob = b"\n".join(self._texts)
        return self._blob

    def folder(self, name: str) -> bool:
        """Whether a default-excluded folder of this name may be loaded from."""
        return name.encode() in self.blob or (name == NODE_MODULES and b"pkg:" in self.blob)

    def css(self, rel: str) -> bool:
        """Whether the ``.css`` file at ``rel`` may be loaded."""
        if self._dynamic is None:
            blob = self.blob
            self._dynamic = b"load-css" in blob and _DYNAMIC_LOAD_RE.search(blob) is not None
        stem = rel.rsplit("/", 1)[-1][:-4].encode()
        if self._dynamic or not _WORD_RE.fullmatch(stem):  # no word can name it: keep
            return True
        if self._words is None:
            self._words = set()
            for word in set(_WORD_RE.findall(self.blob)):
                base = word[:-4] if word.endswith(b".css") else word
                self._words.update((word, base, base.lstrip(b"_")))
        return stem in self._words or stem.lstrip(b"_") in self._words
