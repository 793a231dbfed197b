"""Names and hashes: validation of user values, the content digest, the compile key,
and every Redis key and store path scssq uses.

Nothing reaches a Redis key or a store path without passing a validator here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput
from .settings import ENGINES

#: Bump when anything changes how sources turn into CSS (invalidates every key).
PIPELINE_VERSION = "scssq-1"

_HASH_RE = re.compile(r"^[0-9a-f]{7,64}\Z")
_KEY_RE = re.compile(r"^[0-9a-f]{64}\Z")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_PATH_PART_RE = re.compile(r"^[A-Za-z0-9@_+=,~^()\[\]{}!#$%&' .-]+\Z")
MAX_PATH_LEN = 512
STYLES = ("expanded", "compressed")
#: A Dart Sass deprecation id, e.g. ``import`` or ``global-builtin``.
_DEPRECATION_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}\Z")
MAX_DEPRECATIONS = 64


def shown(value: str) -> str:
    """``value`` quoted and shortened so a 10 KB string cannot flood a message."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def validate_commit(value: str) -> str:
    """A commit hash: 7-64 hex digits (sha1 or sha256, abbreviated or not)."""
    norm = value.strip().lower()
    if not _HASH_RE.match(norm):
        raise InvalidInput(
            f"commit hash {shown(value)} is not 7-64 hexadecimal digits; "
            "pass the output of `git rev-parse HEAD`"
        )
    return norm


def validate_key(value: str) -> str:
    """A compile key: 64 lowercase hex digits."""
    if not _KEY_RE.match(value):
        raise InvalidInput(f"compile key {shown(value)} is not 64 hexadecimal digits")
    return value


def validate_project(value: str) -> str:
    """A project name: letters, digits, '.', '_', '-', at most 100 characters."""
    if not _PROJECT_RE.match(value):
        raise InvalidInput(
            f"project name {shown(value)} is invalid; use 1-100 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (set project in scssq.toml)"
        )
    return value


def validate_relpath(value: str, what: str = "path") -> str:
    """A relative POSIX path inside a bundle: no absolute, no '..', no empty parts."""
    if not value or len(value) > MAX_PATH_LEN:
        raise InvalidInput(f"{what} {shown(value)} must be 1-{MAX_PATH_LEN} characters")
    if value.startswith("/") or "\\" in value or "\x00" in value:
        raise InvalidInput(f"{what} {shown(value)} must be relative to the bundle root")
    parts = value.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidInput(
                f"{what} {shown(value)} must be a plain relative path (no '.', '..' or '//')"
            )
        if not _PATH_PART_RE.match(part):
            raise InvalidInput(
                f"{what} {shown(value)} holds a character scssq does not accept in file names"
            )
    return value


def normalize_relpath(value: str, what: str = "path") -> str:
    """Turn a user-typed relative path (``./a//b/``) into the canonical form, then validate."""
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
    if value.startswith("/"):
        raise InvalidInput(f"{what} {shown(value)} must be relative to --src, not absolute")
    return validate_relpath("/".join(parts), what)


