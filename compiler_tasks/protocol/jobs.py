"""The compile request: what a client sends a worker, as a validated value.

The client builds it (:mod:`cli.client`) with :meth:`Job.to_request`;
workers parse what arrives with :meth:`Job.from_request`, which refuses anything
malformed with InvalidInput. Imports nothing heavy: the client's hit path uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..keys import CompileOptions, validate_commit, validate_key, validate_project

#: Version of the request layout; a worker refuses any other.
REQUEST_VERSION = 1


@dataclass(frozen=True)
class Job:
    """A validated compile request, as the client sent it."""

    key: str
    digest: str
    options: CompileOptions
    engine_version: str
    commit: str
    project: str
    submit: str
    deadline: float
    inline: str | None = None
    repair: bool = False
    #: The bundle is (also) under the submit's own name: its digest's name was taken.
    own_upload: bool = False

    @classmethod
    def from_request(cls, req: Any) -> Job:
        if not isinstance(req, dict) or req.get("v") != REQUEST_VERSION:
            raise InvalidInput(f"compile request is not a version {REQUEST_VERSION} object")
        try:
            submit = str(req["submit"])
            if not submit.isalnum() or len(submit) > 64:
                raise InvalidInput(f"submit id {submit[:70]!r} is not alphanumeric")
            return cls(
                key=validate_key(str(req["key"])),
                digest=validate_key(str(req["digest"])),
                options=CompileOptions.from_dict(req["options"]),
                engine_version=str(req["engine_version"])[:200],
                commit=validate_commit(str(req["commit"])),
                project=validate_project(str(req["project"])),
                submit=submit,
                deadline=float(req["deadline"]),
                inline=None if req.get("inline") is None else str(req["inline"]),
                repair=bool(req.get("repair", False)),
                own_upload=bool(req.get("own_upload", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"compile request lacks or mangles a field: {e}") from e

    def to_request(self) -> dict[str, Any]:
        return {
            "v": REQUEST_VERSION,
            "key": self.key,
            "digest": self.digest,
            "options": self.options.as_dict(),
            "engine_version": self.engine_version,
            "commit": self.commit,
            "project": self.project,
            "submit": self.submit,
            "deadline": self.deadline,
            "inline": self.inline,
            "repair": self.repair,
            "own_upload": self.own_upload,
        }

    @property
    def entries_text(self) -> str:
        return ", ".join(self.options.entries)

    def describe(self) -> str:
        """What Flower and logs show instead of the arguments (never the sources)."""
        return (
            f"{{'project': {self.project!r}, 'commit': {self.commit[:12]!r}, "
            f"'key': {self.key[:12]!r}, 'entries': {list(self.options.entries)!r}}}"
        )
