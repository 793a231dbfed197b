"""Celery task messages built with the standard library: how the client enqueues.

The client sends two tasks: ``scssq.compile`` on a miss and the small
``scssq.record`` (map a commit) after a hit of a commit not yet mapped. Importing
Celery to send them cost a CI job more than its whole cache hit when the client still
did (``bench/peers.py`` measures what a job pays now), so :mod:`cli.client` builds
each message itself and ``LPUSH``es it on the queue's Redis list, exactly where
kombu's Redis transport puts it. Celery documents this protocol for clients written
in other languages.

The layout is Celery's task message protocol 2 (JSON body ``[args, kwargs,
embed]``, task name, id and expiry in the headers, base64 body), as
``app.send_task(..., queue=...)`` writes it through the default exchange; a test
compares the two field by field, and another has a real worker run the result.
One thing differs from Celery's own send: no ``task-sent`` event is published
(Flower shows the task from the worker's ``task-received`` on; the client's Redis
user may publish nothing, ``deploy/redis-acl.conf``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any


def new_id() -> str:
    """A random (version 4) UUID string, without importing :mod:`uuid`."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(epoch: float) -> str:
    """``epoch`` as Celery writes ``expires``: ISO 8601 in UTC with microseconds."""
    whole = int(epoch)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((epoch - whole) * 1e6):06d}+00:00"


def task_message(
    task: str,
    kwargs: dict[str, Any],
    queue: str,
    *,
    expires_in: float,
    kwargsrepr: str,
    extra_headers: dict[str, Any] | None = None,
) -> str:
    """The JSON kombu's Redis transport stores for ``send_task(task, kwargs=kwargs,
    queue=queue, expires=expires_in, kwargsrepr=kwargsrepr, headers=extra_headers)``;
    push it with ``LPUSH <queue> <message>`` (priority 0 uses the queue's plain list)."""
    task_id = new_id()
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([[], kwargs, embed]).encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": _iso(time.time() + expires_in),
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": kwargsrepr,
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **(extra_headers or {}),
    }
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": new_id(),
        "kwargsrepr": kwargsrepr,
        "delivery_mode": 2,
        "expiration": str(int(expires_in * 1000)),
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": new_id(),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )
