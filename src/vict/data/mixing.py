"""Mixed-modality training streams: image-text instructions, text-only instructions and ScienceQA problems in one
stream, each example a pure function of ``(seed, index)`` like ``ExampleStream``'s.

Data flow of example ``i`` (``MixedStream``):

    rng(seed, i) ─► ScienceQA with probability ``sqa_ratio`` ─► ProblemStream[i]: one problem, LaVIN's prompt
                │                                              (``scienceqa_model_prompt``; a problem without image
                │                                              is a text-only row)
                └─► otherwise ExampleStream[i] (VICT's five kinds) ─► with probability ``text_only_ratio``, an
                    instruction that carries a caption as text (``cap_qa``) loses its image: the marker becomes
                    ``TEXT_ONLY_PREFIX`` and the row has no image slots (LaVIN's text-only samples, drawn from the
                    same annotations)

Text-only rows have ``image_path=None`` and no marker (``vict.data.collate.is_text_only``); the collator gives them
no image slots and the model routes them as text only. Both sub-streams keep their own epoch order; the mixed
stream reads ``sub[i]`` (not a count of earlier draws), so any example is computed without the ones before it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from typing import Any

from vict.constants import IMAGE_MARKER
from vict.data.prompts import Example, ExampleStream
from vict.data.scienceqa import TEXT_ONLY_PREFIX, ScienceQAProblem, scienceqa_model_prompt

TEXT_ONLY_KINDS: tuple[str, ...] = ("cap_qa",)
"""Instruction kinds that can drop their image: the prompt gives a caption as text, so the answer can follow."""


def text_only_prompt(prompt: str) -> str:
    """An image prompt made text only, as training makes its text-only rows: the image marker becomes
    ``TEXT_ONLY_PREFIX`` (``ValueError`` for a prompt without the marker)."""
    if IMAGE_MARKER not in prompt:
        raise ValueError(f"the prompt holds no {IMAGE_MARKER!r} to replace: {prompt[:80]!r}")
    return prompt.replace(IMAGE_MARKER, TEXT_ONLY_PREFIX, 1)


def to_text_only(example: Example) -> Example:
    """``example`` without its image: the marker becomes ``TEXT_ONLY_PREFIX``, no ``image_path``."""
    try:
        prompt = text_only_prompt(example.prompt)
    except ValueError as err:
        raise ValueError(f"image {example.image_id}: {err}") from err
    return dataclasses.replace(example, prompt=prompt, image_path=None, kind=f"{example.kind}_text")


class ProblemStream:
    """Endless stream of ScienceQA problems as examples (kind ``sqa``), epoch-shuffled by ``(seed, epoch)``."""

    def __init__(self, problems: Sequence[ScienceQAProblem], fmt: str = "QCM-A", seed: int = 0) -> None:
        if not problems:
            raise ValueError("no ScienceQA problems to train on: check data.scienceqa and its split")
        self.problems, self.fmt, self.seed = list(problems), fmt, seed
        self._epoch, self._order = -1, []

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, i: int) -> Example:
        if i < 0:
            raise IndexError(f"example index {i} < 0")
        epoch, j = divmod(i, len(self.problems))
        if epoch != self._epoch:
            order = list(range(len(self.problems)))
            random.Random(f"vict-sqa-stream:{self.seed}:epoch:{epoch}").shuffle(order)
            self._epoch, self._order = epoch, order
        problem = self.problems[self._order[j]]
        return problem_example(problem, self.fmt)


def problem_example(problem: ScienceQAProblem, fmt: str = "QCM-A") -> Example:
    """One ScienceQA problem as a training example (its image, or a text-only row)."""
    prompt, target = scienceqa_model_prompt(problem, fmt)
    return Example("sqa", prompt, target, problem.pid, problem.image, None, question_id=problem.pid)


class MixedStream:
    """VICT's instructions, text-only ones and ScienceQA problems in one stream (see the module docstring).

    Args:
        images: the image-text instruction stream (``ExampleStream``); ``None`` with ``sqa_ratio=1``.
        problems: ScienceQA problems (``ProblemStream``); needed when ``sqa_ratio > 0``.
        sqa_ratio: fraction of examples drawn from ``problems``.
        text_only_ratio: fraction of the ``TEXT_ONLY_KINDS`` instructions that drop their image.
    """

    def __init__(
        self,
        images: ExampleStream | None,
        problems: ProblemStream | None = None,
        sqa_ratio: float = 0.0,
        text_only_ratio: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= sqa_ratio <= 1.0 or not 0.0 <= text_only_ratio <= 1.0:
            raise ValueError(f"sqa_ratio={sqa_ratio}, text_only_ratio={text_only_ratio}: both must be in [0, 1]")
        if sqa_ratio > 0 and problems is None:
            raise ValueError("sqa_ratio > 0 needs ScienceQA problems (data.scienceqa)")
        if sqa_ratio < 1 and images is None:
            raise ValueError("sqa_ratio < 1 needs image-text records")
        self.images, self.problems = images, problems
        self.sqa_ratio, self.text_only_ratio, self.seed = sqa_ratio, text_only_ratio, seed

    @property
    def records(self) -> list[Any]:
        """The image records (validation samples read them)."""
        return self.images.records if self.images is not None else []

    @property
    def dropped(self) -> int:
        return self.images.dropped if self.images is not None else 0

    def __len__(self) -> int:
        """Examples per epoch: the image records' count scaled so that they fill ``1 - sqa_ratio`` of it."""
        if self.images is None:
            return len(self.problems)
        if self.sqa_ratio == 0:
            return len(self.images)
        return max(1, round(len(self.images) / (1.0 - self.sqa_ratio))) if self.sqa_ratio < 1 else len(self.problems)

    def __getitem__(self, i: int) -> Example:
        if i < 0:
            raise IndexError(f"example index {i} < 0")
        rng = random.Random(f"vict-mixed:{self.seed}:{i}")
        if self.problems is not None and rng.random() < self.sqa_ratio:
            return self.problems[i]
        example = self.images[i]
        if example.kind in TEXT_ONLY_KINDS and rng.random() < self.text_only_ratio:
            return to_text_only(example)
        return example

    def iter_from(self, start: int = 0) -> Iterator[Example]:
        i = start
        while True:
            yield self[i]
            i += 1
