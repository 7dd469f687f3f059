"""The connector seam: a connector with zero visual tokens that hands per-image extras to a method (the shape VLoRA
needs) trains and generates on the tiny model without touching VisionLLM; a projector starts from a given matrix."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vict.connectors.base import Connector, VisionFeatures, VisionInput
from vict.constants import IMAGE_SLOT_ID
from vict.data.collate import VictCollator
from vict.methods.base import LLMInputs, Method
from vict.models.builders import build_tiny
from vict.models.vision_llm import VisionLLM

PROMPTS = ["<image> what shape is left ?", "<image> describe the image ."]
TARGETS = ["a red circle", "two blue squares"]


@dataclass
class NoSettings:
    """No settings."""


class PooledVector(Connector):
    """No visual tokens: one vector per image (the mean of the ViT output through a Linear) in ``extras``."""

    name = "pooled_vector_test"
    description = "test: zero tokens, a per-image vector for the method"
    settings_class = NoSettings
    levels = ("pixels", "vision")

    def __init__(self, settings, vpg, d_llm, device=None) -> None:
        super().__init__(settings)
        self.proj = nn.Linear(vpg.vision_hidden_size, d_llm, device=device)
        self.d_llm = d_llm

    def num_tokens(self, vpg) -> int:
        return 0

    def cache_level(self, vpg, training: bool) -> str:
        return "vision"

    def features(self, vpg, pixel_values, level):
        self.check_level(level)
        return pixel_values if level == "pixels" else vpg.encode_vision(pixel_values)

    def forward(self, vpg, features: VisionFeatures) -> VisionInput:
        value = features.value if features.level == "vision" else vpg.encode_vision(features.value)
        vector = self.proj(value.float().mean(dim=1))
        empty = vector.new_zeros(vector.shape[0], 0, self.d_llm)
        return VisionInput(tokens=empty, extras={"vector": vector})


class AddVector(Method):
    """Adds the connector's per-image vector to every input embedding (through the ``prepare`` hook)."""

    name = "add_vector_test"
    description = "test: adds a per-image vector to the input embeddings"
    trains = "the connector only"
    settings_class = NoSettings
    default_connector = "pooled_vector_test"

    def prepare(self, inputs: LLMInputs, vision: VisionInput) -> LLMInputs:
        inputs.embeds = inputs.embeds + vision.extras["vector"][:, None, :].to(inputs.embeds.dtype)
        return inputs


@pytest.fixture
def zero_token_model(register):
    with register(PooledVector, AddVector):
        yield build_tiny("add_vector_test", num_extra_queries=0, seed=0)


def _batch(model: VisionLLM) -> dict:
    collator = VictCollator(model.tokenizer, num_visual_tokens=model.num_visual_tokens, max_length=64)
    from vict.data.prompts import Example

    examples = [Example("cap", p, t, str(i), None, None) for i, (p, t) in enumerate(zip(PROMPTS, TARGETS))]
    batch = collator(examples)
    batch["pixel_values"] = torch.randn(2, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    return batch


def test_zero_visual_tokens_train_and_generate(zero_token_model) -> None:
    model = zero_token_model
    assert model.num_visual_tokens == 0 and model.config.connector.type == "pooled_vector_test"
    batch = _batch(model)
    assert not (batch["input_ids"] == IMAGE_SLOT_ID).any(), "no image slots with zero visual tokens"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"vpg.extra_queries", "connector.proj.weight", "connector.proj.bias"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # The random tiny LM's frozen head bounds its logits, so a bias moves the loss only so far (measured 4.93 -> 4.72).
    assert losses[-1] < losses[0] - 0.1, losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"connector.proj.weight", "connector.proj.bias"}
    # The image reaches the LLM only through the method's hook: other images, other logits.
    with torch.no_grad():
        a = model(**batch, logits_on_labelled_only=False).logits
        b = model(**{**batch, "pixel_values": batch["pixel_values"].flip(0)}, logits_on_labelled_only=False).logits
    assert not torch.allclose(a, b)
    # Generation: left-padded prompts without slots; batched equals one by one.
    collator = VictCollator(model.tokenizer, num_visual_tokens=0, max_length=64, padding_side="left")
    prompts = collator.encode_prompts(PROMPTS)
    pixels = batch["pixel_values"]
    together = model.generate(pixels, prompts["input_ids"], prompts["attention_mask"], max_new_tokens=5)
    alone = []
    for i in range(2):
        keep = prompts["attention_mask"][i].bool()
        ids, mask = prompts["input_ids"][i : i + 1, keep], prompts["attention_mask"][i : i + 1, keep]
        alone += model.generate(pixels[i : i + 1], ids, mask, max_new_tokens=5)
    assert together == alone and len(together) == 2


