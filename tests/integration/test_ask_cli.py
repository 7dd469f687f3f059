"""`vict ask` and `vict caption` through the CLI on a saved tiny VICT checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vict.cli import main
from vict.inference import Context

pytestmark = pytest.mark.integration

BUDGET = ["--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    im = Image.new("RGB", (48, 48), (255, 255, 255))
    im.paste(Image.new("RGB", (16, 16), (220, 30, 30)), (8, 8))
    im.save(path)
    return path


def _ask(checkpoint: Path, image: Path, *extra: str) -> list[str]:
    return ["ask", "--checkpoint", str(checkpoint), "--image", str(image), *extra]


def test_ask_self_context_json_matches_given_caption(checkpoint: Path, image: Path, capsys) -> None:
    q = ["--question", "what color is the square?", "--json", *BUDGET]
    assert main([*_ask(checkpoint, image, *q), "--self-context"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert own["mode"] == "self" and own["caption"] and isinstance(own["answer"], str)
    assert own["image"] == str(image) and own["prompt"].startswith("<image> Caption: ")
    assert main([*_ask(checkpoint, image, *q), "--context-caption", own["caption"]]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["mode"] == "caption" and given["answer"] == own["answer"]


def test_ask_human_readable_and_qa_context(checkpoint: Path, image: Path, capsys) -> None:
    args = _ask(checkpoint, image, "--question", "is it red?", "--context-qa", "what shape is it?", "square", *BUDGET)
    assert main([*args, "--style", "sentence"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answer: ") and "caption:" not in out


def test_ask_several_questions_in_one_batch_match_asking_alone(checkpoint: Path, image: Path, capsys) -> None:
    questions = ["what color is the square?", "how many shapes?", "is it red?"]
    flags = [x for q in questions for x in ("--question", q)]
    assert main([*_ask(checkpoint, image, *flags), "--self-context", "--json", "--batch-size", "2", *BUDGET]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["question"] for r in rows] == questions and len({r["caption"] for r in rows}) == 1
    for q, row in zip(questions, rows):
        assert main([*_ask(checkpoint, image, "--question", q), "--self-context", "--json", *BUDGET]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == row["answer"]
    # one question of several images; and a count that pairs with neither is refused
    assert (
        main(
            [
                "ask",
                "--checkpoint",
                str(checkpoint),
                "--image",
                str(image),
                "--image",
                str(image),
                "--question",
                "is it red?",
                *BUDGET,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("answer: ") == 2
    two = ["--image", str(image), "--image", str(image)]
    assert main(["ask", "--checkpoint", str(checkpoint), *two, *flags]) == 2
    assert "2 --image and 3 --question" in capsys.readouterr().err


def test_ask_without_an_image_asks_text_only(checkpoint: Path, capsys) -> None:
    """No --image: each question is the engine's text-only row ('Image: N/A' for the marker), as the engine answers
    it; --self-context needs an image and is refused before the checkpoint loads."""
    from vict.data.mixing import text_only_prompt
    from vict.inference import VictEngine

    base = ["ask", "--checkpoint", str(checkpoint), "--question", "is it red?", "--context-caption", "a red circle"]
    assert main([*base, "--json", *BUDGET]) == 0
    row = json.loads(capsys.readouterr().out)
    engine = VictEngine.from_checkpoint(checkpoint, max_new_tokens=4)
    (alone,) = engine.answer([None], ["is it red?"], Context.given_caption("a red circle"))
    with_image = engine.builder.prompt("cap_qa", "short", question="is it red?", caption="a red circle")
    assert row["image"] is None and row["prompt"] == alone.prompt == text_only_prompt(with_image)
    assert row["answer"] == alone.answer
    assert main(["ask", "--checkpoint", "/nonexistent", "--question", "q?", "--self-context"]) == 2
    assert "--self-context needs an --image" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("image_arg", "question", "message"),
    [
        ("missing.png", "what?", "missing.png: no such file"),
        ("notes.txt", "what?", "notes.txt: not a readable image"),
        ("scene.png", "   ", "--question is empty"),
    ],
)
def test_ask_bad_input_exits_2(
    checkpoint: Path, image: Path, tmp_path: Path, capsys, image_arg: str, question: str, message: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    path = image if image_arg == "scene.png" else tmp_path / image_arg
    assert main(_ask(checkpoint, path, "--question", question)) == 2
    assert message in capsys.readouterr().err


def test_ask_context_options_are_exclusive(checkpoint: Path, image: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(_ask(checkpoint, image, "--question", "q?", "--self-context", "--context-caption", "x"))
    assert info.value.code == 2


def test_caption_cli(checkpoint: Path, image: Path, tmp_path: Path, capsys) -> None:
    second = tmp_path / "second.png"
    Image.new("RGB", (30, 30), (0, 0, 200)).save(second)
    assert main(["caption", "--checkpoint", str(checkpoint), str(image), str(second), "--json", *BUDGET]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == [str(image), str(second)] and all(r["caption"] for r in rows)
    assert main(["caption", "--checkpoint", str(checkpoint), str(image), str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg: no such file" in capsys.readouterr().err
    # images given as `vict ask` takes them (--image) join the positional ones, in order; none at all is refused
    assert (
        main(["caption", "--checkpoint", str(checkpoint), str(image), "--image", str(second), "--json", *BUDGET]) == 0
    )
    assert json.loads(capsys.readouterr().out) == rows
    assert main(["caption", "--checkpoint", str(checkpoint), "--json"]) == 2
    assert "no image given" in capsys.readouterr().err
