"""Where each entry's CSS is written: ``--entry in.scss:out.css``, as the sass CLI's
``in:out``, and what of that place a source map depends on.

``in`` is relative to ``--src`` (as every entry); ``out`` is relative to the working
directory, as the sass CLI reads it (the folder of ``scssq.toml``), and ``--out`` does not
apply to it. An entry without ``:out`` is written under ``--out`` keeping its path.

Where the CSS goes is the client's business, except for a source map: the CSS names its
map (``main.css.map``) and the map names the CSS and its sources relative to the CSS's
folder, as ``sass`` writes them. So with a source map each CSS's file name, its folder
and ``--src`` (relative to their nearest common folder: ``dist`` and ``.`` when ``--src``
is the working directory) join the compile options (:attr:`CompileOptions.places`);
without one, two submits that write the same CSS to different places share one compile.
"""

from __future__ import annotations

import os
from pathlib import Path

from compiler_tasks.errors import InvalidInput, UsageError
from compiler_tasks.keys import Place, css_name, normalize_relpath, validate_place


def split_entries(
    values: list[str], source: str, cwd: Path
) -> tuple[tuple[str, ...], tuple[tuple[str, Path], ...]]:
    """The entries (relative to ``--src``, unique) and the outputs ``in:out`` names
    (absolute); ``source`` is ``--entry`` or ``scssq.toml: entries``, for messages."""
    entries: dict[str, Path | None] = {}
    for value in values:
        given, sep, output = value.partition(":")
        entry = normalize_relpath(given, "entry")
        target = None
        if sep:
            if not output.strip() or output.endswith(("/", os.sep)):
                raise UsageError(
                    f"{source} {value!r}: name the CSS file after ':', e.g. "
                    f"{given}:dist/{css_name(entry).rsplit('/', 1)[-1]}"
                )
            target = (cwd / output).resolve()
        if entry in entries and entries[entry] != target:
            raise UsageError(
                f"{source}: entry {entry!r} is given twice with different outputs; keep one"
            )
        entries[entry] = target
    outputs = tuple((e, t) for e, t in entries.items() if t is not None)
    return tuple(entries), outputs


def check_targets(targets: dict[str, Path], src: Path) -> None:
    """Refuse two entries written to one file, and a CSS written over a stylesheet."""
    seen: dict[Path, str] = {}
    for entry, target in targets.items():
        if target == (src / entry).resolve():
            raise UsageError(f"entry {entry!r} would be overwritten by its own CSS; name another")
        if target.is_dir():
            raise UsageError(
                f"the CSS of {entry!r} would be written to {str(target)!r}, a folder; "
                "name a file after ':' (--entry in.scss:out.css)"
            )
        other = seen.setdefault(target, entry)
        if other != entry:
            raise UsageError(
                f"entries {other!r} and {entry!r} would both be written to {str(target)!r}; "
                "give each its own output"
            )


def places(targets: dict[str, Path], src: Path) -> tuple[Place, ...]:
    """Where each entry's CSS goes, as far as a source map cares
    (:attr:`CompileOptions.places`): its name, and its folder and ``src`` relative to
    their nearest common folder."""
    found = []
    for entry, target in targets.items():
        common = os.path.commonpath([src, target.parent])
        place = (
            entry,
            target.name,
            Path(os.path.relpath(target.parent, common)).as_posix(),
            Path(os.path.relpath(src, common)).as_posix(),
        )
        try:
            found.append(validate_place(place))
        except InvalidInput as e:
            raise UsageError(
                f"the source map of {entry!r} cannot name where its CSS goes "
                f"({str(target)!r}): {e}; write it elsewhere or drop the source map"
            ) from None
    return tuple(found)
