"""benchmarks/gpu_step.py: one skip line without CUDA; the tiny CPU path runs end to end (no timing assertions)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PROSE = {"gpu_step", "device", "torch", "dtype", "shapes"}
"""Keys of ``name: value`` lines whose value is text; every other such line holds a number."""


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_step", ROOT / "benchmarks" / "gpu_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(out: str) -> tuple[dict[str, float], dict[str, str]]:
    numbers, texts = {}, {}
    for line in out.splitlines():
        m = re.match(r"^([a-z][a-z0-9_]*): (.+)$", line)
        if not m:
            continue
        key, value = m.groups()
        if key in PROSE:
            texts[key] = value
        else:
            numbers[key] = float(value)  # raises on a value that is not a number
    return numbers, texts


def test_skips_without_cuda(bench, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "gpu_step: skipped: no CUDA device (torch.cuda.is_available() is False)"


def test_paper_shapes_refused_on_cpu(bench):
    with pytest.raises(SystemExit, match="needs --device cuda"):
        bench.main(["--device", "cpu", "--shapes", "paper"])


def test_tiny_cpu_path_prints_parsable_figures(bench, capsys):
    methods = ["lora", "mm_adapter", "vlora"]
    argv = [
        "--device",
        "cpu",
        "--shapes",
        "tiny",
        "--methods",
        ",".join(methods),
        "--warmup",
        "0",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--text-tokens",
        "16",
        "--target-tokens",
        "4",
        "--infer-images",
        "1",
        "--infer-batch",
        "6",
        "--infer-repeats",
        "1",
        "--new-tokens",
        "2",
        "--mm-size",
        "64",
        "--mm-repeats",
        "1",
    ]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    numbers, texts = parse(out)
    assert texts["shapes"] == "tiny" and texts["dtype"] == "float32" and texts["torch"] == torch.__version__
    assert out.splitlines()[0].startswith("gpu_step: ") and torch.__version__ in out.splitlines()[0]
    assert numbers["peak_tflops_measured"] > 0
    for method in methods:
        assert numbers[f"train_samples_per_s_{method}"] > 0
        assert numbers[f"train_step_ms_{method}"] > 0
        assert numbers[f"step_tflop_{method}"] > 0
        assert numbers[f"mfu_{method}"] > 0
        assert numbers[f"trainable_params_{method}"] > 0
        assert math.isfinite(numbers[f"loss_{method}"])
        assert math.isnan(numbers[f"peak_memory_gib_{method}"])  # not measured on the CPU
    assert numbers["visual_tokens_vlora"] == 0  # VLoRA: weight deltas, no visual tokens
    assert numbers["answers_per_s_no_reuse"] > 0
    assert numbers["new_tokens_per_answer"] == 2 and numbers["questions_per_image"] == 6
    assert numbers["answers_per_s_reuse"] > 0 and numbers["prefix_reuse_6q"] > 0
    assert numbers["reuse_answers_match"] == 1.0  # greedy: prefix reuse changes no answer
    assert "failed" not in out


def test_a_failing_method_is_reported_and_the_others_run(bench, monkeypatch, capsys):
    build = bench.build_model

    def failing(case, *args, **kwargs):
        if case.method["type"] == "vlora":
            raise RuntimeError("CUDA out of memory (simulated)\nmore detail")
        return build(case, *args, **kwargs)

    monkeypatch.setattr(bench, "build_model", failing)
    argv = ["--device", "cpu", "--methods", "vlora,lora", "--skip-inference", "--warmup", "0", "--steps", "1"]
    argv += ["--batch-size", "2", "--text-tokens", "8", "--target-tokens", "2", "--mm-size", "64", "--mm-repeats", "1"]
    assert bench.main(argv) == 1
    out = capsys.readouterr().out
    assert "gpu_step: failed vlora: RuntimeError: CUDA out of memory (simulated)\n" in out
    numbers, _ = parse(out)
    assert numbers["train_samples_per_s_lora"] > 0 and "train_samples_per_s_vlora" not in numbers
