"""The shipped zoo is checked byte for byte: a damaged, missing or unlisted file is named with the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vict.zoo import ZooPaths, build_zoo
from vict.zoo.shipped import (
    CHECKSUMS,
    SHIPPED_PRESETS,
    ZooIntegrityError,
    resolve_zoo,
    shipped_dir,
    shipped_zoo,
    verify,
    write_checksums,
)
from vict.zoo.training import quiet


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro build laid out as a shipped zoo (its files plus SHA256SUMS)."""
    zoo = build_zoo(tmp_path_factory.mktemp("zoo"), "micro", seed=0, progress=quiet)
    root = tmp_path_factory.mktemp("shipped") / "micro"
    shutil.copytree(zoo.root, root)
    write_checksums(root)
    return root


def test_an_intact_copy_verifies(shipped_copy: Path) -> None:
    verify(shipped_copy, "micro")
    lines = (shipped_copy / CHECKSUMS).read_text().splitlines()
    assert any(line.endswith("  blip2/model.safetensors") for line in lines)


def test_a_flipped_byte_is_named_with_the_rebuild_command(shipped_copy: Path, tmp_path: Path) -> None:
    copy = tmp_path / "micro"
    shutil.copytree(shipped_copy, copy)
    weights = copy / "target_lm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ZooIntegrityError) as err:
        verify(copy, "micro")
    message = str(err.value)
    assert str(weights) in message and "damaged" in message
    assert "vict zoo build --preset micro --ship" in message


def test_missing_and_unlisted_files_are_named(shipped_copy: Path, tmp_path: Path) -> None:
    copy = tmp_path / "micro"
    shutil.copytree(shipped_copy, copy)
    (copy / "source_lm" / "config.json").unlink()
    with pytest.raises(ZooIntegrityError, match=r"source_lm/config\.json is missing"):
        verify(copy, "micro")
    shutil.rmtree(copy)
    shutil.copytree(shipped_copy, copy)
    (copy / "blip2" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ZooIntegrityError, match=r"extra\.bin is not listed"):
        verify(copy, "micro")
    (copy / "blip2" / "extra.bin").unlink()
    (copy / CHECKSUMS).unlink()
    with pytest.raises(ZooIntegrityError, match="SHA256SUMS is missing"):
        verify(copy, "micro")


def test_the_shipped_zoo_matches_its_checksums_and_loads() -> None:
    for preset in SHIPPED_PRESETS:
        zoo = shipped_zoo(preset)  # verifies every file
        assert zoo.root == shipped_dir(preset) and zoo.manifest()["seed"] == 0
        total = sum(p.stat().st_size for p in zoo.root.rglob("*") if p.is_file())
        assert total <= 25 * 2**20, f"the shipped zoo is {total / 2**20:.1f} MiB, over the 25 MB budget"


def test_resolve_zoo_uses_the_shipped_zoo_or_builds(tmp_path: Path) -> None:
    assert resolve_zoo("default", tmp_path).root == shipped_dir("default")
    built = resolve_zoo("micro", tmp_path)
    assert isinstance(built, ZooPaths) and built.root.parent == tmp_path
    with pytest.raises(ValueError, match="unknown zoo preset"):
        resolve_zoo("huge", tmp_path)


def test_open_zoo_takes_a_finished_build_and_names_what_is_wrong(shipped_copy: Path, tmp_path: Path) -> None:
    from vict.zoo import open_zoo

    assert open_zoo(shipped_copy).blip2_dir == shipped_copy / "blip2"  # checked against its SHA256SUMS
    with pytest.raises(ZooIntegrityError, match=r"does not exist; build one with `vict zoo build"):
        open_zoo(tmp_path / "nowhere")
    with pytest.raises(ZooIntegrityError, match=r"not a finished zoo build \(no zoo.json\)"):
        open_zoo(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(shipped_copy, copy)
    (copy / CHECKSUMS).unlink()
    assert open_zoo(copy).root == copy  # a plain build has no checksums
    shutil.rmtree(copy / "target_lm")
    with pytest.raises(ZooIntegrityError, match=r"target_lm/config.json is missing"):
        open_zoo(copy)
    damaged = tmp_path / "damaged"
    shutil.copytree(shipped_copy, damaged)
    (damaged / "zoo.json").write_text((damaged / "zoo.json").read_text() + " ")
    with pytest.raises(ZooIntegrityError, match=r"zoo\.json is damaged"):
        open_zoo(damaged)
