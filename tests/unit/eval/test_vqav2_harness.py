"""VQAv2 through the evaluation harness: the harness's numbers are the official scorer's on its own predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vict.eval.splits import coco_image_name, load_vqav2, load_world_vqav2
from vict.eval.vqa import score_vqav2

TOKENS = 3
# question_id: (image_id, question, the 10 human answers, answer_type, question_type)
QUESTIONS = {
    4201: (42, "Is there a red circle?", ["yes"] * 9 + ["no"], "yes/no", "is there a"),
    4202: (42, "How many shapes are there?", ["2"] * 2 + ["two"] * 5 + ["3"] * 3, "number", "how many"),
    7301: (73, "What color is the square?", ["blue"] * 10, "other", "what color is the"),
    9001: (90, "What shape is it?", ["circle"] * 4 + ["a circle"] * 6, "other", "what shape is"),
}


def write_vqav2(folder: Path, subtype: str = "val2014") -> tuple[Path, Path]:
    """The official questions and annotations files of ``QUESTIONS`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": subtype,
        "questions": [{"image_id": im, "question": q, "question_id": qid} for qid, (im, q, *_) in QUESTIONS.items()],
    }
    annotations = {
        "data_subtype": subtype,
        "annotations": [
            {
                "question_id": qid,
                "image_id": im,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(ans)],
                "answer_type": atype,
                "question_type": qtype,
                "multiple_choice_answer": max(set(ans), key=ans.count),
            }
            for qid, (im, _, ans, atype, qtype) in QUESTIONS.items()
        ],
    }
    q_path, a_path = (
        folder / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
        folder / f"v2_mscoco_{subtype}_annotations.json",
    )
    q_path.write_text(json.dumps(questions))
    a_path.write_text(json.dumps(annotations))
    return q_path, a_path


def write_images(folder: Path, names: dict[int, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names.values()):
        Image.new("RGB", (32, 32), (60 * k, 120, 255 - 60 * k)).save(folder / name)


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny("lora", seed=0)


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(questions, annotations, images folder) with COCO's file names."""
    images = tmp_path / "val2014"
    write_images(images, {im: coco_image_name("val2014", im) for im in (42, 73, 90)})
    return (*write_vqav2(tmp_path / "vqa"), images)


STUB_ANSWERS = {"Is there a red circle?": "Yes", "How many shapes are there?": "two", "What shape is it?": "circle"}


class StubEngine:
    """Answers with fixed texts (by question), to get non-trivial scores."""

    kind, name, supports_sentence = "vict", "stub", True

    def answer(self, images, questions, context=None, style="short", progress=None, **kwargs):
        from vict.inference import Answer

        assert style == "short" and context.kind == "none" and all(Path(im).is_file() for im in images)
        return [Answer(q, STUB_ANSWERS.get(q, "red"), "none", style) for q in questions]

    def caption(self, images, max_new_tokens=None, progress=None):
        raise AssertionError("the vqav2 task makes no caption")

    def release(self) -> None:
        pass


def check_against_official(report: dict, out: Path, q_path: Path, a_path: Path) -> list[dict]:
    (results_file,) = (out / "predictions").rglob("vqav2_*_results.json")
    results = json.loads(results_file.read_text())
    assert sorted(r["question_id"] for r in results) == sorted(QUESTIONS)
    official = score_vqav2(results, json.loads(a_path.read_text()), json.loads(q_path.read_text()))
    assert {k: report["vqav2"][k] for k in official} == official
    return results


def test_harness_numbers_are_the_official_scorers_on_its_predictions(model, coco, tmp_path: Path) -> None:
    from vict.recipes.evaluate import evaluate_model

    q_path, a_path, images = coco
    data = load_vqav2(q_path, a_path, images)
    assert [q.path.name for q in data.questions][:2] == [coco_image_name("val2014", 42)] * 2 and data.name == "val2014"
    out = tmp_path / "tiny"
    report = evaluate_model(model, tasks=["vqav2"], vqav2=data, out_dir=out, max_new_tokens=TOKENS, batch_size=3)
    check_against_official(report, out, q_path, a_path)
    assert report["vqav2"]["n"] == len(QUESTIONS) and report["split"] == "val2014"

    # Non-trivial numbers (a stub's answers): "Yes" 1.0 (9 of 10 humans), "two" 1.0 (= "2" after normalising: the
    # humans disagree), "red" 0, "circle" 1.0 (every "a circle" becomes "circle").
    out = tmp_path / "stub"
    report = evaluate_model(StubEngine(), tasks=["vqav2"], vqav2=data, out_dir=out)
    results = check_against_official(report, out, q_path, a_path)
    assert {r["question_id"]: r["answer"] for r in results}[4201] == "Yes"
    assert report["vqav2"]["per_answer_type"] == {"number": 100.0, "other": 50.0, "yes/no": 100.0}
    assert report["vqav2"]["overall"] == 75.0 and report["vqav2"]["per_question_type"]["what color is the"] == 0.0

    from vict.eval.evaluation_report import write_report

    _, md = write_report({"stub": report}, out)
    table = md.read_text().split("## VQAv2 accuracy")[1].split("##")[0]
    assert "| stub  | 75.00   | 100.00 | 100.00 | 50.00 | 4 |" in table


def test_limit_and_bad_files(coco, tmp_path: Path) -> None:
    q_path, a_path, images = coco
    first = load_vqav2(q_path, a_path, images, limit=1)
    assert [q.question_id for q in first.questions] == [4201, 4202] and first.notes
    assert [a["question_id"] for a in first.annotations["annotations"]] == [4201, 4202]
    with pytest.raises(FileNotFoundError, match="--vqav2-images"):
        load_vqav2(q_path, a_path, tmp_path / "vqa")  # no image there
    other = json.loads(a_path.read_text())
    other["annotations"] = other["annotations"][:2]
    (tmp_path / "short.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="do not match"):
        load_vqav2(q_path, tmp_path / "short.json", images)


def test_world_folder_resolves_images_through_its_captions_file(model, tmp_path: Path) -> None:
    from vict.cli import main

    world = tmp_path / "world"
    names = {42: "42.png", 73: "73.png", 90: "90.png"}
    write_images(world / "images", names)
    (world / "annotations").mkdir()
    captions = {
        "images": [{"id": im, "file_name": name} for im, name in names.items()],
        "annotations": [{"image_id": im, "id": im, "caption": "a shape"} for im in names],
    }
    (world / "annotations" / "captions_test.json").write_text(json.dumps(captions))
    q_path, a_path = write_vqav2(world / "vqav2", subtype="test")
    data = load_world_vqav2(world, "test")
    assert {q.image_id: q.path for q in data.questions} == {im: world / "images" / n for im, n in names.items()}

    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    out = tmp_path / "out"
    args = ["eval", "--checkpoint", str(checkpoint), "--max-new-tokens", str(TOKENS), "--out", str(out)]
    assert main([*args, "--world", str(world), "--tasks", "vqav2"]) == 0
    (report,) = json.loads((out / "report.json").read_text())["models"].values()
    check_against_official(report, out, q_path, a_path)
    assert report["data"] == str(world) and "VQAv2 accuracy" in (out / "report.md").read_text()
    # The three files given: the vqav2 task alone, on COCO-named images.
    coco_images = tmp_path / "coco"
    write_images(coco_images, {im: coco_image_name("test", im) for im in names})
    files = ["--vqav2-questions", str(q_path), "--vqav2-annotations", str(a_path), "--vqav2-images", str(coco_images)]
    assert main([*args, *files]) == 0
    (report,) = json.loads((out / "report.json").read_text())["models"].values()
    assert report["caption"] is None and report["vqav2"]["n"] == len(QUESTIONS)
    assert main([*args, "--vqav2-questions", str(q_path)]) == 2  # the three go together
