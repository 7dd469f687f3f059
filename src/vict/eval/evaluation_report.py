"""``report.md`` and ``report.json`` of ``vict eval``: Table 1 (captions), Table 2 (GQA by context setting), GQA by
question type, ScienceQA by official category, VQAv2 by answer type, notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vict.eval.captioning import as_x100
from vict.eval.gqa import SEMANTIC_NAMES
from vict.eval.report import caption_table, gqa_table, markdown_table, notes_lines, write_json, write_text
from vict.eval.scienceqa import CATEGORIES
from vict.eval.splits import SETTING_DESCRIPTIONS, SETTINGS

REPORT_CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Columns of the paper's Table 1."""
TYPE_TABLE_PREFIXES: tuple[str, ...] = ("structural/", "semantic/")
"""Rows of the by-question-type table in ``report.md`` (``report.json`` also has ``detailed/*``, ``binary``, ``open``)."""
VQAV2_ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
"""VQAv2's answer types, the columns of its table (``report.json`` also has ``per_question_type``)."""


def type_label(key: str) -> str:
    """A ``by_type`` key as printed: ``structural/verify`` -> ``structural: verify``, ``semantic/attr`` ->
    ``semantic: attribute`` (eval.py's display names)."""
    field, _, value = key.partition("/")
    return f"{field}: {SEMANTIC_NAMES.get(value, value)}" if field == "semantic" else key.replace("/", ": ", 1)


def by_type_table(gqa: dict[str, Any]) -> str | None:
    """One model's accuracy by question type: rows = structural then semantic types, columns = settings (vqa rule, %),
    ``n`` = the most questions of the type any setting scored. ``None`` when no setting has ``by_type``."""
    settings = [s for s in SETTINGS if s in gqa and gqa[s].get("by_type")]
    if not settings:
        return None
    keys = {k for s in settings for k in gqa[s]["by_type"]}
    rows = []
    for prefix in TYPE_TABLE_PREFIXES:
        for key in sorted(k for k in keys if k.startswith(prefix)):
            cells = [gqa[s]["by_type"].get(key) for s in settings]
            n = max(c["count"] for c in cells if c)
            rows.append([type_label(key), n, *(c["accuracy"] if c else None for c in cells)])
    return markdown_table(["question type", "n", *settings], rows) if rows else None


def scienceqa_table(rows: dict[str, dict[str, Any]]) -> str:
    """ScienceQA accuracy (%) by official category, one row per model, with the failed extractions and ``n``."""
    return markdown_table(
        ["model", *CATEGORIES, "failed", "n"],
        [[n, *(r["categories"][c]["accuracy"] for c in CATEGORIES), r["failed"], r["n"]] for n, r in rows.items()],
    )


def vqav2_table(rows: dict[str, dict[str, Any]]) -> str:
    """VQAv2 accuracy (%, official rule): overall and by answer type, one row per model."""
    types = [t for t in VQAV2_ANSWER_TYPES if any(t in r["per_answer_type"] for r in rows.values())]
    types += sorted({t for r in rows.values() for t in r["per_answer_type"]} - set(types))
    return markdown_table(
        ["model", "overall", *types, "n"],
        [[n, r["overall"], *(r["per_answer_type"].get(t) for t in types), r["n"]] for n, r in rows.items()],
    )


