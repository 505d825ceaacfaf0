"""Heading-aware, token-bounded chunking of the markdown-like text made by extraction.

Only ``tokenizers`` is needed (no torch): the tokenizer is the embedding model's own
``tokenizer.json``, so token counts here are the counts the model will see.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer

DEFAULT_MAX_SEQ_LENGTH = 512
MIN_MAX_TOKENS = 16

_HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(\S.*?)\s*$")
_FENCE_OPEN_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SENTENCE_ENDS = ".!?;:。！？；"
_CJK_ENDS = "。！？；"
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;:。！？；])\s+(?=\S)|(?<=[。！？；])(?=\S)")
# A section whose whole chunk is at most this fraction of max_tokens counts as tiny, and may
# share a chunk with its tiny neighbours instead of making a near-empty chunk of its own.
_TINY_DIVISOR = 4


class TokenCounter(Protocol):
    """What chunking needs from a tokenizer: counts and token character offsets, and how
    many tokens the model reads (``max_seq_length``, special tokens included). The embedder
    provides it (rag_core.embedders.base.Embedder.tokenizer)."""

    max_seq_length: int
    special_tokens: int

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` without special tokens."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (no special tokens)."""
        ...


class ModelTokenizer:
    """A sentence-transformers model's tokenizer, loaded with ``tokenizers`` only."""

    def __init__(self, tokenizer: Tokenizer, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH):
        """Wrap ``tokenizer``; truncation and padding are switched off so counts are true."""
        # tokenizer.json files often ship with truncation (MiniLM: 128) and fixed padding,
        # which would silently cap counts and pad offsets.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.special_tokens = len(tokenizer.encode("", add_special_tokens=True).ids)

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelTokenizer:
        """Load ``tokenizer.json`` and ``max_seq_length`` (sentence_bert_config.json) from a dir."""
        model_dir = Path(path)
        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in model directory {model_dir}")
        max_seq_length = DEFAULT_MAX_SEQ_LENGTH
        config_file = model_dir / "sentence_bert_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            max_seq_length = int(config.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)
        return cls(Tokenizer.from_file(str(tokenizer_file)), max_seq_length)

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` without special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (no special tokens)."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


@dataclass(frozen=True)
class Chunk:
    """One embeddable piece of a document."""

    index: int
    text: str
    heading: str
    token_count: int


def max_chunk_tokens(tokenizer: TokenCounter, requested: int) -> int:
    """The largest chunk size the model sees whole: ``requested`` capped by its sequence length."""
    return min(requested, tokenizer.max_seq_length - tokenizer.special_tokens)


def chunk_document(
    text: str,
    tokenizer: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
    title: str = "",
    context_header: bool = False,
    min_tokens: int | None = None,
) -> list[Chunk]:
    """Split extracted text into heading-aware chunks of at most ``max_tokens`` tokens each.

    Sections start at heading lines (outside code fences); each chunk starts with its
    section's nearest heading line and carries the heading path (``"A > B"``); text before the
    first heading gets ``title`` as its heading. Chunks after the first in a section begin
    with up to ``overlap_tokens`` tokens from the end of the previous one. Every returned chunk
    satisfies ``tokenizer.count(chunk.text) <= max_tokens``.

    ``context_header``: each chunk opens with its page title and full heading path
    (``Title > Section > Subsection``) instead of its own heading line only, so the text that
    is embedded and keyword-indexed says which page and section it comes from.
    ``min_tokens``: consecutive one-chunk sections of at most this many tokens share a chunk
    (default: a quarter of ``max_tokens``; 0 never merges).
    """
    _validate(max_tokens, overlap_tokens)
    if not text or not text.strip():
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    ctx = _Context(text, tokenizer, max_tokens, overlap_tokens)
    ctx.header_title = title.strip() if context_header else None
    sections = _sections(text, title)
    drafts: list[_Draft] = []
    for section in sections:
        drafts.extend(ctx.chunk_section(section))
    tiny = max(max_tokens // _TINY_DIVISOR, 1) if min_tokens is None else min_tokens
    drafts = _merge_tiny(drafts, max_tokens, tiny)
    chunks: list[Chunk] = []
    for draft in drafts:
        for piece_text, tokens in _enforce_limit(draft.text, tokenizer, max_tokens):
            chunks.append(Chunk(len(chunks), piece_text, draft.heading, tokens))
    return chunks


def _validate(max_tokens: object, overlap_tokens: object) -> None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise ValueError(f"max_tokens must be an int, got {max_tokens!r}")
    if not isinstance(overlap_tokens, int) or isinstance(overlap_tokens, bool):
        raise ValueError(f"overlap_tokens must be an int, got {overlap_tokens!r}")
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be >= {MIN_MAX_TOKENS}, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError(
            f"overlap_tokens must be >= 0 and < max_tokens // 2 ({max_tokens // 2}), "
            f"got {overlap_tokens}"
        )


# --- structure -------------------------------------------------------------------------


@dataclass
class _Block:
    """A paragraph, list group, table or fenced code block: a span of the text."""

    start: int
    end: int
    fence: str = ""  # opening fence marker ("```" or "~~~~") for a code block
    lines: list[tuple[int, int]] = field(default_factory=list)  # spans of all its lines


