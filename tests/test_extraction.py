"""Tests for rag_core.extraction: main content, markdown-like formatting, titles, robustness."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_core.extraction import MAX_TEXT_CHARS, ExtractedDocument, extract_document

REPO = Path(__file__).resolve().parents[1]

DOC_PAGE = """<!DOCTYPE html>
<html><head><title>Install &amp; Setup — Lumen Docs</title>
<style>.x { color: red }</style><script>var tracking = "SCRIPTWORD";</script></head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="site-header"><a href="/">Lumen Home</a>
  <nav><ul><li><a href="/docs">NavDocs</a></li><li><a href="/blog">NavBlog</a></li></ul></nav>
</header>
<div class="cookie-banner">We use CookieWord to improve things. <button>Accept</button></div>
<div class="layout">
<aside class="md-sidebar"><ul><li>SidebarLink</li></ul></aside>
<main class="main-content">
<nav class="breadcrumbs"><a>BreadcrumbHome</a> / <a>Docs</a></nav>
<article>
<header><h1>Install Lumen</h1></header>
<div class="toc">TocEntry One</div>
<p>Lumen is a <strong>fast</strong> indexer.
   It runs   everywhere.</p>
<div class="content"><p>Real content lives here.</p></div>
<div hidden>HiddenWord</div><div style="display: none">DisplayNoneWord</div>
<div aria-hidden="true">AriaHiddenWord</div>
<form><input value="FormWord"><label>FormLabel</label></form>
<h2>Linux<a class="headerlink" href="#linux">¶</a></h2>
<p>Run <code>pip install lumen</code> then visit <a href="https://example.com/x">the guide</a>.</p>
</article>
<div role="contentinfo">RoleFooterWord</div>
</main>
</div>
<footer><p>Copyright FooterWord 2024</p></footer>
</body></html>
"""


def test_boilerplate_removed_and_content_kept() -> None:
    doc = extract_document(DOC_PAGE, "https://docs.example.com/install")
    for word in (
        "SCRIPTWORD", "NavDocs", "NavBlog", "CookieWord", "Accept", "SidebarLink",
        "BreadcrumbHome", "TocEntry", "HiddenWord", "DisplayNoneWord", "AriaHiddenWord",
        "FormWord", "FormLabel", "RoleFooterWord", "FooterWord", "Skip to content", "¶",
        "color: red", "Lumen Home", "https://example.com",
    ):  # fmt: skip
        assert word not in doc.text, word
    assert doc.text == (
        "# Install Lumen\n\n"
        "Lumen is a fast indexer. It runs everywhere.\n\n"
        "Real content lives here.\n\n"
        "## Linux\n\n"
        "Run `pip install lumen` then visit the guide."
    )
    assert doc.title == "Install & Setup"
    assert doc.headings == ["Install Lumen", "Linux"]
    # Words are \w+ runs, so markdown markers ("#", backticks) do not count.
    assert doc.word_count == 23


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<main><p>in main</p></main><article><p>in article</p></article>", "in main"),
        ("<div><p>outside</p></div><article><p>in article</p></article>", "in article"),
        ("<div><p>outside</p></div><div role='main'><p>role main</p></div>", "role main"),
        ("<div><p>just body</p></div>", "just body"),
    ],
)
def test_content_root_choice(body: str, expected: str) -> None:
    assert extract_document(f"<html><body>{body}</body></html>").text == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<h1>A</h1><h2>B</h2><h3>C</h3><p>x</p>", "# A\n\n## B\n\n### C\n\nx"),
        ("<p>one</p>\n\n\n<p>two</p>", "one\n\ntwo"),
        ("<ul><li>a</li><li>b <b>bold</b></li></ul>", "- a\n- b bold"),
        ("<ol><li>first</li><li>second</li></ol>", "1. first\n2. second"),
        (
            "<ul><li>top<ul><li>inner</li><li>inner2<ol><li>deep</li></ol></li></ul></li>"
            "<li>next</li></ul>",
            "- top\n  - inner\n  - inner2\n    1. deep\n- next",
        ),
        (
            '<pre><code class="language-python">def f(x):\n    return  x\n\n\n# done</code></pre>',
            "```python\ndef f(x):\n    return  x\n\n\n# done\n```",
        ),
        ("<pre>\n  indented\n\ttab</pre>", "```\n  indented\n\ttab\n```"),
        ("<pre>a &lt;b&gt; &amp; c</pre>", "```\na <b> & c\n```"),
        ("<p>call <code>run()</code> now</p>", "call `run()` now"),
        (
            "<table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr>"
            "<tr><td>b</td><td>2</td></tr></table>",
            "| Name | Value |\n| --- | --- |\n| a | 1 |\n| b | 2 |",
        ),
        (
            "<table><thead><tr><th>k</th><th>v</th></tr></thead>"
            "<tbody><tr><td>x|y</td></tr></tbody></table>",
            "| k | v |\n| --- | --- |\n| x\\|y |  |",
        ),
        ("<p>line one<br>line two<br/>line three</p>", "line one\nline two\nline three"),
        ("<p>see <a href='https://x.example/'>the docs</a></p>", "see the docs"),
        ("<p>pic <img src='a.png' alt='ALTWORD'> here</p>", "pic here"),
        ("<p>caf&eacute; &amp; &lt;tag&gt; &#8212; &nbsp;x</p>", "café & <tag> — x"),
        ("<p>  lots\n\n of \t  space  </p>", "lots of space"),
        ("<div>a<div>b</div>c</div>", "a\n\nb\n\nc"),
        ("<p>x</p><!-- a comment --><p>y</p>", "x\n\ny"),
    ],
)
def test_formatting(html: str, expected: str) -> None:
    assert extract_document(f"<html><body>{html}</body></html>").text == expected


def test_no_double_blank_lines_outside_code() -> None:
    html = "<p>a<br><br><br><br>b</p><div></div><div> </div><p>c</p>"
    text = extract_document(html).text
    assert "\n\n\n" not in text
    assert text == "a\n\nb\n\nc"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Install — Lumen Docs", "Install"),
        ("Install | Site", "Install"),
        ("Install - Site", "Install"),
        ("Install – Site", "Install"),
        ("Install - Linux | Lumen Docs", "Install - Linux"),
        ("Self-hosting guide", "Self-hosting guide"),
        ("A|B", "A|B"),
        ("  Spaced   title  ", "Spaced title"),
    ],
)
def test_title_suffix_stripping(title: str, expected: str) -> None:
    html = f"<html><head><title>{title}</title></head><body><h1>H</h1><p>x</p></body></html>"
    assert extract_document(html).title == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<html><body><h1>First <em>H1</em></h1><h1>Second</h1></body></html>", "First H1"),
        ("<html><head><title>  </title></head><body><h1>Fallback</h1></body></html>", "Fallback"),
        ("<html><body><p>no title</p></body></html>", ""),
        ("<html><body><svg><title>icon</title></svg><p>x</p></body></html>", ""),
    ],
)
def test_title_fallbacks(html: str, expected: str) -> None:
    assert extract_document(html).title == expected


def test_class_words_matched_whole() -> None:
    html = (
        "<body><div class='content navigable contents'>keep1</div>"
        "<div class='headline'>keep2</div><div class='site-nav'>drop1</div>"
        "<div id='main_menu'>drop2</div><div class='pagination'>drop3</div>"
        "<div class='page-header'><h2>Kept heading</h2></div></body>"
    )
    text = extract_document(html).text
    assert "keep1" in text and "keep2" in text and "Kept heading" in text
    assert "drop" not in text


ROBUSTNESS_INPUTS = [
    "",
    "   \n\t ",
    "just some plain text",
    "<p>unclosed <b>bold <i>italic <div>and more",
    "</p></div></body></html>",
    "<<<>>>&&&;;<!--",
    '<?xml version="1.0" encoding="ISO-8859-1"?><html><body><p>xml decl</p></body></html>',
    '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html><p>decl</p>',
    "<p>a<![CDATA[ cdata <b> ]]>b</p>",
    "<p>comment <!-- <b>hidden</b> --> end</p>",
    "\x00\x01\x02<p>controls\x0b\x0c</p>",
    "\ud800<p>lone surrogate</p>",
    "<div>" * 3000 + "deep" + "</div>" * 3000,
    "<table><tr><td><table><tr><td>nested</td></tr></table></td></tr></table>",
    "<pre></pre><ul></ul><ol><li></li></ol><table></table><code></code>",
    "<html><head><title>only head</title></head></html>",
    bytes(random.Random(7).randrange(256) for _ in range(5000)).decode("latin-1"),
]


@pytest.mark.parametrize("html", ROBUSTNESS_INPUTS, ids=range(len(ROBUSTNESS_INPUTS)))
def test_robust_inputs_never_raise(html: str) -> None:
    doc = extract_document(html)
    assert isinstance(doc, ExtractedDocument)
    assert doc.text == doc.text.strip()
    assert "\x00" not in doc.text
    assert doc.word_count >= 0


@pytest.mark.parametrize("value", [None, b"<p>bytes in</p>", 12345])
def test_non_str_inputs_never_raise(value: object) -> None:
    doc = extract_document(value)  # type: ignore[arg-type]
    assert isinstance(doc, ExtractedDocument)


def test_xml_declaration_with_encoding_parses() -> None:
    html = '<?xml version="1.0" encoding="ISO-8859-1"?><html><body><p>café</p></body></html>'
    assert extract_document(html).text == "café"


def test_plain_text_and_empty() -> None:
    assert extract_document("hello plain world").text == "hello plain world"
    assert extract_document("") == ExtractedDocument(title="", text="", headings=[], word_count=0)


def test_ten_megabyte_page_is_fast_and_capped() -> None:
    para = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20 + "</p>"
    section = f"<h2>Part</h2>{para}<ul><li>a</li><li>b <code>c</code></li></ul>"
    repeat = 10_000_000 // len(section) + 1
    html = "<html><body><main>" + section * repeat + "</main></body></html>"
    assert len(html) >= 10_000_000
    start = time.perf_counter()
    doc = extract_document(html)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    assert 0 < len(doc.text) <= MAX_TEXT_CHARS
    assert doc.text.startswith("## Part\n\nLorem ipsum")


@pytest.mark.parametrize(
    "unit",
    [
        "<nav><a href='/'>home</a></nav>",  # all boilerplate: the whole tree is walked
        "<li>item <b>x</b></li>",  # one giant list
        "<tr><td>1</td><td>2</td></tr>",  # one giant table
    ],
)
def test_ten_megabyte_pathological_pages(unit: str) -> None:
    wrap = {"<li": ("<ul>", "</ul>"), "<tr": ("<table>", "</table>")}.get(unit[:3], ("", ""))
    html = "<body>" + wrap[0] + unit * (10_000_000 // len(unit)) + wrap[1] + "</body>"
    start = time.perf_counter()
    doc = extract_document(html)
    assert time.perf_counter() - start < 10
    assert len(doc.text) <= MAX_TEXT_CHARS


def test_single_huge_text_node() -> None:
    html = "<p>" + "word " * 2_000_000 + "</p>"
    start = time.perf_counter()
    doc = extract_document(html)
    assert time.perf_counter() - start < 10
    assert len(doc.text) <= MAX_TEXT_CHARS


def test_deterministic() -> None:
    assert extract_document(DOC_PAGE) == extract_document(DOC_PAGE)


@pytest.mark.e2e
def test_modules_do_not_import_torch() -> None:
    code = (
        "import sys, rag_core.extraction, rag_core.chunking\n"
        "bad = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