def test_zero_token_model_round_trips_and_caches(zero_token_model, tmp_path) -> None:
    model = zero_token_model
    batch = _batch(model)
    with torch.no_grad():
        model.connector.proj.weight.add_(0.5)
        expected = model(**batch).loss
        features = model.vision_features(batch["pixel_values"], training=True)
        assert features.level == "vision"
        cached = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, features=features).loss
    assert torch.equal(cached, expected)
    out = model.save_pretrained(tmp_path / "ckpt")
    again = VisionLLM.from_pretrained(out)
    assert again.config.connector.type == "pooled_vector_test" and again.num_visual_tokens == 0
    with torch.no_grad():
        assert torch.equal(again(**batch).loss, expected)


def test_the_inference_layer_answers_with_a_zero_token_model(zero_token_model) -> None:
    from PIL import Image

    from vict.inference import Context, VictEngine

    images = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    engine = VictEngine(zero_token_model, max_new_tokens=4)
    assert engine.collator.num_visual_tokens == 0
    answers = engine.answer(images, ["what color is it?"] * 2, Context.own_caption())
    assert [a.caption for a in answers] == engine.caption(images) and engine.cache.encoded == 2
    plain = VictEngine(zero_token_model, max_new_tokens=4, reuse_features=False)
    assert [a.answer for a in answers] == [
        a.answer for a in plain.answer(images, ["what color is it?"] * 2, Context.own_caption())
    ]


def test_slots_in_a_zero_token_batch_are_an_error(zero_token_model) -> None:
    model = zero_token_model
    batch = _batch(model)
    ids = batch["input_ids"].clone()
    ids[0, 1] = IMAGE_SLOT_ID
    with pytest.raises(ValueError, match=r"exactly 0 image slots.*row 0: 1"):
        model(batch["pixel_values"], ids, batch["attention_mask"])


def test_a_connector_built_outside_starts_from_a_given_matrix(tmp_path, batch_factory) -> None:
    from vict.connectors.qformer_tokens import QFormerTokens, QFormerTokensSettings

    model = build_tiny("none", num_extra_queries=2, seed=0)
    weight = torch.randn(32, 32, generator=torch.Generator().manual_seed(3))
    bias = torch.randn(32, generator=torch.Generator().manual_seed(4))
    # 1. Injected: a connector built outside, initialised from the matrix, composed with fresh parts.
    connector = QFormerTokens(QFormerTokensSettings(), model.vpg, 32)
    connector.init_projection(weight, bias)
    composed = VisionLLM.compose(model.vpg, model.llm, model.tokenizer, model.config, connector=connector)
    assert composed.connector is connector and torch.equal(composed.connector.projection.weight, weight)
    # 2. From the config: connector.init_weights names a safetensors file.
    save_file({"weight": weight, "bias": bias}, str(tmp_path / "proj.safetensors"))
    configured = build_tiny(
        "none",
        num_extra_queries=2,
        seed=0,
        connector={"type": "qformer_tokens", "init_weights": str(tmp_path / "proj.safetensors")},
    )
    assert torch.equal(configured.connector.projection.weight, weight)
    assert torch.equal(configured.connector.projection.bias, bias)
    with torch.no_grad():
        batch = batch_factory(configured, ["what is it ?"], ["a star"])
        assert torch.equal(composed(**batch).loss, configured(**batch).loss)
    save_file({"weight": weight[:, :8].contiguous(), "bias": bias}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"bad.safetensors: weight \(32, 8\).*do not fit the projection"):
        build_tiny(
            "none", seed=0, connector={"type": "qformer_tokens", "init_weights": str(tmp_path / "bad.safetensors")}
        )
