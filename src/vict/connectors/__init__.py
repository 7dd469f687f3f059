"""Connectors: how vision enters the LLM (``vict.connectors.base.Connector``). Built-in: ``qformer_tokens``,
``lavin_cls`` (LaVIN's) and ``vlora_generator`` (VLoRA's, zero tokens).

Registered with ``vict.registry.register_connector``; a method folder may hold its own connector module.
"""

from __future__ import annotations

from vict.connectors.base import Connector, VisionFeatures, VisionInput
from vict.registry import ConnectorSpec, connector_names, get_connector, register_connector

__all__ = [
    "Connector",
    "ConnectorSpec",
    "VisionFeatures",
    "VisionInput",
    "connector_names",
    "get_connector",
    "register_connector",
]