@dataclass
class _Section:
    path: list[str]
    heading_span: tuple[int, int] | None
    blocks: list[_Block]


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _sections(text: str, title: str) -> list[_Section]:
    """Split text into sections at heading lines, and each section into blocks."""
    sections = [
        _Section(path=[title.strip()] if title.strip() else [], heading_span=None, blocks=[])
    ]
    stack: list[tuple[int, str]] = []
    current: list[tuple[int, int]] = []  # lines of the open paragraph block
    code: _Block | None = None
    close_re: re.Pattern[str] | None = None

    def close_text_block() -> None:
        if current:
            sections[-1].blocks.append(_Block(current[0][0], current[-1][1], lines=list(current)))
            current.clear()

    for start, end in _line_spans(text):
        line = text[start:end]
        if code is not None:
            code.lines.append((start, end))
            code.end = end
            if close_re is not None and close_re.match(line):
                code = None
            continue
        opened = _FENCE_OPEN_RE.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            close_text_block()
            marker = opened.group(1)
            close_re = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            code = _Block(start, end, fence=marker, lines=[(start, end)])
            sections[-1].blocks.append(code)
            continue
        heading = _HEADING_RE.match(line)
        if heading:
            close_text_block()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            sections.append(_Section([h for _, h in stack], (start, end), []))
            continue
        if line.strip():
            current.append((start, end))
        else:
            close_text_block()
    close_text_block()
    with_content = [s for s in sections if s.blocks]
    if with_content:
        # Heading-only sections add nothing a reader needs: their text lives on in the heading
        # paths of the sections below them.
        return with_content
    # Only headings: keep them as plain content so the text still yields chunks.
    blocks = [
        _Block(s.heading_span[0], s.heading_span[1], lines=[s.heading_span])
        for s in sections
        if s.heading_span
    ]
    return [_Section(path=sections[0].path, heading_span=None, blocks=blocks)]


# --- packing ---------------------------------------------------------------------------


@dataclass
class _Piece:
    """A unit of packing: a span of the text, or one part of a split code block."""

    text: str
    tokens: int
    joiner: str  # separator placed before it when it follows another piece in a chunk
    span: tuple[int, int] | None = None  # source span, for overlap (None: no overlap source)
    code_id: int = -1  # which code block a code part belongs to
    code_head: str = ""  # opening fence line of a code part
    code_tail: str = ""  # closing fence of a code part
    code_lines: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Draft:
    text: str
    heading: str
    path: list[str]
    tokens: int
    single: bool  # the whole section fits in this one chunk
    merged: bool = False  # already holds several tiny sections