def content_digest(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, sha256 hex of bytes) pairs of a bundle."""
    h = hashlib.sha256()
    for path, file_hash in sorted(files):
        h.update(path.encode("utf-8"))
        h.update(b"\x00")
        h.update(file_hash.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def css_name(entry: str) -> str:
    """The output an entry compiles to, relative to --out: its path with ``.css``."""
    return entry.rsplit(".", 1)[0] + ".css"


def _check_outputs(entries: Iterable[str]) -> None:
    """Refuse two entries that would write one output (``a.scss`` and ``a.sass``)."""
    seen: dict[str, str] = {}
    for entry in entries:
        first = seen.setdefault(css_name(entry), entry)
        if first != entry:
            raise InvalidInput(
                f"entries {shown(first)} and {shown(entry)} (--entry or entries in "
                f"scssq.toml) both compile to {shown(css_name(entry))} under --out; "
                "keep one of them, or rename one so each entry has its own output"
            )


#: Where an entry's CSS is written, as far as its source map cares: (entry, CSS file
#: name, the CSS's folder and the bundle root, both relative to their nearest common
#: folder). ``dist/main.css`` of the entry ``scss/main.scss``, the root being the
#: working directory: ``("scss/main.scss", "main.css", "dist", ".")``.
Place = tuple[str, str, str, str]


def default_place(entry: str) -> Place:
    """The place of the CSS beside its entry, which the engines write."""
    folder, _, name = css_name(entry).rpartition("/")
    return entry, name, folder or ".", "."


def validate_place(place: Place) -> Place:
    """A place: a plain file name and two plain relative folder paths (or ``.``)."""
    entry, name, css_dir, root_dir = place
    validate_relpath(entry, "entry")
    if name in (".", "..") or not _PATH_PART_RE.match(name):
        raise InvalidInput(f"output file name {shown(name)} is not a plain file name")
    for folder in (css_dir, root_dir):
        if folder != ".":
            validate_relpath(folder, "output folder")
    return place


@dataclass(frozen=True)
class CompileOptions:
    """What, besides the sources, decides the CSS: entries and engine options."""

    entries: tuple[str, ...]
    load_paths: tuple[str, ...] = ()
    style: str = "expanded"
    source_map: bool = False
    engine: str = "libsass"
    #: Dart Sass only: deprecation ids whose warnings are silenced (kept sorted, unique).
    silence_deprecations: tuple[str, ...] = ()
    #: Dart Sass only: no warnings from stylesheets loaded through load paths or pkg:.
    quiet_deps: bool = False
    #: With a source map: the map holds each source's text (``sourcesContent``).
    embed_sources: bool = True
    #: With a source map: the map is a ``data:`` URL inside the CSS, not a file.
    embed_source_map: bool = False
    #: With a source map, where each entry's CSS is written when not beside its entry
    #: (:data:`Place`): the CSS names its map and the map names the CSS and the sources
    #: relative to it. It matters for nothing else, so it is kept only with a map.
    places: tuple[Place, ...] = ()

    def __post_init__(self) -> None:
        if not self.entries:
            raise InvalidInput("no entry given; pass --entry FILE (relative to --src)")
        for entry in self.entries:
            validate_relpath(entry, "entry")
            if not entry.endswith((".scss", ".sass")):
                raise InvalidInput(f"entry {shown(entry)} must be a .scss or .sass file")
        _check_outputs(self.entries)
        for path in self.load_paths:
            validate_relpath(path, "load path")
        if self.engine not in ENGINES:
            raise InvalidInput(f"engine {shown(self.engine)}: choose one of {', '.join(ENGINES)}")
        if self.style not in STYLES:
            raise InvalidInput(f"style {shown(self.style)}: choose one of {', '.join(STYLES)}")
        silenced = tuple(sorted(set(self.silence_deprecations)))
        object.__setattr__(self, "silence_deprecations", silenced)
        if len(silenced) > MAX_DEPRECATIONS:
            raise InvalidInput(f"more than {MAX_DEPRECATIONS} silenced deprecations")
        for item in silenced:
            if not _DEPRECATION_RE.match(item):
                raise InvalidInput(
                    f"deprecation {shown(item)} is not a Dart Sass deprecation id; "
                    "use ids such as import, global-builtin or mixed-decls"
                )
        self._check_maps()
        if self.engine != "dart-sass" and (silenced or self.quiet_deps):
            raise InvalidInput(
                "silence_deprecations and quiet_deps are Dart Sass options; compile with "
                f"--engine dart-sass or drop them (engine is {self.engine!r})"
            )

    def _check_maps(self) -> None:
        if not self.source_map and (self.embed_source_map or not self.embed_sources):
            raise InvalidInput(
                "embed_source_map and embed_sources shape a source map; turn source maps on "
                "(--source-map) or drop them"
            )
        places = tuple(sorted(p for p in self.places if p != default_place(p[0])))
        object.__setattr__(self, "places", places if self.source_map else ())
        if len({p[0] for p in places}) != len(places) or not {p[0] for p in places} <= set(
            self.entries
        ):
            raise InvalidInput("output places must name each entry once at most")
        for found in places:
            validate_place(found)

    def place(self, entry: str) -> Place:
        """Where ``entry``'s CSS is written, as far as its source map cares."""
        return next((p for p in self.places if p[0] == entry), default_place(entry))

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "entries": list(self.entries),
            "load_paths": list(self.load_paths),
            "style": self.style,
            "source_map": self.source_map,
            "engine": self.engine,
        }
        # Only when set, so the keys of submits that do not use them stay what they were.
        if self.silence_deprecations:
            data["silence_deprecations"] = list(self.silence_deprecations)
        if self.quiet_deps:
            data["quiet_deps"] = True
        if not self.embed_sources:
            data["embed_sources"] = False  # the default embeds them: its keys stay
        if self.embed_source_map:
            data["embed_source_map"] = True
        if self.places:
            data["places"] = [list(p) for p in self.places]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompileOptions:
        try:
            return cls(
                entries=tuple(str(e) for e in data["entries"]),
                load_paths=tuple(str(p) for p in data.get("load_paths", ())),
                style=str(data.get("style", "expanded")),
                source_map=bool(data.get("source_map", False)),
                engine=str(data.get("engine", "libsass")),
                silence_deprecations=tuple(str(d) for d in data.get("silence_deprecations", ())),
                quiet_deps=bool(data.get("quiet_deps", False)),
                embed_sources=bool(data.get("embed_sources", True)),
                embed_source_map=bool(data.get("embed_source_map", False)),
                places=tuple(
                    (str(e), str(n), str(c), str(r)) for e, n, c, r in data.get("places", ())
                ),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"malformed compile options: {e}") from e

    def variant(self) -> str:
        """Short name of (entries + options) for the commit mapping."""
        return _sha(self.as_dict())[:16]


