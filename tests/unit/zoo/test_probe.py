"""The VPG probe: its scores on hand-made predictions, on synthetic features that do or do not encode an
attribute (at fixed token slots for the linear probe, in a random slot per image for the attentive one), the
attentive probe against textbook attention pooling, the world's per-cell labels against the scenes and the
pictures, and ``probe_vpg`` end to end on the micro zoo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from vict.data.world.layout import ANNOTATIONS_DIR, SCENES_FILE, world_files
from vict.data.world.scene import COLORS
from vict.zoo import ZooPaths, build_zoo
from vict.zoo.probe import (
    ATTRIBUTES,
    EMPTY,
    NUM_CELLS,
    SCORES,
    AttentiveProbe,
    CellLabels,
    fit_probe,
    majority_scores,
    probe_vpg,
    score_cells,
    vpg_features,
    world_labels,
)
from vict.zoo.training import quiet

COUNT_KEYS = ("train_images", "test_images", "test_objects")


def _labels(rows: list[dict[int, tuple[int, int, int]]]) -> CellLabels:
    """Labels from ``{cell: (colour, shape, size)}`` per image."""
    out = {name: torch.full((len(rows), NUM_CELLS), EMPTY, dtype=torch.long) for name in ATTRIBUTES}
    for i, row in enumerate(rows):
        for cell, values in row.items():
            for name, value in zip(ATTRIBUTES, values):
                out[name][i, cell] = value
    return CellLabels(**out)


def _random_labels(n: int, gen: torch.Generator) -> CellLabels:
    """``n`` scenes like the world's: 1-4 objects in distinct cells, attributes uniform."""
    rows = []
    for _ in range(n):
        count = int(torch.randint(1, 5, (1,), generator=gen))
        cells = torch.randperm(NUM_CELLS, generator=gen)[:count].tolist()
        rows.append(
            {c: tuple(int(torch.randint(len(v), (1,), generator=gen)) for v in ATTRIBUTES.values()) for c in cells}
        )
    return _labels(rows)


def _encoded_features(labels: CellLabels, attribute: str, gen: torch.Generator) -> torch.Tensor:
    """``(n, 4, 32)`` features of unit Gaussian noise plus, for every object, a random direction that depends on
    its cell and on ``attribute`` only (its class; just the cell for ``"position"``)."""
    n, dim = len(labels), 4 * 32
    classes = 1 if attribute == "position" else len(ATTRIBUTES[attribute])
    directions = 6.0 * torch.randn(NUM_CELLS, classes, dim, generator=torch.Generator().manual_seed(123)) / dim**0.5
    x = torch.randn(n, dim, generator=gen)
    for i, cell in labels.occupied.nonzero().tolist():
        x[i] += directions[cell, 0 if attribute == "position" else getattr(labels, attribute)[i, cell]]
    return x.view(n, 4, 32)


def _token_set_features(labels: CellLabels, attribute: str, gen: torch.Generator) -> torch.Tensor:
    """``(n, 8, 32)`` tokens of unit Gaussian noise where every object is added to its own token, in slots drawn
    at random per image (a permuted set, like the Q-Former's outputs): a code of its cell plus, unless
    ``attribute`` is ``"position"``, a code of its ``attribute`` class (fixed random directions of norm 8)."""
    n, slots, dim = len(labels), 8, 32
    codes = torch.Generator().manual_seed(123)
    cell_codes = 8 * F.normalize(torch.randn(NUM_CELLS, dim, generator=codes), dim=-1)
    class_codes = 8 * F.normalize(torch.randn(6, dim, generator=codes), dim=-1)
    x = torch.randn(n, slots, dim, generator=gen)
    order = torch.rand(n, slots, generator=gen).argsort(dim=1)
    for i in range(n):
        for j, cell in enumerate(labels.occupied[i].nonzero().flatten().tolist()):
            x[i, order[i, j]] += cell_codes[cell]
            if attribute != "position":
                x[i, order[i, j]] += class_codes[getattr(labels, attribute)[i, cell]]
    return x


def _encoded_world(attribute: str, slots: str = "fixed") -> tuple[torch.Tensor, CellLabels, torch.Tensor, CellLabels]:
    """600 train and 600 test images whose features encode ``attribute`` at fixed places (``_encoded_features``)
    or in random token slots (``_token_set_features``)."""
    encode = _encoded_features if slots == "fixed" else _token_set_features
    gen = torch.Generator().manual_seed(0)
    train, test = _random_labels(600, gen), _random_labels(600, gen)
    return encode(train, attribute, gen), train, encode(test, attribute, gen), test


@pytest.fixture(scope="module")
def colour_world() -> tuple[torch.Tensor, CellLabels, torch.Tensor, CellLabels]:
    return _encoded_world("colour")


