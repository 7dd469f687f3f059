"""Shared behaviour of the methods that peft implements (LoRA, LLaMA-Adapter): wrap peft, don't fork it.

``apply`` is ``peft.get_peft_model(llm, config)``; the delta is saved with ``PeftModel.save_pretrained`` under
``adapter/`` (so ``peft.PeftModel.from_pretrained(bare_llm, "ckpt/adapter")`` loads it without ``vict``) and loaded
back with ``peft.set_peft_model_state_dict``, checked tensor by tensor; ``delta_disabled`` is
``PeftModel.disable_adapter()``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from torch import nn

from vict.checkpoint import load_tensors
from vict.methods.base import Method

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class PeftMethod(Method):
    """A method built by peft from ``peft_config(llm)``; subclasses give the config and the ``markers``."""

    def peft_config(self, llm: nn.Module) -> Any:
        """The ``peft.PeftConfig`` for ``llm`` (raise ``ValueError`` naming the fix when it cannot apply)."""
        raise NotImplementedError

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(llm, self.peft_config(llm))

    def base_model(self, llm: nn.Module) -> nn.Module:
        return llm.get_base_model()

    def delta_disabled(self, llm: nn.Module) -> contextlib.AbstractContextManager:
        # peft 0.21.2: LoRA layers then return their base layer's output alone, and AdaptionPrompt puts the
        # original attention modules back (tests/unit/methods/test_delta_disabled.py checks both against the bare
        # LLM's logits).
        return llm.disable_adapter()

    def checkpoint_files(self) -> frozenset[str]:
        return frozenset({f"{ADAPTER_DIR}/{ADAPTER_CONFIG}", f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}"})

    def saves(self, name: str) -> bool:
        return name.startswith("llm.") and self.owns(name)

    def save(self, llm: nn.Module, directory: Path) -> None:
        # save_embedding_layers=False: with LoRA on lm_head/embed_tokens, peft would otherwise also save the frozen
        # base matrices (vocab x d: 500 MB for LLaMA-7B), which the LLM source already holds.
        llm.save_pretrained(str(Path(directory) / ADAPTER_DIR), save_embedding_layers=False)
        # peft writes a boilerplate model card; the checkpoint's config.json is the description.
        (Path(directory) / ADAPTER_DIR / "README.md").unlink(missing_ok=True)

    def _check_adapter_type(self, llm: nn.Module, adapter: Path) -> None:
        """The saved adapter's peft type must be this model's (a LLaMA-Adapter ``adapter/`` in a LoRA checkpoint is
        refused by name, not loaded half-way)."""
        import json

        config = adapter / ADAPTER_CONFIG
        if not config.is_file():
            raise FileNotFoundError(f"{config}: missing; a checkpoint of method {self.name!r} holds its delta there")
        saved = json.loads(config.read_text()).get("peft_type")
        mine = getattr(next(iter(getattr(llm, "peft_config", {}).values()), None), "peft_type", None)
        mine = getattr(mine, "value", mine)
        if saved is not None and mine is not None and str(saved) != str(mine):
            raise ValueError(
                f"{config}: an adapter of peft type {saved!r}, but this model's method {self.name!r} uses {mine!r}: "
                "the checkpoint's adapter/ folder belongs to another method"
            )

    def load(self, llm: nn.Module, directory: Path, strict: bool = True) -> set[str]:
        from peft import set_peft_model_state_dict

        adapter = Path(directory) / ADAPTER_DIR
        expected = {f"llm.{n}" for n, _ in llm.named_parameters() if self.saves(f"llm.{n}")}
        if not (adapter / ADAPTER_WEIGHTS).is_file():
            if strict and expected:
                raise FileNotFoundError(
                    f"{adapter / ADAPTER_WEIGHTS}: missing; a checkpoint of method {self.name!r} holds its delta there"
                )
            return set()
        self._check_adapter_type(llm, adapter)
        state = load_tensors(adapter / ADAPTER_WEIGHTS)
        try:
            result = set_peft_model_state_dict(llm, state)
        except RuntimeError as err:  # shape mismatches (another rank, other target sizes)
            raise ValueError(
                f"{adapter / ADAPTER_WEIGHTS} does not fit this model's {self.describe()}: {err}"
            ) from err
        unexpected = sorted(result.unexpected_keys)
        missing = sorted(k for k in result.missing_keys if f"llm.{k}" in expected)
        if unexpected or (strict and missing):
            raise ValueError(
                f"{adapter / ADAPTER_WEIGHTS} does not fit this model's {self.describe()} delta: "
                + (f"tensors with no place in the model {unexpected[:8]}; " if unexpected else "")
                + (f"model tensors missing from the file {missing[:8]}; " if strict and missing else "")
                + "was it written with other method settings?"
            )
        return expected - {f"llm.{k}" for k in result.missing_keys}