def _sha(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compile_key(digest: str, options: CompileOptions, engine_version: str) -> str:
    """The compile key: pipeline version, content digest, entries, options, engine+version."""
    return _sha(
        {
            "pipeline": PIPELINE_VERSION,
            "digest": digest,
            "options": options.as_dict(),
            "engine_version": engine_version,
        }
    )


class RedisKeys:
    """Every Redis key and channel of one fleet, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lock(self, key: str) -> str:
        return f"{self.prefix}:lock:{validate_key(key)}"

    def result(self, key: str) -> str:
        return f"{self.prefix}:result:{validate_key(key)}"

    def done(self, key: str) -> str:
        return f"{self.prefix}:done:{validate_key(key)}"

    def deliveries(self, task_id: str) -> str:
        return f"{self.prefix}:deliveries:{task_id}"

    def attempts(self, key: str) -> str:
        """Compiles of ``key`` begun and not ended by a live process (crash counter)."""
        return f"{self.prefix}:attempts:{validate_key(key)}"

    def commit(self, project: str, commit: str) -> str:
        return f"{self.prefix}:commit:{validate_project(project)}:{validate_commit(commit)}"

    def conflicts(self, project: str, commit: str) -> str:
        return f"{self.prefix}:conflict:{validate_project(project)}:{validate_commit(commit)}"

    @property
    def engines(self) -> str:
        return f"{self.prefix}:engines"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def instances(self) -> str:
        """``<node name> <process id>`` of each worker process, scored by its last
        heartbeat: two under one node name collide (``fleet.name_collisions``)."""
        return f"{self.prefix}:instances"

    @property
    def stores(self) -> str:
        """The stores workers write to (:func:`~compiler_tasks.envvars.store_identity`),
        scored by their last heartbeat."""
        return f"{self.prefix}:stores"

    @property
    def compiles(self) -> str:
        return f"{self.prefix}:stats:compiles"


def artifact_dir(key: str) -> str:
    return f"artifacts/{validate_key(key)}"


def manifest_path(key: str) -> str:
    return f"{artifact_dir(key)}/manifest.json"


def bundle_path(digest: str, submit: str | None = None) -> str:
    """Where a client uploads a bundle: by digest, shared by every submit of it; or,
    with ``submit``, the submit's own name (used when the shared name was taken)."""
    if submit is None:
        return f"bundles/{validate_key(digest)}.tar.gz"
    if not (submit.isascii() and submit.isalnum() and len(submit) <= 64):
        raise InvalidInput(f"submit id {submit[:70]!r} is not alphanumeric")
    return f"bundles/{validate_key(digest)}.{submit}.tar.gz"
