"""What a submit asks for: ``scssq.toml`` in the current directory merged with flags.

Flags win over the file; the file wins over defaults. Every value is validated
here, where it enters, with a message naming the value and the fix.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compiler_tasks.bundle.rule import Rule, check_patterns
from compiler_tasks.errors import UsageError
from compiler_tasks.keys import CompileOptions, css_name, normalize_relpath, validate_project

from .targets import check_targets, places, split_entries

CONFIG_FILE = "scssq.toml"
#: Output folder when neither --out nor scssq.toml's ``out`` is given.
DEFAULT_OUT = "out"
_KNOWN = {
    "project",
    "src",
    "entries",
    "load_paths",
    "out",
    "style",
    "source_map",
    "engine",
    "silence_deprecations",
    "quiet_deps",
    "timeout",
    "exclude",
    "embed_sources",
    "embed_source_map",
    "error_css",
    "quiet",
}


@dataclass(frozen=True)
class SubmitConfig:
    """Everything a submit needs besides the service settings."""

    project: str
    src: Path
    out: Path
    options: CompileOptions
    exclude: tuple[str, ...] = ()
    #: Entries whose CSS is written elsewhere than under ``out`` (``--entry in:out``).
    outputs: tuple[tuple[str, Path], ...] = ()
    #: On a compile error, write a CSS file showing it where each entry's CSS goes.
    error_css: bool = False
    #: Print no warnings of the stylesheets (``@warn``, deprecations).
    quiet: bool = False

    def target(self, entry: str) -> Path:
        """Where ``entry``'s CSS is written (its map beside it, with ``.map``)."""
        return dict(self.outputs).get(entry) or self.out.joinpath(*css_name(entry).split("/"))

    @property
    def targets(self) -> dict[str, Path]:
        return {entry: self.target(entry) for entry in self.options.entries}

    @property
    def rule(self) -> Rule:
        return Rule(self.exclude, self.options.entries, self.options.load_paths)


def load_file(cwd: Path) -> dict[str, Any]:
    """The ``[tool]``-less table of ``scssq.toml`` in ``cwd``, or {} when absent."""
    path = cwd / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from e
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise UsageError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    return data


def _str_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{CONFIG_FILE}: {name} must be a list of strings, got {value!r}")
    return value


def _pick(flag: Any, data: dict[str, Any], name: str, default: Any) -> Any:
    if flag is not None and flag != ():
        return flag
    return data.get(name, default)


def default_project(src: Path) -> str:
    """The git top-level directory's name (else ``src``'s), made a valid project name."""
    import subprocess  # only here and in git_head: a hit with its project set never runs git

    top = src.resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            top = Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", top.name).strip("-._") or "default"
    return name[:100]


