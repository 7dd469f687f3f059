"""VICT instructions: five types x two answer styles, from templates (data) and mixing ratios.

| kind     | prompt gives               | target  |
|----------|----------------------------|---------|
| cap      | image                      | caption |
| qa       | image, Q                   | A       |
| qa_cap   | image, Q, A                | caption |
| cap_qa   | image, caption, Q          | A       |
| qa_qa    | image, Q', A', Q           | A       |

Answer styles: ``short`` (GQA ``answer``) and ``sentence`` (GQA ``fullAnswer``); the style selects the
instruction text and the form of every answer in the example (target and context). ``cap`` has no style
(``Example.style`` is ``None``). Default templates: ``templates/default.yaml``; default ratios: equal.

``ExampleStream`` turns records into an endless, resumable stream: example ``i`` depends only on
``(seed, i)``, so a run resumed at example ``i`` sees exactly the examples it would have seen.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from vict.constants import IMAGE_MARKER
from vict.data.records import QA, ImageRecord

KINDS: tuple[str, ...] = ("cap", "qa", "qa_cap", "cap_qa", "qa_qa")
STYLES: tuple[str, ...] = ("short", "sentence")
DEFAULT_TEMPLATES_PATH = Path(__file__).parent / "templates" / "default.yaml"
MINIATURE_TEMPLATES_PATH = Path(__file__).parent / "templates" / "miniature.yaml"
"""The quickstart's templates: prompts ending like the miniature zoo's LM pretraining text (see the file)."""
MINIATURE_FROZEN_LLM_TEMPLATES_PATH = Path(__file__).parent / "templates" / "miniature_frozen_llm.yaml"
"""The same for rows whose LLM stays frozen (VPGTrans): captions follow the image tokens with no instruction."""
DEFAULT_RATIOS: dict[str, float] = dict.fromkeys(KINDS, 0.2)
DEFAULT_STYLE_RATIOS: dict[str, float] = {"short": 0.5, "sentence": 0.5}

REQUIRED_FIELDS: dict[str, set[str]] = {
    "cap": set(),
    "qa": {"question"},
    "qa_cap": {"question", "answer"},
    "cap_qa": {"caption", "question"},
    "qa_qa": {"context_question", "context_answer", "question"},
}
"""Placeholders each kind's templates must use (and the only ones they may use)."""

Templates = dict[str, dict[str, list[str]]]


@dataclass
class Example:
    """One training/inference example: ``prompt`` holds ``IMAGE_MARKER`` once; ``target`` is what to learn."""

    kind: str
    prompt: str
    target: str
    image_id: str
    image_path: Path | None
    style: str | None
    question_id: str | None = None


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def validate_templates(raw: Mapping) -> Templates:
    """Normalise ``{kind: {style: str | [str]}}`` and check every template; all problems in one error."""
    problems: list[str] = []
    out: Templates = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"templates must be a mapping kind -> style -> template(s), got {type(raw).__name__}")
    for kind in raw:
        if kind not in KINDS:
            problems.append(f"unknown kind {kind!r}: use one of {list(KINDS)}")
    for kind in KINDS:
        styles = ("any",) if kind == "cap" else STYLES
        entry = raw.get(kind)
        if not isinstance(entry, Mapping):
            problems.append(f"{kind}: missing; give {{{', '.join(styles)}: template}}")
            continue
        out[kind] = {}
        for style in styles:
            value = entry.get(style)
            variants = [value] if isinstance(value, str) else list(value or [])
            if not variants or not all(isinstance(v, str) for v in variants):
                problems.append(f"{kind}.{style}: missing or not a string / list of strings (got {value!r})")
                continue
            for t in variants:
                if t.count(IMAGE_MARKER) != 1:
                    problems.append(f"{kind}.{style}: {t!r} must contain {IMAGE_MARKER!r} exactly once")
                try:
                    used = _fields(t)
                except ValueError as e:
                    problems.append(f"{kind}.{style}: {t!r} is not a valid format string ({e}); write {{{{ for {{")
                    continue
                need = REQUIRED_FIELDS[kind]
                if used != need:
                    problems.append(f"{kind}.{style}: {t!r} uses {sorted(used)}, expected exactly {sorted(need)}")
            out[kind][style] = variants
        extra = set(entry) - set(styles)
        if extra:
            problems.append(f"{kind}: unknown style keys {sorted(extra)}; use {list(styles)}")
    if problems:
        raise ValueError("invalid instruction templates:\n  " + "\n  ".join(problems))
    return out