@pytest.fixture(scope="module")
def colour_set_world() -> tuple[torch.Tensor, CellLabels, torch.Tensor, CellLabels]:
    return _encoded_world("colour", slots="random")


# ------------------------------------------------------------------------------------------------- scoring
def test_score_cells_on_a_hand_computed_case() -> None:
    # image 0: objects in cells 0 and 4; image 1: one object in cell 8 -> 3 occupied cells, 15 empty ones
    truth = _labels([{0: (1, 0, 0), 4: (2, 3, 1)}, {8: (0, 2, 1)}])
    occupied = torch.zeros(2, NUM_CELLS, dtype=torch.bool)
    occupied[0, 0] = occupied[0, 1] = True  # right on 1 of 3 occupied cells, wrong on 1 of 15 empty ones
    attributes = {
        "colour": torch.full((2, NUM_CELLS), 1),  # right on cell 0 only
        "shape": torch.tensor([[0, 9, 9, 9, 3, 9, 9, 9, 9], [9] * 8 + [2]]),  # right on all 3 (9s never read)
        "size": torch.zeros(2, NUM_CELLS, dtype=torch.long),  # right on cell 0 only
    }
    scores = score_cells(occupied, attributes, truth)
    assert scores["colour"] == pytest.approx(100 / 3)
    assert scores["shape"] == pytest.approx(100.0)
    assert scores["size"] == pytest.approx(100 / 3)
    assert scores["position"] == pytest.approx((100 / 3 + 100 * 14 / 15) / 2)


def test_majority_scores_are_the_constant_answer_of_train() -> None:
    train = _labels([{0: (2, 1, 1), 1: (2, 0, 1)}, {3: (4, 1, 0)}])  # majorities: colour 2, shape 1, size 1
    test = _labels([{0: (2, 1, 0), 5: (3, 1, 0)}, {2: (2, 0, 1), 7: (2, 3, 0)}])
    chance = majority_scores(train, test)
    assert chance == pytest.approx({"colour": 75.0, "shape": 50.0, "size": 25.0, "position": 50.0})


def test_cell_labels_reject_inconsistent_empty_cells() -> None:
    colour = torch.full((1, NUM_CELLS), EMPTY)
    colour[0, 3] = 1
    with pytest.raises(ValueError, match="shape: empty cells"):
        CellLabels(colour=colour, shape=torch.full((1, NUM_CELLS), EMPTY), size=colour.clone())
    with pytest.raises(ValueError, match=r"colour: values must be in \[-1, 5\]"):
        CellLabels(colour=colour * 7, shape=colour.clone(), size=colour.clone())


# --------------------------------------------------------------------------------------- synthetic features
@pytest.mark.parametrize("attribute", SCORES)
def test_linear_probe_reads_an_encoded_attribute_and_no_other(attribute: str) -> None:
    train_x, train, test_x, test = _encoded_world(attribute)
    result = fit_probe(train_x, train, test_x, test, seed=0, steps=100, kind="linear")
    assert result[attribute] > 95, result
    # the other attributes are not in the features: the probe must not find them (an attribute's directions
    # do reveal the objects' cells, so position is left out of that check)
    for name in ATTRIBUTES:
        if name != attribute:
            assert abs(result[name] - result["chance"][name]) < 6, (name, result)
    assert result["train_images"] == result["test_images"] == 600
    assert result["test_objects"] == int(test.occupied.sum())
    assert result["probe"]["kind"] == "linear" and result["probe"]["input_dim"] == 128


@pytest.mark.parametrize("attribute", SCORES)
def test_attentive_probe_reads_an_attribute_in_a_random_token_slot(attribute: str) -> None:
    train_x, train, test_x, test = _encoded_world(attribute, slots="random")
    result = fit_probe(train_x, train, test_x, test, seed=0, steps=100)
    assert result["probe"]["kind"] == "attentive", result["probe"]  # the default
    assert result[attribute] > 95, result
    # the other attributes are not in the features (position is: every object's token carries its cell)
    for name in ATTRIBUTES:
        if name != attribute:
            assert abs(result[name] - result["chance"][name]) < 6, (name, result)
    assert result["probe"] | {"final_train_loss": None} == {
        "kind": "attentive",
        "weight_decay": 1e-3,
        "steps": 100,
        "seed": 0,
        "num_heads": 1,
        "lr": 1e-2,
        "input_dim": 32,
        "final_train_loss": None,
    }


def test_linear_probe_misses_an_attribute_in_a_random_token_slot(colour_set_world) -> None:
    # why the attentive probe is the default: fixed slot weights cannot tell which token holds which cell
    train_x, train, test_x, test = colour_set_world
    result = fit_probe(train_x, train, test_x, test, seed=0, kind="linear")
    assert result["colour"] < 60 and result["train_accuracy"]["colour"] > 95, result


