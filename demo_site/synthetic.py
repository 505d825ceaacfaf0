"""Synthetic documentation sites of exactly N pages for benchmarks, composed from templates."""

from __future__ import annotations

import math
import posixpath
import random
import re
from dataclasses import dataclass

from demo_site.layout import NavLink, render_page
from demo_site.markup import to_html

# Links into this folder are the deliberate broken links of a synthetic site.
BROKEN_PREFIX = "docs/removed/"
MAX_SECTIONS = 20

PRODUCTS = ("Lumen", "Corvid", "Tessel", "Quarry", "Halyard", "Nimbus", "Bramble", "Kestrel")

# Section topics with their own nouns so that pages within a section share a vocabulary.
TOPICS: dict[str, list[str]] = {
    "Connectors": ["connector", "endpoint", "credential", "driver", "source", "handshake"],
    "Storage": ["bucket", "volume", "replica", "snapshot", "segment", "tablespace"],
    "Scheduling": ["schedule", "trigger", "calendar", "window", "cron expression", "deadline"],
    "Security": ["certificate", "token", "role", "permission", "audit log", "key"],
    "Networking": ["proxy", "socket", "port", "route", "load balancer", "timeout"],
    "Monitoring": ["metric", "dashboard", "alert", "probe", "histogram", "threshold"],
    "Transformations": ["mapping", "expression", "column", "aggregate", "join", "filter"],
    "Deployment": ["cluster", "container", "release", "rollout", "manifest", "node"],
    "Caching": ["cache entry", "eviction policy", "warm-up", "hit ratio", "namespace", "ttl"],
    "Queues": ["message", "consumer", "partition", "offset", "dead-letter queue", "producer"],
    "Search": ["index", "analyzer", "query", "ranking", "synonym", "shard"],
    "Billing": ["invoice", "plan", "quota", "usage report", "discount", "meter"],
    "Identity": ["user", "group", "session", "identity provider", "claim", "directory"],
    "Backups": ["backup", "restore point", "archive", "retention rule", "checksum", "vault"],
    "Workflows": ["workflow", "task", "dependency", "branch", "retry policy", "checkpoint"],
    "Plugins": ["plugin", "hook", "extension", "manifest file", "sandbox", "registry"],
    "Schemas": ["schema", "field", "migration", "constraint", "version", "type"],
    "Logging": ["log line", "logger", "sink", "formatter", "log level", "rotation"],
    "Performance": ["benchmark", "thread pool", "batch", "latency", "throughput", "profile"],
    "Data quality": ["expectation", "validator", "anomaly", "sample", "rule", "report"],
}

NOUNS = (
    "pipeline worker job run setting option file directory record row table database request "
    "response client server service process thread resource limit value parameter variable "
    "environment profile project package module library function class method interface error "
    "warning exception status event handler callback payload header field attribute document "
    "page feature version release upgrade change operator administrator team account workspace "
    "tenant region zone host instance agent controller scheduler queue stream buffer channel "
    "connection pool session transaction lock cursor batch output input artifact template"
).split()

VERBS = (
    "configure validate cache replicate schedule compress index partition encrypt monitor "
    "export import deploy retry merge load transform filter archive rotate refresh restore "
    "migrate tune inspect register publish resolve throttle batch flush stream verify "
    "authenticate serialize aggregate upgrade provision annotate query buffer collect enable "
    "disable prune isolate"
).split()

ADJECTIVES = (
    "default custom incremental remote local shared dedicated temporary persistent "
    "asynchronous synchronous optional required external internal secondary primary stale "
    "healthy degraded idle active large small slow fast secure encrypted compressed nested "
    "global regional isolated experimental stable deprecated legacy new existing partial "
    "complete consistent transient permanent automatic manual recommended"
).split()

ADVERBS = (
    "automatically explicitly safely quickly gradually periodically immediately eventually "
    "carefully independently transparently manually reliably incrementally"
).split()

PROBLEMS = (
    "timeouts",
    "slow startup",
    "memory growth",
    "stale data",
    "failed upgrades",
    "permission errors",
    "duplicate events",
    "connection resets",
)

