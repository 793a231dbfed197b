"""The importer the Dart Sass host registers: every load is answered from the bundle.

The compiler gets no load paths and no filesystem importer, so it cannot read a file by
itself. Stylesheets get canonical URLs ``file://<base>/<path in bundle>``, where
``<base>`` is the compiler process's empty working directory: Dart Sass prints them
relative to it, so messages read ``scss/main.scss 3:1`` exactly as the ``sass`` CLI run
in the bundle root prints them.

How Dart Sass asks (Embedded Sass Protocol 3): a relative load is first resolved against
the containing stylesheet's canonical URL and offered to the importer that loaded it (this
one); when that finds nothing, the URL as written goes to the global importers (this one
again, with ``containing_url``), where load paths and ``pkg:`` are tried. So:

* ``file:`` URLs under the base: the Sass lookup at that place in the bundle;
* ``file:`` URLs elsewhere: not found (an absolute ``file:`` URL fails as "Can't find
  stylesheet"; a relative URL that climbed out of the root gets its global pass);
* relative URLs (global pass): each load path in order; if none has it and the URL
  climbs out of the root from the containing file or a load path, it is refused;
* ``pkg:`` URLs: :mod:`compiler_tasks.engines.dart.pkg`; absolute paths are refused; other
  schemes are not found (like the CLI).
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote, urlsplit

from ..resolver import ImportRefused
from .files import BundleFiles
from .pkg import PackageResolver

SYNTAX_BY_EXTENSION = {".scss": "SCSS", ".sass": "INDENTED", ".css": "CSS"}


def file_url(path: str) -> str:
    """The ``file:`` URL of an absolute POSIX path (percent-encoded like Dart's)."""
    return "file://" + quote(path, safe="/!$&'()*+,;=:@~")


def url_path(url: str) -> str | None:
    """The decoded absolute path of a ``file:`` URL without host, else None."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query:
        return None
    path = unquote(parts.path)
    return posixpath.normpath(path) if path.startswith("/") and "\x00" not in path else None


class BundleImporter:
    """Answers canonicalize and import requests for one compile of one bundle."""

    def __init__(self, root: str, load_dirs: tuple[str, ...], base: str) -> None:
        self.files = BundleFiles(root)
        self.packages = PackageResolver(self.files)
        self.load_dirs = load_dirs
        self.base = base.rstrip("/")

    # -- mapping between the bundle and canonical URLs -----------------------------------

    def url_for(self, path: str) -> str:
        """Canonical URL of a bundle file (absolute path under the root)."""
        return file_url(self.base + "/" + self.files.rel(path))

    def path_for(self, url: str) -> str | None:
        """The bundle path a canonical (or resolved) ``file:`` URL names, else None."""
        path = url_path(url)
        if path is None or not (path == self.base or path.startswith(self.base + "/")):
            return None
        rel = path[len(self.base) + 1 :]
        return posixpath.normpath(posixpath.join(self.files.root, rel)) if rel else None

    def rel_for(self, url: str) -> str | None:
        """A canonical URL as a path relative to the bundle root, else None."""
        path = self.path_for(url)
        return None if path is None else self.files.rel(path)

    # -- protocol requests ---------------------------------------------------------------

    def canonicalize(self, url: str, from_import: bool, containing_url: str) -> str | None:
        """Canonical URL of ``url``, None when not found; ImportRefused is an error."""
        if "\x00" in url:
            raise ImportRefused(f'"{url}" is not a valid URL')
        scheme = urlsplit(url).scheme if ":" in url.split("/", 1)[0] else ""
        if scheme == "file":
            path = self.path_for(url)
            if path is None:
                # Not found: a relative URL that climbed out of the root gets its global
                # pass (load paths, then refused below); an absolute one is not found.
                if containing_url:
                    raise ImportRefused(f'"{url}" is outside the bundle')
                return None
            return self._found(self.files.resolve(path, from_import), url)
        if scheme == "pkg":
            parts = urlsplit(url)
            if parts.netloc:
                raise ImportRefused("A pkg: URL must not have a host, port, username or password.")
            if parts.query or parts.fragment:
                raise ImportRefused("A pkg: URL must not have a query or fragment.")
            base_dir = self._containing_dir(containing_url)
            found = self.packages.resolve(unquote(parts.path), base_dir, from_import)
            return self._found(found, url)
        if scheme:
            return None
        if url.startswith("/"):
            raise ImportRefused(f'"{url}" is an absolute path; imports stay inside the bundle')
        target = unquote(url.split("?", 1)[0].split("#", 1)[0])
        escaped = False
        for load_dir in self.load_dirs:
            path = posixpath.normpath(posixpath.join(load_dir, target))
            if not self.files.inside(path):
                escaped = True
                continue
            found = self.files.resolve(path, from_import)
            if found is not None:
                return self._found(found, url)
        if containing_url:
            here = posixpath.normpath(posixpath.join(self._containing_dir(containing_url), target))
            escaped = escaped or not self.files.inside(here)
        if escaped:
            raise ImportRefused(f'"{url}" is outside the bundle')
        return None

    def load(self, url: str) -> tuple[str, str]:
        """(contents, syntax name) of a canonical URL this importer returned."""
        path = self.path_for(url)
        if path is None:
            raise ImportRefused(f'"{url}" is not a file of the bundle')
        shown = self.files.rel(path)
        data = self.files.read(self.files.checked(path, shown))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImportRefused(f"{shown}: Invalid UTF-8 (byte {e.start}).") from None
        syntax = SYNTAX_BY_EXTENSION.get(posixpath.splitext(path)[1], "SCSS")
        return text, syntax

    def _containing_dir(self, containing_url: str) -> str:
        path = self.path_for(containing_url) if containing_url else None
        return posixpath.dirname(path) if path is not None else self.files.root

    def _found(self, path: str | None, url: str) -> str | None:
        if path is None:
            return None
        return self.url_for(self.files.checked(path, url))
