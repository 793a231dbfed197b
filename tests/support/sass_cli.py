"""The reference: the same bundled Dart Sass binary run as the ``sass`` command line.

Tests compare the dart-sass engine's bytes with what this CLI writes for the same files
and options: the CSS is written beside the entry (so a source map's relative ``sources``
are comparable) and removed again.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from compiler_tasks.engines.dart.compiler import locate


@dataclass(frozen=True)
class CliResult:
    css: bytes
    source_map: bytes | None
    stderr: str


def sass_cli(
    root: Path,
    entry: str,
    *,
    style: str = "expanded",
    source_map: bool = False,
    load_paths: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    timeout: float = 120,
    out_dir: Path | None = None,
) -> CliResult:
    """Run ``sass ENTRY OUT`` in ``root``; OUT is the entry's .css beside it, or in
    ``out_dir`` (the CSS does not depend on where it goes unless there is a source map)."""
    binary = locate()
    out = root / (entry.rsplit(".", 1)[0] + ".css")
    if out_dir is not None:
        out = out_dir / out.name
    args = [binary.dart, binary.snapshot, f"--style={style}"]
    args += ["--embed-sources"] if source_map else ["--no-source-map"]
    args += [f"--load-path={lp}" for lp in load_paths]
    args += [*extra, entry, str(out)]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"sass CLI failed ({proc.returncode}): {proc.stderr[-3000:]}")
    css = out.read_bytes()
    out.unlink()
    map_bytes = None
    if source_map:
        map_path = out.with_name(out.name + ".map")
        map_bytes = map_path.read_bytes()
        map_path.unlink()
    return CliResult(css, map_bytes, proc.stderr)


def sass_cli_error(root: Path, entry: str, *extra: str) -> str:
    """The CLI's stderr for an entry that must fail to compile."""
    binary = locate()
    args = [binary.dart, binary.snapshot, "--no-source-map", *extra, entry]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def sass_run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The ``sass`` CLI with ``args`` as typed (``-I vendor in.scss:out.css``), in ``cwd``."""
    binary = locate()
    proc = subprocess.run(
        [binary.dart, binary.snapshot, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sass CLI failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc
