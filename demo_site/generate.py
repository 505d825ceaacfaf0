"""Write the bundled Lumen demo site, or a synthetic docs site of N pages, as static files."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from demo_site import (
    content_cli,
    content_config_ref,
    content_docs,
    content_guides,
    content_misc,
    content_support,
)
from demo_site.layout import render_page
from demo_site.markup import to_html
from demo_site.site import SECTIONS, TOP_NAV, Page, trail_for

OWNED_NAMES = ("robots.txt", "sitemap.xml")
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n\nSitemap: /sitemap.xml\n"


def bundled_pages() -> list[Page]:
    """All authored pages of the bundled demo site, in a stable order."""
    modules = (
        content_docs,
        content_guides,
        content_misc,
        content_config_ref,
        content_cli,
        content_support,
    )
    pages = [p for m in modules for p in m.PAGES]
    paths = [p.path for p in pages]
    if len(paths) != len(set(paths)):  # guards against copy-paste mistakes in the content
        raise ValueError("duplicate page paths in bundled content")
    return pages


def render_bundled(page: Page) -> str:
    """Render one authored page to a complete HTML document."""
    return render_page(
        title=page.title,
        body_html=to_html(page.md),
        section=page.section,
        trail=trail_for(page),
        top_nav=TOP_NAV,
        sections=SECTIONS,
        description=page.description,
    )


def clean_output(out_dir: Path) -> None:
    """Delete files a previous generation wrote (*.html, robots.txt, sitemap.xml) and empty dirs."""
    if not out_dir.exists():
        return
    for path in sorted(out_dir.rglob("*"), reverse=True):
        if path.is_file() and (path.suffix == ".html" or path.name in OWNED_NAMES):
            path.unlink()
    # Deepest first so that parents emptied by their children are removed too.
    for root, _dirs, _files in sorted(os.walk(out_dir), key=lambda t: -len(t[0])):
        p = Path(root)
        if p != out_dir and not any(p.iterdir()):
            p.rmdir()


def sitemap_xml(paths: Iterable[str], base_url: str = "") -> str:
    """Sitemap listing the public pages; locs are root-relative unless base_url is given."""
    base = base_url.rstrip("/")
    urls = "".join(f"  <url><loc>{base}/{p}</loc></url>\n" for p in paths)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{urls}</urlset>\n"
    )


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with LF newlines so output is byte-identical on every platform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def render_site(n_pages: int | None, seed: int) -> dict[str, str]:
    """Map of relative HTML path -> document for the bundled site or a synthetic one."""
    if n_pages is None:
        return {p.path: render_bundled(p) for p in bundled_pages()}
    from demo_site.synthetic import synthetic_site  # imported lazily: unused for the demo

    return synthetic_site(n_pages, seed)


def generate_site(
    out_dir: Path, n_pages: int | None = None, seed: int = 0, *, base_url: str = ""
) -> list[str]:
    """Write the site into out_dir (cleaning stale output) and return the sorted HTML paths."""
    out_dir = Path(out_dir)
    if n_pages is not None and n_pages < 1:
        raise ValueError("n_pages must be >= 1")
    docs = render_site(n_pages, seed)
    clean_output(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rel, text in docs.items():
        write_text(out_dir / rel, text)
    paths = sorted(docs)
    write_text(out_dir / "robots.txt", ROBOTS_TXT)
    public = [p for p in paths if not p.startswith("private/")]
    write_text(out_dir / "sitemap.xml", sitemap_xml(public, base_url))
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate the site and print a one-line summary."""
    ap = argparse.ArgumentParser(prog="python -m demo_site.generate", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/demo_site"), help="output directory")
    ap.add_argument("--pages", type=int, default=None, help="synthetic site with N pages")
    ap.add_argument("--seed", type=int, default=0, help="random seed for synthetic sites")
    ap.add_argument("--base-url", default="", help="absolute base URL for sitemap.xml locs")
    args = ap.parse_args(argv)
    paths = generate_site(args.out, args.pages, args.seed, base_url=args.base_url)
    size = sum((args.out / p).stat().st_size for p in paths)
    print(f"Wrote {len(paths)} pages ({size / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
