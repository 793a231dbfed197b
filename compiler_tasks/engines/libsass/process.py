"""Sass engines run in a separate, killable, resource-limited child process.

libsass holds the GIL for a whole compile and no signal interrupts an endless ``@while``,
so a compile never runs in the task's own process. :class:`EngineProcess` keeps one child
(``python -P -m compiler_tasks.engines.libsass.child``, a plain ``subprocess`` child in its own
session: Celery's daemonic pool processes cannot have ``multiprocessing`` children) and,
while it waits for an answer, calls ``tick()`` (lock renewal) every ``tick_interval``
seconds and enforces the deadline by SIGKILLing the child's process group.

The child is replaced after ``settings.engine_max_compiles`` compiles, after a kill and
after a crash. Its imports are resolved by :mod:`compiler_tasks.engines.resolver` inside the bundle
only, and no message or warning names a worker path. Source maps: the CSS of ``a/main.scss``
is ``a/main.css`` and its map ``a/main.css.map`` (the CSS ends with
``/*# sourceMappingURL=main.css.map */``); map paths are relative to the map and
``sourcesContent`` is embedded, so the map works without the bundle;
:mod:`compiler_tasks.engines.maps` then moves it to where the CSS is written.

An :class:`EngineProcess` is not thread-safe: one per worker pool process.

The other engine, ``dart-sass``, is a long-lived Dart Sass compiler
(:mod:`compiler_tasks.engines.dart.engine`); :mod:`compiler_tasks.engines.registry` picks one.
The request, output and abort types they share live in :mod:`compiler_tasks.engines.base`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ...errors import CompileError, CompileTimeout, EngineCrash, InvalidInput, LimitExceeded
from ...settings import ENGINES, Settings
from .. import resolver
from ..base import (
    TRACE_ENV,
    Engine,
    EngineAborted,
    EngineOutput,
    EngineRequest,
    check_request,
    describe_exit,
    let_exit,
)
from ..maps import place

__all__ = [
    "TRACE_ENV",
    "Engine",
    "EngineAborted",
    "EngineOutput",
    "EngineProcess",
    "EngineRequest",
]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_MAX_RESPONSE_HEADER = 4 << 20
_READ_CHUNK = 1 << 20
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])
_CHILD_ENV = ("PATH", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONHASHSEED")


class _Child:
    """One engine process and the pipes to it."""

    def __init__(self, settings: Settings) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (lives with the child)
        paths = [_PACKAGE_PARENT, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        # The child runs untrusted sources: give it no credentials (AWS_*, SENTRY_DSN, ...).
        env = {k: v for k, v in os.environ.items() if k in _CHILD_ENV}
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths if p)
        args = [
            sys.executable,
            "-P",
            "-m",
            "compiler_tasks.engines.libsass.child",
            "--memory-mb",
            str(settings.engine_memory_mb),
            "--max-output",
            str(settings.max_output_bytes),
            "--max-message",
            str(settings.max_message_bytes),
            "--parent",
            str(os.getpid()),
        ]
        trace = os.environ.get(TRACE_ENV)
        if trace:
            args += ["--trace", os.path.abspath(trace)]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=_PACKAGE_PARENT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        self.compiles = 0

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        data = json.dumps(request).encode("utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write(_HEADER.pack(len(data)) + data)
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL the child's process group and reap it (never after reaping: pids recycle)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.reap(None)

    def retire(self) -> None:
        """Let an idle child exit on EOF; kill it if it does not within a second."""
        let_exit(self.proc)
        self.kill()

    def reap(self, timeout: float | None) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        return code

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - 4096))
            return self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


_death = describe_exit


class EngineProcess:
    """One long-lived child per worker pool process; replaced after settings.engine_max_compiles
    compiles, after a kill, or after a crash."""

    def __init__(self, settings: Settings, name: str = "libsass") -> None:
        if name != "libsass":
            hint = "use engines.open_engine()" if name in ENGINES else f"choose one of {ENGINES}"
            raise InvalidInput(f"EngineProcess runs libsass, not engine {name!r}; {hint}")
        self.settings = settings
        self.name = name
        self.compiles_run = 0
        self._child: _Child | None = None

    @property
    def pid(self) -> int | None:
        """The current child's process id (None when no child runs)."""
        return self._child.proc.pid if self._child is not None else None

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child, if any."""
        child, self._child = self._child, None
        if child is not None:
            child.retire()
            child.stderr.close()

    def _discard(self) -> _Child | None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.stderr.close()
        return child

    def compile(
        self,
        req: EngineRequest,
        *,
        deadline: float,
        tick: Callable[[], bool] | None = None,
        tick_interval: float = 1.0,
    ) -> EngineOutput:
        """Compile ``req.entry`` in the child before ``deadline`` (a ``time.monotonic()`` value).

        Raises CompileError (user's sources; ``path:line:col: message``), CompileTimeout,
        EngineCrash, EngineAborted (``tick()`` returned False) or InvalidInput.
        """
        root = check_request(req)
        limit = self.settings.compile_timeout
        timeout = CompileTimeout(
            f"compile exceeded {limit:g} s while compiling {req.entry} "
            "(the limit is SCSSQ_COMPILE_TIMEOUT)"
        )
        if time.monotonic() >= deadline:
            raise timeout
        if self._child is not None and not self._child.alive:
            self._discard()  # died while idle: not this request's fault
        if self._child is None:
            try:
                self._child = _Child(self.settings)
            except OSError as e:
                raise EngineCrash(f"cannot start the engine process ({e.strerror})") from None
        child = self._child
        self.compiles_run += 1
        child.compiles += 1
        request = {
            "root": root,
            "entry": req.entry,
            "load_paths": list(req.load_paths),
            "style": req.style,
            "source_map": req.source_map,
            "timeout": max(0.0, deadline - time.monotonic()),
        }
        try:
            try:
                child.send(request)
            except OSError:
                raise self._crash(child, req.entry) from None
            header, blobs = self._wait(child, req.entry, deadline, tick, tick_interval, timeout)
        except BaseException:
            self._discard()
            raise
        if header.get("retire") or child.compiles >= self.settings.engine_max_compiles:
            self.close()
        return self._output(header, blobs, req, root)

    def _wait(
        self,
        child: _Child,
        entry: str,
        deadline: float,
        tick: Callable[[], bool] | None,
        tick_interval: float,
        timeout: CompileTimeout,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Read one response, ticking and enforcing the deadline; kills the child on failure."""
        assert child.proc.stdout is not None
        fd = child.proc.stdout.fileno()
        buf = bytearray()
        header: dict[str, Any] | None = None
        need = _HEADER.size
        next_tick = time.monotonic() + tick_interval
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise timeout
                if tick is not None and now >= next_tick:
                    if not tick():
                        raise EngineAborted(
                            f"compile of {entry} aborted: the lock was lost (the engine was killed)"
                        )
                    next_tick = time.monotonic() + tick_interval
                until = min(deadline, next_tick) if tick is not None else deadline
                if not sel.select(max(0.0, until - time.monotonic())):
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    raise self._crash(child, entry)
                buf += chunk
                if header is None and len(buf) >= need:
                    if need == _HEADER.size:
                        (size,) = _HEADER.unpack_from(buf)
                        if size > _MAX_RESPONSE_HEADER:
                            raise self._garbage(child, entry)
                        need += size
                    if len(buf) >= need:
                        header = self._parse(child, entry, bytes(buf[_HEADER.size : need]))
                        del buf[:need]
                        need = sum(header["blobs"])
                if header is not None and len(buf) >= need:
                    if len(buf) > need:
                        raise self._garbage(child, entry)
                    sizes, blobs, pos = header["blobs"], [], 0
                    for size in sizes:
                        blobs.append(bytes(buf[pos : pos + size]))
                        pos += size
                    return header, blobs

    def _parse(self, child: _Child, entry: str, data: bytes) -> dict[str, Any]:
        try:
            header = json.loads(data)
            sizes = header.setdefault("blobs", [])
            ok = isinstance(header.get("status"), str) and isinstance(sizes, list)
            ok = ok and len(sizes) <= 2
            ok = ok and all(
                isinstance(s, int) and 0 <= s <= self.settings.max_output_bytes for s in sizes
            )
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise self._garbage(child, entry)
        return dict(header)

    def _garbage(self, child: _Child, entry: str) -> EngineCrash:
        child.kill()
        log.warning("engine process sent a malformed response; stderr: %s", child.stderr_tail())
        return EngineCrash(f"engine process sent a malformed response while compiling {entry}")

    def _crash(self, child: _Child, entry: str) -> EngineCrash | LimitExceeded:
        code = child.reap(2.0)
        if code is None:
            child.kill()
        tail = child.stderr_tail()
        log.warning("engine process %s; stderr: %s", _death(code), tail)
        if any(sign in tail for sign in ("MemoryError", "bad_alloc", "out of memory")):
            return self._out_of_memory(entry)
        return EngineCrash(f"engine process {_death(code)} while compiling {entry}")

    def _out_of_memory(self, entry: str) -> LimitExceeded:
        """A memory limit hit: the sources' outcome on this fleet, not a crash to retry."""
        return LimitExceeded(
            f"{entry}: the compile ran out of memory (the limit is "
            f"SCSSQ_ENGINE_MEMORY_MB={self.settings.engine_memory_mb}; raise it to compile "
            "these sources)"
        )

    def _output(
        self, header: dict[str, Any], blobs: list[bytes], req: EngineRequest, root: str
    ) -> EngineOutput:
        roots = (root, os.path.abspath(req.root))
        limit = self.settings.max_message_bytes
        status = header.get("status")
        warnings = resolver.bound_text(
            resolver.scrub(str(header.get("warnings", "")), roots), limit, "warnings"
        )
        if status == "ok" and len(blobs) == (2 if req.source_map else 1):
            output = EngineOutput(blobs[0], blobs[1] if req.source_map else None, warnings)
            return place(output, req, self.settings.max_output_bytes)
        message = resolver.bound_text(
            resolver.scrub(str(header.get("message", "")), roots), limit, "message"
        )
        if status == "error":
            raise CompileError(message)
        if status == "invalid":
            raise InvalidInput(message)
        if status == "limit":
            raise LimitExceeded(message)
        self._discard()
        if status == "oom":
            raise self._out_of_memory(req.entry)
        if status == "unreadable":
            raise EngineCrash(f"the worker could not read a bundle file ({message})")
        raise EngineCrash(f"engine process failed while compiling {req.entry} ({message})")