def report_markdown(reports: dict[str, dict[str, Any]], title: str = "Evaluation") -> str:
    """``report.md`` for one or several models: Table 1 (captions), Table 2 (GQA by context setting, vqa rule),
    the official-rule GQA table, each model's GQA accuracy by question type (structural and semantic types x
    settings), sentence answers, and the notes (choices, unavailable metrics, skipped questions)."""
    first = next(iter(reports.values()))
    lines = [f"# {title}", "", f"Data: `{first['data']}`, split `{first['split']}`.", ""]
    cap_rows = {
        n: {**as_x100(r["caption"], REPORT_CAPTION_METRICS), "n": r["caption"]["n"]}
        for n, r in reports.items()
        if r.get("caption")
    }
    if cap_rows:
        lines += ["## Captioning (Table 1; scores x100)", "", caption_table(cap_rows, REPORT_CAPTION_METRICS), ""]
        scored = ", ".join(f"{n}: {r['n']}" for n, r in cap_rows.items())
        lines += [f"Images scored: {scored}.", ""]
    gqa_rows = {n: r["gqa"] for n, r in reports.items() if r.get("gqa")}
    if gqa_rows:
        shown = [s for s in SETTINGS if any(s in g for g in gqa_rows.values())]
        for rule, heading in (("vqa", "rule `vqa`, normalised"), ("official", "rule `official`, exact match")):
            rows = {n: {s: g[s][rule]["accuracy"] for s in g} for n, g in gqa_rows.items()}
            lines += [f"## GQA short-answer accuracy, % (Table 2; {heading})", ""]
            lines += [gqa_table(rows, shown), ""]
        n_q = {n: max(s["vqa"]["n"] for s in g.values()) for n, g in gqa_rows.items() if g}
        lines += [
            "Settings: "
            + "; ".join(f"`{s}` = {SETTING_DESCRIPTIONS[s]}" for s in shown)
            + ". Questions: "
            + ", ".join(f"{n}: {k}" for n, k in n_q.items())
            + ".",
        ]
        skipped = [
            f"{n} `{s}`: {g[s]['skipped']}" for n, g in gqa_rows.items() for s in shown if g.get(s, {}).get("skipped")
        ]
        if skipped:
            lines += ["Skipped (no context of the setting's kind; see the notes): " + ", ".join(skipped) + "."]
        lines += [""]
        for n, g in gqa_rows.items():
            table = by_type_table(g)
            if table:
                lines += [f"### GQA accuracy by question type, % (rule `vqa`): {n}", "", table, ""]
    sent_rows = [
        [n, r["gqa_sentence"]["exact"], r["gqa_sentence"]["answer_in_sentence"], r["gqa_sentence"]["n"]]
        for n, r in reports.items()
        if r.get("gqa_sentence")
    ]
    if sent_rows:
        lines += ["## GQA sentence answers (no context), %", ""]
        lines += [markdown_table(["model", "exact (normalised)", "answer in sentence", "n"], sent_rows), ""]
    sqa_rows = {n: r["scienceqa"] for n, r in reports.items() if r.get("scienceqa")}
    if sqa_rows:
        some = next(iter(sqa_rows.values()))
        lines += [f"## ScienceQA accuracy by category, % (split `{some['split']}`, format `{some['format']}`)", ""]
        lines += [scienceqa_table(sqa_rows), ""]
        lines += [
            "Categories as the official `get_scores`: NAT/SOC/LAN by subject, TXT = with a hint, IMG = with an image, "
            "NO = neither, G1-6/G7-12 by grade. Answer: the first `The answer is X.` (else a bare letter or "
            "`X. ...`); "
            f"`failed` = answers with no valid letter, scored by the `{some['failed_rule']}` rule (seed "
            f"{some['seed']}). Problems without an image: "
            + "; ".join(f"{n}: {r['text_only_rows']} ({r['n_text_only']} of {r['n']})" for n, r in sqa_rows.items())
            + ". Per-topic accuracies are in report.json.",
            "",
        ]
    vqa_rows = {n: r["vqav2"] for n, r in reports.items() if r.get("vqav2")}
    if vqa_rows:
        some = next(iter(vqa_rows.values()))
        lines += [f"## VQAv2 accuracy, % (official rule; split `{some['split']}`)", "", vqav2_table(vqa_rows), ""]
        lines += [
            "Each question asked with the model's short-answer prompt (no context, as the GQA `none` setting); "
            "per question type in report.json.",
            "",
        ]
    lines += ["## Notes", ""]
    if any(r.get("caption") or r.get("gqa") for r in reports.values()):
        lines += [
            f"- Gold caption: {first['choices']['gold_caption']}.",
            f"- Self caption: {first['choices']['self_caption']}.",
            *(
                f"- {label}: {first['choices'][key]}."
                for key, label in (
                    ("qa_context", "QA context"),
                    ("dense_caption", "Dense caption"),
                    ("distractor", "Distractor caption"),
                )
                if key in first["choices"]
            ),
        ]
    lines += ["- Decoding: greedy."]
    shared = [note for note in first.get("notes", []) if all(note in r.get("notes", []) for r in reports.values())]
    lines += [f"- {note}" for note in shared]
    for n, r in reports.items():
        lines += [f"- {n}: {note}" for note in r.get("notes", []) if note not in shared]
        if r.get("caption"):
            lines += [f"- {n}: {line[2:]}" for line in notes_lines(r["caption"].get("notes", {}))]
        if r.get("gqa") and not r.get("gqa_sentence") and r["kind"] == "blip2":
            lines += [f"- {n}: no sentence-answer score (BLIP-2's prompt asks for a short answer)."]
    return "\n".join(lines) + "\n"


def write_report(
    reports: dict[str, dict[str, Any]], out_dir: str | Path, title: str = "Evaluation"
) -> tuple[Path, Path]:
    """Write ``report.json`` (``{"models": {name: report}}``) and ``report.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = write_json(out_dir / "report.json", {"models": reports})
    md_path = write_text(out_dir / "report.md", report_markdown(reports, title))
    return json_path, md_path
