"""The normalised in-memory record: one per image, with its captions and question-answer pairs.

Every loader (COCO captions, GQA questions, the miniature world) produces these, and everything downstream
(instruction builder, trainer, evaluation) reads only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class QA:
    """One question about an image, with its short (``answer``) and sentence (``full_answer``) answers.

    ``structural`` / ``semantic`` / ``detailed`` are GQA's ``types`` (``None`` where a source has none);
    ``answer`` is ``None`` only for test-split questions whose answers are withheld.
    """

    question_id: str
    question: str
    answer: str | None
    full_answer: str | None
    structural: str | None = None
    semantic: str | None = None
    is_balanced: bool = True
    detailed: str | None = None


@dataclass
class ImageRecord:
    """An image and everything annotated about it.

    ``image_id`` is a string in every source (COCO's int id written in decimal, GQA's ``imageId`` as is).
    ``image_path`` is ``None`` when no images folder was given.
    """

    image_id: str
    image_path: Path | None
    captions: list[str] = field(default_factory=list)
    qas: list[QA] = field(default_factory=list)

    @property
    def answered_qas(self) -> list[QA]:
        """The QAs that have a short answer (usable as training targets or as context)."""
        return [qa for qa in self.qas if qa.answer is not None]
