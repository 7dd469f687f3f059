"""Speed switches of a composed ``VisionLLM``: ``torch.compile`` of its hot parts and the attention kernel.

    from vict.models.compiled import compile_model, set_attention

    set_attention(model, "sdpa")               # or "eager"; every part that has attention (LLM, ViT, Q-Former)
    compile_model(model, parts=("llm",))       # in place; returns the model

Both act on a fully composed model, in place, and change no parameter name, value or output beyond float rounding:

- ``compile_model`` compiles the ``forward`` of each named part with ``nn.Module.compile`` (not ``torch.compile(module)``,
  which would wrap the module and prefix every parameter name with ``_orig_mod.``), so ``state_dict``, the trainable
  predicate, ``save_pretrained`` and every caller keep working. The parts (``PARTS``):

  - ``llm``: the base LLM's decoder body (``base_llm.<base_model_prefix>``, e.g. ``LlamaModel``), with the method's
    layers inside it (peft's LoRA layers are injected into its linear layers when the model is composed, so they are
    compiled with it). The training forward (``VisionLLM.forward``, which runs the body and then the LM head on the
    target positions) and ``generate`` (whose ``*ForCausalLM.forward`` calls the body, with a KV cache, from
    ``inputs_embeds``) both go through it; gradients flow back through it into the LoRA matrices and the visual tokens.
  - ``vision``: the frozen vision tower (``vpg.vision_model``); ``qformer``: the frozen Q-Former (``vpg.qformer``).

  Compilation is lazy: the first call of each distinct kind compiles (and costs seconds to minutes), later ones reuse
  it. With ``dynamic=True`` (the default) sequence lengths and batch sizes are symbolic, so one graph serves every
  batch; the graphs that remain distinct are the training forward (grad mode on), the generation prefill
  (``inputs_embeds``), the first decoding step and the later ones (``input_ids``, a KV cache of another layout).
  ``torch._dynamo.config.recompile_limit`` (8) bounds the graphs per code object; past it a part runs eagerly.

- ``set_attention`` sets the attention implementation of the frozen LLM (``PreTrainedModel.set_attn_implementation``
  of transformers 5, which also updates its sub-models) and of the vision tower and Q-Former: ``"sdpa"``
  (``torch.nn.functional.scaled_dot_product_attention``, which dispatches to flash / memory-efficient kernels where the
  device and dtype allow) or ``"eager"`` (the reference matmul-softmax-matmul); any other name transformers knows
  (``"flash_attention_2"``) is passed on and refused by transformers where a part does not support it. Set attention
  before compiling (a change afterwards recompiles on the next call).

Measured by ``benchmarks/compile_speed.py`` (ratios and compile times in the README, "Speed"). Compiled and eager
give identical greedy answers and the same first loss on both models, as do sdpa and eager attention. On CPU
compiling does not pay (within noise on the larger model, minutes of compilation to amortise), so nothing in ``vict``
compiles unless asked. ``"sdpa"`` helps and is what transformers already loads, so nothing changes it
(``set_attention(model, "eager")`` only to compare).
On a GPU, measure with ``benchmarks/compile_speed.py --device cuda --dtype bfloat16 [--mode reduce-overhead]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from vict.models.vision_llm import VisionLLM

PARTS: tuple[str, ...] = ("llm", "vision", "qformer")
"""The parts ``compile_model`` and ``set_attention`` know, in model order (``hot_modules``)."""
ATTENTION: tuple[str, ...] = ("sdpa", "eager")
"""The attention implementations every part supports (others are passed on to transformers)."""


def hot_modules(model: VisionLLM) -> dict[str, nn.Module]:
    """``{part: module}`` for ``PARTS``: the base LLM's decoder body, the vision tower, the Q-Former."""
    base = model.base_llm
    prefix = getattr(base, "base_model_prefix", "")
    body = getattr(base, prefix, None) if prefix else None
    if not isinstance(body, nn.Module):
        raise ValueError(
            f"{type(base).__name__} has no decoder body at base_model_prefix={prefix!r}; compile_model needs a "
            "transformers *ForCausalLM (its body, e.g. LlamaModel, is what runs in training and in generate)"
        )
    return {"llm": body, "vision": model.vpg.vision_model, "qformer": model.vpg.qformer}


