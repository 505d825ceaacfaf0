"""Main-content extraction: HTML page -> title, markdown-like text, headings, word count.

Pure functions on strings (lxml only); safe to run in light processes. Never raises on bad
input: anything unparseable yields an empty document rather than an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import lxml.etree as etree

from rag_core.ids import content_hash

# Cap on the extracted text. A documentation page is far below this; the cap only bounds the
# cost of pathological pages (generated listings, dumps) for chunking and embedding downstream.
MAX_TEXT_CHARS = 1_000_000

# Tags whose whole subtree is never content.
_DROP_TAGS = frozenset(
    {
        "nav", "header", "footer", "aside", "script", "style", "noscript", "template", "form",
        "button", "svg", "iframe", "object", "embed", "canvas", "video", "audio", "map",
        "input", "select", "textarea", "dialog", "head", "title", "meta", "link", "img",
        "picture", "source", "track", "math",
    }
)  # fmt: skip
_DROP_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar",
     "toolbar", "dialog", "alertdialog"}
)  # fmt: skip
# A class/id token is boilerplate when one of its hyphen/underscore-separated parts is one of
# these words ("site-nav", "md-sidebar", "cookie_banner"), so "content" or "navigable" is kept.
_BOILERPLATE_PARTS = frozenset(
    {
        "nav", "navbar", "navigation", "menu", "menubar", "sidebar", "breadcrumb",
        "breadcrumbs", "footer", "header", "masthead", "cookie", "cookies", "consent", "gdpr",
        "banner", "toc", "pagination", "pager", "advert", "advertisement", "ads", "share",
        "sharing", "social", "newsletter", "subscribe", "topbar", "subnav", "skiplink",
        "headerlink", "announcement", "feedback", "edit", "prevnext",
    }
)  # fmt: skip
# Whole tokens that are boilerplate although none of their parts is on its own ("skip-link").
_BOILERPLATE_TOKENS = frozenset(
    {"skip-link", "skip-links", "skip-to-content", "skip-nav", "sr-only", "visually-hidden",
     "screen-reader-text", "table-of-contents", "on-this-page", "edit-this-page", "prev-next",
     "back-to-top"}
)  # fmt: skip
# Header-like wrappers that hold the page's own heading are content, not chrome (see _keep).
_HEADER_PARTS = frozenset({"header", "masthead"})
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "blockquote", "dd", "dt", "dl", "figure",
        "figcaption", "details", "summary", "center", "address", "fieldset", "legend", "li",
        "hgroup", "body", "html", "caption", "tr", "td", "th", "thead", "tbody", "tfoot",
        "header", "noframes", "output",
    }
)  # fmt: skip
_TITLE_SEPARATORS = (" | ", " - ", " — ", " – ")

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WS_RE = re.compile(r"[ \t\n\r\f\v\u00a0]+")
_PART_SPLIT_RE = re.compile(r"[-_]+")
_HIDDEN_STYLE_RE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_LANG_RE = re.compile(r"(?:^|\s)(?:language|lang)-([\w+#.-]+)")
_BLANK_RUN_RE = re.compile(r"\n{3,}")
_WORD_RE = re.compile(r"\w+")
_BR = "\x00"  # marks <br> inside inline text; control chars are stripped from input first


@dataclass(frozen=True)
class ExtractedDocument:
    """The readable content of one page."""

    title: str
    text: str
    headings: list[str] = field(default_factory=list)
    word_count: int = 0


def extract_document(html: str, url: str = "") -> ExtractedDocument:
    """Extract title, markdown-like main text, headings and word count from an HTML page.

    The main content is ``<main>``, else ``<article>``, else ``[role=main]``, else ``<body>``,
    minus boilerplate (navigation, headers, footers, sidebars, cookie banners, hidden elements).
    The text is capped at ``MAX_TEXT_CHARS`` characters, cut at a line boundary where possible,
    so a pathological page costs bounded work downstream. ``url`` is accepted for callers'
    symmetry and diagnostics; extraction does not depend on it. Never raises.
    """
    try:
        return _extract(html)
    except Exception:  # noqa: BLE001 - contract: bad input gives an empty document, not a crash
        return ExtractedDocument(title="", text="", headings=[], word_count=0)


def page_content_hash(html: str) -> str:
    """Content hash of a page: the hash of its extracted main text, not of the raw HTML
    (navigation, timestamps and tokens change on every fetch)."""
    return content_hash(extract_document(html).text)


def _extract(html: object) -> ExtractedDocument:
    root_doc = _parse(html)
    if root_doc is None:
        return ExtractedDocument(title="", text="", headings=[], word_count=0)
    content = _content_root(root_doc)
    renderer = _Renderer(inside_content=content.tag != "body" and content.tag != "html")
    try:
        renderer.children(content)
        renderer.flush()
        blocks = renderer.blocks
    except RecursionError:
        # Absurdly deep nesting: fall back to flat text rather than fail.
        blocks = [_collapse(" ".join(content.itertext()))]
    text = _finish(blocks)
    headings = [h for h in renderer.headings if h] if blocks is renderer.blocks else []
    title = _title(root_doc, content)
    return ExtractedDocument(
        title=title, text=text, headings=headings, word_count=len(_WORD_RE.findall(text))
    )


def _parse(html: object) -> etree._Element | None:
    """Parse anything string-like into an lxml HTML tree, or None when there is nothing."""
    if html is None:
        return None
    if isinstance(html, bytes | bytearray):
        html = bytes(html).decode("utf-8", errors="replace")
    if not isinstance(html, str):
        html = str(html)
    if not html.strip():
        return None
    html = _CONTROL_RE.sub("", html)
    # Parse UTF-8 bytes with a forced encoding: lxml rejects str input that carries an XML
    # encoding declaration, and a <meta charset> must not re-decode text we already decoded.
    data = html.encode("utf-8", errors="replace")
    # Plain etree elements, not lxml.html's HtmlElement: the custom element-class lookup
    # costs a Python call per element, which dominates on huge pages.
    parser = etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        huge_tree=True,  # big pages must parse fully; HTML has no entity expansion to abuse
        default_doctype=False,
    )
    try:
        doc = etree.fromstring(data, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    return doc  # None when libxml2 found no elements at all


def _content_root(doc: etree._Element) -> etree._Element:
    """The element holding the page's main content."""
    for path in ("//main", "//article", "//*[@role='main']", "//body"):
        found = doc.xpath(path)
        if found:
            return found[0]
    return doc