# Markers: <n> noun, <ns> plural noun, <an> noun with article, <v> verb, <vs> 3rd person,
# <ving> gerund, <ved> participle, <a> adjective, <adv> adverb, <P> product, <num> number.
SENTENCES = (
    "When <an> is <a>, <P> <vs> the <n> before it reaches the <n>.",
    "By default, <P> <vs> every <n> <adv>, which keeps <ns> <a> even under load.",
    "You can <v> <ns> from the command line or from the <a> <n> settings.",
    "Most teams <v> their <ns> once and rarely change the <n> afterwards.",
    "If the <n> is not <a>, the <n> <vs> and reports a warning in the log.",
    "The <n> is <ved> <adv>, so you do not need to <v> it yourself.",
    "<ving> <ns> is the recommended way to keep <a> <ns> predictable.",
    "Each <n> has its own <n>, and <ns> are never shared between <ns>.",
    "This makes it easier to <v> <a> <ns> without touching the <n>.",
    "Note that <ving> <an> can take several minutes on large <ns>.",
    "To <v> <an>, open the <n> settings and select the <a> <n> option.",
    "<P> keeps at most <num> <ns> per <n> unless you raise the limit.",
    "A <a> <n> usually means that the <n> was not <ved> correctly.",
    "In practice, <ving> the <n> first avoids most problems with <a> <ns>.",
    "The <n> and the <n> are <ved> together, in a single transaction.",
    "Use <a> <ns> when you need to <v> data across several <ns>.",
    "After an upgrade, <P> <vs> existing <ns> and <vs> any <a> <ns> it finds.",
    "Administrators can <v> the <n> for a whole workspace or for one <n> at a time.",
    "<a> <ns> are <ved> every <num> seconds by a background <n>.",
    "If you <v> <an> by mistake, you can <v> it again from the last <n>.",
    "Avoid <ving> <ns> in a tight loop; <ving> them in batches of <num> is much faster.",
    "The <n> reports how many <ns> were <ved> and how long each <n> took.",
    "Because <ns> are <a>, <P> can <v> them in parallel without extra locking.",
    "Older releases required you to <v> the <n> <adv>; this is no longer necessary.",
    "For <a> workloads we recommend <ving> the <n> at least once per <n>.",
    "Whether you should <v> <ns> depends on how often the <n> changes.",
    "Errors raised while <ving> <an> are retried up to <num> times.",
    "The <a> <n> is <ved> when the <n> starts and <ved> again when it stops.",
    "Remember that <ns> are <ved> in the order in which they were <ved>.",
    "Once the <n> is <ved>, every <n> in the workspace can use it.",
)

HEADINGS = (
    "Overview",
    "How <n> works",
    "Configuring <ns>",
    "Before you begin",
    "Limitations",
    "Examples",
    "<ving> <ns>",
    "Working with <a> <ns>",
    "Performance considerations",
    "Security notes",
    "Common mistakes",
    "Choosing <an>",
    "Migrating <ns>",
    "Best practices",
    "Monitoring <ns>",
    "Reference",
    "Advanced usage",
    "Frequently asked questions",
)

TITLE_TEMPLATES = (
    "How to <v> <ns>",
    "<ving> <a> <ns>",
    "Understanding <ns>",
    "<N> reference",
    "Troubleshooting <n> <problem>",
    "Getting started with <ns>",
    "<N> and <n> basics",
    "Managing <a> <ns>",
    "Best practices for <ns>",
    "Tutorial: <ving> <ns>",
)

_TOKEN = re.compile(r"<(n|ns|an|N|v|vs|ving|ved|a|adv|P|num|problem)>")


