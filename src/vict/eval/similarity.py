"""How far Q-Former tokens sit from any word of an LLM vocabulary (the paper's Figure 2), as pure tensor code.

Given visual tokens already projected into an LLM's input-embedding space, ``(n_tokens, d)``, and that LLM's input
embedding matrix, ``(V, d)``, each token's highest cosine similarity to any vocabulary row says whether it behaves
like a word (close to 1) or like something the LLM never saw as input (near 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

THRESHOLD = 0.5
"""The fraction of tokens above this similarity is reported."""


@torch.no_grad()
def max_cosine_similarity(
    tokens: torch.Tensor, embeddings: torch.Tensor, chunk_size: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest cosine similarity of each token to any vocabulary row, and which row.

    Args:
        tokens: ``(n_tokens, d)`` visual tokens in the LLM's embedding space (any float dtype).
        embeddings: ``(V, d)`` the LLM's input embedding matrix.
        chunk_size: vocabulary rows per matmul (bounds memory at ``n_tokens * chunk_size`` floats).

    Returns:
        ``(values (n_tokens,) float32 in [-1, 1], indices (n_tokens,) int64 into the vocabulary)``.
    """
    if tokens.dim() != 2 or embeddings.dim() != 2:
        raise ValueError(
            f"expected tokens (n, d) and embeddings (V, d); got {tuple(tokens.shape)}, {tuple(embeddings.shape)}"
        )
    if tokens.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"token width {tokens.shape[1]} != embedding width {embeddings.shape[1]}: project the tokens into the "
            "LLM's embedding space first (the BLIP-2 language_projection or the VICT projection)"
        )
    if embeddings.shape[0] == 0 or tokens.shape[0] == 0:
        raise ValueError("need at least one token and one vocabulary row")
    t = F.normalize(tokens.float(), dim=-1)
    best = torch.full((t.shape[0],), -2.0)
    best_idx = torch.zeros(t.shape[0], dtype=torch.long)
    for start in range(0, embeddings.shape[0], chunk_size):
        e = F.normalize(embeddings[start : start + chunk_size].float().to(t.device), dim=-1)
        sims = t @ e.T  # (n_tokens, chunk)
        value, idx = sims.max(dim=-1)
        better = value > best
        best = torch.where(better, value, best)
        best_idx = torch.where(better, idx + start, best_idx)
    return best.clamp(-1.0, 1.0), best_idx


def similarity_stats(values: torch.Tensor, threshold: float = THRESHOLD) -> dict[str, float | int]:
    """Summary of max-similarity values ``(n,)``: ``mean, median, max, min, std, frac_above_<threshold>, n``.

    The median interpolates between the two middle values (as numpy does).
    """
    v = values.detach().float().flatten()
    if v.numel() == 0:
        raise ValueError("no similarity values to summarise")
    return {
        "mean": float(v.mean()),
        "median": float(torch.quantile(v, 0.5)),
        "max": float(v.max()),
        "min": float(v.min()),
        "std": float(v.std(unbiased=False)),
        f"frac_above_{threshold}": float((v > threshold).float().mean()),
        "n": int(v.numel()),
    }


def nearest_words(indices: torch.Tensor, tokenizer: Any) -> list[str]:
    """Vocabulary entries (``tokenizer.convert_ids_to_tokens``) for ``indices (n,)``; ``<id N>`` past its vocab or
    when there is no tokenizer."""
    ids = [int(i) for i in indices.flatten().tolist()]
    if tokenizer is None:
        return [f"<id {i}>" for i in ids]
    vocab_size = len(tokenizer)
    words = tokenizer.convert_ids_to_tokens([i if i < vocab_size else 0 for i in ids])
    return [w if i < vocab_size else f"<id {i}>" for i, w in zip(ids, words)]


def plot_similarity_histogram(
    series: dict[str, torch.Tensor] | torch.Tensor,
    path: str | Path,
    title: str = "Max cosine similarity of visual tokens to the LLM vocabulary",
    bins: int = 50,
    threshold: float = THRESHOLD,
) -> Path:
    """Histogram PNG of max-similarity values; several named series overlay (e.g. BLIP-2 vs VICT).

    Args:
        series: ``{label: values (n,)}`` or one ``values (n,)`` tensor.
        path: the PNG to write (parents are created).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(series, torch.Tensor):
        series = {"visual tokens": series}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    edges = torch.linspace(-1.0, 1.0, bins + 1).tolist()
    for label, values in series.items():
        v = values.detach().float().flatten().numpy()
        ax.hist(v, bins=edges, alpha=0.6, label=f"{label} (mean {v.mean():.3f})")
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("highest cosine similarity to any word embedding")
    ax.set_ylabel("visual tokens")
    ax.set_xlim(-1.0, 1.0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def token_table(values: torch.Tensor, words: Sequence[str], n_per_image: int) -> list[dict[str, Any]]:
    """Per-token rows ``{image, token, similarity, nearest_word}`` for values ``(n_images * n_per_image,)``."""
    rows = []
    for k, (value, word) in enumerate(zip(values.tolist(), words)):
        rows.append({"image": k // n_per_image, "token": k % n_per_image, "similarity": value, "nearest_word": word})
    return rows
