"""A probe of the frozen VPG: how much its query outputs know about each object's colour, shape, size and cell.

The VPG (vision tower + Q-Former, frozen, ``vict.models.vpg.VisualPromptGenerator``) turns every image into
``(q, d)`` query outputs, the visual prompt. A probe is fitted on the query outputs of the train-split images
and scored on held-out (test-split) images:

1. ``vpg_features``: ``images -> (n, q, d)`` query outputs, no grad, eval mode;
2. ``world_labels``: the world's scenes as per-cell labels ``(n, 9)`` (colour, shape, size; -1 on empty cells);
3. ``fit_probe``: standardise with train statistics, fit the probe's heads (per cell: occupancy, colour, shape,
   size) on the train images, score on test;
4. ``probe_vpg``: all of the above for a BLIP-2 directory and a world folder; its result is the quickstart's
   ``report.json`` entry ``zoo_quality.probe``, with the linear probe's scores beside it (``linear``).

Probe kinds (``fit_probe(kind=...)``):
- ``attentive`` (default), the standard probe of token-set features (attentive probing, as in MAE and V-JEPA
  evaluations; ``AttentiveProbe``): 9 learnt cell queries, one per grid cell, cross-attend over the ``q``
  tokens (one attention layer with learnt key and value projections over layer-normed tokens), and linear
  heads read each cell's pooled ``d``-vector. It has no hidden layer (attention pooling + linear), so it stays
  a probe: it chooses *where* to read, it does not compute new features. The default because the Q-Former's
  outputs are a set: which query slot carries which cell changes from image to image, so fixed weights per
  slot read them badly (on a default-size zoo with 800 train images the linear probe scored 80% colour at
  100% train accuracy, the attentive probe 99%). ``probe_vpg`` reports the linear probe's scores beside it.
- ``linear``: the ``(n, q*d)`` flattened outputs to every head (L2-regularised logistic regression per head
  and cell, full-batch L-BFGS); it reads each query slot with its own fixed weights.
- ``mlp``: the flattened outputs through one hidden layer shared by the heads (a non-linear probe).

Scores (percent, on the test set):
- ``colour``, ``shape``, ``size``: accuracy over the test objects, i.e. over the occupied cells, of the
  attribute head of the object's own (true) cell. It asks "what colour is the object in the top-left cell?",
  so it measures attribute knowledge separately from localisation.
- ``position``: balanced per-cell occupancy accuracy: every (image, cell) pair is classified occupied/empty
  and the score is the mean of the accuracy on occupied cells and the accuracy on empty cells (pooled over
  the 9 cells and all test images). Any constant answer (e.g. "always empty", right on ~72% of cells) scores
  50%, so chance is 50% whatever the object density. When the test set has only one kind of cell, the score is
  the accuracy on that kind.

``chance`` is the same score of the train set's majority class (a constant answer), ``train_accuracy`` the
probe's score on its own training images (a large gap to the test score shows overfitting).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from vict.data.world.layout import ANNOTATIONS_DIR, SCENES_FILE, world_files
from vict.models.vpg import VisualPromptGenerator
from vict.zoo.stream import ATTRIBUTES, NUM_CELLS

SCENE_KEYS: dict[str, str] = {"colour": "color", "shape": "shape", "size": "size"}
"""The attribute's key in ``scenes.json`` objects."""
SCORES: tuple[str, ...] = (*ATTRIBUTES, "position")
PROBE_KINDS: tuple[str, ...] = ("attentive", "linear", "mlp")
"""``fit_probe``'s kinds; the first is the default."""
EMPTY = -1
"""Label of every attribute on an empty cell."""


