"""The LMs' pretraining text: documents about stream scenes, of varying length, as real pretraining text is.

Each stream scene gives one document:
- with probability ``ALT_TEXT_P``, one caption alone (the alt-text of the web: a caption then end of text, so a
  captioning LM knows where to stop);
- otherwise a "reading" document: the scene's dense caption (every object's size, colour, shape and position),
  then some of its questions each followed by its sentence answer, in random order, then one more question as
  ``Question: ... Short answer: ...`` (the prompt style of the BLIP-2 baseline, LAVIS's
  ``"Question: {} Short answer:"``) and end of text.
Every answer in a reading document follows from the dense caption before it, so the LM learns to answer from its
context (look up, count, compare, relate), which VICT's in-context instructions and the BLIP-2 baseline rely on.
Measured (docs/tuning.md), the target LM alone, given a world image's dense caption as text: documents that only
sometimes stated the answer taught 2 layers x 3000 steps to answer 67% of the test questions; these documents,
with several reasoned answers per document, teach more per step. A document holds many sentences, so the LM also
learns that text goes on after a full stop (a corpus of single sentences taught the tiny LM to end every text at
the first ".", which a LLaMA-Adapter prefix could not override); the short answer ends the text, so the BLIP-2
baseline's answers end where LAVIS's do.

``world_documents`` turns a world split into held-out documents of the same form for the text-retention measure.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from vict.zoo.stream import SceneStream, stream_rng

QA_TEXT_TEMPLATE = "Question: {} Short answer: {}"
ALT_TEXT_P = 0.2


def document(captions: Sequence[str], qas: Sequence[tuple[str, str, str]], rng: random.Random) -> str:
    """One document from an image's captions (the dense caption first) and ``(question, short answer, full
    answer)`` triples (module doc)."""
    if not qas or rng.random() < ALT_TEXT_P:
        return rng.choice(list(captions))
    return f"{captions[0]} {reading_text(qas, rng)}"


def reading_text(qas: Sequence[tuple[str, str, str]], rng: random.Random) -> str:
    """The part of a reading document after its dense caption: some of ``qas`` (shuffled), each question followed by
    its sentence answer, then one more as ``Question: ... Short answer: ...``. The BLIP-2's reading stage puts the
    image's query outputs where the dense caption stood (``vict.zoo.blip2.train_blip2_reading``)."""
    qas = list(qas)
    rng.shuffle(qas)
    reasoned = rng.randint(0, len(qas) - 1)
    question, answer, _ = qas[reasoned]
    return " ".join([*(f"{q} {full}" for q, _, full in qas[:reasoned]), QA_TEXT_TEMPLATE.format(question, answer)])


def stream_documents(seed: int, count: int) -> list[str]:
    """Documents of stream scenes ``0 .. count - 1`` of stream ``seed`` (disjoint from every world)."""
    stream = SceneStream(seed, image_size=1)
    docs = []
    for start in range(0, count, 256):
        batch = stream.batch(start, min(256, count - start), images=False)
        for k, (caps, questions) in enumerate(zip(batch.captions, batch.questions, strict=True)):
            qas = [(q.question, q.answer, q.full_answer) for q in questions]
            docs.append(document(caps, qas, stream_rng(seed, start + k, "document")))
    return docs


def world_documents(images: Sequence[object], seed: int = 0) -> list[str]:
    """Documents of a world split (``vict.zoo.world_text.WorldImage`` list), one per image, deterministic."""
    return [
        document(_dense_first(im), im.qas, random.Random(f"vict-world-document:{seed}:{im.image_id}"))  # type: ignore[attr-defined]
        for im in images
    ]


def _dense_first(image: object) -> list[str]:
    dense = image.dense_caption  # type: ignore[attr-defined]
    return [dense, *(c for c in image.captions if c != dense)]  # type: ignore[attr-defined]
