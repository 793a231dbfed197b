"""Count Redis commands per named client connection with ``MONITOR``.

Debian's redis 7.0 has no per-client ``tot-cmds`` in ``CLIENT LIST``, so a
:class:`Recorder` reads the ``MONITOR`` feed in a thread and keeps, for each line,
the server's timestamp, the client's address (``lua`` for commands run by a script)
and the first few arguments. A connection is tied to a name by the ``CLIENT SETNAME``
that redis-py sends right after connecting; every later command from that address
counts for that name.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import redis

_LINE = re.compile(rb"^(\d+\.\d+) \[\d+ ([^\]]*)\] (.*)$", re.S)
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
#: Bytes of each command kept (enough for the command, key and channel names).
KEEP = 400


@dataclass
class Command:
    time: float
    addr: str
    args: list[str]


@dataclass
class Recorder:
    """Records ``MONITOR`` from :meth:`start` until :meth:`stop`."""

    url: str
    commands: list[Command] = field(default_factory=list)

    def start(self) -> Recorder:
        self._client = redis.Redis.from_url(self.url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._sentinel = "bench-monitor-stop-" + secrets.token_hex(6)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        conn = self._monitor.connection  # type: ignore[attr-defined]
        sentinel = self._sentinel.encode()
        while True:
            line = conn.read_response(disable_decoding=True)
            if not isinstance(line, bytes):
                continue
            if sentinel in line:
                return
            m = _LINE.match(line[:KEEP])
            if m is None:
                continue
            args = [a.decode("utf-8", "replace") for a in _ARG.findall(m.group(3))]
            self.commands.append(Command(float(m.group(1)), m.group(2).decode(), args))

    def stop(self) -> list[Command]:
        """Stop recording (after every command sent so far); returns what was recorded."""
        with redis.Redis.from_url(self.url) as other:
            other.echo(self._sentinel)
        self._thread.join(30)
        self._monitor.__exit__(None, None, None)
        self._client.close()
        return self.commands


def by_name(commands: list[Command], prefix: str) -> dict[str, list[Command]]:
    """Commands of every connection whose ``CLIENT SETNAME`` starts with ``prefix``.

    A ``HELLO`` starts a new connection on its address (a port the kernel reused), so it
    drops the name the address had. redis-py speaks RESP3 and sends ``HELLO`` first; a
    RESP2 client sends none, so a RESP2 connection on a reused port would keep the name of
    the connection before it until its own ``CLIENT SETNAME``.
    """
    names: dict[str, str] = {}
    out: dict[str, list[Command]] = defaultdict(list)
    for cmd in commands:
        if cmd.args and cmd.args[0].upper() == "HELLO":  # a new connection (a reused port)
            names.pop(cmd.addr, None)
        if len(cmd.args) >= 3 and cmd.args[:2] == ["CLIENT", "SETNAME"]:
            if cmd.args[2].startswith(prefix):
                names[cmd.addr] = cmd.args[2]
            else:
                names.pop(cmd.addr, None)
        name = names.get(cmd.addr)
        if name is not None:
            out[name].append(cmd)
    return out


def kinds(commands: list[Command]) -> Counter[str]:
    """How many of each command (``CLIENT SETNAME`` counted as ``CLIENT``)."""
    return Counter(c.args[0].upper() if c.args else "?" for c in commands)


def script_publish(commands: list[Command], channel: str) -> float | None:
    """When a Lua script (the completion) published on ``channel``; None if it did not."""
    for cmd in commands:
        if (
            cmd.addr == "lua"
            and len(cmd.args) >= 2
            and cmd.args[0].lower() == "publish"
            and cmd.args[1] == channel
        ):
            return cmd.time
    return None


def publish_time(commands: list[Command], channel: str) -> float | None:
    """When anyone first published on ``channel``."""
    for cmd in commands:
        if len(cmd.args) >= 2 and cmd.args[0].lower() == "publish" and cmd.args[1] == channel:
            return cmd.time
    return None
