"""Named model builders with literal sizes: the paper's setting and a tiny one for tests, same code path.

``build_tiny`` writes a tiny random BLIP-2 (``Blip2ForConditionalGeneration`` with a tiny OPT, saved with
``save_pretrained`` beside its ``BlipImageProcessor``) and a tiny random LLaMA with an in-process tokenizer to a
cache directory, then loads them exactly like real checkpoints (``VisualPromptGenerator.from_pretrained``,
``AutoModelForCausalLM.from_pretrained``). A saved tiny VICT checkpoint therefore points at real directories
and ``VisionLLM.from_pretrained`` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import Blip2Config, LlamaConfig, OPTConfig

from vict.models.tokenizer import builtin_tokenizer
from vict.models.vision_llm import VisionLLM, VisionLLMConfig
from vict.registry import ConnectorSpec, MethodSpec, get_method

PAPER_VPG_SOURCE = "Salesforce/blip2-opt-2.7b"
PAPER_LLM_SOURCE = "huggyllama/llama-7b"

# Tiny sizes (STYLE.md habit 7): ViT hidden 32 x 2 layers on 30 px images with patch 2 (225 patches), Q-Former
# hidden 32 x 2 layers with 8 queries, LLaMA hidden 32 x 2 layers.
TINY_IMAGE_SIZE = 30
TINY_PATCH_SIZE = 2
TINY_NUM_QUERY_TOKENS = 8


def tiny_blip2_config(image_size: int = TINY_IMAGE_SIZE, num_query_tokens: int = TINY_NUM_QUERY_TOKENS) -> Blip2Config:
    """A BLIP-2 config with hidden 32 / 2 layers everywhere and a tiny OPT language model."""
    return Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": TINY_PATCH_SIZE,
        },
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "cross_attention_frequency": 1,
            "vocab_size": 99,
            "max_position_embeddings": 64,
        },
        text_config=OPTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            vocab_size=99,
            max_position_embeddings=128,
            word_embed_proj_dim=32,
        ).to_dict(),
        num_query_tokens=num_query_tokens,
    )


def tiny_llama_config(vocab_size: int) -> LlamaConfig:
    """A LLaMA config with hidden 32, 2 layers, 4 heads (2 KV heads), for ``vocab_size`` tokens."""
    return LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def llama_7b_config() -> LlamaConfig:
    """LLaMA-7B's architecture, literally (no download): 32 layers, hidden 4096, FFN 11008, 32k vocabulary."""
    return LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )


def paper_blip2_config() -> Blip2Config:
    """``Salesforce/blip2-opt-2.7b``'s VPG architecture: ``Blip2Config`` defaults (EVA ViT-g 39 x 1408 at 224 px,
    patch 14; BERT-base Q-Former 12 x 768 with cross-attention every 2nd layer; 32 queries)."""
    return Blip2Config(num_query_tokens=32)


def default_cache_dir() -> Path:
    """``$VICT_CACHE_DIR`` or ``~/.cache/vict``: where ``build_tiny`` keeps its generated checkpoints."""
    return Path(os.environ.get("VICT_CACHE_DIR", Path.home() / ".cache" / "vict")).expanduser()


