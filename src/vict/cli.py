"""The `vict` command line: a thin table from subcommands to the modules that implement them.

Each entry names a module exposing ``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``. Modules are imported only when their subcommand is used, so
``vict --help`` stays instant and a broken optional dependency of one command never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# name -> (module, one-line summary). Keep sorted by the order a newcomer meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("vict.recipes.quickstart", "run the paper in miniature on the built-in world, offline"),
    "data": ("vict.data.cli", "generate the miniature world, inspect data sets and built instructions"),
    "train": ("vict.recipes.train_cli", "train a VICT model from a YAML config with dotted overrides"),
    "eval": ("vict.recipes.evaluate_cli", "run a model on a data split and write report.json + report.md"),
    "score": ("vict.eval.cli", "score prediction files with the official caption/GQA/VQAv2/ScienceQA rules"),
    "caption": ("vict.recipes.generate_cli", "caption images with a trained checkpoint"),
    "ask": ("vict.recipes.ask_cli", "ask a trained checkpoint a question, with or without context"),
    "serve": ("vict.serve.cli", "serve a checkpoint over an OpenAI-compatible HTTP API (/v1/chat/completions)"),
    "demo": ("vict.serve.demo_cli", "open a web demo (Gradio) of a checkpoint: an image, a question, a context"),
    "analyze": ("vict.eval.analyze_cli", "Q-Former token / LLM vocabulary similarity analysis"),
    "methods": ("vict.methods.cli", "list the registered methods and connectors, with what each trains"),
    "transfer": ("vict.transfer.cli", "VPGTrans: fit the word converter between two LMs' embedding spaces"),
    "zoo": ("vict.zoo.cli", "build the miniature model zoo, or check the shipped one's checksums"),
    "inspect": ("vict.models.cli", "build a model (named builder or checkpoint) and print its parts"),
    "validate": ("vict.config_cli", "load and validate a training config without running it"),
}

EPILOG = """examples:
  vict quickstart --preset fast          # the whole method in miniature, a few minutes on a laptop CPU
  vict methods                           # the registered methods: what each one trains
  vict inspect tiny --method lora        # build the tiny model, print trainable parameters by part
  vict data world --out world --images 200 --seed 0
  vict train configs/world/vict_lora.yaml train.max_steps=50
  vict score gqa --predictions preds.json --questions testdev_balanced_questions.json
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vict",
        description="Give any Hugging Face causal LM eyes, cheaply (Visual In-Context Tuning).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; callable from tests as ``main([...])``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # peft calls a transformers API deprecated in 5.x on every model build; the warning is not the user's to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    if not argv or argv[0] not in COMMANDS:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.version:
            from vict import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(
        prog=f"vict {name}",
        description=summary,
        epilog=getattr(module, "EPILOG", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    # Intermixed parsing lets options follow positional overrides (`vict train CFG lr=1e-3 --resume DIR`);
    # argparse cannot intermix around nested subcommands, so those parse the ordinary way.
    has_subcommands = any(isinstance(action, argparse._SubParsersAction) for action in sub._actions)
    args = sub.parse_args(rest) if has_subcommands else sub.parse_intermixed_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
