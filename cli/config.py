"""What a submit asks for: ``scssq.toml`` in the current directory merged with flags
and the client's ``SCSSQ_*`` variables.

The options (flags and keys, types, defaults) are declared once, in :mod:`cli.fields`.
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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from compiler_tasks.bundle.rule import Rule, check_patterns
from compiler_tasks.errors import ConfigError, InvalidInput, UsageError
from compiler_tasks.keys import CompileOptions, css_name, normalize_relpath, validate_project
from compiler_tasks.settings import CLIENT_SETTINGS, DEFAULT_SUBMIT_TIMEOUT

from .fields import BY_NAME, merge, origin
from .refs import git
from .targets import check_targets, places, split_entries

CONFIG_FILE = "scssq.toml"


class NoEntries(UsageError):
    """Neither ``--entry`` nor ``scssq.toml`` names an entry: nothing selects a variant."""


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
    unknown = sorted(set(data) - set(BY_NAME))
    if unknown:
        raise UsageError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(BY_NAME))}"
        )
    for key, value in data.items():
        option = BY_NAME[key]
        if not option.kind.check(value):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise UsageError(
                f"{path}: {key} = {shown} is not {option.kind.accepts}; "
                f"write e.g. {key} = {json.dumps(option.example)}"
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


def project_name(flag: str | None, data: Mapping[str, Any], src: Path) -> str:
    """``--project``, else SCSSQ_PROJECT, else ``project`` of ``data`` (scssq.toml, as
    :func:`load_file` read it), else the git top-level's name of ``src``; a bad name is
    an error naming where it came from."""
    if flag:
        name, source = flag, "--project"
    else:
        name, source = env_value("SCSSQ_PROJECT"), "SCSSQ_PROJECT"
    if name is None:
        file_name = data.get("project")  # checked by load_file
        return str(file_name) if file_name else default_project(src)
    try:
        return validate_project(name)
    except InvalidInput:
        env = source.startswith("SCSSQ_")
        raise (ConfigError if env else UsageError)(
            f"{source}{'=' if env else ' '}{name!r} is not a project name: use 1-100 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        ) from None


def default_project(src: Path) -> str:
    """The git top-level directory's name (else ``src``'s), made a valid project name."""
    top = src.resolve()
    try:
        out = git(src, "rev-parse", "--show-toplevel")
        if out.returncode == 0 and out.stdout.strip():
            top = Path(out.stdout.strip())
    except OSError:
        pass
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", top.name).strip("-._") or "default"
    return name[:100]


def resolve(
    cwd: Path,
    flags: Mapping[str, Any] = MappingProxyType({}),
    *,
    default_engine: str = "libsass",
    folders: bool = True,
) -> SubmitConfig:
    """Merge ``flags`` (by option name; None or () when not given) over ``scssq.toml``
    over defaults; validate every value. ``folders`` False: --src and the load paths
    need not exist (status and fetch read no sources)."""
    data = load_file(cwd)
    v = merge(flags, data, engine=default_engine)
    src_dir = (cwd / str(v["src"])).resolve()
    if folders and not src_dir.is_dir():
        raise UsageError(f"--src {str(src_dir)!r} is not a directory; pass the bundle root")
    entry_names, outputs = split_entries(list(v["entries"]), origin("entries", flags), cwd)
    if not entry_names:
        raise NoEntries(
            f"no entry given; pass --entry FILE (relative to --src) or set entries in {CONFIG_FILE}"
        )
    map_on, sources, embed_map = _maps(flags, v)
    options = CompileOptions(
        entries=entry_names,
        load_paths=tuple(dict.fromkeys(normalize_relpath(p, "load path") for p in v["load_paths"])),
        style=str(v["style"]),
        engine=str(v["engine"]),
        silence_deprecations=tuple(v["silence_deprecations"]),
        quiet_deps=bool(v["quiet_deps"]),
        source_map=map_on,
        embed_sources=sources,
        embed_source_map=embed_map,
    )
    for lp in options.load_paths:
        if folders and not (src_dir / lp).is_dir():
            raise UsageError(f"load path {lp!r} is not a directory under {src_dir}")
    name = project_name(flags.get("project"), data, src_dir)
    out_dir = out_folder(cwd / str(v["out"]))
    excludes = check_patterns(v["exclude"], origin("exclude", flags))
    conf = SubmitConfig(
        name,
        src_dir,
        out_dir,
        options,
        excludes,
        outputs,
        error_css=bool(v["error_css"]),
        quiet=bool(v["quiet"]),
    )
    check_targets(conf.targets, src_dir)
    if options.source_map:
        conf = replace(conf, options=replace(options, places=places(conf.targets, src_dir)))
    return conf


def _maps(flags: Mapping[str, Any], v: Mapping[str, Any]) -> tuple[bool, bool, bool]:
    """(source map, embed sources, embed source map) as the sass CLI combines its flags;
    but scssq writes no map unless asked: ``--embed-source-map`` asks for one,
    ``--embed-sources`` does not."""
    embed_map = bool(v["embed_source_map"])
    if embed_map and flags.get("source_map") is False:
        raise UsageError(
            "--embed-source-map puts the source map in the CSS; it cannot go with "
            "--no-source-map: drop one of them"
        )
    on = bool(v["source_map"]) or embed_map
    if flags.get("embed_sources") and not on:
        raise UsageError(
            "--embed-sources puts the sources in the source map, and there is none: add "
            "--source-map or --embed-source-map (scssq writes no map unless asked)"
        )
    return on, bool(v["embed_sources"]) or not on, embed_map


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
