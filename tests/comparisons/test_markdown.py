"""Safe Markdown: lists, tables and code render; raw HTML and dangerous links do not."""

from __future__ import annotations

import pytest

from comparisons.markdown import PLAIN, fence_code_like, render_markdown, render_text


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


# ---------------------------------------------------------------- fair rendering

# Alpaca 7B's answer to user_oriented_task_93 in the fixtures: Python written without code fences.
UNFENCED_PYTHON = """def isPowerOfThree(n):
    if n == 0:
        return False
    else:
        x = 1
        while x * 3 <= n:
            x = x * 3
        return x == n

# Driver Code
num = int(input('Enter a number: '))
print(num, isPowerOfThree(num))"""


def test_code_written_without_fences_keeps_its_indentation_and_its_comments():
    html = render_text(UNFENCED_PYTHON)
    assert "<h1>" not in html and "# Driver Code" in html
    assert "<pre><code>def isPowerOfThree(n):\n    if n == 0:\n        return False" in html
    assert "print(num, isPowerOfThree(num))\n</code></pre>" in html  # the driver code sits in the same block


def test_a_prose_lead_in_stays_prose_and_other_markdown_is_untouched():
    text = "Boolean\n\nSolution:\npublic boolean f(int n) {\n    return n == 1;\n}"
    assert fence_code_like(text) == "Boolean\n\nSolution:\n```\npublic boolean f(int n) {\n    return n == 1;\n}\n```"
    untouched = [
        "1. First\n   continued\n2. Second",
        "- a\n  - nested",
        "Name | Cost\n-----|-----\n     | 3",
        "```python\ndef f():\n    pass\n```",
        "A poem\nwith short lines\nand no indentation",
        "> quoted\n  more",
    ]
    for text in untouched:
        assert fence_code_like(text) == text


def test_fences_inside_code_like_blocks_use_another_fence():
    text = 'x = 1\n    y = "```"'
    assert fence_code_like(text) == '~~~~\nx = 1\n    y = "```"\n~~~~'
    assert '<pre><code>x = 1\n    y = "```"' in render_text(text)


def test_plain_text_mode_shows_the_text_as_it_is():
    html = render_text("# Driver Code\n<b>bold</b> **x**\n    indented", mode=PLAIN)
    assert html == '<pre class="plain"># Driver Code\n&lt;b&gt;bold&lt;/b&gt; **x**\n    indented</pre>'
    assert render_text("", mode=PLAIN) == ""
