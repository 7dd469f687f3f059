"""ScienceQA in its official layout (lupantech/ScienceQA ``data/scienceqa/``) and its prompt formats.

Files: ``problems.json`` (``{pid: problem}``), ``pid_splits.json`` (``{"train": [pid, ...], "val", "test",
"trainval", "minitrain", "minival", "minitest"}``) and ``images/{split}/{pid}/image.png`` for problems whose
``image`` is not null (``split`` is the problem's own ``train``/``val``/``test``). ``load_scienceqa`` checks every
problem of the requested split and raises once, listing every problem that is wrong (file, pid, what, the fix).

Prompts follow ScienceQA's ``models/base_prompt.py`` (copied by LaVIN and LLaVA): ``scienceqa_example`` is the
reference's ``create_one_example`` text (GPT-3 few-shot), ``scienceqa_prompt_target`` LaVIN's training pair (prompt
ending ``Response:``, target ``The answer is A. BECAUSE: ...``). Formats ``<INPUT>-<OUTPUT>``: input ``QCM`` or ``CQM``
(LLaVA v1.5's eval file); output ``A`` (the letter), ``ALE`` (the letter, then lecture and solution: LaVIN's paper
setting), or the reference's reasoning-first outputs ``EA`` (solution, then the letter) and ``LEA`` (lecture and
solution, then the letter: LLaVA's training default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vict.data.jsonio import load_json
from vict.data.policy import BadInputPolicy, DataError, resolve_policy

OPTIONS: tuple[str, ...] = ("A", "B", "C", "D", "E")
"""Option letters; a problem has at most five choices."""
SUBJECTS: dict[str, str] = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
"""``subject`` value -> the official category it counts in."""
PROBLEM_SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Values of a problem's own ``split`` field (the image folder it lives in)."""
MEMBER_SPLITS: dict[str, frozenset[str]] = {
    "train": frozenset({"train"}),
    "val": frozenset({"val"}),
    "test": frozenset({"test"}),
    "trainval": frozenset({"train", "val"}),
    "minitrain": frozenset({"train"}),
    "minival": frozenset({"val"}),
    "minitest": frozenset({"test"}),
}
"""The ``pid_splits.json`` keys of the official file and which problem ``split`` values each may hold."""
REQUIRED_KEYS: tuple[str, ...] = (
    "question",
    "choices",
    "answer",
    "hint",
    "image",
    "subject",
    "topic",
    "category",
    "grade",
    "lecture",
    "solution",
    "split",
)
INPUT_FORMATS: tuple[str, ...] = ("QCM", "CQM")
OUTPUT_FORMATS: tuple[str, ...] = ("A", "ALE", "EA", "LEA")
FORMATS: tuple[str, ...] = tuple(f"{i}-{o}" for i in INPUT_FORMATS for o in OUTPUT_FORMATS)
"""Prompt formats ``<INPUT>-<OUTPUT>`` the builders support."""
IMAGES_URL = "https://scienceqa.s3.us-west-1.amazonaws.com/images/{split}.zip"
MAX_LISTED_ERRORS = 10
_GRADE = re.compile(r"grade(\d+)")


