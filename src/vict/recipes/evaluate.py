"""``vict eval``: run a model on a data split, write its predictions, score them, and write the paper's tables.

Reads top to bottom: the data (``vict.eval.splits``: a world folder, or real COCO captions + GQA questions files) ->
a runner per model (a VICT checkpoint through ``recipes.generate``; a plain BLIP-2 through transformers'
``Blip2ForConditionalGeneration``) -> ``evaluate_model`` (captions, GQA short answers in three context settings,
GQA sentence answers) -> ``write_report`` (``report.json`` + ``report.md``).

Choices (also printed in every report):

- **Gold caption** (the ``caption`` setting): the first caption of the image, in the file's annotation order, that
  is not flagged ``"dense": true``. The world's dense caption names every fact of the scene and would simply state
  every answer; COCO captions carry no flag, so there it is the first caption. Questions whose image has no caption
  (GQA testdev images are not COCO images) are left out of the ``caption`` setting, with a note.
- **Self caption** (the ``self`` setting): the model's own greedy caption with the ``cap`` prompt, the same text
  it is scored on in the caption task.
- **GQA short answers** are scored with the ``vqa`` rule (VQA punctuation/article/number normalisation of both
  sides, as LAVIS does for generated text) and also with the ``official`` exact-match rule.
- **Sentence answers** (``none`` setting, ``sentence`` style, VICT models only: BLIP-2's prompt asks for a short
  answer): ``exact`` = normalised sentence equals normalised ``fullAnswer``; ``answer_in_sentence`` = the
  normalised short gold answer occurs as a whole-word span of the normalised sentence (for yes/no answers the
  sentence's first word must be it, since "no" occurs inside many sentences).

Speed (same predictions, see ``benchmarks/eval_speed.py``): images are processed in blocks of ``image_block``; in
a block each image is loaded, preprocessed and run through the frozen vision tower once (a VICT model's
``VisionFeatureCache``; BLIP-2's projected Q-Former outputs) and reused by its caption, every question and every
context setting; generation is batched (``batch_size``), greedy, under ``torch.inference_mode``, and stops when
every row of a batch has ended; METEOR's JVM starts before generation and is shared by all models of a run.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS, prewarm_meteor, score_captions
from vict.eval.gqa import score_gqa
from vict.eval.report import caption_table, gqa_table, markdown_table, notes_lines, write_json, write_text
from vict.eval.splits import (
    GOLD_CAPTION_RULE,
    TASKS,
    EvalImage,
    EvalQuestion,
    EvalSplit,
    gold_captions,
    load_eval_files,
    load_eval_split,
)
from vict.eval.vqa import normalize_answer

__all__ = [
    "GOLD_CAPTION_RULE",
    "SETTINGS",
    "TASKS",
    "Blip2Runner",
    "EvalImage",
    "EvalQuestion",
    "EvalSplit",
    "VictRunner",
    "as_runner",
    "auto_threads",
    "evaluate_model",
    "gold_captions",
    "load_eval_files",
    "load_eval_split",
    "report_markdown",
    "write_report",
]

SETTINGS: tuple[str, ...] = ("none", "caption", "self")
REPORT_CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Columns of the paper's Table 1."""
BATCH_SIZE = 32
"""Default generation batch size (prompts per ``generate`` call)."""
IMAGE_BLOCK = 256
"""Default images per block: their vision features are kept while every prompt about them runs."""
SMALL_MODEL_PARAMETERS = 50_000_000
"""``vict eval`` on CPU runs models below this size on one thread unless ``--threads`` says otherwise: their matrices
are too small for intra-op parallelism to pay (measured on 2 shared cores: one thread 1.3-9x faster than two)."""