def _plural(noun: str) -> str:
    """Naive English plural of the last word, good enough for the fixed vocabulary."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _third(verb: str) -> str:
    """Third-person singular present of a regular verb."""
    return _plural(verb)


def _gerund(verb: str) -> str:
    """Present participle of a regular verb (vocabulary avoids consonant doubling)."""
    return verb[:-1] + "ing" if verb.endswith("e") and not verb.endswith("ee") else verb + "ing"


def _past(verb: str) -> str:
    """Past participle of a regular verb."""
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def _compile(template: str) -> list[str | tuple[str]]:
    """Split a template into literal strings and 1-tuples naming a slot, once at import."""
    parts: list[str | tuple[str]] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        parts.append((m.group(1),))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


_SENTENCES = [_compile(t) for t in SENTENCES]
_HEADINGS = [_compile(t) for t in HEADINGS]
_TITLES = [_compile(t) for t in TITLE_TEMPLATES]
_VERB_FORMS = {v: (v, _third(v), _gerund(v), _past(v)) for v in VERBS}


class Composer:
    """Fills templates with words drawn from a page-specific vocabulary."""

    def __init__(self, rng: random.Random, product: str, topic_nouns: list[str]):
        """Bias the noun pool towards the section topic so pages read as being about it."""
        self.rng = rng
        self.product = product
        self.nouns = topic_nouns * 3 + rng.sample(NOUNS, 18)

    def word(self, slot: str) -> str:
        """Produce one word (or short phrase) for a template slot."""
        r = self.rng
        if slot in ("n", "ns", "an", "N"):
            n = r.choice(self.nouns)
            if slot == "ns":
                return _plural(n)
            if slot == "an":
                return ("an " if n[0] in "aeiou" else "a ") + n
            return n.capitalize() if slot == "N" else n
        if slot in ("v", "vs", "ving", "ved"):
            forms = _VERB_FORMS[r.choice(VERBS)]
            return forms[("v", "vs", "ving", "ved").index(slot)]
        if slot == "a":
            return r.choice(ADJECTIVES)
        if slot == "adv":
            return r.choice(ADVERBS)
        if slot == "num":
            return str(r.choice((2, 3, 5, 8, 10, 16, 32, 50, 64, 100, 128, 500, 1000)))
        if slot == "problem":
            return r.choice(PROBLEMS)
        return self.product

    def fill(self, parts: list[str | tuple[str]]) -> str:
        """Render a compiled template; the first letter is capitalised like a sentence."""
        text = "".join(p if isinstance(p, str) else self.word(p[0]) for p in parts)
        return text[0].upper() + text[1:]

    def sentence(self) -> str:
        """One prose sentence."""
        return self.fill(self.rng.choice(_SENTENCES))

    def paragraph(self, n_sentences: int) -> str:
        """A paragraph of n sentences."""
        return " ".join(self.sentence() for _ in range(n_sentences))

    def heading(self) -> str:
        """A section heading."""
        return self.fill(self.rng.choice(_HEADINGS))

    def title(self) -> str:
        """A page title."""
        return self.fill(self.rng.choice(_TITLES))


def _ident(text: str) -> str:
    """Turn a noun phrase into a snake_case identifier for code samples."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _code_block(c: Composer) -> str:
    """A YAML, Python or shell sample whose indentation is significant."""
    r = c.rng
    n1, n2 = _ident(r.choice(c.nouns)), _ident(r.choice(c.nouns))
    v = r.choice(VERBS)
    prod = c.product.lower()
    kind = r.randrange(3)
    if kind == 0:
        return (
            f"```yaml\n{n1}:\n  enabled: true\n  {n2}:\n    max_items: {r.randint(2, 500)}\n"
            f"    timeout: {r.choice((5, 10, 30, 60))}s\n    mode: {r.choice(ADJECTIVES)}\n"
            f"  tags:\n    - {r.choice(ADJECTIVES)}\n    - {r.choice(ADJECTIVES)}\n```"
        )
    if kind == 1:
        cls = "".join(w.capitalize() for w in n1.split("_")) + "Client"
        return (
            f"```python\nfrom {prod} import {cls}\n\nclient = {cls}(timeout={r.randint(5, 60)})"
            f"\nfor item in client.list_{n2}s(limit={r.choice((50, 100, 500))}):\n"
            f"    if item.is_{r.choice(ADJECTIVES)}:\n        client.{v}(item)\n"
            f'    else:\n        client.skip(item, reason="{r.choice(ADJECTIVES)}")\n```'
        )
    return (
        f"```bash\n{prod} {v} {n1.replace('_', '-')} --{n2.replace('_', '-')} "
        f"{r.randint(1, 64)}\n{prod} status --format json | jq '.{n2}'\n```"
    )


def _table(c: Composer) -> str:
    """An options table with names, types, defaults and one-sentence descriptions."""
    r = c.rng
    rows = ["| Option | Type | Default | Description |", "|---|---|---|---|"]
    for _ in range(r.randint(3, 7)):
        name = f"{_ident(r.choice(c.nouns))}.{_ident(r.choice(NOUNS))}"
        typ, default = r.choice(
            (
                ("integer", str(r.randint(1, 100))),
                ("boolean", "false"),
                ("string", r.choice(ADJECTIVES)),
                ("duration", "30s"),
            )
        )
        rows.append(f"| `{name}` | {typ} | `{default}` | {c.sentence()} |")
    return "\n".join(rows)


