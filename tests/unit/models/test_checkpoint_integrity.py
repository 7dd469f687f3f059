"""Damaged checkpoints are refused by name (manifest, truncation, missing files, another method's adapter, non-finite
weights); interrupted saves leave nothing behind for long; resuming falls back to the newest intact step."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vict.checkpoint import MANIFEST, CheckpointDamaged, atomic_directory, verify_manifest
from vict.models.vision_llm import VisionLLM
from vict.training.checkpoints import latest_checkpoint, step_dir


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vict.models.builders import build_tiny

    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for method in ("lora", "llama_adapter"):
        out[method] = build_tiny(method, num_extra_queries=4, seed=0).save_pretrained(root / method)
    return out


def copy_of(src: Path, tmp_path: Path, manifest: bool = True) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    if not manifest:
        (dst / MANIFEST).unlink()
    return dst


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_saved_model_has_a_manifest_and_loads(saved) -> None:
    files = json.loads((saved["lora"] / MANIFEST).read_text())["files"]
    assert {"config.json", "vict_trainable.safetensors", "adapter/adapter_model.safetensors"} <= set(files)
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in files.values())
    assert verify_manifest(saved["lora"]) == []
    VisionLLM.from_pretrained(saved["lora"])


def test_truncated_missing_and_changed_files_are_named(saved, tmp_path: Path) -> None:
    ckpt = copy_of(saved["lora"], tmp_path)
    truncate(ckpt / "vict_trainable.safetensors")
    (ckpt / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointDamaged) as err:
        VisionLLM.from_pretrained(ckpt)
    message = str(err.value)
    assert "vict_trainable.safetensors is 2" in message and "truncated" in message
    assert "adapter/adapter_model.safetensors is missing" in message
    # without a manifest (a checkpoint from an older vict): the file is still named
    old = copy_of(saved["lora"], tmp_path / "old", manifest=False)
    truncate(old / "vict_trainable.safetensors")
    with pytest.raises(ValueError, match=r"vict_trainable\.safetensors: not a readable safetensors file"):
        VisionLLM.from_pretrained(old)
    gone = copy_of(saved["lora"], tmp_path / "gone", manifest=False)
    (gone / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter_model\.safetensors: missing"):
        VisionLLM.from_pretrained(gone)


def test_another_methods_adapter_is_refused(saved, tmp_path: Path) -> None:
    ckpt = copy_of(saved["lora"], tmp_path, manifest=False)
    shutil.rmtree(ckpt / "adapter")
    shutil.copytree(saved["llama_adapter"] / "adapter", ckpt / "adapter")
    with pytest.raises(ValueError, match=r"peft type 'ADAPTION_PROMPT'.*'lora' uses 'LORA'"):
        VisionLLM.from_pretrained(ckpt)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    from vict.models.builders import build_tiny

    model = build_tiny("lora", num_extra_queries=4, seed=0)
    name, param = next((n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n)
    with torch.no_grad():
        param[0, 0] = float("nan")
    ckpt = model.save_pretrained(tmp_path / "nan")
    with pytest.raises(ValueError, match="non-finite weights") as err:
        VisionLLM.from_pretrained(ckpt)
    assert name in str(err.value)


def _kill_mid_save(target: Path) -> int:
    """A process that starts an atomic save of ``target``, writes a file, and is SIGKILLed; returns its pid."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from vict.checkpoint import atomic_directory\n"
        "with atomic_directory(Path(sys.argv[1]), manifest=True) as tmp:\n"
        "    (tmp / 'weights.bin').write_bytes(b'new' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(target)])
    assert process.wait(120) == -signal.SIGKILL
    return process.pid


def test_sigkill_mid_save_keeps_the_old_folder_and_the_next_save_clears_the_leftover(tmp_path: Path, caplog) -> None:
    target = tmp_path / "checkpoints" / "step-00000002"
    with atomic_directory(target, manifest=True) as tmp:
        (tmp / "weights.bin").write_bytes(b"old")
    pid = _kill_mid_save(target)
    assert (target / "weights.bin").read_bytes() == b"old" and verify_manifest(target) == []
    leftovers = [p for p in target.parent.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and f".tmp-{pid}-" in leftovers[0].name
    mine = target.parent / f".other.tmp-{os.getpid()}-0000"  # a live writer's folder (this process) stays
    mine.mkdir()
    with caplog.at_level(logging.WARNING, logger="vict.checkpoint"), atomic_directory(target.parent / "step-3") as tmp:
        (tmp / "x").write_bytes(b"x")
    assert sorted(p.name for p in target.parent.iterdir()) == [mine.name, "step-00000002", "step-3"]
    assert "left by interrupted saves" in caplog.text


def test_resume_falls_back_to_the_newest_intact_step(tmp_path: Path, caplog) -> None:
    for step in (1, 2, 3):
        with atomic_directory(step_dir(tmp_path, step), manifest=True) as tmp:
            (tmp / "training_state").mkdir()
            (tmp / "training_state" / "trainer_state.json").write_text(json.dumps({"step": step}))
            (tmp / "training_state" / "optimizer.safetensors").write_bytes(os.urandom(4096))
    assert latest_checkpoint(tmp_path) == step_dir(tmp_path, 3)
    truncate(step_dir(tmp_path, 3) / "training_state" / "optimizer.safetensors")
    (step_dir(tmp_path, 2) / "training_state" / "optimizer.safetensors").write_bytes(os.urandom(4096))
    with caplog.at_level(logging.WARNING, logger="vict.training.checkpoints"):
        assert latest_checkpoint(tmp_path) == step_dir(tmp_path, 1)
    assert "step-00000003 is damaged (training_state/optimizer.safetensors is 2048 bytes" in caplog.text
    assert "step-00000002 is damaged (training_state/optimizer.safetensors changed" in caplog.text


def test_saved_folders_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_reports_follow_the_umask(tmp_path: Path) -> None:
    from vict.eval.report import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o640
