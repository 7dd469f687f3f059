"""benchmarks/train_throughput.py runs and prints one row per variant with its ratios, then the matmul peak and the
miniature's and a (here tiny) large model's counted FLOP/s and MFU as ``name: value`` lines (no timing assertions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY_LARGE = "vit=1x32,qformer=1x32,llm=1x64,queries=4+4,image=28x14"
LINES = (
    "train_vs_plain_loop",
    "large_vs_plain_loop",
    "matmul_peak_gflops",
    "model_gflops_miniature",
    "model_gflops_large",
    "mfu_miniature",
    "mfu_large",
)


def _bench():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_throughput_benchmark_prints_ratios(tmp_path: Path, capsys):
    from vict.data.world import generate_world

    world = tmp_path / "world"
    generate_world(world, images=80, seed=0)
    bench = _bench()
    argv = ["--world", str(world), "--steps", "1", "--warmup", "0", "--repeats", "1", "train.batch_size=8"]
    argv += ["--peak-sizes", "256,512", "--peak-seconds", "0.1", "--large-steps", "1", "--large-warmup", "0"]
    argv += ["--large-plain-steps", "1", "--large-shapes", TINY_LARGE, "--large-batch", "2x8"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(.+?)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x$", line)
        if m:
            rows[m.group(1).strip()] = [float(v) for v in m.groups()[1:]]
    expected = ["all on", *(f"{s} off" for s in bench.SWITCHES), "all off"]
    assert list(rows) == expected, out
    assert rows["all on"][3:] == [1.0, 1.0]
    assert all(r[0] > 0 and r[1] > 0 for r in rows.values())
    # Length grouping is the one switch whose effect is deterministic: it must cut padding.
    assert rows["group_by_length off"][2] > rows["all on"][2]

    lines = dict(m.groups() for m in re.finditer(r"^(\w+): (\S+)$", out, re.MULTILINE))
    values = {name: float(lines[name]) for name in LINES}  # each present, each a float
    assert values["train_vs_plain_loop"] > 0 and values["large_vs_plain_loop"] > 0
    assert values["matmul_peak_gflops"] > 0
    assert values["model_gflops_miniature"] > 0 and values["model_gflops_large"] > 0
    assert 0 < values["mfu_miniature"] <= 1.5 and 0 < values["mfu_large"] <= 1.5, values


def _forward_flops(model, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from vict.models.flops import CPU_ATTENTION

    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        model(**batch)
    return int(counter.get_total_flops())


def test_large_shapes_build_and_count(tmp_path: Path):
    """``--large-shapes`` sizes the model the builders write; a step's count includes the backward."""
    from vict.models.builders import BenchShapes, build_bench

    bench = _bench()
    assert BenchShapes.parse("") == BenchShapes() and BenchShapes().llm == (6, 512)
    with pytest.raises(ValueError, match="unknown key"):
        BenchShapes.parse("vitt=1x32")
    shapes = BenchShapes.parse(TINY_LARGE)
    model = build_bench("lora", shapes)
    assert model.num_visual_tokens == 8
    llm = model.base_llm.config
    assert (llm.num_hidden_layers, llm.hidden_size, llm.num_attention_heads * llm.head_dim) == (1, 64, 64)
    assert model.vpg.image_size == 28
    batch = bench.synthetic_batch(model, (2, 8))
    assert batch["input_ids"].shape == (2, 8 + 8)
    model.train()
    forward = _forward_flops(model, batch)
    assert bench.step_flops(model, batch) > forward > 0  # the backward is counted too
    assert all(p.grad is None for p in model.parameters())
