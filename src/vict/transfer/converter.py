"""VPGTrans's word converter: a linear map from the source LM's word-embedding space to the target LM's.

Data flow:

    texts ─► source tokenizer ─┐  same number of tokens?  ─► position pairs (s_i, t_i)
            target tokenizer ─┘  (else the text is skipped, counted)
    E_s[s_i], E_t[t_i] ─► Linear(d_s → d_t) fitted with loss 1 − cos(W·E_s[s] + b, E_t[t])
    ─► converter.safetensors (weight, bias) + converter.json (what it was fitted on, train/held-out cosine)

The merged projector of VPGTrans starts the target projector as converter ∘ source projector
(``merge_projector``): ``W_t = W_w·W_s``, ``b_t = W_w·b_s + b_w``. Pairs follow the reference: texts that both
tokenizers split into the same number of tokens, paired by position (a pair repeats as often as it occurs, so
frequent words weigh more). 5% of the texts (by a seeded draw) are held out to report the cosine on unseen pairs.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_NAME = "converter.safetensors"
META_NAME = "converter.json"


@dataclass
class TokenPairs:
    """Position-paired token ids of the texts both tokenizers split into the same number of tokens."""

    source_ids: torch.Tensor
    """``(n,)`` source-vocabulary ids."""
    target_ids: torch.Tensor
    """``(n,)`` target-vocabulary ids, ``target_ids[i]`` paired with ``source_ids[i]``."""
    held_out: torch.Tensor
    """``(n,)`` bool: the pair comes from a held-out text."""
    texts_used: int
    texts_skipped: int
    """Texts whose two tokenizations differ in length (or are empty)."""


def pair_tokens(
    texts: Sequence[str], source_tokenizer: Any, target_tokenizer: Any, held_out: float = 0.05, seed: int = 0
) -> TokenPairs:
    """Pair the tokens of ``texts`` by position where both tokenizers give the same number (module doc)."""
    rng = random.Random(f"vict-converter-split:{seed}")
    src_ids: list[int] = []
    tgt_ids: list[int] = []
    flags: list[bool] = []
    used = skipped = 0
    texts = [t.strip() for t in texts]
    src_all = source_tokenizer(texts, add_special_tokens=False)["input_ids"]
    tgt_all = target_tokenizer(texts, add_special_tokens=False)["input_ids"]
    for src, tgt in zip(src_all, tgt_all, strict=True):
        if not src or len(src) != len(tgt):
            skipped += 1
            continue
        used += 1
        flag = rng.random() < held_out
        src_ids += src
        tgt_ids += tgt
        flags += [flag] * len(src)
    if not src_ids:
        raise ValueError(
            f"none of the {len(texts)} texts tokenizes to the same number of tokens with both tokenizers; give "
            "more (or more ordinary) texts: captions of common words pair best"
        )
    return TokenPairs(
        torch.tensor(src_ids), torch.tensor(tgt_ids), torch.tensor(flags), texts_used=used, texts_skipped=skipped
    )


@dataclass
class FitReport:
    """What a converter was fitted on and how well it maps held-out pairs."""

    pairs_train: int
    pairs_held_out: int
    epochs: int
    lr: float
    batch_size: int
    cosine_train: float
    """Mean cosine of ``converter(E_s[s])`` with ``E_t[t]`` over the training pairs, after fitting."""
    cosine_held_out: float | None
    cosine_before: float
    """The same on the training pairs at initialisation."""
    losses: list[float] = field(default_factory=list)
    """Mean loss per epoch."""


def mean_cosine(converter: nn.Linear, source: torch.Tensor, target: torch.Tensor, batch: int = 65536) -> float:
    """Mean cosine similarity of ``converter(source[i])`` with ``target[i]``."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(source), batch):
            mapped = converter(source[start : start + batch])
            total += float(nn.functional.cosine_similarity(mapped, target[start : start + batch], dim=-1).sum())
    return total / max(1, len(source))


