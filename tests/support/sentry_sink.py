"""A local Sentry endpoint that records what the real sentry-sdk sends.

``SentrySink()`` listens on a free loopback port; point ``SENTRY_DSN`` at
:attr:`SentrySink.dsn` (``http://key@127.0.0.1:PORT/1``) and the SDK POSTs its
envelopes to ``/api/1/envelope/``. Each body is decompressed (the SDK gzips
by default) and parsed with ``sentry_sdk.envelope.Envelope.deserialize``, so a
test asserts on the error events and the spans Sentry would have received, and
on the raw bytes (to prove something is absent). sentry-sdk 3 streams spans:
each ``span`` item holds ``{"version": 2, "items": [span, ...]}``, every span
with ``trace_id``, ``span_id``, ``parent_span_id``, ``name``, ``status``,
``is_segment`` (a root span: the client's submit, the worker's task), epoch
``start_timestamp``/``end_timestamp`` and typed ``attributes``, which
:meth:`SentrySink.spans` flattens to plain values.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sentry_sdk.envelope import Envelope


class SentrySink:
    """Records envelopes POSTed to ``/api/1/envelope/``; use as a context manager."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.envelopes: list[Envelope] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding not in ("", "identity"):
                    sink.rejected.append(f"unsupported Content-Encoding {encoding}")
                    self.send_response(415)
                    self.end_headers()
                    return
                if self.path.rstrip("/") != "/api/1/envelope":
                    sink.rejected.append(f"unexpected path {self.path}")
                with sink._lock:
                    sink.bodies.append(body)
                    sink.envelopes.append(Envelope.deserialize(body))
                payload = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.dsn = f"http://key@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> SentrySink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Payloads of every envelope item of type ``kind`` (event, span, ...)."""
        with self._lock:
            found = []
            for envelope in self.envelopes:
                for item in envelope.items:
                    if item.type != kind:
                        continue
                    payload = item.payload.json
                    if payload is None:
                        payload = json.loads(item.payload.get_bytes() or b"null")
                    if payload is not None:
                        found.append(payload)
            return found

    def spans(self, name: str | None = None, **attributes: Any) -> list[dict[str, Any]]:
        """Spans received so far (by name and attribute values), oldest first.

        Each span's ``attributes`` are plain values (``{"value": v, "type": t}``
        unwrapped); ``op`` is its ``sentry.op`` attribute.
        """
        found = []
        for container in self.items("span"):
            for raw in container.get("items", []):
                span = dict(raw)
                span["attributes"] = {
                    k: v.get("value") if isinstance(v, dict) else v
                    for k, v in (raw.get("attributes") or {}).items()
                }
                span["op"] = span["attributes"].get("sentry.op")
                found.append(span)
        found.sort(key=lambda s: s["start_timestamp"])
        return [
            s
            for s in found
            if (name is None or s.get("name") == name)
            and all(s["attributes"].get(k) == v for k, v in attributes.items())
        ]

    def roots(self, name: str | None = None, **attributes: Any) -> list[dict[str, Any]]:
        """Root spans (a submit's, a task's) by name and attribute values."""
        return [s for s in self.spans(name, **attributes) if s.get("is_segment")]

    def children(self, root: dict[str, Any], *ops: str) -> list[dict[str, Any]]:
        """Spans under ``root`` (same segment) whose op is one of ``ops``, oldest first."""
        return [
            s
            for s in self.spans()
            if s["attributes"].get("sentry.segment.id") == root["span_id"]
            and s is not root
            and not s.get("is_segment")
            and (not ops or s["op"] in ops)
        ]

    def errors(self) -> list[dict[str, Any]]:
        """Error events received so far."""
        return self.items("event")

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.bodies)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Poll ``check`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.1)
        raise TimeoutError(
            f"Sentry sink: no {what} after {timeout}s; got "
            f"{[(s.get('name'), s.get('op')) for s in self.spans()]} and "
            f"{len(self.errors())} error events"
        )
