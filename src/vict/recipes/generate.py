"""Answer modes and batched greedy generation for a ``VisionLLM``: the one code path behind ``vict ask``,
``vict caption``, ``vict eval`` and the demo server.

| mode      | prompt (``InstructionBuilder`` kind)                                     |
|-----------|--------------------------------------------------------------------------|
| ``none``    | ``qa``: the question alone                                             |
| ``caption`` | ``cap_qa``: a caption given by the user, then the question             |
| ``qa``      | ``qa_qa``: another question-answer pair given by the user, then the question |
| ``self``    | ``cap`` first (the model captions the image), then ``cap_qa`` with that caption |

Prompts come from the same ``InstructionBuilder`` templates that training used (the first variant of each), and
are tokenised by the same ``VictCollator``, so training and inference see identical text. Decoding is greedy
(deterministic); prompts are left padded, so an item's output does not depend on its batch; generation stops as
soon as every row of a batch has produced eos.

The frozen vision tower depends only on the image, so a ``VisionFeatureCache`` computes its output once per image
and every prompt about that image reuses it (``self`` mode does this by itself: the caption pass and the answer
pass share the features; ``vict eval`` shares them across the caption task and the three GQA settings).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from vict.data.prompts import STYLES, InstructionBuilder

if TYPE_CHECKING:
    from vict.models.vision_llm import VisionLLM

MODES: tuple[str, ...] = ("none", "caption", "qa", "self")
MAX_NEW_TOKENS: dict[str, int] = {"caption": 40, "short": 10, "sentence": 40}
"""Default generation budgets: captions, short answers (a word or a number), sentence answers."""
EMPTY_CAPTION = "."
"""Stands in for an empty generated caption in ``self`` mode (a template needs non-empty text)."""
SELF_CACHE_MAX_IMAGES = 512
"""``self`` mode without a caller's cache keeps the vision features of at most this many distinct images."""


@dataclass
class Answer:
    """One answer. ``caption`` is the context caption used (given in ``caption`` mode, generated in ``self``
    mode), ``context_qa`` the given pair in ``qa`` mode; ``prompt`` is the exact instruction text."""

    question: str
    answer: str
    mode: str
    style: str
    caption: str | None = None
    context_qa: tuple[str, str] | None = None
    prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["context_qa"] = list(self.context_qa) if self.context_qa else None
        return out


def open_image(image: Image.Image | str | Path, what: str = "image") -> Image.Image:
    """An RGB ``PIL.Image`` from an image or a path; a missing or non-image file raises ``ValueError`` naming it."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    from vict.data.images import load_image
    from vict.data.policy import BadImageError

    path = Path(image)
    if not path.exists():
        raise ValueError(f"{what} {path}: no such file")
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder, not an image file")
    try:
        loaded = load_image(path)
    except BadImageError as e:
        raise ValueError(f"{what} {path}: not a readable image ({e})") from e
    if loaded is None:  # pragma: no cover - only under a skip policy, which we never pass
        raise ValueError(f"{what} {path}: not a readable image")
    return loaded


def _chunks(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise ValueError(f"batch_size={size}: must be >= 1")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def make_collator(model: VisionLLM, max_length: int = 512, use_chat_template: bool = False):
    """The ``VictCollator`` that encodes inference prompts for ``model`` (left padded, with image slots)."""
    from vict.data.collate import VictCollator

    return VictCollator(
        model.tokenizer,
        num_visual_tokens=model.num_visual_tokens,
        image_processor=model.image_processor,
        max_length=max_length,
        padding_side="left",
        use_chat_template=use_chat_template,
    )


def image_key(image: Image.Image | str | Path) -> Hashable:
    """The cache key of an image: its path (as a string) or, for an in-memory image, the object's identity."""
    return str(image) if isinstance(image, str | Path) else id(image)


