"""Per-row decoding in one batch: each row its own budget, stop strings, sampling settings and seed.

What the server and the demo need beyond the engine's greedy ``generate``. One ``generate`` call decodes a batch of
rows whose requests asked for different things; every row gets exactly the text it would get alone:

- ``Decoding``: one row's settings (``max_new_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``seed``,
  ``stop`` strings).
- ``RowSampler`` (a ``transformers`` ``LogitsProcessor``): a sampled row draws its token from its own
  ``torch.Generator`` (seeded by the row's ``seed``), after its own temperature and nucleus (top-p) filter, and
  leaves only that token standing; ``generate`` then runs greedy (``do_sample=False``), so greedy rows are untouched
  and a sampled row's draws do not depend on the other rows of its batch.
- ``RowControl`` (a ``StoppingCriteria``): reads each row's new token every step; ends a row at end of text, at its
  own budget, at one of its stop strings (cut from the text, as OpenAI does), or when its client is gone
  (``cancelled``); reports text deltas as they come (``on_delta(row, text)``) such that the deltas of a row join to
  exactly its final text (the engine's ``strip``: leading and trailing whitespace held back; a possible start of a
  stop string held back until it is known not to be one).

``Completion`` is one row's outcome: the text, the number of generated tokens (end of text not counted), and
``finish_reason`` (``stop``: end of text or a stop string; ``length``: the budget; ``cancelled``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

FINISH_REASONS = ("stop", "length", "cancelled")


@dataclass(frozen=True)
class Decoding:
    """How one row is decoded. ``temperature`` 0 is greedy (``top_p`` and ``seed`` then unused); ``seed`` ``None``
    draws a fresh one; ``stop``: strings that end the text (not included in it)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens!r}: must be an integer >= 1")
        if not 0.0 <= float(self.temperature) <= 2.0:
            problems.append(f"temperature={self.temperature!r}: must be in [0, 2]")
        if not 0.0 < float(self.top_p) <= 1.0:
            problems.append(f"top_p={self.top_p!r}: must be in (0, 1]")
        if any(not isinstance(s, str) or not s for s in self.stop):
            problems.append(f"stop={list(self.stop)!r}: stop strings must be non-empty strings")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return float(self.temperature) == 0.0


@dataclass
class Completion:
    """One row's outcome (see the module docstring)."""

    text: str
    completion_tokens: int
    finish_reason: str
    prompt_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)


class RowSampler(LogitsProcessor):
    """Per-row sampling inside a greedy ``generate`` (see the module docstring). ``rows`` maps a batch row to its
    index in ``decodings`` (a ``generate`` call may decode a subset of them)."""

    def __init__(self, decodings: Sequence[Decoding], generators: Sequence[torch.Generator | None], rows: list[int]):
        self.decodings, self.generators, self.rows = decodings, generators, rows

    @staticmethod
    def generators(decodings: Sequence[Decoding]) -> list[torch.Generator | None]:
        """One CPU generator per sampled row, seeded by its ``seed`` (or a fresh random seed)."""
        out: list[torch.Generator | None] = []
        for d in decodings:
            if d.greedy:
                out.append(None)
                continue
            g = torch.Generator(device="cpu")
            g.manual_seed(d.seed if d.seed is not None else secrets.randbits(63))
            out.append(g)
        return out

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for b, i in enumerate(self.rows):
            d, g = self.decodings[i], self.generators[i]
            if g is None:
                continue
            token = sample(scores[b], d.temperature, d.top_p, g)
            scores[b] = float("-inf")
            scores[b, token] = 0.0
        return scores


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """One token id drawn from ``softmax(logits / temperature)`` restricted to its nucleus: the most likely tokens
    whose probabilities first reach ``top_p`` (at least one)."""
    probs = torch.softmax(logits.detach().float().cpu() / float(temperature), dim=-1)
    if top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        before = torch.cumsum(ordered, dim=-1) - ordered  # mass of the tokens ahead of each one
        ordered[before >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, ordered)
    return int(torch.multinomial(probs, 1, generator=generator).item())


