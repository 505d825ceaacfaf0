"""Which stored pages a crawl shows to be gone, and the request file that carries them."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REMOVALS_FILE = ".removals.json"
GONE = "gone (HTTP 404/410 on re-crawl)"
UNREACHED = "no longer reached by a full crawl"


def removal_plan(
    stored: set[str], seen: set[str], gone: set[str], complete: bool
) -> dict[str, str]:
    """Stored item keys to remove, with the reason.

    A 404/410 is explicit evidence and counts in any crawl. A page merely not reached counts
    only after a complete crawl (from scratch, not resumed, no page limit, finished): a
    partial crawl must not delete anything.
    """
    plan = {key: GONE for key in sorted(stored & gone)}
    if complete:
        plan.update({key: UNREACHED for key in sorted(stored - seen - gone)})
    return plan


def read_removals(raw_dir: Path) -> dict[str, str]:
    """The pending removal request (empty when there is none)."""
    path = raw_dir / REMOVALS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def add_removals(raw_dir: Path, plan: dict[str, str]) -> None:
    """Merge ``plan`` into the pending request (atomically: the sensor reads it any time)."""
    if not plan:
        return
    merged = read_removals(raw_dir) | plan
    raw_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=raw_dir)
    with os.fdopen(fd, "w") as handle:
        json.dump(merged, handle, sort_keys=True)
    os.replace(tmp, raw_dir / REMOVALS_FILE)


def clear_removals(raw_dir: Path, done: set[str]) -> None:
    """Drop the handled keys from the request; delete the file once it is empty."""
    left = {k: v for k, v in read_removals(raw_dir).items() if k not in done}
    (raw_dir / REMOVALS_FILE).unlink(missing_ok=True)
    add_removals(raw_dir, left)
