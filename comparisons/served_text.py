"""The canonical served text: what a rater receives of a response (and of the instruction and input).

Pure module (no Django). A model's habits in bytes — a leading space or newline, CRLF line endings, a
byte-order mark, zero-width characters, trailing spaces, runs of blank lines — say nothing about the
quality of an answer but can tell raters (or their browser's developer tools) which model wrote it.
`served_text` removes them, the same way for both sides, and changes nothing a reader sees as content.
Stored texts stay exactly as imported; only what is served goes through this function.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Every line break Unicode knows becomes "\n": CRLF and CR (old Mac, some tokenizers), NEL (U+0085),
# LINE SEPARATOR (U+2028), vertical tab and form feed. A PARAGRAPH SEPARATOR (U+2029) is a blank line.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x85\u2028\x0b\x0c]")
_PARAGRAPH_BREAK = "\u2029"
# Spaces of another width or kind (no-break, en, em, thin, narrow no-break…) become a plain space; the
# ideographic space (U+3000) is left alone, as it is ordinary spacing in CJK text.
_ODD_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
_BLANK_LINES = re.compile(r"\n{3,}")
_KEPT_CONTROLS = {"\t", "\n"}
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _visible(ch: str) -> bool:
    """False for invisible format characters (Unicode category Cf: BOM, zero-width spaces and joiners, bidi
    marks, soft hyphens) and control characters other than tab and newline (category Cc)."""
    category = unicodedata.category(ch)
    return not (category == "Cf" or (category == "Cc" and ch not in _KEPT_CONTROLS))


# Every pair served runs the same few hundred texts of a study through `served_text` again (the non-ASCII ones
# character by character): remembered, up to a size, that work is done once per text and process.
_REMEMBERED_TEXTS = 2048
_REMEMBERED_UP_TO = 8192  # characters: a few MiB for a study's answers (most are under 2,000), 32 MiB at most in ASCII


def served_text(text: str) -> str:
    """The canonical form of `text` a rater receives: Unicode NFC, "\\n" line endings, no invisible format or
    control characters (tab kept), plain spaces, no trailing whitespace on any line, at most one blank line in
    a row, no leading or trailing blank space. Idempotent: ``served_text(served_text(t)) == served_text(t)``.
    """
    if len(text) > _REMEMBERED_UP_TO:
        return _canonical(text)
    return _remembered(text)


def _canonical(text: str) -> str:
    if not text:
        return ""
    text = _LINE_BREAKS.sub("\n", text).replace(_PARAGRAPH_BREAK, "\n\n")
    if text.isascii():
        text = _ASCII_CONTROLS.sub("", text)
    else:
        text = _ODD_SPACES.sub(" ", "".join(ch for ch in text if _visible(ch)))
        # After the removals: a zero-width character between a letter and its accent blocked composition.
        text = unicodedata.normalize("NFC", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


_remembered = functools.lru_cache(maxsize=_REMEMBERED_TEXTS)(_canonical)