class RowControl:
    """The per-row stopping and streaming state of a set of rows (see the module docstring).

    Args:
        tokenizer: decodes each row's tokens (special tokens skipped).
        decodings: one ``Decoding`` per row.
        eos_token_ids: the ids that end a text.
        on_delta: called with ``(row, text)`` each time a row's visible text grows (from the decoding thread).
        cancelled: called with ``row``; ``True`` ends that row at once (its client is gone).
    """

    def __init__(
        self,
        tokenizer: Any,
        decodings: Sequence[Decoding],
        eos_token_ids: Sequence[int],
        on_delta: Callable[[int, str], None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
    ) -> None:
        self.tokenizer, self.decodings = tokenizer, list(decodings)
        self.eos = {int(t) for t in eos_token_ids}
        self.on_delta, self.cancelled = on_delta, cancelled
        n = len(self.decodings)
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.finish: list[str | None] = [None] * n
        self.text: list[str] = [""] * n
        self.sent: list[str] = [""] * n

    def criteria(self, rows: list[int]) -> StoppingCriteria:
        """The ``StoppingCriteria`` of one ``generate`` call over ``rows`` (batch row ``b`` is ``rows[b]``)."""
        return _RowCriteria(self, rows)

    def step(self, row: int, token: int) -> bool:
        """Take one new token of ``row``; ``True`` when the row is finished."""
        if self.finish[row] is not None:
            return True
        d = self.decodings[row]
        if self.cancelled is not None and self.cancelled(row):
            self._end(row, "cancelled")
            return True
        if token in self.eos:
            self._end(row, "stop")
            return True
        self.tokens[row].append(token)
        text, hit = self._visible(row)
        if hit:
            self.text[row] = text
            self._end(row, "stop")
            return True
        if len(self.tokens[row]) >= d.max_new_tokens:
            self.text[row] = text
            self._end(row, "length")
            return True
        self.text[row] = text
        self._emit(row, self._safe(row, text))
        return False

    def close(self) -> None:
        """End every row still open (``generate`` returned: its budget); call once after the last ``generate``."""
        for row in range(len(self.decodings)):
            if self.finish[row] is None:
                self.text[row] = self._visible(row)[0]
                self._end(row, "length")

    def completions(self, prompt_tokens: Sequence[int]) -> list[Completion]:
        return [
            Completion(self.text[r], len(self.tokens[r]), self.finish[r] or "length", int(p), list(self.tokens[r]))
            for r, p in zip(range(len(self.decodings)), prompt_tokens)
        ]

    # ------------------------------------------------------------------------------------------------ text
    def _visible(self, row: int) -> tuple[str, bool]:
        """The row's text so far (left-stripped, cut at its first stop string) and whether a stop string was met."""
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).lstrip()
        cuts = [text.find(s) for s in self.decodings[row].stop if s in text]
        if cuts:
            return text[: min(cuts)].rstrip(), True
        return text, False

    def _safe(self, row: int, text: str) -> str:
        """What of ``text`` can be shown now: no trailing whitespace, nor a tail that may begin a stop string."""
        safe = text.rstrip().rstrip("\ufffd")  # an unfinished multi-byte character shows as U+FFFD until done
        for s in self.decodings[row].stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    safe = safe[: max(0, min(len(safe), len(text) - k))]
                    break
        return safe.rstrip()

    def _emit(self, row: int, text: str) -> None:
        if self.on_delta is None or len(text) <= len(self.sent[row]) or not text.startswith(self.sent[row]):
            return
        delta, self.sent[row] = text[len(self.sent[row]) :], text
        self.on_delta(row, delta)

    def _end(self, row: int, reason: str) -> None:
        self.finish[row] = reason
        self.text[row] = self.text[row].strip()
        self._emit(row, self.text[row])


class _RowCriteria(StoppingCriteria):
    def __init__(self, control: RowControl, rows: list[int]) -> None:
        self.control, self.rows = control, rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        done = [self.control.step(row, int(tok)) for row, tok in zip(self.rows, last)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
