"""The error hierarchy of scssq, shared by the worker and the client.

Every failure the service reports is one of these classes. Each carries a
message that names the offending value and, where there is one, the fix. The
CLI maps each class to an exit code (see ``EXIT_*`` and :func:`exit_code_for`):

* 0 ok
* 1 compile error: the user's sources are wrong
* 2 usage or configuration error
* 3 infrastructure error or timeout; also any unexpected exception
* 4 ``status``/``fetch`` only: no finished result for that commit
* 5 ``status``/``fetch`` only: the commit is contested (mapped to two digests)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_COMPILE = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
#: ``status`` and ``fetch`` only: the commit has no (finished) result yet.
EXIT_NOT_FOUND = 4
#: ``status`` and ``fetch`` only: the commit was submitted with other sources too
#: (its mapping is contested) and ``--digest`` did not pick one.
EXIT_CONTESTED = 5


class ScssqError(Exception):
    """Base class of every error scssq raises on purpose."""

    exit_code = EXIT_INFRA


class UsageError(ScssqError):
    """Raised when a command-line value or ``scssq.toml`` entry is invalid."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Raised when an environment variable holds a value scssq cannot use."""


class MissingExtra(ConfigError):
    """Raised when a command needs a package of an extra that is not installed
    (``extra``: what to ``pip install scssq[...]``)."""

    def __init__(self, needed_for: str, extra: str, module: str) -> None:
        super().__init__(
            f"{needed_for} needs {module}, which this install lacks: pip install 'scssq[{extra}]'"
        )
        self.extra = extra


def require(module: str, extra: str, needed_for: str) -> None:
    """MissingExtra unless ``module`` can be imported (``extra`` provides it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(needed_for, extra, module)


class InvalidInput(UsageError):
    """Raised when a hash, project name, path or bundle fails validation."""


class BundleError(InvalidInput):
    """Raised when a bundle (a directory or an archive) is unusable or hostile."""


class RequestRefused(InvalidInput):
    """Raised on the client when a worker refused its request (hostile or malformed input)."""


class CompileError(ScssqError):
    """Raised when the user's stylesheets do not compile (deterministic)."""

    exit_code = EXIT_COMPILE


class LimitExceeded(CompileError):
    """Raised when a compile hits a fleet limit (time, memory, output size).

    The sources' outcome on this fleet, not a pure function of them: reported at once
    to the key's submitters (exit 1) naming the limit and its variable, never cached
    (the operator may raise the limit) and never retried as a crash.
    """


class CompileTimeout(LimitExceeded):
    """Raised when the engine exceeds its time limit (reported, never cached)."""


class InfrastructureError(ScssqError):
    """Raised when Redis, the store, the engine process or the fleet fails."""

    exit_code = EXIT_INFRA


class RedisUnavailable(InfrastructureError):
    """Raised when Redis cannot be reached or refuses a command."""


class SentinelUnavailable(RedisUnavailable, ConnectionError):
    """Raised when no Sentinel names a master that answers as one (the message names
    every Sentinel asked and what each said).

    Also an ``OSError`` (``ConnectionError``): a caller that retries or falls back on an
    unreachable socket until its deadline treats it the same way, as a failover lasts a
    few seconds.
    """


class StoreError(InfrastructureError):
    """Raised when the artifact store cannot be read or written."""


class ArtifactMissing(StoreError):
    """Raised when an object the result points to is gone from the store."""


class BundleMissing(ArtifactMissing):
    """Raised when the store holds no bundle that hashes to a request's digest.

    Absent, or garbage someone else wrote under its name: about that request only, so it
    is answered to its own submitter, never announced to the key nor blamed on the sender.
    """


class EngineCrash(InfrastructureError):
    """Raised when the engine process dies, runs out of memory or misbehaves."""


class FleetTimeout(InfrastructureError):
    """Raised when a submit's deadline passes before the fleet answered."""


class NoWorkers(InfrastructureError):
    """Raised when no worker has registered with the fleet (nothing to compile)."""


class KeyMismatch(InfrastructureError):
    """Raised when a worker's recomputed compile key differs from the client's."""


class LockLost(InfrastructureError):
    """Raised when a holder finds its lock gone or taken (it must not publish)."""


class NotFound(ScssqError):
    """Raised when ``status``/``fetch`` find no result for a commit."""

    exit_code = EXIT_NOT_FOUND


class Contested(ScssqError):
    """Raised when ``status``/``fetch`` find a commit mapped to two digests (pick one)."""

    exit_code = EXIT_CONTESTED


#: Failure kinds as they travel in results and pub/sub messages.
KIND_COMPILE = "compile"
KIND_TIMEOUT = "timeout"
KIND_INFRA = "infra"
#: A fleet limit (memory, output size) was hit: exit 1, never cached.
KIND_LIMIT = "limit"
#: The worker refused the request itself (bad archive, malformed fields): exit 2.
KIND_INVALID = "invalid"

_KIND_TO_CLASS: dict[str, type[ScssqError]] = {
    KIND_COMPILE: CompileError,
    KIND_TIMEOUT: CompileTimeout,
    KIND_INFRA: InfrastructureError,
    KIND_LIMIT: LimitExceeded,
    KIND_INVALID: RequestRefused,
}


def error_from_kind(kind: str, message: str) -> ScssqError:
    """Rebuild the error a worker reported as ``(kind, message)``."""
    return _KIND_TO_CLASS.get(kind, InfrastructureError)(message)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for ``exc``; anything unexpected is a 3."""
    if isinstance(exc, ScssqError):
        return exc.exit_code
    return EXIT_INFRA
