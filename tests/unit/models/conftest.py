"""Batch helpers for the model tests: prompts with image slots, as the collator builds them."""

from __future__ import annotations

import pytest
import torch

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID


def make_batch(model, prompts: list[str], targets: list[str] | None = None, side: str = "right") -> dict:
    """``[bos, slots x n_visual, prompt tokens, (target tokens, eos)]`` per row, padded on ``side``.

    Labels are the target tokens and eos; -100 on bos, slots, prompt and padding.
    """
    tok = model.tokenizer
    n = model.num_visual_tokens
    rows, labs = [], []
    for i, prompt in enumerate(prompts):
        ids = [tok.bos_token_id, *([IMAGE_SLOT_ID] * n), *tok(prompt, add_special_tokens=False)["input_ids"]]
        lab = [IGNORE_INDEX] * len(ids)
        if targets is not None:
            tgt = [*tok(targets[i], add_special_tokens=False)["input_ids"], tok.eos_token_id]
            ids, lab = ids + tgt, lab + tgt
        rows.append(ids)
        labs.append(lab)
    width = max(map(len, rows))
    pad = tok.pad_token_id
    input_ids, mask, labels = [], [], []
    for ids, lab in zip(rows, labs):
        fill = width - len(ids)
        if side == "left":
            input_ids.append([pad] * fill + ids)
            mask.append([0] * fill + [1] * len(ids))
            labels.append([IGNORE_INDEX] * fill + lab)
        else:
            input_ids.append(ids + [pad] * fill)
            mask.append([1] * len(ids) + [0] * fill)
            labels.append(lab + [IGNORE_INDEX] * fill)
    generator = torch.Generator().manual_seed(len(prompts))
    size = model.vpg.image_size
    batch = {
        "pixel_values": torch.randn(len(prompts), 3, size, size, generator=generator),
        "input_ids": torch.tensor(input_ids),
        "attention_mask": torch.tensor(mask),
    }
    if targets is not None:
        batch["labels"] = torch.tensor(labels)
    return batch


@pytest.fixture
def batch_factory():
    """``make_batch`` as a fixture."""
    return make_batch


def export_lavis(ref) -> dict[str, torch.Tensor]:
    """Export the HF tiny BLIP-2 as a LAVIS Blip2OPT state dict, following formats.md §5 in reverse."""
    out: dict[str, torch.Tensor] = {}
    for key, value in ref.state_dict().items():
        if key.startswith("vision_model."):
            k = key[len("vision_model.") :]
            k = {
                "embeddings.class_embedding": "cls_token",
                "embeddings.position_embedding": "pos_embed",
                "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
                "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
            }.get(k, k)
            if k.startswith("post_layernorm."):
                out["ln_vision." + k.split(".")[-1]] = value
                continue
            k = k.replace("encoder.layers.", "blocks.").replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
            k = k.replace("self_attn.projection", "attn.proj").replace("self_attn.qkv", "attn.qkv")
            if k.endswith("attn.qkv.bias"):
                q, kb, v = value.chunk(3)
                assert torch.equal(kb, torch.zeros_like(kb)), "LAVIS has no k bias"
                out["visual_encoder." + k.replace("qkv.bias", "q_bias")] = q
                out["visual_encoder." + k.replace("qkv.bias", "v_bias")] = v
                continue
            out["visual_encoder." + k] = value
        elif key.startswith("qformer."):
            k = key[len("qformer.") :]
            if k.startswith("layernorm."):
                out["Qformer.bert.embeddings.LayerNorm." + k.split(".")[-1]] = value
            else:
                out[
                    "Qformer.bert."
                    + k.replace(".attention.attention.", ".attention.self.").replace(
                        "crossattention.attention.", "crossattention.self."
                    )
                ] = value
        elif key == "query_tokens":
            out[key] = value
        elif key.startswith("language_projection."):
            out["opt_proj." + key.split(".")[-1]] = value
        else:
            out["opt_model." + key[len("language_model.") :]] = value
    out["Qformer.bert.embeddings.position_ids"] = torch.arange(64)[None]
    return out


@pytest.fixture
def to_lavis():
    """``export_lavis`` as a fixture: HF tiny BLIP-2 -> LAVIS Blip2OPT state dict."""
    return export_lavis