EPILOG = """examples:
  vict eval --checkpoint runs/vict_lora/final --data world --split test
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --limit 50 --out runs/eval_lora
  vict eval --blip2 zoo/blip2 --data world --out runs/eval_blip2            # baseline rows, same harness
  vict eval --checkpoint runs/vict_lora/final --blip2 zoo/blip2 --data world --out runs/eval_both --fast

  # real data: COCO Karpathy test captions, GQA testdev (its images have no COCO captions: the `caption`
  # setting is then skipped with a note; `none` and `self` run)
  vict eval --checkpoint runs/vict_lora/final --captions coco/annotations/coco_karpathy_test.json \\
      --images coco/images --tasks caption --out runs/eval_coco
  vict eval --checkpoint runs/vict_lora/final --questions gqa/testdev_balanced_questions.json \\
      --images gqa/images --tasks gqa --out runs/eval_gqa
  # captions and questions on the same images (GQA val images joined to COCO through VG's image_data.json)
  vict eval --checkpoint runs/vict_lora/final --captions coco/annotations/captions_val2014.json \\
      --images coco/images/val2014 --questions gqa/val_balanced_questions.json --question-images gqa/images \\
      --vg-image-data vg/image_data.json --limit 500

--data is a folder in the world layout (vict data world --out DIR): images/, annotations/captions_<split>.json
(COCO captions), annotations/<split>_balanced_questions.json (GQA questions). Or give the files: --captions
(official captions_*.json, Karpathy dataset_coco.json with --karpathy-split, or LAVIS coco_karpathy_*.json),
--questions (GQA balanced questions), --images (and --question-images if GQA images live elsewhere).
Outputs in --out: report.json, report.md, predictions/ (COCO results and GQA predictions files, scorable with
vict score). --fast skips METEOR (its JVM takes ~20 s to start) and SPICE.
"""


# ------------------------------------------------------------------------------------------------- runners
class VictRunner:
    """A VICT checkpoint behind ``recipes.generate`` (prompts from its training templates).

    Vision features are cached per image (``VisionFeatureCache``) until ``release()``; ``reuse_features=False``
    runs the vision tower for every prompt (the reference behaviour, for benchmarks and tests).
    """

    kind = "vict"
    supports_sentence = True

    def __init__(
        self,
        setup: Any,
        name: str,
        batch_size: int = BATCH_SIZE,
        max_new_tokens: int | None = None,
        reuse_features: bool = True,
    ) -> None:
        from vict.recipes.generate import VisionFeatureCache

        self.setup, self.name, self.batch_size, self.max_new_tokens = setup, name, batch_size, max_new_tokens
        self.cache = VisionFeatureCache(setup.model, batch_size) if reuse_features else None

    def release(self) -> None:
        """Drop the cached vision features (called after each block of images)."""
        if self.cache is not None:
            self.cache.clear()

    def caption(self, images: Sequence[Path]) -> list[str]:
        from vict.recipes.generate import MAX_NEW_TOKENS, caption_images

        s = self.setup
        return caption_images(
            s.model,
            images,
            self.batch_size,
            max_new_tokens=self.max_new_tokens or MAX_NEW_TOKENS["caption"],
            builder=s.builder,
            collator=s.collator,
            progress=f"{self.name}: captions",
            cache=self.cache,
        )

    def answer(
        self, images: Sequence[Path], questions: Sequence[str], captions: Sequence[str] | None, style: str = "short"
    ) -> list[str]:
        from vict.recipes.generate import EMPTY_CAPTION, answer_questions

        s = self.setup
        mode = "caption" if captions is not None else "none"
        answers = answer_questions(
            s.model,
            images,
            questions,
            mode=mode,
            captions=[c if c.strip() else EMPTY_CAPTION for c in captions] if captions is not None else None,
            style=style,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            builder=s.builder,
            collator=s.collator,
            progress=f"{self.name}: GQA {mode}/{style}",
            cache=self.cache,
        )
        return [a.answer for a in answers]


