"""VictCollator: slots at the marker, labels on exactly the target, context-only truncation, padding, chat."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.data.collate import VictCollator
from vict.data.images import load_image
from vict.data.policy import BadImageError
from vict.data.prompts import Example, ExampleStream, InstructionBuilder

N_VISUAL = 5


@pytest.fixture(scope="module")
def examples(world_train) -> list[Example]:
    stream = ExampleStream(world_train, InstructionBuilder(), seed=0)
    return [stream[i] for i in range(40)]


def _target_ids(tok, ex: Example) -> list[int]:
    return tok(ex.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def _check_row(tok, ex: Example, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> None:
    real = mask.bool()
    ids, labels = ids[real].tolist(), labels[real].tolist()
    target = _target_ids(tok, ex)
    # Labels: exactly the target + eos, at the end; -100 everywhere else.
    assert [t for t in labels if t != IGNORE_INDEX] == target
    assert labels[-len(target) :] == target and all(t == IGNORE_INDEX for t in labels[: -len(target)])
    assert ids[-len(target) :] == target
    # Slots: n contiguous, right after bos (the default templates start with the marker).
    assert ids[0] == tok.bos_token_id
    assert ids[1 : 1 + N_VISUAL] == [IMAGE_SLOT_ID] * N_VISUAL and ids.count(IMAGE_SLOT_ID) == N_VISUAL
    prompt_after = ex.prompt.split("<image>")[1]
    assert ids[1 + N_VISUAL : -len(target)] == tok(prompt_after, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_labels_mask_exactly_the_target(word_tokenizer, examples, padding_side: str) -> None:
    collator = VictCollator(word_tokenizer, N_VISUAL, None, max_length=256, padding_side=padding_side)
    batch = collator(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["labels"].shape
    for i, ex in enumerate(examples):
        _check_row(word_tokenizer, ex, batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i])
        pad = ~batch["attention_mask"][i].bool()
        assert (batch["labels"][i][pad] == IGNORE_INDEX).all()
        assert (batch["input_ids"][i][pad] == word_tokenizer.pad_token_id).all()
        if pad.any():  # padding on the configured side only
            first_real = int(batch["attention_mask"][i].argmax())
            if padding_side == "right":
                assert first_real == 0 and pad[-1]
            else:
                assert pad[0] and not pad[first_real:].any()
    assert collator.truncated == 0


def test_bpe_tokenizer_target_boundary(examples) -> None:
    from vict.models.tokenizer import train_tokenizer

    texts = [ex.prompt.replace("<image>", "") + " " + ex.target for ex in examples]
    tok = train_tokenizer(texts, kind="bpe", vocab_size=400)
    collator = VictCollator(tok, N_VISUAL, None, max_length=512)
    batch = collator(examples[:10])
    for i, ex in enumerate(examples[:10]):
        labels = batch["labels"][i]
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept[-1] == tok.eos_token_id
        assert tok.decode(kept[:-1]).strip().lower() == ex.target.lower()


def test_sentencepiece_style_tokenizer_target_boundary(examples) -> None:
    """A Metaspace ("▁word") BPE, as in LLaMA-family tokenizers: the labels decode to exactly the target."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    raw.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    texts = [ex.prompt.replace("<image>", "") + " " + ex.target for ex in examples]
    raw.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"])
    )
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    batch = VictCollator(tok, N_VISUAL, None, max_length=512)(examples)
    for i, ex in enumerate(examples):
        kept = [t for t in batch["labels"][i].tolist() if t != IGNORE_INDEX]
        assert kept[-1] == tok.eos_token_id and tok.decode(kept[:-1]).strip() == ex.target


def test_truncation_cuts_context_never_target_or_slots(word_tokenizer, examples, caplog) -> None:
    long = [ex for ex in examples if ex.kind in ("qa_qa", "cap_qa")][:4]
    full = VictCollator(word_tokenizer, N_VISUAL, None, max_length=512)(long)
    lengths = full["attention_mask"].sum(1)
    max_length = int(lengths.min()) - 4
    collator = VictCollator(word_tokenizer, N_VISUAL, None, max_length=max_length)
    with caplog.at_level(logging.WARNING, logger="vict.data"):
        batch = collator(long)
    assert batch["input_ids"].shape[1] == max_length
    assert collator.truncated == len(long)
    assert collator.truncated_tokens == int((lengths - max_length).sum())
    assert any("truncated" in r.message and "max_length" in r.message for r in caplog.records)
    for i, ex in enumerate(long):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        target = _target_ids(word_tokenizer, ex)
        assert [t for t in labels if t != IGNORE_INDEX] == target
        assert ids[0] == word_tokenizer.bos_token_id and ids[1 : 1 + N_VISUAL] == [IMAGE_SLOT_ID] * N_VISUAL
        # What is left of the context is the END of the original context (oldest context removed first).
        original = full["input_ids"][i][: int(lengths[i])].tolist()
        context = ids[1 + N_VISUAL : -len(target)]
        assert original[1 + N_VISUAL : -len(target)][-len(context) :] == context


