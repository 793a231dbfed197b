"""Source maps as the ``sass`` CLI writes them where the CSS goes, for both engines.

Each engine writes the CSS of ``a/main.scss`` as if it sat beside its entry
(``a/main.css``, its map ``a/main.css.map``, the map's ``sources`` relative to ``a/``,
``sourcesContent`` embedded). :func:`place` then moves that output to where the request
says the CSS is written (:data:`~compiler_tasks.keys.Place`),
as ``sass in.scss:out.css`` would: the CSS's ``sourceMappingURL`` and the map's ``file``
name the output, the ``sources`` are relative to the output's folder. It also applies
``--no-embed-sources`` (no ``sourcesContent``) and ``--embed-source-map`` (the map as a
``data:`` URL in the CSS, no map file), byte for byte as Dart Sass writes them.

A request with the default place and options is returned untouched.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from urllib.parse import quote, unquote

from .. import keys
from ..errors import LimitExceeded
from .base import EngineOutput, EngineRequest

#: The comment an engine ends the CSS with (then maybe a newline).
_URL_COMMENT_RE = re.compile(rb"/\*# sourceMappingURL=[^ ]* \*/(\n?)\Z")
#: What Dart's ``Uri.dataFromString`` leaves unescaped besides letters and digits.
_DATA_URL_SAFE = "!$&'()*+,-./:;=?@_~"
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def place(output: EngineOutput, req: EngineRequest, limit: int) -> EngineOutput:
    """``output`` (written beside the entry) as written at the request's place; a CSS
    that an embedded map takes over ``limit`` bytes is a LimitExceeded."""
    if output.source_map is None:
        return output
    default = keys.default_place(req.entry)
    _, name, css_dir, root_dir = req.place or default
    moved = (req.place or default) != default
    if not moved and req.embed_sources and not req.embed_source_map:
        return output
    data = json.loads(output.source_map)
    if moved:
        here = posixpath.dirname(req.entry)
        data["sources"] = [_moved(s, here, css_dir, root_dir) for s in data.get("sources", [])]
        data["file"] = quote(name)
    if not req.embed_sources:
        data.pop("sourcesContent", None)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if req.embed_source_map:
        url = "data:application/json;charset=utf-8," + quote(text, safe=_DATA_URL_SAFE)
        css = _link(output.css, url)
        if len(css) > limit:
            raise LimitExceeded(
                f"{req.entry}: output with its embedded source map exceeds {limit} bytes "
                "(the limit is SCSSQ_MAX_OUTPUT_BYTES)"
            )
        return dataclasses.replace(output, css=css, source_map=None)
    return dataclasses.replace(
        output, css=_link(output.css, quote(name) + ".map"), source_map=text.encode("utf-8")
    )


def _moved(source: str, here: str, css_dir: str, root_dir: str) -> str:
    """A map's source relative to the entry's folder ``here``, made relative to the CSS's
    folder (``css_dir`` and ``root_dir`` are relative to their nearest common folder)."""
    if _SCHEME_RE.match(source) or source.startswith("/"):
        return source  # an absolute URL (a built-in or pkg: module) stays as it is
    inside = posixpath.normpath(posixpath.join(here, unquote(source)))
    target = posixpath.normpath(posixpath.join("/", root_dir, inside))
    return quote(posixpath.relpath(target, posixpath.normpath(posixpath.join("/", css_dir))))


def _link(css: bytes, url: str) -> bytes:
    """The CSS with its closing ``sourceMappingURL`` comment pointing at ``url``."""
    found = _URL_COMMENT_RE.search(css)
    if found is None:
        raise ValueError("the engine's CSS does not end with a sourceMappingURL comment")
    comment = b"/*# sourceMappingURL=" + url.encode("utf-8") + b" */"
    return css[: found.start()] + comment + found.group(1)
