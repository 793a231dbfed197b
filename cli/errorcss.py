"""``--error-css``: the stylesheet Dart Sass writes in place of the CSS when a compile
fails, so a page shows the error at its top (``body::before``).

Built on the client from the compile error's message. A dart-sass message is the one the
``sass`` CLI prints (``path:line:col: message``, then the snippet and the stack), and the
stylesheet is then byte for byte what ``sass --error-css`` writes (Dart Sass's
``SassException.toCssString``): the message in a comment with ASCII glyphs, and as a CSS
string with every non-ASCII character escaped. A libsass message has no snippet; it is
shown whole.
"""

from __future__ import annotations

import re

_LOCATED_RE = re.compile(r"(?s)\A[^\n]*?:\d+:\d+: (?P<rest>.*\n.*)\Z")
#: The box-drawing glyphs of Dart Sass's messages and their ASCII forms (term_glyph's).
_ASCII_GLYPHS = str.maketrans(
    {
        "╷": ",",
        "╵": "'",
        "│": "|",
        "┌": ",",
        "└": "\\",
        "├": "+",
        "┼": "+",
        "─": "-",
        "━": "=",
        "┃": "|",
        "┬": "+",
        "┴": "+",
        "┤": "+",
        "┐": ",",
        "┘": "'",
        "╶": "'",
        "╴": "'",
        "▶": ">",
        "►": ">",
    }
)
_HEX_OR_SPACE = frozenset("0123456789abcdefABCDEF \t")
_RULE = """body::before {
  font-family: "Source Code Pro", "SF Mono", Monaco, Inconsolata, "Fira Mono",
      "Droid Sans Mono", monospace, monospace;
  white-space: pre;
  display: block;
  padding: 1em;
  margin-bottom: 1em;
  border-bottom: 2px solid black;
  content: """


def error_text(message: str) -> str:
    """The error as the ``sass`` CLI prints it: ``Error: ...`` (then snippet and stack)."""
    located = _LOCATED_RE.match(message)
    return "Error: " + (located.group("rest") if located else message)


def error_css(message: str) -> bytes:
    """The stylesheet ``sass --error-css`` writes for the compile error ``message``."""
    text = error_text(message)
    comment = text.translate(_ASCII_GLYPHS).replace("*/", "*\u2215")  # DIVISION SLASH, as Dart Sass
    escaped = "".join(f"\\{ord(c):x} " if ord(c) > 0x7F else c for c in _quoted(text))
    css = f"/* {comment.replace(chr(10), chr(10) + ' * ')} */\n\n{_RULE}{escaped};\n}}\n"
    return css.encode("utf-8")


def _quoted(text: str) -> str:
    """``text`` as Dart Sass serializes a quoted string."""
    quote = "'" if '"' in text and "'" not in text else '"'
    out = []
    for i, char in enumerate(text):
        code = ord(char)
        if char == quote or char == "\\":
            out.append("\\" + char)
        elif (code < 0x20 and char != "\t") or code == 0x7F:
            escape = "\\a" if char == "\n" else f"\\{code:x}"
            following = text[i + 1 : i + 2]
            out.append(escape + (" " if following and following in _HEX_OR_SPACE else ""))
        else:
            out.append(char)
    return quote + "".join(out) + quote
