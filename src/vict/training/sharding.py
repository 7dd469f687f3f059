"""FSDP for vict's training: the frozen LLM sharded over the processes, the trainable parts replicated.

``accelerate launch --config_file configs/accelerate/fsdp.yaml -m vict train ...`` sets ``ACCELERATE_USE_FSDP``
and the ``FSDP_*`` settings in each process's environment. vict reads them with accelerate's own
``FullyShardedDataParallelPlugin`` and shards the model itself with torch's ``fully_shard`` (FSDP2), on GPUs and
on CPU ranks (gloo) alike, so the path that the test suite runs on two CPU processes is the path a GPU cluster runs
(accelerate's own FSDP wrapping is for accelerator devices only and would gather trainable tensors in its own
layout). The data flow:

1. Every process builds the whole model (frozen VPG + LLM, trainable queries, connector, method delta).
2. ``broadcast_trainable``: the trainable tensors of rank 0 go to every rank (each rank seeded its own init).
3. ``shard_model``: each decoder layer (``fsdp_transformer_layer_cls_to_wrap``, else the LLM's
   ``_no_split_modules``) becomes one FSDP unit, every other frozen LLM module that owns weights (final norm,
   LM head) one more, and the ``VisionLLM`` the root unit that owns nothing itself. Ignored by FSDP, so plain and
   replicated: every trainable parameter (LoRA, adapters, queries, connector), the frozen vision side (small next
   to the LLM), the input embedding (read before the LLM's first layer; a tied LM head shares it) and the frozen
   weights the method names (``Method.unsharded_parameters``: a gradient reaches them from inside a block, where
   FSDP would have freed them; LaVIN's routed norms). A method FSDP cannot train at all says why
   (``Method.not_shardable``) and is refused.
4. Training: FSDP all-gathers a unit's frozen weights for its forward (and again for the backward when
   ``reshard_after_forward``) and frees them after; frozen weights have no gradients to reduce. The replicated
   trainable gradients are averaged over the processes once per optimizer step by ``average_gradients`` (one
   flat all-reduce), as DDP would.
5. Checkpoints: trainable tensors are whole on every rank, so rank 0 writes exactly the files of a
   one-process run (``VisionLLM.save_pretrained`` + ``training_state/``), and resume is the same code.

Settings that have no effect here are named once at start-up (``describe``), never dropped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# VisionLLM methods that reach the LLM outside ``forward`` (generation for samples): FSDP's root hooks run for them.
ROOT_METHODS = ("generate_ids", "prefill")


def refuse_deepspeed() -> None:
    """Stop a DeepSpeed launch before any work: ZeRO partitions the optimizer state over the processes, and vict's
    resumable checkpoints hold it whole (``training_state/optimizer.safetensors``, written by rank 0), so its first
    save would fail or its resume be wrong; and accelerate runs DeepSpeed only on GPUs (on CPU ranks it would quietly
    become plain DDP).

    Raises:
        ValueError: under ``accelerate launch`` with a DeepSpeed config, naming the configs to use instead.
    """
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise ValueError(
            "DeepSpeed is not supported by vict train: ZeRO partitions the optimizer state, which vict's resumable "
            "checkpoints keep whole; launch with configs/accelerate/ddp.yaml (the model fits on each GPU) or "
            "configs/accelerate/fsdp.yaml (the frozen LLM sharded over the processes, tested on CPU and GPU alike)"
        )


def fsdp_requested() -> bool:
    """True when ``accelerate launch`` was given an FSDP config (``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


@dataclass
class FsdpSettings:
    """What vict applies of an accelerate FSDP config, and what it names as having no effect."""

    reshard_after_forward: bool = True
    wrap_layers: bool = True  # one unit per decoder layer (TRANSFORMER_BASED_WRAP); False: NO_WRAP
    layer_classes: list[str] = field(default_factory=list)  # empty: the LLM's ``_no_split_modules``
    offload_params: bool = False
    activation_checkpointing: bool = False
    no_effect: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> FsdpSettings:
        """The settings of the launch environment (``FSDP_*`` variables, read by accelerate's plugin).

        Raises:
            ValueError: a setting vict cannot honour (no sharding, hybrid sharding, size-based wrapping, ignored
                modules), naming the key to change.
        """
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()
        settings = cls()
        if plugin.fsdp_version == 1:
            strategy = getattr(plugin.sharding_strategy, "name", str(plugin.sharding_strategy))
            if strategy not in ("FULL_SHARD", "SHARD_GRAD_OP"):
                raise ValueError(
                    f"fsdp_sharding_strategy: {strategy} is not supported by vict's FSDP; use FULL_SHARD (frozen "
                    "weights freed after each forward) or SHARD_GRAD_OP (kept until the backward), or plain DDP "
                    "(accelerate launch --multi_gpu) when the model fits on one device"
                )
            settings.reshard_after_forward = strategy == "FULL_SHARD"
            settings.no_effect.append("fsdp_version: 1 (vict shards with torch's fully_shard, FSDP2)")
        else:
            if not isinstance(plugin.reshard_after_forward, bool):
                raise ValueError(
                    f"fsdp_reshard_after_forward: {plugin.reshard_after_forward!r} is not supported by vict's FSDP; "
                    "use true or false"
                )
            settings.reshard_after_forward = plugin.reshard_after_forward
        policy = os.environ.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP").upper()
        if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP"):
            raise ValueError(
                f"fsdp_auto_wrap_policy: {policy} is not supported by vict's FSDP; use TRANSFORMER_BASED_WRAP "
                "(one unit per decoder layer) or NO_WRAP"
            )
        settings.wrap_layers = policy == "TRANSFORMER_BASED_WRAP"  # NO_WRAP: each frozen module with weights alone
        settings.layer_classes = list(plugin.transformer_cls_names_to_wrap or [])
        if plugin.ignored_modules:
            raise ValueError(
                "fsdp_ignored_modules is not supported by vict's FSDP: trainable parameters and the vision side "
                "are never sharded; remove the key"
            )
        offload = plugin.cpu_offload
        settings.offload_params = bool(
            getattr(offload, "offload_params", False) or type(offload).__name__ == "CPUOffloadPolicy"
        )
        settings.activation_checkpointing = bool(plugin.activation_checkpointing)
        if plugin.cpu_ram_efficient_loading:
            # transformers would load the LLM's weights on rank 0 only (the others on the meta device) and count on
            # FSDP broadcasting them at wrap time, which vict's sharding does not do
            raise ValueError(
                "fsdp_cpu_ram_efficient_loading: true is not supported by vict's FSDP (every process reads the whole "
                "checkpoint into CPU memory, then keeps its shard); set it to false"
            )
        if os.environ.get("FSDP_STATE_DICT_TYPE"):
            settings.no_effect.append(
                "fsdp_state_dict_type (checkpoints hold only the trainable tensors, whole, in vict's format)"
            )
        for key in ("FSDP_BACKWARD_PREFETCH", "FSDP_FORWARD_PREFETCH"):
            if os.environ.get(key, "false").lower() not in ("false", "no_prefetch", ""):
                settings.no_effect.append(f"{key[5:].lower()} (FSDP2 prefetches the next unit itself)")
        return settings

    def describe(self, world_size: int) -> str:
        """One line for the log: what is sharded how, and the config keys without effect."""
        text = (
            f"FSDP over {world_size} processes: frozen LLM weights sharded "
            f"({'freed after each forward' if self.reshard_after_forward else 'kept from forward to backward'}"
            f"{', offloaded to CPU' if self.offload_params else ''}), trainable parts replicated"
        )
        if self.no_effect:
            text += "; without effect here: " + "; ".join(self.no_effect)
        return text


def _layer_modules(llm: nn.Module, classes: list[str]) -> list[nn.Module]:
    wanted = set(classes or getattr(llm, "_no_split_modules", None) or [])
    layers = [m for m in llm.modules() if type(m).__name__ in wanted]
    if not layers:
        present = sorted({type(m).__name__ for m in llm.modules() if type(m).__name__.endswith("Layer")})
        raise ValueError(
            f"fsdp_transformer_layer_cls_to_wrap: no module of the LLM is a {sorted(wanted) or '(unset)'}; this "
            f"LLM's layer classes are {present[:8]}"
        )
    return layers


def shard_model(model: nn.Module, settings: FsdpSettings, device: torch.device) -> dict[str, int]:
    """Shard ``model``'s frozen LLM weights in place (see the module docstring).

    Call after ``broadcast_trainable`` and before the optimizer is built over the trainable parameters (those are
    ignored by FSDP, so they stay the same objects).

    Returns:
        ``units`` (FSDP units besides the root), ``sharded_tensors`` / ``replicated_tensors`` (counts),
        ``sharded_numel`` (elements of the sharded weights) and ``local_numel`` (of those, held by this process).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard, register_fsdp_forward_method
    from torch.distributed.tensor import DTensor

    reason = model.method.not_shardable()
    if reason:
        raise ValueError(
            f"method.type={model.method.name} cannot train under FSDP: {reason}; launch with "
            "configs/accelerate/ddp.yaml (every process holds the whole frozen model) instead"
        )
    llm = model.base_llm
    llm_params = {id(p) for p in llm.parameters()}
    embedding = llm.get_input_embeddings().weight
    ignored = {p for p in model.parameters() if p.requires_grad or id(p) not in llm_params or p is embedding}
    ignored |= set(model.method.unsharded_parameters(llm))
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    offload = CPUOffloadPolicy() if settings.offload_params and device.type != "cpu" else OffloadPolicy()
    kwargs: dict[str, Any] = {"mesh": mesh, "offload_policy": offload, "ignored_params": ignored}
    if settings.activation_checkpointing:
        model.enable_gradient_checkpointing()

    units = 0
    covered: set[int] = set()
    for layer in _layer_modules(llm, settings.layer_classes) if settings.wrap_layers else []:
        fully_shard(layer, reshard_after_forward=settings.reshard_after_forward, **kwargs)
        covered |= {id(p) for p in layer.parameters()}
        units += 1
    # Every other frozen module with weights (final norm, LM head, a method's frozen parts): a unit of its own, so
    # that it is gathered whenever it runs, whichever VisionLLM method calls it.
    for module in list(llm.modules()):
        own = [p for p in module.parameters(recurse=False) if p not in ignored and id(p) not in covered]
        if own:
            fully_shard(module, reshard_after_forward=settings.reshard_after_forward, **kwargs)
            covered |= {id(p) for p in module.parameters()}
            units += 1
    # The root unit owns no weights: it orders the units' gathers and finishes each backward.
    fully_shard(model, **kwargs)
    for name in ROOT_METHODS:
        if hasattr(model, name):
            register_fsdp_forward_method(model, name)
    llm._is_fsdp_managed_module = True  # transformers' generate then keeps every rank stepping (synced_gpus)
    for param in ignored:  # replicated tensors live on this process's device (FSDP moved the sharded ones)
        param.data = param.data.to(device)
    for buffer_owner in model.modules():
        for key, buffer in list(buffer_owner._buffers.items()):
            if buffer is not None and buffer.device != device:
                buffer_owner._buffers[key] = buffer.to(device)
    sharded = [p for p in model.parameters() if isinstance(p, DTensor)]
    return {
        "units": units,
        "sharded_tensors": len(sharded),
        "replicated_tensors": len(ignored),
        "sharded_numel": sum(p.numel() for p in sharded),
        "local_numel": sum(p.to_local().numel() for p in sharded),
    }


def _comm_device() -> torch.device:
    """Where the process group's collectives take their tensors: this process's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_trainable(params: list[nn.Parameter]) -> None:
    """Give every process rank 0's values of ``params`` (one flat broadcast; the parameters may still be on the
    CPU where they were built, the broadcast runs on the process group's device)."""
    if not params or dist.get_world_size() == 1:
        return
    device = _comm_device()
    flat = torch.cat([p.detach().reshape(-1).float().to(device) for p in params])
    dist.broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p).to(p.device, p.dtype))
            offset += n


def average_gradients(params: list[nn.Parameter]) -> None:
    """Average the gradients of the replicated ``params`` over the processes (one flat all-reduce).

    A parameter that got no gradient on any process keeps ``None`` (the optimizer then skips it, as in a
    one-process run); one that got a gradient on some process gets the average over all, zeros counted.
    """
    world = dist.get_world_size()
    if not params or world == 1:
        return
    device = _comm_device()
    grads = [
        p.grad.reshape(-1).float().to(device) if p.grad is not None else torch.zeros(p.numel(), device=device)
        for p in params
    ]
    present = torch.tensor([float(p.grad is not None) for p in params], device=device)
    flat = torch.cat([*grads, present])
    dist.all_reduce(flat)
    counts = flat[-len(params) :].tolist()
    offset = 0
    for p, count in zip(params, counts, strict=True):
        n = p.numel()
        if count > 0:
            p.grad = (flat[offset : offset + n] / world).view_as(p).to(p.device, p.dtype)
        offset += n
