"""The LMs' pretraining text: documents about stream scenes, of varying length, as real pretraining text is.

Each stream scene gives one document:
- with probability ``ALT_TEXT_P``, one caption alone (the alt-text of the web: a caption then end of text, so a
  captioning LM knows where to stop);
- otherwise up to ``ITEMS_PER_DOCUMENT`` sentences drawn from the scene's captions and questions with their
  sentence answers, shuffled, then one ``Question: ... Short answer: ...`` line (the prompt style of the BLIP-2
  baseline, LAVIS's ``"Question: {} Short answer:"``) and end of text.
A document holds many sentences, so the LM learns that text goes on after a full stop, as a real LM has (a corpus
of single sentences taught the tiny LM to end every text at the first ".", which a LLaMA-Adapter prefix could
not override: docs/tuning.md); a question after a caption that states its answer teaches the LM to answer from
text context, which VICT's in-context instructions rely on; and the short answer ends the text, so the BLIP-2
baseline's answers end where LAVIS's do.

``world_documents`` turns a world split into held-out documents of the same form for the text-retention measure.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from vict.zoo.stream import SceneStream, stream_rng

QA_TEXT_TEMPLATE = "Question: {} Short answer: {}"
ITEMS_PER_DOCUMENT = 6
"""At most this many sentences before a document's closing short-answer line (fits the LMs' 256 positions)."""
ALT_TEXT_P = 0.25


def document(captions: Sequence[str], qas: Sequence[tuple[str, str, str]], rng: random.Random) -> str:
    """One document from an image's captions and ``(question, short answer, full answer)`` triples (module doc)."""
    if not qas or rng.random() < ALT_TEXT_P:
        return rng.choice(list(captions))
    items = list(captions) + [f"{question} {full_answer}" for question, _, full_answer in qas]
    rng.shuffle(items)
    question, answer, _ = rng.choice(list(qas))
    return " ".join([*items[: rng.randint(1, ITEMS_PER_DOCUMENT)], QA_TEXT_TEMPLATE.format(question, answer)])


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
        document(im.captions, im.qas, random.Random(f"vict-world-document:{seed}:{im.image_id}"))  # type: ignore[attr-defined]
        for im in images
    ]
