"""A loopback TCP proxy that a test can cut and restore, to make outages.

Cutting closes every open connection and the listening socket, so new
connections are refused; restoring listens again on the same port. The server
behind it keeps its state, unlike a killed and restarted one. Freezing makes the
open connections die silently, as when a NAT or firewall entry is dropped: no FIN
or RST, both ends keep an open socket, and nothing sent on it arrives any more;
new connections still get through. A partition goes further: new connections are
accepted but just as dead, until it heals.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from .procs import free_port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._frozen: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._partitioned = False
        self.restore()

    def restore(self) -> None:
        """Accept connections again."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    close = cut

    def freeze(self) -> int:
        """Make every open connection silently dead; returns how many there were."""
        with self._lock:
            self._frozen |= self._conns
            return len(self._conns) // 2

    def partition(self) -> int:
        """Freeze every open connection, and each new one until :meth:`heal`."""
        with self._lock:
            self._partitioned = True
        return self.freeze()

    def heal(self) -> None:
        """New connections get through again (the frozen ones stay dead)."""
        with self._lock:
            self._partitioned = False

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns |= {client, upstream}
                if self._partitioned:
                    self._frozen |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is a:
                        self._client_data(data)
                    if sock not in self._frozen:
                        peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._conns -= {a, b}
                self._frozen -= {a, b}

    def _client_data(self, data: bytes) -> None:
        """Called with each chunk a client sends, before it is forwarded (a subclass's hook)."""
