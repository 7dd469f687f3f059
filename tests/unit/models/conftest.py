"""Model-test helpers: a LAVIS export of the tiny BLIP-2 (the batch helpers are in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


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