def test_target_that_cannot_fit_is_an_error(word_tokenizer, examples) -> None:
    ex = next(e for e in examples if e.kind == "cap")
    n_target = len(_target_ids(word_tokenizer, ex))
    assert n_target >= 4, "a caption target is several tokens long"
    collator = VictCollator(word_tokenizer, N_VISUAL, None, max_length=N_VISUAL + 3)
    with pytest.raises(ValueError, match=r"raise max_length") as e:
        collator([ex])
    assert f"image {ex.image_id}" in str(e.value)
    # One more token of room than the target needs: fits, with all context cut.
    fitting = VictCollator(word_tokenizer, N_VISUAL, None, max_length=1 + N_VISUAL + n_target)
    labels = fitting([ex])["labels"][0]
    assert (labels != IGNORE_INDEX).sum() == n_target and fitting.truncated == 1


def test_constructor_validates_everything_at_once(word_tokenizer) -> None:
    with pytest.raises(ValueError) as e:
        VictCollator(word_tokenizer, 8, None, max_length=8, padding_side="middle", use_chat_template=True)
    text = str(e.value)
    assert "max_length=8" in text and "padding_side='middle'" in text and "chat_template" in text


def test_encode_prompts_is_left_padded_and_matches_the_training_prefix(word_tokenizer, examples) -> None:
    collator = VictCollator(word_tokenizer, N_VISUAL, None, max_length=256, padding_side="right")
    train = collator(examples[:8])
    gen = collator.encode_prompts(examples[:8])
    assert set(gen) == {"input_ids", "attention_mask"}
    for i, ex in enumerate(examples[:8]):
        mask = gen["attention_mask"][i].bool()
        assert mask[-1]
        assert not mask[int(mask.float().argmax()) :].logical_not().any(), "left padding: pads only at the start"
        prompt_ids = gen["input_ids"][i][mask].tolist()
        n_target = len(_target_ids(word_tokenizer, ex))
        train_ids = train["input_ids"][i][train["attention_mask"][i].bool()].tolist()
        assert prompt_ids == train_ids[:-n_target]
    strings = collator.encode_prompts([ex.prompt for ex in examples[:3]])
    assert torch.equal(strings["input_ids"], collator.encode_prompts(examples[:3])["input_ids"])


def test_chat_template_labels_only_the_reply(chat_tokenizer, examples) -> None:
    collator = VictCollator(chat_tokenizer, N_VISUAL, None, max_length=256, use_chat_template=True)
    batch = collator(examples[:6])
    end_id = chat_tokenizer.convert_tokens_to_ids("<|end|>")
    assistant_id = chat_tokenizer.convert_tokens_to_ids("<|assistant|>")
    user_id = chat_tokenizer.convert_tokens_to_ids("<|user|>")
    for i, ex in enumerate(examples[:6]):
        real = batch["attention_mask"][i].bool()
        ids, labels = batch["input_ids"][i][real].tolist(), batch["labels"][i][real].tolist()
        labelled = [t for t in labels if t != IGNORE_INDEX]
        reply = chat_tokenizer(ex.target, add_special_tokens=False)["input_ids"]
        # The reply, then the turn's end marker, then eos (the template's reply has no eos of its own).
        assert labelled == [*reply, end_id, chat_tokenizer.eos_token_id]
        assert ids[0] == user_id and ids.count(IMAGE_SLOT_ID) == N_VISUAL
        first_label = next(j for j, t in enumerate(labels) if t != IGNORE_INDEX)
        assert ids[first_label - 1] == assistant_id, "everything up to the generation prompt is masked"
    prompts = collator.encode_prompts(examples[:2])
    last = prompts["input_ids"][:, -1].tolist()
    assert last == [assistant_id, assistant_id], "generation prompts end with the assistant header"


def test_pixel_values_come_from_the_images(word_tokenizer, image_processor, examples) -> None:
    collator = VictCollator(word_tokenizer, N_VISUAL, image_processor, max_length=256)
    batch = collator(examples[:3])
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    expected = image_processor(images=[load_image(ex.image_path) for ex in examples[:3]], return_tensors="pt")
    torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"])
    assert not torch.equal(batch["pixel_values"][0], batch["pixel_values"][1])


def test_bad_image_fails_fast_or_is_skipped_and_counted(word_tokenizer, image_processor, examples, tmp_path) -> None:
    broken = Example("cap", "<image> Describe.", "x", "404", tmp_path / "missing.png", None)
    batch_in = [examples[0], broken, examples[1]]
    with pytest.raises(BadImageError, match=r"missing\.png"):
        VictCollator(word_tokenizer, N_VISUAL, image_processor)(batch_in)
    skipping = VictCollator(word_tokenizer, N_VISUAL, image_processor, policy="skip")
    batch = skipping(batch_in)
    assert batch["input_ids"].shape[0] == 2 and batch["pixel_values"].shape[0] == 2
    assert skipping.policy.report.counts == {"missing_image": 1}
    assert "missing.png" in skipping.policy.report.summary()


def test_prompt_without_single_marker_is_rejected(word_tokenizer) -> None:
    collator = VictCollator(word_tokenizer, N_VISUAL, None)
    bad = Example("qa", "no marker here", "yes", "1", Path("1.png"), "short")
    with pytest.raises(ValueError, match="exactly once"):
        collator([bad])


def test_collator_pickles_for_dataloader_workers(word_tokenizer, image_processor, examples) -> None:
    import pickle

    collator = VictCollator(word_tokenizer, N_VISUAL, image_processor, policy="skip")
    clone = pickle.loads(pickle.dumps(collator))
    a, b = collator(examples[:2]), clone(examples[:2])
    assert all(torch.equal(a[k], b[k]) for k in a)
