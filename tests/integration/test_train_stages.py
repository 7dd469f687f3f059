"""Chained training: `train.init_from` (a new stage from a checkpoint's weights, fresh optimizer and schedule), a
method's declared stages run one after the other, and a resume that would change the run refused by name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_world import TINY as TINY_WORLD

from vict import registry
from vict.config import load_config
from vict.methods.base import Method, Stage
from vict.recipes.train import train
from vict.settings import help_field

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"
QUIET = ["train.num_threads=1", "train.val_batches=0", "train.sample_count=0", "train.log_every=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=60, seed=0)
    return out


def _cfg(world: Path, out: Path, *extra: str):
    common = [f"data.world={world}", f"train.output_dir={out}", "train.warmup_steps=1", "method.dropout=0.0"]
    return load_config(LORA, [*TINY_WORLD, *QUIET, *common, *extra])


def _weights(final: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(final / "vict_trainable.safetensors"))
    adapter = final / "adapter" / "adapter_model.safetensors"
    if adapter.is_file():
        tensors |= {f"adapter.{k}": v for k, v in load_file(str(adapter)).items()}
    return tensors


def test_init_from_starts_from_the_checkpoint_with_a_fresh_optimizer_and_schedule(world: Path, tmp_path: Path):
    first = train(_cfg(world, tmp_path / "a", "train.max_steps=6"))
    a = _weights(first.final_dir)
    # Stage 2 at a vanishing learning rate ends where stage 1 ended: it started from stage 1's weights ...
    tiny_lr = ["train.max_steps=2", "train.lr=1e-9", "train.connector_lr=1e-9"]
    second = train(_cfg(world, tmp_path / "b", *tiny_lr, f"train.init_from={first.final_dir}"))
    b = _weights(second.final_dir)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    # ... with its own optimizer and schedule: 2 steps counted, AdamW step 2, warm-up from the start.
    state = json.loads((second.last_checkpoint / "training_state" / "trainer_state.json").read_text())
    assert state["trainer"]["step"] == 2 and state["scheduler"]["last_epoch"] == 2
    steps = {v.item() for k, v in load_file(str(second.last_checkpoint / "training_state/optimizer.safetensors")).items()
             if k.endswith(".step")}  # fmt: skip
    assert steps == {2.0}
    assert yaml.safe_load((second.output_dir / "config.yaml").read_text())["train"]["init_from"] == str(
        first.final_dir
    )
    # Without init_from, the same run stays at its fresh initialisation, far from stage 1's weights.
    fresh = _weights(train(_cfg(world, tmp_path / "c", *tiny_lr)).final_dir)
    assert max((fresh[n] - a[n]).abs().max().item() for n in a) > 1e-2


def test_init_from_refuses_a_checkpoint_of_another_method(world: Path, tmp_path: Path):
    first = train(_cfg(world, tmp_path / "a", "train.max_steps=2"))
    cfg = _cfg(
        world,
        tmp_path / "b",
        "train.max_steps=2",
        "method={type: llama_adapter}",
        f"train.init_from={first.final_dir}",
    )
    with pytest.raises(ValueError, match=r"method.type: the checkpoint's 'lora' vs this run's 'llama_adapter'"):
        train(cfg)


def test_resume_with_a_setting_that_changes_the_run_is_refused_by_name(world: Path, tmp_path: Path):
    out = tmp_path / "run"
    train(_cfg(world, out, "train.max_steps=2"))
    changed = _cfg(world, out, "train.max_steps=2", "train.resume=true", "method.r=4", "train.lr=5e-3")
    with pytest.raises(ValueError) as err:
        train(changed)
    message = str(err.value)
    assert "method.r: 8 -> 4" in message and "train.lr: 0.01 -> 0.005" in message
    assert "train.init_from=" in message and "train.resume" not in message.split("\n")[1]
    # Settings that only change where and how often things are written may change.
    resumed = train(_cfg(world, out, "train.max_steps=2", "train.resume=true", "train.log_every=2"))
    assert resumed.step == 2


@dataclass
class QueriesLaterSettings:
    """Test method: whether the extra queries train."""

    tune_queries: bool = help_field("train the extra queries too", default=True)


class QueriesLater(Method):
    """Test method with two stages: the connector alone at 5x the learning rate, then the connector and queries."""

    name = "queries_later_test"
    description = "test: connector first, then connector and extra queries"
    trains = "the connector, then also the extra queries"
    settings_class = QueriesLaterSettings

    def is_trainable(self, name: str, default: bool) -> bool:
        return default and (self.settings.tune_queries or name != "vpg.extra_queries")

    def stages(self) -> tuple[Stage, ...]:
        return (
            Stage(
                "warmup",
                "the connector alone",
                lambda cfg: {"method.tune_queries": False, "train.lr": 5 * cfg.train.lr},
            ),
            Stage("joint", "connector and extra queries", {"method.tune_queries": True}),
        )


def test_a_method_with_stages_trains_them_in_order_and_resumes_finished_ones(world: Path, tmp_path: Path):
    registry.register_method(QueriesLater)
    try:
        out = tmp_path / "staged"
        cfg = _cfg(world, out, "train.max_steps=2", "method={type: queries_later_test}")
        result = train(cfg)
        warmup, joint = out / "warmup" / "final", out / "joint" / "final"
        assert result.final_dir == joint and (warmup / "config.json").is_file()
        warm_cfg = yaml.safe_load((out / "warmup" / "config.yaml").read_text())
        joint_cfg = yaml.safe_load((out / "joint" / "config.yaml").read_text())
        assert warm_cfg["method"] == {"type": "queries_later_test", "tune_queries": False}
        assert warm_cfg["train"]["lr"] == pytest.approx(5e-2) and joint_cfg["train"]["lr"] == pytest.approx(1e-2)
        assert joint_cfg["train"]["init_from"] == str(warmup) and warm_cfg["train"]["init_from"] is None
        # Stage 1 trained (and saved) the connector only; stage 2 also the extra queries.
        assert set(load_file(str(warmup / "vict_trainable.safetensors"))) == {
            "connector.projection.weight",
            "connector.projection.bias",
        }
        assert "vpg.extra_queries" in load_file(str(joint / "vict_trainable.safetensors"))
        # A resumed run keeps the finished stages as they are.
        stamp = (warmup / "vict_trainable.safetensors").stat().st_mtime_ns
        again = train(_cfg(world, out, "train.max_steps=2", "method={type: queries_later_test}", "train.resume=true"))
        assert again.final_dir == joint
        assert (warmup / "vict_trainable.safetensors").stat().st_mtime_ns == stamp
    finally:
        registry.unregister(QueriesLater.name)