def _class_tokens(el: etree._Element) -> list[str]:
    tokens = (el.get("class") or "").lower().split()
    ident = (el.get("id") or "").lower().strip()
    if ident:
        tokens.append(ident)
    return tokens


def _is_hidden(el: etree._Element) -> bool:
    if el.get("hidden") is not None:
        return True
    if (el.get("aria-hidden") or "").strip().lower() == "true":
        return True
    style = el.get("style")
    return bool(style and _HIDDEN_STYLE_RE.search(style))


def _boilerplate_kind(el: etree._Element, tag: str) -> str | None:
    """Why ``el`` is boilerplate: "drop", "header"/"header-class" (kept when it holds a
    heading, see _Renderer.keep_header), or None for content."""
    if tag in _DROP_TAGS:
        return "header" if tag == "header" else "drop"
    if not el.attrib:  # most elements: skip the attribute lookups (matters on huge pages)
        return None
    if _is_hidden(el):
        return "drop"
    role = (el.get("role") or "").strip().lower()
    if role in _DROP_ROLES:
        return "header" if role == "banner" else "drop"
    for token in _class_tokens(el):
        if token in _BOILERPLATE_TOKENS:
            return "drop"
        parts = _PART_SPLIT_RE.split(token)
        if any(part in _BOILERPLATE_PARTS for part in parts):
            if any(part in _HEADER_PARTS for part in parts):
                return "header-class"
            return "drop"
    return None


def _has_heading(el: etree._Element) -> bool:
    return bool(el.xpath(".//h1|.//h2|.//h3|.//h4|.//h5|.//h6"))


