"""What a submit asks for: ``scssq.toml`` in the current directory merged with flags.

Flags win over the file; the file wins over defaults. Every value is validated
here, where it enters, with a message naming the value and the fix.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler_tasks.bundle.rule import Rule, check_patterns
from compiler_tasks.errors import UsageError
from compiler_tasks.keys import CompileOptions, normalize_relpath, validate_project

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
}


@dataclass(frozen=True)
class SubmitConfig:
    """Everything a submit needs besides the service settings."""

    project: str
    src: Path
    out: Path
    options: CompileOptions
    exclude: tuple[str, ...] = ()

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
) -> SubmitConfig:
    """Merge flags over ``scssq.toml`` over defaults; validate every value."""
    data = load_file(cwd)
    src_dir = (cwd / str(_pick(src, data, "src", "."))).resolve()
    if not src_dir.is_dir():
        raise UsageError(f"--src {str(src_dir)!r} is not a directory; pass the bundle root")
    entry_list = list(entries) or _str_list(data, "entries")
    if not entry_list:
        raise UsageError(
            f"no entry given; pass --entry FILE (relative to --src) or set entries in {CONFIG_FILE}"
        )
    lp_list = list(load_paths) or _str_list(data, "load_paths")
    silenced = list(silence_deprecations) or _str_list(data, "silence_deprecations")
    options = CompileOptions(
        entries=tuple(dict.fromkeys(normalize_relpath(e, "entry") for e in entry_list)),
        load_paths=tuple(dict.fromkeys(normalize_relpath(p, "load path") for p in lp_list)),
        style=str(_pick(style, data, "style", "expanded")),
        source_map=bool(_pick(source_map, data, "source_map", False)),
        engine=str(_pick(engine, data, "engine", default_engine)),
        silence_deprecations=tuple(silenced),
        quiet_deps=bool(_pick(quiet_deps, data, "quiet_deps", False)),
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
    return SubmitConfig(project_name, src_dir, out_dir, options, excludes)


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
