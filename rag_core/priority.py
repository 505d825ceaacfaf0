"""Priority of pages: URL rules (PRIORITY_RULES), sitemap ``<priority>``, and the order of
waiting items. Pure functions, plus the small priority log the crawl writes and the sensor reads.

Format of ``PRIORITY_RULES``: comma-separated ``PATTERN=PRIORITY`` pairs, e.g.
``/docs/getting-started/*=50, /blog/*=-20, https://status.example.com/*=80``.

- PATTERN is a shell-style glob (``*``, ``?``, ``[...]``). A pattern that contains ``://``
  is matched against the whole canonical URL, any other against the URL's path (with the
  query, if any); a path pattern must start with ``/``.
- PRIORITY is a whole number from -100 to 100; higher is fetched and ingested first; pages
  no rule matches have priority 0 (or their sitemap's priority).
- Rules are tried in the order written; the first match wins (like robots.txt groups).

A sitemap ``<priority>`` (0.0 to 1.0, default 0.5) maps linearly onto -100..100, so 0.5 is
the neutral 0. A matching rule wins over the sitemap: the user's word is the last word.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MIN_PRIORITY = -100
MAX_PRIORITY = 100
# Written beside the item files (the name does not match the item pattern, so every
# listing of item files skips it). Only pages with a non-zero priority get a line, so a
# site without rules or sitemap priorities costs nothing.
PRIORITY_LOG = "priorities.log"


class PriorityRulesError(ValueError):
    """A PRIORITY_RULES value that cannot be parsed; the message says which part and why."""


@dataclass(frozen=True)
class Rule:
    """One ``PATTERN=PRIORITY`` pair."""

    pattern: str
    priority: int
    regex: re.Pattern[str]
    whole_url: bool

    def matches(self, url: str) -> bool:
        if self.whole_url:
            return bool(self.regex.match(url))
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return bool(self.regex.match(target))


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Parse PRIORITY_RULES; raise PriorityRulesError naming the bad pair."""
    rules = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        pattern, sep, number = part.rpartition("=")
        pattern, number = pattern.strip(), number.strip()
        if not sep or not pattern:
            raise PriorityRulesError(f"{part!r} is not PATTERN=PRIORITY")
        try:
            priority = int(number)
        except ValueError:
            raise PriorityRulesError(f"{part!r}: {number!r} is not a whole number") from None
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise PriorityRulesError(
                f"{part!r}: priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}"
            )
        whole_url = "://" in pattern
        if not whole_url and not pattern.startswith(("/", "*")):
            raise PriorityRulesError(f"{part!r}: a path pattern starts with '/' (or '*')")
        rules.append(Rule(pattern, priority, re.compile(fnmatch.translate(pattern)), whole_url))
    return tuple(rules)


def rule_priority(rules: Sequence[Rule], url: str) -> int | None:
    """Priority of the first rule matching ``url``, or None when none matches."""
    for rule in rules:
        if rule.matches(url):
            return rule.priority
    return None


def sitemap_priority(value: str | float | None) -> int | None:
    """A sitemap ``<priority>`` (0.0-1.0) on the -100..100 scale; None if absent or invalid."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not 0.0 <= number <= 1.0:
        return None
    return round(number * 200) - 100


def page_priority(rules: Sequence[Rule], url: str, from_sitemap: int | None = None) -> int:
    """The priority of one page: its first matching rule, else its sitemap priority, else 0."""
    by_rule = rule_priority(rules, url)
    if by_rule is not None:
        return by_rule
    return from_sitemap if from_sitemap is not None else 0


def order_waiting(keys: Sequence[str], priorities: Mapping[str, int]) -> list[str]:
    """``keys`` highest priority first; equal priorities keep their order (arrival)."""
    return sorted(keys, key=lambda key: -priorities.get(key, 0))


def first_tier(keys: Sequence[str], priorities: Mapping[str, int]) -> list[str]:
    """The keys of the highest priority present, in their given order.

    A run processes its items stage by stage, so a high-priority page in a run with many
    low-priority ones gets its vector no sooner than they do: each priority level present
    goes in a run of its own, highest first (one run per level, so a few levels cost a few
    run start-ups, not one per page).
    """
    if not keys:
        return []
    top = max(priorities.get(key, 0) for key in keys)
    return [key for key in keys if priorities.get(key, 0) == top]


def run_priority(keys: Iterable[str], priorities: Mapping[str, int]) -> int:
    """The value of the run's ``dagster/priority`` tag: the highest priority of its items."""
    return max((priorities.get(key, 0) for key in keys), default=0)


# -- the priority log: the crawl appends, the sensor reads -------------------------------------


def append_priority(raw_dir: Path, key: str, priority: int) -> None:
    """Record ``key``'s priority (the last line for a key wins); lines are appended whole."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    # One short write per line with O_APPEND: a reader never sees half a line from this.
    fd = os.open(raw_dir / PRIORITY_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{key} {priority}\n".encode())
    finally:
        os.close(fd)


_CACHE: dict[Path, tuple[int, int, dict[str, int]]] = {}


def read_priorities(raw_dir: Path) -> dict[str, int]:
    """Every recorded priority (key -> priority). Incremental: a long-lived process (the
    sensor's code server) reads only the lines appended since its last call."""
    path = raw_dir / PRIORITY_LOG
    try:
        stat = path.stat()
    except FileNotFoundError:
        _CACHE.pop(path, None)
        return {}
    inode, offset, known = _CACHE.get(path, (stat.st_ino, 0, {}))
    if inode != stat.st_ino or stat.st_size < offset:  # replaced or truncated: start over
        offset, known = 0, {}
    known = dict(known)
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data.rfind(b"\n") + 1  # a line still being written is read next time
    for line in data[:complete].decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        try:
            known[key] = int(value)
        except ValueError:
            continue
    _CACHE[path] = (stat.st_ino, offset + complete, known)
    return known
