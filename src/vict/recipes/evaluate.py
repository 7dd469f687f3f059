"""Evaluation: run an engine on a data split, write its predictions, score them (the paper's tables).

Reads top to bottom: the data (``vict.eval.splits``: a world folder, or real COCO captions + GQA questions files) ->
an engine per model (``vict.inference``: a VICT checkpoint through ``VictEngine``; a plain BLIP-2 through
``Blip2Engine``) -> ``evaluate_model`` (captions, GQA short answers in up to six context settings, with accuracy by
question type, GQA sentence answers) -> ``vict.eval.evaluation_report.write_report`` (``report.json`` +
``report.md``). The command line is ``vict.recipes.evaluate_cli``.

Choices (also printed in every report):

- **Gold caption** (the ``caption`` setting): the first caption of the image, in the file's annotation order, that
  is not flagged ``"dense": true``. The world's dense caption names every fact of the scene and would simply state
  every answer; COCO captions carry no flag, so there it is the first caption. Questions whose image has no caption
  (GQA testdev images are not COCO images) are left out of the ``caption`` setting, with a note.
- **Self caption** (the ``self`` setting): the model's own greedy caption with the ``cap`` prompt, the same text
  it is scored on in the caption task.
- **Other contexts** (``vict.eval.splits``, deterministic): ``qa`` gives another question-answer pair of the same
  image (``QA_CONTEXT_RULE``: never the question asked, nor one of the same text; a question alone on its image is
  skipped); ``dense`` gives the image's caption flagged ``"dense": true`` (an oracle naming every object; real COCO
  has none, so the setting is absent there, with a note); ``distractor`` gives the gold caption (same rule as
  ``caption``) of another evaluated image with another caption and, where ``scenes.json`` is there, other objects
  (``DISTRACTOR_RULE``), so ``distractor`` vs ``caption`` swaps only whose caption it is. Every prediction record
  names its context (``"context"``: kind, caption or pair, and the image or question it came from); a question
  without a context of its setting is counted in ``skipped``.
- **GQA short answers** are scored with the ``vqa`` rule (VQA punctuation/article/number normalisation of both
  sides, as LAVIS does for generated text) and also with the ``official`` exact-match rule. Accuracy by question
  type (``by_type``: ``types.structural``/``semantic``/``detailed`` and ``binary``/``open``) uses the ``vqa``
  verdicts, the headline's.
- **Sentence answers** (``none`` setting, ``sentence`` style, VICT models only: BLIP-2's prompt asks for a short
  answer): ``exact`` = normalised sentence equals normalised ``fullAnswer``; ``answer_in_sentence`` = the
  normalised short gold answer occurs as a whole-word span of the normalised sentence (for yes/no answers the
  sentence's first word must be it, since "no" occurs inside many sentences).
- **ScienceQA** (task ``scienceqa``, not in the default tasks): ``vict.eval.scienceqa_run.evaluate_scienceqa`` on
  the official files (``--scienceqa``, or a world's ``scienceqa/problems.json``): the model's training prompt, a
  problem without an image as a text-only row (BLIP-2: a blank image, said in the report), the first
  ``The answer is X.`` (failed: a seeded random choice), the official categories.
- **VQAv2** (task ``vqav2``, not in the default tasks): every question asked like a GQA question in the ``none``
  setting (the model's short-answer prompt), scored by the official VQAv2 rule (``vict.eval.vqa.score_vqav2``:
  overall, per answer type, per question type); the images are COCO's files or a world's own.

Speed (same predictions, see ``benchmarks/eval_speed.py``): images are processed in blocks of ``image_block``; in
a block each image is loaded, preprocessed and run through the frozen VPG once (the engine's ``FeatureCache``: a
VICT model's Q-Former outputs, BLIP-2's projected Q-Former outputs) and reused by its caption, every question and
every context setting; its own caption is made once and reused as the ``self`` context; generation is batched
(``batch_size``), greedy, under ``torch.inference_mode``, and stops when every row of a batch has ended; METEOR's
JVM starts before generation and is shared by all models of a run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vict.eval.captioning import CAPTION_METRICS, prewarm_meteor, score_captions
from vict.eval.gqa import gqa_accuracy_by_type, gqa_correctness, score_gqa
from vict.eval.report import write_json
from vict.eval.splits import (
    ALL_TASKS,
    DEFAULT_SETTINGS,
    DENSE_CAPTION_RULE,
    DISTRACTOR_RULE,
    GOLD_CAPTION_RULE,
    QA_CONTEXT_RULE,
    SETTINGS,
    TASKS,
    TEXT_ONLY_SETTINGS,
    ContextSource,
    EvalQuestion,
    EvalSplit,
    VQAv2Split,
    context_sources,
    load_eval_split,
    load_world_vqav2,
    missing_context_reason,
    world_scienceqa_problems,
)
from vict.eval.vqa import normalize_answer, score_vqav2
from vict.inference.context import Context

BATCH_SIZE = 32
"""Default generation batch size (prompts per ``generate`` call)."""
IMAGE_BLOCK = 256
"""Default images per block: their features and captions are kept while every prompt about them runs."""
SMALL_MODEL_PARAMETERS = 50_000_000
"""``vict eval`` on CPU runs models below this size on one thread unless ``--threads`` says otherwise: their matrices
are too small for intra-op parallelism to pay (measured on 2 shared cores: one thread 1.3-9x faster than two)."""
HEADLINE_RULE = "vqa"
"""The GQA rule of the headline accuracy (Table 2) and of the accuracy by question type."""


def setting_context(source: ContextSource) -> Context:
    """The ``Context`` of one question in a GQA setting (``vict.eval.splits.context_sources`` gives the sources:
    ``caption``/``dense``/``distractor`` are given captions, ``qa`` a given pair, ``self`` the model's caption)."""
    if source.kind == "caption":
        return Context.given_caption(source.caption or "")
    if source.kind == "qa":
        return Context.given_qa(*source.qa)
    return Context.own_caption() if source.kind == "self" else Context.none()


def context_record(
    source: ContextSource, data: EvalSplit, own_caption: str | None = None, text_only: bool = False
) -> dict[str, Any]:
    """What a prediction record says about its context: ``{"kind"}`` plus ``caption`` and ``source_image_id`` (the
    image the caption describes; another image for ``distractor``), ``qa`` and ``source_question_id``, or the
    model's own ``caption`` (``self``); ``"image": false`` for a question asked without its image (``text``)."""
    out: dict[str, Any] = {"kind": source.kind}
    if text_only:
        out["image"] = False
    if source.kind == "self":
        out["caption"] = own_caption
    if source.caption is not None:
        out["caption"] = source.caption
    if source.image_index is not None:
        out["source_image_id"] = data.images[source.image_index].image_id
    if source.qa is not None:
        out["qa"] = list(source.qa)
        out["source_question_id"] = data.questions[source.question_index].question_id
    return out


def auto_threads(engine: Any) -> int | None:
    """1 for a model under ``SMALL_MODEL_PARAMETERS`` on CPU (intra-op threads only add overhead there), else
    ``None`` (keep torch's setting)."""
    model = getattr(engine, "model", None) or getattr(getattr(engine, "blip2", None), "model", None)
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
    engine: Any,
    data: EvalSplit,
    tasks: Sequence[str],
    settings: Sequence[str],
    sentence: bool,
    image_block: int,
    sources: dict[str, dict[int, ContextSource]] | None = None,
) -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    """All generation, block of images by block: each block's own captions (the caption task and the ``self``
    context share them), then its questions in every setting (each setting one more pass over the block's
    questions on the same cached features).

    ``sources``: ``{setting: context_sources(data, setting)}`` (computed here when ``None``); a question absent
    from its setting's sources is skipped there. Returns ``(own captions by image index, {setting or "sentence":
    answers by question index})``.
    """
    given = sources or {}
    sources = {s: given[s] if s in given else context_sources(data, s) for s in settings} if "gqa" in tasks else {}
    no_context = context_sources(data, "none")
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

        blocks = tqdm(blocks, desc=f"{engine.name}: image blocks of {image_block}", disable=None)
    for start in blocks:
        idx = [i for i in range(start, min(start + image_block, len(data.images))) if i in need_caption]
        if idx:
            own.update(
                zip(idx, engine.caption([data.images[i].path for i in idx], progress=f"{engine.name}: captions"))
            )
        qk = by_block.get(start // image_block, []) if "gqa" in tasks else []
        runs = [(s, "short") for s in settings] + ([("none", "sentence")] if sentence else []) if qk else []
        for setting, style in runs:
            plan = sources[setting] if style == "short" else no_context
            keep = [k for k in qk if k in plan]
            if not keep:
                continue
            qs = [data.questions[k] for k in keep]
            contexts = [setting_context(plan[k]) for k in keep]
            blind = setting in TEXT_ONLY_SETTINGS  # asked without the image
            answered = engine.answer(
                [None if blind else data.images[q.image_index].path for q in qs],
                [q.question for q in qs],
                contexts,
                style,
                progress=f"{engine.name}: GQA {setting}/{style}",
            )
            key = setting if style == "short" else "sentence"
            answers.setdefault(key, {}).update(zip(keep, (a.answer for a in answered)))
        engine.release()
    return own, answers


def _run_vqav2(engine: Any, data: VQAv2Split, image_block: int) -> list[str]:
    """Short answers (``none`` context) to every VQAv2 question, in file order, block of images by block (each
    image's features computed once and shared by its questions)."""
    by_image: dict[int, list[int]] = {}
    for k, q in enumerate(data.questions):
        by_image.setdefault(q.image_id, []).append(k)
    image_ids = list(by_image)
    answers: list[str] = [""] * len(data.questions)
    for start in range(0, len(image_ids), image_block):
        keep = [k for image_id in image_ids[start : start + image_block] for k in by_image[image_id]]
        qs = [data.questions[k] for k in keep]
        answered = engine.answer(
            [q.path for q in qs], [q.question for q in qs], Context.none(), "short", progress=f"{engine.name}: VQAv2"
        )
        for k, a in zip(keep, answered):
            answers[k] = a.answer
        engine.release()
    return answers


def _world_dir(data_dir: str | Path | EvalSplit | None) -> Path | None:
    """The world folder behind ``data_dir`` (a folder, or an ``EvalSplit`` loaded from one), else ``None``."""
    folder = data_dir.data if isinstance(data_dir, EvalSplit) else data_dir
    return Path(folder) if folder and Path(folder).is_dir() else None


def evaluate_model(
    model: Any,
    data_dir: str | Path | EvalSplit | None = None,
    split: str = "test",
    tasks: Sequence[str] = TASKS,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    settings: Sequence[str] | None = None,
    sentence: bool = True,
    caption_metrics: Sequence[str] | None = None,
    name: str | None = None,
    max_new_tokens: int | None = None,
    image_block: int = IMAGE_BLOCK,
    reuse_features: bool = True,
    threads: int | None = None,
    scienceqa: str | Path | None = None,
    scienceqa_split: str = "test",
    scienceqa_format: str = "QCM-A",
    scienceqa_failed: str = "random",
    vqav2: VQAv2Split | None = None,
    bad_input: str = "fail",
) -> dict[str, Any]:
    """Run, write predictions, score. Returns the report of one model (also what ``report.json`` holds).

    Args:
        model: an engine (``VictEngine``, e.g. ``VictEngine.from_checkpoint(dir)``, or ``Blip2Engine``), a
            ``VisionLLM`` or a ``Blip2Baseline`` (wrapped in an engine with the built-in prompts).
        data_dir: a folder in the world layout (see ``load_eval_split``), or an ``EvalSplit`` already loaded
            (``load_eval_split`` / ``load_eval_files`` for real COCO + GQA files; ``split`` and ``limit`` are then
            taken from it).
        tasks: among ``ALL_TASKS``: ``caption`` and/or ``gqa`` (the default), ``scienceqa``, ``vqav2``. Only
            ``caption``/``gqa`` need ``data_dir``.
        out_dir: where ``predictions/`` go (nothing is written when ``None``).
        limit: evaluate the first ``limit`` images of the split (and all their questions).
        batch_size: prompts per generation batch.
        settings: GQA context settings among ``SETTINGS``: ``none``, ``caption`` (gold), ``self`` (generated),
            ``qa`` (another pair of the image), ``dense`` (the dense caption), ``distractor`` (another image's
            gold caption), ``text`` (the gold caption and no image: a text-only question, only when named; an
            engine that answers about images only skips it with a note); see ``vict.eval.splits``. ``None``:
            ``DEFAULT_SETTINGS`` (all but ``text``), those the data cannot give (e.g. ``dense`` on real COCO)
            absent from ``gqa`` with a note; a setting asked for by name is treated alike (``vict eval
            --gqa-settings`` refuses it up front instead).
        sentence: also score sentence answers (``none`` setting; VICT only).
        caption_metrics: subset of caption metrics (default all; ``FAST_CAPTION_METRICS`` skips METEOR/SPICE).
        max_new_tokens: one generation budget for captions and answers (default: per kind, see
            ``vict.inference.MAX_NEW_TOKENS``; BLIP-2: 30 for captions, 10 for answers, as LAVIS).
        image_block: images whose vision features are kept while all their prompts run (bounds memory).
        reuse_features: reuse each image's features across prompts (same predictions; ``False`` only for
            comparisons). Applies when the engine is built here.
        threads: torch CPU threads for the generation of this call (restored afterwards). ``None``: ``auto_threads``
            (one thread for a model under 50M parameters on CPU: measured on 2 shared cores, one thread ran the
            same evaluation up to 5x faster than two; larger models keep torch's setting).
        scienceqa: ScienceQA ``problems.json`` (``pid_splits.json`` and ``images/`` beside it) for the
            ``scienceqa`` task; default: the world's ``scienceqa/problems.json`` under ``data_dir``.
        scienceqa_split / scienceqa_format / scienceqa_failed: its split, prompt format and failed-answer rule
            (``vict.eval.scienceqa_run.evaluate_scienceqa``).
        vqav2: the ``vqav2`` task's questions (``vict.eval.splits.load_vqav2``); default: the world's VQAv2 files of
            ``split`` under ``data_dir`` (``load_world_vqav2``).
        bad_input: ``"fail"`` (default) or ``"skip"``: bad caption/question records and unreadable images of a
            ``data_dir`` folder (``load_eval_split``'s ``policy``); an ``EvalSplit`` keeps the policy it was loaded
            with. Skipped inputs are counted in ``skipped_inputs`` and a note.

    Returns:
        ``{"model", "kind", "data", "split", "n_images", "n_questions", "caption": {metric: x100 | None, "n",
        "notes"} | None, "gqa": {setting: {"vqa": score_gqa(...), "official": score_gqa(...), "by_type":
        gqa_accuracy_by_type(...) (vqa rule), "skipped": int}} | None, "gqa_sentence": {"exact",
        "answer_in_sentence", "n"} | None, "predictions": {name: path}, "choices", "notes": [str]}``.
        ``skipped``: questions without a context of the setting's kind (not scored there). A setting that cannot
        run (no question has its context, e.g. ``caption`` without any gold caption) is absent from ``gqa`` and
        explained in ``notes``. Prediction files ``gqa_<setting>_<split>_predictions.json`` hold
        ``{"questionId", "prediction", "context": context_record(...)}`` records. With the extra tasks:
        ``"scienceqa"``: ``evaluate_scienceqa``'s dict without the per-pid records (those are in
        ``scienceqa_<split>_predictions.json``); ``"vqav2"``: ``score_vqav2``'s dict (``overall``,
        ``per_answer_type``, ``per_question_type``, ``n``) with ``split`` and ``data``; predictions in
        ``vqav2_<split>_results.json`` (the official results format). ``"skipped_inputs"``: under a skip policy,
        ``SkipReport.to_json()`` (``total``, ``counts`` by reason, the first messages of each); ``None`` under fail.
    """
    settings = list(DEFAULT_SETTINGS if settings is None else settings)
    bad_tasks = [t for t in tasks if t not in ALL_TASKS]
    bad_settings = [s for s in settings if s not in SETTINGS]
    if bad_tasks or bad_settings or not tasks:
        raise ValueError(
            f"tasks {list(tasks)} / settings {list(settings)}: use tasks from {ALL_TASKS}, settings from {SETTINGS}"
        )
    if image_block < 1 or (threads is not None and threads < 1):
        raise ValueError(f"image_block={image_block}, threads={threads}: both must be >= 1")
    core = [t for t in tasks if t in TASKS]
    world = _world_dir(data_dir)
    missing_sources = []
    if core and data_dir is None:
        missing_sources.append(f"tasks {core} need data_dir (a world folder or an EvalSplit)")
    if "scienceqa" in tasks and scienceqa is None:
        if world is not None and world_scienceqa_problems(world).is_file():
            scienceqa = world_scienceqa_problems(world)
        else:
            missing_sources.append("the scienceqa task needs scienceqa=problems.json (or a world with scienceqa/)")
    if "vqav2" in tasks and vqav2 is None:
        if world is None:
            missing_sources.append("the vqav2 task needs vqav2=load_vqav2(...) (or a world folder with vqav2/)")
        else:
            vqav2 = load_world_vqav2(world, data_dir.name if isinstance(data_dir, EvalSplit) else split, limit)
    if missing_sources:
        raise ValueError("cannot evaluate:\n  " + "\n  ".join(missing_sources))
    wanted_metrics = list(CAPTION_METRICS if caption_metrics is None else caption_metrics)
    if "caption" in tasks and "METEOR" in wanted_metrics:
        prewarm_meteor()  # its JVM loads (~20 s) while the model generates
    engine = as_engine(
        model, batch_size=batch_size, name=name, max_new_tokens=max_new_tokens, reuse_features=reuse_features
    )
    data = None
    if core:
        data = (
            data_dir
            if isinstance(data_dir, EvalSplit)
            else load_eval_split(data_dir, split, core, limit, policy=bad_input)
        )
        split = data.name
    pred_dir = Path(out_dir) / "predictions" / _slug(engine.name) if out_dir is not None else None
    written: dict[str, str] = {}

    def save(file_name: str, payload: Any) -> None:
        if pred_dir is not None:
            written[file_name] = str(write_json(pred_dir / file_name, payload))

    notes = list(data.notes) if data is not None else []
    blind = [s for s in settings if s in TEXT_ONLY_SETTINGS]
    if blind and not getattr(engine, "supports_text_only", False):
        settings = [s for s in settings if s not in TEXT_ONLY_SETTINGS]
        notes.append(
            f"GQA `{'`, `'.join(blind)}` setting skipped: {engine.name} answers questions about an image only."
        )
    if vqav2 is not None and "vqav2" in tasks:
        notes += vqav2.notes
    if data is not None:
        source = data.data or str(data_dir)
    else:  # extra tasks only: name their own files (a world folder, else the ScienceQA or VQAv2 files)
        source = str(world or scienceqa or vqav2.data)  # type: ignore[union-attr]
        split = scienceqa_split if "scienceqa" in tasks else vqav2.name  # type: ignore[union-attr]
    report: dict[str, Any] = {
        "model": engine.name,
        "kind": engine.kind,
        "data": source,
        "split": split,
        "n_images": len(data.images) if data is not None else 0,
        "n_questions": len(data.questions) if data is not None else 0,
        "caption": None,
        "gqa": None,
        "gqa_sentence": None,
        "skipped_inputs": data.skipped.to_json() if data is not None and data.skipped is not None else None,
        "choices": {
            "gold_caption": GOLD_CAPTION_RULE,
            "self_caption": "the model's own greedy caption (cap prompt), as scored in the caption task",
            "qa_context": QA_CONTEXT_RULE,
            "dense_caption": DENSE_CAPTION_RULE,
            "distractor": DISTRACTOR_RULE,
            "gqa_rule": "vqa (normalised, default) and official (exact match)",
            "decoding": "greedy",
        },
    }
    sentence = sentence and engine.supports_sentence and "gqa" in tasks
    previous_threads = torch.get_num_threads()
    threads = threads if threads is not None else auto_threads(engine)
    if threads is not None:
        torch.set_num_threads(threads)
    sources = {s: context_sources(data, s) for s in settings} if "gqa" in tasks else {}
    try:
        own, answers = (
            _run_generation(engine, data, core, settings, sentence, image_block, sources)
            if data is not None
            else ({}, {})
        )
        if "scienceqa" in tasks:
            from vict.eval.scienceqa_run import evaluate_scienceqa

            sqa = evaluate_scienceqa(
                engine,
                scienceqa,
                split=scienceqa_split,
                fmt=scienceqa_format,
                failed=scienceqa_failed,
                max_new_tokens=max_new_tokens,
                out_dir=pred_dir,
                limit=limit,
            )
            sqa.pop("predictions")
            written.update(sqa.pop("files"))
            report["scienceqa"] = sqa
        if "vqav2" in tasks:
            got = _run_vqav2(engine, vqav2, image_block)
    finally:
        torch.set_num_threads(previous_threads)
    if "vqav2" in tasks:
        results = [{"question_id": q.question_id, "answer": a} for q, a in zip(vqav2.questions, got)]
        save(f"vqav2_{vqav2.name}_results.json", results)
        scored = score_vqav2(results, vqav2.annotations, vqav2.questions_file)
        report["vqav2"] = {**scored, "split": vqav2.name, "data": vqav2.data, "prompt": "short answer, no context"}

    # 1. Captions (generated once, also the `self` context), scored on the images that have references.
    if "caption" in tasks and data is not None:
        captioned = [i for i, im in enumerate(data.images) if im.captioned]
        results = [{"image_id": data.images[i].image_id, "caption": own[i]} for i in captioned]
        save(f"captions_{split}_results.json", results)
        report["caption"] = score_captions(results, data.captions, metrics=caption_metrics)

    # 2. GQA short answers in each context setting; 3. sentence answers (no context).
    if "gqa" in tasks and data is not None:
        report["gqa"] = {}
        for setting in settings:
            got = answers.get(setting, {})
            if not got:
                if not data.questions:
                    notes.append(f"GQA `{setting}` setting skipped: no GQA question on the evaluated images.")
                else:
                    notes.append(
                        f"GQA `{setting}` setting skipped: no question has its context; a question is left out when "
                        f"{missing_context_reason(setting)}."
                    )
                continue
            keys = sorted(got)
            skipped = len(data.questions) - len(keys)
            if skipped:
                notes.append(
                    f"GQA `{setting}` setting scored on {len(keys)} of {len(data.questions)} questions ({skipped} "
                    f"skipped: a question is left out when {missing_context_reason(setting)})"
                )
            records = [
                {
                    "questionId": data.questions[k].question_id,
                    "prediction": got[k],
                    "context": context_record(
                        sources[setting][k],
                        data,
                        own.get(data.questions[k].image_index),
                        text_only=setting in TEXT_ONLY_SETTINGS,
                    ),
                }
                for k in keys
            ]
            scored = {data.questions[k].question_id: data.gqa[data.questions[k].question_id] for k in keys}
            save(f"gqa_{setting}_{split}_predictions.json", records)
            report["gqa"][setting] = {
                "vqa": score_gqa(records, scored, rule="vqa"),
                "official": score_gqa(records, scored, rule="official"),
                "by_type": gqa_accuracy_by_type(gqa_correctness(records, scored, rule=HEADLINE_RULE), scored),
                "skipped": skipped,
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


def as_engine(
    obj: Any,
    batch_size: int = BATCH_SIZE,
    name: str | None = None,
    max_new_tokens: int | None = None,
    reuse_features: bool = True,
) -> Any:
    """Wrap what ``evaluate_model`` accepts into an engine (an engine is returned as it is)."""
    if hasattr(obj, "caption") and hasattr(obj, "answer") and hasattr(obj, "kind"):
        return obj
    from vict.eval.blip2_baseline import Blip2Baseline

    if isinstance(obj, Blip2Baseline):
        from vict.inference.blip2 import Blip2Engine

        return Blip2Engine(obj, name or f"BLIP-2 ({obj.name})", batch_size, max_new_tokens, reuse_features)
    from vict.models.vision_llm import VisionLLM

    if isinstance(obj, VisionLLM):
        from vict.inference import VictEngine

        return VictEngine(
            obj,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            name=name or "VICT",
            reuse_features=reuse_features,
        )
    raise TypeError(f"cannot evaluate a {type(obj).__name__}: pass an engine, a VisionLLM or a Blip2Baseline")
