"""``report.md`` and ``report.json`` of ``vict eval``: Table 1 (captions), Table 2 (GQA by context setting), notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vict.eval.report import caption_table, gqa_table, markdown_table, notes_lines, write_json, write_text
from vict.eval.splits import SETTINGS

REPORT_CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Columns of the paper's Table 1."""


def report_markdown(reports: dict[str, dict[str, Any]], title: str = "Evaluation") -> str:
    """``report.md`` for one or several models: Table 1 (captions), Table 2 (GQA by context setting, vqa rule),
    the official-rule GQA table, sentence answers, and the notes (choices, unavailable metrics)."""
    first = next(iter(reports.values()))
    lines = [f"# {title}", "", f"Data: `{first['data']}`, split `{first['split']}`.", ""]
    cap_rows = {n: r["caption"] for n, r in reports.items() if r.get("caption")}
    if cap_rows:
        lines += ["## Captioning (Table 1; scores x100)", "", caption_table(cap_rows, REPORT_CAPTION_METRICS), ""]
        scored = ", ".join(f"{n}: {r['n']}" for n, r in cap_rows.items())
        lines += [f"Images scored: {scored}.", ""]
    gqa_rows = {n: r["gqa"] for n, r in reports.items() if r.get("gqa")}
    if gqa_rows:
        for rule, heading in (("vqa", "rule `vqa`, normalised"), ("official", "rule `official`, exact match")):
            rows = {n: {s: g[s][rule]["accuracy"] for s in g} for n, g in gqa_rows.items()}
            lines += [f"## GQA short-answer accuracy, % (Table 2; {heading})", ""]
            lines += [gqa_table(rows, [s for s in SETTINGS if any(s in g for g in gqa_rows.values())]), ""]
        n_q = {n: next(iter(g.values()))["vqa"]["n"] for n, g in gqa_rows.items() if g}
        lines += ["Settings: `none` = the question alone; `caption` = a gold caption of the image as context;"]
        lines += [
            "`self` = the model's own caption as context. Questions: "
            + ", ".join(f"{n}: {k}" for n, k in n_q.items())
            + ".",
            "",
        ]
        by_sem = {n: g["none"]["vqa"]["by_semantic"] for n, g in gqa_rows.items() if "none" in g}
        if by_sem:
            types = sorted({t for v in by_sem.values() for t in v})
            lines += ["### GQA `none` setting by semantic type (vqa rule, %)", ""]
            lines += [
                markdown_table(["model", *types], [[n, *(v.get(t) for t in types)] for n, v in by_sem.items()]),
                "",
            ]
    sent_rows = [
        [n, r["gqa_sentence"]["exact"], r["gqa_sentence"]["answer_in_sentence"], r["gqa_sentence"]["n"]]
        for n, r in reports.items()
        if r.get("gqa_sentence")
    ]
    if sent_rows:
        lines += ["## GQA sentence answers (no context), %", ""]
        lines += [markdown_table(["model", "exact (normalised)", "answer in sentence", "n"], sent_rows), ""]
    lines += [
        "## Notes",
        "",
        f"- Gold caption: {first['choices']['gold_caption']}.",
        f"- Self caption: {first['choices']['self_caption']}.",
        "- Decoding: greedy.",
    ]
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
