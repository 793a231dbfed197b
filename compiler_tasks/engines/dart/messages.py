"""Messages of the Dart Sass host: requests it sends, replies to the compiler's requests,
and what it makes of the results (warnings as the CLI prints them, the source map as the
CLI writes it, worker paths scrubbed from anything shown to users).
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any
from urllib.parse import quote

from ..base import EngineRequest
from ..resolver import ImportRefused
from .importer import BundleImporter, file_url
from .protocol import pb

#: Importer ids: the entry's (relative loads) and the global one (load paths, pkg:). Two
#: ids, like the CLI's distinct importers, so ``quiet_deps`` knows what a dependency is.
ENTRY_IMPORTER, LOAD_PATH_IMPORTER = 1, 2


class Warnings:
    """Warnings and @debug lines as the CLI prints them, kept up to a byte limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.texts: list[str] = []

    def add(self, event: Any) -> None:
        if self.size > self.limit:
            return
        text = event.formatted or event.message
        if event.type != pb.DEBUG:
            text += "\n"  # the CLI leaves a blank line after each warning
        self.texts.append(text)
        self.size += len(text.encode("utf-8", "replace"))


class Scrubber:
    """Removes the compiler's base and the bundle root from text shown to users."""

    def __init__(self, base: str, root: str, given_root: Any) -> None:
        given = os.path.abspath(str(given_root))
        paths = sorted({base, root, given}, key=len, reverse=True)
        self.prefixes = [file_url(p) + "/" for p in paths] + [p + "/" for p in paths]
        self.bare = [file_url(p) for p in paths] + paths

    def __call__(self, text: str) -> str:
        for prefix in self.prefixes:
            text = text.replace(prefix, "")
        for bare in self.bare:
            text = text.replace(bare, ".")
        return text

    def leaks(self, blob: bytes) -> bool:
        return any(p.encode("utf-8") in blob for p in self.bare)


def compile_request(req: EngineRequest, source: str, base: str) -> Any:
    message = pb.InboundMessage()
    request = message.compile_request
    request.string.source = source
    request.string.url = file_url(f"{base}/{req.entry}")
    request.string.syntax = pb.INDENTED if req.entry.endswith(".sass") else pb.SCSS
    request.string.importer.importer_id = ENTRY_IMPORTER
    request.importers.add().importer_id = LOAD_PATH_IMPORTER
    request.style = pb.COMPRESSED if req.style == "compressed" else pb.EXPANDED
    request.source_map = req.source_map
    request.source_map_include_sources = req.source_map
    request.charset = True  # as the CLI: @charset or a BOM for non-ASCII output
    request.alert_color = False
    request.alert_ascii = False
    request.quiet_deps = req.quiet_deps
    request.silence_deprecation.extend(req.silence_deprecations)
    return message


def warm_up_request(source: str) -> Any:
    """A CompileRequest of ``source`` alone: no URL, no importer (built-in modules only)."""
    message = pb.InboundMessage()
    request = message.compile_request
    request.string.source = source
    request.string.syntax = pb.SCSS
    request.style = pb.COMPRESSED
    return message


def canonicalize_reply(importer: BundleImporter, message: Any) -> Any:
    request = message.canonicalize_request
    reply = pb.InboundMessage()
    response = reply.canonicalize_response
    response.id = request.id
    try:
        url = importer.canonicalize(request.url, request.from_import, request.containing_url)
        if url is not None:
            response.url = url
    except ImportRefused as e:
        response.error = e.message
    except (OSError, ValueError) as e:
        response.error = f'loading "{request.url}" failed ({type(e).__name__})'
    return reply


def import_reply(importer: BundleImporter, message: Any) -> Any:
    request = message.import_request
    reply = pb.InboundMessage()
    response = reply.import_response
    response.id = request.id
    try:
        contents, syntax = importer.load(request.url)
        response.success.contents = contents
        response.success.syntax = pb.Syntax.Value(syntax)
        response.success.source_map_url = request.url
    except ImportRefused as e:
        response.error = e.message
    except (OSError, ValueError) as e:
        response.error = f'loading "{request.url}" failed ({type(e).__name__})'
    return reply


def rewrite_map(text: str, importer: BundleImporter, entry: str, css_name: str) -> str:
    """The compiler's map as the CLI writes it beside the CSS (relative sources, file)."""
    data = json.loads(text)
    here = posixpath.dirname(entry) or "."
    sources = []
    for url in data.get("sources", []):
        rel = importer.rel_for(url)
        sources.append(quote(posixpath.relpath(rel, here)) if rel is not None else url)
    ordered: dict[str, Any] = {}
    for key in ("version", "sourceRoot", "sources", "names", "mappings"):
        if key in data:
            ordered[key] = sources if key == "sources" else data[key]
    ordered["file"] = quote(css_name)
    for key, value in data.items():
        if key not in ordered:
            ordered[key] = value
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
