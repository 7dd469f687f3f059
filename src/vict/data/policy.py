"""What to do with bad input: fail fast (default) or skip it and count.

Every data problem is raised as a ``DataError`` subclass whose message names the file, the record, the field, what
was wrong and how to fix it (``file``, ``record`` and ``field`` are also attributes). A loader that meets one hands
it to ``BadInputPolicy.handle``: with ``mode="fail"`` it is raised at once; with ``mode="skip"`` it is counted in
the policy's ``SkipReport`` (counts by reason, the first few messages per reason) and the loader goes on without
that record. Call ``policy.report.summary()`` at the end of a run to say what was skipped.

A file of the wrong shape (``FileShapeError``: a list where an object belongs, a captions file with no
``images``) is not a bad record but the wrong file: it is raised under both modes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("vict.data")

MAX_EXAMPLES_PER_REASON = 3
MAX_LISTED = 20
"""How many problems a gathered failure (``BadInputPolicy.handle_all``) lists before "... and N more"."""


SKIP_HINT = (
    "or skip bad inputs and count them (vict train: data.bad_input=skip; vict data stats|show, vict eval: --skip-bad)"
)
"""The end of every bad-input message: how to go on without the record or image, in each entry point's own words."""


class DataError(ValueError):
    """A problem with the input data; ``reason`` is a short stable key used for skip counts.

    ``file``, ``record`` (e.g. ``"annotations[3] (id 10)"``) and ``field`` say where, when known.
    """

    reason = "bad_input"

    def __init__(
        self, message: str, *, file: str | None = None, record: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.file, self.record, self.field = file, record, field


class MalformedJSONError(DataError):
    reason = "malformed_json"


class MissingFieldError(DataError):
    reason = "missing_field"


class WrongTypeError(DataError):
    """A record, or a field of it, of the wrong JSON type (a null or a number where a string belongs, ...)."""

    reason = "wrong_type"


class EmptyFieldError(DataError):
    """A text field that is empty or only whitespace (an empty question or caption)."""

    reason = "empty_field"


class UnknownImageError(DataError):
    """A record that refers to an image its file does not list (a COCO caption of an unlisted ``image_id``)."""

    reason = "unknown_image"


class SkippedImageError(DataError):
    """A record dropped because the image it belongs to was skipped (its own entry or its file is bad)."""

    reason = "image_skipped"


class FileShapeError(DataError):
    """The file is not of the expected kind (wrong top-level type, a required list missing); raised under both
    policies, since skipping every record of the wrong file would only hide it."""

    reason = "wrong_file_shape"


class BadImageError(DataError):
    """An image that cannot be used; ``reason`` is one of missing_image, unreadable_image, truncated_image,
    image_too_large."""

    def __init__(
        self, message: str, reason: str = "unreadable_image", *, file: str | None = None, record: str | None = None
    ) -> None:
        super().__init__(message, file=file, record=record)
        self.reason = reason


def brief(error: DataError) -> str:
    """The message without the closing ``SKIP_HINT`` (for lists of problems, which say it once)."""
    text = str(error)
    return text[: -len(SKIP_HINT)].rstrip(", ") if text.endswith(SKIP_HINT) else text


@dataclass
class SkipReport:
    """Counts of skipped inputs by reason, with the first few messages of each reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = MAX_EXAMPLES_PER_REASON

    def add(self, error: DataError) -> None:
        self.counts[error.reason] += 1
        shown = self.examples.setdefault(error.reason, [])
        if len(shown) < self.max_examples:
            shown.append(brief(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self, verb: str = "skipped") -> str:
        """Multi-line text: ``skipped N inputs: reason=count ...`` and the first messages of each reason."""
        if not self:
            return f"{verb} 0 inputs"
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        lines = [f"{verb} {self.total} input{'s' if self.total != 1 else ''}: {counts}"]
        for reason, messages in sorted(self.examples.items()):
            lines += [f"  [{reason}] {m}" for m in messages]
            if self.counts[reason] > len(messages):
                lines.append(f"  [{reason}] ... and {self.counts[reason] - len(messages)} more")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"total": self.total, "counts": dict(sorted(self.counts.items())), "examples": self.examples}


@dataclass
class BadInputPolicy:
    """``mode="fail"`` raises the first problem; ``mode="skip"`` counts it in ``report`` and goes on."""

    mode: Literal["fail", "skip"] = "fail"
    report: SkipReport = field(default_factory=SkipReport)

    def __post_init__(self) -> None:
        if self.mode not in ("fail", "skip"):
            raise ValueError(f"bad input policy {self.mode!r}: use 'fail' (stop at the first problem) or 'skip'")

    def handle(self, error: DataError) -> None:
        """Raise ``error`` (fail mode) or count it (skip mode)."""
        if self.mode == "fail":
            raise error
        if not self.report.counts[error.reason]:
            logger.warning("skipping bad input (%s): %s", error.reason, brief(error))
        self.report.add(error)

    def handle_all(self, errors: list[DataError], what: str = "bad inputs") -> None:
        """Count every error (skip mode), or raise them together (fail mode): one as it is, several as one
        ``DataError`` listing the first ``MAX_LISTED`` (gathered first, so that one run shows every problem)."""
        if not errors:
            return
        if self.mode == "skip":
            for error in errors:
                self.handle(error)
            return
        if len(errors) == 1:
            raise errors[0]
        counts = Counter(e.reason for e in errors)
        listed = "\n  ".join(brief(e) for e in errors[:MAX_LISTED])
        more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        error = DataError(
            f"{len(errors)} {what} ({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))}):\n  {listed}{more}"
            f"\nfix them, {SKIP_HINT}"
        )
        error.reason = errors[0].reason if len(counts) == 1 else "bad_input"
        raise error


def resolve_policy(policy: BadInputPolicy | str | None) -> BadInputPolicy:
    """``None`` -> fail fast; ``"fail"``/``"skip"`` -> a fresh policy; a policy object is returned as is."""
    if policy is None:
        return BadInputPolicy()
    if isinstance(policy, str):
        return BadInputPolicy(mode=policy)  # type: ignore[arg-type]
    return policy
