"""The `qa`, `dense` and `distractor` GQA settings (where each context comes from) and accuracy by question type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from vict.eval.gqa import gqa_accuracy_by_type, gqa_correctness, score_gqa
from vict.eval.splits import (
    DEFAULT_SETTINGS,
    SETTINGS,
    TEXT_ONLY_SETTINGS,
    EvalImage,
    EvalQuestion,
    EvalSplit,
    context_sources,
    distractor_images,
    load_eval_split,
    qa_partners,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world.generate import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=40, seed=0, questions_per_image=5)
    return out


def _annotations(world: Path) -> tuple[dict, dict, dict]:
    ann = world / "annotations"
    captions = json.loads((ann / "captions_test.json").read_text())
    questions = json.loads((ann / "test_balanced_questions.json").read_text())
    scenes = {str(s["image_id"]): s for s in json.loads((ann / "scenes.json").read_text())["scenes"]}
    return captions, questions, scenes


def _objects(scene: dict) -> set[tuple[str, str, str, str]]:
    return {(o["shape"], o["color"], o["size"], o["position"]) for o in scene["objects"]}


def test_settings_keep_the_first_three_first() -> None:
    assert SETTINGS == ("none", "caption", "self", "qa", "dense", "distractor", "text")
    # `text` (the gold caption, no image) runs only when named
    assert SETTINGS[:-1] == DEFAULT_SETTINGS and set(TEXT_ONLY_SETTINGS) == {"text"}


def test_qa_partner_is_the_next_other_question_of_the_same_image() -> None:
    qs = [
        EvalQuestion("a1", 0, "What colour is it?", "red", None),
        EvalQuestion("b1", 1, "Is it big?", "yes", None),  # alone on image 1
        EvalQuestion("a2", 0, "what  colour is it", "red", None),  # the same text as a1 (case, spacing, "?")
        EvalQuestion("a3", 0, "How many shapes?", "2", None),
        EvalQuestion("c1", 2, "Same?", "no", None),
        EvalQuestion("c2", 2, "same ?", "no", None),  # image 2: only one text
    ]
    assert qa_partners(qs) == {0: 3, 2: 3, 3: 0}  # a1 -> a3 (a2 has its text), a2 -> a3, a3 -> a1 (cyclic)


def test_distractor_is_the_next_image_with_another_caption_and_other_objects() -> None:
    def image(i: int, caption: str | None, objects: set | None) -> EvalImage:
        return EvalImage(i, Path(f"{i}.png"), caption, objects=frozenset(objects) if objects is not None else None)

    circle = {("circle", "red", "small", "left")}
    square = {("square", "blue", "large", "top")}
    images = [
        image(0, "A red circle.", circle),
        image(1, "a red circle", square),  # same caption text as image 0
        image(2, "Shapes.", circle),  # same objects as image 0
        image(3, None, square),  # no gold caption: never a distractor, but gets one
        image(4, "A blue square.", square),
        image(5, "Other.", None),  # no scene: only the caption text is compared
    ]
    assert distractor_images(images) == {0: 4, 1: 2, 2: 4, 3: 5, 4: 5, 5: 0}  # 3 -> not 4: the same objects
    assert distractor_images(images[:1]) == {}  # a lone image has none


def test_world_contexts_come_from_where_the_rules_say(world: Path) -> None:
    captions, questions, scenes = _annotations(world)
    data = load_eval_split(world, "test")
    assert len(data.images) >= 3 and len(data.questions) == 5 * len(data.images)
    anns: dict[str, list[dict]] = {}
    for a in captions["annotations"]:
        anns.setdefault(str(a["image_id"]), []).append(a)
    sources = {s: context_sources(data, s) for s in SETTINGS}
    for k, q in enumerate(data.questions):
        image_id = questions[q.question_id]["imageId"]
        mine = anns[image_id]
        # dense: exactly the caption flagged "dense": true of the question's own image.
        (dense,) = [a["caption"] for a in mine if a["dense"]]
        assert sources["dense"][k].kind == "caption" and sources["dense"][k].caption == dense
        gold = next(a["caption"] for a in mine if not a["dense"])
        assert sources["caption"][k].caption == gold and sources["caption"][k].image_index == q.image_index
        assert sources["text"][k] == sources["caption"][k]  # the same caption; asked without the image
        # distractor: another image's gold caption (same rule), another text, another object set.
        d = sources["distractor"][k]
        other = str(data.images[d.image_index].image_id)
        assert d.kind == "caption" and other != image_id
        assert d.caption == next(a["caption"] for a in anns[other] if not a["dense"]) != gold
        assert _objects(scenes[other]) != _objects(scenes[image_id])
        # qa: another question of the same image with its gold answer, never the question asked.
        p = sources["qa"][k]
        given = data.questions[p.question_index]
        assert p.kind == "qa" and given.question_id != q.question_id and given.question != q.question
        assert questions[given.question_id]["imageId"] == image_id
        assert p.qa == (questions[given.question_id]["question"], questions[given.question_id]["answer"])


def test_by_type_hand_computed() -> None:
    def q(structural: str | None, semantic: str, detailed: str) -> dict:
        types = {"semantic": semantic, "detailed": detailed} | ({"structural": structural} if structural else {})
        return {"answer": "x", "types": types}

    questions = {
        "1": q("verify", "rel", "exist"),
        "2": q("query", "attr", "query_color"),
        "3": q("query", "attr", "query_color"),
        "4": q("choose", "rel", "choose_pos"),
        "5": q(None, "obj", "odd"),  # no structural type: counted under semantic/detailed, not binary/open
        "6": {"answer": "x"},  # no types: counted under nothing
    }
    correct = {"1": True, "2": True, "3": False, "4": False, "5": True, "6": True}
    assert gqa_accuracy_by_type(correct, questions) == {
        "binary": {"accuracy": 50.0, "count": 2},
        "detailed/choose_pos": {"accuracy": 0.0, "count": 1},
        "detailed/exist": {"accuracy": 100.0, "count": 1},
        "detailed/odd": {"accuracy": 100.0, "count": 1},
        "detailed/query_color": {"accuracy": 50.0, "count": 2},
        "open": {"accuracy": 50.0, "count": 2},
        "semantic/attr": {"accuracy": 50.0, "count": 2},
        "semantic/obj": {"accuracy": 100.0, "count": 1},
        "semantic/rel": {"accuracy": 50.0, "count": 2},
        "structural/choose": {"accuracy": 0.0, "count": 1},
        "structural/query": {"accuracy": 50.0, "count": 2},
        "structural/verify": {"accuracy": 100.0, "count": 1},
    }
    preds = [{"questionId": qid, "prediction": "x" if ok else "y"} for qid, ok in correct.items()]
    assert gqa_correctness(preds, questions, rule="vqa") == correct
    assert score_gqa(preds, questions, rule="vqa")["correct"] == sum(correct.values())


@dataclass
class _Answer:
    answer: str


class RecordingEngine:
    """An engine that answers from the gold answers (right for about half of the questions, whatever the context)
    and records every context it is given."""

    name, kind, supports_sentence = "recording", "vict", False

    def __init__(self, gold: dict[str, str]) -> None:
        self.gold, self.seen = gold, []

    def caption(self, images, progress=None) -> list[str]:
        return [f"own caption of {Path(p).name}" for p in images]

    def answer(self, images, questions, contexts, style="short", progress=None) -> list[_Answer]:
        self.seen += [(Path(p).stem, q, c) for p, q, c in zip(images, questions, contexts)]
        return [_Answer(self.gold[q] if len(q) % 2 else "wrong") for q in questions]

    def release(self) -> None:
        pass


def test_evaluate_model_contexts_records_and_by_type(world: Path, tmp_path: Path) -> None:
    from vict.eval.evaluation_report import report_markdown
    from vict.recipes.evaluate import evaluate_model

    captions, questions, scenes = _annotations(world)
    data = load_eval_split(world, "test")
    engine = RecordingEngine({q.question: q.answer for q in data.questions})
    report = evaluate_model(engine, data, tasks=["gqa"], out_dir=tmp_path, sentence=False)
    assert list(report["gqa"]) == list(DEFAULT_SETTINGS)  # the world supports every setting; `text` when named
    # What the engine was given (one block: each setting one pass over the questions, in order): `qa` never the
    # question asked; `dense` the flagged caption; `distractor` the gold caption of an image with other objects.
    dense = {str(a["image_id"]): a["caption"] for a in captions["annotations"] if a["dense"]}
    gold: dict[str, str] = {}
    for a in captions["annotations"]:
        if not a["dense"]:
            gold.setdefault(str(a["image_id"]), a["caption"])
    n = len(data.questions)
    assert len(engine.seen) == n * len(DEFAULT_SETTINGS)
    seen = {s: engine.seen[i * n : (i + 1) * n] for i, s in enumerate(DEFAULT_SETTINGS)}
    for k, q in enumerate(data.questions):
        image_id = str(data.images[q.image_index].image_id)
        assert all(seen[s][k][:2] == (image_id, q.question) for s in DEFAULT_SETTINGS)
        assert seen["qa"][k][2].kind == "qa" and seen["qa"][k][2].qa[0] != q.question
        assert seen["dense"][k][2].caption == dense[image_id] and seen["caption"][k][2].caption == gold[image_id]
        distractor = seen["distractor"][k][2]
        others = {gold[i] for i in gold if i != image_id and _objects(scenes[i]) != _objects(scenes[image_id])}
        assert distractor.kind == "caption" and distractor.caption != gold[image_id] and distractor.caption in others
    for setting, got in report["gqa"].items():
        assert got["skipped"] == 0 and got["vqa"]["n"] == n
        by_type = got["by_type"]
        for field in ("structural", "semantic", "detailed"):
            assert sum(v["count"] for k, v in by_type.items() if k.startswith(field + "/")) == n, (setting, field)
        assert by_type["binary"]["count"] + by_type["open"]["count"] == n
        structural = [v for k, v in by_type.items() if k.startswith("structural/")]
        mean = sum(v["accuracy"] * v["count"] for v in structural) / n
        assert mean == pytest.approx(got["vqa"]["accuracy"]) and 0 < mean < 100
        # The prediction file names the context of every question.
        records = json.loads(Path(report["predictions"][f"gqa_{setting}_test_predictions.json"]).read_text())
        assert len(records) == n
        for rec in records:
            ctx, image_id = rec["context"], questions[rec["questionId"]]["imageId"]
            if setting == "distractor":
                assert str(ctx["source_image_id"]) != image_id and ctx["kind"] == "caption"
                assert _objects(scenes[str(ctx["source_image_id"])]) != _objects(scenes[image_id])
            elif setting == "qa":
                assert ctx["source_question_id"] != rec["questionId"]
                assert ctx["qa"] == [questions[ctx["source_question_id"]][k] for k in ("question", "answer")]
                assert questions[ctx["source_question_id"]]["imageId"] == image_id
            elif setting == "dense":
                assert ctx["caption"] == dense[image_id] and str(ctx["source_image_id"]) == image_id
            elif setting == "self":
                assert ctx == {"kind": "self", "caption": f"own caption of {image_id}.png"}
            elif setting == "none":
                assert ctx == {"kind": "none"}
    md = report_markdown({"recording": report})
    assert "| qa" in md and "| distractor" in md and "structural: query" in md and "semantic: attribute" in md


class TextOnlyRecordingEngine(RecordingEngine):
    """A ``RecordingEngine`` that also takes text-only questions (``None`` images)."""

    supports_text_only = True

    def answer(self, images, questions, contexts, style="short", progress=None) -> list[_Answer]:
        self.seen += [(None if p is None else Path(p).stem, q, c) for p, q, c in zip(images, questions, contexts)]
        return [_Answer(self.gold[q] if len(q) % 2 else "wrong") for q in questions]


def test_the_text_setting_asks_with_the_gold_caption_and_no_image(world: Path, tmp_path: Path) -> None:
    from vict.recipes.evaluate import evaluate_model

    data = load_eval_split(world, "test")
    n = len(data.questions)
    engine = TextOnlyRecordingEngine({q.question: q.answer for q in data.questions})
    report = evaluate_model(
        engine, data, tasks=["gqa"], settings=["caption", "text"], out_dir=tmp_path, sentence=False
    )
    assert list(report["gqa"]) == ["caption", "text"]
    caption, text = engine.seen[:n], engine.seen[n:]
    for (image, question, ctx), (blind, same_question, same_ctx) in zip(caption, text):
        assert image is not None and blind is None  # the same question and caption, without the image
        assert (question, ctx) == (same_question, same_ctx) and ctx.kind == "caption" and ctx.caption
    records = json.loads(Path(report["predictions"]["gqa_text_test_predictions.json"]).read_text())
    assert len(records) == n and all(r["context"]["image"] is False and r["context"]["caption"] for r in records)
    with_image = json.loads(Path(report["predictions"]["gqa_caption_test_predictions.json"]).read_text())
    assert all("image" not in r["context"] for r in with_image)
    # an engine that answers about images only (a plain BLIP-2) skips it, saying why
    only_images = RecordingEngine({q.question: q.answer for q in data.questions})
    report = evaluate_model(only_images, data, tasks=["gqa"], settings=["none", "text"], sentence=False)
    assert list(report["gqa"]) == ["none"] and len(only_images.seen) == n
    assert any("`text` setting skipped: recording answers questions about an image only" in x for x in report["notes"])


def _no_dense_split(world: Path) -> EvalSplit:
    data = load_eval_split(world, "test", limit=1)
    for image in data.images:
        image.dense_caption = None
    return data


def test_a_setting_the_data_cannot_give_is_absent_with_a_note(world: Path) -> None:
    from vict.recipes.evaluate import evaluate_model

    data = _no_dense_split(world)  # one image: no distractor either
    engine = RecordingEngine({q.question: q.answer for q in data.questions})
    report = evaluate_model(engine, data, tasks=["gqa"], sentence=False)
    assert list(report["gqa"]) == ["none", "caption", "self", "qa"]
    assert any("`dense` setting skipped" in n and '"dense": true' in n for n in report["notes"])
    assert any("`distractor` setting skipped" in n for n in report["notes"])
    assert not any(c.kind == "caption" and c.caption == "" for _, _, c in engine.seen)


def test_qa_skips_a_question_alone_on_its_image_and_counts_it(world: Path) -> None:
    from vict.eval.evaluation_report import report_markdown
    from vict.recipes.evaluate import evaluate_model

    data = load_eval_split(world, "test", limit=2)
    alone = next(k for k, q in enumerate(data.questions) if q.image_index == 1)
    data.questions = [q for k, q in enumerate(data.questions) if q.image_index == 0 or k == alone]
    data.gqa = {q.question_id: data.gqa[q.question_id] for q in data.questions}
    engine = RecordingEngine({q.question: q.answer for q in data.questions})
    report = evaluate_model(engine, data, tasks=["gqa"], settings=["qa", "none"], sentence=False)
    assert report["gqa"]["qa"]["skipped"] == 1 and report["gqa"]["qa"]["vqa"]["n"] == len(data.questions) - 1
    assert report["gqa"]["none"]["skipped"] == 0
    assert any("`qa` setting scored on" in n and "1 skipped" in n for n in report["notes"])
    assert "Skipped (no context of the setting's kind" in report_markdown({"r": report})


def test_real_coco_has_no_dense_setting_and_asking_for_it_is_an_error(tmp_path: Path, capsys) -> None:
    from real_files import write_real_files

    from vict.cli import main
    from vict.eval.splits import load_eval_files

    files = write_real_files(tmp_path / "real")
    args = ["--captions", str(files["captions"]), "--images", str(files["coco_images"])]
    args += ["--questions", str(files["val_questions"]), "--question-images", str(files["gqa_images"])]
    args += ["--vg-image-data", str(files["vg"]), "--tasks", "gqa"]
    data = load_eval_files(
        files["captions"], files["val_questions"], files["coco_images"],
        question_images_dir=files["gqa_images"], vg_image_data=files["vg"], tasks=["gqa"],
    )  # fmt: skip
    assert all(im.dense_caption is None for im in data.images) and context_sources(data, "dense") == {}
    # Explicitly asked for: an error naming the setting, why, and what this data supports (before any model loads).
    ckpt = str(tmp_path / "no_checkpoint")
    assert main(["eval", "--checkpoint", ckpt, *args, "--gqa-settings", "none,dense"]) == 2
    err = capsys.readouterr().err
    assert "no evaluated question has a context for dense" in err and '"dense": true' in err
    assert "this data supports --gqa-settings none,caption,self,qa,distractor" in err
    assert main(["eval", "--checkpoint", ckpt, *args, "--gqa-settings", "none,oracle"]) == 2
    err = capsys.readouterr().err
    assert "'oracle' unknown" in err and "none,caption,self,qa,dense,distractor" in err
    # Not asked for (the default): the setting is simply absent, with a note.
    engine = RecordingEngine({q.question: q.answer for q in data.questions})
    from vict.recipes.evaluate import evaluate_model

    report = evaluate_model(engine, data, tasks=["gqa"], sentence=False)
    assert "dense" not in report["gqa"] and any("`dense` setting skipped" in n for n in report["notes"])
    # Distractors come from the evaluated images (here COCO 42 and VG 2354787, which has no caption): image 42's
    # questions have none and are counted as skipped; question 204 gets image 42's gold caption.
    assert report["gqa"]["distractor"]["skipped"] == 2 and report["gqa"]["distractor"]["vqa"]["n"] == 1
    given = [c.caption for image, q, c in engine.seen if image == "2354787" and c.kind == "caption"]
    assert given == ["A red circle on the left."]  # its own image has no caption: only the distractor setting
