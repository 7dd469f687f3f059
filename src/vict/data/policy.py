"""What to do with bad input: fail fast (default) or skip it and count.

Every data problem is raised as a ``DataError`` subclass whose message names the file or record, what was
wrong and how to fix it. A loader that meets one hands it to ``BadInputPolicy.handle``: with
``mode="fail"`` it is raised at once; with ``mode="skip"`` it is counted in the policy's ``SkipReport``
(counts by reason, the first few messages per reason) and the loader goes on without that record.
Call ``policy.report.summary()`` at the end of a run to say what was skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("vict.data")

MAX_EXAMPLES_PER_REASON = 3


class DataError(ValueError):
    """A problem with the input data; ``reason`` is a short stable key used for skip counts."""

    reason = "bad_input"


class MalformedJSONError(DataError):
    reason = "malformed_json"


class MissingFieldError(DataError):
    reason = "missing_field"


class BadImageError(DataError):
    """An image that cannot be used; ``reason`` is one of missing_image, unreadable_image, truncated_image,
    image_too_large."""

    def __init__(self, message: str, reason: str = "unreadable_image") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class SkipReport:
    """Counts of skipped inputs by reason, with the first few messages of each reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, error: DataError) -> None:
        self.counts[error.reason] += 1
        shown = self.examples.setdefault(error.reason, [])
        if len(shown) < MAX_EXAMPLES_PER_REASON:
            shown.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        """Multi-line text: ``skipped N inputs: reason=count ...`` and the first messages of each reason."""
        if not self:
            return "skipped 0 inputs"
        lines = [f"skipped {self.total} inputs: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))]
        for reason, messages in sorted(self.examples.items()):
            lines += [f"  [{reason}] {m}" for m in messages]
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
            logger.warning("skipping bad input (%s): %s", error.reason, error)
        self.report.add(error)


def resolve_policy(policy: BadInputPolicy | str | None) -> BadInputPolicy:
    """``None`` -> fail fast; ``"fail"``/``"skip"`` -> a fresh policy; a policy object is returned as is."""
    if policy is None:
        return BadInputPolicy()
    if isinstance(policy, str):
        return BadInputPolicy(mode=policy)  # type: ignore[arg-type]
    return policy
