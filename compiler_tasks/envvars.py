"""Reading one ``SCSSQ_*`` variable: the settings table's row and the kinds of value.

A :class:`Spec` is one row of the table in :mod:`compiler_tasks.settings` (variable,
default, help, bounds); its :class:`Kind` turns the variable's text into a value, or
raises :class:`~compiler_tasks.errors.ConfigError` naming the variable, the value and
the fix, and says for the docs what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True)
class Kind:
    """How a variable's text becomes a value, and how the docs describe what it accepts."""

    accepts: Callable[[Spec], str]
    parse: Callable[[Spec, str], Any]
    #: The value when the variable is unset or empty (default: the declared default).
    unset: Callable[[Spec], Any] = lambda spec: spec.default


@dataclass(frozen=True)
class Spec:
    """One row of the settings table."""

    env: str
    default: Any
    help: str
    kind: Kind
    group: str
    minimum: float = 0
    #: Unit of the value ("s", "MiB", "bytes"), shown beside the default in the docs.
    unit: str = ""
    #: The docs' default when the value alone would mislead (e.g. "system CAs").
    shown: str = ""
    choices: tuple[str, ...] = ()
    #: Unset: the value of this earlier field (the broker is Redis unless told otherwise).
    same_as: str = ""

    def read(self, env: Mapping[str, str], earlier: Mapping[str, Any]) -> Any:
        """This setting's value from ``env``; a bad value raises ConfigError naming it."""
        value = env.get(self.env)
        if value is None or value.strip() == "":
            return earlier[self.same_as] if self.same_as else self.kind.unset(self)
        return self.kind.parse(self, value.strip())


def _number(spec: Spec, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(
            f"{spec.env}={value!r} is not a number; set it to e.g. {spec.default:g} or unset it"
        ) from None
    if not number >= spec.minimum or number != number or number == float("inf"):
        raise ConfigError(f"{spec.env}={value!r} must be a finite number >= {spec.minimum:g}")
    return number


def _rate(spec: Spec, value: str) -> float:
    number = _number(spec, value)
    if number > 1.0:
        raise ConfigError(
            f"{spec.env}={number:g} must be a rate from 0 to 1 (e.g. {spec.default:g})"
        )
    return number


def _integer(spec: Spec, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"{spec.env}={value!r} is not an integer; set it to e.g. {spec.default} or unset it"
        ) from None
    if number < spec.minimum:
        raise ConfigError(f"{spec.env}={value!r} must be an integer >= {spec.minimum:g}")
    return number


def _redis_url(spec: Spec, url: str) -> str:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"{spec.env}={redact_url(url)!r} is not a Redis URL; "
            "use redis://host:port/db, rediss:// for TLS or unix:///path"
        )
    return url


def _store_url(spec: Spec, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path.startswith("/") and not parts.netloc:
        return value
    if parts.scheme == "s3" and parts.netloc:
        return value
    raise ConfigError(
        f"{spec.env}={value!r} is not a store URL; use file:///absolute/path "
        "or s3://bucket/optional/prefix"
    )


def _pem_file(spec: Spec, value: str) -> str:
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{spec.env}={value!r} is not a readable file; point it at a PEM file")
    return path


def _name(spec: Spec, value: str) -> str:
    if not _NAME_RE.match(value):
        raise ConfigError(f"{spec.env}={value!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return value


def _choice(spec: Spec, value: str) -> str:
    if value not in spec.choices:
        raise ConfigError(f"{spec.env}={value!r}: choose one of {', '.join(spec.choices)}")
    return value


def _absolute_path(spec: Spec, value: str) -> str:
    if not os.path.isabs(value):
        raise ConfigError(f"{spec.env}={value!r}: give an absolute path (or leave it unset)")
    return value


def _text(spec: Spec, value: str) -> str:
    return value


_ADDRESS_RE = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):([0-9]{1,5})\Z")


def _addresses(spec: Spec, value: str) -> tuple[tuple[str, int], ...]:
    """``host:port[,host:port...]`` (an IPv6 host in brackets) as (host, port) pairs."""
    found = []
    for part in value.split(","):
        match = _ADDRESS_RE.match(part.strip())
        port = int(match[3]) if match else 0
        if not match or not 0 < port < 65536:
            raise ConfigError(
                f"{spec.env}={value!r}: {part.strip()!r} is not host:port; list them as "
                "host:port[,host:port...], e.g. sentinel-0:26379,sentinel-1:26379"
            )
        found.append((match[1] or match[2], port))
    return tuple(found)


def _flag(spec: Spec, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{spec.env}={value!r}: use 1 (or true, yes, on) or 0 (false, no, off)")


TEXT = Kind(lambda s: "any text", _text)
FILE_PATH = Kind(lambda s: "path of a file", _text)
NUMBER = Kind(lambda s: f"number ≥ {s.minimum:g}", _number)
RATE = Kind(lambda s: "number from 0 to 1", _rate)
INTEGER = Kind(lambda s: f"integer ≥ {s.minimum:g}", _integer)
REDIS_URL = Kind(lambda s: "`redis://`, `rediss://` (TLS) or `unix://` URL", _redis_url)
STORE_URL = Kind(
    lambda s: "`file:///absolute/path` or `s3://bucket/prefix`",
    _store_url,
    unset=lambda s: "file://" + os.path.expanduser(s.default.removeprefix("file://")),
)
PEM_FILE = Kind(lambda s: "path of a readable PEM file", _pem_file)
NAME = Kind(lambda s: "1-64 letters, digits, `.`, `_` or `-`", _name)
CHOICE = Kind(lambda s: " or ".join(f"`{c}`" for c in s.choices), _choice)
ABSOLUTE_PATH = Kind(lambda s: "absolute path of a folder", _absolute_path)
ADDRESSES = Kind(lambda s: "`host:port[,host:port...]`", _addresses)
FLAG = Kind(lambda s: "`1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`", _flag)


def setting(env: str, default: Any, help: str, kind: Kind, group: str, **more: Any) -> Any:
    """A :class:`Settings` field declared by its row of the settings table."""
    spec = Spec(env, default, help, kind, group, **more)
    return field(default=default, metadata={"spec": spec})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def store_identity(url: str) -> str:
    """The store ``url`` names, comparable between machines: no credentials, port,
    query or redundant slashes (``file:///a//b/`` and ``file:///a/b`` are one store;
    an S3 store is its bucket and prefix, whatever endpoint reaches it)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = re.sub("/+", "/", unquote(parts.path)).rstrip("/") or "/"
        return "file://" + os.path.normpath(path).replace(os.sep, "/")
    prefix = parts.path.strip("/")
    return f"{parts.scheme}://{parts.hostname or ''}" + (f"/{prefix}" if prefix else "")
