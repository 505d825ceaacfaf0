"""Shared page chrome (header, sidebar, breadcrumb, footer, cookie banner) for every demo page."""

from __future__ import annotations

import html
from dataclasses import dataclass

PRODUCT = "Lumen"
COPYRIGHT = "\u00a9 2024 Lumen Labs, Inc. All rights reserved."

# Inline CSS/JS instead of asset files: the site stays "HTML pages only", yet extractors still
# meet the <style>/<script> noise that real sites carry.
_STYLE = """body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}
.site-header{display:flex;gap:2rem;padding:.8rem 2rem;background:#12263f;color:#fff}
.site-header a{color:#fff;text-decoration:none}
.layout{display:flex}.sidebar{width:16rem;padding:1rem;border-right:1px solid #dde}
main{max-width:52rem;padding:1rem 2rem}pre{background:#f4f6fa;padding:.8rem;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:.3rem .6rem}
.note{border-left:4px solid #3b82f6;padding:.2rem 1rem;background:#eef4ff}
.cookie-banner{position:fixed;bottom:0;left:0;right:0;background:#222;color:#eee;padding:1rem}"""

_SCRIPT = """document.addEventListener('DOMContentLoaded',function(){
  var b=document.getElementById('cookie-banner');
  if(localStorage.getItem('cookies-ok')){b.style.display='none';}
  document.getElementById('cookie-accept').onclick=function(){
    localStorage.setItem('cookies-ok','1');b.style.display='none';};
});"""


@dataclass(frozen=True)
class NavLink:
    """A (label, absolute path) pair used in navigation menus and breadcrumbs."""

    label: str
    href: str


def _header(top_nav: list[NavLink], product: str) -> str:
    """Render the site header: logo, top navigation and a search box."""
    items = [f'      <li><a href="{n.href}">{html.escape(n.label)}</a></li>' for n in top_nav]
    links = "\n".join(items)
    return f"""<header class="site-header">
  <a class="logo" href="/index.html"><span class="logo-mark">&#9728;</span> {product} Docs</a>
  <nav class="top-nav" aria-label="Main">
    <ul>
{links}
    </ul>
  </nav>
  <form class="search" action="/search" method="get" role="search">
    <input type="search" name="q" placeholder="Search the docs" aria-label="Search">
  </form>
</header>"""


def _sidebar(sections: list[NavLink], current_section: str) -> str:
    """Render the left sidebar listing every section, marking the active one."""
    items = []
    for s in sections:
        active = ' class="active" aria-current="true"' if s.label == current_section else ""
        items.append(f'    <li{active}><a href="{s.href}">{html.escape(s.label)}</a></li>')
    body = "\n".join(items)
    return f"""<aside class="sidebar">
  <nav aria-label="Sections">
    <p class="sidebar-title">Documentation</p>
    <ul>
{body}
    </ul>
  </nav>
</aside>"""


def _breadcrumb(trail: list[NavLink], title: str) -> str:
    """Render the breadcrumb trail ending at the current page title."""
    parts = [f'<li><a href="{n.href}">{html.escape(n.label)}</a></li>' for n in trail]
    parts.append(f'<li aria-current="page">{html.escape(title)}</li>')
    return '<nav class="breadcrumb" aria-label="Breadcrumb"><ol>' + "".join(parts) + "</ol></nav>"


DEFAULT_FOOTER_LINKS: list[NavLink] = [
    NavLink("About", "/about.html"),
    NavLink("Support", "/support.html"),
    NavLink("License", "/license.html"),
    NavLink("Security", "/security.html"),
    NavLink("Sitemap", "/sitemap.xml"),
]


def _footer(product: str, links: list[NavLink]) -> str:
    """Render the footer with copyright and legal/community links."""
    notice = COPYRIGHT if product == PRODUCT else f"\u00a9 2024 {product} Project."
    anchors = " |\n    ".join(f'<a href="{n.href}">{html.escape(n.label)}</a>' for n in links)
    return f"""<footer class="site-footer">
  <div class="footer-links">
    {anchors}
  </div>
  <p class="copyright">{notice}</p>
  <p class="footer-note">{product} is open-source software under the Apache 2.0 license.</p>
</footer>"""


_COOKIE = """<div class="cookie-banner" id="cookie-banner" role="dialog" aria-label="Cookies">
  <p>We use cookies to remember your preferences and to understand how the documentation is
  used. By continuing to browse you agree to our use of cookies.</p>
  <button id="cookie-accept" type="button">Accept all cookies</button>
  <a href="#cookie-banner">Privacy settings</a>
</div>"""


def render_page(
    *,
    title: str,
    body_html: str,
    section: str,
    trail: list[NavLink],
    top_nav: list[NavLink],
    sections: list[NavLink],
    product: str = PRODUCT,
    description: str = "",
    footer_links: list[NavLink] | None = None,
) -> str:
    """Wrap a page body in the full site chrome and return the complete HTML document."""
    desc = html.escape(description or f"{title} - {product} documentation")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} | {product} Documentation</title>
<meta name="description" content="{desc}">
<style>
{_STYLE}
</style>
<script>
{_SCRIPT}
</script>
</head>
<body>
<a class="skip-link" href="#content">Skip to content</a>
{_header(top_nav, product)}
<div class="layout">
{_sidebar(sections, section)}
<main id="content">
{_breadcrumb(trail, title)}
<article class="doc">
<h1>{html.escape(title)}</h1>
{body_html}
</article>
<div class="feedback">Was this page helpful?
  <button type="button">Yes</button> <button type="button">No</button></div>
</main>
</div>
{_footer(product, DEFAULT_FOOTER_LINKS if footer_links is None else footer_links)}
{_COOKIE}
</body>
</html>
"""
