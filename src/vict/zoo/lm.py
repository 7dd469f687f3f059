"""The zoo's two language models: a tiny OPT (source, inside the BLIP-2) and a tiny LLaMA (target of VICT).

Each gets its own tokenizer trained on the stream's text documents (``vict.zoo.corpus``; different kinds, so the
VPG transfer crosses a real vocabulary gap) and is pretrained as a plain causal LM on those documents.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

from vict.constants import IGNORE_INDEX
from vict.models.tokenizer import train_tokenizer
from vict.zoo.presets import LMSpec
from vict.zoo.training import ProgressFn, TrainTrace, quiet, run_steps


def build_tokenizer(texts: list[str], spec: LMSpec) -> PreTrainedTokenizerFast:
    """A tokenizer of kind ``spec.tokenizer`` trained on ``texts`` (``<pad>``=0, ``<s>``=1, ``</s>``=2)."""
    return train_tokenizer(texts, kind=spec.tokenizer, vocab_size=spec.vocab_size)


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def build_opt(spec: LMSpec, vocab_size: int, tokenizer: PreTrainedTokenizerFast, seed: int) -> OPTForCausalLM:
    """A randomly initialised tiny OPT with tied input/output embeddings and no dropout."""
    config = OPTConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        word_embed_proj_dim=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        ffn_dim=spec.ffn_size,
        max_position_embeddings=spec.max_positions,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        **_special_ids(tokenizer),
    )
    torch.manual_seed(seed)
    return OPTForCausalLM(config)


def build_llama(spec: LMSpec, vocab_size: int, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A randomly initialised tiny LLaMA (RMSNorm, RoPE, SwiGLU) with tied embeddings."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: list[str], max_length: int) -> list[list[int]]:
    """``<s> text </s>`` token ids per text, truncated to ``max_length`` (eos kept)."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return [[*seq[: max_length - 1], eos] for seq in ids]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad token lists: ``input_ids (b, L)``, ``attention_mask (b, L)``, ``labels (b, L)`` where
    ``labels`` is ``IGNORE_INDEX`` on padding."""
    length = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    return input_ids, mask, labels


def pretrain_lm(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    spec: LMSpec,
    seed: int,
    stage: str,
    progress: ProgressFn = quiet,
    max_steps: int | None = None,
) -> TrainTrace:
    """Train every parameter of ``model`` as a causal LM on ``texts`` for ``spec.steps`` steps (``max_steps``: stop
    early on the same schedule)."""
    seqs = encode_texts(tokenizer, texts, spec.max_positions)
    model.train()

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        input_ids, mask, labels = pad_batch([seqs[i] for i in idx.tolist()], tokenizer.pad_token_id)
        return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss

    params = [p for p in model.parameters() if p.requires_grad]
    trace = run_steps(
        loss_fn,
        params,
        len(seqs),
        steps=spec.steps,
        batch_size=spec.batch_size,
        lr=spec.lr,
        seed=seed,
        stage=stage,
        progress=progress,
        max_steps=max_steps,
    )
    model.eval()
    return trace


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: list[str], max_length: int
) -> float:
    """Mean per-token cross entropy of ``model`` on ``texts`` (batches of 64, no gradient)."""
    seqs = encode_texts(tokenizer, texts, max_length)
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(seqs), 64):
        input_ids, mask, labels = pad_batch(seqs[start : start + 64], tokenizer.pad_token_id)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += loss.item()
        count += int((target != IGNORE_INDEX).sum())
    return total / max(1, count)