def _collapse(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


class _Renderer:
    """Walks a content subtree and emits markdown-like blocks."""

    def __init__(self, inside_content: bool, list_depth: int = 0) -> None:
        # inside_content: the root is <main>/<article>, so an inner <header> holding a heading
        # is the article's own header (HTML5 semantics), not the site banner.
        self.inside_content = inside_content
        self.list_depth = list_depth
        self.blocks: list[str] = []
        self.verbatim: list[bool] = []  # block must not be re-indented (code, nested list)
        self.headings: list[str] = []
        self.inline: list[str] = []
        self.size = 0

    # -- output ------------------------------------------------------------------------
    def flush(self) -> None:
        if not self.inline:
            return
        raw = "".join(self.inline)
        self.inline = []
        lines = [_collapse(line) for line in raw.split(_BR)]
        text = "\n".join(lines).strip()
        text = _BLANK_RUN_RE.sub("\n\n", text)
        if text:
            self.add_block(text)

    def add_block(self, block: str, verbatim: bool = False) -> None:
        self.blocks.append(block)
        self.verbatim.append(verbatim)
        self.size += len(block) + 2

    def full(self) -> bool:
        # Stop walking once the text cap is certainly exceeded: bounds work on huge pages.
        return self.size > MAX_TEXT_CHARS

    def text(self, s: str | None) -> None:
        if s:
            self.inline.append(s)

    # -- traversal ---------------------------------------------------------------------
    def children(self, el: etree._Element) -> None:
        self.text(el.text)
        for child in el:
            if self.full():
                return
            self.element(child)
            self.text(child.tail)

    def element(self, el: etree._Element) -> None:
        tag = el.tag
        if not isinstance(tag, str):  # comment / processing instruction / entity
            return
        tag = tag.lower()
        kind = _boilerplate_kind(el, tag)
        if kind == "drop" or (kind is not None and not self.keep_header(el, kind)):
            return
        if tag in _HEADING_TAGS:
            self.heading(el, _HEADING_TAGS[tag])
        elif tag in ("ul", "ol", "menu", "dir"):
            self.flush()
            lines = self.list_lines(el, ordered=tag == "ol")
            if lines:
                self.add_block("\n".join(lines), verbatim=True)
        elif tag in ("pre", "xmp", "listing", "plaintext"):
            self.flush()
            block = _pre_block(el)
            if block:
                self.add_block(block, verbatim=True)
        elif tag == "table":
            self.flush()
            block = self.table(el)
            if block:
                self.add_block(block)
        elif tag == "br":
            self.inline.append(_BR)
        elif tag == "hr":
            self.flush()
        elif tag in ("code", "kbd", "samp", "tt"):
            inner = _collapse(_inline_text(el, self.inside_content))
            if inner:
                fence = "``" if "`" in inner else "`"
                pad = " " if "`" in inner else ""
                self.inline.append(f"{fence}{pad}{inner}{pad}{fence}")
        elif tag in _BLOCK_TAGS:
            self.flush()
            self.children(el)
            self.flush()
        else:
            self.children(el)

    def keep_header(self, el: etree._Element, kind: str) -> bool:
        # A header-like wrapper that holds a heading is the page's own header when we are
        # inside <main>/<article>; under <body> only class-named wrappers get that benefit,
        # since a <header>/banner there is the site chrome.
        if kind == "header-class":
            return _has_heading(el)
        return self.inside_content and _has_heading(el)

    def heading(self, el: etree._Element, level: int) -> None:
        self.flush()
        text = _collapse(_inline_text(el, self.inside_content))
        if text:
            self.headings.append(text)
            self.add_block(f"{'#' * level} {text}")

    def list_lines(self, el: etree._Element, ordered: bool) -> list[str]:
        indent = "  " * self.list_depth
        lines: list[str] = []
        number = _int_attr(el.get("start"), 1) if ordered else 1
        size = self.size
        for child in el:
            if size > MAX_TEXT_CHARS:  # one giant list must not escape the text cap
                break
            tag = child.tag.lower() if isinstance(child.tag, str) else ""
            if not tag:
                continue
            if _boilerplate_kind(child, tag) == "drop":
                continue
            if tag in ("ul", "ol"):
                # A list directly inside a list (invalid but common): nest it.
                sub = _Renderer(self.inside_content, self.list_depth + 1)
                lines.extend(sub.list_lines(child, ordered=tag == "ol"))
                continue
            sub = _Renderer(self.inside_content, self.list_depth + 1)
            if tag == "li":
                sub.children(child)
            else:
                sub.element(child)
            sub.flush()
            self.headings.extend(sub.headings)
            if not sub.blocks:
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            first = True
            size += sub.size
            for block, verbatim in zip(sub.blocks, sub.verbatim, strict=True):
                if verbatim:
                    # Nested lists arrive pre-indented; code blocks keep their exact text.
                    if first:
                        lines.append(f"{indent}{marker}".rstrip())
                        first = False
                    lines.append(block)
                    continue
                for line in block.split("\n"):
                    if not line.strip():
                        continue
                    if first:
                        lines.append(f"{indent}{marker}{line}")
                        first = False
                    else:
                        lines.append(f"{indent}{' ' * len(marker)}{line}")
        return lines

    def table(self, el: etree._Element) -> str:
        rows: list[list[str]] = []
        size = self.size
        for row in _table_rows(el):
            if size > MAX_TEXT_CHARS:  # one giant table must not escape the text cap
                break
            cells = []
            for cell in row:
                if not isinstance(cell.tag, str) or cell.tag.lower() not in ("td", "th"):
                    continue
                text = _collapse(_inline_text(cell, self.inside_content).replace(_BR, " "))
                cells.append(text.replace("|", "\\|"))
            if any(cells):
                rows.append(cells)
                size += sum(len(c) + 3 for c in cells)
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        out = []
        for i, r in enumerate(rows):
            r = r + [""] * (width - len(r))
            out.append("| " + " | ".join(r) + " |")
            if i == 0:
                out.append("| " + " | ".join(["---"] * width) + " |")
        return "\n".join(out)


def _table_rows(table: etree._Element) -> Iterator[etree._Element]:
    """Rows of ``table`` itself, not of tables nested in its cells (lazily: tables can be huge)."""
    for child in table:
        tag = child.tag.lower() if isinstance(child.tag, str) else ""
        if tag == "tr":
            yield child
        elif tag in ("thead", "tbody", "tfoot"):
            yield from (r for r in child if isinstance(r.tag, str) and r.tag.lower() == "tr")


def _inline_text(el: etree._Element, inside_content: bool) -> str:
    """Text of ``el`` rendered as one run (blocks joined by spaces), boilerplate excluded."""
    if len(el) == 0:  # fast path for plain cells and headings
        return el.text or ""
    sub = _Renderer(inside_content)
    sub.children(el)
    sub.flush()
    return " ".join(sub.blocks)


def _int_attr(value: str | None, default: int) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        return default


def _pre_text(el: etree._Element) -> str:
    """Exact text of a <pre>, with <br> as newline."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if isinstance(child.tag, str):
                if child.tag.lower() == "br":
                    parts.append("\n")
                elif child.tag.lower() not in ("script", "style", "template"):
                    walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(el)
    return "".join(parts)


def _pre_block(el: etree._Element) -> str:
    code = _pre_text(el).replace("\r\n", "\n").replace("\r", "\n")
    if code.startswith("\n"):  # HTML drops one newline right after <pre>
        code = code[1:]
    code = code.rstrip("\n")
    if not code.strip():
        return ""
    lang = ""
    candidates = [el, *el.iter("code")]
    for node in candidates:
        m = _LANG_RE.search((node.get("class") or "").lower())
        if m:
            lang = m.group(1)
            break
    # A longer fence when the code itself holds a ``` line, so the block stays one block.
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code}\n{fence}"


def _finish(blocks: list[str]) -> str:
    """Join blocks, limit blank runs outside code fences, cap the length."""
    text = "\n\n".join(b for b in blocks if b.strip()).strip()
    if len(text) > MAX_TEXT_CHARS:
        cut = text.rfind("\n", 0, MAX_TEXT_CHARS)
        text = text[: cut if cut > MAX_TEXT_CHARS // 2 else MAX_TEXT_CHARS].rstrip()
    return text


def _title(doc: etree._Element, content: etree._Element) -> str:
    for node in doc.xpath("//title[not(ancestor::svg)]"):
        title = _strip_site_suffix(_collapse("".join(node.itertext())))
        if title:
            return title
    for scope in (content, doc):
        for h1 in scope.iter("h1"):
            text = _collapse("".join(h1.itertext()))
            if text:
                return text
    return ""


def _strip_site_suffix(title: str) -> str:
    """Drop a trailing " | Site Name" style suffix; keep the title when nothing would remain."""
    best = -1
    sep_len = 0
    for sep in _TITLE_SEPARATORS:
        pos = title.rfind(sep)
        if pos > best:
            best, sep_len = pos, len(sep)
    if best > 0:
        head = title[:best].strip()
        if head and title[best + sep_len :].strip():
            return head
    return title