def fit_converter(
    source_embeddings: torch.Tensor,
    target_embeddings: torch.Tensor,
    pairs: TokenPairs,
    epochs: int = 8,
    lr: float = 1e-2,
    batch_size: int = 4096,
    seed: int = 0,
) -> tuple[nn.Linear, FitReport]:
    """Fit ``Linear(d_s → d_t)`` with loss ``1 − cos`` on the training pairs (AdamW, cosine decay, seeded order).

    Args:
        source_embeddings: ``(V_s, d_s)`` input embeddings of the source LM.
        target_embeddings: ``(V_t, d_t)`` input embeddings of the target LM.
        pairs: from ``pair_tokens``.
        epochs, lr, batch_size: passes over the training pairs, peak learning rate, pairs per step.
    """
    for name, ids, table in (
        ("source", pairs.source_ids, source_embeddings),
        ("target", pairs.target_ids, target_embeddings),
    ):
        if len(ids) and int(ids.max()) >= table.shape[0]:
            raise ValueError(
                f"{name} token id {int(ids.max())} is outside the {name} embedding table ({table.shape[0]} rows): "
                "the tokenizer and the embeddings come from different models"
            )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    converter = nn.Linear(source_embeddings.shape[1], target_embeddings.shape[1])
    train = ~pairs.held_out
    src = source_embeddings[pairs.source_ids[train]].float()
    tgt = target_embeddings[pairs.target_ids[train]].float()
    if not len(src):
        raise ValueError("no training pairs (every paired text was held out); give more texts")
    steps_per_epoch = math.ceil(len(src) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(converter.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    before = mean_cosine(converter, src, tgt)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(src), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(src), batch_size):
            idx = order[start : start + batch_size]
            loss = (1 - nn.functional.cosine_similarity(converter(src[idx]), tgt[idx], dim=-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(idx)
        losses.append(round(epoch_loss / len(src), 6))
    held = pairs.held_out
    held_cos = (
        mean_cosine(
            converter,
            source_embeddings[pairs.source_ids[held]].float(),
            target_embeddings[pairs.target_ids[held]].float(),
        )
        if bool(held.any())
        else None
    )
    report = FitReport(
        pairs_train=len(src),
        pairs_held_out=int(held.sum()),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        cosine_train=round(mean_cosine(converter, src, tgt), 6),
        cosine_held_out=None if held_cos is None else round(held_cos, 6),
        cosine_before=round(before, 6),
        losses=losses,
    )
    return converter, report


def merge_projector(
    converter: nn.Linear, source_weight: torch.Tensor, source_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """VPGTrans's merged init, converter ∘ source projector: ``(W_w·W_s, W_w·b_s + b_w)``.

    ``source_weight (d_s, d_q)`` and ``source_bias (d_s,)`` map Q-Former outputs into the source LM's embedding
    space; the result ``(d_t, d_q)``, ``(d_t,)`` maps them into the target's."""
    w_w = converter.weight.detach().double()
    b_w = converter.bias.detach().double()
    if source_weight.shape[0] != w_w.shape[1]:
        raise ValueError(
            f"the source projector outputs {source_weight.shape[0]} features but the converter reads "
            f"{w_w.shape[1]}: fit the converter on the LM inside this BLIP-2"
        )
    weight = w_w @ source_weight.double()
    bias = w_w @ source_bias.double() + b_w
    return weight.float(), bias.float()


def save_converter(converter: nn.Linear, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``converter.safetensors`` (``weight``, ``bias``) and ``converter.json`` into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": converter.weight.detach().contiguous(), "bias": converter.bias.detach().contiguous()}
    tmp = out_dir / f".{WEIGHTS_NAME}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out_dir / WEIGHTS_NAME)
    tmp = out_dir / f".{META_NAME}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(out_dir / META_NAME)
    return out_dir


def load_converter(path: Path) -> nn.Linear:
    """A converter written by ``save_converter`` (``path``: its folder or its ``converter.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(path)
    file = path / WEIGHTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no converter here; fit one with `vict transfer converter ... --out DIR`")
    tensors = load_file(str(file))
    if set(tensors) != {"weight", "bias"} or tensors["weight"].ndim != 2:
        raise ValueError(f"{file}: expected tensors 'weight' (d_t, d_s) and 'bias' (d_t,); found {sorted(tensors)}")
    d_t, d_s = tensors["weight"].shape
    converter = nn.Linear(d_s, d_t)
    converter.load_state_dict(tensors)
    return converter


def report_dict(report: FitReport) -> dict[str, Any]:
    return asdict(report)


def fit_word_converter(
    source_lm: str | Path,
    target_lm: str | Path,
    texts: Sequence[str],
    out_dir: Path | None = None,
    epochs: int = 8,
    lr: float = 1e-2,
    batch_size: int = 4096,
    seed: int = 0,
    texts_source: str = "texts",
) -> tuple[nn.Linear, dict[str, Any]]:
    """The word converter from ``source_lm``'s embedding space to ``target_lm``'s, fitted on ``texts``.

    Reads only the two tokenizers and the two input-embedding tensors (``vict.transfer.embeddings``); a BLIP-2
    directory or hub id as ``source_lm`` gives its language model's. With ``out_dir``, writes the converter there.

    Returns:
        The converter and its metadata (sources, tensor names, pairing counts, the ``FitReport``).
    """
    from transformers import AutoTokenizer

    from vict.transfer.embeddings import load_input_embeddings

    source_tok = AutoTokenizer.from_pretrained(str(source_lm))
    target_tok = AutoTokenizer.from_pretrained(str(target_lm))
    source_emb, source_key = load_input_embeddings(source_lm)
    target_emb, target_key = load_input_embeddings(target_lm)
    pairs = pair_tokens(texts, source_tok, target_tok, seed=seed)
    converter, report = fit_converter(
        source_emb, target_emb, pairs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
    )
    meta = {
        "source_lm": str(source_lm),
        "target_lm": str(target_lm),
        "source_embedding": {"tensor": source_key, "shape": list(source_emb.shape)},
        "target_embedding": {"tensor": target_key, "shape": list(target_emb.shape)},
        "texts": {
            "source": texts_source,
            "total": len(texts),
            "paired": pairs.texts_used,
            "skipped": pairs.texts_skipped,
        },
        "fit": report_dict(report),
        "seed": seed,
    }
    if out_dir is not None:
        save_converter(converter, Path(out_dir), meta)
    return converter, meta


def write_merged_projector(converter_dir: Path, blip2_source: str | Path, out_file: Path) -> dict[str, Any]:
    """Write VPGTrans's merged projector (converter ∘ the BLIP-2's projector) as a safetensors file holding
    ``weight (d_t, d_q)`` and ``bias (d_t,)``: the ``connector.init_weights`` of a target model.

    Returns a summary (shapes, source tensor name)."""
    from safetensors.torch import save_file

    from vict.transfer.embeddings import load_source_projector

    converter = load_converter(Path(converter_dir))
    source_weight, source_bias, name = load_source_projector(blip2_source)
    weight, bias = merge_projector(converter, source_weight, source_bias)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(tmp))
    tmp.replace(out_file)
    return {"source_projector": name, "source_shape": list(source_weight.shape), "merged_shape": list(weight.shape)}
