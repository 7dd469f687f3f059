"""The CLI table: every subcommand resolves to a module with the documented interface and worked examples."""

from __future__ import annotations

import importlib

import pytest

from vict.cli import COMMANDS, main

EXPECTED = [
    "quickstart",
    "data",
    "train",
    "eval",
    "score",
    "caption",
    "ask",
    "serve",
    "demo",
    "analyze",
    "methods",
    "transfer",
    "zoo",
    "inspect",
    "validate",
]


def test_the_subcommand_table_is_the_documented_one() -> None:
    assert list(COMMANDS) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_each_subcommand_has_help_with_examples(name: str, capsys: pytest.CaptureFixture) -> None:
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vict {name}")
    assert "example" in out.lower(), f"`vict {name} --help` shows no worked example"


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert name in out


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