@dataclass(frozen=True)
class ScienceQAProblem:
    """One ScienceQA problem. ``answer`` is a 0-based index into ``choices``; ``hint`` is the textual context
    (``""`` when none); ``image`` is ``images/{split}/{pid}/image.png`` or ``None`` for a text-only problem."""

    pid: str
    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str
    image: Path | None
    subject: str
    topic: str
    category: str
    grade: str
    lecture: str
    solution: str
    split: str
    skill: str = ""
    task: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Keys of the record not listed above, kept as they are."""

    @property
    def has_text(self) -> bool:
        """Official TXT: the problem has a non-empty hint (textual context)."""
        return bool(self.hint)

    @property
    def has_image(self) -> bool:
        """Official IMG: the problem has an image."""
        return self.image is not None

    @property
    def grade_number(self) -> int:
        """``grade7`` -> 7."""
        return int(self.grade.removeprefix("grade"))

    @property
    def answer_letter(self) -> str:
        """The option letter of the right answer (``OPTIONS[answer]``)."""
        return OPTIONS[self.answer]


def _problem_issues(pid: str, rec: Any) -> list[str]:
    """What is wrong with one ``problems.json`` record (empty when nothing is)."""
    if not isinstance(rec, Mapping):
        return [f"problem {pid!r} is a {type(rec).__name__}, expected an object"]
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return [f"problem {pid!r} has no {missing}; every problem needs {list(REQUIRED_KEYS)} (image may be null)"]
    issues = []
    choices = rec["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        issues.append(f"problem {pid!r}: choices must be a list of strings; got {choices!r}")
    elif not 2 <= len(choices) <= len(OPTIONS):
        issues.append(f"problem {pid!r}: has {len(choices)} choices; a problem needs 2 to {len(OPTIONS)}")
    else:
        answer = rec["answer"]
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            issues.append(
                f"problem {pid!r}: answer {answer!r} is not a 0-based index into its {len(choices)} choices "
                f"(0..{len(choices) - 1})"
            )
    for key in ("question", "hint", "topic", "category", "lecture", "solution"):
        if not isinstance(rec[key], str):
            issues.append(f'problem {pid!r}: {key} must be a string ("" when empty); got {rec[key]!r}')
    if isinstance(rec["question"], str) and not rec["question"].strip():
        issues.append(f"problem {pid!r}: question is empty; every problem needs its question text")
    if not isinstance(rec["subject"], str) or rec["subject"] not in SUBJECTS:
        issues.append(f"problem {pid!r}: subject {rec['subject']!r} is not one of {list(SUBJECTS)}")
    grade = _GRADE.fullmatch(rec["grade"]) if isinstance(rec["grade"], str) else None
    if grade is None or not 1 <= int(grade.group(1)) <= 12:
        issues.append(f"problem {pid!r}: grade {rec['grade']!r} is not one of 'grade1'..'grade12'")
    if rec["split"] not in PROBLEM_SPLITS:
        issues.append(f"problem {pid!r}: split {rec['split']!r} is not one of {list(PROBLEM_SPLITS)}")
    if rec["image"] is not None and (not isinstance(rec["image"], str) or not rec["image"]):
        issues.append(f"problem {pid!r}: image must be a file name such as 'image.png' or null; got {rec['image']!r}")
    return issues


def _raise_collected(path: Path, issues: list[str], total: int) -> None:
    if not issues:
        return
    shown = "\n  ".join(issues[:MAX_LISTED_ERRORS])
    more = f"\n  ... and {len(issues) - MAX_LISTED_ERRORS} more" if len(issues) > MAX_LISTED_ERRORS else ""
    raise DataError(f"{path}: {len(issues)} problems of {total} are invalid:\n  {shown}{more}")


def load_scienceqa(
    problems_path: str | Path,
    pid_splits_path: str | Path | None = None,
    split: str = "test",
    image_root: str | Path | None = None,
    check_images: bool = True,
    policy: BadInputPolicy | str | None = None,
) -> list[ScienceQAProblem]:
    """Load the problems of ``split``, in the order ``pid_splits.json`` lists them.

    Args:
        problems_path: ``problems.json``.
        pid_splits_path: ``pid_splits.json``; default: the one beside ``problems_path``.
        split: a key of ``pid_splits.json`` (``train``, ``val``, ``test``, ``trainval``, ``minitrain``, ...).
        image_root: the folder holding ``{train,val,test}/{pid}/image.png``; default ``images/`` beside
            ``problems_path``.
        check_images: require every named image to exist on disk. Scoring needs only whether a problem has an
            image, so ``vict score scienceqa`` passes ``False``.
        policy: ``None`` / ``"fail"``: raise once, listing every invalid problem; ``"skip"`` (or a skip
            ``BadInputPolicy``): leave invalid problems out, each counted in the policy's report (``invalid_problem``,
            or ``missing_image`` for a missing image file). Missing or malformed files raise under both.

    Raises:
        DataError: a file is missing or malformed; ``split`` is not a key of ``pid_splits.json``; or problems of the
            split are invalid (missing keys, answer index out of range, fewer than 2 choices, unknown subject, grade
            or split, a split member whose own split disagrees, a missing image file). Every invalid problem is
            listed (the first ``MAX_LISTED_ERRORS``), each with its pid.
    """
    problems_path = Path(problems_path)
    pid_splits_path = Path(pid_splits_path) if pid_splits_path else problems_path.with_name("pid_splits.json")
    image_root = Path(image_root) if image_root else problems_path.parent / "images"
    for path, what in ((problems_path, "problems.json"), (pid_splits_path, "pid_splits.json")):
        if not path.is_file():
            raise DataError(
                f"{path}: ScienceQA {what} not found; it is in lupantech/ScienceQA data/scienceqa/ (pass its path)"
            )
    problems = load_json(problems_path)
    pid_splits = load_json(pid_splits_path)
    if not isinstance(problems, Mapping):
        raise DataError(f"{problems_path}: expected the official object {{pid: problem}}; got a JSON list/value")
    if not isinstance(pid_splits, Mapping):
        raise DataError(f"{pid_splits_path}: expected an object {{split: [pid, ...]}}; got a JSON list/value")
    if split not in pid_splits:
        raise DataError(f"{pid_splits_path}: split {split!r} is unknown; the file has {sorted(pid_splits)}")
    pids = pid_splits[split]
    if not isinstance(pids, list):
        raise DataError(f"{pid_splits_path}: split {split!r} must be a list of pids; got {type(pids).__name__}")

    policy = resolve_policy(policy)
    issues: list[str] = []
    out: list[ScienceQAProblem] = []
    allowed = MEMBER_SPLITS.get(split)

    def bad(found: list[str], reason: str = "invalid_problem") -> None:
        if policy.mode == "fail":
            issues.extend(found)
            return
        error = DataError(f"{problems_path}: " + "; ".join(found), file=str(problems_path), record=f"problem {pid!r}")
        error.reason = reason
        policy.handle(error)

    for raw_pid in pids:
        pid = str(raw_pid)
        if pid not in problems:
            bad([f"problem {pid!r} is listed in {pid_splits_path} split {split!r} but not in the file"])
            continue
        rec = problems[pid]
        found = _problem_issues(pid, rec)
        if not found and allowed is not None and rec["split"] not in allowed:
            found.append(
                f"problem {pid!r} has split {rec['split']!r} but {pid_splits_path} lists it under {split!r}; "
                "the two files come from different releases"
            )
        if found:
            bad(found)
            continue
        image = image_root / rec["split"] / pid / rec["image"] if rec["image"] is not None else None
        if check_images and image is not None and not image.is_file():
            bad(
                [
                    f"problem {pid!r} names image {rec['image']!r} but {image} does not exist; download "
                    f"{IMAGES_URL.format(split=rec['split'])} and unzip it under {image_root}, or pass "
                    "check_images=False to load without images"
                ],
                "missing_image",
            )
            continue
        known = {*REQUIRED_KEYS, "skill", "task"}
        out.append(
            ScienceQAProblem(
                pid=pid,
                question=rec["question"],
                choices=tuple(rec["choices"]),
                answer=rec["answer"],
                hint=rec["hint"],
                image=image,
                subject=rec["subject"],
                topic=rec["topic"],
                category=rec["category"],
                grade=rec["grade"],
                lecture=rec["lecture"],
                solution=rec["solution"],
                split=rec["split"],
                skill=str(rec.get("skill", "")),
                task=str(rec.get("task", "")),
                extra={k: v for k, v in rec.items() if k not in known},
            )
        )
    _raise_collected(problems_path, issues, len(pids))
    return out


# ---- prompt formats (ScienceQA models/base_prompt.py) ----


def scienceqa_context(problem: ScienceQAProblem, caption: str | None = None) -> str:
    """``" ".join([hint, caption]).strip()``, or ``"N/A"`` when that is empty (``caption=None``: no caption)."""
    return " ".join([problem.hint, caption or ""]).strip() or "N/A"


def scienceqa_choices(choices: tuple[str, ...] | list[str]) -> str:
    """``(A) West Virginia (B) Louisiana (C) Arizona (D) Oklahoma``."""
    return " ".join(f"({OPTIONS[i]}) {c}" for i, c in enumerate(choices))


def _split_format(fmt: str) -> tuple[str, str]:
    if fmt not in FORMATS:
        raise ValueError(f"ScienceQA prompt format {fmt!r} is not supported; choose one of {list(FORMATS)}")
    input_format, output_format = fmt.split("-")
    return input_format, output_format


def scienceqa_input(problem: ScienceQAProblem, fmt: str = "QCM-ALE", caption: str | None = None) -> str:
    """The input template: ``QCM`` ``"Question: {q}\\nContext: {c}\\nOptions: {choices}\\n"``, ``CQM`` with Context
    first."""
    input_format, _ = _split_format(fmt)
    question, context = problem.question, scienceqa_context(problem, caption)
    choices = scienceqa_choices(problem.choices)
    if input_format == "CQM":
        return f"Context: {context}\nQuestion: {question}\nOptions: {choices}\n"
    return f"Question: {question}\nContext: {context}\nOptions: {choices}\n"


def scienceqa_answer(problem: ScienceQAProblem, fmt: str = "QCM-ALE") -> str:
    """The output template without the ``Answer: `` prefix: ``A`` ``"The answer is A."``, ``ALE``
    ``"The answer is A. BECAUSE: {lecture} {solution}"``, ``EA`` ``"{solution} The answer is A."``, ``LEA``
    ``"{lecture} {solution} The answer is A."`` (newlines in lecture and solution written as the two characters
    ``\\n``, as the reference does)."""
    _, output_format = _split_format(fmt)
    letter = problem.answer_letter
    if output_format == "A":
        return f"The answer is {letter}."
    lecture = problem.lecture.replace("\n", "\\n")
    solution = problem.solution.replace("\n", "\\n")
    if output_format == "EA":
        return f"{solution} The answer is {letter}."
    if output_format == "LEA":
        return f"{lecture} {solution} The answer is {letter}."
    return f"The answer is {letter}. BECAUSE: {lecture} {solution}"


def _clean(text: str) -> str:
    # The reference's clean-up: one pass of "  " -> " ", strip, and drop an empty "BECAUSE:" (no lecture/solution).
    text = text.replace("  ", " ").strip()
    if text.endswith("BECAUSE:"):
        text = text.replace("BECAUSE:", "").strip()
    return text


def scienceqa_example(
    problem: ScienceQAProblem, fmt: str = "QCM-ALE", caption: str | None = None, test_example: bool = False
) -> str:
    """The reference's ``create_one_example`` text: input + ``"Answer: " + output`` (a demonstration), or input +
    ``"Answer:"`` for the problem to answer (``test_example=True``). Few-shot prompts join these with ``"\\n\\n"``."""
    output = "Answer:" if test_example else f"Answer: {scienceqa_answer(problem, fmt)}"
    return _clean(scienceqa_input(problem, fmt, caption) + output)


def scienceqa_prompt_target(
    problem: ScienceQAProblem, fmt: str = "QCM-ALE", caption: str | None = None
) -> tuple[str, str]:
    """LaVIN's training pair: prompt ``("\\n" + input + "Response:").strip()`` and target = the output template with
    no ``Answer: `` prefix (cleaned as the reference cleans its text). A model is trained on ``prompt + target``."""
    prompt = ("\n" + scienceqa_input(problem, fmt, caption) + "Response:").strip()
    return prompt, _clean(scienceqa_answer(problem, fmt))


TEXT_ONLY_PREFIX = "Image: N/A"
"""What a problem without an image starts with instead of the image (LaVIN's text-only prefix)."""


def scienceqa_model_prompt(
    problem: ScienceQAProblem, fmt: str = "QCM-A", caption: str | None = None
) -> tuple[str, str]:
    """The (prompt, target) a ``VisionLLM`` trains on and is asked with, for one problem: LaVIN's pair
    (``scienceqa_prompt_target``) after the image marker when the problem has an image, else after
    ``TEXT_ONLY_PREFIX`` and no marker (a text-only row: no image slots, routed as text only)."""
    from vict.constants import IMAGE_MARKER

    prompt, target = scienceqa_prompt_target(problem, fmt, caption)
    head = IMAGE_MARKER if problem.has_image else TEXT_ONLY_PREFIX
    return f"{head}\n{prompt}", target
