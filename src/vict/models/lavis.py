"""LAVIS BLIP-2 state dicts: key mapping to the Hugging Face layout, and config inference from shapes.

The mapping follows transformers' own conversion script (``convert_blip_2_original_to_pytorch.py``):
explicit renames for the EVA ViT, ``ln_vision`` -> ``vision_model.post_layernorm``, ``Qformer.bert`` ->
``qformer`` with ``attention.self`` -> ``attention.attention``, and the q/v bias rule: LAVIS's EVA attention
has a bias-free ``qkv`` Linear plus separate ``q_bias`` and ``v_bias`` (no k bias), which becomes one
``qkv.bias = cat(q_bias, zeros_like(v_bias), v_bias)``.
"""

from __future__ import annotations

import re

import torch
from transformers import Blip2Config

# LAVIS keys that carry no VPG weights: the LLM and its projection (LLM-coupled models), the stage-1 heads,
# and the Q-Former's text side (word/position embeddings, text FFN, LM head), which the query path never uses.
_IGNORED = re.compile(
    r"^(opt_model|t5_model|llm_model|opt_proj|t5_proj|llm_proj|vision_proj|text_proj|itm_head|temp$|"
    r"Qformer\.cls\.|Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)|"
    r"Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.)"
)
_BLOCK = re.compile(r"^visual_encoder\.blocks\.(\d+)\.(.+)$")
_BLOCK_RENAMES = {
    "norm1.": "layer_norm1.",
    "norm2.": "layer_norm2.",
    "attn.qkv.weight": "self_attn.qkv.weight",
    "attn.qkv.bias": "self_attn.qkv.bias",
    "attn.proj.": "self_attn.projection.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_TOP_RENAMES = {
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
    "ln_vision.weight": "vision_model.post_layernorm.weight",
    "ln_vision.bias": "vision_model.post_layernorm.bias",
    "Qformer.bert.embeddings.LayerNorm.weight": "qformer.layernorm.weight",
    "Qformer.bert.embeddings.LayerNorm.bias": "qformer.layernorm.bias",
    "query_tokens": "query_tokens",
}


def unwrap_lavis(obj: object, path: str) -> dict[str, torch.Tensor]:
    """The flat state dict of a loaded LAVIS checkpoint (``{"model": state_dict, ...}`` or the dict itself)."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a LAVIS state dict (expected a dict of tensors, or {{'model': dict}})")
    return obj


def add_eva_prefix(eva_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix a bare EVA ViT state dict (``eva_vit_g.pth``: ``blocks.0…``, ``cls_token``) with ``visual_encoder.``."""
    return {k if k.startswith("visual_encoder.") else f"visual_encoder.{k}": v for k, v in eva_state.items()}


