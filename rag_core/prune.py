"""Which stored pages a crawl shows to be gone, and the files that carry that decision.

Pruning deletes data, so it only acts on evidence a careful operator would accept:

- a crawl is *complete* only if it ran from scratch to the end (not resumed, no page limit),
  every start URL answered 2xx and no request to a stored page failed (DNS, connection,
  timeout, 5xx, 429 after retries): a site that is down proves nothing about its pages;
- a 404/410 counts as evidence of removal only if the same crawl got 2xx answers from that
  host (a host answering 404 to everything is misconfigured, not empty);
- a page merely not reached is removed only after ``after_misses`` consecutive complete
  crawls missed it;
- a plan removing more than ``max_fraction`` of the stored pages is refused unless the user
  confirmed it (``rag run --confirm-prune``).

Files in the raw folder (next to the item files, so they move with them):
``.removals.json`` the pending removal request (crawl adds, prune run clears), changed only
under ``.removals.lock``; ``.prune_misses.json`` consecutive misses per stored key;
``.prune_refused.json`` the last refused plan, for ``rag status`` and ``rag run``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rag_core.ids import item_key

REMOVALS_FILE = ".removals.json"
LOCK_FILE = ".removals.lock"
MISSES_FILE = ".prune_misses.json"
REFUSED_FILE = ".prune_refused.json"
GONE = "gone (HTTP 404/410 on re-crawl)"
UNREACHED = "no longer reached by {n} complete crawls"


@dataclass(frozen=True)
class CrawlEvidence:
    """What one crawl showed about the site (from the crawler's statistics)."""

    seen: set[str]  # item keys of every page reached with a 2xx answer
    gone_urls: list[str] = field(default_factory=list)  # 404/410
    failed_urls: list[str] = field(default_factory=list)  # DNS, connection, timeout, 5xx, 429
    ok_hosts: set[str] = field(default_factory=set)  # host:port that answered 2xx at least once
    start_failures: dict[str, str] = field(default_factory=dict)  # start URL -> why
    ran_to_end: bool = False  # finished, from scratch, without a page limit

    @classmethod
    def from_stats(cls, stats: dict, seen: set[str]) -> CrawlEvidence:
        """Evidence from the summary ``python -m crawler`` writes (see crawler/__main__.py)."""
        return cls(
            seen=seen,
            gone_urls=list(stats.get("gone_urls") or []),
            failed_urls=list(stats.get("failed_urls") or []),
            ok_hosts=set(stats.get("ok_hosts") or []),
            start_failures=dict(stats.get("start_failures") or {}),
            ran_to_end=bool(stats.get("ran_to_end")),
        )

    def gone_keys(self) -> set[str]:
        """Keys of 404/410 pages on hosts that otherwise answered: real evidence of removal."""
        return {item_key(u) for u in self.gone_urls if _host(u) in self.ok_hosts}

    def complete(self, stored: set[str]) -> bool:
        """Whether not reaching a stored page means something (see the module docstring)."""
        failed = {item_key(u) for u in self.failed_urls}
        return self.ran_to_end and not self.start_failures and not failed & stored


@dataclass(frozen=True)
class PrunePlan:
    """The outcome of comparing one crawl with the stored pages."""

    removals: dict[str, str]  # key -> reason; empty when refused
    misses: dict[str, int]  # consecutive complete crawls that missed each stored key
    complete: bool
    refused: dict | None = None  # the refused plan (for .prune_refused.json), if any


def plan_prune(
    stored: set[str],
    evidence: CrawlEvidence,
    misses: dict[str, int],
    after_misses: int = 2,
    max_fraction: float = 0.2,
    confirmed: bool = False,
) -> PrunePlan:
    """Stored keys to remove after this crawl, the updated miss counts, and any refusal."""
    complete = evidence.complete(stored)
    gone = evidence.gone_keys() & stored
    # A page reached again starts over; an incomplete crawl neither adds nor clears a miss
    # for the pages it did not reach (it proves nothing about them).
    kept = {k: n for k, n in misses.items() if k in stored and k not in evidence.seen}
    if complete:
        new_misses = {k: kept.get(k, 0) + 1 for k in stored - evidence.seen - gone}
    else:
        new_misses = {k: n for k, n in kept.items() if k not in gone}
    plan = {key: GONE for key in sorted(gone)}
    if complete:
        reason = UNREACHED.format(n=after_misses)
        plan.update({k: reason for k, n in sorted(new_misses.items()) if n >= after_misses})
    if plan and not confirmed and len(plan) > max_fraction * len(stored):
        refused = {
            "at": time.time(),
            "would_remove": len(plan),
            "stored": len(stored),
            "max_fraction": max_fraction,
            "keys": plan,
        }
        return PrunePlan({}, new_misses, complete, refused)
    return PrunePlan(plan, {k: n for k, n in new_misses.items() if k not in plan}, complete)


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


# -- files ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (temp file + rename): readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _removals_locked(raw_dir: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of the removal request.

    The crawl (adding) and the prune run (clearing) are separate processes; without the lock
    one's write could drop a key the other just added, or bring back one just handled.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    with open(raw_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_removals(raw_dir: Path) -> dict[str, str]:
    """The pending removal request (empty when there is none)."""
    return {str(k): str(v) for k, v in _read_json(raw_dir / REMOVALS_FILE).items()}


def _write_removals(raw_dir: Path, plan: dict[str, str]) -> None:
    if plan:
        _write_json(raw_dir / REMOVALS_FILE, plan)
    else:
        (raw_dir / REMOVALS_FILE).unlink(missing_ok=True)


def add_removals(raw_dir: Path, plan: dict[str, str]) -> None:
    """Merge ``plan`` into the pending request (under the lock; atomic for readers)."""
    if not plan:
        return
    with _removals_locked(raw_dir):
        _write_removals(raw_dir, read_removals(raw_dir) | plan)


def withdraw_removals(raw_dir: Path, keys: Iterable[str]) -> None:
    """Drop ``keys`` from the pending request: the crawl reached those pages again."""
    keys = set(keys)
    with _removals_locked(raw_dir):
        pending = read_removals(raw_dir)
        if keys & set(pending):
            _write_removals(raw_dir, {k: v for k, v in pending.items() if k not in keys})


def clear_removals(raw_dir: Path, done: dict[str, str]) -> None:
    """Drop the handled requests; a key requested again meanwhile (other reason) stays."""
    with _removals_locked(raw_dir):
        pending = read_removals(raw_dir)
        _write_removals(raw_dir, {k: v for k, v in pending.items() if done.get(k) != v})


def read_misses(raw_dir: Path) -> dict[str, int]:
    """Consecutive complete crawls that missed each stored key."""
    return {str(k): int(v) for k, v in _read_json(raw_dir / MISSES_FILE).items()}


def write_misses(raw_dir: Path, misses: dict[str, int]) -> None:
    """Replace the miss counts (only the crawl writes them; one crawl runs at a time)."""
    _write_json(raw_dir / MISSES_FILE, misses)


def read_refusal(raw_dir: Path) -> dict | None:
    """The last refused prune plan, or None."""
    return _read_json(raw_dir / REFUSED_FILE) or None


def write_refusal(raw_dir: Path, refused: dict | None) -> None:
    """Record a refused plan, or clear the record (None) after a crawl that was not refused."""
    if refused:
        _write_json(raw_dir / REFUSED_FILE, refused)
    else:
        (raw_dir / REFUSED_FILE).unlink(missing_ok=True)


def describe_refusal(refused: dict) -> str:
    """One sentence for the CLI and the run's metadata."""
    return (
        f"prune refused: it would remove {refused['would_remove']} of {refused['stored']} "
        f"stored pages (more than PRUNE_MAX_FRACTION={refused['max_fraction']}); if the site "
        "really lost them, confirm with `rag run --confirm-prune`"
    )
