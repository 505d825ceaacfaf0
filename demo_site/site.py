"""Structure of the bundled Lumen site: page record, sections, navigation, deliberate defects."""

from __future__ import annotations

from dataclasses import dataclass

from demo_site.layout import NavLink


@dataclass(frozen=True)
class Page:
    """One authored page: output path (relative, POSIX), title, sidebar section, Markdown body."""

    path: str
    title: str
    section: str
    md: str
    description: str = ""


SECTIONS: list[NavLink] = [
    NavLink("Getting started", "/docs/getting-started/index.html"),
    NavLink("Installation", "/docs/install/index.html"),
    NavLink("Configuration", "/docs/configuration/index.html"),
    NavLink("CLI reference", "/docs/cli/index.html"),
    NavLink("Python API", "/docs/api/index.html"),
    NavLink("Concepts", "/docs/concepts/index.html"),
    NavLink("Tutorials", "/docs/tutorials/index.html"),
    NavLink("Deployment", "/docs/deployment/index.html"),
    NavLink("Troubleshooting", "/docs/troubleshooting/index.html"),
    NavLink("FAQ", "/faq.html"),
    NavLink("Changelog", "/changelog.html"),
    NavLink("Blog", "/blog/index.html"),
]

TOP_NAV: list[NavLink] = [
    NavLink("Home", "/index.html"),
    NavLink("Docs", "/docs/index.html"),
    NavLink("Tutorials", "/docs/tutorials/index.html"),
    NavLink("API", "/docs/api/index.html"),
    NavLink("Blog", "/blog/index.html"),
    NavLink("Changelog", "/changelog.html"),
    NavLink("Support", "/support.html"),
]

# Links that deliberately point at pages which are never generated, so crawlers meet 404s.
BROKEN_LINKS: frozenset[str] = frozenset(
    {
        "docs/install/freebsd.html",
        "docs/api/scheduler.html",
        "docs/concepts/lineage.html",
        "blog/lumen-3-0-preview.html",
    }
)

PRIVATE_PAGE = "private/roadmap-draft.html"
EXTERNAL_URL = "https://example.org/"


def trail_for(page: Page) -> list[NavLink]:
    """Breadcrumb ancestors of a page: Home, Docs (for /docs pages) and its section index."""
    trail = [NavLink("Home", "/index.html")]
    if page.path == "index.html":
        return []
    if page.path.startswith("docs/") and page.path != "docs/index.html":
        trail.append(NavLink("Docs", "/docs/index.html"))
    for s in SECTIONS:
        if s.label == page.section and s.href.lstrip("/") != page.path:
            trail.append(s)
    return trail
