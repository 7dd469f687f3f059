"""The registries of methods and connectors, and the typed ``{"type": ..., **settings}`` specs that name them.

A **method** (``vict.methods.<name>/``) says how the frozen LLM is modified and what trains; a **connector**
(``vict.connectors.<name>``, or a module inside a method's folder) says how vision enters the LLM. Each registers
itself with one line, ``register_method(MyMethod)`` / ``register_connector(MyConnector)``, at import. The built-in
ones are found by importing every subpackage of ``vict.methods`` and every module of ``vict.connectors`` the first
time a registry is read, so adding a method is adding a folder. Code outside ``vict`` registers its own classes
the same way (import them before building a model).

A spec is what a config or a checkpoint's ``config.json`` stores: ``MethodSpec(type="lora", settings=LoraSettings(r=8))``
serialises to ``{"type": "lora", "r": 8, ...}`` and back.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, ClassVar

from vict.settings import SettingsError, unknown_keys_problem

_METHODS: dict[str, type] = {}
_CONNECTORS: dict[str, type] = {}
_discovered = False
_BUILTIN_PACKAGES = {"vict.methods": True, "vict.connectors": False}
"""Where built-in entries live: methods are the subpackages (folders) of ``vict.methods``, connectors the modules of
``vict.connectors`` (besides ``base``)."""

DEFAULT_METHOD = "lora"


def _discover() -> None:
    """Import every built-in method folder and connector module once (each registers itself)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for package_name, folders in _BUILTIN_PACKAGES.items():
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg == folders and not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{package_name}.{info.name}")


def _register(table: dict[str, type], cls: type, what: str) -> type:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{cls.__name__}.name={name!r}: a {what} needs a name that is a Python identifier")
    for attr in ("description", "settings_class"):
        if not getattr(cls, attr, None):
            raise ValueError(f"{what} {name!r} ({cls.__name__}) has no {attr}")
    if not dataclasses.is_dataclass(cls.settings_class):
        raise ValueError(f"{what} {name!r}: settings_class {cls.settings_class.__name__} must be a dataclass")
    existing = table.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"{what} {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    table[name] = cls
    return cls


def register_method(cls: type) -> type:
    """Register a ``vict.methods.base.Method`` subclass under ``cls.name`` (usable as a class decorator)."""
    return _register(_METHODS, cls, "method")


def register_connector(cls: type) -> type:
    """Register a ``vict.connectors.base.Connector`` subclass under ``cls.name`` (usable as a class decorator)."""
    return _register(_CONNECTORS, cls, "connector")


def unregister(name: str) -> None:
    """Remove a method or connector registered under ``name`` (tests register temporary ones)."""
    _METHODS.pop(name, None)
    _CONNECTORS.pop(name, None)


def _lookup(table: dict[str, type], name: str, what: str, key: str) -> type:
    _discover()
    if name not in table:
        close = difflib.get_close_matches(str(name), list(table), n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of {sorted(table)}"
        raise SettingsError([f"{key}={name!r} is not a registered {what}; {fix}"], f"unknown {what}")
    return table[name]


def get_method(name: str) -> type:
    """The method class registered as ``name`` (``SettingsError`` with a did-you-mean otherwise)."""
    return _lookup(_METHODS, name, "method", "method.type")


def get_connector(name: str) -> type:
    """The connector class registered as ``name`` (``SettingsError`` with a did-you-mean otherwise)."""
    return _lookup(_CONNECTORS, name, "connector", "connector.type")


def method_names() -> list[str]:
    """Registered method names, in registration order (the built-ins first)."""
    _discover()
    return list(_METHODS)


def connector_names() -> list[str]:
    """Registered connector names, in registration order."""
    _discover()
    return list(_CONNECTORS)


@dataclass
class _Spec:
    """``type`` names a registered class; ``settings`` is an instance of its ``settings_class`` (defaults if None)."""

    kind: ClassVar[str] = ""
    type: str = ""
    settings: Any = None

    @classmethod
    def _get(cls, name: str) -> type:
        raise NotImplementedError

    def __post_init__(self) -> None:
        target = self._get(self.type)
        if self.settings is None:
            self.settings = target.settings_class()
        elif isinstance(self.settings, dict):
            self.settings = _settings_from_dict(target, self.settings, self.kind)
        elif not isinstance(self.settings, target.settings_class):
            raise SettingsError(
                [
                    f"{self.kind}.type={self.type!r} takes {target.settings_class.__name__} settings, got "
                    f"{type(self.settings).__name__}"
                ]
            )

    def to_dict(self) -> dict[str, Any]:
        """``{"type": name, **settings}`` (plain data, for YAML and JSON)."""
        return {"type": self.type, **dataclasses.asdict(self.settings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, default_type: str | None = None) -> Any:
        """Inverse of ``to_dict``; every unknown key is reported at once with a did-you-mean."""
        data = dict(data or {})
        name = data.pop("type", default_type)
        if name is None:
            raise SettingsError([f"{cls.kind}.type is missing; set it to one of the registered {cls.kind}s"])
        return cls(type=name, settings=data)


def _settings_from_dict(target: type, data: dict[str, Any], kind: str) -> Any:
    settings_class = target.settings_class
    names = {f.name for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError([unknown_keys_problem(settings_class, unknown, f"{kind}.type={target.name!r}")])
    return settings_class(**data)


@dataclass
class MethodSpec(_Spec):
    """The method of a model: ``MethodSpec("lora", LoraSettings(r=16))``; YAML ``method: {type: lora, r: 16}``."""

    kind: ClassVar[str] = "method"
    type: str = DEFAULT_METHOD

    @classmethod
    def _get(cls, name: str) -> type:
        return get_method(name)


@dataclass
class ConnectorSpec(_Spec):
    """The connector of a model; ``type=""`` resolves to the method's ``default_connector`` when the model is built."""

    kind: ClassVar[str] = "connector"

    def __post_init__(self) -> None:
        if self.type:
            super().__post_init__()
        elif self.settings:
            raise SettingsError([f"connector settings {sorted(self.settings)} given without connector.type; name it"])
        else:
            self.settings = None

    @classmethod
    def _get(cls, name: str) -> type:
        return get_connector(name)

    def resolved(self, method: MethodSpec) -> ConnectorSpec:
        """This spec, or the method's default connector with default settings when ``type`` is empty."""
        if self.type:
            return self
        return ConnectorSpec(type=get_method(method.type).default_connector)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type} if not self.type else super().to_dict()
