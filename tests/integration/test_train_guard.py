"""One run per `train.output_dir`: two real `vict train` processes on one folder (the second fails at once naming
the first, which finishes intact), a rerun that would replace a finished run (refused, nothing touched),
`--overwrite` (exactly the run's outputs replaced) and `train.resume=true` (continues as before)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_world import TINY

from vict.cli import main
from vict.config import load_config
from vict.recipes.train import train
from vict.training.metrics import read_metrics
from vict.training.run_lock import LOCK_NAME

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LORA = ROOT / "configs" / "world" / "vict_lora.yaml"
QUIET = ["train.num_threads=1", "train.val_batches=0", "train.sample_count=0", "train.log_every=1"]
QUIET += ["train.eval_every=0", "train.save_every=2", "train.warmup_steps=1", "train.max_steps=4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=40, seed=0)
    return out


def _args(world: Path, out: Path, *extra: str) -> list[str]:
    return [str(LORA), *TINY, *QUIET, f"data.world={world}", f"train.output_dir={out}", *extra]


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the SHA-256 of its content (``dir`` for folders)."""
    return {
        p.relative_to(folder).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _train_steps(out: Path) -> list[int]:
    return [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]


def test_a_second_run_on_the_same_folder_fails_at_once_and_the_first_finishes_intact(world: Path, tmp_path: Path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VICT_DEBUG", None)
    command = [sys.executable, "-m", "vict", "train"]
    with (tmp_path / "first.out").open("w") as stdout, (tmp_path / "first.err").open("w") as stderr:
        first = subprocess.Popen([*command, *_args(world, out), "--quiet"], env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.005)
        # Freeze the first run while it holds its lock: the second meets a live holder whatever the machine's speed.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            before = _tree(out)
            second = subprocess.run(
                [*command, *_args(world, out, "train.seed=1"), "--quiet"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            after = _tree(out)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (tmp_path / "first.err").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    # The second failed at once (before building a model), with one line naming the first's PID and host...
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("vict train: error: ")]
    assert len(errors) == 1, second.stderr
    assert (
        f"train.output_dir={out} is in use by another run: PID {first.pid} on host {socket.gethostname()}"
        in (errors[0])
    )
    assert "parameters by part" not in second.stdout  # it never got as far as building its model
    assert after == before  # ...and wrote nothing

    # ...while the first finished: its own model, its own config, exactly its own records, and no lock left.
    assert (out / "final" / "config.json").is_file() and (out / "final" / "vict_trainable.safetensors").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 0
    assert yaml.safe_load((out / "final" / "config.yaml").read_text())["train"]["seed"] == 0
    assert _train_steps(out) == [1, 2, 3, 4]
    assert not (out / LOCK_NAME).exists()


def test_a_rerun_is_refused_untouched_overwrite_replaces_only_the_run(world: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_args(world, out), "--quiet"]) == 0
    (out / "notes.md").write_text("the user's own notes stay")
    capsys.readouterr()

    # Without resume or --overwrite: refused before anything is written, with both ways forward.
    before = _tree(out)
    assert main(["train", *_args(world, out, "train.seed=1"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"vict train: error: train.output_dir={out} already holds a run (final/, checkpoints/")
    assert "metrics.jsonl (4 records)" in message and "train.resume=true" in message and "--overwrite" in message
    assert _tree(out) == before

    # --overwrite: the previous run's outputs go (listed), the user's file stays, the records are the new run's.
    assert main(["train", *_args(world, out, "train.seed=1"), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"--overwrite: removed the previous run's outputs in {out}: final/, checkpoints/ (2 checkpoints)" in err
    assert (out / "notes.md").read_text() == "the user's own notes stay"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 1
    assert _train_steps(out) == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    new_final = (out / "final" / "vict_trainable.safetensors").read_bytes()
    assert hashlib.sha256(new_final).hexdigest() != before["final/vict_trainable.safetensors"]  # seed 1's model

    # --overwrite and a resume contradict each other.
    assert main(["train", *_args(world, out, "train.resume=true"), "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_resume_still_continues_the_run_in_its_folder(world: Path, tmp_path: Path, capsys):
    out = tmp_path / "cut"

    def stop_at_2(step: int, loss: float) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(
        load_config(LORA, [*TINY, *QUIET, f"data.world={world}", f"train.output_dir={out}"]), on_step=stop_at_2
    )
    assert cut.stopped_by == "SIGTERM" and cut.step == 2 and not (out / LOCK_NAME).exists()  # released on a stop
    capsys.readouterr()
    assert main(["train", *_args(world, out), "--quiet"]) == 2  # a plain rerun would restart it: refused
    assert "train.resume=true" in capsys.readouterr().err
    assert main(["train", *_args(world, out, "train.resume=true")]) == 0
    assert "resumed at step 2" in capsys.readouterr().err
    assert _train_steps(out) == [1, 2, 3, 4]
    state = json.loads((out / "checkpoints/step-00000004/training_state/trainer_state.json").read_text())
    assert state["trainer"]["step"] == 4
    assert not (out / LOCK_NAME).exists()


def test_a_deepspeed_launch_stops_before_any_work_naming_the_configs_to_use(
    world: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    # What `accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml` sets in each process: on a CPU
    # rank accelerate would quietly train plain DDP, and ZeRO's partitioned optimizer state cannot be checkpointed.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    out = tmp_path / "run"
    assert main(["train", *_args(world, out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "DeepSpeed is not supported by vict train" in err
    assert "configs/accelerate/fsdp.yaml" in err and "configs/accelerate/ddp.yaml" in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
