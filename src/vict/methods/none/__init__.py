"""``none``: the LLM stays exactly as it is; only the extra queries and the connector train."""

from __future__ import annotations

from dataclasses import dataclass

from vict.methods.base import Method
from vict.registry import register_method


@dataclass
class NoneSettings:
    """No settings."""


class NoMethod(Method):
    name = "none"
    description = "no change to the LLM: the frozen LLM reads the visual tokens as they are"
    trains = "only the extra queries and the connector"
    settings_class = NoneSettings


register_method(NoMethod)
