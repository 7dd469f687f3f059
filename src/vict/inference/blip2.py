"""A plain BLIP-2 (``vict.eval.blip2_baseline.Blip2Baseline``) behind the engine interface, with BLIP-2's prompts.

Contexts map to BLIP-2's prompt style (LAVIS evaluation prompts, the context first): ``none`` ->
``"Question: {q} Short answer:"``; ``caption`` and ``self`` (its own caption) -> ``"{caption} Question: {q} Short
answer:"``; ``qa`` -> ``"Question: {q'} Short answer: {a'} Question: {q} Short answer:"``. BLIP-2 answers only
short: it has no sentence style. Each image's projected Q-Former outputs are computed once (one ``FeatureCache``)
and its own caption once, until ``release()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vict.eval.blip2_baseline import BLIP2_CAPTION_PROMPT
from vict.inference.context import Context
from vict.inference.engine import MAX_IMAGES, Engine, ImageLike, chunks, open_image
from vict.models.feature_cache import FeatureCache, image_key

MAX_NEW_TOKENS: dict[str, int] = {"caption": 30, "short": 10}
"""LAVIS BLIP-2 evaluation budgets: captions max_len 30, GQA answers max_len 10."""


def context_text(context: Context, own_caption: str | None) -> str | None:
    """The text BLIP-2's prompt puts before the question (``None``: the plain question prompt)."""
    if context.kind == "none":
        return None
    if context.kind == "qa":
        question, answer = context.qa  # type: ignore[misc]
        return f"Question: {question} Short answer: {answer}"
    return own_caption if context.kind == "self" else context.caption


class Blip2Engine(Engine):
    """Captions and short answers of a plain BLIP-2, with the same interface as ``VictEngine``.

    Args:
        blip2: a ``Blip2Baseline``.
        name: shown in progress bars and reports.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: one budget for captions and answers (default 30 / 10, as LAVIS).
        reuse_features: cache each image's projected Q-Former outputs (``False``: recompute per prompt).
        max_images: bound of the feature cache and the caption memory.
    """

    kind = "blip2"
    supports_sentence = False
    caption_prompt = BLIP2_CAPTION_PROMPT

    def __init__(
        self,
        blip2: Any,
        name: str = "BLIP-2",
        batch_size: int = 32,
        max_new_tokens: int | None = None,
        reuse_features: bool = True,
        max_images: int | None = MAX_IMAGES,
    ) -> None:
        super().__init__(name, batch_size, max_images)
        self.blip2, self.max_new_tokens = blip2, max_new_tokens
        if reuse_features:
            self.cache = FeatureCache(blip2.image_features, open_image, batch_size=batch_size, max_images=max_images)

    def _prompt(self, question: str, context: Context, own_caption: str | None, style: str) -> str:
        return self.blip2.prompt(question, context_text(context, own_caption))

    def _budget(self, kind: str, max_new_tokens: int | None) -> int:
        return max_new_tokens or self.max_new_tokens or MAX_NEW_TOKENS[kind]

    @torch.inference_mode()
    def _complete(
        self, images: Sequence[ImageLike], prompts: Sequence[str], max_new_tokens: int, progress: str | None
    ) -> list[str]:
        slices = list(chunks(len(prompts), self.batch_size))
        if progress:
            from tqdm.auto import tqdm

            slices = tqdm(slices, desc=progress, leave=False, disable=None)
        out: list[str] = []
        for sl in slices:
            batch = images[sl]
            if self.cache is None:
                out += self.blip2.generate([open_image(im) for im in batch], prompts[sl], max_new_tokens)
            else:
                feats = self.cache.get([image_key(im) for im in batch], batch, self.blip2.device)
                out += self.blip2.generate(None, prompts[sl], max_new_tokens, image_features=feats)
        return out