class Blip2Runner:
    """A plain BLIP-2 (``vict.eval.blip2_baseline.Blip2Baseline``) with the BLIP-2 prompts.

    The projected Q-Former outputs of each image are computed once and kept until ``release()`` (BLIP-2 has no
    trainable part, so they depend only on the image); ``reuse_features=False`` recomputes them per prompt.
    """

    kind = "blip2"
    supports_sentence = False

    def __init__(
        self,
        blip2: Any,
        name: str,
        batch_size: int = BATCH_SIZE,
        max_new_tokens: int | None = None,
        reuse_features: bool = True,
    ) -> None:
        self.blip2, self.name, self.batch_size, self.max_new_tokens = blip2, name, batch_size, max_new_tokens
        self.caption_budget = max_new_tokens or 30  # LAVIS BLIP-2 caption eval: max_len 30
        self.answer_budget = max_new_tokens or 10  # LAVIS BLIP-2 GQA eval: max_len 10
        self.reuse_features = reuse_features
        self._features: dict[str, torch.Tensor] = {}
        self.encoded = 0
        """Images run through the vision tower and Q-Former so far."""

    def release(self) -> None:
        """Drop the cached image features (called after each block of images)."""
        self._features.clear()

    def _inputs(self, paths: Sequence[Path]) -> dict[str, Any]:
        """``{"images": [...]}`` or, reusing features, ``{"image_features": (b, n_query, d_lm)}`` for a batch."""
        from vict.recipes.generate import open_image

        if not self.reuse_features:
            self.encoded += len(paths)
            return {"images": [open_image(p) for p in paths]}
        todo = list(dict.fromkeys(str(p) for p in paths if str(p) not in self._features))
        for start in range(0, len(todo), self.batch_size):
            keys = todo[start : start + self.batch_size]
            feats = self.blip2.image_features([open_image(k) for k in keys])
            self._features.update(zip(keys, feats))
            self.encoded += len(keys)
        return {"images": None, "image_features": torch.stack([self._features[str(p)] for p in paths])}

    def _batched(self, fn: Callable[[slice], list[str]], n: int, desc: str) -> list[str]:
        from tqdm.auto import tqdm

        out: list[str] = []
        for start in tqdm(range(0, n, self.batch_size), desc=desc, leave=False, disable=None):
            out += fn(slice(start, min(n, start + self.batch_size)))
        return out

    def caption(self, images: Sequence[Path]) -> list[str]:
        return self._batched(
            lambda sl: self.blip2.caption(max_new_tokens=self.caption_budget, **self._inputs(images[sl])),
            len(images),
            f"{self.name}: captions",
        )

    def answer(
        self, images: Sequence[Path], questions: Sequence[str], captions: Sequence[str] | None, style: str = "short"
    ) -> list[str]:
        def run(sl: slice) -> list[str]:
            ctx = list(captions[sl]) if captions is not None else None
            return self.blip2.answer(
                questions=list(questions[sl]),
                contexts=ctx,
                max_new_tokens=self.answer_budget,
                **self._inputs(images[sl]),
            )

        return self._batched(run, len(questions), f"{self.name}: GQA")


# ---------------------------------------------------------------------------------------------- evaluation
def auto_threads(runner: Any) -> int | None:
    """1 for a model under ``SMALL_MODEL_PARAMETERS`` on CPU (intra-op threads only add overhead there), else
    ``None`` (keep torch's setting)."""
    model = getattr(getattr(runner, "setup", None), "model", None) or getattr(
        getattr(runner, "blip2", None), "model", None
    )
    if model is None:
        return None
    params = list(model.parameters())
    if not params or params[0].device.type != "cpu":
        return None
    return 1 if sum(p.numel() for p in params) < SMALL_MODEL_PARAMETERS else None


def _sentence_scores(preds: Sequence[str], questions: Sequence[EvalQuestion]) -> dict[str, Any]:
    exact, contains = [], []
    for pred, q in zip(preds, questions):
        p = normalize_answer(pred)
        exact.append(q.full_answer is not None and p == normalize_answer(q.full_answer))
        gold = normalize_answer(q.answer)
        if gold in ("yes", "no"):
            contains.append(p.split()[:1] == [gold])
        else:
            contains.append(bool(gold) and re.search(rf"(^| ){re.escape(gold)}( |$)", p) is not None)
    n = len(preds)
    return {
        "exact": 100.0 * sum(exact) / n if n else None,
        "answer_in_sentence": 100.0 * sum(contains) / n if n else None,
        "n": n,
    }