@pytest.mark.parametrize("kind", ["attentive", "linear"])
def test_probe_on_noise_scores_at_chance(kind: str) -> None:
    gen = torch.Generator().manual_seed(1)
    train, test = _random_labels(600, gen), _random_labels(600, gen)
    train_x, test_x = torch.randn(600, 8, 32, generator=gen), torch.randn(600, 8, 32, generator=gen)
    result = fit_probe(train_x, train, test_x, test, seed=0, steps=100, kind=kind)
    assert result["chance"]["position"] == 50.0
    for name in SCORES:
        assert abs(result[name] - result["chance"][name]) < 5, (name, result)
    if kind == "linear":  # ... although it fits its training noise (the attentive probe has 10x fewer weights)
        assert result["train_accuracy"]["colour"] > result["colour"] + 20, result


@pytest.mark.parametrize("kind", ["attentive", "linear"])  # (the MLP is seeded and fitted like the attentive probe)
def test_probe_is_deterministic(kind: str, colour_set_world) -> None:
    train_x, train, test_x, test = colour_set_world
    runs = [fit_probe(train_x[:100], train.head(100), test_x, test, seed=s, steps=20, kind=kind) for s in (3, 3, 4)]
    for run in runs:
        run.pop("seconds")
    assert runs[0] == runs[1]
    if kind != "linear":  # the linear probe starts at zero: its seed changes nothing
        assert runs[0]["probe"]["final_train_loss"] != runs[2]["probe"]["final_train_loss"]


