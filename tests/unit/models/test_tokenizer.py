"""The in-process tokenizers: special ids, bos, padding side, decode round trip, save/load."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from vict.models.tokenizer import BUILTIN_WORDS, builtin_tokenizer, train_tokenizer

TEXTS = [
    "A red circle is left of a blue square.",
    "How many triangles are there? Two, I don't know.",
    "Is the green star above the yellow circle? Yes.",
]


@pytest.mark.parametrize("kind", ["wordlevel", "bpe"])
def test_special_ids_bos_and_round_trip(kind: str) -> None:
    tok = train_tokenizer(TEXTS * 2, kind=kind, vocab_size=400)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    text = "how many  triangles are there? two, i don't know."
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    # Whitespace runs collapse; everything else comes back exactly.
    assert tok.decode(ids, skip_special_tokens=True) == "how many triangles are there? two, i don't know."


def test_lowercase_flag_and_unknown_words() -> None:
    tok = train_tokenizer(TEXTS, kind="wordlevel", lowercase=False)
    assert tok.decode(tok("A red circle")["input_ids"], skip_special_tokens=True) == "A red circle"
    lower = train_tokenizer(TEXTS, kind="wordlevel")
    ids = lower("A zebra")["input_ids"]
    assert ids[-1] == lower.unk_token_id
    assert lower.decode(ids, skip_special_tokens=True) == "a"


def test_wordlevel_vocab_size_and_min_frequency() -> None:
    tok = train_tokenizer(["red red blue"], kind="wordlevel", min_frequency=2)
    vocab = tok.get_vocab()
    assert "▁red" in vocab and "▁blue" not in vocab
    assert len(train_tokenizer(TEXTS, vocab_size=10)) == 10


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side(side: str) -> None:
    tok = train_tokenizer(TEXTS, padding_side=side)
    batch = tok(["a red", "a red circle"], padding=True)
    short = batch["input_ids"][0]
    assert (short[0] if side == "left" else short[-1]) == tok.pad_token_id
    assert batch["attention_mask"][0] == ([0, 1, 1, 1] if side == "left" else [1, 1, 1, 0])


@pytest.mark.parametrize("kind", ["wordlevel", "bpe"])
def test_save_and_reload(tmp_path, kind: str) -> None:
    tok = train_tokenizer(TEXTS, kind=kind, padding_side="left")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(TEXTS[1])["input_ids"] == tok(TEXTS[1])["input_ids"]
    assert again.padding_side == "left" and again.pad_token_id == 0


def test_builtin_tokenizer_covers_builtin_words() -> None:
    tok = builtin_tokenizer()
    ids = tok(" ".join(BUILTIN_WORDS), add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown kind 'sentencepiece'"):
        train_tokenizer(TEXTS, kind="sentencepiece")
    with pytest.raises(ValueError, match="padding_side"):
        train_tokenizer(TEXTS, padding_side="middle")
