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


def test_overrides_change_nested_settings_and_name_every_mistake() -> None:
    from vict.zoo import with_overrides, zoo_key

    base = get_preset("default")
    changed = with_overrides(base, ["blip2.reading_steps=600", "target_lm.num_layers=4", "blip2.reading_lr=1e-3"])
    assert changed.blip2.reading_steps == 600 and changed.target_lm.num_layers == 4
    assert changed.blip2.reading_lr == 1e-3 and isinstance(changed.blip2.reading_lr, float)
    assert with_overrides(base, ["blip2.lr=1"]).blip2.lr == 1.0  # an int where a float goes
    assert changed.source_lm == base.source_lm and zoo_key(changed, 0) != zoo_key(base, 0)
    assert with_overrides(base, []) == base
    with pytest.raises(
        ValueError, match=r"unknown zoo setting 'blip2.reading_step'; known settings: .*blip2.reading_steps"
    ):
        with_overrides(base, ["blip2.reading_step=600"])
    with pytest.raises(ValueError, match=r"unknown zoo setting 'blip2'"):
        with_overrides(base, ["blip2=3"])
    with pytest.raises(ValueError, match=r"blip2.reading_steps takes a int \(it is 0\), got 'many'"):
        with_overrides(base, ["blip2.reading_steps=many"])
    with pytest.raises(ValueError, match=r"expected KEY=VALUE"):
        with_overrides(base, ["blip2.reading_steps"])
    with pytest.raises(ValueError, match=r"0 <= reading_caption_p <= 1"):  # validated as any config
        with_overrides(base, ["blip2.reading_caption_p=2.0"])


def test_zoo_build_cli_applies_overrides_and_refuses_to_ship_them(tmp_path: Path, capsys) -> None:
    import json

    from vict.cli import main

    args = ["zoo", "build", "--preset", "micro", "--out", str(tmp_path), "--set", "blip2.reading_steps=3"]
    assert main([*args, "--ship"]) == 2
    assert "without --set" in capsys.readouterr().out and not any(tmp_path.iterdir())
    assert main(["zoo", "build", "--preset", "micro", "--set", "blip2.nope=1", "--out", str(tmp_path)]) == 2
    assert "unknown zoo setting 'blip2.nope'" in capsys.readouterr().out
    assert main(args) == 0
    (built,) = tmp_path.iterdir()
    manifest = json.loads((built / "zoo.json").read_text())
    assert manifest["config"]["blip2"]["reading_steps"] == 3 and manifest["blip2"]["reading_train"]["steps"] == 3
