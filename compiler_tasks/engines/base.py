"""What every engine shares: the request, the output, the abort error, the checks.

An engine compiles one entry of a bundle extracted under ``EngineRequest.root`` before a
deadline, calling ``tick()`` every ``tick_interval`` seconds while it waits (lock
renewal). Two implementations: the libsass child process
(:mod:`compiler_tasks.engines.libsass.process`) and the Dart Sass embedded compiler
(:mod:`compiler_tasks.engines.dart.engine`); pick one with
:func:`compiler_tasks.engines.registry.open_engine`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import keys
from ..errors import InfrastructureError, InvalidInput
from . import resolver

#: Test-only: a file to which every engine appends one line per compile it runs, so
#: tests count compiles where the code under test cannot fake them (the libsass child
#: writes it itself; the Dart Sass host writes it as it hands a compile to the compiler).
TRACE_ENV = "SCSSQ_ENGINE_TRACE"


class EngineAborted(InfrastructureError):
    """Raised when ``tick()`` returned False (the lock was lost): the engine was killed."""


@dataclass(frozen=True)
class EngineRequest:
    """One entry to compile from a bundle extracted under ``root``."""

    root: Path  # bundle root: a fresh per-task directory holding the extracted bundle
    entry: str  # relative POSIX path of the entry (.scss or .sass) inside root
    load_paths: tuple[str, ...] = ()  # relative dirs inside root
    style: str = "expanded"  # "expanded" | "compressed"
    source_map: bool = False
    silence_deprecations: tuple[str, ...] = ()  # dart-sass only: deprecation ids
    quiet_deps: bool = False  # dart-sass only: no warnings from load-path stylesheets
    embed_sources: bool = True  # with a source map: sourcesContent in the map
    embed_source_map: bool = False  # with a source map: a data: URL in the CSS, no map file
    #: Where the CSS is written (:data:`keys.Place`; None: beside the entry). Only a
    #: source map depends on it (:mod:`compiler_tasks.engines.maps`).
    place: keys.Place | None = None


def request_for(root: Path, entry: str, options: keys.CompileOptions) -> EngineRequest:
    """The engine request of one entry of a submit's compile options."""
    return EngineRequest(
        root=root,
        entry=entry,
        load_paths=options.load_paths,
        style=options.style,
        source_map=options.source_map,
        silence_deprecations=options.silence_deprecations,
        quiet_deps=options.quiet_deps,
        embed_sources=options.embed_sources,
        embed_source_map=options.embed_source_map,
        place=options.place(entry),
    )


@dataclass(frozen=True)
class EngineOutput:
    """What a successful compile produced."""

    css: bytes
    source_map: bytes | None
    warnings: str  # @warn/@debug text, paths relative to root, bounded by max_message_bytes


class Engine(Protocol):
    """The interface the task uses; one engine object per worker pool process."""

    name: str
    compiles_run: int

    @property
    def pid(self) -> int | None: ...

    def compile(
        self,
        req: EngineRequest,
        *,
        deadline: float,
        tick: Callable[[], bool] | None = None,
        tick_interval: float = 1.0,
    ) -> EngineOutput: ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...


def check_request(req: EngineRequest) -> str:
    """Validate a request against its bundle; returns the real path of the root."""
    root = os.path.realpath(req.root)
    if not os.path.isdir(root) or root == "/":
        raise InvalidInput("the bundle root is not a directory")
    entry = keys.validate_relpath(req.entry, "entry")
    if not entry.endswith((".scss", ".sass")):
        raise InvalidInput(f"entry {entry!r} must be a .scss or .sass file")
    real = os.path.realpath(os.path.join(root, entry))
    if not resolver.is_inside(real, root):
        raise InvalidInput(f"entry {entry!r} leaves the bundle")
    if not os.path.isfile(real):
        raise InvalidInput(f"entry {entry!r} is not a file of the bundle")
    for path in req.load_paths:
        keys.validate_relpath(path, "load path")
        if not resolver.is_inside(os.path.realpath(os.path.join(root, path)), root):
            raise InvalidInput(f"load path {path!r} leaves the bundle")
    if req.place is not None:
        keys.validate_place(req.place)
    if req.style not in keys.STYLES:
        raise InvalidInput(f"style {req.style!r}: choose one of {', '.join(keys.STYLES)}")
    return root


def write_trace(pid: int, entry: str) -> None:
    """Append one compile line to the test-only trace file, when configured."""
    trace = os.environ.get(TRACE_ENV)
    if trace:
        fd = os.open(os.path.abspath(trace), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{pid} {entry}\n".encode())
        finally:
            os.close(fd)


def describe_exit(code: int | None) -> str:
    """How a process ended, for messages: ``died (signal 9, SIGKILL)``, ``exited with ...``."""
    if code is None:
        return "closed its output"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"died (signal {-code}, {name})"
    return f"exited with status {code}"


def let_exit(proc: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """Close an idle engine process's stdin (it exits on EOF) and give it ``grace`` s.

    Callers kill it afterwards if it lingered (and reap it either way).
    """
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