def _check_parts(parts: Iterable[str] | str) -> tuple[str, ...]:
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: use some of {list(PARTS)}")
    return parts


def compile_model(
    model: VisionLLM,
    parts: Iterable[str] | str = ("llm",),
    mode: str | None = None,
    dynamic: bool | None = True,
    backend: str = "inductor",
    fullgraph: bool = False,
    options: dict[str, Any] | None = None,
) -> VisionLLM:
    """Compile the ``forward`` of each of ``parts`` (``PARTS``) of ``model`` with ``torch.compile``, in place.

    Args:
        model: a composed ``VisionLLM`` (its method already applied: LoRA layers are compiled with the LLM).
        parts: any of ``"llm"`` (the base LLM's decoder body), ``"vision"`` (vision tower), ``"qformer"``.
        mode: ``torch.compile``'s mode (``None``, ``"reduce-overhead"`` (CUDA graphs), ``"max-autotune"``, ...).
        dynamic: symbolic shapes (default ``True``: one graph for every batch size and sequence length).
        backend: ``torch.compile``'s backend (``"inductor"``; ``"aot_eager"`` traces without generating code: a
            quick check that a part compiles, no speed-up).
        fullgraph: refuse graph breaks (an error instead of eager islands).
        options: inductor options (``torch.compile(options=...)``).

    Returns:
        ``model`` itself, its parameter names unchanged. Compiling a part again replaces its compiled forward.
    """
    modules = hot_modules(model)
    for part in _check_parts(parts):
        modules[part].compile(mode=mode, dynamic=dynamic, backend=backend, fullgraph=fullgraph, options=options)
    return model


def uncompile_model(model: VisionLLM, parts: Iterable[str] | str = PARTS) -> VisionLLM:
    """Undo ``compile_model`` for ``parts``: their modules run eagerly again (in place; returns ``model``)."""
    modules = hot_modules(model)
    for part in _check_parts(parts):
        modules[part]._compiled_call_impl = None  # what nn.Module.compile sets; None is nn.Module's own default
    return model


def compiled_parts(model: VisionLLM) -> tuple[str, ...]:
    """The parts of ``model`` whose forward is compiled, in ``PARTS`` order."""
    return tuple(p for p, m in hot_modules(model).items() if getattr(m, "_compiled_call_impl", None) is not None)


def set_attention(model: VisionLLM, implementation: str = "sdpa", parts: Iterable[str] | str = PARTS) -> VisionLLM:
    """Use the attention ``implementation`` (``"sdpa"``, ``"eager"``, or another name transformers knows) in
    ``parts`` of ``model`` (default: the LLM, the vision tower and the Q-Former), in place; returns ``model``.

    For ``"llm"`` it is set on the whole base ``*ForCausalLM`` (its config is shared with the decoder body).
    """
    if not isinstance(implementation, str) or not implementation:
        raise ValueError(f"implementation={implementation!r}: use one of {list(ATTENTION)}")
    targets = {"llm": model.base_llm, "vision": model.vpg.vision_model, "qformer": model.vpg.qformer}
    for part in _check_parts(parts):
        module = targets[part]
        if not hasattr(module, "set_attn_implementation"):
            raise ValueError(
                f"part {part!r} ({type(module).__name__}) is not a transformers model: cannot set attention"
            )
        module.set_attn_implementation(implementation)
        if module.config._attn_implementation != implementation:
            raise ValueError(
                f"part {part!r} ({type(module).__name__}) kept attention {module.config._attn_implementation!r}: "
                f"it cannot switch to {implementation!r} after loading"
            )
    return model


def attention_of(model: VisionLLM) -> dict[str, str]:
    """``{part: attention implementation}`` of the LLM, the vision tower and the Q-Former."""
    return {
        "llm": str(model.base_llm.config._attn_implementation),
        "vision": str(model.vpg.vision_model.config._attn_implementation),
        "qformer": str(model.vpg.qformer.config._attn_implementation),
    }
