"""Zoo presets validate, cache keys follow every input, builds appear atomically, and the quality scorers
give hand-checkable values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vict.zoo import PRESETS, ZooConfig, get_preset
from vict.zoo.blip2 import caption_batch
from vict.zoo.cache import MANIFEST, atomic_folder, cache_key, is_complete
from vict.zoo.presets import Blip2Spec, LMSpec
from vict.zoo.quality import cider
from vict.zoo.training import batch_indices
from vict.zoo.world_text import load_split


def test_presets_round_trip_and_use_two_tokenizer_kinds() -> None:
    for name, config in PRESETS.items():
        assert config.name == name
        assert ZooConfig.from_dict(config.to_dict()) == config
        assert {config.source_lm.tokenizer, config.target_lm.tokenizer} == {"wordlevel", "bpe"}
    with pytest.raises(ValueError, match=r"unknown zoo preset 'huge'.*default"):
        get_preset("huge")


def test_invalid_config_lists_every_problem() -> None:
    with pytest.raises(ValueError) as exc:
        ZooConfig(
            source_lm=LMSpec(tokenizer="bpe", hidden_size=130, num_heads=4),
            target_lm=LMSpec(tokenizer="bpe"),
            blip2=Blip2Spec(reading_caption_p=1.5),
            num_threads=0,
        )
    msg = str(exc.value)
    assert "0 <= reading_caption_p <= 1" in msg
    assert "source_lm.hidden_size=130 is not divisible by num_heads=4" in msg
    assert "both 'bpe'" in msg and "'wordlevel'" in msg
    assert "num_threads=0" in msg


def test_cache_key_follows_config_and_seed() -> None:
    micro = get_preset("micro")
    key = cache_key(micro.to_dict(), 0)
    assert key == cache_key(get_preset("micro").to_dict(), 0)  # stable
    assert key != cache_key(micro.to_dict(), 1)
    changed = dataclasses.replace(micro, target_lm=dataclasses.replace(micro.target_lm, lr=1e-3))
    assert key != cache_key(changed.to_dict(), 0)


def test_atomic_folder_appears_only_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "zoo" / "abc"
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "partial").write_text("x")
        raise RuntimeError("interrupted")
    assert not final.exists() and list((tmp_path / "zoo").iterdir()) == []
    with atomic_folder(final) as tmp:
        (tmp / MANIFEST).write_text("{}")
        assert not final.exists()
    assert is_complete(final) and [p.name for p in (tmp_path / "zoo").iterdir()] == ["abc"]


def test_world_reader_takes_the_flagged_dense_caption(micro_world: Path) -> None:
    images = load_split(micro_world, "train")
    assert len(images) == 32 and all(len(im.captions) == 5 for im in images)
    assert all(im.dense_index == 0 for im in images)  # the generator flags its first caption
    with pytest.raises(FileNotFoundError, match=r"captions_nope\.json is missing"):
        load_split(micro_world, "nope")


def test_caption_batch_labels_only_the_caption() -> None:
    ids, mask, labels = caption_batch([[1, 7, 8, 2], [1, 9, 2]], num_query_tokens=3, image_token_id=50, pad_id=0)
    assert ids.tolist() == [[50, 50, 50, 1, 7, 8, 2], [50, 50, 50, 1, 9, 2, 0]]
    assert mask.tolist() == [[1] * 7, [1] * 6 + [0]]
    assert labels.tolist() == [[-100, -100, -100, -100, 7, 8, 2], [-100, -100, -100, -100, 9, 2, -100]]


def test_batch_indices_cover_each_epoch_once() -> None:
    batches = list(batch_indices(10, 4, steps=5, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    first_epoch = torch.cat(batches[:2]).tolist()
    assert len(set(first_epoch)) == 8  # no repeats inside an epoch (2 left over are dropped)


def test_cider_hand_checked() -> None:
    refs = [["a red circle on the left."], ["a blue square at the top."]]
    perfect = cider(["A red circle on the left", "a blue square at the top"], refs)
    assert perfect > 100  # CIDEr-D of a verbatim match is well above 1 (x100)
    assert cider(["zebra zebra", "giraffe"], refs) == 0.0
    partial = cider(["a red circle", "a blue triangle"], refs)
    assert 0 < partial < perfect
    with pytest.raises(ValueError, match="2 predictions for 1 reference sets"):
        cider(["a", "b"], refs[:1])
