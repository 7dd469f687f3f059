"""ScienceQA through the evaluation harness (tiny random model and stub engines) and text-only engine rows.

The tiny model writes garbage, so these tests check consistency, not accuracy: every pid predicted, text-only and
image problems in the same batches, the scores equal to an independent recomputation, the failed-answer rule.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from vict.constants import IMAGE_SLOT_ID
from vict.eval.scienceqa_run import evaluate_scienceqa

TOKENS = 5
# pid: (image?, hint, subject, grade, choices, answer)
PROBLEMS = {
    "11": (True, "", "natural science", "grade3", ["cat", "dog"], 0),
    "12": (False, "Mona will print her name.", "language science", "grade8", ["present", "future", "past"], 1),
    "13": (True, "The map shows four states.", "social science", "grade7", ["WV", "LA", "AZ", "OK"], 0),
    "14": (False, "", "natural science", "grade2", ["solid", "liquid"], 1),
    "15": (True, "", "language science", "grade10", ["yes", "no", "maybe"], 2),
}
TOPICS = {"natural science": "physics", "social science": "geography", "language science": "verbs"}


def write_scienceqa(root: Path) -> Path:
    """The official layout under ``root``: problems.json, pid_splits.json, images/test/<pid>/image.png."""
    problems = {}
    for k, (pid, (has_image, hint, subject, grade, choices, answer)) in enumerate(PROBLEMS.items()):
        problems[pid] = {
            "question": f"Question {pid}: which one?",
            "choices": choices,
            "answer": answer,
            "hint": hint,
            "image": "image.png" if has_image else None,
            "task": "closed choice",
            "grade": grade,
            "subject": subject,
            "topic": TOPICS[subject],
            "category": "Category",
            "skill": "Skill",
            "lecture": "A lecture.",
            "solution": "A solution.",
            "split": "test",
        }
        if has_image:
            folder = root / "images" / "test" / pid
            folder.mkdir(parents=True)
            Image.new("RGB", (32, 32), (40 * k, 200 - 30 * k, 90)).save(folder / "image.png")
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps({"train": [], "val": [], "test": list(PROBLEMS)}))
    return root / "problems.json"


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny("lora", seed=0)


@pytest.fixture
def sqa(tmp_path: Path) -> Path:
    return write_scienceqa(tmp_path / "scienceqa")


class StubEngine:
    """Returns fixed texts and records what it was asked (the interface ``evaluate_scienceqa`` uses)."""

    def __init__(self, kind: str, texts: dict[str, str] | None = None) -> None:
        self.kind, self.name, self.max_new_tokens, self.texts = kind, f"stub-{kind}", None, texts or {}
        self.calls: list[tuple[list, list[str], int]] = []

    def complete(self, images, prompts, max_new_tokens, progress=None):
        self.calls.append((list(images), list(prompts), max_new_tokens))
        pids = [re.search(r"Question (\d+):", p).group(1) for p in prompts]
        return [self.texts.get(pid, "no idea") for pid in pids]

    def release(self) -> None:
        pass


def recompute(records: dict[str, dict], raw: dict[str, dict]) -> dict[str, tuple[int, int]]:
    """Official categories from the prediction records and the raw problems, written out independently:
    ``{category: (correct, count)}``."""
    subjects = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
    out: dict[str, list[bool]] = {}
    for pid, rec in records.items():
        prob = raw[pid]
        ok = rec["pred"] == prob["answer"]
        groups = [subjects[prob["subject"]], "Average"]
        groups += ["TXT"] if prob["hint"] else []
        groups += ["IMG"] if prob["image"] else []
        groups += ["NO"] if not prob["hint"] and not prob["image"] else []
        groups += ["G1-6" if int(prob["grade"][5:]) <= 6 else "G7-12"]
        for g in groups:
            out.setdefault(g, []).append(ok)
    return {g: (sum(v), len(v)) for g, v in out.items()}


def check_consistent(result: dict, records: dict[str, dict], problems_json: Path, failed: str = "random") -> None:
    from vict.data.scienceqa import load_scienceqa
    from vict.eval.scienceqa import score_scienceqa

    raw = json.loads(problems_json.read_text())
    assert set(records) == set(PROBLEMS)
    expected = recompute(records, raw)
    for category, stats in result["categories"].items():
        correct, count = expected.get(category, (0, 0))
        assert (stats["correct"], stats["count"]) == (correct, count), category
        assert stats["accuracy"] == (100.0 * correct / count if count else None)
    problems = load_scienceqa(problems_json)
    rescored = score_scienceqa({pid: r["pred"] for pid, r in records.items()}, problems, failed=failed)
    assert rescored["categories"] == result["categories"] and rescored["by_topic"] == result["by_topic"]
    assert result["failed"] == sum(r["failed"] for r in records.values())
    for pid, rec in records.items():  # the extraction rule, recomputed: first "The answer is X.", else the rule
        n = len(raw[pid]["choices"])
        match = re.search(r"The answer is ([A-Z]).", rec["text"])
        stripped = rec["text"].strip()
        letter = None
        if match:
            letter = match.group(1)
        elif stripped in ("A", "B", "C", "D", "E"):
            letter = stripped
        elif len(stripped) >= 3 and stripped[0] in "ABCDE" and stripped[1:3] == ". ":
            letter = stripped[0]
        valid = letter is not None and letter in "ABCDE"[:n]
        assert rec["failed"] == (not valid), pid
        if valid:
            assert rec["pred"] == "ABCDE".index(letter)
        else:
            assert rec["pred"] == (random.Random(f"0:{pid}").randrange(n) if failed == "random" else -1)
        assert rec["answer"] == raw[pid]["answer"]


def test_text_only_prompt_through_the_engine_equals_model_generate(model) -> None:
    from vict.inference import VictEngine

    image = Image.new("RGB", (40, 40), (200, 30, 30))
    with_image = "<image>\nQuestion: what colour is it?\nResponse:"
    text_only = "Image: N/A\nQuestion: Which tense does the sentence use?\nOptions: (A) present (B) future\nResponse:"
    for reuse in (True, False):
        engine = VictEngine(model, batch_size=3, max_new_tokens=TOKENS, reuse_features=reuse)
        batch = engine.collator.encode_prompts([text_only], images=[None])
        alone = model.generate(
            batch["pixel_values"], batch["input_ids"], batch["attention_mask"], max_new_tokens=TOKENS, do_sample=False
        )
        mixed = engine.generate([image, None, image], [with_image, text_only, with_image], TOKENS)
        assert mixed[1] == alone[0], reuse
        assert engine.generate([None], [text_only], TOKENS) == alone  # a batch of text-only rows only
        assert [mixed[0], mixed[2]] == engine.generate(
            [image, image], [with_image] * 2, TOKENS
        )  # image rows as before
        if reuse:
            assert len(engine.cache) == 1  # the text-only row has no cache entry
    with pytest.raises(ValueError, match="no image marker"):
        engine.generate([None], [with_image], TOKENS)


def test_harness_on_the_tiny_model_batches_text_only_with_image_problems(model, sqa: Path, monkeypatch) -> None:
    from vict.inference import VictEngine

    slot_rows: list[list[bool]] = []
    generate = model.generate

    def spy(pixel_values, input_ids, *args, **kwargs):
        slot_rows.append((input_ids == IMAGE_SLOT_ID).any(dim=1).tolist())
        return generate(pixel_values, input_ids, *args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    # Without prefix reuse a batch is one call, text-only rows mixed with image rows in pid order; with it the image
    # rows of a batch continue from their prefixes in one call and the text-only rows go in another.
    engine = VictEngine(model, batch_size=4, max_new_tokens=TOKENS, name="tiny", reuse_prefix=False)
    out = evaluate_scienceqa(engine, sqa, out_dir=sqa.parent / "out")
    assert slot_rows == [[True, False, True, False], [True]]
    slot_rows.clear()
    reused = evaluate_scienceqa(VictEngine(model, batch_size=4, max_new_tokens=TOKENS), sqa)
    assert slot_rows == [[True, True], [False, False], [True]]
    assert reused["predictions"] == out["predictions"]
    records = json.loads((sqa.parent / "out" / "scienceqa_test_predictions.json").read_text())
    assert records == out["predictions"]
    check_consistent(out, records, sqa)
    assert out["text_only_rows"] == "text only (no image slots)" and (out["n_image"], out["n_text_only"]) == (3, 2)
    results = json.loads((sqa.parent / "out" / "scienceqa_test_results.json").read_text())
    assert results["results"] == {pid: r["pred"] for pid, r in records.items()}
    # Batching changes no output: one problem per batch gives the same texts.
    monkeypatch.setattr(model, "generate", generate)
    single = evaluate_scienceqa(VictEngine(model, batch_size=1, max_new_tokens=TOKENS), sqa)
    assert {p: r["text"] for p, r in single["predictions"].items()} == {p: r["text"] for p, r in records.items()}


@pytest.mark.parametrize("failed", ["random", "wrong"])
def test_extraction_and_failed_rule_with_fixed_texts(sqa: Path, failed: str) -> None:
    texts = {
        "11": "The answer is B. The answer is A.",  # the first match counts: B (wrong; answer A)
        "12": "The answer is E.",  # a letter beyond the 3 choices: failed
        "13": "A",  # a bare letter (right)
        "14": "blue shape how",  # no letter: failed
        "15": "C. maybe",  # letter and ". " (right)
    }
    out = evaluate_scienceqa(StubEngine("vict", texts), sqa, failed=failed, out_dir=sqa.parent / "out")
    records = out["predictions"]
    assert [records[p]["failed"] for p in PROBLEMS] == [False, True, False, True, False]
    assert (records["11"]["pred"], records["13"]["pred"], records["15"]["pred"]) == (1, 0, 2)
    check_consistent(out, records, sqa, failed=failed)
    assert out["failed"] == 2 and out["failed_rule"] == failed


def test_blip2_gets_a_blank_image_for_text_only_problems(sqa: Path) -> None:
    engine = StubEngine("blip2")
    out = evaluate_scienceqa(engine, sqa)
    ((images, prompts, budget),) = engine.calls
    blanks = [im for im, pid in zip(images, PROBLEMS) if not PROBLEMS[pid][0]]
    assert all(isinstance(im, Image.Image) for im in blanks) and blanks[0] is blanks[1]  # one shared blank image
    assert all(isinstance(im, Path) for im, pid in zip(images, PROBLEMS) if PROBLEMS[pid][0])
    assert all(p.endswith("Answer:") and "<image>" not in p for p in prompts) and budget == 16
    assert out["text_only_rows"] == "blank image"


def test_reasoning_first_formats_get_the_budget_of_a_solution(sqa: Path) -> None:
    """QCM-EA writes the solution before the letter: the letter is read after it, within a larger budget (an
    engine's short answer budget is raised; an explicit one is kept)."""
    engine = StubEngine("vict", {"11": "The object is blue. The answer is A."})
    engine.max_new_tokens = 10
    out = evaluate_scienceqa(engine, sqa, fmt="QCM-EA")
    assert engine.calls[-1][2] == 96 and out["max_new_tokens"] == 96 and out["format"] == "QCM-EA"
    assert out["predictions"]["11"]["pred"] == 0 and not out["predictions"]["11"]["failed"]
    evaluate_scienceqa(engine, sqa, fmt="QCM-EA", max_new_tokens=40)
    assert engine.calls[-1][2] == 40
    evaluate_scienceqa(engine, sqa, fmt="QCM-A")
    assert engine.calls[-1][2] == 10


def test_evaluate_model_and_report_with_the_scienceqa_task(model, sqa: Path, tmp_path: Path) -> None:
    from vict.eval.evaluation_report import write_report
    from vict.recipes.evaluate import evaluate_model

    report = evaluate_model(
        model, tasks=["scienceqa"], scienceqa=sqa, out_dir=tmp_path / "ev", max_new_tokens=3, batch_size=8
    )
    sqa_report = report["scienceqa"]
    assert "predictions" not in sqa_report and sqa_report["n"] == len(PROBLEMS) and report["split"] == "test"
    assert set(report["predictions"]) == {"scienceqa_test_predictions.json", "scienceqa_test_results.json"}
    assert report["caption"] is None and report["gqa"] is None
    _, md_path = write_report({"tiny": report}, tmp_path / "ev")
    md = md_path.read_text()
    table = md.split("## ScienceQA accuracy by category")[1].split("##")[0]
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert all(f" {c} " in header for c in ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average"))
    assert "text only (no image slots) (2 of 5)" in table and "Gold caption" not in md
    with pytest.raises(ValueError, match="scienceqa task needs"):
        evaluate_model(model, tasks=["scienceqa"])


def test_vict_eval_cli_runs_scienceqa(model, sqa: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from vict.cli import main

    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    out = tmp_path / "out"
    args = ["eval", "--checkpoint", str(checkpoint), "--max-new-tokens", "3", "--out", str(out)]
    assert main([*args, "--scienceqa", str(sqa)]) == 0
    saved = json.loads((out / "report.json").read_text())["models"]
    (report,) = saved.values()
    assert report["scienceqa"]["n"] == len(PROBLEMS) and report["scienceqa"]["format"] == "QCM-A"
    assert "ScienceQA accuracy by category" in (out / "report.md").read_text()
    # A world folder with scienceqa/: run it when the task list names it (and only then).
    world = tmp_path / "world"
    shutil.copytree(sqa.parent, world / "scienceqa")
    assert main([*args, "--world", str(world), "--tasks", "scienceqa", "--limit", "2"]) == 0
    (report,) = json.loads((out / "report.json").read_text())["models"].values()
    assert report["scienceqa"]["n"] == 2 and report["data"] == str(world)
    capsys.readouterr()
    assert main([*args, "--data", str(checkpoint), "--tasks", "scienceqa"]) == 2  # no scienceqa/ there
    assert "--scienceqa PROBLEMS_JSON" in capsys.readouterr().err
