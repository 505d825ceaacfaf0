"""A BERT sentence encoder in numpy, for the questions of ``rag search`` without torch.

Why: importing torch and sentence-transformers and building the model costs seconds and
hundreds of MB, while one question is ~10 tokens through a small model (MiniLM: 6 layers,
384 wide). Reading the same weights (``model.safetensors``, memory-mapped) and the same
tokenizer (``tokenizer.json``) and running the forward pass in numpy gives the same vector
(within float32 rounding; tests/test_query_embedding.py compares it with the torch model)
in a fraction of the time.

Only the architecture sentence-transformers builds for BERT models with mean pooling and
normalisation is supported; ``load`` raises ``Unsupported`` for anything else and the caller
loads the model with torch instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class Unsupported(RuntimeError):
    """The model folder is not a float32 BERT with mean pooling and normalisation."""


def _erf(x: np.ndarray) -> np.ndarray:
    # Numerical Recipes' erfc (fractional error below 1.2e-7), vectorised: numpy has no erf.
    z = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))  # fmt: skip
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class NumpyBertEncoder:
    """Mean-pooled, normalised BERT sentence embeddings computed with numpy."""

    def __init__(self, folder: Path, max_seq_length: int):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modules = json.loads((folder / "modules.json").read_text())
        types = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if (
            config.get("model_type") != "bert"
            or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
            or types != ["Transformer", "Pooling", "Normalize"]
            or not pooling.get("pooling_mode_mean_tokens")
            or any(pooling.get(k) for k in pooling if k.startswith("pooling_mode_") and
                   k != "pooling_mode_mean_tokens")
            or not (folder / "model.safetensors").is_file()
        ):  # fmt: skip
            raise Unsupported(f"{folder} is not a mean-pooled BERT model in safetensors")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self.w = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if self.w["embeddings.word_embeddings.weight"].dtype != np.float32:
            raise Unsupported(f"{folder}: weights are not float32")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # sentence-transformers pads to the longest text and truncates at max_seq_length,
        # whatever tokenizer.json itself says (MiniLM's says: pad and truncate at 128).
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _forward(self, ids: list[int], type_ids: list[int]) -> np.ndarray:
        w, n = self.w, len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][type_ids]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        dim = x.shape[1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._linear(x, f"{p}.attention.self.{name}").reshape(n, self.heads, dim)
                .transpose(1, 0, 2)
                for name in ("query", "key", "value")
            )  # fmt: skip
            scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(dim))
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, self.heads * dim)
            x = _layer_norm(
                x + self._linear(context, f"{p}.attention.output.dense"),
                w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"],
                self.eps,
            )
            hidden = self._linear(x, f"{p}.intermediate.dense")
            hidden = hidden * 0.5 * (1.0 + _erf(hidden / np.float32(np.sqrt(2.0))))
            x = _layer_norm(
                x + self._linear(hidden, f"{p}.output.dense"),
                w[f"{p}.output.LayerNorm.weight"],
                w[f"{p}.output.LayerNorm.bias"],
                self.eps,
            )
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One normalised float32 vector per text (texts run one by one: no padding needed)."""
        rows = []
        for text in texts:
            encoded = self.tokenizer.encode(text)
            rows.append(self._forward(encoded.ids, encoded.type_ids))
        width = self.w["embeddings.word_embeddings.weight"].shape[1]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), width)
