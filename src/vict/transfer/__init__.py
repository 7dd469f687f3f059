"""VPGTrans's transfer of a VPG across LMs: the word converter, the merged projector init, the embeddings reader."""

from vict.transfer.converter import (
    fit_converter,
    fit_word_converter,
    load_converter,
    merge_projector,
    pair_tokens,
    save_converter,
)
from vict.transfer.embeddings import load_input_embeddings, load_source_projector

__all__ = [
    "fit_converter",
    "fit_word_converter",
    "load_converter",
    "load_input_embeddings",
    "load_source_projector",
    "merge_projector",
    "pair_tokens",
    "save_converter",
]
