"""Batch plan, training state round trip, checkpoint rotation, metrics and plots."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from vict.training.checkpoints import latest_checkpoint, list_checkpoints, rotate_checkpoints, step_dir
from vict.training.metrics import MetricsLogger, read_metrics
from vict.training.plots import plot_loss
from vict.training.sampler import BatchPlan
from vict.training.signals import StopRequest
from vict.training.state import (
    TrainerState,
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)


def _lengths(epoch: int, i: int) -> int:
    return 5 + (i * 7919 + epoch * 31) % 40


def test_plan_covers_each_epoch_once_and_drops_the_incomplete_batch():
    plan = BatchPlan(num_examples=103, batch_size=5, world_size=2, seed=3)
    assert plan.batches_per_epoch == 10
    epoch0 = [i for p in range(10) for i in plan.global_batch(p)]
    assert len(epoch0) == len(set(epoch0)) == 100
    epoch1 = [i for p in range(10, 20) for i in plan.global_batch(p)]
    assert epoch1 != epoch0 and len(set(epoch1)) == 100  # reshuffled per epoch


def test_plan_is_a_pure_function_of_seed_and_position():
    a = BatchPlan(num_examples=200, batch_size=4, seed=1, group_by_length=True, length_of=_lengths, group_size=5)
    b = BatchPlan(num_examples=200, batch_size=4, seed=1, group_by_length=True, length_of=_lengths, group_size=5)
    forward = [a.global_batch(p) for p in range(120)]
    backward = [b.global_batch(p) for p in reversed(range(120))][::-1]  # a resumed run jumps straight in
    assert forward == backward
    c = BatchPlan(num_examples=200, batch_size=4, seed=2)
    assert [c.global_batch(p) for p in range(5)] != forward[:5]


def test_ranks_split_the_global_batch_without_overlap():
    plan = BatchPlan(num_examples=64, batch_size=4, world_size=2, seed=0)
    for p in range(8):
        (_, r0), (_, r1) = plan.local_batch(p, 0), plan.local_batch(p, 1)
        assert len(r0) == len(r1) == 4 and not set(r0) & set(r1)
        assert r0 + r1 == plan.global_batch(p)


def test_length_grouping_reduces_padding():
    def padded(plan: BatchPlan) -> int:
        total = 0
        for p in range(plan.batches_per_epoch):
            lens = [_lengths(0, i) for i in plan.global_batch(p)]
            total += max(lens) * len(lens)
        return total

    kw = {"num_examples": 512, "batch_size": 8, "seed": 0, "length_of": _lengths}
    grouped, plain = padded(BatchPlan(group_by_length=True, **kw)), padded(BatchPlan(**kw))
    assert grouped < 0.85 * plain, (grouped, plain)
    first = BatchPlan(group_by_length=True, group_size=64, **kw).global_batch(0)  # whole epoch in one chunk
    assert min(_lengths(0, i) for i in first) == max(_lengths(0, i) for i in range(512))


def test_plan_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match=r"lower train.batch_size"):
        BatchPlan(num_examples=10, batch_size=8, world_size=2)


def _opt_and_sched(steps: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(
        [{"params": [model.weight], "lr": 1e-2}, {"params": [model.bias], "lr": 5e-2}], weight_decay=0.1
    )
    sched = get_cosine_schedule_with_warmup(opt, 2, 20)
    for _ in range(steps):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_training_state_round_trips_exactly(tmp_path: Path):
    model, opt, sched = _opt_and_sched()
    random.seed(4)
    np.random.seed(5)
    torch.manual_seed(6)
    rng = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    trainer = TrainerState(step=3, data_position=6, epoch=0.5, grad_accum=2, best_val_loss=1.5)
    save_training_state(tmp_path, trainer, opt, sched, [rng, rng])
    files = sorted(p.name for p in (tmp_path / "training_state").iterdir())
    assert files == ["optimizer.safetensors", "rng.safetensors", "trainer_state.json"]

    model2 = torch.nn.Linear(4, 3)
    model2.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW([{"params": [model2.weight], "lr": 0.0}, {"params": [model2.bias], "lr": 0.0}])
    sched2 = get_cosine_schedule_with_warmup(opt2, 2, 20)
    got_trainer, got_rng = load_training_state(tmp_path, opt2, sched2, rank=1)
    assert got_trainer == trainer
    assert sched2.state_dict() == sched.state_dict()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    # The next steps of both copies are identical: the moments and step counts came back.
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        torch.manual_seed(9)
        m(torch.randn(5, 4)).pow(2).mean().backward()
        o.step()
        s.step()
    torch.testing.assert_close(model.weight, model2.weight, rtol=0, atol=0)
    random.seed(0)
    restore_rng_state(got_rng)
    assert (random.random(), np.random.rand()) == expected[:2]
    torch.testing.assert_close(torch.rand(3), expected[2], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"saved by 2 process"):
        load_training_state(tmp_path, opt2, sched2, rank=2)


def test_training_state_has_no_pickle(tmp_path: Path):
    _, opt, sched = _opt_and_sched()
    save_training_state(tmp_path, TrainerState(), opt, sched, [capture_rng_state()])
    json.loads((tmp_path / "training_state" / "trainer_state.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"not a resumable training checkpoint"):
        load_training_state(tmp_path / "nope", opt, sched)


def test_checkpoint_listing_and_rotation(tmp_path: Path):
    for step in (5, 10, 15, 20):
        d = step_dir(tmp_path, step) / "training_state"
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / ".step-00000025.tmp-x").mkdir()  # an interrupted write is ignored
    (step_dir(tmp_path, 30)).mkdir()  # incomplete: no training state
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 10, 15, 20]
    assert latest_checkpoint(tmp_path) == step_dir(tmp_path, 20)
    deleted = rotate_checkpoints(tmp_path, keep_last=2)
    assert deleted == [step_dir(tmp_path, 5), step_dir(tmp_path, 10)]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [15, 20]
    assert latest_checkpoint(tmp_path / "empty") is None


def test_metrics_log_truncates_on_resume_and_plot(tmp_path: Path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 7):
        log.log(step, "train", loss=3.0 / step, lr=1e-3)
    log.log(6, "val", loss=1.0)
    log.close()
    log = MetricsLogger(tmp_path, resume_step=4, tensorboard=False)
    log.log(5, "train", loss=0.1)
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records] == [
        (1, "train"),
        (2, "train"),
        (3, "train"),
        (4, "train"),
        (5, "train"),
    ]
    png = plot_loss([*records, {"step": 5, "split": "val", "loss": 0.5}], tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_stop_request_catches_sigterm_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
