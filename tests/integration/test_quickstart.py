"""`vict quickstart` end to end.

- default tier: a micro run (40-image world, micro zoo, a few VICT steps) through the real CLI; the report has
  every key the issue lists (every GQA setting, by type, text retention), the files exist, the text-retention
  base is the zoo's target LM, and a second run with the same seed gives the same numbers;
- slow tier (`pytest -m slow`): the default preset (6.5-9.3 min), asserting the targets its measured run reached.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from vict.cli import main
from vict.eval.splits import DEFAULT_SETTINGS
from vict.eval.text_retention import perplexity
from vict.recipes import quickstart as qs

pytestmark = pytest.mark.integration

MICRO = dataclasses.replace(
    qs.PRESETS["fast"],
    methods=(*qs.PRESETS["fast"].methods, "lavin"),
    sqa_ratio=0.2,
    gqa_text=True,
    world_images=40,
    zoo="micro",
    train_steps=3,
    batch_size=4,
    fast_caption_metrics=True,
    similarity_images=2,
    transfer_eval_every=2,
)


def _numbers(report: dict) -> dict:
    """Everything of the report except the wall-clock timings and the run-specific paths."""
    return {k: v for k, v in report.items() if k not in ("timings", "config")}


def _check_keys(report: dict, preset: qs.QuickstartPreset = MICRO) -> None:
    assert set(report) >= {
        "captioning",
        "gqa",
        "gqa_by_type",
        "gqa_type_counts",
        "gqa_distractor_drop",
        "baselines",
        "text_retention",
        "similarity",
        "trainable_parameters",
        "timings",
        "config",
        "zoo_quality",
    }
    probe = report["zoo_quality"]["probe"]
    for score in ("colour", "shape", "size", "position"):
        assert 0.0 <= probe[score] <= 100.0 and 0.0 <= probe["chance"][score] <= 100.0, (score, probe)
    assert probe["test_images"] > 0 and probe["train_images"] > 0
    rows = list(preset.rows)
    for key in ("captioning", "gqa", "gqa_by_type", "gqa_distractor_drop", "trainable_parameters"):
        assert list(report[key]) == rows, key
    for row in preset.rows:
        assert list(report["captioning"][row]) == ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE"]
        # every context setting of the evaluation, in its order; one the evaluation did not run is None
        settings = [*DEFAULT_SETTINGS, *(["text"] if preset.gqa_text else [])]
        assert list(report["gqa"][row]) == settings == list(report["gqa_by_type"][row])
        assert report["gqa"][row]["none"] is not None, report["gqa"][row]
        if preset.gqa_text:  # asked text only: every VICT row answers; the plain BLIP-2 cannot (an empty cell)
            assert (report["gqa"][row]["text"] is None) == (row == qs.SOURCE_ROW), (row, report["gqa"][row])
        for setting, acc in report["gqa"][row].items():
            assert acc is None or 0.0 <= acc <= 100.0, (row, setting, acc)
            by_type = report["gqa_by_type"][row][setting]
            assert by_type is None or all(0.0 <= a <= 100.0 for a in by_type.values()), (row, setting, by_type)
        drop = report["gqa_distractor_drop"][row]
        gqa = report["gqa"][row]
        if gqa.get("distractor") is None:
            assert drop is None
        else:
            assert math.isclose(drop, gqa["distractor"] - gqa["none"], abs_tol=0.011), (drop, gqa)
        for metric in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
            assert report["captioning"][row][metric] is not None, (row, metric)
        assert report["trainable_parameters"][row] > 0
    assert all(n > 0 for n in report["gqa_type_counts"].values()), report["gqa_type_counts"]
    # text retention: every VICT row (the source BLIP-2 has no delta to switch off), perplexities above 1
    assert list(report["text_retention"]) == rows[1:]
    for row, ppl in report["text_retention"].items():
        assert set(ppl) == {"ppl_base", "ppl_tuned"} and ppl["ppl_base"] > 1.0 and ppl["ppl_tuned"] > 1.0, (row, ppl)
    assert set(report["baselines"]) >= {"majority", "question_only"}
    assert 0 < report["baselines"]["majority"] <= report["baselines"]["question_only"] <= 100
    for against in ("source_lm", "target_lm"):
        stats = report["similarity"][against]
        assert -1.0 <= stats["mean"] <= stats["max"] <= 1.0 and not math.isnan(stats["mean"])
    # VICT trains far fewer parameters than the BLIP-2 that made the VPG
    assert report["trainable_parameters"]["vict-lora"] < report["trainable_parameters"]["blip2-source"]
    # VPGTrans: the converter fitted on the world's captions, both transfer curves, the speed-up (None: never beat)
    transfer = report["transfer"]
    assert transfer["converter"]["fit"]["cosine_train"] > transfer["converter"]["fit"]["cosine_before"]
    assert transfer["warmup_steps"] > 0 and transfer["metric"].startswith("validation loss")
    assert len(transfer["curves"]["vpgtrans"]) >= 2 and len(transfer["curves"]["scratch"]) >= 1
    assert transfer["curves"]["vpgtrans"][0][0] <= transfer["warmup_steps"] < transfer["curves"]["vpgtrans"][-1][0]
    assert set(transfer["steps_to_target"]) == {"scratch", "vpgtrans"} and "speedup" in transfer
    # its LLM is frozen: no delta, the same text perplexity
    ppl = report["text_retention"]["vict-vpgtrans"]
    assert ppl["ppl_base"] == ppl["ppl_tuned"]
    assert report["trainable_parameters"]["vict-vpgtrans"] > report["trainable_parameters"]["vict-lora"] / 10
    # VPGTrans init + VICT training: a LoRA delta (the perplexity moves), VICT-LoRA's parts, Q-Former frozen
    ppl = report["text_retention"]["vict-vpgtrans_lora"]
    assert ppl["ppl_base"] != ppl["ppl_tuned"]
    assert report["trainable_parameters"]["vict-vpgtrans_lora"] == report["trainable_parameters"]["vict-lora"]
    lora_cfg = report["config"]["train"]["vict-vpgtrans_lora"]
    assert (
        lora_cfg["connector"]["init_weights"]
        == report["config"]["train"]["vict-vpgtrans"]["connector"]["init_weights"]
    )
    if preset.sqa_ratio:
        _check_scienceqa(report, preset)
    else:
        assert "scienceqa" not in report and "scienceqa_baselines" not in report
    stages = tuple(preset.stage_eta_s())
    for stage in (*stages, "total"):
        assert report["timings"][stage] >= 0


def _check_scienceqa(report: dict, preset: qs.QuickstartPreset) -> None:
    """ScienceQA-mini: every row and the untuned target LM by official category, beside the blind baselines; LaVIN's
    row (when the preset has it) with its own connector and text-only rows."""
    rows = list(preset.rows)
    sqa = report["scienceqa"]
    assert list(sqa) == [*rows, qs.UNTUNED_ROW]
    for row, acc in sqa.items():
        assert list(acc) == ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average"], row
        assert all(v is None or 0 <= v <= 100 for v in acc.values()), (row, acc)
        assert acc["Average"] is not None and acc["IMG"] is not None
    assert set(report["scienceqa_baselines"]) == {"random_choice", "question_only"}
    for name, acc in report["scienceqa_baselines"].items():
        assert list(acc) == list(sqa[rows[0]]) and acc["Average"] is not None and 0 < acc["Average"] <= 100, name
    assert set(report["scienceqa_failed"]) == set(sqa)
    assert all(cfg["data"]["sqa_ratio"] == preset.sqa_ratio for cfg in report["config"]["train"].values())
    if "lavin" in preset.methods:  # one [CLS] per block of the tiny ViT, no extra queries, text-only rows mixed in
        lavin = report["config"]["train"]["lavin"]
        assert lavin["method"]["type"] == "mm_adapter" and lavin["connector"]["type"] == "lavin_cls"
        assert lavin["model"]["num_extra_queries"] == 0 and lavin["data"]["text_only_ratio"] > 0
        ppl = report["text_retention"]["lavin"]
        assert ppl["ppl_base"] != ppl["ppl_tuned"]


def test_micro_quickstart_report_and_same_seed_same_numbers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = qs.quickstart(tmp_path / "a", MICRO, seed=0, printer=lambda line: None)
    _check_keys(first)
    on_disk = json.loads((tmp_path / "a" / "report.json").read_text())
    assert _numbers(on_disk) == json.loads(json.dumps(_numbers(first)))
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| vict-llama_adapter" in md and "not from COCO/GQA" in md
    assert "distractor - none" in md and "Text retention" in md and "By question type" in md
    # with the delta off, the VICT model's LLM is exactly the zoo's target LM; training moved LoRA's perplexity
    target_lm = Path(first["config"]["zoo"]["dir"]) / "target_lm"
    lm = AutoModelForCausalLM.from_pretrained(target_lm)
    texts = qs.heldout_texts(tmp_path / "a" / "world")
    own = perplexity(lm, AutoTokenizer.from_pretrained(target_lm), texts, lm.config.max_position_embeddings)
    for row, ppl in first["text_retention"].items():
        assert math.isclose(ppl["ppl_base"], own, rel_tol=1e-5), (row, ppl, own)
    assert first["text_retention"]["vict-lora"]["ppl_tuned"] != first["text_retention"]["vict-lora"]["ppl_base"]
    for plot in ("similarity.png", "gqa_context.png", "transfer.png"):
        assert (tmp_path / "a" / plot).stat().st_size > 1000
    assert first["config"]["zoo"]["reused"] is False

    # VPGTrans's ablations of this run, against its from-scratch curve
    from vict.recipes.transfer import run_ablations

    ablations = run_ablations(tmp_path / "a", ["no_converter"], printer=lambda line: None)
    assert set(ablations) == {"vpgtrans_5x", "no_converter"}
    assert ablations["no_converter"]["steps_to_target"]["scratch"] == first["transfer"]["steps_to_target"]["scratch"]
    cfg = json.loads((tmp_path / "a" / "ablations" / "ablations.json").read_text())
    assert len(cfg["curves"]["no_converter"]) >= 2
    used = (tmp_path / "a" / "ablations" / "no_converter" / "warmup" / "config.yaml").read_text()
    assert "init_weights: null" in used
    shutil.rmtree(tmp_path / "a" / "ablations")

    # same folder, same seed: the zoo is reused and every number is the same
    again = qs.quickstart(tmp_path / "a", MICRO, seed=0, printer=lambda line: None)
    assert again["config"]["zoo"]["reused"] is True
    assert _numbers(again) == _numbers(first)

    # a zoo given by its folder (`--zoo DIR`, e.g. a `vict zoo build --set ...`) is used as it is, never rebuilt;
    # a setting changed with `--set` changes what it names and nothing else, and the report records it
    zoo_dir = Path(first["config"]["zoo"]["dir"])
    given = qs.quickstart(
        tmp_path / "b", MICRO, seed=0, printer=lambda line: None, zoo_dir=zoo_dir, overrides=["similarity_images=3"]
    )
    assert given["config"]["zoo"]["dir"] == str(zoo_dir) and not (tmp_path / "b" / "zoo").exists()
    assert given["config"]["overrides"] == ["similarity_images=3"] and first["config"]["overrides"] == []
    assert given["config"]["quickstart"]["similarity_images"] == 3
    assert "Preset `custom` with `similarity_images=3`, seed 0" in (tmp_path / "b" / "report.md").read_text()
    assert given["similarity"] != first["similarity"]
    assert {k: v for k, v in _numbers(given).items() if k != "similarity"} == {
        k: v for k, v in _numbers(first).items() if k != "similarity"
    }


def test_cli_rejects_a_zoo_folder_that_is_not_a_build(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["quickstart", "--out", str(tmp_path / "out"), "--zoo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--zoo {tmp_path}: {tmp_path} is not a finished zoo build (no zoo.json)" in err
    assert "vict zoo build" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any stage


def test_cli_rejects_unknown_preset(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", "--preset", "huge"])
    assert exc.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


@pytest.mark.slow
def test_default_preset_learns(tmp_path: Path) -> None:
    """The default preset through the real CLI: every key, and the targets its measured run reached.

    Measured (seed 0, 2000 images, 1200 steps, the LoRA rows at 3e-3, 2 CPU cores, the AVX2 kernels this tier pins,
    522 s in all):
    - the shipped zoo's VPG, attentive probe on the test split: colour 100, shape 98.6, size 100, position 100
      (chance 19 / 22 / 51 / 50); its BLIP-2's captions CIDEr 2.69 (269 x100);
    - GQA without context: VICT-LoRA 66.25, VICT-LLaMA-Adapter 50.3, VICT-VPGTrans 33.8, VPGTrans + VICT-LoRA
      67.5, source BLIP-2 31.8, question only 37.33, majority answer 11.25; with the dense caption 70.3 / 55.1 /
      63.9 / 71.8 / 57.7; with another image's caption (distractor) 63.6 / 43.3 / 35.0 / 65.7 / 37.4;
    - VICT-LLaMA-Adapter with V2's bias, scale and norm tuning (added later, the same seed; every other row the same
      to the digit, 1115 s in all on a day the machine ran every row ~1.9x slower): 64.4 without context, 68.8 with
      the dense caption, 58.9 with the distractor, held-out perplexity 3.38;
    - VLoRA (no visual tokens): GQA without context 46.25, with the dense caption 73.0;
    - text retention: the target LM's held-out perplexity 1.66 rises to 3.80 with the LoRA delta, 2.85 with
      LLaMA-Adapter's, 3.90 with VPGTrans + LoRA's, and stays 1.66 with VPGTrans (its LLM is frozen) and VLoRA
      (text without an image gets no delta).
    Not reached, so not asserted (the issue note says what was tried): LLaMA-Adapter (prompts and gates alone) 25
    points above question only (+13.0 here; V2 +27.1), the source BLIP-2 30 above it, the dense-caption oracle at
    90%, VICT captions near the source BLIP-2's CIDEr."""
    assert main(["quickstart", "--out", str(tmp_path), "--preset", "default", "--seed", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    _check_keys(report, qs.PRESETS["default"])
    gqa, base, probe = report["gqa"], report["baselines"], report["zoo_quality"]["probe"]
    # the VPG that VICT transfers sees every attribute of every object (issue target: >= 95 each)
    for score in ("colour", "shape", "size", "position"):
        assert probe[score] >= 95, (score, probe)
    # its BLIP-2 captions (issue target: CIDEr >= 1.00 on pycocoevalcap's scale, 100 in the x100 tables)
    assert report["captioning"]["blip2-source"]["CIDEr"] >= 1.0, report["captioning"]
    margins = {"vict-lora": 25, "vict-llama_adapter": 10, "vict-llama_adapter_v2": 25, "vict-vpgtrans_lora": 25}
    for row, margin in margins.items():
        # VICT on the new LLM beats the source BLIP-2 without context (the paper's Table 2) ...
        assert gqa[row]["none"] >= gqa["blip2-source"]["none"], gqa
        # ... far above the question-only guess (LoRA +28.9, LLaMA-Adapter +13.0, its V2 +27.1, VPGTrans + LoRA
        # +30.2; the target, +25, for both VICT rows) ...
        assert gqa[row]["none"] >= base["question_only"] + margin, (row, gqa)
        # ... and it trusts the image over a wrong caption: another image's caption costs accuracy (LoRA 2.7,
        # LLaMA-Adapter 7.0, its V2 5.5, VPGTrans + LoRA 1.8)
        assert gqa[row]["distractor"] < gqa[row]["none"], (row, gqa[row])
        # the delta costs the target LM some of its text (measured, both rows)
        retention = report["text_retention"][row]
        assert retention["ppl_tuned"] > retention["ppl_base"], (row, retention)
    # context that states every answer helps the model that reads it (LoRA: 70.3 against 66.25)
    assert gqa["vict-lora"]["dense"] > gqa["vict-lora"]["none"], gqa["vict-lora"]
    # VPGTrans leaves the LLM as it was, and VLoRA's deltas never touch text without an image
    for row in ("vict-vpgtrans", "vict-vlora"):
        retention = report["text_retention"][row]
        assert retention["ppl_tuned"] == retention["ppl_base"], (row, retention)
    # VLoRA sees through its weights alone (+8.9 over the question-only guess), and reads a caption that states it all
    assert gqa["vict-vlora"]["none"] >= base["question_only"] + 5, gqa["vict-vlora"]
    assert gqa["vict-vlora"]["dense"] > gqa["vict-vlora"]["none"], gqa["vict-vlora"]
    # The preset's 15-minute budget is measured by benchmarks/quickstart_budget.py, not asserted here: a wall-clock
    # assertion tests the machine as much as the code (without the V2 row the preset took 522-556 s one morning; the
    # same code's rows ran ~1.9x slower that afternoon, and with the row it took 1104-1144 s here and 1243 s in CI).
