"""The dart-sass engine: one long-lived ``sass --embedded`` compiler per worker process.

Where things run: the compile runs in the Dart compiler process (it never holds our GIL),
which the task can kill; this host, in the task's process, answers the compiler's
import requests from the bundle (:mod:`compiler_tasks.engines.dart.importer`), ticks (lock
renewal) every ``tick_interval`` and enforces the deadline, all in one ``select`` loop
(:mod:`compiler_tasks.engines.dart.loop`). The compiler gets no load path and no filesystem
importer: it reads no file by itself.

Failures, as for libsass: the deadline kills the compiler (CompileTimeout, ``compile
exceeded N s``); ``tick()`` returning False kills it (EngineAborted). A compiler that
crashes, closes its output, breaks the protocol, or leaves the liveness probe unanswered
while making no progress (no CPU used meanwhile: a busy compiler may miss a probe) is
killed, restarted and the compile retried once; a second failure is an EngineCrash
(exit 3, never cached). Running out of memory (RLIMIT_AS, see
:mod:`compiler_tasks.engines.dart.launch`) is a LimitExceeded at once (exit 1, never
cached): a retry would run out too.
The compiler is replaced after ``SCSSQ_DART_MAX_COMPILES`` compiles, or when it idles
above half of ``SCSSQ_ENGINE_MEMORY_MB``.

A new compiler first compiles :data:`WARM_UP_SHEET` (not counted as a compile nor
traced): its allocations run through the Dart VM's young generation, which the VM grows
to its working size and whose pages then count in RSS. Without it the compiler's RSS
climbs over its first few dozen real compiles and then stays flat, and its first compile
is slower; with it the compiler is at its working size from its first compile
(``bench/dart_heap.py`` measures the growth).

Output equals the ``sass`` CLI's for the same files and options: ``charset`` is on
(``@charset "UTF-8";`` or a BOM when compressed, as the CLI writes), the CSS ends with a
newline, and with a source map ``a/main.css`` ends with
``/*# sourceMappingURL=main.css.map */`` and the map (``a/main.css.map``) has relative
``sources``, ``file`` and embedded ``sourcesContent`` (the CLI's ``--embed-sources``);
:mod:`compiler_tasks.engines.maps` then moves it to where the CSS is written and applies
``--no-embed-sources`` and ``--embed-source-map``, as the CLI writes them.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ...errors import CompileError, CompileTimeout, EngineCrash, LimitExceeded
from ...settings import Settings
from ..base import EngineOutput, EngineRequest, check_request, write_trace
from ..maps import place
from ..resolver import bound_text
from .compiler import CompilerProcess, DartSassBinary, locate
from .importer import BundleImporter
from .loop import CompilerFailed, Loop, Timing, garbage, protocol_error
from .messages import (
    Scrubber,
    Warnings,
    canonicalize_reply,
    compile_request,
    import_reply,
    rewrite_map,
    warm_up_request,
)
from .protocol import PROTOCOL_MAJOR, encode_packet, version_request

log = logging.getLogger(__name__)

#: Seconds between liveness probes while a compile runs.
PING_INTERVAL = 5.0
#: A compiler that leaves a probe unanswered this long is hung.
PING_TIMEOUT = 10.0
#: Seconds a new compiler may take to answer its first VersionRequest.
START_TIMEOUT = 20.0
#: An idle compiler above this share of SCSSQ_ENGINE_MEMORY_MB is replaced.
RETIRE_RSS_SHARE = 0.5
#: Iterations of the warm-up's loop: enough allocation for the Dart VM to grow its
#: young generation to the size it reaches after dozens of real compiles.
WARM_UP_ITERATIONS = 20_000
#: What a new compiler compiles first (built-in modules only; its output is dropped).
WARM_UP_SHEET = f"""@use "sass:map";
@use "sass:string";
$m: ();
@for $i from 1 through {WARM_UP_ITERATIONS} {{
  $m: map.merge((k: string.unquote("x#{{$i}}-abcdefghijklmnopqrstuvwxyz")), (v: $i));
}}
.a {{ b: map.get($m, v); }}
"""
_FILE_URL_RE = re.compile(r"""["']\s*file:""", re.IGNORECASE)


