"""What the ``scssq submit`` options a ``sass`` CLI user expects do on the client:
``--error-css`` and ``-q/--quiet`` (declared in :mod:`cli.fields`), ``-h``, and a
stylesheet passed where the commit goes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from compiler_tasks.errors import CompileError, ScssqError, UsageError

from .config import SubmitConfig
from .errorcss import error_css
from .outputs import write_output

#: What the ``sass`` CLI prints with ``-h`` as well as ``--help``.
CONTEXT = {"help_option_names": ["-h", "--help"]}
_HEX_RE = re.compile(r"\A[0-9A-Fa-f]{7,64}\Z")
_STYLESHEET = (".scss", ".sass", ".css")


def refuse_stylesheet(value: str | None) -> None:
    """A HASH that looks like a path is a stylesheet given where the commit goes."""
    if value is None or _HEX_RE.match(value.strip()):
        return
    if "/" in value or value.lower().endswith(_STYLESHEET) or _is_file(value):
        shown = value if len(value) <= 200 else value[:200] + "..."
        raise UsageError(
            f"{shown!r} looks like a stylesheet; pass it with --entry {shown} "
            "(the argument is the commit, HEAD when omitted)"
        )


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:  # a name too long for the filesystem is no file here
        return False


def quieted(conf: SubmitConfig, thing: Any) -> Any:
    """``thing`` (a result or an error) without its warnings when ``--quiet``."""
    if conf.quiet and getattr(thing, "warnings", None):
        thing.warnings = ""
    return thing


def write_error_css(conf: SubmitConfig, exc: Exception) -> None:
    """``--error-css``: write the compile error as a stylesheet where each entry's CSS goes
    (the submit failed as a whole: no entry's CSS was delivered)."""
    if not conf.error_css or not isinstance(exc, CompileError):
        return
    css = error_css(str(exc))
    for target in conf.targets.values():
        try:
            write_output(target, css)
        except ScssqError as e:  # the compile error is what the exit code reports
            click.echo(f"scssq: could not write the error CSS: {e}", err=True)
            return
        click.echo(f"scssq: wrote the error to {target} (--error-css)", err=True)
