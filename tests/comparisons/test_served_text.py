"""The canonical served text: its rules hold for any text (property tests) and it keeps what a reader sees."""

from __future__ import annotations

import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from comparisons.served_text import served_text

# Text that is heavy in the characters the rules are about, mixed with anything Unicode has.
TRICKY = st.sampled_from(
    list(" \t\n\r\x0b\x0c\x85\u2028\u2029\ufeff\u200b\u200c\u200d\u200e\u00ad\u2060\x00\x1b\x7f")
    + ["\r\n", "\u00a0", "\u2003", "\u3000", "e\u0301", "\u0301", "a", "#", "-", "`", "é", "👍", "\u1100\u1161"]
)
TEXTS = st.lists(st.one_of(TRICKY, st.characters()), max_size=60).map("".join) | st.text(max_size=200)


@settings(max_examples=600, deadline=None)
@given(TEXTS)
@example("\ufeff  Hello\r\n\r\nWorld \u200b\r\n")
@example("e\u200b\u0301")
def test_served_text_is_idempotent_and_obeys_every_rule(text):
    served = served_text(text)
    assert served_text(served) == served
    assert unicodedata.is_normalized("NFC", served)
    assert "\r" not in served and "\u2028" not in served and "\u2029" not in served and "\x85" not in served
    assert not any(unicodedata.category(ch) == "Cf" for ch in served), "an invisible format character survived"
    assert not any(unicodedata.category(ch) == "Cc" and ch not in "\t\n" for ch in served)
    for line in served.split("\n"):
        assert line == line.rstrip(), f"trailing whitespace on {line!r}"
    assert served == served.strip()
    assert "\n\n\n" not in served


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=80))
def test_visible_single_line_text_is_served_unchanged(text):
    assert served_text(text) == text


def test_what_differs_only_in_bytes_is_served_the_same():
    variants = [
        "Step 1:\n    code()\n\nDone.",
        " Step 1:\n    code()\n\nDone.",
        "\n\nStep 1:\n    code()\n\nDone.\n",
        "\ufeffStep 1:  \r\n    code()\r\n\r\n\r\n\r\nDone.\r\n",
        "Step\u200b 1:\r    code()\u2029Done.",
    ]
    assert {served_text(v) for v in variants} == {"Step 1:\n    code()\n\nDone."}


def test_content_is_kept():
    # Indentation inside the text, tabs, single line breaks, decomposed accents (composed), CJK spacing, emoji.
    text = "def f(x):\n\treturn x\n  # Driver Code\nCafe\u0301 東京\u3000駅 👍"
    assert served_text(text) == "def f(x):\n\treturn x\n  # Driver Code\nCafé 東京\u3000駅 👍"
    assert served_text("") == "" and served_text(" \n\t\u200b ") == ""


def test_long_texts_are_served_alike_but_not_remembered():
    # Served texts are remembered per process (the same few hundred come back with every pair), but only up to
    # a size, so that a study of very long answers cannot fill a web worker's memory with them.
    from comparisons import served_text as module

    long = ("Line with a trailing space \r\n\u200b" * 2000)[: module._REMEMBERED_UP_TO + 10]
    short = "A short answer \r\n\r\n\r\nwith\u200b habits "
    module._remembered.cache_clear()
    assert served_text(long) == module._canonical(long) and "\r" not in served_text(long)
    assert served_text(short) == served_text(short) == "A short answer\n\nwith habits"
    assert module._remembered.cache_info().currsize == 1
    assert module._remembered.cache_info().maxsize == module._REMEMBERED_TEXTS
