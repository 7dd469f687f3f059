"""Training state on disk without pickle: optimizer, scheduler, RNG states and the data position.

Layout of ``<checkpoint>/training_state/``:

- ``optimizer.safetensors``: every tensor of ``optimizer.state_dict()["state"]`` as ``state.<param>.<name>``;
- ``rng.safetensors``: each process's torch CPU (and CUDA) generator state as ``torch.rank<r>`` (``cuda.rank<r>``);
- ``trainer_state.json``: step, data position, optimizer param groups and non-tensor state, the scheduler's
  ``state_dict()``, python and numpy RNG states per process, and the run facts a resume must match
  (world size, batch size, seed).

Everything is plain JSON or safetensors, so a checkpoint can be inspected and loaded without executing code.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_DIR = "training_state"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


@dataclass
class TrainerState:
    """Counters of a run; ``data_position`` is the number of global micro-batches consumed.

    Attributes:
        step: optimizer steps taken.
        data_position: global micro-batches consumed (``step * grad_accum`` unless a run was cut mid-step).
        epoch: fractional epoch reached.
        world_size, batch_size, grad_accum, seed: facts a resumed run must match to continue exactly.
        best_val_loss: lowest validation loss seen (``None`` before the first evaluation).
    """

    step: int = 0
    data_position: int = 0
    epoch: float = 0.0
    world_size: int = 1
    batch_size: int = 1
    grad_accum: int = 1
    seed: int = 0
    best_val_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states; tensors stay tensors, the rest is JSON-able."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------------------------------------
# Optimizer state <-> safetensors + JSON
# ---------------------------------------------------------------------------------------------------------------


def _split_optimizer_state(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = []
    for group in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        groups.append({k: (tuple(v) if k == "betas" else v) for k, v in group.items()})
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------------------


def save_training_state(
    directory: str | Path,
    trainer: TrainerState,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng_states: list[dict[str, Any]],
) -> None:
    """Write ``directory/training_state/`` (call inside an atomic checkpoint directory, on one process).

    Args:
        rng_states: one :func:`capture_rng_state` per process, indexed by rank.
    """
    out = Path(directory) / STATE_DIR
    out.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = _split_optimizer_state(optimizer.state_dict())
    save_file(opt_tensors, str(out / OPTIMIZER_FILE))
    rng_tensors: dict[str, torch.Tensor] = {}
    rng_json = []
    for rank, state in enumerate(rng_states):
        rng_tensors[f"torch.rank{rank}"] = state["torch"].clone()
        if "cuda" in state:
            rng_tensors[f"cuda.rank{rank}"] = state["cuda"].clone()
        rng_json.append({"python": state["python"], "numpy": state["numpy"]})
    save_file(rng_tensors, str(out / RNG_FILE))
    payload = {
        "trainer": asdict(trainer),
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_json,
    }
    (out / TRAINER_STATE).write_text(json.dumps(payload, indent=1))


def load_training_state(
    directory: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int = 0
) -> tuple[TrainerState, dict[str, Any]]:
    """Restore optimizer and scheduler in place; return the counters and this rank's RNG state.

    Raises:
        FileNotFoundError: ``directory`` has no complete training state (names the missing file).
    """
    src = Path(directory) / STATE_DIR
    for name in (TRAINER_STATE, OPTIMIZER_FILE, RNG_FILE):
        if not (src / name).is_file():
            raise FileNotFoundError(
                f"{src / name} is missing: {directory} is not a resumable training checkpoint "
                "(final/ holds only the model; resume from a checkpoints/step-* directory)"
            )
    payload = json.loads((src / TRAINER_STATE).read_text())
    optimizer.load_state_dict(_join_optimizer_state(load_file(str(src / OPTIMIZER_FILE)), payload["optimizer"]))
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    trainer = TrainerState(**payload["trainer"])
    rng_tensors = load_file(str(src / RNG_FILE))
    ranks = payload["rng"]
    if rank >= len(ranks):
        raise ValueError(
            f"{directory} was saved by {len(ranks)} process(es); this is rank {rank}. Resume with the same number "
            "of processes for an exact continuation"
        )
    rng = dict(ranks[rank])
    rng["torch"] = rng_tensors[f"torch.rank{rank}"]
    if f"cuda.rank{rank}" in rng_tensors:
        rng["cuda"] = rng_tensors[f"cuda.rank{rank}"]
    return trainer, rng
