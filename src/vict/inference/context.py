"""What a question is answered with: one ``Context`` value, mapped to prompt kinds in one table.

| context   | answer prompt (``InstructionBuilder`` kind)                            |
|-----------|------------------------------------------------------------------------|
| ``none``    | ``qa``: the question alone                                           |
| ``caption`` | ``cap_qa``: a caption given by the user, then the question           |
| ``qa``      | ``qa_qa``: another question-answer pair given by the user, then the question |
| ``self``    | ``cap_qa`` with the model's own caption (made first with the ``cap`` prompt) |

Where a given caption or pair comes from is the caller's business. ``vict eval``'s GQA settings
(``vict.eval.splits.SETTINGS``) map onto these kinds: ``caption``, ``dense`` (the image's dense caption) and
``distractor`` (another image's gold caption) are all ``caption`` contexts with another caption source; ``qa`` is a
``qa`` context (another question-answer pair of the same image); ``none`` and ``self`` are themselves.

Every face of ``vict`` (``vict ask``, ``vict eval``, the quickstart, the server) builds a ``Context`` and hands it
to an engine (``vict.inference.engine``); none of them decides anything else about modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTEXT_KINDS: tuple[str, ...] = ("none", "caption", "qa", "self")
PROMPT_KINDS: dict[str, str] = {"none": "qa", "caption": "cap_qa", "qa": "qa_qa", "self": "cap_qa"}
"""Context kind -> the instruction kind of the answer prompt."""
CAPTION_KIND = "cap"
"""The instruction kind of a caption (and of the first pass of ``self``)."""
EMPTY_CAPTION = "."
"""Stands in for an empty generated caption in ``self`` prompts (a template needs non-empty text)."""


@dataclass(frozen=True)
class Context:
    """The context of one question. Build with ``Context.none()``, ``Context.given_caption(text)``,
    ``Context.given_qa(question, answer)`` or ``Context.own_caption()``; invalid combinations raise ``ValueError``.

    Attributes:
        kind: one of ``CONTEXT_KINDS``.
        caption: the given caption (``caption`` kind), whitespace-normalised.
        qa: the given ``(question, answer)`` pair (``qa`` kind).
    """

    kind: str = "none"
    caption: str | None = None
    qa: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONTEXT_KINDS:
            raise ValueError(f"context kind {self.kind!r}: use one of {list(CONTEXT_KINDS)}")
        if self.kind == "caption":
            if not isinstance(self.caption, str) or not self.caption.strip():
                raise ValueError("a 'caption' context needs a non-empty caption")
            object.__setattr__(self, "caption", " ".join(self.caption.split()))
        elif self.caption is not None:
            raise ValueError(f"a {self.kind!r} context takes no caption (use Context.given_caption)")
        if self.kind == "qa":
            pair = self.qa
            if not isinstance(pair, tuple | list) or len(pair) != 2 or not all(str(x).strip() for x in pair):
                raise ValueError("a 'qa' context needs a non-empty (question, answer) pair")
            object.__setattr__(self, "qa", (str(pair[0]), str(pair[1])))
        elif self.qa is not None:
            raise ValueError(f"a {self.kind!r} context takes no question-answer pair (use Context.given_qa)")

    @classmethod
    def none(cls) -> Context:
        return cls("none")

    @classmethod
    def given_caption(cls, caption: str) -> Context:
        return cls("caption", caption=caption)

    @classmethod
    def given_qa(cls, question: str, answer: str) -> Context:
        return cls("qa", qa=(question, answer))

    @classmethod
    def own_caption(cls) -> Context:
        return cls("self")

    @property
    def prompt_kind(self) -> str:
        return PROMPT_KINDS[self.kind]

    def prompt(self, builder: Any, question: str, style: str, own_caption: str | None = None) -> str:
        """The answer prompt for ``question`` in ``style`` (``own_caption``: the model's caption, ``self`` only)."""
        if self.kind == "none":
            return builder.prompt(self.prompt_kind, style, question=question)
        if self.kind == "qa":
            return builder.prompt(self.prompt_kind, style, question=question, context_qa=self.qa)
        if self.kind == "self":
            if own_caption is None:
                raise ValueError("a 'self' context needs the model's own caption; answer through an engine")
            caption = own_caption if own_caption.strip() else EMPTY_CAPTION
        else:
            caption = self.caption
        return builder.prompt(self.prompt_kind, style, question=question, caption=caption)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "caption": self.caption, "qa": list(self.qa) if self.qa else None}
