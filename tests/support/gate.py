"""A TCP proxy that holds the first command containing a pattern until a test opens it.

Put between a worker and Redis, it stops that worker at one exact point of its real
work (e.g. its lock command for a key), so a test can make a race window deterministic:
the worker has done everything before the command, nothing after it.
"""

from __future__ import annotations

import threading

from .proxy import TcpProxy


class GateProxy(TcpProxy):
    """Forwards like :class:`TcpProxy`; the first client data containing ``pattern``
    waits until :meth:`open` (``held`` is set while it waits)."""

    def __init__(self, target: int, pattern: bytes) -> None:
        self.pattern = pattern
        self.held = threading.Event()
        self._opened = threading.Event()
        self._armed = True
        super().__init__(target)

    def open(self) -> None:
        self._opened.set()

    def _client_data(self, data: bytes) -> None:
        with self._lock:
            hit = self._armed and self.pattern in data
            if hit:
                self._armed = False
        if hit:
            self.held.set()
            self._opened.wait(120)