@dataclass(frozen=True)
class CellLabels:
    """Ground truth of ``n`` images, per grid cell.

    Attributes:
        colour: ``(n, 9)`` long, index in ``ATTRIBUTES["colour"]``, ``EMPTY`` (-1) on empty cells.
        shape: ``(n, 9)`` long, likewise.
        size: ``(n, 9)`` long, likewise.
        image_ids: the images' ids, in row order (``None`` for synthetic labels).
        image_paths: the images' files, in row order (``None`` for synthetic labels).
    """

    colour: Tensor
    shape: Tensor
    size: Tensor
    image_ids: tuple[str, ...] | None = None
    image_paths: tuple[Path, ...] | None = None

    def __post_init__(self) -> None:
        problems = []
        n = self.colour.shape[0] if self.colour.ndim == 2 else -1
        for name, classes in ATTRIBUTES.items():
            t = getattr(self, name)
            if t.dtype != torch.long or t.shape != (n, NUM_CELLS):
                problems.append(
                    f"{name}: expected a long tensor of shape (n, {NUM_CELLS}), got {t.dtype} {tuple(t.shape)}"
                )
            elif t.numel() and (t.min() < EMPTY or t.max() >= len(classes)):
                problems.append(f"{name}: values must be in [{EMPTY}, {len(classes) - 1}], got {t.min()}..{t.max()}")
        if not problems:
            for name in ("shape", "size"):
                if not torch.equal(getattr(self, name) == EMPTY, self.colour == EMPTY):
                    problems.append(f"{name}: empty cells (-1) differ from colour's; an object has every attribute")
        for name in ("image_ids", "image_paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                problems.append(f"{name}: {len(value)} entries for {n} images")
        if problems:
            raise ValueError("invalid CellLabels:\n  " + "\n  ".join(problems))

    def __len__(self) -> int:
        return self.colour.shape[0]

    @property
    def occupied(self) -> Tensor:
        """``(n, 9)`` bool: the cell holds an object."""
        return self.colour != EMPTY

    def head(self, n: int) -> CellLabels:
        """The first ``n`` images."""
        return CellLabels(
            colour=self.colour[:n],
            shape=self.shape[:n],
            size=self.size[:n],
            image_ids=None if self.image_ids is None else self.image_ids[:n],
            image_paths=None if self.image_paths is None else self.image_paths[:n],
        )


# ---------------------------------------------------------------------------------------------------- labels
def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the probe needs {what}; write the world with `vict data world`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); regenerate the world with `vict data world`") from err


def _split_images(world_dir: Path, split: str) -> tuple[Path, list[tuple[str, Path]]]:
    """The captions file of ``split`` and its images ``(id, path)``, sorted by id (numerically when numbers)."""
    files = world_files(world_dir, split, check_split=False)
    coco = _read_json(files["captions"], f"the COCO captions of split {split!r}")
    records = coco.get("images") if isinstance(coco, dict) else None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and {"id", "file_name"} <= r.keys() for r in records
    ):
        raise ValueError(f"{files['captions']}: expected a COCO object whose 'images' each have 'id' and 'file_name'")
    images = sorted(
        ((str(r["id"]), files["images_dir"] / r["file_name"]) for r in records), key=lambda r: (len(r[0]), r[0])
    )
    return files["captions"], images


def world_labels(world_dir: str | Path, split: str) -> CellLabels:
    """Per-cell labels of ``split``'s images, in the order of the split's COCO captions file sorted by image id
    (the order of ``vict.data.load_world_split``), from the world's ``annotations/scenes.json``.

    Raises a ``ValueError`` naming both files when an image of the captions file has no scene (or a scene of
    another split), or a scene holds an unknown attribute value or two objects in one cell.
    """
    world_dir = Path(world_dir)
    captions_path, images = _split_images(world_dir, split)
    if not images:
        raise ValueError(f"{captions_path}: split {split!r} has no images; generate a world with more images")
    scenes_path = world_dir / ANNOTATIONS_DIR / SCENES_FILE
    data = _read_json(scenes_path, "the ground-truth scenes")
    try:
        scenes = {str(s["image_id"]): s for s in data["scenes"]}
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{scenes_path}: expected {{'scenes': [{{'image_id', 'objects', ...}}]}} ({err!r}); regenerate the world"
        ) from err
    missing = [i for i, _ in images if i not in scenes]
    other = [i for i, _ in images if i in scenes and scenes[i].get("split", split) != split]
    if missing or other:
        raise ValueError(
            f"{captions_path} and {scenes_path} disagree: images {missing[:5]} (of {len(missing)}) of the captions "
            f"file have no scene, images {other[:5]} (of {len(other)}) have a scene of another split; the files "
            "come from different worlds: regenerate the world with `vict data world --out DIR --overwrite`"
        )
    labels = {name: torch.full((len(images), NUM_CELLS), EMPTY, dtype=torch.long) for name in ATTRIBUTES}
    problems = []
    for i, (image_id, _) in enumerate(images):
        for obj in scenes[image_id]["objects"]:
            cell = obj["row"] * 3 + obj["col"]
            if labels["colour"][i, cell] != EMPTY:
                problems.append(f"image {image_id}: two objects in cell {cell}")
            for name, classes in ATTRIBUTES.items():
                value = obj[SCENE_KEYS[name]]
                if value not in classes:
                    problems.append(f"image {image_id}: {name} {value!r} is not one of {list(classes)}")
                else:
                    labels[name][i, cell] = classes.index(value)
    if problems:
        raise ValueError(f"{scenes_path}: " + "; ".join(problems[:5]))
    return CellLabels(**labels, image_ids=tuple(i for i, _ in images), image_paths=tuple(p for _, p in images))


