"""``vict.models.compiled``: compiled vs eager and sdpa vs eager attention give the same greedy tokens and the same
training step (loss, gradients into the trainable parts) on the tiny model.

The default tier compiles with the ``aot_eager`` backend (dynamo + AOT autograd tracing of the real graphs: the KV-cached
decoding from ``inputs_embeds`` and the backward into LoRA and the visual tokens, without inductor's code generation,
which takes minutes on a shared 2-core machine); ``-m slow`` runs the same checks with inductor.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vict.models.builders import build_tiny
from vict.models.compiled import (
    PARTS,
    attention_of,
    compile_model,
    compiled_parts,
    hot_modules,
    set_attention,
    uncompile_model,
)

PROMPTS = ["what shape is left ?", "describe the image .", "how many circles ?"]
TARGETS = ["a red circle", "two blue squares next to a star", "three"]
NEW_TOKENS = 4


@pytest.fixture
def dynamo_reset() -> Iterator[None]:
    """Compiled graphs are cached per code object; start and leave every compile test with none."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _greedy(model, batch) -> torch.Tensor:
    return model.generate_ids(
        batch["pixel_values"], batch["input_ids"], batch["attention_mask"], max_new_tokens=NEW_TOKENS
    )


def _train_step(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients of one training forward + backward (gradients cleared first and after)."""
    model.zero_grad(set_to_none=True)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.eval()
    return float(loss.detach()), grads


def _check_compiled_matches_eager(backend: str, batch_factory) -> None:
    model = build_tiny("lora", num_extra_queries=4, seed=0)
    gen_batch = batch_factory(model, PROMPTS, side="left")  # batched, left padded, one image per row
    train_batch = batch_factory(model, PROMPTS, TARGETS)
    eager_ids = _greedy(model, gen_batch)
    eager_loss, eager_grads = _train_step(model, train_batch)

    names = set(model.state_dict())
    assert compile_model(model, parts=("llm",), backend=backend) is model
    assert compiled_parts(model) == ("llm",)
    assert set(model.state_dict()) == names  # in place: no "_orig_mod." prefixes, checkpoints unchanged

    compiled_ids = _greedy(model, gen_batch)
    assert compiled_ids.shape == (len(PROMPTS), NEW_TOKENS)
    assert compiled_ids.tolist() == eager_ids.tolist()
    compiled_loss, compiled_grads = _train_step(model, train_batch)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5, abs=1e-6)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(compiled_grads) == trainable == set(eager_grads)
    for name in trainable:
        torch.testing.assert_close(compiled_grads[name], eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # Through the compiled LLM into its LoRA matrices, and back out into the visual tokens (extra queries).
    assert any("lora_B" in n and compiled_grads[n].abs().sum() > 0 for n in trainable)
    assert compiled_grads["vpg.extra_queries"].abs().sum() > 0
    # Generation still agrees after a training step compiled its own graph.
    assert _greedy(model, gen_batch).tolist() == eager_ids.tolist()


def test_compiled_llm_matches_eager_traced(dynamo_reset, batch_factory) -> None:
    _check_compiled_matches_eager("aot_eager", batch_factory)


@pytest.mark.slow
def test_compiled_llm_matches_eager_inductor(dynamo_reset, batch_factory) -> None:
    _check_compiled_matches_eager("inductor", batch_factory)


@pytest.mark.slow
def test_compiled_vision_and_qformer_match_eager(dynamo_reset, batch_factory) -> None:
    model = build_tiny("lora", num_extra_queries=4, seed=0)
    batch = batch_factory(model, PROMPTS, side="left")
    eager = _greedy(model, batch)
    compile_model(model, parts=PARTS)
    assert compiled_parts(model) == PARTS
    assert _greedy(model, batch).tolist() == eager.tolist()


def test_compile_model_is_lazy_in_place_and_undone(tiny_model) -> None:
    names = set(tiny_model.state_dict())
    assert compiled_parts(tiny_model) == ()
    compile_model(tiny_model, parts="qformer")
    compile_model(tiny_model, parts=("llm",))
    assert compiled_parts(tiny_model) == ("llm", "qformer")
    assert set(tiny_model.state_dict()) == names
    assert hot_modules(tiny_model)["llm"] is tiny_model.base_llm.model
    uncompile_model(tiny_model)
    assert compiled_parts(tiny_model) == ()
    with pytest.raises(ValueError, match="unknown part"):
        compile_model(tiny_model, parts=("decoder",))


def test_sdpa_and_eager_attention_give_identical_outputs(tiny_model, batch_factory) -> None:
    assert attention_of(tiny_model) == {"llm": "sdpa", "vision": "sdpa", "qformer": "sdpa"}  # transformers' default
    gen_batch = batch_factory(tiny_model, PROMPTS, side="left")
    train_batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    sdpa_ids = _greedy(tiny_model, gen_batch)
    sdpa_loss, sdpa_grads = _train_step(tiny_model, train_batch)

    assert set_attention(tiny_model, "eager") is tiny_model
    assert attention_of(tiny_model) == {"llm": "eager", "vision": "eager", "qformer": "eager"}
    assert tiny_model.base_llm.model.config._attn_implementation == "eager"  # the body shares the config
    assert _greedy(tiny_model, gen_batch).tolist() == sdpa_ids.tolist()
    eager_loss, eager_grads = _train_step(tiny_model, train_batch)
    assert eager_loss == pytest.approx(sdpa_loss, rel=1e-5, abs=1e-6)
    assert set(eager_grads) == set(sdpa_grads)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grad, sdpa_grads[name], rtol=1e-4, atol=1e-6, msg=name)

    set_attention(tiny_model, "sdpa", parts=("vision",))
    assert attention_of(tiny_model) == {"llm": "eager", "vision": "sdpa", "qformer": "eager"}
    with pytest.raises(ValueError, match="unknown part"):
        set_attention(tiny_model, "sdpa", parts=("connector",))
