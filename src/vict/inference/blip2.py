"""A plain BLIP-2 (``vict.eval.blip2_baseline.Blip2Baseline``) behind the engine interface, with BLIP-2's prompts.

Contexts map to BLIP-2's prompt style (LAVIS evaluation prompts, the context first): ``none`` ->
``"Question: {q} Short answer:"``; ``caption`` and ``self`` (its own caption) -> ``"{caption} Question: {q} Short
answer:"``; ``qa`` -> ``"Question: {q'} Short answer: {a'} Question: {q} Short answer:"``. BLIP-2 answers only
short: it has no sentence style. Each image's projected Q-Former outputs are computed once (one ``FeatureCache``)
and its own caption once, until ``release()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vict.inference.context import Context
from vict.inference.engine import (
    MAX_IMAGES,
    Answer,
    CaptionMemory,
    ImageLike,
    as_contexts,
    check_questions,
    open_image,
)
from vict.models.feature_cache import FeatureCache, image_key

CAPTION_MAX_NEW_TOKENS = 30
"""LAVIS BLIP-2 caption evaluation: max_len 30."""
ANSWER_MAX_NEW_TOKENS = 10
"""LAVIS BLIP-2 GQA evaluation: max_len 10."""


def context_text(context: Context, own_caption: str | None) -> str | None:
    """The text BLIP-2's prompt puts before the question (``None``: the plain question prompt)."""
    if context.kind == "none":
        return None
    if context.kind == "qa":
        question, answer = context.qa  # type: ignore[misc]
        return f"Question: {question} Short answer: {answer}"
    return own_caption if context.kind == "self" else context.caption


class Blip2Engine:
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

    def __init__(
        self,
        blip2: Any,
        name: str = "BLIP-2",
        batch_size: int = 32,
        max_new_tokens: int | None = None,
        reuse_features: bool = True,
        max_images: int | None = MAX_IMAGES,
    ) -> None:
        self.blip2, self.name, self.batch_size = blip2, name, batch_size
        self.caption_budget = max_new_tokens or CAPTION_MAX_NEW_TOKENS
        self.answer_budget = max_new_tokens or ANSWER_MAX_NEW_TOKENS
        self.cache = (
            FeatureCache(blip2.image_features, open_image, batch_size=batch_size, max_images=max_images)
            if reuse_features
            else None
        )
        self.captions = CaptionMemory(max_images)

    def release(self) -> None:
        """Drop the cached features and captions."""
        if self.cache is not None:
            self.cache.clear()
        self.captions.clear()

    def _inputs(self, images: Sequence[ImageLike]) -> dict[str, Any]:
        """``{"images": [...]}`` or, reusing features, ``{"image_features": (b, n_query, d_lm)}`` for a batch."""
        if self.cache is None:
            return {"images": [open_image(im) for im in images]}
        feats = self.cache.get([image_key(im) for im in images], images, self.blip2.device)
        return {"images": None, "image_features": feats}

    def _batched(self, fn: Callable[[slice], list[str]], n: int, desc: str) -> list[str]:
        from tqdm.auto import tqdm

        out: list[str] = []
        for start in tqdm(range(0, n, self.batch_size), desc=desc, leave=False, disable=None):
            out += fn(slice(start, min(n, start + self.batch_size)))
        return out

    def caption(self, images: Sequence[ImageLike], max_new_tokens: int | None = None, progress: str | None = None):
        """One caption per image (BLIP-2's empty caption prompt), each distinct image once."""
        budget = max_new_tokens or self.caption_budget
        keys = [image_key(im) for im in images]
        todo = self.captions.missing(keys, budget)
        todo_images = [images[i] for i in todo]
        texts = self._batched(
            lambda sl: self.blip2.caption(max_new_tokens=budget, **self._inputs(todo_images[sl])),
            len(todo),
            progress or f"{self.name}: captions",
        )
        for i, text in zip(todo, texts):
            self.captions.put(keys[i], budget, text, images[i])
        return self.captions.get(keys, budget)

    def answer(
        self,
        images: Sequence[ImageLike],
        questions: Sequence[str],
        context: Context | Sequence[Context] | None = None,
        style: str = "short",
        max_new_tokens: int | None = None,
        caption_max_new_tokens: int | None = None,
        progress: str | None = None,
    ) -> list[Answer]:
        """Short answers (``style`` must be ``short``); see the module docstring for the prompts."""
        check_questions(images, questions, style)
        if style != "short":
            raise ValueError(f"style={style!r}: a plain BLIP-2 answers in the short style only")
        contexts = as_contexts(context or Context.none(), len(questions))
        own: list[str | None] = [None] * len(questions)
        need = [i for i, c in enumerate(contexts) if c.kind == "self"]
        if need:
            for i, text in zip(need, self.caption([images[i] for i in need], caption_max_new_tokens)):
                own[i] = text
        texts_before = [context_text(c, own[i]) for i, c in enumerate(contexts)]
        budget = max_new_tokens or self.answer_budget

        def run(sl: slice) -> list[str]:
            return self.blip2.answer(
                questions=list(questions[sl]),
                contexts=texts_before[sl],
                max_new_tokens=budget,
                **self._inputs(images[sl]),
            )

        texts = self._batched(run, len(questions), progress or f"{self.name}: GQA")
        return [
            Answer(
                question=q,
                answer=t,
                mode=c.kind,
                style=style,
                caption=own[i] if c.kind == "self" else c.caption,
                context_qa=c.qa,
                prompt=self.blip2.prompt(q, texts_before[i]),
            )
            for i, (q, t, c) in enumerate(zip(questions, texts, contexts))
        ]
