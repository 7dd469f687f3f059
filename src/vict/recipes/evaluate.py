"""``vict eval``: run a model on a data split, write its predictions, score them, and write the paper's tables.

Reads top to bottom: ``load_eval_split`` (the COCO captions and GQA questions files of a split, world layout) ->
a runner per model (a VICT checkpoint through ``recipes.generate``; a plain BLIP-2 through transformers'
``Blip2ForConditionalGeneration``) -> ``evaluate_model`` (captions, GQA short answers in three context settings,
GQA sentence answers) -> ``write_report`` (``report.json`` + ``report.md``).

Choices (also printed in every report):

- **Gold caption** (the ``caption`` setting): the first caption of the image, in the file's annotation order, that
  is not flagged ``"dense": true``. The world's dense caption names every fact of the scene and would simply state
  every answer; COCO captions carry no flag, so there it is the first caption.
- **Self caption** (the ``self`` setting): the model's own greedy caption with the ``cap`` prompt, the same text
  it is scored on in the caption task.
- **GQA short answers** are scored with the ``vqa`` rule (VQA punctuation/article/number normalisation of both
  sides, as LAVIS does for generated text) and also with the ``official`` exact-match rule.
- **Sentence answers** (``none`` setting, ``sentence`` style, VICT models only: BLIP-2's prompt asks for a short
  answer): ``exact`` = normalised sentence equals normalised ``fullAnswer``; ``answer_in_sentence`` = the
  normalised short gold answer occurs as a whole-word span of the normalised sentence (for yes/no answers the
  sentence's first word must be it, since "no" occurs inside many sentences).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS, score_captions
from vict.eval.gqa import score_gqa
from vict.eval.predictions import ScoreError
from vict.eval.report import caption_table, gqa_table, markdown_table, notes_lines, write_json, write_text
from vict.eval.vqa import normalize_answer

TASKS: tuple[str, ...] = ("caption", "gqa")
SETTINGS: tuple[str, ...] = ("none", "caption", "self")
REPORT_CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Columns of the paper's Table 1."""
GOLD_CAPTION_RULE = 'first caption of the image (annotation order) not flagged "dense": true'

EPILOG = """examples:
  vict eval --checkpoint runs/vict_lora/final --data world --split test
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --limit 50 --out runs/eval_lora
  vict eval --blip2 zoo/blip2 --data world --out runs/eval_blip2            # baseline rows, same harness
  vict eval --checkpoint runs/vict_lora/final --blip2 zoo/blip2 --data world --out runs/eval_both

--data is a folder in the world layout (vict data world --out DIR): images/, annotations/captions_<split>.json
(COCO captions), annotations/<split>_balanced_questions.json (GQA questions). Outputs in --out: report.json,
report.md, predictions/ (COCO results and GQA predictions files, scorable with vict score).
"""


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class EvalImage:
    """One image of the split: its id (as in the files), path and gold context caption."""

    image_id: Any
    path: Path
    gold_caption: str | None


@dataclass
class EvalQuestion:
    question_id: str
    image_index: int
    question: str
    answer: str
    full_answer: str | None


