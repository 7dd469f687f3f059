"""Mixed-modality training through `vict train`'s recipe: text-only rows (and, with a ScienceQA file, problems)
mixed into the stream train with and without the vision-feature cache, to the same losses."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_world import TINY as TINY_WORLD

from vict.config import load_config
from vict.recipes.train import train
from vict.training.metrics import read_metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"
COMMON = ["train.num_threads=1", "train.val_batches=0", "train.sample_count=0", "train.log_every=1"]
COMMON += ["train.warmup_steps=1", "train.save_every=0", "train.eval_every=0", "train.max_steps=4"]
MM = "method={type: mm_adapter, dropout: 0.0}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=60, seed=0)
    return out


def _losses(world: Path, out: Path, *extra: str) -> list[float]:
    tiny = [o for o in TINY_WORLD if not o.startswith("method.")]
    cfg = load_config(LORA, [*tiny, *COMMON, f"data.world={world}", f"train.output_dir={out}", MM, *extra])
    result = train(cfg)
    assert result.final_dir is not None
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r.get("split") == "train"]


def test_text_only_rows_train_the_same_with_and_without_the_feature_cache(world: Path, tmp_path: Path) -> None:
    mix = ["data.text_only_ratio=0.5", "data.ratios={cap_qa: 1, qa: 1}"]
    cached = _losses(world, tmp_path / "cached", *mix, "train.cache_vision_features=true")
    plain = _losses(world, tmp_path / "plain", *mix, "train.cache_vision_features=false")
    assert len(cached) == 4
    assert cached == pytest.approx(plain, rel=1e-5, abs=1e-6)
    # the mix changed the examples: another ratio gives other losses
    assert _losses(world, tmp_path / "none", "data.ratios={cap_qa: 1, qa: 1}") != pytest.approx(cached)


def test_vlora_gives_text_only_rows_no_delta_with_and_without_the_feature_cache(world: Path, tmp_path: Path) -> None:
    """Zero visual tokens: the generator tells text-only rows by their blank image, cached (all-zero features) or not."""
    vlora = [
        "method={type: vlora, rank: 4, alpha: 4.0, every: 1}",
        "connector={type: vlora_generator, width: 32, depth: 1, heads: 4}",
        "data.text_only_ratio=0.5",
        "data.ratios={cap_qa: 1, qa: 1}",
    ]
    cached = _losses(world, tmp_path / "cached", *vlora, "train.cache_vision_features=true")
    plain = _losses(world, tmp_path / "plain", *vlora, "train.cache_vision_features=false")
    assert len(cached) == 4
    assert cached == pytest.approx(plain, rel=1e-5, abs=1e-6)


def test_bad_mix_settings_are_reported_together(world: Path) -> None:
    from vict.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(LORA, [f"data.world={world}", "data.text_only_ratio=2", "data.sqa_format=QCM", "data.scienceqa=x"])
    text = str(err.value)
    assert "data.text_only_ratio=2" in text and "data.sqa_format='QCM'" in text and "data.sqa_ratio is 0" in text


def test_lavin_trains_on_the_worlds_scienceqa_mixed_with_victs_instructions(world: Path, tmp_path: Path) -> None:
    lavin = ["connector={type: lavin_cls, every: 1, hidden: 16}", "model.num_extra_queries=0"]
    mixed = _losses(world, tmp_path / "mixed", *lavin, "data.sqa_ratio=0.5", "data.text_only_ratio=0.3")
    only = _losses(world, tmp_path / "only", *lavin, "data.sqa_ratio=1")
    assert len(mixed) == len(only) == 4 and mixed != pytest.approx(only)
    assert all(0 < loss < 20 for loss in mixed + only)
    from vict.models.vision_llm import VisionLLM

    model = VisionLLM.from_pretrained(tmp_path / "only" / "final")
    assert model.connector.name == "lavin_cls" and model.method.name == "mm_adapter"
