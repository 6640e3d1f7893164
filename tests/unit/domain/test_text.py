"""Free text others will read: what is refused on the way in, and how old data is shown."""

from __future__ import annotations

import pytest

from jitgate.domain.text import MAX_TEXT_LENGTH, checked_text, printable
from jitgate.errors import InvalidInput, InvalidText

HOSTILE = {
    "escape sequence": "INC-1 \x1b[2J\x1b[1;1Happroved",
    "OSC 8 hyperlink": "INC-1 \x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "newline": "INC-1\napproved by bob",
    "carriage return": "INC-1 bad\rINC-1 good",
    "tab": "INC-1\tx",
    "NUL": "INC-1\x00",
    "DEL": "INC-1\x7f",
    "C1 CSI": "INC-1 \x9b2J",
    "right-to-left override": "INC-1 \u202etxt.exe",
    "left-to-right embedding": "INC-1 \u202a",
    "pop directional formatting": "INC-1 \u202c",
    "first strong isolate": "INC-1 \u2068x\u2069",
    "right-to-left isolate": "INC-1 \u2067",
    "zero width space": "IN\u200bC-1",
    "zero width joiner": "INC-1 \u200d",
    "byte order mark": "\ufeffINC-1",
    "line separator": "INC-1\u2028x",
    "paragraph separator": "INC-1\u2029x",
    "private use": "INC-1 \ue000",
    "unassigned": "INC-1 \U000e0fff",
    "language tag": "INC-1 \U000e0041",
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_control_and_invisible_characters_are_refused(value: str) -> None:
    with pytest.raises(InvalidText) as caught:
        checked_text("reason", value)
    message = caught.value.message
    assert message.startswith("reason contains U+")
    assert "\n" not in message
    assert printable(message) == message  # the message never carries the character itself


def test_refusal_is_bad_input() -> None:
    assert issubclass(InvalidText, InvalidInput)


def test_overlong_text_is_refused() -> None:
    assert checked_text("comment", "x" * MAX_TEXT_LENGTH) == "x" * MAX_TEXT_LENGTH
    with pytest.raises(InvalidText, match=f"comment is longer than {MAX_TEXT_LENGTH} characters"):
        checked_text("comment", "x" * (MAX_TEXT_LENGTH + 1))


@pytest.mark.parametrize(
    "value",
    [
        "INC-42 disk full",
        "<!channel> <@U123> <https://evil|click> & [bold]markup[/bold]",
        "Störung im Rechenzentrum / 東京 / עברית / 🔥",
        "",
    ],
)
def test_printable_text_passes_unchanged(value: str) -> None:
    """Markup characters are fine on input: each output escapes them for itself."""
    assert checked_text("reason", value) == value


def test_printable_shows_what_was_hidden_as_visible_escapes() -> None:
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("x\u202ey") == "x\\u202ey"
    assert printable("\U000e0041") == "\\U000e0041"
    assert printable("line\nnext") == "line\\x0anext"
    assert printable("plain [b]text[/b]") == "plain [b]text[/b]"
