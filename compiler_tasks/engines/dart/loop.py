"""The host's wait loop for one compile attempt, and how compiler failures are described.

:class:`Loop` waits in ``select`` for the compiler's packets while it flushes what the
compiler should read, calls ``tick()`` every ``tick_interval`` (lock renewal), enforces
the deadline, and, once a compile runs, sends a liveness probe (a VersionRequest, which
the compiler's main isolate answers even while a compile isolate is busy) every
``ping_interval``: no answer within ``ping_timeout`` means the compiler hangs.

A :class:`CompilerFailed` means the compiler was killed for crashing, hanging or breaking
the protocol; ``retry`` says whether a fresh compiler is worth one more try (running out
of memory is not: it would again).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import CompileTimeout
from ..base import EngineAborted, describe_exit
from .compiler import CompilerProcess
from .protocol import ProtocolViolation, encode_packet, version_request

log = logging.getLogger(__name__)

_OOM_MARKERS = ("Out of Memory", "Exhausted heap space", "out of memory")
#: First line of the ProtocolError the compiler sends when the Dart VM's stack overflows.
_STACK_OVERFLOW = "Stack Overflow"


class CompilerFailed(Exception):
    """The compiler process misbehaved (it is already killed); see the module doc.

    ``sources_fault``: the failure is the stylesheet's own doing and happens again
    for the same sources (a runaway recursion overflows the compiler's stack): the
    host reports it as a compile error, neither retried nor counted as a crash.
    """

    def __init__(
        self, what: str, retry: bool = True, sources_fault: bool = False, limit: bool = False
    ) -> None:
        super().__init__(what)
        self.retry = retry
        self.sources_fault = sources_fault
        self.limit = limit  # a fleet limit was hit (memory): reported at once, never cached


@dataclass(frozen=True)
class Timing:
    """Liveness settings of the host (seconds)."""

    ping_interval: float
    ping_timeout: float
    start_timeout: float


def _out_of_memory(memory_mb: int) -> CompilerFailed:
    return CompilerFailed(
        f"ran out of memory (the limit is SCSSQ_ENGINE_MEMORY_MB={memory_mb})",
        retry=False,
        limit=True,
    )


def crashed(proc: CompilerProcess, memory_mb: int) -> CompilerFailed:
    """Kill and describe a compiler whose output ended or whose input broke."""
    try:
        code: int | None = proc.proc.wait(timeout=2.0)
    except Exception:
        code = None
    proc.kill()
    tail = proc.final_stderr
    log.warning("Dart Sass compiler %s; stderr: %s", describe_exit(code), tail[-2000:])
    if any(marker in tail for marker in _OOM_MARKERS):
        return _out_of_memory(memory_mb)
    return CompilerFailed(describe_exit(code))


def garbage(proc: CompilerProcess, what: str) -> CompilerFailed:
    """Kill a compiler that sent something this host cannot accept."""
    proc.kill()
    log.warning("Dart Sass compiler broke the protocol (%s)", what)
    return CompilerFailed(f"broke the protocol ({what})")


def protocol_error(proc: CompilerProcess, message: str, memory_mb: int) -> CompilerFailed:
    """Kill a compiler that reported a ProtocolError (how it reports running out of heap)."""
    first = (message.strip().splitlines() or ["(no message)"])[0][:300]
    proc.kill()
    log.warning("Dart Sass compiler reported a protocol error: %s", message[:2000])
    if any(marker in first for marker in _OOM_MARKERS):
        return _out_of_memory(memory_mb)
    if first == _STACK_OVERFLOW:  # the Dart VM's StackOverflowError, e.g. endless @return f()
        return CompilerFailed("Stack Overflow", sources_fault=True)
    return CompilerFailed(f"reported a protocol error ({first})")


class Loop:
    """The select loop of one compile attempt: deadline, ticks, liveness probes, I/O."""

    def __init__(
        self,
        proc: CompilerProcess,
        timing: Timing,
        memory_mb: int,
        deadline: float,
        tick: Callable[[], bool] | None,
        tick_interval: float,
        timeout: CompileTimeout,
        entry: str,
    ) -> None:
        self.proc, self.timing, self.memory_mb, self.entry = proc, timing, memory_mb, entry
        self.deadline, self.tick, self.tick_interval = deadline, tick, tick_interval
        self.timeout = timeout
        now = time.monotonic()
        self.next_tick = now + tick_interval
        self.probing = False  # set once a compile runs
        self.next_ping = now + timing.ping_interval
        self.ping_due: float | None = None
        self.ping_id = 0
        self.ping_cpu: int | None = None  # the compiler's CPU ticks when the probe went
        self.start_limit: float | None = None  # set while waiting for a new compiler

    def packets(self) -> list[Any]:
        """Wait for the next packets from the compiler, flushing what it should read."""
        proc = self.proc
        while True:
            self._timers(time.monotonic())
            try:
                proc.flush()
            except OSError:
                raise crashed(proc, self.memory_mb) from None
            proc.want_write(bool(proc.outbox))
            wait = max(0.0, self._until() - time.monotonic())
            ready = proc.poller.poll(math.ceil(wait * 1000))
            if not any(fd == proc.stdout_fd for fd, _ in ready):
                continue
            try:
                got = proc.reader.read_from(proc.stdout_fd)
            except ProtocolViolation as e:
                raise garbage(proc, str(e)) from None
            if got is None:
                raise crashed(proc, self.memory_mb)
            packets = [p for p in got if not self._pong(p)]
            if packets:
                return packets

    def _timers(self, now: float) -> None:
        if now >= self.deadline:
            raise self.timeout
        if self.start_limit is not None and now >= self.start_limit:
            raise CompilerFailed(
                f"did not answer within {self.timing.start_timeout:g} s of its start"
            )
        if self.tick is not None and now >= self.next_tick:
            if not self.tick():
                raise EngineAborted(
                    f"compile of {self.entry} aborted: the lock was lost (the compiler was killed)"
                )
            self.next_tick = time.monotonic() + self.tick_interval
        if not self.probing:
            return
        if self.ping_due is not None:
            if now >= self.ping_due:
                self._judge_silence(now)
        elif now >= self.next_ping:
            self.ping_id += 1
            self.proc.queue(encode_packet(0, version_request(self.ping_id)))
            self.ping_due = now + self.timing.ping_timeout
            self.ping_cpu = self.proc.cpu_ticks()

    def _judge_silence(self, now: float) -> None:
        """A probe went unanswered: hung only if the compiler made no progress (used no
        CPU) meanwhile; a busy one gets another probe period (the deadline still holds)."""
        cpu = self.proc.cpu_ticks()
        if cpu is not None and self.ping_cpu is not None and cpu > self.ping_cpu:
            self.ping_cpu = cpu
            self.ping_due = now + self.timing.ping_timeout
            return
        raise CompilerFailed(
            "stopped answering and made no progress (no reply to a liveness probe and no "
            f"CPU used within {self.timing.ping_timeout:g} s)"
        )

    def _until(self) -> float:
        bounds = [self.deadline]
        if self.tick is not None:
            bounds.append(self.next_tick)
        if self.start_limit is not None:
            bounds.append(self.start_limit)
        if self.probing:
            bounds.append(self.ping_due if self.ping_due is not None else self.next_ping)
        return min(bounds)

    def _pong(self, packet: Any) -> bool:
        """Consume the answer to a liveness probe; True when ``packet`` was one."""
        message = packet.message
        if packet.compilation_id != 0 or message.WhichOneof("message") != "version_response":
            return False
        if self.probing and message.version_response.id == self.ping_id:
            self.ping_due = None
            self.next_ping = time.monotonic() + self.timing.ping_interval
            return True
        return False
