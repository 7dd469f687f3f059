"""Test-only methods and connectors, registered for one test and removed after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from vict import registry


@contextlib.contextmanager
def registered(*classes: type) -> Iterator[None]:
    """Register ``classes`` (methods or connectors) for the duration of a block."""
    for cls in classes:
        register = registry.register_connector if hasattr(cls, "levels") else registry.register_method
        register(cls)
    try:
        yield
    finally:
        for cls in classes:
            registry.unregister(cls.name)


@pytest.fixture
def register():
    """``with register(MyMethod, MyConnector): ...``"""
    return registered