# -------------------------------------------------------------------------------------------------- features
@torch.no_grad()
def vpg_features(vpg: VisualPromptGenerator, images: Sequence[Image.Image], batch_size: int = 64) -> Tensor:
    """The frozen VPG's query outputs ``(n, q, d)`` (float32, CPU) for ``n`` PIL images, preprocessed by the
    VPG's own image processor (the checkpoint's size, mean and std); eval mode, no grad."""
    if not images:
        raise ValueError("vpg_features: no images")
    was_training = vpg.training
    vpg.eval()
    device = vpg.query_tokens.device
    out = []
    try:
        for start in range(0, len(images), batch_size):
            pixel_values = vpg.preprocess(list(images[start : start + batch_size])).to(device)
            out.append(vpg(pixel_values).float().cpu())
    finally:
        vpg.train(was_training)
    return torch.cat(out)


def _open_images(paths: Sequence[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} is missing; regenerate the world with `vict data world`")
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    return images


# --------------------------------------------------------------------------------------------------- scoring
def _percent(hits: Tensor, total: int) -> float:
    return 100.0 * float(hits.sum()) / total if total else float("nan")


def score_cells(occupied: Tensor, attributes: dict[str, Tensor], labels: CellLabels) -> dict[str, float]:
    """The four scores (percent, unrounded) of predictions against ``labels``.

    Args:
        occupied: ``(n, 9)`` bool, the predicted occupancy of every cell.
        attributes: ``{"colour", "shape", "size"}`` -> ``(n, 9)`` long, the predicted class of every cell
            (read only on the truly occupied cells).
        labels: the truth.

    Returns:
        ``colour``/``shape``/``size``: accuracy over the occupied cells; ``position``: the mean of the
        occupancy accuracy on occupied cells and on empty cells (the accuracy on the one kind present if the
        other is absent).
    """
    truth = labels.occupied
    scores = {
        name: _percent(attributes[name][truth] == getattr(labels, name)[truth], int(truth.sum()))
        for name in ATTRIBUTES
    }
    per_kind = [_percent(occupied[truth == kind] == kind, int((truth == kind).sum())) for kind in (True, False)]
    present = [s for s, kind in zip(per_kind, (True, False)) if (truth == kind).any()]
    scores["position"] = sum(present) / len(present) if present else float("nan")
    return scores


def _round(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in scores.items()}


def majority_scores(train: CellLabels, test: CellLabels) -> dict[str, float]:
    """The scores (percent, unrounded) of answering the train set's majority class everywhere on ``test``:
    the most frequent colour/shape/size among the train objects, and occupancy "empty" or "occupied" (a
    constant answer, hence 50% position whenever the test set has both kinds of cells)."""
    n = len(test)
    attributes = {}
    for name, classes in ATTRIBUTES.items():
        values = getattr(train, name)[train.occupied]
        majority = int(torch.bincount(values, minlength=len(classes)).argmax()) if values.numel() else 0
        attributes[name] = torch.full((n, NUM_CELLS), majority, dtype=torch.long)
    occupied_majority = bool(train.occupied.float().mean() > 0.5)
    occupied = torch.full((n, NUM_CELLS), occupied_majority, dtype=torch.bool)
    return score_cells(occupied, attributes, test)


# ----------------------------------------------------------------------------------------------------- probe
_OUTPUTS: dict[str, int] = {"occupied": 1, **{name: len(classes) for name, classes in ATTRIBUTES.items()}}
"""Logits per cell of each head."""
_PER_CELL = sum(_OUTPUTS.values())


def _split_logits(logits: Tensor) -> dict[str, Tensor]:
    """``(n, 9 * 13)`` -> ``occupied (n, 9)`` and ``colour (n, 9, 6)``, ``shape (n, 9, 4)``, ``size (n, 9, 2)``."""
    parts = torch.split(logits.view(logits.shape[0], NUM_CELLS, _PER_CELL), list(_OUTPUTS.values()), dim=-1)
    out = dict(zip(_OUTPUTS, parts))
    out["occupied"] = out["occupied"].squeeze(-1)
    return out


def _loss(logits: Tensor, labels: CellLabels) -> Tensor:
    """Sum over the heads: class-balanced occupancy BCE (mean over occupied cells + mean over empty cells, /2,
    matching the balanced ``position`` score) and cross-entropy over the objects for each attribute."""
    heads = _split_logits(logits)
    truth = labels.occupied
    bce = F.binary_cross_entropy_with_logits(heads["occupied"], truth.float(), reduction="none")
    kinds = [bce[truth == kind].mean() for kind in (True, False) if (truth == kind).any()]
    loss = sum(kinds) / len(kinds)
    for name in ATTRIBUTES:
        loss = loss + F.cross_entropy(heads[name][truth], getattr(labels, name)[truth])
    return loss


def _predict(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    with torch.no_grad():
        heads = _split_logits(model(x))
    return heads["occupied"] > 0, {name: heads[name].argmax(-1) for name in ATTRIBUTES}


class AttentiveProbe(nn.Module):
    """Attention pooling + linear heads: 9 learnt cell queries read a set of ``q`` tokens of width ``d``.

    Per cell ``c`` (per head, on its slice of the width): ``a_c = softmax_q(w_c . W_k x_q / sqrt(d_head))``
    over the tokens; the cell's ``d``-vector ``v_c = sum_q a_cq (W_v x_q + b_v)`` (the heads' slices
    concatenated); its logits are linear in ``v_c``: occupancy ``o_c . v_c + b_c`` with one row per cell, and
    colour, shape and size ``A v_c + b_A`` with one ``A`` shared by the cells. No hidden layer: the probe
    chooses where to read, then reads linearly.

    Why occupancy has a row per cell: the softmax picks some token even for an empty cell, and only a read
    specific to cell ``c`` can tell its own object's token from another object's (on synthetic token sets like
    the tests' a shared occupancy row stayed at ~88% balanced train accuracy, per-cell rows reached 99%). An
    attribute means the same in every cell, and per-cell attribute heads scored lower on held-out images.

    ``fit_probe`` feeds it standardised tokens, layer-normed without affine (a scale and shift would fold into
    ``W_k`` and ``W_v``). The key has no bias: ``w_c . b_k`` is the same for every token, so the softmax drops it.

    Args:
        dim: the tokens' width ``d``.
        num_heads: attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AttentiveProbe: num_heads={num_heads} must divide the token width {dim}")
        self.num_heads = num_heads
        self.queries = nn.Parameter(0.02 * torch.randn(NUM_CELLS, dim))  # near zero: starts as mean pooling
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.occupancy = nn.Linear(dim, NUM_CELLS)  # row c reads cell c's pooled vector only
        self.attributes = nn.Linear(dim, _PER_CELL - 1)  # colour, shape, size: shared by the cells

    def forward(self, tokens: Tensor) -> Tensor:
        """``(n, q, d)`` tokens -> ``(n, 9 * 13)`` logits (per cell: occupancy, colour 6, shape 4, size 2)."""
        n, q, d = tokens.shape
        h, dh = self.num_heads, d // self.num_heads
        # The textbook order (every token's key and value, pool, heads) costs 2 q d^2 per image. Folding the
        # projections into the queries and the heads first gives the same logits for q d (9 + 21) per head:
        # w . (W_k x) = (W_k^T w) . x, and H (sum_q a_q (W_v x_q + b_v)) = sum_q a_q (H W_v) x_q + H b_v as the
        # attention weights sum to 1 (``test_attentive_probe_is_attention_pooling_then_linear`` checks it).
        keys = self.queries.view(NUM_CELLS, h, dh).transpose(0, 1) @ self.key.weight.view(h, dh, d) / dh**0.5
        heads = torch.cat([self.occupancy.weight, self.attributes.weight])  # (9 + 12, d)
        reads = heads.view(-1, h, dh).transpose(0, 1) @ self.value.weight.view(h, dh, d)  # (h, 21, d)
        projected = tokens @ torch.cat([keys, reads], dim=1).permute(2, 0, 1).reshape(d, -1)  # (n, q, h * (9 + 21))
        scores, occupancy, attributes = projected.view(n, q, h, -1).split([NUM_CELLS, NUM_CELLS, _PER_CELL - 1], -1)
        attention = scores.softmax(dim=1)  # over the tokens
        occupied = (attention * occupancy).sum((1, 2)) + self.occupancy(self.value.bias)  # cell c reads cell c
        attributes = torch.einsum("nqhc,nqho->nco", attention, attributes) + self.attributes(self.value.bias)
        return torch.cat([occupied.unsqueeze(-1), attributes], dim=-1).reshape(n, NUM_CELLS * _PER_CELL)


_DEFAULTS: dict[str, dict[str, float]] = {
    "attentive": {"steps": 300, "weight_decay": 1e-3, "lr": 1e-2},
    "linear": {"steps": 100, "weight_decay": 1e-2},
    "mlp": {"steps": 100, "weight_decay": 1e-2, "lr": 1e-3},
}
"""Each kind's ``fit_probe`` settings when left ``None``. The attentive probe's L2 falls on products of two
matrices (queries and keys, head and values), which shrinks the map they make faster than the same coefficient
on one matrix: 1e-2 left it under-fitted (train accuracy no higher than test), 1e-3 fits it."""


def _build(kind: str, dim: int, hidden: int, num_heads: int) -> nn.Module:
    out = NUM_CELLS * _PER_CELL
    if kind == "attentive":
        return AttentiveProbe(dim, num_heads)
    if kind == "linear":
        model = nn.Linear(dim, out)
        # zero start: the L2-regularised logistic loss is strictly convex, so L-BFGS reaches the same optimum
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


def _check_inputs(features: Tensor, labels: CellLabels, which: str, kind: str) -> list[str]:
    problems = []
    if kind == "attentive" and features.ndim != 3:
        problems.append(
            f"{which}_features: the attentive probe reads a set of tokens (n, q, d), got shape "
            f"{tuple(features.shape)}; pass the VPG's query outputs unflattened or use kind='linear'"
        )
    elif features.ndim < 2:
        problems.append(f"{which}_features: expected (n, q, d) or (n, dim), got shape {tuple(features.shape)}")
    if features.ndim and features.shape[0] != len(labels):
        problems.append(f"{which}_features has {features.shape[0]} rows but {which}_labels {len(labels)} images")
    if len(labels) == 0:
        problems.append(f"{which}: no images")
    return problems


def _standardise(train: Tensor, test: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Both minus the train mean, over the train std (a zero-variance feature stays at 0), reduced over ``dims``."""
    train, test = train.double(), test.double()
    mean, std = train.mean(dims), train.std(dims, unbiased=False).clamp_min(1e-6)
    return ((train - mean) / std).float(), ((test - mean) / std).float()


def fit_probe(
    train_features: Tensor,
    train_labels: CellLabels,
    test_features: Tensor,
    test_labels: CellLabels,
    *,
    seed: int = 0,
    kind: str = "attentive",
    steps: int | None = None,
    weight_decay: float | None = None,
    lr: float | None = None,
    hidden: int = 256,
    num_heads: int = 1,
) -> dict[str, Any]:
    """Fit a probe on fixed features and score it on held-out ones.

    For each of the 9 cells the probe has an occupancy logit and colour (6), shape (4) and size (2) logits; the
    loss is the sum of the class-balanced occupancy BCE and the attributes' cross-entropies over the train
    objects, plus ``weight_decay / 2 * ||W||^2`` on the weight matrices (and the attentive probe's queries; not
    the biases). The attentive probe standardises every feature dim over the train images and tokens, keeping
    the ``(n, q, d)`` tokens, then layer-norms each token; the linear and MLP probes flatten to ``(n, q*d)``
    and standardise each of the ``q*d`` features over the train images.

    Args:
        train_features: ``(n_train, q, d)`` float (or, for ``linear`` and ``mlp``, already flat ``(n_train, dim)``).
        train_labels: their per-cell labels.
        test_features: ``(n_test, q, d)``, same ``d`` (attentive) or ``q*d`` (linear, MLP) as train.
        test_labels: their per-cell labels.
        seed: seed of the attentive and MLP probes' initialisation (the linear probe starts at zero and its
            convex loss has a unique optimum, so it does not depend on the seed).
        kind: ``"attentive"`` (default): ``AttentiveProbe``, full-batch AdamW; ``"linear"``: one linear layer
            from the flat features to all heads, i.e. L2-regularised logistic regression per head and cell,
            solved by full-batch L-BFGS with strong-Wolfe line search; ``"mlp"``: one hidden layer of ``hidden``
            GELU units shared by the heads, full-batch AdamW (a non-linear probe reads more; report which).
        steps: AdamW steps (attentive, MLP) or L-BFGS iterations (linear); ``None``: the kind's default
            (``_DEFAULTS``: 300 attentive, 100 linear and MLP).
        weight_decay: the L2 coefficient on the (standardised-input) weights; ``None``: 1e-3 attentive, 1e-2
            linear and MLP.
        lr: AdamW learning rate (attentive, MLP); ``None``: 1e-2 attentive, 1e-3 MLP.
        hidden: MLP width.
        num_heads: the attentive probe's attention heads.

    Returns:
        ``colour``, ``shape``, ``size``, ``position`` (test percent, 2 decimals; see the module doc),
        ``chance`` and ``train_accuracy`` (the same four keys), ``train_images``, ``test_images``,
        ``test_objects``, ``probe`` (kind and settings; ``input_dim`` is ``d`` for the attentive probe, ``q*d``
        for the others) and ``seconds`` (fit and scoring time).
    """
    t0 = time.perf_counter()
    problems = []
    if kind not in PROBE_KINDS:
        problems.append(f"kind={kind!r}: use one of {list(PROBE_KINDS)}")
    problems += _check_inputs(train_features, train_labels, "train", kind)
    problems += _check_inputs(test_features, test_labels, "test", kind)
    defaults = _DEFAULTS.get(kind, {})
    steps = int(defaults.get("steps", 1)) if steps is None else steps
    weight_decay = defaults.get("weight_decay", 0.0) if weight_decay is None else weight_decay
    lr = defaults.get("lr", 1.0) if lr is None else lr
    if steps < 1 or weight_decay < 0 or hidden < 1 or lr <= 0 or num_heads < 1:
        problems.append(
            f"steps={steps} >= 1, weight_decay={weight_decay} >= 0, lr={lr} > 0, hidden={hidden} >= 1, "
            f"num_heads={num_heads} >= 1"
        )
    if not problems:
        train_shape, test_shape = train_features.shape[1:], test_features.shape[1:]
        # the attentive probe reads any number of tokens of the same width; the others need the same flat size
        same = train_shape[-1] == test_shape[-1] if kind == "attentive" else train_shape.numel() == test_shape.numel()
        if not same:
            problems.append(
                f"train features are {tuple(train_shape)} per image but test features {tuple(test_shape)}: both "
                "must come from the same VPG"
            )
        if kind == "attentive" and train_shape[-1] % num_heads:
            problems.append(f"num_heads={num_heads} must divide the token width {train_shape[-1]}")
    if problems:
        raise ValueError("fit_probe:\n  " + "\n  ".join(problems))

    # 1. standardise with train statistics: per feature dim over images and tokens (attentive, which keeps the
    # token axis: the tokens are a set, so a dim means the same in every slot), per flat feature otherwise
    if kind == "attentive":
        x_train, x_test = _standardise(train_features, test_features, (0, 1))
        # then layer-norm every token, once (no affine: the probe's key and value projections absorb it)
        x_train, x_test = F.layer_norm(x_train, x_train.shape[-1:]), F.layer_norm(x_test, x_test.shape[-1:])
    else:
        x_train, x_test = _standardise(
            train_features.reshape(len(train_labels), -1), test_features.reshape(len(test_labels), -1), (0,)
        )

    # 2. fit
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(kind, x_train.shape[-1], hidden, num_heads)
    weights = [p for p in model.parameters() if p.ndim >= 2]

    def objective() -> Tensor:
        penalty = sum(w.pow(2).sum() for w in weights)
        return _loss(model(x_train), train_labels) + 0.5 * weight_decay * penalty

    if kind == "linear":
        optimizer = torch.optim.LBFGS(
            model.parameters(), lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        optimizer.step(closure)
    else:
        # the L2 term is in the loss (not AdamW's decoupled decay) so every kind minimises the same kind of objective
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        # the attentive probe's learning rate decays to 0 (cosine): at a constant 1e-2 its loss oscillated
        # after ~300 steps on the default zoo's features
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if kind == "attentive" else None
        for _ in range(steps):
            optimizer.zero_grad()
            objective().backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    final_loss = float(objective().detach())

    # 3. score
    test_scores = score_cells(*_predict(model, x_test), test_labels)
    train_scores = score_cells(*_predict(model, x_train), train_labels)
    settings: dict[str, Any] = {"kind": kind, "weight_decay": weight_decay, "steps": steps, "seed": seed}
    if kind == "mlp":
        settings |= {"hidden": hidden, "lr": lr}
    elif kind == "attentive":
        settings |= {"num_heads": num_heads, "lr": lr}
    settings |= {"input_dim": x_train.shape[-1], "final_train_loss": round(final_loss, 4)}
    return {
        **_round(test_scores),
        "chance": _round(majority_scores(train_labels, test_labels)),
        "train_accuracy": _round(train_scores),
        "train_images": len(train_labels),
        "test_images": len(test_labels),
        "test_objects": int(test_labels.occupied.sum()),
        "probe": settings,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def probe_vpg(
    blip2_dir_or_vpg: str | Path | VisualPromptGenerator,
    world_dir: str | Path,
    train_split: str = "train",
    test_split: str = "test",
    seed: int = 0,
    max_train_images: int | None = None,
    *,
    batch_size: int = 64,
    also_linear: bool = True,
    **probe: Any,
) -> dict[str, Any]:
    """Probe a frozen VPG on a world: ``fit_probe`` on ``train_split``'s query outputs, scored on
    ``test_split``'s.

    Args:
        blip2_dir_or_vpg: a Hugging Face BLIP-2 directory (e.g. ``ZooPaths.blip2_dir``; loaded by
            ``VisualPromptGenerator.from_pretrained`` without extra queries) or a loaded VPG (its extra
            queries, if any, are part of the features).
        world_dir: a world written by ``vict data world`` (captions, ``annotations/scenes.json``, images).
        train_split: split whose images train the probe.
        test_split: held-out split the scores are computed on.
        seed: the probe's seed.
        max_train_images: use only the first this many train images (by id); ``None`` for all.
        batch_size: images per VPG forward.
        also_linear: also fit the linear probe (its default settings) on the same features and add its four
            test scores under ``linear`` (the probe's own when ``kind="linear"``).
        **probe: ``fit_probe`` settings (``kind``, default ``"attentive"``, ``steps``, ``weight_decay``,
            ``lr``, ``hidden``, ``num_heads``).

    Returns:
        ``fit_probe``'s result (``colour``, ``shape``, ``size``, ``position``, ``chance``, ``train_accuracy``,
        ``train_images``, ``test_images``, ``test_objects``, ``probe``) with ``probe["vpg"]`` (the source) and
        ``probe["features"]`` (``[q, d]``), ``linear`` (``{colour, shape, size, position}``, with
        ``also_linear``), and ``seconds`` covering feature extraction and the fits.
    """
    t0 = time.perf_counter()
    if max_train_images is not None and max_train_images < 1:
        raise ValueError(f"max_train_images={max_train_images}: must be >= 1 or None (all train images)")
    if isinstance(blip2_dir_or_vpg, VisualPromptGenerator):
        vpg = blip2_dir_or_vpg
    else:
        vpg = VisualPromptGenerator.from_pretrained(blip2_dir_or_vpg)
    train = world_labels(world_dir, train_split)
    if max_train_images is not None:
        train = train.head(max_train_images)
    test = world_labels(world_dir, test_split)
    train_features = vpg_features(vpg, _open_images(train.image_paths), batch_size)
    test_features = vpg_features(vpg, _open_images(test.image_paths), batch_size)
    result = fit_probe(train_features, train, test_features, test, seed=seed, **probe)
    result["probe"] |= {"vpg": vpg.spec.source, "features": list(train_features.shape[1:])}
    if also_linear:
        linear = result
        if result["probe"]["kind"] != "linear":
            linear = fit_probe(train_features, train, test_features, test, seed=seed, kind="linear")
        result["linear"] = {name: linear[name] for name in SCORES}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