def _list(c: Composer) -> str:
    """A bulleted or numbered list of short sentences."""
    n = c.rng.randint(3, 6)
    if c.rng.random() < 0.5:
        return "\n".join(f"- {c.sentence()}" for _ in range(n))
    return "\n".join(f"{i + 1}. {c.sentence()}" for i in range(n))


def _words(md: str) -> int:
    """Approximate word count of a Markdown fragment."""
    return md.count(" ") + 1


def page_body(c: Composer, target_words: int, links: list[tuple[str, str]]) -> str:
    """Markdown body of roughly target_words words with headings, code, tables, lists, links."""
    r = c.rng
    blocks = [c.paragraph(r.randint(2, 5))]
    words = _words(blocks[0])
    link_iter = iter(links)
    while words < target_words:
        blocks.append(f"## {c.heading()}")
        for _ in range(r.randint(1, 3)):
            para = c.paragraph(r.randint(3, 7))
            if r.random() < 0.35:
                link = next(link_iter, None)
                if link:
                    para += f" For more detail, see [{link[0]}]({link[1]})."
            blocks.append(para)
            words += _words(para)
            if words >= target_words:
                break
        extra = r.random()
        if extra < 0.45:
            blocks.append(_code_block(c))
        elif extra < 0.65:
            blocks.append(_table(c))
            words += 40
        elif extra < 0.9:
            blocks.append(_list(c))
            words += 50
        if r.random() < 0.25 and words < target_words:
            blocks.append(f"### {c.heading()}")
            para = c.paragraph(r.randint(2, 4))
            blocks.append(para)
            words += _words(para)
    return "\n\n".join(blocks)


def target_word_count(r: random.Random) -> int:
    """Long-tailed prose budget: log-normal, clipped to [40, 5000].

    The budget counts prose only; headings, tables, lists and the see-also block add about a
    third, so a median budget of 450 gives pages with a median of roughly 600 words.
    """
    return int(min(5000, max(40, r.lognormvariate(math.log(450), 0.8))))


