"""Bundled demo documentation website ("Lumen") and a tiny local HTTP server for crawling it."""

from __future__ import annotations

__all__ = ["generate_site", "SiteServer"]


def __getattr__(name: str):
    """Lazily expose the public API so `python -m demo_site.generate` does not pre-import it."""
    if name == "generate_site":
        from demo_site.generate import generate_site

        return generate_site
    if name == "SiteServer":
        from demo_site.serve import SiteServer

        return SiteServer
    raise AttributeError(name)