def _run_generation(
    runner: Any,
    data: EvalSplit,
    tasks: Sequence[str],
    settings: Sequence[str],
    sentence: bool,
    image_block: int,
) -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    """All generation, block of images by block: each block's own captions, then its questions in every setting.

    Returns ``(own captions by image index, {setting or "sentence": answers by question index})``.
    """
    need_caption = {i for i, im in enumerate(data.images) if "caption" in tasks and im.captioned}
    if "gqa" in tasks and "self" in settings:
        need_caption |= {q.image_index for q in data.questions}
    by_block: dict[int, list[int]] = {}
    for k, q in enumerate(data.questions):
        by_block.setdefault(q.image_index // image_block, []).append(k)
    own: dict[int, str] = {}
    answers: dict[str, dict[int, str]] = {}
    blocks = range(0, len(data.images), image_block)
    if len(blocks) > 1:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc=f"{runner.name}: image blocks of {image_block}", disable=None)
    for start in blocks:
        idx = [i for i in range(start, min(start + image_block, len(data.images))) if i in need_caption]
        if idx:
            own.update(zip(idx, runner.caption([data.images[i].path for i in idx])))
        qk = by_block.get(start // image_block, []) if "gqa" in tasks else []
        runs = [(s, "short") for s in settings] + ([("sentence", "sentence")] if sentence else [])
        for setting, style in runs:
            keep = [k for k in qk if setting != "caption" or data.images[data.questions[k].image_index].gold_caption]
            if not keep:
                continue
            qs = [data.questions[k] for k in keep]
            if setting == "caption":
                context = [data.images[q.image_index].gold_caption or "" for q in qs]
            elif setting == "self":
                context = [own[q.image_index] for q in qs]
            else:
                context = None
            preds = runner.answer(
                [data.images[q.image_index].path for q in qs], [q.question for q in qs], context, style
            )
            answers.setdefault(setting, {}).update(zip(keep, preds))
        release = getattr(runner, "release", None)
        if callable(release):
            release()
    return own, answers


def evaluate_model(
    model_or_blip2: Any,
    data_dir: str | Path | EvalSplit,
    split: str = "test",
    tasks: Sequence[str] = TASKS,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    settings: Sequence[str] = SETTINGS,
    sentence: bool = True,
    caption_metrics: Sequence[str] | None = None,
    name: str | None = None,
    max_new_tokens: int | None = None,
    image_block: int = IMAGE_BLOCK,
    reuse_features: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run, write predictions, score. Returns the report of one model (also what ``report.json`` holds).

    Args:
        model_or_blip2: a runner (``VictRunner``/``Blip2Runner``), an ``InferenceSetup`` (from
            ``recipes.generate.load_for_inference``), a ``VisionLLM``, or a ``Blip2Baseline``.
        data_dir: a folder in the world layout (see ``load_eval_split``), or an ``EvalSplit`` already loaded
            (``load_eval_split`` / ``load_eval_files`` for real COCO + GQA files; ``split`` and ``limit`` are then
            taken from it).
        tasks: ``caption`` and/or ``gqa``.
        out_dir: where ``predictions/`` go (nothing is written when ``None``).
        limit: evaluate the first ``limit`` images of the split (and all their questions).
        batch_size: prompts per generation batch.
        settings: GQA context settings among ``none``, ``caption`` (gold), ``self`` (generated).
        sentence: also score sentence answers (``none`` setting; VICT only).
        caption_metrics: subset of caption metrics (default all; ``FAST_CAPTION_METRICS`` skips METEOR/SPICE).
        max_new_tokens: one generation budget for captions and answers (default: per kind, see
            ``recipes.generate.MAX_NEW_TOKENS``; BLIP-2: 30 for captions, 10 for answers, as LAVIS).
        image_block: images whose vision features are kept while all their prompts run (bounds memory).
        reuse_features: reuse each image's vision features across prompts (same predictions; ``False`` only for
            comparisons). Applies when the runner is built here.
        threads: torch CPU threads for the generation of this call (restored afterwards). ``None``: ``auto_threads``
            (one thread for a model under 50M parameters on CPU: measured on 2 shared cores, one thread ran the
            same evaluation up to 5x faster than two; larger models keep torch's setting).

    Returns:
        ``{"model", "kind", "data", "split", "n_images", "n_questions", "caption": {metric: x100 | None, "n",
        "notes"} | None, "gqa": {setting: {"vqa": score_gqa(...), "official": score_gqa(...)}} | None,
        "gqa_sentence": {"exact", "answer_in_sentence", "n"} | None, "predictions": {name: path}, "choices",
        "notes": [str]}``. A setting that cannot run (``caption`` without any gold caption) is absent from
        ``gqa`` and explained in ``notes``.
    """
    bad_tasks = [t for t in tasks if t not in TASKS]
    bad_settings = [s for s in settings if s not in SETTINGS]
    if bad_tasks or bad_settings or not tasks:
        raise ValueError(
            f"tasks {list(tasks)} / settings {list(settings)}: use tasks from {TASKS}, settings from {SETTINGS}"
        )
    if image_block < 1 or (threads is not None and threads < 1):
        raise ValueError(f"image_block={image_block}, threads={threads}: both must be >= 1")
    wanted_metrics = list(CAPTION_METRICS if caption_metrics is None else caption_metrics)
    if "caption" in tasks and "METEOR" in wanted_metrics:
        prewarm_meteor()  # its JVM loads (~20 s) while the model generates
    runner = as_runner(
        model_or_blip2, batch_size=batch_size, name=name, max_new_tokens=max_new_tokens, reuse_features=reuse_features
    )
    data = data_dir if isinstance(data_dir, EvalSplit) else load_eval_split(data_dir, split, tasks, limit)
    split = data.name
    pred_dir = Path(out_dir) / "predictions" / _slug(runner.name) if out_dir is not None else None
    written: dict[str, str] = {}

    def save(file_name: str, payload: Any) -> None:
        if pred_dir is not None:
            written[file_name] = str(write_json(pred_dir / file_name, payload))

    notes = list(data.notes)
    report: dict[str, Any] = {
        "model": runner.name,
        "kind": runner.kind,
        "data": data.data or str(data_dir),
        "split": split,
        "n_images": len(data.images),
        "n_questions": len(data.questions),
        "caption": None,
        "gqa": None,
        "gqa_sentence": None,
        "choices": {
            "gold_caption": GOLD_CAPTION_RULE,
            "self_caption": "the model's own greedy caption (cap prompt), as scored in the caption task",
            "gqa_rule": "vqa (normalised, default) and official (exact match)",
            "decoding": "greedy",
        },
    }
    sentence = sentence and runner.supports_sentence and "gqa" in tasks
    previous_threads = torch.get_num_threads()
    threads = threads if threads is not None else auto_threads(runner)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        own, answers = _run_generation(runner, data, tasks, settings, sentence, image_block)
    finally:
        torch.set_num_threads(previous_threads)

    # 1. Captions (generated once, also the `self` context), scored on the images that have references.
    if "caption" in tasks:
        captioned = [i for i, im in enumerate(data.images) if im.captioned]
        results = [{"image_id": data.images[i].image_id, "caption": own[i]} for i in captioned]
        save(f"captions_{split}_results.json", results)
        report["caption"] = score_captions(results, data.captions, metrics=caption_metrics)

    # 2. GQA short answers in each context setting; 3. sentence answers (no context).
    if "gqa" in tasks:
        report["gqa"] = {}
        for setting in settings:
            got = answers.get(setting, {})
            if not got:
                why = (
                    "no evaluated image has a gold caption (e.g. GQA testdev images are not COCO images; give COCO "
                    "captions and --vg-image-data to join them)"
                    if data.questions
                    else "no GQA question on the evaluated images"
                )
                notes.append(f"GQA `{setting}` setting skipped: {why}.")
                continue
            keys = sorted(got)
            if len(keys) < len(data.questions):
                notes.append(
                    f"GQA `{setting}` setting scored on {len(keys)} of {len(data.questions)} questions (those whose "
                    "image has a gold caption)"
                )
            records = [{"questionId": data.questions[k].question_id, "prediction": got[k]} for k in keys]
            scored = {data.questions[k].question_id: data.gqa[data.questions[k].question_id] for k in keys}
            save(f"gqa_{setting}_{split}_predictions.json", records)
            report["gqa"][setting] = {
                "vqa": score_gqa(records, scored, rule="vqa"),
                "official": score_gqa(records, scored, rule="official"),
            }
        if sentence:
            got = answers.get("sentence", {})
            preds = [got[k] for k in range(len(data.questions))]
            save(
                f"gqa_sentence_{split}_predictions.json",
                [{"questionId": q.question_id, "prediction": p} for q, p in zip(data.questions, preds)],
            )
            report["gqa_sentence"] = _sentence_scores(preds, data.questions)
    report["predictions"] = written
    report["notes"] = notes
    return report


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def as_runner(
    obj: Any,
    batch_size: int = BATCH_SIZE,
    name: str | None = None,
    max_new_tokens: int | None = None,
    reuse_features: bool = True,
) -> Any:
    """Wrap what ``evaluate_model`` accepts into a runner with ``caption``/``answer`` (a runner is returned as is)."""
    if hasattr(obj, "caption") and hasattr(obj, "answer") and hasattr(obj, "kind"):
        return obj
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.recipes.generate import InferenceSetup, make_collator

    if isinstance(obj, Blip2Baseline):
        return Blip2Runner(obj, name or f"BLIP-2 ({obj.name})", batch_size, max_new_tokens, reuse_features)
    if isinstance(obj, InferenceSetup):
        return VictRunner(obj, name or "VICT", batch_size, max_new_tokens, reuse_features)
    from vict.data.prompts import InstructionBuilder
    from vict.models.vision_llm import VisionLLM

    if isinstance(obj, VisionLLM):
        setup = InferenceSetup(model=obj, builder=InstructionBuilder(), collator=make_collator(obj))
        return VictRunner(setup, name or "VICT", batch_size, max_new_tokens, reuse_features)
    raise TypeError(f"cannot evaluate a {type(obj).__name__}: pass a VisionLLM, InferenceSetup or Blip2Baseline")


# ------------------------------------------------------------------------------------------------- reports
def report_markdown(reports: dict[str, dict[str, Any]], title: str = "Evaluation") -> str:
    """``report.md`` for one or several models: Table 1 (captions), Table 2 (GQA by context setting, vqa rule),
    the official-rule GQA table, sentence answers, and the notes (choices, unavailable metrics)."""
    first = next(iter(reports.values()))
    lines = [f"# {title}", "", f"Data: `{first['data']}`, split `{first['split']}`.", ""]
    cap_rows = {n: r["caption"] for n, r in reports.items() if r.get("caption")}
    if cap_rows:
        lines += ["## Captioning (Table 1; scores x100)", "", caption_table(cap_rows, REPORT_CAPTION_METRICS), ""]
        scored = ", ".join(f"{n}: {r['n']}" for n, r in cap_rows.items())
        lines += [f"Images scored: {scored}.", ""]
    gqa_rows = {n: r["gqa"] for n, r in reports.items() if r.get("gqa")}
    if gqa_rows:
        for rule, heading in (("vqa", "rule `vqa`, normalised"), ("official", "rule `official`, exact match")):
            rows = {n: {s: g[s][rule]["accuracy"] for s in g} for n, g in gqa_rows.items()}
            lines += [f"## GQA short-answer accuracy, % (Table 2; {heading})", ""]
            lines += [gqa_table(rows, [s for s in SETTINGS if any(s in g for g in gqa_rows.values())]), ""]
        n_q = {n: next(iter(g.values()))["vqa"]["n"] for n, g in gqa_rows.items() if g}
        lines += ["Settings: `none` = the question alone; `caption` = a gold caption of the image as context;"]
        lines += [
            "`self` = the model's own caption as context. Questions: "
            + ", ".join(f"{n}: {k}" for n, k in n_q.items())
            + ".",
            "",
        ]
        by_sem = {n: g["none"]["vqa"]["by_semantic"] for n, g in gqa_rows.items() if "none" in g}
        if by_sem:
            types = sorted({t for v in by_sem.values() for t in v})
            lines += ["### GQA `none` setting by semantic type (vqa rule, %)", ""]
            lines += [
                markdown_table(["model", *types], [[n, *(v.get(t) for t in types)] for n, v in by_sem.items()]),
                "",
            ]
    sent_rows = [
        [n, r["gqa_sentence"]["exact"], r["gqa_sentence"]["answer_in_sentence"], r["gqa_sentence"]["n"]]
        for n, r in reports.items()
        if r.get("gqa_sentence")
    ]
    if sent_rows:
        lines += ["## GQA sentence answers (no context), %", ""]
        lines += [markdown_table(["model", "exact (normalised)", "answer in sentence", "n"], sent_rows), ""]
    lines += [
        "## Notes",
        "",
        f"- Gold caption: {first['choices']['gold_caption']}.",
        f"- Self caption: {first['choices']['self_caption']}.",
        "- Decoding: greedy.",
    ]
    shared = [note for note in first.get("notes", []) if all(note in r.get("notes", []) for r in reports.values())]
    lines += [f"- {note}" for note in shared]
    for n, r in reports.items():
        lines += [f"- {n}: {note}" for note in r.get("notes", []) if note not in shared]
        if r.get("caption"):
            lines += [f"- {n}: {line[2:]}" for line in notes_lines(r["caption"].get("notes", {}))]
        if r.get("gqa") and not r.get("gqa_sentence") and r["kind"] == "blip2":
            lines += [f"- {n}: no sentence-answer score (BLIP-2's prompt asks for a short answer)."]
    return "\n".join(lines) + "\n"


def write_report(
    reports: dict[str, dict[str, Any]], out_dir: str | Path, title: str = "Evaluation"
) -> tuple[Path, Path]:
    """Write ``report.json`` (``{"models": {name: report}}``) and ``report.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = write_json(out_dir / "report.json", {"models": reports})
    md_path = write_text(out_dir / "report.md", report_markdown(reports, title))
    return json_path, md_path


# ---------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict eval`` options."""
    parser.add_argument("--checkpoint", help="VICT checkpoint directory (a training run's final/ or step-N)")
    parser.add_argument("--blip2", help="plain BLIP-2 directory or hub id, evaluated as a baseline")
    data = parser.add_argument_group("data (a world folder, or real annotation files)")
    data.add_argument("--data", help="data folder in the world layout (vict data world)")
    data.add_argument("--split", default="test", help="world split to evaluate (default test); with files: its name")
    data.add_argument("--captions", action="append", metavar="FILE", help="COCO captions file (repeatable)")
    data.add_argument("--questions", action="append", metavar="FILE", help="GQA balanced questions file (repeatable)")
    data.add_argument("--images", metavar="DIR", help="folder the annotation files' image names are relative to")
    data.add_argument("--question-images", metavar="DIR", help="GQA images folder, if not --images")
    data.add_argument("--vg-image-data", metavar="FILE", help="VG image_data.json: join GQA image ids to COCO ids")
    data.add_argument(
        "--karpathy-split", choices=("train", "val", "test"), help="split of a Karpathy dataset_coco.json"
    )
    parser.add_argument("--tasks", default="caption,gqa", help="comma-separated: caption,gqa (default both)")
    parser.add_argument("--settings", default="none,caption,self", help="GQA context settings (default all three)")
    parser.add_argument("--out", help="output folder (default eval-<split>)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"generation batch size ({BATCH_SIZE})")
    parser.add_argument("--max-new-tokens", type=int, help="one generation budget for captions and answers")
    parser.add_argument("--image-block", type=int, default=IMAGE_BLOCK, help="images whose features stay cached")
    parser.add_argument("--no-sentence", action="store_true", help="skip the sentence-answer score")
    parser.add_argument("--fast", action="store_true", help="skip METEOR and SPICE (their JVMs are slow to start)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 for models under 50M parameters on CPU, else torch's choice)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _split_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"--{what} {text!r}: use a comma-separated subset of {','.join(allowed)}")
    return items


def _load_data(args: argparse.Namespace, tasks: Sequence[str]) -> EvalSplit:
    files = [args.captions, args.questions, args.images, args.question_images, args.vg_image_data]
    if args.data and any(files):
        raise ValueError("give either --data DIR (world layout) or --captions/--questions/--images files, not both")
    if args.data:
        return load_eval_split(args.data, args.split, tasks, args.limit)
    if not any(files):
        raise ValueError("no data: pass --data DIR (world layout) or --captions FILE / --questions FILE --images DIR")
    return load_eval_files(
        args.captions,
        args.questions,
        args.images,
        question_images_dir=args.question_images,
        vg_image_data=args.vg_image_data,
        karpathy_split=args.karpathy_split,
        tasks=tasks,
        limit=args.limit,
        name=args.split,
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate the given model(s), print the tables, write the reports. Exit 2 on bad input."""
    from vict.data.policy import DataError
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.recipes.generate import load_for_inference

    try:
        if not args.checkpoint and not args.blip2:
            raise ValueError("pass --checkpoint DIR (a VICT model) and/or --blip2 DIR_OR_HUB_ID (a baseline)")
        for flag, value in [("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens)]:
            if value is not None and value < 1:
                raise ValueError(f"{flag} {value}: must be >= 1")
        for flag, value in [("--batch-size", args.batch_size), ("--image-block", args.image_block)]:
            if value < 1:
                raise ValueError(f"{flag} {value}: must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads {args.threads}: must be >= 1")
        tasks = _split_list(args.tasks, TASKS, "tasks")
        settings = _split_list(args.settings, SETTINGS, "settings")
        data = _load_data(args, tasks)  # fail on bad data before loading models
        metrics = FAST_CAPTION_METRICS if args.fast else CAPTION_METRICS
        if "caption" in tasks and "METEOR" in metrics:
            prewarm_meteor()  # loads while the models load and generate
        runners = []
        if args.blip2:
            blip2 = Blip2Baseline.from_pretrained(args.blip2, device=args.device)
            runners.append(
                Blip2Runner(blip2, f"BLIP-2 ({Path(args.blip2).name})", args.batch_size, args.max_new_tokens)
            )
        if args.checkpoint:
            setup = load_for_inference(args.checkpoint, device=args.device)
            name = f"VICT ({Path(args.checkpoint).resolve().name})"
            runners.append(VictRunner(setup, name, args.batch_size, args.max_new_tokens))
    except (ValueError, FileNotFoundError, OSError, DataError) as e:
        print(f"vict eval: error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or f"eval-{args.split}")
    reports = {}
    for runner in runners:
        reports[runner.name] = evaluate_model(
            runner,
            data,
            tasks=tasks,
            out_dir=out_dir,
            settings=settings,
            sentence=not args.no_sentence,
            caption_metrics=metrics,
            image_block=args.image_block,
            threads=args.threads,
        )
    json_path, md_path = write_report(reports, out_dir, title=f"Evaluation on {data.data} ({data.name})")
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