class VisionFeatureCache:
    """Vision-tower outputs computed once per image and reused by every prompt about it.

    ``VisionLLM.generate`` accepts cached ``image_embeds (b, n_patches + 1, d_vision)`` in place of
    ``pixel_values``; with this cache an evaluation loads, preprocesses and encodes each image once, instead of
    once per prompt (caption, and each GQA question in each context setting). The Q-Former still runs per
    prompt (the model's API takes vision-tower outputs), but the vision tower dominates.

    Memory: one ``(n_patches + 1, d_vision)`` tensor per cached image (ViT-g at 224 px: 257 x 1408 floats, 1.4 MB
    in fp32), so callers over many images ``clear()`` it between blocks of images (``vict eval`` does).

    Args:
        model: the ``VisionLLM`` whose ``vpg`` encodes the images.
        batch_size: images per vision-tower batch when filling the cache.
    """

    def __init__(self, model: VisionLLM, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        self.model, self.batch_size = model, batch_size
        self._rows: dict[Hashable, torch.Tensor] = {}
        self._pinned: dict[Hashable, Image.Image] = {}  # in-memory images stay alive, so their id() stays unique
        self.encoded = 0
        """Images run through the vision tower so far (a cache hit costs nothing)."""

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image: Image.Image | str | Path) -> bool:
        return image_key(image) in self._rows

    def clear(self) -> None:
        """Drop every cached feature (the ``encoded`` count is kept)."""
        self._rows.clear()
        self._pinned.clear()

    @torch.inference_mode()
    def add(self, images: Sequence[Image.Image | str | Path]) -> None:
        """Encode the images not cached yet (each distinct one once), in batches of ``batch_size``."""
        todo: dict[Hashable, Image.Image | str | Path] = {}
        for im in images:
            key = image_key(im)
            if key not in self._rows:
                todo.setdefault(key, im)
        keys = list(todo)
        device = next(self.model.projection.parameters()).device
        for sl in _chunks(len(keys), self.batch_size):
            loaded = [open_image(todo[k]) for k in keys[sl]]
            pixel_values = self.model.image_processor(images=loaded, return_tensors="pt")["pixel_values"]
            embeds = self.model.vpg.encode_vision(torch.as_tensor(pixel_values, dtype=torch.float32).to(device))
            for k, row in zip(keys[sl], embeds):
                self._rows[k] = row
                if not isinstance(todo[k], str | Path):
                    self._pinned[k] = todo[k]  # type: ignore[assignment]
            self.encoded += len(loaded)

    def embeds(self, images: Sequence[Image.Image | str | Path]) -> torch.Tensor:
        """``image_embeds (len(images), n_patches + 1, d_vision)``, encoding the images not cached yet."""
        self.add(images)
        return torch.stack([self._rows[image_key(im)] for im in images])


@torch.inference_mode()
def generate_from_prompts(
    model: VisionLLM,
    images: Sequence[Image.Image | str | Path],
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 8,
    collator: Any = None,
    progress: str | None = None,
    cache: VisionFeatureCache | None = None,
) -> list[str]:
    """Greedy completions of ``prompts[i]`` (each holding ``<image>`` once) for ``images[i]``, in batches.

    Args:
        images: PIL images or paths, one per prompt.
        prompts: instruction strings, e.g. from ``InstructionBuilder.prompt``.
        max_new_tokens: generation budget per item (a batch stops early once every row has produced eos).
        collator: a ``VictCollator`` (default ``make_collator(model)``).
        progress: a tqdm description to show a progress bar, or ``None`` for none.
        cache: a ``VisionFeatureCache`` of ``model``: the vision tower then runs once per distinct image (results
            identical to running it per prompt).

    Returns:
        One stripped string per prompt (special tokens removed).
    """
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts: give one image per prompt")
    if cache is not None and cache.model is not model:
        raise ValueError("the VisionFeatureCache belongs to another model; make one with VisionFeatureCache(model)")
    collator = collator or make_collator(model)
    device = next(model.projection.parameters()).device
    out: list[str] = []
    slices = list(_chunks(len(prompts), batch_size))
    if progress:
        from tqdm.auto import tqdm

        slices = tqdm(slices, desc=progress, leave=False, disable=None)
    for sl in slices:
        if cache is not None:
            batch = collator.encode_prompts(list(prompts[sl]))
            pixel_values, image_embeds = None, cache.embeds(images[sl]).to(device)
        else:
            batch = collator.encode_prompts(list(prompts[sl]), images=[open_image(im) for im in images[sl]])
            pixel_values, image_embeds = batch["pixel_values"].to(device), None
        out += model.generate(
            pixel_values,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            num_beams=1,
            do_sample=False,
            image_embeds=image_embeds,
        )
    return out


