"""One way to document and build settings dataclasses: field help in ``metadata["help"]``, built from plain dicts.

Every settings dataclass of ``vict`` (the run config's sections, each method's and connector's settings) documents
its fields with ``help_field(text, default=...)``; ``vict train --help`` and ``vict methods`` print that text.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import field
from typing import Any


def help_field(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text is ``text`` (``default=`` / ``default_factory=`` as for ``field``)."""
    return field(metadata={"help": text}, **kwargs)


def unknown_keys_problem(cls: type, unknown: list[str], where: str) -> str:
    """One problem line for keys that ``cls`` does not have, with a did-you-mean hint."""
    names = [f.name for f in dataclasses.fields(cls)]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1)
        hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return f"{where}: unknown setting(s) {', '.join(hints)}; known: {', '.join(names) or '(none)'}"


def parse_like(old: object, raw: str) -> object | None:
    """``raw`` read as a value of ``old``'s type: bool (true/false/1/0), int, float or str (``None`` when it is not
    one, or ``old`` is of another type): how ``KEY=VALUE`` command-line settings are read."""
    if isinstance(old, bool):
        return {"true": True, "false": False, "1": True, "0": False}.get(raw.lower())
    try:
        if isinstance(old, int):
            return int(raw)
        if isinstance(old, float):
            return float(raw)
    except ValueError:
        return None
    return raw if isinstance(old, str) else None


class SettingsError(ValueError):
    """One or more problems with settings, all reported at once (each line names the key, the value, the fix).

    Attributes:
        problems: one line per problem.
    """

    def __init__(self, problems: list[str], title: str = "invalid settings", message: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__(message if message is not None else f"{title}:\n  " + "\n  ".join(self.problems))


def raise_problems(problems: list[str], title: str = "invalid settings") -> None:
    """Raise a ``SettingsError`` if ``problems`` is not empty."""
    if problems:
        raise SettingsError(problems, title)