class _Context:
    """Shared state of one chunk_document call: the text and its one tokenisation."""

    def __init__(self, text: str, tokenizer: TokenCounter, max_tokens: int, overlap: int):
        self.text = text
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap = overlap
        # Tokenise once; any span's count is then two bisections. Exact for tokenizers that
        # split at whitespace (WordPiece, BPE with whitespace pre-tokenizers); the final check
        # in _enforce_limit keeps the guarantee for any other tokenizer.
        self.starts = sorted(start for start, _ in tokenizer.offsets(text))
        self.header_title: str | None = None  # set: chunks open with title > heading path

    def count(self, start: int, end: int) -> int:
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def token_starts(self, start: int, end: int) -> list[int]:
        lo = bisect.bisect_left(self.starts, start)
        hi = bisect.bisect_left(self.starts, end)
        return self.starts[lo:hi]

    # -- sections ----------------------------------------------------------------------
    def chunk_section(self, section: _Section) -> list[_Draft]:
        heading_line, head_tokens = self.heading_prefix(section)
        budget = self.max_tokens - head_tokens
        pieces: list[_Piece] = []
        for block_id, block in enumerate(section.blocks):
            pieces.extend(self.block_pieces(block, block_id, budget))
        groups = self.pack(pieces, budget)
        heading = " > ".join(section.path)
        drafts = []
        for group in groups:
            body = _render(group)
            text = f"{heading_line}\n\n{body}" if heading_line else body
            tokens = head_tokens + sum(p.tokens for p in group)
            drafts.append(_Draft(text.strip(), heading, section.path, tokens, len(groups) == 1))
        return [d for d in drafts if d.text]

    def heading_prefix(self, section: _Section) -> tuple[str, int]:
        """The section's heading line, cut to a quarter of max_tokens so content has room."""
        if self.header_title is not None:
            return self.context_prefix(section)
        if section.heading_span is None:
            return "", 0
        start, end = section.heading_span
        limit = self.max_tokens // 4
        starts = self.token_starts(start, end)
        if len(starts) > limit:
            end = starts[limit]
        line = self.text[start:end].rstrip()
        return line, self.count(start, start + len(line))

    def context_prefix(self, section: _Section) -> tuple[str, int]:
        """``Title > Section > Subsection``, cut to a quarter of max_tokens."""
        path = list(section.path)
        title = self.header_title or ""
        if title and (not path or path[0] != title):
            path.insert(0, title)
        line = " > ".join(p for p in path if p)
        if not line:
            return "", 0
        offsets = self.tokenizer.offsets(line)
        limit = self.max_tokens // 4
        if len(offsets) > limit:
            line = line[: offsets[limit][0]].rstrip()
        return line, self.tokenizer.count(line)

    # -- blocks ------------------------------------------------------------------------
    def block_pieces(self, block: _Block, block_id: int, budget: int) -> list[_Piece]:
        tokens = self.count(block.start, block.end)
        if tokens <= budget:
            return [
                _Piece(self.text[block.start : block.end], tokens, "\n\n", (block.start, block.end))
            ]
        if block.fence:
            parts = self.code_pieces(block, block_id, budget)
            if parts:
                return parts
        pieces = self.split_lines(block.lines, budget)
        if pieces:
            pieces[0].joiner = "\n\n"
        return pieces

    def span_piece(self, start: int, end: int, joiner: str) -> _Piece | None:
        """A piece for a span, trimmed of surrounding whitespace; None when blank."""
        raw = self.text[start:end]
        stripped = raw.strip()
        if not stripped:
            return None
        start += len(raw) - len(raw.lstrip())
        end = start + len(stripped)
        return _Piece(stripped, self.count(start, end), joiner, (start, end))

    def split_lines(self, lines: Sequence[tuple[int, int]], budget: int) -> list[_Piece]:
        """One piece per line; lines over ``budget`` are split into sentences.

        Pieces stay small so the packer can fill chunks and still leave room for overlap.
        """
        out: list[_Piece] = []
        for start, end in lines:
            if self.count(start, end) > budget:
                out.extend(self.split_sentences(start, end, budget))
                continue
            piece = self.span_piece(start, end, "\n")
            if piece:
                out.append(piece)
        return out

    def split_sentences(self, start: int, end: int, budget: int) -> list[_Piece]:
        """One piece per sentence of an over-long line; over-long sentences by tokens."""
        bounds = [start]
        bounds.extend(m.end() for m in _SENTENCE_END_RE.finditer(self.text, start, end))
        bounds.append(end)
        out: list[_Piece] = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            if self.count(a, b) > budget:
                out.extend(self.split_tokens(a, b, budget))
                continue
            piece = self.span_piece(a, b, " ")
            if piece:
                out.append(piece)
        if out:
            out[0].joiner = "\n"
        return out

    def split_tokens(self, start: int, end: int, budget: int) -> list[_Piece]:
        """Last resort: windows of ``budget`` tokens, cut at a word start when one is near."""
        starts = self.token_starts(start, end)
        out: list[_Piece] = []
        i = 0
        cut_from = start
        while i < len(starts):
            j = i + budget
            if j >= len(starts):
                cut_to = end
            else:
                # Prefer a cut the tokenizer's pre-tokenizer also makes (a word or punctuation
                # edge): a cut inside a word re-tokenises differently, often into more tokens.
                k = j
                while k > i + budget // 2 and not self.clean_cut(starts[k]):
                    k -= 1
                if k > i + budget // 2:
                    j = k
                cut_to = starts[j]
            joiner = " " if cut_from == start or self.text[cut_from - 1].isspace() else ""
            # A cut inside a word re-joins without a space so the word reads whole again.
            piece = self.span_piece(cut_from, cut_to, joiner)
            if piece:
                out.append(piece)
            cut_from = cut_to
            i = j
        return out

    def clean_cut(self, pos: int) -> bool:
        before, after = self.text[pos - 1], self.text[pos]
        return not before.isalnum() or not after.isalnum() or _is_cjk(before) or _is_cjk(after)

    def code_pieces(self, block: _Block, block_id: int, budget: int) -> list[_Piece]:
        """Split a fenced block into parts that each re-open and close the fence."""
        first = block.lines[0]
        head = self.text[first[0] : first[1]].strip()
        marker = block.fence
        inner = block.lines[1:]
        last_line = self.text[inner[-1][0] : inner[-1][1]] if inner else ""
        if inner and last_line.strip().startswith(marker[0] * len(marker)):
            inner = inner[:-1]  # the closing fence line
        fence_tokens = self.count(first[0], first[1]) + self.tokenizer.count(marker)
        inner_budget = budget - fence_tokens
        if inner_budget < 4 or not inner:
            return []  # too tight for fences: the caller splits it as plain lines
        if inner_budget - self.overlap >= max(4, inner_budget // 2):
            # Parts are packed whole, so leave room in each for the overlap lines it opens with.
            inner_budget -= self.overlap
        parts: list[_Piece] = []
        run: list[tuple[int, int]] = []
        run_tokens = 0

        def emit() -> None:
            if run:
                parts.append(self.code_part(run, run_tokens, head, marker, block_id, fence_tokens))

        for start, end in inner:
            tokens = self.count(start, end)
            if tokens > inner_budget:
                emit()
                run, run_tokens = [], 0
                for piece in self.split_tokens(start, end, inner_budget):
                    assert piece.span is not None
                    parts.append(
                        self.code_part(
                            [piece.span], piece.tokens, head, marker, block_id, fence_tokens
                        )
                    )
                continue
            if run and run_tokens + tokens > inner_budget:
                emit()
                run, run_tokens = [], 0
            run.append((start, end))
            run_tokens += tokens
        emit()
        for i, part in enumerate(parts):
            part.joiner = "\n\n" if i == 0 else "\n"
        return parts

    def code_part(
        self,
        lines: list[tuple[int, int]],
        tokens: int,
        head: str,
        marker: str,
        block_id: int,
        fence_tokens: int,
    ) -> _Piece:
        body = "\n".join(self.text[a:b] for a, b in lines)
        return _Piece(
            f"{head}\n{body}\n{marker}",
            tokens + fence_tokens,
            "\n",
            None,
            block_id,
            head,
            marker,
            list(lines),
        )

    # -- packing -----------------------------------------------------------------------
    def pack(self, pieces: list[_Piece], budget: int) -> list[list[_Piece]]:
        """Greedy packing; each new chunk opens with overlap from the previous one."""
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        used = 0
        for piece in pieces:
            if current and used + piece.tokens <= budget:
                current.append(piece)
                used += piece.tokens
                continue
            if current:
                groups.append(current)
                room = min(self.overlap, budget - piece.tokens)
                current = self.with_overlap(current, piece, room)
            else:
                current = [piece]
            used = sum(p.tokens for p in current)
        if current:
            groups.append(current)
        return groups

    def with_overlap(self, previous: list[_Piece], piece: _Piece, room: int) -> list[_Piece]:
        """``piece`` preceded by up to ``room`` tokens from the end of ``previous``."""
        if room <= 0:
            return [piece]
        last = previous[-1]
        if last.code_id >= 0:
            if piece.code_id == last.code_id:
                return [self.code_overlap(last, piece, room)]
            return [piece]  # code lines without their fence would read as prose
        if piece.code_id >= 0:
            return [piece]
        taken: list[_Piece] = []
        for prev in reversed(previous):
            if prev.span is None or prev.code_id >= 0:
                break
            if prev.tokens <= room:
                taken.append(prev)
                room -= prev.tokens
                continue
            # A fragment only when nothing whole fitted: whole sentences/lines read better.
            tail = None if taken else self.tail(prev.span, room)
            if tail is not None:
                taken.append(tail)
            break
        taken.reverse()
        return [*taken, piece]

    def tail(self, span: tuple[int, int], room: int) -> _Piece | None:
        """The end of ``span`` with at most ``room`` tokens, from a line or sentence start if
        one is in reach, else from a word start."""
        start, end = span
        starts = self.token_starts(start, end)
        if room <= 0 or not starts:
            return None
        window = starts[max(0, len(starts) - room) :]
        earliest = window[0]
        cut = None
        if self.at_sentence_start(earliest, start):
            cut = earliest
        else:
            newline = self.text.find("\n", earliest, end)
            sentence = _SENTENCE_END_RE.search(self.text, earliest, end)
            found = [
                p
                for p in (newline + 1 if newline >= 0 else -1, sentence.end() if sentence else -1)
                if p > earliest
            ]
            cut = min(found) if found else None
        if cut is None:
            cut = next((s for s in window if s == start or self.text[s - 1].isspace()), None)
        if cut is None or cut >= end:
            return None
        return self.span_piece(cut, end, "\n")

    def at_sentence_start(self, pos: int, floor: int) -> bool:
        if pos <= floor or self.text[pos - 1] == "\n" or self.text[pos - 1] in _CJK_ENDS:
            return True
        before = self.text[max(floor, pos - 8) : pos]
        return before[-1:].isspace() and before.rstrip()[-1:] in _SENTENCE_ENDS

    def code_overlap(self, last: _Piece, piece: _Piece, room: int) -> _Piece:
        """Continue a split code block with the previous part's last whole lines."""
        lines: list[tuple[int, int]] = []
        for a, b in reversed(last.code_lines):
            tokens = self.count(a, b)
            if tokens > room:
                break
            lines.append((a, b))
            room -= tokens
        if not lines:
            return piece
        lines.reverse()
        overlap_tokens = sum(self.count(a, b) for a, b in lines)
        merged = lines + piece.code_lines
        body = "\n".join(self.text[a:b] for a, b in merged)
        return _Piece(
            f"{piece.code_head}\n{body}\n{piece.code_tail}",
            piece.tokens + overlap_tokens,
            piece.joiner,
            None,
            piece.code_id,
            piece.code_head,
            piece.code_tail,
            merged,
        )


def _is_cjk(char: str) -> bool:
    # BERT-style tokenizers split CJK ideographs into single-character words.
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2FA1F
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF  # kana: not split by BERT, but a fine place to cut
    )


