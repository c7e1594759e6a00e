"""Safe Markdown for rater pages: CommonMark plus tables, raw HTML escaped, output sanitized.

Pure module (no Django): response texts come from models and imports, so they
are untrusted. markdown-it renders with HTML disabled (raw tags come out as
text) and nh3 then strips anything outside a small allow-list, in case a
renderer bug ever lets markup through.
"""

from __future__ import annotations

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