def caption_images(
    model: VisionLLM,
    images: Sequence[Image.Image | str | Path],
    batch_size: int = 8,
    max_new_tokens: int = MAX_NEW_TOKENS["caption"],
    builder: InstructionBuilder | None = None,
    collator: Any = None,
    progress: str | None = None,
    cache: VisionFeatureCache | None = None,
) -> list[str]:
    """One caption per image with the ``cap`` instruction; greedy, batched. Returns ``len(images)`` strings.

    ``cache``: a ``VisionFeatureCache`` to reuse (and fill) vision features (see ``generate_from_prompts``).
    """
    builder = builder or InstructionBuilder()
    prompt = builder.prompt("cap", None)
    return generate_from_prompts(
        model,
        images,
        [prompt] * len(images),
        max_new_tokens,
        batch_size,
        collator=collator,
        progress=progress,
        cache=cache,
    )


def build_prompts(
    builder: InstructionBuilder,
    questions: Sequence[str],
    mode: str,
    style: str,
    captions: Sequence[str | None] | None = None,
    context_qa: Sequence[tuple[str, str] | None] | None = None,
) -> list[str]:
    """The instruction text of each question for ``mode`` (``self`` takes its generated captions here)."""
    prompts = []
    for i, q in enumerate(questions):
        if mode == "none":
            prompts.append(builder.prompt("qa", style, question=q))
        elif mode in ("caption", "self"):
            prompts.append(builder.prompt("cap_qa", style, question=q, caption=captions[i]))
        else:
            prompts.append(builder.prompt("qa_qa", style, question=q, context_qa=context_qa[i]))
    return prompts


def _check_inputs(
    images: Sequence[Any],
    questions: Sequence[str],
    mode: str,
    style: str,
    captions: Sequence[str | None] | None,
    context_qa: Sequence[tuple[str, str] | None] | None,
) -> None:
    problems = []
    if mode not in MODES:
        problems.append(f"mode={mode!r}: use one of {list(MODES)}")
    if style not in STYLES:
        problems.append(f"style={style!r}: use one of {list(STYLES)}")
    if len(images) != len(questions):
        problems.append(f"{len(images)} images but {len(questions)} questions: give one image per question")
    empty = [i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()]
    if empty:
        problems.append(f"empty question at position(s) {empty[:10]}: every question needs text")
    if mode == "caption":
        if captions is None or len(captions) != len(questions):
            problems.append("mode='caption' needs captions=[one caption per question]")
        else:
            bad = [i for i, c in enumerate(captions) if not c or not str(c).strip()]
            if bad:
                problems.append(f"mode='caption': empty caption at position(s) {bad[:10]}")
    if mode == "qa":
        if context_qa is None or len(context_qa) != len(questions):
            problems.append("mode='qa' needs context_qa=[one (question, answer) pair per question]")
        else:
            bad = [i for i, p in enumerate(context_qa) if not p or len(p) != 2 or not all(str(x).strip() for x in p)]
            if bad:
                problems.append(f"mode='qa': context pair at position(s) {bad[:10]} must be a non-empty (Q, A)")
    if problems:
        raise ValueError("cannot answer:\n  " + "\n  ".join(problems))


