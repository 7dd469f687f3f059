"""The evaluation speed-ups change no output: cached vision features, one PTB call, a shared METEOR JVM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vict.recipes.generate import VisionFeatureCache, answer_questions, caption_images

TOKENS = 5
QUESTIONS = ["what color is the shape?", "how many shapes are there?", "is there a red circle?", "where is it?"]


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny(peft="lora", num_extra_queries=4, seed=0)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for k, colour in enumerate([(255, 0, 0), (0, 90, 255), (30, 200, 30)]):
        im = Image.new("RGB", (40, 40), (255, 255, 255))
        im.paste(Image.new("RGB", (10 + 8 * k, 12), colour), (4 * k, 6 + 5 * k))
        paths.append(folder / f"{k}.png")
        im.save(paths[-1])
    return paths


def test_cached_features_give_identical_answers_and_encode_each_image_once(model, image_files) -> None:
    # 12 questions on 3 images, in an order that mixes images within and across batches.
    images = [image_files[k % 3] for k in range(12)]
    questions = [QUESTIONS[k % 4] for k in range(12)]
    plain = answer_questions(model, images, questions, batch_size=5, max_new_tokens=TOKENS)
    cache = VisionFeatureCache(model, batch_size=2)
    cached = answer_questions(model, images, questions, batch_size=5, max_new_tokens=TOKENS, cache=cache)
    assert [a.answer for a in cached] == [a.answer for a in plain]
    assert cache.encoded == 3 and len(cache) == 3
    # A second pass (another context setting) reuses them: nothing new goes through the vision tower.
    ctx = answer_questions(
        model, images, questions, mode="caption", captions=["a shape."] * 12, max_new_tokens=TOKENS, cache=cache
    )
    ref = answer_questions(model, images, questions, mode="caption", captions=["a shape."] * 12, max_new_tokens=TOKENS)
    assert [a.answer for a in ctx] == [a.answer for a in ref] and cache.encoded == 3
    assert caption_images(model, image_files, max_new_tokens=TOKENS, cache=cache) == caption_images(
        model, image_files, max_new_tokens=TOKENS
    )
    cache.clear()
    assert len(cache) == 0 and image_files[0] not in cache


def test_cache_of_another_model_is_refused(model, image_files) -> None:
    from vict.models.builders import build_tiny

    other = VisionFeatureCache(build_tiny(peft="none", num_extra_queries=0, seed=1))
    with pytest.raises(ValueError, match="belongs to another model"):
        caption_images(model, image_files[:1], max_new_tokens=2, cache=other)


def test_evaluation_with_feature_reuse_gives_identical_predictions(model, tmp_path: Path) -> None:
    from vict.data.prompts import InstructionBuilder
    from vict.data.world.generate import generate_world
    from vict.eval.splits import load_eval_split
    from vict.recipes.evaluate import SETTINGS, VictRunner, _run_generation
    from vict.recipes.generate import InferenceSetup, make_collator

    generate_world(tmp_path / "w", images=20, seed=3)
    data = load_eval_split(tmp_path / "w", "test", limit=2)
    setup = InferenceSetup(model=model, builder=InstructionBuilder(), collator=make_collator(model))
    outputs = {}
    for reuse, batch, block in [(False, 8, 256), (True, 32, 256), (True, 5, 1)]:
        runner = VictRunner(setup, "tiny", batch_size=batch, max_new_tokens=TOKENS, reuse_features=reuse)
        outputs[(reuse, batch, block)] = _run_generation(runner, data, ("caption", "gqa"), SETTINGS, True, block)
        if reuse:
            assert runner.cache.encoded == len(data.images)  # once per image, across captions and all settings
    reference = outputs[(False, 8, 256)]
    own, answers = reference
    assert len(own) == len(data.images) and set(answers) == {"none", "caption", "self", "sentence"}
    assert all(len(a) == len(data.questions) for a in answers.values())
    for key, out in outputs.items():
        assert out == reference, key
    # The public entry point on an already loaded split; a thread count given for the call is restored after it.
    from vict.recipes.evaluate import evaluate_model

    before = torch.get_num_threads()
    report = evaluate_model(
        setup, data, tasks=["gqa"], settings=["none"], sentence=False, max_new_tokens=TOKENS, threads=1
    )
    assert torch.get_num_threads() == before
    from vict.recipes.evaluate import auto_threads

    assert auto_threads(VictRunner(setup, "tiny")) == 1  # a tiny model runs on one thread by default
    assert report["gqa"]["none"]["vqa"]["n"] == len(data.questions) and set(report["gqa"]) == {"none"}


def test_one_tokenizer_call_equals_two() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from vict.eval.captioning import tokenize_pairs

    refs = {"1": ["A red circle, on the LEFT.", "two  shapes"], "2": ["Isn't it blue?"], "x": ["a-b c...d"]}
    preds = {"1": "A red circle.", "2": "it's blue!", "x": ""}
    tok = PTBTokenizer()
    expected_gts = tok.tokenize({i: [{"caption": c} for c in refs[i]] for i in refs})
    expected_res = tok.tokenize({i: [{"caption": preds[i]}] for i in refs})
    assert tokenize_pairs(refs, preds) == (expected_gts, expected_res)
    assert expected_gts["1"] == ["a red circle on the left", "two shapes"]


@pytest.mark.slow
def test_shared_meteor_jvm_scores_like_a_fresh_one(coco_captions: dict, coco_results: list[dict]) -> None:
    from pycocoevalcap.meteor.meteor import Meteor

    import vict.eval.captioning as captioning
    from vict.eval.captioning import caption_references, tokenize_pairs

    refs = caption_references(coco_captions)
    gts, res = tokenize_pairs(refs, {str(r["image_id"]): r["caption"] for r in coco_results})
    fresh = Meteor().compute_score(gts, res)[0]
    captioning.prewarm_meteor()
    first = captioning._meteor_scorer()
    assert captioning._meteor(gts, res)[0] == pytest.approx(100 * fresh, abs=0)
    assert captioning._meteor(gts, res)[0] == pytest.approx(100 * fresh, abs=0)
    assert captioning._meteor_scorer() is first  # one JVM for every call
    captioning.close_meteor()
