"""VPGTrans as a method: the warm-up trains only the projector, the joint stage the Q-Former, queries, ln_vision and
projector and never the LLM; resume is exact inside a stage; the from-scratch baseline re-initialises the Q-Former."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_world import TINY as TINY_WORLD

from vict.config import load_config
from vict.models.builders import build_tiny
from vict.models.vision_llm import VisionLLM
from vict.recipes.train import train

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"
COMMON = ["train.num_threads=1", "train.val_batches=0", "train.sample_count=0", "train.log_every=1"]
COMMON += ["train.warmup_steps=1", "train.save_every=0", "train.eval_every=0"]
VPGTRANS = "method={type: vpgtrans, warmup_epochs: 0.1}"
QFORMER = ("vpg.qformer.", "vpg.query_tokens", "vpg.vision_model.post_layernorm.")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=60, seed=0)
    return out


def _cfg(world: Path, out: Path, *extra: str):
    # TINY_WORLD's LoRA settings are dropped with the method; VPGTrans keeps the tiny model and learning rates.
    tiny = [o for o in TINY_WORLD if not o.startswith("method.")]
    return load_config(LORA, [*tiny, *COMMON, f"data.world={world}", f"train.output_dir={out}", *extra])


def _fresh() -> dict[str, torch.Tensor]:
    model = build_tiny({"type": "vpgtrans"}, num_extra_queries=4)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _merged_init(fresh: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A small random projector (as a merged init would be) written to ``path``; returns its tensors."""
    d_llm, d_q = fresh["connector.projection.weight"].shape
    init = {"weight": torch.randn(d_llm, d_q) * 0.05, "bias": torch.randn(d_llm) * 0.05}
    save_file(init, str(path))
    return init


def test_warmup_trains_the_projector_from_its_init_then_joint_tunes_the_vpg_never_the_llm(world: Path, tmp_path: Path):
    fresh = _fresh()
    init = _merged_init(fresh, tmp_path / "merged.safetensors")
    out = tmp_path / "run"
    cfg = _cfg(
        world,
        out,
        "train.max_steps=3",
        VPGTRANS,
        f"connector={{type: qformer_tokens, init_weights: {tmp_path / 'merged.safetensors'}}}",
    )
    result = train(cfg)
    warm, joint = out / "warmup" / "final", out / "joint" / "final"
    assert result.final_dir == joint
    w = load_file(str(warm / "vict_trainable.safetensors"))
    assert set(w) == {"connector.projection.weight", "connector.projection.bias"}
    # the warm-up started from the given init (a few steps move it a little, not back to a random start)
    moved = (w["connector.projection.weight"] - init["weight"]).abs().max().item()
    assert 0 < moved < 0.05 * 5 * 4
    j = load_file(str(joint / "vict_trainable.safetensors"))
    assert not any(k.startswith("llm.") for k in j)
    tuned = [k for k in j if k.startswith(QFORMER)]
    assert any(k.startswith("vpg.qformer.") for k in tuned) and "vpg.query_tokens" in j
    assert any(k.startswith("vpg.vision_model.post_layernorm.") for k in tuned)
    assert not any(k.startswith("vpg.vision_model.encoder.") for k in j)
    changed = [k for k in tuned if not torch.equal(j[k], fresh[k])]
    assert len(changed) > len(tuned) // 2  # the joint stage moved the Q-Former
    assert not torch.equal(j["connector.projection.weight"], w["connector.projection.weight"])
    # the LLM is the frozen source LLM, bit for bit
    model = VisionLLM.from_pretrained(joint)
    for name, param in model.named_parameters():
        if name.startswith("llm."):
            torch.testing.assert_close(param, fresh[name], rtol=0, atol=0, msg=name)
        if name.startswith("vpg.qformer."):
            torch.testing.assert_close(param, j[name], rtol=0, atol=0, msg=name)
    warm_cfg = load_config(out / "warmup" / "config.yaml")
    assert warm_cfg.train.lr == pytest.approx(5 * cfg.train.lr) and warm_cfg.train.schedule == "constant"
    assert warm_cfg.train.connector_lr == pytest.approx(5 * (cfg.train.connector_lr or cfg.train.lr))
    assert warm_cfg.train.max_steps is None and warm_cfg.train.epochs == pytest.approx(0.1)


def test_resume_inside_the_joint_stage_is_exact(world: Path, tmp_path: Path):
    common = ["train.max_steps=6", "method={type: vpgtrans, warmup_epochs: 0}", "train.batch_size=4"]
    full = train(_cfg(world, tmp_path / "full", *common))

    def stop_at_3(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(_cfg(world, tmp_path / "cut", *common), on_step=stop_at_3)
    assert cut.stopped_by == "SIGTERM" and cut.step == 3
    resumed = train(_cfg(world, tmp_path / "cut", *common, "train.resume=true"))
    a = load_file(str(full.final_dir / "vict_trainable.safetensors"))
    b = load_file(str(resumed.final_dir / "vict_trainable.safetensors"))
    assert sorted(a) == sorted(b) and any(k.startswith("vpg.qformer.") for k in a)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)


