"""vict's FSDP (``vict.training.sharding``): the settings it reads from an accelerate FSDP launch, and two gloo
processes that shard a tiny VICT model and must compute exactly what the unsharded model computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vict.training.sharding import FsdpSettings, fsdp_requested


@pytest.fixture
def fsdp_env(monkeypatch: pytest.MonkeyPatch):
    """Set ``FSDP_*`` variables as ``accelerate launch`` does (everything else of FSDP unset)."""
    import os

    for key in list(os.environ):
        if key.startswith("FSDP_") or key == "ACCELERATE_USE_FSDP":
            monkeypatch.delenv(key)

    def setenv(**values: str) -> None:
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        for key, value in values.items():
            monkeypatch.setenv(f"FSDP_{key.upper()}", value)

    return setenv


def test_settings_of_the_shipped_config(fsdp_env):
    fsdp_env(
        version="2",
        reshard_after_forward="true",
        auto_wrap_policy="TRANSFORMER_BASED_WRAP",
        transformer_cls_to_wrap="LlamaDecoderLayer",
        offload_params="false",
        activation_checkpointing="false",
    )
    assert fsdp_requested()
    settings = FsdpSettings.from_env()
    assert settings.reshard_after_forward and settings.wrap_layers and settings.layer_classes == ["LlamaDecoderLayer"]
    assert not settings.offload_params and not settings.activation_checkpointing and settings.no_effect == []
    assert "freed after each forward" in settings.describe(2)


def test_fsdp1_strategies_map_to_resharding_and_the_rest_is_refused(fsdp_env):
    fsdp_env(version="1", sharding_strategy="SHARD_GRAD_OP")
    settings = FsdpSettings.from_env()
    assert settings.reshard_after_forward is False
    assert any("fsdp_version: 1" in note for note in settings.no_effect)  # said, not silently reinterpreted
    fsdp_env(version="1", sharding_strategy="FULL_SHARD")
    assert FsdpSettings.from_env().reshard_after_forward is True
    fsdp_env(version="1", sharding_strategy="NO_SHARD")
    with pytest.raises(ValueError, match=r"fsdp_sharding_strategy: NO_SHARD.*FULL_SHARD"):
        FsdpSettings.from_env()


def test_unsupported_settings_stop_with_the_key_and_the_others_are_named(fsdp_env):
    fsdp_env(version="2", auto_wrap_policy="SIZE_BASED_WRAP", min_num_params="1000")
    with pytest.raises(ValueError, match=r"fsdp_auto_wrap_policy: SIZE_BASED_WRAP.*TRANSFORMER_BASED_WRAP"):
        FsdpSettings.from_env()
    # transformers would leave the LLM on the meta device on every rank but 0, counting on a broadcast
    fsdp_env(version="2", auto_wrap_policy="NO_WRAP", cpu_ram_efficient_loading="true", sync_module_states="true")
    with pytest.raises(ValueError, match=r"fsdp_cpu_ram_efficient_loading: true is not supported.*set it to false"):
        FsdpSettings.from_env()
    fsdp_env(cpu_ram_efficient_loading="false", state_dict_type="SHARDED_STATE_DICT", backward_prefetch="BACKWARD_PRE")
    settings = FsdpSettings.from_env()
    assert settings.wrap_layers is False
    named = " ".join(settings.no_effect)
    for key in ("fsdp_state_dict_type", "backward_prefetch"):
        assert key in named
    assert "without effect here: " in settings.describe(2)


# ---------------------------------------------------------------------------------------------------------------
# Two gloo processes
# ---------------------------------------------------------------------------------------------------------------


def _two_ranks(
    rank: int, init_file: str, method: str, reshard: bool, batches: list[dict], prompts: list[dict]
) -> None:
    import torch.distributed as dist

    from vict.models.builders import build_tiny
    from vict.training.sharding import average_gradients, broadcast_trainable, shard_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = build_tiny(method, num_extra_queries=4, seed=0)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        if rank == 1:  # each rank starts from its own init; rank 0's must win
            with torch.no_grad():
                for p in trainable:
                    p.add_(1.0)
        broadcast_trainable(trainable)
        reference = build_tiny(method, num_extra_queries=4, seed=0)  # unsharded, with rank 0's trainable values
        reference.train()
        with torch.no_grad():
            ref_params = dict(reference.named_parameters())
            for name, param in model.named_parameters():
                if param.requires_grad:
                    ref_params[name].copy_(param)

        counts = shard_model(model, FsdpSettings(reshard_after_forward=reshard), torch.device("cpu"))
        # Every frozen LLM weight but the input embedding (and those the method keeps whole) is split in two;
        # nothing trainable is.
        embedding = model.base_llm.get_input_embeddings().weight
        whole = {id(p) for p in model.method.unsharded_parameters(model.base_llm)} | {id(embedding)}
        assert all(type(p).__name__ == "Parameter" for p in model.base_llm.parameters() if id(p) in whole)
        llm_frozen = [p for p in model.base_llm.parameters() if not p.requires_grad and id(p) not in whole]
        assert llm_frozen and counts["sharded_tensors"] == len(llm_frozen)
        assert all(type(p).__name__ == "DTensor" for p in llm_frozen)
        assert counts["local_numel"] <= counts["sharded_numel"] // 2 + 64
        assert all(type(p).__name__ == "Parameter" for p in trainable)
        after = [p for p in model.parameters() if p.requires_grad]  # the objects the optimizer will hold
        assert len(after) == len(trainable) and all(a is b for a, b in zip(after, trainable, strict=True))

        # Training: sharded loss and averaged gradients = the unsharded model's, over both ranks' batches.
        loss = model(**batches[rank]).loss
        loss.backward()
        average_gradients(trainable)
        ref_losses = []
        for batch in batches:
            out = reference(**batch).loss
            (out / 2).backward()
            ref_losses.append(out.detach())
        torch.testing.assert_close(loss.detach(), ref_losses[rank], rtol=0, atol=1e-6)
        ref_trainable = [p for p in reference.parameters() if p.requires_grad]
        assert len(ref_trainable) == len(trainable)
        for mine, ref in zip(trainable, ref_trainable, strict=True):
            assert (mine.grad is None) == (ref.grad is None)
            if ref.grad is not None:
                torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-5, atol=1e-6)

        # Generation (samples during training): the ranks step together, each with its own prompts, and answer as
        # the unsharded model does.
        model.eval()
        reference.eval()
        prompt = {k: prompts[rank][k] for k in ("pixel_values", "input_ids", "attention_mask")}
        with torch.no_grad():
            got = model.generate(**prompt, max_new_tokens=5)
            want = reference.generate(**prompt, max_new_tokens=5)
        assert got == want
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize(
    ("method", "reshard"),
    [
        ("lora", True),
        ("lora", False),
        ("llama_adapter", True),
        pytest.param(
            {"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": True},
            True,
            id="llama_adapter-bias_tuning-True",
        ),
        ("mm_adapter", True),  # its routing pass reaches the blocks' norms from inside: they stay whole
        ("vlora", True),
        ("vpgtrans_lora", True),
    ],
)
def test_two_processes_shard_the_frozen_llm_and_compute_what_one_would(
    tmp_path: Path, method: str, reshard: bool, batch_factory
):
    import torch.multiprocessing as mp

    from vict.models.builders import build_tiny

    model = build_tiny(method, num_extra_queries=4, seed=0)  # tiny checkpoints written once, before the ranks read
    batches = [
        batch_factory(model, [f"what colour is shape {r}?", "a caption"], [f"red {r}", "blue square"])
        for r in range(2)
    ]
    prompts = [batch_factory(model, ["what is it?", f"colour {r}"] * (r + 1), side="left") for r in range(2)]
    mp.spawn(_two_ranks, args=(str(tmp_path / "init"), method, reshard, batches, prompts), nprocs=2, join=True)


def test_a_deepspeed_launch_is_refused(monkeypatch: pytest.MonkeyPatch):
    from vict.training.sharding import refuse_deepspeed

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    refuse_deepspeed()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="ZeRO partitions the optimizer state"):
        refuse_deepspeed()


def test_a_method_that_cannot_be_sharded_is_refused_with_the_reason_and_the_way_out():
    from vict.models.builders import build_tiny
    from vict.training.sharding import shard_model

    spec = {"type": "mm_adapter", "dim": 8, "groups": 2, "dropout": 0.0, "position": "attn_ffn"}
    model = build_tiny(spec, num_extra_queries=4, seed=0)
    # refused before anything touches the process group (none is set up here)
    with pytest.raises(ValueError, match=r"method.type=mm_adapter cannot train under FSDP: .*position=attn.*ddp.yaml"):
        shard_model(model, FsdpSettings(), torch.device("cpu"))
    assert build_tiny("mm_adapter", num_extra_queries=4, seed=0).method.not_shardable() == ""  # position attn
