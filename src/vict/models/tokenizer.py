"""Small tokenizers trained in-process with the `tokenizers` library.

The miniature model zoo and the tests need real tokenizers (saved and reloaded like any Hugging Face
tokenizer) without downloads. ``train_tokenizer`` builds one from a handful of texts; ``BUILTIN_WORDS`` lets
the tiny builder make one with no input at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS: list[str] = [PAD, BOS, EOS, UNK]
"""Special tokens, in id order: ``<pad>`` = 0, ``<s>`` = 1, ``<s/>`` = 2, ``<unk>`` = 3."""

TOKENIZER_KINDS = ("wordlevel", "bpe")

_BUILTIN_TEXT = """
    a an the this that these those is are was there here it its of in on at to from with and or not no yes
    what which who where how many much color colour shape size left right above below top bottom middle
    center next near far behind front between image picture photo scene shows contains has have one two
    three four five six seven eight nine ten zero small large big tiny medium red green blue yellow orange
    purple pink brown black white gray grey circle square triangle rectangle star diamond ellipse cross
    object objects thing things same different than more fewer less bigger smaller larger same both any
    answer question caption describe short sentence word background foreground side corner edge
    . , ? ! : ; ' -
"""
BUILTIN_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_BUILTIN_TEXT.split()))
"""A small English word list covering the miniature world's captions and questions (for ``build_tiny``)."""


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "wordlevel",
    vocab_size: int = 2000,
    min_frequency: int = 1,
    lowercase: bool = True,
    padding_side: str = "right",
) -> PreTrainedTokenizerFast:
    """Train a small tokenizer on ``texts`` and wrap it as a Hugging Face fast tokenizer.

    Args:
        texts: training texts (any iterable of strings; consumed once).
        kind: ``"wordlevel"`` (whitespace + punctuation split, unknown words map to ``<unk>``) or ``"bpe"``
            (byte-level BPE: every string is representable, no ``<unk>`` in practice).
        vocab_size: maximum vocabulary size, special tokens included.
        min_frequency: minimum count for a word (wordlevel) or merge (bpe) to enter the vocabulary.
        lowercase: lowercase (and NFKC-normalise) text before splitting.
        padding_side: ``"right"`` for training batches, ``"left"`` for generation; settable later as
            ``tokenizer.padding_side``.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``<pad>``=0, ``<s>``=1 (bos), ``</s>``=2 (eos), ``<unk>``=3,
        whose encodings start with ``<s>`` (no eos is appended: the caller adds it to targets) and whose
        ``decode(..., skip_special_tokens=True)`` restores words with normal spacing around punctuation.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"train_tokenizer: unknown kind {kind!r}; use one of {list(TOKENIZER_KINDS)}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"train_tokenizer: vocab_size={vocab_size} leaves no room beyond the 4 special tokens")
    if padding_side not in ("left", "right"):
        raise ValueError(f"train_tokenizer: padding_side must be 'left' or 'right', got {padding_side!r}")

    # Runs of whitespace collapse to one space so that decode(encode(text)) == normalised text.
    norm = [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    norm += [normalizers.Lowercase()] if lowercase else []
    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        # Metaspace marks word starts ("▁red"), then punctuation is split off ("▁there", "?"), so the decoder
        # restores the exact spacing: "there?", "don't", "a , b" all round-trip. Every word is encoded the same
        # way alone or in context, so a prompt and a target can be tokenized separately and concatenated.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
                pre_tokenizers.Punctuation(),
            ]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS
        )
    else:
        tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    tok.normalizer = normalizers.Sequence(norm)
    tok.train_from_iterator((t for t in texts), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
    )
    return fast


def builtin_tokenizer(kind: str = "wordlevel", padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A tokenizer over ``BUILTIN_WORDS`` (no input texts needed); used by ``build_tiny``."""
    return train_tokenizer([" ".join(BUILTIN_WORDS)], kind=kind, vocab_size=4096, padding_side=padding_side)
