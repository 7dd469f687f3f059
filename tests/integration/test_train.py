"""`vict train` end to end on a freshly generated miniature world (the real CLI, tiny in-process models)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import TINY as TINY_WORLD

from vict.cli import main
from vict.config import load_config
from vict.recipes.train import TrainRecipe, train
from vict.training.metrics import read_metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"
TINY = [*TINY_WORLD, "train.num_threads=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=200, seed=0)
    return out


def _quiet(out: Path, **extra: object) -> list[str]:
    """Overrides for a short run: no periodic eval/samples unless asked."""
    base = {
        "train.output_dir": out,
        "train.eval_every": 0,
        "train.sample_every": 0,
        "train.save_every": 0,
        "train.log_every": 1,
        "train.num_threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(world: Path, tmp_path: Path):
    # Measured (200-image worlds, 40 steps, lr 1e-2): last-10 / first-10 mean = 0.718, 0.707, 0.699 for seeds
    # 0, 1, 2 (e.g. 4.64 -> 3.34); q/v-only LoRA on this random LM reached only 0.98. The bound 0.8 leaves
    # room for other CPUs/BLAS while failing if the model cannot move its logits.
    out = tmp_path / "run"
    argv = ["train", str(LORA), *TINY, f"data.world={world}", "train.max_steps=40", "train.warmup_steps=5"]
    argv += _quiet(out, **{"train.val_batches": 2, "train.sample_count": 1})
    assert main(argv) == 0

    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 40
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, f"loss did not drop enough: first-10 mean {first:.3f}, last-10 mean {last:.3f}"
    val = [r["loss"] for r in records if r["split"] == "val"]
    assert len(val) == 1 and val[0] < first
    train_rec = [r for r in records if r["split"] == "train"]
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 for r in train_rec)
    assert train_rec[0]["lr"] == pytest.approx(1e-2 / 5) and train_rec[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert any(r["split"] == "sample" and r["kind"] == "cap" for r in records)

    # The run directory and the checkpoints hold exactly what is documented: trainable parts only.
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert load_config(out / "config.yaml").train.max_steps == 40
    final = out / "final"
    files = sorted(p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file())
    tokenizer_files = [f for f in files if f.startswith("tokenizer") or f == "special_tokens_map.json"]
    assert "tokenizer.json" in tokenizer_files
    assert files == sorted(
        [
            "MANIFEST.json",  # every file's size and SHA-256, checked at load
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
            "config.json",
            "config.yaml",
            "vict_trainable.safetensors",
            *tokenizer_files,
        ]
    )
    ckpt = out / "checkpoints" / "step-00000040"
    ckpt_files = sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file())
    state = ["training_state/optimizer.safetensors", "training_state/rng.safetensors"]
    assert ckpt_files == sorted([*files, *state, "training_state/trainer_state.json"])
    own = load_file(str(final / "vict_trainable.safetensors"))
    assert set(own) == {"connector.projection.weight", "connector.projection.bias", "vpg.extra_queries"}, sorted(own)
    adapter = load_file(str(final / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter), sorted(adapter)  # no frozen base weights
    size = sum(p.stat().st_size for p in final.rglob("*.safetensors"))
    assert size < 200_000, f"checkpoint tensors are {size} bytes: frozen weights leaked in?"

    # final/ loads directly and reproduces the trained loss on a validation batch.
    from vict.models.vision_llm import VisionLLM

    model = VisionLLM.from_pretrained(final)
    assert model.num_visual_tokens > 0 and model.trainable_parameters_by_part()["trainable"] > 0


def test_frozen_parameters_stay_bit_identical(world: Path, tmp_path: Path):
    cfg = load_config(
        LORA, [*TINY, f"data.world={world}", "train.max_steps=4", "train.warmup_steps=1", "train.val_batches=0"]
    )
    cfg.train.output_dir = str(tmp_path / "run")
    cfg.train.sample_count = 0
    recipe = TrainRecipe(cfg)
    recipe.setup()
    model = recipe.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.startswith("connector.") or "extra_quer" in n for n in trainable)
    recipe.train()
    recipe.cleanup()
    frozen_changed = [n for n, p in model.named_parameters() if n not in trainable and not torch.equal(p, before[n])]
    assert frozen_changed == []
    changed = {n for n in trainable if not torch.equal(dict(model.named_parameters())[n], before[n])}
    assert any(n.startswith("connector.") for n in changed) and any("extra_quer" in n for n in changed)
    assert any("lora_" in n for n in changed)
    # The model is still in training mode, yet every dropout of the frozen parts is in eval mode (never fired);
    # only LoRA's own dropout trains.
    assert model.training
    dropouts = {n: m.training for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts and all(not on for n, on in dropouts.items() if "lora_" not in n), dropouts
    assert all(on for n, on in dropouts.items() if "lora_" in n)


def test_vision_feature_cache_gives_the_same_training(world: Path, tmp_path: Path):
    # 12 steps of 16 cross into the second epoch of 160 training images, so the cache is hit.
    common = [f"data.world={world}", "train.max_steps=12", "train.warmup_steps=1", "method.dropout=0.0"]
    common += ["train.val_batches=0", "train.sample_count=0", "train.log_every=1"]
    plain = train(load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'plain'}"]))
    cfg = load_config(
        LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'cached'}", "train.cache_vision_features=true"]
    )
    recipe = TrainRecipe(cfg)
    recipe.setup()
    recipe.train()
    cached = recipe.cleanup()
    assert len(recipe.vision_cache) == 160 and recipe.vision_cache.hits == 12 * 16 - 160
    assert recipe.vision_level == "vision"  # the extra queries train: the ViT output is what stays fixed
    for (step, a), (_, b) in zip(plain.train_losses, cached.train_losses):
        assert b == pytest.approx(a, abs=1e-5), step
    x, y = _trainable(plain.final_dir), _trainable(cached.final_dir)
    for name in x:
        torch.testing.assert_close(y[name], x[name], rtol=1e-4, atol=1e-5)


def test_instruction_kinds_follow_the_configured_ratios(world: Path, tmp_path: Path):
    overrides = [f"data.world={world}", f"train.output_dir={tmp_path}", "train.val_batches=0"]
    overrides += ["data.ratios={cap: 0, qa: 3, qa_cap: 0, cap_qa: 1, qa_qa: 0}", "data.sentence_ratio=0.0"]
    recipe = TrainRecipe(load_config(LORA, [*TINY, *overrides]))
    recipe.setup()
    examples = [recipe.stream[i] for i in range(400)]
    kinds = [e.kind for e in examples]
    assert set(kinds) == {"qa", "cap_qa"} and {e.style for e in examples} == {"short"}
    assert 0.65 < kinds.count("qa") / len(kinds) < 0.85  # 3:1 -> 0.75
    recipe.cleanup()


def _trainable(path: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(path / "vict_trainable.safetensors"))
    tensors.update(
        {f"adapter.{k}": v for k, v in load_file(str(path / "adapter" / "adapter_model.safetensors")).items()}
    )
    return tensors


def test_interrupted_and_resumed_equals_uninterrupted(world: Path, tmp_path: Path):
    # grad_accum 2, LoRA dropout on (RNG matters), length grouping on (data order matters).
    common = [f"data.world={world}", "train.max_steps=10", "train.warmup_steps=2", "train.batch_size=8"]
    common += ["train.grad_accum=2", "train.group_by_length=true", "method.dropout=0.1", "train.val_batches=0"]
    common += ["train.sample_count=0", "train.save_every=0", "train.log_every=1", "train.eval_every=0"]

    full = train(load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'full'}"]))
    assert full.step == 10 and full.final_dir is not None

    def stop_at_4(step: int, loss: float) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends before preemption

    cut_cfg = load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'cut'}"])
    cut = train(cut_cfg, on_step=stop_at_4)
    assert cut.stopped_by == "SIGTERM" and cut.step == 4 and cut.final_dir is None
    state = json.loads((cut.last_checkpoint / "training_state" / "trainer_state.json").read_text())
    assert state["trainer"]["step"] == 4 and state["trainer"]["data_position"] == 8  # 4 steps x grad_accum 2

    resumed = train(load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'cut'}", "train.resume=true"]))
    assert resumed.step == 10
    a, b = _trainable(full.final_dir), _trainable(resumed.final_dir)
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"{name} differs after resume")
    # Same data in the same order after the resume: the per-step losses agree, not just the end point.
    full_losses = dict(full.train_losses)
    for step, loss in resumed.train_losses:
        assert loss == pytest.approx(full_losses[step], abs=1e-5), step
    # The resumed run's records continue the interrupted one's without duplicates.
    steps = [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 11))

    # A crash inside a step (here: the 14th micro-batch, i.e. inside step 7) keeps the last completed step.
    crash_cfg = load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'crash'}"])
    recipe = TrainRecipe(crash_cfg)
    recipe.setup()
    collate, calls = recipe.collator, []

    def failing_collator(examples):
        calls.append(1)
        if len(calls) == 14:
            raise OSError("image file vanished (simulated)")
        return collate(examples)

    recipe.collator = failing_collator
    with pytest.raises(OSError, match="simulated"):
        recipe.train()
    recipe.cleanup()
    state = json.loads((tmp_path / "crash/checkpoints/step-00000006/training_state/trainer_state.json").read_text())
    assert state["trainer"]["step"] == 6 and state["trainer"]["data_position"] == 12
    recovered = train(
        load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'crash'}", "train.resume=true"])
    )
    c = _trainable(recovered.final_dir)
    for name in a:
        torch.testing.assert_close(c[name], a[name], rtol=0, atol=1e-6, msg=f"{name} differs after a crash")


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_intact_one(world: Path, tmp_path: Path, caplog):
    common = [f"data.world={world}", "train.max_steps=8", "train.warmup_steps=2", "train.batch_size=8"]
    common += ["train.val_batches=0", "train.sample_count=0", "train.save_every=2", "train.keep_last=3"]
    common += ["train.log_every=1", "train.eval_every=0"]
    full = train(load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'full'}"]))

    def stop_at_6(step: int, loss: float) -> None:
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'cut'}"]), on_step=stop_at_6)
    assert cut.step == 6 and cut.last_checkpoint == tmp_path / "cut/checkpoints/step-00000006"
    optimizer = cut.last_checkpoint / "training_state" / "optimizer.safetensors"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # a save interrupted by a full disk, say
    with caplog.at_level("WARNING", logger="vict.training.checkpoints"):
        resumed = train(
            load_config(LORA, [*TINY, *common, f"train.output_dir={tmp_path / 'cut'}", "train.resume=true"])
        )
    assert "step-00000006 is damaged (training_state/optimizer.safetensors is 100 bytes" in caplog.text
    assert resumed.step == 8
    a, b = _trainable(full.final_dir), _trainable(resumed.final_dir)
    for name in a:  # resumed exactly from step 4: the same weights as the uninterrupted run
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"{name} differs after the fallback")
    steps = [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 9))


def test_resume_dir_must_be_a_training_checkpoint(world: Path, tmp_path: Path, capsys):
    argv = [
        "train",
        str(LORA),
        *TINY,
        f"data.world={world}",
        *_quiet(tmp_path / "r"),
        "--resume",
        str(tmp_path / "nope"),
    ]
    assert main(argv) == 2  # a usage error: one line, no traceback (vict.cli)
    err = capsys.readouterr().err
    assert "not a training checkpoint" in err and "Traceback" not in err


def test_train_cli_reports_every_config_problem(capsys, tmp_path: Path):
    assert main(["train", str(LORA), "train.max_stepz=3", "method.rr=2", "data.world=/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.max_steps'?" in err and "did you mean 'method.r'?" in err
    assert main(["train", str(LORA), f"data.world={tmp_path / 'missing'}"]) == 2
    assert "vict data world --out" in capsys.readouterr().err


def test_zoo_builder_trains_on_the_worlds_pretrained_zoo(world: Path, tmp_path: Path):
    # model.builder=zoo: the zoo of data.world is built once (micro preset: seconds), cached, and its BLIP-2 and
    # target LLaMA are the frozen sources of the trained model; a second run reuses the cached zoo.
    from vict.models.vision_llm import VisionLLMConfig

    zoo_dir = tmp_path / "zoos"
    common = [f"data.world={world}", "model.builder=zoo", "model.zoo_preset=micro", f"model.zoo_dir={zoo_dir}"]
    common += ["train.max_steps=3", "train.warmup_steps=1"]
    assert main(["train", str(LORA), *common, *_quiet(tmp_path / "a")]) == 0
    zoos = sorted((zoo_dir / "zoo").iterdir())
    assert len(zoos) == 1
    cfg = VisionLLMConfig.load(tmp_path / "a" / "final" / "config.json")
    assert Path(cfg.vpg_source) == (zoos[0] / "blip2").resolve()
    assert Path(cfg.llm_source) == (zoos[0] / "target_lm").resolve()
    stamp = (zoos[0] / "zoo.json").stat().st_mtime_ns
    assert main(["train", str(LORA), *common, *_quiet(tmp_path / "b")]) == 0
    assert sorted((zoo_dir / "zoo").iterdir()) == zoos
    assert (zoos[0] / "zoo.json").stat().st_mtime_ns == stamp
