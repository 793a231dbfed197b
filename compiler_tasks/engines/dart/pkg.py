"""``pkg:`` URLs, resolved inside the bundle's ``node_modules`` like Dart Sass's Node importer.

``@use "pkg:name/sub/path"`` finds ``node_modules/name`` in the importing file's directory
or one of its parents, stopping at the bundle root (never above it), then follows the
package's ``package.json``: ``exports`` with the ``sass``, ``style`` and ``default``
conditions (subpath variants with extensions, partials and ``index``; single-``*``
patterns), else for the package root the ``sass`` then ``style`` field then ``index``,
else the subpath as a Sass path inside the package.

Deviation, on purpose: scssq bundles carry stylesheets, not ``package.json`` files, so a
package directory without one is resolved as if its manifest were empty (the ``sass``
CLI would fail to read it). Every resolved path must stay inside the bundle.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from ..resolver import ImportRefused
from .files import SASS_EXTENSIONS, BundleFiles

_CONDITIONS = ("sass", "style", "default")


def split_name(path: str) -> tuple[str, str | None]:
    """(package name, subpath or None) of a ``pkg:`` URL's path."""
    parts = path.split("/")
    name = parts.pop(0)
    if name.startswith("."):
        raise ImportRefused(f"pkg: name {name} must not start with a '.'.")
    if "\\" in name:
        raise ImportRefused(f"pkg: name {name} must not contain a '\\'.")
    if "%" in name:
        raise ImportRefused(f"pkg: name {name} must not contain a '%'.")
    if name.startswith("@"):
        if not parts:
            raise ImportRefused(
                f"pkg: name {name} is an invalid package name. Scoped packages, which "
                "start with '@', must have a second segment."
            )
        name = f"{name}/{parts.pop(0)}"
    subpath = "/".join(parts) if parts else None
    return name, subpath


