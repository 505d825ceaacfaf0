"""overlap.png: items crawled, documents, chunks and embeddings stored over time, per mode."""

from __future__ import annotations

import csv
from pathlib import Path

STAGES = (
    ("files", "items crawled", "tab:blue"),
    ("documents", "documents", "tab:orange"),
    ("chunks", "chunks", "tab:green"),
    ("embeddings", "embeddings", "tab:red"),
)


def read_timeline(path: Path) -> list[dict[str, float]]:
    """Rows of a ``rag run --timeline`` CSV as floats."""
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def overlap_chart(
    series: list[tuple[str, Path, str]],
    out: Path,
    title: str = "",
    crawl_alone_s: float | None = None,
) -> None:
    """One chart: each stage's count (as % of its final value) against seconds since start.

    ``series`` holds (label, timeline CSV, line style); colour is the stage. Percentages put
    items (pages) and chunks on one axis; the legend gives each final count.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6), dpi=110)
    for label, path, style in series:
        rows = read_timeline(path)
        if not rows:
            continue
        xs = [r["elapsed"] for r in rows]
        for column, stage, colour in STAGES:
            final = rows[-1][column] or 1.0
            ys = [100.0 * r[column] / final for r in rows]
            ax.plot(
                xs,
                ys,
                style,
                color=colour,
                linewidth=1.8,
                label=f"{label}: {stage} (final {int(rows[-1][column])})",
            )
        ax.axvline(xs[-1], color="grey", linestyle=style, linewidth=0.8)
    if crawl_alone_s:
        ax.axvline(crawl_alone_s, color="black", linestyle=":", linewidth=1.0)
        ax.annotate(
            f"crawl alone: {crawl_alone_s:.0f} s",
            (crawl_alone_s, 3),
            rotation=90,
            va="bottom",
            ha="right",
            fontsize=8,
        )
    ax.set_xlabel("seconds since `rag run` started")
    ax.set_ylabel("% of the run's final count")
    ax.set_ylim(0, 105)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title("Stage overlap, measured: streaming (solid) vs batch (dashed)\n" + title)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