@dataclass
class EvalSplit:
    """A split restricted to the evaluated images: ``captions`` (COCO file) and ``questions`` (GQA file) hold
    only those images, so the scorers see exactly what was predicted."""

    name: str
    images: list[EvalImage]
    questions: list[EvalQuestion]
    captions: dict[str, Any] | None
    gqa: dict[str, dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScoreError(f"{what} {path}: not valid JSON ({e})") from e


def gold_captions(captions_file: dict[str, Any]) -> dict[str, str]:
    """``{str(image_id): caption}`` by ``GOLD_CAPTION_RULE`` (falls back to the first caption if all are dense)."""
    first: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for ann in captions_file.get("annotations", []):
        key = str(ann["image_id"])
        first.setdefault(key, ann["caption"])
        if not ann.get("dense", False):
            chosen.setdefault(key, ann["caption"])
    return {k: chosen.get(k, v) for k, v in first.items()}


def _find_image(images_dir: Path, image_id: str, file_name: str | None) -> Path | None:
    candidates = [images_dir / file_name] if file_name else []
    candidates += [images_dir / f"{image_id}{ext}" for ext in (".jpg", ".png", ".jpeg")]
    return next((p for p in candidates if p.is_file()), None)


def load_eval_split(
    data_dir: str | Path, split: str = "test", tasks: Sequence[str] = TASKS, limit: int | None = None
) -> EvalSplit:
    """Read a split in the world layout, keep the first ``limit`` images (file order) and their questions.

    Raises:
        FileNotFoundError: a missing annotations file or image, naming it and how to create the data.
        ScoreError: malformed files.
    """
    data_dir = Path(data_dir)
    ann_dir = data_dir / "annotations"
    cap_path = ann_dir / f"captions_{split}.json"
    gqa_path = ann_dir / f"{split}_balanced_questions.json"
    need = [cap_path] + ([gqa_path] if "gqa" in tasks else [])
    missing = [p for p in need if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"--data {data_dir}: missing {', '.join(str(p) for p in missing)}; expected the world layout "
            f"(create one with: vict data world --out {data_dir} --images 200)"
        )
    coco = _read_json(cap_path, "captions file")
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise ScoreError(f"{cap_path}: not a COCO captions file (needs 'images' and 'annotations')")
    gold = gold_captions(coco)
    images: list[EvalImage] = []
    for img in coco["images"][: limit or None]:
        key = str(img["id"])
        path = _find_image(data_dir / "images", key, img.get("file_name"))
        if path is None:
            raise FileNotFoundError(
                f"image {key} of {cap_path}: no file {data_dir / 'images' / img.get('file_name', key)}"
            )
        images.append(EvalImage(image_id=img["id"], path=path, gold_caption=gold.get(key)))
    index = {str(im.image_id): i for i, im in enumerate(images)}
    kept = set(index)
    captions = None
    if "caption" in tasks:
        captions = {
            "images": [img for img in coco["images"] if str(img["id"]) in kept],
            "annotations": [a for a in coco["annotations"] if str(a["image_id"]) in kept],
        }
    gqa, questions = None, []
    if "gqa" in tasks:
        raw = _read_json(gqa_path, "questions file")
        if not isinstance(raw, dict):
            raise ScoreError(f"{gqa_path}: not a GQA questions file (a dict questionId -> question)")
        gqa = {}
        for qid, q in raw.items():
            if str(q.get("imageId")) not in kept or not q.get("isBalanced", True):
                continue
            if "answer" not in q or "question" not in q:
                raise ScoreError(f"{gqa_path}: question {qid} lacks 'question' or 'answer'")
            gqa[qid] = q
            questions.append(
                EvalQuestion(qid, index[str(q["imageId"])], q["question"], q["answer"], q.get("fullAnswer"))
            )
        all_ids = {str(img["id"]) for img in coco["images"]}
        unmatched = {str(q.get("imageId")) for q in raw.values()} - all_ids
        if unmatched:
            raise ScoreError(
                f"{gqa_path}: {len(unmatched)} imageIds have no image in {cap_path} (e.g. {sorted(unmatched)[:5]}); "
                "the harness needs captions and questions on the same images"
            )
    return EvalSplit(split, images, questions, captions, gqa)


# ------------------------------------------------------------------------------------------------- runners
class VictRunner:
    """A VICT checkpoint behind ``recipes.generate`` (prompts from its training templates)."""

    kind = "vict"
    supports_sentence = True

    def __init__(self, setup: Any, name: str, batch_size: int = 8, max_new_tokens: int | None = None) -> None:
        self.setup, self.name, self.batch_size, self.max_new_tokens = setup, name, batch_size, max_new_tokens

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
        )
        return [a.answer for a in answers]


