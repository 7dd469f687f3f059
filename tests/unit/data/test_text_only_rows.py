"""Text-only rows (mixed-modality training, problems without an image): an Example without image and marker gets no
image slots and a zero image; the model drops its visual tokens, routes it as text only, and computes it exactly as
the same text alone; image rows in the same batch are unchanged."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vict.connectors.base import HAS_IMAGE
from vict.constants import IGNORE_INDEX, IMAGE_MARKER, IMAGE_SLOT_ID
from vict.data.collate import VictCollator, is_text_only
from vict.data.prompts import Example
from vict.models.builders import build_tiny


def _examples(tmp_path) -> list[Example]:
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(path)
    with_image = Example("qa", f"{IMAGE_MARKER} what colour is it ?", "red", "img1", path, "short")
    text = Example("qa", "Image: N/A. Which word names a shape ?", "circle", "text1", None, "short")
    return [with_image, text]


@pytest.mark.parametrize("method", ["lora", "mm_adapter"])
def test_a_mixed_batch_trains_the_text_row_as_text_alone(method: str, tmp_path) -> None:
    model = build_tiny({"type": method, **({"dropout": 0.0} if method == "mm_adapter" else {})}, seed=0).eval()
    with torch.no_grad():  # a trained-like delta, so routing by modality matters
        gen = torch.Generator().manual_seed(1)
        for name, param in model.named_parameters():
            if param.requires_grad and model.method.owns(name):
                param.add_(torch.randn(param.shape, generator=gen) * 0.3)
    image_row, text_row = _examples(tmp_path)
    assert not is_text_only(image_row) and is_text_only(text_row)
    collate = VictCollator(model.tokenizer, model.num_visual_tokens, model.image_processor, max_length=128)
    mixed = collate([image_row, text_row])
    slots = (mixed["input_ids"] == IMAGE_SLOT_ID).sum(1).tolist()
    assert slots == [model.num_visual_tokens, 0]
    assert torch.count_nonzero(mixed["pixel_values"][1]) == 0 and torch.count_nonzero(mixed["pixel_values"][0]) > 0
    assert (mixed["labels"][1] != IGNORE_INDEX).sum() >= 2  # the target and eos
    alone_text, alone_image = collate([text_row]), collate([image_row])
    assert alone_text["pixel_values"].shape == alone_image["pixel_values"].shape

    def logits(batch: dict) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits

    with torch.no_grad():
        both, text, image = logits(mixed), logits(alone_text), logits(alone_image)
        # and the loss of the mixed batch is the mean over both rows' target tokens
        n_tgt = [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in (alone_image, alone_text)]
        mean = (model(**alone_image).loss * n_tgt[0] + model(**alone_text).loss * n_tgt[1]) / sum(n_tgt)
        torch.testing.assert_close(model(**mixed).loss, mean, rtol=1e-5, atol=1e-5)
    n_text = int(alone_text["attention_mask"].sum())
    n_image = int(alone_image["attention_mask"].sum())
    torch.testing.assert_close(both[1, :n_text], text[0, :n_text], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[0, :n_image], image[0, :n_image], rtol=1e-5, atol=1e-5)
    # the model marks the rows; LaVIN's router sends them different ways
    _, vision = model._llm_inputs(mixed["pixel_values"], mixed["input_ids"], mixed["attention_mask"], None, None)
    assert vision.extras[HAS_IMAGE].tolist() == [True, False]
    if method == "mm_adapter":
        with torch.no_grad(), model.method.bind(vision) as routing:
            assert not torch.equal(routing[0][0], routing[0][1])


def test_generation_mixes_text_only_and_image_prompts(tmp_path) -> None:
    model = build_tiny({"type": "mm_adapter", "dropout": 0.0}, seed=0).eval()
    image_row, text_row = _examples(tmp_path)
    collate = VictCollator(model.tokenizer, model.num_visual_tokens, model.image_processor, max_length=128)
    image = Image.open(image_row.image_path)
    both = collate.encode_prompts([image_row.prompt, text_row.prompt], images=[image, None])
    assert (both["input_ids"][1] == IMAGE_SLOT_ID).sum() == 0
    together = model.generate(**both, max_new_tokens=5)
    one = [
        model.generate(**collate.encode_prompts([p], images=[img]), max_new_tokens=5)[0]
        for p, img in ((image_row.prompt, image), (text_row.prompt, None))
    ]
    assert together == one


def test_a_marker_in_a_text_only_prompt_or_a_split_row_is_refused(tmp_path) -> None:
    model = build_tiny("lora", seed=0)
    collate = VictCollator(model.tokenizer, model.num_visual_tokens, None, max_length=128)
    with pytest.raises(ValueError, match="must not hold"):
        collate.encode_prompts([f"{IMAGE_MARKER} what ?"], images=[None])
    ids = torch.tensor([[1, IMAGE_SLOT_ID, 5, 6]])
    with pytest.raises(ValueError, match="or none"):
        model.embed_inputs(ids, torch.zeros(1, model.num_visual_tokens, model.base_llm.config.hidden_size))


def test_a_text_only_row_learns_the_target_tokens_an_image_row_learns() -> None:
    """With a BPE tokenizer (a word's leading space is part of its token), a text-only row's target is tokenized as
    it follows its prompt in running text, the same ids as the image row of the same instruction: the target is
    not glued to the prompt's last word (which taught text-only rows other tokens for the same answer)."""
    from transformers import AutoTokenizer

    from vict.data.mixing import text_only_prompt
    from vict.zoo.shipped import shipped_zoo

    tok = AutoTokenizer.from_pretrained(shipped_zoo("default", check=False).target_lm_dir)
    collate = VictCollator(tok, 4, None, max_length=128)
    prompt = f"{IMAGE_MARKER} a small blue square on the left. Question: what colour is the square? Short answer:"
    for target in ("blue", "The answer is A."):
        image_row = Example("cap_qa", prompt, target, "1", None, "short")
        text_row = Example("cap_qa", text_only_prompt(prompt), target, "1", None, "short")
        assert is_text_only(text_row) and not is_text_only(image_row)

        def target_ids(ex: Example) -> list[int]:
            batch = collate([ex])
            return batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX].tolist()

        running = tok(text_only_prompt(prompt) + " " + target, add_special_tokens=False)["input_ids"]
        expected = running[len(tok(text_only_prompt(prompt), add_special_tokens=False)["input_ids"]) :]
        assert target_ids(text_row) == target_ids(image_row) == [*expected, tok.eos_token_id]
        # and the prompt's ids are those inference feeds the model (encode_prompts of the same text-only prompt)
        prompt_ids = collate.encode_prompts([text_row.prompt], images=[None])["input_ids"][0].tolist()
        assert collate([text_row])["input_ids"][0].tolist() == prompt_ids + target_ids(text_row)
