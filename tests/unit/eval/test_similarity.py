"""Similarity analysis core: bounds, exact vocabulary rows score 1.0, stats and the plot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vict.eval.similarity import max_cosine_similarity, plot_similarity_histogram, similarity_stats


def test_vocabulary_rows_score_one_and_find_themselves() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 16, generator=g)
    rows = torch.tensor([3, 17, 42, 0])
    values, idx = max_cosine_similarity(emb[rows] * 2.5, emb, chunk_size=7)  # scale must not matter
    assert torch.allclose(values, torch.ones(4), atol=1e-6)
    assert idx.tolist() == rows.tolist()


def test_values_in_range_and_match_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    tokens, emb = torch.randn(30, 8, generator=g), torch.randn(101, 8, generator=g)
    values, idx = max_cosine_similarity(tokens, emb, chunk_size=16)
    full = torch.nn.functional.cosine_similarity(tokens[:, None], emb[None], dim=-1)
    assert torch.allclose(values, full.max(-1).values, atol=1e-6)
    assert torch.equal(idx, full.argmax(-1))
    assert values.min() >= -1 and values.max() <= 1


def test_opposite_vector_scores_minus_one() -> None:
    emb = torch.tensor([[1.0, 0.0]])
    values, _ = max_cosine_similarity(torch.tensor([[-3.0, 0.0]]), emb)
    assert values.item() == pytest.approx(-1.0)


def test_width_mismatch_explains_fix() -> None:
    with pytest.raises(ValueError, match="project the tokens"):
        max_cosine_similarity(torch.randn(2, 4), torch.randn(5, 8))


def test_stats_hand_computed() -> None:
    stats = similarity_stats(torch.tensor([0.1, 0.2, 0.6, 0.9]))
    assert stats["mean"] == pytest.approx(0.45) and stats["median"] == pytest.approx(0.4)
    assert stats["max"] == pytest.approx(0.9) and stats["frac_above_0.5"] == 0.5 and stats["n"] == 4


def test_histogram_png(tmp_path: Path) -> None:
    path = plot_similarity_histogram({"a": torch.rand(64), "b": torch.rand(64) - 0.5}, tmp_path / "h" / "hist.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