@pytest.mark.parametrize("num_heads", [1, 4])
def test_attentive_probe_is_attention_pooling_then_linear(num_heads: int) -> None:
    """The probe's folded computation against the textbook one: keys and values of every token, per-head
    softmax of the cell queries against the keys, pooled values, then the linear heads."""
    torch.manual_seed(0)
    probe = AttentiveProbe(32, num_heads)
    with torch.no_grad():
        probe.queries.normal_()  # away from the near-uniform start, so the attention matters
    tokens = torch.randn(5, 7, 32)
    n, q, d, h = 5, 7, 32, num_heads
    keys = probe.key(tokens).view(n, q, h, d // h).transpose(1, 2)  # (n, h, q, d/h)
    values = probe.value(tokens).view(n, q, h, d // h).transpose(1, 2)
    queries = probe.queries.view(NUM_CELLS, h, d // h).transpose(0, 1)  # (h, 9, d/h)
    attention = torch.softmax(queries @ keys.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)  # (n, h, 9, q)
    pooled = (attention @ values).transpose(1, 2).reshape(n, NUM_CELLS, d)  # one d-vector per cell
    occupied = (pooled * probe.occupancy.weight).sum(-1) + probe.occupancy.bias  # cell c's row reads cell c
    expected = torch.cat([occupied.unsqueeze(-1), probe.attributes(pooled)], dim=-1).reshape(n, -1)
    torch.testing.assert_close(probe(tokens), expected)


def test_mlp_probe_option(colour_world) -> None:
    train_x, train, test_x, test = colour_world
    result = fit_probe(train_x, train, test_x, test, seed=0, steps=200, kind="mlp", hidden=128, lr=1e-2)
    # less sample-efficient than the linear probe on linearly encoded features (it fits its train set fully)
    assert result["colour"] > 90, result
    assert abs(result["shape"] - result["chance"]["shape"]) < 6, result
    assert result["probe"] | {"final_train_loss": None} == {
        "kind": "mlp",
        "weight_decay": 0.01,
        "steps": 200,
        "seed": 0,
        "hidden": 128,
        "lr": 1e-2,
        "input_dim": 128,
        "final_train_loss": None,
    }


def test_fit_probe_errors_name_every_problem(colour_world) -> None:
    train_x, train, test_x, test = colour_world
    with pytest.raises(ValueError) as err:
        fit_probe(train_x[:10], train, test_x, test, kind="svm")
    assert "train_features has 10 rows but train_labels 600 images" in str(err.value)
    assert "kind='svm'" in str(err.value)
    with pytest.raises(ValueError, match="both must come from the same VPG"):
        fit_probe(train_x, train, test_x[:, :2], test, kind="linear")
    with pytest.raises(ValueError) as err:
        fit_probe(train_x.flatten(1), train, test_x, test, num_heads=3)
    assert "the attentive probe reads a set of tokens (n, q, d), got shape (600, 128)" in str(err.value)
    with pytest.raises(ValueError, match="num_heads=3 must divide the token width 32"):
        fit_probe(train_x, train, test_x, test, num_heads=3)


# ------------------------------------------------------------------------------------------- world labels
def test_world_labels_match_the_scenes_and_the_pictures(micro_world: Path) -> None:
    scenes = {
        s["image_id"]: s for s in json.loads((micro_world / ANNOTATIONS_DIR / SCENES_FILE).read_text())["scenes"]
    }
    for split in ("train", "test"):
        labels = world_labels(micro_world, split)
        coco = json.loads(world_files(micro_world, split)["captions"].read_text())
        assert labels.image_ids == tuple(sorted((str(im["id"]) for im in coco["images"]), key=int))
        assert len(labels) == len(coco["images"])
        for i, image_id in enumerate(labels.image_ids):
            scene = scenes[int(image_id)]
            assert scene["split"] == split
            assert int(labels.occupied[i].sum()) == len(scene["objects"])
            for obj in scene["objects"]:
                cell = obj["row"] * 3 + obj["col"]
                got = {name: ATTRIBUTES[name][int(getattr(labels, name)[i, cell])] for name in ATTRIBUTES}
                assert got == {"colour": obj["color"], "shape": obj["shape"], "size": obj["size"]}, (image_id, obj)
            # and the picture: saturated pixels (the objects' fills) lie in exactly the occupied cells, in the
            # labelled colour
            pixels = np.asarray(Image.open(labels.image_paths[i]).convert("RGB"), dtype=np.int16)
            side = pixels.shape[0] // 3
            for cell in range(NUM_CELLS):
                block = pixels[(cell // 3) * side : (cell // 3 + 1) * side, (cell % 3) * side : (cell % 3 + 1) * side]
                saturated = block.reshape(-1, 3)[np.ptp(block.reshape(-1, 3), axis=1) > 80]
                assert (len(saturated) > 3) == bool(labels.occupied[i, cell]), (image_id, cell)
                if len(saturated) > 3:
                    palette = np.array(list(COLORS.values()))
                    nearest = np.abs(saturated.mean(0) - palette).sum(1).argmin()
                    assert nearest == labels.colour[i, cell], (image_id, cell)


def test_world_labels_refuse_a_scenes_file_of_another_world(micro_world: Path, tmp_path: Path) -> None:
    shutil.copytree(micro_world / ANNOTATIONS_DIR, tmp_path / ANNOTATIONS_DIR)
    scenes_path = tmp_path / ANNOTATIONS_DIR / SCENES_FILE
    data = json.loads(scenes_path.read_text())
    dropped = next(s["image_id"] for s in data["scenes"] if s["split"] == "test")
    data["scenes"] = [s for s in data["scenes"] if s["image_id"] != dropped]
    scenes_path.write_text(json.dumps(data))
    world_labels(tmp_path, "train")  # the train images all still have their scene
    with pytest.raises(ValueError, match=rf"captions_test.json and .*scenes.json disagree: images \['{dropped}'\]"):
        world_labels(tmp_path, "test")


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def micro_zoo(tmp_path_factory: pytest.TempPathFactory) -> ZooPaths:
    return build_zoo(tmp_path_factory.mktemp("probe_zoo"), "micro", seed=0, progress=quiet)


def test_probe_vpg_end_to_end_on_the_micro_zoo(micro_zoo: ZooPaths, micro_world: Path) -> None:
    result = probe_vpg(micro_zoo.blip2_dir, micro_world, seed=0, max_train_images=20, steps=20)
    assert set(result) == {*SCORES, "chance", "train_accuracy", *COUNT_KEYS, "probe", "linear", "seconds"}
    assert result["probe"]["kind"] == "attentive" and result["probe"]["steps"] == 20
    assert set(result["linear"]) == set(SCORES)
    for group in (result, result["chance"], result["train_accuracy"], result["linear"]):
        for name in SCORES:
            assert 0 <= group[name] <= 100 and group[name] == round(group[name], 2), (name, group)
    assert result["train_images"] == 20 and result["test_images"] == 4
    assert result["test_objects"] == int(world_labels(micro_world, "test").occupied.sum())
    assert result["probe"]["vpg"] == str(micro_zoo.blip2_dir)
    assert result["probe"]["features"] == [4, 32]  # the micro preset's 4 queries of width 32
    assert result["seconds"] > 0
    linear = probe_vpg(micro_zoo.blip2_dir, micro_world, max_train_images=20, kind="linear", also_linear=False)
    assert "linear" not in linear and linear["probe"]["kind"] == "linear", linear


def test_vpg_features_are_the_vpg_forward_in_eval_mode(micro_zoo: ZooPaths, micro_world: Path) -> None:
    from vict.models.vpg import VisualPromptGenerator

    vpg = VisualPromptGenerator.from_pretrained(micro_zoo.blip2_dir)
    vpg.train()
    paths = world_labels(micro_world, "test").image_paths
    images = [Image.open(p).convert("RGB") for p in paths]
    features = vpg_features(vpg, images, batch_size=3)
    assert features.shape == (len(images), 4, 32) and features.dtype == torch.float32
    assert vpg.training  # restored
    vpg.eval()
    with torch.no_grad():
        expected = vpg(vpg.preprocess(images))
    torch.testing.assert_close(features, expected)
