"""Free text that one person types and others read: reasons, review comments, names echoed back.

Such text is data. It goes to terminals, chat webhooks and web pages, where a control character,
an escape sequence or a bidi override could make it rewrite what the reader sees. So it is checked
once, on the way in (``checked_text``), and made inert again on every way out (``printable`` here;
markup escaping is each output's own job, next to the output).

Refused on input: every control character (C0 with tab and newline, DEL, C1), every invisible
format character (Unicode category Cf: the bidi embeddings, overrides and isolates U+202A-U+202E
and U+2066-U+2069, zero-width spaces and joiners, the byte-order mark, ...), line and paragraph
separators, surrogates, private-use and unassigned code points. Reasons and comments are one
line: a newline could forge a second line in a chat message or a terminal table.
"""

from __future__ import annotations

import unicodedata

from jitgate.errors import InvalidText

MAX_TEXT_LENGTH = 2000
MAX_NAME_LENGTH = 128

# Cc control, Cf format (invisible), Cs surrogate, Co private use, Cn unassigned, Zl/Zp separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


def checked_text(field: str, value: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """``value`` unchanged if it is safe to show to others; ``InvalidText`` naming the first problem.

    The message shows the offending character as a code point, never the character itself.
    """
    if len(value) > max_length:
        raise InvalidText(f"{field} is longer than {max_length} characters")
    for position, char in enumerate(value):
        if _refused(char):
            name = unicodedata.name(char, "control character")
            raise InvalidText(
                f"{field} contains U+{ord(char):04X} ({name.lower()}) at position {position + 1}; "
                "control and invisible formatting characters are not allowed"
            )
    return value


def printable(value: str) -> str:
    """``value`` with every character that ``checked_text`` refuses shown as a visible escape.

    For output of data that may predate the input check (or come from elsewhere): an escape
    sequence arrives as the four characters ``\\x1b``, a bidi override as ``\\u202e``.
    """
    if not any(_refused(char) for char in value):
        return value
    out = []
    for char in value:
        if not _refused(char):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)