def test_random_qformer_init_is_seeded_and_differs_from_the_pretrained_one():
    pretrained = _fresh()
    a = build_tiny({"type": "vpgtrans", "qformer_init": "random"}, num_extra_queries=4)
    b = build_tiny({"type": "vpgtrans", "qformer_init": "random"}, num_extra_queries=4)
    pb = dict(b.named_parameters())
    names = [n for n, _ in a.named_parameters() if n.startswith(("vpg.qformer.", "vpg.query_tokens"))]
    for name, param in a.named_parameters():
        torch.testing.assert_close(param, pb[name], rtol=0, atol=0, msg=name)
    weights = [n for n in names if n.endswith("weight") and "layernorm" not in n.lower()]
    assert all(not torch.equal(dict(a.named_parameters())[n], pretrained[n]) for n in weights)
    assert all(dict(a.named_parameters())[n].requires_grad for n in names)  # joint stage: all of it trains


def test_vpgtrans_lora_warms_the_projector_then_trains_victs_parts_with_the_qformer_frozen(
    world: Path, tmp_path: Path
):
    fresh = _fresh()
    init = _merged_init(fresh, tmp_path / "merged.safetensors")
    out = tmp_path / "run"
    cfg = _cfg(
        world,
        out,
        "train.max_steps=3",
        "method={type: vpgtrans_lora, warmup_epochs: 0.1, r: 4, alpha: 8, dropout: 0.0}",
        f"connector={{type: qformer_tokens, init_weights: {tmp_path / 'merged.safetensors'}}}",
    )
    result = train(cfg)
    warm, joint = out / "warmup" / "final", out / "joint" / "final"
    assert result.final_dir == joint
    # warm-up: the projector alone moved from its init; the LoRA delta is there, zero (B = 0), the LLM unchanged
    w = load_file(str(warm / "vict_trainable.safetensors"))
    assert set(w) == {"connector.projection.weight", "connector.projection.bias"}
    assert 0 < (w["connector.projection.weight"] - init["weight"]).abs().max().item() < 0.05 * 5 * 4
    warm_lora = load_file(str(warm / "adapter" / "adapter_model.safetensors"))
    b_mats = [k for k in warm_lora if ".lora_B." in k]
    assert b_mats and all(torch.count_nonzero(warm_lora[k]) == 0 for k in b_mats)
    # joint: extra queries, projector and LoRA train; the Q-Former, its queries and the bare LLM stay as they were
    j = load_file(str(joint / "vict_trainable.safetensors"))
    assert "vpg.extra_queries" in j and not torch.equal(j["vpg.extra_queries"], fresh["vpg.extra_queries"])
    assert not any(k.startswith(QFORMER) for k in j)
    assert not torch.equal(j["connector.projection.weight"], w["connector.projection.weight"])
    joint_lora = load_file(str(joint / "adapter" / "adapter_model.safetensors"))
    assert any(torch.count_nonzero(joint_lora[k]) > 0 for k in joint_lora if ".lora_B." in k)
    model = VisionLLM.from_pretrained(joint)
    for name, param in model.named_parameters():
        if name.startswith(("vpg.qformer.", "vpg.query_tokens", "vpg.vision_model.")):
            torch.testing.assert_close(param, fresh[name], rtol=0, atol=0, msg=name)
        elif name.startswith("llm.") and not model.method.owns(name):
            base = name.replace("llm.base_model.model.", "llm.").replace(".base_layer.", ".")
            torch.testing.assert_close(param, fresh[base], rtol=0, atol=0, msg=name)
    joint_cfg = load_config(out / "joint" / "config.yaml")
    assert joint_cfg.method.settings.stage == "joint" and joint_cfg.train.lr == pytest.approx(cfg.train.lr)


def test_vpgtrans_lora_resume_inside_the_joint_stage_is_exact(world: Path, tmp_path: Path):
    method = "method={type: vpgtrans_lora, warmup_epochs: 0, r: 4, alpha: 8, dropout: 0.0}"
    common = ["train.max_steps=6", method, "train.batch_size=4"]
    full = train(_cfg(world, tmp_path / "full", *common))

    def stop_at_3(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(_cfg(world, tmp_path / "cut", *common), on_step=stop_at_3)
    assert cut.stopped_by == "SIGTERM" and cut.step == 3
    resumed = train(_cfg(world, tmp_path / "cut", *common, "train.resume=true"))
    for f in ("vict_trainable.safetensors", "adapter/adapter_model.safetensors"):
        a = load_file(str(full.final_dir / f))
        b = load_file(str(resumed.final_dir / f))
        assert sorted(a) == sorted(b) and a
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"{f}: {name}")


def test_vpgtrans_lora_refuses_a_random_frozen_qformer():
    from vict.registry import MethodSpec
    from vict.settings import SettingsError

    with pytest.raises(SettingsError) as err:
        MethodSpec.from_dict({"type": "vpgtrans_lora", "qformer_init": "random", "r": 0})
    # every problem at once: the frozen random Q-Former (with the method to use instead) and the rank
    problems = err.value.problems
    assert any("qformer_init='random'" in p and "method.type=vpgtrans" in p for p in problems)
    assert any(p.startswith("method.r=0") for p in problems)