def _write_once(path: Path, writer: Callable[[Path], None]) -> Path:
    # Concurrent builders (parallel test workers) may race: each writes a private temp dir, the first rename
    # wins, later ones find the directory in place and discard theirs. Readers never see a partial directory.
    if (path / ".complete").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the cache is as shared as the user's umask says
    try:
        writer(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _digest(*parts: Any) -> str:
    blob = json.dumps([transformers.__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def write_tiny_blip2(out_dir: str | Path, seed: int = 0, config: Blip2Config | None = None) -> Path:
    """Save a random tiny ``Blip2ForConditionalGeneration`` + ``BlipImageProcessor`` to ``out_dir``.

    Deterministic for ``seed``. Every weight is redrawn (see ``_randomize_``): transformers' own init leaves
    the query tokens at zero (all queries identical), biases at zero and the ViT weights at std 1e-10, which
    would make a tiny model nearly constant and parity tests toothless.
    """
    from transformers import Blip2ForConditionalGeneration

    from vict.models.vpg import make_image_processor

    config = config or tiny_blip2_config()
    out_dir = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config).eval()
        _randomize_(model)
    model.save_pretrained(str(out_dir))
    make_image_processor(config.vision_config.image_size).save_pretrained(str(out_dir))
    return out_dir


@torch.no_grad()
def _randomize_(model: torch.nn.Module, std: float = 0.1) -> None:
    """Redraw every parameter: LayerNorm weights ~ 1 + N(0, std), everything else ~ N(0, std); then zero the
    k-part of each ViT ``qkv.bias`` (BLIP-2's EVA ViT has q and v biases only, so LAVIS can represent it)."""
    for name, param in model.named_parameters():
        noise = torch.randn_like(param) * std
        param.copy_(1.0 + noise if "norm" in name.lower() and name.endswith("weight") else noise)
    for name, param in model.named_parameters():
        if name.endswith("self_attn.qkv.bias"):
            third = param.shape[0] // 3
            param[third : 2 * third] = 0.0


def write_tiny_llm(
    out_dir: str | Path, seed: int = 0, tokenizer: Any = None, arch: str = "llama", config: Any = None
) -> Path:
    """Save a random tiny causal LM (``arch``: ``"llama"`` or ``"opt"``; or a given ``config``) and its tokenizer
    to ``out_dir``."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer if tokenizer is not None else builtin_tokenizer()
    vocab = len(tokenizer)
    if config is not None:
        pass  # a given config (the benchmarks' larger shapes)
    elif arch == "llama":
        config = tiny_llama_config(vocab)
    elif arch == "opt":
        config = OPTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            vocab_size=vocab,
            max_position_embeddings=256,
            word_embed_proj_dim=32,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    else:
        raise ValueError(f"write_tiny_llm: unknown arch {arch!r}; use 'llama' or 'opt'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)


MethodArg = str | MethodSpec | dict[str, Any]
ConnectorArg = str | ConnectorSpec | dict[str, Any] | None


def method_spec(method: MethodArg) -> MethodSpec:
    """A ``MethodSpec`` from a name (default settings), a ``{"type": ..., **settings}`` dict or a spec."""
    if isinstance(method, MethodSpec):
        return method
    if isinstance(method, str):
        return MethodSpec(type=method)
    return MethodSpec.from_dict(method)


def connector_spec(connector: ConnectorArg) -> ConnectorSpec:
    """A ``ConnectorSpec`` from ``None`` (the method's default), a name, a dict or a spec."""
    if connector is None:
        return ConnectorSpec()
    if isinstance(connector, ConnectorSpec):
        return connector
    if isinstance(connector, str):
        return ConnectorSpec(type=connector)
    return ConnectorSpec.from_dict(connector, default_type="")


def build_vision_llm(
    vpg_source: str | Path,
    llm_source: str | Path,
    method: MethodArg = "lora",
    num_extra_queries: int = 32,
    vpg_format: str = "hf",
    frozen_dtype: str = "float32",
    logits_on_labelled_only: bool = True,
    seed: int = 0,
    tokenizer: Any = None,
    vpg_options: dict[str, Any] | None = None,
    connector: ConnectorArg = None,
) -> VisionLLM:
    """The one code path behind every builder: a ``VisionLLMConfig`` from the arguments, then
    ``VisionLLM.from_config`` (VPG and LLM loaded from their sources, trainable parts seeded by ``seed``)."""
    config = VisionLLMConfig(
        vpg_source=_absolute_if_local(vpg_source),
        llm_source=_absolute_if_local(llm_source),
        vpg_format=vpg_format,
        num_extra_queries=num_extra_queries,
        method=method_spec(method),
        connector=connector_spec(connector),
        frozen_dtype=frozen_dtype,
        logits_on_labelled_only=logits_on_labelled_only,
        seed=seed,
        vpg_options=dict(vpg_options or {}),
    )
    return VisionLLM.from_config(config, tokenizer=tokenizer)


def _absolute_if_local(source: str | Path) -> str:
    # A checkpoint's config must point at its sources from any working directory: local paths are stored
    # absolute, hub ids as given.
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def tiny_sources(cache_dir: str | Path | None = None, seed: int = 0, llm_arch: str = "llama") -> tuple[Path, Path]:
    """Write (once) and return the tiny BLIP-2 and tiny LLM directories for ``seed``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tiny"
    blip_cfg = tiny_blip2_config()
    blip_dir = root / f"blip2-s{seed}-{_digest(blip_cfg.to_dict())}"
    llm_dir = root / f"{llm_arch}-s{seed}-{_digest(llm_arch, sorted(builtin_tokenizer().get_vocab().items()))}"
    _write_once(blip_dir, lambda d: write_tiny_blip2(d, seed=seed, config=blip_cfg))
    _write_once(llm_dir, lambda d: write_tiny_llm(d, seed=seed, arch=llm_arch))
    return blip_dir, llm_dir


@dataclass(frozen=True)
class BenchShapes:
    """The benchmarks' "larger random" model, big enough that their ratios are not only Python overhead, small
    enough for a 2-core CPU. ``vit``, ``qformer`` and ``llm`` are ``(layers, width)``; ``queries`` the Q-Former's
    ``(original, extra)`` queries (the visual tokens); ``image`` ``(pixels, patch)`` (224 x 14: BLIP-2's geometry,
    256 patches). ViT and Q-Former heads are 32 wide with 4x MLPs (cross-attention in every Q-Former layer); LLaMA's
    heads are 64 wide, its SwiGLU MLP 8/3 x the width rounded up to a multiple of 32 (1376 for 512); the vocabulary
    is the built-in tokenizer's."""

    vit: tuple[int, int] = (6, 256)
    qformer: tuple[int, int] = (4, 256)
    llm: tuple[int, int] = (6, 512)
    queries: tuple[int, int] = (32, 32)
    image: tuple[int, int] = (224, 14)

    @classmethod
    def parse(cls, text: str) -> BenchShapes:
        """``"vit=6x256,qformer=4x256,llm=6x512,queries=32+32,image=224x14"`` (any subset; the rest default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            if key not in names:
                raise ValueError(f"shapes: unknown key {key!r} in {text!r}; keys: {sorted(names)}")
            a, b = value.replace("+", "x").split("x")
            values[key] = (int(a), int(b))
        return cls(**values)

    def __str__(self) -> str:
        v, q, m, (orig, extra) = self.vit, self.qformer, self.llm, self.queries
        return (
            f"ViT {v[0]}x{v[1]} ({self.image[0]} px, patch {self.image[1]}), Q-Former {q[0]}x{q[1]}, "
            f"LLaMA {m[0]}x{m[1]}, {orig}+{extra} queries"
        )

    def blip2_config(self) -> Blip2Config:
        """A fresh config (not attributes set on the tiny one: derived fields such as the Q-Former's encoder width
        follow the ViT's)."""
        tiny = tiny_blip2_config().to_dict()
        (vit_layers, vit_width), (q_layers, q_width) = self.vit, self.qformer
        vision = {
            **tiny["vision_config"],
            "hidden_size": vit_width,
            "intermediate_size": 4 * vit_width,
            "num_hidden_layers": vit_layers,
            "num_attention_heads": max(1, vit_width // 32),
            "image_size": self.image[0],
            "patch_size": self.image[1],
        }
        qformer = {
            **tiny["qformer_config"],
            "hidden_size": q_width,
            "intermediate_size": 4 * q_width,
            "num_hidden_layers": q_layers,
            "num_attention_heads": max(1, q_width // 32),
        }
        qformer.pop("encoder_hidden_size", None)
        return Blip2Config(
            vision_config=vision,
            qformer_config=qformer,
            text_config=tiny["text_config"],
            num_query_tokens=self.queries[0],
        )

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        layers, width = self.llm
        heads = max(1, width // 64)
        values = tiny_llama_config(vocab_size).to_dict()
        # head_dim is derived at construction: build from a dict with it set, or it stays the tiny model's
        values.update(
            hidden_size=width,
            intermediate_size=32 * math.ceil(8 * width / 3 / 32),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=width // heads,
            max_position_embeddings=512,
        )
        return LlamaConfig(**values)


def bench_sources(
    shapes: BenchShapes | None = None, cache_dir: str | Path | None = None, seed: int = 0
) -> tuple[Path, Path]:
    """Write (once) and return the random BLIP-2 and LLaMA directories of ``shapes`` (default ``BenchShapes()``)."""
    shapes = shapes or BenchShapes()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "bench"
    blip_cfg = shapes.blip2_config()
    tokenizer = builtin_tokenizer()
    llm_cfg = shapes.llama_config(len(tokenizer))
    blip_dir = root / f"blip2-s{seed}-{_digest(blip_cfg.to_dict())}"
    llm_dir = root / f"llama-s{seed}-{_digest(llm_cfg.to_dict(), sorted(tokenizer.get_vocab().items()))}"
    _write_once(blip_dir, lambda d: write_tiny_blip2(d, seed=seed, config=blip_cfg))
    _write_once(llm_dir, lambda d: write_tiny_llm(d, seed=seed, tokenizer=tokenizer, config=llm_cfg))
    return blip_dir, llm_dir


def build_bench(
    method: MethodArg = "lora", shapes: BenchShapes | None = None, seed: int = 0, **kwargs: Any
) -> VisionLLM:
    """The benchmarks' larger random ``VisionLLM`` (``bench_sources``; ``shapes.queries[1]`` extra queries; the
    method's own default settings, float32); ``kwargs`` go to ``build_vision_llm``."""
    shapes = shapes or BenchShapes()
    blip_dir, llm_dir = bench_sources(shapes, seed=seed)
    kwargs.setdefault("num_extra_queries", shapes.queries[1])
    return build_vision_llm(blip_dir, llm_dir, method=method, seed=seed, **kwargs)


TINY_METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "llama_adapter": {"adapter_len": 4, "adapter_layers": 2},
    "vpgtrans_lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "mm_adapter": {"dim": 8, "groups": 2, "dropout": 0.0},
    "vlora": {"rank": 4, "alpha": 8.0, "every": 1},
}
"""Settings ``build_tiny`` gives a method named by a string: small, and without dropout so tests are exact."""

TINY_CONNECTOR_SETTINGS: dict[str, dict[str, Any]] = {
    "vlora_generator": {"width": 32, "depth": 2, "heads": 4},
}
"""Settings ``build_tiny`` gives a connector named by a string or chosen as the method's default (the defaults are
the paper's: VLoRA's generator would be 34M parameters)."""


def build_tiny(
    method: MethodArg = "lora",
    num_extra_queries: int = 4,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    llm_arch: str = "llama",
    frozen_dtype: str = "float32",
    logits_on_labelled_only: bool = True,
    connector: ConnectorArg = None,
) -> VisionLLM:
    """A tiny random VICT model (8 + ``num_extra_queries`` visual tokens, 30 px images), for tests and smoke
    runs. Its BLIP-2 and LLM are real saved checkpoints under ``cache_dir`` (default ``default_cache_dir()/tiny``),
    written once per seed; everything is deterministic for ``seed``. ``method`` is a registered method's name
    (tiny settings, ``TINY_METHOD_SETTINGS``), a ``{"type": ..., **settings}`` dict or a ``MethodSpec``; a connector
    named by a string (or the method's default) gets ``TINY_CONNECTOR_SETTINGS``."""
    if isinstance(method, str):
        method = MethodSpec.from_dict({"type": method, **TINY_METHOD_SETTINGS.get(method, {})})
    if connector is None or isinstance(connector, str):
        name = connector or get_method(method_spec(method).type).default_connector
        if name in TINY_CONNECTOR_SETTINGS:
            connector = {"type": name, **TINY_CONNECTOR_SETTINGS[name]}
    blip_dir, llm_dir = tiny_sources(cache_dir, seed=seed, llm_arch=llm_arch)
    return build_vision_llm(
        blip_dir,
        llm_dir,
        method=method,
        num_extra_queries=num_extra_queries,
        frozen_dtype=frozen_dtype,
        logits_on_labelled_only=logits_on_labelled_only,
        seed=seed,
        connector=connector,
    )


def build_paper(
    vpg_source: str | Path = PAPER_VPG_SOURCE,
    llm_source: str | Path = PAPER_LLM_SOURCE,
    method: MethodArg = "lora",
    num_extra_queries: int = 32,
    frozen_dtype: str = "bfloat16",
    seed: int = 0,
) -> VisionLLM:
    """The paper's setting: BLIP-2 ViT-g + Q-Former of ``Salesforce/blip2-opt-2.7b`` (32 original + 32 extra
    queries) + LLaMA-7B, with the method's default settings: LoRA r=8, alpha=16 on q_proj/v_proj, or
    LLaMA-Adapter with 10 prompt tokens in the top 2 layers (pass a ``MethodSpec`` or dict to change them).

    Reads the real weights (only the VPG tensors of the BLIP-2 checkpoint; the LLM via
    ``AutoModelForCausalLM``); frozen parts in ``frozen_dtype``. ``paper_footprint`` counts the same model
    without any weights."""
    return build_vision_llm(
        vpg_source,
        llm_source,
        method=method,
        num_extra_queries=num_extra_queries,
        frozen_dtype=frozen_dtype,
        seed=seed,
    )


def paper_footprint(
    method: MethodArg = "lora",
    num_extra_queries: int = 32,
    connector: ConnectorArg = None,
    text_tokens: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Parameter counts by part and the checkpoint size of ``build_paper``'s model, from configs alone; with
    ``text_tokens``, also ``compute``: ``{T: vict.models.flops.method_compute(model, T)}`` (FLOPs of one image and T
    text tokens, counted on the meta device).

    Builds the VPG (``paper_blip2_config()``) and LLaMA-7B (``llama_7b_config()``) on the meta device (no
    weights are allocated or downloaded), applies the same connector and method, and counts.
    ``checkpoint_bytes`` is the size of the trainable tensors saved in float32 (``4 * trainable``), i.e.
    ``vict_trainable.safetensors`` plus the method's files without their small headers.
    """
    from transformers import AutoModelForCausalLM

    from vict.models.vpg import VisualPromptGenerator, VPGSpec

    blip2 = paper_blip2_config()
    config = VisionLLMConfig(
        vpg_source=PAPER_VPG_SOURCE,
        llm_source=PAPER_LLM_SOURCE,
        num_extra_queries=num_extra_queries,
        method=method_spec(method),
        connector=connector_spec(connector),
        frozen_dtype="bfloat16",
    )
    with torch.device("meta"):
        vpg = VisualPromptGenerator.from_config(
            blip2, num_extra_queries, spec=VPGSpec(PAPER_VPG_SOURCE, "hf", num_extra_queries)
        )
        llm = AutoModelForCausalLM.from_config(llama_7b_config())
        model = VisionLLM.compose(vpg, llm, None, config)
    counts = model.trainable_parameters_by_part()
    out = {
        "counts": counts,
        "checkpoint_bytes": 4 * counts["trainable"],
        "num_visual_tokens": model.num_visual_tokens,
        "config": config.to_dict(),
    }
    if text_tokens:
        from vict.models.flops import method_compute

        out["compute"] = {t: method_compute(model, t) for t in text_tokens}
    return out
