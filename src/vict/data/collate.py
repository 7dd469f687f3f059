"""Tokenise VICT examples into model batches: visual-token slots at the marker, loss on the target only.

Sequence layout (no chat template)::

    [bos] prompt-before-marker  [IMAGE_SLOT_ID x n_visual]  prompt-after-marker  " " target  eos
    labels: -100 ...................................................................  target  eos

``bos`` is added when the tokenizer adds one itself (``tokenizer("a")`` starts with ``bos_token_id``), as its
model was trained. The prompt text after the marker and the target are tokenised together (one space
between them) and split by character offsets, so the target tokens are exactly those the model will have to
generate after the prompt; a token straddling the boundary counts as target.

With ``use_chat_template=True`` the prompt is the user message and the target the assistant reply of
``tokenizer.apply_chat_template``; everything the template adds after the generation prompt (the reply and its
end-of-turn tokens) is labelled, the rest is -100, and ``eos`` is appended only if the reply holds none.

Truncation (length > ``max_length``) removes context tokens only: first from the start of the text after the
slots (the oldest context: a caption or earlier QA), then from the text before the marker (keeping ``bos``);
never the slots, never the target. Each truncated example is counted in ``collator.truncated`` and a warning
with the running count is logged (at 1, 2, 4, 8, ... truncations). If the target, the slots and the special
tokens alone exceed ``max_length``, a ``ValueError`` names the example and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vict.constants import IGNORE_INDEX, IMAGE_MARKER, IMAGE_SLOT_ID
from vict.data.images import load_image
from vict.data.policy import BadImageError, BadInputPolicy, resolve_policy
from vict.data.prompts import Example

logger = logging.getLogger("vict.data")


class VictCollator:
    """Collate ``Example``s into tensors for ``VisionLLM.forward`` (``__call__``) or ``generate`` (``encode_prompts``).

    Args:
        tokenizer: the target LLM's (fast) tokenizer.
        num_visual_tokens: slots per image (= ``VisionLLM.num_visual_tokens``; 0 for a connector without visual
            tokens: the marker then only splits the prompt).
        image_processor: callable like ``BlipImageProcessor``: ``(images=[PIL RGB], return_tensors="pt")`` ->
            ``{"pixel_values": (b, 3, H, W)}``; ``None`` gives batches without ``pixel_values``.
        max_length: maximum sequence length including the slots.
        padding_side: ``"right"`` (training default) or ``"left"``; ``encode_prompts`` always pads left.
        use_chat_template: wrap prompt/target as a user/assistant turn with ``tokenizer.chat_template``.
        image_loader: ``path -> PIL.Image | None``; default ``vict.data.images.load_image`` under ``policy``.
        policy: bad-image policy for the default loader (fail fast by default; with skip, a bad image drops its
            example from the batch and is counted in ``policy.report``).
        add_bos: prepend ``bos``; ``None`` = do what the tokenizer does on plain text.
    """

    def __init__(
        self,
        tokenizer: Any,
        num_visual_tokens: int,
        image_processor: Any = None,
        max_length: int = 256,
        padding_side: str = "right",
        use_chat_template: bool = False,
        image_loader: Callable[[Path], Any] | None = None,
        policy: BadInputPolicy | str | None = None,
        add_bos: bool | None = None,
    ) -> None:
        problems = []
        if num_visual_tokens < 0:
            problems.append(f"num_visual_tokens={num_visual_tokens}: must be >= 0 (0: the connector adds no tokens)")
        if max_length <= num_visual_tokens + 2:
            problems.append(
                f"max_length={max_length} leaves no room for text after {num_visual_tokens} visual tokens; "
                f"use at least {num_visual_tokens + 32}"
            )
        if padding_side not in ("left", "right"):
            problems.append(f"padding_side={padding_side!r}: use 'right' (training) or 'left'")
        if use_chat_template and not getattr(tokenizer, "chat_template", None):
            problems.append("use_chat_template=True but the tokenizer has no chat_template; set it to False")
        if not getattr(tokenizer, "is_fast", False):
            problems.append(f"{type(tokenizer).__name__} is not a fast tokenizer (offsets are needed); load it fast")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            problems.append("the tokenizer has neither pad_token nor eos_token; set tokenizer.pad_token")
        if problems:
            raise ValueError("cannot build the collator:\n  " + "\n  ".join(problems))
        self.tokenizer = tokenizer
        self.num_visual_tokens = num_visual_tokens
        self.image_processor = image_processor
        self.max_length = max_length
        self.padding_side = padding_side
        self.use_chat_template = use_chat_template
        self.policy = resolve_policy(policy)
        self.image_loader = image_loader or self._load_image
        self.pad_id = int(pad)
        if add_bos is None:
            ids = tokenizer("a", add_special_tokens=True)["input_ids"]
            add_bos = tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id
        self.add_bos = bool(add_bos) and not use_chat_template  # chat templates write their own bos
        self.truncated = 0
        """Examples truncated so far (context tokens removed to fit ``max_length``)."""
        self.truncated_tokens = 0
        self._warn_at = 1

    # ------------------------------------------------------------------ tokenisation pieces

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _split_at_marker(self, text: str, where: str, text_only: bool = False) -> tuple[str, str]:
        if text_only:
            # no image (no slots): the whole prompt is the text the target follows, tokenized with it as an image
            # row's text after its slots is (a tokenizer that strips a text's leading space would otherwise glue
            # the target to the prompt: other ids for the same answer than image rows learn and inference reads)
            if IMAGE_MARKER in text:
                raise ValueError(
                    f"{where}: a text-only example (no image) must not hold {IMAGE_MARKER!r}: {text[:200]!r}"
                )
            return "", text
        if text.count(IMAGE_MARKER) != 1:
            raise ValueError(
                f"{where}: the prompt must contain {IMAGE_MARKER!r} exactly once, found "
                f"{text.count(IMAGE_MARKER)}: {text[:200]!r}"
            )
        before, after = text.split(IMAGE_MARKER)
        return before, after

    def _prompt_text(self, prompt: str) -> str:
        if not self.use_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _pieces(
        self, prompt: str, target: str | None, where: str, text_only: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        """(before ids incl. bos, after ids, target ids incl. end tokens; [] when ``target`` is None)."""
        prompt_text = self._prompt_text(prompt)
        before, after = self._split_at_marker(prompt_text, where, text_only)
        before_ids = ([self.tokenizer.bos_token_id] if self.add_bos else []) + self._encode(before)
        if target is None:
            return before_ids, self._encode(after), []
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}]
            full = self.tokenizer.apply_chat_template(messages, tokenize=False)
            reply = full[len(prompt_text) :] if full.startswith(prompt_text) else target
            text = after + reply
        else:
            sep = "" if not after or after[-1].isspace() else " "
            text = after + sep + target
        boundary = len(after)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        after_ids: list[int] = []
        target_ids: list[int] = []
        for tid, (_, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            (target_ids if end > boundary else after_ids).append(tid)
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token: training targets must end with one; set it")
        if not self.use_chat_template or eos not in target_ids:
            target_ids.append(eos)
        if len(target_ids) <= 1:
            raise ValueError(f"{where}: empty target after tokenisation (target {target!r})")
        return before_ids, after_ids, target_ids

    def _fit(
        self, before: list[int], after: list[int], target: list[int], where: str, slots: int | None = None
    ) -> tuple[list, list]:
        slots = self.num_visual_tokens if slots is None else slots
        total = len(before) + slots + len(after) + len(target)
        excess = total - self.max_length
        if excess <= 0:
            return before, after
        keep_first = 1 if self.add_bos else 0
        fixed = keep_first + slots + len(target)
        if fixed > self.max_length:
            raise ValueError(
                f"{where}: the target ({len(target)} tokens) + {slots} visual tokens"
                f"{' + bos' if keep_first else ''} exceed max_length={self.max_length} even without any context; "
                f"raise max_length (collator / data.max_length) or shorten the target"
            )
        cut_after = min(excess, len(after))
        after = after[cut_after:]
        cut_before = excess - cut_after
        if cut_before:
            before = before[:keep_first] + before[keep_first + cut_before :]
        self.truncated += 1
        self.truncated_tokens += excess
        if self.truncated >= self._warn_at:
            logger.warning(
                "truncated %d example(s) so far (%d context tokens removed) to fit max_length=%d (latest: %s); "
                "targets are never cut; raise max_length if this is frequent",
                self.truncated,
                self.truncated_tokens,
                self.max_length,
                where,
            )
            self._warn_at *= 2
        return before, after

    # ------------------------------------------------------------------ images

    def _load_image(self, path: Path) -> Any:
        # A method, not a lambda: the collator must pickle into DataLoader workers (spawn start method).
        return load_image(path, policy=self.policy)

    def _pixel_values(self, images: Sequence[Any]) -> torch.Tensor:
        """Processed images; a ``None`` (a text-only row) becomes zeros of the same shape, which the model ignores
        (the row has no image slots)."""
        real = [img for img in images if img is not None]
        probe = real or [Image.new("RGB", (8, 8))]  # all text only: the processor gives the shape
        out = torch.as_tensor(self.image_processor(images=probe, return_tensors="pt")["pixel_values"])
        full = out.new_zeros(len(images), *out.shape[1:]).float()
        if not real:
            return full
        rows = [i for i, img in enumerate(images) if img is not None]
        full[rows] = out.float()
        return full

    def _load_images(self, examples: Sequence[Example]) -> tuple[list[Example], list[Any]]:
        kept, images = [], []
        for ex in examples:
            if is_text_only(ex):
                kept.append(ex)
                images.append(None)
                continue
            if ex.image_path is None:
                raise ValueError(f"image {ex.image_id}: example has no image_path; load records with images_dir")
            try:
                img = self.image_loader(Path(ex.image_path))
            except BadImageError as e:
                self.policy.handle(e)
                img = None
            if img is not None:
                kept.append(ex)
                images.append(img)
        if not kept:
            raise BadImageError(f"every image of this batch was bad ({self.policy.report.summary()})")
        return kept, images

    # ------------------------------------------------------------------ batches

    def _pad(self, rows: list[list[int]], value: int, side: str) -> torch.Tensor:
        width = max(len(r) for r in rows)
        padded = [
            (r + [value] * (width - len(r))) if side == "right" else ([value] * (width - len(r)) + r) for r in rows
        ]
        return torch.tensor(padded, dtype=torch.long)

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Training batch: ``pixel_values (b,3,H,W) float32`` (if an image processor is set), ``input_ids (b,L)``
        with ``IMAGE_SLOT_ID`` at the slots, ``attention_mask (b,L)``, ``labels (b,L)`` (-100 but target + eos)."""
        if not examples:
            raise ValueError("empty batch")
        images: list[Any] = []
        if self.image_processor is not None:
            examples, images = self._load_images(examples)
        ids_rows, label_rows = [], []
        for ex in examples:
            where = f"image {ex.image_id} ({ex.kind}" + (f", question {ex.question_id})" if ex.question_id else ")")
            text_only = is_text_only(ex)
            n_slots = 0 if text_only else self.num_visual_tokens
            before, after, target = self._pieces(ex.prompt, ex.target, where, text_only)
            before, after = self._fit(before, after, target, where, n_slots)
            slots = [IMAGE_SLOT_ID] * n_slots
            ids_rows.append(before + slots + after + target)
            label_rows.append([IGNORE_INDEX] * (len(before) + len(slots) + len(after)) + target)
        batch = {
            "input_ids": self._pad(ids_rows, self.pad_id, self.padding_side),
            "attention_mask": self._pad([[1] * len(r) for r in ids_rows], 0, self.padding_side),
            "labels": self._pad(label_rows, IGNORE_INDEX, self.padding_side),
        }
        if images:
            batch["pixel_values"] = self._pixel_values(images)
        return batch

    def encode_prompts(
        self, examples: Sequence[Example | str], images: Sequence[Any] | None = None
    ) -> dict[str, torch.Tensor]:
        """Generation batch: the prompt only (no target, no labels), always LEFT padded.

        ``examples`` are ``Example``s (their ``image_path`` is loaded when an image processor is set and
        ``images`` is not given) or prompt strings (then pass ``images``, PIL images in the same order, to
        get ``pixel_values``). Returns ``input_ids (b,L)``, ``attention_mask (b,L)`` and ``pixel_values``.
        """
        if not examples:
            raise ValueError("empty batch")
        if images is not None and len(images) != len(examples):
            raise ValueError(f"{len(examples)} prompts but {len(images)} images; give one image per prompt")
        if images is None and self.image_processor is not None and all(isinstance(e, Example) for e in examples):
            examples, images = self._load_images(examples)  # type: ignore[arg-type]
        rows = []
        for i, ex in enumerate(examples):
            prompt = ex.prompt if isinstance(ex, Example) else ex
            where = f"image {ex.image_id}" if isinstance(ex, Example) else f"prompt [{i}]"
            # a text-only row: an Example without image and marker, or a prompt string whose image is None
            text_only = is_text_only(ex) if isinstance(ex, Example) else images is not None and images[i] is None
            n_slots = 0 if text_only else self.num_visual_tokens
            before, after, _ = self._pieces(prompt, None, where, text_only)
            before, after = self._fit(before, after, [], where, n_slots)
            rows.append(before + [IMAGE_SLOT_ID] * n_slots + after)
        batch = {
            "input_ids": self._pad(rows, self.pad_id, "left"),
            "attention_mask": self._pad([[1] * len(r) for r in rows], 0, "left"),
        }
        if images and self.image_processor is not None:
            batch["pixel_values"] = self._pixel_values(images)
        return batch


def is_text_only(example: Example) -> bool:
    """An example without an image: no ``image_path`` and no image marker in its prompt (its row gets no image
    slots and the model routes it as text only)."""
    return example.image_path is None and IMAGE_MARKER not in example.prompt