class Blip2Runner:
    """A plain BLIP-2 (``vict.eval.blip2_baseline.Blip2Baseline``) with the BLIP-2 prompts."""

    kind = "blip2"
    supports_sentence = False

    def __init__(self, blip2: Any, name: str, batch_size: int = 8, max_new_tokens: int | None = None) -> None:
        self.blip2, self.name, self.batch_size, self.max_new_tokens = blip2, name, batch_size, max_new_tokens
        self.caption_budget = max_new_tokens or 30  # LAVIS BLIP-2 caption eval: max_len 30
        self.answer_budget = max_new_tokens or 10  # LAVIS BLIP-2 GQA eval: max_len 10

    def _batched(self, fn, n: int, desc: str) -> list[str]:
        from tqdm.auto import tqdm

        out: list[str] = []
        for start in tqdm(range(0, n, self.batch_size), desc=desc, leave=False, disable=None):
            out += fn(slice(start, min(n, start + self.batch_size)))
        return out

    def caption(self, images: Sequence[Path]) -> list[str]:
        from vict.recipes.generate import open_image

        return self._batched(
            lambda sl: self.blip2.caption([open_image(p) for p in images[sl]], max_new_tokens=self.caption_budget),
            len(images),
            f"{self.name}: captions",
        )

    def answer(
        self, images: Sequence[Path], questions: Sequence[str], captions: Sequence[str] | None, style: str = "short"
    ) -> list[str]:
        from vict.recipes.generate import open_image

        def run(sl: slice) -> list[str]:
            ctx = list(captions[sl]) if captions is not None else None
            batch = [open_image(p) for p in images[sl]]
            return self.blip2.answer(batch, list(questions[sl]), ctx, max_new_tokens=self.answer_budget)

        return self._batched(run, len(questions), f"{self.name}: GQA")


# ---------------------------------------------------------------------------------------------- evaluation
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