def load_templates(path: str | Path | None = None) -> Templates:
    """Templates from a YAML file (default: the built-in ``templates/default.yaml``), validated."""
    path = Path(path) if path is not None else DEFAULT_TEMPLATES_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: templates file not found (copy {DEFAULT_TEMPLATES_PATH} as a start)")
    with path.open(encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
    try:
        return validate_templates(raw or {})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _normalise_ratios(ratios: Mapping[str, float], names: Sequence[str], what: str) -> dict[str, float]:
    unknown = set(ratios) - set(names)
    bad = {k: v for k, v in ratios.items() if not isinstance(v, int | float) or v < 0}
    if unknown or bad or sum(ratios.values()) <= 0:
        raise ValueError(
            f"{what} {dict(ratios)}: keys must be among {list(names)}, values >= 0 with a positive sum "
            f"(e.g. {dict.fromkeys(names, 1)})"
        )
    total = float(sum(ratios.values()))
    return {k: float(ratios.get(k, 0.0)) / total for k in names}


def _answer(qa: QA, style: str) -> str | None:
    text = qa.answer if style == "short" else qa.full_answer
    return text.strip() if isinstance(text, str) and text.strip() else None


class InstructionBuilder:
    """Build VICT ``Example``s from records, or bare prompt strings for inference.

    Args:
        templates: ``{kind: {style: template | [templates]}}`` (``cap`` uses style key ``any``), or ``None``
            for the built-in defaults. Validated at construction.
        ratios: relative weight of each kind when sampling (missing kinds get 0); default equal.
        style_ratios: relative weight of ``short`` / ``sentence``; default equal.
        seed: default seed of ``rng_for``.
    """

    def __init__(
        self,
        templates: Mapping | None = None,
        ratios: Mapping[str, float] | None = None,
        style_ratios: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        self.templates = load_templates() if templates is None else validate_templates(templates)
        self.ratios = _normalise_ratios(ratios or DEFAULT_RATIOS, KINDS, "ratios")
        self.style_ratios = _normalise_ratios(style_ratios or DEFAULT_STYLE_RATIOS, STYLES, "style_ratios")
        self.seed = seed

    # ------------------------------------------------------------------ inference: prompt strings

    def prompt(
        self,
        kind: str,
        style: str | None = "short",
        *,
        question: str | None = None,
        caption: str | None = None,
        answer: str | None = None,
        context_qa: tuple[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> str:
        """The prompt for given inputs (first template variant unless ``rng`` is given).

        ``qa`` needs ``question``; ``cap_qa`` needs ``caption`` and ``question``; ``qa_qa`` needs
        ``context_qa=(question, answer)`` and ``question``; ``qa_cap`` needs ``question`` and ``answer``.
        """
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: use one of {list(KINDS)}")
        key = "any" if kind == "cap" else style
        if key not in self.templates[kind]:
            raise ValueError(f"style={style!r} for kind {kind!r}: use one of {list(STYLES)}")
        values = {
            "question": question,
            "caption": caption,
            "answer": answer,
            "context_question": context_qa[0] if context_qa else None,
            "context_answer": context_qa[1] if context_qa else None,
        }
        need = REQUIRED_FIELDS[kind]
        missing = sorted(k for k in need if not values[k])
        if missing:
            names = ["context_qa" if m.startswith("context_") else m for m in missing]
            raise ValueError(f"a {kind!r} prompt needs {sorted(set(names))}")
        variants = self.templates[kind][key]
        template = variants[0] if rng is None else rng.choice(variants)
        return template.format(**{k: " ".join(str(values[k]).split()) for k in need})

    # ------------------------------------------------------------------ training: examples from records

    def qas_for(self, record: ImageRecord, style: str) -> list[QA]:
        """QAs of ``record`` that have a question and an answer in ``style`` (records built in Python are not checked
        like loaded ones: a QA with an empty question is never used)."""
        return [
            qa
            for qa in record.qas
            if _answer(qa, style) is not None and isinstance(qa.question, str) and qa.question.strip()
        ]

    def can_build(self, record: ImageRecord, kind: str, style: str | None = None) -> bool:
        """Whether ``record`` has the inputs for ``kind`` (in ``style``, or in any style if ``None``)."""
        if kind == "cap":
            return bool(record.captions)
        if style is None:
            return any(self.can_build(record, kind, s) for s in STYLES)
        n = len(self.qas_for(record, style))
        return {
            "qa": n >= 1,
            "qa_cap": n >= 1 and bool(record.captions),
            "cap_qa": n >= 1 and bool(record.captions),
            "qa_qa": n >= 2,
        }[kind]

    def build(self, record: ImageRecord, kind: str, style: str | None, rng: random.Random) -> Example:
        """One example of ``kind`` in ``style`` from ``record``, choices drawn from ``rng``.

        Raises ValueError when the record lacks the inputs (see ``can_build``).
        """
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: use one of {list(KINDS)}")
        if kind != "cap" and style not in STYLES:
            raise ValueError(f"style={style!r}: use one of {list(STYLES)}")
        if not self.can_build(record, kind, None if kind == "cap" else style):
            raise ValueError(
                f"image {record.image_id}: cannot build {kind!r} ({len(record.captions)} captions, "
                f"{len(self.qas_for(record, style)) if style else 0} QAs with a {style} answer)"
            )
        caption = rng.choice(record.captions).strip() if record.captions else None
        question_id = None
        if kind == "cap":
            prompt, target, style = self.prompt("cap", None, rng=rng), caption, None
        else:
            qas = self.qas_for(record, style)
            if kind == "qa_qa":
                ctx, qa = rng.sample(qas, 2)
            else:
                qa, ctx = rng.choice(qas), None
            answer = _answer(qa, style)
            question_id = qa.question_id
            if kind == "qa":
                prompt, target = self.prompt(kind, style, question=qa.question, rng=rng), answer
            elif kind == "qa_cap":
                prompt = self.prompt(kind, style, question=qa.question, answer=answer, rng=rng)
                target, question_id = caption, None
            elif kind == "cap_qa":
                prompt, target = self.prompt(kind, style, question=qa.question, caption=caption, rng=rng), answer
            else:
                context = (ctx.question, _answer(ctx, style))
                prompt, target = self.prompt(kind, style, question=qa.question, context_qa=context, rng=rng), answer
        return Example(kind, prompt, str(target), record.image_id, record.image_path, style, question_id)

    def sample(self, record: ImageRecord, rng: random.Random) -> Example:
        """An example of a kind and style drawn by the ratios among those ``record`` can build."""
        kinds = [k for k in KINDS if self.ratios[k] > 0 and self.can_build(record, k)]
        if not kinds:
            raise ValueError(f"image {record.image_id}: no instruction type with a positive ratio can be built")
        kind = rng.choices(kinds, weights=[self.ratios[k] for k in kinds])[0]
        if kind == "cap":
            return self.build(record, kind, None, rng)
        styles = [s for s in STYLES if self.style_ratios[s] > 0 and self.can_build(record, kind, s)]
        if not styles:
            styles = [s for s in STYLES if self.can_build(record, kind, s)]
        style = rng.choices(styles, weights=[self.style_ratios[s] or 1.0 for s in styles])[0]
        return self.build(record, kind, style, rng)


class ExampleStream:
    """Endless, resumable stream of examples over ``records``; ``stream[i]`` depends only on (seed, i).

    Epoch ``e`` (examples ``e*n .. e*n+n-1``, ``n = len(self)``) visits every usable record once, in an order
    shuffled by ``(seed, e)``; the kind, style and choices of example ``i`` come from an rng seeded by
    ``(seed, i)``. Records from which no kind with a positive ratio can be built are dropped
    (``self.dropped``).
    """

    def __init__(self, records: Sequence[ImageRecord], builder: InstructionBuilder, seed: int = 0) -> None:
        self.builder = builder
        self.seed = seed
        self.records = [r for r in records if any(builder.ratios[k] > 0 and builder.can_build(r, k) for k in KINDS)]
        self.dropped = len(records) - len(self.records)
        if not self.records:
            raise ValueError(
                f"none of the {len(records)} records can build an instruction with ratios {builder.ratios}: "
                "records need captions and/or answered questions"
            )
        self._epoch = -1
        self._order: list[int] = []

    def __len__(self) -> int:
        """Examples per epoch (= usable records)."""
        return len(self.records)

    def _order_of(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            order = list(range(len(self.records)))
            random.Random(f"vict-stream:{self.seed}:epoch:{epoch}").shuffle(order)
            self._epoch, self._order = epoch, order
        return self._order

    def __getitem__(self, i: int) -> Example:
        if i < 0:
            raise IndexError(f"example index {i} < 0")
        epoch, j = divmod(i, len(self.records))
        record = self.records[self._order_of(epoch)[j]]
        return self.builder.sample(record, random.Random(f"vict-stream:{self.seed}:example:{i}"))

    def iter_from(self, start: int = 0) -> Iterator[Example]:
        """Examples ``start, start+1, ...`` forever (resume a run by passing the examples already seen)."""
        i = start
        while True:
            yield self[i]
            i += 1
