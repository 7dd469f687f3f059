"""Fixtures for the data tests: a small generated world, tokenizers, an image processor."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from vict.data.dataset import load_world_split
from vict.data.world import generate_world

WORLD_IMAGES = 60


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-image world (seed 0): 48 train / 6 val / 6 test images."""
    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=WORLD_IMAGES, seed=0)
    return out


@pytest.fixture(scope="session")
def world_train(world_dir: Path):
    return load_world_split(world_dir, "train")


def _word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer on whitespace/punctuation with ``<s>`` prepended by the post-processor."""
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words) - set(specials)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def word_tokenizer(world_train) -> PreTrainedTokenizerFast:
    """Every word of the world's text and of the default templates has its own id (no ``<unk>``)."""
    from vict.data.prompts import load_templates

    texts = [c for r in world_train for c in r.captions]
    texts += [t for r in world_train for qa in r.qas for t in (qa.question, qa.answer, qa.full_answer)]
    texts += [t for kind in load_templates().values() for ts in kind.values() for t in ts]
    words = set()
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    for t in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(t))
    words.update(["{", "}", "<", ">", "user", "assistant", "<|user|>", "<|assistant|>", "<|end|>"])
    return _word_tokenizer(sorted(words))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture
def chat_tokenizer(word_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The word tokenizer with a small chat template whose turns end with ``<|end|>``."""
    import copy

    tok = copy.deepcopy(word_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def image_processor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers import BlipImageProcessor

        return BlipImageProcessor(size={"height": 32, "width": 32})
