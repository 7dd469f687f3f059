"""``vict methods``: the registered methods (and connectors), each with a one-line description and what it trains."""

from __future__ import annotations

import argparse
import dataclasses
import json

EPILOG = """examples:
  vict methods                 # a table: name, description, what it trains
  vict methods --json          # [{"name", "description", "trains", "default_connector", "settings", "stages"}]
  vict inspect tiny --method llama_adapter    # build the tiny model with one and count its parameters by part

A method is one folder under src/vict/methods/ (docs/extending.md); `method.type=NAME` selects it in a config.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")


def method_infos() -> list[dict]:
    """One dict per registered method: name, description, trains, default connector, settings with defaults."""
    from vict.registry import get_method, method_names

    out = []
    for name in method_names():
        cls = get_method(name)
        out.append(
            {
                "name": name,
                "description": cls.description,
                "trains": cls.trains,
                "default_connector": cls.default_connector,
                "settings": dataclasses.asdict(cls.settings_class()),
                "stages": [s.name for s in cls().stages()],
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    from vict.registry import connector_names, get_connector

    infos = method_infos()
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    width = max(len(i["name"]) for i in infos)
    print("methods (method.type):")
    for info in infos:
        print(f"  {info['name']:<{width}}  {info['description']}")
        print(f"  {'':<{width}}  trains: {info['trains']}")
        defaults = ", ".join(f"{k}={v}" for k, v in info["settings"].items()) or "none"
        print(f"  {'':<{width}}  settings: {defaults}; connector: {info['default_connector']}")
        if info["stages"]:
            print(f"  {'':<{width}}  stages: {' -> '.join(info['stages'])}")
    print("connectors (connector.type):")
    for name in connector_names():
        print(f"  {name}  {get_connector(name).description}")
    return 0