class PackageResolver:
    """Resolves ``pkg:`` URL paths against one bundle."""

    def __init__(self, files: BundleFiles) -> None:
        self.files = files

    def resolve(self, path: str, base_dir: str, from_import: bool) -> str | None:
        """Absolute path of the stylesheet ``pkg:path`` names from ``base_dir``, or None."""
        if not path:
            raise ImportRefused("A pkg: URL must not have an empty path.")
        if path.startswith("/"):
            raise ImportRefused("A pkg: URL's path must not begin with /.")
        name, subpath = split_name(path)
        package = self._package_root(name, base_dir)
        if package is None:
            return None
        manifest = self._manifest(package)
        exported = self._exports(package, subpath, manifest, name)
        if exported is not None:
            if posixpath.splitext(exported)[1] not in SASS_EXTENSIONS:
                raise ImportRefused(
                    f"The export for '{subpath or 'root'}' in '{name}' resolved to "
                    f"'{self.files.rel(exported)}', which is not a '.scss', '.sass', or "
                    "'.css' file."
                )
            return self._inside(exported, path)
        if subpath is None:
            for field in ("sass", "style"):
                value = manifest.get(field)
                if isinstance(value, str) and posixpath.splitext(value)[1] in SASS_EXTENSIONS:
                    return self._inside(posixpath.join(package, value), path)
            return self.files.resolve(posixpath.join(package, "index"), from_import)
        return self.files.resolve(self._inside(posixpath.join(package, subpath), path), from_import)

    def _inside(self, path: str, url: str) -> str:
        path = posixpath.normpath(path)
        if not self.files.inside(path):
            raise ImportRefused(f'"pkg:{url}" resolves outside the bundle')
        return path

    def _package_root(self, name: str, base_dir: str) -> str | None:
        directory = posixpath.normpath(base_dir)
        while self.files.inside(directory):
            candidate = posixpath.join(directory, "node_modules", name)
            if self.files.is_dir(candidate):
                return candidate
            if directory == self.files.root:
                return None
            directory = posixpath.dirname(directory)
        return None

    def _manifest(self, package: str) -> dict[str, Any]:
        path = posixpath.join(package, "package.json")
        if not self.files.is_file(path):
            return {}
        try:
            data = json.loads(self.files.read(path))
        except (ValueError, OSError):
            raise ImportRefused(f"{self.files.rel(path)} is not valid JSON") from None
        return data if isinstance(data, dict) else {}

    # -- package.json "exports" ----------------------------------------------------------

    def _exports(
        self, package: str, subpath: str | None, manifest: dict[str, Any], name: str
    ) -> str | None:
        exports = manifest.get("exports")
        if exports is None:
            return None
        found = self._exports_resolve(package, _variants(subpath, False), exports, subpath, name)
        if found is not None:
            return found
        if subpath is not None and posixpath.splitext(subpath)[1]:
            return None
        return self._exports_resolve(package, _variants(subpath, True), exports, subpath, name)

    def _exports_resolve(
        self,
        package: str,
        variants: list[str | None],
        exports: Any,
        subpath: str | None,
        name: str,
    ) -> str | None:
        if isinstance(exports, dict):
            dotted = [k.startswith(".") for k in exports]
            if any(dotted) and not all(dotted):
                raise ImportRefused(
                    f"`exports` in {name} can not have both conditions and paths at the same level."
                )
        matches: list[str] = []
        for variant in variants:
            found = self._match(package, variant, exports)
            if found is not None:
                matches.append(found)
        if len(matches) > 1:
            shown = "\n".join(self.files.rel(m) for m in matches)
            raise ImportRefused(
                f"Unable to determine which of multiple potential resolutions found for "
                f"{subpath or 'root'} in {name} should be used. \n\nFound:\n{shown}"
            )
        return matches[0] if matches else None

    def _match(self, package: str, variant: str | None, exports: Any) -> str | None:
        if variant is None:
            main = _main_export(exports)
            return None if main is None else self._target(package, main, None)
        if not isinstance(exports, dict) or not any(k.startswith(".") for k in exports):
            return None
        key = f"./{variant}"
        if exports.get(key) is not None and "*" not in key:
            return self._target(package, exports[key], None)
        patterns = sorted((k for k in exports if k.count("*") == 1), key=_pattern_order)
        for pattern in patterns:
            head, tail = pattern.split("*")
            if not key.startswith(head) or key == head:
                continue
            if not tail or (key.endswith(tail) and len(key) >= len(pattern)):
                target = exports[pattern]
                if target is None:
                    continue
                return self._target(package, target, key[len(head) : len(key) - len(tail)])
        return None

    def _target(self, package: str, target: Any, pattern: str | None) -> str | None:
        if isinstance(target, str):
            if not target.startswith("./"):
                raise ImportRefused(
                    f"Export '{target}' must be a path relative to the package root at "
                    f"'{self.files.rel(package)}'."
                )
            if pattern is not None:
                path = posixpath.normpath(posixpath.join(package, target.replace("*", pattern, 1)))
                return path if self.files.is_file(path) else None
            return posixpath.join(package, target)
        if isinstance(target, dict):
            for key, value in target.items():
                if key in _CONDITIONS and value is not None:
                    found = self._target(package, value, pattern)
                    if found is not None:
                        return found
            return None
        if isinstance(target, list):
            for value in target:
                found = self._target(package, value, pattern)
                if found is not None:
                    return found
            return None
        raise ImportRefused(
            f"Invalid 'exports' value {target!r} in {self.files.rel(package)}/package.json."
        )


def _main_export(exports: Any) -> Any:
    if isinstance(exports, str | list):
        return exports
    if isinstance(exports, dict):
        if not any(k.startswith(".") for k in exports):
            return exports
        return exports.get(".")
    return None


def _variants(subpath: str | None, add_index: bool) -> list[str | None]:
    """Subpaths Dart Sass looks up in ``exports`` for one ``pkg:`` subpath."""
    if subpath is None and add_index:
        subpath = "index"
    elif subpath is not None and add_index:
        subpath = posixpath.join(subpath, "index")
    if subpath is None:
        return [None]
    if subpath.endswith(SASS_EXTENSIONS):
        paths = [subpath]
    else:
        paths = [subpath, f"{subpath}.scss", f"{subpath}.sass", f"{subpath}.css"]
    directory, base = posixpath.split(subpath)
    if base.startswith("_"):
        return list(paths)
    partials = [posixpath.join(directory, "_" + posixpath.basename(p)) for p in paths]
    return [*paths, *partials]


def _pattern_order(key: str) -> tuple[int, int]:
    """Node's PATTERN_KEY_COMPARE: longer prefix before the ``*`` first, then longer keys."""
    return (-key.index("*"), -len(key))
