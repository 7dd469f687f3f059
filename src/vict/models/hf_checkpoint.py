"""Read only the VPG's tensors from a Hugging Face BLIP-2 checkpoint (local directory or hub id).

A BLIP-2 checkpoint is mostly its language model (2.7B of ``Salesforce/blip2-opt-2.7b``'s 3.8B parameters).
The VPG needs the vision tower, the Q-Former and the query tokens only, so this module opens the safetensors
files with ``safe_open`` and reads just those tensors; for a hub id it downloads just the config, the
processor config, the shard index and the shards that hold them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

VPG_PREFIXES: tuple[str, ...] = ("vision_model.", "qformer.", "query_tokens")
"""Key prefixes (after removing a wrapper prefix) of the tensors the VPG uses."""

# transformers has stored BLIP-2 at the top level ("vision_model.…"); composite models in newer layouts nest
# the same modules under a wrapper ("model.vision_model.…"). Both are accepted.
WRAPPER_PREFIXES: tuple[str, ...] = ("", "model.", "blip.", "blip2.")

CONFIG_NAME = "config.json"
PROCESSOR_NAME = "preprocessor_config.json"
SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
BLIP2_MODEL_TYPE = "blip-2"


def canonical_vpg_key(key: str) -> str | None:
    """The VPG-relative name of checkpoint key ``key`` (``vision_model.…``, ``qformer.…``, ``query_tokens``),
    or ``None`` for tensors the VPG does not use (the language model, the projection)."""
    for wrapper in WRAPPER_PREFIXES:
        if key.startswith(wrapper):
            rest = key[len(wrapper) :]
            if rest.startswith(VPG_PREFIXES):
                return rest
    return None


def is_local(source: str | Path) -> bool:
    """True if ``source`` names an existing local path (otherwise it is treated as a hub id)."""
    return Path(source).expanduser().exists()


def read_json(source: str | Path, filename: str, required: bool = True) -> dict | None:
    """Read ``filename`` of a local directory or hub repo; ``None`` if absent and not ``required``."""
    path = _fetch(source, filename, required=required)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_blip2_config(source: str | Path, config: dict) -> None:
    """Raise a ``ValueError`` naming the found ``model_type`` when ``config`` is not a BLIP-2 config."""
    found = config.get("model_type")
    if found != BLIP2_MODEL_TYPE:
        hint = ""
        if found in ("instructblip", "blip", "blip_2_qformer", "blip_2_vision_model"):
            hint = f" ({found!r} is a related but different layout)"
        raise ValueError(
            f"{source}: not a BLIP-2 checkpoint: its config.json has model_type={found!r}{hint}, expected "
            f"{BLIP2_MODEL_TYPE!r} (a Blip2ForConditionalGeneration / Blip2Model directory or hub id such as "
            "'Salesforce/blip2-opt-2.7b'). For a LAVIS .pth state dict use VisualPromptGenerator.from_lavis."
        )


def load_vpg_tensors(source: str | Path) -> dict[str, torch.Tensor]:
    """Load the VPG tensors of a BLIP-2 checkpoint, keyed by their VPG-relative names.

    Reads ``model.safetensors`` or the shards listed in ``model.safetensors.index.json`` (falling back to
    ``pytorch_model.bin`` files, memory-mapped) and returns only keys under ``vision_model.``, ``qformer.``
    and ``query_tokens``; language-model tensors are never read.
    """
    tensors = read_tensors(source, canonical_vpg_key)
    if not tensors:
        raise ValueError(
            f"{source}: the checkpoint holds no vision_model./qformer./query_tokens tensors; "
            "is this a BLIP-2 checkpoint with its vision tower?"
        )
    return tensors


def checkpoint_keys(source: str | Path) -> list[str]:
    """Every tensor name of a checkpoint (local directory or hub id), read from the shard index or the file
    header; no tensor is read."""
    index = read_json(source, SAFE_INDEX, required=False)
    if index is not None:
        return sorted(index.get("weight_map", {}))
    single = _fetch(source, SAFE_SINGLE, required=False)
    if single is not None:
        from safetensors import safe_open

        with safe_open(str(single), framework="pt", device="cpu") as handle:
            return sorted(handle.keys())
    index = read_json(source, BIN_INDEX, required=False)
    if index is not None:
        return sorted(index.get("weight_map", {}))
    single = _fetch(source, BIN_SINGLE, required=False)
    if single is not None:
        return sorted(torch.load(single, map_location="cpu", weights_only=True, mmap=True))
    raise _no_weights(source)


def read_tensors(source: str | Path, rename: Callable[[str], str | None]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint whose names ``rename`` maps to a name (``None``: not wanted), keyed by it.

    Only the wanted tensors are read: with a shard index, only the shards that hold them are opened (for a hub id,
    downloaded); in a safetensors file, only their bytes; ``pytorch_model.bin`` files are memory-mapped.
    """
    for index_name, safetensors in ((SAFE_INDEX, True), (BIN_INDEX, False)):
        index = read_json(source, index_name, required=False)
        if index is not None:
            weight_map: dict[str, str] = index.get("weight_map", {})
            shards = sorted({shard for key, shard in weight_map.items() if rename(key) is not None})
            tensors: dict[str, torch.Tensor] = {}
            for shard in shards:
                path = _fetch(source, shard, required=True)
                tensors.update(_read_safetensors(path, rename) if safetensors else _read_bin(path, rename))
            return tensors
        single = _fetch(source, SAFE_SINGLE if safetensors else BIN_SINGLE, required=False)
        if single is not None:
            return _read_safetensors(single, rename) if safetensors else _read_bin(single, rename)
    raise _no_weights(source)


def _no_weights(source: str | Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{source}: no weights found (looked for {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE}, {BIN_INDEX}); "
        "save the model with save_pretrained(dir)"
    )


def _read_safetensors(path: Path, rename: Callable[[str], str | None]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
            name = rename(key)
            if name is not None:
                out[name] = handle.get_tensor(key)
    return out


def _read_bin(path: Path, rename: Callable[[str], str | None]) -> dict[str, torch.Tensor]:
    # mmap: the tensors not wanted are mapped, never copied into memory.
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {name: t.clone() for key, t in state.items() if (name := rename(key)) is not None}


def _fetch(source: str | Path, filename: str, required: bool) -> Path | None:
    if not is_local(source) and _looks_like_path(str(source)):
        raise FileNotFoundError(
            f"{source}: no such directory (a hub id looks like 'Salesforce/blip2-opt-2.7b'; a local source must "
            "be an existing directory written by save_pretrained)"
        )
    if is_local(source):
        path = Path(source).expanduser() / filename
        if path.is_file():
            return path
        if required:
            raise FileNotFoundError(
                f"{path}: missing. A BLIP-2 directory holds config.json, preprocessor_config.json and the "
                "weights (model.safetensors or shards + model.safetensors.index.json)."
            )
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(str(source), filename))
    except LocalEntryNotFoundError as err:
        # Offline and not cached: whether the file exists is unknown, so "absent" would be a guess.
        raise FileNotFoundError(
            f"{source}: {filename} is not in the local Hugging Face cache and the hub cannot be reached; connect "
            "once (or download the repository and pass its local directory)"
        ) from err
    except EntryNotFoundError:
        if required:
            raise
        return None
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"{source}: neither a local directory nor a Hugging Face hub repository "
            "(check the path, or the hub id, e.g. 'Salesforce/blip2-opt-2.7b')"
        ) from err


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else (absolute, relative, home paths, deeper nesting) was
    # meant as a local directory.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