def git_head(src: Path) -> str:
    """``git rev-parse HEAD`` in ``src``; a usage error with the fix when it fails."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(f"no HASH given and git could not run in {src}: {e}; pass HASH") from e
    if out.returncode != 0:
        raise UsageError(
            f"no HASH given and `git rev-parse HEAD` failed in {src} "
            f"({out.stderr.strip() or 'not a git checkout'}); pass the commit hash"
        )
    return out.stdout.strip()


def resolve(
    cwd: Path,
    *,
    project: str | None = None,
    src: str | None = None,
    entries: tuple[str, ...] = (),
    load_paths: tuple[str, ...] = (),
    out: str | None = None,
    style: str | None = None,
    source_map: bool | None = None,
    engine: str | None = None,
    default_engine: str = "libsass",
    silence_deprecations: tuple[str, ...] = (),
    quiet_deps: bool | None = None,
    exclude: tuple[str, ...] = (),
    embed_sources: bool | None = None,
    embed_source_map: bool | None = None,
    error_css: bool | None = None,
    quiet: bool | None = None,
) -> SubmitConfig:
    """Merge flags over ``scssq.toml`` over defaults; validate every value."""
    data = load_file(cwd)
    src_dir = (cwd / str(_pick(src, data, "src", "."))).resolve()
    if not src_dir.is_dir():
        raise UsageError(f"--src {str(src_dir)!r} is not a directory; pass the bundle root")
    source = "--entry" if entries else f"{CONFIG_FILE}: entries"
    entry_names, outputs = split_entries(list(entries) or _str_list(data, "entries"), source, cwd)
    if not entry_names:
        raise UsageError(
            f"no entry given; pass --entry FILE (relative to --src) or set entries in {CONFIG_FILE}"
        )
    lp_list = list(load_paths) or _str_list(data, "load_paths")
    silenced = list(silence_deprecations) or _str_list(data, "silence_deprecations")
    map_on, sources, embed_map = _maps(data, source_map, embed_sources, embed_source_map)
    options = CompileOptions(
        entries=entry_names,
        load_paths=tuple(dict.fromkeys(normalize_relpath(p, "load path") for p in lp_list)),
        style=str(_pick(style, data, "style", "expanded")),
        engine=str(_pick(engine, data, "engine", default_engine)),
        silence_deprecations=tuple(silenced),
        quiet_deps=bool(_pick(quiet_deps, data, "quiet_deps", False)),
        source_map=map_on,
        embed_sources=sources,
        embed_source_map=embed_map,
    )
    for lp in options.load_paths:
        if not (src_dir / lp).is_dir():
            raise UsageError(f"load path {lp!r} is not a directory under {src_dir}")
    name = _pick(project, data, "project", None)
    project_name = validate_project(str(name)) if name else default_project(src_dir)
    out_dir = out_folder(cwd / str(_pick(out, data, "out", DEFAULT_OUT)))
    excludes = (
        check_patterns(exclude, "--exclude")
        if exclude
        else check_patterns(data.get("exclude", []), f"{CONFIG_FILE}: exclude")
    )
    conf = SubmitConfig(
        project_name,
        src_dir,
        out_dir,
        options,
        excludes,
        outputs,
        error_css=_flag(error_css, data, "error_css"),
        quiet=_flag(quiet, data, "quiet"),
    )
    check_targets(conf.targets, src_dir)
    if options.source_map:
        conf = replace(conf, options=replace(options, places=places(conf.targets, src_dir)))
    return conf


def _flag(flag: bool | None, data: dict[str, Any], name: str) -> bool:
    """A true/false setting: the flag, else ``scssq.toml``'s ``name`` (a boolean), else off."""
    if flag is not None:
        return flag
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise UsageError(f"{CONFIG_FILE}: {name} must be true or false, got {value!r}")
    return value


def _maps(
    data: dict[str, Any],
    source_map: bool | None,
    embed_sources: bool | None,
    embed_source_map: bool | None,
) -> tuple[bool, bool, bool]:
    """(source map, embed sources, embed source map) as the sass CLI combines its flags;
    but scssq writes no map unless asked: ``--embed-source-map`` asks for one,
    ``--embed-sources`` does not."""
    embed_map = _flag(embed_source_map, data, "embed_source_map")
    if embed_map and source_map is False:
        raise UsageError(
            "--embed-source-map puts the source map in the CSS; it cannot go with "
            "--no-source-map: drop one of them"
        )
    wanted = source_map if source_map is not None else data.get("source_map", False)
    if not isinstance(wanted, bool):
        raise UsageError(f"{CONFIG_FILE}: source_map must be true or false, got {wanted!r}")
    on = wanted or embed_map
    sources = embed_sources if embed_sources is not None else data.get("embed_sources", True)
    if not isinstance(sources, bool):
        raise UsageError(f"{CONFIG_FILE}: embed_sources must be true or false, got {sources!r}")
    if embed_sources and not on:
        raise UsageError(
            "--embed-sources puts the sources in the source map, and there is none: add "
            "--source-map or --embed-source-map (scssq writes no map unless asked)"
        )
    return on, sources or not on, embed_map


def out_folder(path: Path) -> Path:
    """``--out`` resolved; UsageError when it names something that is not a folder, or
    lies under a file or a folder that cannot be read."""
    out_dir = path.resolve()
    try:
        if not stat.S_ISDIR(os.stat(out_dir).st_mode):
            raise UsageError(
                f"--out {str(out_dir)!r} is not a directory; pass the folder the CSS is written to"
            )
    except FileNotFoundError:
        pass  # made when the CSS is written
    except OSError as e:
        raise UsageError(f"--out {str(out_dir)!r} cannot be used: {e.strerror or e}") from e
    return out_dir


def file_timeout(cwd: Path) -> float | None:
    value = load_file(cwd).get("timeout")
    if value is None:
        return None
    if not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"{CONFIG_FILE}: timeout must be a positive number of seconds")
    return float(value)


def is_tty() -> bool:
    return os.isatty(2)
