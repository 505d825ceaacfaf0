"""A deliberately tiny Markdown subset -> HTML converter used to author the demo pages."""

from __future__ import annotations

import html
import re

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_OL_ITEM = re.compile(r"^\d+\. ")


def inline(text: str) -> str:
    """Escape text and render inline code, bold and [links](href)."""
    out = html.escape(text, quote=False)
    # Code spans first so link/bold syntax inside them stays literal.
    spans: list[str] = []

    def _stash(match: re.Match[str]) -> str:
        spans.append(f"<code>{match.group(1)}</code>")
        return f"\x00{len(spans) - 1}\x00"

    out = _CODE.sub(_stash, out)
    out = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], out)


def _table(rows: list[str]) -> str:
    """Render pipe-table lines (header, separator, body rows) as an HTML table."""
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    head, body = cells[0], [c for c in cells[1:] if not set("".join(c)) <= set("-: ")]
    parts = ["<table>", "<thead><tr>"]
    parts += [f"<th>{inline(c)}</th>" for c in head]
    parts.append("</tr></thead>\n<tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _list(items: list[str], ordered: bool) -> str:
    """Render list items as <ul> or <ol>."""
    tag = "ol" if ordered else "ul"
    body = "\n".join(f"<li>{inline(i)}</li>" for i in items)
    return f"<{tag}>\n{body}\n</{tag}>"


def _code(lang: str, lines: list[str]) -> str:
    """Render a fenced block; whitespace is preserved verbatim because it matters in code."""
    cls = f' class="language-{lang}"' if lang else ""
    return f"<pre><code{cls}>{html.escape(chr(10).join(lines), quote=False)}</code></pre>"


def _heading(line: str) -> str:
    """Render an ATX heading with a slug id so pages can deep-link to it."""
    level = len(line) - len(line.lstrip("#"))
    text = line[level:].strip()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return f'<h{level} id="{slug}">{inline(text)}</h{level}>'


def to_html(source: str) -> str:
    """Convert the Markdown subset (headings, paragraphs, lists, tables, fences, notes) to HTML."""
    lines = source.strip("\n").split("\n")
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            blocks.append(_code(line[3:].strip(), lines[i + 1 : j]))
            i = j + 1
        elif line.startswith("#"):
            blocks.append(_heading(line))
            i += 1
        else:
            i = _block(lines, i, blocks)
    return "\n".join(blocks)


def _join_items(lines: list[str], strip_marker) -> list[str]:
    """Merge indented continuation lines into the list item they continue."""
    items: list[str] = []
    for line in lines:
        if line.startswith("  ") and items:
            items[-1] += " " + line.strip()
        else:
            items.append(strip_marker(line))
    return items


def _take(lines: list[str], i: int, pred) -> tuple[list[str], int]:
    """Collect consecutive lines from i matching pred."""
    out = []
    while i < len(lines) and lines[i].strip() and pred(lines[i]):
        out.append(lines[i])
        i += 1
    return out, i


def _block(lines: list[str], i: int, blocks: list[str]) -> int:
    """Render the list/table/note/paragraph block starting at line i; return the next index."""
    line = lines[i]
    if line.startswith("|"):
        rows, i = _take(lines, i, lambda s: s.startswith("|"))
        blocks.append(_table(rows))
    elif line.startswith("- "):
        items, i = _take(lines, i, lambda s: s.startswith(("- ", "  ")))
        blocks.append(_list(_join_items(items, lambda s: s[2:]), ordered=False))
    elif _OL_ITEM.match(line):
        items, i = _take(lines, i, lambda s: bool(_OL_ITEM.match(s)) or s.startswith("  "))
        blocks.append(_list(_join_items(items, lambda s: _OL_ITEM.sub("", s)), ordered=True))
    elif line.startswith("> "):
        quoted, i = _take(lines, i, lambda s: s.startswith("> "))
        text = " ".join(s[2:] for s in quoted)
        blocks.append(f'<div class="note"><p>{inline(text)}</p></div>')
    else:
        para, i = _take(lines, i, _is_para_line)
        if not para:  # defensive: never loop forever on an unexpected line
            para, i = [line], i + 1
        blocks.append(f"<p>{inline(' '.join(s.strip() for s in para))}</p>")
    return i


def _is_para_line(line: str) -> bool:
    """True when a line continues a paragraph rather than starting another block."""
    return not line.startswith(("#", "```", "|", "- ", "> ")) and not _OL_ITEM.match(line)
