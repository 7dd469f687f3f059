"""The small optimisation loop shared by every zoo model: AdamW, warmup + cosine, seeded batches, loss trace."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

ProgressFn = Callable[[str], None]
"""Receives one human-readable progress line (stage, step, loss, time left)."""


def quiet(_: str) -> None:
    """A progress callback that prints nothing."""


@dataclass
class TrainTrace:
    """What one training run did: the loss of every step and its duration."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        """Mean loss of the first 10% of steps (at least one step)."""
        k = max(1, len(self.losses) // 10)
        return sum(self.losses[:k]) / k

    @property
    def last_loss(self) -> float:
        """Mean loss of the last 10% of steps (at least one step)."""
        k = max(1, len(self.losses) // 10)
        return sum(self.losses[-k:]) / k

    def summary(self) -> dict[str, float | int]:
        """``steps``, ``first_loss``, ``last_loss``, ``seconds`` (for the zoo manifest)."""
        if not self.losses:
            return {"steps": 0, "seconds": round(self.seconds, 2)}
        return {
            "steps": len(self.losses),
            "first_loss": round(self.first_loss, 4),
            "last_loss": round(self.last_loss, 4),
            "seconds": round(self.seconds, 2),
        }


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` batches of indices into ``range(n)``: seeded epochs of a random permutation, drop-last only
    when ``n >= batch_size`` (a smaller data set is used whole in every batch)."""
    batch_size = min(batch_size, n)
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            if done == steps:
                return
            yield perm[start : start + batch_size]
            done += 1


def make_optimizer(
    params: list[torch.nn.Parameter], lr: float, steps: int, weight_decay: float = 0.01
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warmup over 5% of ``steps`` and cosine decay to 10% of ``lr``."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def run_steps(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    n_examples: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    stage: str,
    progress: ProgressFn = quiet,
    clip: float = 1.0,
    max_steps: int | None = None,
) -> TrainTrace:
    """Minimise ``loss_fn(batch_indices)`` for ``steps`` steps over ``n_examples`` examples.

    Args:
        loss_fn: maps a 1-D tensor of example indices ``(b,)`` to a scalar loss.
        params: the trainable parameters (everything else must already have ``requires_grad=False``).
        stage: name used in the progress lines.
        max_steps: stop after this many steps, on the learning-rate schedule of ``steps`` (so the losses are the
            first ``max_steps`` of the full run's: the zoo's build-prefix check).

    Returns:
        The per-step losses and the wall time.
    """
    trace = TrainTrace()
    if steps == 0:
        return trace
    generator = torch.Generator().manual_seed(seed)
    opt, sched = make_optimizer(params, lr, steps)
    start = time.perf_counter()
    report_every = max(1, steps // 10)
    last = steps if max_steps is None else min(steps, max_steps)
    for step, idx in enumerate(batch_indices(n_examples, batch_size, last, generator), start=1):
        loss = loss_fn(idx)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage}: loss became {loss.item()} at step {step}; lower the preset's lr for this stage"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        trace.losses.append(loss.item())
        if step % report_every == 0 or step == last:
            elapsed = time.perf_counter() - start
            left = elapsed / step * (last - step)
            recent = trace.losses[-report_every:]
            progress(
                f"{stage}: step {step}/{steps}, loss {sum(recent) / len(recent):.3f}, "
                f"{elapsed:.0f}s elapsed, ~{left:.0f}s left"
            )
    trace.seconds = time.perf_counter() - start
    return trace
