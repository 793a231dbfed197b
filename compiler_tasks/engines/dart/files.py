"""Dart Sass's file lookup rules, applied to the files of one bundle only.

These emulate ``resolveImportPath`` of Dart Sass 1.99's filesystem importer, so that the
host-side importer (:mod:`compiler_tasks.engines.dart.importer`) finds exactly the file the
``sass`` CLI would find on the same tree:

* ``a/b.scss`` (or ``.sass``/``.css``): ``a/_b.scss`` or ``a/b.scss`` (both: ambiguous);
  inside ``@import`` first the import-only ``a/b.import.scss`` (and its partial);
* ``a/b``: ``a/{_,}b.sass`` and ``a/{_,}b.scss`` (two or more: ambiguous), only if none
  exists ``a/{_,}b.css``; then, if ``a/b`` is a directory, ``a/b/index`` the same way.
  Inside ``@import`` every step first tries the ``.import`` variant.

Every path is absolute and lexically normalised; a path outside the root is never
stat'ed (so nothing here can probe the worker's files) and a hit whose real path leaves
the root (a link) is refused. Existence checks come from one ``scandir`` per directory
per compile (:class:`~compiler_tasks.engines.resolver.Listings`, which answers links with
a stat, as before): a load tries up to ten names. Standard library only.
"""

from __future__ import annotations

import os
import posixpath
import stat

from ..resolver import ImportRefused, Listings, is_inside, relative

SASS_EXTENSIONS = (".sass", ".scss", ".css")


class BundleFiles:
    """Existence checks and reads confined to ``root`` (a real, absolute path)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._checked: dict[str, str] = {}  # normalised path -> its real path, once checked
        self._listings = Listings()

    def inside(self, path: str) -> bool:
        return is_inside(posixpath.normpath(path), self.root)

    def is_file(self, path: str) -> bool:
        """Dart's ``fileExists``: anything but a directory (links followed), inside root."""
        path = posixpath.normpath(path)
        return is_inside(path, self.root) and self._listings.is_file(path)

    def is_dir(self, path: str) -> bool:
        if not self.inside(path):
            return False
        try:
            return stat.S_ISDIR(os.stat(path).st_mode)
        except (OSError, ValueError):
            return False

    def checked(self, path: str, shown: str) -> str:
        """``path`` when it is a regular file whose real path is inside root, else refusal."""
        path = posixpath.normpath(path)
        if path in self._checked:
            return path
        real = self._listings.real(path)
        if not is_inside(real, self.root):
            raise ImportRefused(f'"{shown}" is outside the bundle')
        try:
            regular = stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            regular = False
        if not regular:
            raise ImportRefused(f'"{shown}" is not a regular file of the bundle')
        self._checked[path] = real
        return path

    def read(self, path: str) -> bytes:
        real = self._checked.get(posixpath.normpath(path)) or os.path.realpath(path)
        if not is_inside(real, self.root):
            raise ImportRefused(f'"{relative(path, self.root)}" is outside the bundle')
        with open(real, "rb") as handle:
            return handle.read()

    def rel(self, path: str) -> str:
        return relative(posixpath.normpath(path), self.root)

    # -- Dart Sass's resolveImportPath ---------------------------------------------------

    def resolve(self, path: str, from_import: bool) -> str | None:
        """The file Sass loads for ``path`` (absolute, no URL escapes), or None."""
        base, extension = posixpath.splitext(path)
        if extension in SASS_EXTENSIONS:
            if from_import:
                found = self._one(self._try(f"{base}.import{extension}"))
                if found is not None:
                    return found
            return self._one(self._try(path))
        if from_import:
            found = self._one(self._with_extensions(path + ".import"))
            if found is not None:
                return found
        found = self._one(self._with_extensions(path))
        if found is not None:
            return found
        if not self.is_dir(path):
            return None
        index = posixpath.join(path, "index")
        if from_import:
            found = self._one(self._with_extensions(index + ".import"))
            if found is not None:
                return found
        return self._one(self._with_extensions(index))

    def _with_extensions(self, path: str) -> list[str]:
        found = self._try(path + ".sass") + self._try(path + ".scss")
        return found or self._try(path + ".css")

    def _try(self, path: str) -> list[str]:
        directory, name = posixpath.split(path)
        partial = posixpath.join(directory, "_" + name)
        return [p for p in (partial, path) if self.is_file(p)]

    def _one(self, paths: list[str]) -> str | None:
        if not paths:
            return None
        if len(paths) > 1:
            shown = "\n".join("  " + self.rel(p) for p in paths)
            raise ImportRefused(f"It's not clear which file to import. Found:\n{shown}")
        return paths[0]