def evaluate_model(
    model_or_blip2: Any,
    data_dir: str | Path,
    split: str = "test",
    tasks: Sequence[str] = TASKS,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    settings: Sequence[str] = SETTINGS,
    sentence: bool = True,
    caption_metrics: Sequence[str] | None = None,
    name: str | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """Run, write predictions, score. Returns the report of one model (also what ``report.json`` holds).

    Args:
        model_or_blip2: a runner (``VictRunner``/``Blip2Runner``), an ``InferenceSetup`` (from
            ``recipes.generate.load_for_inference``), a ``VisionLLM``, or a ``Blip2Baseline``.
        data_dir: a folder in the world layout (see ``load_eval_split``).
        tasks: ``caption`` and/or ``gqa``.
        out_dir: where ``predictions/`` go (nothing is written when ``None``).
        limit: evaluate the first ``limit`` images of the split (and all their questions).
        settings: GQA context settings among ``none``, ``caption`` (gold), ``self`` (generated).
        sentence: also score sentence answers (``none`` setting; VICT only).
        caption_metrics: subset of caption metrics (default all; ``FAST_CAPTION_METRICS`` skips METEOR/SPICE).
        max_new_tokens: one generation budget for captions and answers (default: per kind, see
            ``recipes.generate.MAX_NEW_TOKENS``; BLIP-2: 30 for captions, 10 for answers, as LAVIS).

    Returns:
        ``{"model", "kind", "data", "split", "n_images", "n_questions", "caption": {metric: x100 | None, "n",
        "notes"} | None, "gqa": {setting: {"vqa": score_gqa(...), "official": score_gqa(...)}} | None,
        "gqa_sentence": {"exact", "answer_in_sentence", "n"} | None, "predictions": {name: path}, "choices"}``.
    """
    bad_tasks = [t for t in tasks if t not in TASKS]
    bad_settings = [s for s in settings if s not in SETTINGS]
    if bad_tasks or bad_settings or not tasks:
        raise ValueError(
            f"tasks {list(tasks)} / settings {list(settings)}: use tasks from {TASKS}, settings from {SETTINGS}"
        )
    runner = as_runner(model_or_blip2, batch_size=batch_size, name=name, max_new_tokens=max_new_tokens)
    data = load_eval_split(data_dir, split, tasks, limit)
    paths = [im.path for im in data.images]
    pred_dir = Path(out_dir) / "predictions" / _slug(runner.name) if out_dir is not None else None
    written: dict[str, str] = {}

    def save(file_name: str, payload: Any) -> None:
        if pred_dir is not None:
            written[file_name] = str(write_json(pred_dir / file_name, payload))

    report: dict[str, Any] = {
        "model": runner.name,
        "kind": runner.kind,
        "data": str(data_dir),
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

    # 1. Captions: generated once, scored, and reused as the `self` context.
    own_captions: list[str] | None = None
    if "caption" in tasks or ("gqa" in tasks and "self" in settings):
        own_captions = runner.caption(paths)
    if "caption" in tasks:
        results = [{"image_id": im.image_id, "caption": c} for im, c in zip(data.images, own_captions)]
        save(f"captions_{split}_results.json", results)
        report["caption"] = score_captions(results, data.captions, metrics=caption_metrics)

    # 2. GQA short answers in each context setting.
    if "gqa" in tasks:
        q_paths = [paths[q.image_index] for q in data.questions]
        texts = [q.question for q in data.questions]
        report["gqa"] = {}
        for setting in settings:
            if setting == "none":
                context = None
            elif setting == "caption":
                context = [data.images[q.image_index].gold_caption or "" for q in data.questions]
            else:
                context = [own_captions[q.image_index] for q in data.questions]
            preds = runner.answer(q_paths, texts, context, style="short")
            records = [{"questionId": q.question_id, "prediction": p} for q, p in zip(data.questions, preds)]
            save(f"gqa_{setting}_{split}_predictions.json", records)
            report["gqa"][setting] = {
                "vqa": score_gqa(records, data.gqa, rule="vqa"),
                "official": score_gqa(records, data.gqa, rule="official"),
            }
        # 3. Sentence answers (no context).
        if sentence and runner.supports_sentence:
            preds = runner.answer(q_paths, texts, None, style="sentence")
            save(
                f"gqa_sentence_{split}_predictions.json",
                [{"questionId": q.question_id, "prediction": p} for q, p in zip(data.questions, preds)],
            )
            report["gqa_sentence"] = _sentence_scores(preds, data.questions)
    report["predictions"] = written
    return report


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def as_runner(obj: Any, batch_size: int = 8, name: str | None = None, max_new_tokens: int | None = None) -> Any:
    """Wrap what ``evaluate_model`` accepts into a runner with ``caption``/``answer``."""
    if hasattr(obj, "caption") and hasattr(obj, "answer") and hasattr(obj, "kind"):
        return obj
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.recipes.generate import InferenceSetup, make_collator

    if isinstance(obj, Blip2Baseline):
        return Blip2Runner(obj, name or f"BLIP-2 ({obj.name})", batch_size, max_new_tokens)
    if isinstance(obj, InferenceSetup):
        return VictRunner(obj, name or "VICT", batch_size, max_new_tokens)
    from vict.data.prompts import InstructionBuilder
    from vict.models.vision_llm import VisionLLM

    if isinstance(obj, VisionLLM):
        setup = InferenceSetup(model=obj, builder=InstructionBuilder(), collator=make_collator(obj))
        return VictRunner(setup, name or "VICT", batch_size, max_new_tokens)
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
    for n, r in reports.items():
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
    parser.add_argument("--data", required=True, help="data folder in the world layout (vict data world)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--tasks", default="caption,gqa", help="comma-separated: caption,gqa (default both)")
    parser.add_argument("--settings", default="none,caption,self", help="GQA context settings (default all three)")
    parser.add_argument("--out", help="output folder (default eval-<split>)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    parser.add_argument("--batch-size", type=int, default=8, help="generation batch size (default 8)")
    parser.add_argument("--max-new-tokens", type=int, help="one generation budget for captions and answers")
    parser.add_argument("--no-sentence", action="store_true", help="skip the sentence-answer score")
    parser.add_argument("--fast", action="store_true", help="skip METEOR and SPICE (their JVMs are slow to start)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _split_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"--{what} {text!r}: use a comma-separated subset of {','.join(allowed)}")
    return items


def run(args: argparse.Namespace) -> int:
    """Evaluate the given model(s), print the tables, write the reports. Exit 2 on bad input."""
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.recipes.generate import load_for_inference

    try:
        if not args.checkpoint and not args.blip2:
            raise ValueError("pass --checkpoint DIR (a VICT model) and/or --blip2 DIR_OR_HUB_ID (a baseline)")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit {args.limit}: must be >= 1")
        if args.max_new_tokens is not None and args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size}: must be >= 1")
        tasks = _split_list(args.tasks, TASKS, "tasks")
        settings = _split_list(args.settings, SETTINGS, "settings")
        load_eval_split(args.data, args.split, tasks, args.limit)  # fail on bad data before loading models
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
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"vict eval: error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or f"eval-{args.split}")
    reports = {}
    for runner in runners:
        reports[runner.name] = evaluate_model(
            runner,
            args.data,
            args.split,
            tasks,
            out_dir=out_dir,
            limit=args.limit,
            settings=settings,
            sentence=not args.no_sentence,
            caption_metrics=FAST_CAPTION_METRICS if args.fast else CAPTION_METRICS,
        )
    json_path, md_path = write_report(reports, out_dir, title=f"Evaluation on {args.data} ({args.split})")
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