class DartSassEngine:
    """The dart-sass engine of one worker process (not thread-safe); see the module doc."""

    name = "dart-sass"

    def __init__(
        self,
        settings: Settings,
        *,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.timing = Timing(ping_interval, ping_timeout, start_timeout)
        self.compiles_run = 0
        self.starts = 0
        self._binary: DartSassBinary | None = None
        self._proc: CompilerProcess | None = None

    @property
    def pid(self) -> int | None:
        """The compiler's process id (None when none runs)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> DartSassEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the compiler, if any."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.retire()

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()

    def compile(
        self,
        req: EngineRequest,
        *,
        deadline: float,
        tick: Callable[[], bool] | None = None,
        tick_interval: float = 1.0,
    ) -> EngineOutput:
        """Compile ``req.entry`` before ``deadline`` (a ``time.monotonic()`` value).

        Raises CompileError (``path:line:col: message``), CompileTimeout, EngineCrash,
        EngineAborted (``tick()`` returned False), InvalidInput or ConfigError (no binary).
        """
        root = check_request(req)
        limit = self.settings.compile_timeout
        timeout = CompileTimeout(
            f"compile exceeded {limit:g} s while compiling {req.entry} "
            "(the limit is SCSSQ_COMPILE_TIMEOUT)"
        )
        if time.monotonic() >= deadline:
            raise timeout
        source = _entry_source(root, req.entry)
        if self._binary is None:
            self._binary = locate()
        for attempt in (1, 2):
            try:
                proc = self._ready(self._loop_factory(deadline, tick, tick_interval, timeout, req))
                loop = self._loop_factory(deadline, tick, tick_interval, timeout, req)(proc)
                response, warnings = self._run(proc, req, root, source, loop)
            except CompilerFailed as failure:
                self._discard()
                if failure.sources_fault:
                    raise CompileError(
                        f"{req.entry}: Stack Overflow: the compile recursed too deep "
                        "(a @function or @mixin that calls itself without end?)"
                    ) from None
                if failure.limit:
                    raise LimitExceeded(f"{req.entry}: Dart Sass compiler {failure}") from None
                log.warning("Dart Sass compiler %s (%s, try %d)", failure, req.entry, attempt)
                if attempt == 2 or not failure.retry:
                    retried = "; it was restarted and the compile retried once" * (attempt == 2)
                    raise EngineCrash(
                        f"Dart Sass compiler {failure} while compiling {req.entry}{retried}"
                    ) from None
                continue
            except BaseException:
                self._discard()
                raise
            output = self._output(response, warnings, req, root, proc)
            self._maybe_retire(proc)
            return output
        raise AssertionError("unreachable")

    def _loop_factory(
        self,
        deadline: float,
        tick: Callable[[], bool] | None,
        tick_interval: float,
        timeout: CompileTimeout,
        req: EngineRequest,
    ) -> Callable[[CompilerProcess], Loop]:
        memory = self.settings.engine_memory_mb

        def make(proc: CompilerProcess) -> Loop:
            return Loop(
                proc, self.timing, memory, deadline, tick, tick_interval, timeout, req.entry
            )

        return make

    def _ready(self, make_loop: Callable[[CompilerProcess], Loop]) -> CompilerProcess:
        """The running compiler, or a new one that has answered a VersionRequest."""
        if self._proc is not None and not self._proc.alive:
            self._discard()  # died while idle: not this request's fault
        if self._proc is not None:
            return self._proc
        assert self._binary is not None
        max_packet = 2 * self.settings.max_output_bytes + (8 << 20)
        try:
            proc = CompilerProcess(self._binary, self.settings.engine_memory_mb, max_packet)
        except OSError as e:
            raise CompilerFailed(f"could not start ({e.strerror})") from None
        self._proc = proc
        self.starts += 1
        proc.queue(encode_packet(0, version_request(0)))
        loop = make_loop(proc)
        loop.start_limit = time.monotonic() + self.timing.start_timeout
        for packet in loop.packets():
            message = packet.message
            if packet.compilation_id == 0 and message.WhichOneof("message") == "version_response":
                major = message.version_response.protocol_version.split(".")[0]
                if major != str(PROTOCOL_MAJOR):
                    raise garbage(proc, f"protocol {major}, expected {PROTOCOL_MAJOR}")
                self._warm_up(proc, loop)
                return proc
        raise garbage(proc, "no VersionResponse at start")

    def _warm_up(self, proc: CompilerProcess, loop: Loop) -> None:
        """Compile :data:`WARM_UP_SHEET` on the new compiler (see the module doc)."""
        cid = proc.next_id
        proc.next_id += 1
        proc.queue(encode_packet(cid, warm_up_request(WARM_UP_SHEET)))
        while True:
            for packet in loop.packets():
                which = packet.message.WhichOneof("message")
                if packet.compilation_id == cid and which == "compile_response":
                    return
                if packet.compilation_id != cid or which != "log_event":
                    raise garbage(proc, f"{which} for compilation {packet.compilation_id}")

    def _run(
        self, proc: CompilerProcess, req: EngineRequest, root: str, source: str, loop: Loop
    ) -> tuple[Any, list[str]]:
        """Send one CompileRequest and serve it; returns (CompileResponse, warnings)."""
        cid = proc.next_id
        proc.next_id += 1
        load_dirs = tuple(
            d
            for d in (posixpath.normpath(posixpath.join(root, p)) for p in req.load_paths)
            if os.path.isdir(d)
        )
        importer = BundleImporter(root, load_dirs, proc.base)
        proc.queue(encode_packet(cid, compile_request(req, source, proc.base)))
        write_trace(proc.pid, req.entry)
        proc.compiles += 1
        self.compiles_run += 1
        loop.probing = True
        warnings = Warnings(self.settings.max_message_bytes)
        while True:
            for packet in loop.packets():
                message = packet.message
                which = message.WhichOneof("message")
                if which == "version_response" and packet.compilation_id == 0:
                    continue  # a late answer to an earlier compile's probe
                if which == "error":
                    memory = self.settings.engine_memory_mb
                    raise protocol_error(proc, message.error.message, memory)
                if packet.compilation_id != cid:
                    raise garbage(proc, f"{which} for compilation {packet.compilation_id}")
                if which == "compile_response":
                    return message.compile_response, warnings.texts
                if which == "log_event":
                    warnings.add(message.log_event)
                elif which == "canonicalize_request":
                    proc.queue(encode_packet(cid, canonicalize_reply(importer, message)))
                elif which == "import_request":
                    proc.queue(encode_packet(cid, import_reply(importer, message)))
                else:
                    raise garbage(proc, f"unexpected {which}")

    def _maybe_retire(self, proc: CompilerProcess) -> None:
        limit = self.settings.engine_memory_mb << 20
        if (
            proc.compiles >= self.settings.dart_max_compiles
            or proc.rss_bytes() > RETIRE_RSS_SHARE * limit
        ):
            self.close()

    def _output(
        self,
        response: Any,
        warnings: list[str],
        req: EngineRequest,
        root: str,
        proc: CompilerProcess,
    ) -> EngineOutput:
        importer = BundleImporter(root, (), proc.base)
        limit = self.settings.max_message_bytes
        scrub = Scrubber(proc.base, root, req.root)
        text = bound_text(scrub("".join(warnings)), limit, "warnings")
        if response.WhichOneof("result") != "success":
            failure = response.failure
            span = failure.span
            where = importer.rel_for(span.url) if span.url else None
            message = failure.message or "compile failed"
            if _FILE_URL_RE.search(span.text):
                message += " (file: URLs are never read; imports stay inside the bundle)"
            if where is not None:
                message = f"{where}:{span.start.line + 1}:{span.start.column + 1}: {message}"
                message += _snippet(failure.formatted, failure.message)
            else:
                message = f"{req.entry}: {message}"
            raise CompileError(bound_text(scrub(message), limit, "message"))
        css = response.success.css
        source_map = None
        if req.source_map:
            css_name = posixpath.basename(posixpath.splitext(req.entry)[0]) + ".css"
            source_map = rewrite_map(response.success.source_map, importer, req.entry, css_name)
            gap = "" if req.style == "compressed" else "\n\n"  # as the CLI writes it
            css += f"{gap}/*# sourceMappingURL={quote(css_name)}.map */"
        maximum = self.settings.max_output_bytes
        placed = place(
            EngineOutput(
                (css + "\n" if css else "").encode("utf-8"),
                None if source_map is None else source_map.encode("utf-8"),
                text,
            ),
            req,
            maximum,
        )
        blobs = [placed.css] if placed.source_map is None else [placed.css, placed.source_map]
        for blob, what in zip(blobs, ("output", "source map output"), strict=False):
            if len(blob) > maximum:
                raise LimitExceeded(
                    f"{req.entry}: {what} exceeds {maximum} bytes (the limit is "
                    "SCSSQ_MAX_OUTPUT_BYTES)"
                )
            if scrub.leaks(blob):
                raise CompileError(f"{req.entry}: {what} names a worker path")
        return placed


def _snippet(formatted: str, message: str) -> str:
    """What the ``sass`` CLI prints after ``Error: MESSAGE``: the source snippet with the
    span underlined, and the stack of stylesheets (a newline first); "" if none."""
    head = f"Error: {message}\n"
    return "\n" + formatted[len(head) :] if formatted.startswith(head) else ""


def _entry_source(root: str, entry: str) -> str:
    try:
        with open(os.path.join(root, entry), "rb") as handle:
            return handle.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CompileError(f"{entry}: Invalid UTF-8 (byte {e.start}).") from None
    except OSError:
        raise CompileError(f"{entry}: cannot read the entry") from None