def _render(pieces: list[_Piece]) -> str:
    out = [pieces[0].text]
    for piece in pieces[1:]:
        out.append(piece.joiner)
        out.append(piece.text)
    return "".join(out).strip()


def _merge_tiny(drafts: list[_Draft], max_tokens: int, tiny: int) -> list[_Draft]:
    """Merge runs of consecutive tiny one-chunk sections (<= ``tiny`` tokens) into shared
    chunks."""
    out: list[_Draft] = []
    for draft in drafts:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.single
            and draft.single
            and draft.tokens <= tiny
            and prev.tokens + draft.tokens <= max_tokens
            and (prev.tokens <= tiny or prev.merged)
        ):
            path = _common_prefix(prev.path, draft.path) or prev.path
            out[-1] = _Draft(
                f"{prev.text}\n\n{draft.text}",
                " > ".join(path),
                path,
                prev.tokens + draft.tokens,
                single=True,
                merged=True,
            )
        else:
            out.append(draft)
    return out


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def _enforce_limit(text: str, tokenizer: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """``text`` with its count when it fits, else parts that provably fit (re-counted)."""
    out: list[tuple[str, int]] = []
    todo = [text.strip()]
    while todo:
        part = todo.pop()
        if not part:
            continue
        tokens = tokenizer.count(part)
        if tokens <= max_tokens:
            out.append((part, tokens))
            continue
        # Only reached when span counts were not additive for this tokenizer (or a word was
        # cut mid-token): cut by this part's own token offsets, smaller each round.
        offsets = tokenizer.offsets(part)
        cut = 0
        if len(offsets) > max_tokens:
            cut = offsets[max_tokens][0]
        elif len(offsets) > 1:
            cut = offsets[len(offsets) // 2][0]
        if not 0 < cut < len(part):
            if len(part) <= 1:
                continue  # one character over the limit cannot be represented at all
            cut = len(part) // 2
        # Pushed in reverse so the pop order keeps reading order.
        todo.append(part[cut:].strip())
        todo.append(part[:cut].strip())
    return out
