"""The evaluation speed-ups change no output: features and own captions once per image, one PTB call, a shared
METEOR JVM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TOKENS = 5


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny("lora", num_extra_queries=4, seed=0)


def test_evaluation_with_feature_reuse_gives_identical_predictions(model, tmp_path: Path) -> None:
    from vict.data.world.generate import generate_world
    from vict.eval.splits import SETTINGS, load_eval_split
    from vict.inference import VictEngine
    from vict.recipes.evaluate import _run_generation

    generate_world(tmp_path / "w", images=20, seed=3)
    data = load_eval_split(tmp_path / "w", "test", limit=2)
    outputs = {}
    for reuse, batch, block in [(False, 8, 256), (True, 32, 256), (True, 5, 1)]:
        engine = VictEngine(model, batch_size=batch, max_new_tokens=TOKENS, name="tiny", reuse_features=reuse)
        outputs[(reuse, batch, block)] = _run_generation(engine, data, ("caption", "gqa"), SETTINGS, True, block)
        if reuse:
            assert engine.cache.encoded == len(data.images)  # once per image, across captions and all settings
    reference = outputs[(False, 8, 256)]
    own, answers = reference
    assert len(own) == len(data.images) and set(answers) == {*SETTINGS, "sentence"}
    assert all(len(a) == len(data.questions) for a in answers.values())
    for key, out in outputs.items():
        assert out == reference, key
    # The public entry point on an already loaded split; a thread count given for the call is restored after it.
    from vict.recipes.evaluate import auto_threads, evaluate_model

    before = torch.get_num_threads()
    report = evaluate_model(
        model, data, tasks=["gqa"], settings=["none"], sentence=False, max_new_tokens=TOKENS, threads=1
    )
    assert torch.get_num_threads() == before
    assert auto_threads(VictEngine(model)) == 1  # a tiny model runs on one thread by default
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
    assert captioning._meteor(gts, res)[0] == pytest.approx(fresh, abs=0)  # pycocoevalcap's own scale
    assert captioning._meteor(gts, res)[0] == pytest.approx(fresh, abs=0)  # pycocoevalcap's own scale
    assert captioning._meteor_scorer() is first  # one JVM for every call
    captioning.close_meteor()