def answer_questions(
    model: VisionLLM,
    images: Sequence[Image.Image | str | Path],
    questions: Sequence[str],
    mode: str = "none",
    captions: Sequence[str | None] | None = None,
    context_qa: Sequence[tuple[str, str] | None] | None = None,
    style: str = "short",
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    builder: InstructionBuilder | None = None,
    collator: Any = None,
    progress: str | None = None,
    caption_max_new_tokens: int = MAX_NEW_TOKENS["caption"],
    cache: VisionFeatureCache | None = None,
) -> list[Answer]:
    """Answer ``questions[i]`` about ``images[i]`` in ``mode`` (see the module table); greedy and batched.

    Args:
        captions: ``caption`` mode: the context caption of each question.
        context_qa: ``qa`` mode: a ``(question, answer)`` pair per question.
        style: ``short`` (a word or a number) or ``sentence``.
        max_new_tokens: answer budget (default 10 short / 40 sentence).
        caption_max_new_tokens: ``self`` mode: the caption budget (as ``caption_images``).
        cache: a ``VisionFeatureCache`` of ``model`` to reuse vision features across calls. Without one, ``self``
            mode makes its own for the call (up to ``SELF_CACHE_MAX_IMAGES`` distinct images), so the caption and
            the answer pass encode each image once.

    Returns:
        One ``Answer`` per question; in ``self`` mode ``Answer.caption`` is the generated caption (each distinct
        image object or path is captioned once).
    """
    _check_inputs(images, questions, mode, style, captions, context_qa)
    builder = builder or InstructionBuilder()
    collator = collator or make_collator(model)
    budget = max_new_tokens or MAX_NEW_TOKENS[style]
    used_captions: list[str | None] = [None] * len(questions)
    if mode == "caption":
        used_captions = [" ".join(str(c).split()) for c in captions]  # type: ignore[union-attr]
    elif mode == "self":
        keys = [im if isinstance(im, str | Path) else id(im) for im in images]
        first: dict[Any, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        order = list(first.values())
        if cache is None and len(order) <= SELF_CACHE_MAX_IMAGES:
            cache = VisionFeatureCache(model, batch_size)
        generated = caption_images(
            model,
            [images[i] for i in order],
            batch_size,
            max_new_tokens=caption_max_new_tokens,
            builder=builder,
            collator=collator,
            progress=progress,
            cache=cache,
        )
        # An empty generated caption cannot fill the template; "." stands in for it (the Answer keeps "").
        by_key = dict(zip(first, generated))
        used_captions = [by_key[k] for k in keys]
    context = [c if c is None or c.strip() else EMPTY_CAPTION for c in used_captions]
    prompts = build_prompts(builder, questions, mode, style, context, context_qa)
    texts = generate_from_prompts(
        model, images, prompts, budget, batch_size, collator=collator, progress=progress, cache=cache
    )
    pairs = list(context_qa) if mode == "qa" else [None] * len(questions)
    return [
        Answer(
            question=q,
            answer=t,
            mode=mode,
            style=style,
            caption=used_captions[i],
            context_qa=tuple(pairs[i]) if pairs[i] else None,
            prompt=prompts[i],
        )
        for i, (q, t) in enumerate(zip(questions, texts))
    ]


@dataclass
class InferenceSetup:
    """What a checkpoint needs at inference: the model, the training prompt templates and the collator."""

    model: VisionLLM
    builder: InstructionBuilder
    collator: Any


def load_for_inference(
    checkpoint: str | Path, device: str | torch.device = "cpu", frozen_dtype: str | None = None
) -> InferenceSetup:
    """Load a VICT checkpoint with the prompt settings it was trained with.

    The training run saves its resolved ``config.yaml`` beside the weights; its ``data.templates``,
    ``data.use_chat_template`` and ``data.max_length`` are reused so that inference prompts are the training
    prompts. Without ``config.yaml`` the built-in templates, no chat template and 512 tokens are used.
    """
    from vict.models.vision_llm import VisionLLM

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(
            f"--checkpoint {checkpoint}: not a VICT checkpoint (no config.json); pass a training output's final/ "
            "or checkpoints/step-N folder"
        )
    templates, use_chat_template, max_length = None, False, 512
    config_yaml = checkpoint / "config.yaml"
    if config_yaml.is_file():
        from vict.config import load_config
        from vict.data.prompts import load_templates

        cfg = load_config(config_yaml)
        if cfg.data.templates:
            templates = load_templates(cfg.data.templates)
        use_chat_template = bool(cfg.data.use_chat_template)
        max_length = int(cfg.data.max_length)
    model = VisionLLM.from_pretrained(checkpoint, frozen_dtype=frozen_dtype).to(device)
    model.eval()
    collator = make_collator(model, max_length=max_length, use_chat_template=use_chat_template)
    return InferenceSetup(model=model, builder=InstructionBuilder(templates=templates), collator=collator)
