"""Safe rendering for rater pages: Markdown (CommonMark plus tables) or plain text, per campaign.

Pure module (no Django): response texts come from models and imports, so they
are untrusted. markdown-it renders with HTML disabled (raw tags come out as
text) and nh3 then strips anything outside a small allow-list, in case a
renderer bug ever lets markup through. Plain text is escaped and shown with its
line breaks and indentation.

Fairness between a model that writes Markdown and one that writes plain text:
code written without fences keeps its indentation (`fence_code_like` fences it
before rendering, so `# Driver Code` inside it stays a comment, not a heading),
and the page's style sheet keeps headings inside answers no larger than body text.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt

# Single newlines are kept as line breaks: plain-text model outputs (poems, addresses, code-less lists)
# rely on them, and CommonMark would otherwise run the lines together.
_md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False}).enable("table")

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
}


def render_markdown(text: str) -> str:
    """Render untrusted Markdown to sanitized HTML (links open nothing unsafe, no script, no raw HTML)."""
    html = _md.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


MARKDOWN, PLAIN = "markdown", "plain"
RENDER_MODES = (MARKDOWN, PLAIN)

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*([-*+•]|\d+[.)])\s")
_INDENTED = re.compile(r"^(?: {2,}|\t)\S")
# A line that reads as code: a comment, a keyword, a call, an assignment, a closing bracket.
_CODE_LINE = re.compile(
    r"^\s*(#|//|/\*|\*/|[}\])]|(def|class|for|while|if|elif|else|try|except|finally|with|return|import|from|print|"
    r"public|private|protected|static|function|var|let|const|void|int|func|fn|package|using|SELECT|INSERT)\b"
    r"|[A-Za-z_][\w.\[\]]*\s*(\(|[-+*/%]?=[^=]))"
)
_PROSE_LEAD_IN = re.compile(r"^[A-Z][^(){}=;]*:$|^[^(){}=;]* [^(){}=;]*:$")


def _blocks(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Split lines into (fenced, lines) blocks: blank-line separated paragraphs outside fences, whole fenced
    blocks inside them (blank lines become their own one-line blocks, so joining the blocks gives the text)."""
    blocks: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    fence: str | None = None
    for line in lines:
        marker = _FENCE.match(line)
        if fence is not None:
            current.append(line)
            if marker and marker.group(1) == fence:
                blocks.append((True, current))
                current, fence = [], None
            continue
        if marker:
            if current:
                blocks.append((False, current))
            current, fence = [line], marker.group(1)
        elif not line.strip():
            if current:
                blocks.append((False, current))
            blocks.append((False, [line]))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append((fence is not None, current))
    return blocks


def _code_like(lines: list[str]) -> bool:
    """Two or more lines, not a list or a table, with an indented line: code (or YAML…) written without fences."""
    if len(lines) < 2 or _LIST_ITEM.match(lines[0]) or lines[0].lstrip().startswith(("|", ">")):
        return False
    if 2 * sum("|" in line for line in lines) >= len(lines):
        return False  # a table
    return any(_INDENTED.match(line) and not _LIST_ITEM.match(line) for line in lines[1:])


def fence_code_like(text: str) -> str:
    """Put code-like blocks written without fences inside fences, so Markdown keeps their indentation and does
    not read `# comment` lines as headings. A prose lead-in ("Solution:") stays outside; the blocks of code
    lines right after a code-like block (a `# Driver Code` section) join its fence."""
    out: list[str] = []
    in_code: list[str] | None = None

    def close() -> None:
        nonlocal in_code
        if in_code is None:
            return
        tail: list[str] = []
        while in_code and not in_code[-1].strip():
            tail.append(in_code.pop())  # blank lines after the code go after the fence
        fence = "~~~~" if any("```" in line for line in in_code) else "```"
        out.extend([fence, *in_code, fence, *tail])
        in_code = None

    for fenced, lines in _blocks(text.split("\n")):
        blank = len(lines) == 1 and not lines[0].strip()
        if fenced:
            close()
            out.extend(lines)
        elif blank:
            (in_code if in_code is not None else out).append(lines[0])
        elif in_code is not None and all(_CODE_LINE.match(line) or _INDENTED.match(line) for line in lines):
            in_code.extend(lines)
        elif _code_like(lines):
            close()
            if _PROSE_LEAD_IN.match(lines[0].strip()) and not _INDENTED.match(lines[0]):
                out.append(lines[0])
                lines = lines[1:]
            in_code = list(lines)
        else:
            close()
            out.extend(lines)
    close()
    return "\n".join(out)


def render_plain(text: str) -> str:
    """Plain text as HTML: escaped, every line break and space kept (the page shows it pre-wrapped)."""
    return f'<pre class="plain">{html.escape(text or "")}</pre>' if text else ""


def render_text(text: str, *, mode: str = MARKDOWN) -> str:
    """A text as the rater page shows it: Markdown (code-like blocks fenced first) or plain text."""
    if mode == PLAIN:
        return render_plain(text)
    return render_markdown(fence_code_like(text or ""))
