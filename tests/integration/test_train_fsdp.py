"""The shipped FSDP config on CPU: two gloo processes through ``accelerate launch`` around the real `vict train`.

Opt in with ``pytest -m ddp`` (about 55 s on 2 cores): an FSDP run, its resume, and a DDP run of the same config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import TINY

pytestmark = [pytest.mark.ddp, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["train.max_steps=8", "train.warmup_steps=1", "train.batch_size=4", "train.save_every=4"]
STEPS += ["train.eval_every=4", "train.sample_count=1", "train.log_every=1"]


def _vict_train(launcher: list[str], world: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [*launcher, "-m", "vict", "train", str(ROOT / "configs/world/vict_lora.yaml"), f"data.world={world}"]
    cmd += [f"train.output_dir={output_dir}", *TINY, *STEPS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_fsdp_config_trains_on_two_cpu_processes_saves_whole_trainable_tensors_and_resumes(tmp_path: Path):
    from vict.data.world import generate_world

    world = tmp_path / "world"
    generate_world(world, images=120, seed=0)
    fsdp = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    fsdp += [str(ROOT / "configs/accelerate/fsdp.yaml"), "--num_processes", "2", "--mixed_precision", "no"]

    out = tmp_path / "fsdp"
    proc = _vict_train(fsdp, world, out)
    # Sharded: rank 0 holds half of the frozen LLM's sharded weights, and says what it applied.
    line = next(s for s in proc.stderr.splitlines() if s.startswith("FSDP over 2 processes"))
    local, total = (
        int(n.replace(",", "")) for n in re.search(r"\(([\d,]+) of their ([\d,]+) elements", line).groups()
    )
    assert total > 0 and local <= total // 2 + 64, line
    assert "trained 8 steps" in proc.stdout

    # The checkpoint format of any run: rank 0 wrote whole tensors, two processes recorded.
    state = json.loads((out / "checkpoints/step-00000008/training_state/trainer_state.json").read_text())
    assert state["trainer"]["world_size"] == 2 and state["trainer"]["data_position"] == 8
    from vict.models.vision_llm import VisionLLM

    model = VisionLLM.from_pretrained(out / "final")  # manifest verified, loads in one process
    params = dict(model.named_parameters())
    trained = load_file(str(out / "final/vict_trainable.safetensors"))
    adapter = load_file(str(out / "final/adapter/adapter_model.safetensors"))
    assert trained and adapter
    for name, value in trained.items():
        assert tuple(value.shape) == tuple(params[name].shape)  # whole, not a shard
        torch.testing.assert_close(params[name].detach(), value, rtol=0, atol=0)

    # The same run under DDP (torchrun, no FSDP): same files, same losses, same weights.
    ddp = tmp_path / "ddp"
    _vict_train([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"], world, ddp, "--quiet")
    assert _files(ddp / "final") == _files(out / "final")
    assert _files(ddp / "checkpoints") == _files(out / "checkpoints")

    def losses(run: Path) -> list[float]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] in ("train", "val")]

    assert losses(out) == pytest.approx(losses(ddp), abs=1e-6)
    for name in ("vict_trainable.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(str(out / "final" / name)), load_file(str(ddp / "final" / name))
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)

    # Resuming the FSDP run from step 4 (each rank restores its own RNG; LoRA dropout is on) reaches the same
    # parameters as the uninterrupted run.
    resumed = tmp_path / "resumed"
    _vict_train(fsdp, world, resumed, "--resume", str(out / "checkpoints/step-00000004"), "--quiet")
    for name in ("vict_trainable.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(str(out / "final" / name)), load_file(str(resumed / "final" / name))
        assert sorted(a) == sorted(b)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
