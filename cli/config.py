"""What a submit asks for: ``scssq.toml`` in the current directory merged with flags
and the client's ``SCSSQ_*`` variables.

Flags win over variables, variables over the file, the file over defaults. Every value
is validated here, where it enters, with a message naming the value, where it came
from (the flag, the file and key, the variable) and the fix. The variables are read
here, through their rows of ``CLIENT_SETTINGS``, not by click: click would blame a flag
the user did not type.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compiler_tasks.bundle.rule import Rule, check_patterns
from compiler_tasks.errors import ConfigError, InvalidInput, UsageError
from compiler_tasks.keys import (
    STYLES,
    CompileOptions,
    css_name,
    normalize_relpath,
    validate_project,
)
from compiler_tasks.settings import CLIENT_SETTINGS, DEFAULT_SUBMIT_TIMEOUT, ENGINES

from .targets import check_targets, places, split_entries

CONFIG_FILE = "scssq.toml"
#: Output folder when neither --out nor scssq.toml's ``out`` is given.
DEFAULT_OUT = "out"


class NoEntries(UsageError):
    """Neither ``--entry`` nor ``scssq.toml`` names an entry: nothing selects a variant."""


def _strings(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _project(v: Any) -> bool:
    try:
        return isinstance(v, str) and bool(validate_project(v))
    except InvalidInput:
        return False


def _choice(choices: tuple[str, ...]) -> tuple[str, Callable[[Any], bool], str]:
    listed = " or ".join(f'"{c}"' for c in choices)
    return f"one of {listed}", lambda v: v in choices, f'"{choices[-1]}"'


_TEXT = ("a string (quoted)", lambda v: isinstance(v, str), '"scss"')
_LIST = ("a list of strings", _strings, '["scss/main.scss"]')
_BOOL = ("a boolean (true or false, unquoted)", lambda v: isinstance(v, bool), "false")
#: Each key of ``scssq.toml``: what it must be, the check, an example value for the fix.
FILE_KEYS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "project": (
        "a project name (a string of 1-100 letters, digits, '.', '_' or '-')",
        _project,
        '"my-site"',
    ),
    "src": _TEXT,
    "entries": _LIST,
    "load_paths": (_LIST[0], _strings, '["vendor"]'),
    "out": (_TEXT[0], _TEXT[1], '"dist"'),
    "style": _choice(STYLES),
    "source_map": _BOOL,
    "engine": _choice(ENGINES),
    "silence_deprecations": (_LIST[0], _strings, '["import"]'),
    "quiet_deps": _BOOL,
    "timeout": (
        "a positive number of seconds",
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
        "600",
    ),
    "exclude": (_LIST[0], _strings, '["tests/fixtures"]'),
    "embed_sources": _BOOL,
    "embed_source_map": _BOOL,
    "error_css": _BOOL,
    "quiet": _BOOL,
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
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise UsageError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(FILE_KEYS))}"
        )
    for key, value in data.items():
        expected, check, example = FILE_KEYS[key]
        if not check(value):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise UsageError(
                f"{path}: {key} = {shown} is not {expected}; write e.g. {key} = {example}"
            )
    return data


def env_value(variable: str) -> Any:
    """The client variable ``variable`` (its row of CLIENT_SETTINGS) read from the
    environment, None when unset; a bad value is a ConfigError naming the variable."""
    spec = next(s for s in CLIENT_SETTINGS if s.env == variable)
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return None
    return spec.read(os.environ, {})


def project_name(flag: str | None, cwd: Path, src: Path | None = None) -> str:
    """``--project``, else SCSSQ_PROJECT, else scssq.toml's ``project``, else the git
    top-level's name; a bad name is an error naming where it came from."""
    if flag:
        name, source = flag, "--project"
    else:
        name, source = env_value("SCSSQ_PROJECT"), "SCSSQ_PROJECT"
    if name is None:
        file_name = load_file(cwd).get("project")  # checked by load_file
        return str(file_name) if file_name else default_project(src or cwd)
    try:
        return validate_project(name)
    except InvalidInput:
        env = source.startswith("SCSSQ_")
        raise (ConfigError if env else UsageError)(
            f"{source}{'=' if env else ' '}{name!r} is not a project name: use 1-100 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        ) from None


def _str_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    return [value] if isinstance(value, str) else list(value)  # checked by load_file


def _pick(flag: Any, data: dict[str, Any], name: str, default: Any) -> Any:
    if flag is not None and flag != ():
        return flag
    return data.get(name, default)


def default_project(src: Path) -> str:
    """The git top-level directory's name (else ``src``'s), made a valid project name."""
    import subprocess  # only here and in refs: a hit with its project set never runs git

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
    folders: bool = True,
) -> SubmitConfig:
    """Merge flags over ``scssq.toml`` over defaults; validate every value. ``folders``
    False: --src and the load paths need not exist (status and fetch read no sources)."""
    data = load_file(cwd)
    src_dir = (cwd / str(_pick(src, data, "src", "."))).resolve()
    if folders and not src_dir.is_dir():
        raise UsageError(f"--src {str(src_dir)!r} is not a directory; pass the bundle root")
    source = "--entry" if entries else f"{CONFIG_FILE}: entries"
    entry_names, outputs = split_entries(list(entries) or _str_list(data, "entries"), source, cwd)
    if not entry_names:
        raise NoEntries(
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
        if folders and not (src_dir / lp).is_dir():
            raise UsageError(f"load path {lp!r} is not a directory under {src_dir}")
    name = project_name(project, cwd, src_dir)
    out_dir = out_folder(cwd / str(_pick(out, data, "out", DEFAULT_OUT)))
    excludes = (
        check_patterns(exclude, "--exclude")
        if exclude
        else check_patterns(data.get("exclude", []), f"{CONFIG_FILE}: exclude")
    )
    conf = SubmitConfig(
        name,
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
    """A true/false setting: the flag, else ``scssq.toml``'s ``name`` (a boolean: checked
    by :func:`load_file`), else off."""
    return flag if flag is not None else bool(data.get(name, False))


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
    on = bool(wanted) or embed_map
    sources = embed_sources if embed_sources is not None else data.get("embed_sources", True)
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


def submit_timeout(flag: float | None, cwd: Path) -> float:
    """``--timeout``, else SCSSQ_SUBMIT_TIMEOUT, else scssq.toml's ``timeout``, else the
    default."""
    value = flag or env_value("SCSSQ_SUBMIT_TIMEOUT") or load_file(cwd).get("timeout")
    return float(value or DEFAULT_SUBMIT_TIMEOUT)  # the file's: checked by load_file


def is_tty() -> bool:
    return os.isatty(2)
