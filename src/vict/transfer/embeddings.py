"""Read one LM's input word embeddings, or a BLIP-2's source projector, without loading the whole model.

VPGTrans's word converter needs only the two LMs' embedding matrices (``(V, d)``: 50,272 × 2,560 for OPT-2.7B,
against 2.7 billion parameters in all), and its merged projector only the source BLIP-2's projection. Both are
read through ``vict.models.hf_checkpoint.read_tensors``: with a shard index, only the shard that holds the tensor
is opened (for a hub id, downloaded), and in it only that tensor's bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vict.models import hf_checkpoint

EMBEDDING_SUFFIXES: tuple[str, ...] = (
    "shared.weight",  # T5 / Flan-T5 (its encoder/decoder.embed_tokens are tied to it)
    "embed_tokens.weight",  # LLaMA, Mistral, Qwen2, OPT (…decoder.embed_tokens), BLIP-2's OPT
    "wte.weight",  # GPT-2, GPT-J
    "word_embeddings.weight",  # BLOOM, GPT-NeoX-style names
    "tok_embeddings.weight",  # Meta's original LLaMA layout
    "embed_in.weight",  # GPT-NeoX / Pythia
)
"""Tensor-name endings of an LM's input embedding, in order of preference."""
NOT_LM_PREFIXES: tuple[str, ...] = ("vision_model.", "qformer.", "model.vision_model.", "model.qformer.", "Qformer.")
"""Prefixes of tensors inside a BLIP-2 that are not its language model (the Q-Former has word embeddings in LAVIS)."""

PROJECTOR_NAMES: dict[str, tuple[str, ...]] = {
    "hf": ("language_projection", "model.language_projection"),
    "lavis": ("opt_proj", "t5_proj", "llm_proj"),
}
"""Where the source projector (Q-Former output -> source LM embedding) lives: Hugging Face BLIP-2 and LAVIS."""


def embedding_key(keys: list[str], source: str | Path) -> str:
    """The name of the input embedding among a checkpoint's tensor names (``EMBEDDING_SUFFIXES``).

    Raises:
        ValueError: none, or several equally preferred ones (named, so that the user can say which).
    """
    lm_keys = [k for k in keys if not k.startswith(NOT_LM_PREFIXES)]
    for suffix in EMBEDDING_SUFFIXES:
        found = [k for k in lm_keys if k == suffix or k.endswith("." + suffix)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(
                f"{source}: several input-embedding tensors {found}; pass the one to use (embedding_key=...)"
            )
    raise ValueError(
        f"{source}: no input-embedding tensor (a name ending in one of {list(EMBEDDING_SUFFIXES)}) among its "
        f"{len(keys)} tensors; is it a causal LM or BLIP-2 checkpoint saved with save_pretrained?"
    )


def load_input_embeddings(source: str | Path, key: str | None = None) -> tuple[torch.Tensor, str]:
    """The input word-embedding matrix ``(V, d)`` (float32) of the LM in ``source`` and its tensor name.

    Args:
        source: a local directory (``save_pretrained`` layout, single file or shards) or a hub id; a BLIP-2
            directory gives its language model's embeddings.
        key: the tensor name, when the checkpoint's naming is not one of ``EMBEDDING_SUFFIXES``.
    """
    key = key or embedding_key(hf_checkpoint.checkpoint_keys(source), source)
    tensors = hf_checkpoint.read_tensors(source, lambda name: name if name == key else None)
    if key not in tensors:
        raise ValueError(f"{source}: no tensor named {key!r}")
    return tensors[key].float(), key


def load_source_projector(source: str | Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The source BLIP-2's projector ``(weight (d_lm, d_q), bias (d_lm,), name)``.

    ``source`` is a Hugging Face BLIP-2 (directory or hub id: ``language_projection``) or a LAVIS ``.pth`` state
    dict (``opt_proj``, ``t5_proj`` or ``llm_proj``; only this file is read, with ``weights_only=True``).
    """
    path = Path(source).expanduser()
    if path.is_file():
        from vict.models.lavis import unwrap_lavis

        state = unwrap_lavis(torch.load(path, map_location="cpu", weights_only=True, mmap=True), str(path))
        names = PROJECTOR_NAMES["lavis"]
        tensors = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] in names}
    else:
        names = PROJECTOR_NAMES["hf"]
        tensors = hf_checkpoint.read_tensors(source, lambda k: k if k.rsplit(".", 1)[0] in names else None)
    for name in names:
        weight, bias = tensors.get(f"{name}.weight"), tensors.get(f"{name}.bias")
        if weight is not None:
            if bias is None:
                bias = torch.zeros(weight.shape[0])
            return weight.float().clone(), bias.float().clone(), name
    raise ValueError(
        f"{source}: no source projector (looked for {[f'{n}.weight' for n in names]}); VPGTrans starts the target "
        "projector from the BLIP-2's own, so the source must be a BLIP-2 with its LLM projection"
    )