def lavis_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Map LAVIS keys to HF ``Blip2`` VPG keys.

    Returns ``(mapped, ignored, unknown)``: ``mapped`` is keyed like ``VisualPromptGenerator.state_dict()``
    (``vision_model.…``, ``qformer.…``, ``query_tokens``), ``ignored`` lists keys that are expected in
    LAVIS checkpoints but unused by the VPG, ``unknown`` lists keys that match no rule.
    """
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    qv_bias: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if _IGNORED.match(key):
            ignored.append(key)
            continue
        if key in _TOP_RENAMES:
            mapped[_TOP_RENAMES[key]] = value
            continue
        block = _BLOCK.match(key)
        if block:
            idx, rest = int(block.group(1)), block.group(2)
            if rest in ("attn.q_bias", "attn.v_bias"):
                qv_bias.setdefault(idx, {})[rest[-6]] = value
                continue
            for old, new in _BLOCK_RENAMES.items():
                if rest.startswith(old):
                    mapped[f"vision_model.encoder.layers.{idx}.{new}{rest[len(old) :]}"] = value
                    break
            else:
                unknown.append(key)
            continue
        if key.startswith("Qformer.bert.encoder."):
            mapped["qformer." + key[len("Qformer.bert.") :].replace(".self.", ".attention.")] = value
            continue
        unknown.append(key)
    for idx, parts in sorted(qv_bias.items()):
        if set(parts) != {"q", "v"}:
            unknown.extend(f"visual_encoder.blocks.{idx}.attn.{p}_bias (without its pair)" for p in parts)
            continue
        mapped[f"vision_model.encoder.layers.{idx}.self_attn.qkv.bias"] = torch.cat(
            [parts["q"], torch.zeros_like(parts["v"]), parts["v"]]
        )
    return mapped, ignored, unknown


def hf_to_lavis_name(key: str) -> str:
    """The LAVIS key an HF VPG key comes from (for error messages); ``qkv.bias`` names both q/v biases."""
    for lavis_key, hf_key in _TOP_RENAMES.items():
        if key == hf_key:
            return lavis_key
    block = re.match(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$", key)
    if block:
        idx, rest = block.groups()
        if rest == "self_attn.qkv.bias":
            return f"visual_encoder.blocks.{idx}.attn.q_bias/v_bias"
        for old, new in _BLOCK_RENAMES.items():
            if rest.startswith(new):
                return f"visual_encoder.blocks.{idx}.{old}{rest[len(new) :]}"
    if key.startswith("qformer.encoder."):
        return "Qformer.bert." + key[len("qformer.") :].replace(".attention.attention.", ".attention.self.").replace(
            "crossattention.attention.", "crossattention.self."
        )
    return key


def infer_blip2_config(mapped: dict[str, torch.Tensor], path: str) -> Blip2Config:
    """A ``Blip2Config`` whose VPG shapes match ``mapped`` (HF-keyed tensors from ``lavis_to_hf``).

    Sizes come from tensor shapes; head counts cannot, so they follow the released models (ViT-g 1408 -> 16
    heads, ViT-L 1024 -> 16, Q-Former 768 -> 12). Other widths need an explicit ``config``.
    """
    try:
        cls = mapped["vision_model.embeddings.class_embedding"]
        patch = mapped["vision_model.embeddings.patch_embedding.weight"]
        pos = mapped["vision_model.embeddings.position_embedding"]
        fc1 = mapped["vision_model.encoder.layers.0.mlp.fc1.weight"]
        queries = mapped["query_tokens"]
        q_ffn = mapped["qformer.encoder.layer.0.intermediate_query.dense.weight"]
    except KeyError as err:
        raise ValueError(
            f"{path}: cannot infer the BLIP-2 sizes, tensor {err} is missing; pass config=... (a Blip2Config or "
            "a Hugging Face BLIP-2 directory) to VisualPromptGenerator.from_lavis"
        ) from None
    d_vision, d_q = cls.shape[-1], queries.shape[-1]
    vision_heads = {1408: 16, 1024: 16}.get(d_vision)
    q_heads = {768: 12}.get(d_q)
    if vision_heads is None or q_heads is None:
        raise ValueError(
            f"{path}: vision width {d_vision} / Q-Former width {d_q} are not those of a released BLIP-2, so the "
            "attention head counts are unknown; pass config=... (a Blip2Config or a HF BLIP-2 directory)"
        )
    layer_ids = {int(k.split(".")[3]) for k in mapped if k.startswith("vision_model.encoder.layers.")}
    q_layer_ids = {int(k.split(".")[3]) for k in mapped if k.startswith("qformer.encoder.layer.")}
    cross = sorted({int(k.split(".")[3]) for k in mapped if ".crossattention." in k})
    patch_size = patch.shape[-1]
    grid = round((pos.shape[1] - 1) ** 0.5)
    return Blip2Config(
        vision_config={
            "hidden_size": d_vision,
            "intermediate_size": fc1.shape[0],
            "num_hidden_layers": len(layer_ids),
            "num_attention_heads": vision_heads,
            "image_size": grid * patch_size,
            "patch_size": patch_size,
        },
        qformer_config={
            "hidden_size": d_q,
            "num_hidden_layers": len(q_layer_ids),
            "num_attention_heads": q_heads,
            "intermediate_size": q_ffn.shape[0],
            "cross_attention_frequency": cross[1] - cross[0] if len(cross) > 1 else 2,
            "encoder_hidden_size": d_vision,
        },
        num_query_tokens=queries.shape[1],
    )
