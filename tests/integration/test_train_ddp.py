"""Two-process data-parallel training on CPU (gloo) through torchrun around the real `vict train` command.

Opt in with ``pytest -m ddp`` (about 80 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_world import TINY

from vict.training.metrics import read_metrics

pytestmark = [pytest.mark.ddp, pytest.mark.integration]


ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ddp_run_finishes_and_its_checkpoint_loads(tmp_path: Path, vict_cache_dir: Path):
    from vict.data.world import generate_world

    world = tmp_path / "world"
    generate_world(world, images=120, seed=0)
    out = tmp_path / "run"
    env = {**os.environ, "VICT_CACHE_DIR": str(vict_cache_dir), "OMP_NUM_THREADS": "1"}

    def torchrun(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vict", "train"]
        cmd += [str(ROOT / "configs/world/vict_lora.yaml"), f"data.world={world}", f"train.output_dir={output_dir}"]
        cmd += TINY  # the tiny random model, not the shipped config's zoo (minutes to build)
        cmd += ["train.max_steps=8", "train.warmup_steps=1", "train.batch_size=4", "train.save_every=4"]
        cmd += ["train.eval_every=4", "train.sample_count=1", "train.log_every=1", "--quiet", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc

    proc = torchrun(out)
    assert proc.stdout.count("trained 8 steps") == 1  # rank 0 reports, rank 1 stays quiet

    # Both ranks trained together: the checkpoint records 2 processes and each step consumed 2 x 4 examples.
    state = json.loads((out / "checkpoints/step-00000008/training_state/trainer_state.json").read_text())
    assert state["trainer"]["world_size"] == 2 and state["trainer"]["data_position"] == 8
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    from safetensors.torch import load_file

    rng = load_file(str(out / "checkpoints/step-00000008/training_state/rng.safetensors"))
    assert sorted(rng) == ["torch.rank0", "torch.rank1"] and not torch.equal(rng["torch.rank0"], rng["torch.rank1"])
    # One writer: each step logged once, validation at steps 4 and 8.
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 9))
    assert [r["step"] for r in records if r["split"] == "val"] == [4, 8]

    from vict.models.vision_llm import VisionLLM

    model = VisionLLM.from_pretrained(out / "final")
    trained = load_file(str(out / "final/vict_trainable.safetensors"))
    for name, value in trained.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].detach(), value, rtol=0, atol=0)

    # Resuming the 2-process run from step 4 (each rank restores its own RNG; LoRA dropout is on) reaches the
    # same parameters as the uninterrupted 2-process run.
    resumed = tmp_path / "resumed"
    torchrun(resumed, "--resume", str(out / "checkpoints/step-00000004"))
    for name in ("vict_trainable.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(str(out / "final" / name)), load_file(str(resumed / "final" / name))
        assert sorted(a) == sorted(b)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
