"""Safe Markdown: lists, tables and code render; raw HTML and dangerous links do not."""

from __future__ import annotations

import pytest

from comparisons.markdown import render_markdown


def test_lists_tables_and_code_blocks_render():
    html = render_markdown("1. one\n2. two\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n")
    assert "<ol>" in html and "<li>one</li>" in html
    assert "<table>" in html and '<td style="text-align:right">2</td>' in html
    assert "<pre><code class=\"language-python\">print('hi')" in html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        "<iframe src='https://evil.example'></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        "[click](javascript:alert(1))",
        '<div style="position:fixed">x</div>',
    ],
)
def test_raw_html_and_scripts_are_inert(hostile):
    html = render_markdown(hostile)
    assert "<script" not in html and "<img" not in html and "<iframe" not in html and "<div" not in html
    assert '<a href="javascript' not in html and "<a " not in html.replace('<a href="https', "")


def test_safe_links_keep_their_target_with_rel():
    html = render_markdown("[docs](https://example.org/x)")
    assert 'href="https://example.org/x"' in html and "noopener" in html


def test_empty_text():
    assert render_markdown("") == ""


def test_single_newlines_stay_line_breaks():
    assert render_markdown("Roses are red,\nViolets are blue") == "<p>Roses are red,<br>\nViolets are blue</p>\n"
