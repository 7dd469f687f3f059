"""The quickstart's report: rows from hand-made ``evaluate_model`` reports (any set of GQA settings), the
aggregation over seeds (mean, sample std, mismatches), the markdown tables, and ``--seed`` / ``--seeds``."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest

from vict.cli import main
from vict.recipes import quickstart as qs
from vict.recipes import quickstart_report as rep


def _eval_report(acc: dict[str, float], by_type: bool = True) -> dict:
    """A hand-made ``evaluate_model`` report: GQA accuracy per setting, types only when ``by_type``."""
    gqa = {}
    for setting, a in acc.items():
        gqa[setting] = {"vqa": {"accuracy": a}, "official": {"accuracy": a - 1}}
        if by_type:
            gqa[setting]["by_type"] = {
                "structural/verify": {"accuracy": a + 1.004, "count": 4},
                "semantic/attr": {"accuracy": a - 2, "count": 6},
                "detailed/color": {"accuracy": 50.0, "count": 3},
                "binary": {"accuracy": a, "count": 4},
                "open": {"accuracy": a, "count": 6},
            }
    return {"caption": {"BLEU-1": 0.512345, "CIDEr": 1.27, "METEOR": None}, "gqa": gqa}


def test_rows_take_every_setting_and_a_missing_one_is_none() -> None:
    settings = ("none", "caption", "self", "qa", "dense", "distractor")
    report = _eval_report({"none": 40.0, "caption": 45.5, "distractor": 31.25})
    row = rep.gqa_row(report, settings)
    assert row == {"none": 40.0, "caption": 45.5, "self": None, "qa": None, "dense": None, "distractor": 31.25}
    assert rep.distractor_drop(row) == -8.75
    assert rep.distractor_drop(rep.gqa_row(report, ("none", "caption"))) is None
    by_type = rep.gqa_by_type_row(report, settings)
    assert by_type["self"] is None and by_type["none"]["structural/verify"] == 41.0
    assert list(by_type["caption"]) == ["structural/verify", "semantic/attr", "detailed/color", "binary", "open"]
    # an evaluation without types (before evaluate_model scored them): every setting is None, no counts
    old = _eval_report({"none": 40.0}, by_type=False)
    assert rep.gqa_by_type_row(old, ("none",)) == {"none": None}
    assert rep.gqa_type_counts([old]) == {}
    assert rep.gqa_type_counts([old, report])["semantic/attr"] == 6
    assert rep.caption_row(report) == {
        "BLEU-1": 0.5123,  # pycocoevalcap's scale, to four decimals
        "BLEU-4": None,
        "METEOR": None,
        "ROUGE-L": None,
        "CIDEr": 1.27,
        "SPICE": None,
    }


def test_aggregate_mean_and_sample_std_of_nested_numbers() -> None:
    reports = [
        {"gqa": {"a": {"none": 10.0, "self": None}}, "n": 3, "name": "x", "ans": "yes", "ok": True, "m": None},
        {"gqa": {"a": {"none": 20.0, "self": 5.0}}, "n": 3, "name": "x", "ans": "no", "ok": True, "m": None},
        {"gqa": {"a": {"none": 60.0, "self": 7.0}}, "n": 6, "name": "x", "ans": "yes", "ok": True, "m": None},
    ]
    out = rep.aggregate(reports)
    none = out["gqa"]["a"]["none"]
    assert none["mean"] == 30.0
    assert math.isclose(none["std"], math.sqrt(((10 - 30) ** 2 + (20 - 30) ** 2 + (60 - 30) ** 2) / 2))  # n - 1
    assert out["gqa"]["a"]["self"] == {"mean": 6.0, "std": math.sqrt(2.0), "n": 2}  # None in one seed
    assert out["n"] == {"mean": 4.0, "std": math.sqrt(3.0)}
    assert out["name"] == "x" and out["ok"] is True and out["m"] is None  # equal non-numbers are kept
    assert out["ans"] == {"per_seed": ["yes", "no", "yes"]}  # differing ones are listed
    assert rep.aggregate([{"x": 2.5}]) == {"x": {"mean": 2.5, "std": None}}  # one seed: no std


def test_aggregate_refuses_reports_of_different_shapes() -> None:
    with pytest.raises(ValueError, match=r"report\.gqa\.a: the reports do not have the same keys.*\{1: \['self'\]\}"):
        rep.aggregate([{"gqa": {"a": {"none": 1.0, "self": 2.0}}}, {"gqa": {"a": {"none": 1.0}}}])
    with pytest.raises(ValueError, match=r"report\.x: a dict in some reports but not in others"):
        rep.aggregate([{"x": {"y": 1}}, {"x": 2}])
    with pytest.raises(ValueError, match=r"report\.x: a number in some reports and not in others"):
        rep.aggregate([{"x": 1.0}, {"x": "one"}])
    with pytest.raises(ValueError, match="nothing to aggregate"):
        rep.aggregate([])


def _single(seed: int, none: float) -> dict:
    settings = ("none", "caption", "distractor")
    evals = {row: _eval_report({"none": none, "caption": none + 5, "distractor": none - 10}) for row in ("m1", "m2")}
    gqa = {row: rep.gqa_row(r, settings) for row, r in evals.items()}
    return {
        "captioning": {row: rep.caption_row(r) for row, r in evals.items()},
        "gqa": gqa,
        "gqa_by_type": {row: rep.gqa_by_type_row(r, settings) for row, r in evals.items()},
        "gqa_type_counts": rep.gqa_type_counts(list(evals.values())),
        "gqa_distractor_drop": {row: rep.distractor_drop(gqa[row]) for row in gqa},
        "baselines": {"majority": 10.0, "majority_answer": "yes", "question_only": 30.0 + seed},
        "text_retention": {"m2": {"ppl_base": 5.0, "ppl_tuned": 5.5 + seed}},
        "similarity": {"source_lm": {"mean": 0.1, "median": 0.1, "max": 0.5, "frac_above_0.5": 0.0}},
        "trainable_parameters": {"m1": 100, "m2": 10},
        "timings": {"total": 1.0 + seed},
        "config": {"preset": "custom", "seed": seed, "world_images": 40, "zoo": {"dir": f"z{seed}"}},
    }


def test_seed_report_and_markdown(tmp_path: Path) -> None:
    single = _single(0, 40.0)
    md = rep.markdown(single)
    assert "| model | no context | gold caption | distractor | distractor - none |" in md.replace("  ", "")
    assert "| m1    | 40.00      | 45.00        | 30.00      | -10.00" in md
    assert "structural/verify" in md and "detailed/color" not in md  # detailed types: JSON only
    assert "| m2    | 5.000" in md and "seed 0" in md
    # report.json keeps pycocoevalcap's caption scores (CIDEr 1.27); the markdown table shows them x100
    assert single["captioning"]["m1"]["CIDEr"] == 1.27 and "## Captioning (test split, x100)" in md
    assert "| m1    | 51.23  | n/a    | n/a    | n/a     | 127.00 |" in md

    other = _single(1, 50.0)  # seed 1's small test split has no `detailed/color` question
    del other["gqa_type_counts"]["detailed/color"]
    for per_setting in other["gqa_by_type"].values():
        for accs in per_setting.values():
            del accs["detailed/color"]
    for report in (single, other):  # both seeds ran with the same `--set` changes
        report["config"]["overrides"] = ["world_images=3000"]
    seeds = rep.aggregate_seeds({0: single, 1: other}, {0: "o/seed-0/report.json", 1: "o/seed-1/r"})
    assert seeds["config"]["overrides"] == ["world_images=3000"]
    assert "Preset `custom` with `world_images=3000`, seeds 0, 1;" in rep.markdown(seeds)
    assert seeds["gqa_by_type"]["m1"]["none"]["detailed/color"] == {"mean": 50.0, "std": None, "n": 1}
    assert seeds["gqa_type_counts"]["semantic/attr"] == {"mean": 6.0, "std": 0.0}
    assert seeds["seeds"] == [0, 1] and seeds["per_seed"] == {"0": "o/seed-0/report.json", "1": "o/seed-1/r"}
    assert seeds["gqa"]["m1"]["none"] == {"mean": 45.0, "std": math.sqrt(50.0)}
    assert seeds["gqa_distractor_drop"]["m1"] == {"mean": -10.0, "std": 0.0}
    assert seeds["text_retention"]["m2"]["ppl_tuned"] == {"mean": 6.0, "std": math.sqrt(0.5)}
    assert seeds["config"]["preset"] == "custom" and "zoo" not in seeds["config"] and "seed" not in seeds["config"]
    md = rep.markdown(seeds)
    assert "seeds 0, 1" in md and "45.00 ± 7.07" in md and "![similarity](seed-0/similarity.png)" in md
    assert seeds["captioning"]["m1"]["CIDEr"] == {"mean": 1.27, "std": 0.0} and "127.00 ± 0.00" in md
    rep.plot_gqa(seeds["gqa"], seeds["baselines"], tmp_path / "agg.png")
    rep.plot_gqa(single["gqa"], single["baselines"], tmp_path / "one.png")
    assert (tmp_path / "agg.png").stat().st_size > 1000 and (tmp_path / "one.png").stat().st_size > 1000


def test_seed_arguments(capsys: pytest.CaptureFixture) -> None:
    assert qs.parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("0,a", "1,1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers"):
            qs.parse_seeds(bad)
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", "--seed", "1", "--seeds", "0,1"])
    assert exc.value.code == 2
    assert "argument --seeds: not allowed with argument --seed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="distinct seeds"):
        qs.quickstart_seeds(Path("unused"), "fast", [1, 1])


def test_seeds_run_one_full_quickstart_per_seed_then_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = []

    def fake_quickstart(out: Path, preset: str, seed: int = 0, printer=print, zoo_dir=None, overrides=()) -> dict:
        call = (Path(out), preset, seed) if zoo_dir is None else (Path(out), preset, seed, zoo_dir)
        calls.append((*call, list(overrides)) if overrides else call)
        report = _single(seed, 40.0 + 10 * seed)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "report.json").write_text(json.dumps(report))
        return report

    monkeypatch.setattr(qs, "quickstart", fake_quickstart)
    assert main(["quickstart", "--out", str(tmp_path), "--preset", "fast", "--seeds", "0,2"]) == 0
    assert calls == [(tmp_path / "seed-0", "fast", 0), (tmp_path / "seed-2", "fast", 2)]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seeds"] == [0, 2]
    assert report["per_seed"] == {
        "0": str(tmp_path / "seed-0" / "report.json"),
        "2": str(tmp_path / "seed-2" / "report.json"),
    }
    assert report["gqa"]["m1"]["none"] == {"mean": 50.0, "std": math.sqrt(200.0)}
    assert "50.00 ± 14.14" in (tmp_path / "report.md").read_text() and "50.00 ± 14.14" in capsys.readouterr().out
    assert (tmp_path / "gqa_context.png").stat().st_size > 1000

    calls.clear()  # one seed (--seed, default 0): the plain single-seed run into OUT
    assert main(["quickstart", "--out", str(tmp_path / "one"), "--preset", "fast"]) == 0
    assert calls == [(tmp_path / "one", "fast", 0)]

    calls.clear()  # --zoo DIR: every seed's run uses that zoo build
    from vict.zoo.shipped import shipped_dir

    zoo = shipped_dir("default")
    assert main(["quickstart", "--out", str(tmp_path / "z"), "--zoo", str(zoo), "--seeds", "0,1"]) == 0
    assert calls == [(tmp_path / "z" / f"seed-{k}", "default", k, zoo) for k in (0, 1)]

    calls.clear()  # --set KEY=VALUE (repeatable): every seed's run gets the same changes
    sets = ["--set", "world_images=3000", "--set", "train_steps=1200"]
    assert main(["quickstart", "--out", str(tmp_path / "s"), "--seeds", "0,1", *sets]) == 0
    expected = ["world_images=3000", "train_steps=1200"]
    assert calls == [(tmp_path / "s" / f"seed-{k}", "default", k, expected) for k in (0, 1)]


def test_set_changes_the_named_settings_and_refuses_what_it_cannot_apply(capsys: pytest.CaptureFixture) -> None:
    base = qs.PRESETS["default"]
    p = qs.with_overrides(
        base,
        [
            "world_images=3000",
            " train_steps = 1200",
            "connector_lr=5e-3",
            "fast_caption_metrics=true",
            "methods=lora, vlora",
        ],
    )
    assert (p.world_images, p.train_steps, p.connector_lr, p.fast_caption_metrics) == (3000, 1200, 5e-3, True)
    assert p.methods == ("lora", "vlora") and p.rows == ("blip2-source", "vict-lora", "vict-vlora")
    assert (p.batch_size, p.eta_s, p.zoo) == (base.batch_size, base.eta_s, base.zoo)  # the rest as it was
    assert qs.with_overrides(base, []) == base
    for item, message in (
        ("world_imags=3000", "unknown quickstart setting 'world_imags' (did you mean 'world_images'?)"),
        ("eta_s=1", "unknown quickstart setting 'eta_s'"),
        ("world_images", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("batch_size=2.5", "batch_size takes an integer (it is 16), got '2.5'"),
        ("fast_caption_metrics=maybe", "takes true or false"),
        ("train_steps=0", "train_steps must be >= 1"),
        ("world_images=5", "world_images must be >= 10"),
        ("connector_lr=0", "connector_lr must be > 0"),
        ("connector_lr=nan", "connector_lr takes a finite number, got 'nan'"),
        ("sqa_ratio=inf", "sqa_ratio takes a finite number, got 'inf'"),
        ("sqa_ratio=1", "sqa_ratio must be in [0, 0.99]"),
        ("sqa_format=QCM-X", "sqa_format must be one of QCM-A"),
        ("methods=", "methods takes comma-separated names"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            qs.with_overrides(base, ["similarity_images=5", item])
    with pytest.raises(ValueError, match="train_steps is set twice"):
        qs.with_overrides(base, ["train_steps=10", "train_steps=20"])
    # the CLI refuses before any stage, with the message and exit status 2
    assert main(["quickstart", "--out", "never-written", "--set", "batch_size=0"]) == 2
    assert "--set 'batch_size=0': batch_size must be >= 1" in capsys.readouterr().err
    assert not Path("never-written").exists()


def test_method_lr_replaces_the_named_rows_recipe_rate_only(tmp_path: Path) -> None:
    from types import SimpleNamespace

    base = qs.PRESETS["default"]
    assert base.method_lr == {"lora": 3e-3, "vpgtrans_lora": 3e-3}
    assert qs.PRESETS["fast"].method_lr == {} and qs.PRESETS["scienceqa"].method_lr == {}  # the recipes' rates
    # --set merges over the preset's rates; the preset's own may name rows that --set methods drops
    p = qs.with_overrides(base, ["method_lr=lora:2e-3, vlora:1e-3"])
    assert p.method_lr == {"lora": 2e-3, "vpgtrans_lora": 3e-3, "vlora": 1e-3}
    assert qs.with_overrides(base, ["methods=vlora"]).method_lr == base.method_lr
    for items, message in (
        (["method_lr=lora"], "method_lr takes row:rate pairs"),
        (["method_lr=lora:0"], "method_lr takes row:rate pairs"),
        (["method_lr=lora:nan"], "method_lr takes row:rate pairs"),
        (["method_lr=lavn:1e-3"], "--set 'method_lr=lavn:1e-3': method_lr names lavn, not among the rows' methods"),
        (["methods=vlora", "method_lr=lora:1e-3"], "method_lr names lora, not among the rows' methods (vlora)"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            qs.with_overrides(base, items)
    # the rate reaches the row's recipe, and nothing else of it changes; other rows keep their recipes' rates
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 128}))
    zoo = SimpleNamespace(target_lm_dir=lm)
    method, recipe = qs.row_method("lora", zoo)
    tuned_method, tuned = qs.row_method("lora", zoo, p.method_lr)
    assert method == tuned_method == "lora" and recipe["lr"] == 5e-3 and tuned["lr"] == 2e-3
    assert {k: v for k, v in tuned.items() if k != "lr"} == {k: v for k, v in recipe.items() if k != "lr"}
    assert qs.row_method("llama_adapter", zoo, p.method_lr) == qs.row_method("llama_adapter", zoo)
    assert qs.row_method("lavin", zoo, {"lavin": 1e-4})[1]["lr"] == 1e-4  # a variant too


def test_the_zoo_caption_quality_is_reported_on_pycocoevalcaps_scale() -> None:
    quality = {"untrained": {"cider": 4.51, "images": 96}, "trained": {"cider": 296.75, "images": 96}}
    out = qs.zoo_caption_quality(quality)
    assert out == {"untrained": {"cider": 0.0451, "images": 96}, "trained": {"cider": 2.9675, "images": 96}}