def _slug(text: str) -> str:
    """URL slug of a title."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _rel(from_path: str, to_path: str) -> str:
    """Relative href from one page to another."""
    return posixpath.relpath(to_path, posixpath.dirname(from_path) or ".")


@dataclass(frozen=True)
class _Leaf:
    """A content page of a synthetic site."""

    index: int
    path: str
    title: str
    section: int


@dataclass(frozen=True)
class _Plan:
    """Everything about a synthetic site that pages need to link to each other."""

    product: str
    sections: list[NavLink]
    leaves: list[_Leaf]
    by_section: list[list[_Leaf]]
    broken_on: frozenset[int]


def _section_count(n_pages: int) -> int:
    """Number of section index pages: about sqrt(N)/3.5, none for tiny sites."""
    if n_pages < 6:
        return 0
    return min(MAX_SECTIONS, max(2, round(math.sqrt(n_pages) / 3.5)))


def plan_site(n_pages: int, seed: int) -> _Plan:
    """Decide product, sections, page titles/paths and which pages carry broken links."""
    rng = random.Random(f"plan:{seed}")
    product = rng.choice(PRODUCTS)
    k = _section_count(n_pages)
    topics = rng.sample(sorted(TOPICS), k)
    sections = [NavLink(t, f"/docs/{_slug(t)}/index.html") for t in topics]
    leaves: list[_Leaf] = []
    by_section: list[list[_Leaf]] = [[] for _ in range(max(k, 1))]
    for i in range(n_pages - 1 - k):
        sec = i % k if k else 0
        nouns = TOPICS[topics[sec]] if k else NOUNS
        title = Composer(random.Random(f"title:{seed}:{i}"), product, list(nouns)).title()
        folder = f"docs/{_slug(topics[sec])}/" if k else "docs/"
        leaf = _Leaf(i, f"{folder}{_slug(title)}-{i}.html", title, sec)
        leaves.append(leaf)
        by_section[sec].append(leaf)
    broken = frozenset(rng.sample(range(len(leaves)), min(2, len(leaves))))
    return _Plan(product, sections, leaves, by_section, broken)


def _chrome(plan: _Plan, title: str, section: str, trail: list[NavLink], body_md: str) -> str:
    """Render a synthetic page with the same boilerplate as the bundled site."""
    top = [NavLink("Home", "/index.html")] + plan.sections[:5]
    footer = [NavLink("Home", "/index.html"), NavLink("Sitemap", "/sitemap.xml")]
    return render_page(
        title=title,
        body_html=to_html(body_md),
        section=section,
        trail=trail,
        top_nav=top,
        sections=plan.sections,
        product=plan.product,
        footer_links=footer,
    )


def _leaf_links(plan: _Plan, leaf: _Leaf, rng: random.Random) -> list[tuple[str, str]]:
    """See-also targets: relative links within the section, absolute ones elsewhere."""
    picks = rng.sample(plan.leaves, min(4, len(plan.leaves)))
    out = []
    for other in picks:
        if other.index == leaf.index:
            continue
        same = other.section == leaf.section
        out.append((other.title, _rel(leaf.path, other.path) if same else "/" + other.path))
    return out


def _leaf_page(plan: _Plan, leaf: _Leaf, seed: int) -> str:
    """Render one content page: prose body, see-also list, previous/next pager."""
    rng = random.Random(f"page:{seed}:{leaf.index}")
    k = len(plan.sections)
    nouns = TOPICS[plan.sections[leaf.section].label] if k else NOUNS[:6]
    comp = Composer(rng, plan.product, list(nouns))
    links = _leaf_links(plan, leaf, rng)
    body = page_body(comp, target_word_count(rng), links)
    if leaf.index in plan.broken_on:
        body += (
            f"\n\nThis page replaces [an older guide](/{BROKEN_PREFIX}"
            f"{_slug(leaf.title)}.html) that covered the same topic."
        )
    if links:
        body += "\n\n## See also\n\n" + "\n".join(f"- [{t}]({h})" for t, h in links)
    siblings = plan.by_section[leaf.section]
    pos = siblings.index(leaf)
    pager = []
    for label, j in (("Previous", pos - 1), ("Next", pos + 1)):
        if 0 <= j < len(siblings):
            pager.append(f"{label}: [{siblings[j].title}]({_rel(leaf.path, siblings[j].path)})")
    if pager:
        body += "\n\n" + " | ".join(pager)
    section = plan.sections[leaf.section] if k else None
    trail = [NavLink("Home", "/index.html")] + ([section] if section else [])
    return _chrome(plan, leaf.title, section.label if section else "", trail, body)


def _section_page(plan: _Plan, sec: int, seed: int) -> str:
    """Render a section index listing every page of the section."""
    nav = plan.sections[sec]
    rng = random.Random(f"section:{seed}:{sec}")
    comp = Composer(rng, plan.product, list(TOPICS[nav.label]))
    path = nav.href.lstrip("/")
    items = "\n".join(f"- [{leaf.title}]({_rel(path, leaf.path)})" for leaf in plan.by_section[sec])
    body = f"{comp.paragraph(4)}\n\n## Pages in this section\n\n{items or comp.sentence()}"
    return _chrome(plan, nav.label, nav.label, [NavLink("Home", "/index.html")], body)


def _home_page(plan: _Plan, seed: int) -> str:
    """Render index.html linking to every section (or every page on tiny sites)."""
    comp = Composer(random.Random(f"home:{seed}"), plan.product, NOUNS[:12])
    if plan.sections:
        items = [f"- [{s.label}]({s.href.lstrip('/')}): {comp.sentence()}" for s in plan.sections]
    else:
        items = [f"- [{leaf.title}]({leaf.path})" for leaf in plan.leaves]
    body = (
        f"{comp.paragraph(3)}\n\n## Documentation sections\n\n"
        + "\n".join(items)
        + f"\n\n## About {plan.product}\n\n{comp.paragraph(3)}"
    )
    title = f"{plan.product} documentation"
    return _chrome(plan, title, "", [], body)


def synthetic_site(n_pages: int, seed: int) -> dict[str, str]:
    """Map of relative path -> HTML for a synthetic site of exactly n_pages pages."""
    plan = plan_site(n_pages, seed)
    docs = {"index.html": _home_page(plan, seed)}
    for sec, nav in enumerate(plan.sections):
        docs[nav.href.lstrip("/")] = _section_page(plan, sec, seed)
    for leaf in plan.leaves:
        docs[leaf.path] = _leaf_page(plan, leaf, seed)
    if len(docs) != n_pages:  # slugs carry the page index, so this would be a logic error
        raise AssertionError(f"generated {len(docs)} pages, expected {n_pages}")
    return docs
