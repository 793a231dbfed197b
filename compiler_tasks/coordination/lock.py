"""The per-key compile lock and the atomic completion of a compile.

A holder takes ``<prefix>:lock:<key>`` with ``SET NX PX`` and a random token.
Renewal, release and completion are Lua scripts that first compare the token,
so a holder whose lock expired (paused, partitioned) can neither extend,
delete, announce nor overwrite anything: invariant 3 and 4.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
from typing import Any

import redis

from ..keys import RedisKeys
from ..observability import metrics

log = logging.getLogger(__name__)

# KEYS[1] lock, KEYS[2] result; ARGV[1] token, ARGV[2] ttl ms, ARGV[3] the result
# value the caller last read and judged unusable ('' = it read none).
# Returns 1: acquired (the result is still what the caller read);
#         0: held by another holder (nothing taken);
#         2: a result the caller has not seen exists (nothing taken: read it).
ACQUIRE_SCRIPT = """
local result = redis.call('get', KEYS[2])
if result and result ~= ARGV[3] then
  return 2
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

# KEYS[1] lock; ARGV[1] token, ARGV[2] ttl ms.
# Returns 1: renewed (token matched); 0: not the owner (lock gone or taken).
RENEW_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock; ARGV[1] token.
# Returns 1: released; 0: not the owner (nothing deleted).
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1] lock, KEYS[2] result; ARGV[1] token, ARGV[2] done channel,
# ARGV[3] message to publish, ARGV[4] result value ('' = publish only, do not
# cache: timeouts and infrastructure failures), ARGV[5] result ttl in seconds.
# Returns 1: completed (result set if given, published, lock released);
#         0: not the owner (nothing set, nothing published).
COMPLETE_SCRIPT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('set', KEYS[2], ARGV[4], 'EX', ARGV[5])
end
redis.call('publish', ARGV[2], ARGV[3])
redis.call('del', KEYS[1])
return 1
"""


class Outcome(enum.Enum):
    """What a token-checked lock operation did."""

    DONE = 1
    NOT_OWNER = 0

    @classmethod
    def of(cls, code: Any) -> Outcome:
        return cls.DONE if int(code) == 1 else cls.NOT_OWNER


class Acquired(enum.Enum):
    """What an acquire did: the codes of :data:`ACQUIRE_SCRIPT`."""

    ACQUIRED = 1
    BUSY = 0
    RESULT_EXISTS = 2

    @classmethod
    def of(cls, code: Any) -> Acquired:
        return cls(int(code))

    def __bool__(self) -> bool:
        """True only when this token now holds the lock."""
        return self is Acquired.ACQUIRED


class Lock:
    """The compile lock of one key, owned (or not) by this object's token."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, key: str, ttl_ms: int) -> None:
        self.client = client
        self.keys = keys
        self.key = key
        self.name = keys.lock(key)
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(16)
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._complete = client.register_script(COMPLETE_SCRIPT)

    def acquire(self, seen: bytes | None = None) -> Acquired:
        """Take the lock if it is free and the key's result is still ``seen``.

        ``seen`` is the stored result the caller read and found unusable (None: it
        read none). A holder thus knows, atomically with taking the lock, that no
        other holder completed the key since its read: one compile per key
        (invariant 1). RESULT_EXISTS: read the result again instead of compiling.
        """
        code = self._acquire(
            keys=[self.name, self.keys.result(self.key)],
            args=[self.token, self.ttl_ms, b"" if seen is None else seen],
        )
        return Acquired.of(code)

    def renew(self) -> Outcome:
        """Extend the lock to a full TTL if still ours."""
        outcome = Outcome.of(self._renew(keys=[self.name], args=[self.token, self.ttl_ms]))
        if outcome is Outcome.NOT_OWNER:
            log.warning("lock %s lost before renewal: another holder may compile", self.key)
            metrics.renewal_failed("lost")
        return outcome

    def release(self) -> Outcome:
        """Delete the lock if still ours."""
        return Outcome.of(self._release(keys=[self.name], args=[self.token]))

    def complete(
        self, message: dict[str, Any], result: dict[str, Any] | None, result_ttl: int
    ) -> Outcome:
        """Atomically: check token, SET the result (if cacheable), PUBLISH, release."""
        payload = json.dumps(message, separators=(",", ":"))
        value = "" if result is None else json.dumps(result, separators=(",", ":"))
        code = self._complete(
            keys=[self.name, self.keys.result(self.key)],
            args=[self.token, self.keys.done(self.key), payload, value, result_ttl],
        )
        outcome = Outcome.of(code)
        if outcome is Outcome.NOT_OWNER:
            log.warning("lock %s lost before completion: not publishing", self.key)
        return outcome
