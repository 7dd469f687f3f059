"""The answering engine of a ``VisionLLM``: captions and answers in any ``Context``, batched and greedy.

``VictEngine`` is the one code path behind ``vict ask``, ``vict caption``, ``vict eval``, the quickstart and the
server. Prompts come from the same ``InstructionBuilder`` templates that training used (the first variant of each)
and are tokenised by the same ``VictCollator``, so training and inference see identical text. Decoding is greedy
(deterministic); prompts are left padded, so an item's output does not depend on its batch; a batch stops as soon
as every row has produced eos.

Reuse, with identical outputs: each image's features (everything before the connector's own layers: for the
Q-Former connector, the Q-Former outputs) are computed once and shared by every prompt about it (one
``FeatureCache``), and each image's own caption is made once and shared by its caption request and every ``self``
question about it. Both are bounded (``max_images``, least recently used out) and dropped by ``release()``.

Prefix reuse (``reuse_prefix``, on by default; ``vict.inference.prefix``): the key/value cache of the tokens every
prompt about an image starts with (its visual tokens and the template text around them) is computed once per image
and continued from by its caption prompt and every question about it, in any context; greedy outputs are those
without reuse.

Text-only questions: ``answer`` (and ``prompts``) take ``None`` for an image; the question's prompt is built as for
an image and made text only as training makes its text-only rows (``vict.data.mixing.text_only_prompt``: the image
marker becomes ``Image: N/A``), in any context but ``self`` (no image, no own caption). A method trained with
text-only rows (LaVIN's mixed modality) answers them as it learnt to; any other answers with its LLM as tuned.

Text-only rows: ``generate`` takes ``None`` for an image; that prompt (which must hold no ``<image>`` marker) becomes
a row with no image slots, batched with the image rows, and gives the text ``model.generate`` gives on
``collator.encode_prompts([prompt], images=[None])``. It has no cache entry: with the cache on, its features are those
of the collator's zero image (``pixel_values`` of zeros), computed once per engine and kept apart, so both paths feed
the model the same input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import LogitsProcessorList, StoppingCriteriaList

from vict.connectors.base import VisionFeatures
from vict.constants import IMAGE_MARKER, IMAGE_SLOT_ID
from vict.data.mixing import text_only_prompt
from vict.data.prompts import STYLES, InstructionBuilder
from vict.inference.context import CAPTION_KIND, CONTEXT_KINDS, Context
from vict.inference.decoding import Completion, Decoding, RowControl, RowSampler
from vict.inference.prefix import PrefixCache, common_prefix, stackable, unpadded
from vict.models.feature_cache import FeatureCache, image_key

MAX_NEW_TOKENS: dict[str, int] = {"caption": 40, "short": 10, "sentence": 40}
"""Default generation budgets: captions, short answers (a word or a number), sentence answers."""
BATCH_SIZE = 32
"""Default prompts per ``generate`` call."""
MAX_IMAGES = 1024
"""Default bound of the per-image feature cache and caption memory of an engine."""

ImageLike = Image.Image | str | Path
_STAND_IN = Image.new("RGB", (8, 8))
"""What ``VictEngine.generate`` hands the collator for an image row whose features are cached: only its presence
matters (it marks a row with image slots in a batch that also has text-only rows)."""


@dataclass
class Answer:
    """One answer. ``mode`` is the context kind; ``caption`` the context caption used (given in ``caption`` mode,
    the model's own in ``self`` mode); ``context_qa`` the given pair in ``qa`` mode; ``prompt`` the exact text."""

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


def open_image(image: ImageLike, what: str = "image") -> Image.Image:
    """An RGB ``PIL.Image`` from an image or a path; a missing or non-image file raises ``ValueError`` naming it."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    from vict.data.images import load_image
    from vict.data.policy import BadImageError, brief

    path = Path(image)
    if not path.exists():
        raise ValueError(f"{what} {path}: no such file")
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder, not an image file")
    try:
        loaded = load_image(path)
    except BadImageError as e:
        # the loader's message starts with the path and ends with how a data set run skips bad images, which
        # means nothing here: keep what is wrong and how to fix it
        detail = brief(e)
        detail = detail[len(str(path)) :].lstrip(": ") if detail.startswith(str(path)) else detail
        raise ValueError(f"{what} {path}: {detail}") from e
    if loaded is None:  # pragma: no cover - only under a skip policy, which we never pass
        raise ValueError(f"{what} {path}: not a readable image")
    return loaded


def chunks(n: int, size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"batch_size={size}: must be >= 1")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def as_contexts(context: Context | Sequence[Context], n: int) -> list[Context]:
    """One ``Context`` per question: a single one is shared by all ``n``."""
    if isinstance(context, Context):
        return [context] * n
    contexts = list(context)
    if len(contexts) != n or not all(isinstance(c, Context) for c in contexts):
        raise ValueError(f"give one Context for all questions or one per question ({n}), got {len(contexts)}")
    return contexts


def check_questions(images: Sequence[Any], questions: Sequence[str], style: str) -> None:
    """Every problem with a batch of questions at once (``ValueError`` naming the positions)."""
    problems = []
    if style not in STYLES:
        problems.append(f"style={style!r}: use one of {list(STYLES)}")
    if len(images) != len(questions):
        problems.append(f"{len(images)} images but {len(questions)} questions: give one image per question")
    empty = [i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()]
    if empty:
        problems.append(f"empty question at position(s) {empty[:10]}: every question needs text")
    if problems:
        raise ValueError("cannot answer:\n  " + "\n  ".join(problems))


class CaptionMemory:
    """Each image's own caption under a budget, made once (least recently used out beyond ``max_images``).

    In-memory images are keyed by identity and kept alive while remembered, so a key is never reused."""

    def __init__(self, max_images: int | None) -> None:
        self.max_images = max_images
        self._texts: OrderedDict[tuple[Hashable, int], tuple[str, Any]] = OrderedDict()

    def missing(self, keys: Sequence[Hashable], budget: int) -> list[int]:
        """Positions of the first occurrence of each key with no caption yet."""
        seen: set[Hashable] = set()
        out = []
        for i, key in enumerate(keys):
            if (key, budget) not in self._texts and key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def put(self, key: Hashable, budget: int, text: str, source: Any = None) -> None:
        self._texts[(key, budget)] = (text, None if isinstance(source, str | Path) else source)

    def get(self, keys: Sequence[Hashable], budget: int) -> list[str]:
        out = []
        for key in keys:
            self._texts.move_to_end((key, budget))
            out.append(self._texts[(key, budget)][0])
        while self.max_images is not None and len(self._texts) > max(self.max_images, len(set(keys))):
            self._texts.popitem(last=False)
        return out

    def clear(self) -> None:
        self._texts.clear()


class Engine:
    """What every engine shares: the caption memory, the answer flow of ``Context`` values, ``release()``.

    A subclass sets ``kind``, ``supports_sentence``, ``supports_text_only`` (its ``_complete`` takes ``None`` images
    with text-only prompts) and ``caption_prompt`` and gives ``_prompt`` (the answer prompt of one question in its
    context), ``_complete`` (greedy completions of prompts for images, batched) and ``_budget`` (the default token
    budget of a caption or an answer style).
    """

    kind = ""
    supports_sentence = True
    supports_text_only = False
    caption_prompt = ""

    def __init__(self, name: str, batch_size: int, max_images: int | None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        self.name, self.batch_size = name, batch_size
        self.cache: FeatureCache | None = None
        self.captions = CaptionMemory(max_images)

    def _prompt(self, question: str, context: Context, own_caption: str | None, style: str) -> str:
        raise NotImplementedError

    def _complete(
        self, images: Sequence[ImageLike], prompts: Sequence[str], max_new_tokens: int, progress: str | None
    ) -> list[str]:
        raise NotImplementedError

    def _budget(self, kind: str, max_new_tokens: int | None) -> int:
        raise NotImplementedError

    def complete(
        self,
        images: Sequence[ImageLike | None],
        prompts: Sequence[str],
        max_new_tokens: int,
        progress: str | None = None,
    ) -> list[str]:
        """Greedy completions of ready-made ``prompts`` (in the engine's own prompt style) for ``images``, batched:
        what task harnesses with their own prompts (ScienceQA) call. ``None`` images: see the engine."""
        return self._complete(images, prompts, max_new_tokens, progress)

    def release(self) -> None:
        """Drop the cached features and captions (``vict eval`` calls it after each block of images)."""
        if self.cache is not None:
            self.cache.clear()
        self.captions.clear()

    def caption(
        self, images: Sequence[ImageLike], max_new_tokens: int | None = None, progress: str | None = None
    ) -> list[str]:
        """One caption per image; each distinct image is captioned once and remembered, so ``self`` questions
        about it reuse the caption."""
        blind = [i for i, im in enumerate(images) if im is None]
        if blind:
            raise ValueError(f"no image at position(s) {blind[:10]}: a caption needs an image")
        budget = self._budget("caption", max_new_tokens)
        keys = [image_key(im) for im in images]
        todo = self.captions.missing(keys, budget)
        if todo:
            texts = self._complete([images[i] for i in todo], [self.caption_prompt] * len(todo), budget, progress)
            for i, text in zip(todo, texts):
                self.captions.put(keys[i], budget, text, images[i])
        return self.captions.get(keys, budget)

    def prompts(
        self,
        images: Sequence[ImageLike | None],
        questions: Sequence[str],
        contexts: Sequence[Context],
        style: str = "short",
        caption_max_new_tokens: int | None = None,
        progress: str | None = None,
    ) -> tuple[list[str], list[str | None]]:
        """The answer prompts of ``questions`` in their ``contexts`` and, per question, the model's own caption of its
        image (made first, for ``self`` contexts; ``None`` for the others): the first half of ``answer``, for callers
        that decode the prompts themselves (the server: ``VictEngine.complete_rows``). A ``None`` image makes a
        text-only question (module docstring)."""
        check_questions(images, questions, style)
        if style == "sentence" and not self.supports_sentence:
            raise ValueError(f"style='sentence': {self.name} answers in the short style only")
        if len(contexts) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts: give one per question")
        blind = [i for i, im in enumerate(images) if im is None]
        if blind and not self.supports_text_only:
            raise ValueError(
                f"no image at position(s) {blind[:10]}: {self.name} answers questions about an image only"
            )
        blind_self = [i for i in blind if contexts[i].kind == "self"]
        if blind_self:
            raise ValueError(
                f"no image at position(s) {blind_self[:10]} in a 'self' context: the model's own caption needs an "
                "image; give the image, or another context (none, a given caption, a given question-answer pair)"
            )
        own: list[str | None] = [None] * len(questions)
        need = [i for i, c in enumerate(contexts) if c.kind == "self"]
        if need:
            made = self.caption([images[i] for i in need], caption_max_new_tokens, progress)
            for i, text in zip(need, made):
                own[i] = text
        prompts = [self._prompt(q, c, own[i], style) for i, (q, c) in enumerate(zip(questions, contexts))]
        for i in blind:
            prompts[i] = text_only_prompt(prompts[i])
        return prompts, own

    def answer_budget(self, style: str, max_new_tokens: int | None = None) -> int:
        """The token budget of an answer in ``style`` (``max_new_tokens`` when given)."""
        return self._budget(style, max_new_tokens)

    def answer(
        self,
        images: Sequence[ImageLike | None],
        questions: Sequence[str],
        context: Context | Sequence[Context] | None = None,
        style: str = "short",
        max_new_tokens: int | None = None,
        caption_max_new_tokens: int | None = None,
        progress: str | None = None,
    ) -> list[Answer]:
        """Answer ``questions[i]`` about ``images[i]`` with its ``Context`` (one shared or one per question).

        ``style``: ``short`` (a word or a number) or ``sentence``; ``max_new_tokens``: the answer budget (default per
        style); ``caption_max_new_tokens``: the budget of ``self`` captions (as ``caption``). Returns one ``Answer``
        per question; in ``self`` mode ``Answer.caption`` is the model's caption. ``images[i] = None``: a text-only
        question (any context but ``self``).
        """
        contexts = as_contexts(context or Context.none(), len(questions))
        prompts, own = self.prompts(images, questions, contexts, style, caption_max_new_tokens, progress)
        texts = self._complete(images, prompts, self._budget(style, max_new_tokens), progress)
        return [
            Answer(
                question=q,
                answer=t,
                mode=c.kind,
                style=style,
                caption=own[i] if c.kind == "self" else c.caption,
                context_qa=c.qa,
                prompt=prompts[i],
            )
            for i, (q, t, c) in enumerate(zip(questions, texts, contexts))
        ]


class VictEngine(Engine):
    """Captions and answers of a ``VisionLLM``.

    Args:
        model: the ``VisionLLM``.
        builder: the prompt templates (default: the built-in ones; a checkpoint's own come with ``from_checkpoint``).
        collator: a left-padding ``VictCollator`` for ``model`` (default ``make_collator(model)``).
        batch_size: prompts per ``generate`` call.
        max_new_tokens: one budget for captions and answers (default: ``MAX_NEW_TOKENS`` per kind).
        name: shown in progress bars and reports.
        reuse_features: cache each image's features (``False``: recompute for every prompt; same outputs).
        max_images: bound of the feature cache, the caption memory and the prefix cache.
        reuse_prefix: continue every prompt about an image from its prefix's key/value cache, computed once
            (``False``: prefill every prompt whole; same outputs).
    """

    kind = "vict"
    supports_text_only = True
    supports_sentence = True

    def __init__(
        self,
        model: Any,
        builder: InstructionBuilder | None = None,
        collator: Any = None,
        batch_size: int = BATCH_SIZE,
        max_new_tokens: int | None = None,
        name: str = "VICT",
        reuse_features: bool = True,
        max_images: int | None = MAX_IMAGES,
        reuse_prefix: bool = True,
    ) -> None:
        super().__init__(name, batch_size, max_images)
        self.reuse_prefix = reuse_prefix
        self.prefixes: PrefixCache | None = None
        self.model = model
        self.builder = builder or InstructionBuilder()
        self.collator = collator or make_collator(model)
        self.max_new_tokens = max_new_tokens
        self.caption_prompt = self.builder.prompt(CAPTION_KIND, None)
        self._blank_features: torch.Tensor | None = None
        if reuse_features:
            self.cache = FeatureCache(self._encode, open_image, batch_size=batch_size, max_images=max_images)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, device: str | torch.device = "cpu", frozen_dtype: str | None = None, **kwargs: Any
    ) -> VictEngine:
        """Load a VICT checkpoint with the prompt settings it was trained with.

        The training run saves its resolved ``config.yaml`` beside the weights; its ``data.templates``,
        ``data.use_chat_template`` and ``data.max_length`` are reused so that inference prompts are the training
        prompts. Without ``config.yaml`` the built-in templates, no chat template and 512 tokens are used.
        ``kwargs`` go to the engine (``batch_size``, ``name``, ...).
        """
        from vict.models.vision_llm import VisionLLM

        checkpoint = Path(checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise FileNotFoundError(
                f"--checkpoint {checkpoint}: not a VICT checkpoint (no config.json); pass a training output's "
                "final/ or checkpoints/step-N folder"
            )
        templates, use_chat_template, max_length = None, False, 512
        config_yaml = checkpoint / "config.yaml"
        if config_yaml.is_file():
            from vict.config import load_data_config
            from vict.data.prompts import load_templates

            data = load_data_config(config_yaml)
            if data.templates:
                templates = load_templates(data.templates)
            use_chat_template, max_length = bool(data.use_chat_template), int(data.max_length)
        model = VisionLLM.from_pretrained(checkpoint, frozen_dtype=frozen_dtype).to(device)
        model.eval()
        collator = make_collator(model, max_length=max_length, use_chat_template=use_chat_template)
        return cls(model, InstructionBuilder(templates=templates), collator, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def release(self) -> None:
        super().release()
        if self.prefixes is not None:
            self.prefixes.clear()

    def _encode(self, images: list[Image.Image]) -> torch.Tensor:
        pixel_values = self.model.image_processor(images=images, return_tensors="pt")["pixel_values"]
        pixel_values = torch.as_tensor(pixel_values, dtype=torch.float32).to(self.device)
        return self.model.vision_features(pixel_values, training=False).value

    def _text_only_features(self) -> torch.Tensor:
        """The cached-feature row of a text-only prompt: the features of the collator's zero image (the
        ``pixel_values`` the pixel path gives a ``None`` image), computed once and kept apart from the image cache."""
        if self._blank_features is None:
            probe = self.model.image_processor(images=[Image.new("RGB", (8, 8))], return_tensors="pt")["pixel_values"]
            zeros = torch.zeros_like(torch.as_tensor(probe, dtype=torch.float32)).to(self.device)
            self._blank_features = self.model.vision_features(zeros, training=False).value[0].detach().cpu()
        return self._blank_features

    def _cached_features(self, images: Sequence[ImageLike | None], device: torch.device) -> torch.Tensor:
        """``(b, ...)`` features of one batch from the cache; a ``None`` row gets ``_text_only_features``."""
        assert self.cache is not None, "_cached_features needs the feature cache (reuse_features=True)"
        rows = [i for i, im in enumerate(images) if im is not None]
        if len(rows) == len(images):
            return self.cache.get([image_key(im) for im in images], images, device)
        blank = self._text_only_features().to(device)
        out = blank.unsqueeze(0).repeat(len(images), *([1] * blank.dim()))
        if rows:
            real = [images[i] for i in rows]
            out[rows] = self.cache.get([image_key(im) for im in real], real, device).to(out.dtype)
        return out

    # ------------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        images: Sequence[ImageLike | None],
        prompts: Sequence[str],
        max_new_tokens: int,
        progress: str | None = None,
    ) -> list[str]:
        """Greedy completions of ``prompts[i]`` for ``images[i]``, in batches; one stripped string per prompt (special
        tokens removed). A prompt with an image holds ``<image>`` once; ``images[i] = None`` makes a text-only row
        (its prompt holds no ``<image>``; see the module docstring), batched with the image rows."""
        return self._generate(images, prompts, max_new_tokens, progress, None)

    @torch.inference_mode()
    def complete_rows(
        self,
        images: Sequence[ImageLike | None],
        prompts: Sequence[str],
        decodings: Sequence[Decoding],
        on_delta: Callable[[int, str], None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Completion]:
        """Completions of ``prompts[i]`` for ``images[i]``, each row decoded by its own ``decodings[i]`` (budget, stop
        strings, temperature, top-p, seed; ``vict.inference.decoding``) in the same batches, with the same prefix
        and feature reuse, as ``generate``: a greedy row's text is ``generate``'s for that budget. ``on_delta(row,
        text)`` streams each row's text as it grows; ``cancelled(row)`` ends a row early (its client left)."""
        if len(decodings) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(decodings)} decodings: give one per prompt")
        if not prompts:
            return []
        control = RowControl(self.model.tokenizer, decodings, self._eos_ids(), on_delta, cancelled)
        generators = RowSampler.generators(decodings)
        sampled = {i for i, g in enumerate(generators) if g is not None}

        def hooks(rows: list[int]) -> dict[str, Any]:
            out: dict[str, Any] = {"stopping_criteria": StoppingCriteriaList([control.criteria(rows)])}
            if sampled & set(rows):
                out["logits_processor"] = LogitsProcessorList([RowSampler(decodings, generators, rows)])
            return out

        self._generate(images, prompts, max(d.max_new_tokens for d in decodings), None, hooks)
        control.close()
        return control.completions(self.prompt_tokens(images, prompts))

    def prompt_tokens(self, images: Sequence[ImageLike | None], prompts: Sequence[str]) -> list[int]:
        """How many tokens each prompt is to the LLM (its text tokens and its image's slots)."""
        marks = [None if im is None else _STAND_IN for im in images] if None in images else None  # no pixels made
        mask = self.collator.encode_prompts(list(prompts), images=marks)["attention_mask"]
        return [int(n) for n in mask.sum(dim=1)]

    def _eos_ids(self) -> list[int]:
        eos = self.model.tokenizer.eos_token_id
        return [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [int(eos)]

    def _generate(
        self,
        images: Sequence[ImageLike | None],
        prompts: Sequence[str],
        max_new_tokens: int,
        progress: str | None,
        hooks: Callable[[list[int]], dict[str, Any]] | None,
    ) -> list[str]:
        """``generate``; ``hooks(rows)`` gives the extra ``generate`` arguments of a call decoding ``rows`` (positions
        in ``prompts``)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts: give one image per prompt")
        marked = [i for i, (im, p) in enumerate(zip(images, prompts)) if im is None and IMAGE_MARKER in p]
        if marked:
            raise ValueError(
                f"prompts at position(s) {marked[:10]} have no image (None) but hold {IMAGE_MARKER!r}: a text-only "
                "prompt has no image marker (remove it, or give the image)"
            )
        slices = list(chunks(len(prompts), self.batch_size))
        if progress:
            from tqdm.auto import tqdm

            slices = tqdm(slices, desc=progress, leave=False, disable=None)
        out: list[str] = []
        for sl in slices:
            batch_images, batch_prompts = list(images[sl]), list(prompts[sl])
            positions = list(range(sl.start, sl.stop))

            def extra(rows: list[int], positions: list[int] = positions) -> dict[str, Any]:
                return {} if hooks is None else hooks([positions[i] for i in rows])

            if not self.reuse_prefix and self.cache is None:  # every row prefilled whole, from its pixels
                out += self._generate_plain(
                    batch_images, batch_prompts, max_new_tokens, None, **extra(list(range(len(batch_prompts))))
                )
                continue
            marks = [None if im is None else _STAND_IN for im in batch_images] if None in batch_images else None
            batch = self.collator.encode_prompts(batch_prompts, images=marks)
            reused = self._reusable_rows(batch_images, batch)
            texts: list[str] = [""] * len(batch_prompts)
            if reused:
                rows = unpadded(batch["input_ids"][reused], batch["attention_mask"][reused])
                made = self._generate_from_prefix(
                    [batch_images[i] for i in reused],
                    [batch_prompts[i] for i in reused],
                    rows,
                    max_new_tokens,
                    **extra(reused),
                )
                for i, text in zip(reused, made):
                    texts[i] = text
            plain = sorted(set(range(len(batch_prompts))) - set(reused))
            if plain:
                made = self._generate_plain(
                    [batch_images[i] for i in plain],
                    [batch_prompts[i] for i in plain],
                    max_new_tokens,
                    batch if len(plain) == len(batch_prompts) else None,  # the rest are encoded on their own
                    **extra(plain),
                )
                for i, text in zip(plain, made):
                    texts[i] = text
            out += texts
        return out

    def _vision(
        self, images: Sequence[ImageLike | None], pixel_values: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, VisionFeatures | None]:
        """``(pixel_values, features)`` of a batch's rows: cached features when the cache is on, else the pixels."""
        if self.cache is None:
            return pixel_values, None
        level = self.model.connector.cache_level(self.model.vpg, training=False)
        return None, VisionFeatures(level, self._cached_features(images, self.device))

    def _generate_plain(
        self,
        images: list[ImageLike | None],
        prompts: list[str],
        max_new_tokens: int,
        batch: dict[str, torch.Tensor] | None = None,
        **extra: Any,
    ) -> list[str]:
        """Greedy completions of one batch, every prompt prefilled whole (``batch``: its encoding, when made;
        ``extra``: more ``generate`` arguments)."""
        device = self.device
        if self.cache is not None:
            # The collator needs only which rows are text only: a batch without one is encoded as it is, and in a
            # mixed batch the image rows get a shared stand-in (their features come from the cache).
            if batch is None:
                marks = [None if im is None else _STAND_IN for im in images] if None in images else None
                batch = self.collator.encode_prompts(prompts, images=marks)
            pixel_values, features = self._vision(images, None)
        else:
            opened = [None if im is None else open_image(im) for im in images]
            batch = self.collator.encode_prompts(prompts, images=opened)
            pixel_values, features = batch["pixel_values"].to(device), None
        return self.model.generate(
            pixel_values,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            num_beams=1,
            do_sample=False,
            features=features,
            **extra,
        )

    # ------------------------------------------------------------------------------------------ prefix reuse
    def _prefix_cache(self) -> PrefixCache:
        """The prefix cache, made on first use from the engine's own prompts (``vict.inference.prefix``)."""
        if self.prefixes is None:
            probes = [self.caption_prompt]
            fillings = [("what is it?", "a red circle", ("where is it?", "left")), ("how many?", "two", ("q?", "a"))]
            for kind in CONTEXT_KINDS:
                for style in ("short", "sentence"):
                    for question, caption, pair in fillings:
                        context = {
                            "none": Context.none(),
                            "caption": Context.given_caption(caption),
                            "qa": Context.given_qa(*pair),
                            "self": Context.own_caption(),
                        }[kind]
                        try:
                            probes.append(self._prompt(question, context, caption, style))
                        except ValueError:  # templates without that style
                            continue
            batch = self.collator.encode_prompts(probes)
            rows = unpadded(batch["input_ids"], batch["attention_mask"])
            shared = common_prefix(rows, IMAGE_SLOT_ID, self.model.num_visual_tokens)
            self.prefixes = PrefixCache(shared, self.captions.max_images)
        return self.prefixes

    def _reusable_rows(self, images: Sequence[ImageLike | None], batch: dict[str, torch.Tensor]) -> list[int]:
        """Positions of the rows that continue from their image's prefix: an image, and ids that start with it."""
        if not self.reuse_prefix:
            return []
        prefixes = self._prefix_cache()
        if not prefixes.prefix_ids:
            return []
        rows = unpadded(batch["input_ids"], batch["attention_mask"])
        return [i for i, (im, ids) in enumerate(zip(images, rows)) if im is not None and prefixes.matches(ids)]

    def _pixels(self, images: Sequence[ImageLike]) -> torch.Tensor:
        opened = [open_image(im) for im in images]
        pixel_values = self.model.image_processor(images=opened, return_tensors="pt")["pixel_values"]
        return torch.as_tensor(pixel_values, dtype=torch.float32).to(self.device)

    def _generate_from_prefix(
        self, images: list[ImageLike], prompts: list[str], rows: list[list[int]], max_new_tokens: int, **extra: Any
    ) -> list[str]:
        """Greedy completions of ``prompts`` (``rows``: their unpadded ids, each starting with the prefix) about
        ``images``, continuing from each image's prefix cache (prefilled here for the images that have none)."""
        prefixes = self._prefix_cache()
        model, device = self.model, self.device
        keys = [image_key(im) for im in images]
        todo: dict[Hashable, ImageLike] = {}
        for key, im in zip(keys, images):
            if key not in prefixes:
                todo.setdefault(key, im)
        # without the feature cache every row's pixels are processed once, and the new prefixes take theirs
        row_pixels = None if self.cache is not None else self._pixels(images)
        if todo:
            fresh = list(todo.values())
            ids = torch.tensor([prefixes.prefix_ids] * len(fresh), device=device)
            first = [keys.index(key) for key in todo]
            pixel_values, features = self._vision(fresh, None if row_pixels is None else row_pixels[first])
            cache = model.prefill(pixel_values, ids, features)
            if not stackable(cache):  # sliding-window or linear-attention layers: no reuse for this model
                self.reuse_prefix = False
                return self._generate_plain(list(images), prompts, max_new_tokens, None, **extra)
            for j, (key, im) in enumerate(todo.items()):
                prefixes.put(key, cache, j, im)
        n = len(prefixes.prefix_ids)
        width = max(len(r) for r in rows) - n
        pad = model.pad_token_id
        # [prefix][pad ...][suffix]: the pads move behind the prefix; positions count attended tokens only
        ids = torch.tensor([r[:n] + [pad] * (width + n - len(r)) + r[n:] for r in rows], device=device)
        mask = torch.tensor([[1] * n + [0] * (width + n - len(r)) + [1] * (len(r) - n) for r in rows], device=device)
        cache = prefixes.assemble(keys, model.base_llm.config)
        prefixes.trim(keep=len(set(keys)))
        pixel_values, features = self._vision(images, row_pixels)
        return model.generate(
            pixel_values,
            ids,
            mask,
            max_new_tokens=max_new_tokens,
            num_beams=1,
            do_sample=False,
            features=features,
            cache=cache,
            **extra,
        )

    def _prompt(self, question: str, context: Context, own_caption: str | None, style: str) -> str:
        return context.prompt(self.builder, question, style, own_caption)

    def _complete(
        self, images: Sequence[ImageLike], prompts: Sequence[str], max_new_tokens: int, progress: str | None
    ) -> list[str]:
        return self.generate(images, prompts, max_new_tokens, progress)

    def _budget(self, kind: str, max_new_tokens: int | None) -> int:
        return max_new_tokens or self.max_new_tokens or MAX_NEW_TOKENS[kind]


def make_collator(model: Any, max_length: int = 512, use_chat_template: bool = False) -> Any:
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
