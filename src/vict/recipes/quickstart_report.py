"""The report of ``vict quickstart``: its rows (from ``evaluate_model`` reports), ``report.md``, the GQA context
plot, and the aggregation of several seeds' reports into mean and standard deviation.

Every function here is pure (plain dicts in, plain dicts or text out), apart from the plot, which writes a file.
GQA context settings are read from ``vict.eval.splits.DEFAULT_SETTINGS`` at call time; a setting missing from an
evaluation report is ``None`` in every row built from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SOURCE_ROW = "blip2-source"
CAPTION_KEYS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
SETTING_TITLES: dict[str, str] = {
    "none": "no context",
    "caption": "gold caption",
    "self": "own caption",
    "qa": "given QA",
    "dense": "dense (oracle)",
    "distractor": "distractor",
    "text": "gold caption, no image",
}
"""Column titles of the GQA context settings (a setting without a title shows under its own name)."""
TABLE_TYPE_PREFIXES: tuple[str, ...] = ("structural/", "semantic/")
"""By-type rows of ``report.md`` (with ``binary`` and ``open``); ``detailed/*`` types are in ``report.json`` only."""


def gqa_settings() -> tuple[str, ...]:
    """The GQA context settings of an evaluation, in report order (``vict.eval.splits.DEFAULT_SETTINGS``)."""
    from vict.eval.splits import DEFAULT_SETTINGS

    return tuple(DEFAULT_SETTINGS)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


# ------------------------------------------------------------------------------------------------- rows
def caption_row(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The six caption metrics of one ``evaluate_model`` report on pycocoevalcap's scale (0-1; CIDEr may exceed 1),
    to four decimals; ``None`` where unavailable. The markdown table shows them x100."""
    cap = report.get("caption") or {}
    return {k: None if cap.get(k) is None else round(float(cap[k]), 4) for k in CAPTION_KEYS}


def gqa_row(report: Mapping[str, Any], settings: Sequence[str]) -> dict[str, float | None]:
    """Short-answer accuracy (percent, normalised rule) per context setting of one report."""
    gqa = report.get("gqa") or {}
    return {s: _pct(gqa[s]["vqa"]["accuracy"]) if s in gqa else None for s in settings}


def gqa_by_type_row(report: Mapping[str, Any], settings: Sequence[str]) -> dict[str, dict[str, float | None] | None]:
    """``{setting: {type: accuracy %}}`` of one report (types as ``evaluate_model`` names them:
    ``structural/verify``, ``semantic/attr``, ``detailed/<family>``, ``binary``, ``open``); ``None`` for a setting
    the report lacks or scored without types."""
    gqa = report.get("gqa") or {}
    out: dict[str, dict[str, float | None] | None] = {}
    for s in settings:
        by_type = (gqa.get(s) or {}).get("by_type")
        out[s] = None if by_type is None else {t: _pct(v.get("accuracy")) for t, v in by_type.items()}
    return out


def gqa_type_counts(reports: Sequence[Mapping[str, Any]], setting: str = "none") -> dict[str, int]:
    """Questions per GQA type (``{type: n}``) in ``setting`` of the first report that has them; ``{}`` if none."""
    for report in reports:
        by_type = ((report.get("gqa") or {}).get(setting) or {}).get("by_type")
        if by_type:
            return {t: int(v["count"]) for t, v in by_type.items()}
    return {}


def distractor_drop(row: Mapping[str, float | None]) -> float | None:
    """Accuracy with a distractor caption minus accuracy without context (points); ``None`` if either is missing."""
    none, distractor = row.get("none"), row.get("distractor")
    return None if none is None or distractor is None else round(distractor - none, 2)


# ------------------------------------------------------------------------------------------------- seeds
def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def aggregate(reports: Sequence[Any], path: str = "report") -> Any:
    """Mean and sample standard deviation over seeds of every number in structurally equal reports.

    Walks the reports together: dicts must have the same keys (else ``ValueError`` naming the path and the keys
    each report lacks) and recurse; numbers (int or float, not bool) become ``{"mean": m, "std": s}`` with the
    sample standard deviation (n - 1 in the denominator; ``None`` for a single report). ``None`` where a report
    has no value (an unavailable metric): all ``None`` stays ``None``; some ``None`` gives the mean and std of
    the others plus ``"n": count``. Anything else (strings, bools, lists) is kept when equal in every report and
    otherwise becomes ``{"per_seed": [values]}``.

    Args:
        reports: one report per seed (at least one), e.g. the ``report.json`` of each ``seed-<k>/``.
        path: the name of this level in error messages.
    """
    if not reports:
        raise ValueError(f"{path}: nothing to aggregate (no report)")
    if any(isinstance(r, Mapping) for r in reports):
        if not all(isinstance(r, Mapping) for r in reports):
            kinds = [type(r).__name__ for r in reports]
            raise ValueError(
                f"{path}: a dict in some reports but not in others ({kinds}); were they written by the same version?"
            )
        keys = list(reports[0])
        if any(set(r) != set(keys) for r in reports):
            every = set().union(*reports)
            lacks = {i: sorted(every - set(r)) for i, r in enumerate(reports) if every - set(r)}
            raise ValueError(
                f"{path}: the reports do not have the same keys; missing by report index: {lacks}. Aggregate only "
                "reports of the same preset and code version"
            )
        return {k: aggregate([r[k] for r in reports], f"{path}.{k}") for k in keys}
    values = [r for r in reports if r is not None]
    if values and all(_is_number(v) for v in values):
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        out: dict[str, Any] = {"mean": mean, "std": std}
        if len(values) < len(reports):
            out["n"] = len(values)
        return out
    if not values:
        return None
    if any(_is_number(v) for v in values):
        raise ValueError(f"{path}: a number in some reports and not in others ({list(reports)})")
    return reports[0] if all(r == reports[0] for r in reports) else {"per_seed": list(reports)}


SEED_INDEPENDENT_CONFIG: tuple[str, ...] = ("preset", "overrides", "world_images", "quickstart", "caption_metrics")
"""The parts of a seed's ``config`` that every seed shares (the rest, e.g. the zoo and training configs, is in
each seed's own report)."""


def _fill_types(by_type: Mapping[str, Any] | None, types: Sequence[str]) -> dict[str, Any] | None:
    return None if by_type is None else {t: by_type.get(t) for t in types}


def align_question_types(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reports with the same GQA question types everywhere: each seed's world draws its own questions, so a
    small test split may lack a type another seed has. A missing type gets ``None`` (no question, no accuracy) in
    ``gqa_by_type`` and ``gqa_type_counts``; every other key is left as it is."""
    types = sorted(
        {t for r in reports for t in r.get("gqa_type_counts") or {}}
        | {
            t
            for r in reports
            for row in (r.get("gqa_by_type") or {}).values()
            for acc in row.values()
            for t in acc or {}
        }
    )
    out = []
    for r in reports:
        r = dict(r)
        if "gqa_type_counts" in r:
            r["gqa_type_counts"] = _fill_types(r["gqa_type_counts"], types)
        if "gqa_by_type" in r:
            r["gqa_by_type"] = {
                row: {s: _fill_types(acc, types) for s, acc in per_setting.items()}
                for row, per_setting in r["gqa_by_type"].items()
            }
        out.append(r)
    return out


def aggregate_seeds(reports: Mapping[int, Mapping[str, Any]], paths: Mapping[int, str]) -> dict[str, Any]:
    """The report of a multi-seed quickstart: ``seeds``, ``per_seed`` (``{seed: path of its report.json}``), every
    number of the single-seed reports as ``{"mean", "std"}`` (``aggregate``, after ``align_question_types``), and
    a ``config`` holding only what the seeds share (``SEED_INDEPENDENT_CONFIG``) plus ``seeds``."""
    seeds = list(reports)
    first = reports[seeds[0]]
    body = aggregate(align_question_types([{k: v for k, v in r.items() if k != "config"} for r in reports.values()]))
    config = {k: first["config"][k] for k in SEED_INDEPENDENT_CONFIG if k in first["config"]}
    return {
        "seeds": seeds,
        "per_seed": {str(k): str(paths[k]) for k in seeds},
        **body,
        "config": config | {"seeds": seeds, "std": "sample standard deviation (n - 1) over the seeds"},
    }


# ---------------------------------------------------------------------------------------------- markdown
def _value(x: Any) -> float | None:
    """The number of a single-seed cell, or the mean of an aggregated one."""
    return x["mean"] if isinstance(x, Mapping) and "mean" in x else x


def cell(x: Any, digits: int = 2) -> Any:
    """A table cell: an aggregated ``{"mean", "std"}`` as ``m ± s``, ``{"per_seed": [...]}`` joined by ``/``,
    anything else as it is (``markdown_table`` formats it)."""
    if isinstance(x, Mapping) and "mean" in x:
        mean, std = x["mean"], x["std"]
        return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if isinstance(x, Mapping) and "per_seed" in x:
        return " / ".join(str(v) for v in x["per_seed"])
    return x


def x100(x: Any) -> Any:
    """A caption score (pycocoevalcap's scale; a number, or an aggregated ``{"mean", "std"}``) x100, for the
    markdown table."""
    if isinstance(x, Mapping) and "mean" in x:
        return {"mean": 100.0 * x["mean"], "std": None if x["std"] is None else 100.0 * x["std"]}
    return None if x is None else 100.0 * float(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    from vict.eval.report import markdown_table

    return markdown_table(header, [[cell(c, digits) for c in row] for row in rows], digits)


def _settings_of(report: Mapping[str, Any]) -> list[str]:
    return list(next(iter(report["gqa"].values()), {}))


def gqa_table(report: Mapping[str, Any]) -> str:
    """One row per model, one column per context setting, and the drop ``distractor - none``."""
    settings = _settings_of(report)
    drops = report.get("gqa_distractor_drop") or {}
    return _table(
        ["model", *(SETTING_TITLES.get(s, s) for s in settings), "distractor - none"],
        [[row, *(accs[s] for s in settings), drops.get(row)] for row, accs in report["gqa"].items()],
    )


def gqa_by_type_table(report: Mapping[str, Any]) -> str:
    """Rows model x (structural and semantic types, binary, open) with the number of questions; columns the
    context settings. Empty when the evaluation scored no types."""
    by_type = report.get("gqa_by_type") or {}
    settings = _settings_of(report)
    counts = report.get("gqa_type_counts") or {}
    rows = []
    for model, per_setting in by_type.items():
        types: list[str] = []
        for accs in per_setting.values():
            types += [t for t in accs or {} if t not in types]
        shown = [t for p in TABLE_TYPE_PREFIXES for t in types if t.startswith(p)]
        shown += [t for t in ("binary", "open") if t in types]
        for i, t in enumerate(shown):
            accs = [(per_setting.get(s) or {}).get(t) for s in settings]
            rows.append([model if i == 0 else "", t, counts.get(t), *accs])
    if not rows:
        return "(no GQA question types in this evaluation)"
    return _table(["model", "type", "n", *(SETTING_TITLES.get(s, s) for s in settings)], rows, digits=1)


def probe_table(report: Mapping[str, Any]) -> str:
    """``zoo_quality.probe``: the attentive probe, the linear probe and chance, for each attribute."""
    probe = (report.get("zoo_quality") or {}).get("probe")
    if not probe:
        return "(no probe in this report)"
    scores = ("colour", "shape", "size", "position")
    rows = [[f"{probe.get('probe', {}).get('kind', 'probe')} (held out)", *(probe.get(k) for k in scores)]]
    if probe.get("linear"):
        rows.append(["linear (held out)", *(probe["linear"].get(k) for k in scores)])
    rows.append(["chance (majority class)", *(probe.get("chance", {}).get(k) for k in scores)])
    return _table(["probe", *scores], rows)


def transfer_section(report: Mapping[str, Any]) -> list[str]:
    """``report.md`` lines on VPGTrans's transfer (none when the run had no vpgtrans row)."""
    t = report.get("transfer")
    if not t:
        return []
    fit = t.get("converter", {}).get("fit", {})
    steps = t.get("steps_to_target", {})

    def num(x: Any, digits: int) -> str:
        if x is None:
            return "n/a"
        return f"{x:.{digits}f}" if isinstance(x, float) else str(cell(x, digits))

    speed = None if t.get("speedup") is None else num(t.get("speedup"), 2)
    return [
        "## VPG transfer (VPGTrans)",
        "",
        f"Word converter (source LM -> target LM embeddings, fitted on the world's train captions): mean cosine "
        f"{num(fit.get('cosine_before'), 3)} at initialisation, {num(fit.get('cosine_train'), 3)} after fitting, "
        f"{num(fit.get('cosine_held_out'), 3)} on held-out captions. The `vict-vpgtrans` row warms the merged "
        f"projector up for {num(t.get('warmup_steps'), 0)} steps, then tunes Q-Former, queries and projector.",
        "",
        _table(
            ["run", "steps to the target"],
            [["from scratch (to its best)", steps.get("scratch")], ["VPGTrans (to beat it)", steps.get("vpgtrans")]],
            digits=0,
        ),
        "",
        f"Target: the from-scratch run's best {t.get('metric', 'validation score')}, {num(t.get('target'), 4)}. "
        "Speed-up (scratch steps / VPGTrans steps, warm-up included): "
        f"{speed or 'none (VPGTrans did not beat the target within its steps)'}. ![transfer](transfer.png)",
        "",
    ]


def scienceqa_section(report: Mapping[str, Any]) -> list[str]:
    """``report.md`` lines on ScienceQA-mini (none when the run did not evaluate it)."""
    table = report.get("scienceqa")
    if not table:
        return []
    categories = list(next(iter(table.values())))
    rows = [[row, *(acc.get(c) for c in categories)] for row, acc in table.items()]
    for name, acc in report.get("scienceqa_baselines", {}).items():
        rows.append([f"({name.replace('_', ' ')})", *(acc.get(c) for c in categories)])
    failed = ", ".join(f"{row} {cell(n, 0)}" for row, n in report.get("scienceqa_failed", {}).items())
    return [
        "## ScienceQA-mini (test split, official categories, %)",
        "",
        _table(["model", *categories], rows),
        "",
        "Answers are read with `The answer is ([A-Z]).`; a failed read gets a seeded random option (the reference's "
        f"rule). Failed reads: {failed}. Problems without an image are text-only rows (no visual tokens); the "
        "untuned target LM's text-only answers (NO, and TXT without image) are the bar the tuned rows must keep.",
        "",
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """``report.md`` of a single-seed or a multi-seed (``aggregate_seeds``) report: captioning, GQA by context
    setting and by question type, baselines, text retention, similarity, trainable parameters and timings."""
    cfg = report["config"]
    seeds = report.get("seeds")
    if seeds is None:
        run = f"seed {cfg['seed']}"
        plots = "![similarity](similarity.png) ![gqa](gqa_context.png)"
    else:
        run = (
            f"seeds {', '.join(map(str, seeds))}; every cell is the mean ± sample standard deviation (n - 1) over "
            "the seeds (each seed's own report is in `seed-<k>/`)"
        )
        plots = f"![similarity](seed-{seeds[0]}/similarity.png) ![gqa](gqa_context.png)"
    base = report["baselines"]
    changed = " with " + ", ".join(f"`{o}`" for o in cfg["overrides"]) if cfg.get("overrides") else ""
    lines = [
        "# vict quickstart: the paper in miniature",
        "",
        f"Preset `{cfg['preset']}`{changed}, {run}. These numbers come from the procedurally generated miniature world "
        f"({cfg['world_images']} images of coloured shapes) and the tiny models of `vict`'s miniature zoo, not from "
        "COCO/GQA.",
        "",
        "## Captioning (test split, x100)",
        "",
        _table(
            ["model", *CAPTION_KEYS],
            [[row, *(x100(vals.get(k)) for k in CAPTION_KEYS)] for row, vals in report["captioning"].items()],
        ),
        "",
        "## GQA short-answer accuracy, % (test split)",
        "",
        gqa_table(report),
        "",
        f"Blind baselines (fitted on train): majority answer ({cell(base['majority_answer'])!r}) "
        f"{cell(base['majority'])}%, question only {cell(base['question_only'])}%.",
        "",
        "### By question type, %",
        "",
        gqa_by_type_table(report),
        "",
        "## The frozen VPG, probed (test split, %)",
        "",
        probe_table(report),
        "",
        "## Text retention (held-out world text, perplexity of the target LM)",
        "",
        _table(
            ["model", "delta off (target LM)", "delta on (VICT)"],
            [[row, r["ppl_base"], r["ppl_tuned"]] for row, r in (report.get("text_retention") or {}).items()],
            digits=3,
        ),
        "",
        "## Q-Former token / vocabulary similarity (max cosine to any word embedding)",
        "",
        _table(
            ["against", "mean", "median", "max", "fraction > 0.5"],
            [
                [name, s.get("mean"), s.get("median"), s.get("max"), s.get("frac_above_0.5")]
                for name, s in report["similarity"].items()
            ],
        ),
        "",
        plots,
        "",
        *scienceqa_section(report),
        *transfer_section(report),
        "## Trainable parameters",
        "",
        _table(["model", "trainable"], [[k, v] for k, v in report["trainable_parameters"].items()], digits=0),
        "",
        "## Timings (s)",
        "",
        _table(["stage", "seconds"], [[k, v] for k, v in report["timings"].items()]),
        "",
        "Notes: `blip2-source` is the zoo's BLIP-2 through the plain BLIP-2 evaluation path (LAVIS prompts); its",
        "trainable count is what its captioning training tuned, and it has no text-retention row (it has no delta",
        "to switch off: captioning tuned its source LM, whose pretrained state the zoo does not keep). Text retention",
        "is the perplexity of the test split's texts, encoded as the zoo pretrained the LM, with the method's delta",
        "off (exactly the zoo's target LM) and on. Caption metrics shown as empty were unavailable (see",
        "`eval/report.json` notes). Greedy decoding throughout.",
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------- plot
def plot_gqa(gqa: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Any], path: Path) -> Path:
    """Bar chart of GQA accuracy by context setting per row (every setting of the rows; a missing one has no
    bar), with the blind baselines as lines; aggregated cells plot their mean with the std as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(next(iter(gqa.values()), {}))

    def mean_std(x: Any) -> tuple[float, float]:
        if isinstance(x, Mapping):
            return x["mean"], x["std"] or 0.0
        return (math.nan if x is None else x), 0.0

    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(settings) + 2), 3.5))
    width = 0.8 / max(1, len(gqa))
    for i, (row, accs) in enumerate(gqa.items()):
        xs = [j + i * width for j in range(len(settings))]
        means, stds = zip(*(mean_std(accs[s]) for s in settings)) if settings else ((), ())
        ax.bar(xs, means, width, yerr=stds if any(stds) else None, capsize=2, label=row)
    ax.axhline(_value(baselines["majority"]), color="grey", linestyle=":", label="majority answer")
    ax.axhline(_value(baselines["question_only"]), color="black", linestyle="--", label="question only")
    ax.set_xticks(
        [j + width * (len(gqa) - 1) / 2 for j in range(len(settings))], [SETTING_TITLES.get(s, s) for s in settings]
    )
    ax.set_ylabel("GQA short-answer accuracy (%)")
    ax.set_xlabel("context")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes: it hides no bar
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
